//! Sparse raw copy: identical content, same size, holes stay holes; the raw checker.

#[path = "common/disks.rs"]
mod disks;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use stemcell::formats::{self, raw, Format};

#[test]
fn raw_copy_is_identical_and_sparse() {
    let dir = tempfile::tempdir().unwrap();
    for (name, disk) in disks::all(dir.path()) {
        let out = disk.path.with_extension("copy");
        formats::convert(&disk.path, &out, &Format::Raw, false).unwrap();
        let o = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&disk.path)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let (src, dst) = (
            std::fs::metadata(&disk.path).unwrap(),
            std::fs::metadata(&out).unwrap(),
        );
        assert_eq!(dst.len(), disk.size, "{name}");
        // Written zero runs become holes too, so the copy never takes more space.
        assert!(
            dst.blocks() <= src.blocks(),
            "{name}: {} > {} blocks",
            dst.blocks(),
            src.blocks()
        );
        if name == "zero" {
            assert_eq!(
                dst.blocks(),
                0,
                "{name}: an all-zero disk copies to a pure hole"
            );
        }
        let report = raw::check(&out).unwrap();
        assert_eq!(report.virtual_size, disk.size);
        assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
    }
}

#[test]
fn raw_check_reports_partial_sectors_and_cli_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("odd.raw");
    std::fs::write(&bad, vec![7u8; 1000]).unwrap();
    let report = raw::check(&bad).unwrap();
    assert_eq!(report.virtual_size, 1000);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("multiple of 512"));

    let out = dir.path().join("copy.raw");
    let o = Command::new(env!("CARGO_BIN_EXE_stemcell"))
        .args(["convert", "--format", "raw"])
        .arg(&bad)
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.starts_with("stemcell: ") && err.contains("odd.raw") && err.contains("512"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "only the input remains: {names:?}");
}
