//! Our own VHD reader: every rule Xen's `vhd-util check` enforces (xapi-project/blktap `vhd/lib/vhd-util-check.c`), plus the
//! exact BAT length Azure needs. It reports every problem it finds, one line each.

use super::layout::*;
use crate::formats::CheckReport;
use anyhow::{Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Tolerance vhd-util allows for clock skew before it calls a timestamp "in the future".
const FUTURE_SLACK: u64 = 1800;

/// Parses the VHD at `path` (fixed or dynamic) and checks it. I/O errors are `Err`; format
/// problems go to [`CheckReport::problems`].
pub fn check(path: &Path) -> Result<CheckReport> {
    let (file, len) = crate::formats::open_image(path)?;
    let mut r = CheckReport::default();
    if len < 512 {
        r.problems
            .push(format!("file is {len} bytes, too short for a VHD footer"));
        return Ok(r);
    }
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at)
            .with_context(|| format!("{}: read error at offset {at}", path.display()))
    };
    let mut footer = [0u8; 512];
    read(&mut footer, len - 512)?;
    let f = check_footer(&footer, "footer", &mut r);
    r.virtual_size = f.size;
    r.details
        .push(("disk type".into(), f.disk_type.to_string()));
    r.details.push((
        "creator".into(),
        format!(
            "{:?} {:#010x}",
            String::from_utf8_lossy(&f.creator),
            f.creator_version
        ),
    ));
    match f.disk_type {
        2 if len != f.size.saturating_add(512) => {
            r.problems.push(format!(
                "fixed VHD is {len} bytes, expected current size {} + 512",
                f.size
            ));
        }
        3 | 4 => {
            if len < 512 + 1024 + 512 {
                r.problems
                    .push(format!("file is {len} bytes, too short for a dynamic VHD"));
                return Ok(r);
            }
            let mut copy = [0u8; 512];
            read(&mut copy, 0)?;
            if copy != footer {
                r.problems
                    .push("footer copy at offset 0 differs from the footer at the end".into());
            }
            check_dynamic(&file, len, &f, &mut r).with_context(|| path.display().to_string())?;
        }
        _ => {}
    }
    Ok(r)
}

/// The footer fields the rest of the check needs.
struct FooterInfo {
    disk_type: u32,
    data_offset: u64,
    size: u64,
    creator: [u8; 4],
    creator_version: u32,
}

fn check_footer(b: &[u8; 512], what: &str, r: &mut CheckReport) -> FooterInfo {
    let mut p = |s: String| r.problems.push(format!("{what}: {s}"));
    if &b[0..8] != FOOTER_COOKIE {
        p(format!(
            "bad cookie {:?}, expected \"conectix\"",
            String::from_utf8_lossy(&b[0..8])
        ));
    }
    let sum = checksum(b, 64);
    if be32(b, 64) != sum {
        p(format!(
            "checksum {:#010x} does not match the content ({sum:#010x})",
            be32(b, 64)
        ));
    }
    let features = be32(b, 8);
    if features & FEATURES_RESERVED == 0 || features & !0x3 != 0 {
        p(format!(
            "features {features:#x}: bit 0x2 must be set and only 0x1|0x2 may be"
        ));
    }
    if be32(b, 12) != VERSION {
        p(format!("version {:#x}, expected 0x00010000", be32(b, 12)));
    }
    let disk_type = be32(b, 60);
    let data_offset = be64(b, 16);
    match disk_type {
        2 if data_offset != u64::MAX => p(format!(
            "fixed disk with data offset {data_offset:#x}, expected all ones"
        )),
        2..=4 => {}
        t => p(format!(
            "disk type {t}, expected 2 (fixed), 3 (dynamic) or 4 (differencing)"
        )),
    }
    let stamp = VHD_EPOCH + be32(b, 24) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if stamp > now + FUTURE_SLACK {
        p(format!(
            "creation time {} is in the future (unix {stamp}, now {now})",
            be32(b, 24)
        ));
    }
    let creator: [u8; 4] = b[28..32].try_into().unwrap();
    let creator_version = be32(b, 32);
    if &creator == b"tap\0" {
        if creator_version > 0x0001_0003 {
            p(format!(
                "creator \"tap\" version {creator_version:#x} is newer than 1.3"
            ));
        } else if creator_version >= 0x0001_0002 {
            p(
                "creator \"tap\" 1.2+ requires a blktap batmap, which this checker does not read"
                    .into(),
            );
        }
    }
    let size = be64(b, 48);
    if size % 512 != 0 {
        p(format!("current size {size} is not a multiple of 512"));
    }
    let geometry = Chs {
        cylinders: be16(b, 56),
        heads: b[58],
        sectors: b[59],
    };
    let limit = chs(size);
    if geometry.packed() > limit.packed() {
        p(format!(
            "geometry too large: {}/{}/{} is more than CHS(current size) {}/{}/{}",
            geometry.cylinders,
            geometry.heads,
            geometry.sectors,
            limit.cylinders,
            limit.heads,
            limit.sectors
        ));
    }
    if b[84] > 1 {
        p(format!("saved state {} is not 0 or 1", b[84]));
    }
    if b[85] > 1 {
        p(format!("hidden flag {} is not 0 or 1", b[85]));
    }
    if let Some(i) = b[86..].iter().position(|&x| x != 0) {
        p(format!("reserved byte {} is not zero", 86 + i));
    }
    FooterInfo {
        disk_type,
        data_offset,
        size,
        creator,
        creator_version,
    }
}

fn check_dynamic(file: &File, len: u64, f: &FooterInfo, r: &mut CheckReport) -> Result<()> {
    let footer_at = len - 512;
    if f.data_offset % 512 != 0
        || f.data_offset < 512
        || f.data_offset.saturating_add(1024) > footer_at
    {
        r.problems.push(format!(
            "footer: data offset {} does not point at a header inside the file",
            f.data_offset
        ));
        return Ok(());
    }
    let mut h = [0u8; 1024];
    file.read_exact_at(&mut h, f.data_offset)?;
    let mut p = |s: String| r.problems.push(format!("dynamic header: {s}"));
    if &h[0..8] != HEADER_COOKIE {
        p(format!(
            "bad cookie {:?}, expected \"cxsparse\"",
            String::from_utf8_lossy(&h[0..8])
        ));
    }
    let sum = checksum(&h, 36);
    if be32(&h, 36) != sum {
        p(format!(
            "checksum {:#010x} does not match the content ({sum:#010x})",
            be32(&h, 36)
        ));
    }
    if be64(&h, 8) != u64::MAX {
        p(format!("data offset {:#x}, expected all ones", be64(&h, 8)));
    }
    if be32(&h, 24) != VERSION {
        p(format!("version {:#x}, expected 0x00010000", be32(&h, 24)));
    }
    let block = be32(&h, 32) as u64;
    if !block.is_power_of_two() || block < 512 {
        p(format!("block size {block} is not a power of two"));
    }
    if be32(&h, 60) != 0 || h[768..].iter().any(|&x| x != 0) {
        p("reserved fields are not zero".into());
    }
    if f.disk_type != 4 && (h[40..60].iter().any(|&x| x != 0) || h[64..768].iter().any(|&x| x != 0))
    {
        p("parent id, timestamp, name or locators set on a disk without a parent".into());
    }
    let entries = be32(&h, 28) as u64;
    if f.size >> 21 > entries {
        p(format!(
            "{entries} BAT entries cannot cover current size {} in 2 MiB blocks",
            f.size
        ));
    }
    if block.is_power_of_two() && block >= 512 && entries != f.size.div_ceil(block) {
        p(format!(
            "{entries} BAT entries, expected exactly ceil(size / block) = {}",
            f.size.div_ceil(block)
        ));
    }
    let bat_offset = be64(&h, 16);
    let bat_end = bat_offset.saturating_add((entries * 4).div_ceil(512) * 512);
    if bat_offset == 0 || bat_offset % 512 != 0 {
        p(format!(
            "BAT offset {bat_offset} is not a positive multiple of 512"
        ));
        return Ok(());
    }
    if bat_end > footer_at {
        p(format!(
            "BAT ({bat_offset}..{bat_end}) runs past the footer at {footer_at}"
        ));
        return Ok(());
    }
    if !block.is_power_of_two() || block < 512 {
        return Ok(());
    }
    let mut bat = vec![0u8; (entries * 4) as usize];
    file.read_exact_at(&mut bat, bat_offset)?;
    // Data block = bitmap (padded to a sector) + block.
    let bitmap = (block / 512).div_ceil(8).div_ceil(512) * 512;
    let metadata_end = bat_end.max(f.data_offset + 1024);
    let mut blocks: Vec<(u64, u64)> = Vec::new(); // (start byte, BAT index)
    for (i, e) in bat.chunks_exact(4).enumerate() {
        let sector = u32::from_be_bytes(e.try_into().unwrap());
        if sector == UNALLOCATED {
            continue;
        }
        let start = sector as u64 * 512;
        if start < metadata_end || start + bitmap + block > footer_at {
            r.problems.push(format!(
                "BAT entry {i}: block at byte {start} is outside the data area {metadata_end}..{footer_at}"
            ));
        }
        blocks.push((start, i as u64));
    }
    blocks.sort_unstable();
    for w in blocks.windows(2) {
        if w[0].0 + bitmap + block > w[1].0 {
            r.problems.push(format!(
                "BAT entries {} and {}: blocks overlap at byte {}",
                w[0].1, w[1].1, w[1].0
            ));
        }
    }
    r.details.push(("block size".into(), block.to_string()));
    r.details.push((
        "allocated blocks".into(),
        format!("{} of {entries}", blocks.len()),
    ));
    Ok(())
}
