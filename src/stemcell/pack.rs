//! Packing a heavy stemcell: build the `image` member (SHA-1 computed while writing), put it
//! in the manifest, then write `stemcell.MF`, `packages.txt`, `dev_tools_file_list.txt` and
//! `image`, in that order, as a gzip tar that appears atomically (cloudfoundry/bosh-linux-stemcell-builder `bosh-stemcell/lib/bosh/stemcell/stemcell_packager.rb`).
//!
//! The SBOMs `sbom.spdx.json` and `sbom.cdx.json` follow `image`, as in official tarballs; they
//! are generated from `packages.txt` (see `sbom`), which no consumer reads (bosh-cli `stemcell/reader.go` and the
//! Director's `jobs/update_stemcell.rb` read only `stemcell.MF` and `image`).

use super::image::{self, ImageFile, ImageKind};
use super::manifest::Manifest;
use super::naming::check_name_chars;
use super::sbom;
use super::tarball::{source_date_epoch, write_stemcell_tgz, ImageContent, Member, Written};
use crate::formats::OvfOptions;
use crate::output::AtomicOutput;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Everything about one heavy tarball except the image bytes.
#[derive(Clone, Debug)]
pub struct PackSpec {
    /// The manifest; its `sha1` is filled in by [`pack`].
    pub manifest: Manifest,
    /// The `.tgz` file name (see `naming`).
    pub tarball_name: String,
    pub image_kind: ImageKind,
    /// `dpkg -l` output (shipped as `packages.txt`; empty when unknown).
    pub packages: Vec<u8>,
    /// `/var/vcap/bosh/etc/dev_tools_file_list` (shipped as `dev_tools_file_list.txt`).
    pub dev_tools: Vec<u8>,
    /// The VM description for the vSphere OVF.
    pub ovf: OvfOptions,
    /// Overwrite an existing tarball.
    pub force: bool,
}

/// Where the image comes from.
pub enum ImageSource<'a> {
    /// A bootable raw disk, converted per [`PackSpec::image_kind`].
    Disk(&'a Path),
    /// The root filesystem directory (warden `files` image).
    RootDir(&'a Path),
}

/// A packed stemcell.
#[derive(Clone, Debug)]
pub struct Packed {
    pub tarball: Written,
    pub image_sha1: String,
    pub image_size: u64,
    pub manifest: Manifest,
}

/// Packs one heavy stemcell into `out_dir`. On any error nothing is left behind.
pub fn pack(spec: &PackSpec, source: ImageSource, out_dir: &Path) -> Result<Packed> {
    check_name_chars("version", &spec.manifest.version)?;
    check_name_chars("name", &spec.manifest.name)?;
    let path: PathBuf = out_dir.join(&spec.tarball_name);
    // Claim the output first: an existing tarball is refused before any slow work.
    let mut out = AtomicOutput::create(&path, spec.force)?;
    let mtime = source_date_epoch();
    let img: ImageFile = match source {
        ImageSource::Disk(disk) => {
            image::from_disk(spec.image_kind, disk, &spec.ovf, out_dir, mtime)?
        }
        ImageSource::RootDir(root) => image::from_root_dir(root, out_dir)?,
    };
    let mut manifest = spec.manifest.clone();
    manifest.sha1 = img.sha1.clone();
    let members = [
        Member {
            name: "packages.txt".into(),
            data: spec.packages.clone(),
        },
        Member {
            name: "dev_tools_file_list.txt".into(),
            data: spec.dev_tools.clone(),
        },
    ];
    let installed = sbom::parse_dpkg_list(&String::from_utf8_lossy(&spec.packages));
    let distro = manifest
        .operating_system
        .split('-')
        .next()
        .unwrap_or("ubuntu")
        .to_string();
    let (n, v) = (&manifest.name, &manifest.version);
    let after = [
        Member {
            name: "sbom.spdx.json".into(),
            data: json(&sbom::spdx(n, v, &installed, &distro, mtime))?,
        },
        Member {
            name: "sbom.cdx.json".into(),
            data: json(&sbom::cyclonedx(n, v, &installed, &distro, mtime))?,
        },
    ];
    let tarball = write_stemcell_tgz(
        &mut out,
        &manifest.to_yaml()?,
        &members,
        ImageContent::File(img.path()),
        &after,
        mtime,
    )
    .with_context(|| format!("{}: cannot write", path.display()))?;
    out.commit()?;
    Ok(Packed {
        tarball,
        image_sha1: img.sha1.clone(),
        image_size: img.size,
        manifest,
    })
}

fn json(v: &serde_json::Value) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}
