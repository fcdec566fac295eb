//! End to end: `stemcell build` of debian-bookworm stemcells from the real mirror (the mirror the
//! host's apt sources name), checked with independent tools, booted with `stemcell boot --ping`
//! as each cloud would boot them with the real BOSH agent, rebuilt for byte-identity, and fed bad
//! inputs. Needs root and the Debian mirror.
//!
//! One build serves every test (openstack, vsphere, cloudstack, aws and google in one
//! invocation); its work directory lives under `target/` so reruns start from the layer cache.
//! The agent is the real one (`../shared/bosh-agent/bosh-agent`, or `STEMCELL_TEST_AGENT`);
//! where it is absent the build uses the stand-in agent and the boots are skipped.

#[path = "common/e2e.rs"]
mod e2e;

use anyhow::Result;
use e2e::{
    e2e_dir, manifest_dir, root_fs_spec, run, sha256_file, standin_agent, standin_dav_cli,
    stemcell, VERSION,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The one place this suite runs `stemcell build`.
fn build_into(out: &Path, infrastructures: &[&str], keep_disks: bool) -> Result<String> {
    let mut cmd = e2e::build_command(
        "debian-bookworm",
        infrastructures,
        &e2e_dir().join("work"),
        out,
    );
    if keep_disks {
        cmd.arg("--keep-disks");
    }
    run(&mut cmd)
}

/// The one shared build: (output directory, the build's printed report).
fn built() -> &'static (PathBuf, String) {
    static BUILT: OnceLock<(PathBuf, String)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = e2e_dir().join("out");
        let _ = std::fs::remove_dir_all(&out);
        let started = std::time::Instant::now();
        let report = build_into(
            &out,
            &["openstack", "vsphere", "cloudstack", "aws", "google"],
            true,
        )
        .expect("stemcell build");
        eprintln!("build took {:?}\n{report}", started.elapsed());
        (out, report)
    })
}

/// One test at a time after the shared build: their temporary disks never add up (the suite
/// must fit on a CI machine's disk), and two TCG guests on a 2-core machine never starve each
/// other.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

const OPENSTACK: &str = "bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz";
const OPENSTACK_RAW: &str = "bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm-raw.tgz";
const VSPHERE: &str = "bosh-stemcell-0.0.1-vsphere-esxi-debian-bookworm.tgz";
const CLOUDSTACK: &str = "bosh-stemcell-0.0.1-cloudstack-xen-debian-bookworm.tgz";
const AWS: &str = "bosh-stemcell-0.0.1-aws-xen-hvm-debian-bookworm.tgz";
const GOOGLE: &str = "bosh-stemcell-0.0.1-google-kvm-debian-bookworm.tgz";

/// Extracts the disk `disk` of a stemcell's `image` member (a gzip tar inside the gzip tar
/// `stemcell`) into `dir`, streamed (no copy of `image` on disk) and sparse (a raw disk's
/// zeros take no space): the suite must fit on a CI machine's disk.
fn extract_disk(stemcell: &Path, disk: &str, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let out = dir.join(disk);
    let script = "tar -xzOf \"$1\" image | tar -xzOf - \"$2\" | dd of=\"$3\" bs=1M iflag=fullblock conv=sparse status=none";
    run(Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", script, "sh"])
        .arg(stemcell)
        .arg(disk)
        .arg(&out))?;
    Ok(out)
}

#[test]
fn build_writes_verified_stemcells_with_the_official_layout() -> Result<()> {
    let (out, report) = built();
    let _one = one_at_a_time();
    for name in [OPENSTACK, OPENSTACK_RAW, VSPHERE, CLOUDSTACK, AWS, GOOGLE] {
        let tgz = out.join(name);
        assert!(tgz.is_file(), "{name} missing; report:\n{report}");
        assert!(report.contains(name), "the build names {name}");
        run(stemcell().arg("verify").arg(&tgz))?;
    }
    assert!(report.contains("=== Build duration report"), "{report}");

    // Manifest fields (bosh-linux-stemcell-builder bosh-stemcell/lib/bosh/stemcell/stemcell_packager.rb).
    let mf = run(Command::new("tar")
        .arg("-xzOf")
        .arg(out.join(OPENSTACK))
        .arg("stemcell.MF"))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&mf)?;
    assert_eq!(
        v["name"].as_str(),
        Some("bosh-openstack-kvm-debian-bookworm")
    );
    assert_eq!(v["version"].as_str(), Some(VERSION));
    assert_eq!(v["api_version"].as_u64(), Some(3));
    assert_eq!(v["operating_system"].as_str(), Some("debian-bookworm"));
    assert_eq!(v["cloud_properties"]["disk_format"].as_str(), Some("qcow2"));
    assert_eq!(
        v["cloud_properties"]["auto_disk_config"].as_bool(),
        Some(true)
    );
    assert_eq!(v["cloud_properties"]["disk"].as_u64(), Some(5120));
    let packages = run(Command::new("tar")
        .arg("-xzOf")
        .arg(out.join(OPENSTACK))
        .arg("packages.txt"))?;
    assert!(
        packages.contains("ii  linux-image-amd64"),
        "packages.txt lists the kernel"
    );

    let tmp = tempfile::Builder::new()
        .prefix("verify.")
        .tempdir_in(e2e_dir())?;
    // The VMDK against the raw disk it was made from; first, so the kept disks go early.
    let vdir = tmp.path().join("vs");
    std::fs::create_dir_all(&vdir)?;
    run(Command::new("bash")
        .args([
            "-e",
            "-o",
            "pipefail",
            "-c",
            "tar -xzOf \"$1\" image | tar -xzf - -C \"$2\"",
            "sh",
        ])
        .arg(out.join(VSPHERE))
        .arg(&vdir))?;
    // The build kept its raw disks (--keep-disks) for this comparison; they go once compared.
    let disks = e2e_dir().join("work/disks");
    let compared = run(Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "vmdk"])
        .arg(disks.join("vsphere.raw"))
        .arg(vdir.join("image-disk1.vmdk")));
    let _ = std::fs::remove_dir_all(&disks);
    compared?;
    let schema = manifest_dir().join("tests/data/ovf-schema/ovf-envelope.xsd");
    run(Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&schema)
        .arg(vdir.join("image.ovf")))?;
    let ovf = std::fs::read_to_string(vdir.join("image.ovf"))?;
    assert!(ovf.contains(r#"vmw:value="efi""#), "vSphere boots UEFI");
    std::fs::remove_dir_all(&vdir)?;

    // The raw disk, as the `-raw` stemcell ships it: MBR, ESP first, root last (docs/agent-needs.md
    // "Disk layout").
    let raw = extract_disk(
        &out.join(OPENSTACK_RAW),
        "root.img",
        &tmp.path().join("raw"),
    )?;
    let layout = run(Command::new("sfdisk").arg("-d").arg(&raw))?;
    assert!(layout.contains("label: dos"), "{layout}");
    let parts: Vec<&str> = layout.lines().filter(|l| l.contains(" : start=")).collect();
    assert_eq!(parts.len(), 2, "{layout}");
    assert!(
        parts[0].contains("type=ef") && parts[0].contains("bootable"),
        "{layout}"
    );
    assert!(parts[1].contains("type=83"), "{layout}");
    let root_fs = root_fs_spec(&raw, &layout)?;
    run(Command::new("e2fsck").args(["-f", "-n"]).arg(&root_fs))?;

    // Each format is the raw disk, read by qemu-img.
    let root_img = extract_disk(&out.join(OPENSTACK), "root.img", &tmp.path().join("os"))?;
    let info = run(Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&root_img))?;
    assert!(info.contains("\"compat\": \"0.10\""), "{info}");
    run(Command::new("qemu-img")
        .args(["check", "-q"])
        .arg(&root_img))?;
    run(Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
        .arg(&raw)
        .arg(&root_img))?;
    std::fs::remove_file(&root_img)?;

    // The OS-image parity checks still hold on the root filesystem as shipped: copied out of
    // the disk's ext4 (debugfs, no mount) and checked by `test-image`. debugfs drops setuid
    // bits when it copies, so those are read from the filesystem itself.
    let sudo = run(Command::new("debugfs")
        .args(["-R", "stat /usr/bin/sudo"])
        .arg(&root_fs))?;
    assert!(sudo.contains("Mode:  04755"), "sudo is setuid root: {sudo}");
    let files = tmp.path().join("root");
    std::fs::create_dir_all(&files)?;
    run(Command::new("debugfs")
        .args(["-R", &format!("rdump / {}", files.display())])
        .arg(&root_fs))?;
    std::fs::remove_file(&raw)?;
    let checks = run(stemcell().arg("test-image").arg(&files))?;
    assert!(checks.contains(" 0 failed"), "{checks}");

    // Each blobstore CLI given is installed under its official name.
    for cli in ["dav", "gcs", "s3", "azure-storage"] {
        let path = files.join(format!("var/vcap/bosh/bin/bosh-blobstore-{cli}"));
        assert_eq!(
            std::fs::read(&path)?,
            std::fs::read(standin_dav_cli())?,
            "{}",
            path.display()
        );
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o755
        );
    }
    Ok(())
}

#[test]
fn rebuild_with_source_date_epoch_is_byte_identical() -> Result<()> {
    let (out, _) = built();
    let _one = one_at_a_time();
    let again = e2e_dir().join("out-again");
    let _ = std::fs::remove_dir_all(&again);
    build_into(&again, &["openstack"], false)?;
    e2e::assert_rebuild_identical(&out, &again, &[OPENSTACK, OPENSTACK_RAW])
}

/// `stemcell boot --ping` of one stemcell of the shared build (see e2e::boot_and_ping).
fn boot_and_ping(
    name: &str,
    firmware: Option<&str>,
    source: &str,
    requests: &[&str],
) -> Result<()> {
    let (out, _) = built();
    let _one = one_at_a_time();
    e2e::boot_and_ping(&out.join(name), firmware, source, requests)
}

#[test]
fn openstack_boots_under_seabios_and_the_real_agent_answers_over_the_config_drive_settings(
) -> Result<()> {
    boot_and_ping(OPENSTACK, Some("bios"), "config drive", &[])
}

#[test]
fn openstack_boots_under_ovmf_and_the_real_agent_answers() -> Result<()> {
    boot_and_ping(OPENSTACK, Some("uefi"), "config drive", &[])
}

#[test]
fn vsphere_boots_with_its_env_cdrom_and_the_real_agent_answers() -> Result<()> {
    boot_and_ping(VSPHERE, None, "CD-ROM /dev/sr0 with `env`", &[])
}

#[test]
fn cloudstack_boots_with_its_metadata_service_and_the_real_agent_answers() -> Result<()> {
    boot_and_ping(
        CLOUDSTACK,
        None,
        "169.254.169.254:39724",
        &["GET /latest/user-data 200"],
    )
}

#[test]
fn aws_boots_on_nvme_with_imdsv2_and_the_real_agent_answers() -> Result<()> {
    boot_and_ping(
        AWS,
        None,
        "(IMDSv2)",
        &["PUT /latest/api/token 200", "GET /latest/user-data 200"],
    )
}

#[test]
fn google_boots_with_its_metadata_server_and_the_real_agent_answers() -> Result<()> {
    boot_and_ping(
        GOOGLE,
        None,
        "InstanceMetadata metadata at 169.254.169.254:80",
        &["GET /computeMetadata/v1/instance/attributes/bosh_settings 200"],
    )
}

/// Bad inputs are refused before any stage runs, with one line naming the problem.
#[test]
fn bad_build_inputs_are_refused_with_one_line() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let agent = standin_agent();
    let base = |cmd: &mut Command| {
        cmd.args([
            "build",
            "--version",
            "1",
            "--os",
            "debian-bookworm",
            "--no-blobstore-clis",
            "--work-dir",
        ])
        .arg(tmp.path().join("work"))
        .arg("-o")
        .arg(tmp.path().join("out"));
    };
    let stderr_of = |cmd: &mut Command| -> String {
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{cmd:?} succeeded");
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
        e
    };

    // An unknown OS, an OS not built for the architecture and a bad version are refused before
    // anything is made or fetched: no agent given and downloads refused, yet the error is
    // about the input.
    for (os, arch, version, expect) in [
        ("nosuch", "amd64", "1", "unknown OS `nosuch`"),
        ("ubuntu-jammy", "arm64", "1", "is not built for arm64"),
        (
            "debian-bookworm",
            "amd64",
            "1 2",
            "only [-0-9A-Za-z_+.] are allowed",
        ),
    ] {
        let mut c = stemcell();
        c.args(["build", "--version", version, "--os", os, "--arch", arch])
            .args(["--infrastructure", "openstack", "--work-dir"])
            .arg(tmp.path().join("work"))
            .arg("-o")
            .arg(tmp.path().join("out"))
            .env("https_proxy", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9");
        let e = stderr_of(&mut c);
        assert!(e.contains(expect), "{e}");
        assert!(!tmp.path().join("out").exists() && !tmp.path().join("work").exists());
    }

    // So are a malformed digest, a tarball already there (not after every stage and the disk)
    // and an output or work directory that is a file.
    let existing = tmp.path().join("existing");
    std::fs::create_dir_all(&existing)?;
    std::fs::write(
        existing.join("bosh-stemcell-1-openstack-kvm-debian-bookworm-raw.tgz"),
        "",
    )?;
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "")?;
    let (out, work, good) = (
        tmp.path().join("out"),
        tmp.path().join("work"),
        sha256_file(&agent),
    );
    for (sha, out_dir, work_dir, expect) in [
        (
            "00",
            &out,
            &work,
            "sha256 `00` is not 64 hexadecimal digits",
        ),
        (
            good.as_str(),
            &existing,
            &work,
            "-raw.tgz: output exists (use --force to overwrite)",
        ),
        (
            good.as_str(),
            &file,
            &work,
            "a-file: not a directory (the output directory)",
        ),
        (
            good.as_str(),
            &out,
            &file,
            "a-file: not a directory (the work directory)",
        ),
    ] {
        let mut c = stemcell();
        c.args([
            "build",
            "--version",
            "1",
            "--os",
            "debian-bookworm",
            "--no-blobstore-clis",
        ])
        .args(["--infrastructure", "openstack", "--agent"])
        .arg(&agent)
        .args(["--agent-sha256", sha, "--work-dir"])
        .arg(work_dir)
        .arg("-o")
        .arg(out_dir);
        let e = stderr_of(&mut c);
        assert!(e.contains(expect), "{e}");
        assert!(
            !out.exists() && !work.exists(),
            "{expect}: left a directory behind"
        );
    }
    assert_eq!(existing.read_dir()?.count(), 1);

    let mut c = stemcell();
    base(&mut c);
    c.args(["--infrastructure", "nimbus", "--agent"])
        .arg(&agent)
        .args(["--agent-sha256", &sha256_file(&agent)]);
    let e = stderr_of(&mut c);
    assert!(
        e.contains("nimbus") && e.contains("openstack") && e.contains("vsphere"),
        "{e}"
    );

    // A blobstore CLI without its digest; the error names the flag to add.
    let mut c = stemcell();
    base(&mut c);
    c.args(["--infrastructure", "openstack", "--agent"])
        .arg(&agent)
        .args(["--agent-sha256", &sha256_file(&agent)]);
    c.arg("--blobstore-s3").arg(standin_dav_cli());
    let e = stderr_of(&mut c);
    assert!(
        e.contains("bosh-blobstore-s3") && e.contains("--blobstore-s3-sha256"),
        "{e}"
    );

    // No blobstore flag and no opt-out: the pinned releases are fetched; offline (a proxy that
    // refuses), the build stops with one line naming the flags that replace them.
    let mut c = stemcell();
    c.args([
        "build",
        "--version",
        "1",
        "--os",
        "debian-bookworm",
        "--infrastructure",
        "openstack",
        "--work-dir",
    ])
    .arg(tmp.path().join("work"))
    .arg("-o")
    .arg(tmp.path().join("out"))
    .arg("--agent")
    .arg(&agent)
    .args(["--agent-sha256", &sha256_file(&agent)])
    .env("https_proxy", "http://127.0.0.1:9")
    .env("HTTPS_PROXY", "http://127.0.0.1:9");
    let e = stderr_of(&mut c);
    assert!(
        e.contains("bosh-blobstore-dav")
            && e.contains(
                "pass --blobstore-dav PATH --blobstore-dav-sha256 HEX, or --no-blobstore-clis"
            ),
        "{e}"
    );

    let wrong = "0".repeat(64);
    let mut c = stemcell();
    base(&mut c);
    c.args(["--infrastructure", "openstack", "--agent"])
        .arg(&agent)
        .args(["--agent-sha256", &wrong]);
    let e = stderr_of(&mut c);
    assert!(
        e.contains(&wrong) && e.contains(&sha256_file(&agent)),
        "both digests named: {e}"
    );

    // An OS image that is not one, and one with a path-traversal member.
    let notos = tmp.path().join("notos.tgz");
    std::fs::create_dir_all(tmp.path().join("t/etc"))?;
    std::fs::write(tmp.path().join("t/etc/hostname"), "x\n")?;
    run(Command::new("tar")
        .arg("-czf")
        .arg(&notos)
        .arg("-C")
        .arg(tmp.path().join("t"))
        .arg("."))?;
    let mut c = stemcell();
    base(&mut c);
    c.args(["--infrastructure", "openstack", "--agent"])
        .arg(&agent)
        .args(["--agent-sha256", &sha256_file(&agent)])
        .arg("--os-image")
        .arg(&notos);
    let e = stderr_of(&mut c);
    assert!(e.contains("os-release"), "{e}");

    let evil = tmp.path().join("evil.tgz");
    run(Command::new("tar")
        .arg("-czf")
        .arg(&evil)
        .arg("-P")
        .arg("--transform=s,^,../,")
        .arg("-C")
        .arg(tmp.path().join("t"))
        .arg("etc/hostname"))?;
    let mut c = stemcell();
    base(&mut c);
    c.args(["--infrastructure", "openstack", "--agent"])
        .arg(&agent)
        .args(["--agent-sha256", &sha256_file(&agent)])
        .arg("--os-image")
        .arg(&evil);
    let e = stderr_of(&mut c);
    assert!(e.contains(".."), "{e}");

    // Nothing left behind: no output, no partial layer, no mount under the work directory.
    assert!(!tmp
        .path()
        .join("out")
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(!mounts.contains(&tmp.path().to_string_lossy().to_string()));
    Ok(())
}

/// The official acceptance specs as `stemcell test-image` carries them (checks/): every stemcell
/// of the shared build, and the OS image exported from the same layer cache, pass every check
/// that applies; the not-applicable ones (Debian differs) are skipped with their reason.
#[test]
fn test_image_passes_on_each_stemcell() -> Result<()> {
    let (out, _) = built();
    let _heavy = one_at_a_time();
    let tmp = tempfile::tempdir_in(e2e_dir())?;
    let os_image = tmp.path().join("debian-bookworm.tgz");
    run(stemcell()
        .args(["os-image", "--os", "debian-bookworm", "--work-dir"])
        .arg(e2e_dir().join("work"))
        .arg("-o")
        .arg(&os_image))?;
    let mut images = vec![os_image.clone()];
    for name in [OPENSTACK, OPENSTACK_RAW, VSPHERE] {
        images.push(out.join(name));
    }
    for image in &images {
        e2e::assert_test_image_passes(image, tmp.path())?;
    }
    Ok(())
}
