//! A small QEMU runner for boot tests: TCG, serial console to a file, wait for a marker with a
//! timeout, and the VM is always killed (also on panic) by the guard's Drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF (UEFI) with a private copy of the variable store.
    Uefi,
}

pub struct Vm {
    child: Child,
    pub serial: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    /// Boots `disk` (raw, virtio) with `firmware`; a snapshot keeps the disk unchanged.
    pub fn boot(disk: &Path, firmware: Firmware) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let serial = dir.path().join("serial.log");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-smp",
            "1",
            "-display",
            "none",
            "-no-reboot",
            "-snapshot",
        ]);
        cmd.arg("-serial").arg(format!("file:{}", serial.display()));
        cmd.arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", disk.display()));
        if firmware == Firmware::Uefi {
            let vars = dir.path().join("OVMF_VARS.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
            cmd.arg("-drive")
                .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd");
            cmd.arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64");
        Vm {
            child,
            serial,
            _dir: dir,
        }
    }

    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// Waits until the console shows `marker` (Ok with the console) or the VM exits or the
    /// timeout passes (Err with the console, for the assertion message).
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let text = self.console();
            if text.contains(marker) {
                return Ok(text);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let text = self.console();
                return if text.contains(marker) {
                    Ok(text)
                } else {
                    Err(format!("VM exited ({status}) before {marker:?}:\n{text}"))
                };
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "no {marker:?} after {timeout:?}:\n{}",
                    self.console()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
