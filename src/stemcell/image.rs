//! The `image` member, per disk format (cloudfoundry/bosh-linux-stemcell-builder
//! `stemcell_builder/stages/prepare_*_image_stemcell/apply.sh`): a gzip tar
//! of `root.img` (qcow2 or raw), `disk.raw` (Google), `root.vhd` (Azure, fixed VHD), the
//! vSphere OVF tar, a bzip2 stream of a dynamic VHD (CloudStack, no tar), or a gzip tar of the
//! root filesystem (warden). Every builder returns the finished file with its SHA-1, computed
//! while it was written.

use super::tarball::{finish_gz_tar, gz_tar, HashWriter};
use crate::formats::source::RawDisk;
use crate::formats::{Format, OvfOptions, Qcow2Compat};
use crate::parallel::gzip::{GzOptions, ParallelGzWriter};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use tempfile::NamedTempFile;

pub use crate::recipe::infrastructure::ImageKind;

/// gzip level of the members that hold a whole uncompressed disk (raw, Google's `disk.raw`,
/// Azure's fixed VHD): the fastest that writes no more than the official builder's `tar zcf`
/// (gzip -6). Measured on the debian-bookworm OpenStack raw disk (5 GiB, 1726 MiB of data),
/// the parallel writer: level 6 in 9.9 s, 583.9 MB; level 5 in 8.4 s, 587.4 MB; level 4
/// 599.2 MB; GNU `gzip -6` writes 588.3 MB of the same disk (in 131 s).
const DISK_GZIP_LEVEL: u32 = 5;

/// gzip level of the qcow2 tar: its clusters are already deflated, a fast level is enough.
const QCOW2_GZIP_LEVEL: u32 = 1;

/// A finished image member: a temporary file (deleted on drop) and its SHA-1.
pub struct ImageFile {
    pub file: NamedTempFile,
    pub sha1: String,
    pub size: u64,
}

impl ImageFile {
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// What the progress display calls the pass over the raw disk for `kind`.
fn progress_label(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::Qcow2Tar => "qcow2 image",
        ImageKind::RawTar | ImageKind::RawdiskTar => "raw image (gzip)",
        ImageKind::VhdTar => "fixed VHD image",
        ImageKind::OvfTar => "OVF/VMDK image",
        ImageKind::VhdBzip2 => "dynamic VHD",
        ImageKind::FilesTar => "root filesystem",
    }
}

/// Where intermediate files go: hidden `.partial` files in `dir`, removed on drop.
fn temp_in(dir: &Path, what: &str) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!(".{what}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))
}

/// Converts `disk` with `format` into a temporary file in `dir`.
fn convert(disk: &RawDisk, format: &Format, dir: &Path) -> Result<NamedTempFile> {
    let mut tmp = temp_in(dir, "disk")?;
    format
        .writer()
        .write(disk, tmp.as_file_mut())
        .with_context(|| format!("{}: cannot convert", disk.path().display()))?;
    Ok(tmp)
}

/// Builds the image member of `kind` from the raw `disk`, in `dir`.
pub fn from_disk(
    kind: ImageKind,
    disk_path: &Path,
    ovf: &OvfOptions,
    dir: &Path,
    mtime: u64,
) -> Result<ImageFile> {
    let mut disk = RawDisk::open(disk_path)?;
    disk.show_progress(progress_label(kind));
    let out = temp_in(dir, "image")?;
    let file = out.as_file().try_clone()?;
    let (sha1, size) = match kind {
        ImageKind::RawTar | ImageKind::RawdiskTar => {
            let mut tar = gz_tar(file, DISK_GZIP_LEVEL, mtime);
            tar.append_raw_disk(kind.inner_members()[0], &disk)?;
            let (_, sha1, size) = finish_gz_tar(tar)?;
            (sha1, size)
        }
        ImageKind::Qcow2Tar | ImageKind::VhdTar => {
            let format = if kind == ImageKind::Qcow2Tar {
                Format::Qcow2 { compat: Qcow2Compat::V2, compressed: true }
            } else {
                Format::VhdFixed
            };
            let converted = convert(&disk, &format, dir)?;
            let level = if kind == ImageKind::Qcow2Tar { QCOW2_GZIP_LEVEL } else { DISK_GZIP_LEVEL };
            let mut tar = gz_tar(file, level, mtime);
            tar.append_file(kind.inner_members()[0], converted.path())?;
            let (_, sha1, size) = finish_gz_tar(tar)?;
            (sha1, size)
        }
        ImageKind::OvfTar => {
            // The OVA module writes the whole (uncompressed) vSphere tar; gzip wraps it.
            let mut gz = ParallelGzWriter::new(HashWriter::new(file), GzOptions::default());
            crate::formats::ova::write_vsphere_image_tar(&disk, ovf, &mut gz)?;
            let (_, sha1, size) = gz.finish()?.finish();
            (sha1, size)
        }
        ImageKind::VhdBzip2 => {
            let converted = convert(&disk, &Format::VhdDynamic, dir)?;
            let mut hw = HashWriter::new(file);
            crate::formats::bzip2::compress_file(converted.path(), &mut hw)?;
            let (_, sha1, size) = hw.finish();
            (sha1, size)
        }
        ImageKind::FilesTar => bail!(
            "{}: the warden image is a tar of the root filesystem and cannot be made from a raw disk; build it from the root directory (stemcell build)",
            disk_path.display()
        ),
    };
    disk.finish_progress();
    Ok(ImageFile {
        file: out,
        sha1,
        size,
    })
}

/// Builds the warden image (a gzip tar of the whole root filesystem) from `root`, in `dir`.
/// Member names have no `./` prefix (the official `tar zcf image .` writes `./etc/...`; the
/// warden CPI extracts either form). The caller's tree must
/// already have `/tmp` at 1777 (the official builder chmods it before packing).
pub fn from_root_dir(root: &Path, dir: &Path) -> Result<ImageFile> {
    let out = temp_in(dir, "image")?;
    let file = out.as_file().try_clone()?;
    let gz = ParallelGzWriter::new(HashWriter::new(file), GzOptions::default());
    let gz = write_files_tar(root, gz)?;
    let (_, sha1, size) = gz.finish()?.finish();
    Ok(ImageFile {
        file: out,
        sha1,
        size,
    })
}

/// Writes the tar of the root filesystem at `root` into `out` (ownership, modes, symlinks and
/// device nodes preserved; symlinks not followed) and returns `out`.
pub fn write_files_tar<W: Write>(root: &Path, out: W) -> Result<W> {
    if !root.is_dir() {
        bail!("{}: not a directory", root.display());
    }
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    // The top directory itself, as `./`.
    let meta = std::fs::symlink_metadata(root)?;
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    b.append_data(&mut h, "./", std::io::empty())
        .with_context(|| format!("{}: cannot archive", root.display()))?;
    let mut entries: Vec<_> = std::fs::read_dir(root)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let rel = Path::new(".").join(&name);
        let path = e.path();
        if e.file_type()?.is_dir() {
            b.append_dir_all(&rel, &path)
                .with_context(|| format!("{}: cannot archive", path.display()))?;
        } else {
            b.append_path_with_name(&path, &rel)
                .with_context(|| format!("{}: cannot archive", path.display()))?;
        }
    }
    let out = b.into_inner().context("cannot finish the files tar")?;
    Ok(out)
}
