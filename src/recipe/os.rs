//! OS definitions: `stages/os/<name>.yaml`. One per supported OS; stages are shared and differ
//! only through conditions and the few package-name variables defined here.

use super::arch::Arch;
use super::load::{parse_yaml, read_file, yaml_files};
use anyhow::{bail, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The OS built when none is named.
pub const DEFAULT_OS: &str = "ubuntu-noble";

/// The bootstrap's package set: mmdebstrap's `--variant`. Everything else is installed by
/// stages, so the bootstrap layer stays small and shared. Part of the bootstrap cache key.
pub const BOOTSTRAP_VARIANT: &str = "minbase";

/// The OS families stages may test with `when: { os_family: [...] }`.
pub const FAMILIES: &[&str] = &["ubuntu", "debian"];

/// An operating system the builder can bootstrap.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsDefinition {
    /// e.g. `ubuntu-noble`; also the stemcell's `operating_system`.
    pub name: String,
    /// `ubuntu` or `debian`.
    pub family: String,
    /// Distribution suite/codename, e.g. `noble`.
    pub suite: String,
    /// Numeric version, e.g. `24.04`, `12`.
    pub version: String,
    pub components: Vec<String>,
    /// Archive URL. For debian-bookworm `null` means: the mirror the host's apt sources use.
    #[serde(default)]
    pub mirror: Option<String>,
    /// Snapshot archive URL pattern with `{timestamp}` (BUILD_TIME, e.g. 20250520T000000Z).
    #[serde(default)]
    pub snapshot_mirror: Option<String>,
    /// Extra suites for the image's sources (updates, security).
    #[serde(default)]
    pub extra_suites: Vec<String>,
    /// Keyring file on the build host that signs the archive.
    pub keyring: String,
    /// Kernel metapackage (linux-generic, linux-image-amd64).
    pub kernel_package: String,
    /// Package names that differ between distributions: variable name → package name(s).
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
    /// The architectures this OS is built for (Debian names), each with what differs from
    /// the fields above. Absent: amd64 only.
    #[serde(default)]
    pub architectures: Option<BTreeMap<String, ArchDifferences>>,
}

/// What an architecture changes in an OS definition (Ubuntu's ports archive, the kernel
/// flavour, GRUB's platform package); anything not named is as for every architecture.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchDifferences {
    #[serde(default)]
    pub mirror: Option<String>,
    #[serde(default)]
    pub snapshot_mirror: Option<String>,
    #[serde(default)]
    pub kernel_package: Option<String>,
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
}

impl OsDefinition {
    /// The architectures the definition lists, in order (amd64 when it lists none).
    pub fn arch_names(&self) -> Vec<String> {
        match &self.architectures {
            None => vec![Arch::Amd64.debian().to_string()],
            Some(map) => map.keys().cloned().collect(),
        }
    }

    /// The definition as built for `arch`: that architecture's differences applied. An
    /// architecture the definition does not list is an error naming the file.
    pub fn for_arch(&self, arch: Arch, file: &Path) -> Result<OsDefinition> {
        let names = self.arch_names();
        if !names.iter().any(|n| n == arch.debian()) {
            bail!(
                "{}: {} is not built for {arch} (architectures: {})",
                file.display(),
                self.name,
                names.join(", ")
            );
        }
        let mut os = self.clone();
        let differences = self
            .architectures
            .as_ref()
            .and_then(|m| m.get(arch.debian()).cloned())
            .unwrap_or_default();
        if let Some(m) = differences.mirror {
            os.mirror = Some(m);
        }
        if let Some(m) = differences.snapshot_mirror {
            os.snapshot_mirror = Some(m);
        }
        if let Some(k) = differences.kernel_package {
            os.kernel_package = k;
        }
        os.packages.extend(differences.packages);
        Ok(os)
    }
}

/// An OS definition with the file it came from and its bytes (hashed into the bootstrap key).
#[derive(Clone, Debug)]
pub struct LoadedOs {
    pub definition: OsDefinition,
    pub file: PathBuf,
    pub bytes: Vec<u8>,
}

/// `stages/os` under the project root.
pub fn os_dir(root: &Path) -> PathBuf {
    root.join("stages").join("os")
}

/// The names of every OS definition (file stems of `stages/os/*.yaml`), sorted.
pub fn names(root: &Path) -> Result<Vec<String>> {
    Ok(yaml_files(&os_dir(root))?
        .iter()
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
        .collect())
}

/// Loads `stages/os/<name>.yaml`. An unknown name is an error listing the valid ones; the file's
/// `name` must equal its file stem and `family` must be one of [`FAMILIES`].
pub fn load(root: &Path, name: &str) -> Result<LoadedOs> {
    let valid = names(root)?;
    if !valid.iter().any(|n| n == name) {
        bail!(
            "unknown OS `{name}`: expected one of {} (files in {})",
            valid.join(", "),
            os_dir(root).display()
        );
    }
    let file = os_dir(root).join(format!("{name}.yaml"));
    let bytes = read_file(&file)?;
    let definition: OsDefinition = parse_yaml(&file, &bytes)?;
    if definition.name != name {
        bail!(
            "{}: name `{}` does not match the file name (expected `{name}`)",
            file.display(),
            definition.name
        );
    }
    if !FAMILIES.contains(&definition.family.as_str()) {
        bail!(
            "{}: unknown family `{}`: expected one of {}",
            file.display(),
            definition.family,
            FAMILIES.join(", ")
        );
    }
    for name in definition.arch_names() {
        Arch::parse(&name)
            .map_err(|e| anyhow::anyhow!("{}: architectures: {e}", file.display()))?;
    }
    let snapshots = definition
        .architectures
        .iter()
        .flat_map(|m| m.values())
        .filter_map(|d| d.snapshot_mirror.as_ref());
    for pattern in definition.snapshot_mirror.iter().chain(snapshots) {
        if !pattern.contains("{timestamp}") {
            bail!(
                "{}: snapshot_mirror `{pattern}` has no `{{timestamp}}`",
                file.display()
            );
        }
    }
    Ok(LoadedOs {
        definition,
        file,
        bytes,
    })
}
