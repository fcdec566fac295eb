//! The stage file format: `stages/<phase>/NN-name.yaml`, decoded with serde. A stage is data;
//! the logic of each action lives in `crate::stage::actions`, one file per action.
//!
//! ```yaml
//! name: bosh-users
//! description: vcap, bosh_sshers, bosh_sudoers, admin
//! phase: os-image            # or stemcell
//! when: { os_family: [ubuntu] }          # optional; also os:, infrastructure:
//! actions:
//!   - group: { name: bosh_sshers }
//!   - user: { name: vcap, uid: 1000, groups: [bosh_sshers], shell: /bin/bash }
//!   - file: { path: /etc/issue, content: "Unauthorized use is strictly prohibited.\n", mode: "0644" }
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;

/// The two phases of a build: the infrastructure-independent OS image, then the stemcell.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    OsImage,
    Stemcell,
}

/// A condition on the build; every listed field must match (empty lists match anything).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// OS definition names, e.g. `ubuntu-noble`, `debian-bookworm`.
    #[serde(default)]
    pub os: Vec<String>,
    /// OS families: `ubuntu`, `debian`.
    #[serde(default)]
    pub os_family: Vec<String>,
    /// Infrastructure names, e.g. `vsphere`.
    #[serde(default)]
    pub infrastructure: Vec<String>,
    /// Negated forms.
    #[serde(default)]
    pub not_os: Vec<String>,
    #[serde(default)]
    pub not_infrastructure: Vec<String>,
}

/// One stage file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageFile {
    pub name: String,
    pub description: String,
    pub phase: Phase,
    #[serde(default)]
    pub when: Option<When>,
    pub actions: Vec<ActionEntry>,
}

/// An action with an optional condition of its own.
#[derive(Clone, Debug, Deserialize)]
pub struct ActionEntry {
    #[serde(default)]
    pub when: Option<When>,
    #[serde(flatten)]
    pub action: Action,
}

/// Everything a stage can do. Each variant is one small type; its execution is in
/// `stage::actions::<variant>`. Strings are Tera templates rendered with the build variables
/// unless the field says otherwise.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// apt-get install/purge in the chroot (`--no-install-recommends`).
    Apt(AptAction),
    /// Write a file from inline `content` or a static `source` under `assets/`.
    File(FileAction),
    /// Render a Tera template from `assets/` into the image.
    Template(TemplateAction),
    Directory(DirectoryAction),
    Symlink(SymlinkAction),
    /// Remove paths (files or trees); absent paths are fine.
    Remove(RemoveAction),
    Group(GroupAction),
    User(UserAction),
    /// Enable, disable or mask systemd units.
    Service(ServiceAction),
    /// Set `Key value` lines in a config file (sshd_config, login.defs style), replacing an
    /// existing (possibly commented) line for the key or appending one.
    ConfigLines(ConfigLinesAction),
    /// Escape hatch: a shell script run with `/bin/sh -e` inside the chroot.
    Run(RunAction),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AptAction {
    #[serde(default)]
    pub install: Vec<String>,
    #[serde(default)]
    pub purge: Vec<String>,
    /// Run `apt-get update` first.
    #[serde(default)]
    pub update: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAction {
    pub path: String,
    #[serde(default)]
    pub content: Option<String>,
    /// Path relative to `assets/`, copied verbatim.
    #[serde(default)]
    pub source: Option<String>,
    /// Octal string, e.g. "0644". Default 0644.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Append instead of replacing.
    #[serde(default)]
    pub append: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateAction {
    pub path: String,
    /// Template path relative to `assets/`.
    pub template: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryAction {
    pub path: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkAction {
    pub path: String,
    pub target: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveAction {
    pub paths: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupAction {
    pub name: String,
    #[serde(default)]
    pub gid: Option<u32>,
    #[serde(default)]
    pub system: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAction {
    pub name: String,
    #[serde(default)]
    pub uid: Option<u32>,
    /// Primary group (created with the user's name when absent).
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default)]
    pub home: Option<String>,
    /// Crypted password hash (template), e.g. "{{ passwords.vcap }}"; None leaves it locked.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub system: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAction {
    #[serde(default)]
    pub enable: Vec<String>,
    #[serde(default)]
    pub disable: Vec<String>,
    #[serde(default)]
    pub mask: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLinesAction {
    pub path: String,
    /// Key → value, in order.
    pub set: BTreeMap<String, String>,
    /// Separator between key and value; default a single space.
    #[serde(default)]
    pub separator: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunAction {
    pub script: String,
}
