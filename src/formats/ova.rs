//! OVA (descriptor first, then manifest and VMDK) and the vSphere `image` member.
use super::{DiskWriter, OvfOptions};
use super::source::RawDisk;
use anyhow::Result;
use std::fs::File;

pub struct OvaWriter {
    pub options: OvfOptions,
}

impl DiskWriter for OvaWriter {
    fn write(&self, _disk: &RawDisk, _out: &mut File) -> Result<()> {
        anyhow::bail!("ova writer not implemented yet")
    }
}
