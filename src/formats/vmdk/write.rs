//! The streamOptimized writer: a pure stream in one pass (docs/formats.md "VMDK grains").
//!
//! Layout: header (gdOffset = GD_AT_END), descriptor, padding to sector 128, then for each
//! non-zero grain in ascending LBA order a grain marker with the zlib-compressed grain; after
//! each 512-grain group that has grains, a GT marker and its GT; then GD marker + GD, footer
//! marker + footer (the header with the real gdOffset) and the EOS marker. Only the GD (4 bytes
//! per 32 MiB of disk) and the current GT stay in memory.

use super::layout::*;
use crate::formats::source::RawDisk;
use crate::formats::vhd::source_date_epoch;
use crate::formats::DiskWriter;
use crate::parallel::pipeline::ordered_map;
use anyhow::{bail, Context, Result};
use libdeflater::{CompressionLvl, Compressor};
use sha1::{Digest, Sha1};
use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// Writes a standalone streamOptimized VMDK. The descriptor names the extent after the output
/// file when that name can be found (see [`output_file_name`]), else "disk.vmdk".
pub struct VmdkWriter;

impl DiskWriter for VmdkWriter {
    fn write(&self, disk: &RawDisk, out: &mut File) -> Result<()> {
        let name = output_file_name(out).unwrap_or_else(|| "disk.vmdk".to_string());
        write_stream(disk, out, &name).map(|_| ())
    }
}

/// What [`write_stream`] wrote.
#[derive(Clone, Copy, Debug)]
pub struct StreamInfo {
    /// File size in bytes.
    pub file_size: u64,
    /// Grains stored (non-zero 64 KiB grains).
    pub grains: u64,
}

/// Grains compressed ahead of the writer: bounds memory to a few MiB.
const WINDOW: usize = 256;
/// libdeflate level for the grains (zlib streams, any window). Measured per 64 KiB grain on
/// 200 MB of /usr/lib and /usr/share/doc plus 50 MB of random data, sizes padded to sectors as
/// stored: zlib-rs level 6 125.7 MB, zlib-rs 9 123.2 MB (2.6x the CPU of libdeflate 6),
/// libdeflate 4 124.5 MB, 6 122.7 MB, 9 122.2 MB (2.6x the CPU of 6); `qemu-img convert -O vmdk
/// -o subformat=streamOptimized` (zlib level 6) wrote 123.8 MB.
const LEVEL: i32 = 6;

/// Writes `disk` as a streamOptimized VMDK to `out` (empty, at offset 0), the descriptor's
/// extent naming `extent_name`. The capacity is the exact raw size in sectors; a partial last
/// grain is compressed zero-padded to a whole grain, because qemu rejects a grain that does
/// not inflate to exactly the grain size.
pub fn write_stream(disk: &RawDisk, out: &mut File, extent_name: &str) -> Result<StreamInfo> {
    if extent_name.contains('"') || extent_name.contains('\n') {
        bail!("extent name {extent_name:?} cannot go in a VMDK descriptor");
    }
    let capacity = disk.size() / 512;
    let gts = disk.chunk_count(GRAIN_BYTES).div_ceil(GT_ENTRIES);
    let mut gd = vec![0u32; gts as usize];
    let mut gt = GrainTable {
        index: 0,
        entries: vec![0u32; GT_ENTRIES as usize],
    };
    let mut cid = Cid::new(capacity);

    out.seek(SeekFrom::Start(OVERHEAD_SECTORS * 512))?;
    let mut w = Stream {
        out: BufWriter::with_capacity(4 << 20, &mut *out),
        sector: OVERHEAD_SECTORS,
    };
    let mut grains = 0u64;
    let indices = grains_with_data(disk).map(Ok);
    ordered_map(
        indices,
        WINDOW,
        |index| {
            let chunk = disk.read_chunk(index, GRAIN_BYTES)?;
            chunk
                .data
                .map(|data| grain_record(index, &data))
                .transpose()
                .map(|r| (index, r))
        },
        |(index, record)| {
            let Some(record) = record else { return Ok(()) };
            if index / GT_ENTRIES != gt.index {
                gt.flush(&mut w, &mut gd)?;
                gt.index = index / GT_ENTRIES;
            }
            gt.entries[(index % GT_ENTRIES) as usize] = w.sector_u32()?;
            cid.add(&record);
            w.write(&record)?;
            grains += 1;
            Ok(())
        },
    )?;
    gt.flush(&mut w, &mut gd)?;

    let gd_sectors = (gts * 4).div_ceil(512);
    w.write(&metadata_marker(gd_sectors, MARKER_GD))?;
    let gd_offset = w.sector;
    let mut gd_bytes: Vec<u8> = gd.iter().flat_map(|e| e.to_le_bytes()).collect();
    gd_bytes.resize((gd_sectors * 512) as usize, 0);
    w.write(&gd_bytes)?;
    w.write(&metadata_marker(1, MARKER_FOOTER))?;
    w.write(&Header::stream(capacity, gd_offset).encode())?;
    w.write(&metadata_marker(0, MARKER_EOS))?;
    let file_size = w.sector * 512;
    w.out.flush().context("write error")?;
    drop(w);

    let mut head = vec![0u8; (OVERHEAD_SECTORS * 512) as usize];
    head[..512].copy_from_slice(&Header::stream(capacity, GD_AT_END).encode());
    let text = descriptor(cid.finish()?, capacity, extent_name);
    let room = (DESCRIPTOR_SECTORS * 512) as usize;
    if text.len() > room {
        bail!(
            "VMDK descriptor is {} bytes, more than the {room} reserved",
            text.len()
        );
    }
    head[512..512 + text.len()].copy_from_slice(text.as_bytes());
    out.write_all_at(&head, 0).context("write error")?;
    Ok(StreamInfo { file_size, grains })
}

/// Indices of the grains that overlap data ranges, ascending, produced lazily: a list of every
/// grain of a 2 TiB disk would take 256 MiB.
fn grains_with_data(disk: &RawDisk) -> impl Iterator<Item = u64> + Send {
    let mut next = 0u64;
    disk.data_ranges().into_iter().flat_map(move |r| {
        let first = (r.start / GRAIN_BYTES).max(next);
        let last = (r.end - 1) / GRAIN_BYTES;
        next = next.max(last + 1);
        first..=last
    })
}

thread_local! {
    static GRAIN_COMPRESSOR: RefCell<Compressor> =
        RefCell::new(Compressor::new(CompressionLvl::new(LEVEL).expect("valid libdeflate level")));
}

/// A grain marker (lba, compressed size) followed by the zlib stream, padded to a sector.
fn grain_record(index: u64, data: &[u8]) -> Result<Vec<u8>> {
    let mut rec = GRAIN_COMPRESSOR.with(|c| -> Result<Vec<u8>> {
        let mut c = c.borrow_mut();
        let mut rec = vec![0u8; 12 + c.zlib_compress_bound(data.len())];
        let n = c
            .zlib_compress(data, &mut rec[12..])
            .map_err(|e| anyhow::anyhow!("grain {index}: zlib compression failed: {e:?}"))?;
        rec.truncate(12 + n);
        Ok(rec)
    })?;
    let size = (rec.len() - 12) as u32;
    rec[0..8].copy_from_slice(&(index * GRAIN_SECTORS).to_le_bytes());
    rec[8..12].copy_from_slice(&size.to_le_bytes());
    rec.resize(rec.len().div_ceil(512) * 512, 0);
    Ok(rec)
}

/// The sector-granular output stream with its position.
struct Stream<W: Write> {
    out: W,
    /// Next sector to be written.
    sector: u64,
}

impl<W: Write> Stream<W> {
    /// Writes whole sectors.
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(bytes.len() % 512, 0);
        self.out.write_all(bytes).context("write error")?;
        self.sector += bytes.len() as u64 / 512;
        Ok(())
    }

    /// The current sector as a GT/GD entry (u32 sectors: the stream must stay under 2 TiB).
    fn sector_u32(&self) -> Result<u32> {
        u32::try_from(self.sector).map_err(|_| anyhow::anyhow!("VMDK stream exceeds 2 TiB"))
    }
}

/// The grain table being filled: group `index` covers grains `index*512 ..`.
struct GrainTable {
    index: u64,
    entries: Vec<u32>,
}

impl GrainTable {
    /// Writes this GT (marker + 4 sectors) if it holds any grain, records it in the GD, and
    /// clears it. Empty GTs are omitted (GD entry 0), as VMDKstream and VirtualBox do.
    fn flush<W: Write>(&mut self, w: &mut Stream<W>, gd: &mut [u32]) -> Result<()> {
        if self.entries.iter().all(|&e| e == 0) {
            return Ok(());
        }
        w.write(&metadata_marker(GT_ENTRIES * 4 / 512, MARKER_GT))?;
        gd[self.index as usize] = w.sector_u32()?;
        let bytes: Vec<u8> = self.entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        w.write(&bytes)?;
        self.entries.fill(0);
        Ok(())
    }
}

/// The descriptor's content id: random, or derived from the grains when `SOURCE_DATE_EPOCH`
/// asks for a reproducible build. Never ffffffff/fffffffe (they mean "no parent"/"invalid").
struct Cid(Option<Sha1>);

impl Cid {
    fn new(capacity: u64) -> Self {
        Cid(source_date_epoch().map(|_| {
            let mut h = Sha1::new();
            h.update(capacity.to_le_bytes());
            h
        }))
    }

    fn add(&mut self, record: &[u8]) {
        if let Some(h) = &mut self.0 {
            h.update(record);
        }
    }

    fn finish(self) -> Result<u32> {
        let cid = match self.0 {
            Some(h) => u32::from_le_bytes(h.finalize()[..4].try_into().unwrap()),
            None => {
                let mut b = [0u8; 4];
                getrandom::fill(&mut b)
                    .map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
                u32::from_le_bytes(b)
            }
        };
        Ok(if cid >= 0xFFFF_FFFE { 0x1234_5678 } else { cid })
    }
}

/// The final name of the file `out` becomes: the `/proc/self/fd` link target with the
/// temporary naming of [`crate::output::AtomicOutput`] (`.<name>.<random>.partial`) undone.
pub fn output_file_name(out: &File) -> Option<String> {
    use std::os::unix::io::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", out.as_raw_fd())).ok()?;
    let name = link.file_name()?.to_str()?.to_string();
    match name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".partial"))
    {
        Some(temp) => temp.rsplit_once('.').map(|(n, _)| n.to_string()),
        None => Some(name),
    }
}
