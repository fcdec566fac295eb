//! The make-style stage runner: bootstrap, then each stage in its own overlay layer, every step
//! cached under the key the plan gives it. A rerun with nothing changed only checks markers; a
//! change to stage N reruns N and everything after it; `--from-stage` forces a restart point.
//! One log file per step under `<work-dir>/logs/`, a progress line per step (a spinner on a
//! terminal), and a duration report at the end.

use super::actions::{self, ActionContext};
use crate::progress::Steps;
use crate::recipe::plan::{Plan, PlannedStage};
use crate::recipe::stage::Phase;
use crate::rootfs::chroot::{OverlaySpec, Session};
use crate::rootfs::layers::LayerStore;
use crate::rootfs::{bootstrap, cache, host_tools};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to run the stages.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub work_dir: PathBuf,
    /// Rerun this stage and every later one, whatever the cache says.
    pub from_stage: Option<String>,
    /// Which stages of the plan to run.
    pub phase: Option<Phase>,
    /// No progress output at all (tests).
    pub quiet: bool,
    /// Host directories readable at `/run/<name>` in every stage (verified build inputs).
    pub binds: Vec<(PathBuf, String)>,
}

/// How one step went.
#[derive(Clone, Debug)]
pub struct StepTiming {
    pub name: String,
    pub cached: bool,
    pub duration: Duration,
}

/// The result of a run: the layer stack (names relative to the store, topmost first) and the
/// timings. The store stays locked while this lives.
pub struct Built {
    pub store: LayerStore,
    pub layers: Vec<String>,
    pub timings: Vec<StepTiming>,
}

impl Built {
    /// "=== Stage duration report" with one line per step.
    pub fn report(&self) -> String {
        let mut s = String::from("=== Stage duration report\n");
        let width = self.timings.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for t in &self.timings {
            let how = if t.cached {
                "cached".to_string()
            } else {
                format!("{:.1}s", t.duration.as_secs_f64())
            };
            s.push_str(&format!("  {:width$}  {how}\n", t.name));
        }
        let total: Duration = self.timings.iter().map(|t| t.duration).sum();
        s.push_str(&format!(
            "  {:width$}  {:.1}s\n",
            "total",
            total.as_secs_f64()
        ));
        s
    }
}

/// Runs the bootstrap and the stages of `plan`, reusing cached layers.
pub fn run(plan: &Plan, options: &RunOptions) -> Result<Built> {
    host_tools::require_root("os-image")?;
    host_tools::require(&["unshare", "mount", "chroot", "env", "mknod", "tar"])?;
    check_stage_names(plan)?;
    let stages: Vec<&PlannedStage> = plan
        .stages
        .iter()
        .filter(|s| options.phase.is_none_or(|p| s.phase == p))
        .collect();
    let from = match &options.from_stage {
        None => None,
        Some(name) => Some(
            stages
                .iter()
                .position(|s| &s.name == name)
                .with_context(|| {
                    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
                    format!(
                        "--from-stage {name}: no such stage (stages: {})",
                        names.join(", ")
                    )
                })?,
        ),
    };
    crate::output::check_dir_can_be_made(&options.work_dir, "work directory")?;
    std::fs::create_dir_all(&options.work_dir).with_context(|| {
        format!(
            "{}: cannot create the work directory",
            options.work_dir.display()
        )
    })?;
    let store = LayerStore::open(&options.work_dir)?;
    let logs = options.work_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("{}: cannot create", logs.display()))?;
    let progress = Steps::new(options.quiet);
    let total = stages.len() + 1;
    let announce = |i: usize, name: &str, work: bool| {
        if work {
            progress.start(&format!("[{}/{total}] {name}", i + 1));
        }
    };
    let mut timings = Vec::new();

    // Bootstrap.
    let start = Instant::now();
    let mut dirty = !store.is_done(&plan.bootstrap_key);
    announce(0, "bootstrap", dirty);
    if dirty {
        let target = store.begin(&plan.bootstrap_key)?;
        std::fs::remove_dir(&target)?; // mmdebstrap wants to create it
        let log = logs.join("00-bootstrap.log");
        let result = bootstrap::bootstrap(
            &plan.os,
            plan.arch,
            &plan.mirror,
            plan.source_date_epoch,
            &target,
            &log,
        );
        if let Err(e) = result {
            store.abandon(&plan.bootstrap_key);
            progress.fail("bootstrap");
            return Err(e);
        }
        store.commit(&plan.bootstrap_key)?;
        cache::record(
            &store,
            &plan.bootstrap_key,
            &cache::LayerRecord {
                os: plan.os.name.clone(),
                phase: "bootstrap".into(),
                stage: "bootstrap".into(),
                ..Default::default()
            },
        );
    } else {
        cache::touch(&store, &plan.bootstrap_key);
    }
    timings.push(StepTiming {
        name: "bootstrap".into(),
        cached: !dirty,
        duration: start.elapsed(),
    });
    progress.finish("bootstrap", !dirty, start.elapsed());
    let mut layers = vec![plan.bootstrap_key.clone()];

    for (i, stage) in stages.iter().enumerate() {
        crate::rootfs::interrupt::check()?;
        let start = Instant::now();
        dirty = dirty || from == Some(i) || !store.is_done(&stage.key);
        announce(i + 1, &stage.name, dirty);
        if dirty {
            let log = logs.join(format!("{:02}-{}.log", i + 1, stage.name));
            if let Err(e) = run_stage(plan, stage, &store, &layers, &options.binds, &log) {
                store.abandon(&stage.key);
                progress.fail(&stage.name);
                return Err(e.context(format!(
                    "stage {} ({}) failed (log: {}; restart with --from-stage {})",
                    stage.name,
                    stage.file.display(),
                    log.display(),
                    stage.name
                )));
            }
            store.commit(&stage.key)?;
            cache::record(
                &store,
                &stage.key,
                &cache::LayerRecord {
                    os: plan.os.name.clone(),
                    phase: stage.phase.to_string(),
                    stage: stage.name.clone(),
                    infrastructure: plan
                        .infrastructure
                        .clone()
                        .filter(|_| stage.phase == Phase::Stemcell),
                    parent: layers.first().cloned(),
                },
            );
        } else {
            cache::touch(&store, &stage.key);
        }
        timings.push(StepTiming {
            name: stage.name.clone(),
            cached: !dirty,
            duration: start.elapsed(),
        });
        progress.finish(&stage.name, !dirty, start.elapsed());
        layers.insert(0, stage.key.clone());
    }
    Ok(Built {
        store,
        layers,
        timings,
    })
}

/// Runs one stage's actions in an overlay with a fresh upper directory on top of `lower`.
fn run_stage(
    plan: &Plan,
    stage: &PlannedStage,
    store: &LayerStore,
    lower: &[String],
    binds: &[(PathBuf, String)],
    log: &Path,
) -> Result<()> {
    store.begin(&stage.key)?;
    let mut session = Session::overlay(OverlaySpec {
        layers_dir: store.dir().to_path_buf(),
        lower: lower.to_vec(),
        upper: Some(LayerStore::partial_name(&stage.key)),
        work: Some(LayerStore::overlay_work_name(&stage.key)),
        mountpoint: store.work_dir().join("mnt"),
    })?;
    for (src, name) in binds {
        session.bind_run_dir(src, name);
    }
    if let Some(t) = plan.source_date_epoch {
        session.set_env("SOURCE_DATE_EPOCH", &t.to_string());
    }
    let mut log_file = std::fs::File::create(log)
        .with_context(|| format!("{}: cannot create log", log.display()))?;
    for (n, action) in stage.actions.iter().enumerate() {
        let _ = writeln!(
            log_file,
            "=== {} action {} ({})",
            stage.name,
            n + 1,
            action.kind()
        );
        let mut ctx = ActionContext {
            session: &session,
            plan,
            log: &mut log_file,
        };
        actions::apply(action, &mut ctx)
            .with_context(|| format!("action {} ({})", n + 1, action.kind()))?;
    }
    Ok(())
}

/// Stage names are restart points and log names: they must be unique.
pub fn check_stage_names(plan: &Plan) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for s in &plan.stages {
        if !seen.insert(&s.name) {
            bail!("{}: stage name {} used twice", s.file.display(), s.name);
        }
    }
    Ok(())
}
