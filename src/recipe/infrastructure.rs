//! Infrastructure plugins: `infrastructures/<name>.yaml`. Each names the manifest hypervisor,
//! the hypervisor part of stemcell names, the disk size, the outputs (disk format, image member
//! kind, name suffix), `stemcell_formats`, the extra `cloud_properties` (per OS where they
//! differ), the light-stemcell formats, and the build inputs issue 4 uses (stages, disk layout
//! and boot modes, kernel command line, agent settings).

use crate::formats::OvfOptions;
use crate::stemcell::image::ImageKind;
use crate::stemcell::manifest::{CloudProperties, Manifest};
use crate::stemcell::naming::StemcellId;
use crate::stemcell::pack::PackSpec;
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
    let infra: Infrastructure = serde_yaml::from_str(text).map_err(|e| match e.location() {
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

impl Infrastructure {
    /// The stemcell id of `output` for `os`.
    pub fn stemcell_id(&self, os: &str, output: &Output) -> StemcellId {
        StemcellId {
            infrastructure: self.name.clone(),
            name_hypervisor: self.name_hypervisor.clone(),
            operating_system: os.to_string(),
            format_suffix: output.name_suffix.clone(),
        }
    }

    /// The heavy manifest of `output` (sha1 empty until packed).
    pub fn manifest(&self, os: &str, version: &str, output: &Output) -> Manifest {
        let name = self.stemcell_id(os, output).stemcell_name();
        let mut extra = self.cloud_properties.clone();
        if let Some(more) = self.os_cloud_properties.get(os) {
            for (k, v) in more {
                extra.insert(k.clone(), v.clone());
            }
        }
        Manifest {
            name: name.clone(),
            version: version.to_string(),
            bosh_protocol: 1,
            api_version: 3,
            sha1: String::new(),
            operating_system: os.to_string(),
            stemcell_formats: self.stemcell_formats.clone(),
            cloud_properties: CloudProperties {
                name,
                version: version.to_string(),
                infrastructure: self.name.clone(),
                hypervisor: self.hypervisor.clone(),
                disk: self.disk_size_mib,
                disk_format: output.disk_format.clone(),
                container_format: "bare".into(),
                os_type: "linux".into(),
                os_distro: "ubuntu".into(),
                architecture: "x86_64".into(),
                extra,
            },
        }
    }

    /// One pack spec per output, in order.
    pub fn pack_specs(
        &self,
        os: &str,
        version: &str,
        packages: &[u8],
        dev_tools: &[u8],
        ovf: &OvfOptions,
        force: bool,
    ) -> Vec<PackSpec> {
        self.outputs
            .iter()
            .map(|o| PackSpec {
                manifest: self.manifest(os, version, o),
                tarball_name: self.stemcell_id(os, o).tarball_name(version),
                image_kind: o.image,
                packages: packages.to_vec(),
                dev_tools: dev_tools.to_vec(),
                ovf: ovf.clone(),
                force,
            })
            .collect()
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

    #[test]
    fn noble_aws_gets_boot_mode_last() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let aws = load(root, "aws").unwrap();
        let noble = aws
            .manifest("ubuntu-noble", "1.606", &aws.outputs[0])
            .to_yaml()
            .unwrap();
        assert!(
            noble.ends_with("  root_device_name: /dev/sda1\n  boot_mode: uefi-preferred\n"),
            "{noble}"
        );
        let jammy = aws
            .manifest("ubuntu-jammy", "1.606", &aws.outputs[0])
            .to_yaml()
            .unwrap();
        assert!(!jammy.contains("boot_mode"));
        assert!(jammy.starts_with("---\nname: bosh-aws-xen-hvm-ubuntu-jammy-go_agent\n"));
        assert!(jammy.contains("  hypervisor: xen\n"));
    }
}
