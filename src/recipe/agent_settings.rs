//! `/var/vcap/bosh/agent.json`: the agent's static configuration, as typed structs.
//!
//! The file tells the BOSH agent how to behave on an infrastructure (`Platform.Linux` options)
//! and where to fetch its per-VM settings (`Infrastructure.Settings.Sources`). The agent decodes
//! it with Go's `encoding/json` into `app.Config`; unknown keys are ignored there, but here every
//! struct denies unknown fields so a typo in an infrastructure file is an error, not a silent no-op.
//!
//! One constructor per infrastructure gives exactly the official structure
//! (cloudfoundry/bosh-linux-stemcell-builder `stemcell_builder/stages/bosh_<iaas>_agent_settings/assets/agent.json`;
//! docs/agent-needs.md "agent.json"). Systemd-based systems (Ubuntu noble, Debian) add
//! `"ServiceManager": "systemd"`; jammy runs the agent under runit and leaves it unset (the
//! builder's `stemcell_builder/stages/bosh_go_agent`: `assets/runit/agent/run` vs `assets/bosh-agent.service`).
//!
//! Invariants: an `Option` field that is `None` is absent from the JSON (never `null`), and
//! every config has at least one settings source (the agent refuses an empty list:
//! `MultiSettingsSource requires to have at least one source`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole `agent.json` document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(rename = "Platform")]
    pub platform: Platform,
    #[serde(rename = "Infrastructure")]
    pub infrastructure: Infrastructure,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    #[serde(rename = "Linux")]
    pub linux: LinuxOptions,
}

/// `Platform.Linux` (cloudfoundry/bosh-agent `platform/linux_platform.go`, `LinuxOptions`). All optional; the agent's defaults are Go zero
/// values, so an absent key and `false`/`""` mean the same to it, but the official files write
/// only the keys they set, and so do we.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LinuxOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_tmp_dir: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_preformatted_persistent_disk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mount_persistent_disk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_disk_setup: Option<bool>,
    /// `parted`, or absent (sfdisk below 2 TB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioner_type: Option<String>,
    /// Carve swap and `/var/vcap/data` out of the root disk after the root partition, which
    /// must therefore be the last partition (docs/agent-needs.md "Disk layout").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_partition_if_no_ephemeral_disk: Option<bool>,
    /// `virtio`, `scsi`, `iscsi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_path_resolution_type: Option<String>,
    /// Legacy (Google jammy); ignored by current agents, written for parity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtio_device_prefix: Option<String>,
    /// Legacy (SoftLayer); ignored by current agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub_ephemeral_disk: Option<bool>,
    /// `systemd` on systemd-managed images; absent means runit's `sv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_id_transform_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_id_transform_replacement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_storage_device_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_storage_managed_volume_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun_device_symlink_path: Option<String>,
    /// Jammy only; must not be set on noble (PR #672).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_monit_iptables_firewall: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Infrastructure {
    #[serde(rename = "Settings")]
    pub settings: SettingsOptions,
}

/// `Infrastructure.Settings`: the ordered sources (first that works wins) and two legacy flags
/// that agents since 2.478 ignore but the official files still carry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsOptions {
    #[serde(rename = "Sources")]
    pub sources: Vec<Source>,
    #[serde(
        rename = "UseServerName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub use_server_name: Option<bool>,
    #[serde(
        rename = "UseRegistry",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub use_registry: Option<bool>,
}

/// One settings source; `Type` is the tag (cloudfoundry/bosh-agent `infrastructure/settings_source_factory.go`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Type", deny_unknown_fields)]
pub enum Source {
    /// A settings JSON file on the VM.
    File {
        #[serde(rename = "SettingsPath")]
        settings_path: String,
        #[serde(
            rename = "MetaDataPath",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        meta_data_path: Option<String>,
        #[serde(
            rename = "UserDataPath",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        user_data_path: Option<String>,
    },
    /// An ISO9660 config drive found by label; paths are relative to its root.
    ConfigDrive {
        #[serde(rename = "DiskPaths")]
        disk_paths: Vec<String>,
        #[serde(rename = "MetaDataPath")]
        meta_data_path: String,
        #[serde(rename = "UserDataPath")]
        user_data_path: String,
    },
    /// An EC2-style metadata service.
    #[serde(rename = "HTTP")]
    Http {
        #[serde(rename = "URI")]
        uri: String,
        #[serde(rename = "Headers", default, skip_serializing_if = "Option::is_none")]
        headers: Option<BTreeMap<String, String>>,
        #[serde(rename = "UserDataPath")]
        user_data_path: String,
        #[serde(
            rename = "InstanceIDPath",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        instance_id_path: Option<String>,
        #[serde(
            rename = "SSHKeysPath",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        ssh_keys_path: Option<String>,
        /// IMDSv2 token endpoint (AWS).
        #[serde(rename = "TokenPath", default, skip_serializing_if = "Option::is_none")]
        token_path: Option<String>,
    },
    /// A file on the CD-ROM `/dev/sr0` (vSphere: `env`).
    #[serde(rename = "CDROM")]
    Cdrom {
        #[serde(rename = "FileName")]
        file_name: String,
    },
    /// A metadata service returning the settings JSON itself (GCE).
    InstanceMetadata {
        #[serde(rename = "URI")]
        uri: String,
        #[serde(rename = "SettingsPath")]
        settings_path: String,
        #[serde(rename = "Headers", default, skip_serializing_if = "Option::is_none")]
        headers: Option<BTreeMap<String, String>>,
    },
    /// `guestinfo.userdata` through VMware tools (newer agents).
    VsphereGuestInfo {
        #[serde(
            rename = "RpcToolPath",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        rpc_tool_path: Option<String>,
        #[serde(
            rename = "VmToolsdPath",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        vm_toolsd_path: Option<String>,
    },
}

/// How the image starts the agent (cloudfoundry/bosh-linux-stemcell-builder `stemcell_builder/stages/bosh_go_agent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitSystem {
    /// `bosh-agent.service`; the agent drives monit with `systemctl`.
    Systemd,
    /// `/etc/sv/agent` under `runit.service`; the agent uses `sv`.
    Runit,
}

impl InitSystem {
    /// Jammy keeps runit; noble dropped it, and Debian images follow noble.
    pub fn for_os(os_name: &str) -> InitSystem {
        if os_name == "ubuntu-jammy" {
            InitSystem::Runit
        } else {
            InitSystem::Systemd
        }
    }
}

/// Infrastructures with an official agent.json, for error messages.
pub const INFRASTRUCTURES: &[&str] = &[
    "openstack",
    "cloudstack",
    "vsphere",
    "vcloud",
    "aws",
    "google",
    "azure",
    "alicloud",
    "softlayer",
    "warden",
];

const EC2_METADATA: &str = "http://169.254.169.254";
const EC2_USER_DATA: &str = "/latest/user-data";
const EC2_INSTANCE_ID: &str = "/latest/meta-data/instance-id";
const EC2_SSH_KEY: &str = "/latest/meta-data/public-keys/0/openssh-key";

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The EC2-style HTTP source shared by openstack, aws and alicloud.
fn ec2_http(uri: &str, token_path: Option<&str>) -> Source {
    Source::Http {
        uri: uri.to_string(),
        headers: None,
        user_data_path: EC2_USER_DATA.to_string(),
        instance_id_path: s(EC2_INSTANCE_ID),
        ssh_keys_path: s(EC2_SSH_KEY),
        token_path: token_path.map(str::to_string),
    }
}

/// The platform block of openstack, cloudstack and alicloud.
fn kvm_linux() -> LinuxOptions {
    LinuxOptions {
        partitioner_type: s("parted"),
        create_partition_if_no_ephemeral_disk: Some(true),
        device_path_resolution_type: s("virtio"),
        ..Default::default()
    }
}

fn config(linux: LinuxOptions, sources: Vec<Source>) -> AgentConfig {
    AgentConfig {
        platform: Platform { linux },
        infrastructure: Infrastructure {
            settings: SettingsOptions {
                sources,
                use_server_name: None,
                use_registry: None,
            },
        },
    }
}

impl AgentConfig {
    /// OpenStack: bootstrap file, then the config drive (label config-2), then the metadata
    /// service.
    pub fn openstack() -> Self {
        let mut c = config(
            kvm_linux(),
            vec![
                Source::File {
                    settings_path: "/var/vcap/bosh/agent-bootstrap-env.json".into(),
                    meta_data_path: None,
                    user_data_path: None,
                },
                Source::ConfigDrive {
                    disk_paths: vec![
                        "/dev/disk/by-label/CONFIG-2".into(),
                        "/dev/disk/by-label/config-2".into(),
                    ],
                    meta_data_path: "ec2/latest/meta-data.json".into(),
                    user_data_path: "ec2/latest/user-data".into(),
                },
                ec2_http(EC2_METADATA, None),
            ],
        );
        c.infrastructure.settings.use_server_name = Some(true);
        c.infrastructure.settings.use_registry = Some(true);
        c
    }

    /// CloudStack: the openstack platform block, one HTTP source served by mdproxy4cs.
    pub fn cloudstack() -> Self {
        let mut c = config(
            kvm_linux(),
            vec![Source::Http {
                uri: "http://169.254.169.254:39724".into(),
                headers: None,
                user_data_path: EC2_USER_DATA.into(),
                instance_id_path: s(EC2_INSTANCE_ID),
                ssh_keys_path: s("/latest/meta-data/public-keys"),
                token_path: None,
            }],
        );
        c.infrastructure.settings.use_server_name = Some(true);
        c.infrastructure.settings.use_registry = Some(true);
        c
    }

    /// vSphere and vCloud: SCSI disks, settings in the file `env` on the CD-ROM.
    pub fn vsphere() -> Self {
        config(
            LinuxOptions {
                partitioner_type: s("parted"),
                device_path_resolution_type: s("scsi"),
                ..Default::default()
            },
            vec![Source::Cdrom {
                file_name: "env".into(),
            }],
        )
    }

    /// AWS: IMDSv2 metadata service.
    pub fn aws() -> Self {
        let mut c = config(
            kvm_linux(),
            vec![ec2_http(EC2_METADATA, Some("/latest/api/token"))],
        );
        c.infrastructure.settings.use_registry = Some(true);
        c
    }

    /// Google: the instance attribute `bosh_settings` holds the settings JSON.
    pub fn google() -> Self {
        let mut c = config(
            LinuxOptions {
                virtio_device_prefix: s("google"),
                ..kvm_linux()
            },
            vec![Source::InstanceMetadata {
                uri: EC2_METADATA.into(),
                settings_path: "/computeMetadata/v1/instance/attributes/bosh_settings".into(),
                headers: Some(BTreeMap::from([(
                    "Metadata-Flavor".to_string(),
                    "Google".to_string(),
                )])),
            }],
        );
        c.infrastructure.settings.use_server_name = Some(true);
        c.infrastructure.settings.use_registry = Some(false);
        c
    }

    /// Azure: cloud-init writes the custom data where the File source reads it.
    pub fn azure() -> Self {
        let path = "/var/lib/cloud/instance/user-data.txt";
        let mut c = config(
            LinuxOptions {
                device_path_resolution_type: s("scsi"),
                ..kvm_linux()
            },
            vec![Source::File {
                settings_path: path.into(),
                meta_data_path: s(""),
                user_data_path: s(path),
            }],
        );
        c.infrastructure.settings.use_server_name = Some(true);
        c
    }

    /// Alibaba Cloud: openstack platform block, its own metadata address.
    pub fn alicloud() -> Self {
        let mut c = config(kvm_linux(), vec![ec2_http("http://100.100.100.200", None)]);
        c.infrastructure.settings.use_server_name = Some(false);
        c.infrastructure.settings.use_registry = Some(true);
        c
    }

    /// SoftLayer: iSCSI disks, SoftLayer's metadata API.
    pub fn softlayer() -> Self {
        config(
            LinuxOptions {
                device_path_resolution_type: s("iscsi"),
                scrub_ephemeral_disk: Some(true),
                ..kvm_linux()
            },
            vec![Source::Http {
                uri: "https://api.service.softlayer.com".into(),
                headers: None,
                user_data_path: "/rest/v3.1/SoftLayer_Resource_Metadata/getUserMetadata.json"
                    .into(),
                instance_id_path: None,
                ssh_keys_path: None,
                token_path: None,
            }],
        )
    }

    /// Warden (BOSH Lite containers): no disk setup, settings dropped in by the CPI.
    pub fn warden() -> Self {
        config(
            LinuxOptions {
                use_default_tmp_dir: Some(true),
                use_preformatted_persistent_disk: Some(true),
                bind_mount_persistent_disk: Some(true),
                skip_disk_setup: Some(true),
                ..Default::default()
            },
            vec![Source::File {
                settings_path: "/var/vcap/bosh/warden-cpi-agent-env.json".into(),
                meta_data_path: None,
                user_data_path: None,
            }],
        )
    }

    /// The official jammy-structure config of an infrastructure, or an error naming the valid
    /// ones.
    pub fn preset(infrastructure: &str) -> Result<Self> {
        Ok(match infrastructure {
            "openstack" => Self::openstack(),
            "cloudstack" => Self::cloudstack(),
            "vsphere" | "vcloud" => Self::vsphere(),
            "aws" => Self::aws(),
            "google" => Self::google(),
            "azure" => Self::azure(),
            "alicloud" => Self::alicloud(),
            "softlayer" => Self::softlayer(),
            "warden" => Self::warden(),
            other => bail!(
                "no agent settings for infrastructure `{other}` (known: {})",
                INFRASTRUCTURES.join(", ")
            ),
        })
    }

    /// The config for an infrastructure on an OS: the preset plus the OS's service manager.
    /// Warden keeps runit inside its containers on every OS (cloudfoundry/bosh-linux-stemcell-builder
    /// `stemcell_builder/stages/base_warden/apply.sh`), so it never gets `ServiceManager`.
    pub fn for_build(infrastructure: &str, os_name: &str) -> Result<Self> {
        Self::preset(infrastructure)?.with_init_system(infrastructure, os_name)
    }

    fn with_init_system(mut self, infrastructure: &str, os_name: &str) -> Result<Self> {
        if InitSystem::for_os(os_name) == InitSystem::Systemd && infrastructure != "warden" {
            self.platform.linux.service_manager = s("systemd");
        }
        Ok(self)
    }

    /// Decodes the `agent:` value of an infrastructure file: absent/null means the preset of
    /// the infrastructure itself, a string names another preset (`vcloud` → `vsphere`), a
    /// mapping is a complete agent.json in YAML form (checked field by field). The OS's
    /// service manager is applied in every case unless the mapping sets one.
    pub fn from_infrastructure_value(
        infrastructure: &str,
        os_name: &str,
        value: &serde_yaml::Value,
    ) -> Result<Self> {
        let context = || format!("infrastructures/{infrastructure}.yaml: agent");
        match value {
            serde_yaml::Value::Null => Self::for_build(infrastructure, os_name),
            serde_yaml::Value::String(preset) => Self::preset(preset)
                .with_context(context)?
                .with_init_system(infrastructure, os_name),
            serde_yaml::Value::Mapping(_) => {
                let config: AgentConfig =
                    serde_yaml::from_value(value.clone()).with_context(context)?;
                config.validate().with_context(context)?;
                if config.platform.linux.service_manager.is_some() {
                    Ok(config)
                } else {
                    config.with_init_system(infrastructure, os_name)
                }
            }
            _ => bail!("{}: expected a preset name or a mapping", context()),
        }
    }

    /// Rejects configs the agent would refuse at boot.
    pub fn validate(&self) -> Result<()> {
        if self.infrastructure.settings.sources.is_empty() {
            bail!("Infrastructure.Settings.Sources is empty; the agent needs at least one source");
        }
        Ok(())
    }

    /// The file content: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("agent config serialises");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn value(c: &AgentConfig) -> Value {
        serde_json::from_str(&c.to_json()).unwrap()
    }

    #[test]
    fn openstack_matches_the_reference_and_round_trips() {
        let expected = json!({
          "Platform": { "Linux": {
              "PartitionerType": "parted",
              "CreatePartitionIfNoEphemeralDisk": true,
              "DevicePathResolutionType": "virtio" } },
          "Infrastructure": { "Settings": {
              "Sources": [
                { "Type": "File", "SettingsPath": "/var/vcap/bosh/agent-bootstrap-env.json" },
                { "Type": "ConfigDrive",
                  "DiskPaths": ["/dev/disk/by-label/CONFIG-2", "/dev/disk/by-label/config-2"],
                  "MetaDataPath": "ec2/latest/meta-data.json",
                  "UserDataPath": "ec2/latest/user-data" },
                { "Type": "HTTP", "URI": "http://169.254.169.254",
                  "UserDataPath": "/latest/user-data",
                  "InstanceIDPath": "/latest/meta-data/instance-id",
                  "SSHKeysPath": "/latest/meta-data/public-keys/0/openssh-key" } ],
              "UseServerName": true,
              "UseRegistry": true } }
        });
        assert_eq!(value(&AgentConfig::openstack()), expected);
        let back: AgentConfig = serde_json::from_value(expected).unwrap();
        assert_eq!(back, AgentConfig::openstack());
    }

    #[test]
    fn unknown_source_type_and_field_are_rejected() {
        let err = serde_json::from_str::<Source>(r#"{"Type":"Floppy"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `Floppy`"), "{err}");
        let err = serde_json::from_str::<LinuxOptions>(r#"{"PartitionType":"parted"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `PartitionType`"), "{err}");
    }

    #[test]
    fn service_manager_follows_the_os() {
        let noble = AgentConfig::for_build("openstack", "ubuntu-noble").unwrap();
        assert_eq!(
            noble.platform.linux.service_manager.as_deref(),
            Some("systemd")
        );
        let jammy = AgentConfig::for_build("openstack", "ubuntu-jammy").unwrap();
        assert_eq!(jammy, AgentConfig::openstack());
        assert!(!jammy.to_json().contains("ServiceManager"));
        let warden = AgentConfig::for_build("warden", "ubuntu-noble").unwrap();
        assert_eq!(warden, AgentConfig::warden());
    }

    #[test]
    fn unknown_infrastructure_lists_the_known_ones() {
        let err = AgentConfig::for_build("mars", "ubuntu-noble")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`mars`") && err.contains("openstack, cloudstack, vsphere"),
            "{err}"
        );
    }

    #[test]
    fn infrastructure_value_forms() {
        let v: serde_yaml::Value = serde_yaml::from_str("vsphere").unwrap();
        let c = AgentConfig::from_infrastructure_value("vcloud", "ubuntu-jammy", &v).unwrap();
        assert_eq!(c, AgentConfig::vsphere());
        let v: serde_yaml::Value = serde_yaml::from_str(
            "Platform: {Linux: {PartitionerType: parted}}\nInfrastructure: {Settings: {Sources: [{Type: CDROM, FileName: env}]}}",
        )
        .unwrap();
        let c = AgentConfig::from_infrastructure_value("lab", "debian-bookworm", &v).unwrap();
        assert_eq!(c.platform.linux.service_manager.as_deref(), Some("systemd"));
        let v: serde_yaml::Value = serde_yaml::from_str(
            "Platform: {Linux: {}}\nInfrastructure: {Settings: {Sources: []}}",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            AgentConfig::from_infrastructure_value("lab", "ubuntu-noble", &v).unwrap_err()
        );
        assert!(
            err.contains("infrastructures/lab.yaml: agent") && err.contains("Sources is empty"),
            "{err}"
        );
    }
}
