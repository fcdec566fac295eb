//! GRUB for BIOS and UEFI without `grub-install`.
//!
//! (a) [`mkimage_commands`] gives the exact `grub-mkimage` command lines to run in the image's
//!     chroot (its own GRUB, so modules and images match), after [`prepare_root`] wrote the
//!     early config they embed: it finds the root filesystem by UUID and sets the prefix to its
//!     `/boot/grub`, whose `grub.cfg` `normal` then reads.
//! (b) [`embed_bios`] does what `grub-bios-setup` does for a disk: boot.img into the MBR (keeping
//!     the disk signature and the partition table, pointing its kernel sector at core.img) and
//!     core.img into the MBR gap (MBR) or the BIOS boot partition (GPT), with core.img's
//!     blocklist pointing at its own sectors. The UEFI image is copied onto the ESP by
//!     [`crate::disk::esp`] as the firmware's removable-media path ([`removable_efi_path`]):
//!     `\EFI\BOOT\BOOTX64.EFI` on amd64, `\EFI\BOOT\BOOTAA64.EFI` on arm64 (UEFI only: arm64
//!     has no BIOS).

use super::layout::{Layout, PartitionTable, Role, SECTOR};
use crate::recipe::arch::Arch;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Early config embedded in both images, relative to the root directory.
pub const EARLY_CFG: &str = "boot/grub/stemcell-early.cfg";
/// BIOS core image produced by `grub-mkimage -O i386-pc`, relative to the root directory.
pub const CORE_IMG: &str = "boot/grub/i386-pc/core.img";
/// BIOS MBR boot code shipped by grub-pc-bin, relative to the root directory.
pub const BOOT_IMG: &str = "usr/lib/grub/i386-pc/boot.img";
/// GRUB's UEFI platform of an architecture (`grub-mkimage -O`, `/usr/lib/grub/<platform>`).
pub fn efi_platform(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-efi",
        Arch::Arm64 => "arm64-efi",
    }
}

/// UEFI image produced by `grub-mkimage`, relative to the root directory.
pub fn core_efi(arch: Arch) -> String {
    format!("boot/grub/{}/core.efi", efi_platform(arch))
}

/// Where UEFI firmware looks on removable media (UEFI 2.x, 3.5.1.1), on the ESP.
pub fn removable_efi_path(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "EFI/BOOT/BOOTX64.EFI",
        Arch::Arm64 => "EFI/BOOT/BOOTAA64.EFI",
    }
}

/// Modules built into both images: enough to find the root filesystem by UUID on an MBR or
/// GPT disk, check the superuser password and boot Linux with a gzip'd initrd, so nothing is
/// loaded from a module directory at boot.
pub const MODULES_COMMON: &[&str] = &[
    "part_msdos",
    "part_gpt",
    "ext2",
    "search",
    "search_fs_uuid",
    "configfile",
    "normal",
    "linux",
    "gzio",
    "echo",
    "test",
    "password_pbkdf2",
];
/// BIOS-only modules.
pub const MODULES_I386_PC: &[&str] = &["biosdisk"];
/// UEFI-only modules (`fat` lets the ESP stub config be read; `all_video` a framebuffer).
pub const MODULES_EFI: &[&str] = &["fat", "all_video"];

/// Sector of core.img's diskboot blocklist entry: the last 12 bytes of its first sector
/// (`struct grub_pc_bios_boot_blocklist { u64 start; u16 len; u16 segment }`).
const BLOCKLIST: usize = 512 - 12;
/// Real-mode segment the first blocklist entry loads to (GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20).
const CORE_SEGMENT: u16 = 0x820;
// boot.img fields (grub/include/grub/i386/pc/boot.h).
const BPB_START: usize = 0x03;
const BPB_END: usize = 0x5a;
const KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;
const NT_MAGIC: usize = 0x1b8;
const PART_END: usize = 0x1fe;

/// The early config for both images.
pub fn early_config(root_uuid: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {root_uuid}\n\
         set prefix=($root)/boot/grub\n"
    )
}

/// Writes the early config into the root directory and creates the output directories of
/// [`mkimage_commands`]. Run before those commands.
pub fn prepare_root(root: &Path, root_uuid: &str) -> Result<()> {
    for dir in [
        "boot/grub/i386-pc",
        "boot/grub/x86_64-efi",
        "boot/grub/arm64-efi",
    ] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    let cfg = root.join(EARLY_CFG);
    std::fs::write(&cfg, early_config(root_uuid))
        .with_context(|| format!("{}: cannot write", cfg.display()))
}

/// The `grub-mkimage` command lines (argv, absolute paths inside the chroot) that build the
/// boot images the disk needs, to run in the image's chroot after [`prepare_root`]. BIOS
/// exists on amd64 only.
pub fn mkimage_commands(arch: Arch, bios: bool, uefi: bool) -> Vec<Vec<String>> {
    let cmd = |format: &str, out: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["grub-mkimage", "-O", format, "-o"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(format!("/{out}"));
        v.extend(["-d".to_string(), format!("/usr/lib/grub/{format}")]);
        v.extend(["-p".to_string(), "/boot/grub".to_string()]);
        v.extend(["-c".to_string(), format!("/{EARLY_CFG}")]);
        v.extend(MODULES_COMMON.iter().chain(extra).map(|s| s.to_string()));
        v
    };
    let mut cmds = Vec::new();
    if bios && arch == Arch::Amd64 {
        cmds.push(cmd("i386-pc", CORE_IMG, MODULES_I386_PC));
    }
    if uefi {
        cmds.push(cmd(efi_platform(arch), &core_efi(arch), MODULES_EFI));
    }
    cmds
}

/// Reads a file of the root directory, naming it in the error.
pub fn read_root_file(root: &Path, rel: &str, what: &str) -> Result<Vec<u8>> {
    let p = root.join(rel);
    std::fs::read(&p).with_context(|| {
        format!(
            "{}: cannot read the {what} (run the grub-mkimage step first)",
            p.display()
        )
    })
}

/// Embeds BIOS GRUB into `disk` as `grub-bios-setup` does. LBA 0 must already hold the
/// partition table (MBR or protective MBR); its bytes 440..510 are kept.
pub fn embed_bios(disk: &File, layout: &Layout, boot_img: &[u8], core_img: &[u8]) -> Result<()> {
    if boot_img.len() != 512 {
        bail!("GRUB boot.img is {} bytes, expected 512", boot_img.len());
    }
    if core_img.len() < 512 || u16::from_le_bytes([core_img[510], core_img[511]]) != CORE_SEGMENT {
        bail!("GRUB core.img does not start with diskboot.img (not an i386-pc core image)");
    }
    let (first_sector, room) = match layout.table {
        PartitionTable::Mbr => (1, layout.partitions[0].first_lba - 1),
        PartitionTable::Gpt => {
            let p = layout
                .get(Role::BiosBoot)
                .context("GPT disk without a BIOS boot partition")?;
            (p.first_lba, p.sectors)
        }
    };
    let nsec = (core_img.len() as u64).div_ceil(SECTOR);
    if nsec > room {
        bail!("GRUB core.img needs {nsec} sectors but only {room} fit before the first partition");
    }

    // core.img: clear the blocklist (entries grow downwards from BLOCKLIST), then one entry
    // for the sectors after the first, which boot.img itself loads.
    let mut core = core_img.to_vec();
    core.resize((nsec * SECTOR) as usize, 0);
    let mut at = BLOCKLIST;
    while at >= 12 && u16::from_le_bytes([core[at + 8], core[at + 9]]) != 0 {
        core[at..at + 12].fill(0);
        at -= 12;
    }
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(first_sector + 1).to_le_bytes());
    core[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&((nsec - 1) as u16).to_le_bytes());
    core[BLOCKLIST + 10..BLOCKLIST + 12].copy_from_slice(&CORE_SEGMENT.to_le_bytes());

    // boot.img: keep the disk's BPB area and table, point it at core.img's first sector, and
    // skip the boot drive check (hard disk: buggy BIOSes pass 0x00 instead of 0x80).
    let mut current = [0u8; 512];
    disk.read_exact_at(&mut current, 0)
        .context("cannot read the MBR")?;
    let mut mbr = [0u8; 512];
    mbr.copy_from_slice(boot_img);
    mbr[BPB_START..BPB_END].copy_from_slice(&current[BPB_START..BPB_END]);
    mbr[DRIVE_CHECK] = 0x90;
    mbr[DRIVE_CHECK + 1] = 0x90;
    mbr[NT_MAGIC..PART_END].copy_from_slice(&current[NT_MAGIC..PART_END]);
    mbr[BOOT_DRIVE] = 0xFF;
    mbr[PART_END..].copy_from_slice(&[0x55, 0xAA]);
    mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&first_sector.to_le_bytes());

    disk.write_all_at(&core, first_sector * SECTOR)
        .context("cannot write GRUB core.img")?;
    disk.write_all_at(&mbr, 0)
        .context("cannot write GRUB boot.img")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::layout::{Extent, Layout};

    /// A stand-in core.img of `sectors` sectors with mkimage's default blocklist.
    fn fake_core(sectors: usize) -> Vec<u8> {
        let mut c = vec![0xAB; sectors * 512 - 100];
        c[BLOCKLIST..BLOCKLIST + 12].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0x20, 0x08]);
        c
    }

    fn embed(table: PartitionTable, first: u64) -> Vec<u8> {
        let f = tempfile::tempfile().unwrap();
        f.set_len(4 << 20).unwrap();
        let mut mbr = [0u8; 512];
        mbr[440..444].copy_from_slice(&[1, 2, 3, 4]);
        mbr[446] = 0x80;
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        f.write_all_at(&mbr, 0).unwrap();
        let role = if table == PartitionTable::Gpt {
            Role::BiosBoot
        } else {
            Role::Root
        };
        let parts = vec![Extent {
            role,
            number: 1,
            first_lba: first,
            sectors: 2048,
        }];
        let layout = Layout {
            table,
            total_sectors: 8192,
            partitions: parts,
        };
        let mut boot = [0x11u8; 512];
        boot[DRIVE_CHECK] = 0x74;
        embed_bios(&f, &layout, &boot, &fake_core(10)).unwrap();
        let mut out = vec![0u8; 4 << 20];
        f.read_exact_at(&mut out, 0).unwrap();
        out
    }

    #[test]
    fn bios_embedding_patches_boot_img_and_the_blocklist_like_grub_bios_setup() {
        let d = embed(PartitionTable::Mbr, 2048);
        assert_eq!(&d[440..444], &[1, 2, 3, 4], "disk signature kept");
        assert_eq!(d[446], 0x80, "partition table kept");
        assert_eq!(&d[510..512], &[0x55, 0xAA]);
        assert_eq!(
            u64::from_le_bytes(d[KERNEL_SECTOR..KERNEL_SECTOR + 8].try_into().unwrap()),
            1
        );
        assert_eq!(d[BOOT_DRIVE], 0xFF);
        assert_eq!(&d[DRIVE_CHECK..DRIVE_CHECK + 2], &[0x90, 0x90]);
        let bl = 512 + BLOCKLIST;
        assert_eq!(
            u64::from_le_bytes(d[bl..bl + 8].try_into().unwrap()),
            2,
            "rest starts after core's first sector"
        );
        assert_eq!(
            u16::from_le_bytes([d[bl + 8], d[bl + 9]]),
            9,
            "10 sectors, the first loaded by boot.img"
        );
        assert_eq!(u16::from_le_bytes([d[bl + 10], d[bl + 11]]), 0x820);
        assert_eq!(d[512 + 5020], 0, "core.img padded with zeros to a sector");
        assert_eq!(d[512 + 5019], 0xAB);

        let g = embed(PartitionTable::Gpt, 34);
        assert_eq!(
            u64::from_le_bytes(g[KERNEL_SECTOR..KERNEL_SECTOR + 8].try_into().unwrap()),
            34
        );
        let bl = 34 * 512 + BLOCKLIST;
        assert_eq!(u64::from_le_bytes(g[bl..bl + 8].try_into().unwrap()), 35);
    }

    #[test]
    fn core_img_too_big_for_the_gap_is_refused() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(4 << 20).unwrap();
        let parts = vec![Extent {
            role: Role::Root,
            number: 1,
            first_lba: 8,
            sectors: 100,
        }];
        let layout = Layout {
            table: PartitionTable::Mbr,
            total_sectors: 8192,
            partitions: parts,
        };
        let e = embed_bios(&f, &layout, &[0u8; 512], &fake_core(10)).unwrap_err();
        assert!(
            e.to_string().contains("needs 10 sectors but only 7 fit"),
            "{e}"
        );
    }

    #[test]
    fn mkimage_command_lines_embed_the_early_config() {
        let cmds = mkimage_commands(Arch::Amd64, true, true);
        assert_eq!(cmds.len(), 2);
        let bios = cmds[0].join(" ");
        assert!(bios.starts_with("grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -d /usr/lib/grub/i386-pc -p /boot/grub -c /boot/grub/stemcell-early.cfg part_msdos"), "{bios}");
        assert!(bios.ends_with(" biosdisk"));
        assert!(cmds[1]
            .iter()
            .any(|a| a == "/boot/grub/x86_64-efi/core.efi"));
        let arm = mkimage_commands(Arch::Arm64, false, true);
        assert_eq!(arm.len(), 1);
        let efi = arm[0].join(" ");
        assert!(efi.starts_with("grub-mkimage -O arm64-efi -o /boot/grub/arm64-efi/core.efi -d /usr/lib/grub/arm64-efi "), "{efi}");
    }
}
