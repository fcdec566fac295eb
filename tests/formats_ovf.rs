//! OVF descriptor, manifest, OVA and the vSphere image tar, checked with xmllint (DSP8023
//! schema), tar, sha1sum and qemu-img.
#[path = "common/vhdvmdk.rs"]
mod disks;

use disks::*;
use std::path::{Path, PathBuf};
use stemcell::formats::{self, Firmware, Format, OvfOptions};

const MIB: u64 = 1 << 20;

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ovf-schema/ovf-envelope.xsd")
}

fn xmllint(ovf: &Path) -> (i32, String) {
    run(
        "xmllint",
        &[
            "--noout",
            "--schema",
            schema().to_str().unwrap(),
            ovf.to_str().unwrap(),
        ],
    )
}

fn options(firmware: Firmware) -> OvfOptions {
    OvfOptions {
        name: "stemcell".into(),
        firmware,
        cpus: 1,
        memory_mib: 512,
    }
}

/// Extracts `tar` into `dir` and returns the member names in archive order.
fn untar(tar: &Path, dir: &Path) -> Vec<String> {
    let (code, text) = run(
        "tar",
        &["-xvf", tar.to_str().unwrap(), "-C", dir.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{text}");
    text.lines().map(str::to_string).collect()
}

#[test]
fn vsphere_image_tar_is_valid_for_both_firmwares() {
    let dir = tempfile::tempdir().unwrap();
    let size = 20 * MIB + 1024;
    let raw = make_disk(
        dir.path(),
        "disk.raw",
        size,
        &[(0, 200_000), (size - 4096, 4096)],
    );
    write_text(&raw, 5 * MIB, 2 * MIB as usize);
    let disk = formats::source::RawDisk::open(&raw).unwrap();
    for firmware in [Firmware::Efi, Firmware::Bios] {
        let tar = dir.path().join(format!("image-{firmware:?}.tar"));
        let mut out = std::fs::File::create(&tar).unwrap();
        formats::ova::write_vsphere_image_tar(&disk, &options(firmware), &mut out).unwrap();
        drop(out);
        let x = dir.path().join(format!("x-{firmware:?}"));
        std::fs::create_dir(&x).unwrap();
        assert_eq!(
            untar(&tar, &x),
            ["image.ovf", "image.mf", "image-disk1.vmdk"]
        );
        let (code, text) = run(
            "tar",
            &["--list", "--verbose", "--file", tar.to_str().unwrap()],
        );
        assert_eq!(code, 0);
        assert!(
            text.lines().all(|l| l.starts_with("-rw-r--r-- root/root")),
            "{text}"
        );

        let ovf = x.join("image.ovf");
        let (code, text) = xmllint(&ovf);
        assert_eq!(code, 0, "{firmware:?}: {text}");
        assert!(text.contains("validates"), "{text}");
        let xml = std::fs::read_to_string(&ovf).unwrap();
        assert_eq!(
            xml.contains("vmw:key=\"firmware\" vmw:value=\"efi\""),
            firmware == Firmware::Efi
        );
        for needle in [
            "vmx-13",
            "ubuntu64Guest",
            "ovf:id=\"94\"",
            "lsilogic",
            "vmware.sata.ahci",
            "<rasd:ResourceType>15<",
            "VmxNet3",
        ] {
            assert!(xml.contains(needle), "{needle} missing");
        }
        let vmdk = x.join("image-disk1.vmdk");
        let vmdk_len = std::fs::metadata(&vmdk).unwrap().len();
        assert!(
            xml.contains(&format!(
                "ovf:href=\"image-disk1.vmdk\" ovf:id=\"file1\" ovf:size=\"{vmdk_len}\""
            )),
            "{xml}"
        );
        assert!(xml.contains(&format!("ovf:capacity=\"{size}\"")));

        // Manifest lines match sha1sum of the extracted files, ovftool spacing.
        let (code, sums) = run(
            "sh",
            &[
                "-c",
                &format!("cd {} && sha1sum image.ovf image-disk1.vmdk", x.display()),
            ],
        );
        assert_eq!(code, 0);
        let expected: String = sums
            .lines()
            .map(|l| {
                let (hex, name) = l.split_once("  ").unwrap();
                format!("SHA1({name})= {hex}\n")
            })
            .collect();
        assert_eq!(
            std::fs::read_to_string(x.join("image.mf")).unwrap(),
            expected
        );

        assert_qemu_identical(&raw, "vmdk", &vmdk);
        let report = formats::vmdk::check(&vmdk).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report
            .details
            .contains(&("extent".into(), "image-disk1.vmdk".into())));
    }
}

#[test]
fn ova_writer_puts_the_descriptor_first() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(dir.path(), "disk.raw", 4 * MIB, &[(MIB, 10_000)]);
    let ova = dir.path().join("vm.ova");
    formats::convert(&raw, &ova, &Format::Ova(options(Firmware::Bios)), false).unwrap();
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    assert_eq!(
        untar(&ova, &x),
        ["image.ovf", "image.mf", "image-disk1.vmdk"]
    );
    assert_qemu_identical(&raw, "vmdk", &x.join("image-disk1.vmdk"));
}

#[test]
fn schema_validation_catches_a_broken_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let disk = formats::ovf::OvfDisk {
        file_name: "image-disk1.vmdk".into(),
        file_size: 1234,
        capacity: 5 << 30,
    };
    let good = formats::ovf::descriptor(&options(Firmware::Efi), &disk);
    let path = dir.path().join("good.ovf");
    std::fs::write(&path, &good).unwrap();
    assert_eq!(xmllint(&path).0, 0);
    // rasd elements out of schema order must fail, proving the schema is really applied.
    let bad = good.replacen(
        "<rasd:ElementName>Hard Disk 1</rasd:ElementName>\n        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>",
        "<rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>\n        <rasd:ElementName>Hard Disk 1</rasd:ElementName>",
        1,
    );
    assert_ne!(bad, good);
    let path = dir.path().join("bad.ovf");
    std::fs::write(&path, &bad).unwrap();
    let (code, text) = xmllint(&path);
    assert_ne!(code, 0, "{text}");
}

#[test]
fn source_date_epoch_makes_the_image_tar_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(
        dir.path(),
        "disk.raw",
        4 * MIB,
        &[(0, 100_000), (3 * MIB, 5000)],
    );
    let disk = formats::source::RawDisk::open(&raw).unwrap();
    std::env::set_var("SOURCE_DATE_EPOCH", "1700000000");
    let mut a = Vec::new();
    let mut b = Vec::new();
    formats::ova::write_vsphere_image_tar(&disk, &options(Firmware::Efi), &mut a).unwrap();
    formats::ova::write_vsphere_image_tar(&disk, &options(Firmware::Efi), &mut b).unwrap();
    std::env::remove_var("SOURCE_DATE_EPOCH");
    assert!(a == b, "two builds differ");
    let mtime = tar::Archive::new(&a[..])
        .entries()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .header()
        .mtime()
        .unwrap();
    assert_eq!(mtime, 1_700_000_000);
}
