//! `assemble`: root directory + [`DiskSpec`] → bootable raw disk, written atomically.
//!
//! Order: boot configuration into the root directory (grub.cfg, fstab, /etc/default/grub),
//! measure it, place the partitions, then into one temporary file: partition table, ESP,
//! ext4, GRUB BIOS embedding; rename into place only when all of it succeeded.

use super::bootcfg::{self, BootConfig};
use super::esp::{self, EspFile};
use super::ext4::{self, Ext4};
use super::grub;
use super::layout::{DiskSpec, GrubPassword, Layout, PartitionTable, Role};
use super::{gpt, mbr, password, usage};
use crate::output::AtomicOutput;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha512};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One partition of the assembled disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// 1-based number (`vda1`).
    pub number: u32,
    /// `bios-boot`, `esp` or `root`.
    pub role: &'static str,
    pub first_lba: u64,
    pub sectors: u64,
}

/// What was built.
#[derive(Clone, Debug)]
pub struct AssembledDisk {
    pub size_bytes: u64,
    pub root_uuid: String,
    /// `XXXX-XXXX` when the disk has an ESP.
    pub esp_uuid: Option<String>,
    pub partitions: Vec<PartitionInfo>,
    pub kernel_version: String,
    /// The GRUB superuser password when it was generated here (shown once, never stored).
    pub generated_grub_password: Option<String>,
}

/// Writes `contents` to `root/rel` with `mode`, creating parents; mtime = SOURCE_DATE_EPOCH.
fn write_root_file(
    root: &Path,
    rel: &str,
    contents: &[u8],
    mode: u32,
    epoch: Option<u64>,
) -> Result<()> {
    let p = root.join(rel);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    std::fs::write(&p, contents).with_context(|| format!("{}: cannot write", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("{}: cannot set mode", p.display()))?;
    if let Some(t) = epoch {
        let f = std::fs::File::options().write(true).open(&p)?;
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
            .with_context(|| format!("{}: cannot set mtime", p.display()))?;
    }
    Ok(())
}

/// Refuses a root directory with something mounted inside it (a chroot session's /proc, /dev,
/// /sys): `mke2fs -d` would copy their contents into the image.
fn check_nothing_mounted(root: &Path) -> Result<()> {
    let root = std::fs::canonicalize(root)
        .with_context(|| format!("{}: cannot resolve", root.display()))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    for line in info.lines() {
        // Field 5 is the mount point, with spaces and the like octal-escaped.
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let point = Path::new(point);
        if point != root && point.starts_with(&root) {
            bail!(
                "{}: {} is mounted inside the root directory; unmount it first",
                root.display(),
                point.display()
            );
        }
    }
    Ok(())
}

/// Builds the bootable raw disk `out` from the root directory `root` (which gets the boot
/// configuration written into it first). `force` overwrites an existing `out`.
pub fn assemble(root: &Path, spec: &DiskSpec, out: &Path, force: bool) -> Result<AssembledDisk> {
    if !root.join("etc").is_dir() {
        bail!("{}: not a root directory (no etc/)", root.display());
    }
    check_nothing_mounted(root)?;
    let kernel = bootcfg::find_kernel(root)?;
    let root_uuid = spec.ids.root_fs.to_string();
    let esp_uuid = spec.boot.uefi.then(|| spec.ids.esp_uuid());

    // Read the GRUB images first: a missing one is an input error, found before any work.
    let bios_images = if spec.boot.bios {
        Some((
            grub::read_root_file(root, grub::BOOT_IMG, "GRUB boot.img (grub-pc-bin)")?,
            grub::read_root_file(root, grub::CORE_IMG, "GRUB core.img")?,
        ))
    } else {
        None
    };
    let efi_image = if spec.boot.uefi {
        Some(grub::read_root_file(
            root,
            &grub::core_efi(spec.arch),
            "GRUB UEFI image",
        )?)
    } else {
        None
    };

    let (password_hash, generated) = match &spec.grub_password {
        GrubPassword::Hashed(h) if h.starts_with("grub.pbkdf2.sha512.") => (h.clone(), None),
        GrubPassword::Hashed(_) => bail!("GRUB password hash must start with grub.pbkdf2.sha512."),
        GrubPassword::Plain(p) => {
            // Salt derived from the password and the disk: reproducible, distinct per disk.
            let salt: [u8; 64] = Sha512::new()
                .chain_update(b"stemcell-grub-salt\0")
                .chain_update(p)
                .chain_update(&root_uuid)
                .finalize()
                .into();
            (password::grub_pbkdf2_hash(p, &salt), None)
        }
        GrubPassword::Random => {
            let p = password::random_password()?;
            (
                password::grub_pbkdf2_hash(&p, &password::random_salt()?),
                Some(p),
            )
        }
    };

    let cfg = BootConfig {
        kernel: &kernel,
        root_uuid: &root_uuid,
        esp_uuid: esp_uuid.as_deref(),
        kernel_options: &spec.kernel_options,
        password_hash: &password_hash,
        menu_title: "BOSH stemcell",
    };
    let epoch = spec.source_date_epoch;
    write_root_file(
        root,
        "boot/grub/grub.cfg",
        cfg.grub_cfg().as_bytes(),
        0o600,
        epoch,
    )?;
    write_root_file(root, "etc/fstab", cfg.fstab().as_bytes(), 0o644, epoch)?;
    write_root_file(
        root,
        "etc/default/grub",
        cfg.default_grub().as_bytes(),
        0o644,
        epoch,
    )?;
    if spec.boot.uefi {
        std::fs::create_dir_all(root.join("boot/efi")).context("cannot create boot/efi")?;
    }
    if let Some(t) = epoch {
        ext4::clamp_mtimes(root, t)?;
    }

    let usage = usage::measure(root)?;
    let layout =
        Layout::plan(spec, usage.min_fs_bytes()).with_context(|| format!("{}", root.display()))?;

    let mut output = AtomicOutput::create(out, force)?;
    let disk = output.file();
    disk.set_len(layout.total_bytes())
        .with_context(|| format!("{}: cannot size the disk", out.display()))?;
    let ctx = || format!("{}", out.display());
    match layout.table {
        PartitionTable::Mbr => {
            mbr::write(disk, &layout, spec.ids.mbr_signature).with_context(ctx)?
        }
        PartitionTable::Gpt => gpt::write(disk, &layout, &spec.ids).with_context(ctx)?,
    }
    if let (Some(esp_part), Some(efi)) = (layout.get(Role::Esp), efi_image) {
        let stub = bootcfg::esp_stub_cfg(&root_uuid).into_bytes();
        let files = vec![
            EspFile {
                path: grub::removable_efi_path(spec.arch).into(),
                data: efi,
            },
            EspFile {
                path: "EFI/BOOT/grub.cfg".into(),
                data: stub.clone(),
            },
            EspFile {
                path: "EFI/debian/grub.cfg".into(),
                data: stub.clone(),
            },
            EspFile {
                path: "EFI/ubuntu/grub.cfg".into(),
                data: stub,
            },
            // The full menu where the official UEFI layout has it (the stemcell spec reads
            // `/boot/efi/EFI/grub/grub.cfg`); it finds the root by UUID itself.
            EspFile {
                path: "EFI/grub/grub.cfg".into(),
                data: cfg.grub_cfg().into_bytes(),
            },
        ];
        let now = epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        esp::build(disk, esp_part, spec.ids.esp_volume_id, now, &files).with_context(ctx)?;
    }
    let fs = Ext4 {
        source: root,
        uuid: spec.ids.root_fs,
        hash_seed: spec.ids.ext4_hash_seed,
        usage,
        source_date_epoch: epoch,
    };
    ext4::build(disk, layout.root(), &fs).with_context(ctx)?;
    if let Some((boot_img, core_img)) = bios_images {
        grub::embed_bios(disk, &layout, &boot_img, &core_img).with_context(ctx)?;
    }
    output.commit()?;

    Ok(AssembledDisk {
        size_bytes: layout.total_bytes(),
        root_uuid,
        esp_uuid,
        partitions: layout
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                number: p.number,
                role: match p.role {
                    Role::BiosBoot => "bios-boot",
                    Role::Esp => "esp",
                    Role::Root => "root",
                },
                first_lba: p.first_lba,
                sectors: p.sectors,
            })
            .collect(),
        kernel_version: kernel.version,
        generated_grub_password: generated,
    })
}
