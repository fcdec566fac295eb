//! The project's own qcow2 reader, used by `stemcell verify` and the tests: it recomputes what
//! `qemu-img check` recomputes (QEMU's `block/qcow2-refcount.c`) and also inflates every compressed cluster.
//! Every problem is one line; the check goes on after a problem wherever it can.

use super::header::{Header, COMPRESSED, COPIED, MAGIC, OFFSET_MASK, ZERO_FLAG};
use crate::formats::CheckReport;
use anyhow::{Context, Result};
use flate2::{Decompress, FlushDecompress};
use rayon::prelude::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Beyond this many lines the report says how many more problems there were.
const MAX_PROBLEMS: usize = 100;

/// Geometry derived from a validated header.
struct Geometry {
    cluster_bits: u32,
    cluster_size: u64,
    l2_entries: u64,
    /// Bit position of the sector count in a compressed descriptor.
    compressed_offset_bits: u32,
}

impl Geometry {
    fn new(cluster_bits: u32) -> Self {
        let cluster_size = 1u64 << cluster_bits;
        Geometry {
            cluster_bits,
            cluster_size,
            l2_entries: cluster_size / 8,
            compressed_offset_bits: 62 - (cluster_bits - 8),
        }
    }

    /// Host byte range a compressed descriptor designates (offset to end of last sector).
    fn compressed_range(&self, entry: u64) -> std::ops::Range<u64> {
        let x = self.compressed_offset_bits;
        let offset = entry & ((1 << x) - 1);
        let sectors = (entry >> x) & ((1 << (62 - x)) - 1);
        offset..((offset >> 9) + sectors + 1) * 512
    }
}

/// Problems found so far, capped at [`MAX_PROBLEMS`] lines.
#[derive(Default)]
struct Problems {
    lines: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, line: String) {
        if self.lines.len() < MAX_PROBLEMS {
            self.lines.push(line);
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.lines
                .push(format!("... and {} more problems", self.more));
        }
        self.lines
    }
}

/// References counted while walking the metadata, one per host cluster of the file.
struct References {
    counts: Vec<u32>,
    cluster_bits: u32,
}

impl References {
    /// One reference to every cluster that `bytes` touches; a problem if it leaves the file.
    fn add(&mut self, bytes: std::ops::Range<u64>, what: &str, problems: &mut Problems) {
        let first = bytes.start >> self.cluster_bits;
        let last = (bytes.end.max(bytes.start + 1) - 1) >> self.cluster_bits;
        if last >= self.counts.len() as u64 {
            problems.push(format!(
                "{what} at offset {} lies beyond the end of the file",
                bytes.start
            ));
            return;
        }
        for c in first..=last {
            self.counts[c as usize] += 1;
        }
    }

    fn get(&self, offset: u64) -> u32 {
        self.counts
            .get((offset >> self.cluster_bits) as usize)
            .copied()
            .unwrap_or(0)
    }
}

/// Checks the qcow2 image at `path`. `Err` only when the file cannot be opened or read at all;
/// everything wrong inside the image is a line in `problems`.
pub fn check(path: &Path) -> Result<CheckReport> {
    let (file, file_len) = crate::formats::open_image(path)?;
    let mut report = CheckReport::default();
    let mut problems = Problems::default();
    let mut head = vec![0u8; file_len.min(4096) as usize];
    file.read_exact_at(&mut head, 0)
        .with_context(|| format!("{}: read error", path.display()))?;
    let header = match Header::decode(&head) {
        Ok(h) => h,
        Err(e) => {
            report.problems.push(e);
            return Ok(report);
        }
    };
    report.virtual_size = header.size;
    if !check_header(&header, &mut problems) {
        report.problems = problems.finish();
        return Ok(report);
    }
    let g = Geometry::new(header.cluster_bits);
    let reader = Reader {
        file: &file,
        file_len,
    };
    let mut refs = References {
        counts: vec![0; file_len.div_ceil(g.cluster_size) as usize],
        cluster_bits: g.cluster_bits,
    };
    refs.add(0..g.cluster_size, "header", &mut problems);

    // L1 table and the L2 tables it points at.
    let mut copied_entries: Vec<(String, u64, bool)> = Vec::new(); // (what, offset, COPIED set)
    let mut compressed: Vec<(u64, u64)> = Vec::new(); // (guest offset, descriptor)
    let mut allocated = 0u64;
    let l1_bytes = header.l1_size as u64 * 8;
    let l1 = if header.l1_table_offset % g.cluster_size != 0 {
        problems.push(format!(
            "L1 table offset {} is not cluster aligned",
            header.l1_table_offset
        ));
        Vec::new()
    } else if header.l1_table_offset + l1_bytes > file_len {
        problems.push(format!(
            "L1 table at offset {} lies beyond the end of the file",
            header.l1_table_offset
        ));
        Vec::new()
    } else {
        refs.add(
            header.l1_table_offset..header.l1_table_offset + l1_bytes,
            "L1 table",
            &mut problems,
        );
        reader.entries(header.l1_table_offset, l1_bytes)?
    };
    for (i, &e) in l1.iter().enumerate() {
        let l2_offset = e & OFFSET_MASK;
        if e & !(OFFSET_MASK | COPIED) != 0 {
            problems.push(format!("L1 entry {i} has reserved bits set ({e:#018x})"));
        }
        if l2_offset == 0 {
            continue;
        }
        if l2_offset % g.cluster_size != 0 {
            problems.push(format!(
                "L1 entry {i}: L2 table offset {l2_offset} is not cluster aligned"
            ));
            continue;
        }
        if l2_offset + g.cluster_size > file_len {
            problems.push(format!(
                "L1 entry {i}: L2 table at offset {l2_offset} lies beyond the end of the file"
            ));
            continue;
        }
        refs.add(
            l2_offset..l2_offset + g.cluster_size,
            "L2 table",
            &mut problems,
        );
        copied_entries.push((format!("L1 entry {i}"), l2_offset, e & COPIED != 0));
        for (j, &d) in reader
            .entries(l2_offset, g.cluster_size)?
            .iter()
            .enumerate()
        {
            if d == 0 {
                continue;
            }
            let guest = (i as u64 * g.l2_entries + j as u64) << g.cluster_bits;
            let what = format!("L2 entry for guest offset {guest}");
            if guest >= header.size {
                problems.push(format!("{what} maps past the virtual size {}", header.size));
            }
            if d & COMPRESSED != 0 {
                if d & COPIED != 0 {
                    problems.push(format!("{what}: COPIED flag set on a compressed cluster"));
                }
                let range = g.compressed_range(d);
                refs.add(
                    range.clone(),
                    &format!("{what}: compressed data"),
                    &mut problems,
                );
                if range.start < file_len {
                    compressed.push((guest, d));
                }
                continue;
            }
            if d & ZERO_FLAG != 0 && header.version < 3 {
                problems.push(format!("{what}: zero flag set in a version 2 image"));
            }
            if d & !(OFFSET_MASK | COPIED | ZERO_FLAG) != 0 {
                problems.push(format!("{what} has reserved bits set ({d:#018x})"));
            }
            let offset = d & OFFSET_MASK;
            if offset == 0 {
                continue;
            }
            if offset % g.cluster_size != 0 {
                problems.push(format!(
                    "{what}: data offset {offset} is not cluster aligned"
                ));
                continue;
            }
            allocated += 1;
            refs.add(
                offset..offset + g.cluster_size,
                &format!("{what}: data cluster"),
                &mut problems,
            );
            copied_entries.push((what, offset, d & COPIED != 0));
        }
    }

    // Refcount table and blocks.
    let rt_offset = header.refcount_table_offset;
    let rt_bytes = header.refcount_table_clusters as u64 * g.cluster_size;
    let mut stored: Vec<u64> = Vec::new();
    if rt_offset % g.cluster_size != 0 || rt_offset == 0 {
        problems.push(format!(
            "refcount table offset {rt_offset} is not a non-zero cluster-aligned offset"
        ));
    } else if rt_offset + rt_bytes > file_len {
        problems.push(format!(
            "refcount table at offset {rt_offset} lies beyond the end of the file"
        ));
    } else {
        refs.add(
            rt_offset..rt_offset + rt_bytes,
            "refcount table",
            &mut problems,
        );
        let per_block = g.cluster_size / 2;
        for (i, &e) in reader.entries(rt_offset, rt_bytes)?.iter().enumerate() {
            let block = e & !(g.cluster_size - 1);
            if e & (g.cluster_size - 1) != 0 {
                problems.push(format!(
                    "refcount table entry {i} ({e:#x}) is not cluster aligned"
                ));
            }
            if block == 0 || (i as u64 * per_block) >= refs.counts.len() as u64 && block >= file_len
            {
                continue; // no block, or a block past the end that would only cover clusters past it
            }
            if block + g.cluster_size > file_len {
                problems.push(format!(
                    "refcount block {i} at offset {block} lies beyond the end of the file"
                ));
                continue;
            }
            refs.add(
                block..block + g.cluster_size,
                &format!("refcount block {i}"),
                &mut problems,
            );
            let first = i * per_block as usize;
            if stored.len() < first {
                stored.resize(first, 0);
            }
            let mut buf = vec![0u8; g.cluster_size as usize];
            reader.read(&mut buf, block)?;
            stored.truncate(first);
            stored.extend(
                buf.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]) as u64),
            );
        }
    }

    // Every compressed cluster must inflate to a full cluster (in parallel: this is the slow part).
    let inflate_problems: Vec<String> = compressed
        .par_iter()
        .filter_map(|&(guest, d)| {
            let range = g.compressed_range(d);
            let end = range.end.min(file_len);
            let mut input = vec![0u8; (end - range.start) as usize];
            if let Err(e) = reader.read(&mut input, range.start) {
                return Some(format!(
                    "compressed cluster for guest offset {guest}: {e:#}"
                ));
            }
            inflate_cluster(&input, g.cluster_size as usize)
                .err()
                .map(|e| {
                    format!(
                        "compressed cluster for guest offset {guest} at offset {}: {e}",
                        range.start
                    )
                })
        })
        .collect();
    inflate_problems.into_iter().for_each(|p| problems.push(p));

    // Stored refcounts against the references counted.
    for (c, &computed) in refs.counts.iter().enumerate() {
        let s = stored.get(c).copied().unwrap_or(0);
        if s < computed as u64 {
            problems.push(format!("cluster {c} refcount={s} reference={computed}"));
        } else if s > computed as u64 {
            problems.push(format!(
                "leaked cluster {c} refcount={s} reference={computed}"
            ));
        }
    }
    for (what, offset, copied) in copied_entries {
        let r = refs.get(offset);
        if copied != (r == 1) {
            problems.push(format!(
                "{what}: COPIED flag {} but the cluster has {r} references",
                if copied { "set" } else { "clear" }
            ));
        }
    }

    report.details = vec![
        (
            "compat".into(),
            if header.version >= 3 { "1.1" } else { "0.10" }.into(),
        ),
        ("cluster_size".into(), g.cluster_size.to_string()),
        ("l1_size".into(), header.l1_size.to_string()),
        ("allocated_clusters".into(), allocated.to_string()),
        ("compressed_clusters".into(), compressed.len().to_string()),
        ("file_size".into(), file_len.to_string()),
    ];
    report.problems = problems.finish();
    Ok(report)
}

/// Validates the header fields; false when the rest of the image cannot be interpreted.
fn check_header(h: &Header, p: &mut Problems) -> bool {
    let mut usable = true;
    if h.version != 2 && h.version != 3 {
        p.push(format!("unsupported version {}", h.version));
        return false;
    }
    if !(9..=21).contains(&h.cluster_bits) {
        p.push(format!(
            "cluster_bits {} out of range 9..=21",
            h.cluster_bits
        ));
        return false;
    }
    if h.crypt_method != 0 {
        p.push(format!("encrypted image (crypt_method {})", h.crypt_method));
    }
    if h.backing_file_offset != 0 {
        p.push("image has a backing file".into());
    }
    if h.nb_snapshots != 0 {
        p.push(format!("image has {} internal snapshots", h.nb_snapshots));
    }
    if h.size % 512 != 0 {
        p.push(format!("virtual size {} is not a multiple of 512", h.size));
    }
    let l2_span = 1u64 << (2 * h.cluster_bits - 3);
    if (h.l1_size as u64) < h.size.div_ceil(l2_span) {
        p.push(format!(
            "l1_size {} too small for virtual size {}",
            h.l1_size, h.size
        ));
        usable = false;
    }
    if h.version >= 3 {
        if h.incompatible_features != 0 {
            p.push(format!(
                "incompatible feature bits set: {:#x}",
                h.incompatible_features
            ));
        }
        if h.refcount_order != 4 {
            p.push(format!(
                "refcount_order {} unsupported (expected 4, 16-bit refcounts)",
                h.refcount_order
            ));
            usable = false;
        }
        if h.header_length < 104 || h.header_length % 8 != 0 {
            p.push(format!(
                "header_length {} is not a multiple of 8 of at least 104",
                h.header_length
            ));
        }
        if h.compression_type != 0 {
            p.push(format!(
                "compression type {} is not deflate",
                h.compression_type
            ));
        }
    }
    debug_assert_eq!(MAGIC, *b"QFI\xfb");
    usable
}

/// Raw deflate (window −12, as QEMU) that must produce exactly `cluster_size` bytes.
fn inflate_cluster(input: &[u8], cluster_size: usize) -> Result<(), String> {
    let mut d = Decompress::new_with_window_bits(false, 12);
    let mut out = Vec::with_capacity(cluster_size);
    match d.decompress_vec(input, &mut out, FlushDecompress::Finish) {
        Ok(_) if out.len() == cluster_size => Ok(()),
        Ok(_) => Err(format!(
            "inflates to {} bytes, not a full cluster",
            out.len()
        )),
        Err(e) => Err(format!("corrupt deflate stream ({e})")),
    }
}

/// Positioned reads; errors name the offset.
struct Reader<'a> {
    file: &'a File,
    file_len: u64,
}

impl Reader<'_> {
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset).with_context(|| {
            format!(
                "read error at offset {offset} (file is {} bytes)",
                self.file_len
            )
        })
    }

    /// `len` bytes of big-endian u64 entries at `offset`.
    fn entries(&self, offset: u64, len: u64) -> Result<Vec<u64>> {
        let mut buf = vec![0u8; len as usize];
        self.read(&mut buf, offset)?;
        Ok(buf
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect())
    }
}
