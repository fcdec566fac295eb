//! VHD writer (dynamic with 2 MiB blocks, fixed) and checker. Layout: formats.md §2.
use super::{CheckReport, DiskWriter};
use super::source::RawDisk;
use anyhow::Result;
use std::fs::File;
use std::path::Path;

pub struct VhdWriter {
    pub fixed: bool,
}

impl DiskWriter for VhdWriter {
    fn write(&self, _disk: &RawDisk, _out: &mut File) -> Result<()> {
        anyhow::bail!("vhd writer not implemented yet")
    }
}

pub fn check(path: &Path) -> Result<CheckReport> {
    anyhow::bail!("{}: vhd checker not implemented yet", path.display())
}
