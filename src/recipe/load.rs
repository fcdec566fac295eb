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

/// Where things are in a stage file, for errors found after decoding (serde_yaml keeps no
/// positions in decoded values). A best-effort scan of block-style YAML: `None` when the file
/// uses flow style for that part; errors then name the file without a line.
pub struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Lines {
            lines: std::str::from_utf8(bytes).unwrap_or("").lines().collect(),
        }
    }

    /// The 1-based line of the top-level `key:`.
    pub fn key(&self, key: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| {
                l.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map(|i| i + 1)
    }

    /// The 1-based line where item `index` of the top-level `actions:` list starts.
    pub fn action(&self, index: usize) -> Option<usize> {
        let start = self.key("actions")?;
        let mut indent = None;
        let mut seen = 0;
        for (i, line) in self.lines.iter().enumerate().skip(start) {
            let body = line.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let col = line.len() - body.len();
            let item = body == "-" || body.starts_with("- ");
            match indent {
                None if item => indent = Some(col),
                None => return None,
                Some(c) if col < c || (col == c && !item) => return None,
                Some(c) if col > c || !item => continue,
                Some(_) => {}
            }
            if seen == index {
                return Some(i + 1);
            }
            seen += 1;
        }
        None
    }
}

/// `file:line` when the line is known, else `file`.
pub fn at(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", file.display()),
        None => file.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_action_items() {
        let text = "name: x\n# c\nactions:\n  - run:\n      script: |\n        - not an item\n  # note\n  -   group: {name: a}\n  - file:\n      path: /x\n    when: {os: [a]}\nwhen: {}\n";
        let l = Lines::new(text.as_bytes());
        assert_eq!(l.key("name"), Some(1));
        assert_eq!(l.key("when"), Some(12));
        assert_eq!(l.action(0), Some(4));
        assert_eq!(l.action(1), Some(8));
        assert_eq!(l.action(2), Some(9));
        assert_eq!(l.action(3), None);
        assert_eq!(
            Lines::new(b"actions: [{run: {script: x}}]\n").action(0),
            None
        );
        assert_eq!(
            Lines::new(b"actions:\n- run: {script: x}\n- run: {script: y}\n").action(1),
            Some(3)
        );
    }
}
