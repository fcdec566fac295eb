//! Which OS an OS image tarball holds: its `/etc/os-release` (or `/usr/lib/os-release`, which
//! Debian and Ubuntu link it to), read from the tarball without extracting it, matched to the
//! OS definitions of `stages/os/` by `ID` (family) and `VERSION_CODENAME` (suite).

use crate::recipe::os;
use crate::tar_errors::describe;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// The `os-release` text of an OS image tarball (gzip or plain tar).
pub fn read_from_tarball(tarball: &Path) -> Result<String> {
    let name = tarball.display();
    let mut file = std::fs::File::open(tarball).with_context(|| format!("{name}: cannot open"))?;
    let mut magic = [0u8; 2];
    let n = file
        .read(&mut magic)
        .with_context(|| format!("{name}: cannot read"))?;
    let head = std::io::Cursor::new(magic[..n].to_vec()).chain(file);
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(head))
    } else {
        Box::new(head)
    };
    let mut archive = tar::Archive::new(reader);
    let mut usr_lib = None;
    let entries = archive
        .entries()
        .map_err(|e| anyhow!("{name}: not a tar archive: {}", describe(&e)))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| anyhow!("{name}: truncated or corrupt tarball: {}", describe(&e)))?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // The import would refuse it anyway; say so here, before anything else is judged.
        if path.split('/').any(|part| part == "..") {
            bail!("{name}: member {path} climbs out of the root with ..");
        }
        let path = path.trim_start_matches("./").trim_start_matches('/');
        let regular = entry.header().entry_type().is_file();
        if regular && (path == "etc/os-release" || path == "usr/lib/os-release") {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .with_context(|| format!("{name}: {path}: cannot read"))?;
            if path == "etc/os-release" {
                return Ok(text);
            }
            usr_lib = Some(text);
        }
    }
    usr_lib.with_context(|| {
        format!("{name}: not an OS image (no /etc/os-release or /usr/lib/os-release)")
    })
}

/// `KEY=value` lines, quotes removed.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once('=')?;
        (k == key).then(|| v.trim().trim_matches(|c| c == '"' || c == '\''))
    })
}

/// The OS definition name (e.g. `debian-bookworm`) whose family and suite match `text`.
/// `what` names the source in errors.
pub fn os_name(root: &Path, text: &str, what: &str) -> Result<String> {
    let id = field(text, "ID").unwrap_or("");
    let codename = field(text, "VERSION_CODENAME")
        .or_else(|| field(text, "UBUNTU_CODENAME"))
        .unwrap_or("");
    if id.is_empty() || codename.is_empty() {
        bail!("{what}: /etc/os-release has no ID or VERSION_CODENAME");
    }
    let names = os::names(root)?;
    for n in &names {
        let d = os::load(root, n)?.definition;
        if d.family == id && d.suite == codename {
            return Ok(d.name);
        }
    }
    bail!(
        "{what}: /etc/os-release says ID={id} VERSION_CODENAME={codename}, which no OS definition matches (known: {})",
        names.join(", ")
    )
}

/// The OS of an OS image tarball, checked against an explicit `--os` when one was given.
pub fn os_of_image(root: &Path, tarball: &Path, given: Option<&str>) -> Result<String> {
    let what = tarball.display().to_string();
    let detected = os_name(root, &read_from_tarball(tarball)?, &what)?;
    match given {
        Some(g) if g != detected => bail!(
            "--os {g} contradicts --os-image {what}, which holds {detected} (its /etc/os-release); drop --os or give the matching image"
        ),
        _ => Ok(detected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_definitions_by_id_and_codename() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
        assert_eq!(os_name(root, debian, "x").unwrap(), "debian-bookworm");
        let noble = "ID=ubuntu\nVERSION_CODENAME=noble\nUBUNTU_CODENAME=noble\n";
        assert_eq!(os_name(root, noble, "x").unwrap(), "ubuntu-noble");
        let trixie = "ID=debian\nVERSION_ID=\"13\"\nVERSION_CODENAME=trixie\n";
        assert_eq!(os_name(root, trixie, "x").unwrap(), "debian-trixie");
        let e = os_name(root, "ID=debian\nVERSION_CODENAME=forky\n", "img.tgz")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("img.tgz: /etc/os-release says ID=debian VERSION_CODENAME=forky"),
            "{e}"
        );
    }

    #[test]
    fn a_member_climbing_out_is_refused_before_the_os_is_judged() {
        let t = tempfile::tempdir().unwrap();
        let tgz = t.path().join("evil.tgz");
        let f = std::fs::File::create(&tgz).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        // `append_data` refuses `..`; write the name into the header as a hostile tool would.
        h.as_old_mut().name[..16].copy_from_slice(b"../etc/hostname\0");
        h.set_cksum();
        b.append(&h, &b"x\n"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
        let e = read_from_tarball(&tgz).unwrap_err().to_string();
        assert!(e.contains("../etc/hostname") && e.contains(".."), "{e}");
    }
}
