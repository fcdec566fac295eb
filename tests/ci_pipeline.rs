//! `ci/pipeline.yml` checked the way `fly validate-pipeline` and a worker would: every task file
//! exists and parses, every task input (and image) is provided by a `get` or an earlier task
//! output in the same job, every `passed:` names a job that has that resource, every resource
//! and resource type is defined, every put's file lies in an artifact, and every setting is a
//! `((var))` documented in `ci/vars.example.yml`. Plus coverage: a stemcell job per
//! infrastructure, a light job per infrastructure with a light format.

use serde_yaml::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Resource types every Concourse installation ships.
const CORE_TYPES: &[&str] = &[
    "git",
    "s3",
    "semver",
    "registry-image",
    "time",
    "docker-image",
    "pool",
    "github-release",
    "mock",
];

/// Resource source keys whose values are structure (paths, image names), not settings.
const STRUCTURAL: &[&str] = &[
    "repository",
    "tag",
    "regexp",
    "versioned_file",
    "key",
    "driver",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn names(list: &Value) -> Vec<String> {
    list.as_sequence()
        .map(|l| l.iter().map(|x| s(&x["name"]).to_string()).collect())
        .unwrap_or_default()
}

/// The plan's steps in order, `in_parallel` flattened (its steps see what came before it, and
/// what they produce is seen after it).
fn flatten(steps: &Value, out: &mut Vec<Vec<Value>>) {
    for step in steps.as_sequence().into_iter().flatten() {
        match step.get("in_parallel") {
            Some(p) => {
                let inner = p.get("steps").unwrap_or(p);
                let mut group = Vec::new();
                let mut nested = Vec::new();
                flatten(inner, &mut nested);
                for g in nested {
                    group.extend(g);
                }
                out.push(group);
            }
            None => out.push(vec![step.clone()]),
        }
    }
}

struct Checked {
    problems: Vec<String>,
    vars: BTreeSet<String>,
}

fn collect_vars(v: &Value, vars: &mut BTreeSet<String>) {
    match v {
        Value::String(t) => {
            let mut rest = t.as_str();
            while let Some(i) = rest.find("((") {
                let end = rest[i..].find("))").map(|e| i + e).unwrap_or(rest.len());
                vars.insert(rest[i + 2..end].to_string());
                rest = &rest[end.min(rest.len())..];
                if rest.starts_with("))") {
                    rest = &rest[2..];
                }
            }
        }
        Value::Sequence(l) => l.iter().for_each(|x| collect_vars(x, vars)),
        Value::Mapping(m) => m.iter().for_each(|(k, x)| {
            collect_vars(k, vars);
            collect_vars(x, vars)
        }),
        _ => {}
    }
}

fn check(pipeline: &Value, repo: &Path) -> Checked {
    let mut problems = Vec::new();
    let mut vars = BTreeSet::new();
    collect_vars(pipeline, &mut vars);
    let types: BTreeSet<String> = names(&pipeline["resource_types"])
        .into_iter()
        .chain(CORE_TYPES.iter().map(|t| t.to_string()))
        .collect();
    let mut resources = HashMap::new();
    for r in pipeline["resources"].as_sequence().expect("resources") {
        let name = s(&r["name"]).to_string();
        if !types.contains(s(&r["type"])) {
            problems.push(format!(
                "resource {name}: type {:?} is not defined",
                r["type"]
            ));
        }
        if let Some(src) = r["source"].as_mapping() {
            for (k, v) in src {
                let (k, text) = (s(k), serde_yaml::to_string(v).unwrap_or_default());
                if !STRUCTURAL.contains(&k) && !text.contains("((") {
                    problems.push(format!(
                        "resource {name}: source.{k} is a literal, not a ((var))"
                    ));
                }
            }
        }
        resources.insert(name, r.clone());
    }
    // Which resources each job gets or puts.
    let mut job_resources: HashMap<String, BTreeSet<String>> = HashMap::new();
    let jobs = pipeline["jobs"].as_sequence().expect("jobs");
    for j in jobs {
        let mut steps = Vec::new();
        flatten(&j["plan"], &mut steps);
        let set = job_resources.entry(s(&j["name"]).to_string()).or_default();
        for st in steps.iter().flatten() {
            for verb in ["get", "put"] {
                if let Some(n) = st.get(verb) {
                    set.insert(st.get("resource").map(s).unwrap_or(s(n)).to_string());
                }
            }
        }
    }
    for j in jobs {
        let job = s(&j["name"]);
        let mut steps = Vec::new();
        flatten(&j["plan"], &mut steps);
        let mut have: BTreeSet<String> = BTreeSet::new();
        for group in steps {
            let mut produced = Vec::new();
            for st in &group {
                if let Some(n) = st.get("get") {
                    let res = st.get("resource").map(s).unwrap_or(s(n));
                    if !resources.contains_key(res) {
                        problems.push(format!("job {job}: get {res}: no such resource"));
                    }
                    for p in st["passed"].as_sequence().into_iter().flatten() {
                        match job_resources.get(s(p)) {
                            None => problems.push(format!(
                                "job {job}: get {res}: passed names job {:?}, which does not exist",
                                s(p)
                            )),
                            Some(set) if !set.contains(res) => problems.push(format!(
                                "job {job}: get {res}: passed job {} has no {res}",
                                s(p)
                            )),
                            _ => {}
                        }
                    }
                    produced.push(s(n).to_string());
                } else if let Some(n) = st.get("put") {
                    let res = st.get("resource").map(s).unwrap_or(s(n));
                    if !resources.contains_key(res) {
                        problems.push(format!("job {job}: put {res}: no such resource"));
                    }
                    for file in ["file"].iter().filter_map(|k| st["params"].get(*k)) {
                        let first = s(file).split('/').next().unwrap_or("");
                        if !have.contains(first) {
                            problems.push(format!(
                                "job {job}: put {res}: file {} is in no artifact of this job",
                                s(file)
                            ));
                        }
                    }
                    // A put's implicit get makes the resource available afterwards.
                    produced.push(s(n).to_string());
                } else if let Some(t) = st.get("task") {
                    let task = s(t);
                    let file = s(&st["file"]);
                    let (artifact, rel) = file.split_once('/').unwrap_or(("", file));
                    if !have.contains(artifact) {
                        problems.push(format!(
                            "job {job}: task {task}: file {file} is in no artifact of this job"
                        ));
                    }
                    let path = repo.join(rel);
                    if artifact != "builder" || !path.is_file() {
                        problems.push(format!(
                            "job {job}: task {task}: {file} does not exist in the repository"
                        ));
                        continue;
                    }
                    let config = load(&path);
                    for key in ["platform", "run"] {
                        if config.get(key).is_none() {
                            problems.push(format!("{rel}: no {key}"));
                        }
                    }
                    if s(&config["run"]["path"]).is_empty() {
                        problems.push(format!("{rel}: run.path is missing"));
                    }
                    match st.get("image") {
                        Some(i) if !have.contains(s(i)) => problems.push(format!("job {job}: task {task}: image {} is in no artifact", s(i))),
                        None if config.get("image_resource").is_none() => {
                            problems.push(format!("job {job}: task {task}: no image: neither the step's image nor the file's image_resource"))
                        }
                        _ => {}
                    }
                    let mapped = |m: &Value, n: &str| {
                        st[m.as_str().unwrap_or("")]
                            .get(n)
                            .map(|x| s(x).to_string())
                    };
                    for input in config["inputs"].as_sequence().into_iter().flatten() {
                        let name = s(&input["name"]);
                        let actual =
                            mapped(&Value::from("input_mapping"), name).unwrap_or(name.to_string());
                        if input["optional"].as_bool() != Some(true) && !have.contains(&actual) {
                            problems.push(format!("job {job}: task {task}: input {actual} is provided by no get or earlier task output"));
                        }
                    }
                    for output in config["outputs"].as_sequence().into_iter().flatten() {
                        let name = s(&output["name"]);
                        produced.push(
                            mapped(&Value::from("output_mapping"), name)
                                .unwrap_or(name.to_string()),
                        );
                    }
                    let declared: BTreeSet<&str> = config["params"]
                        .as_mapping()
                        .map(|m| m.keys().map(s).collect())
                        .unwrap_or_default();
                    for (k, _) in st["params"].as_mapping().into_iter().flatten() {
                        if !declared.contains(s(k)) {
                            problems.push(format!(
                                "job {job}: task {task}: param {} is not declared in {rel}",
                                s(k)
                            ));
                        }
                    }
                    let mut task_vars = BTreeSet::new();
                    collect_vars(&config, &mut task_vars);
                    if !task_vars.is_empty() {
                        problems.push(format!(
                            "{rel}: task files take params, not ((vars)): {task_vars:?}"
                        ));
                    }
                }
            }
            have.extend(produced);
        }
    }
    Checked { problems, vars }
}

#[test]
fn pipeline_would_run() {
    let repo = root();
    let pipeline = load(&repo.join("ci/pipeline.yml"));
    let c = check(&pipeline, &repo);
    assert!(
        c.problems.is_empty(),
        "ci/pipeline.yml:\n{}",
        c.problems.join("\n")
    );
    // Every ((var)) is documented, and nothing documented is unused.
    let example = load(&repo.join("ci/vars.example.yml"));
    let documented: BTreeSet<String> = example
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| s(k).to_string())
        .collect();
    assert_eq!(
        c.vars, documented,
        "((vars)) of ci/pipeline.yml vs ci/vars.example.yml"
    );
    // A stemcell job per infrastructure; a light job per infrastructure with a light format.
    let jobs: BTreeSet<String> = names(&pipeline["jobs"]).into_iter().collect();
    for f in std::fs::read_dir(repo.join("infrastructures")).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(
            jobs.contains(&format!("stemcell-{name}")),
            "no job stemcell-{name}"
        );
        // The published resource matches the tarball name the build writes.
        let infra = load(&p);
        let stem = format!(
            "-{name}-{}-((os))((name-suffix))",
            s(&infra["name_hypervisor"])
        );
        let res = pipeline["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| r["name"] == format!("stemcell-{name}").as_str());
        let regexp = res
            .map(|r| s(&r["source"]["regexp"]).to_string())
            .unwrap_or_default();
        assert!(
            regexp.contains(&stem),
            "resource stemcell-{name}: regexp {regexp:?} does not name {stem}"
        );
        if load(&p).get("light").is_some() {
            assert!(
                jobs.contains(&format!("light-stemcell-{name}")),
                "no job light-stemcell-{name}"
            );
        }
    }
    for j in ["test", "build-tool", "build-os-image"] {
        assert!(jobs.contains(j), "no job {j}");
    }
}

/// The checker catches each kind of mistake (so a passing pipeline means something).
#[test]
fn checker_catches_broken_pipelines() {
    let repo = root();
    let good = std::fs::read_to_string(repo.join("ci/pipeline.yml")).unwrap();
    let cases = [
        (
            "    - get: bosh-agent\n",
            "    - get: bosh-agnt\n",
            "get bosh-agnt: no such resource",
        ),
        (
            "file: builder/ci/tasks/make-light.yml",
            "file: builder/ci/tasks/make-lite.yml",
            "does not exist in the repository",
        ),
        (
            "passed: [build-tool]\n      trigger: true",
            "passed: [test]\n      trigger: true",
            "passed job test has no stemcell-tool",
        ),
        (
            "passed: [build-os-image]\n      trigger: true",
            "passed: [nope]\n      trigger: true",
            "which does not exist",
        ),
        (
            "  type: semver\n",
            "  type: semverr\n",
            "type String(\"semverr\") is not defined",
        ),
        (
            "    input_mapping: { heavy: stemcell-aws }\n    params:\n",
            "    params:\n",
            "input heavy is provided by no get or earlier task output",
        ),
        (
            "bucket: ((artifact-bucket))",
            "bucket: my-bucket",
            "source.bucket is a literal",
        ),
        (
            "    image: rust-image\n    privileged: true",
            "    image: ruts-image\n    privileged: true",
            "image ruts-image is in no artifact",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(
            good.contains(from),
            "case {expect}: the pipeline has no {from:?}"
        );
        let broken: Value = serde_yaml::from_str(&good.replacen(from, to, 1)).unwrap();
        let c = check(&broken, &repo);
        assert!(
            c.problems.iter().any(|p| p.contains(expect)),
            "{expect}: {:?}",
            c.problems
        );
    }
    // A task output used before the task that makes it.
    let swapped = good.replacen("  - task: make-light", "  - task: make-light-later", 1);
    let mut v: Value = serde_yaml::from_str(&swapped).unwrap();
    let job = v["jobs"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|j| j["name"] == "light-stemcell-aws")
        .unwrap();
    let plan = job["plan"].as_sequence_mut().unwrap();
    let i = plan
        .iter()
        .position(|s| {
            s.get("task")
                .map(|t| t == "make-light-later")
                .unwrap_or(false)
        })
        .unwrap();
    let step = plan.remove(i);
    plan.push(step);
    let c = check(&v, &repo);
    assert!(
        c.problems
            .iter()
            .any(|p| p.contains("input light-stemcells is provided by no get")),
        "{:?}",
        c.problems
    );
}
