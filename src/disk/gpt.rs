//! The GPT partition table (UEFI specification, "GUID Partition Table (GPT) Disk Layout"), written with the `gpt` crate.
//!
//! Every GUID comes from [`DiskIds`], never from the crate's random generator, so a GPT disk
//! is reproducible. All 128 entries are kept (unused ones zero), as sgdisk and parted expect.

use super::layout::{DiskIds, Layout, Role, SECTOR};
use anyhow::{anyhow, Context, Result};
use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types;
use std::collections::BTreeMap;
use std::fs::File;

/// GPT entry count: the UEFI minimum array of 16 KiB.
const ENTRIES: u32 = 128;

fn partition_type(role: Role) -> partition_types::Type {
    match role {
        Role::BiosBoot => partition_types::BIOS,
        Role::Esp => partition_types::EFI,
        Role::Root => partition_types::LINUX_FS,
    }
}

fn name(role: Role) -> &'static str {
    match role {
        Role::BiosBoot => "BIOS boot",
        Role::Esp => "EFI system",
        Role::Root => "root",
    }
}

/// Writes the protective MBR, both GPT headers and both entry arrays into `disk`, whose length
/// must already be the full disk size.
pub fn write(disk: &mut File, layout: &Layout, ids: &DiskIds) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow!("cannot write the GPT partition table: {e}");
    let lbas = layout.total_sectors;
    let protective = ProtectiveMBR::with_lb_size(u32::try_from(lbas - 1).unwrap_or(u32::MAX));
    protective.overwrite_lba0(disk).map_err(|e| fail(&e))?;

    let mut gpt = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(&mut *disk, Some(ids.gpt_disk))
        .map_err(|e| fail(&e))?;
    let mut entries: BTreeMap<u32, Partition> =
        (1..=ENTRIES).map(|i| (i, Partition::zero())).collect();
    for (i, p) in layout.partitions.iter().enumerate() {
        entries.insert(
            p.number,
            Partition {
                part_type_guid: partition_type(p.role),
                part_guid: ids.gpt_partitions[i],
                first_lba: p.first_lba,
                last_lba: p.first_lba + p.sectors - 1,
                flags: 0,
                name: name(p.role).to_string(),
            },
        );
    }
    gpt.update_partitions(entries).map_err(|e| fail(&e))?;
    gpt.write_inplace().map_err(|e| fail(&e))?;
    debug_assert_eq!(SECTOR, 512);
    disk.sync_data()
        .context("cannot write the GPT partition table")?;
    Ok(())
}
