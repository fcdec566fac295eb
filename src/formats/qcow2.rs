//! qcow2 writer (compat 0.10 and 1.1, optionally compressed) and checker. Layout: formats.md §1.
use super::{CheckReport, DiskWriter, Qcow2Compat};
use super::source::RawDisk;
use anyhow::Result;
use std::fs::File;
use std::path::Path;

pub struct Qcow2Writer {
    pub compat: Qcow2Compat,
    pub compressed: bool,
}

impl DiskWriter for Qcow2Writer {
    fn write(&self, _disk: &RawDisk, _out: &mut File) -> Result<()> {
        anyhow::bail!("qcow2 writer not implemented yet")
    }
}

pub fn check(path: &Path) -> Result<CheckReport> {
    anyhow::bail!("{}: qcow2 checker not implemented yet", path.display())
}
