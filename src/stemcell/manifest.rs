//! `stemcell.MF`: the heavy manifest as the official packager writes it (cloudfoundry/bosh-linux-stemcell-builder `bosh-stemcell/lib/bosh/stemcell/stemcell_packager.rb`,
//! key order and YAML types exact), and a type-checking reader used by inspect, verify
//! and light (what bosh-cli `stemcell/reader.go` and the Director's `jobs/update_stemcell.rb` require).

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use serde_yaml::{Mapping, Value};

/// SHA-1 of the empty file: the `sha1` of Google light stemcells.
pub const EMPTY_SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";

/// A heavy stemcell manifest. Field order is the emitted key order.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub name: String,
    /// Always emitted as a string (quoted when it looks numeric).
    pub version: String,
    pub bosh_protocol: u32,
    pub api_version: u32,
    /// Lowercase hex SHA-1 of the `image` member.
    pub sha1: String,
    pub operating_system: String,
    pub stemcell_formats: Vec<String>,
    pub cloud_properties: CloudProperties,
}

/// The heavy `cloud_properties`, in the packager's order; `extra` follows in its own order
/// (`auto_disk_config`, `root_device_name`, noble AWS `boot_mode`).
#[derive(Clone, Debug, Serialize)]
pub struct CloudProperties {
    pub name: String,
    pub version: String,
    pub infrastructure: String,
    pub hypervisor: String,
    /// MiB.
    pub disk: u64,
    pub disk_format: String,
    pub container_format: String,
    pub os_type: String,
    pub os_distro: String,
    pub architecture: String,
    #[serde(flatten)]
    pub extra: Mapping,
}

impl Manifest {
    /// The YAML text, Psych-style: `---` first, sequences not indented, numeric-looking
    /// strings quoted.
    pub fn to_yaml(&self) -> Result<String> {
        to_yaml(&serde_yaml::to_value(self)?)
    }
}

/// Emits any manifest value with the `---` document start Psych writes.
pub fn to_yaml(value: &Value) -> Result<String> {
    let body = serde_yaml::to_string(value).context("cannot serialise stemcell.MF")?;
    Ok(format!("---\n{body}"))
}

/// A parsed `stemcell.MF` with the fields consumers read; `problems` lists every type or value
/// a consumer would reject, one line each; `warnings` what is unusual but accepted (e.g. what
/// `bosh repack-stemcell --version` leaves: a new `version`, the old `cloud_properties.version`).
#[derive(Clone, Debug, Default)]
pub struct ManifestView {
    pub raw: Mapping,
    pub name: Option<String>,
    pub version: Option<String>,
    pub operating_system: Option<String>,
    pub sha1: Option<String>,
    pub api_version: Option<i64>,
    pub stemcell_formats: Vec<String>,
    pub cloud_properties: Mapping,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl ManifestView {
    /// Parses the text; fails only when it is not a YAML mapping at all.
    pub fn parse(text: &str) -> Result<Self> {
        let value: Value =
            serde_yaml::from_str(text).map_err(|e| anyhow!("stemcell.MF: invalid YAML: {e}"))?;
        let Value::Mapping(raw) = value else {
            return Err(anyhow!("stemcell.MF: not a YAML mapping"));
        };
        let mut v = ManifestView {
            raw: raw.clone(),
            ..Default::default()
        };
        v.name = v.required_string("name");
        v.version = v.required_string("version");
        v.sha1 = v.required_string("sha1");
        // The Director defaults a missing operating_system to the name (jobs/update_stemcell.rb).
        v.operating_system = match raw.get("operating_system") {
            None => {
                v.warnings.push(
                    "stemcell.MF: operating_system is missing (the Director uses the name instead)"
                        .into(),
                );
                None
            }
            Some(_) => v.required_string("operating_system"),
        };
        if let Some(s) = &v.sha1 {
            if !(s.len() == 40
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            {
                // Stored by the Director, never compared (jobs/update_stemcell.rb).
                v.warnings.push(format!(
                    "stemcell.MF: sha1 {s:?} is not 40 lowercase hex digits"
                ));
            }
        }
        for (key, val) in [("name", &v.name), ("version", &v.version)] {
            if let Some(s) = val {
                if let Err(e) = super::naming::check_name_chars(key, s) {
                    v.problems.push(format!("stemcell.MF: {e}"));
                }
            }
        }
        match raw.get("api_version") {
            None => v
                .problems
                .push("stemcell.MF: api_version is missing (create-env needs 2 or more)".into()),
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                let n = n.as_i64().unwrap_or_default();
                v.api_version = Some(n);
                if n < 2 {
                    v.problems.push(format!("stemcell.MF: api_version {n} is below 2 (create-env and registry-less CPIs need 2 or more)"));
                }
            }
            Some(other) => v.problems.push(format!(
                "stemcell.MF: api_version is {}, expected an integer",
                kind(other)
            )),
        }
        match raw.get("bosh_protocol") {
            None | Some(Value::Number(_)) => {}
            Some(Value::String(s)) if s.parse::<u32>().is_ok() => {}
            // The Director ignores it; the CLI reads it as a string.
            Some(other) => v.warnings.push(format!(
                "stemcell.MF: bosh_protocol is {}, expected 1",
                kind(other)
            )),
        }
        match raw.get("stemcell_formats") {
            // The Director then treats every CPI as compatible.
            None => v
                .warnings
                .push("stemcell.MF: stemcell_formats is missing (every CPI is tried)".into()),
            Some(Value::Sequence(seq)) => {
                if seq.is_empty() {
                    v.problems
                        .push("stemcell.MF: stemcell_formats is empty".into());
                }
                for item in seq {
                    match item {
                        Value::String(s) => v.stemcell_formats.push(s.clone()),
                        other => v.problems.push(format!(
                            "stemcell.MF: stemcell_formats has {}, expected strings",
                            kind(other)
                        )),
                    }
                }
            }
            Some(other) => v.problems.push(format!(
                "stemcell.MF: stemcell_formats is {}, expected a list of strings",
                kind(other)
            )),
        }
        match raw.get("cloud_properties") {
            Some(Value::Mapping(m)) => v.cloud_properties = m.clone(),
            // The Director passes null to the CPI; `repack-stemcell --cloud-properties` needs a map.
            None => v.warnings.push(
                "stemcell.MF: cloud_properties is missing (repack-stemcell --cloud-properties needs a mapping)".into(),
            ),
            Some(other) => v.problems.push(format!(
                "stemcell.MF: cloud_properties is {}, expected a mapping",
                kind(other)
            )),
        }
        v.check_cloud_properties();
        Ok(v)
    }

    fn required_string(&mut self, key: &str) -> Option<String> {
        match self.raw.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            None => {
                self.problems.push(format!("stemcell.MF: {key} is missing"));
                None
            }
            Some(other) => {
                self.problems.push(format!(
                    "stemcell.MF: {key} is {} ({}), expected a quoted string",
                    kind(other),
                    scalar_text(other)
                ));
                None
            }
        }
    }

    /// Types the Go CPIs decode strictly (`encoding/json` into typed structs, e.g.
    /// cloudfoundry/bosh-google-cpi-release `src/bosh-google-cpi/action/create_stemcell.go`).
    fn check_cloud_properties(&mut self) {
        let cp = self.cloud_properties.clone();
        let expect = |key: &str, ok: fn(&Value) -> bool, want: &str, problems: &mut Vec<String>| {
            if let Some(val) = cp.get(key) {
                if !ok(val) {
                    problems.push(format!(
                        "stemcell.MF: cloud_properties.{key} is {} ({}), expected {want}",
                        kind(val),
                        scalar_text(val)
                    ));
                }
            }
        };
        let p = &mut self.problems;
        let w = &mut self.warnings;
        for key in [
            "name",
            "version",
            "infrastructure",
            "hypervisor",
            "disk_format",
            "container_format",
            "os_type",
            "os_distro",
            "architecture",
            "root_device_name",
            "image_id",
            "image_url",
            "boot_mode",
        ] {
            expect(key, |v| v.is_string(), "a string", p);
        }
        expect("disk", |v| v.as_u64().is_some(), "an integer (MiB)", p);
        expect("auto_disk_config", |v| v.is_bool(), "a boolean", p);
        expect(
            "ami",
            |v| {
                v.as_mapping()
                    .is_some_and(|m| m.iter().all(|(k, v)| k.is_string() && v.is_string()))
            },
            "a mapping of region to AMI id",
            p,
        );
        // `bosh repack-stemcell --name/--version` change the top level only, and the BOSH CLI,
        // the Director and the CPIs accept that (OpenStack names the Glance image from
        // cloud_properties): unusual, not wrong.
        if let (Some(Value::String(cpn)), Some(n)) = (cp.get("name"), &self.name) {
            if cpn != n {
                w.push(format!(
                    "stemcell.MF: cloud_properties.name {cpn:?} differs from name {n:?}"
                ));
            }
        }
        if let (Some(Value::String(cpv)), Some(v)) = (cp.get("version"), &self.version) {
            if cpv != v {
                w.push(format!(
                    "stemcell.MF: cloud_properties.version {cpv:?} differs from version {v:?}"
                ));
            }
        }
    }

    /// `cloud_properties.<key>` as a string, if it is one.
    pub fn cloud_str(&self, key: &str) -> Option<&str> {
        self.cloud_properties.get(key).and_then(Value::as_str)
    }

    /// True when every stemcell format is a `*-light` one.
    pub fn is_light(&self) -> bool {
        !self.stemcell_formats.is_empty()
            && self.stemcell_formats.iter().all(|f| f.ends_with("-light"))
    }
}

/// A YAML type name for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        _ => "…".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openstack() -> Manifest {
        let mut extra = Mapping::new();
        extra.insert("auto_disk_config".into(), true.into());
        Manifest {
            name: "bosh-openstack-kvm-ubuntu-jammy-go_agent".into(),
            version: "1.606".into(),
            bosh_protocol: 1,
            api_version: 3,
            sha1: "0123456789abcdef0123456789abcdef01234567".into(),
            operating_system: "ubuntu-jammy".into(),
            stemcell_formats: vec!["openstack-qcow2".into(), "openstack-raw".into()],
            cloud_properties: CloudProperties {
                name: "bosh-openstack-kvm-ubuntu-jammy-go_agent".into(),
                version: "1.606".into(),
                infrastructure: "openstack".into(),
                hypervisor: "kvm".into(),
                disk: 5120,
                disk_format: "qcow2".into(),
                container_format: "bare".into(),
                os_type: "linux".into(),
                os_distro: "ubuntu".into(),
                architecture: "x86_64".into(),
                extra,
            },
        }
    }

    /// The OpenStack jammy manifest composed from `stemcell_packager.rb` (ubuntu-jammy, 2024-10) and
    /// Ruby Psych's quoting, byte for byte.
    #[test]
    fn matches_the_reference_text() {
        let want = "---
name: bosh-openstack-kvm-ubuntu-jammy-go_agent
version: '1.606'
bosh_protocol: 1
api_version: 3
sha1: 0123456789abcdef0123456789abcdef01234567
operating_system: ubuntu-jammy
stemcell_formats:
- openstack-qcow2
- openstack-raw
cloud_properties:
  name: bosh-openstack-kvm-ubuntu-jammy-go_agent
  version: '1.606'
  infrastructure: openstack
  hypervisor: kvm
  disk: 5120
  disk_format: qcow2
  container_format: bare
  os_type: linux
  os_distro: ubuntu
  architecture: x86_64
  auto_disk_config: true
";
        assert_eq!(openstack().to_yaml().unwrap(), want);
        let mut m = openstack();
        m.version = "0000".into();
        assert!(m.to_yaml().unwrap().contains("version: '0000'\n"));
        m.version = "1.606.1".into();
        assert!(m.to_yaml().unwrap().contains("version: 1.606.1\n"));
        let v = ManifestView::parse(&openstack().to_yaml().unwrap()).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    #[test]
    fn reports_wrong_types() {
        let text = openstack()
            .to_yaml()
            .unwrap()
            .replace("version: '1.606'", "version: 1.606");
        let v = ManifestView::parse(&text).unwrap();
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("version is a float (1.606), expected a quoted string")),
            "{:?}",
            v.problems
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("cloud_properties.version is a float")),
            "{:?}",
            v.problems
        );
        let text = openstack()
            .to_yaml()
            .unwrap()
            .replace("api_version: 3", "api_version: '3'");
        let v = ManifestView::parse(&text).unwrap();
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("api_version is a string")),
            "{:?}",
            v.problems
        );
    }
}
