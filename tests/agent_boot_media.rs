//! The boot-test helpers themselves (tests/common/boot.rs): settings media built with
//! genisoimage and read back with isoinfo, and the QEMU command lines of both boot paths
//! accepted by the real QEMU, watched on the serial console and killed.

#[path = "common/boot.rs"]
mod boot;

use boot::{DiskBus, Firmware, VmSpec};
use std::time::Duration;

#[test]
fn config_drive_has_label_config_2_and_both_metadata_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("config-drive.iso");
    let settings = boot::agent_settings("agent-1");
    boot::config_drive(&settings, Some("ssh-ed25519 AAAA test"), &iso).unwrap();
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
fn vsphere_cdrom_holds_env() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("env.iso");
    let settings = boot::agent_settings("agent-2");
    boot::vsphere_env_cdrom(&settings, &iso).unwrap();
    assert_eq!(boot::iso_files(&iso).unwrap(), vec!["/env".to_string()]);
    let env: serde_json::Value =
        serde_json::from_slice(&boot::iso_read(&iso, "/env").unwrap()).unwrap();
    assert_eq!(env["agent_id"], "agent-2");
}

#[test]
fn qemu_command_lines_name_the_devices_of_each_boot_path() {
    let w = std::path::Path::new("/w");
    let bios = VmSpec::openstack(&w.join("d.raw"), &w.join("cd.iso"), w)
        .qemu_args()
        .join(" ");
    assert!(
        bios.contains("-nodefaults") && bios.contains("virtio-blk-pci,drive=root"),
        "{bios}"
    );
    assert!(
        bios.contains("-serial file:/w/serial.log") && !bios.contains("pflash"),
        "{bios}"
    );
    assert!(bios.contains("ide-cd,drive=cd0"), "{bios}");
    let uefi = VmSpec::vsphere(&w.join("d.raw"), &w.join("cd.iso"), w)
        .qemu_args()
        .join(" ");
    assert!(
        uefi.contains("OVMF_CODE_4M.fd") && uefi.contains("file=/w/OVMF_VARS.fd"),
        "{uefi}"
    );
    assert!(
        uefi.contains("virtio-scsi-pci") && uefi.contains("scsi-hd,drive=root"),
        "{uefi}"
    );
}

/// Both firmware paths start under the real QEMU with every device of their command line,
/// print to the serial file, and the VM is gone after the handle is dropped.
#[test]
fn both_boot_paths_start_print_on_serial_and_are_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("empty.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let iso = tmp.path().join("cd.iso");
    boot::config_drive(&boot::agent_settings("x"), None, &iso).unwrap();
    for (firmware, bus, marker) in [
        (Firmware::Bios, DiskBus::Virtio, "SeaBIOS"),
        (Firmware::Uefi, DiskBus::VirtioScsi, "BdsDxe"),
    ] {
        let mut spec = VmSpec::openstack(&disk, &iso, tmp.path());
        spec.firmware = firmware;
        spec.bus = bus;
        spec.memory_mib = 256;
        spec.cpus = 1;
        let mut vm = spec.start().unwrap();
        let pid = vm.pid();
        let line = vm.wait_for_line(marker, Duration::from_secs(60)).unwrap();
        assert!(line.contains(marker));
        drop(vm);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "qemu {pid} still running"
        );
    }
}

#[test]
fn waiting_for_a_marker_that_never_comes_fails_with_the_console_and_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("empty.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut spec = VmSpec::openstack(&disk, &disk, tmp.path());
    spec.cdrom = None;
    spec.memory_mib = 128;
    spec.cpus = 1;
    let mut vm = spec.start().unwrap();
    let pid = vm.pid();
    let err = vm
        .wait_for_line("NEVER-PRINTED", Duration::from_secs(3))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("no `NEVER-PRINTED` on the serial console after 3s"),
        "{err}"
    );
    drop(vm);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
