//! Boot-test helpers: the settings media the agent reads (an OpenStack config drive, a vSphere
//! env CD-ROM), QEMU command lines for the two boot paths (SeaBIOS + virtio disk + config
//! drive; OVMF + SCSI disk + CD-ROM), and a VM handle that waits for a marker on the serial
//! console and is always killed when dropped.
//!
//! Include with `#[path = "common/boot.rs"] mod boot;`.
#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Settings the agent accepts (consumers.md §7.2): a dynamic network with QEMU's user-mode
/// DNS, no NTP (sync-time would wait for unreachable servers), a local blobstore.
pub fn agent_settings(agent_id: &str) -> Value {
    json!({
        "agent_id": agent_id,
        "blobstore": { "provider": "local", "options": { "blobstore_path": "/var/vcap/micro_bosh/data/cache" } },
        "disks": { "system": "/dev/vda", "persistent": {} },
        "env": { "bosh": { "mbus": { "cert": {} } } },
        "networks": { "default": { "type": "dynamic", "dns": ["10.0.2.3"], "default": ["dns", "gateway"] } },
        "ntp": [],
        "mbus": "https://mbus:mbus@0.0.0.0:6868",
        "vm": { "name": format!("vm-{agent_id}") }
    })
}

fn genisoimage(dir: &Path, label: &str, out: &Path) -> Result<()> {
    let output = Command::new("genisoimage")
        .args([
            "-quiet",
            "-J",
            "-R",
            "-input-charset",
            "utf-8",
            "-V",
            label,
            "-o",
        ])
        .arg(out)
        .arg(dir)
        .output()
        .context("cannot run genisoimage (Debian package genisoimage)")?;
    if !output.status.success() {
        bail!(
            "genisoimage {}: {}",
            out.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

/// An OpenStack config drive (ISO9660, label `config-2`), as Nova writes it: the same
/// metadata and user data under `openstack/latest/` and `ec2/latest/` (the official
/// agent.json reads the ec2 paths).
pub fn config_drive(settings: &Value, ssh_public_key: Option<&str>, out: &Path) -> Result<()> {
    let tree = tempfile::tempdir()?;
    let uuid = settings["agent_id"]
        .as_str()
        .unwrap_or("standin")
        .to_string();
    let mut keys = serde_json::Map::new();
    if let Some(k) = ssh_public_key {
        keys.insert("0".into(), json!({ "openssh-key": k }));
    }
    let openstack_meta = json!({
        "uuid": uuid, "name": "bosh-standin", "hostname": "bosh-standin",
        "public_keys": ssh_public_key.map(|k| json!({ "default": k })).unwrap_or(json!({})),
    });
    let ec2_meta = json!({ "instance-id": uuid, "hostname": "bosh-standin", "public-keys": keys });
    let user = serde_json::to_vec(settings)?;
    write(
        &tree.path().join("openstack/latest/meta_data.json"),
        &serde_json::to_vec(&openstack_meta)?,
    )?;
    write(&tree.path().join("openstack/latest/user_data"), &user)?;
    write(
        &tree.path().join("ec2/latest/meta-data.json"),
        &serde_json::to_vec(&ec2_meta)?,
    )?;
    write(&tree.path().join("ec2/latest/user-data"), &user)?;
    genisoimage(tree.path(), "config-2", out)
}

/// A vSphere settings CD-ROM: the file `env` (the CDROM source's `FileName`) at the root.
pub fn vsphere_env_cdrom(settings: &Value, out: &Path) -> Result<()> {
    let tree = tempfile::tempdir()?;
    write(&tree.path().join("env"), &serde_json::to_vec(settings)?)?;
    genisoimage(tree.path(), "CDROM", out)
}

/// The Debian archive the host's apt sources use (first `URIs:` of a deb822 source for
/// `bookworm`, else the first `deb` line of sources.list); never hard-coded.
pub fn debian_mirror() -> Result<String> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "sources"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    for path in &candidates {
        let text = std::fs::read_to_string(path)?;
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) {
                if suites.split_whitespace().any(|s| s == "bookworm") {
                    return Ok(uris.split_whitespace().next().unwrap().to_string());
                }
            }
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .filter_map(|l| l.strip_prefix("deb "))
        .flat_map(|rest| rest.split_whitespace().find(|w| w.starts_with("http")))
        .map(str::to_string)
        .next()
        .context("no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list")
}

/// File names on an ISO as `isoinfo -f -R` lists them (Rock Ridge names).
pub fn iso_files(iso: &Path) -> Result<Vec<String>> {
    let out = Command::new("isoinfo")
        .args(["-R", "-f", "-i"])
        .arg(iso)
        .output()
        .context("cannot run isoinfo")?;
    if !out.status.success() {
        bail!(
            "isoinfo {}: {}",
            iso.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    files.sort();
    Ok(files)
}

/// The volume label of an ISO (`isoinfo -d`).
pub fn iso_label(iso: &Path) -> Result<String> {
    let out = Command::new("isoinfo")
        .args(["-d", "-i"])
        .arg(iso)
        .output()
        .context("cannot run isoinfo")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("Volume id: "))
        .map(|s| s.trim().to_string())
        .with_context(|| format!("{}: no volume id", iso.display()))
}

/// One file's content from an ISO (`isoinfo -x` with the ISO9660 name, e.g. `/ENV.;1`, or
/// with -R the Rock Ridge path).
pub fn iso_read(iso: &Path, path: &str) -> Result<Vec<u8>> {
    let out = Command::new("isoinfo")
        .args(["-R", "-x", path, "-i"])
        .arg(iso)
        .output()
        .context("cannot run isoinfo")?;
    if !out.status.success() {
        bail!(
            "isoinfo -x {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Firmware the VM boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS (QEMU's default).
    Bios,
    /// OVMF with a private copy of the variable store.
    Uefi,
}

/// How the root disk is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskBus {
    /// virtio-blk: `/dev/vda`, as on KVM clouds.
    Virtio,
    /// virtio-scsi: `/dev/sda`.
    VirtioScsi,
    /// LSI 53C895A (QEMU has no LSI Logic SAS; this is its closest SCSI HBA to vSphere's
    /// lsilogic): `/dev/sda`.
    Lsi,
    /// AHCI SATA: `/dev/sda`.
    Sata,
}

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// A VM to boot under QEMU TCG.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub firmware: Firmware,
    pub disk: PathBuf,
    /// `raw` or `qcow2`.
    pub disk_format: String,
    pub bus: DiskBus,
    /// Settings media, attached as a SATA CD-ROM (the config drive is a CD-ROM on Nova too).
    pub cdrom: Option<PathBuf>,
    pub serial_log: PathBuf,
    /// OVMF variable store copy (written by [`VmSpec::prepare`]); unused for BIOS.
    pub ovmf_vars: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Attach a user-mode NIC (virtio-net).
    pub network: bool,
    /// Boot this kernel directly instead of the disk's boot loader (tests of the image's
    /// contents that do not depend on the disk assembly).
    pub direct_kernel: Option<DirectKernel>,
}

/// QEMU's `-kernel/-initrd/-append`.
#[derive(Clone, Debug)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

impl VmSpec {
    /// SeaBIOS, virtio disk, the OpenStack config drive: the openstack boot path.
    pub fn openstack(disk: &Path, config_drive: &Path, work: &Path) -> Self {
        Self {
            firmware: Firmware::Bios,
            disk: disk.to_path_buf(),
            disk_format: "raw".into(),
            bus: DiskBus::Virtio,
            cdrom: Some(config_drive.to_path_buf()),
            serial_log: work.join("serial.log"),
            ovmf_vars: work.join("OVMF_VARS.fd"),
            memory_mib: 2048,
            cpus: 2,
            network: true,
            direct_kernel: None,
        }
    }

    /// OVMF, SCSI disk, the env CD-ROM: the vSphere boot path.
    pub fn vsphere(disk: &Path, env_cdrom: &Path, work: &Path) -> Self {
        Self {
            firmware: Firmware::Uefi,
            bus: DiskBus::VirtioScsi,
            ..Self::openstack(disk, env_cdrom, work)
        }
    }

    /// SeaBIOS's serial-console setting (fw_cfg `etc/sercon-port`, a little-endian u64):
    /// with no VGA it is how SeaBIOS's own messages reach the serial log.
    fn sercon_file(&self) -> PathBuf {
        self.serial_log.with_extension("sercon")
    }

    /// Writes the firmware files the command line names: the SeaBIOS serial-console setting,
    /// or a copy of the OVMF variable store (OVMF writes to it; the system copy stays
    /// pristine).
    pub fn prepare(&self) -> Result<()> {
        if self.firmware == Firmware::Bios {
            std::fs::write(self.sercon_file(), 0x3f8u64.to_le_bytes())?;
        }
        if self.firmware == Firmware::Uefi {
            std::fs::copy(OVMF_VARS, &self.ovmf_vars)
                .with_context(|| format!("{OVMF_VARS} (Debian package ovmf)"))?;
        }
        Ok(())
    }

    /// The full `qemu-system-x86_64` argument list. `-nodefaults` drops QEMU's default CD-ROM,
    /// which once made the agent race for the wrong device (agent-needs.md §3.2).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-machine",
            "q35,accel=tcg",
            "-display",
            "none",
            "-vga",
            "none",
        ]);
        let (mem, cpus) = (self.memory_mib.to_string(), self.cpus.to_string());
        push(&["-m", &mem, "-smp", &cpus]);
        push(&["-serial", &format!("file:{}", self.serial_log.display())]);
        if self.firmware == Firmware::Bios {
            let sercon = format!("name=etc/sercon-port,file={}", self.sercon_file().display());
            push(&["-fw_cfg", &sercon]);
        }
        if self.firmware == Firmware::Uefi {
            push(&[
                "-drive",
                &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
            ]);
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    self.ovmf_vars.display()
                ),
            ]);
        }
        let disk = format!(
            "file={},format={},if=none,id=root",
            self.disk.display(),
            self.disk_format
        );
        push(&["-drive", &disk]);
        // A direct kernel boots from QEMU's own option ROM, which takes boot index 0.
        let boot = if self.direct_kernel.is_some() {
            ""
        } else {
            ",bootindex=0"
        };
        match self.bus {
            DiskBus::Virtio => push(&["-device", &format!("virtio-blk-pci,drive=root{boot}")]),
            DiskBus::VirtioScsi => {
                push(&["-device", "virtio-scsi-pci,id=scsi0"]);
                push(&["-device", &format!("scsi-hd,drive=root,bus=scsi0.0{boot}")]);
            }
            DiskBus::Lsi => {
                push(&["-device", "lsi53c895a,id=scsi0"]);
                push(&["-device", &format!("scsi-hd,drive=root,bus=scsi0.0{boot}")]);
            }
            DiskBus::Sata => push(&["-device", &format!("ide-hd,drive=root,bus=ide.1{boot}")]),
        }
        if let Some(k) = &self.direct_kernel {
            push(&[
                "-kernel",
                &k.kernel.display().to_string(),
                "-initrd",
                &k.initrd.display().to_string(),
            ]);
            push(&["-append", &k.append]);
        }
        if let Some(cd) = &self.cdrom {
            push(&[
                "-drive",
                &format!(
                    "file={},format=raw,if=none,id=cd0,media=cdrom,readonly=on",
                    cd.display()
                ),
            ]);
            // q35's built-in AHCI controller: the SATA CD-ROM path of agent-needs §1.6.
            push(&["-device", "ide-cd,drive=cd0,bus=ide.0"]);
        }
        if self.network {
            push(&[
                "-netdev",
                "user,id=net0",
                "-device",
                "virtio-net-pci,netdev=net0",
            ]);
        } else {
            push(&["-nic", "none"]);
        }
        a
    }

    /// Starts QEMU. The returned VM is killed when dropped, whatever happens in the test.
    pub fn start(&self) -> Result<RunningVm> {
        self.prepare()?;
        let _ = std::fs::remove_file(&self.serial_log);
        let child = Command::new("qemu-system-x86_64")
            .args(self.qemu_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start qemu-system-x86_64 (Debian package qemu-system-x86)")?;
        Ok(RunningVm {
            child: Some(child),
            serial_log: self.serial_log.clone(),
        })
    }
}

/// A running QEMU process; dropping it kills and reaps QEMU.
pub struct RunningVm {
    child: Option<Child>,
    serial_log: PathBuf,
}

impl RunningVm {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The serial console so far.
    pub fn serial(&self) -> String {
        std::fs::read(&self.serial_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until a serial line contains `marker` and returns that line. Fails with the end
    /// of the console when the timeout passes or QEMU exits first.
    pub fn wait_for_line(&mut self, marker: &str, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let serial = self.serial();
            if let Some(line) = serial.lines().find(|l| l.contains(marker)) {
                return Ok(line.trim_end_matches('\r').to_string());
            }
            let tail = || {
                serial
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    bail!(
                        "qemu exited ({status}) before `{marker}`: {}\n--- serial ---\n{}",
                        err.trim(),
                        tail()
                    );
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "no `{marker}` on the serial console after {:?}\n--- serial ---\n{}",
                    timeout,
                    tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Kills QEMU now (also done on drop).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.kill();
    }
}
