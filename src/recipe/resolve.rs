//! Resolving a [`Plan`] from the repository's stage files, OS definitions and infrastructures.

use super::plan::Plan;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// OS definition name, e.g. `ubuntu-noble`.
    pub os: String,
    /// Infrastructure for the stemcell phase; `None` plans the OS image only.
    pub infrastructure: Option<String>,
    /// `--mirror` override.
    pub mirror: Option<String>,
    /// BUILD_TIME (apt snapshot timestamp, e.g. `20250520T000000Z`).
    pub build_time: Option<String>,
    /// Stemcell version (stemcell phase).
    pub stemcell_version: Option<String>,
    /// Extra variables (passwords, agent inputs...), merged into `Plan::vars`.
    pub extra_vars: Vec<(String, String)>,
}

/// The directory holding `stages/`, `assets/` and `infrastructures/`: `$STEMCELL_HOME`, else the
/// source tree this binary was built from.
pub fn project_root() -> PathBuf {
    std::env::var_os("STEMCELL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Loads and validates everything under `root`, then resolves the plan. Every error names the
/// file, line and column, and what was expected.
pub fn resolve(root: &Path, options: &PlanOptions) -> Result<Plan> {
    let _ = (root, options);
    bail!("plan resolution not implemented yet")
}
