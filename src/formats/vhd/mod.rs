//! VHD (Microsoft Virtual Hard Disk, qemu's `vpc`): the dynamic writer (2 MiB blocks, for
//! CloudStack/XenServer), the fixed writer (Azure) and a checker that enforces the rules Xen's
//! `vhd-util check` applies. Byte layouts: the Microsoft VHD specification; choices: docs/formats.md.
//!
//! - [`layout`]: footer, dynamic header, CHS geometry and checksum (the byte formats).
//! - [`write`]: [`VhdWriter`], one streaming pass over the raw disk.
//! - [`check`]: [`check`], our own reader, every problem one line.

mod check;
pub mod layout;
mod write;

pub use check::check;
pub use write::VhdWriter;

/// `SOURCE_DATE_EPOCH` (seconds since the Unix epoch) when set and valid: reproducible builds
/// take every timestamp from it and derive every "random" id from the input instead.
pub fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

/// Seconds since the Unix epoch: `SOURCE_DATE_EPOCH` when set, else the clock.
pub fn build_time() -> u64 {
    source_date_epoch().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}
