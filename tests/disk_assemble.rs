//! Disk assembly end to end: a real Debian root, real checking tools (sfdisk, sgdisk,
//! fsck.ext4, fsck.vfat, mtools) and real boots under QEMU with SeaBIOS and OVMF.

#[path = "common/disk.rs"]
mod fixture;
#[path = "common/qemu.rs"]
mod qemu;

use fixture::{check, ids, root, ROOT_LOCK};
use qemu::{Firmware, Vm};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use stemcell::disk::{assemble, AssembledDisk, DiskSize, DiskSpec, GrubPassword, PartitionTable};

const EPOCH: u64 = 1_700_000_000;

fn out_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/disk-test-out");
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn spec(table: PartitionTable) -> DiskSpec {
    DiskSpec {
        arch: stemcell::recipe::arch::Arch::Amd64,
        size: DiskSize::Auto,
        table,
        boot: stemcell::disk::BootModes::HYBRID,
        ids: ids(),
        // Debian's initramfs-tools `init` sleeps `rootdelay` seconds unconditionally, so the
        // official rootdelay=300 would cost five minutes per test boot.
        kernel_options: stemcell::disk::bootcfg::noble_kernel_options()
            .into_iter()
            .filter(|o| o != "rootdelay=300")
            .collect(),
        grub_password: GrubPassword::Plain("disk-test".into()),
        source_date_epoch: Some(EPOCH),
    }
}

fn build(name: &str, spec: &DiskSpec) -> (PathBuf, AssembledDisk) {
    let root = root();
    let _guard = ROOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = out_dir().join(name);
    let start = std::time::Instant::now();
    let disk = assemble(root, spec, &out, true).unwrap();
    eprintln!(
        "assembled {name}: {} MiB in {:.1} s",
        disk.size_bytes >> 20,
        start.elapsed().as_secs_f64()
    );
    (out, disk)
}

fn mbr_disk() -> &'static (PathBuf, AssembledDisk) {
    static D: OnceLock<(PathBuf, AssembledDisk)> = OnceLock::new();
    D.get_or_init(|| build("mbr.raw", &spec(PartitionTable::Mbr)))
}

fn gpt_disk() -> &'static (PathBuf, AssembledDisk) {
    static D: OnceLock<(PathBuf, AssembledDisk)> = OnceLock::new();
    D.get_or_init(|| build("gpt.raw", &spec(PartitionTable::Gpt)))
}

/// fsck.ext4 on the root partition and fsck.vfat on the ESP, both read in place or dd'd out.
fn check_filesystems(path: &Path, disk: &AssembledDisk) {
    let rootp = disk.partitions.iter().find(|p| p.role == "root").unwrap();
    let (ok, text) = check(Command::new("e2fsck").args(["-f", "-n"]).arg(format!(
        "{}?offset={}",
        path.display(),
        rootp.first_lba * 512
    )));
    assert!(ok, "e2fsck:\n{text}");
    let (_, text) = check(
        Command::new("blkid")
            .args(["-p", "-O", &(rootp.first_lba * 512).to_string()])
            .arg(path),
    );
    assert!(
        text.contains(&format!("UUID=\"{}\"", disk.root_uuid)),
        "blkid: {text}"
    );

    let esp = disk.partitions.iter().find(|p| p.role == "esp").unwrap();
    let img = path.with_extension("esp");
    let (ok, text) = check(
        Command::new("dd")
            .arg(format!("if={}", path.display()))
            .arg(format!("of={}", img.display()))
            .args([
                format!("skip={}", esp.first_lba),
                format!("count={}", esp.sectors),
                "status=none".into(),
            ]),
    );
    assert!(ok, "{text}");
    let (ok, text) = check(Command::new("fsck.vfat").args(["-n", "-v"]).arg(&img));
    assert!(
        ok && !text.contains("Expected a valid") && !text.contains("Invalid"),
        "fsck.vfat:\n{text}"
    );
    assert!(
        text.contains("16 bit entries"),
        "ESP must be FAT16 for the agent:\n{text}"
    );
    assert!(
        text.contains(&format!("{} hidden sectors", esp.first_lba)),
        "ESP hidden sectors:\n{text}"
    );
    let _ = std::fs::remove_file(&img);
    let (_, text) = check(
        Command::new("blkid")
            .args(["-p", "-O", &(esp.first_lba * 512).to_string()])
            .arg(path),
    );
    assert!(
        text.contains("VERSION=\"FAT16\"") && text.contains("TYPE=\"vfat\""),
        "blkid ESP: {text}"
    );
    let (ok, text) = check(
        Command::new("mdir")
            .arg("-i")
            .arg(format!("{}@@{}", path.display(), esp.first_lba * 512))
            .args(["-/", "::/EFI"]),
    );
    assert!(
        ok && text.contains("BOOTX64  EFI") && text.contains("GRUB     CFG"),
        "mdir:\n{text}"
    );
    let (ok, text) = check(
        Command::new("mdir")
            .arg("-i")
            .arg(format!("{}@@{}", path.display(), esp.first_lba * 512))
            .arg("::/"),
    );
    let esp_uuid = disk.esp_uuid.as_ref().unwrap();
    assert!(
        ok && text.contains(&format!("Volume Serial Number is {esp_uuid}")),
        "mdir:\n{text}"
    );
}

fn assert_booted(
    path: &Path,
    disk: &AssembledDisk,
    firmware: Firmware,
    root_dev: &str,
    esp_dev: &str,
) {
    let mut vm = Vm::boot(path, firmware);
    let console = vm
        .wait_for("DISKTEST-DONE", Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{firmware:?} boot: {e}"));
    let tail: String = console
        .lines()
        .filter(|l| l.contains("DISKTEST"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        tail.contains(&format!("root=UUID={} ro ", disk.root_uuid)),
        "{firmware:?}: {tail}"
    );
    assert!(
        tail.contains(&format!("DISKTEST root={root_dev} ext4")),
        "{firmware:?}: {tail}"
    );
    assert!(
        tail.contains(&format!("DISKTEST efi={esp_dev} vfat")),
        "{firmware:?}: ESP not mounted from fstab: {tail}"
    );
    let want = if firmware == Firmware::Uefi {
        "firmware=uefi"
    } else {
        "firmware=bios"
    };
    assert!(tail.contains(want), "{firmware:?}: {tail}");
}

#[test]
fn mbr_layout_is_the_official_noble_one() {
    let (path, disk) = mbr_disk();
    let (ok, text) = check(Command::new("sfdisk").arg("-d").arg(path));
    assert!(ok, "{text}");
    assert!(text.contains("label: dos"), "{text}");
    assert!(
        text.contains("start=        2048, size=       98304, type=ef, bootable"),
        "{text}"
    );
    assert!(
        text.contains("start=      102400,") && text.contains("type=83"),
        "{text}"
    );
    let roots: Vec<&str> = text.lines().filter(|l| l.contains("type=83")).collect();
    assert!(
        text.lines().last().unwrap().contains("type=83"),
        "root must be last: {roots:?}"
    );
    check_filesystems(path, disk);
}

#[test]
fn gpt_layout_is_valid_with_root_last() {
    let (path, disk) = gpt_disk();
    let (ok, text) = check(Command::new("sgdisk").arg("-v").arg(path));
    assert!(
        ok && text.contains("No problems found"),
        "sgdisk -v:\n{text}"
    );
    let (ok, text) = check(Command::new("sfdisk").arg("-d").arg(path));
    assert!(ok, "{text}");
    assert!(text.contains("label: gpt"), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("type=")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("21686148-6449-6E6F-744E-656564454649"),
        "{text}"
    );
    assert!(
        lines[1].contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "{text}"
    );
    assert!(
        lines[2].contains("0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
        "{text}"
    );
    check_filesystems(path, disk);
}

#[test]
fn mbr_disk_boots_with_seabios() {
    let (path, disk) = mbr_disk();
    assert_booted(path, disk, Firmware::Bios, "/dev/vda2", "/dev/vda1");
}

#[test]
fn mbr_disk_boots_with_ovmf() {
    let (path, disk) = mbr_disk();
    assert_booted(path, disk, Firmware::Uefi, "/dev/vda2", "/dev/vda1");
}

#[test]
fn gpt_disk_boots_with_seabios_from_the_bios_boot_partition() {
    let (path, disk) = gpt_disk();
    assert_booted(path, disk, Firmware::Bios, "/dev/vda3", "/dev/vda2");
}

#[test]
fn same_inputs_give_identical_bytes() {
    let (a, _) = build("repro-a.raw", &spec(PartitionTable::Mbr));
    // Disturb what must not matter: access times and ctimes of the inputs.
    let _ = std::fs::read(root().join("etc/passwd"));
    let _ = Command::new("touch")
        .arg("-a")
        .arg(root().join("etc/hostname"))
        .status();
    let (b, _) = build("repro-b.raw", &spec(PartitionTable::Mbr));
    let (ok, text) = check(Command::new("cmp").arg(&a).arg(&b));
    assert!(ok, "disks differ: {text}");
    let _ = std::fs::remove_file(a);
    let _ = std::fs::remove_file(b);
}

#[test]
fn too_small_disk_is_a_clear_error_and_leaves_nothing() {
    let mut s = spec(PartitionTable::Mbr);
    s.size = DiskSize::Mib(64);
    let out = out_dir().join("small.raw");
    let _ = std::fs::remove_file(&out);
    let _guard = ROOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let err = format!("{:#}", assemble(root(), &s, &out, true).unwrap_err());
    assert!(
        err.contains("disk size 64 MiB is too small: the root filesystem needs at least"),
        "{err}"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(out_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("small.raw"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn root_without_grub_images_is_a_clear_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot/vmlinuz-6.1.0-1-amd64"), b"k").unwrap();
    std::fs::write(root.join("boot/initrd.img-6.1.0-1-amd64"), b"i").unwrap();
    let out = dir.path().join("disk.raw");
    let err = format!(
        "{:#}",
        assemble(&root, &spec(PartitionTable::Mbr), &out, false).unwrap_err()
    );
    assert!(
        err.contains("usr/lib/grub/i386-pc/boot.img: cannot read the GRUB boot.img"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the root directory is left"
    );

    std::fs::remove_file(root.join("boot/vmlinuz-6.1.0-1-amd64")).unwrap();
    let err = format!(
        "{:#}",
        assemble(&root, &spec(PartitionTable::Mbr), &out, false).unwrap_err()
    );
    assert!(
        err.contains("/boot: no kernel (vmlinuz-*) to boot"),
        "{err}"
    );
}

#[test]
fn root_with_a_mount_inside_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    nix::mount::mount(
        Some("proc"),
        &root.join("proc"),
        Some("proc"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let out = dir.path().join("disk.raw");
    let result = assemble(&root, &spec(PartitionTable::Mbr), &out, false);
    nix::mount::umount(&root.join("proc")).unwrap();
    let err = format!("{:#}", result.unwrap_err());
    assert!(
        err.contains("/root/proc is mounted inside the root directory; unmount it first"),
        "{err}"
    );
    assert!(!out.exists());
}
