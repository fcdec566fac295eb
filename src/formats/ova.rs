//! The vSphere package: `image.ovf`, `image.mf`, `image-disk1.vmdk` in a ustar archive, the
//! descriptor first and the manifest right after it (DSP0243; COT rejects any other order).
//! The same bytes are a standalone `.ova` ([`OvaWriter`]) and, gzipped by the stemcell packer,
//! the vSphere stemcell's `image` member ([`write_vsphere_image_tar`]).

use super::ovf::{self, OvfDisk};
use super::source::RawDisk;
use super::vhd::build_time;
use super::vmdk;
use super::{DiskWriter, OvfOptions};
use anyhow::{Context, Result};
use sha1::{Digest, Sha1};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// Member names, as ovftool names them for BOSH (cloudfoundry/bosh-linux-stemcell-builder
/// `stemcell_builder/stages/prepare_ovf_image_stemcell/apply.sh`).
pub const OVF_NAME: &str = "image.ovf";
pub const MANIFEST_NAME: &str = "image.mf";
pub const VMDK_NAME: &str = "image-disk1.vmdk";

/// Writes a standalone OVA.
pub struct OvaWriter {
    pub options: OvfOptions,
}

impl DiskWriter for OvaWriter {
    fn write(&self, disk: &RawDisk, out: &mut File) -> Result<()> {
        write_vsphere_image_tar(disk, &self.options, out)
    }
}

/// Writes the uncompressed tar of `image.ovf`, `image.mf` and `image-disk1.vmdk` for `disk`
/// to `out`. The VMDK goes through an anonymous temporary file next to the raw disk first: its size
/// goes in the descriptor and its SHA-1 in the manifest, and both precede it in the archive.
pub fn write_vsphere_image_tar(
    disk: &RawDisk,
    opts: &OvfOptions,
    out: &mut dyn Write,
) -> Result<()> {
    let mut vmdk_file =
        temp_file_near(disk).context("cannot create a temporary file for the VMDK")?;
    let info = vmdk::write_stream(disk, &mut vmdk_file, VMDK_NAME)?;
    vmdk_file.seek(SeekFrom::Start(0))?;
    let vmdk_sha1 = sha1_of(&mut vmdk_file).context("cannot read back the temporary VMDK")?;
    vmdk_file.seek(SeekFrom::Start(0))?;

    let disk_ref = OvfDisk {
        file_name: VMDK_NAME.into(),
        file_size: info.file_size,
        capacity: disk.size(),
    };
    let descriptor = ovf::descriptor(opts, &disk_ref);
    let manifest = ovf::manifest(&[
        (OVF_NAME, Sha1::digest(&descriptor).into()),
        (VMDK_NAME, vmdk_sha1),
    ]);

    let mtime = build_time();
    let mut tar = tar::Builder::new(out);
    append(
        &mut tar,
        OVF_NAME,
        descriptor.len() as u64,
        mtime,
        descriptor.as_bytes(),
    )?;
    append(
        &mut tar,
        MANIFEST_NAME,
        manifest.len() as u64,
        mtime,
        manifest.as_bytes(),
    )?;
    append(&mut tar, VMDK_NAME, info.file_size, mtime, &mut vmdk_file)?;
    tar.into_inner()
        .context("write error")?
        .flush()
        .context("write error")?;
    Ok(())
}

/// An anonymous temporary file next to the raw disk (the build's work directory, which has room
/// for a disk-sized file, unlike a small tmpfs `/tmp`), else in `$TMPDIR`.
fn temp_file_near(disk: &RawDisk) -> std::io::Result<File> {
    match disk.path().parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => tempfile::tempfile_in(dir).or_else(|_| tempfile::tempfile()),
        None => tempfile::tempfile_in(".").or_else(|_| tempfile::tempfile()),
    }
}

/// One regular-file member: ustar header, mode 0644, owner root, fixed mtime.
fn append(
    tar: &mut tar::Builder<&mut dyn Write>,
    name: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_username("root")?;
    h.set_groupname("root")?;
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, data)
        .with_context(|| format!("write error in tar member {name}"))
}

/// SHA-1 of everything `r` yields.
fn sha1_of(r: &mut impl Read) -> std::io::Result<[u8; 20]> {
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}
