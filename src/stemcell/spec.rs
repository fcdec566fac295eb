//! What an infrastructure plugin means for its stemcells: the stemcell id and name, the heavy
//! manifest and one pack spec per output. (The plugin file itself is plain data, loaded by
//! `recipe::infrastructure`.)

use super::manifest::{CloudProperties, Manifest};
use super::naming::StemcellId;
use super::pack::PackSpec;
use crate::formats::OvfOptions;
use crate::recipe::arch::Arch;
use crate::recipe::infrastructure::{Infrastructure, Output};
use anyhow::Result;

/// The stemcells an [`Infrastructure`] produces.
pub trait InfrastructureStemcells {
    /// The stemcell id of `output` for `os` on `arch`.
    fn stemcell_id(&self, os: &str, arch: Arch, output: &Output) -> StemcellId;
    /// The heavy manifest of `output` (sha1 empty until packed); an architecture the
    /// infrastructure is not built for is an error.
    fn manifest(&self, os: &str, arch: Arch, version: &str, output: &Output) -> Result<Manifest>;
    /// One pack spec per output, in order.
    #[allow(clippy::too_many_arguments)]
    fn pack_specs(
        &self,
        os: &str,
        arch: Arch,
        version: &str,
        packages: &[u8],
        dev_tools: &[u8],
        ovf: &OvfOptions,
        force: bool,
    ) -> Result<Vec<PackSpec>>;
}

impl InfrastructureStemcells for Infrastructure {
    fn stemcell_id(&self, os: &str, arch: Arch, output: &Output) -> StemcellId {
        StemcellId {
            infrastructure: self.name.clone(),
            name_hypervisor: self.name_hypervisor.clone(),
            operating_system: os.to_string(),
            format_suffix: output.name_suffix.clone(),
            arch,
        }
    }

    fn manifest(&self, os: &str, arch: Arch, version: &str, output: &Output) -> Result<Manifest> {
        let architecture = self.manifest_architecture(arch)?;
        let name = self.stemcell_id(os, arch, output).stemcell_name();
        let mut extra = self.cloud_properties.clone();
        if let Some(more) = self.os_cloud_properties.get(os) {
            for (k, v) in more {
                extra.insert(k.clone(), v.clone());
            }
        }
        Ok(Manifest {
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
                architecture,
                extra,
            },
        })
    }

    fn pack_specs(
        &self,
        os: &str,
        arch: Arch,
        version: &str,
        packages: &[u8],
        dev_tools: &[u8],
        ovf: &OvfOptions,
        force: bool,
    ) -> Result<Vec<PackSpec>> {
        self.outputs
            .iter()
            .map(|o| {
                Ok(PackSpec {
                    manifest: self.manifest(os, arch, version, o)?,
                    tarball_name: self.stemcell_id(os, arch, o).tarball_name(version),
                    image_kind: o.image,
                    packages: packages.to_vec(),
                    dev_tools: dev_tools.to_vec(),
                    ovf: ovf.clone(),
                    force,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::infrastructure::load;
    use std::path::Path;

    #[test]
    fn noble_aws_gets_boot_mode_last() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let aws = load(root, "aws").unwrap();
        let noble = aws
            .manifest("ubuntu-noble", Arch::Amd64, "1.606", &aws.outputs[0])
            .unwrap()
            .to_yaml()
            .unwrap();
        assert!(
            noble.ends_with("  root_device_name: /dev/sda1\n  boot_mode: uefi-preferred\n"),
            "{noble}"
        );
        let jammy = aws
            .manifest("ubuntu-jammy", Arch::Amd64, "1.606", &aws.outputs[0])
            .unwrap()
            .to_yaml()
            .unwrap();
        assert!(!jammy.contains("boot_mode"));
        assert!(jammy.starts_with("---\nname: bosh-aws-xen-hvm-ubuntu-jammy-go_agent\n"));
        assert!(jammy.contains("  hypervisor: xen\n"));
        assert!(jammy.contains("  architecture: x86_64\n"));
    }

    #[test]
    fn an_architecture_the_infrastructure_lacks_is_an_error() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let vsphere = load(root, "vsphere").unwrap();
        let e = vsphere
            .manifest("ubuntu-noble", Arch::Arm64, "1", &vsphere.outputs[0])
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("infrastructures/vsphere.yaml: vsphere stemcells are not built for arm64 (architectures: amd64)"), "{e}");
    }
}
