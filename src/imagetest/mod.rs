//! `stemcell test-image`: the official builder's acceptance specs (cloudfoundry/
//! bosh-linux-stemcell-builder `bosh-stemcell/spec/os_image/` and `spec/stemcells/`), kept as
//! data in `checks/` and run inside the image through a chroot session.
//!
//! The image is an OS image tarball (extracted safely), a directory holding a root filesystem,
//! or a stemcell tarball: its disk is taken out of the `image` member as raw, and its root
//! filesystem and ESP copied out without a mount. An OS image gets `checks/os-image.yaml`; a
//! stemcell gets that set plus `checks/stemcell/*.yaml`, as the official suite re-runs the OS
//! image examples on the finished stemcell. Every temporary file is removed afterwards, also
//! on error.
pub mod checks;
pub mod extract;
pub mod rootfs;
pub mod stemcell;

use crate::rootfs::chroot::{Exec, Session};
use anyhow::{bail, Context, Result};
use checks::{Check, ImageOs};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The outcome of one check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub id: String,
    /// The upstream example, `<spec file>:<line>`.
    pub upstream: Option<String>,
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
    /// The upstream example cannot apply to this OS; why.
    NotApplicable(String),
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
    /// Skipped: not for this image, or not applicable to its OS.
    pub fn skipped(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Skip | Verdict::NotApplicable(_)))
    }

    /// The not-applicable checks: (id, reason).
    pub fn not_applicable(&self) -> Vec<(&str, &str)> {
        self.results
            .iter()
            .filter_map(|r| match &r.verdict {
                Verdict::NotApplicable(why) => Some((r.id.as_str(), why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// What was tested (`debian-bookworm`, `debian-bookworm openstack stemcell`).
    pub fn subject(&self) -> String {
        match &self.os {
            Some(os) => match &os.infrastructure {
                Some(infra) => format!("{} {infra} stemcell", os.name),
                None => format!("{} OS image", os.name),
            },
            None => "image".to_string(),
        }
    }

    /// One line per check (`PASS`, `FAIL`, `SKIP`) with its id (the upstream example), failure
    /// output indented below it; then exactly `N passed, N failed, N skipped`.
    pub fn render(&self) -> String {
        let mut text = format!("test-image: {}\n", self.subject());
        for r in &self.results {
            let id = &r.id;
            match &r.verdict {
                Verdict::Pass => text.push_str(&format!("PASS {id} {}\n", r.description)),
                Verdict::Skip => text.push_str(&format!("SKIP {id} {}\n", r.description)),
                Verdict::NotApplicable(why) => text.push_str(&format!(
                    "SKIP {id} {} (not applicable: {why})\n",
                    r.description
                )),
                Verdict::Fail { reason, output } => {
                    text.push_str(&format!("FAIL {id} {}: {reason}\n", r.description));
                    for line in output.lines().take(20) {
                        text.push_str(&format!("          | {line}\n"));
                    }
                }
            }
        }
        text.push_str(&format!(
            "{} passed, {} failed, {} skipped\n",
            self.passed(),
            self.failed(),
            self.skipped(),
        ));
        text
    }

    /// The report as one JSON document, for CI.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|r| {
                let (verdict, reason, output) = match &r.verdict {
                    Verdict::Pass => ("pass", None, None),
                    Verdict::Skip => ("skip", None, None),
                    Verdict::NotApplicable(why) => ("not_applicable", Some(why.as_str()), None),
                    Verdict::Fail { reason, output } => {
                        ("fail", Some(reason.as_str()), Some(output.as_str()))
                    }
                };
                serde_json::json!({
                    "id": r.id,
                    "upstream": r.upstream,
                    "description": r.description,
                    "verdict": verdict,
                    "reason": reason,
                    "output": output,
                })
            })
            .collect();
        serde_json::json!({
            "os": self.os.as_ref().map(|o| o.name.clone()),
            "infrastructure": self.os.as_ref().and_then(|o| o.infrastructure.clone()),
            "passed": self.passed(),
            "failed": self.failed(),
            "skipped": self.skipped(),
            "checks": checks,
        })
    }
}

/// Runs `checks` inside the root filesystem at `root`, in parallel (they only read), and
/// returns the results in file order.
pub fn run_checks(root: &Path, checks: &[Check]) -> Result<Report> {
    run_checks_as(root, checks, None)
}

/// [`run_checks`] on a stemcell of `infrastructure` (selects the infrastructure's checks).
pub fn run_checks_as(
    root: &Path,
    checks: &[Check],
    infrastructure: Option<&str>,
) -> Result<Report> {
    let session = Session::open(root)?;
    let mut os = ImageOs::detect(root)?;
    os.infrastructure = infrastructure.map(str::to_string);
    let results = checks
        .par_iter()
        .map(|check| {
            let verdict = if !os.matches(check.when.as_ref()) {
                Verdict::Skip
            } else if let Some(why) = os.not_applicable(check.not_applicable.as_ref()) {
                Verdict::NotApplicable(why.to_string())
            } else {
                let out = session.output_as(Exec::Inspect, &check.script)?;
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
                upstream: check.upstream.clone(),
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

/// The OS image check files of the project: `checks/*.yaml` under `root`, sorted by name.
pub fn check_files(root: &Path) -> Result<Vec<PathBuf>> {
    yaml_files(&root.join("checks"))
}

/// The stemcell check files: `checks/stemcell/*.yaml`, sorted by name.
pub fn stemcell_check_files(root: &Path) -> Result<Vec<PathBuf>> {
    yaml_files(&root.join("checks/stemcell"))
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
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

/// Loads the OS image checks under `project_root` into one list.
pub fn load_checks(project_root: &Path) -> Result<Vec<Check>> {
    load_all(check_files(project_root)?)
}

/// Loads the OS image checks, then the stemcell checks: what a stemcell is tested with.
pub fn load_stemcell_checks(project_root: &Path) -> Result<Vec<Check>> {
    let mut all = load_checks(project_root)?;
    all.extend(load_all(stemcell_check_files(project_root)?)?);
    Ok(all)
}

fn load_all(files: Vec<PathBuf>) -> Result<Vec<Check>> {
    let mut all = Vec::new();
    for file in files {
        all.extend(checks::load(&file)?.checks);
    }
    Ok(all)
}

/// `stemcell test-image IMAGE`: extracts (if a tarball) and checks the image, prints the
/// report (or, with `json`, one JSON document), and fails if any check failed.
pub fn test_image(image: &Path, project_root: &Path) -> Result<Report> {
    test_image_in(image, project_root, &scratch_dir(), false)
}

/// [`test_image`] extracting under `scratch` (the work directory is removed afterwards, also
/// when extraction or a check fails).
pub fn test_image_in(
    image: &Path,
    project_root: &Path,
    scratch: &Path,
    json: bool,
) -> Result<Report> {
    let report = if image.is_dir() {
        run_checks(image, &load_checks(project_root)?)?
    } else if image.is_file() {
        let work = tempfile::Builder::new()
            .prefix("stemcell-test-image-")
            .tempdir_in(scratch)
            .with_context(|| format!("{}: cannot create a work directory", scratch.display()))?;
        let root = work.path().join("root");
        std::fs::create_dir(&root)?;
        let report = if stemcell::is_stemcell(image) {
            let checks = load_stemcell_checks(project_root)?;
            let disk = stemcell::unpack(image, work.path())?;
            rootfs::copy_out(&disk.raw, &root).with_context(|| image.display().to_string())?;
            std::fs::remove_file(&disk.raw)?;
            run_checks_as(&root, &checks, Some(&disk.infrastructure))
        } else {
            let checks = load_checks(project_root)?;
            extract::extract(image, &root)?;
            run_checks(&root, &checks)
        }
        .with_context(|| image.display().to_string())?;
        work.close()
            .with_context(|| format!("{}: cannot remove the extracted image", scratch.display()))?;
        report
    } else {
        bail!("{}: no such file or directory", image.display());
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.render());
    }
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
pub fn scratch_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
}
