//! Helpers for the rootfs tests: hand-made plans from fixture stages, the host's mirror.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use stemcell::recipe::os::OsDefinition;
use stemcell::recipe::plan::{Plan, PlannedStage};
use stemcell::recipe::stage::StageFile;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rootfs")
}

/// The Debian mirror the host's apt sources use for bookworm (never hard-coded).
pub fn host_mirror() -> String {
    for entry in std::fs::read_dir("/etc/apt/sources.list.d")
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for para in text.split("\n\n") {
            let field = |k: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) {
                if suites.split_whitespace().any(|s| s == "bookworm") {
                    return uris.split_whitespace().next().unwrap().to_string();
                }
            }
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for l in list.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() >= 3 && w[0] == "deb" && w[2] == "bookworm" {
            return w[1].to_string();
        }
    }
    panic!("no bookworm mirror in the host's apt sources");
}

pub fn bookworm() -> OsDefinition {
    OsDefinition {
        name: "debian-bookworm".into(),
        family: "debian".into(),
        suite: "bookworm".into(),
        version: "12".into(),
        components: vec!["main".into()],
        mirror: None,
        snapshot_mirror: None,
        extra_suites: vec![],
        keyring: "/usr/share/keyrings/debian-archive-keyring.gpg".into(),
        kernel_package: "linux-image-amd64".into(),
        packages: Default::default(),
        architectures: None,
    }
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// A plan of the given fixture stages (or replacement texts), keys chained as the planner does.
pub fn plan(mirror: &str, stages: &[(&str, Option<&str>)]) -> Plan {
    let os = bookworm();
    let bootstrap_key = digest(&[b"bootstrap", os.name.as_bytes(), mirror.as_bytes()]);
    let mut prev = bootstrap_key.clone();
    let mut planned = Vec::new();
    for (name, text) in stages {
        let file = fixtures().join("stages").join(format!("{name}.yaml"));
        let text = match text {
            Some(t) => t.to_string(),
            None => std::fs::read_to_string(&file).unwrap(),
        };
        let sf: StageFile = serde_yaml::from_str(&text).unwrap();
        let key = digest(&[prev.as_bytes(), text.as_bytes()]);
        prev = key.clone();
        planned.push(PlannedStage {
            name: sf.name,
            file,
            phase: sf.phase,
            description: sf.description,
            actions: sf.actions.into_iter().map(|a| a.action).collect(),
            key,
        });
    }
    let mut vars = tera::Context::new();
    vars.insert(
        "os",
        &serde_json::json!({ "name": os.name, "suite": os.suite }),
    );
    vars.insert("passwords", &serde_json::json!({ "vcap": "$6$salt$hash" }));
    Plan {
        os,
        arch: stemcell::recipe::arch::Arch::Amd64,
        infrastructure: None,
        mirror: mirror.into(),
        assets_dir: fixtures().join("assets"),
        bootstrap_key,
        stages: planned,
        vars,
        source_date_epoch: None,
    }
}

/// Mount points under `dir` in this (the host's) mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Processes whose root or cwd is under `dir` (a leaked chroot process would be one).
pub fn processes_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for link in ["root", "cwd"] {
            if let Ok(t) = std::fs::read_link(e.path().join(link)) {
                if t.starts_with(dir) {
                    found.push(format!("{pid} {link}={}", t.display()));
                }
            }
        }
    }
    found
}

/// A tiny root filesystem made of host binaries and the libraries they load (no network).
pub fn tiny_root(dir: &Path, tools: &[&str]) {
    for d in ["bin", "etc", "proc", "sys", "dev", "run", "tmp", "usr/sbin"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("etc/resolv.conf"), "").unwrap();
    for tool in tools {
        let src = stemcell::rootfs::host_tools::find(tool).unwrap();
        std::fs::copy(&src, dir.join("bin").join(tool)).unwrap();
        let ldd = std::process::Command::new("ldd")
            .arg(&src)
            .output()
            .unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dst = dir.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(lib, dst).unwrap();
        }
    }
    std::os::unix::fs::symlink("dash", dir.join("bin/sh")).unwrap();
}
