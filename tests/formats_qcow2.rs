//! qcow2 writer and checker against qemu-img, the independent qcow2-rs reader, and corruption.

#[path = "common/disks.rs"]
mod disks;

use disks::{Disk, MIB};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use stemcell::formats::{self, qcow2, Format, Qcow2Compat};

const VARIANTS: [(Qcow2Compat, bool, &str); 4] = [
    (Qcow2Compat::V2, true, "0.10"),
    (Qcow2Compat::V2, false, "0.10"),
    (Qcow2Compat::V3, true, "1.1"),
    (Qcow2Compat::V3, false, "1.1"),
];

fn convert(disk: &Disk, compat: Qcow2Compat, compressed: bool) -> PathBuf {
    let out = disk
        .path
        .with_extension(format!("{compat:?}-{compressed}.qcow2"));
    formats::convert(
        &disk.path,
        &out,
        &Format::Qcow2 { compat, compressed },
        true,
    )
    .unwrap();
    out
}

fn qemu_img(args: &[&str]) -> (i32, String) {
    let o = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every generated disk in every variant passes qemu-img check/compare/info and our own check.
#[test]
fn every_disk_in_every_variant_is_valid_and_identical() {
    let dir = tempfile::tempdir().unwrap();
    for (name, disk) in disks::all(dir.path()) {
        for (compat, compressed, compat_name) in VARIANTS {
            let img = convert(&disk, compat, compressed);
            let what = format!("{name} {compat_name} compressed={compressed}");
            let (code, text) = qemu_img(&["check", s(&img)]);
            assert_eq!(code, 0, "{what}: qemu-img check: {text}");
            let (code, text) = qemu_img(&[
                "compare",
                "-f",
                "raw",
                "-F",
                "qcow2",
                s(&disk.path),
                s(&img),
            ]);
            assert_eq!(code, 0, "{what}: qemu-img compare: {text}");
            let (code, text) = qemu_img(&["info", "--output=json", s(&img)]);
            assert_eq!(code, 0, "{what}: qemu-img info: {text}");
            let info: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(info["virtual-size"].as_u64(), Some(disk.size), "{what}");
            assert_eq!(
                info["format-specific"]["data"]["compat"].as_str(),
                Some(compat_name),
                "{what}"
            );

            let report = qcow2::check(&img).unwrap();
            assert!(report.problems.is_empty(), "{what}: {:?}", report.problems);
            assert_eq!(report.virtual_size, disk.size, "{what}");
            let detail = |k: &str| {
                report
                    .details
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(detail("compat").as_deref(), Some(compat_name));
            if name == "zero" {
                // Nothing but the header, L1 and refcount metadata.
                assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 * 65536, "{what}");
            }
            if compressed && name == "mixed" {
                assert!(
                    detail("compressed_clusters")
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        > 0
                );
                // Random data does not deflate: it must have been stored as plain clusters.
                assert!(
                    detail("allocated_clusters")
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        >= 32
                );
            }
            if compat == Qcow2Compat::V3 && !compressed {
                read_back_with_qcow2_rs(&disk, &img);
            }
            std::fs::remove_file(&img).unwrap();
        }
    }
}

/// The independent qcow2-rs reader sees the same bytes as the raw disk (data and some holes).
fn read_back_with_qcow2_rs(disk: &Disk, img: &Path) {
    use qcow2_rs::dev::Qcow2DevParams;
    use qcow2_rs::utils::qcow2_setup_dev_sync;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let params = qcow2_rs::qcow2_default_params!(true, false);
        let dev = qcow2_setup_dev_sync(img, &params).unwrap();
        dev.qcow2_prep_io().await.unwrap();
        let raw = std::fs::File::open(&disk.path).unwrap();
        // Data ranges widened to whole MiB, plus the first and last MiB.
        let mut starts: Vec<u64> = disk.written.iter().map(|r| r.start / MIB * MIB).collect();
        starts.extend([0, (disk.size - 1) / MIB * MIB]);
        starts.sort();
        starts.dedup();
        for start in starts {
            let len = MIB.min(disk.size - start) as usize;
            let mut want = vec![0u8; len];
            raw.read_exact_at(&mut want, start).unwrap();
            let mut got = qcow2_rs::helpers::Qcow2IoBuf::<u8>::new(len);
            dev.read_at(&mut got, start).await.unwrap();
            assert!(
                got[..] == want[..],
                "{}: qcow2-rs read differs at offset {start}",
                img.display()
            );
        }
    });
}

/// Reads a big-endian u64 at `offset`.
fn be64(path: &Path, offset: u64) -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    u64::from_be_bytes(b)
}

fn xor_byte(path: &Path, offset: u64, mask: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ mask], offset).unwrap();
}

/// First non-zero u64 entry of the table at `offset` (`len` bytes): (entry offset, value).
fn first_entry(path: &Path, offset: u64, len: u64, pred: impl Fn(u64) -> bool) -> (u64, u64) {
    (0..len / 8)
        .map(|i| offset + i * 8)
        .map(|o| (o, be64(path, o)))
        .find(|&(_, e)| e != 0 && pred(e))
        .unwrap()
}

fn assert_detected(img: &Path, what: &str) -> Vec<String> {
    let report = qcow2::check(img).unwrap();
    assert!(
        !report.problems.is_empty(),
        "{what}: corruption not reported"
    );
    eprintln!(
        "{what}: {:?}",
        &report.problems[..report.problems.len().min(3)]
    );
    for p in &report.problems {
        assert!(!p.contains('\n'), "{what}: multi-line problem {p:?}");
    }
    report.problems
}

/// Flipped bytes in each table, in compressed data, and a truncated file are all reported.
#[test]
fn corruption_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let disk = disks::mixed(dir.path());
    let fresh = |compressed: bool, name: &str| {
        let img = convert(&disk, Qcow2Compat::V3, compressed);
        let copy = dir.path().join(name);
        std::fs::rename(&img, &copy).unwrap();
        copy
    };
    // Header fields: L1 at 40, refcount table at 48.
    let img = fresh(false, "l1.qcow2");
    let (entry, _) = first_entry(&img, be64(&img, 40), 8, |_| true);
    xor_byte(&img, entry + 5, 0x01); // L2 table moved by 64 KiB
    let p = assert_detected(&img, "L1 entry");
    assert_ne!(qemu_img(&["check", s(&img)]).0, 0, "qemu-img agrees: {p:?}");

    let img = fresh(false, "l2.qcow2");
    let l2 = be64(&img, be64(&img, 40)) & 0x00ff_ffff_ffff_fe00;
    let (entry, _) = first_entry(&img, l2, 65536, |_| true);
    xor_byte(&img, entry + 5, 0x01); // data cluster moved by 64 KiB
    assert_detected(&img, "L2 entry");

    let img = fresh(true, "refcount.qcow2");
    let block = be64(&img, be64(&img, 48));
    xor_byte(&img, block + 1, 0x02); // header cluster refcount 1 -> 3
    let p = assert_detected(&img, "refcount block");
    assert!(p.iter().any(|l| l.contains("cluster 0 ")), "{p:?}");

    let img = fresh(true, "deflate.qcow2");
    let l2 = be64(&img, be64(&img, 40)) & 0x00ff_ffff_ffff_fe00;
    let (_, d) = first_entry(&img, l2, 65536, |e| e & (1 << 62) != 0);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let at = d & ((1 << 54) - 1);
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] | 0x06], at).unwrap(); // reserved deflate block type 3
    let p = assert_detected(&img, "compressed data");
    assert!(p.iter().any(|l| l.contains("deflate")), "{p:?}");

    let img = fresh(true, "truncated.qcow2");
    let len = std::fs::metadata(&img).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(len - 65536)
        .unwrap();
    assert_detected(&img, "truncated");

    let img = fresh(true, "magic.qcow2");
    xor_byte(&img, 0, 0xff);
    assert_detected(&img, "magic");
}

fn stemcell(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stemcell"))
        .args(args)
        .output()
        .unwrap()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect()
}

/// Bad inputs: one-line error naming the file, non-zero exit, nothing left behind.
#[test]
fn cli_errors_are_one_line_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("odd.raw");
    std::fs::write(&bad, vec![1u8; 1000]).unwrap();
    let out = dir.path().join("out.qcow2");
    let o = stemcell(&["convert", "--format", "qcow2", s(&bad), s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("odd.raw") && err.contains("multiple of 512"),
        "{err}"
    );
    assert!(!out.exists());

    let o = stemcell(&[
        "convert",
        "--format",
        "qcow2",
        s(&dir.path().join("missing.raw")),
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.starts_with("stemcell: ") && err.contains("missing.raw"),
        "{err}"
    );
    assert!(!out.exists());

    let good = disks::partial_last_cluster(dir.path());
    std::fs::write(&out, b"keep me").unwrap();
    let o = stemcell(&["convert", "--format", "qcow2", s(&good.path), s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("out.qcow2") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");

    let o = stemcell(&[
        "convert",
        "--format",
        "qcow2",
        "--force",
        s(&good.path),
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(qcow2::check(&out).unwrap().problems.is_empty());
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// Manual: `QCOW2_CHECK=img.qcow2 cargo test --test formats_qcow2 -- --ignored --nocapture`
/// prints our checker's report for any image (used on the benchmark output).
#[test]
#[ignore]
fn check_image_from_env() {
    let path = std::env::var("QCOW2_CHECK").expect("set QCOW2_CHECK to an image path");
    let start = std::time::Instant::now();
    let report = qcow2::check(Path::new(&path)).unwrap();
    eprintln!(
        "{path}: virtual size {} in {:?}",
        report.virtual_size,
        start.elapsed()
    );
    for (k, v) in &report.details {
        eprintln!("  {k}: {v}");
    }
    for p in &report.problems {
        eprintln!("  problem: {p}");
    }
    assert!(report.problems.is_empty());
}
