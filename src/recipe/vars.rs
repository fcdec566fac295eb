//! The variables every template sees. Built as JSON so that dotted extra variables
//! (`passwords.vcap=...`) nest like the built-in ones.
//!
//! | variable | value |
//! |---|---|
//! | `os.name`, `os.family`, `os.suite`, `os.version` | from the OS definition |
//! | `os.components`, `os.extra_suites` | lists, for apt sources |
//! | `os.keyring` | the archive keyring file on the build host |
//! | `os.mirror` | archive URL the build uses (after `--mirror` and BUILD_TIME) |
//! | `os.archive_mirror` | archive URL without snapshot: what the shipped image points at |
//! | `arch` | the architecture, as Debian names it (`amd64`, `arm64`) |
//! | `build_time` | BUILD_TIME, or "" |
//! | `passwords.vcap`, `passwords.root` | crypt(3) hashes; default: the official `c1oudc0w` |
//! | `packages.<key>` | OS-specific package names; `packages.kernel` = kernel_package |
//! | `infrastructure`, `stemcell_version` | stemcell phase only |

use super::os::OsDefinition;
use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

/// SHA-512 crypt of `c1oudc0w` (the official builder's `bosh_users_password`) with a fixed salt,
/// so that the default plan is reproducible: `openssl passwd -6 -salt stemcellvcap c1oudc0w`.
pub const DEFAULT_PASSWORD_HASH: &str = "$6$stemcellvcap$uCXArdQNr6IOFa7yRGPVwBCyVg24vWMaRRv2b35iuK0Ik7tvroJjB8vahEW5b4VyVNPilItFoC9fjQG0ul/x91";

/// Variables that only exist in the stemcell phase: OS-image stages must not use them, so that
/// one OS image (and its cache) serves every infrastructure and every version.
pub const STEMCELL_ONLY: &[&str] = &["infrastructure", "stemcell_version"];

/// Inputs of the variable set, already resolved.
pub struct VarInputs<'a> {
    /// The OS definition as built for `arch` ([`OsDefinition::for_arch`]).
    pub os: &'a OsDefinition,
    pub arch: &'a str,
    pub mirror: &'a str,
    pub archive_mirror: &'a str,
    pub build_time: Option<&'a str>,
    pub infrastructure: Option<&'a str>,
    pub stemcell_version: &'a str,
    pub extra_vars: &'a [(String, String)],
}

/// All variables as a JSON object. `extra_vars` override built-ins; a dotted name nests.
pub fn build(inputs: &VarInputs) -> Result<Value> {
    let os = inputs.os;
    let mut packages: Map<String, Value> = os
        .packages
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    packages
        .entry("kernel")
        .or_insert_with(|| Value::from(os.kernel_package.as_str()));
    let mut vars = json!({
        "os": {
            "name": os.name, "family": os.family, "suite": os.suite, "version": os.version,
            "components": os.components, "extra_suites": os.extra_suites,
            "mirror": inputs.mirror, "archive_mirror": inputs.archive_mirror,
            "keyring": os.keyring,
        },
        "arch": inputs.arch,
        "build_time": inputs.build_time.unwrap_or(""),
        "passwords": { "vcap": DEFAULT_PASSWORD_HASH, "root": DEFAULT_PASSWORD_HASH },
        "packages": packages,
    });
    if let Some(infrastructure) = inputs.infrastructure {
        vars["infrastructure"] = Value::from(infrastructure);
        vars["stemcell_version"] = Value::from(inputs.stemcell_version);
    }
    for (name, value) in inputs.extra_vars {
        set_dotted(&mut vars, name, value)?;
    }
    Ok(vars)
}

/// The variables OS-image stages see: everything except [`STEMCELL_ONLY`].
pub fn os_image_view(vars: &Value) -> Value {
    let mut v = vars.clone();
    if let Some(map) = v.as_object_mut() {
        for k in STEMCELL_ONLY {
            map.remove(*k);
        }
    }
    v
}

pub fn to_context(vars: &Value) -> tera::Context {
    tera::Context::from_value(vars.clone()).expect("vars are a JSON object")
}

fn set_dotted(vars: &mut Value, name: &str, value: &str) -> Result<()> {
    let parts: Vec<&str> = name.split('.').collect();
    let valid = |p: &&str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
    };
    if !parts.iter().all(valid) {
        bail!("variable name `{name}`: expected identifiers joined by dots, e.g. passwords.vcap");
    }
    let mut node = vars;
    for part in &parts[..parts.len() - 1] {
        let map = node.as_object_mut().expect("walk only through objects");
        let next = map
            .entry(*part)
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            bail!("variable `{name}`: `{part}` is a value, not a group");
        }
        node = next;
    }
    node.as_object_mut()
        .expect("walk only through objects")
        .insert(parts[parts.len() - 1].to_string(), Value::from(value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_extra_vars_nest_and_override() {
        let mut v = json!({"passwords": {"vcap": "old"}, "x": "1"});
        set_dotted(&mut v, "passwords.vcap", "new").unwrap();
        set_dotted(&mut v, "agent.url", "u").unwrap();
        assert_eq!(
            v,
            json!({"passwords": {"vcap": "new"}, "x": "1", "agent": {"url": "u"}})
        );
        assert_eq!(
            set_dotted(&mut v, "x.y", "z").unwrap_err().to_string(),
            "variable `x.y`: `x` is a value, not a group"
        );
        assert!(set_dotted(&mut v, "a..b", "z").is_err());
    }
}
