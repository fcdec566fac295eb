//! A resolved build plan: the OS definition, the ordered stages that apply to the requested OS
//! and infrastructure, each with its actions already filtered by their conditions, and a cache
//! key that covers the stage's content and everything before it.

use super::os::OsDefinition;
use super::stage::{Action, Phase};
use std::path::PathBuf;

/// One stage ready to run.
#[derive(Clone, Debug)]
pub struct PlannedStage {
    pub name: String,
    /// The stage file, for error messages and logs.
    pub file: PathBuf,
    pub phase: Phase,
    pub description: String,
    /// Actions whose conditions hold for this build, in file order. Template strings are not
    /// rendered yet: the runner renders them with [`Plan::vars`].
    pub actions: Vec<Action>,
    /// Hex digest of: the previous stage's key, the stage file bytes, every asset the stage
    /// reads, and the variables it uses. Equal keys mean the cached result can be reused.
    pub key: String,
}

/// Everything a build needs to know, resolved and validated before any work starts.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The OS definition as built for [`Plan::arch`].
    pub os: OsDefinition,
    pub arch: super::arch::Arch,
    /// Infrastructure for the stemcell phase; `None` for an OS image alone.
    pub infrastructure: Option<String>,
    /// The archive URL to bootstrap from (after `--mirror`, BUILD_TIME and host defaults).
    pub mirror: String,
    /// Directory holding `assets/` (the repository root or the installed share directory).
    pub assets_dir: PathBuf,
    /// Cache key of the bootstrap step (OS definition, mirror, package set).
    pub bootstrap_key: String,
    pub stages: Vec<PlannedStage>,
    /// Variables available to every template: os.*, infrastructure, stemcell_version,
    /// build_time, passwords.*, packages.* (see recipe::vars).
    pub vars: tera::Context,
    /// SOURCE_DATE_EPOCH of a reproducible build: set in the environment of the bootstrap and
    /// of every chroot command (already covered by [`Plan::bootstrap_key`]).
    pub source_date_epoch: Option<u64>,
}

/// The cache contract with the runner: the result of the step with `key` (a stage, or the
/// bootstrap with [`Plan::bootstrap_key`]) is cached iff this file exists.
pub fn layer_done_marker(work_dir: &std::path::Path, key: &str) -> PathBuf {
    work_dir.join("layers").join(format!("{key}.done"))
}

/// The first characters of a key, for people.
pub fn short_key(key: &str) -> &str {
    &key[..key.len().min(12)]
}

impl Plan {
    /// The index in [`Plan::stages`] of the stage named `name` (for `--from-stage`). An unknown
    /// name is an error listing the planned stages.
    pub fn stage_index(&self, name: &str) -> anyhow::Result<usize> {
        self.stages
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
                anyhow::anyhow!(
                    "unknown stage `{name}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}
