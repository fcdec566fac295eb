//! Repairs the two directory-entry bugs of `fatfs` 0.3.6 (docs/formats.md "fatfs 0.3.6"), so the ESP is clean
//! under `fsck.vfat -n` (BOSH mounts the ESP with fsck pass 1; a boot-time `fsck.vfat -a`
//! would otherwise rewrite it):
//! 1. `create_dir` writes an LFN entry before "." and before ".." (LFN, ".", LFN, "..");
//!    fsck wants "." in slot 0 and ".." in slot 1.
//! 2. In a directory whose parent is the FAT32 root, ".." holds the root cluster instead of 0.
//!
//! Run after `fatfs` has unmounted. Walks every directory from the root.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

const ENTRY: usize = 32;
const ATTR_DIR: u8 = 0x10;
const ATTR_LFN: u8 = 0x0F;
const DELETED: u8 = 0xE5;

/// Geometry read from the boot sector.
struct Fat {
    cluster_bytes: u64,
    fat_offset: u64,
    /// FAT12/16 fixed root directory region: (offset, bytes). None on FAT32.
    fixed_root: Option<(u64, u64)>,
    root_cluster: u32,
    data_offset: u64,
    fat32: bool,
}

impl Fat {
    fn read(disk: &File, base: u64) -> Result<Fat> {
        let mut bs = [0u8; 512];
        disk.read_exact_at(&mut bs, base)?;
        let u16_at = |o: usize| u16::from_le_bytes([bs[o], bs[o + 1]]) as u64;
        let u32_at = |o: usize| u32::from_le_bytes([bs[o], bs[o + 1], bs[o + 2], bs[o + 3]]) as u64;
        let bps = u16_at(11);
        let spc = bs[13] as u64;
        let reserved = u16_at(14);
        let fats = bs[16] as u64;
        let root_entries = u16_at(17);
        let fat_sectors = if u16_at(22) != 0 {
            u16_at(22)
        } else {
            u32_at(36)
        };
        if bps == 0 || spc == 0 || fats == 0 {
            bail!("not a FAT boot sector");
        }
        let root_sectors = (root_entries * ENTRY as u64).div_ceil(bps);
        let root_start = reserved + fats * fat_sectors;
        let fat32 = root_entries == 0;
        Ok(Fat {
            cluster_bytes: bps * spc,
            fat_offset: base + reserved * bps,
            fixed_root: (!fat32).then(|| (base + root_start * bps, root_sectors * bps)),
            root_cluster: if fat32 { u32_at(44) as u32 } else { 0 },
            data_offset: base + (root_start + root_sectors) * bps,
            fat32,
        })
    }

    fn cluster_offset(&self, c: u32) -> u64 {
        self.data_offset + (c as u64 - 2) * self.cluster_bytes
    }

    fn next_cluster(&self, disk: &File, c: u32) -> Result<Option<u32>> {
        let next = if self.fat32 {
            let mut b = [0u8; 4];
            disk.read_exact_at(&mut b, self.fat_offset + c as u64 * 4)?;
            u32::from_le_bytes(b) & 0x0FFF_FFFF
        } else {
            let mut b = [0u8; 2];
            disk.read_exact_at(&mut b, self.fat_offset + c as u64 * 2)?;
            let v = u16::from_le_bytes(b) as u32;
            if v >= 0xFFF8 {
                0x0FFF_FFF8
            } else {
                v
            }
        };
        Ok((2..0x0FFF_FFF0).contains(&next).then_some(next))
    }

    /// The byte ranges of a directory: the fixed root region, or its cluster chain.
    fn dir_ranges(&self, disk: &File, first_cluster: u32) -> Result<Vec<(u64, u64)>> {
        if first_cluster == 0 {
            return Ok(self.fixed_root.into_iter().collect());
        }
        let mut out = vec![];
        let mut c = Some(first_cluster);
        while let Some(cl) = c {
            if out.len() > 65536 {
                bail!("cluster chain loop");
            }
            out.push((self.cluster_offset(cl), self.cluster_bytes));
            c = self.next_cluster(disk, cl)?;
        }
        Ok(out)
    }
}

fn entry_cluster(e: &[u8]) -> u32 {
    (u16::from_le_bytes([e[20], e[21]]) as u32) << 16 | u16::from_le_bytes([e[26], e[27]]) as u32
}

/// Fixes every directory of the FAT filesystem starting at byte `base` of `disk`.
pub fn fix_directories(disk: &File, base: u64) -> Result<()> {
    let fat = Fat::read(disk, base).context("ESP: cannot read the FAT boot sector")?;
    let root = if fat.fat32 { fat.root_cluster } else { 0 };
    let mut stack = vec![(root, true)];
    let mut seen = 0;
    while let Some((cluster, is_root)) = stack.pop() {
        seen += 1;
        if seen > 10_000 {
            bail!("ESP: directory tree too deep or looped");
        }
        let mut children = vec![];
        for (off, len) in fat.dir_ranges(disk, cluster)? {
            let mut buf = vec![0u8; len as usize];
            disk.read_exact_at(&mut buf, off)?;
            for e in buf.chunks(ENTRY) {
                if e[0] == 0 {
                    break;
                }
                if e[0] == DELETED || e[11] == ATTR_LFN || e[11] & ATTR_DIR == 0 || e[0] == b'.' {
                    continue;
                }
                children.push(entry_cluster(e));
            }
        }
        for child in children {
            fix_dot_entries(disk, &fat, child, is_root)?;
            stack.push((child, false));
        }
    }
    Ok(())
}

/// Puts "." in slot 0 and ".." in slot 1 of a directory's first cluster, deletes the stray
/// entries fatfs left in slots 2 and 3, and zeroes ".." when the parent is the root.
fn fix_dot_entries(disk: &File, fat: &Fat, cluster: u32, parent_is_root: bool) -> Result<()> {
    let off = fat.cluster_offset(cluster);
    let mut slots = [0u8; 4 * ENTRY];
    disk.read_exact_at(&mut slots, off)?;
    let is =
        |e: &[u8], name: &[u8; 11]| e[11] & ATTR_DIR != 0 && e[11] != ATTR_LFN && &e[..11] == name;
    let find = |name: &[u8; 11]| slots.chunks(ENTRY).position(|e| is(e, name));
    let (Some(dot), Some(dotdot)) = (find(b".          "), find(b"..         ")) else {
        bail!("ESP: directory at cluster {cluster} has no '.' and '..' entries");
    };
    let mut fixed = slots;
    let (d, dd) = (dot * ENTRY, dotdot * ENTRY);
    let mut dot_e = [0u8; ENTRY];
    dot_e.copy_from_slice(&slots[d..d + ENTRY]);
    let mut dotdot_e = [0u8; ENTRY];
    dotdot_e.copy_from_slice(&slots[dd..dd + ENTRY]);
    if parent_is_root {
        dotdot_e[20..22].fill(0);
        dotdot_e[26..28].fill(0);
    }
    fixed[..ENTRY].copy_from_slice(&dot_e);
    fixed[ENTRY..2 * ENTRY].copy_from_slice(&dotdot_e);
    // Slots before the last dot entry that are not "." / ".." were the stray LFN entries.
    for i in 2..=dotdot.max(dot) {
        fixed[i * ENTRY] = DELETED;
    }
    if fixed != slots {
        disk.write_all_at(&fixed, off)?;
    }
    Ok(())
}
