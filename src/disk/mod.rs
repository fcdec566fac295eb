//! Rootless disk assembly: partition tables, ext4 from a directory, the FAT ESP, GRUB.
//!
//! Nothing here needs a loop device, a mount or kpartx: the partition table is written by the
//! program ([`mbr`], [`gpt`]), ext4 is built from the root directory by `mke2fs -d` at an offset
//! inside the disk file ([`ext4`]), the ESP by the `fatfs` crate ([`esp`]), and GRUB's BIOS boot
//! code is embedded as `grub-bios-setup` does it ([`grub`]). [`assemble`] ties them together.
//!
//! The boot images themselves come from the image's own GRUB: the stemcell stages run the
//! command lines of [`grub::mkimage_commands`] in the chroot, and [`assemble`] consumes the
//! files they produce.
//!
//! How the `build` command uses it (the chroot part belongs to the stemcell stages):
//!
//! ```text
//! let ids = DiskIds::from_seed(&format!("{name}/{version}/{infra}/{epoch}"));  // or DiskIds::random()?
//! let mut spec = DiskSpec::new(ids)?;            // Noble defaults: MBR, BIOS+UEFI, 5120 MiB
//! spec.kernel_options.extend(infra_console_options);
//! grub::prepare_root(root, &ids.root_fs.to_string())?;
//! for argv in grub::mkimage_commands(spec.arch, spec.boot.bios, spec.boot.uefi) { /* run in the chroot */ }
//! // unmount the chroot session, then:
//! let disk = disk::assemble(root, &spec, &out_raw, force)?;
//! ```

pub mod assemble;
pub mod bootcfg;
pub mod esp;
pub mod ext4;
pub mod fat_fixup;
pub mod gpt;
pub mod grub;
pub mod layout;
pub mod mbr;
pub mod password;
pub mod usage;

pub use assemble::{assemble, AssembledDisk, PartitionInfo};
pub use layout::{BootModes, DiskIds, DiskSize, DiskSpec, GrubPassword, PartitionTable};
