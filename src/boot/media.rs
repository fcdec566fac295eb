//! Settings media, written with genisoimage (ISO9660 with Rock Ridge and Joliet names):
//! - an OpenStack config drive as Nova writes it: label `config-2`, the same metadata and user
//!   data under `openstack/latest/` and `ec2/latest/` (the official agent.json reads the paths
//!   it names; cloudfoundry/bosh-agent infrastructure/config_drive_settings_source.go);
//! - a vSphere env CD-ROM as the vSphere CPI makes it: only the file the CDROM source reads
//!   (`env`) at the root (cloudfoundry/bosh-vsphere-cpi `agent_env.rb`).

use super::tools::run;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file inside the tree"))?;
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

fn genisoimage(tree: &Path, label: &str, out: &Path) -> Result<()> {
    run(Command::new("genisoimage")
        .args([
            "-quiet",
            "-J",
            "-R",
            "-input-charset",
            "utf-8",
            "-V",
            label,
            "-o",
        ])
        .arg(out)
        .arg(tree))?;
    Ok(())
}

/// The config drive. `meta_data_path` and `user_data_path` are the agent.json's (relative to
/// the drive's root); both the openstack and ec2 trees are written as Nova does.
pub fn config_drive(
    settings: &Value,
    meta_data_path: &str,
    user_data_path: &str,
    ssh_public_key: &str,
    tree: &Path,
    out: &Path,
) -> Result<()> {
    let id = settings["agent_id"].as_str().unwrap_or("agent");
    let openstack_meta = json!({
        "uuid": id, "name": id, "hostname": "bosh-stemcell",
        "public_keys": { "default": ssh_public_key },
    });
    let ec2_meta = json!({
        "instance-id": id, "hostname": "bosh-stemcell",
        "public-keys": { "0": { "openssh-key": ssh_public_key } },
    });
    let user = serde_json::to_vec(settings)?;
    write(
        &tree.join("openstack/latest/meta_data.json"),
        &serde_json::to_vec(&openstack_meta)?,
    )?;
    write(&tree.join("openstack/latest/user_data"), &user)?;
    write(
        &tree.join("ec2/latest/meta-data.json"),
        &serde_json::to_vec(&ec2_meta)?,
    )?;
    write(&tree.join("ec2/latest/user-data"), &user)?;
    // Whatever else the agent.json names (the files above are the official paths).
    if !tree.join(meta_data_path).exists() {
        write(&tree.join(meta_data_path), &serde_json::to_vec(&ec2_meta)?)?;
    }
    if !tree.join(user_data_path).exists() {
        write(&tree.join(user_data_path), &user)?;
    }
    genisoimage(tree, "config-2", out)
}

/// The env CD-ROM: `file_name` (the CDROM source's `FileName`) at the root, nothing else.
pub fn env_cdrom(settings: &Value, file_name: &str, tree: &Path, out: &Path) -> Result<()> {
    write(&tree.join(file_name), &serde_json::to_vec(settings)?)?;
    genisoimage(tree, "CDROM", out)
}
