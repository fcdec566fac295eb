//! The stemcell-phase stage files (stages/stemcell) and their assets: every file parses into
//! `StageFile`, is named after its file, references assets that exist, renders with the build
//! variables the runner provides, and has shell scripts that `sh -n` accepts.

use std::path::{Path, PathBuf};
use stemcell::recipe::agent_settings::{AgentConfig, INFRASTRUCTURES};
use stemcell::recipe::stage::{Action, Phase, StageFile, When};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stage_files() -> Vec<(PathBuf, StageFile)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("stages/stemcell"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "{paths:?}");
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let stage: StageFile =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, stage)
        })
        .collect()
}

/// The variables the runner provides in the stemcell phase (see the report: `agent_json`,
/// `agent_sha256`, `stemcell_git_sha1`).
fn vars(infrastructure: &str, os: &str) -> tera::Context {
    let mut c = tera::Context::new();
    c.insert("infrastructure", infrastructure);
    c.insert("stemcell_version", "1.606");
    c.insert(
        "agent_json",
        &AgentConfig::for_build(infrastructure, os)
            .unwrap()
            .to_json(),
    );
    c.insert("agent_sha256", &"a".repeat(64));
    let family = os.split('-').next().unwrap();
    c.insert(
        "os",
        &serde_json::json!({"name": os, "family": family, "suite": "x", "version": "1"}),
    );
    c
}

fn render(template: &str, ctx: &tera::Context) -> String {
    // Stage strings are not HTML: no autoescaping, or agent.json's quotes would be mangled.
    tera::Tera::one_off(template, ctx, false).unwrap_or_else(|e| panic!("{template}: {e:?}"))
}

fn templated_strings(action: &Action) -> Vec<String> {
    match action {
        Action::File(f) => f.content.iter().cloned().chain([f.path.clone()]).collect(),
        Action::Run(r) => vec![r.script.clone()],
        Action::Directory(d) => vec![d.path.clone()],
        Action::Symlink(s) => vec![s.path.clone(), s.target.clone()],
        Action::ConfigLines(c) => c.set.values().cloned().collect(),
        _ => vec![],
    }
}

fn check_when(file: &Path, when: &Option<When>) {
    if let Some(w) = when {
        for i in w.infrastructure.iter().chain(&w.not_infrastructure) {
            assert!(
                INFRASTRUCTURES.contains(&i.as_str()),
                "{}: unknown infrastructure {i}",
                file.display()
            );
        }
        for o in w.os.iter().chain(&w.not_os) {
            assert!(
                ["ubuntu-noble", "ubuntu-jammy", "debian-bookworm"].contains(&o.as_str()),
                "{}: {o}",
                file.display()
            );
        }
    }
}

#[test]
fn stage_files_parse_and_are_named_after_their_files() {
    let mut names = std::collections::BTreeSet::new();
    for (path, stage) in stage_files() {
        let file = path.file_stem().unwrap().to_str().unwrap();
        let (nn, name) = file.split_once('-').unwrap();
        assert!(
            nn.len() == 2 && nn.bytes().all(|b| b.is_ascii_digit()),
            "{file}"
        );
        assert_eq!(stage.name, name, "{}", path.display());
        assert_eq!(stage.phase, Phase::Stemcell, "{}", path.display());
        assert!(names.insert(stage.name.clone()), "duplicate {}", stage.name);
        check_when(&path, &stage.when);
        for entry in &stage.actions {
            check_when(&path, &entry.when);
        }
    }
}

#[test]
fn assets_exist_and_scripts_are_valid_shell() {
    let assets = root().join("assets");
    for (path, stage) in stage_files() {
        for entry in &stage.actions {
            match &entry.action {
                Action::File(f) => {
                    assert!(
                        f.content.is_some() != f.source.is_some(),
                        "{}: {}",
                        path.display(),
                        f.path
                    );
                    if let Some(src) = &f.source {
                        assert!(
                            assets.join(src).is_file(),
                            "{}: missing asset {src}",
                            path.display()
                        );
                    }
                }
                Action::Run(r) => {
                    let script = render(&r.script, &vars("openstack", "ubuntu-noble"));
                    let out = std::process::Command::new("sh")
                        .args(["-n", "-c", &script])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}: {}",
                        path.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                _ => {}
            }
        }
    }
    // Shell assets parse too.
    for script in [
        "bosh-agent-rc",
        "restart_networking",
        "runit/agent/run",
        "runit/monit/run",
        "aws/nvme-id",
        "warden/ssh-run",
    ] {
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(assets.join("stemcell").join(script))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_template_string_renders_for_every_infrastructure() {
    for os in ["ubuntu-noble", "ubuntu-jammy", "debian-bookworm"] {
        for infra in [
            "openstack",
            "cloudstack",
            "vsphere",
            "vcloud",
            "aws",
            "google",
            "azure",
            "warden",
        ] {
            let ctx = vars(infra, os);
            for (_, stage) in stage_files() {
                for entry in &stage.actions {
                    for s in templated_strings(&entry.action) {
                        render(&s, &ctx);
                    }
                }
            }
        }
    }
}

fn file_content(stage: &str, path: &str, ctx: &tera::Context) -> String {
    let (_, s) = stage_files()
        .into_iter()
        .find(|(_, s)| s.name == stage)
        .unwrap();
    for entry in &s.actions {
        if let Action::File(f) = &entry.action {
            if f.path == path {
                return render(f.content.as_deref().unwrap(), ctx);
            }
        }
    }
    panic!("{stage}: no file {path}");
}

#[test]
fn agent_json_and_system_parameters_render_exactly() {
    let ctx = vars("vcloud", "ubuntu-noble");
    let json = file_content("bosh-agent-settings", "/var/vcap/bosh/agent.json", &ctx);
    assert_eq!(
        json,
        AgentConfig::for_build("vcloud", "ubuntu-noble")
            .unwrap()
            .to_json()
    );
    assert_eq!(
        file_content(
            "system-parameters",
            "/var/vcap/bosh/etc/infrastructure",
            &ctx
        ),
        "vsphere"
    );
    assert_eq!(
        file_content(
            "system-parameters",
            "/var/vcap/bosh/etc/operating_system",
            &ctx
        ),
        "ubuntu"
    );
    assert_eq!(
        file_content(
            "system-parameters",
            "/var/vcap/bosh/etc/stemcell_version",
            &ctx
        ),
        "1.606"
    );
    assert_eq!(
        file_content(
            "system-parameters",
            "/var/vcap/bosh/etc/stemcell_git_sha1",
            &ctx
        ),
        "unknown"
    );
    let ctx = vars("aws", "ubuntu-noble");
    assert_eq!(
        file_content(
            "system-parameters",
            "/var/vcap/bosh/etc/infrastructure",
            &ctx
        ),
        "aws"
    );
    assert_eq!(
        file_content("system-network", "/etc/hostname", &ctx),
        "bosh-stemcell"
    );
}

#[test]
fn agent_service_is_the_official_noble_unit() {
    let unit = std::fs::read_to_string(root().join("assets/stemcell/bosh-agent.service")).unwrap();
    for line in [
        "WorkingDirectory=/var/vcap/bosh",
        "ExecStart=/bin/bash -c 'PATH=/var/vcap/bosh/bin:$PATH exec nice -n -15 /var/vcap/bosh/bin/bosh-agent -P $(cat /var/vcap/bosh/etc/operating_system) -C /var/vcap/bosh/agent.json'",
        "Restart=always",
        "KillMode=process",
        "SyslogIdentifier=bosh-agent",
        "Alias=agent.service",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}
