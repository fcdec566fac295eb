//! A stemcell tarball under test: its infrastructure (from `stemcell.MF`) and its disk, taken
//! out of the `image` member as a sparse raw file. The `image` member is a gzip tar holding the
//! disk (`root.img` raw or qcow2, `image-disk1.vmdk` beside the OVF), or a bzip2 stream of a VHD
//! (CloudStack). Formats other than raw are turned into raw with `qemu-img convert`, which
//! writes holes for zeros.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What [`unpack`] found.
pub struct StemcellDisk {
    /// `cloud_properties.infrastructure` of `stemcell.MF`, e.g. `openstack`.
    pub infrastructure: String,
    /// The raw disk, inside the caller's work directory.
    pub raw: PathBuf,
}

/// Whether `path` is a stemcell tarball: a gzip tar whose first member is `stemcell.MF`.
pub fn is_stemcell(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)));
    let Ok(mut entries) = archive.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(first)) if first.path().is_ok_and(|p| p.as_os_str() == "stemcell.MF"))
}

/// Reads the stemcell at `path` in one pass and writes its disk as raw under `work`.
pub fn unpack(path: &Path, work: &Path) -> Result<StemcellDisk> {
    let name = path.display();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)));
    let mut infrastructure = None;
    let mut disk = None;
    for entry in archive
        .entries()
        .with_context(|| format!("{name}: not a tar"))?
    {
        let mut entry = entry.with_context(|| format!("{name}: unreadable member"))?;
        let member = entry.path()?.to_string_lossy().into_owned();
        match member.trim_start_matches("./") {
            "stemcell.MF" => {
                let mut text = String::new();
                entry.read_to_string(&mut text)?;
                infrastructure =
                    Some(infrastructure_of(&text).with_context(|| format!("{name}: stemcell.MF"))?);
            }
            "image" => {
                if entry.header().size()? == 0 {
                    bail!("{name}: a light stemcell (empty image): no disk to test");
                }
                disk =
                    Some(image_disk(&mut entry, work).with_context(|| format!("{name}: image"))?);
            }
            _ => {}
        }
    }
    let Some(infrastructure) = infrastructure else {
        bail!("{name}: no stemcell.MF member")
    };
    let Some(disk) = disk else {
        bail!("{name}: no image member")
    };
    let raw = to_raw(&disk, work)?;
    Ok(StemcellDisk {
        infrastructure,
        raw,
    })
}

/// `cloud_properties.infrastructure`, the name the CPIs read.
fn infrastructure_of(manifest: &str) -> Result<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(manifest)?;
    doc.get("cloud_properties")
        .and_then(|c| c.get("infrastructure"))
        .and_then(|i| i.as_str())
        .map(str::to_string)
        .context("no cloud_properties.infrastructure")
}

/// Writes the disk inside the `image` member to `work`: the disk member of a gzip tar, or the
/// whole bzip2 stream decompressed.
fn image_disk(image: &mut impl Read, work: &Path) -> Result<PathBuf> {
    let mut image = std::io::BufReader::with_capacity(1 << 20, image);
    let head = std::io::BufRead::fill_buf(&mut image)?.to_vec();
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = tar::Archive::new(flate2::read::MultiGzDecoder::new(image));
        for entry in inner.entries()? {
            let mut entry = entry?;
            let member = entry.path()?.to_string_lossy().into_owned();
            let disk_like = [".img", ".vmdk", ".qcow2", ".vhd", ".raw"]
                .iter()
                .any(|ext| member.ends_with(ext));
            if disk_like && entry.header().entry_type().is_file() {
                let out = work.join("disk.image");
                write_sparse(&mut entry, &out)?;
                return Ok(out);
            }
        }
        bail!("the image tarball holds no disk (root.img, *.vmdk, *.qcow2, *.vhd)");
    }
    if head.starts_with(b"BZh") {
        let out = work.join("disk.image");
        write_sparse(&mut bzip2::read::MultiBzDecoder::new(image), &out)?;
        return Ok(out);
    }
    bail!("neither a gzip tar nor a bzip2 stream")
}

/// Copies `src` to a new file, seeking over whole zero blocks (a raw disk is mostly holes).
fn write_sparse(src: &mut impl Read, out: &Path) -> Result<()> {
    let mut file =
        File::create(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = src.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(filled as i64))?;
        } else {
            file.write_all(&buf[..filled])?;
        }
        len += filled as u64;
    }
    file.set_len(len)?;
    Ok(())
}

/// The disk as raw: itself when raw, else converted by `qemu-img` (the original is removed).
fn to_raw(disk: &Path, work: &Path) -> Result<PathBuf> {
    use crate::formats::DiskKind;
    let format = match crate::formats::detect(disk)? {
        DiskKind::Raw => return Ok(disk.to_path_buf()),
        DiskKind::Qcow2 => "qcow2",
        DiskKind::Vmdk => "vmdk",
        DiskKind::VhdDynamic | DiskKind::VhdFixed => "vpc",
    };
    let raw = work.join("disk.raw");
    let mut cmd = Command::new("qemu-img");
    cmd.arg("convert");
    if format == "vpc" {
        // The footer's current size, not the CHS geometry (which rounds the disk down).
        cmd.args([
            "--image-opts",
            &format!(
                "driver=vpc,force_size_calc=current_size,file.filename={}",
                disk.display()
            ),
        ]);
    } else {
        cmd.args(["-f", format]).arg(disk);
    }
    let out = cmd
        .args(["-O", "raw"])
        .arg(&raw)
        .output()
        .context("qemu-img: cannot run (install the Debian package qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "qemu-img convert of the {format} disk failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::remove_file(disk)?;
    Ok(raw)
}
