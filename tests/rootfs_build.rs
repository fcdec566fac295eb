//! End to end: bootstrap debian-bookworm minbase from the host's mirror, run fixture stages in
//! cached overlay layers, kill a build mid-stage, resume from the cache, export the OS image.
//! Needs root and the Debian mirror.

#[path = "common/rootfs.rs"]
mod rootfs;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};
use stemcell::rootfs::export;
use stemcell::stage::runner::{self, RunOptions};

fn options(work: &Path) -> RunOptions {
    RunOptions {
        work_dir: work.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}

/// Run by `build_kill_resume_export` in a child process, which it then kills (SIGKILL) or
/// interrupts (SIGINT, as Ctrl-C does); the error, if any, goes to `$ROOTFS_TEST_WORK.err`.
#[test]
#[ignore]
fn child_build_that_gets_killed() {
    let Ok(work) = std::env::var("ROOTFS_TEST_WORK") else {
        return;
    };
    stemcell::rootfs::interrupt::install();
    let plan = rootfs::plan(
        &rootfs::host_mirror(),
        &[("10-base", None), ("30-sleeper", None)],
    );
    if let Err(e) = runner::run(&plan, &options(Path::new(&work))) {
        std::fs::write(format!("{work}.err"), format!("{e:#}")).unwrap();
    }
}

/// Starts the child build and waits until its sleeper stage runs.
fn start_child_build(work: &Path) -> std::process::Child {
    // A killed build leaves its partial layer (the next run removes it); remove it here so an
    // old `tmp/started` is not mistaken for the new one.
    for e in std::fs::read_dir(work.join("layers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().ends_with(".partial") {
            std::fs::remove_dir_all(e.path()).unwrap();
        }
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_build_that_gets_killed",
            "--nocapture",
        ])
        .env("ROOTFS_TEST_WORK", work)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let layers = work.join("layers");
    let deadline = Instant::now() + Duration::from_secs(300);
    let sleeper_running = || {
        std::fs::read_dir(&layers)
            .map(|d| d.flatten().any(|e| e.path().join("tmp/started").exists()))
            .unwrap_or(false)
    };
    while !sleeper_running() {
        assert!(Instant::now() < deadline, "the sleeper stage never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child build ended early"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child
}

fn signal_group(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

fn members(tgz: &Path) -> Vec<(String, Vec<u8>)> {
    let f = std::fs::File::open(tgz).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut data = Vec::new();
        if path.starts_with("./etc/")
            || path.starts_with("./var/vcap")
            || path.starts_with("./usr/sbin/policy")
            || path == "./var/lib/apt/extended_states"
        {
            e.read_to_end(&mut data).unwrap();
        }
        out.push((path, data));
    }
    out
}

#[test]
fn build_kill_resume_export() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let work = tmp.path().join("work");
    let mirror = rootfs::host_mirror();

    // 1. A build killed (SIGKILL to its whole process group) in the middle of a stage.
    let t = Instant::now();
    let mut child = start_child_build(&work);
    eprintln!(
        "empty cache to the sleeper stage (bootstrap + base): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    signal_group(&child, nix::sys::signal::Signal::SIGKILL);
    child.wait().unwrap();
    // The bootstrap keeps mmdebstrap's package lists, so base's install fetches none.
    let base_log = std::fs::read_to_string(work.join("logs/01-base.log")).unwrap();
    assert!(
        base_log.contains("Unpacking less") && !base_log.contains("InRelease"),
        "{base_log}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rootfs::mounts_under(tmp.path()),
        Vec::<String>::new(),
        "mounts left after SIGKILL"
    );
    assert_eq!(
        rootfs::processes_under(tmp.path()),
        Vec::<String>::new(),
        "processes left after SIGKILL"
    );

    // 2. The next run reuses bootstrap and base from the cache, and builds users.
    let plan = rootfs::plan(&mirror, &[("10-base", None), ("20-users", None)]);
    let built = runner::run(&plan, &options(&work)).unwrap();
    let cached: Vec<bool> = built.timings.iter().map(|t| t.cached).collect();
    assert_eq!(cached, [true, true, false], "{}", built.report());
    eprint!("{}", built.report());
    assert!(!std::fs::read_dir(work.join("layers"))
        .unwrap()
        .flatten()
        .any(|e| { e.file_name().to_string_lossy().ends_with(".partial") }));
    let out = tmp.path().join("debian-bookworm.tgz");
    let t = Instant::now();
    export::write_os_image(&built.store, &built.layers, None, &out, false).unwrap();
    eprintln!(
        "export took {:.1}s, {} bytes",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&out).unwrap().len()
    );
    drop(built);
    assert_eq!(rootfs::mounts_under(tmp.path()), Vec::<String>::new());

    // 3. The OS image: ./ paths, stage results, build-only pieces undone.
    let m = members(&out);
    assert!(
        m.iter().all(|(p, _)| p == "./" || p.starts_with("./")),
        "member without ./"
    );
    let get = |p: &str| {
        m.iter()
            .find(|(n, _)| n == p)
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
    };
    assert_eq!(
        get("./etc/issue").unwrap(),
        "Unauthorized use is strictly prohibited. debian-bookworm\n"
    );
    assert_eq!(
        get("./etc/motd").unwrap(),
        "Welcome to debian-bookworm (bookworm)\n"
    );
    assert_eq!(get("./etc/stemcell-base").unwrap(), "built\n");
    assert!(
        get("./etc/resolv.conf").unwrap().is_empty(),
        "resolv.conf not emptied"
    );
    assert!(
        get("./usr/sbin/policy-rc.d").is_none(),
        "policy-rc.d shipped"
    );
    assert!(
        get("./etc/dpkg/dpkg.cfg.d/zz-stemcell-build").is_none(),
        "dpkg's build-only options shipped"
    );
    assert!(
        get("./etc/apt/apt.conf.d/99mmdebstrap").is_none(),
        "the build's apt retries and timeout (mmdebstrap --aptopt) shipped"
    );
    assert!(
        get("./usr/bin/less").is_some(),
        "apt install did not install less"
    );
    assert!(
        get("./usr/share/doc/less/copyright").is_none(),
        "remove did not remove"
    );
    let login_defs = get("./etc/login.defs").unwrap();
    assert!(login_defs.contains("\nPASS_MAX_DAYS 90\n") && login_defs.contains("\nUMASK 077\n"));
    let vcap = get("./etc/stemcell-users").unwrap();
    assert!(
        vcap.starts_with("vcap:x:1000:") && vcap.ends_with(":/home/vcap:/bin/bash\n"),
        "{vcap}"
    );
    assert_eq!(
        get("./etc/passwd")
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("vcap:"))
            .count(),
        1
    );
    let group = get("./etc/group").unwrap();
    assert!(
        group.contains("bosh_sshers:x:") && group.contains("bosh_sudoers:x:1500:\n"),
        "{group}"
    );
    assert!(get("./etc/shadow").unwrap().contains("vcap:$6$salt$hash:"));
    // Nothing mounted for the build leaks into the image.
    let mounted = ["./proc/", "./sys/", "./dev/pts/", "./dev/shm/", "./run/"];
    let leaked: Vec<&String> = m
        .iter()
        .map(|(p, _)| p)
        .filter(|p| {
            mounted
                .iter()
                .any(|d| p.starts_with(d) && p.as_str() != *d && !p.starts_with("./run/lock"))
        })
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    let pkgs = std::fs::read_to_string(export::side_file(&out, "packages.txt")).unwrap();
    assert!(
        pkgs.contains("Desired=Unknown/Install") && pkgs.contains("ii  less"),
        "{pkgs}"
    );
    let dev = std::fs::read_to_string(export::side_file(&out, "dev_tools_file_list.txt")).unwrap();
    assert_eq!(dev, "/usr/bin/gcc\n");
    // apt: an install of packages all installed and manual does not run apt-get; one of an
    // automatically installed package does, and marks it manual.
    let log = std::fs::read_to_string(work.join("logs/02-users.log")).unwrap();
    assert!(log.contains("apt: already installed: less file\n"), "{log}");
    assert!(!log.contains("already installed: libmagic-mgc"), "{log}");
    assert!(
        pkgs.contains("ii  file ") && pkgs.contains("ii  libmagic-mgc "),
        "{pkgs}"
    );
    let auto: Vec<String> = get("./var/lib/apt/extended_states")
        .unwrap()
        .split("\n\n")
        .filter(|s| s.contains("Auto-Installed: 1"))
        .filter_map(|s| {
            s.lines()
                .next()?
                .strip_prefix("Package: ")
                .map(String::from)
        })
        .collect();
    assert!(auto.contains(&"libmagic1".to_string()), "{auto:?}");
    assert!(!auto.contains(&"libmagic-mgc".to_string()), "{auto:?}");

    // 4. A rerun with no change only checks the cache.
    let t = Instant::now();
    let built = runner::run(&plan, &options(&work)).unwrap();
    assert!(built.timings.iter().all(|t| t.cached));
    eprintln!("no-change rerun: {:.2}s", t.elapsed().as_secs_f64());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "no-change rerun took {:?}",
        t.elapsed()
    );
    drop(built);

    // 5. An edited last stage reruns alone; --from-stage reruns from there.
    let edited = std::fs::read_to_string(rootfs::fixtures().join("stages/20-users.yaml")).unwrap()
        + "  - file: { path: /etc/edited, content: \"yes\\n\" }\n";
    let plan2 = rootfs::plan(&mirror, &[("10-base", None), ("20-users", Some(&edited))]);
    let t = Instant::now();
    let built = runner::run(&plan2, &options(&work)).unwrap();
    let cached: Vec<bool> = built.timings.iter().map(|t| t.cached).collect();
    assert_eq!(cached, [true, true, false]);
    eprintln!("edited last stage: {:.1}s", t.elapsed().as_secs_f64());
    drop(built);
    let mut o = options(&work);
    o.from_stage = Some("base".into());
    let built = runner::run(&plan2, &o).unwrap();
    let cached: Vec<bool> = built.timings.iter().map(|t| t.cached).collect();
    assert_eq!(cached, [true, false, false]);
    drop(built);
    o.from_stage = Some("nope".into());
    let err = runner::run(&plan2, &o).err().unwrap().to_string();
    assert!(err.contains("--from-stage nope: no such stage"), "{err}");
    assert_eq!(rootfs::mounts_under(tmp.path()), Vec::<String>::new());

    // 6. SIGKILL of the build process alone (not its group): its children die with it.
    let mut child = start_child_build(&work);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rootfs::mounts_under(tmp.path()), Vec::<String>::new());
    assert_eq!(rootfs::processes_under(tmp.path()), Vec::<String>::new());

    // 7. Ctrl-C mid-stage: a clear error, and nothing left (no mount, process or partial layer).
    let mut child = start_child_build(&work);
    signal_group(&child, nix::sys::signal::Signal::SIGINT);
    child.wait().unwrap();
    let err = std::fs::read_to_string(tmp.path().join("work.err")).unwrap();
    assert!(
        err.contains("stage sleeper") || err.contains("interrupted"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rootfs::mounts_under(tmp.path()), Vec::<String>::new());
    assert_eq!(rootfs::processes_under(tmp.path()), Vec::<String>::new());
    let partial: Vec<_> = std::fs::read_dir(work.join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || n.ends_with(".ovlwork"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
}

#[test]
fn mirror_that_does_not_answer() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let work = tmp.path().join("work");
    let plan = rootfs::plan("http://127.0.0.1:9/debian", &[("10-base", None)]);
    let err = format!("{:#}", runner::run(&plan, &options(&work)).err().unwrap());
    assert!(
        err.contains("bootstrap of debian-bookworm from http://127.0.0.1:9/debian failed"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one-line error: {err}");
    let left: Vec<_> = std::fs::read_dir(work.join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
    assert_eq!(rootfs::mounts_under(tmp.path()), Vec::<String>::new());
}
