//! Sparse raw copy (holes stay holes) and the trivial raw "checker".
use super::{CheckReport, DiskWriter};
use super::source::RawDisk;
use anyhow::Result;
use std::fs::File;
use std::path::Path;

pub struct RawWriter;

impl DiskWriter for RawWriter {
    fn write(&self, _disk: &RawDisk, _out: &mut File) -> Result<()> {
        anyhow::bail!("raw writer not implemented yet")
    }
}

pub fn check(path: &Path) -> Result<CheckReport> {
    anyhow::bail!("{}: raw checker not implemented yet", path.display())
}
