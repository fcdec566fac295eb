//! Planning against the fixture tree (and the real `stages/` when it exists): stage selection,
//! rendering, mirrors, cache keys, and the exact one-line errors for bad stage files.

#[path = "common/recipe.rs"]
mod recipe_fixture;

use recipe_fixture::{fake_etc_apt, fixture_root, repo_root};
use std::path::Path;
use stemcell::recipe::arch::Arch;
use stemcell::recipe::plan::{layer_done_marker, Plan};
use stemcell::recipe::resolve::{resolve, resolve_with_apt, PlanOptions};
use stemcell::recipe::stage::{Action, Phase};
use stemcell::recipe::template::render;

fn options(os: &str, infrastructure: Option<&str>) -> PlanOptions {
    PlanOptions {
        os: os.into(),
        infrastructure: infrastructure.map(String::from),
        ..Default::default()
    }
}

fn plan(root: &Path, options: &PlanOptions) -> Plan {
    let apt = fake_etc_apt("http://debian.mirror.test/debian/");
    resolve_with_apt(root, options, apt.path()).unwrap()
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.stages.iter().map(|s| s.name.as_str()).collect()
}

fn keys(plan: &Plan) -> Vec<String> {
    plan.stages.iter().map(|s| s.key.clone()).collect()
}

fn stage<'a>(plan: &'a Plan, name: &str) -> &'a stemcell::recipe::plan::PlannedStage {
    plan.stages.iter().find(|s| s.name == name).unwrap()
}

/// The rendered `apt install` list of a stage's first apt action that installs something.
fn installs(plan: &Plan, name: &str) -> Vec<String> {
    let apt = stage(plan, name)
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Apt(apt) if !apt.install.is_empty() => Some(apt),
            _ => None,
        })
        .unwrap();
    apt.install
        .iter()
        .map(|p| render(p, &plan.vars).unwrap())
        .collect()
}

fn asset(root: &Path, plan: &Plan, path: &str) -> String {
    let text = std::fs::read_to_string(root.join("assets").join(path)).unwrap();
    render(&text, &plan.vars).unwrap()
}

#[test]
fn noble_is_the_default_and_plans_the_os_image() {
    let root = fixture_root();
    let p = plan(root.path(), &options("", None));
    assert_eq!(p.os.name, "ubuntu-noble");
    assert_eq!(p.mirror, "http://archive.ubuntu.com/ubuntu");
    assert_eq!(names(&p), ["base-apt", "bosh-users"]);
    assert!(p.stages.iter().all(|s| s.phase == Phase::OsImage));
    // The ubuntu-only purge is kept.
    assert_eq!(stage(&p, "base-apt").actions.len(), 3);
    assert_eq!(
        installs(&p, "base-apt"),
        ["systemd", "libaio1t64", "libpam-pwquality"]
    );
    assert_eq!(
        asset(root.path(), &p, "apt/sources.list.tera"),
        "deb http://archive.ubuntu.com/ubuntu noble main restricted universe multiverse\n\
         deb http://archive.ubuntu.com/ubuntu noble-updates main restricted universe multiverse\n\
         deb http://archive.ubuntu.com/ubuntu noble-security main restricted universe multiverse\n"
    );
    let password = render("{{ passwords.vcap }}", &p.vars).unwrap();
    assert!(password.starts_with("$6$"), "{password}");
    assert_eq!(
        render("{{ os.version }} {{ build_time }}.", &p.vars).unwrap(),
        "24.04 ."
    );
    // OS-image plans have no stemcell variables at all.
    assert!(render("{{ stemcell_version }}", &p.vars).is_err());
}

#[test]
fn jammy_uses_its_own_package_names() {
    let root = fixture_root();
    let p = plan(root.path(), &options("ubuntu-jammy", Some("vsphere")));
    assert_eq!(
        names(&p),
        ["base-apt", "bosh-users", "kernel", "agent-settings"]
    );
    assert_eq!(
        installs(&p, "base-apt"),
        ["systemd", "libaio1", "libpam-cracklib"]
    );
    assert_eq!(installs(&p, "kernel"), ["linux-generic"]);
    assert_eq!(
        render("{{ os.suite }}/{{ os.version }}", &p.vars).unwrap(),
        "jammy/22.04"
    );
    assert_eq!(render("{{ stemcell_version }}", &p.vars).unwrap(), "0000");
    assert_eq!(
        asset(root.path(), &p, "agent/agent.json.tera"),
        "{\"Infrastructure\": {\"Name\": \"vsphere\"}, \"Platform\": {\"Linux\": {\"ServiceManager\": \"systemd\"}}}\n"
    );
}

#[test]
fn bookworm_uses_the_host_mirror_and_debian_stages() {
    let root = fixture_root();
    let p = plan(root.path(), &options("debian-bookworm", Some("aws")));
    assert_eq!(p.mirror, "http://debian.mirror.test/debian");
    assert_eq!(
        names(&p),
        [
            "base-apt",
            "bosh-users",
            "debian-tweaks",
            "kernel",
            "agent-settings"
        ]
    );
    assert_eq!(
        stage(&p, "base-apt").actions.len(),
        2,
        "ubuntu-only purge dropped"
    );
    assert_eq!(
        stage(&p, "agent-settings").actions.len(),
        2,
        "vsphere-only file dropped"
    );
    assert_eq!(
        installs(&p, "base-apt"),
        ["systemd", "libaio1", "libpam-pwquality"]
    );
    assert_eq!(installs(&p, "kernel"), ["linux-image-amd64"]);
    assert_eq!(
        asset(root.path(), &p, "apt/sources.list.tera"),
        "deb http://debian.mirror.test/debian bookworm main\n\
         deb http://debian.mirror.test/debian bookworm-updates main\n"
    );
}

#[test]
fn arm64_takes_the_os_definitions_arm64_packages_and_keys_of_its_own() {
    let root = fixture_root();
    let amd64 = plan(root.path(), &options("debian-bookworm", Some("aws")));
    let arm64 = plan(
        root.path(),
        &PlanOptions {
            arch: Arch::Arm64,
            ..options("debian-bookworm", Some("aws"))
        },
    );
    assert_eq!(installs(&arm64, "kernel"), ["linux-image-arm64"]);
    assert_eq!(arm64.arch, Arch::Arm64);
    assert_eq!(
        arm64.vars.get("arch").and_then(|v| v.as_str()),
        Some("arm64")
    );
    assert_eq!(names(&arm64), names(&amd64));
    // Not one layer is shared between the architectures.
    assert_ne!(arm64.bootstrap_key, amd64.bootstrap_key);
    for (a, b) in keys(&arm64).iter().zip(keys(&amd64)) {
        assert_ne!(*a, b);
    }
    // Noble's arm64 comes from Ubuntu's ports archive.
    let noble = plan(
        root.path(),
        &PlanOptions {
            arch: Arch::Arm64,
            ..options("ubuntu-noble", None)
        },
    );
    assert_eq!(noble.mirror, "http://ports.ubuntu.com/ubuntu-ports");
}

#[test]
fn an_architecture_the_os_is_not_built_for_is_an_error_naming_the_file() {
    let root = fixture_root();
    let err = resolve(
        root.path(),
        &PlanOptions {
            arch: Arch::Arm64,
            ..options("ubuntu-jammy", None)
        },
    )
    .unwrap_err();
    assert_eq!(
        format!("{err:#}").replace(root.path().to_str().unwrap(), "<root>"),
        "<root>/stages/os/ubuntu-jammy.yaml: ubuntu-jammy is not built for arm64 (architectures: amd64)"
    );
}

#[test]
fn bookworm_reads_this_hosts_apt_sources() {
    let root = fixture_root();
    let p = resolve(root.path(), &options("debian-bookworm", None)).unwrap();
    assert!(p.mirror.starts_with("http"), "{}", p.mirror);
    assert!(!p.mirror.contains("security"), "{}", p.mirror);
}

#[test]
fn mirror_precedence_override_then_snapshot_then_default() {
    let root = fixture_root();
    let mut o = options("ubuntu-noble", None);
    o.build_time = Some("20250520T000000Z".into());
    let snap = plan(root.path(), &o);
    assert_eq!(
        snap.mirror,
        "http://snapshot.ubuntu.com/ubuntu/20250520T000000Z"
    );
    // The image's own sources keep the archive, not the snapshot.
    assert!(asset(root.path(), &snap, "apt/sources.list.tera")
        .starts_with("deb http://archive.ubuntu.com/ubuntu noble "));
    o.mirror = Some("http://apt.local/ubuntu/".into());
    let over = plan(root.path(), &o);
    assert_eq!(over.mirror, "http://apt.local/ubuntu");
    assert!(asset(root.path(), &over, "apt/sources.list.tera")
        .starts_with("deb http://archive.ubuntu.com/ubuntu noble "));
    assert_eq!(
        render("{{ os.mirror }}", &over.vars).unwrap(),
        "http://apt.local/ubuntu"
    );
    let mut d = options("debian-bookworm", None);
    d.build_time = Some("20250520T000000Z".into());
    assert_eq!(
        plan(root.path(), &d).mirror,
        "http://snapshot.debian.org/archive/debian/20250520T000000Z"
    );
    // The mirror is part of the bootstrap key.
    let default = plan(root.path(), &options("ubuntu-noble", None));
    assert_ne!(default.bootstrap_key, snap.bootstrap_key);
    assert_ne!(snap.bootstrap_key, over.bootstrap_key);
}

#[test]
fn keys_are_stable_and_chain() {
    let root = fixture_root();
    let o = options("debian-bookworm", Some("vsphere"));
    let first = plan(root.path(), &o);
    let again = plan(root.path(), &o);
    assert_eq!(keys(&first), keys(&again));
    assert_eq!(first.bootstrap_key, again.bootstrap_key);
    let unique: std::collections::HashSet<_> = keys(&first).into_iter().collect();
    assert_eq!(unique.len(), first.stages.len());

    // Changing stage 2 (bosh-users) changes its key and every later one, and nothing before.
    let file = root.path().join("stages/os-image/20-bosh-users.yaml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("# edited\n");
    std::fs::write(&file, text).unwrap();
    let edited = plan(root.path(), &o);
    let (a, b) = (keys(&first), keys(&edited));
    assert_eq!(a[0], b[0]);
    assert!((1..a.len()).all(|i| a[i] != b[i]), "{a:?}\n{b:?}");
    assert_eq!(first.bootstrap_key, edited.bootstrap_key);

    // An asset the stage reads counts like the stage file.
    std::fs::write(root.path().join("assets/issue"), "changed\n").unwrap();
    let c = keys(&plan(root.path(), &o));
    assert_eq!(c[0], b[0]);
    assert!((1..c.len()).all(|i| c[i] != b[i]));
}

#[test]
fn os_image_keys_ignore_infrastructure_and_version() {
    let root = fixture_root();
    let alone = plan(root.path(), &options("ubuntu-noble", None));
    let vsphere = plan(root.path(), &options("ubuntu-noble", Some("vsphere")));
    let mut o = options("ubuntu-noble", Some("vsphere"));
    o.stemcell_version = Some("1.606".into());
    let versioned = plan(root.path(), &o);
    let aws = plan(root.path(), &options("ubuntu-noble", Some("aws")));
    for other in [&vsphere, &versioned, &aws] {
        assert_eq!(keys(&alone)[..], keys(other)[..2]);
    }
    // A stage's key moves only with the variables it renders: the kernel stage does not use
    // stemcell_version, agent-settings does.
    assert_eq!(
        stage(&vsphere, "kernel").key,
        stage(&versioned, "kernel").key
    );
    assert_ne!(
        stage(&vsphere, "agent-settings").key,
        stage(&versioned, "agent-settings").key
    );
    assert_ne!(
        stage(&vsphere, "agent-settings").key,
        stage(&aws, "agent-settings").key
    );
    // A password change reaches only the stage that renders it.
    let mut p = options("ubuntu-noble", None);
    p.extra_vars = vec![("passwords.vcap".into(), "$6$other".into())];
    let changed = plan(root.path(), &p);
    assert_eq!(keys(&alone)[0], keys(&changed)[0]);
    assert_ne!(keys(&alone)[1], keys(&changed)[1]);
}

#[test]
fn from_stage_names_a_planned_stage() {
    let root = fixture_root();
    let p = plan(root.path(), &options("ubuntu-noble", Some("aws")));
    assert_eq!(p.stage_index("kernel").unwrap(), 2);
    assert_eq!(
        p.stage_index("debian-tweaks").unwrap_err().to_string(),
        "unknown stage `debian-tweaks`: expected one of base-apt, bosh-users, kernel, agent-settings"
    );
}

#[test]
fn os_definitions_name_keyrings_this_host_has() {
    for name in ["ubuntu-noble", "ubuntu-jammy", "debian-bookworm"] {
        let os = stemcell::recipe::os::load(&repo_root(), name)
            .unwrap()
            .definition;
        assert!(Path::new(&os.keyring).is_file(), "{name}: {}", os.keyring);
        assert!(
            os.snapshot_mirror.unwrap().ends_with("/{timestamp}"),
            "{name}"
        );
    }
    let noble = stemcell::recipe::os::load(&repo_root(), "ubuntu-noble")
        .unwrap()
        .definition;
    assert_eq!(
        noble.mirror.as_deref(),
        Some("http://archive.ubuntu.com/ubuntu")
    );
    let bookworm = stemcell::recipe::os::load(&repo_root(), "debian-bookworm")
        .unwrap()
        .definition;
    assert_eq!(bookworm.mirror, None, "Debian uses the host's mirror");
    assert_eq!(bookworm.kernel_package, "linux-image-amd64");
}

#[test]
fn layer_marker_path_is_the_runner_contract() {
    assert_eq!(
        layer_done_marker(Path::new("/var/cache/stemcell"), "abc"),
        Path::new("/var/cache/stemcell/layers/abc.done")
    );
}

/// Writes `content` to `relative` in a fresh fixture root, resolves, and returns the one-line
/// error with the root shown as `<root>`.
fn error_with(relative: &str, content: &str, options: &PlanOptions) -> String {
    let root = fixture_root();
    let path = root.path().join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    let apt = fake_etc_apt("http://debian.mirror.test/debian");
    let err = resolve_with_apt(root.path(), options, apt.path()).unwrap_err();
    let line = format!("{err:#}");
    assert!(!line.contains('\n'), "one line: {line}");
    line.replace(root.path().to_str().unwrap(), "<root>")
}

fn stage_error(content: &str) -> String {
    error_with(
        "stages/os-image/40-bad.yaml",
        content,
        &options("ubuntu-noble", Some("vsphere")),
    )
}

const HEAD: &str = "name: bad\ndescription: a bad stage\nphase: os-image\nactions:\n";

#[test]
fn error_malformed_yaml() {
    assert_eq!(
        stage_error(&format!("{HEAD}  - file: {{ path: /x, content: \"y\"\n  - run: x\n")),
        "<root>/stages/os-image/40-bad.yaml:6:3: did not find expected ',' or '}', while parsing a flow mapping at line 5 column 11"
    );
}

#[test]
fn error_unknown_action() {
    assert_eq!(
        stage_error(&format!("{HEAD}  - group: {{ name: a }}\n  - copy: {{ path: /x }}\n")),
        "<root>/stages/os-image/40-bad.yaml:6:5: actions[1]: unknown variant `copy`, expected one of `apt`, `file`, `template`, `directory`, `symlink`, `remove`, `group`, `user`, `service`, `config_lines`, `run`"
    );
}

#[test]
fn error_unknown_field() {
    assert_eq!(
        stage_error(&format!("{HEAD}  - user: {{ name: vcap, uidd: 1000 }}\n")),
        "<root>/stages/os-image/40-bad.yaml:5:25: actions[0].user: unknown field `uidd`, expected one of `name`, `uid`, `group`, `groups`, `shell`, `home`, `password`, `system`"
    );
    assert_eq!(
        stage_error("name: bad\ndescription: d\nphase: os-image\nactons: []\n"),
        "<root>/stages/os-image/40-bad.yaml:4:1: unknown field `actons`, expected one of `name`, `description`, `phase`, `when`, `actions`"
    );
}

#[test]
fn error_wrong_type() {
    assert_eq!(
        stage_error(&format!("{HEAD}  - user: {{ name: vcap, uid: one }}\n")),
        "<root>/stages/os-image/40-bad.yaml:5:30: actions[0].user.uid: invalid type: string \"one\", expected u32"
    );
    assert_eq!(
        stage_error("name: bad\ndescription: d\nphase: image\nactions: []\n"),
        "<root>/stages/os-image/40-bad.yaml:3:8: phase: unknown variant `image`, expected `os-image` or `stemcell`"
    );
}

#[test]
fn error_unknown_variable_in_stage_template() {
    assert_eq!(
        stage_error(&format!("{HEAD}  - group: {{ name: a }}\n  - file: {{ path: /etc/x, content: \"{{{{ os.codename }}}}\" }}\n")),
        "<root>/stages/os-image/40-bad.yaml:6: actions[1] (file): content: undefined variable `os.codename`"
    );
    // OS-image stages cannot see stemcell-only variables.
    assert_eq!(
        stage_error(&format!("{HEAD}  - run: {{ script: \"echo {{{{ stemcell_version }}}}\" }}\n")),
        "<root>/stages/os-image/40-bad.yaml:5: actions[0] (run): script: undefined variable `stemcell_version`"
    );
}

#[test]
fn error_unknown_variable_in_asset_template() {
    let err = error_with(
        "assets/agent/agent.json.tera",
        "{\"x\": \"{{ infrastructure.name }}\", \"y\": \"{{ agent_url }}\"}\n",
        &options("ubuntu-noble", Some("aws")),
    );
    assert!(err.starts_with("<root>/stages/stemcell/20-agent-settings.yaml:6: actions[1] (template): template <root>/assets/agent/agent.json.tera: "), "{err}");
}

#[test]
fn error_template_syntax() {
    assert_eq!(
        stage_error(&format!("{HEAD}  - run: {{ script: \"echo {{{{ os.name \" }}\n")),
        "<root>/stages/os-image/40-bad.yaml:5: actions[0] (run): script: template syntax error at 1:17: expected `or`, `and`, `not`, `<=`, `>=`, `<`, `>`, `==`, `!=`, `+`, `-`, `*`, `/`, `%`, a filter, or a variable end (`}}`)"
    );
}

#[test]
fn error_missing_asset() {
    assert_eq!(
        stage_error(&format!("{HEAD}  - file: {{ path: /etc/x, source: nowhere/x.conf }}\n")),
        "<root>/stages/os-image/40-bad.yaml:5: actions[0] (file): asset `nowhere/x.conf` not found: <root>/assets/nowhere/x.conf does not exist"
    );
    assert_eq!(
        stage_error(&format!("{HEAD}  - template: {{ path: /etc/x, template: ../etc/passwd }}\n")),
        "<root>/stages/os-image/40-bad.yaml:5: actions[0] (template): asset path `../etc/passwd` must be relative to assets/ without `..`"
    );
}

#[test]
fn error_bad_mode() {
    assert_eq!(
        stage_error(&format!("{HEAD}  - directory: {{ path: /var/vcap, mode: \"0855\" }}\n")),
        "<root>/stages/os-image/40-bad.yaml:5: actions[0] (directory): mode \"0855\" is not an octal file mode: expected 3 or 4 octal digits, e.g. \"0644\""
    );
}

#[test]
fn error_unknown_os() {
    let root = fixture_root();
    let err = resolve(root.path(), &options("ubuntu-focal", None)).unwrap_err();
    assert_eq!(
        format!("{err:#}").replace(root.path().to_str().unwrap(), "<root>"),
        "unknown OS `ubuntu-focal`: expected one of debian-bookworm, debian-trixie, ubuntu-jammy, ubuntu-noble (files in <root>/stages/os)"
    );
}

#[test]
fn error_unknown_infrastructure() {
    let root = fixture_root();
    let err = resolve(root.path(), &options("ubuntu-noble", Some("vmware"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown infrastructure `vmware`: expected one of aws, vsphere"
    );
}

#[test]
fn error_set_level_checks() {
    assert_eq!(
        stage_error("name: bosh-users\ndescription: d\nphase: os-image\nactions: []\n"),
        "<root>/stages/os-image/40-bad.yaml:1: stage name `bosh-users` is already used by <root>/stages/os-image/20-bosh-users.yaml"
    );
    assert_eq!(
        stage_error("name: worse\ndescription: d\nphase: os-image\nactions: []\n"),
        "<root>/stages/os-image/40-bad.yaml:1: stage `worse` must be in a file named NN-worse.yaml (NN: two digits, the order)"
    );
    assert_eq!(
        stage_error("name: bad\ndescription: d\nphase: stemcell\nactions: []\n"),
        "<root>/stages/os-image/40-bad.yaml:3: phase `stemcell` does not match its folder stages/os-image/ (expected `os-image`)"
    );
    assert_eq!(
        stage_error("name: bad\ndescription: d\nphase: os-image\nwhen: { os: [ubuntu-focal] }\nactions: []\n"),
        "<root>/stages/os-image/40-bad.yaml:4: when: unknown OS `ubuntu-focal`: expected one of debian-bookworm, debian-trixie, ubuntu-jammy, ubuntu-noble"
    );
    assert_eq!(
        stage_error(&format!("{HEAD}  - run: {{ script: x }}\n    when: {{ os_family: [redhat] }}\n")),
        "<root>/stages/os-image/40-bad.yaml:5: actions[0] (run): when: unknown OS family `redhat`: expected one of ubuntu, debian"
    );
    assert_eq!(
        stage_error("name: bad\ndescription: d\nphase: os-image\nwhen: { infrastructure: [aws] }\nactions: []\n"),
        "<root>/stages/os-image/40-bad.yaml:4: when: os-image stages cannot depend on the infrastructure (one OS image serves all); use a stemcell stage"
    );
    assert_eq!(
        error_with(
            "stages/stemcell/30-bad.yaml",
            "name: bad\ndescription: d\nphase: stemcell\nactions:\n  - run: { script: x }\n    when: { infrastructure: [gcp] }\n",
            &options("ubuntu-noble", None)
        ),
        "<root>/stages/stemcell/30-bad.yaml:5: actions[0] (run): when: unknown infrastructure `gcp`: expected one of aws, vsphere"
    );
}

#[test]
fn cli_plan_shows_cached_and_to_run() {
    let root = fixture_root();
    let work = tempfile::tempdir().unwrap();
    let first = plan(root.path(), &options("ubuntu-jammy", None));
    let marker = layer_done_marker(work.path(), &first.bootstrap_key);
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stemcell"))
        .args(["plan", "--os", "ubuntu-jammy", "--work-dir"])
        .arg(work.path())
        .env("STEMCELL_HOME", root.path())
        .env_remove("BUILD_TIME")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[2].starts_with("bootstrap ") && lines[2].contains(" cached "),
        "{stdout}"
    );
    assert!(lines[2].contains(&first.bootstrap_key[..12]), "{stdout}");
    assert!(
        lines[3].starts_with("os-image  base-apt ") && lines[3].contains(" to run "),
        "{stdout}"
    );
    assert_eq!(lines.len(), 5, "{stdout}");

    // --var and --version reach the templates: the agent-settings key follows the version.
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stemcell"))
            .args([
                "plan",
                "--os",
                "ubuntu-jammy",
                "--infrastructure",
                "aws",
                "--work-dir",
            ])
            .arg(work.path())
            .args(extra)
            .env("STEMCELL_HOME", root.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut o = options("ubuntu-jammy", Some("aws"));
    o.stemcell_version = Some("1.606".into());
    o.extra_vars = vec![("passwords.vcap".into(), "$6$x".into())];
    let expected = plan(root.path(), &o);
    let shown = run(&["--version", "1.606", "--var", "passwords.vcap=$6$x"]);
    for s in &expected.stages {
        assert!(
            shown.contains(&s.key[..12]),
            "{} missing in\n{shown}",
            s.name
        );
    }

    // BUILD_TIME from build_time.txt (as the official builder) picks the snapshot.
    std::fs::write(root.path().join("build_time.txt"), "20250520T000000Z\n").unwrap();
    let snap = std::process::Command::new(env!("CARGO_BIN_EXE_stemcell"))
        .args(["plan", "--os", "ubuntu-jammy"])
        .env("STEMCELL_HOME", root.path())
        .env_remove("BUILD_TIME")
        .output()
        .unwrap();
    let first_line = String::from_utf8(snap.stdout).unwrap();
    assert!(
        first_line.starts_with(
            "os: ubuntu-jammy  arch: amd64  mirror: http://snapshot.ubuntu.com/ubuntu/20250520T000000Z\n"
        ),
        "{first_line}"
    );

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_stemcell"))
        .args(["plan", "--os", "centos"])
        .env("STEMCELL_HOME", root.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(stderr.starts_with("stemcell: unknown OS `centos`: expected one of debian-bookworm, debian-trixie, ubuntu-jammy, ubuntu-noble"), "{stderr}");
}

/// Plans `options`, supplying a placeholder for each build input the stages need that the
/// planner does not define itself (agent_sha256, agent_json, ...): those come from `build`.
fn plan_with_inputs(root: &Path, mut options: PlanOptions) -> Plan {
    let apt = fake_etc_apt("http://debian.mirror.test/debian");
    for _ in 0..32 {
        match resolve_with_apt(root, &options, apt.path()) {
            Ok(plan) => return plan,
            Err(e) => {
                let line = format!("{e:#}");
                let name = line
                    .split_once("undefined variable `")
                    .and_then(|(_, rest)| rest.split_once('`'))
                    .map(|(name, _)| name.to_string());
                let builtin = [
                    "os.",
                    "packages.",
                    "passwords.",
                    "infrastructure",
                    "stemcell_version",
                    "build_time",
                ];
                match name {
                    Some(n) if !builtin.iter().any(|b| n.starts_with(b)) => {
                        options.extra_vars.push((n, "placeholder".into()))
                    }
                    _ => panic!("{line}"),
                }
            }
        }
    }
    panic!("too many undefined variables");
}

/// The real stage set, once it exists: every OS plans, alone and with every infrastructure,
/// and the OS-image keys do not depend on the infrastructure.
#[test]
fn real_stages_plan_for_every_os_and_infrastructure() {
    let root = repo_root();
    if !root.join("stages/os-image").is_dir() {
        eprintln!(
            "skipped: {} does not exist yet",
            root.join("stages/os-image").display()
        );
        return;
    }
    let infrastructures = stemcell::recipe::resolve::infrastructure_names(&root)
        .unwrap()
        .unwrap_or_default();
    for os in ["ubuntu-noble", "ubuntu-jammy", "debian-bookworm"] {
        let alone = plan(&root, &options(os, None));
        assert!(!alone.stages.is_empty(), "{os}: no os-image stages");
        for infra in &infrastructures {
            let p = plan_with_inputs(&root, options(os, Some(infra)));
            assert_eq!(
                keys(&alone)[..],
                keys(&p)[..alone.stages.len()],
                "{os} {infra}"
            );
        }
    }
}
