//! Minimal SBOMs from `packages.txt` (`dpkg -l` output): SPDX 2.3 and CycloneDX 1.5 JSON,
//! shipped as `sbom.spdx.json` and `sbom.cdx.json` like the official stemcells (which run
//! syft over the root filesystem). Only installed Debian packages (`ii` lines) are listed;
//! files outside packages (the agent binary) are not. Output is deterministic for a given
//! input and time, so `SOURCE_DATE_EPOCH` builds stay reproducible.

use serde_json::{json, Value};

/// One installed package from `dpkg -l`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// The installed (`ii`) packages of a `dpkg -l` listing; header lines are skipped.
pub fn parse_dpkg_list(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            if f.next()? != "ii" {
                return None;
            }
            let name = f.next()?;
            let version = f.next()?;
            let arch = f.next().unwrap_or("all");
            // dpkg -l shows multiarch packages as name:arch.
            let name = name.split(':').next().unwrap_or(name);
            Some(Package {
                name: name.into(),
                version: version.into(),
                arch: arch.into(),
            })
        })
        .collect()
}

/// Package URL (purl spec, type `deb`); `distro` is e.g. `ubuntu`.
fn purl(p: &Package, distro: &str) -> String {
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace(':', "%3A")
            .replace('+', "%2B")
    };
    format!(
        "pkg:deb/{distro}/{}@{}?arch={}",
        p.name,
        enc(&p.version),
        p.arch
    )
}

/// RFC 3339 UTC for a Unix time (no external date crate needed).
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A deterministic UUID-shaped id from a name (SHA-1 based, version 5 layout).
fn name_uuid(name: &str) -> String {
    use sha1::{Digest, Sha1};
    let h = Sha1::digest(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// SPDX 2.3 JSON for the stemcell `name`/`version`.
pub fn spdx(name: &str, version: &str, packages: &[Package], distro: &str, created: u64) -> Value {
    let pkgs: Vec<Value> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "name": p.name,
                "SPDXID": format!("SPDXRef-Package-deb-{i}"),
                "versionInfo": p.version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": purl(p, distro),
                }],
            })
        })
        .collect();
    let relationships: Vec<Value> = (0..packages.len())
        .map(|i| {
            json!({
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": format!("SPDXRef-Package-deb-{i}"),
            })
        })
        .collect();
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{name}-{version}"),
        "documentNamespace": format!("https://bosh.io/stemcells/{name}/{version}/sbom-{}", name_uuid(&format!("{name}/{version}/{created}"))),
        "creationInfo": {
            "created": rfc3339(created),
            "creators": [format!("Tool: stemcell-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": pkgs,
        "relationships": relationships,
    })
}

/// CycloneDX 1.5 JSON for the stemcell `name`/`version`.
pub fn cyclonedx(
    name: &str,
    version: &str,
    packages: &[Package],
    distro: &str,
    created: u64,
) -> Value {
    let components: Vec<Value> = packages
        .iter()
        .map(|p| {
            let purl = purl(p, distro);
            json!({ "bom-ref": purl, "type": "library", "name": p.name, "version": p.version, "purl": purl })
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", name_uuid(&format!("{name}/{version}/{created}/cdx"))),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(created),
            "tools": { "components": [{ "type": "application", "name": "stemcell", "version": env!("CARGO_PKG_VERSION") }] },
            "component": { "bom-ref": "stemcell", "type": "operating-system", "name": name, "version": version },
        },
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dpkg_list_and_builds_both_documents() {
        let text = "Desired=Unknown/Install/Remove/Purge/Hold\n| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend\n||/ Name  Version  Architecture  Description\n+++-====\nii  bash  5.1-6ubuntu1  amd64  GNU Bourne Again SHell\nii  libc6:amd64  2.35-0ubuntu3.8  amd64  GNU C Library\nrc  old  1.0  amd64  removed\n";
        let p = parse_dpkg_list(text);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1],
            Package {
                name: "libc6".into(),
                version: "2.35-0ubuntu3.8".into(),
                arch: "amd64".into()
            }
        );
        let s = spdx("bosh-x", "1.606", &p, "ubuntu", 1_700_000_000);
        assert_eq!(s["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            s["packages"][1]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/ubuntu/libc6@2.35-0ubuntu3.8?arch=amd64"
        );
        let c = cyclonedx("bosh-x", "1.606", &p, "ubuntu", 1_700_000_000);
        assert_eq!(c["components"].as_array().unwrap().len(), 2);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
