//! The sparse reader every format writer is fed by: a raw disk image, read in fixed-size
//! chunks, where holes (found with SEEK_DATA/SEEK_HOLE) and all-zero chunks are reported as
//! such without being handed to the writer as data.

use crate::progress::ByteMeter;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A raw disk image opened for conversion. Invariant: `size` is a multiple of 512.
pub struct RawDisk {
    file: File,
    path: PathBuf,
    size: u64,
    /// Counts the bytes read, for the progress display.
    meter: Option<ByteMeter>,
}

/// One chunk of the disk: its index (offset / chunk size) and its bytes, zero-padded to the
/// chunk size when the disk ends inside it. `data` is `None` when the chunk is all zero.
pub struct Chunk {
    pub index: u64,
    pub data: Option<Vec<u8>>,
}

impl RawDisk {
    /// Opens a raw disk; the error names the file and what is wrong with it.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("{}: cannot stat", path.display()))?;
        if !meta.is_file() {
            bail!("{}: not a regular file", path.display());
        }
        let size = meta.len();
        if size == 0 {
            bail!("{}: raw disk is empty", path.display());
        }
        if size % 512 != 0 {
            bail!(
                "{}: raw disk size {} is not a multiple of 512",
                path.display(),
                size
            );
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            meter: None,
        })
    }

    /// Shows the bytes read under `label` (their total: the data ranges), until
    /// [`RawDisk::finish_progress`].
    pub fn show_progress(&mut self, label: &str) {
        let total = self.data_ranges().iter().map(|r| r.end - r.start).sum();
        self.meter = Some(ByteMeter::new(label, total));
    }

    /// The pass over the disk completed: prints its size, time and rate.
    pub fn finish_progress(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.finish();
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Virtual size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads exactly `buf.len()` bytes at `offset`, zero-filling past the end of the disk.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let avail = self.size.saturating_sub(offset).min(buf.len() as u64) as usize;
        self.file
            .read_exact_at(&mut buf[..avail], offset)
            .with_context(|| format!("{}: read error at offset {}", self.path.display(), offset))?;
        buf[avail..].fill(0);
        if let Some(meter) = &self.meter {
            meter.add(avail as u64);
        }
        Ok(())
    }

    /// The byte ranges that may hold data (everything outside them is a hole and reads as
    /// zero). Falls back to the whole disk where the filesystem does not report holes.
    pub fn data_ranges(&self) -> Vec<Range<u64>> {
        let fd = self.file.as_raw_fd();
        let mut out = Vec::new();
        let mut pos: i64 = 0;
        let end = self.size as i64;
        while pos < end {
            // SAFETY: lseek on a file descriptor we own; it only moves the (unused) offset.
            let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
            if data < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ENXIO) {
                    break; // no more data
                }
                return vec![0..self.size];
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let hole = if hole < 0 { end } else { hole.min(end) };
            out.push(data as u64..hole as u64);
            pos = hole;
        }
        out
    }

    /// Indices of the chunks of `chunk_size` bytes that overlap data ranges, in ascending order.
    /// Chunks outside this list are entirely holes.
    pub fn chunks_with_data(&self, chunk_size: u64) -> Vec<u64> {
        let mut idx: Vec<u64> = Vec::new();
        for r in self.data_ranges() {
            let first = r.start / chunk_size;
            let last = (r.end - 1) / chunk_size;
            let from = match idx.last() {
                Some(&l) if l >= first => l + 1,
                _ => first,
            };
            idx.extend(from..=last);
        }
        idx
    }

    /// Number of chunks of `chunk_size` covering the disk (the last one may be partial).
    pub fn chunk_count(&self, chunk_size: u64) -> u64 {
        self.size.div_ceil(chunk_size)
    }

    /// Reads chunk `index`; `data` is `None` if it is all zero.
    pub fn read_chunk(&self, index: u64, chunk_size: u64) -> Result<Chunk> {
        let mut buf = vec![0u8; chunk_size as usize];
        self.read_at(&mut buf, index * chunk_size)?;
        let data = if is_zero(&buf) { None } else { Some(buf) };
        Ok(Chunk { index, data })
    }

    /// Iterates over the chunks that hold data (skipping holes without reading them), in order.
    /// All-zero chunks inside data ranges are still yielded, with `data: None`.
    pub fn data_chunks(&self, chunk_size: u64) -> impl Iterator<Item = Result<Chunk>> + '_ {
        self.chunks_with_data(chunk_size)
            .into_iter()
            .map(move |i| self.read_chunk(i, chunk_size))
    }
}

pub use crate::parallel::is_zero;
