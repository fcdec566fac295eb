//! One boot: the stemcell's disk behind a throwaway overlay, the settings the agent's own
//! source delivers, QEMU, and (with `ping`) the wait for the agent's `pong` and `get_state`
//! over its HTTPS message bus. Everything lives in one temporary directory and one QEMU
//! process, both gone when the boot ends, however it ends (error, timeout, Ctrl-C).

use super::credentials::{self, Credentials};
use super::machine::{GuestForward, RunningVm, VmSpec};
use super::mbus::Mbus;
use super::metadata::Site;
use super::settings::{settings, Disks};
use super::target::{self, DiskBus, Firmware, SettingsSource, Target};
use super::{disk, media, tools};
use crate::recipe::arch::Arch;
use crate::rootfs::interrupt;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;

#[derive(Clone, Debug)]
pub struct BootOptions {
    pub stemcell: PathBuf,
    /// Overrides what the stemcell asks for.
    pub firmware: Option<Firmware>,
    pub memory_mib: u32,
    pub cpus: u32,
    /// How much larger than the image the root disk is (the agent puts swap and
    /// /var/vcap/data there when there is no ephemeral disk).
    pub disk_grow_gib: u64,
    /// An ephemeral disk; vSphere always gets one (its CPI always adds it).
    pub ephemeral_gib: Option<u64>,
    pub timeout: Duration,
    pub ping: bool,
    /// Keep the VM running after pong (or for the whole timeout without `ping`) until Ctrl-C.
    pub keep: bool,
    /// `kvm`, `tcg` or `auto` (KVM when /dev/kvm opens, else TCG).
    pub accel: String,
    /// 0: any free port.
    pub mbus_port: u16,
    pub ssh_port: u16,
    pub serial_log: Option<PathBuf>,
    /// Where the temporary directory goes (default: the system's temporary directory).
    pub work_dir: Option<PathBuf>,
    /// The program QEMU runs per metadata connection, with its arguments before the site file
    /// (the `stemcell` binary's `boot-metadata`).
    pub metadata_command: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BootOutcome {
    pub stemcell: String,
    pub infrastructure: String,
    pub firmware: &'static str,
    pub disk_bus: &'static str,
    pub accel: String,
    pub settings_source: String,
    pub agent_id: String,
    pub mbus_port: u16,
    pub ssh_port: u16,
    /// Seconds from QEMU's start to the agent's `pong`.
    pub seconds_to_pong: Option<f64>,
    pub job_state: Option<String>,
    /// Metadata requests the guest made (method, path, status), for HTTP sources.
    pub metadata_requests: Vec<String>,
}

/// Whether `port` on 127.0.0.1 is free (0: pick one).
fn port(requested: u16, flag: &str) -> Result<u16> {
    match std::net::TcpListener::bind(("127.0.0.1", requested)) {
        Ok(l) => Ok(l.local_addr()?.port()),
        Err(e) => bail!("127.0.0.1:{requested} ({flag}) is not free: {e}"),
    }
}

fn accel(requested: &str) -> Result<String> {
    match requested {
        "kvm" | "tcg" => Ok(requested.to_string()),
        "auto" => {
            let kvm = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok();
            Ok(if kvm { "kvm" } else { "tcg" }.to_string())
        }
        other => bail!("--accel {other}: expected kvm, tcg or auto"),
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The agent's log over SSH as vcap (its key comes with the settings), best effort.
fn agent_log(creds: &Credentials, ssh_port: u16) -> String {
    let remote = format!(
        "echo '{}' | sudo -S -p '' tail -n 40 /var/vcap/bosh/log/current",
        creds.vcap_password
    );
    let out = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-i"])
        .arg(&creds.ssh_key)
        .args(["-p", &ssh_port.to_string(), "vcap@127.0.0.1", &remote])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => format!(
            "(no agent log over SSH: {})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("(no agent log over SSH: {e})"),
    }
}

/// The disk names the cloud's CPI would give the agent.
fn disk_names(infrastructure: &str, bus: DiskBus, ephemeral: bool) -> Disks {
    let (system, eph) = match (infrastructure, bus) {
        // vSphere CPI: SCSI unit numbers.
        ("vsphere" | "vcloud", _) => ("0", "1"),
        (_, DiskBus::Virtio) => ("/dev/vda", "/dev/sdb"),
        (_, DiskBus::Nvme) => ("/dev/nvme0n1", "/dev/nvme1n1"),
        _ => ("/dev/sda", "/dev/sdb"),
    };
    Disks {
        system: system.into(),
        ephemeral: ephemeral.then(|| eph.to_string()),
    }
}

/// Boots the stemcell. Progress goes to stderr.
pub fn boot(o: &BootOptions) -> Result<BootOutcome> {
    let file = o.stemcell.display().to_string();
    let manifest = disk::read_manifest(&o.stemcell)?;
    let arch = target::arch_of(&manifest, &file)?;
    tools::require(&[
        super::machine::qemu_system(arch).0,
        "qemu-img",
        "openssl",
        "curl",
        "ssh",
        "ssh-keygen",
        "debugfs",
        "sfdisk",
    ])?;
    let infrastructure = target::infrastructure_of(&manifest, &file)?;
    let (firmware, bus, needs_ephemeral) = target::hardware(&infrastructure, arch, &manifest);
    let firmware = o.firmware.unwrap_or(firmware);
    if firmware == Firmware::Bios && arch != Arch::Amd64 {
        bail!("{file}: an {arch} stemcell boots by UEFI only (--firmware uefi)");
    }
    let (code, _, package) = super::machine::uefi_firmware(arch);
    if firmware == Firmware::Uefi && !Path::new(code).exists() {
        bail!("{code}: not found (install the Debian package '{package}')");
    }
    let accel = accel(&o.accel)?;
    let mbus_port = port(o.mbus_port, "--mbus-port")?;
    let ssh_port = port(o.ssh_port, "--ssh-port")?;
    if mbus_port == ssh_port {
        bail!("--mbus-port and --ssh-port are both {mbus_port}");
    }

    let mut tmp = tempfile::Builder::new();
    tmp.prefix("stemcell-boot.");
    let work = match &o.work_dir {
        Some(dir) => tmp.tempdir_in(dir),
        None => tmp.tempdir(),
    }
    .context("cannot create the boot's temporary directory")?;
    let dir = work.path();
    eprintln!("{file}: {infrastructure}, reading its disk");
    let raw = disk::raw_disk(&o.stemcell, dir)?;
    interrupt::check()?;
    let config = disk::agent_config(&raw).with_context(|| file.clone())?;
    let source = target::settings_source(&config)
        .with_context(|| format!("{file}: /var/vcap/bosh/agent.json"))?;
    let target = Target {
        infrastructure: infrastructure.clone(),
        firmware,
        bus,
        needs_ephemeral,
        source,
    };

    let net_prefix = match &target.source {
        SettingsSource::Http(h) => [h.ip[0], h.ip[1], h.ip[2]],
        _ => [10, 0, 2],
    };
    let mut spec = VmSpec {
        arch,
        accel: accel.clone(),
        firmware,
        bus,
        root: dir.join("root.qcow2"),
        ephemeral: None,
        cdrom: None,
        memory_mib: o.memory_mib,
        cpus: o.cpus,
        net_prefix,
        mbus_port,
        ssh_port,
        guestfwd: None,
        serial_log: o
            .serial_log
            .clone()
            .unwrap_or_else(|| dir.join("serial.log")),
        dir: dir.to_path_buf(),
    };
    let creds = credentials::make(dir, &spec.guest_ip())?;
    let ephemeral_gib = o
        .ephemeral_gib
        .or(target.needs_ephemeral.then_some(4))
        .filter(|g| *g > 0);
    let agent_id = format!("agent-{}", credentials::random_hex(8));
    let disks = disk_names(&infrastructure, bus, ephemeral_gib.is_some());
    let settings = settings(&agent_id, &spec.dns_ip(), &disks, &creds);

    let metadata_log = dir.join("metadata.log");
    match &target.source {
        SettingsSource::ConfigDrive {
            meta_data_path,
            user_data_path,
        } => {
            tools::require(&["genisoimage"])?;
            let iso = dir.join("config-drive.iso");
            media::config_drive(
                &settings,
                meta_data_path,
                user_data_path,
                &creds.ssh_public_key,
                &dir.join("config-drive"),
                &iso,
            )?;
            spec.cdrom = Some(iso);
        }
        SettingsSource::Cdrom { file_name } => {
            tools::require(&["genisoimage"])?;
            let iso = dir.join("env.iso");
            media::env_cdrom(&settings, file_name, &dir.join("env-cdrom"), &iso)?;
            spec.cdrom = Some(iso);
        }
        SettingsSource::Http(h) => {
            let mut paths = BTreeMap::new();
            for (path, what) in &h.paths {
                let body = match *what {
                    "settings" => settings.to_string(),
                    "instance-id" => agent_id.clone(),
                    _ => creds.ssh_public_key.clone(),
                };
                paths.insert(path.clone(), body);
            }
            let required: BTreeMap<String, String> = h
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            let site = Site {
                paths,
                token_path: h.token_path.clone(),
                token: credentials::random_hex(16),
                // GCE's metadata server names itself in every reply.
                reply_headers: h.headers.clone(),
                required_headers: required,
                log: metadata_log.clone(),
            };
            let site_file = dir.join("metadata-site.json");
            std::fs::write(&site_file, serde_json::to_vec(&site)?)?;
            let mut command = o.metadata_command.clone();
            command.push(site_file.display().to_string());
            spec.guestfwd = Some(GuestForward {
                ip: h.ip,
                port: h.port,
                command,
            });
        }
    }
    let raw_size = std::fs::metadata(&raw)?.len();
    disk::overlay(&raw, &spec.root, raw_size + o.disk_grow_gib * GIB)?;
    if let Some(g) = ephemeral_gib {
        let e = dir.join("ephemeral.qcow2");
        disk::blank(&e, g * GIB)?;
        spec.ephemeral = Some(e);
    }
    interrupt::check()?;

    eprintln!(
        "{file}: booting under QEMU ({accel}, {}, {} disk{}), settings from the {}; serial console: {}",
        firmware.name(),
        bus.name(),
        if spec.ephemeral.is_some() { " + ephemeral disk" } else { "" },
        target.source.describe(),
        spec.serial_log.display()
    );
    eprintln!(
        "  mbus: https://{}:{}@127.0.0.1:{mbus_port}/agent  ssh: ssh -p {ssh_port} vcap@127.0.0.1 (vcap password {})",
        creds.mbus_user, creds.mbus_password, creds.vcap_password
    );
    let started = Instant::now();
    let mut vm = spec.start()?;
    let mbus = Mbus {
        port: mbus_port,
        user: creds.mbus_user.clone(),
        password: creds.mbus_password.clone(),
        ca_file: creds.ca_file.clone(),
    };
    let mut outcome = BootOutcome {
        stemcell: file.clone(),
        infrastructure,
        firmware: firmware.name(),
        disk_bus: bus.name(),
        accel,
        settings_source: target.source.describe(),
        agent_id,
        mbus_port,
        ssh_port,
        seconds_to_pong: None,
        job_state: None,
        metadata_requests: Vec::new(),
    };

    let result = if o.ping {
        wait_for_pong(&mut vm, &mbus, started, o.timeout, &mut outcome)
    } else {
        wait(&mut vm, started, o.timeout, true)
    };
    outcome.metadata_requests = std::fs::read_to_string(&metadata_log)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default();
    if let Err(e) = result {
        if !interrupt::requested() {
            eprintln!(
                "--- last lines of the serial console ({}) ---\n{}",
                spec.serial_log.display(),
                tail(&spec.serial_log, 30)
            );
            eprintln!(
                "--- last lines of the agent's log (over SSH) ---\n{}",
                agent_log(&creds, ssh_port).trim_end()
            );
        }
        return Err(e.context(file));
    }
    if o.keep && o.ping {
        eprintln!("{file}: the VM keeps running until Ctrl-C");
        let _ = wait(&mut vm, Instant::now(), Duration::MAX, false);
    }
    vm.kill();
    Ok(outcome)
}

/// Waits until Ctrl-C, the timeout (an error when `timeout_is_ok` is false), or QEMU's exit.
fn wait(
    vm: &mut RunningVm,
    started: Instant,
    timeout: Duration,
    timeout_is_ok: bool,
) -> Result<()> {
    loop {
        interrupt::check()?;
        vm.check_alive()?;
        if started.elapsed() >= timeout {
            if timeout_is_ok {
                return Ok(());
            }
            bail!("timed out");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn wait_for_pong(
    vm: &mut RunningVm,
    mbus: &Mbus,
    started: Instant,
    timeout: Duration,
    outcome: &mut BootOutcome,
) -> Result<()> {
    let mut last_error = String::from("no answer yet");
    let mut next_try = Instant::now();
    loop {
        interrupt::check()?;
        vm.check_alive()?;
        if started.elapsed() >= timeout {
            bail!(
                "the agent did not answer ping within {}s (last: {last_error})",
                timeout.as_secs()
            );
        }
        if Instant::now() >= next_try {
            next_try = Instant::now() + Duration::from_secs(2);
            match mbus.call("ping", 5) {
                Ok(v) if v == "pong" => break,
                Ok(v) => last_error = format!("ping answered {v}"),
                Err(e) => last_error = format!("{e:#}"),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    outcome.seconds_to_pong = Some(started.elapsed().as_secs_f64());
    eprintln!("pong after {:.1}s", started.elapsed().as_secs_f64());
    // get_state needs monit, which the agent starts last; give it a little time.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        interrupt::check()?;
        vm.check_alive()?;
        match mbus.call("get_state", 30) {
            Ok(state) => {
                let job = state["job_state"].as_str().unwrap_or("").to_string();
                outcome.job_state = Some(job.clone());
                if job == "running" {
                    return Ok(());
                }
                last_error = format!("job_state {job:?}");
            }
            Err(e) => last_error = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("get_state after pong: {last_error}");
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}
