//! `stemcell verify`: every check a consumer would make, collected so that all findings are
//! reported at once: gzip integrity, member names/types/order, required members, manifest YAML
//! types, the image SHA-1, and the image itself parsed by the project's own readers
//! (qcow2/VHD/VMDK checkers, OVF well-formedness and `.mf` digests, bzip2), or for a light
//! stemcell an empty image and the cloud image ids.
//!
//! Each finding is an error (a consumer rejects the stemcell or fails on it) or a warning
//! (unusual, but every consumer accepts it), decided by what the public consumers do:
//! cloudfoundry/bosh-cli `director/stemcell_archive_with_metadata.go` (upload, inspect) and
//! `stemcell/reader.go` (create-env, repack), cloudfoundry/bosh `src/bosh-director/lib/bosh/
//! director/jobs/update_stemcell.rb` (upload), and each CPI's create_stemcell. See
//! docs/verify.md for the table.

use super::image::ImageKind;
use super::manifest::{ManifestView, EMPTY_SHA1};
use super::reader::{name_problem, read_stemcell, Scan};
use crate::formats::{self, DiskKind};
use anyhow::Result;
use serde::Serialize;
use serde_yaml::Value;
use std::path::Path;

/// The members of an official stemcell, in order; the SBOMs are optional.
const ORDER: [&str; 6] = [
    "stemcell.MF",
    "packages.txt",
    "dev_tools_file_list.txt",
    "image",
    "sbom.spdx.json",
    "sbom.cdx.json",
];
/// What the BOSH CLI and the Director need: the manifest and the image.
const REQUIRED: [&str; 2] = ["stemcell.MF", "image"];
/// What official stemcells carry and no consumer reads.
const EXPECTED: [&str; 2] = ["packages.txt", "dev_tools_file_list.txt"];

/// What `verify` found. The stemcell is accepted iff `errors` is empty.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Findings {
    /// A consumer would reject the stemcell (or fail on it) for each of these.
    pub errors: Vec<String>,
    /// Unusual, but every consumer accepts it.
    pub warnings: Vec<String>,
}

impl Findings {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the stemcell at `path`. Only a temporary-directory failure is an `Err`; an unreadable
/// or corrupt file is an error finding.
pub fn verify(path: &Path) -> Result<Findings> {
    let tmp = tempfile::Builder::new()
        .prefix("stemcell-verify.")
        .tempdir()?;
    let mut f = Findings::default();
    let scan = match read_stemcell(path, Some(tmp.path())) {
        Ok(s) => s,
        Err(e) => {
            f.errors.push(format!("{e:#}"));
            return Ok(f);
        }
    };
    check_layout(&scan, &mut f);
    let view = match scan.manifest_text.as_deref().map(ManifestView::parse) {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            f.errors.push(format!("{e:#}"));
            return Ok(f);
        }
        None => return Ok(f),
    };
    f.errors.extend(view.problems.iter().cloned());
    f.warnings.extend(view.warnings.iter().cloned());
    let Some(img) = &scan.image else {
        return Ok(f);
    };
    f.errors.extend(img.problems.iter().cloned());
    if view.is_light() {
        check_light(&view, img.size, &mut f);
        return Ok(f);
    }
    if img.size == 0 {
        f.errors
            .push("image is empty but stemcell_formats has no *-light format".into());
        return Ok(f);
    }
    if let Some(sha1) = &view.sha1 {
        if *sha1 != img.sha1 {
            // The Director stores sha1 and never compares it with the image; `bosh
            // repack-stemcell --empty-image` leaves it unchanged.
            f.warnings.push(format!(
                "stemcell.MF sha1 {sha1} does not match the image member's sha1 {}",
                img.sha1
            ));
        }
    }
    let disk_format = view.cloud_str("disk_format");
    let Some(kind) = disk_format.and_then(ImageKind::for_disk_format) else {
        f.errors.push(format!(
            "cloud_properties.disk_format {disk_format:?} is not one of qcow2, raw, rawdisk, ovf, vhd, vhdx, files"
        ));
        return Ok(f);
    };
    check_image(kind, &scan, &mut f);
    Ok(f)
}

fn check_layout(scan: &Scan, f: &mut Findings) {
    let names: Vec<&str> = scan.members.iter().map(|m| m.name.as_str()).collect();
    let base = |n: &str| n.strip_prefix("./").unwrap_or(n).to_string();
    for r in REQUIRED {
        if !names.iter().any(|n| base(n) == r) {
            f.errors.push(format!("member {r} is missing"));
        }
    }
    for r in EXPECTED {
        if !names.iter().any(|n| base(n) == r) {
            f.warnings.push(format!(
                "member {r} is missing (official stemcells carry it; no consumer reads it)"
            ));
        }
    }
    for (i, m) in scan.members.iter().enumerate() {
        let n = m.name.as_str();
        if let Some(p) = name_problem(n) {
            // GNU tar (Director, create-env, CPIs) extracts `./x` as `x`; the CLI's upload
            // looks for `stemcell.MF` or `./stemcell.MF`. An absolute or `..` name is unsafe.
            if n.starts_with('/') || n.split('/').any(|c| c == "..") {
                f.errors.push(p);
            } else {
                f.warnings.push(p);
            }
        }
        if !m.regular {
            let p = format!("member {n:?} is not a regular file");
            // The Director requires `image` to be a regular file; the CLI reads stemcell.MF.
            if ["image", "stemcell.MF"].contains(&base(n).as_str()) {
                f.errors.push(p);
            } else {
                f.warnings.push(p);
            }
        }
        if names[..i].iter().any(|o| base(o) == base(n)) {
            // The CLI's upload reads the first stemcell.MF, tar extraction keeps the last.
            f.errors.push(format!(
                "member {n:?} appears twice (consumers would read different copies)"
            ));
        }
        if !ORDER.contains(&base(n).as_str()) {
            f.warnings
                .push(format!("member {n:?} is not part of a stemcell"));
        }
    }
    let positions: Vec<usize> = names
        .iter()
        .filter_map(|n| ORDER.iter().position(|o| *o == base(n)))
        .collect();
    // The packager's order, or the alphabetical order of the official light stemcells (the CI
    // re-tars them with `tar czvf … *`). No consumer depends on the order.
    let packager_order = positions.windows(2).all(|w| w[0] < w[1]);
    let alphabetical = names.windows(2).all(|w| w[0] < w[1]);
    if !packager_order && !alphabetical {
        f.warnings.push(format!(
            "members are in the order {}; expected {} (or alphabetical, as official light stemcells)",
            names.join(", "),
            ORDER[..4].join(", ")
        ));
    }
}

fn check_light(view: &ManifestView, image_size: u64, f: &mut Findings) {
    let problems = &mut f.errors;
    if image_size != 0 {
        // The CPIs take the light path from cloud_properties and never read the image.
        f.warnings.push(format!(
            "light stemcell: image has {image_size} bytes, expected an empty file"
        ));
    }
    let formats = &view.stemcell_formats;
    if formats.iter().any(|f| f == "aws-light") {
        match view.cloud_properties.get("ami") {
            Some(Value::Mapping(m)) if !m.is_empty() => {}
            _ => problems.push(
                "aws light stemcell: cloud_properties.ami must map regions to AMI ids".into(),
            ),
        }
    }
    if formats.iter().any(|f| f == "google-light") {
        if view.cloud_str("image_url").is_none() && view.cloud_str("source_url").is_none() {
            problems.push("google light stemcell: cloud_properties.image_url is missing".into());
        }
        if view.sha1.as_deref().is_some_and(|s| s != EMPTY_SHA1) {
            f.warnings
                .push("google light stemcell: sha1 should be the empty file's".into());
        }
    }
    if formats.iter().any(|f| f == "openstack-light") && view.cloud_str("image_id").is_none() {
        problems.push("openstack light stemcell: cloud_properties.image_id is missing".into());
    }
}

fn check_image(kind: ImageKind, scan: &Scan, f: &mut Findings) {
    let problems = &mut f.errors;
    let img = scan.image.as_ref().expect("image probed");
    let want_container = if kind == ImageKind::VhdBzip2 {
        "bzip2"
    } else {
        "gzip tar"
    };
    if img.container != want_container {
        problems.push(format!(
            "image is {}, expected {want_container} for this disk_format",
            img.container
        ));
        return;
    }
    let names: Vec<&str> = img.inner.iter().map(|i| i.name.as_str()).collect();
    let expected = kind.inner_members();
    if !expected.is_empty() && names != expected {
        problems.push(format!(
            "image holds [{}], expected [{}]",
            names.join(", "),
            expected.join(", ")
        ));
    }
    if kind == ImageKind::FilesTar {
        if names.is_empty() {
            problems.push("image: the root filesystem tar is empty".into());
        }
        return;
    }
    for (name, path) in &img.extracted {
        let detected = match formats::detect(path) {
            Ok(k) => k,
            Err(e) => {
                problems.push(format!("image: {name}: {e:#}"));
                continue;
            }
        };
        let want = match (kind, name.as_str()) {
            (ImageKind::Qcow2Tar, _) => Some(DiskKind::Qcow2),
            (ImageKind::RawTar | ImageKind::RawdiskTar, _) => Some(DiskKind::Raw),
            (ImageKind::VhdTar, _) => Some(DiskKind::VhdFixed),
            (ImageKind::VhdBzip2, _) => Some(DiskKind::VhdDynamic),
            (ImageKind::OvfTar, "image-disk1.vmdk") => Some(DiskKind::Vmdk),
            _ => None,
        };
        let Some(want) = want else { continue };
        if detected != want {
            problems.push(format!("image: {name} is {detected:?}, expected {want:?}"));
            continue;
        }
        if want == DiskKind::Raw {
            check_raw(name, path, problems);
            continue;
        }
        match formats::check(path, want) {
            Ok(report) => problems.extend(
                report
                    .problems
                    .iter()
                    .map(|p| format!("image: {name}: {p}")),
            ),
            Err(e) => problems.push(format!("image: {name}: {e:#}")),
        }
        if want == DiskKind::VhdFixed {
            if let Ok(meta) = std::fs::metadata(path) {
                if (meta.len() - 512) % (1 << 20) != 0 {
                    problems.push(format!(
                        "image: {name}: Azure needs a whole number of MiB, got {} bytes of data",
                        meta.len() - 512
                    ));
                }
            }
        }
    }
    if kind == ImageKind::OvfTar {
        check_ovf(img, f);
    }
}

/// A raw disk has no structure to parse: it must be whole sectors and carry a boot signature.
fn check_raw(name: &str, path: &Path, problems: &mut Vec<String>) {
    use std::io::Read;
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len == 0 || len % 512 != 0 {
        problems.push(format!(
            "image: {name}: size {len} is not a positive multiple of 512"
        ));
        return;
    }
    let mut mbr = [0u8; 512];
    if std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut mbr))
        .is_err()
        || mbr[510..] != [0x55, 0xaa]
    {
        problems.push(format!(
            "image: {name}: no MBR boot signature (55 AA) in sector 0; not a bootable disk"
        ));
    }
}

fn check_ovf(img: &super::reader::ImageProbe, f: &mut Findings) {
    let problems = &mut f.errors;
    use sha1::{Digest, Sha1};
    let file = |n: &str| {
        img.extracted
            .iter()
            .find(|(m, _)| m == n)
            .map(|(_, p)| p.clone())
    };
    let Some(ovf) = file("image.ovf") else { return };
    match duct::cmd!("xmllint", "--noout", &ovf)
        .stderr_capture()
        .unchecked()
        .run()
    {
        Ok(out) if !out.status.success() => {
            let msg = String::from_utf8_lossy(&out.stderr);
            problems.push(format!(
                "image: image.ovf is not well-formed XML: {}",
                msg.lines().next().unwrap_or("")
            ));
        }
        Ok(_) => {}
        Err(e) => problems.push(format!("image: cannot run xmllint to check image.ovf: {e}")),
    }
    // The vSphere CPI never reads image.mf (ovftool and the vSphere UI do).
    let Some(mf) = file("image.mf") else { return };
    let text = std::fs::read_to_string(&mf).unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line.strip_prefix("SHA1(").and_then(|r| r.split_once(")= "));
        let Some((name, want)) = parsed else {
            f.warnings.push(format!(
                "image: image.mf line {line:?} is not `SHA1(file)= hex`"
            ));
            continue;
        };
        match file(name).map(std::fs::read) {
            Some(Ok(data)) => {
                let got = hex::encode(Sha1::digest(&data));
                if got != want.trim() {
                    f.warnings.push(format!(
                        "image: image.mf says SHA1({name})= {want}, the file has {got}"
                    ));
                }
            }
            _ => f.warnings.push(format!(
                "image: image.mf names {name}, which the image does not hold"
            )),
        }
    }
}
