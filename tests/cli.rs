//! The release engineer's command line through the real binary: help texts, `--json`
//! documents, `verify` errors vs warnings, `plan` without inputs, the OS of `--os-image`,
//! `diff` (with `--files` read from real ext4 disks), `cache list/prune`, output directories.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stemcell"));
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not one JSON document ({e}): {s}"))
}

fn sh(script: &str, dir: &Path) {
    let st = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}

/// A 32 MiB disk: an MBR with one partition at 1 MiB holding ext4 made by `mke2fs -d` from
/// `tree` (a shell script run in an empty directory).
fn ext4_disk(dir: &Path, name: &str, tree: &str) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    std::fs::create_dir_all(&root).unwrap();
    sh(tree, &root);
    let disk = dir.join(format!("{name}.raw"));
    sh(
        &format!(
            "mke2fs -q -F -t ext4 -d {root} -E offset=1048576 {disk} 16M && truncate -s 32M {disk} && echo 'start=2048, type=83' | sfdisk -q {disk}",
            root = root.display(),
            disk = disk.display()
        ),
        dir,
    );
    disk
}

fn package(dir: &Path, disk: &Path, version: &str, format: &str, packages: &str) -> PathBuf {
    let pk = dir.join(format!("{version}.packages.txt"));
    std::fs::write(&pk, packages).unwrap();
    let out = dir.join("out");
    let (ok, stdout, err) = run(bin()
        .args([
            "package",
            "--infrastructure",
            "openstack",
            "--os",
            "debian-bookworm",
            "--version",
            version,
        ])
        .args(["--disk-format", format, "--disk"])
        .arg(disk)
        .arg("--packages")
        .arg(&pk)
        .arg("-o")
        .arg(&out));
    assert!(ok, "{err}");
    PathBuf::from(stdout.split_whitespace().next().unwrap())
}

const PACKAGES_A: &str =
    "Desired=Unknown\nii  bash  5.2.15-2  amd64  shell\nii  foo  1.0-1  amd64  x\n";
const PACKAGES_B: &str =
    "Desired=Unknown\nii  bash  5.2.15-2+b1  amd64  shell\nii  bar  2.0-1  amd64  y\n";

#[test]
fn diff_reports_manifest_packages_sizes_and_files() {
    let t = tempfile::tempdir().unwrap();
    let a = ext4_disk(t.path(), "a", "mkdir -p etc usr/bin; echo a > etc/hostname; echo gone > etc/removed; printf '#!/bin/sh\\n' > usr/bin/tool; chmod 755 usr/bin/tool; ln -s hostname etc/link");
    let b = ext4_disk(t.path(), "b", "mkdir -p etc usr/bin; echo b > etc/hostname; echo new > etc/added; printf '#!/bin/sh\\n' > usr/bin/tool; chmod 700 usr/bin/tool; chown 1000:1000 usr/bin/tool; ln -s added etc/link");
    // A as qcow2 (expanded with qemu-img to be read), B as a raw disk.
    let ta = package(t.path(), &a, "0.0.1", "qcow2", PACKAGES_A);
    let tb = package(t.path(), &b, "0.0.2", "raw", PACKAGES_B);
    let (ok, out, err) = run(bin()
        .arg("diff")
        .arg("--files")
        .arg("--json")
        .arg(&ta)
        .arg(&tb));
    assert!(ok, "{err}");
    let d = json(&out);
    let changed = |key: &str| {
        d["manifest"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == key)
            .cloned()
    };
    assert_eq!(changed("version").unwrap()["b"], "0.0.2");
    assert_eq!(
        changed("cloud_properties.disk_format").unwrap()["a"],
        "qcow2"
    );
    assert!(changed("api_version").is_none());
    assert_eq!(d["packages"]["upgraded"][0]["name"], "bash");
    assert_eq!(d["packages"]["upgraded"][0]["to"], "5.2.15-2+b1");
    assert_eq!(d["packages"]["added"][0]["name"], "bar");
    assert_eq!(d["packages"]["removed"][0]["name"], "foo");
    assert_eq!(d["sbom"]["removed"][0]["name"], "foo");
    assert_eq!(d["sizes"]["b"]["disks"][0]["virtual_size"], 32 << 20);
    let f = &d["files"];
    let paths = |k: &str| -> Vec<String> {
        f[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(paths("added"), ["/etc/added"]);
    // etc, usr, usr/bin, lost+found, and the files.
    assert_eq!(
        (f["count_a"].as_u64(), f["count_b"].as_u64()),
        (Some(8), Some(8))
    );
    assert_eq!(paths("removed"), ["/etc/removed"]);
    assert_eq!(
        paths("changed"),
        ["/etc/hostname", "/etc/link", "/usr/bin/tool"]
    );
    let tool = &f["changed"][2];
    assert_eq!(
        (tool["a"]["mode"].as_str(), tool["b"]["mode"].as_str()),
        (Some("0755"), Some("0700"))
    );
    assert_eq!(
        (tool["a"]["uid"].as_u64(), tool["b"]["uid"].as_u64()),
        (Some(0), Some(1000))
    );
    let host = &f["changed"][0];
    assert_ne!(host["a"]["digest"], host["b"]["digest"]);
    assert!(host["a"]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(f["changed"][1]["b"]["digest"], "-> added");
    // The text report says the same.
    let (ok, text, _) = run(bin().arg("diff").arg("--files").arg(&ta).arg(&tb));
    assert!(ok);
    for line in [
        "^ bash 5.2.15-2 -> 5.2.15-2+b1",
        "+ bar 2.0-1",
        "- foo 1.0-1",
        "+ /etc/added",
        "~ /usr/bin/tool: mode 0755 -> 0700, owner 0:0 -> 1000:1000",
        "~ /etc/hostname: content",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    // Without --files there is no file list; a missing file is one clear line.
    let (_, out, _) = run(bin().arg("diff").arg("--json").arg(&ta).arg(&ta));
    let same = json(&out);
    assert!(same["files"].is_null() && same["manifest"].as_array().unwrap().is_empty());
    let (ok, _, err) = run(bin().arg("diff").arg(&ta).arg(t.path().join("nope.tgz")));
    assert!(
        !ok && err.contains("nope.tgz: cannot open") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn verify_and_inspect_json() {
    let t = tempfile::tempdir().unwrap();
    let disk = ext4_disk(t.path(), "a", "mkdir etc");
    let tgz = package(t.path(), &disk, "0.0.1", "raw", PACKAGES_A);
    let (ok, out, err) = run(bin().arg("verify").arg("--json").arg(&tgz));
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
    assert!(err.is_empty(), "human text stays off with --json: {err}");
    let (ok, out, _) = run(bin().arg("inspect").arg("--json").arg(&tgz));
    assert!(ok);
    let i = json(&out);
    assert_eq!(i["operating_system"], "debian-bookworm");
    assert_eq!(i["cloud_properties"]["disk_format"], "raw");
    assert_eq!(i["image"]["members"][0]["name"], "root.img");
    assert_eq!(i["image"]["sha1_matches_manifest"], true);
    let sha256 = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&tgz).unwrap())
    );
    assert_eq!(i["tarball"]["sha256"], sha256);
    // A corrupt file: still one JSON document, ok false, exit status 1.
    std::fs::write(t.path().join("bad.tgz"), b"not a stemcell").unwrap();
    let (ok, out, _) = run(bin()
        .arg("verify")
        .arg("--json")
        .arg(t.path().join("bad.tgz")));
    let v = json(&out);
    assert!(
        !ok && v["ok"] == false && v["errors"][0].as_str().unwrap().contains("not a gzip file")
    );
}

#[test]
fn plan_keys_the_agent_it_will_install_and_takes_the_os_from_the_image() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path().join("work");
    // Without --agent the agent is the pinned official release: its stage has a key already.
    let (ok, out, err) = run(bin()
        .args([
            "plan",
            "--os",
            "debian-bookworm",
            "--infrastructure",
            "openstack",
            "--json",
            "--work-dir",
        ])
        .arg(&w));
    assert!(ok, "{err}");
    let agent_key = |out: &str| {
        let p = json(out);
        let stages = p["plans"][0]["stages"].as_array().unwrap().clone();
        let s = stages
            .iter()
            .find(|s| s["name"] == "bosh-go-agent")
            .expect("bosh-go-agent stage")
            .clone();
        s["key"].as_str().map(str::to_string)
    };
    let pinned_key = agent_key(&out).expect("the pinned agent gives the stage a key");
    let agent =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/standin-agent/bosh-agent");
    let digest = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&agent).unwrap())
    );
    let (ok, out, err) = run(bin()
        .args([
            "plan",
            "--os",
            "debian-bookworm",
            "--infrastructure",
            "openstack",
            "--json",
            "--agent",
        ])
        .arg(&agent)
        .args(["--agent-sha256", &digest, "--work-dir"])
        .arg(&w));
    assert!(ok, "{err}");
    let p = json(&out);
    let stages = p["plans"][0]["stages"].as_array().unwrap();
    assert!(
        stages
            .iter()
            .all(|s| s["key"].is_string() && s["status"] == "to run"),
        "{out}"
    );
    assert_eq!(p["plans"][0]["infrastructure"], "openstack");
    assert_ne!(
        agent_key(&out).unwrap(),
        pinned_key,
        "another agent binary must change the agent stage's key"
    );
    // An OS image names its OS: plan and build take it, and refuse a contradicting --os.
    let img = t.path().join("os.tgz");
    {
        let f = std::fs::File::create(&img).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::fast(),
        ));
        let text = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "./usr/lib/os-release", &text[..])
            .unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    let (ok, out, err) = run(bin()
        .args([
            "plan",
            "--infrastructure",
            "openstack",
            "--json",
            "--os-image",
        ])
        .arg(&img)
        .arg("--work-dir")
        .arg(&w));
    assert!(ok, "{err}");
    let p = json(&out);
    assert_eq!(p["os"], "debian-bookworm");
    let stages = p["plans"][0]["stages"].as_array().unwrap();
    assert_eq!(stages[0]["phase"], "import");
    assert!(
        stages[1..].iter().all(|s| s["phase"] == "stemcell"),
        "{out}"
    );
    let out_dir = t.path().join("out");
    let (ok, _, err) = run(bin()
        .args([
            "build",
            "--os",
            "ubuntu-noble",
            "--infrastructure",
            "openstack",
            "--version",
            "1",
            "--os-image",
        ])
        .arg(&img)
        .arg("-o")
        .arg(&out_dir));
    assert!(!ok && err.lines().count() == 1, "{err}");
    assert!(
        err.contains("--os ubuntu-noble contradicts --os-image") && err.contains("debian-bookworm"),
        "{err}"
    );
    assert!(!out_dir.exists());
}

#[test]
fn help_names_come_from_the_data_directories() {
    let t = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(t.path().join("stages/os")).unwrap();
    std::fs::create_dir_all(t.path().join("infrastructures")).unwrap();
    for f in std::fs::read_dir(src.join("stages/os")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), t.path().join("stages/os").join(f.file_name())).unwrap();
    }
    std::fs::write(
        t.path().join("infrastructures/zzcloud.yaml"),
        "name: zzcloud\n",
    )
    .unwrap();
    let (ok, out, _) = run(bin()
        .env("STEMCELL_HOME", t.path())
        .args(["build", "--help"]));
    assert!(ok);
    assert!(
        out.contains("Infrastructures (infrastructures/*.yaml): zzcloud"),
        "{out}"
    );
    assert!(
        out.contains("debian-bookworm, debian-trixie, ubuntu-jammy, ubuntu-noble"),
        "{out}"
    );
    let (_, out, _) = run(bin().args(["verify", "--help"]));
    assert!(out.contains("Examples:\n  stemcell verify "), "{out}");
}

#[test]
fn outputs_get_their_directory() {
    let t = tempfile::tempdir().unwrap();
    let disk = ext4_disk(t.path(), "a", "mkdir etc");
    let out = t.path().join("new/dir/root.qcow2");
    let (ok, _, err) = run(bin()
        .args(["convert", "--format", "qcow2"])
        .arg(&disk)
        .arg(&out));
    assert!(ok && out.is_file(), "{err}");
}

#[test]
fn cache_list_and_prune_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    let layers = w.join("layers");
    for (key, stage) in [("aaa111", "base"), ("bbb222", "base")] {
        std::fs::create_dir_all(layers.join(key)).unwrap();
        std::fs::write(layers.join(key).join("f"), vec![1u8; 50_000]).unwrap();
        std::fs::write(layers.join(format!("{key}.done")), b"").unwrap();
        std::fs::write(
            layers.join(format!("{key}.json")),
            format!("{{\"os\":\"debian-bookworm\",\"phase\":\"os-image\",\"stage\":\"{stage}\"}}"),
        )
        .unwrap();
    }
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 86_400);
    std::fs::File::options()
        .append(true)
        .open(layers.join("aaa111.done"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (ok, out, err) = run(bin().args(["cache", "list", "--work-dir"]).arg(w));
    assert!(ok, "{err}");
    assert!(
        out.contains("debian-bookworm") && out.contains("base") && out.contains("aaa111"),
        "{out}"
    );
    let (ok, out, _) = run(bin().args(["cache", "list", "--json", "--work-dir"]).arg(w));
    assert!(ok && json(&out)["layers"].as_array().unwrap().len() == 2);
    // While a build holds the work-dir lock, nothing is removed.
    let lock = std::fs::File::create(w.join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let (ok, _, err) = run(bin()
        .args(["cache", "prune", "--keep-latest", "1", "--work-dir"])
        .arg(w));
    assert!(
        !ok && err.contains("another build is using this work directory")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(layers.join("aaa111.done").exists());
    drop(held);
    let (ok, out, err) = run(bin()
        .args([
            "cache",
            "prune",
            "--keep-latest",
            "1",
            "--older-than",
            "1",
            "--work-dir",
        ])
        .arg(w));
    assert!(ok, "{err}");
    assert!(
        out.contains("removed layer aaa111") && !out.contains("bbb222"),
        "{out}"
    );
    assert!(!layers.join("aaa111").exists() && layers.join("bbb222.done").exists());
    let (ok, _, err) = run(bin().args(["cache", "prune", "--work-dir"]).arg(w));
    assert!(
        !ok && err.contains("give --keep-latest N, --older-than DAYS"),
        "{err}"
    );
}

/// A file that is not a tar (here a gzipped text file, then plain bytes) given where a
/// stemcell or an OS image belongs: one line naming the file and the problem, and none of the
/// file's own bytes (the tar crate's header errors quote them, line breaks included).
#[test]
fn files_that_are_not_tars_get_one_line_without_their_bytes() {
    let t = tempfile::tempdir().unwrap();
    let text = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
    std::fs::write(t.path().join("passwd"), text).unwrap();
    sh("gzip -k passwd && mv passwd.gz passwd.tgz", t.path());
    let gz = t.path().join("passwd.tgz");
    let plain = t.path().join("passwd");
    let out = t.path().join("out");
    let cases: Vec<(&str, Vec<&std::ffi::OsStr>)> = vec![
        ("inspect", vec!["inspect".as_ref(), gz.as_ref()]),
        ("diff", vec!["diff".as_ref(), gz.as_ref(), gz.as_ref()]),
        ("boot", vec!["boot".as_ref(), gz.as_ref()]),
        (
            "light",
            vec![
                "light".as_ref(),
                "--from".as_ref(),
                gz.as_ref(),
                "--image-id".as_ref(),
                "ami-1".as_ref(),
                "-o".as_ref(),
                out.as_ref(),
            ],
        ),
        ("test-image gzip", vec!["test-image".as_ref(), gz.as_ref()]),
        (
            "test-image plain",
            vec!["test-image".as_ref(), plain.as_ref()],
        ),
        (
            "plan",
            vec![
                "plan".as_ref(),
                "--os-image".as_ref(),
                gz.as_ref(),
                "--infrastructure".as_ref(),
                "openstack".as_ref(),
            ],
        ),
    ];
    for (what, args) in cases {
        let (ok, _, err) = run(bin().args(&args));
        let file = args
            .iter()
            .find(|a| a.to_string_lossy().contains("passwd"))
            .unwrap();
        assert!(!ok, "{what}: accepted");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(
            err.contains(&*file.to_string_lossy()),
            "{what}: names the file: {err}"
        );
        assert!(
            err.contains("tar") && !err.contains("daemon") && !err.contains("/bin/bash"),
            "{what}: {err}"
        );
    }
    assert!(!out.exists(), "light left its output directory behind");
    // The directory is still made once the heavy stemcell is good.
    let disk = ext4_disk(t.path(), "a", "mkdir etc");
    let heavy = package(t.path(), &disk, "0.0.1", "raw", PACKAGES_A);
    let (ok, _, err) = run(bin()
        .arg("light")
        .arg("--from")
        .arg(&heavy)
        .args(["--image-id", "1234", "-o"])
        .arg(out.join("new")));
    assert!(
        ok && std::fs::read_dir(out.join("new")).unwrap().count() == 1,
        "{err}"
    );
}

/// `os-image` judges its output and work directories before the first stage: a file where a
/// directory must be is one line at once, not a failed export after every stage has run.
#[test]
fn os_image_refuses_a_file_where_a_directory_goes_before_building() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let work = t.path().join("work");
    for (out, work_dir, expect) in [
        (
            file.join("os.tgz"),
            &work,
            "not a directory (the output directory)",
        ),
        (
            t.path().join("out/os.tgz"),
            &file,
            "not a directory (the work directory)",
        ),
    ] {
        let started = std::time::Instant::now();
        let (ok, _, err) = run(bin()
            .args(["os-image", "--os", "debian-bookworm", "-o"])
            .arg(&out)
            .arg("--work-dir")
            .arg(work_dir));
        assert!(!ok && err.lines().count() == 1, "{err}");
        assert!(
            err.contains(&format!("{}: {expect}", file.display())),
            "{err}"
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "refused only after building"
        );
        assert!(!work.exists() && !t.path().join("out").exists());
    }
}

/// `package --arch` names the stemcell and its cloud_properties.architecture, so it must be the
/// disk's own: read from the ELF header of the root filesystem's dash.
#[test]
fn package_refuses_an_arch_the_disk_is_not() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: the test disk's dash is the host's, and this host is not amd64");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let disk = ext4_disk(
        t.path(),
        "a",
        "mkdir -p usr/bin && cp /usr/bin/dash usr/bin/",
    );
    let out = t.path().join("out");
    let (ok, _, err) = run(bin()
        .args([
            "package",
            "--infrastructure",
            "openstack",
            "--os",
            "debian-bookworm",
        ])
        .args([
            "--arch",
            "arm64",
            "--version",
            "1",
            "--disk-format",
            "raw",
            "--disk",
        ])
        .arg(&disk)
        .arg("-o")
        .arg(&out));
    assert!(!ok && err.lines().count() == 1, "{err}");
    assert!(
        err.contains("a.raw: an amd64 disk (its /usr/bin/dash), packed as --arch arm64"),
        "{err}"
    );
    assert!(!out.exists());
    // The disk's own architecture packs.
    let tgz = package(t.path(), &disk, "1", "raw", "");
    assert!(tgz.is_file());
}
