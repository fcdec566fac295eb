//! The image checks as data: `checks/<name>.yaml`, one entry per check of the official
//! builder's image suite (bosh-linux-stemcell-builder bosh-stemcell/spec/), each a shell script run inside the image.
//!
//! ```yaml
//! checks:
//!   - id: "13"                      # this project's number of the upstream example
//!     description: /etc/machine-id is empty
//!     script: test "$(cat /etc/machine-id)" = ""
//!   - id: "54"
//!     description: no PAM service accepts empty passwords
//!     script: grep -R nullok /etc/pam.d
//!     expect: { status: 1 }
//!   - id: "16"
//!     when: { os_family: [debian] }
//!     script: gpg --show-keys /usr/share/keyrings/debian-archive-keyring.gpg
//!     expect: { contains: ["Debian Archive Automatic Signing Key"] }
//! ```

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// One file of checks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    pub checks: Vec<Check>,
}

/// One check: a script and what its outcome must be.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Unique within a file: the upstream example (`file:line`) or the project's own reference.
    pub id: String,
    pub description: String,
    /// The upstream example this check carries: `<spec file>:<line>` in
    /// cloudfoundry/bosh-linux-stemcell-builder `bosh-stemcell/spec/`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Images the example cannot apply to, and why (reported as skipped with the reason).
    #[serde(default)]
    pub not_applicable: Option<NotApplicable>,
    /// Run with `/bin/sh -e -c` inside the image; stdout and stderr are captured together.
    pub script: String,
    /// The images the check applies to; absent means every image.
    #[serde(default)]
    pub when: Option<CheckWhen>,
    #[serde(default)]
    pub expect: Expect,
}

/// Where an upstream example cannot apply, and why: the images are selected as by `when`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotApplicable {
    #[serde(default)]
    pub os: Vec<String>,
    #[serde(default)]
    pub os_family: Vec<String>,
    /// Architectures (Debian names), e.g. `arm64`.
    #[serde(default)]
    pub arch: Vec<String>,
    pub reason: String,
}

/// Which images a check applies to. Every listed field must match; empty lists match anything.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CheckWhen {
    /// OS names as the image reports them, e.g. `ubuntu-noble`, `debian-bookworm`.
    #[serde(default)]
    pub os: Vec<String>,
    /// `ubuntu`, `debian`.
    #[serde(default)]
    pub os_family: Vec<String>,
    #[serde(default)]
    pub not_os: Vec<String>,
    /// Stemcell infrastructures (`stemcell.MF` `cloud_properties.infrastructure`); a check
    /// with this condition never applies to an OS image.
    #[serde(default)]
    pub infrastructure: Vec<String>,
    /// The official suite's `exclude_on_<infrastructure>` tags.
    #[serde(default)]
    pub not_infrastructure: Vec<String>,
}

/// What passes: the exit status, and optionally conditions on the output.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub status: i32,
    /// The whole output, ignoring leading and trailing white space.
    #[serde(default)]
    pub output: Option<String>,
    /// Substrings that must all appear in the output.
    #[serde(default)]
    pub contains: Vec<String>,
    /// Substrings that must not appear in the output.
    #[serde(default)]
    pub not_contains: Vec<String>,
    /// The output must be one JSON document (the official `be_valid_json_file`).
    #[serde(default)]
    pub valid_json: bool,
}

impl Default for Expect {
    fn default() -> Self {
        Self {
            status: 0,
            output: None,
            contains: Vec::new(),
            not_contains: Vec::new(),
            valid_json: false,
        }
    }
}

impl Expect {
    /// `None` when the outcome passes, else why it does not (one line).
    pub fn judge(&self, status: i32, output: &str) -> Option<String> {
        if status != self.status {
            return Some(format!("exit status {status}, expected {}", self.status));
        }
        if let Some(expected) = &self.output {
            if output.trim() != expected.trim() {
                return Some(format!(
                    "output {:?}, expected {:?}",
                    output.trim(),
                    expected.trim()
                ));
            }
        }
        if let Some(missing) = self.contains.iter().find(|s| !output.contains(s.as_str())) {
            return Some(format!("output lacks {missing:?}"));
        }
        if let Some(present) = self
            .not_contains
            .iter()
            .find(|s| output.contains(s.as_str()))
        {
            return Some(format!("output contains {present:?}"));
        }
        if self.valid_json {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(output) {
                return Some(format!("output is not valid JSON: {e}"));
            }
        }
        None
    }
}

/// The identity of the image under test, read from its `/etc/os-release`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageOs {
    /// `ubuntu-noble`, `debian-bookworm`: `<ID>-<VERSION_CODENAME>`.
    pub name: String,
    /// `ubuntu`, `debian`: the os-release `ID`.
    pub family: String,
    /// The stemcell's infrastructure; `None` for an OS image.
    pub infrastructure: Option<String>,
    /// Debian's name of the architecture of the image's programs (`amd64` when unknown).
    pub arch: String,
}

impl ImageOs {
    /// Reads `<root>/etc/os-release` (or `usr/lib/os-release`, which it usually links to).
    pub fn detect(root: &Path) -> Result<Self> {
        let candidates = [root.join("etc/os-release"), root.join("usr/lib/os-release")];
        let (path, text) = candidates
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok().map(|t| (p.clone(), t)))
            .with_context(|| {
                format!(
                    "{}: no etc/os-release: not an OS image root",
                    root.display()
                )
            })?;
        let mut os = Self::parse(&text).with_context(|| path.display().to_string())?;
        if let Some(arch) = crate::rootfs::chroot::root_arch(root) {
            os.arch = arch.debian().to_string();
        }
        Ok(os)
    }

    /// Parses os-release text (`KEY=value` lines, values optionally quoted).
    pub fn parse(text: &str) -> Result<Self> {
        let field = |key: &str| {
            text.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix('=')?;
                Some(
                    value
                        .trim()
                        .trim_matches('"')
                        .trim_matches('\'')
                        .to_string(),
                )
            })
        };
        let Some(id) = field("ID").filter(|s| !s.is_empty()) else {
            bail!("os-release has no ID")
        };
        let Some(codename) = field("VERSION_CODENAME").filter(|s| !s.is_empty()) else {
            bail!("os-release has no VERSION_CODENAME")
        };
        Ok(Self {
            name: format!("{id}-{codename}"),
            family: id,
            infrastructure: None,
            arch: "amd64".into(),
        })
    }

    /// Whether a check with this condition applies to the image.
    pub fn matches(&self, when: Option<&CheckWhen>) -> bool {
        let Some(when) = when else { return true };
        let infra = self.infrastructure.as_ref();
        (when.os.is_empty() || when.os.contains(&self.name))
            && (when.os_family.is_empty() || when.os_family.contains(&self.family))
            && !when.not_os.contains(&self.name)
            && (when.infrastructure.is_empty()
                || infra.is_some_and(|i| when.infrastructure.contains(i)))
            && !infra.is_some_and(|i| when.not_infrastructure.contains(i))
    }

    /// Why a check cannot apply to this image, if it says so.
    pub fn not_applicable<'a>(&self, na: Option<&'a NotApplicable>) -> Option<&'a str> {
        let na = na?;
        ((na.os.is_empty() || na.os.contains(&self.name))
            && (na.os_family.is_empty() || na.os_family.contains(&self.family))
            && (na.arch.is_empty() || na.arch.contains(&self.arch)))
        .then_some(na.reason.as_str())
    }
}

/// Loads and validates a check file: YAML errors name the file, line and column; ids are unique.
pub fn load(path: &Path) -> Result<CheckFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&text).with_context(|| path.display().to_string())
}

/// Parses and validates the text of a check file.
pub fn parse(text: &str) -> Result<CheckFile> {
    let file: CheckFile = serde_yaml::from_str(text)?;
    let mut seen = std::collections::BTreeSet::new();
    for check in &file.checks {
        if !seen.insert(check.id.as_str()) {
            bail!("check id {:?} appears twice", check.id);
        }
        if check.script.trim().is_empty() {
            bail!("check {}: empty script", check.id);
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_gives_name_and_family() {
        let os = ImageOs::parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n").unwrap();
        assert_eq!(
            os,
            ImageOs {
                name: "debian-bookworm".into(),
                family: "debian".into(),
                infrastructure: None,
                arch: "amd64".into(),
            }
        );
        assert!(ImageOs::parse("ID=debian\n")
            .unwrap_err()
            .to_string()
            .contains("VERSION_CODENAME"));
    }

    #[test]
    fn conditions_select_checks() {
        let mut os = ImageOs {
            name: "debian-bookworm".into(),
            family: "debian".into(),
            infrastructure: None,
            arch: "amd64".into(),
        };
        assert!(os.matches(None));
        assert!(os.matches(Some(&CheckWhen {
            os_family: vec!["debian".into()],
            ..Default::default()
        })));
        assert!(!os.matches(Some(&CheckWhen {
            os_family: vec!["ubuntu".into()],
            ..Default::default()
        })));
        assert!(!os.matches(Some(&CheckWhen {
            not_os: vec!["debian-bookworm".into()],
            ..Default::default()
        })));
        let vsphere_only = CheckWhen {
            infrastructure: vec!["vsphere".into()],
            ..Default::default()
        };
        let not_warden = CheckWhen {
            not_infrastructure: vec!["warden".into()],
            ..Default::default()
        };
        assert!(
            !os.matches(Some(&vsphere_only)),
            "an OS image has no infrastructure"
        );
        assert!(os.matches(Some(&not_warden)));
        os.infrastructure = Some("vsphere".into());
        assert!(os.matches(Some(&vsphere_only)));
        os.infrastructure = Some("warden".into());
        assert!(!os.matches(Some(&vsphere_only)));
        assert!(!os.matches(Some(&not_warden)));
        let arm64_only = NotApplicable {
            os: vec![],
            os_family: vec![],
            arch: vec!["arm64".into()],
            reason: "no /lib64".into(),
        };
        assert_eq!(os.not_applicable(Some(&arm64_only)), None);
        os.arch = "arm64".into();
        assert_eq!(os.not_applicable(Some(&arm64_only)), Some("no /lib64"));
        let na = NotApplicable {
            os: vec![],
            os_family: vec!["debian".into()],
            arch: vec![],
            reason: "Ubuntu package name".into(),
        };
        assert_eq!(os.not_applicable(Some(&na)), Some("Ubuntu package name"));
        os.family = "ubuntu".into();
        assert_eq!(os.not_applicable(Some(&na)), None);
    }

    #[test]
    fn expectations_judge_status_and_output() {
        let e = Expect {
            status: 1,
            ..Default::default()
        };
        assert_eq!(e.judge(1, "x"), None);
        assert_eq!(e.judge(0, "x").unwrap(), "exit status 0, expected 1");
        let e = Expect {
            output: Some("vcap".into()),
            ..Default::default()
        };
        assert_eq!(e.judge(0, "vcap\n"), None);
        assert!(e.judge(0, "root\n").is_some());
        let e = Expect {
            contains: vec!["a".into()],
            not_contains: vec!["b".into()],
            ..Default::default()
        };
        assert_eq!(e.judge(0, "a"), None);
        assert_eq!(e.judge(0, "ab").unwrap(), "output contains \"b\"");
        assert_eq!(e.judge(0, "c").unwrap(), "output lacks \"a\"");
        let e = Expect {
            valid_json: true,
            ..Default::default()
        };
        assert_eq!(e.judge(0, "{\"a\": 1}\n"), None);
        assert!(e
            .judge(0, "{\"a\": 1")
            .unwrap()
            .starts_with("output is not valid JSON"));
    }

    #[test]
    fn duplicate_ids_and_unknown_fields_are_refused() {
        let dup = "checks:\n  - {id: '1', description: a, script: 'true'}\n  - {id: '1', description: b, script: 'true'}\n";
        assert_eq!(
            parse(dup).unwrap_err().to_string(),
            "check id \"1\" appears twice"
        );
        let unknown = "checks:\n  - {id: '1', description: a, script: 'true', expected: {}}\n";
        assert!(parse(unknown)
            .unwrap_err()
            .to_string()
            .contains("unknown field `expected`"));
    }
}
