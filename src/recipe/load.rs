//! Reading YAML files with errors that name the file, line and column: the stage files of
//! `stages/<phase>/` and the helpers other recipe files share.

use super::stage::{Phase, StageFile};
use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// One stage file as read from disk. `bytes` are exactly what was parsed (hashed into the key).
#[derive(Clone, Debug)]
pub struct LoadedStage {
    pub file: PathBuf,
    /// The phase its folder stands for (`stages/os-image/` → OsImage).
    pub folder: Phase,
    pub bytes: Vec<u8>,
    pub stage: StageFile,
}

/// `stages/<phase>` under the project root.
pub fn phase_dir(root: &Path, phase: Phase) -> PathBuf {
    root.join("stages").join(phase.dir_name())
}

/// Loads every `*.yaml` in `stages/<phase>/`, ordered by file name. A missing folder holds no
/// stages.
pub fn load_phase(root: &Path, phase: Phase) -> Result<Vec<LoadedStage>> {
    let dir = phase_dir(root, phase);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    yaml_files(&dir)?
        .into_iter()
        .map(|file| {
            let bytes = read_file(&file)?;
            let stage = parse_yaml(&file, &bytes)?;
            Ok(LoadedStage {
                file,
                folder: phase,
                bytes,
                stage,
            })
        })
        .collect()
}

/// The `*.yaml` files directly in `dir`, sorted by name. A `*.yml` file is an error (it would
/// otherwise be silently ignored).
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read directory", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("{}: cannot read directory", dir.display()))?
            .path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml") => files.push(path),
            Some("yml") => {
                return Err(anyhow!(
                    "{}: rename to .yaml (only *.yaml files are loaded)",
                    path.display()
                ))
            }
            _ => {}
        }
    }
    files.sort();
    Ok(files)
}

pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))
}

/// Decodes YAML into `T`. Errors read `<file>:<line>:<column>: <what serde expected>`.
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, bytes: &[u8]) -> Result<T> {
    serde_yaml::from_slice(bytes).map_err(|e| anyhow!(yaml_error(file, &e)))
}

/// One line: file, position, and serde_yaml's message without its own " at line L column C".
fn yaml_error(file: &Path, e: &serde_yaml::Error) -> String {
    let message = e.to_string();
    match e.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let message = message.replace(&suffix, "");
            format!(
                "{}:{}:{}: {}",
                file.display(),
                loc.line(),
                loc.column(),
                message
            )
        }
        None => format!("{}: {}", file.display(), message),
    }
}
