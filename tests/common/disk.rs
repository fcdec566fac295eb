//! Test fixture for disk assembly: a small bootable Debian bookworm root directory, built once
//! with mmdebstrap (mirror from the host's apt sources) and cached under target/ by date.
//! It carries a unit that reports the boot to ttyS0 and powers off, and the GRUB images made
//! by the chroot's own grub-mkimage with the command lines of `stemcell::disk::grub`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Ids every disk test uses, so the prepared GRUB images match every assembled disk.
pub fn ids() -> stemcell::disk::DiskIds {
    stemcell::disk::DiskIds::from_seed("disk-tests")
}

/// Serialises the tests that write into the shared root directory.
pub static ROOT_LOCK: Mutex<()> = Mutex::new(());

fn sh(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?}: {st}");
}

fn mirror() -> String {
    let s =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").expect("debian.sources");
    s.lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .and_then(|u| u.split_whitespace().next())
        .expect("a URIs: line in debian.sources")
        .to_string()
}

const REPORT_UNIT: &str = "[Unit]
Description=Disk test report
After=local-fs.target

[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh -c 'echo \"DISKTEST cmdline=$(cat /proc/cmdline)\"; echo \"DISKTEST root=$(findmnt -n -o SOURCE,FSTYPE /)\"; echo \"DISKTEST efi=$(findmnt -n -o SOURCE,FSTYPE /boot/efi)\"; if [ -d /sys/firmware/efi ]; then echo DISKTEST firmware=uefi; else echo DISKTEST firmware=bios; fi; echo DISKTEST-DONE'
ExecStartPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
";

fn build_root(dest: &Path) {
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let hook = "mkdir -p \"$1/etc/initramfs-tools/conf.d\"; echo MODULES=list > \"$1/etc/initramfs-tools/conf.d/disk-test.conf\"; \
                printf 'virtio_pci\\nvirtio_blk\\next4\\ncrc32c_generic\\n' > \"$1/etc/initramfs-tools/modules\"";
    sh(Command::new("mmdebstrap")
        .args(["--variant=minbase", "--include=linux-image-amd64,grub-pc-bin,grub-efi-amd64-bin,systemd-sysv,udev,dosfstools"])
        .args(["--dpkgopt=force-confold", "--dpkgopt=force-confdef"])
        .arg(format!("--essential-hook={hook}"))
        .arg("bookworm")
        .arg(&partial)
        .arg(mirror()));
    std::fs::rename(&partial, dest).unwrap();
}

/// The prepared root directory (built on first use of the day).
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let date = String::from_utf8(
            Command::new("date")
                .args(["-u", "+%Y%m%d"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/disk-test-root")
            .join(format!("bookworm-{}", date.trim()));
        if !root.join("etc").is_dir() {
            build_root(&root);
        }
        let unit = root.join("etc/systemd/system/disk-test-report.service");
        std::fs::write(&unit, REPORT_UNIT).unwrap();
        let wants = root.join("etc/systemd/system/multi-user.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        let link = wants.join("disk-test-report.service");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/etc/systemd/system/disk-test-report.service", &link).unwrap();
        // The build machine is shared: under load a TCG guest's udev can take minutes to
        // create /dev/disk/by-uuid links, longer than systemd's 90 s default device timeout.
        let conf = root.join("etc/systemd/system.conf.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("disk-test.conf"),
            "[Manager]\nDefaultDeviceTimeoutSec=900s\n",
        )
        .unwrap();
        // GRUB images from the image's own grub-mkimage, as the stemcell stages make them.
        stemcell::disk::grub::prepare_root(&root, &ids().root_fs.to_string()).unwrap();
        for argv in
            stemcell::disk::grub::mkimage_commands(stemcell::recipe::arch::Arch::Amd64, true, true)
        {
            sh(Command::new("chroot").arg(&root).args(&argv));
        }
        root
    })
}

/// Runs a checking tool; returns (success, stdout + stderr).
pub fn check(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
