//! Our own streamOptimized reader: header, descriptor, footer and EOS, a walk over the whole
//! marker stream that inflates every grain (on all cores), and the GD/GTs cross-checked against
//! the grain markers they point at. Every problem is one line.

use super::layout::*;
use crate::formats::CheckReport;
use crate::parallel::pipeline::ordered_map;
use anyhow::Result;
use flate2::read::ZlibDecoder;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Parses and checks the streamOptimized VMDK at `path`. I/O errors are `Err`; format problems
/// go to [`CheckReport::problems`].
pub fn check(path: &Path) -> Result<CheckReport> {
    let (file, len) = crate::formats::open_image(path)?;
    let mut r = CheckReport::default();
    let io = |e: std::io::Error| anyhow::anyhow!("{}: read error: {e}", path.display());
    let mut b = [0u8; 512];
    if len < 512 {
        r.problems
            .push(format!("file is {len} bytes, too short for a VMDK header"));
        return Ok(r);
    }
    file.read_exact_at(&mut b, 0).map_err(io)?;
    let Some(h) = Header::parse(&b) else {
        r.problems
            .push("header: bad magic, expected \"KDMV\"".into());
        return Ok(r);
    };
    r.virtual_size = h.capacity.saturating_mul(512);
    if !check_header(&h, "header", &mut r) {
        return Ok(r);
    }
    let tail_start = h.overhead.saturating_mul(512);
    if len % 512 != 0 || len < tail_start.saturating_add(1536) {
        r.problems.push(format!(
            "file is {len} bytes: truncated or not a whole number of sectors"
        ));
        return Ok(r);
    }
    check_descriptor(&file, &h, &mut r).map_err(io)?;
    let gd_offset = check_footer(&file, len, &h, &mut r).map_err(io)?;
    let grains = walk_stream(&file, len, &h, &mut r)?;
    if let Some(gd_offset) = gd_offset {
        let listed = check_tables(&file, len, &h, gd_offset, &mut r).map_err(io)?;
        if listed != grains {
            r.problems.push(format!(
                "grain tables list {listed} grains, the stream holds {grains}"
            ));
        }
    }
    r.details
        .push(("create type".into(), "streamOptimized".into()));
    r.details.push(("grains".into(), grains.to_string()));
    Ok(r)
}

/// Returns false when the header is too broken to read the rest.
fn check_header(h: &Header, what: &str, r: &mut CheckReport) -> bool {
    let mut p = |s: String| r.problems.push(format!("{what}: {s}"));
    if h.version != VERSION {
        p(format!("version {}, ESXi needs 3", h.version));
    }
    if h.flags & (FLAG_COMPRESSED | FLAG_MARKERS) != FLAG_COMPRESSED | FLAG_MARKERS {
        p(format!(
            "flags {:#x} lack compressed grains and markers (bits 16, 17)",
            h.flags
        ));
    }
    if h.compress_algorithm != COMPRESS_DEFLATE {
        p(format!(
            "compress algorithm {}, expected 1 (deflate)",
            h.compress_algorithm
        ));
    }
    if h.gtes_per_gt != GT_ENTRIES as u32 {
        p(format!(
            "{} entries per grain table, expected 512",
            h.gtes_per_gt
        ));
    }
    if h.newline_chars != [b'\n', b' ', b'\r', b'\n'] {
        p("newline detection characters are wrong".into());
    }
    if !h.pad_is_zero {
        p("unclean-shutdown flag or padding is not zero".into());
    }
    let grain_ok =
        h.grain_sectors.is_power_of_two() && h.grain_sectors > 8 && h.grain_sectors <= 2048;
    if !grain_ok {
        p(format!(
            "grain size {} sectors is not a power of two above 8",
            h.grain_sectors
        ));
    }
    if h.descriptor_offset == 0
        || h.descriptor_offset.saturating_add(h.descriptor_sectors) > h.overhead
    {
        p(format!(
            "descriptor at sectors {}+{} does not fit before the grains at {}",
            h.descriptor_offset, h.descriptor_sectors, h.overhead
        ));
        return false;
    }
    grain_ok && h.flags & FLAG_MARKERS != 0
}

fn check_descriptor(file: &File, h: &Header, r: &mut CheckReport) -> std::io::Result<()> {
    if h.descriptor_sectors > 2048 {
        r.problems.push(format!(
            "descriptor: {} sectors is implausibly large",
            h.descriptor_sectors
        ));
        return Ok(());
    }
    let mut buf = vec![0u8; (h.descriptor_sectors * 512) as usize];
    file.read_exact_at(&mut buf, h.descriptor_offset * 512)?;
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    let mut p = |s: String| r.problems.push(format!("descriptor: {s}"));
    let Ok(text) = std::str::from_utf8(&buf[..end]) else {
        p("not UTF-8 text".into());
        return Ok(());
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.first() != Some(&"version=1") {
        p("first line is not \"version=1\"".into());
    }
    let value = |key: &str| {
        lines.iter().find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().trim_matches('"'))
        })
    };
    match value("CID") {
        Some(c)
            if c.len() == 8
                && u32::from_str_radix(c, 16).is_ok()
                && c != "ffffffff"
                && c != "fffffffe" => {}
        other => p(format!(
            "CID {other:?} is not 8 hex digits other than ffffffff/fffffffe"
        )),
    }
    if value("createType") != Some("streamOptimized") {
        p(format!(
            "createType {:?}, expected \"streamOptimized\"",
            value("createType")
        ));
    }
    let extents: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("RW ") || l.starts_with("RDONLY "))
        .collect();
    match extents.as_slice() {
        [extent] => {
            let fields: Vec<&str> = extent.splitn(4, ' ').collect();
            let sectors = fields.get(1).and_then(|s| s.parse::<u64>().ok());
            if sectors != Some(h.capacity) || fields.get(2) != Some(&"SPARSE") || fields.len() < 4 {
                p(format!(
                    "extent line {extent:?} does not say SPARSE with capacity {}",
                    h.capacity
                ));
            } else {
                r.details
                    .push(("extent".into(), fields[3].trim_matches('"').to_string()));
            }
        }
        _ => p(format!("{} extent lines, expected one", extents.len())),
    }
    Ok(())
}

/// Checks footer marker, footer and EOS (the last three sectors); returns the GD sector.
fn check_footer(
    file: &File,
    len: u64,
    h: &Header,
    r: &mut CheckReport,
) -> std::io::Result<Option<u64>> {
    let mut tail = [0u8; 1536];
    file.read_exact_at(&mut tail, len - 1536)?;
    if le64(&tail, 0) != 1 || le32(&tail, 8) != 0 || le32(&tail, 12) != MARKER_FOOTER {
        r.problems
            .push("footer marker missing 1536 bytes before the end".into());
    }
    if tail[1024..].iter().any(|&b| b != 0) {
        r.problems
            .push("end-of-stream marker missing in the last sector".into());
    }
    let footer = Header::parse(tail[512..1024].try_into().unwrap());
    let gd = match footer {
        None => {
            r.problems
                .push("footer: bad magic, expected \"KDMV\"".into());
            (h.gd_offset != GD_AT_END).then_some(h.gd_offset)
        }
        Some(f) => {
            if (Header {
                gd_offset: h.gd_offset,
                ..f.clone()
            }) != *h
            {
                r.problems
                    .push("footer differs from the header in fields other than gdOffset".into());
            }
            if h.gd_offset != GD_AT_END && h.gd_offset != f.gd_offset {
                r.problems.push(format!(
                    "header gdOffset {} differs from the footer's {}",
                    h.gd_offset, f.gd_offset
                ));
            }
            (f.gd_offset != GD_AT_END)
                .then_some(f.gd_offset)
                .or_else(|| {
                    r.problems.push("footer: gdOffset is GD_AT_END".into());
                    None
                })
        }
    };
    Ok(gd)
}

/// One record of the stream, read sequentially by [`Records`].
enum Record {
    Grain {
        sector: u64,
        lba: u64,
        data: Vec<u8>,
    },
    Meta {
        sector: u64,
        kind: u32,
        sectors: u64,
    },
    /// The stream cannot be followed further.
    Broken(String),
}

/// Reads the marker stream from the grain area to the EOS marker.
struct Records<'a> {
    file: &'a File,
    len: u64,
    sector: u64,
    done: bool,
    /// Largest plausible compressed grain (zlib's worst case is a little over the input).
    max_compressed: u64,
}

impl Iterator for Records<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        let at = self.sector.saturating_mul(512);
        if at + 512 > self.len {
            self.done = true;
            return Some(Ok(Record::Broken(format!(
                "stream runs off the end of the file at sector {}",
                self.sector
            ))));
        }
        let mut m = [0u8; 512];
        if let Err(e) = self.file.read_exact_at(&mut m, at) {
            return Some(Err(e.into()));
        }
        let (val, size, kind) = (le64(&m, 0), le32(&m, 8) as u64, le32(&m, 12));
        let sector = self.sector;
        if size > self.max_compressed {
            self.done = true;
            let s = format!(
                "grain at sector {sector}: compressed size {size} is more than a grain can take"
            );
            return Some(Ok(Record::Broken(s)));
        }
        if size != 0 {
            let total = (12 + size).div_ceil(512) * 512;
            if at + total > self.len {
                self.done = true;
                return Some(Ok(Record::Broken(format!(
                    "grain at sector {sector} runs past the end of the file"
                ))));
            }
            let mut data = vec![0u8; size as usize];
            if let Err(e) = self.file.read_exact_at(&mut data, at + 12) {
                return Some(Err(e.into()));
            }
            self.sector += total / 512;
            return Some(Ok(Record::Grain {
                sector,
                lba: val,
                data,
            }));
        }
        match kind {
            MARKER_EOS => self.done = true,
            MARKER_GT | MARKER_GD | MARKER_FOOTER => {
                self.sector = self.sector.saturating_add(val).saturating_add(1)
            }
            other => {
                self.done = true;
                return Some(Ok(Record::Broken(format!(
                    "unknown marker type {other} at sector {sector}"
                ))));
            }
        }
        Some(Ok(Record::Meta {
            sector,
            kind,
            sectors: val,
        }))
    }
}

/// A grain after inflation: its inflated length or why it does not inflate.
enum Checked {
    Grain {
        sector: u64,
        lba: u64,
        inflated: std::result::Result<u64, String>,
    },
    Other(Record),
}

/// Walks the stream, inflating every grain; returns the number of grains.
fn walk_stream(file: &File, len: u64, h: &Header, r: &mut CheckReport) -> Result<u64> {
    let grain_bytes = h.grain_sectors * 512;
    let records = Records {
        file,
        len,
        sector: h.overhead,
        done: false,
        max_compressed: 2 * grain_bytes + 4096,
    };
    let mut grains = 0u64;
    let mut last_lba: Option<u64> = None;
    let mut eos: Option<u64> = None;
    let mut seen = [0u64; 4];
    let inflate = |rec: Record| -> Result<Checked> {
        Ok(match rec {
            Record::Grain { sector, lba, data } => {
                let mut out = ZlibDecoder::new(&data[..]).take(grain_bytes + 1);
                let inflated =
                    std::io::copy(&mut out, &mut std::io::sink()).map_err(|e| e.to_string());
                Checked::Grain {
                    sector,
                    lba,
                    inflated,
                }
            }
            other => Checked::Other(other),
        })
    };
    ordered_map(records, 64, inflate, |c| {
        match c {
            Checked::Grain {
                sector,
                lba,
                inflated,
            } => {
                grains += 1;
                let last_grain =
                    lba / h.grain_sectors == h.capacity.div_ceil(h.grain_sectors).saturating_sub(1);
                match inflated {
                    Err(e) => r.problems.push(format!(
                        "grain at sector {sector} (LBA {lba}) does not inflate: {e}"
                    )),
                    Ok(n) if n > grain_bytes => r.problems.push(format!(
                        "grain at sector {sector} inflates to more than {grain_bytes} bytes"
                    )),
                    Ok(n) if n < grain_bytes && !last_grain => r.problems.push(format!(
                        "grain at sector {sector} inflates to {n} bytes, not a whole grain"
                    )),
                    Ok(_) => {}
                }
                if lba % h.grain_sectors != 0 || lba >= h.capacity {
                    r.problems.push(format!("grain at sector {sector}: LBA {lba} is not a grain start inside the capacity"));
                }
                if last_lba.is_some_and(|l| lba <= l) {
                    r.problems.push(format!(
                        "grain at sector {sector}: LBA {lba} is not above the previous one"
                    ));
                }
                last_lba = Some(lba);
            }
            Checked::Other(Record::Meta {
                sector,
                kind,
                sectors,
            }) => {
                seen[kind as usize] += 1;
                let expected = match kind {
                    MARKER_GT => Some(GT_ENTRIES * 4 / 512),
                    MARKER_FOOTER => Some(1),
                    _ => None,
                };
                if expected.is_some_and(|n| n != sectors) {
                    r.problems.push(format!(
                        "marker at sector {sector}: type {kind} with {sectors} sectors"
                    ));
                }
                if kind == MARKER_EOS {
                    eos = Some(sector);
                }
            }
            Checked::Other(Record::Broken(s)) => r.problems.push(s),
            Checked::Other(Record::Grain { .. }) => unreachable!("grains are inflated"),
        }
        Ok(())
    })?;
    if eos != Some(len / 512 - 1) {
        r.problems.push(format!(
            "stream does not end with the EOS marker in the last sector (found {eos:?})"
        ));
    }
    if seen[MARKER_GD as usize] != 1 || seen[MARKER_FOOTER as usize] != 1 {
        r.problems.push(format!(
            "stream has {} GD and {} footer markers, expected one each",
            seen[MARKER_GD as usize], seen[MARKER_FOOTER as usize]
        ));
    }
    Ok(grains)
}

/// Follows GD → GTs → grain markers; returns the number of grains the tables list.
fn check_tables(
    file: &File,
    len: u64,
    h: &Header,
    gd_offset: u64,
    r: &mut CheckReport,
) -> std::io::Result<u64> {
    let gts = h.capacity.div_ceil(h.grain_sectors).div_ceil(GT_ENTRIES);
    if gd_offset
        .saturating_add((gts * 4).div_ceil(512))
        .saturating_mul(512)
        > len
    {
        r.problems.push(format!(
            "grain directory at sector {gd_offset} runs past the end of the file"
        ));
        return Ok(0);
    }
    let mut gd = vec![0u8; (gts * 4) as usize];
    file.read_exact_at(&mut gd, gd_offset * 512)?;
    let mut listed = 0;
    let mut gt = vec![0u8; (GT_ENTRIES * 4) as usize];
    for (g, e) in gd.chunks_exact(4).enumerate() {
        let gt_sector = le32(e, 0) as u64;
        if gt_sector == 0 {
            continue;
        }
        if (gt_sector + 4) * 512 > len {
            r.problems.push(format!(
                "GD entry {g}: grain table at sector {gt_sector} is past the end"
            ));
            continue;
        }
        file.read_exact_at(&mut gt, gt_sector * 512)?;
        for (i, e) in gt.chunks_exact(4).enumerate() {
            let grain_sector = le32(e, 0) as u64;
            if grain_sector == 0 {
                continue;
            }
            listed += 1;
            let lba = (g as u64 * GT_ENTRIES + i as u64) * h.grain_sectors;
            let mut m = [0u8; 12];
            if grain_sector < h.overhead || (grain_sector + 1) * 512 > len {
                r.problems.push(format!(
                    "GT {g} entry {i}: grain sector {grain_sector} is outside the grain area"
                ));
                continue;
            }
            file.read_exact_at(&mut m, grain_sector * 512)?;
            if le64(&m, 0) != lba || le32(&m, 8) == 0 {
                r.problems.push(format!(
                    "GT {g} entry {i}: sector {grain_sector} is not the grain marker of LBA {lba}"
                ));
            }
        }
    }
    Ok(listed)
}
