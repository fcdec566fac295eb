//! Resolving a [`Plan`] from the repository's stage files, OS definitions and infrastructures.
//!
//! Order of work: load the OS definition and the whole stage set, validate all of it, choose the
//! mirror, build the variables, then walk the requested phases: filter stages and actions by
//! `when`, render every template (an undefined variable fails here, not mid-build) and chain
//! the cache keys.

use super::arch::Arch;
use super::keys::{bootstrap_key, KeyHasher};
use super::load::{at, load_phase, read_file, yaml_files, Lines, LoadedStage};
use super::plan::{Plan, PlannedStage};
use super::stage::{AssetUse, Phase};
use super::validate::{action_label, asset_path, validate_all, KnownNames};
use super::{mirror, os, template, vars};
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// OS definition name, e.g. `ubuntu-noble`.
    pub os: String,
    /// The architecture to build for (default amd64).
    pub arch: Arch,
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
    /// SOURCE_DATE_EPOCH: given to every command in the chroot, and part of every cache key.
    pub source_date_epoch: Option<u64>,
}

/// The stemcell version when none is given (the official builder's default build number).
pub const DEFAULT_STEMCELL_VERSION: &str = "0000";

/// The directory holding `stages/`, `assets/` and `infrastructures/`: `$STEMCELL_HOME`, else the
/// source tree this binary was built from.
pub fn project_root() -> PathBuf {
    std::env::var_os("STEMCELL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// BUILD_TIME as the official builder reads it: the `BUILD_TIME` environment variable, else
/// the first line of `<root>/build_time.txt`; `None` when neither is set (no snapshot).
pub fn build_time_setting(root: &Path) -> Result<Option<String>> {
    if let Some(t) = std::env::var("BUILD_TIME")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Some(t.trim().to_string()));
    }
    let file = root.join("build_time.txt");
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(text
            .lines()
            .next()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("{}: cannot read: {e}", file.display()),
    }
}

/// Infrastructure names: file stems of `infrastructures/*.yaml`; `None` without that folder.
pub fn infrastructure_names(root: &Path) -> Result<Option<Vec<String>>> {
    let dir = root.join("infrastructures");
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(Some(
        yaml_files(&dir)?
            .iter()
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
            .collect(),
    ))
}

/// Loads and validates everything under `root`, then resolves the plan. Every error names the
/// file, line and column, and what was expected.
pub fn resolve(root: &Path, options: &PlanOptions) -> Result<Plan> {
    resolve_with_apt(root, options, Path::new(mirror::HOST_APT_DIR))
}

/// [`resolve`] with the host apt configuration read from `etc_apt` (tests).
pub fn resolve_with_apt(root: &Path, options: &PlanOptions, etc_apt: &Path) -> Result<Plan> {
    let os_name = if options.os.is_empty() {
        os::DEFAULT_OS
    } else {
        &options.os
    };
    let loaded_os = os::load(root, os_name)?;
    let known = KnownNames {
        os: os::names(root)?,
        infrastructures: infrastructure_names(root)?,
    };
    if let Some(infra) = &options.infrastructure {
        match &known.infrastructures {
            Some(valid) if !valid.contains(infra) => bail!(
                "unknown infrastructure `{infra}`: expected one of {}",
                valid.join(", ")
            ),
            None => bail!(
                "unknown infrastructure `{infra}`: {} does not exist",
                root.join("infrastructures").display()
            ),
            _ => {}
        }
    }

    let assets_dir = root.join("assets");
    let mut all = load_phase(root, Phase::OsImage)?;
    all.extend(load_phase(root, Phase::Stemcell)?);
    validate_all(&all, &assets_dir, &known)?;

    let osd = &loaded_os
        .definition
        .for_arch(options.arch, &loaded_os.file)?;
    let arch = options.arch.debian();
    let chosen = mirror::choose(
        osd,
        options.mirror.as_deref(),
        options.build_time.as_deref(),
        etc_apt,
    )?;
    // What the shipped image's apt sources name: the archive, never a snapshot or a build-time
    // `--mirror` (as the official restore_apt_sources does); `--mirror` only when there is no
    // other (a Debian definition on a host without Debian sources).
    let archive = match mirror::archive_mirror(osd, etc_apt) {
        Ok(m) => m,
        Err(_) if options.mirror.is_some() => chosen.clone(),
        Err(e) => return Err(e),
    };
    let all_vars = vars::build(&vars::VarInputs {
        os: osd,
        arch,
        mirror: &chosen,
        archive_mirror: &archive,
        build_time: options.build_time.as_deref(),
        infrastructure: options.infrastructure.as_deref(),
        stemcell_version: options
            .stemcell_version
            .as_deref()
            .unwrap_or(DEFAULT_STEMCELL_VERSION),
        extra_vars: &options.extra_vars,
    })?;

    let bootstrap = bootstrap_key(
        &loaded_os.bytes,
        arch,
        &chosen,
        os::BOOTSTRAP_VARIANT,
        options.source_date_epoch,
    );
    let mut previous = bootstrap.clone();
    let mut stages = Vec::new();
    let mut phases = vec![Phase::OsImage];
    if options.infrastructure.is_some() {
        phases.push(Phase::Stemcell);
    }
    for phase in phases {
        let view = match phase {
            Phase::OsImage => vars::os_image_view(&all_vars),
            Phase::Stemcell => all_vars.clone(),
        };
        let context = vars::to_context(&view);
        for s in all.iter().filter(|s| s.folder == phase) {
            let applies = s.stage.when.as_ref().is_none_or(|w| {
                w.matches(
                    &osd.name,
                    &osd.family,
                    arch,
                    options.infrastructure.as_deref(),
                )
            });
            if !applies {
                continue;
            }
            let planned = plan_stage(s, &previous, &assets_dir, &context, osd, options)?;
            previous = planned.key.clone();
            stages.push(planned);
        }
    }

    Ok(Plan {
        os: osd.clone(),
        arch: options.arch,
        infrastructure: options.infrastructure.clone(),
        mirror: chosen,
        assets_dir,
        bootstrap_key: bootstrap,
        stages,
        vars: vars::to_context(&all_vars),
        source_date_epoch: options.source_date_epoch,
    })
}

/// Filters one stage's actions, renders their templates (the rendered text, not the whole
/// variable set, goes into the key: a stage changes key only when a variable it uses changes)
/// and computes its key.
fn plan_stage(
    s: &LoadedStage,
    previous: &str,
    assets_dir: &Path,
    context: &tera::Context,
    osd: &os::OsDefinition,
    options: &PlanOptions,
) -> Result<PlannedStage> {
    let lines = Lines::new(&s.bytes);
    let mut key = KeyHasher::new("stage");
    key.part("previous", previous.as_bytes())
        .part("stage file", &s.bytes);
    let mut actions = Vec::new();
    for (i, entry) in s.stage.actions.iter().enumerate() {
        let applies = entry.when.as_ref().is_none_or(|w| {
            w.matches(
                &osd.name,
                &osd.family,
                options.arch.debian(),
                options.infrastructure.as_deref(),
            )
        });
        if !applies {
            continue;
        }
        let label = action_label(i, entry);
        let file = at(&s.file, lines.action(i));
        key.part("action", i.to_string().as_bytes());
        for (field, text) in entry.action.template_fields() {
            let rendered = template::render(text, context)
                .map_err(|e| anyhow!("{file}: {label}: {field}: {e}"))?;
            key.part(&field, rendered.as_bytes());
        }
        for asset in entry.action.assets() {
            let path = asset_path(assets_dir, asset.path())
                .map_err(|e| anyhow!("{file}: {label}: {e}"))?;
            let bytes = read_file(&path)?;
            key.part("asset", asset.path().as_bytes())
                .part("asset bytes", &bytes);
            if let AssetUse::Template(_) = asset {
                let text = String::from_utf8_lossy(&bytes);
                let rendered = template::render(&text, context)
                    .map_err(|e| anyhow!("{file}: {label}: template {}: {e}", path.display()))?;
                key.part("rendered asset", rendered.as_bytes());
            }
        }
        actions.push(entry.action.clone());
    }
    Ok(PlannedStage {
        name: s.stage.name.clone(),
        file: s.file.clone(),
        phase: s.folder,
        description: s.stage.description.clone(),
        actions,
        key: key.finish(),
    })
}
