//! The stage file format: `stages/<phase>/NN-name.yaml`, decoded with serde. A stage is data;
//! the logic of each action lives in `crate::stage::actions`, one file per action.
//!
//! ```yaml
//! name: bosh-users
//! description: vcap, bosh_sshers, bosh_sudoers, admin
//! phase: os-image            # or stemcell
//! when: { os_family: [ubuntu] }          # optional; also os:, arch:, infrastructure:
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

impl Phase {
    /// The folder under `stages/` and the name used in stage files.
    pub fn dir_name(self) -> &'static str {
        match self {
            Phase::OsImage => "os-image",
            Phase::Stemcell => "stemcell",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.dir_name())
    }
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
    /// Architectures (Debian names), e.g. `arm64`.
    #[serde(default)]
    pub arch: Vec<String>,
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

/// An action with an optional condition of its own: a map holding exactly one action key
/// (`apt`, `file`, ...) and optionally `when`. Decoded by hand (not `#[serde(flatten)]`) so that
/// an unknown action or field is reported with its line and the list of valid names.
#[derive(Clone, Debug)]
pub struct ActionEntry {
    pub when: Option<When>,
    pub action: Action,
}

/// The action names a stage may use, in the order they are documented.
pub const ACTION_NAMES: &[&str] = &[
    "apt",
    "file",
    "template",
    "directory",
    "symlink",
    "remove",
    "group",
    "user",
    "service",
    "config_lines",
    "run",
];

impl<'de> Deserialize<'de> for ActionEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ActionEntryVisitor)
    }
}

struct ActionEntryVisitor;

impl<'de> serde::de::Visitor<'de> for ActionEntryVisitor {
    type Value = ActionEntry;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "an action: a map with one of {}",
            ACTION_NAMES.join(", ")
        )
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ActionEntry, A::Error> {
        use serde::de::Error;
        let mut when = None;
        let mut action = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "when" {
                if when.is_some() {
                    return Err(A::Error::duplicate_field("when"));
                }
                when = Some(map.next_value::<When>()?);
                continue;
            }
            if let Some(first) = &action {
                return Err(A::Error::custom(format!(
                    "two actions in one list item: `{}` and `{key}`; write one action per item",
                    action_name(first)
                )));
            }
            action = Some(match key.as_str() {
                "apt" => Action::Apt(map.next_value()?),
                "file" => Action::File(map.next_value()?),
                "template" => Action::Template(map.next_value()?),
                "directory" => Action::Directory(map.next_value()?),
                "symlink" => Action::Symlink(map.next_value()?),
                "remove" => Action::Remove(map.next_value()?),
                "group" => Action::Group(map.next_value()?),
                "user" => Action::User(map.next_value()?),
                "service" => Action::Service(map.next_value()?),
                "config_lines" => Action::ConfigLines(map.next_value()?),
                "run" => Action::Run(map.next_value()?),
                other => return Err(A::Error::unknown_variant(other, ACTION_NAMES)),
            });
        }
        let action = action.ok_or_else(|| {
            A::Error::custom(format!(
                "missing action: expected one of {}",
                ACTION_NAMES.join(", ")
            ))
        })?;
        Ok(ActionEntry { when, action })
    }
}

fn action_name(action: &Action) -> &'static str {
    action.kind()
}

/// Everything a stage can do. Each variant is one small type; its execution is in
/// `stage::actions::<variant>`. Strings are Tera templates rendered with the build variables
/// unless the field says otherwise.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// apt-get install/purge in the chroot (`--no-install-recommends`; an install never upgrades
    /// a package already there, and is skipped when all are installed and marked manual).
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

/// A string field of an action that is a Tera template: its name as written in the stage file
/// (`install[2]`, `set.PermitRootLogin`) and its unrendered text.
pub type TemplateField<'a> = (String, &'a str);

/// An asset an action reads from `assets/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetUse<'a> {
    /// Copied verbatim (`file.source`).
    Static(&'a str),
    /// Rendered with Tera (`template.template`).
    Template(&'a str),
}

impl AssetUse<'_> {
    pub fn path(&self) -> &str {
        match self {
            AssetUse::Static(p) | AssetUse::Template(p) => p,
        }
    }
}

impl Action {
    /// The key that names this action in a stage file (`apt`, `config_lines`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Apt(_) => "apt",
            Action::File(_) => "file",
            Action::Template(_) => "template",
            Action::Directory(_) => "directory",
            Action::Symlink(_) => "symlink",
            Action::Remove(_) => "remove",
            Action::Group(_) => "group",
            Action::User(_) => "user",
            Action::Service(_) => "service",
            Action::ConfigLines(_) => "config_lines",
            Action::Run(_) => "run",
        }
    }

    /// Every string field that is rendered with the build variables before use. Asset paths
    /// and modes are not templates (they are checked before any variable exists).
    pub fn template_fields(&self) -> Vec<TemplateField<'_>> {
        fn one<'a>(out: &mut Vec<TemplateField<'a>>, name: &str, v: &'a str) {
            out.push((name.to_string(), v));
        }
        fn opt<'a>(out: &mut Vec<TemplateField<'a>>, name: &str, v: &'a Option<String>) {
            if let Some(v) = v {
                one(out, name, v);
            }
        }
        fn list<'a>(out: &mut Vec<TemplateField<'a>>, name: &str, v: &'a [String]) {
            for (i, s) in v.iter().enumerate() {
                out.push((format!("{name}[{i}]"), s));
            }
        }
        let mut out = Vec::new();
        match self {
            Action::Apt(a) => {
                list(&mut out, "install", &a.install);
                list(&mut out, "purge", &a.purge);
            }
            Action::File(a) => {
                one(&mut out, "path", &a.path);
                opt(&mut out, "content", &a.content);
                opt(&mut out, "owner", &a.owner);
                opt(&mut out, "group", &a.group);
            }
            Action::Template(a) => {
                one(&mut out, "path", &a.path);
                opt(&mut out, "owner", &a.owner);
                opt(&mut out, "group", &a.group);
            }
            Action::Directory(a) => {
                one(&mut out, "path", &a.path);
                opt(&mut out, "owner", &a.owner);
                opt(&mut out, "group", &a.group);
            }
            Action::Symlink(a) => {
                one(&mut out, "path", &a.path);
                one(&mut out, "target", &a.target);
            }
            Action::Remove(a) => list(&mut out, "paths", &a.paths),
            Action::Group(a) => one(&mut out, "name", &a.name),
            Action::User(a) => {
                one(&mut out, "name", &a.name);
                opt(&mut out, "group", &a.group);
                list(&mut out, "groups", &a.groups);
                opt(&mut out, "shell", &a.shell);
                opt(&mut out, "home", &a.home);
                opt(&mut out, "password", &a.password);
            }
            Action::Service(a) => {
                list(&mut out, "enable", &a.enable);
                list(&mut out, "disable", &a.disable);
                list(&mut out, "mask", &a.mask);
            }
            Action::ConfigLines(a) => {
                one(&mut out, "path", &a.path);
                for (k, v) in &a.set {
                    out.push((format!("set.{k}"), v));
                }
            }
            Action::Run(a) => one(&mut out, "script", &a.script),
        }
        out
    }

    /// The assets under `assets/` this action reads.
    pub fn assets(&self) -> Vec<AssetUse<'_>> {
        match self {
            Action::File(FileAction {
                source: Some(s), ..
            }) => vec![AssetUse::Static(s)],
            Action::Template(t) => vec![AssetUse::Template(&t.template)],
            _ => Vec::new(),
        }
    }

    /// The `mode` field, for actions that have one.
    pub fn mode(&self) -> Option<&str> {
        match self {
            Action::File(a) => a.mode.as_deref(),
            Action::Template(a) => a.mode.as_deref(),
            Action::Directory(a) => a.mode.as_deref(),
            _ => None,
        }
    }
}

/// Parses an octal file mode written as a string (`"0644"`, `"755"`, `"4755"`): three or four
/// octal digits, at most `07777`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let ok = (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if !ok {
        return Err(format!(
            "mode {text:?} is not an octal file mode: expected 3 or 4 octal digits, e.g. \"0644\""
        ));
    }
    Ok(u32::from_str_radix(text, 8).expect("checked octal digits"))
}

impl When {
    /// True when every listed condition holds for this OS, architecture and infrastructure.
    /// An `infrastructure` list never matches an OS-image-only build (`infrastructure` None).
    pub fn matches(
        &self,
        os_name: &str,
        os_family: &str,
        arch: &str,
        infrastructure: Option<&str>,
    ) -> bool {
        let has = |list: &[String], v: &str| list.iter().any(|x| x == v);
        (self.os.is_empty() || has(&self.os, os_name))
            && (self.arch.is_empty() || has(&self.arch, arch))
            && (self.os_family.is_empty() || has(&self.os_family, os_family))
            && !has(&self.not_os, os_name)
            && (self.infrastructure.is_empty()
                || infrastructure.is_some_and(|i| has(&self.infrastructure, i)))
            && !infrastructure.is_some_and(|i| has(&self.not_infrastructure, i))
    }

    /// True when the condition mentions an infrastructure (allowed only in stemcell stages).
    pub fn mentions_infrastructure(&self) -> bool {
        !self.infrastructure.is_empty() || !self.not_infrastructure.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        assert_eq!(parse_mode("700"), Ok(0o700));
        for bad in ["", "64", "0x644", "0888", "01777 ", "00644"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn when_conditions() {
        let w = |yaml: &str| serde_yaml::from_str::<When>(yaml).unwrap();
        let any = When::default();
        assert!(any.matches("ubuntu-noble", "ubuntu", "amd64", None));
        assert!(w("os_family: [debian]").matches(
            "debian-bookworm",
            "debian",
            "amd64",
            Some("aws")
        ));
        assert!(!w("os_family: [debian]").matches("ubuntu-noble", "ubuntu", "amd64", Some("aws")));
        assert!(!w("not_os: [ubuntu-jammy]").matches("ubuntu-jammy", "ubuntu", "amd64", None));
        assert!(w("infrastructure: [aws]").matches("ubuntu-noble", "ubuntu", "amd64", Some("aws")));
        assert!(!w("infrastructure: [aws]").matches("ubuntu-noble", "ubuntu", "amd64", None));
        assert!(!w("not_infrastructure: [warden]").matches("x", "ubuntu", "amd64", Some("warden")));
        assert!(w("not_infrastructure: [warden]").matches("x", "ubuntu", "amd64", Some("aws")));
        assert!(w("arch: [arm64]").matches("x", "debian", "arm64", None));
        assert!(!w("arch: [arm64]").matches("x", "debian", "amd64", None));
    }

    #[test]
    fn an_action_item_holds_one_action() {
        let e = serde_yaml::from_str::<ActionEntry>("run: {script: x}\ngroup: {name: y}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("two actions in one list item: `run` and `group`"),
            "{e}"
        );
        let e = serde_yaml::from_str::<ActionEntry>("when: {os: [x]}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("missing action: expected one of apt, file,"),
            "{e}"
        );
        let ok =
            serde_yaml::from_str::<ActionEntry>("when: {os: [x]}\nrun: {script: y}\n").unwrap();
        assert_eq!(ok.action.kind(), "run");
        assert_eq!(ok.when.unwrap().os, ["x"]);
    }
}
