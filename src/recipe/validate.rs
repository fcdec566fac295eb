//! Checks of the whole stage set that need no build variables, run before any work: unique
//! names, files named `NN-<name>.yaml`, phase matches folder, known names in `when`, OS-image
//! stages independent of the infrastructure, assets exist, modes parse, templates parse.
//! Errors name the stage file, the line when it can be found, and the action (`actions[2] (file)`).

use super::load::{at, Lines, LoadedStage};
use super::os::FAMILIES;
use super::stage::{parse_mode, ActionEntry, AssetUse, Phase, When};
use super::template;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Names `when` conditions may use.
pub struct KnownNames {
    pub os: Vec<String>,
    /// Infrastructure names; `None` when the project has no `infrastructures/` folder (then any
    /// name is accepted).
    pub infrastructures: Option<Vec<String>>,
}

/// Validates every stage file; the first problem is the error.
pub fn validate_all(stages: &[LoadedStage], assets_dir: &Path, known: &KnownNames) -> Result<()> {
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for s in stages {
        let lines = Lines::new(&s.bytes);
        let at_key = |key: &str| at(&s.file, lines.key(key));
        if let Some(first) = seen.insert(&s.stage.name, &s.file) {
            bail!(
                "{}: stage name `{}` is already used by {}",
                at_key("name"),
                s.stage.name,
                first.display()
            );
        }
        let file_name = s.file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !file_name_fits(file_name, &s.stage.name) {
            bail!(
                "{}: stage `{}` must be in a file named NN-{}.yaml (NN: two digits, the order)",
                at_key("name"),
                s.stage.name,
                s.stage.name
            );
        }
        if s.stage.phase != s.folder {
            bail!(
                "{}: phase `{}` does not match its folder stages/{}/ (expected `{}`)",
                at_key("phase"),
                s.stage.phase,
                s.folder.dir_name(),
                s.folder
            );
        }
        if let Some(when) = &s.stage.when {
            check_when(when, s.folder, known)
                .map_err(|e| anyhow::anyhow!("{}: when: {e}", at_key("when")))?;
        }
        for (i, entry) in s.stage.actions.iter().enumerate() {
            check_action(entry, s.folder, assets_dir, known).map_err(|e| {
                let label = action_label(i, entry);
                anyhow::anyhow!("{}: {label}: {e}", at(&s.file, lines.action(i)))
            })?;
        }
    }
    Ok(())
}

/// Stage files are `NN-<name>.yaml`: the digits order them, the rest is the stage name.
fn file_name_fits(file_name: &str, stage_name: &str) -> bool {
    let b = file_name.as_bytes();
    b.len() > 3
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b'-'
        && file_name[3..].strip_suffix(".yaml") == Some(stage_name)
}

/// How errors name an action: its index in the stage's `actions` list and its kind.
pub fn action_label(index: usize, entry: &ActionEntry) -> String {
    format!("actions[{index}] ({})", entry.action.kind())
}

/// The file an asset path refers to; only plain relative paths inside `assets/` are allowed.
pub fn asset_path(assets_dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let p = Path::new(relative);
    if relative.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "asset path `{relative}` must be relative to assets/ without `..`"
        ));
    }
    Ok(assets_dir.join(p))
}

fn check_action(
    entry: &ActionEntry,
    phase: Phase,
    assets_dir: &Path,
    known: &KnownNames,
) -> Result<(), String> {
    if let Some(when) = &entry.when {
        check_when(when, phase, known).map_err(|e| format!("when: {e}"))?;
    }
    if let Some(mode) = entry.action.mode() {
        parse_mode(mode)?;
    }
    for asset in entry.action.assets() {
        let path = asset_path(assets_dir, asset.path())?;
        if !path.is_file() {
            return Err(format!(
                "asset `{}` not found: {} does not exist",
                asset.path(),
                path.display()
            ));
        }
        if let AssetUse::Template(_) = asset {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("template {}: cannot read as text: {e}", path.display()))?;
            template::check_syntax(&text)
                .map_err(|e| format!("template {}: {e}", path.display()))?;
        }
    }
    if let super::stage::Action::File(f) = &entry.action {
        if f.content.is_some() == f.source.is_some() {
            return Err("expected exactly one of `content` or `source`".into());
        }
    }
    for (field, text) in entry.action.template_fields() {
        template::check_syntax(text).map_err(|e| format!("{field}: {e}"))?;
    }
    Ok(())
}

fn check_when(when: &When, phase: Phase, known: &KnownNames) -> Result<(), String> {
    for name in when.os.iter().chain(&when.not_os) {
        if !known.os.contains(name) {
            return Err(format!(
                "unknown OS `{name}`: expected one of {}",
                known.os.join(", ")
            ));
        }
    }
    for name in &when.arch {
        crate::recipe::arch::Arch::parse(name).map_err(|e| e.to_string())?;
    }
    for name in &when.os_family {
        if !FAMILIES.contains(&name.as_str()) {
            return Err(format!(
                "unknown OS family `{name}`: expected one of {}",
                FAMILIES.join(", ")
            ));
        }
    }
    if phase == Phase::OsImage && when.mentions_infrastructure() {
        return Err(
            "os-image stages cannot depend on the infrastructure (one OS image serves all); \
             use a stemcell stage"
                .into(),
        );
    }
    if let Some(valid) = &known.infrastructures {
        for name in when.infrastructure.iter().chain(&when.not_infrastructure) {
            if !valid.contains(name) {
                return Err(format!(
                    "unknown infrastructure `{name}`: expected one of {}",
                    valid.join(", ")
                ));
            }
        }
    }
    Ok(())
}
