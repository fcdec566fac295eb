//! One-pass qcow2 writer (docs/formats.md "qcow2 one-pass layout"): header cluster reserved, then data
//! clusters in guest order with each L2 table written as soon as its 512 MiB range is done,
//! then the L1 table, the refcount table and the refcount blocks; the header last.
//!
//! Memory stays bounded: one L2 table, the L1 table (8 bytes per 512 MiB) and one 16-bit
//! refcount per 64 KiB host cluster (32 KiB per GiB of output) besides the in-flight batches.

use super::header::*;
use crate::formats::source::{is_zero, RawDisk};
use crate::formats::{DiskWriter, Qcow2Compat};
use crate::parallel::libdeflate::{with_thread_compressor, Build};
use crate::parallel::pipeline::ordered_map;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

/// Guest clusters per work item (2 MiB): large enough to amortise the hand-offs between
/// threads (which cost most on a loaded machine), small enough that the items in flight stay
/// small: `ordered_map` keeps max(WINDOW, 2 × cores) of them, 16 MiB on 2 cores, 256 MiB on 64.
const BATCH_CLUSTERS: u64 = 32;
/// Work items in flight on small machines.
const WINDOW: usize = 8;
/// Deflate level of libdeflate (its 4 KiB-window build, [`Build::Window4k`]). Measured with one run
/// of `stemcell convert --format qcow2 --compat 0.10` per level, against `qemu-img convert -c
/// -O qcow2 -o compat=0.10` (zlib level 6, 4 KiB window), on the ci/bench.sh disk and on a
/// real debian-bookworm OpenStack disk (1722 MiB allocated), with the entropy shortcut below:
/// size +0.84 % / +0.53 % at level 4, −0.25 % / −0.80 % at 5, −0.43 % / −1.12 % at 6,
/// −0.29 % / −1.48 % at 9; 10 to 12 (near-optimal parsing) −1.2 to −1.3 % on the synthetic
/// disk for 2 to 4 times qemu-img's CPU. 5 is the fastest level no larger than qemu-img's on
/// both: about a third of qemu-img's CPU (15.0 CPU-s against 46.7 on the real disk; level 6
/// took 16.1, level 9 41).
pub const COMPRESSION_LEVEL: i32 = 5;

/// Writes a qcow2 image of 64 KiB clusters, compat 0.10 (v2) or 1.1 (v3), with every non-zero
/// guest cluster either deflated (when that makes it smaller than a cluster) or stored as is.
pub struct Qcow2Writer {
    pub compat: Qcow2Compat,
    pub compressed: bool,
}

/// How one non-zero guest cluster is stored.
enum Payload {
    /// Raw deflate stream, shorter than a cluster.
    Deflated(Vec<u8>),
    /// The cluster as is (exactly one cluster).
    Plain(Vec<u8>),
}

impl DiskWriter for Qcow2Writer {
    fn write(&self, disk: &RawDisk, out: &mut File) -> Result<()> {
        let batch_bytes = BATCH_CLUSTERS * CLUSTER_SIZE;
        let batches = disk.chunks_with_data(batch_bytes);
        let mut image = ImageBuilder::new(out, self.compat, disk.size())?;
        let compressed = self.compressed;
        ordered_map(
            batches.into_iter().map(Ok),
            WINDOW,
            |batch| encode_batch(disk, batch, compressed),
            |clusters: Vec<(u64, Payload)>| {
                clusters
                    .into_iter()
                    .try_for_each(|(guest, payload)| image.put(guest, payload))
            },
        )?;
        image.finish()
    }
}

/// Reads batch `batch` of the disk and encodes its non-zero clusters, in guest order.
fn encode_batch(disk: &RawDisk, batch: u64, compressed: bool) -> Result<Vec<(u64, Payload)>> {
    let start = batch * BATCH_CLUSTERS * CLUSTER_SIZE;
    let len = (disk.size() - start)
        .min(BATCH_CLUSTERS * CLUSTER_SIZE)
        .next_multiple_of(CLUSTER_SIZE);
    let mut buf = vec![0u8; len as usize];
    disk.read_at(&mut buf, start)?; // zero-pads the partial last cluster
    let first = start / CLUSTER_SIZE;
    let mut out = Vec::new();
    for (i, cluster) in buf.chunks_exact(CLUSTER_SIZE as usize).enumerate() {
        if is_zero(cluster) {
            continue; // unallocated clusters read as zeros
        }
        let try_deflate = compressed && !looks_incompressible(cluster);
        let deflated = if try_deflate { deflate(cluster)? } else { None };
        let payload = match deflated {
            Some(d) => Payload::Deflated(d),
            None => Payload::Plain(cluster.to_vec()),
        };
        out.push((first + i as u64, payload));
    }
    Ok(out)
}

/// Order-0 entropy (bits per byte) above which a cluster is stored without trying deflate.
/// Random data sits just below 8: 300 random 64 KiB clusters measured 7.9972 ± 0.0002 (min
/// 7.9965), and deflate costs as much CPU there as on text for nothing. Measured on the
/// ci/bench.sh disk (100 MiB of it random) at level 5 against qemu-img: 7.99 +0.06 %, 7.993
/// −0.14 %, 7.995 −0.25 %, 7.997 and never skipping −0.34 %, never skipping costing about
/// 10 % more CPU. 7.995 skips all random clusters and gives up 0.1 % on the few clusters of
/// compressed files that deflate a little; the real disk has almost none (±0.01 %).
const INCOMPRESSIBLE_ENTROPY: f64 = 7.995;

/// True when the byte histogram of `cluster` is nearly flat (see [`INCOMPRESSIBLE_ENTROPY`]).
fn looks_incompressible(cluster: &[u8]) -> bool {
    // Four histograms break the store-to-load dependency on repeated bytes.
    let mut counts = [[0u32; 256]; 4];
    for c in cluster.chunks_exact(4) {
        counts[0][c[0] as usize] += 1;
        counts[1][c[1] as usize] += 1;
        counts[2][c[2] as usize] += 1;
        counts[3][c[3] as usize] += 1;
    }
    let n = cluster.len() as f64;
    let entropy: f64 = (0..256)
        .map(|b| (counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b]) as f64)
        .filter(|&c| c > 0.0)
        .map(|c| -(c / n) * (c / n).log2())
        .sum();
    entropy > INCOMPRESSIBLE_ENTROPY
}

/// Raw deflate of one cluster, or `None` when the stream would not be shorter than a cluster
/// (QEMU's rule: such clusters are stored uncompressed).
fn deflate(cluster: &[u8]) -> Result<Option<Vec<u8>>> {
    with_thread_compressor(Build::Window4k, COMPRESSION_LEVEL, |c| {
        c.compress(cluster, cluster.len() - 1)
    })
}

/// The image being laid out. Invariant: `written` bytes have gone to `out` sequentially from
/// offset 0, and `refcounts[n]` counts the references to host cluster n made so far.
struct ImageBuilder<'a> {
    out: BufWriter<&'a File>,
    header: Header,
    written: u64,
    refcounts: Vec<u16>,
    l1: Vec<u64>,
    /// The L2 table being filled: its L1 index and entries.
    l2: Option<(u64, Vec<u64>)>,
}

impl<'a> ImageBuilder<'a> {
    fn new(file: &'a File, compat: Qcow2Compat, size: u64) -> Result<Self> {
        let header = Header::new(compat, size);
        let l1 = vec![0u64; header.l1_size as usize];
        let mut b = ImageBuilder {
            out: BufWriter::with_capacity(4 << 20, file),
            header,
            written: 0,
            refcounts: Vec::new(),
            l1,
            l2: None,
        };
        // Cluster 0 is the header, written last once the table offsets are known.
        b.write_cluster_aligned(&[])?;
        Ok(b)
    }

    /// Stores guest cluster `guest` (called in ascending guest order).
    fn put(&mut self, guest: u64, payload: Payload) -> Result<()> {
        let l1_index = guest / L2_ENTRIES;
        if self.l2.as_ref().is_some_and(|(i, _)| *i != l1_index) {
            self.flush_l2()?;
        }
        let entry = match payload {
            Payload::Plain(data) => COPIED | self.write_cluster_aligned(&data)?,
            Payload::Deflated(data) => {
                let offset = self.written;
                self.write(&data)?;
                let entry = compressed_entry(offset, data.len() as u64);
                let range = compressed_range(entry);
                for cluster in range.start / CLUSTER_SIZE..range.end.div_ceil(CLUSTER_SIZE) {
                    self.reference(cluster)?;
                }
                entry
            }
        };
        let (_, table) = self
            .l2
            .get_or_insert_with(|| (l1_index, vec![0; L2_ENTRIES as usize]));
        table[(guest % L2_ENTRIES) as usize] = entry;
        Ok(())
    }

    /// Writes the current L2 table and points its L1 entry at it.
    fn flush_l2(&mut self) -> Result<()> {
        if let Some((index, table)) = self.l2.take() {
            let offset = self.write_cluster_aligned(&be_bytes(&table))?;
            self.l1[index as usize] = COPIED | offset;
        }
        Ok(())
    }

    /// Writes the L1 table, the refcount structures and the header.
    fn finish(mut self) -> Result<()> {
        self.flush_l2()?;
        let l1 = be_bytes(&self.l1);
        self.header.l1_table_offset = self.write_cluster_aligned(&l1)?;

        let used = self.written.div_ceil(CLUSTER_SIZE);
        let (table_clusters, blocks) = refcount_layout(used);
        let table_offset = used * CLUSTER_SIZE;
        let blocks_offset = table_offset + table_clusters * CLUSTER_SIZE;
        for cluster in used..used + table_clusters + blocks {
            self.reference(cluster)?;
        }
        let table: Vec<u64> = (0..blocks)
            .map(|i| blocks_offset + i * CLUSTER_SIZE)
            .collect();
        let t = self.write_clusters(&be_bytes(&table))?;
        debug_assert_eq!(t, table_offset);
        self.refcounts
            .resize((blocks * REFCOUNTS_PER_BLOCK) as usize, 0);
        let counts: Vec<u8> = self
            .refcounts
            .iter()
            .flat_map(|r| r.to_be_bytes())
            .collect();
        self.write_clusters(&counts)?;
        self.header.refcount_table_offset = table_offset;
        self.header.refcount_table_clusters = table_clusters as u32;

        let end = self.written;
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("write error")?;
        file.write_all_at(&self.header.encode(), 0)
            .context("write error")?;
        file.set_len(end).context("cannot set the file length")?;
        Ok(())
    }

    /// Pads to a cluster boundary, writes `data` and pads again; every cluster it spans gets
    /// one reference. Returns its offset. An empty `data` still takes one cluster.
    fn write_cluster_aligned(&mut self, data: &[u8]) -> Result<u64> {
        let offset = self.write_clusters(data)?;
        for c in offset / CLUSTER_SIZE..self.written / CLUSTER_SIZE {
            self.reference(c)?;
        }
        Ok(offset)
    }

    /// As `write_cluster_aligned`, without counting references (for the refcount structures,
    /// counted before they are serialised).
    fn write_clusters(&mut self, data: &[u8]) -> Result<u64> {
        self.pad_to_cluster()?;
        let offset = self.written;
        let clusters = (data.len() as u64).div_ceil(CLUSTER_SIZE).max(1);
        self.write(data)?;
        self.pad_to(offset + clusters * CLUSTER_SIZE)?;
        Ok(offset)
    }

    fn pad_to_cluster(&mut self) -> Result<()> {
        self.pad_to(self.written.next_multiple_of(CLUSTER_SIZE))
    }

    fn pad_to(&mut self, offset: u64) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.written < offset {
            let n = (offset - self.written).min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).context("write error")?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// One more reference to host cluster `cluster`.
    fn reference(&mut self, cluster: u64) -> Result<()> {
        let i = cluster as usize;
        if self.refcounts.len() <= i {
            self.refcounts.resize(i + 1, 0);
        }
        self.refcounts[i] = match self.refcounts[i].checked_add(1) {
            Some(r) => r,
            None => bail!("refcount overflow on host cluster {cluster}"),
        };
        Ok(())
    }
}

/// Refcount table clusters and refcount blocks needed when `used` clusters precede them. They
/// count themselves, so the sizes come from a fixed-point iteration (docs/formats.md "qcow2 one-pass layout").
fn refcount_layout(used: u64) -> (u64, u64) {
    let (mut table_clusters, mut blocks) = (0u64, 0u64);
    loop {
        let n = used + table_clusters + blocks;
        let b = n.div_ceil(REFCOUNTS_PER_BLOCK);
        let t = b.div_ceil(RT_ENTRIES_PER_CLUSTER);
        if (t, b) == (table_clusters, blocks) {
            return (t, b);
        }
        (table_clusters, blocks) = (t, b);
    }
}

fn be_bytes(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_be_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcount_structures_count_themselves() {
        assert_eq!(refcount_layout(3), (1, 1));
        // 32766 + table + block fill one block exactly; one more cluster needs a second block.
        assert_eq!(refcount_layout(32766), (1, 1));
        assert_eq!(refcount_layout(32767), (1, 2));
        // 8192 blocks fill one table cluster (16 TiB of host file); beyond, a second one.
        let (t, b) = refcount_layout(8192 * 32768 - 8193);
        assert_eq!((t, b), (1, 8192));
        assert_eq!(refcount_layout(8192 * 32768).0, 2);
    }

    #[test]
    fn incompressible_clusters_stay_plain() {
        let text = b"stemcell ".repeat(8000)[..CLUSTER_SIZE as usize].to_vec();
        assert!(deflate(&text).unwrap().is_some_and(|d| d.len() < 1000));
        let mut noise = Vec::new();
        let mut x = 88172645463325252u64;
        while noise.len() < CLUSTER_SIZE as usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.extend_from_slice(&x.to_le_bytes());
        }
        assert!(deflate(&noise).unwrap().is_none());
        assert!(looks_incompressible(&noise));
        assert!(!looks_incompressible(&text));
        // A random block repeated within the 4 KiB window has a flat histogram too: accepted
        // loss (it is stored plain, as if deflate had failed).
        assert!(!looks_incompressible(&vec![0u8; CLUSTER_SIZE as usize]));
    }
}
