//! The msdos (MBR) partition table in LBA 0 (UEFI specification, "Legacy Master Boot Record").
//!
//! Only the table, the disk signature and the 0x55AA mark are written here; the 440 bytes of
//! boot code are GRUB's boot.img, written by [`crate::disk::grub`], which keeps this table.

use super::layout::{Layout, Role};
use anyhow::{Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// MBR partition type of each role.
fn type_byte(role: Role) -> u8 {
    match role {
        Role::Esp => 0xEF,
        Role::Root => 0x83,
        // A BIOS boot partition exists only on GPT.
        Role::BiosBoot => unreachable!("no BIOS boot partition on an MBR disk"),
    }
}

/// CHS address of an LBA with the 255-head, 63-sector geometry every tool assumes; beyond
/// 1024 cylinders the value saturates at FE FF FF as sfdisk and parted write it.
pub fn chs(lba: u64) -> [u8; 3] {
    let (heads, spt) = (255u64, 63u64);
    let cyl = lba / (heads * spt);
    if cyl > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / spt) % heads;
    let sector = lba % spt + 1;
    [
        head as u8,
        (sector as u8) | (((cyl >> 8) as u8) << 6),
        cyl as u8,
    ]
}

/// The 512-byte sector 0 with an empty boot code area.
pub fn table_sector(layout: &Layout, signature: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[440..444].copy_from_slice(&signature.to_le_bytes());
    // The ESP carries the boot flag when present (official `set 1 esp on`); a BIOS-only disk
    // marks root active, which some BIOSes insist on.
    let active = layout
        .get(Role::Esp)
        .map(|p| p.number)
        .unwrap_or(layout.root().number);
    for (i, p) in layout.partitions.iter().enumerate() {
        let e = &mut s[446 + 16 * i..446 + 16 * (i + 1)];
        e[0] = if p.number == active { 0x80 } else { 0x00 };
        e[1..4].copy_from_slice(&chs(p.first_lba));
        e[4] = type_byte(p.role);
        e[5..8].copy_from_slice(&chs(p.first_lba + p.sectors - 1));
        e[8..12].copy_from_slice(&(p.first_lba as u32).to_le_bytes());
        e[12..16].copy_from_slice(&(p.sectors as u32).to_le_bytes());
    }
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

/// Writes the MBR partition table into LBA 0 of `disk`.
pub fn write(disk: &File, layout: &Layout, signature: u32) -> Result<()> {
    debug_assert!(layout.partitions.len() <= 4);
    disk.write_all_at(&table_sector(layout, signature), 0)
        .context("cannot write the MBR partition table")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_matches_sfdisk() {
        assert_eq!(chs(2048), [0x20, 0x21, 0x00]);
        assert_eq!(chs(100351), [62, 56, 6]);
        assert_eq!(chs(20_000_000), [0xFE, 0xFF, 0xFF]);
    }
}
