//! VMDK streamOptimized writer and checker. Layout: formats.md §3.
use super::{CheckReport, DiskWriter};
use super::source::RawDisk;
use anyhow::Result;
use std::fs::File;
use std::path::Path;

pub struct VmdkWriter;

impl DiskWriter for VmdkWriter {
    fn write(&self, _disk: &RawDisk, _out: &mut File) -> Result<()> {
        anyhow::bail!("vmdk writer not implemented yet")
    }
}

pub fn check(path: &Path) -> Result<CheckReport> {
    anyhow::bail!("{}: vmdk checker not implemented yet", path.display())
}
