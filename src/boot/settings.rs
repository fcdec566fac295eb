//! The settings JSON the agent receives (the shape a CPI writes: cloudfoundry/bosh-agent
//! settings/settings.go; consumers' user-data carries the same document): a dynamic network
//! with QEMU's user-network DNS, no NTP servers (the agent would wait on unreachable ones), a
//! local blobstore, the mbus URL and certificate, the vcap password and an SSH key.

use super::credentials::Credentials;
use serde_json::{json, Value};

/// Where the agent finds its disks, in the form the cloud's CPI writes.
pub struct Disks {
    pub system: String,
    pub ephemeral: Option<String>,
}

pub fn settings(agent_id: &str, dns: &str, disks: &Disks, creds: &Credentials) -> Value {
    let mut disk_settings = json!({ "system": disks.system, "persistent": {} });
    if let Some(e) = &disks.ephemeral {
        disk_settings["ephemeral"] = json!(e);
    }
    json!({
        "agent_id": agent_id,
        "blobstore": { "provider": "local", "options": { "blobstore_path": "/var/vcap/micro_bosh/data/cache" } },
        "disks": disk_settings,
        "env": { "bosh": {
            "mbus": { "cert": {
                "ca": creds.ca_pem,
                "certificate": creds.mbus_cert_pem,
                "private_key": creds.mbus_key_pem,
            } },
            "password": creds.vcap_password_hash,
            // The IaaS key is not installed when a File source comes first (it answers an
            // empty key); keys here always are.
            "authorized_keys": [creds.ssh_public_key],
        } },
        "networks": { "default": { "type": "dynamic", "dns": [dns], "default": ["dns", "gateway"] } },
        "ntp": [],
        "mbus": format!("https://{}:{}@0.0.0.0:6868", creds.mbus_user, creds.mbus_password),
        "vm": { "name": format!("vm-{agent_id}") },
    })
}
