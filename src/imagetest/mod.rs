//! `stemcell test-image`: the official builder's image checks (official-builder.md §8.2),
//! kept as data in `checks/*.yaml` and run inside the image through a chroot session.
//!
//! The image is an OS image tarball, extracted safely into a temporary directory that is
//! removed afterwards, or a directory already holding a root filesystem.
pub mod checks;
pub mod extract;

use crate::rootfs::chroot::Session;
use anyhow::{bail, Context, Result};
use checks::{Check, ImageOs};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The outcome of one check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub id: String,
    pub description: String,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Why it failed (one line) and the script's output.
    Fail {
        reason: String,
        output: String,
    },
    /// The check's `when` does not match this image.
    Skip,
}

/// All results, in the order of the check file.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub os: Option<ImageOs>,
    pub results: Vec<CheckResult>,
}

impl Report {
    pub fn count(&self, wanted: fn(&Verdict) -> bool) -> usize {
        self.results.iter().filter(|r| wanted(&r.verdict)).count()
    }
    pub fn failed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Fail { .. }))
    }
    pub fn passed(&self) -> usize {
        self.count(|v| *v == Verdict::Pass)
    }
    pub fn skipped(&self) -> usize {
        self.count(|v| *v == Verdict::Skip)
    }

    /// One line per check (`PASS`, `FAIL`, `SKIP`), failure output indented below it.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for r in &self.results {
            match &r.verdict {
                Verdict::Pass => text.push_str(&format!("PASS {:>4} {}\n", r.id, r.description)),
                Verdict::Skip => text.push_str(&format!("SKIP {:>4} {}\n", r.id, r.description)),
                Verdict::Fail { reason, output } => {
                    text.push_str(&format!("FAIL {:>4} {}: {reason}\n", r.id, r.description));
                    for line in output.lines().take(20) {
                        text.push_str(&format!("          | {line}\n"));
                    }
                }
            }
        }
        text.push_str(&format!(
            "{} passed, {} failed, {} skipped{}\n",
            self.passed(),
            self.failed(),
            self.skipped(),
            self.os
                .as_ref()
                .map(|os| format!(" ({})", os.name))
                .unwrap_or_default()
        ));
        text
    }
}

/// Runs `checks` inside the root filesystem at `root`, in parallel (they only read), and
/// returns the results in file order.
pub fn run_checks(root: &Path, checks: &[Check]) -> Result<Report> {
    let session = Session::open(root)?;
    let os = ImageOs::detect(root)?;
    let results = checks
        .par_iter()
        .map(|check| {
            let verdict = if !os.matches(check.when.as_ref()) {
                Verdict::Skip
            } else {
                let out = session.output(&check.script)?;
                match check.expect.judge(out.status, &out.output) {
                    None => Verdict::Pass,
                    Some(reason) => Verdict::Fail {
                        reason,
                        output: out.output,
                    },
                }
            };
            Ok(CheckResult {
                id: check.id.clone(),
                description: check.description.clone(),
                verdict,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Report {
        os: Some(os),
        results,
    })
}

/// The check files of the project: `checks/*.yaml` under `root`, sorted by name.
pub fn check_files(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("checks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: cannot list the image checks", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no check files (*.yaml)", dir.display());
    }
    Ok(files)
}

/// Loads every check file under `project_root` into one list.
pub fn load_checks(project_root: &Path) -> Result<Vec<Check>> {
    let mut all = Vec::new();
    for file in check_files(project_root)? {
        all.extend(checks::load(&file)?.checks);
    }
    Ok(all)
}

/// `stemcell test-image IMAGE`: extracts (if a tarball) and checks the image, prints the
/// report, and fails if any check failed.
pub fn test_image(image: &Path, project_root: &Path) -> Result<Report> {
    test_image_in(image, project_root, &scratch_dir())
}

/// [`test_image`] extracting a tarball under `scratch` (the directory is removed afterwards,
/// also when extraction or a check fails).
pub fn test_image_in(image: &Path, project_root: &Path, scratch: &Path) -> Result<Report> {
    let checks = load_checks(project_root)?;
    let report = if image.is_dir() {
        run_checks(image, &checks)?
    } else if image.is_file() {
        refuse_stemcell(image)?;
        let work = tempfile::Builder::new()
            .prefix("stemcell-test-image-")
            .tempdir_in(scratch)
            .with_context(|| format!("{}: cannot create a work directory", scratch.display()))?;
        extract::extract(image, work.path())?;
        let report =
            run_checks(work.path(), &checks).with_context(|| image.display().to_string())?;
        work.close()
            .with_context(|| format!("{}: cannot remove the extracted image", scratch.display()))?;
        report
    } else {
        bail!("{}: no such file or directory", image.display());
    };
    print!("{}", report.render());
    if report.failed() > 0 {
        bail!(
            "{}: {} of {} image checks failed",
            image.display(),
            report.failed(),
            report.results.len() - report.skipped()
        );
    }
    Ok(report)
}

/// Large scratch space for the extracted image: `$TMPDIR`, else /var/tmp (often not a small tmpfs).
fn scratch_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// A stemcell holds a disk image, not a root filesystem: say so instead of failing oddly.
fn refuse_stemcell(path: &Path) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        std::io::BufReader::new(file),
    ));
    let Ok(mut entries) = archive.entries() else {
        return Ok(());
    };
    if let Some(Ok(first)) = entries.next() {
        if first.path().is_ok_and(|p| p.as_os_str() == "stemcell.MF") {
            bail!("{}: a stemcell, not an OS image: test-image checks an OS image tarball or a root directory", path.display());
        }
    }
    Ok(())
}
