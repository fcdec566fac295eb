//! The root filesystem's file list of a stemcell image, read without mounting anything: for a
//! disk image, the partition table (`sfdisk --json`) and the ext4 root partition (the
//! `ext4-view` reader); for a warden image, the root filesystem tar itself. qcow2, VMDK and
//! dynamic VHD disks are first expanded to a sparse raw file with `qemu-img convert` (a
//! reader of the input, not a producer of output).

use super::reader::read_stemcell;
use crate::recipe::arch::Arch;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// One file of the root filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// Absolute path inside the image, e.g. `/etc/hostname`.
    pub path: String,
    /// `file`, `dir`, `symlink`, `other`.
    pub kind: String,
    /// Permission bits, octal text (`0644`, `4755`).
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// `sha256:<hex>` of a regular file's content, the target of a symlink, empty otherwise.
    pub digest: String,
}

/// Every file of the stemcell's root filesystem, by path.
pub fn list_stemcell_files(stemcell: &Path, tmp: &Path) -> Result<BTreeMap<String, FileInfo>> {
    let scan = read_stemcell(stemcell, Some(tmp))?;
    let image = scan
        .image
        .as_ref()
        .with_context(|| format!("{}: no image member", stemcell.display()))?;
    if image.container == "empty" {
        bail!(
            "{}: a light stemcell has no disk to list (--files needs heavy stemcells)",
            stemcell.display()
        );
    }
    // The warden image is the root filesystem tar: list it directly.
    let disk = image.extracted.iter().find(|(n, _)| {
        [".img", ".raw", ".vhd", ".vmdk"]
            .iter()
            .any(|e| n.ends_with(e))
    });
    let Some((name, path)) = disk else {
        return list_image_tar(stemcell);
    };
    let what = format!("{}: {name}", stemcell.display());
    let mut head = [0u8; 8];
    File::open(path)?
        .read_exact(&mut head)
        .with_context(|| format!("{what}: cannot read"))?;
    let raw = if head.starts_with(b"QFI\xfb")
        || head.starts_with(b"KDMV")
        || head.starts_with(b"conectix")
    {
        let raw = tmp.join(format!("{name}.expanded.raw"));
        let out = duct::cmd!("qemu-img", "convert", "-O", "raw", path, &raw)
            .stderr_capture()
            .stdout_null()
            .unchecked()
            .run()
            .with_context(|| format!("{what}: cannot run qemu-img (install qemu-utils)"))?;
        if !out.status.success() {
            bail!(
                "{what}: qemu-img cannot read it: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let _ = std::fs::remove_file(path);
        raw
    } else {
        path.clone()
    };
    list_disk(&raw).with_context(|| what.clone())
}

/// The root filesystem of a raw disk: the last partition that holds ext4 (the root partition
/// is the last one), or the whole file when it has no partition table.
pub fn list_disk(raw: &Path) -> Result<BTreeMap<String, FileInfo>> {
    list_ext4(&root_filesystem(raw)?)
}

/// The architecture of a raw disk's root filesystem, from the ELF header of its `dash`; `None`
/// when the disk holds no ext4 root or no `dash`.
pub fn disk_arch(raw: &Path) -> Option<Arch> {
    let fs = root_filesystem(raw).ok()?;
    ["/usr/bin/dash", "/bin/dash"]
        .iter()
        .find_map(|p| fs.read(*p).ok().and_then(|elf| Arch::of_elf(&elf)))
}

/// The ext4 root filesystem of a raw disk (see [`list_disk`]), read in place.
fn root_filesystem(raw: &Path) -> Result<ext4_view::Ext4> {
    let mut offsets = partition_offsets(raw)?;
    offsets.reverse();
    offsets.push(0);
    let mut last_error = None;
    for off in offsets {
        let reader = Box::new(Partition {
            file: File::open(raw)?,
            offset: off,
        });
        match ext4_view::Ext4::load(reader) {
            Ok(fs) => return Ok(fs),
            Err(e) => last_error = Some(e),
        }
    }
    Err(anyhow!(
        "no ext4 root filesystem found ({})",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Byte offsets of the partitions, in table order (empty without a table).
fn partition_offsets(raw: &Path) -> Result<Vec<u64>> {
    let out = duct::cmd!("sfdisk", "--json", raw)
        .stderr_null()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run sfdisk (install fdisk)")?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("sfdisk --json: unexpected output")?;
    let t = &v["partitiontable"];
    let sector = t["sectorsize"].as_u64().unwrap_or(512);
    Ok(t["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["start"].as_u64())
                .map(|s| s * sector)
                .collect()
        })
        .unwrap_or_default())
}

struct Partition {
    file: File,
    offset: u64,
}

impl ext4_view::Ext4Read for Partition {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.file.seek(SeekFrom::Start(self.offset + start))?;
        self.file.read_exact(dst)?;
        Ok(())
    }
}

fn list_ext4(fs: &ext4_view::Ext4) -> Result<BTreeMap<String, FileInfo>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![ext4_view::PathBuf::new("/")];
    while let Some(dir) = stack.pop() {
        for entry in fs
            .read_dir(&dir)
            .map_err(|e| anyhow!("{}: {e}", dir.display()))?
        {
            let entry = entry.map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            let name = entry.file_name();
            if name.as_str() == Ok(".") || name.as_str() == Ok("..") {
                continue;
            }
            let path = entry.path();
            let shown = String::from_utf8_lossy(path.as_ref()).into_owned();
            let m = entry.metadata().map_err(|e| anyhow!("{shown}: {e}"))?;
            let ft = m.file_type();
            let (kind, digest) = if ft.is_dir() {
                stack.push(path.clone());
                ("dir", String::new())
            } else if ft.is_symlink() {
                let t = fs.read_link(&path).map_err(|e| anyhow!("{shown}: {e}"))?;
                (
                    "symlink",
                    format!("-> {}", String::from_utf8_lossy(t.as_ref())),
                )
            } else if ft.is_regular_file() {
                let mut f = fs.open(&path).map_err(|e| anyhow!("{shown}: {e}"))?;
                ("file", digest(&mut f).with_context(|| shown.clone())?)
            } else {
                ("other", String::new())
            };
            let info = FileInfo {
                path: shown.clone(),
                kind: kind.into(),
                mode: format!("{:04o}", m.mode()),
                uid: m.uid(),
                gid: m.gid(),
                size: if kind == "dir" { 0 } else { m.len() },
                digest,
            };
            out.insert(shown, info);
        }
    }
    Ok(out)
}

/// The warden image: a gzip tar of the root filesystem inside the `image` member.
fn list_image_tar(stemcell: &Path) -> Result<BTreeMap<String, FileInfo>> {
    let what = stemcell.display();
    let f = File::open(stemcell).with_context(|| format!("{what}: cannot open"))?;
    let mut outer = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
    for e in outer.entries()? {
        let e = e.with_context(|| format!("{what}: corrupt"))?;
        if e.path_bytes().as_ref() != b"image" && e.path_bytes().as_ref() != b"./image" {
            continue;
        }
        let mut inner = tar::Archive::new(flate2::read::MultiGzDecoder::new(e));
        let mut out = BTreeMap::new();
        for f in inner
            .entries()
            .with_context(|| format!("{what}: image is not a gzip tar"))?
        {
            let mut f = f.with_context(|| format!("{what}: image: corrupt"))?;
            let raw = String::from_utf8_lossy(&f.path_bytes()).into_owned();
            let path = format!("/{}", raw.trim_start_matches("./").trim_end_matches('/'));
            if path == "/" {
                continue;
            }
            let h = f.header().clone();
            let t = h.entry_type();
            let (kind, digest) = if t.is_dir() {
                ("dir", String::new())
            } else if t.is_symlink() {
                let target = h
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                ("symlink", format!("-> {target}"))
            } else if t.is_file() || t.is_hard_link() {
                (
                    "file",
                    if t.is_file() {
                        digest(&mut f).with_context(|| path.clone())?
                    } else {
                        String::new()
                    },
                )
            } else {
                ("other", String::new())
            };
            out.insert(
                path.clone(),
                FileInfo {
                    path,
                    kind: kind.into(),
                    mode: format!("{:04o}", h.mode().unwrap_or(0) & 0o7777),
                    uid: h.uid().unwrap_or(0) as u32,
                    gid: h.gid().unwrap_or(0) as u32,
                    size: if kind == "file" {
                        h.size().unwrap_or(0)
                    } else {
                        0
                    },
                    digest,
                },
            );
        }
        return Ok(out);
    }
    bail!("{what}: no image member")
}

fn digest(r: &mut dyn Read) -> Result<String> {
    let mut h = Sha256::new();
    std::io::copy(r, &mut h)?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A scratch directory for the extracted disks: `$TMPDIR`.
pub fn scratch() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("stemcell-diff.")
        .tempdir()
        .context("cannot create a temporary directory")
}
