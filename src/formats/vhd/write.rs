//! The VHD writers: one streaming pass over the raw disk, holes and zero blocks skipped.

use super::layout::{
    bat_bytes, bat_entries, encode_dynamic_header, DiskType, Footer, BAT_OFFSET, BITMAP_SIZE,
    BLOCK_SIZE, HEADER_OFFSET, MAX_DYNAMIC_SIZE, UNALLOCATED, VHD_EPOCH,
};
use super::{build_time, source_date_epoch};
use crate::formats::source::{Chunk, RawDisk};
use crate::formats::DiskWriter;
use crate::parallel::pipeline::ordered_map;
use anyhow::{bail, Context, Result};
use sha1::{Digest, Sha1};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// Writes a dynamic (2 MiB blocks) or fixed VHD.
///
/// Both carry creator "win " 10.0 on "Wi2k", current size = original size = the exact raw
/// size, the VHD specification's CHS geometry (never larger than the size), a timestamp from
/// `SOURCE_DATE_EPOCH` or the clock, and a unique id that is random, or derived from the disk
/// content when `SOURCE_DATE_EPOCH` is set so that builds reproduce byte for byte.
pub struct VhdWriter {
    pub fixed: bool,
}

/// Blocks read ahead of the writer (2 MiB each): bounds memory to about 16 MiB (reading and
/// zero-scanning need little parallelism; the disk is the bottleneck).
const WINDOW: usize = 8;

impl DiskWriter for VhdWriter {
    fn write(&self, disk: &RawDisk, out: &mut File) -> Result<()> {
        if self.fixed {
            write_fixed(disk, out)
        } else {
            write_dynamic(disk, out)
        }
    }
}

/// Calls `sink` with every 2 MiB block of `disk` that holds non-zero data, in order; blocks
/// are read and scanned for zeros on all cores.
fn for_each_data_block(
    disk: &RawDisk,
    mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let indices = disk.chunks_with_data(BLOCK_SIZE).into_iter().map(Ok);
    ordered_map(
        indices,
        WINDOW,
        |i| disk.read_chunk(i, BLOCK_SIZE),
        |chunk: Chunk| match chunk.data {
            Some(data) => sink(chunk.index, &data),
            None => Ok(()),
        },
    )
}

/// Identity of the disk for the footer: random, or a digest of the content when the build
/// must reproduce.
struct UniqueId(Option<Sha1>);

impl UniqueId {
    fn new(size: u64) -> Self {
        UniqueId(source_date_epoch().map(|_| {
            let mut h = Sha1::new();
            h.update(b"stemcell vhd");
            h.update(size.to_be_bytes());
            h
        }))
    }

    fn add_block(&mut self, index: u64, data: &[u8]) {
        if let Some(h) = &mut self.0 {
            h.update(index.to_be_bytes());
            h.update(data);
        }
    }

    fn finish(self) -> Result<[u8; 16]> {
        match self.0 {
            Some(h) => {
                let digest: [u8; 20] = h.finalize().into();
                Ok(
                    *uuid::Builder::from_sha1_bytes(digest[..16].try_into().unwrap())
                        .as_uuid()
                        .as_bytes(),
                )
            }
            None => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes)
                    .map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
                Ok(*uuid::Builder::from_random_bytes(bytes).as_uuid().as_bytes())
            }
        }
    }
}

fn timestamp() -> u32 {
    build_time().saturating_sub(VHD_EPOCH).min(u32::MAX as u64) as u32
}

/// Layout: footer copy (0), dynamic header (512), BAT (1536), then bitmap + data for each
/// non-zero block in ascending order, then the footer. The BAT and the footer copy are filled
/// in by seeking back once every block is written.
fn write_dynamic(disk: &RawDisk, out: &mut File) -> Result<()> {
    let size = disk.size();
    if size > MAX_DYNAMIC_SIZE {
        bail!("dynamic VHD cannot hold {size} bytes (maximum 2040 GiB)");
    }
    let mut bat = vec![UNALLOCATED; bat_entries(size) as usize];
    let first_block = BAT_OFFSET + bat_bytes(size);
    out.seek(SeekFrom::Start(first_block))?;
    let mut pos = first_block;
    let bitmap = [0xFFu8; BITMAP_SIZE as usize]; // every sector of a written block holds data
    let mut id = UniqueId::new(size);
    let mut w = std::io::BufWriter::with_capacity(4 << 20, &mut *out);
    for_each_data_block(disk, |index, data| {
        bat[index as usize] = (pos / 512) as u32;
        w.write_all(&bitmap)?;
        w.write_all(data)?;
        pos += BITMAP_SIZE + BLOCK_SIZE;
        id.add_block(index, data);
        Ok(())
    })?;
    let footer = Footer {
        disk_type: DiskType::Dynamic,
        timestamp: timestamp(),
        size,
        unique_id: id.finish()?,
    }
    .encode();
    w.write_all(&footer)?;
    w.flush()?;
    drop(w);

    let mut head = Vec::with_capacity(first_block as usize);
    head.extend_from_slice(&footer);
    debug_assert_eq!(head.len() as u64, HEADER_OFFSET);
    head.extend_from_slice(&encode_dynamic_header(size));
    debug_assert_eq!(head.len() as u64, BAT_OFFSET);
    head.extend(bat.iter().flat_map(|e| e.to_be_bytes()));
    head.resize(first_block as usize, 0xFF); // qemu pads the BAT with 0xFF; both pass vhd-util
    out.write_all_at(&head, 0).context("write error")?;
    Ok(())
}

/// Layout: the raw data (holes stay holes), then the footer. Azure needs whole MiB.
fn write_fixed(disk: &RawDisk, out: &mut File) -> Result<()> {
    let size = disk.size();
    if size % (1 << 20) != 0 {
        bail!(
            "fixed VHD needs a size that is a whole number of MiB (Azure), but {} is {size} bytes",
            disk.path().display()
        );
    }
    let mut id = UniqueId::new(size);
    out.set_len(size).context("write error")?;
    for_each_data_block(disk, |index, data| {
        let offset = index * BLOCK_SIZE;
        let len = (size - offset).min(BLOCK_SIZE) as usize;
        out.write_all_at(&data[..len], offset)
            .context("write error")?;
        id.add_block(index, data);
        Ok(())
    })?;
    let footer = Footer {
        disk_type: DiskType::Fixed,
        timestamp: timestamp(),
        size,
        unique_id: id.finish()?,
    };
    out.write_all_at(&footer.encode(), size)
        .context("write error")?;
    Ok(())
}
