//! Boot-test helpers: a settings document for the stand-in agent, and isoinfo readers that
//! check the settings media `stemcell boot` writes (the media and QEMU themselves are in the
//! library, `src/boot/`).
//!
//! Include with `#[path = "common/boot.rs"] mod boot;`.
#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Settings the agent accepts (cloudfoundry/bosh-agent settings/settings.go): a dynamic network with QEMU's user-mode
/// DNS, no NTP (sync-time would wait for unreachable servers), a local blobstore.
pub fn agent_settings(agent_id: &str) -> Value {
    json!({
        "agent_id": agent_id,
        "blobstore": { "provider": "local", "options": { "blobstore_path": "/var/vcap/micro_bosh/data/cache" } },
        "disks": { "system": "/dev/vda", "persistent": {} },
        "env": { "bosh": { "mbus": { "cert": {} } } },
        "networks": { "default": { "type": "dynamic", "dns": ["10.0.2.3"], "default": ["dns", "gateway"] } },
        "ntp": [],
        "mbus": "https://mbus:mbus@0.0.0.0:6868",
        "vm": { "name": format!("vm-{agent_id}") }
    })
}

/// File names on an ISO as `isoinfo -f -R` lists them (Rock Ridge names).
pub fn iso_files(iso: &Path) -> Result<Vec<String>> {
    let out = Command::new("isoinfo")
        .args(["-R", "-f", "-i"])
        .arg(iso)
        .output()
        .context("cannot run isoinfo")?;
    if !out.status.success() {
        bail!(
            "isoinfo {}: {}",
            iso.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    files.sort();
    Ok(files)
}

/// The volume label of an ISO (`isoinfo -d`).
pub fn iso_label(iso: &Path) -> Result<String> {
    let out = Command::new("isoinfo")
        .args(["-d", "-i"])
        .arg(iso)
        .output()
        .context("cannot run isoinfo")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("Volume id: "))
        .map(|s| s.trim().to_string())
        .with_context(|| format!("{}: no volume id", iso.display()))
}

/// One file's content from an ISO (`isoinfo -x` with the ISO9660 name, e.g. `/ENV.;1`, or
/// with -R the Rock Ridge path).
pub fn iso_read(iso: &Path, path: &str) -> Result<Vec<u8>> {
    let out = Command::new("isoinfo")
        .args(["-R", "-x", path, "-i"])
        .arg(iso)
        .output()
        .context("cannot run isoinfo")?;
    if !out.status.success() {
        bail!(
            "isoinfo -x {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}
