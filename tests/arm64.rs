//! arm64 on this amd64 host: the debian-bookworm OS image is bootstrapped and staged from the
//! mirror with every chroot program emulated by the host's qemu-aarch64, registered in the
//! build's own user namespace only (src/rootfs/emulation.rs). The image is checked with
//! `stemcell test-image` (emulated too), and the host's binfmt_misc must be as it was. Then the
//! OpenStack and AWS stemcells are built on it with the real arm64 agent, verified, and the
//! OpenStack (virtio, config drive) and AWS (NVMe, IMDSv2) ones boot under
//! `qemu-system-aarch64 -M virt` with UEFI (AAVMF) until the agent answers ping; a rebuild of
//! the OpenStack stemcells on the same layers must give the same bytes.
//! Needs root, the Debian mirror and qemu-user (ci/install-host-packages.sh).

#[path = "common/e2e.rs"]
mod e2e;

use anyhow::Result;
use e2e::{e2e_dir, run, stemcell};
use std::process::Command;

/// The host's binfmt_misc registrations (empty when it is not mounted).
fn host_binfmt() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn arm64_os_image_and_stemcells_build_emulated_pass_their_checks_and_boot() -> Result<()> {
    let before = host_binfmt();
    std::fs::create_dir_all(e2e_dir())?;
    let out = e2e_dir().join("out-arm64");
    let _ = std::fs::remove_dir_all(&out);
    let tgz = out.join("debian-bookworm-arm64.tgz");
    let started = std::time::Instant::now();
    run(stemcell()
        .args([
            "os-image",
            "--os",
            "debian-bookworm",
            "--arch",
            "arm64",
            "--force",
            "--work-dir",
        ])
        .arg(e2e_dir().join("work-arm64"))
        .arg("-o")
        .arg(&tgz)
        .env("SOURCE_DATE_EPOCH", "1700000000"))?;
    eprintln!("arm64 OS image took {:?}", started.elapsed());
    assert_eq!(host_binfmt(), before, "the host's binfmt_misc changed");

    // arm64 programs and packages, not the host's.
    let packages = std::fs::read_to_string(out.join("debian-bookworm-arm64.packages.txt"))?;
    assert!(
        packages.lines().any(|l| l.starts_with("ii  libc6:arm64 ")),
        "{packages}"
    );
    assert!(
        !packages.contains(":amd64 "),
        "amd64 packages in an arm64 image"
    );
    let header = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -xzOf {} ./usr/bin/dash | head -c 20 | od -An -tx1",
            tgz.display()
        ))
        .output()?;
    let header = String::from_utf8_lossy(&header.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // ELF64 little-endian (bytes 4-5: 02 01), e_machine (bytes 18-19) EM_AARCH64 = 0xb7; e_type
    // (bytes 16-17) is ET_DYN for Debian's position-independent executables, so it is not checked.
    let bytes: Vec<&str> = header.split(' ').collect();
    assert!(
        bytes.len() == 20
            && bytes[..6] == ["7f", "45", "4c", "46", "02", "01"]
            && bytes[18..] == ["b7", "00"],
        "dash is not an aarch64 executable: {header}"
    );

    let scratch = tempfile::tempdir_in(e2e_dir())?;
    let checks = e2e::assert_test_image_passes(&tgz, scratch.path())?;
    assert_eq!(checks["os"], "debian-bookworm", "{}", checks["os"]);
    assert_eq!(host_binfmt(), before, "the host's binfmt_misc changed");

    // The stemcells, on the OS image layers just built (same work directory, same keys).
    let started = std::time::Instant::now();
    let report = run(&mut e2e::build_command_for(
        "debian-bookworm",
        "arm64",
        &["openstack", "aws"],
        &e2e_dir().join("work-arm64"),
        &out,
    ))?;
    eprintln!(
        "arm64 OpenStack and AWS stemcells took {:?}",
        started.elapsed()
    );
    assert_eq!(host_binfmt(), before, "the host's binfmt_misc changed");
    for (tgz, name, architecture) in [
        (
            OPENSTACK,
            "bosh-openstack-kvm-debian-bookworm-arm64",
            "aarch64",
        ),
        (
            OPENSTACK_RAW,
            "bosh-openstack-kvm-debian-bookworm-arm64-raw",
            "aarch64",
        ),
        (AWS, "bosh-aws-xen-hvm-debian-bookworm-arm64", "arm64"),
    ] {
        let tgz = out.join(tgz);
        assert!(
            tgz.is_file(),
            "{} missing; report:\n{report}",
            tgz.display()
        );
        run(stemcell().arg("verify").arg(&tgz))?;
        let mf = run(Command::new("tar")
            .arg("-xzOf")
            .arg(&tgz)
            .arg("stemcell.MF"))?;
        let v: serde_yaml::Value = serde_yaml::from_str(&mf)?;
        assert_eq!(v["name"].as_str(), Some(name), "{mf}");
        assert_eq!(
            v["cloud_properties"]["architecture"].as_str(),
            Some(architecture),
            "{mf}"
        );
        let packages = run(Command::new("tar")
            .arg("-xzOf")
            .arg(&tgz)
            .arg("packages.txt"))?;
        assert!(
            packages
                .lines()
                .any(|l| l.starts_with("ii  linux-image-6.1.0-") && l.contains(" arm64 ")),
            "no arm64 kernel in {name}"
        );
    }
    // Reproducible: a rebuild of the OpenStack stemcells on the same layers gives the same bytes
    // (the arm64 disk layout, its ESP and GRUB image included). From two empty work directories
    // it was compared by hand (README "arm64"): a second emulated build costs about 20 minutes.
    let again = e2e_dir().join("out-arm64-again");
    let _ = std::fs::remove_dir_all(&again);
    run(&mut e2e::build_command_for(
        "debian-bookworm",
        "arm64",
        &["openstack"],
        &e2e_dir().join("work-arm64"),
        &again,
    ))?;
    e2e::assert_rebuild_identical(&out, &again, &[OPENSTACK, OPENSTACK_RAW])?;

    let checks = e2e::assert_test_image_passes(&out.join(OPENSTACK), scratch.path())?;
    assert_eq!(
        checks["infrastructure"], "openstack",
        "{}",
        checks["infrastructure"]
    );

    // Light stemcells keep the line's name: the architecture is part of it.
    let light = out.join("light");
    run(stemcell()
        .arg("light")
        .arg("--from")
        .arg(out.join(AWS))
        .args(["--ami", "us-east-1=ami-0123456789abcdef0", "-o"])
        .arg(&light))?;
    run(stemcell()
        .arg("light")
        .arg("--from")
        .arg(out.join(OPENSTACK))
        .args(["--image-id", "1234-5678", "-o"])
        .arg(&light))?;
    for (tgz, name) in [
        (
            "light-bosh-stemcell-0.0.1-aws-xen-hvm-debian-bookworm-arm64.tgz",
            "bosh-aws-xen-hvm-debian-bookworm-arm64",
        ),
        (
            "light-bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm-arm64.tgz",
            "bosh-openstack-kvm-debian-bookworm-arm64",
        ),
    ] {
        let mf = run(Command::new("tar")
            .arg("-xzOf")
            .arg(light.join(tgz))
            .arg("stemcell.MF"))?;
        let v: serde_yaml::Value = serde_yaml::from_str(&mf)?;
        assert_eq!(v["name"].as_str(), Some(name), "{mf}");
    }

    e2e::boot_and_ping(&out.join(OPENSTACK), None, "config drive", &[])?;
    e2e::boot_and_ping(
        &out.join(AWS),
        None,
        "(IMDSv2)",
        &["PUT /latest/api/token 200", "GET /latest/user-data 200"],
    )?;
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

const OPENSTACK: &str = "bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm-arm64.tgz";
const OPENSTACK_RAW: &str = "bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm-arm64-raw.tgz";
const AWS: &str = "bosh-stemcell-0.0.1-aws-xen-hvm-debian-bookworm-arm64.tgz";

#[test]
fn an_infrastructure_not_built_for_arm64_is_one_clear_error() -> Result<()> {
    std::fs::create_dir_all(e2e_dir())?;
    let out = tempfile::tempdir_in(e2e_dir())?;
    let work = tempfile::tempdir_in(e2e_dir())?;
    let o = stemcell()
        .args([
            "build",
            "--arch",
            "arm64",
            "--os",
            "debian-bookworm",
            "--infrastructure",
            "vsphere",
        ])
        .args([
            "--version",
            "0.0.1",
            "--agent",
            "/nonexistent",
            "--agent-sha256",
            &"0".repeat(64),
        ])
        .arg("--work-dir")
        .arg(work.path())
        .arg("-o")
        .arg(out.path().join("stemcells"))
        .output()?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.trim_end().ends_with("infrastructures/vsphere.yaml: vsphere stemcells are not built for arm64 (architectures: amd64)"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        !out.path().join("stemcells").exists(),
        "an output directory was created"
    );
    assert_eq!(
        std::fs::read_dir(work.path())?.count(),
        0,
        "the work directory was written"
    );
    Ok(())
}
