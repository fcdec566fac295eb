//! Infrastructure plugins: `infrastructures/<name>.yaml`. Each names the manifest hypervisor,
//! the hypervisor part of stemcell names, the disk size, the outputs (disk format, image member
//! kind, name suffix), `stemcell_formats`, the extra `cloud_properties` (per OS where they
//! differ), the light-stemcell formats, and the build inputs issue 4 uses (stages, disk layout
//! and boot modes, kernel command line, agent settings).

use super::arch::Arch;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Infrastructure {
    /// Must equal the file name (without `.yaml`); `cloud_properties.infrastructure`.
    pub name: String,
    /// `cloud_properties.hypervisor` (aws `xen`).
    pub hypervisor: String,
    /// The hypervisor part of stemcell names (aws `xen-hvm`).
    pub name_hypervisor: String,
    /// Root disk size in MiB (`cloud_properties.disk`).
    #[serde(default = "default_disk_size")]
    pub disk_size_mib: u64,
    /// One stemcell tarball per output; the first is the default (no name suffix).
    pub outputs: Vec<Output>,
    pub stemcell_formats: Vec<String>,
    /// Appended to `cloud_properties` after the common keys, in this order.
    #[serde(default)]
    pub cloud_properties: Mapping,
    /// Further `cloud_properties` for one OS (e.g. noble AWS `boot_mode`), appended last.
    #[serde(default)]
    pub os_cloud_properties: BTreeMap<String, Mapping>,
    /// Light stemcells, where the infrastructure has them.
    #[serde(default)]
    pub light: Option<Light>,
    /// Stemcell-phase stages, in order (issue 4).
    #[serde(default)]
    pub stages: Vec<String>,
    #[serde(default)]
    pub disk: Option<DiskLayout>,
    #[serde(default)]
    pub kernel_cmdline: Vec<String>,
    /// Agent settings, decoded by the agent stage.
    #[serde(default)]
    pub agent: Value,
    /// The architectures this infrastructure's stemcells are built for (Debian names), each
    /// with the `cloud_properties.architecture` its CPI reads. Absent: amd64 as `x86_64`.
    #[serde(default)]
    pub architectures: Option<BTreeMap<String, String>>,
    /// The file this was loaded from, for error messages.
    #[serde(skip)]
    pub file: PathBuf,
}

impl Infrastructure {
    /// `cloud_properties.architecture` of this infrastructure's stemcells for `arch`; an
    /// architecture it is not built for is an error naming the file and the ones it is.
    pub fn manifest_architecture(&self, arch: Arch) -> Result<String> {
        let default = BTreeMap::from([(Arch::Amd64.debian().to_string(), "x86_64".to_string())]);
        let map = self.architectures.as_ref().unwrap_or(&default);
        match map.get(arch.debian()) {
            Some(value) => Ok(value.clone()),
            None => bail!(
                "{}: {} stemcells are not built for {arch} (architectures: {})",
                self.file.display(),
                self.name,
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

fn default_disk_size() -> u64 {
    5120
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// `cloud_properties.disk_format`: qcow2, raw, rawdisk, ovf, vhd, vhdx, files.
    pub disk_format: String,
    /// How the `image` member is made.
    pub image: ImageKind,
    /// Added to names for a non-default output, e.g. `-raw`.
    #[serde(default)]
    pub name_suffix: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Light {
    pub stemcell_formats: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionTable {
    Mbr,
    Gpt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    Bios,
    Uefi,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskLayout {
    pub layout: PartitionTable,
    pub boot: Vec<BootMode>,
}

/// The infrastructure names available under `root/infrastructures`.
pub fn available(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("infrastructures"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".yaml"))
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Loads and validates `root/infrastructures/<name>.yaml`.
pub fn load(root: &Path, name: &str) -> Result<Infrastructure> {
    let valid = available(root);
    if !valid.iter().any(|n| n == name) || name.contains('/') {
        bail!(
            "unknown infrastructure {name:?} (in {}); valid: {}",
            root.join("infrastructures").display(),
            valid.join(", ")
        );
    }
    let path = root.join("infrastructures").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&text, &path)
}

/// Parses and validates one plugin file; errors name `file:line:col`.
pub fn parse(text: &str, path: &Path) -> Result<Infrastructure> {
    let mut infra: Infrastructure = serde_yaml::from_str(text).map_err(|e| match e.location() {
        Some(l) => anyhow!("{}:{}:{}: {}", path.display(), l.line(), l.column(), e),
        None => anyhow!("{}: {}", path.display(), e),
    })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let err = |msg: String| anyhow!("{}: {msg}", path.display());
    if infra.name != stem {
        return Err(err(format!(
            "name {:?} does not match the file name {stem:?}",
            infra.name
        )));
    }
    infra.file = path.to_path_buf();
    for name in infra.architectures.iter().flat_map(|m| m.keys()) {
        Arch::parse(name).map_err(|e| err(format!("architectures: {e}")))?;
    }
    if infra.outputs.is_empty() {
        return Err(err("outputs: at least one output is needed".into()));
    }
    if infra.stemcell_formats.is_empty() {
        return Err(err("stemcell_formats: at least one format is needed".into()));
    }
    for (i, o) in infra.outputs.iter().enumerate() {
        if o.disk_format != o.image.disk_format() {
            return Err(err(format!(
                "outputs[{i}]: disk_format {:?} does not match image {:?} (which is disk_format {:?})",
                o.disk_format,
                o.image,
                o.image.disk_format()
            )));
        }
        if i > 0 && o.name_suffix.is_empty() {
            return Err(err(format!(
                "outputs[{i}]: a non-default output needs a name_suffix such as \"-{}\"",
                o.disk_format
            )));
        }
    }
    Ok(infra)
}

/// How the `image` member is made from the bootable disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    /// gzip tar of `root.img`, a compressed qcow2 with the compat 0.10 header (OpenStack).
    Qcow2Tar,
    /// gzip tar of `root.img`, the raw disk (AWS, OpenStack `-raw`).
    RawTar,
    /// gzip tar of `disk.raw`, the raw disk (Google).
    RawdiskTar,
    /// gzip tar of `root.vhd`, a fixed VHD (Azure).
    VhdTar,
    /// gzip tar of `image.ovf`, `image.mf`, `image-disk1.vmdk` (vSphere).
    OvfTar,
    /// bzip2 stream of a dynamic VHD, not a tar (CloudStack).
    VhdBzip2,
    /// gzip tar of the root filesystem (warden); made from a directory, never from a disk.
    FilesTar,
}

impl ImageKind {
    /// Every kind with the `cloud_properties.disk_format` that names it.
    pub const ALL: [(ImageKind, &'static str); 7] = [
        (ImageKind::Qcow2Tar, "qcow2"),
        (ImageKind::RawTar, "raw"),
        (ImageKind::RawdiskTar, "rawdisk"),
        (ImageKind::VhdTar, "vhd"),
        (ImageKind::OvfTar, "ovf"),
        (ImageKind::VhdBzip2, "vhdx"),
        (ImageKind::FilesTar, "files"),
    ];

    /// The kind a manifest's `disk_format` calls for.
    pub fn for_disk_format(disk_format: &str) -> Option<ImageKind> {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == disk_format)
            .map(|(k, _)| *k)
    }

    /// The `cloud_properties.disk_format` of this kind.
    pub fn disk_format(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, f)| *f)
            .unwrap_or("raw")
    }

    /// The member names the image tar holds (empty for the non-tar and files kinds).
    pub fn inner_members(self) -> &'static [&'static str] {
        match self {
            ImageKind::Qcow2Tar | ImageKind::RawTar => &["root.img"],
            ImageKind::RawdiskTar => &["disk.raw"],
            ImageKind::VhdTar => &["root.vhd"],
            ImageKind::OvfTar => &["image.ovf", "image.mf", "image-disk1.vmdk"],
            ImageKind::VhdBzip2 | ImageKind::FilesTar => &[],
        }
    }
}

/// `infrastructures/` of the project (see `resolve::project_root`).
pub fn default_root() -> PathBuf {
    super::resolve::project_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_file_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let names = available(root);
        for n in [
            "aws",
            "azure",
            "cloudstack",
            "google",
            "openstack",
            "vsphere",
            "warden",
        ] {
            assert!(names.contains(&n.to_string()), "{names:?}");
            load(root, n).unwrap();
        }
        let err = load(root, "nope").unwrap_err().to_string();
        assert!(err.contains("valid: aws, azure"), "{err}");
    }

    #[test]
    fn errors_have_line_and_column() {
        let err = parse(
            "name: x\nhypervisor: kvm\nbogus: 1\n",
            Path::new("/i/x.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("/i/x.yaml:3:1: unknown field `bogus`"),
            "{err}"
        );
    }
}
