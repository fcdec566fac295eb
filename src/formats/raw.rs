//! Sparse raw copy (holes stay holes) and the trivial raw checker.
use super::source::{is_zero, RawDisk};
use super::{CheckReport, DiskWriter};
use anyhow::{Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes read per step: all-zero chunks of this size become holes in the copy.
const CHUNK: u64 = 1 << 20;
/// Hole granularity inside a chunk: the usual filesystem block.
const BLOCK: usize = 4096;

/// Copies the raw disk, writing only the non-zero 4 KiB blocks of the
/// chunks that hold data; the rest stays a hole, and the
/// final `set_len` gives the copy the exact size of the source.
pub struct RawWriter;

impl DiskWriter for RawWriter {
    fn write(&self, disk: &RawDisk, out: &mut File) -> Result<()> {
        for chunk in disk.data_chunks(CHUNK) {
            let chunk = chunk?;
            if let Some(data) = chunk.data {
                let offset = chunk.index * CHUNK;
                let len = (disk.size() - offset).min(CHUNK) as usize; // the last chunk is zero-padded
                write_nonzero_blocks(out, &data[..len], offset)?;
            }
        }
        out.set_len(disk.size())
            .context("cannot set the file length")?;
        Ok(())
    }
}

/// Writes the runs of non-zero filesystem blocks of `data` (at disk `offset`): zero blocks
/// inside a non-zero chunk stay holes as well.
fn write_nonzero_blocks(out: &File, data: &[u8], offset: u64) -> Result<()> {
    let mut run: Option<usize> = None; // start of the current non-zero run
    for (i, block) in data.chunks(BLOCK).enumerate() {
        match (is_zero(block), run) {
            (false, None) => run = Some(i * BLOCK),
            (true, Some(start)) => {
                out.write_all_at(&data[start..i * BLOCK], offset + start as u64)
                    .context("write error")?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        out.write_all_at(&data[start..], offset + start as u64)
            .context("write error")?;
    }
    Ok(())
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
