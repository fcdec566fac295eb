//! `stemcell plan`: what `build` would run, resolved exactly as `build` resolves it (same
//! inputs, same `agent.json`, same rebase on an imported OS image), with each step's cache
//! status. Nothing runs. An input that is neither given nor pinned does not stop the plan: the
//! stages are resolved twice with two different stand-in digests, and the first stage whose
//! key differs is the one that needs the input; the keys after it cannot be known.

use crate::build::{import_key, rebase_on_import, stemcell_plan_options};
use crate::recipe::infrastructure;
use crate::recipe::plan::{layer_done_marker, Plan};
use crate::recipe::resolve::{build_time_setting, resolve, PlanOptions, DEFAULT_STEMCELL_VERSION};
use crate::stage::inputs;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the user asked for (build's input flags).
pub struct PlanRequest {
    pub root: PathBuf,
    pub os: String,
    pub arch: crate::recipe::arch::Arch,
    pub os_image: Option<PathBuf>,
    pub mirror: Option<String>,
    /// None: the OS image only.
    pub infrastructures: Vec<String>,
    pub version: Option<String>,
    /// Build inputs by name: PATH or URL and sha256, as `BuildRequest::inputs`.
    pub inputs: Vec<(&'static str, Option<String>, Option<String>)>,
    pub extra_vars: Vec<(String, String)>,
    pub work_dir: PathBuf,
}

/// One step; `key` is `None` when it depends on an input not given. Field names are the
/// `--json` contract (README).
#[derive(Clone, Debug, Serialize)]
pub struct PlanRow {
    pub phase: String,
    pub name: String,
    pub key: Option<String>,
    /// `cached`, `to run`, `needs --agent` (an input not given), `unknown` (after one).
    pub status: String,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct InfraPlan {
    pub infrastructure: Option<String>,
    pub stages: Vec<PlanRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    pub os: String,
    /// Debian's name of the architecture (`amd64`, `arm64`).
    pub arch: String,
    pub mirror: String,
    pub os_image: Option<String>,
    pub plans: Vec<InfraPlan>,
}

pub fn plan(req: &PlanRequest) -> Result<PlanReport> {
    let root = &req.root;
    let mut input_vars = Vec::new();
    let mut missing = Vec::new();
    for (name, var) in inputs::KNOWN_INPUTS {
        let given = req.inputs.iter().find(|(n, _, _)| n == name);
        let location = given.and_then(|(_, l, _)| l.as_deref());
        let sha = given.and_then(|(_, _, s)| s.as_deref());
        match inputs::select(&root.join("assets"), name, req.arch, location, sha, false) {
            Ok(Some(spec)) => input_vars.push((var.to_string(), spec.sha256)),
            Ok(None) => {}
            Err(_) if location.is_none() && sha.is_none() => missing.push(*name),
            Err(e) => return Err(e),
        }
    }
    let import = match &req.os_image {
        Some(tgz) => Some((tgz.clone(), import_key(tgz)?)),
        None => None,
    };
    let version = req
        .version
        .clone()
        .unwrap_or_else(|| DEFAULT_STEMCELL_VERSION.to_string());
    let resolve_for = |infra: Option<&str>, stand_in: &str| -> Result<Plan> {
        let mut vars = input_vars.clone();
        for name in &missing {
            let var = inputs::KNOWN_INPUTS
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .unwrap_or_default();
            vars.push((var.to_string(), stand_in.to_string()));
        }
        let mut options = match infra {
            Some(name) => {
                let infra = infrastructure::load(root, name)?;
                stemcell_plan_options(
                    root,
                    &req.os,
                    req.arch,
                    &infra,
                    &version,
                    req.mirror.clone(),
                    &vars,
                )?
            }
            None => PlanOptions {
                os: req.os.clone(),
                arch: req.arch,
                mirror: req.mirror.clone(),
                stemcell_version: req.version.clone(),
                ..Default::default()
            },
        };
        options.build_time = build_time_setting(root)?;
        options.source_date_epoch = crate::disk::layout::source_date_epoch_from_env()?;
        options.extra_vars.extend(req.extra_vars.iter().cloned());
        let mut plan = resolve(root, &options)?;
        if let Some((_, key)) = &import {
            rebase_on_import(&mut plan, key);
        }
        Ok(plan)
    };
    let status = |key: &str| {
        if layer_done_marker(&req.work_dir, key).exists() {
            "cached"
        } else {
            "to run"
        }
    };
    let infras: Vec<Option<&str>> = if req.infrastructures.is_empty() {
        vec![None]
    } else {
        req.infrastructures
            .iter()
            .map(|s| Some(s.as_str()))
            .collect()
    };
    let needs = missing
        .iter()
        .map(|n| format!("--{}", n.strip_prefix("bosh-").unwrap_or(n)))
        .collect::<Vec<_>>()
        .join(" or ");
    let mut report = PlanReport {
        os: req.os.clone(),
        arch: req.arch.debian().to_string(),
        mirror: String::new(),
        os_image: req.os_image.as_ref().map(|p| p.display().to_string()),
        plans: Vec::new(),
    };
    for infra in infras {
        let plan = resolve_for(infra, &"0".repeat(64))?;
        let other = if missing.is_empty() {
            None
        } else {
            Some(resolve_for(infra, &"1".repeat(64))?)
        };
        report.mirror = plan.mirror.clone();
        let mut rows = vec![first_row(
            &plan,
            import.as_ref().map(|(t, k)| (t.as_path(), k.as_str())),
            &status,
        )];
        let mut unknown = false;
        for (i, s) in plan.stages.iter().enumerate() {
            let differs = other
                .as_ref()
                .is_some_and(|o| o.stages.get(i).map(|x| &x.key) != Some(&s.key));
            let (key, st) = if unknown {
                (None, "unknown".to_string())
            } else if differs {
                unknown = true;
                (None, format!("needs {needs}"))
            } else {
                (Some(s.key.clone()), status(&s.key).to_string())
            };
            rows.push(PlanRow {
                phase: s.phase.to_string(),
                name: s.name.clone(),
                key,
                status: st,
                description: s.description.clone(),
            });
        }
        report.plans.push(InfraPlan {
            infrastructure: infra.map(String::from),
            stages: rows,
        });
    }
    Ok(report)
}

/// The bottom layer: the bootstrap, or the imported OS image.
fn first_row(
    plan: &Plan,
    import: Option<(&Path, &str)>,
    status: &dyn Fn(&str) -> &'static str,
) -> PlanRow {
    match import {
        Some((tgz, key)) => PlanRow {
            phase: "import".into(),
            name: "os-image".into(),
            key: Some(key.to_string()),
            status: status(key).into(),
            description: format!("the OS image {}", tgz.display()),
        },
        None => PlanRow {
            phase: "bootstrap".into(),
            name: "bootstrap".into(),
            key: Some(plan.bootstrap_key.clone()),
            status: status(&plan.bootstrap_key).into(),
            description: format!("{} {}", plan.os.family, plan.os.suite),
        },
    }
}
