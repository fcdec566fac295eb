//! Debian 13 (trixie) end to end: the second OS this machine can download, and the closest to
//! Noble (systemd 257, apt 3, t64 libraries, kernel 6.12). An OpenStack stemcell is built from
//! the mirror with the real agent, verified, checked with `stemcell test-image` (OS-image and
//! stemcell checks, as on bookworm), and booted under SeaBIOS until the real agent answers
//! `ping` and reports its job state `running` (which needs monit's API: see
//! stages/os-image/40-bosh-monit.yaml for what trixie's monit changed).
//! Needs root and the Debian mirror, as `tests/build_boot.rs`.

#[path = "common/e2e.rs"]
mod e2e;

use anyhow::Result;
use e2e::{e2e_dir, run, stemcell};
use std::process::Command;

const OPENSTACK: &str = "bosh-stemcell-0.0.1-openstack-kvm-debian-trixie.tgz";

#[test]
fn trixie_openstack_stemcell_builds_passes_its_checks_and_boots_with_the_real_agent() -> Result<()>
{
    let out = e2e_dir().join("out-trixie");
    let _ = std::fs::remove_dir_all(&out);
    let started = std::time::Instant::now();
    let report = run(&mut e2e::build_command(
        "debian-trixie",
        &["openstack"],
        &e2e_dir().join("work-trixie"),
        &out,
    ))?;
    eprintln!("trixie build took {:?}", started.elapsed());
    let tgz = out.join(OPENSTACK);
    assert!(tgz.is_file(), "{OPENSTACK} missing; report:\n{report}");
    run(stemcell().arg("verify").arg(&tgz))?;

    let mf = run(Command::new("tar")
        .arg("-xzOf")
        .arg(&tgz)
        .arg("stemcell.MF"))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&mf)?;
    assert_eq!(
        v["name"].as_str(),
        Some("bosh-openstack-kvm-debian-trixie"),
        "{mf}"
    );
    assert_eq!(
        v["operating_system"].as_str(),
        Some("debian-trixie"),
        "{mf}"
    );
    // Trixie's own packages, not bookworm's: kernel 6.12 and the t64 library names.
    let packages = run(Command::new("tar")
        .arg("-xzOf")
        .arg(&tgz)
        .arg("packages.txt"))?;
    for wanted in ["ii  linux-image-6.12", "ii  libaio1t64"] {
        assert!(
            packages.lines().any(|l| l.starts_with(wanted)),
            "packages.txt lacks {wanted}"
        );
    }

    let scratch = tempfile::tempdir_in(e2e_dir())?;
    let checks = e2e::assert_test_image_passes(&tgz, scratch.path())?;
    assert_eq!(checks["os"], "debian-trixie", "{}", checks["os"]);
    assert_eq!(
        checks["infrastructure"], "openstack",
        "{}",
        checks["infrastructure"]
    );

    e2e::boot_and_ping(&tgz, Some("bios"), "config drive", &[])?;
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
