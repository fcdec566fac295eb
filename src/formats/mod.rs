//! Disk format writers and readers. Every writer streams one pass over a [`RawDisk`], skips
//! holes and zero chunks, compresses on all cores through [`crate::parallel::pipeline::ordered_map`], and keeps
//! memory bounded whatever the disk size. Every format also has a checker, used by
//! `stemcell verify`, that parses the file with the project's own reader.

pub mod bzip2;
pub mod ova;
pub mod ovf;
pub mod qcow2;
pub mod raw;
pub mod source;
pub mod vhd;
pub mod vmdk;

use crate::output::AtomicOutput;
use anyhow::Result;
use source::RawDisk;
use std::fs::File;
use std::path::Path;

/// qcow2 header version: compat 0.10 is version 2, compat 1.1 is version 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qcow2Compat {
    V2,
    V3,
}

/// Firmware the VM description asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Efi,
}

/// What the OVF descriptor says about the virtual machine.
#[derive(Clone, Debug)]
pub struct OvfOptions {
    /// VirtualSystem id and name.
    pub name: String,
    pub firmware: Firmware,
    pub cpus: u32,
    pub memory_mib: u32,
}

/// A disk format to write.
#[derive(Clone, Debug)]
pub enum Format {
    Qcow2 {
        compat: Qcow2Compat,
        compressed: bool,
    },
    /// Dynamic VHD, 2 MiB blocks (CloudStack/XenServer rules).
    VhdDynamic,
    /// Fixed VHD (Azure); the virtual size must be a whole number of MiB.
    VhdFixed,
    /// VMDK streamOptimized (version 3, zlib grains).
    Vmdk,
    /// A standalone OVA: descriptor, manifest and streamOptimized VMDK in a tar.
    Ova(OvfOptions),
    /// Sparse raw copy.
    Raw,
}

/// One writer per disk format, fed by the sparse reader.
pub trait DiskWriter {
    /// Writes the whole image for `disk` to `out` (positioned at 0, empty).
    fn write(&self, disk: &RawDisk, out: &mut File) -> Result<()>;
}

impl Format {
    /// The writer for this format.
    pub fn writer(&self) -> Box<dyn DiskWriter> {
        match self {
            Format::Qcow2 { compat, compressed } => Box::new(qcow2::Qcow2Writer {
                compat: *compat,
                compressed: *compressed,
            }),
            Format::VhdDynamic => Box::new(vhd::VhdWriter { fixed: false }),
            Format::VhdFixed => Box::new(vhd::VhdWriter { fixed: true }),
            Format::Vmdk => Box::new(vmdk::VmdkWriter),
            Format::Ova(opts) => Box::new(ova::OvaWriter {
                options: opts.clone(),
            }),
            Format::Raw => Box::new(raw::RawWriter),
        }
    }
}

/// Converts the raw disk at `src` into `dst`. `dst` appears only when complete; an existing
/// `dst` is refused unless `force`.
pub fn convert(src: &Path, dst: &Path, format: &Format, force: bool) -> Result<()> {
    let mut disk = RawDisk::open(src)?;
    let mut out = AtomicOutput::create(dst, force)?;
    disk.show_progress(&format!("writing {}", dst.display()));
    format
        .writer()
        .write(&disk, out.file())
        .map_err(|e| anyhow::anyhow!("{}: {:#}", dst.display(), e))?;
    disk.finish_progress();
    out.commit()
}

/// A disk image kind recognised by its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskKind {
    Qcow2,
    VhdDynamic,
    VhdFixed,
    Vmdk,
    Raw,
}

/// What a checker found: the virtual size it read and every problem, one line each.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub virtual_size: u64,
    /// Human-readable facts (compat, cluster size, allocated clusters...), `key: value`.
    pub details: Vec<(String, String)>,
    pub problems: Vec<String>,
}

/// Recognises a disk image by its magic bytes (qcow2 "QFI\xfb", VMDK "KDMV", VHD "conectix"
/// at 0 or in the last 512 bytes); anything else is raw.
pub fn detect(path: &Path) -> Result<DiskKind> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f =
        File::open(path).map_err(|e| anyhow::anyhow!("{}: cannot open: {e}", path.display()))?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 8];
    let n = f.read(&mut head)?;
    if n >= 4 && head[..4] == *b"QFI\xfb" {
        return Ok(DiskKind::Qcow2);
    }
    if n >= 4 && head[..4] == *b"KDMV" {
        return Ok(DiskKind::Vmdk);
    }
    if n == 8 && head == *b"conectix" {
        return Ok(DiskKind::VhdDynamic);
    }
    if len >= 512 {
        f.seek(SeekFrom::Start(len - 512))?;
        f.read_exact(&mut head)?;
        if head == *b"conectix" {
            return Ok(DiskKind::VhdFixed);
        }
    }
    Ok(DiskKind::Raw)
}

/// Opens an image for a checker: the file and its length, errors naming the file.
pub(crate) fn open_image(path: &Path) -> Result<(File, u64)> {
    use anyhow::Context;
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("{}: cannot stat", path.display()))?
        .len();
    Ok((file, len))
}

/// Parses `path` as `kind` with the project's own reader, decompressing and bounds-checking
/// every cluster, grain or block.
pub fn check(path: &Path, kind: DiskKind) -> Result<CheckReport> {
    match kind {
        DiskKind::Qcow2 => qcow2::check(path),
        DiskKind::VhdDynamic | DiskKind::VhdFixed => vhd::check(path),
        DiskKind::Vmdk => vmdk::check(path),
        DiskKind::Raw => raw::check(path),
    }
}
