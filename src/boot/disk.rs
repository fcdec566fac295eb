//! The stemcell's disk, made bootable without touching the stemcell: the `image` member's
//! disk extracted (sparse) and turned into a raw file, its `agent.json` read from the root
//! filesystem with debugfs (no mount), and a throwaway qcow2 overlay, larger than the image as
//! a cloud's root disk is, that takes every write of the boot.

use super::tools::run;
use crate::recipe::agent_settings::AgentConfig;
use crate::stemcell::manifest::ManifestView;
use crate::tar_errors::describe;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `stemcell.MF` alone: it is the first member of a stemcell, so a light or warden stemcell
/// is refused before any disk is read.
pub fn read_manifest(stemcell: &Path) -> Result<ManifestView> {
    let file = std::fs::File::open(stemcell)
        .with_context(|| format!("{}: cannot open", stemcell.display()))?;
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let not_stemcell =
        |e: &dyn std::fmt::Display| anyhow!("{}: not a stemcell tarball: {e}", stemcell.display());
    for entry in archive.entries().map_err(|e| not_stemcell(&describe(&e)))? {
        let mut entry = entry.map_err(|e| not_stemcell(&describe(&e)))?;
        if entry.path_bytes().as_ref() == b"stemcell.MF" {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| not_stemcell(&e))?;
            return ManifestView::parse(&text).with_context(|| stemcell.display().to_string());
        }
    }
    bail!(
        "{}: no stemcell.MF member (not a stemcell)",
        stemcell.display()
    )
}

/// Extracts the stemcell's disk into `dir` and returns it as a raw file (converted with
/// qemu-img when the cloud's format is qcow2, VMDK or VHD).
pub fn raw_disk(stemcell: &Path, dir: &Path) -> Result<PathBuf> {
    let extract = dir.join("image");
    std::fs::create_dir_all(&extract)?;
    let scan = crate::stemcell::reader::read_stemcell(stemcell, Some(&extract))?;
    let image = scan
        .image
        .ok_or_else(|| anyhow!("{}: no image member", stemcell.display()))?;
    if let Some(p) = image.problems.first() {
        bail!("{}: {p}", stemcell.display());
    }
    let (disk, format) = if let Some((format, _)) = &image.bzip2_disk {
        (extract.join("disk.vhd"), format.clone())
    } else {
        let inner = image
            .inner
            .iter()
            .find(|m| m.format != "xml" && !m.name.ends_with(".mf") && !m.name.ends_with(".ovf"))
            .filter(|m| image.extracted.iter().any(|(n, _)| *n == m.name))
            .ok_or_else(|| anyhow!("{}: the image member holds no disk", stemcell.display()))?;
        (extract.join(&inner.name), inner.format.clone())
    };
    let raw = dir.join("disk.raw");
    if format == "raw" {
        std::fs::rename(&disk, &raw)?;
    } else {
        let mut cmd = Command::new("qemu-img");
        cmd.args(["convert", "-O", "raw"]);
        if format.starts_with("vhd") {
            // A VHD's size is its footer's current size, not the CHS geometry QEMU guesses
            // from some creator applications.
            cmd.arg("--image-opts").arg(format!(
                "driver=vpc,force_size_calc=current_size,file.filename={}",
                disk.display()
            ));
        } else {
            let f = if format.starts_with("qcow2") {
                "qcow2"
            } else {
                "vmdk"
            };
            cmd.args(["-f", f]).arg(&disk);
        }
        run(cmd.arg(&raw))
            .with_context(|| format!("{}: converting the {format} disk", stemcell.display()))?;
    }
    std::fs::remove_dir_all(&extract)?;
    Ok(raw)
}

/// Byte offset of the root filesystem: the last Linux partition (the official layouts put
/// root last).
fn root_offset(raw: &Path) -> Result<u64> {
    let out = run(Command::new("sfdisk").arg("-J").arg(raw))
        .context("the disk has no partition table")?;
    let table: serde_json::Value = serde_json::from_slice(&out)?;
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let linux =
        |t: &str| t == "83" || t.eq_ignore_ascii_case("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    let root = parts
        .iter()
        .rev()
        .find(|p| p["type"].as_str().is_some_and(linux))
        .ok_or_else(|| anyhow!("the disk has no Linux partition"))?;
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    Ok(root["start"].as_u64().unwrap_or(0) * sector)
}

/// The `agent.json` of the disk's root filesystem.
pub fn agent_config(raw: &Path) -> Result<AgentConfig> {
    let fs = format!("{}?offset={}", raw.display(), root_offset(raw)?);
    let out = Command::new("debugfs")
        .args(["-R", "cat /var/vcap/bosh/agent.json", &fs])
        .output()
        .context("cannot run debugfs")?;
    if out.stdout.is_empty() {
        bail!("the root filesystem has no /var/vcap/bosh/agent.json (is this a BOSH stemcell?)");
    }
    serde_json::from_slice(&out.stdout).context("/var/vcap/bosh/agent.json")
}

/// A qcow2 overlay on `base` of `size` bytes: the boot writes only there.
pub fn overlay(base: &Path, out: &Path, size: u64) -> Result<()> {
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(out)
        .arg(size.to_string()))?;
    Ok(())
}

/// An empty qcow2 disk (the ephemeral disk a cloud adds).
pub fn blank(out: &Path, size: u64) -> Result<()> {
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(out)
        .arg(size.to_string()))?;
    Ok(())
}
