//! Sparse raw copy (holes stay holes) and the trivial raw checker.
use super::source::RawDisk;
use super::{CheckReport, DiskWriter};
use anyhow::{Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes read per step: all-zero chunks of this size become holes in the copy.
const CHUNK: u64 = 1 << 20;

/// Copies the raw disk, writing only non-zero 1 MiB chunks; the rest stays a hole, and the
/// final `set_len` gives the copy the exact size of the source.
pub struct RawWriter;

impl DiskWriter for RawWriter {
    fn write(&self, disk: &RawDisk, out: &mut File) -> Result<()> {
        for chunk in disk.data_chunks(CHUNK) {
            let chunk = chunk?;
            if let Some(data) = chunk.data {
                let offset = chunk.index * CHUNK;
                let len = (disk.size() - offset).min(CHUNK) as usize; // the last chunk is zero-padded
                out.write_all_at(&data[..len], offset)
                    .context("write error")?;
            }
        }
        out.set_len(disk.size())
            .context("cannot set the file length")?;
        Ok(())
    }
}

/// A raw image has no structure: its virtual size is its file size, which must be whole sectors.
pub fn check(path: &Path) -> Result<CheckReport> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot stat", path.display()))?;
    let size = meta.len();
    let mut report = CheckReport {
        virtual_size: size,
        ..Default::default()
    };
    if size % 512 != 0 {
        report
            .problems
            .push(format!("size {size} is not a multiple of 512"));
    }
    if size == 0 {
        report.problems.push("raw disk is empty".into());
    }
    use std::os::unix::fs::MetadataExt;
    report
        .details
        .push(("allocated_bytes".into(), (meta.blocks() * 512).to_string()));
    Ok(report)
}
