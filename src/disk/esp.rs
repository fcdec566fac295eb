//! The EFI system partition, built with `fatfs` inside the disk file (docs/formats.md "fatfs 0.3.6").
//!
//! FAT16 like the official `mkfs.vfat` on 48 MiB, which the BOSH agent relies on: it skips
//! the first `parted -m print` line only when that filesystem is `fat16` (docs/agent-needs.md "Disk layout").
//! Timestamps come from one fixed instant (SOURCE_DATE_EPOCH or now) and the volume id from
//! [`crate::disk::DiskIds`], so the ESP is reproducible.

use super::fat_fixup;
use super::layout::Extent;
use anyhow::{anyhow, Context, Result};
use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

/// A file to put on the ESP: a path like `EFI/BOOT/BOOTX64.EFI` and its bytes.
pub struct EspFile {
    pub path: String,
    pub data: Vec<u8>,
}

/// A clock that always says the same instant.
#[derive(Debug)]
struct FixedTime(DateTime);

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// Unix time → DOS date and time (UTC), clamped to FAT's 1980..2107 range.
pub fn dos_time(unix: u64) -> DateTime {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u16;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u16;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    if year < 1980 {
        return DateTime {
            date: Date {
                year: 1980,
                month: 1,
                day: 1,
            },
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        };
    }
    let year = year.min(2107);
    let time = Time {
        hour: (secs / 3600) as u16,
        min: (secs / 60 % 60) as u16,
        sec: (secs % 60) as u16,
        millis: 0,
    };
    DateTime {
        date: Date { year, month, day },
        time,
    }
}

/// Formats `part` of `disk` as FAT16 with `volume_id` and writes `files` (parents created).
pub fn build(
    disk: &mut File,
    part: &Extent,
    volume_id: u32,
    unix_time: u64,
    files: &[EspFile],
) -> Result<()> {
    let fail = |e: std::io::Error| anyhow!("ESP: {e}");
    {
        let mut slice =
            fscommon::StreamSlice::new(&mut *disk, part.offset(), part.offset() + part.bytes())
                .map_err(fail)?;
        fatfs::format_volume(
            &mut slice,
            FormatVolumeOptions::new()
                .fat_type(FatType::Fat16)
                .volume_id(volume_id),
        )
        .map_err(fail)?;
        // fatfs wants a 'static clock; one tiny leak per disk build.
        let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(dos_time(unix_time))));
        let fs = FileSystem::new(
            slice,
            FsOptions::new()
                .time_provider(clock)
                .update_accessed_date(false),
        )
        .map_err(fail)?;
        {
            let root = fs.root_dir();
            let mut dirs: Vec<&str> = files
                .iter()
                .flat_map(|f| f.path.match_indices('/').map(move |(i, _)| &f.path[..i]))
                .collect();
            dirs.sort();
            dirs.dedup();
            for d in dirs {
                root.create_dir(d)
                    .map_err(|e| anyhow!("ESP: cannot create {d}: {e}"))?;
            }
            for f in files {
                let mut out = root
                    .create_file(&f.path)
                    .map_err(|e| anyhow!("ESP: cannot create {}: {e}", f.path))?;
                out.truncate().map_err(fail)?;
                out.write_all(&f.data)
                    .map_err(|e| anyhow!("ESP: no room for {}: {e}", f.path))?;
                out.flush().map_err(fail)?;
            }
        }
        fs.unmount().map_err(fail)?;
    }
    // BPB "hidden sectors" = the partition's start, as mkfs.vfat writes it on a partition.
    disk.write_all_at(&(part.first_lba as u32).to_le_bytes(), part.offset() + 28)
        .context("ESP: cannot write the boot sector")?;
    fat_fixup::fix_directories(disk, part.offset()).context("ESP: cannot repair directory entries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time_converts_utc() {
        // 2023-11-14 22:13:20 UTC
        let t = dos_time(1_700_000_000);
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
        assert_eq!(dos_time(0).date.year, 1980);
    }
}
