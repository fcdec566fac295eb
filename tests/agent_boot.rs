//! End-to-end test of the stemcell stages' agent contract: the real stage files
//! (stages/stemcell) applied to a small Debian root for openstack, the stand-in agent given as
//! the verified `bosh-agent` input, an ext4 root file system found by UUID, and a QEMU boot
//! with an OpenStack config drive. The stand-in, started by the image's own
//! `bosh-agent.service`, must print `STANDIN-AGENT OK` with the settings read from the drive.
//!
//! The kernel is booted directly (`-kernel`), so this tests the image's contents, not the disk
//! assembly or GRUB (the disk helper's tests boot through GRUB). It needs root, the Debian
//! mirror of the host's apt sources (first run: builds and caches a root under
//! target/agent-boot/), mmdebstrap, e2fsprogs, genisoimage and qemu-system-x86.

#[path = "common/boot.rs"]
mod boot;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use stemcell::recipe::agent_settings::AgentConfig;
use stemcell::recipe::stage::{Action, StageFile, When};
use stemcell::rootfs::chroot::Session;
use stemcell::stage::inputs::{self, InputSpec};

const OS: &str = "debian-bookworm";
const FAMILY: &str = "debian";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sh(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The cached base root (one per day and version of the build script), built by
/// tests/fixtures/standin-agent/build-test-rootfs.sh; built once even when tests run in
/// parallel.
fn base_rootfs() -> Result<PathBuf> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let script = manifest_dir().join("tests/fixtures/standin-agent/build-test-rootfs.sh");
    let key = hex::encode(Sha256::digest(std::fs::read(&script)?));
    let day = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y%m%d"])
            .output()?
            .stdout,
    )?;
    let dir = manifest_dir().join("target/agent-boot").join(format!(
        "rootfs-{}-{}",
        day.trim(),
        &key[..12]
    ));
    if dir.join("boot").is_dir() {
        return Ok(dir);
    }
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(dir.parent().unwrap())?;
    sh(Command::new("sh")
        .arg(&script)
        .arg(boot::debian_mirror()?)
        .arg(&partial))?;
    std::fs::rename(&partial, &dir)?;
    Ok(dir)
}

fn when_matches(when: &Option<When>, infrastructure: &str) -> bool {
    let Some(w) = when else { return true };
    let has = |list: &Vec<String>, v: &str| list.is_empty() || list.iter().any(|x| x == v);
    has(&w.os, OS)
        && has(&w.os_family, FAMILY)
        && has(&w.infrastructure, infrastructure)
        && !w.not_os.iter().any(|x| x == OS)
        && !w.not_infrastructure.iter().any(|x| x == infrastructure)
}

fn render(template: &str, ctx: &tera::Context) -> Result<String> {
    tera::Tera::one_off(template, ctx, false).with_context(|| format!("render {template:?}"))
}

fn mode(m: &Option<String>, default: u32) -> u32 {
    m.as_deref()
        .map(|m| u32::from_str_radix(m, 8).unwrap())
        .unwrap_or(default)
}

/// A minimal interpreter for the actions these stage files use, standing in for the stage
/// runner (src/stage, another branch) so the files themselves are exercised on a real root.
fn apply(
    root: &Path,
    file: &Path,
    stage: &StageFile,
    infrastructure: &str,
    ctx: &tera::Context,
) -> Result<()> {
    let session = Session::open(root)?;
    let inside = |p: &str| root.join(p.trim_start_matches('/'));
    for (i, entry) in stage.actions.iter().enumerate() {
        if !when_matches(&entry.when, infrastructure) {
            continue;
        }
        let at = || format!("{}: action {}", file.display(), i + 1);
        match &entry.action {
            Action::Apt(a) => {
                // Offline: the base root already holds every package; check that it does.
                for p in &a.install {
                    let out = session.output(&format!("dpkg-query -W -f='${{Status}}' {p}"))?;
                    if !out.output.contains("install ok installed") {
                        bail!("{}: package {p} is not in the test root (add it to build-test-rootfs.sh)", at());
                    }
                }
            }
            Action::File(f) => {
                let path = inside(&f.path);
                std::fs::create_dir_all(path.parent().unwrap())?;
                let bytes = match (&f.content, &f.source) {
                    (Some(c), None) => render(c, ctx)?.into_bytes(),
                    (None, Some(s)) => std::fs::read(manifest_dir().join("assets").join(s))?,
                    _ => bail!("{}: file needs content or source", at()),
                };
                if f.append {
                    use std::io::Write;
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?
                        .write_all(&bytes)?;
                } else {
                    let _ = std::fs::remove_file(&path);
                    std::fs::write(&path, bytes)?;
                }
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(mode(&f.mode, 0o644)),
                )?;
            }
            Action::Directory(d) => {
                let path = inside(&d.path);
                std::fs::create_dir_all(&path)?;
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(mode(&d.mode, 0o755)),
                )?;
            }
            Action::Symlink(l) => {
                let path = inside(&l.path);
                std::fs::create_dir_all(path.parent().unwrap())?;
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(&l.target, &path)?;
            }
            Action::Remove(r) => {
                for p in &r.paths {
                    let path = inside(p);
                    if path.is_dir() && !path.is_symlink() {
                        std::fs::remove_dir_all(&path)?;
                    } else {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Action::Service(s) => {
                for unit in &s.enable {
                    let out = session.output(&format!("systemctl enable {unit}"))?;
                    if out.status != 0 {
                        bail!("{}: systemctl enable {unit}: {}", at(), out.output);
                    }
                }
            }
            Action::Run(r) => {
                let out = session.output(&render(&r.script, ctx)?)?;
                if out.status != 0 {
                    bail!("{}: script failed ({}): {}", at(), out.status, out.output);
                }
            }
            other => bail!("{}: {other:?} not supported by this test", at()),
        }
    }
    Ok(())
}

/// How a test VM gets its settings and attaches its disk.
struct BootCase {
    infrastructure: &'static str,
    agent_id: &'static str,
    /// The line part naming the source the stand-in must have used.
    expected_settings: &'static str,
    expected_sources: &'static str,
}

#[test]
fn openstack_stages_boot_and_the_service_starts_the_agent_with_config_drive_settings() -> Result<()>
{
    boot_case(BootCase {
        infrastructure: "openstack",
        agent_id: "agent-openstack-1",
        expected_settings: "settings=ConfigDrive:/dev/disk/by-label/config-2:ec2/latest/user-data:agent_id=agent-openstack-1",
        expected_sources: "agent_json=File,ConfigDrive,HTTP",
    })
}

#[test]
fn vsphere_stages_boot_under_uefi_and_the_agent_reads_env_from_the_cdrom() -> Result<()> {
    boot_case(BootCase {
        infrastructure: "vsphere",
        agent_id: "agent-vsphere-1",
        expected_settings: "settings=CDROM:/dev/sr0:env:agent_id=agent-vsphere-1",
        expected_sources: "agent_json=CDROM",
    })
}

fn boot_case(case: BootCase) -> Result<()> {
    let infrastructure = case.infrastructure;
    let base = base_rootfs()?;
    let work = tempfile::Builder::new()
        .prefix("agent-boot.")
        .tempdir_in(manifest_dir().join("target/agent-boot"))?;
    let root = work.path().join("root");
    sh(Command::new("cp").arg("-a").arg(&base).arg(&root))?;

    // The stand-in agent as the verified `--agent` input.
    let standin = manifest_dir().join("tests/fixtures/standin-agent/bosh-agent");
    let digest = hex::encode(Sha256::digest(std::fs::read(&standin)?));
    let spec = InputSpec::new("bosh-agent", standin.to_str().unwrap(), Some(&digest))?;
    let fetched = inputs::fetch(&spec, &work.path().join("cache"))?;
    let input_vars = inputs::stage_into(&root, &[(spec, fetched)])?;

    let mut ctx = tera::Context::new();
    ctx.insert("infrastructure", infrastructure);
    ctx.insert("stemcell_version", "0.0.1-test");
    ctx.insert(
        "os",
        &serde_json::json!({"name": OS, "family": FAMILY, "suite": "bookworm", "version": "12"}),
    );
    ctx.insert(
        "agent_json",
        &AgentConfig::for_build(infrastructure, OS)?.to_json(),
    );
    for (k, v) in input_vars {
        ctx.insert(k, &v);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("stages/stemcell"))?
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let stage: StageFile = serde_yaml::from_str(&std::fs::read_to_string(&file)?)?;
        if when_matches(&stage.when, infrastructure) {
            apply(&root, &file, &stage, infrastructure, &ctx)?;
        }
    }
    // What the stages must have left.
    assert!(
        !root.join(inputs::IMAGE_INPUTS_DIR).exists(),
        "staged inputs removed"
    );
    assert_eq!(
        std::fs::read(root.join("var/vcap/bosh/bin/bosh-agent"))?,
        std::fs::read(&standin)?
    );
    assert!(std::fs::read_dir(root.join("etc/ssh"))?
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().contains("_key")));
    assert!(root
        .join("etc/systemd/system/multi-user.target.wants/bosh-agent.service")
        .is_symlink());
    assert!(
        root.join("etc/systemd/system/agent.service").is_symlink(),
        "Alias=agent.service"
    );

    // ext4 root by UUID, kernel and initrd from the image itself.
    let uuid = uuid::Uuid::new_v4().to_string();
    let disk = work.path().join("root.raw");
    sh(Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-L", "stemcell_root", "-U", &uuid, "-d"])
        .arg(&root)
        .arg(&disk)
        .arg("3G"))?;
    let boot_file = |prefix: &str| -> Result<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("boot"))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        found.sort();
        found.pop().with_context(|| format!("no /boot/{prefix}*"))
    };
    let media = work.path().join("settings.iso");
    let settings = boot::agent_settings(case.agent_id);
    let mut vm = if infrastructure == "vsphere" {
        boot::vsphere_env_cdrom(&settings, &media)?;
        assert!(root.join("etc/udev/rules.d/60-cdrom_id.rules").is_file());
        boot::VmSpec::vsphere(&disk, &media, work.path())
    } else {
        boot::config_drive(&settings, None, &media)?;
        boot::VmSpec::openstack(&disk, &media, work.path())
    };
    vm.direct_kernel = Some(boot::DirectKernel {
        kernel: boot_file("vmlinuz-")?,
        initrd: boot_file("initrd.img-")?,
        append: format!("root=UUID={uuid} rw console=ttyS0 net.ifnames=0"),
    });
    // One VM at a time: two TCG guests on this 2-core machine starve each other (devices
    // then appear minutes late, after the agent has given up on them).
    static VM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_vm = VM.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let mut running = vm.start()?;
    let result = running.wait_for_line("STANDIN-AGENT ", Duration::from_secs(900));
    // Keep the console of the last run for diagnosis.
    let log = manifest_dir().join(format!(
        "target/agent-boot/last-serial-{infrastructure}.log"
    ));
    let _ = std::fs::write(log, running.serial());
    let line = result?;
    eprintln!("{infrastructure}: after {:?}: {line}", started.elapsed());
    assert!(line.starts_with("STANDIN-AGENT OK "), "{line}");
    for part in [
        "argv=-P_ubuntu_-C_/var/vcap/bosh/agent.json",
        case.expected_sources,
        case.expected_settings,
        &format!("root=UUID={uuid}"),
        "hostname=bosh-stemcell",
        "ssh_host_keys=",
    ] {
        assert!(line.contains(part), "`{part}` missing in {line}");
    }
    Ok(())
}
