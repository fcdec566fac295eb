//! What disk to build ([`DiskSpec`]) and where each partition goes ([`Layout`]).
//!
//! Invariants of every layout (cloudfoundry/bosh-linux-stemcell-builder `stemcell_builder/stages/image_create_efi/apply.sh`,
//! docs/agent-needs.md "Disk layout"):
//! - the root partition is the LAST partition, so the agent can add partitions after it;
//! - partitions start on 1 MiB boundaries; the first starts at 1 MiB, which leaves the
//!   2047-sector gap after the MBR for GRUB's core.img on MBR disks;
//! - the MBR layout is the official Noble one: p1 ESP (type 0xEF, boot flag) 1 MiB..49 MiB,
//!   formatted FAT16 (the agent skips the first `parted -m print` line only when it is `fat16`),
//!   p2 root from 50 MiB to the end of the disk.

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Bytes per logical sector; every LBA in this module counts these.
pub const SECTOR: u64 = 512;
/// One MiB in sectors: the partition alignment.
pub const MIB_SECTORS: u64 = 2048;
/// The ESP size of the official Noble layout: 48 MiB (1 MiB..49 MiB).
pub const ESP_SECTORS: u64 = 48 * MIB_SECTORS;
/// GPT only: the BIOS boot partition that holds core.img (1 MiB).
pub const BIOS_BOOT_SECTORS: u64 = MIB_SECTORS;
/// Sectors GPT keeps at the end of the disk: 32 sectors of backup entries and the backup header.
pub const GPT_BACKUP_SECTORS: u64 = 33;

/// The partition table type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionTable {
    /// msdos label, as the official builder uses on every Noble infrastructure.
    Mbr,
    /// GPT with a BIOS boot partition (if BIOS boot is wanted), the ESP and root last.
    Gpt,
}

impl std::str::FromStr for PartitionTable {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mbr" | "msdos" => Ok(Self::Mbr),
            "gpt" => Ok(Self::Gpt),
            other => bail!("unknown partition table {other:?} (expected mbr or gpt)"),
        }
    }
}

/// How the image boots; at least one must be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootModes {
    /// Legacy BIOS: GRUB boot.img in the MBR and core.img in the gap or the BIOS boot partition.
    pub bios: bool,
    /// UEFI: GRUB on the ESP as the removable-media path (`\EFI\BOOT\BOOTX64.EFI` on amd64).
    pub uefi: bool,
}

impl BootModes {
    /// Both ways: the official Noble hybrid image.
    pub const HYBRID: BootModes = BootModes {
        bios: true,
        uefi: true,
    };
}

/// The disk size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskSize {
    /// Just big enough: the root directory's usage plus a margin, rounded up to a MiB.
    Auto,
    /// A fixed size in MiB (the infrastructure's `default_disk_size`, 5120 on Noble).
    Mib(u64),
}

/// The GRUB superuser (`vcap`) password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrubPassword {
    /// A random 16-character password per build that nobody knows (the official behaviour).
    /// Such a disk is not byte-reproducible; give a password or hash for that.
    Random,
    /// A plain password; hashed with a salt derived from the password and the root UUID.
    Plain(String),
    /// A ready `grub.pbkdf2.sha512.…` hash as printed by `grub-mkpasswd-pbkdf2`.
    Hashed(String),
}

/// Every identifier written into the disk. Fixed ids make a build reproducible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskIds {
    /// ext4 UUID of the root filesystem (fstab, grub.cfg, the kernel command line).
    pub root_fs: Uuid,
    /// ext4 directory hash seed.
    pub ext4_hash_seed: Uuid,
    /// FAT volume id of the ESP; fstab shows it as `XXXX-XXXX`.
    pub esp_volume_id: u32,
    /// MBR disk signature (MBR layout).
    pub mbr_signature: u32,
    /// GPT disk GUID (GPT layout).
    pub gpt_disk: Uuid,
    /// GPT unique partition GUIDs, in partition order.
    pub gpt_partitions: [Uuid; 3],
}

impl DiskIds {
    /// Ids derived from a seed string (e.g. stemcell name, version, infrastructure and
    /// SOURCE_DATE_EPOCH): the same seed always gives the same ids.
    pub fn from_seed(seed: &str) -> DiskIds {
        let derive = |what: &str| -> [u8; 16] {
            let digest = Sha256::new()
                .chain_update(b"stemcell-disk-ids\0")
                .chain_update(seed.as_bytes())
                .chain_update(b"\0")
                .chain_update(what.as_bytes())
                .finalize();
            let mut b = [0u8; 16];
            b.copy_from_slice(&digest[..16]);
            b
        };
        let uuid = |what: &str| uuid::Builder::from_random_bytes(derive(what)).into_uuid();
        let u32_of = |what: &str| {
            let b = derive(what);
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        DiskIds {
            root_fs: uuid("root-fs"),
            ext4_hash_seed: uuid("ext4-hash-seed"),
            esp_volume_id: u32_of("esp-volume-id"),
            mbr_signature: u32_of("mbr-signature"),
            gpt_disk: uuid("gpt-disk"),
            gpt_partitions: [uuid("gpt-part-1"), uuid("gpt-part-2"), uuid("gpt-part-3")],
        }
    }

    /// Fresh random ids.
    pub fn random() -> Result<DiskIds> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
        Ok(Self::from_seed(&hex::encode(seed)))
    }

    /// The ESP volume id as fstab and blkid show it: `ABCD-1234`.
    pub fn esp_uuid(&self) -> String {
        format!(
            "{:04X}-{:04X}",
            self.esp_volume_id >> 16,
            self.esp_volume_id & 0xffff
        )
    }
}

/// Everything [`crate::disk::assemble`] needs besides the root directory.
#[derive(Clone, Debug)]
pub struct DiskSpec {
    /// The architecture of the root's kernel and GRUB.
    pub arch: crate::recipe::arch::Arch,
    pub size: DiskSize,
    pub table: PartitionTable,
    pub boot: BootModes,
    pub ids: DiskIds,
    /// Kernel command line options after `root=UUID=… ro` (`GRUB_CMDLINE_LINUX` of the builder's
    /// `stemcell_builder/stages/image_install_grub/apply.sh` plus the
    /// infrastructure's console options).
    pub kernel_options: Vec<String>,
    pub grub_password: GrubPassword,
    /// SOURCE_DATE_EPOCH: fixes every timestamp written into the disk.
    pub source_date_epoch: Option<u64>,
}

impl DiskSpec {
    /// The official Noble defaults: MBR, hybrid boot, the Noble kernel command line, a random
    /// GRUB password; SOURCE_DATE_EPOCH from the environment.
    pub fn new(ids: DiskIds) -> Result<DiskSpec> {
        Ok(DiskSpec {
            arch: crate::recipe::arch::Arch::Amd64,
            size: DiskSize::Mib(5120),
            table: PartitionTable::Mbr,
            boot: BootModes::HYBRID,
            ids,
            kernel_options: crate::disk::bootcfg::noble_kernel_options(),
            grub_password: GrubPassword::Random,
            source_date_epoch: source_date_epoch_from_env()?,
        })
    }
}

/// Reads SOURCE_DATE_EPOCH; an unparsable value is an error, not silently ignored.
pub fn source_date_epoch_from_env() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => bail!("SOURCE_DATE_EPOCH: {v:?} is not a number of seconds"),
        },
        Err(_) => Ok(None),
    }
}

/// What a partition is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    BiosBoot,
    Esp,
    Root,
}

/// One partition, in sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub role: Role,
    /// 1-based partition number as the kernel names it (`vda2`).
    pub number: u32,
    pub first_lba: u64,
    pub sectors: u64,
}

impl Extent {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR
    }
}

/// Where every partition goes on a disk of `total_sectors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub table: PartitionTable,
    pub total_sectors: u64,
    /// In disk order; the root partition is last.
    pub partitions: Vec<Extent>,
}

impl Layout {
    /// Places the partitions for `spec`. `root_min_bytes` is the least the root filesystem
    /// needs; a fixed size too small for it is an error saying how much is needed.
    pub fn plan(spec: &DiskSpec, root_min_bytes: u64) -> Result<Layout> {
        if !spec.boot.bios && !spec.boot.uefi {
            bail!("disk spec: no boot mode (need BIOS, UEFI or both)");
        }
        let mut parts = Vec::new();
        let mut next = MIB_SECTORS;
        let mut add = |role, sectors, next: &mut u64| {
            parts.push(Extent {
                role,
                number: parts.len() as u32 + 1,
                first_lba: *next,
                sectors,
            });
            *next += sectors;
        };
        if spec.table == PartitionTable::Gpt && spec.boot.bios {
            add(Role::BiosBoot, BIOS_BOOT_SECTORS, &mut next);
        }
        if spec.boot.uefi {
            add(Role::Esp, ESP_SECTORS, &mut next);
            if spec.table == PartitionTable::Mbr {
                // The official parted call starts root at 50 MiB, leaving 1 MiB unused.
                next += MIB_SECTORS;
            }
        }
        let root_start = next;
        let tail = match spec.table {
            PartitionTable::Mbr => 0,
            PartitionTable::Gpt => GPT_BACKUP_SECTORS,
        };
        let root_min_sectors = root_min_bytes.div_ceil(SECTOR);
        let needed_mib = (root_start + root_min_sectors + tail).div_ceil(MIB_SECTORS);
        let total_sectors = match spec.size {
            DiskSize::Auto => needed_mib * MIB_SECTORS,
            DiskSize::Mib(mib) if mib >= needed_mib => mib * MIB_SECTORS,
            DiskSize::Mib(mib) => {
                bail!("disk size {mib} MiB is too small: the root filesystem needs at least {needed_mib} MiB")
            }
        };
        if spec.table == PartitionTable::Mbr && total_sectors > u32::MAX as u64 {
            bail!("disk size over 2 TiB cannot be described by an MBR partition table; use gpt");
        }
        let mut root_sectors = total_sectors - tail - root_start;
        // ext4 uses whole 4 KiB blocks; keep the partition a multiple of them.
        root_sectors -= root_sectors % 8;
        add(Role::Root, root_sectors, &mut next);
        Ok(Layout {
            table: spec.table,
            total_sectors,
            partitions: parts,
        })
    }

    pub fn get(&self, role: Role) -> Option<&Extent> {
        self.partitions.iter().find(|p| p.role == role)
    }

    pub fn root(&self) -> &Extent {
        self.partitions
            .last()
            .expect("a layout always has a root partition")
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_sectors * SECTOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(table: PartitionTable, size: DiskSize) -> DiskSpec {
        DiskSpec {
            arch: crate::recipe::arch::Arch::Amd64,
            size,
            table,
            boot: BootModes::HYBRID,
            ids: DiskIds::from_seed("t"),
            kernel_options: vec![],
            grub_password: GrubPassword::Random,
            source_date_epoch: None,
        }
    }

    #[test]
    fn mbr_layout_is_the_official_noble_one() {
        let l = Layout::plan(&spec(PartitionTable::Mbr, DiskSize::Mib(5120)), 1 << 30).unwrap();
        assert_eq!(
            l.partitions[0],
            Extent {
                role: Role::Esp,
                number: 1,
                first_lba: 2048,
                sectors: 98304
            }
        );
        assert_eq!(l.root().first_lba, 50 * 2048);
        assert_eq!(l.root().first_lba + l.root().sectors, 5120 * 2048);
    }

    #[test]
    fn gpt_layout_puts_root_last_before_the_backup() {
        let l = Layout::plan(&spec(PartitionTable::Gpt, DiskSize::Mib(1024)), 1 << 20).unwrap();
        let roles: Vec<Role> = l.partitions.iter().map(|p| p.role).collect();
        assert_eq!(roles, [Role::BiosBoot, Role::Esp, Role::Root]);
        assert!(l.root().first_lba + l.root().sectors <= l.total_sectors - GPT_BACKUP_SECTORS);
    }

    #[test]
    fn too_small_disk_says_how_much_is_needed() {
        let e =
            Layout::plan(&spec(PartitionTable::Mbr, DiskSize::Mib(100)), 200 << 20).unwrap_err();
        assert!(e.to_string().contains("needs at least 250 MiB"), "{e}");
    }

    #[test]
    fn ids_from_a_seed_are_stable_and_distinct() {
        assert_eq!(DiskIds::from_seed("a"), DiskIds::from_seed("a"));
        assert_ne!(
            DiskIds::from_seed("a").root_fs,
            DiskIds::from_seed("b").root_fs
        );
    }
}
