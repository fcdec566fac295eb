//! OS definitions: `stages/os/<name>.yaml`. One per supported OS; stages are shared and differ
//! only through conditions and the few package-name variables defined here.

use serde::Deserialize;
use std::collections::BTreeMap;

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
}
