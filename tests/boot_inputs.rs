//! `stemcell boot` refuses what it cannot boot with one line and leaves nothing behind: a light
//! stemcell, a warden stemcell, a host without QEMU, a port in use, and a disk whose agent.json
//! names a settings source the tool cannot serve (Azure's File source). Cheap: no build, no
//! VM; the last one makes a small disk with sfdisk and mke2fs -d.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn stemcell() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stemcell"))
}

/// Writes a stemcell tarball with `manifest` and, as `image`, a gzip tar of `disk` (or an
/// empty image).
fn fake_stemcell(dir: &Path, name: &str, manifest: &str, disk: Option<&Path>) -> PathBuf {
    let tree = dir.join(format!("{name}.tree"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("stemcell.MF"), manifest).unwrap();
    match disk {
        Some(d) => {
            let ok = Command::new("tar")
                .arg("-czf")
                .arg(tree.join("image"))
                .arg("-C")
                .arg(d.parent().unwrap())
                .arg(d.file_name().unwrap())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        None => std::fs::write(tree.join("image"), b"").unwrap(),
    }
    let out = dir.join(format!("{name}.tgz"));
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&tree)
        .args(["stemcell.MF", "image"])
        .status()
        .unwrap();
    assert!(ok.success());
    out
}

fn manifest(name: &str, formats: &str) -> String {
    format!(
        "---\nname: {name}\nversion: '0.0.1'\nbosh_protocol: 1\napi_version: 3\noperating_system: debian-bookworm\nsha1: {}\nstemcell_formats: [{formats}]\ncloud_properties:\n  name: {name}\n  version: '0.0.1'\n",
        "0".repeat(40)
    )
}

/// Runs `stemcell boot` with `args`; returns its stderr after checking it failed with one line
/// and left the work directory empty.
fn refused(work: &Path, args: &[&str], path_env: Option<&Path>) -> String {
    let mut cmd = stemcell();
    cmd.arg("boot")
        .args(args)
        .arg("--work-dir")
        .arg(work)
        .args(["--accel", "tcg"]);
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.ends_with(": azure, reading its disk"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert_eq!(
        std::fs::read_dir(work).unwrap().count(),
        0,
        "nothing left in {}",
        work.display()
    );
    err
}

#[test]
fn light_and_warden_stemcells_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let light = fake_stemcell(
        tmp.path(),
        "light",
        &manifest("bosh-openstack-kvm-debian-bookworm", "openstack-light"),
        None,
    );
    let e = refused(&work, &[light.to_str().unwrap()], None);
    assert!(e.contains("light stemcell"), "{e}");
    let warden = fake_stemcell(
        tmp.path(),
        "warden",
        &manifest("bosh-warden-boshlite-debian-bookworm", "warden-tar"),
        None,
    );
    let e = refused(&work, &[warden.to_str().unwrap()], None);
    assert!(e.contains("warden"), "{e}");
    let e = refused(
        &work,
        &[tmp.path().join("missing.tgz").to_str().unwrap()],
        None,
    );
    assert!(e.contains("missing.tgz"), "{e}");
}

/// A file where the work directory or the serial log's directory goes, and sizes QEMU cannot
/// use, are refused before the stemcell's disk is read.
#[test]
fn unusable_directories_and_sizes_are_refused_first() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let sc = fake_stemcell(
        tmp.path(),
        "openstack",
        &manifest("bosh-openstack-kvm-debian-bookworm", "openstack-qcow2"),
        None,
    );
    let sc = sc.to_str().unwrap();
    let log = file.join("serial.log");
    let e = refused(&work, &[sc, "--serial-log", log.to_str().unwrap()], None);
    assert!(
        e.contains(&format!(
            "{}: not a directory (the serial log's directory)",
            file.display()
        )),
        "{e}"
    );
    let out = stemcell()
        .args(["boot", sc, "--work-dir"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.lines().count() == 1, "{err}");
    assert!(
        err.contains("not a directory (the work directory)"),
        "{err}"
    );
    for (flag, value) in [("--mem", "0"), ("--smp", "0"), ("--timeout", "0")] {
        let out = stemcell().args(["boot", sc, flag, value]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(flag),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn a_missing_qemu_and_a_port_in_use_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let heavy = fake_stemcell(
        tmp.path(),
        "os",
        &manifest("bosh-openstack-kvm-debian-bookworm", "openstack-qcow2"),
        None,
    );

    // A PATH with every tool but QEMU's system emulator.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "qemu-img",
        "openssl",
        "curl",
        "ssh",
        "ssh-keygen",
        "genisoimage",
        "tar",
        "gzip",
    ] {
        for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
            let p = Path::new(dir).join(tool);
            if p.exists() {
                let _ = std::os::unix::fs::symlink(&p, bin.join(tool));
                break;
            }
        }
    }
    let e = refused(&work, &[heavy.to_str().unwrap()], Some(&bin));
    assert!(
        e.contains("qemu-system-x86_64") && e.contains("qemu-system-x86"),
        "{e}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let e = refused(
        &work,
        &[heavy.to_str().unwrap(), "--mbus-port", &port],
        None,
    );
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("--mbus-port"),
        "{e}"
    );
}

/// A 64 MiB MBR disk (no boot loader) whose one Linux partition holds `agent_json`, packed as
/// a raw-disk stemcell named `name`.
fn stemcell_with_agent_json(dir: &Path, name: &str, agent_json: &serde_json::Value) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    std::fs::create_dir_all(root.join("var/vcap/bosh")).unwrap();
    std::fs::write(
        root.join("var/vcap/bosh/agent.json"),
        agent_json.to_string(),
    )
    .unwrap();
    let disk_dir = dir.join(format!("{name}.disk"));
    std::fs::create_dir_all(&disk_dir).unwrap();
    let disk = disk_dir.join("root.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&disk)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, type=83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let ok = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-d"])
        .arg(&root)
        .args(["-E", "offset=1048576"])
        .arg(&disk)
        .arg("60M")
        .status()
        .unwrap();
    assert!(ok.success());
    let infrastructure = name.split('-').nth(1).unwrap();
    fake_stemcell(
        dir,
        name,
        &manifest(name, &format!("{infrastructure}-raw")),
        Some(&disk),
    )
}

#[test]
fn an_agent_json_with_no_source_the_tool_serves_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let config = json!({
        "Platform": { "Linux": { "DevicePathResolutionType": "scsi" } },
        "Infrastructure": { "Settings": { "Sources": [
            { "Type": "File", "SettingsPath": "/var/lib/cloud/instance/user-data.txt" } ] } }
    });
    let azure = stemcell_with_agent_json(tmp.path(), "bosh-azure-hyperv-debian-bookworm", &config);
    let e = refused(&work, &[azure.to_str().unwrap()], None);
    assert!(
        e.contains("no settings source this tool can serve") && e.contains("File"),
        "{e}"
    );
}

/// QEMU processes whose command line mentions `needle`.
fn qemus_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("qemu-system-x86_64") && c.contains(needle))
        .count()
}

/// A boot that times out (the disk has no boot loader, so no agent ever answers) and a boot
/// stopped with SIGINT both leave no QEMU, no port in use and no temporary file.
#[test]
fn a_timeout_and_ctrl_c_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let config = json!({
        "Platform": { "Linux": {} },
        "Infrastructure": { "Settings": { "Sources": [
            { "Type": "ConfigDrive", "DiskPaths": ["/dev/disk/by-label/config-2"],
              "MetaDataPath": "ec2/latest/meta-data.json", "UserDataPath": "ec2/latest/user-data" } ] } }
    });
    let openstack =
        stemcell_with_agent_json(tmp.path(), "bosh-openstack-kvm-debian-bookworm", &config);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serial = tmp.path().join("serial.log");
    let boot = |extra: &[&str]| {
        let mut cmd = stemcell();
        cmd.arg("boot").arg(&openstack).args([
            "--accel",
            "tcg",
            "--mem",
            "256",
            "--smp",
            "1",
            "--disk-grow",
            "0",
        ]);
        cmd.args(["--mbus-port", &port.to_string(), "--serial-log"])
            .arg(&serial)
            .arg("--work-dir")
            .arg(&work)
            .args(extra);
        cmd
    };

    let out = boot(&["--ping", "--timeout", "8"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("did not answer ping within 8s"), "{err}");
    assert!(
        err.contains("--- last lines of the serial console"),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(&serial)
            .unwrap()
            .contains("SeaBIOS"),
        "the console was written"
    );
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "temporary files left"
    );
    assert_eq!(
        qemus_with(&work.display().to_string()),
        0,
        "QEMU left running"
    );
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the mbus port is free again");

    let mut child = boot(&["--timeout", "300"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while qemus_with(&work.display().to_string()) == 0 {
        assert!(started.elapsed().as_secs() < 120, "QEMU never started");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    nix_kill(child.id());
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "temporary files left"
    );
    assert_eq!(
        qemus_with(&work.display().to_string()),
        0,
        "QEMU left running"
    );
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the mbus port is free again");
}

fn nix_kill(pid: u32) {
    assert!(Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}
