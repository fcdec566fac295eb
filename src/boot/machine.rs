//! The QEMU command line of a boot and the running VM (killed and reaped when dropped).
//!
//! q35 with `-nodefaults` (no stray CD-ROM for the agent to race for), no display, the serial
//! console to a file (SeaBIOS's own messages too, through its `etc/sercon-port` fw_cfg file),
//! OVMF with a private copy of its variable store, the root disk and an optional ephemeral
//! disk on the cloud's bus, the settings CD-ROM on q35's AHCI (`/dev/sr0`), and a user-mode
//! NIC whose only ways out are the forwarded mbus and SSH ports on 127.0.0.1 and, for an HTTP
//! settings source, the metadata address forwarded to this tool (`restrict=on`: the guest
//! reaches nothing else).

use super::target::{DiskBus, Firmware};
use crate::recipe::arch::Arch;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// arm64's UEFI firmware (EDK2's ArmVirtQemu, Debian's qemu-efi-aarch64), padded to the
/// 64 MiB flash of QEMU's `virt` machine.
pub const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
pub const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// The UEFI firmware of an architecture: code, variable store template, Debian package.
pub fn uefi_firmware(arch: Arch) -> (&'static str, &'static str, &'static str) {
    match arch {
        Arch::Amd64 => (OVMF_CODE, OVMF_VARS, "ovmf"),
        Arch::Arm64 => (AAVMF_CODE, AAVMF_VARS, "qemu-efi-aarch64"),
    }
}

/// The QEMU system emulator of an architecture and its Debian package.
pub fn qemu_system(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::Amd64 => ("qemu-system-x86_64", "qemu-system-x86"),
        Arch::Arm64 => ("qemu-system-aarch64", "qemu-system-arm"),
    }
}

/// A metadata service forwarded from the guest's network to a command run per connection.
#[derive(Clone, Debug)]
pub struct GuestForward {
    pub ip: [u8; 4],
    pub port: u16,
    /// Program and arguments (no shell): run by QEMU for each connection.
    pub command: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct VmSpec {
    /// amd64: q35; arm64: `virt` with UEFI (no BIOS, no IDE: the CD-ROM is on SCSI).
    pub arch: Arch,
    pub accel: String,
    pub firmware: Firmware,
    pub bus: DiskBus,
    /// qcow2 overlay of the root disk.
    pub root: PathBuf,
    pub ephemeral: Option<PathBuf>,
    pub cdrom: Option<PathBuf>,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The guest's user network: the /24 whose first three octets these are.
    pub net_prefix: [u8; 3],
    pub mbus_port: u16,
    pub ssh_port: u16,
    pub guestfwd: Option<GuestForward>,
    pub serial_log: PathBuf,
    /// Where firmware files (SeaBIOS sercon setting, OVMF variables) go.
    pub dir: PathBuf,
}

/// Doubles commas: QEMU's option syntax separates with them.
fn q(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// Quotes one word for GLib's shell-style parsing of a guestfwd command.
fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl VmSpec {
    pub fn net(&self, last: u8) -> String {
        let [a, b, c] = self.net_prefix;
        format!("{a}.{b}.{c}.{last}")
    }

    /// The guest's DHCP address (QEMU's user network hands out .15 first).
    pub fn guest_ip(&self) -> String {
        self.net(15)
    }

    /// QEMU's DNS forwarder in the guest's network.
    pub fn dns_ip(&self) -> String {
        self.net(3)
    }

    fn sercon_file(&self) -> PathBuf {
        self.dir.join("sercon-port")
    }

    fn uefi_vars(&self) -> PathBuf {
        self.dir.join("UEFI_VARS.fd")
    }

    /// Writes the firmware files the command line names.
    pub fn prepare(&self) -> Result<()> {
        match self.firmware {
            Firmware::Bios => std::fs::write(self.sercon_file(), 0x3f8u64.to_le_bytes())?,
            Firmware::Uefi => {
                let (_, vars, package) = uefi_firmware(self.arch);
                std::fs::copy(vars, self.uefi_vars()).with_context(|| {
                    format!("{vars}: cannot copy (install the Debian package '{package}')")
                })?;
            }
        }
        Ok(())
    }

    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
        ]);
        match self.arch {
            Arch::Amd64 => push(&["-machine", &format!("q35,accel={}", self.accel)]),
            Arch::Arm64 => {
                push(&["-machine", &format!("virt,accel={}", self.accel)]);
                // Under TCG, `max` with QEMU's own pointer-authentication algorithm: the
                // architected one costs a lot of emulated time.
                let cpu = if self.accel == "kvm" {
                    "host"
                } else {
                    "max,pauth-impdef=on"
                };
                push(&["-cpu", cpu]);
            }
        }
        push(&[
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        push(&["-serial", &format!("file:{}", q(&self.serial_log))]);
        match self.firmware {
            Firmware::Bios => push(&[
                "-fw_cfg",
                &format!("name=etc/sercon-port,file={}", q(&self.sercon_file())),
            ]),
            Firmware::Uefi => {
                let (code, _, _) = uefi_firmware(self.arch);
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"),
                ]);
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,unit=1,file={}", q(&self.uefi_vars())),
                ]);
            }
        }
        let mut disks = vec![("root", &self.root)];
        if let Some(e) = &self.ephemeral {
            disks.push(("ephemeral", e));
        }
        if matches!(self.bus, DiskBus::Scsi | DiskBus::VirtioScsi) {
            push(&["-device", "virtio-scsi-pci,id=scsi0"]);
        }
        for (unit, (id, file)) in disks.iter().enumerate() {
            push(&[
                "-drive",
                &format!(
                    "file={},format=qcow2,if=none,id={id},discard=unmap",
                    q(file)
                ),
            ]);
            let boot = if unit == 0 { ",bootindex=0" } else { "" };
            let device = match self.bus {
                DiskBus::Virtio => format!("virtio-blk-pci,drive={id}{boot}"),
                // The unit number is the SCSI target: vSphere's CPI puts the ephemeral disk on
                // unit 1 and tells the agent "1".
                DiskBus::Scsi | DiskBus::VirtioScsi => {
                    format!("scsi-hd,drive={id},bus=scsi0.0,channel=0,scsi-id={unit},lun=0{boot}")
                }
                DiskBus::Nvme => format!("nvme,drive={id},serial={id}{boot}"),
            };
            push(&["-device", &device]);
        }
        if let Some(cd) = &self.cdrom {
            push(&[
                "-drive",
                &format!(
                    "file={},format=raw,if=none,id=cd0,media=cdrom,readonly=on",
                    q(cd)
                ),
            ]);
            match self.arch {
                Arch::Amd64 => push(&["-device", "ide-cd,drive=cd0,bus=ide.0"]),
                Arch::Arm64 => push(&[
                    "-device",
                    "virtio-scsi-pci,id=cdbus",
                    "-device",
                    "scsi-cd,drive=cd0,bus=cdbus.0",
                ]),
            }
        }
        let mut netdev = format!(
            "user,id=net0,restrict=on,net={}/24,hostfwd=tcp:127.0.0.1:{}-:6868,hostfwd=tcp:127.0.0.1:{}-:22",
            self.net(0),
            self.mbus_port,
            self.ssh_port
        );
        if let Some(g) = &self.guestfwd {
            let [a, b, c, d] = g.ip;
            let cmd: Vec<String> = g.command.iter().map(|w| shell_word(w)).collect();
            netdev.push_str(&format!(
                ",guestfwd=tcp:{a}.{b}.{c}.{d}:{}-cmd:{}",
                g.port,
                cmd.join(" ").replace(',', ",,")
            ));
        }
        push(&["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
        a
    }

    /// Starts QEMU; the VM dies with the returned handle.
    pub fn start(&self) -> Result<RunningVm> {
        self.prepare()?;
        let stderr = self.dir.join("qemu.stderr");
        let (qemu, package) = qemu_system(self.arch);
        let mut cmd = Command::new(qemu);
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr)?)
            // Ctrl-C in a terminal reaches the whole process group; QEMU is stopped by us.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; QEMU dies with this process, even on SIGKILL.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!("cannot start {qemu} (install the Debian package '{package}')")
        })?;
        Ok(RunningVm {
            child: Some(child),
            stderr,
            qemu,
        })
    }
}

use std::os::unix::process::CommandExt;

/// A running QEMU; dropping it kills and reaps it.
pub struct RunningVm {
    child: Option<Child>,
    stderr: PathBuf,
    qemu: &'static str,
}

impl RunningVm {
    /// QEMU's process id (0 once it is gone).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Fails when QEMU has exited, with its last error line.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                let line = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .to_string();
                bail!("{} exited ({status}): {line}", self.qemu);
            }
        }
        Ok(())
    }

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
