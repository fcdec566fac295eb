//! The boot configuration written into the root directory before ext4 is built:
//! `/boot/grub/grub.cfg`, the ESP stub `grub.cfg`, `/etc/fstab`, `/etc/default/grub`
//! (cloudfoundry/bosh-linux-stemcell-builder `stemcell_builder/stages/image_install_grub/apply.sh`).
//! Everything refers to filesystems by UUID.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The Noble kernel command line (`GRUB_CMDLINE_LINUX` of cloudfoundry/bosh-linux-stemcell-builder
/// `stemcell_builder/stages/image_install_grub/apply.sh`: jammy's list without `ipv6.disable=1`,
/// `apparmor=1 security=apparmor` and `systemd.unified_cgroup_hierarchy=false`).
/// Infrastructure suffixes (e.g. `console=hvc0`) are appended by the caller.
pub const NOBLE_KERNEL_OPTIONS: &[&str] = &[
    "vconsole.keymap=us",
    "net.ifnames=0",
    "biosdevname=0",
    "crashkernel=auto",
    "selinux=0",
    "plymouth.enable=0",
    "console=ttyS0,115200n8",
    "earlyprintk=ttyS0",
    "rootdelay=300",
    "audit=1",
    "cgroup_enable=memory",
    "swapaccount=1",
];

pub fn noble_kernel_options() -> Vec<String> {
    NOBLE_KERNEL_OPTIONS.iter().map(|s| s.to_string()).collect()
}

/// `options` for a kernel of `arch`. On arm64 `earlyprintk` (x86's) goes, and the serial
/// console is named twice: `ttyS0` (AWS Graviton's 8250-compatible UART) and then `ttyAMA0`
/// (the PL011 of QEMU and KVM `virt` machines, OpenStack's); the kernel skips the one the
/// machine lacks, and the last one present is `/dev/console`.
pub fn kernel_options_for(arch: crate::recipe::arch::Arch, options: Vec<String>) -> Vec<String> {
    use crate::recipe::arch::Arch;
    match arch {
        Arch::Amd64 => options,
        Arch::Arm64 => options
            .into_iter()
            .filter(|o| !o.starts_with("earlyprintk="))
            .flat_map(|o| match o.strip_prefix("console=ttyS0") {
                Some(rest) => vec![
                    format!("console=ttyS0{rest}"),
                    format!("console=ttyAMA0{rest}"),
                ],
                None => vec![o],
            })
            .collect(),
    }
}

/// The kernel and initrd to boot, relative to the root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub version: String,
    /// `/boot/vmlinuz-<version>`
    pub image: String,
    /// `/boot/initrd.img-<version>`
    pub initrd: String,
}

/// Orders kernel versions the way people read them: numeric runs compare as numbers.
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (num, tail) = rest.split_at(digits);
        let text_len = tail.len() - tail.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
        let (text, tail) = tail.split_at(text_len);
        key.push((num.parse().unwrap_or(0), text.to_string()));
        rest = tail;
    }
    key
}

/// Finds the newest `/boot/vmlinuz-*` with its `/boot/initrd.img-*` in the root directory.
pub fn find_kernel(root: &Path) -> Result<Kernel> {
    let boot = root.join("boot");
    let entries = std::fs::read_dir(&boot)
        .with_context(|| format!("{}: cannot list the kernels", boot.display()))?;
    let mut versions: Vec<String> = Vec::new();
    for e in entries {
        let name = e
            .with_context(|| format!("{}: cannot list the kernels", boot.display()))?
            .file_name();
        if let Some(v) = name.to_str().and_then(|n| n.strip_prefix("vmlinuz-")) {
            versions.push(v.to_string());
        }
    }
    versions.sort_by_key(|v| version_key(v));
    let Some(version) = versions.pop() else {
        bail!(
            "{}: no kernel (vmlinuz-*) to boot; install a linux-image package first",
            boot.display()
        );
    };
    let initrd = format!("/boot/initrd.img-{version}");
    if !root.join(&initrd[1..]).is_file() {
        bail!(
            "{}: kernel {version} has no initrd.img-{version}",
            boot.display()
        );
    }
    Ok(Kernel {
        image: format!("/boot/vmlinuz-{version}"),
        initrd,
        version,
    })
}

/// Inputs of the generated configuration.
pub struct BootConfig<'a> {
    pub kernel: &'a Kernel,
    pub root_uuid: &'a str,
    /// `XXXX-XXXX` when the disk has an ESP.
    pub esp_uuid: Option<&'a str>,
    pub kernel_options: &'a [String],
    /// `grub.pbkdf2.sha512.…`
    pub password_hash: &'a str,
    pub menu_title: &'a str,
}

impl BootConfig<'_> {
    /// `/boot/grub/grub.cfg`: one entry anyone may boot (`--unrestricted`), editing needs the
    /// `vcap` superuser password. The modules it loads are all built into the GRUB images
    /// ([`crate::disk::grub::MODULES_COMMON`]), so no module directory is needed.
    /// `set root=(hd0,0)` is the official line (the stemcell spec matches it); the `search`
    /// after it sets the root that is used, by UUID.
    pub fn grub_cfg(&self) -> String {
        let k = self.kernel;
        let search = format!("search --no-floppy --fs-uuid --set=root {}", self.root_uuid);
        format!(
            "# Written by the stemcell builder. Boots the root filesystem by UUID.\n\
             set default=\"0\"\n\
             set timeout=5\n\
             set superusers=\"vcap\"\n\
             password_pbkdf2 vcap {hash}\n\
             insmod part_msdos\n\
             insmod part_gpt\n\
             insmod ext2\n\
             set root=(hd0,0)\n\
             {search}\n\
             \n\
             menuentry '{title}' --class os --unrestricted {{\n\
             \tinsmod gzio\n\
             \t{search}\n\
             \tlinux\t{image} root=UUID={uuid} ro {opts}\n\
             \tinitrd\t{initrd}\n\
             }}\n",
            hash = self.password_hash,
            title = self.menu_title,
            image = k.image,
            uuid = self.root_uuid,
            opts = self.kernel_options.join(" "),
            initrd = k.initrd,
        )
    }

    /// `/etc/fstab`, as the official builder writes it (with the ESP at `/boot/efi`).
    pub fn fstab(&self) -> String {
        let mut s = format!(
            "# /etc/fstab Created by BOSH Stemcell Builder\nUUID={} / ext4 defaults 1 1\n",
            self.root_uuid
        );
        if let Some(esp) = self.esp_uuid {
            // umask=0177 makes the ESP's files 0600, as the official tests check.
            s.push_str(&format!("UUID={esp} /boot/efi vfat umask=0177 1 1\n"));
        }
        s
    }

    /// `/etc/default/grub`, so a later `update-grub` in the VM keeps the command line.
    pub fn default_grub(&self) -> String {
        format!("GRUB_CMDLINE_LINUX=\"{}\"\n", self.kernel_options.join(" "))
    }
}

/// The stub config on the ESP (`EFI/BOOT/grub.cfg`): finds the root filesystem and hands over
/// to its `/boot/grub/grub.cfg`. BOOTX64.EFI's built-in config does the same; the stub serves
/// signed shim+grub chains, which read `grub.cfg` next to themselves (docs/formats.md "ESP for signed boot chains").
pub fn esp_stub_cfg(root_uuid: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {root_uuid}\n\
         set prefix=($root)/boot/grub\n\
         configfile $prefix/grub.cfg\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_names_both_serial_consoles_and_drops_earlyprintk() {
        use crate::recipe::arch::Arch;
        let amd64 = kernel_options_for(Arch::Amd64, noble_kernel_options());
        assert_eq!(amd64, noble_kernel_options());
        let arm64 = kernel_options_for(Arch::Arm64, noble_kernel_options()).join(" ");
        assert!(
            arm64.contains("console=ttyS0,115200n8 console=ttyAMA0,115200n8 rootdelay=300"),
            "{arm64}"
        );
        assert!(!arm64.contains("earlyprintk"), "{arm64}");
    }

    #[test]
    fn newest_kernel_wins_numerically() {
        let mut v = ["6.1.0-9-amd64".to_string(), "6.1.0-10-amd64".to_string()];
        v.sort_by_key(|v| version_key(v));
        assert_eq!(v.last().unwrap(), "6.1.0-10-amd64");
    }

    #[test]
    fn grub_cfg_has_the_official_lines() {
        let k = Kernel {
            version: "6.8".into(),
            image: "/boot/vmlinuz-6.8".into(),
            initrd: "/boot/initrd.img-6.8".into(),
        };
        let opts = noble_kernel_options();
        let c = BootConfig {
            kernel: &k,
            root_uuid: "u-1",
            esp_uuid: Some("AB-CD"),
            kernel_options: &opts,
            password_hash: "grub.pbkdf2.x",
            menu_title: "t",
        };
        let cfg = c.grub_cfg();
        assert!(cfg.contains("set default=\"0\"\n"));
        assert!(cfg.contains("\nset root=(hd0,0)\nsearch --no-floppy --fs-uuid --set=root u-1\n"));
        assert!(cfg.contains(
            "\tlinux\t/boot/vmlinuz-6.8 root=UUID=u-1 ro vconsole.keymap=us net.ifnames=0"
        ));
        assert!(cfg.contains("\tinitrd\t/boot/initrd.img-6.8\n"));
        assert!(cfg.contains("password_pbkdf2 vcap grub.pbkdf2.x\n"));
        assert!(c
            .fstab()
            .contains("UUID=AB-CD /boot/efi vfat umask=0177 1 1\n"));
    }
}
