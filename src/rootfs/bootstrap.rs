//! Bootstrap: a minimal root filesystem from the OS archive with mmdebstrap, GPG-verified
//! against the OS definition's keyring (never `--no-check-gpg`, never `trusted=yes`).
//!
//! Measured on the 2-core build VM (bookworm minbase, deb.debian.org): mmdebstrap 15.4 s, 178 MB;
//! debootstrap 24.4 s, 206 MB. mmdebstrap wins (parallel apt downloads, one dpkg run), so it is
//! the bootstrapper. It runs inside its own private mount + PID namespace, so the /proc, /sys
//! and /dev mounts it makes in the target die with it even on SIGKILL.

use super::chroot::describe_status;
use super::{emulation, host_tools};
use crate::recipe::arch::Arch;
use crate::recipe::os::OsDefinition;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

/// `/usr/sbin/policy-rc.d` returning 101: maintainer scripts never start daemons in the chroot.
/// Removed again when the OS image is exported.
pub const POLICY_RC_D: &str = "#!/bin/sh\n# stemcell build: no daemons in the chroot\nexit 101\n";

/// dpkg's configuration for the build only: `force-unsafe-io` skips the fsync after every
/// unpacked file, which a throwaway chroot does not need (the layer is flushed once when it is
/// committed, rootfs/layers.rs). Written by a mmdebstrap setup hook, so the bootstrap's own
/// dpkg runs use it too; removed from every shipped tree (rootfs/export.rs).
pub const DPKG_BUILD_CONFIG: &str = "etc/dpkg/dpkg.cfg.d/zz-stemcell-build";
pub const DPKG_BUILD_OPTIONS: &str =
    "# stemcell build only: no fsync in a throwaway chroot\nforce-unsafe-io\n";

/// Bootstraps `os` for `arch` from `mirror` into the empty directory `target`, logging to
/// `log`. With `source_date_epoch`, mmdebstrap and dpkg get it (reproducible bootstrap). A
/// foreign `arch` runs mmdebstrap in a user namespace with the emulator registered
/// (rootfs/emulation.rs); mmdebstrap then binds /dev and /proc instead of creating them.
pub fn bootstrap(
    os: &OsDefinition,
    arch: Arch,
    mirror: &str,
    source_date_epoch: Option<u64>,
    target: &Path,
    log: &Path,
) -> Result<()> {
    host_tools::require(&["mmdebstrap", "unshare", "gpgv"])?;
    let emulator = emulation::for_arch(arch)?;
    if emulator.is_some() {
        // mmdebstrap checks that the foreign architecture runs with it.
        host_tools::require(&["arch-test"])?;
    }
    if !Path::new(&os.keyring).is_file() {
        bail!(
            "{}: keyring of {} not found on this host (install the '{}' package)",
            os.keyring,
            os.name,
            keyring_package(os)
        );
    }
    let log_file = std::fs::File::create(log)
        .with_context(|| format!("{}: cannot create log", log.display()))?;
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut cmd = match &emulator {
        None => {
            let mut cmd = super::chroot::private_namespaces();
            cmd.arg("--");
            cmd
        }
        Some(e) => {
            let mut cmd = super::chroot::private_namespaces();
            // A proc of the new PID namespace, where the parent writes the child's id maps.
            cmd.args(["--mount-proc", "--", "/bin/sh"]).arg("-c").arg(format!(
                "{}\nt=$1 r=$2\nshift 2\nemulated /proc \"$t\" /proc/sys/fs/binfmt_misc \"$r\" \"$@\"",
                emulation::SHELL_FUNCTION
            ));
            cmd.args(["bootstrap".as_ref(), scratch.path().as_os_str()])
                .arg(e.binfmt_rule());
            cmd
        }
    };
    cmd.arg("mmdebstrap")
        .arg(format!("--arch={}", arch.debian()))
        .args([
            "--variant=minbase",
            "--mode=root",
            "--format=directory",
            "--verbose",
            // The package lists mmdebstrap fetched stay, so the first stage that installs does
            // not fetch and parse them again (1 to 1.5 s); base-apt refreshes them from its own
            // sources anyway, as the official builder's base_apt does after deleting debootstrap's.
            "--skip=cleanup/apt/lists",
        ])
        .arg(format!(
            "--setup-hook=mkdir -p \"$1/{}\" && printf '{}' > \"$1/{DPKG_BUILD_CONFIG}\"",
            Path::new(DPKG_BUILD_CONFIG).parent().unwrap().display(),
            DPKG_BUILD_OPTIONS.replace('\n', "\\n")
        ))
        .arg(format!("--keyring={}", os.keyring))
        .arg(format!("--components={}", os.components.join(",")))
        // A mirror that does not answer fails in about a minute, not after apt's default retries.
        .args([
            "--aptopt=Acquire::Retries \"2\"",
            "--aptopt=Acquire::http::Timeout \"20\"",
        ])
        .arg(&os.suite)
        .arg(target)
        .arg(mirror)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    if let Some(t) = source_date_epoch {
        cmd.env("SOURCE_DATE_EPOCH", t.to_string());
    }
    for (name, value) in std::env::vars() {
        if name.to_lowercase().ends_with("_proxy") {
            cmd.env(name, value);
        }
    }
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start mmdebstrap")?;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if super::interrupt::requested() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("interrupted");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    if !status.success() {
        let code = status.code().unwrap_or(-1);
        bail!(
            "bootstrap of {} from {mirror} failed ({}): {} (log: {})",
            os.name,
            describe_status(code),
            last_error_line(log),
            log.display()
        );
    }
    finish(target)
}

/// Leaves the bootstrap tree ready for the stages: the daemon block in place and an empty
/// regular `/etc/resolv.conf` (the host's is overlaid per command, and the export empties it).
fn finish(target: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let policy = target.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, POLICY_RC_D)
        .with_context(|| format!("{}: cannot write", policy.display()))?;
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755))?;
    let resolv = target.join("etc/resolv.conf");
    if resolv
        .symlink_metadata()
        .map(|m| !m.file_type().is_symlink())
        .unwrap_or(true)
    {
        let mut f = std::fs::File::create(&resolv)
            .with_context(|| format!("{}: cannot write", resolv.display()))?;
        f.flush()?;
        std::fs::set_permissions(&resolv, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

fn keyring_package(os: &OsDefinition) -> &'static str {
    if os.family == "ubuntu" {
        "ubuntu-keyring"
    } else {
        "debian-archive-keyring"
    }
}

/// The most telling line of a failed bootstrap log (apt's `E:` lines, else the last line).
pub fn last_error_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("E:") || l.contains("Err:") || l.starts_with("W: Failed"))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "no output".into())
}
