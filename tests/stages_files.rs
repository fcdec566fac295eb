//! The stage files and image checks are data: these tests validate every one of them the way
//! the loader will (until the recipe loader is merged): each `stages/<phase>/*.yaml` decodes into
//! `StageFile` with the phase of its folder, the assets it names exist, every template and
//! templated string renders with Tera for each OS definition, and every shell script parses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use stemcell::recipe::stage::{Action, Phase, StageFile, When};

const OSES: &[(&str, &str, &str, &str)] = &[
    ("ubuntu-noble", "ubuntu", "noble", "24.04"),
    ("ubuntu-jammy", "ubuntu", "jammy", "22.04"),
    ("debian-bookworm", "debian", "bookworm", "12"),
    ("debian-trixie", "debian", "trixie", "13"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The variables an OS-image stage may use (recipe::vars): no infrastructure, no version.
fn vars(os: &(&str, &str, &str, &str)) -> tera::Context {
    let (name, family, suite, version) = *os;
    let value = serde_json::json!({
        "os": {
            "name": name, "family": family, "suite": suite, "version": version,
            "components": ["main"], "extra_suites": [format!("{suite}-updates")],
            "mirror": "http://mirror.invalid/x", "archive_mirror": "http://mirror.invalid/x",
        },
        "build_time": "",
        "passwords": { "vcap": "$6$salt$hash", "root": "$6$salt$hash" },
        "packages": packages(name),
    });
    tera::Context::from_serialize(value).unwrap()
}

/// `packages.*` as recipe::vars gives them: the OS definition's `packages` map plus `kernel`.
fn packages(os: &str) -> serde_json::Value {
    let path = root().join("stages/os").join(format!("{os}.yaml"));
    let definition: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut packages: serde_json::Map<String, serde_json::Value> =
        serde_yaml::from_value(definition["packages"].clone()).unwrap();
    packages.insert(
        "kernel".into(),
        definition["kernel_package"].as_str().unwrap().into(),
    );
    serde_json::Value::Object(packages)
}

fn render(text: &str, context: &tera::Context, what: &str) -> String {
    tera::Tera::one_off(text, context, false).unwrap_or_else(|e| {
        let mut msg = format!("{what}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        panic!("{msg}")
    })
}

fn stage_files(phase_dir: &str) -> Vec<PathBuf> {
    let dir = root().join("stages").join(phase_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> StageFile {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn applies(when: Option<&When>, os: &(&str, &str, &str, &str)) -> bool {
    let Some(w) = when else { return true };
    (w.os.is_empty() || w.os.iter().any(|o| o == os.0))
        && (w.os_family.is_empty() || w.os_family.iter().any(|f| f == os.1))
        && !w.not_os.iter().any(|o| o == os.0)
}

fn check_when(when: Option<&When>, what: &str) {
    let Some(w) = when else { return };
    let names: BTreeSet<&str> = OSES.iter().map(|o| o.0).collect();
    for os in w.os.iter().chain(&w.not_os) {
        assert!(names.contains(os.as_str()), "{what}: unknown OS {os:?}");
    }
    for family in &w.os_family {
        assert!(
            ["ubuntu", "debian"].contains(&family.as_str()),
            "{what}: unknown OS family {family:?}"
        );
    }
}

fn shell_parses(script: &str, what: &str) {
    let out = std::process::Command::new("sh")
        .args(["-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: shell syntax: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn os_image_stages_exist_in_order_with_unique_names() {
    let files = stage_files("os-image");
    assert!(
        files.len() >= 20,
        "expected the full OS-image stage set, found {}",
        files.len()
    );
    let mut names = BTreeSet::new();
    for path in &files {
        let file_name = path.file_name().unwrap().to_str().unwrap();
        let (number, rest) = file_name
            .split_once('-')
            .unwrap_or_else(|| panic!("{file_name}: not NN-name.yaml"));
        assert!(
            number.len() == 2 && number.chars().all(|c| c.is_ascii_digit()),
            "{file_name}: not NN-name.yaml"
        );
        let stage = load(path);
        assert_eq!(
            stage.phase,
            Phase::OsImage,
            "{file_name}: phase must match the folder"
        );
        assert_eq!(
            format!("{}.yaml", stage.name),
            rest,
            "{file_name}: the name must match the file name"
        );
        assert!(
            names.insert(stage.name.clone()),
            "{file_name}: duplicate stage name"
        );
        assert!(!stage.actions.is_empty(), "{file_name}: no actions");
    }
}

#[test]
fn every_stage_file_decodes_and_names_existing_assets() {
    let assets = root().join("assets");
    for phase in ["os-image", "stemcell"] {
        for path in stage_files(phase) {
            let stage = load(&path);
            let what = path.display().to_string();
            check_when(stage.when.as_ref(), &what);
            for (i, entry) in stage.actions.iter().enumerate() {
                let what = format!("{what}: action {i}");
                check_when(entry.when.as_ref(), &what);
                match &entry.action {
                    Action::File(f) => {
                        assert!(
                            f.content.is_some() != f.source.is_some(),
                            "{what}: exactly one of content, source"
                        );
                        if let Some(source) = &f.source {
                            assert!(
                                assets.join(source).is_file(),
                                "{what}: missing asset {source}"
                            );
                        }
                    }
                    Action::Template(t) => {
                        assert!(
                            assets.join(&t.template).is_file(),
                            "{what}: missing template {}",
                            t.template
                        )
                    }
                    _ => {}
                }
                for mode in modes(&entry.action) {
                    assert!(
                        mode.len() == 4 && u32::from_str_radix(mode, 8).is_ok(),
                        "{what}: bad mode {mode:?}"
                    );
                }
            }
        }
    }
}

fn modes(action: &Action) -> Vec<&str> {
    match action {
        Action::File(f) => f.mode.as_deref().into_iter().collect(),
        Action::Template(t) => t.mode.as_deref().into_iter().collect(),
        Action::Directory(d) => d.mode.as_deref().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Templates and templated strings render for every OS, and the scripts they give parse.
#[test]
fn os_image_templates_render_and_scripts_parse_for_every_os() {
    let assets = root().join("assets");
    for os in OSES {
        let context = vars(os);
        for path in stage_files("os-image") {
            let stage = load(&path);
            if !applies(stage.when.as_ref(), os) {
                continue;
            }
            for (i, entry) in stage.actions.iter().enumerate() {
                if !applies(entry.when.as_ref(), os) {
                    continue;
                }
                let what = format!("{} ({}): action {i}", path.display(), os.0);
                match &entry.action {
                    Action::Template(t) => {
                        let text = std::fs::read_to_string(assets.join(&t.template)).unwrap();
                        let out = render(&text, &context, &what);
                        assert!(
                            !out.contains("{{") && !out.contains("{%"),
                            "{what}: unrendered template syntax"
                        );
                    }
                    Action::File(f) => {
                        if let Some(content) = &f.content {
                            render(content, &context, &what);
                        }
                    }
                    Action::User(u) => {
                        if let Some(password) = &u.password {
                            assert!(
                                render(password, &context, &what).starts_with("$6$"),
                                "{what}: password not a hash"
                            );
                        }
                    }
                    Action::Run(r) => shell_parses(&render(&r.script, &context, &what), &what),
                    Action::Apt(a) => {
                        for package in a.install.iter().chain(&a.purge) {
                            render(package, &context, &what);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Static assets that are shell scripts parse; the ones installed executable start with #!.
#[test]
fn shell_assets_parse() {
    let dir = root().join("assets/os-image");
    let mut scripts = 0;
    for entry in walk(&dir) {
        let text = std::fs::read_to_string(&entry).unwrap();
        if text.starts_with("#!/bin/bash") || text.starts_with("#!/bin/sh") {
            shell_parses(&text, &entry.display().to_string());
            scripts += 1;
        }
    }
    assert!(
        scripts >= 6,
        "expected the BOSH helper scripts, found {scripts}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The image checks load, their ids are unique, their scripts parse, and the official OS-image
/// checks (cloudfoundry/bosh-linux-stemcell-builder `bosh-stemcell/spec/os_image/ubuntu_spec.rb`,
/// numbered as in checks/os-image.yaml) are all there.
#[test]
fn image_checks_load_and_cover_the_os_image_checks() {
    let checks = stemcell::imagetest::load_checks(&root()).unwrap();
    for check in &checks {
        shell_parses(&check.script, &format!("check {}", check.id));
    }
    let ids: BTreeSet<&str> = checks.iter().map(|c| c.id.as_str()).collect();
    // The numbered checks not marked S- (stemcell-only), minus 17 (GRUB is installed by the
    // stemcell stages here) and 66 (stemcell-only).
    let expected = (1..=37)
        .chain(44..=65)
        .chain(67..=76)
        .chain(83..=91)
        .filter(|n| ![17, 38, 39, 40, 41, 42, 43, 66].contains(n));
    for n in expected {
        assert!(
            ids.contains(n.to_string().as_str()),
            "checks/os-image.yaml: no check {n}"
        );
    }
}

/// The templates that differ per OS give what each OS needs.
#[test]
fn per_os_templates_render_the_expected_lines() {
    let assets = root().join("assets/os-image");
    let read = |p: &str| std::fs::read_to_string(assets.join(p)).unwrap();
    let debian = vars(&OSES[2]);
    let jammy = vars(&OSES[1]);
    assert_eq!(
        render(&read("base/sources.list.tera"), &debian, "sources")
            .lines()
            .filter(|l| l.starts_with("deb "))
            .collect::<Vec<_>>(),
        [
            "deb http://mirror.invalid/x bookworm main",
            "deb http://mirror.invalid/x bookworm-updates main"
        ]
    );
    let sysctl = render(&read("sysctl/60-bosh-sysctl.conf.tera"), &debian, "sysctl");
    assert!(sysctl
        .lines()
        .any(|l| l == "net.ipv6.conf.all.disable_ipv6=0"));
    assert!(
        !sysctl.contains("\n\n"),
        "no blank lines left by the conditionals"
    );
    let sysctl = render(&read("sysctl/60-bosh-sysctl.conf.tera"), &jammy, "sysctl");
    assert!(sysctl
        .lines()
        .any(|l| l == "net.ipv6.conf.all.disable_ipv6=1"));
    let password = render(&read("pam/common-password.tera"), &debian, "pam");
    // Debian bookworm still ships pam_lastlog.so: the failed-logins line of the official policy.
    assert!(
        password.contains("pam_pwquality.so retry=3")
            && password.contains("session\trequired\t\t\tpam_lastlog.so showfailed")
    );
    let noble = vars(&OSES[0]);
    let password_noble = render(&read("pam/common-password.tera"), &noble, "pam");
    assert!(
        password_noble.contains("pam_pwquality.so retry=3")
            && !password_noble.contains("pam_lastlog")
    );
    // Debian 13's PAM 1.7 no longer has pam_lastlog.so: a `required` line naming it would refuse logins.
    let trixie = vars(&OSES[3]);
    let password_trixie = render(&read("pam/common-password.tera"), &trixie, "pam");
    assert!(
        password_trixie.contains("pam_pwquality.so retry=3")
            && !password_trixie.contains("pam_lastlog")
    );
    let password = render(&read("pam/common-password.tera"), &jammy, "pam");
    assert!(
        password.contains("pam_cracklib.so retry=3")
            && password.contains("session\trequired\t\t\tpam_lastlog.so showfailed")
    );
    assert!(!render(&read("pam/common-auth.tera"), &debian, "pam").contains("pam_cap"));
    assert!(render(&read("pam/common-auth.tera"), &jammy, "pam").contains("pam_cap"));
}
