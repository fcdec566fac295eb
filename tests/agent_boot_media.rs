//! The pieces of `stemcell boot` (src/boot/) on their own: the settings media built with
//! genisoimage and read back with isoinfo, the QEMU command line of each cloud's hardware,
//! and the real QEMU started with each firmware, printing on the serial file, and killed
//! when its handle is dropped.

#[path = "common/boot.rs"]
mod boot;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stemcell::boot::machine::{GuestForward, VmSpec};
use stemcell::boot::media;
use stemcell::boot::target::{DiskBus, Firmware};
use stemcell::recipe::arch::Arch;

#[test]
fn config_drive_has_label_config_2_and_both_metadata_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("config-drive.iso");
    let settings = boot::agent_settings("agent-1");
    let paths = ("ec2/latest/meta-data.json", "ec2/latest/user-data");
    media::config_drive(
        &settings,
        paths.0,
        paths.1,
        "ssh-ed25519 AAAA test",
        &tmp.path().join("t"),
        &iso,
    )
    .unwrap();
    assert_eq!(boot::iso_label(&iso).unwrap(), "config-2");
    let files = boot::iso_files(&iso).unwrap();
    for f in [
        "/ec2/latest/meta-data.json",
        "/ec2/latest/user-data",
        "/openstack/latest/meta_data.json",
        "/openstack/latest/user_data",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not in {files:?}");
    }
    // The agent's ConfigDrive source reads ec2/latest/user-data as the settings JSON.
    let user: serde_json::Value =
        serde_json::from_slice(&boot::iso_read(&iso, "/ec2/latest/user-data").unwrap()).unwrap();
    assert_eq!(user, settings);
    let meta: serde_json::Value =
        serde_json::from_slice(&boot::iso_read(&iso, "/ec2/latest/meta-data.json").unwrap())
            .unwrap();
    assert_eq!(
        meta["public-keys"]["0"]["openssh-key"],
        "ssh-ed25519 AAAA test"
    );
}

#[test]
fn vsphere_cdrom_holds_only_env() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("env.iso");
    let settings = boot::agent_settings("agent-2");
    media::env_cdrom(&settings, "env", &tmp.path().join("t"), &iso).unwrap();
    assert_eq!(boot::iso_files(&iso).unwrap(), vec!["/env".to_string()]);
    let env: serde_json::Value =
        serde_json::from_slice(&boot::iso_read(&iso, "/env").unwrap()).unwrap();
    assert_eq!(env["agent_id"], "agent-2");
}

fn spec(dir: &Path, root: PathBuf, firmware: Firmware, bus: DiskBus) -> VmSpec {
    VmSpec {
        arch: Arch::Amd64,
        accel: "tcg".into(),
        firmware,
        bus,
        root,
        ephemeral: None,
        cdrom: None,
        memory_mib: 256,
        cpus: 1,
        net_prefix: [10, 0, 2],
        mbus_port: 0,
        ssh_port: 0,
        guestfwd: None,
        serial_log: dir.join("serial.log"),
        dir: dir.to_path_buf(),
    }
}

#[test]
fn qemu_command_lines_give_each_cloud_its_hardware() {
    let w = Path::new("/w");
    let mut vs = spec(w, w.join("r.qcow2"), Firmware::Uefi, DiskBus::Scsi);
    vs.ephemeral = Some(w.join("e.qcow2"));
    vs.cdrom = Some(w.join("env.iso"));
    let a = vs.args().join(" ");
    assert!(
        a.contains("-nodefaults")
            && a.contains("OVMF_CODE_4M.fd")
            && a.contains("file=/w/UEFI_VARS.fd"),
        "{a}"
    );
    assert!(
        a.contains("scsi-hd,drive=root,bus=scsi0.0,channel=0,scsi-id=0,lun=0,bootindex=0"),
        "{a}"
    );
    assert!(
        a.contains("scsi-hd,drive=ephemeral,bus=scsi0.0,channel=0,scsi-id=1,lun=0"),
        "ephemeral on unit 1: {a}"
    );
    assert!(
        a.contains("ide-cd,drive=cd0,bus=ide.0") && a.contains("-serial file:/w/serial.log"),
        "{a}"
    );
    assert!(
        a.contains("restrict=on") && a.contains("hostfwd=tcp:127.0.0.1:0-:6868"),
        "{a}"
    );

    let mut aws = spec(w, w.join("r.qcow2"), Firmware::Bios, DiskBus::Nvme);
    aws.net_prefix = [169, 254, 169];
    aws.guestfwd = Some(GuestForward {
        ip: [169, 254, 169, 254],
        port: 80,
        command: vec![
            "/x/stemcell".into(),
            "boot-metadata".into(),
            "/w/s,1.json".into(),
        ],
    });
    let a = aws.args().join(" ");
    assert!(
        a.contains("nvme,drive=root,serial=root,bootindex=0")
            && a.contains("etc/sercon-port")
            && !a.contains("pflash"),
        "{a}"
    );
    assert!(a.contains("net=169.254.169.0/24"), "{a}");
    // GLib-quoted words, commas doubled for QEMU's option parser.
    assert!(
        a.contains(
            "guestfwd=tcp:169.254.169.254:80-cmd:'/x/stemcell' 'boot-metadata' '/w/s,,1.json'"
        ),
        "{a}"
    );
    assert_eq!(aws.guest_ip(), "169.254.169.15");

    // arm64: QEMU's virt machine, AAVMF, the CD-ROM on SCSI (virt has no IDE).
    let mut arm = spec(w, w.join("r.qcow2"), Firmware::Uefi, DiskBus::Virtio);
    arm.arch = Arch::Arm64;
    arm.cdrom = Some(w.join("config-drive.iso"));
    let a = arm.args().join(" ");
    assert!(a.contains("-machine virt,accel=tcg"), "{a}");
    assert!(a.contains("-cpu max,pauth-impdef=on"), "{a}");
    assert!(
        a.contains("AAVMF_CODE.fd") && !a.contains("OVMF_CODE"),
        "{a}"
    );
    assert!(
        a.contains("scsi-cd,drive=cd0,bus=cdbus.0") && !a.contains("ide-cd"),
        "{a}"
    );
    assert!(a.contains("virtio-blk-pci,drive=root,bootindex=0"), "{a}");
    assert_eq!(aws.dns_ip(), "169.254.169.3");

    let g = spec(w, w.join("r.qcow2"), Firmware::Bios, DiskBus::VirtioScsi)
        .args()
        .join(" ");
    assert!(
        g.contains("virtio-scsi-pci") && g.contains("scsi-hd,drive=root"),
        "{g}"
    );
    let os = spec(w, w.join("r.qcow2"), Firmware::Bios, DiskBus::Virtio)
        .args()
        .join(" ");
    assert!(os.contains("virtio-blk-pci,drive=root,bootindex=0"), "{os}");
}

/// Both firmwares start under the real QEMU with the devices of their command line, print to
/// the serial file, and the VM is gone once its handle is dropped.
#[test]
fn both_firmwares_start_print_on_serial_and_are_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("empty.qcow2");
    stemcell::boot::disk::blank(&root, 1 << 20).unwrap();
    for (firmware, bus, marker) in [
        (Firmware::Bios, DiskBus::Virtio, "SeaBIOS"),
        (Firmware::Uefi, DiskBus::Scsi, "BdsDxe"),
    ] {
        let mut s = spec(tmp.path(), root.clone(), firmware, bus);
        let free = |_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        (s.mbus_port, s.ssh_port) = (free(0), free(1));
        let mut vm = s.start().unwrap();
        let pid = vm.pid();
        let started = Instant::now();
        loop {
            vm.check_alive().unwrap();
            let serial = String::from_utf8_lossy(&std::fs::read(&s.serial_log).unwrap_or_default())
                .into_owned();
            if serial.contains(marker) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no {marker} on the serial console:\n{serial}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        drop(vm);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "qemu {pid} still running"
        );
    }
}
