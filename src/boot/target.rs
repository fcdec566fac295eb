//! What a stemcell needs to boot as its cloud would: its infrastructure (from the manifest
//! name `bosh-<infrastructure>-<hypervisor>-<os>`), the firmware and disk bus the cloud gives,
//! and the settings source of its `agent.json` that this tool serves.

use crate::recipe::agent_settings::{AgentConfig, Source};
use crate::recipe::arch::Arch;
use crate::stemcell::manifest::ManifestView;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// Firmware the VM boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS.
    Bios,
    /// OVMF.
    Uefi,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// How disks are attached, as the cloud attaches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskBus {
    /// virtio-blk (`/dev/vda`): OpenStack, CloudStack on KVM.
    Virtio,
    /// virtio-scsi (`/dev/sda`): Google's default for boot disks.
    VirtioScsi,
    /// A SCSI HBA with the disks on units 0 and 1 (`/dev/sda`, `/dev/sdb`): vSphere. QEMU has
    /// no LSI Logic SAS; virtio-scsi gives the same unit-number addressing the agent's SCSI
    /// resolver reads from /sys/bus/scsi.
    Scsi,
    /// NVMe (`/dev/nvme0n1`): AWS Nitro.
    Nvme,
}

impl DiskBus {
    pub fn name(self) -> &'static str {
        match self {
            DiskBus::Virtio => "virtio",
            DiskBus::VirtioScsi => "virtio-scsi",
            DiskBus::Scsi => "scsi",
            DiskBus::Nvme => "nvme",
        }
    }
}

/// The settings source the tool serves, chosen from `agent.json`.
#[derive(Clone, Debug, PartialEq)]
pub enum SettingsSource {
    /// An ISO9660 config drive labelled `config-2` with the given user-data path.
    ConfigDrive {
        meta_data_path: String,
        user_data_path: String,
    },
    /// A CD-ROM on `/dev/sr0` holding only `file_name`.
    Cdrom { file_name: String },
    /// An HTTP metadata service in the guest's network.
    Http(HttpSource),
}

/// An HTTP metadata service: where it listens in the guest and what it must serve.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSource {
    /// `HTTP` (EC2 style) or `InstanceMetadata` (GCE).
    pub kind: &'static str,
    pub ip: [u8; 4],
    pub port: u16,
    /// Path → what it returns (`settings`, `instance-id`, `ssh-key`).
    pub paths: BTreeMap<String, &'static str>,
    /// IMDSv2: the PUT path that hands out a token, then required on every GET.
    pub token_path: Option<String>,
    /// Request headers the real service requires (Google: `Metadata-Flavor: Google`).
    pub headers: BTreeMap<String, String>,
}

impl SettingsSource {
    pub fn describe(&self) -> String {
        match self {
            SettingsSource::ConfigDrive { .. } => "config drive (ISO9660, label config-2)".into(),
            SettingsSource::Cdrom { file_name } => format!("CD-ROM /dev/sr0 with `{file_name}`"),
            SettingsSource::Http(h) => format!(
                "{} metadata at {}.{}.{}.{}:{}{}",
                h.kind,
                h.ip[0],
                h.ip[1],
                h.ip[2],
                h.ip[3],
                h.port,
                if h.token_path.is_some() {
                    " (IMDSv2)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Everything about the VM that follows from the stemcell.
#[derive(Clone, Debug)]
pub struct Target {
    pub infrastructure: String,
    pub firmware: Firmware,
    pub bus: DiskBus,
    /// The cloud always adds an ephemeral disk (vSphere: SCSI unit 1).
    pub needs_ephemeral: bool,
    pub source: SettingsSource,
}

/// The infrastructure named by a stemcell, refusing what cannot boot here (light, warden).
pub fn infrastructure_of(manifest: &ManifestView, file: &str) -> Result<String> {
    let name = manifest.name.clone().unwrap_or_default();
    let infrastructure = name
        .strip_prefix("bosh-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or("")
        .to_string();
    if manifest.is_light() {
        bail!("{file}: a light stemcell ({name}) has no disk to boot; boot the heavy stemcell it was made from");
    }
    if infrastructure == "warden" {
        bail!("{file}: a warden stemcell is a container root filesystem, not a disk; it cannot be booted");
    }
    if infrastructure.is_empty() {
        bail!("{file}: stemcell.MF name {name:?} does not name an infrastructure (bosh-<infrastructure>-...)");
    }
    Ok(infrastructure)
}

/// The stemcell's architecture, from `cloud_properties.architecture` (amd64 when absent, as
/// in every official stemcell): the kernel's names, and EC2's `arm64`.
pub fn arch_of(manifest: &ManifestView, file: &str) -> Result<Arch> {
    match manifest.cloud_str("architecture") {
        None | Some("x86_64") => Ok(Arch::Amd64),
        Some("aarch64" | "arm64") => Ok(Arch::Arm64),
        Some(other) => bail!("{file}: cloud_properties.architecture {other:?} is not one this tool boots (x86_64, aarch64, arm64)"),
    }
}

/// The hardware a cloud gives a VM, and the firmware its stemcell asks for.
pub fn hardware(
    infrastructure: &str,
    arch: Arch,
    manifest: &ManifestView,
) -> (Firmware, DiskBus, bool) {
    // vSphere: the OVF asks for EFI firmware; AWS: `boot_mode: uefi-preferred` where set;
    // arm64 machines have nothing but UEFI.
    let uefi = arch == Arch::Arm64
        || matches!(infrastructure, "vsphere" | "vcloud")
        || manifest
            .cloud_str("boot_mode")
            .is_some_and(|m| m.starts_with("uefi"));
    let firmware = if uefi { Firmware::Uefi } else { Firmware::Bios };
    let bus = match infrastructure {
        "vsphere" | "vcloud" => DiskBus::Scsi,
        "aws" => DiskBus::Nvme,
        "google" => DiskBus::VirtioScsi,
        _ => DiskBus::Virtio,
    };
    (
        firmware,
        bus,
        matches!(infrastructure, "vsphere" | "vcloud"),
    )
}

/// Picks the first source of `agent.json` this tool can serve. `File` sources are skipped:
/// they read a file on the VM that a fresh VM does not have, and the agent moves on.
pub fn settings_source(config: &AgentConfig) -> Result<SettingsSource> {
    let mut refused = Vec::new();
    for source in &config.infrastructure.settings.sources {
        match source {
            Source::File { settings_path, .. } => refused.push(format!("File {settings_path}")),
            Source::ConfigDrive {
                meta_data_path,
                user_data_path,
                disk_paths,
            } => {
                if disk_paths
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case("/dev/disk/by-label/config-2"))
                {
                    return Ok(SettingsSource::ConfigDrive {
                        meta_data_path: meta_data_path.clone(),
                        user_data_path: user_data_path.clone(),
                    });
                }
                refused.push(format!("ConfigDrive {disk_paths:?} (only label config-2)"));
            }
            Source::Cdrom { file_name } => {
                return Ok(SettingsSource::Cdrom {
                    file_name: file_name.clone(),
                })
            }
            Source::Http {
                uri,
                headers,
                user_data_path,
                instance_id_path,
                ssh_keys_path,
                token_path,
            } => match http_address(uri) {
                Ok((ip, port)) => {
                    let mut paths = BTreeMap::from([(user_data_path.clone(), "settings")]);
                    if let Some(p) = instance_id_path {
                        paths.insert(p.clone(), "instance-id");
                    }
                    if let Some(p) = ssh_keys_path {
                        paths.insert(p.clone(), "ssh-key");
                    }
                    return Ok(SettingsSource::Http(HttpSource {
                        kind: "HTTP",
                        ip,
                        port,
                        paths,
                        token_path: token_path.clone(),
                        headers: headers.clone().unwrap_or_default(),
                    }));
                }
                Err(why) => refused.push(format!("HTTP {uri} ({why})")),
            },
            Source::InstanceMetadata {
                uri,
                settings_path,
                headers,
            } => match http_address(uri) {
                Ok((ip, port)) => {
                    return Ok(SettingsSource::Http(HttpSource {
                        kind: "InstanceMetadata",
                        ip,
                        port,
                        paths: BTreeMap::from([(settings_path.clone(), "settings")]),
                        token_path: None,
                        headers: headers.clone().unwrap_or_default(),
                    }))
                }
                Err(why) => refused.push(format!("InstanceMetadata {uri} ({why})")),
            },
            Source::VsphereGuestInfo { .. } => {
                refused.push("VsphereGuestInfo (needs VMware tools)".into())
            }
        }
    }
    bail!(
        "agent.json names no settings source this tool can serve (config drive, CD-ROM, HTTP metadata); it has: {}",
        refused.join(", ")
    )
}

/// `http://A.B.C.D[:PORT]` → the address and port. The guest's user network becomes the /24
/// holding that address, so the address must not be one QEMU's user network takes for itself
/// (.2 gateway, .3 DNS, .15 and up for DHCP).
fn http_address(uri: &str) -> Result<([u8; 4], u16), String> {
    let rest = uri
        .strip_prefix("http://")
        .ok_or("only plain http:// can be served")?;
    let hostport = rest.split('/').next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
        None => (hostport, 80),
    };
    let ip: std::net::Ipv4Addr = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IPv4 address"))?;
    let ip = ip.octets();
    if ip[3] < 64 {
        return Err(format!(
            "{host} collides with QEMU's own addresses in its /24"
        ));
    }
    Ok((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_official_config_has_a_servable_source() {
        let os = settings_source(&AgentConfig::openstack()).unwrap();
        assert!(
            matches!(os, SettingsSource::ConfigDrive { ref user_data_path, .. } if user_data_path == "ec2/latest/user-data")
        );
        let vs = settings_source(&AgentConfig::vsphere()).unwrap();
        assert_eq!(
            vs,
            SettingsSource::Cdrom {
                file_name: "env".into()
            }
        );
        let SettingsSource::Http(cs) = settings_source(&AgentConfig::cloudstack()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (cs.ip, cs.port, cs.token_path.is_none()),
            ([169, 254, 169, 254], 39724, true)
        );
        let SettingsSource::Http(aws) = settings_source(&AgentConfig::aws()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (aws.port, aws.token_path.as_deref()),
            (80, Some("/latest/api/token"))
        );
        let SettingsSource::Http(g) = settings_source(&AgentConfig::google()).unwrap() else {
            panic!()
        };
        assert_eq!(
            g.headers.get("Metadata-Flavor").map(String::as_str),
            Some("Google")
        );
        assert_eq!(
            g.paths
                .get("/computeMetadata/v1/instance/attributes/bosh_settings"),
            Some(&"settings")
        );
    }

    #[test]
    fn unservable_sources_are_named() {
        for config in [
            AgentConfig::azure(),
            AgentConfig::softlayer(),
            AgentConfig::warden(),
        ] {
            let err = settings_source(&config).unwrap_err().to_string();
            assert!(
                err.contains("no settings source this tool can serve"),
                "{err}"
            );
        }
        let err = settings_source(&AgentConfig::softlayer())
            .unwrap_err()
            .to_string();
        assert!(err.contains("only plain http://"), "{err}");
    }
}
