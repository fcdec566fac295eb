//! VHD writer and checker against qemu-img on generated disks.
#[path = "common/vhdvmdk.rs"]
mod disks;

use disks::*;
use std::path::Path;
use stemcell::formats::{self, DiskKind, Format};

const MIB: u64 = 1 << 20;

fn convert(raw: &Path, fmt: Format, name: &str) -> std::path::PathBuf {
    let out = raw.with_file_name(name);
    formats::convert(raw, &out, &fmt, true).unwrap();
    out
}

fn assert_clean(path: &Path, size: u64) {
    let report = formats::vhd::check(path).unwrap();
    assert!(
        report.problems.is_empty(),
        "{}: {:?}",
        path.display(),
        report.problems
    );
    assert_eq!(report.virtual_size, size);
}

#[test]
fn dynamic_matches_raw_with_holes_zero_blocks_and_partial_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let size = 70 * MIB + 3 * 512; // last 2 MiB block is partial
    let raw = make_disk(
        dir.path(),
        "disk.raw",
        size,
        &[
            (0, 4096),
            (3 * MIB + 17 * 512, 5 * MIB as usize),
            (size - 1024, 1024),
        ],
    );
    // An all-zero block inside a data range must stay unallocated.
    std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::File::options().write(true).open(&raw).unwrap(),
        &vec![0u8; 2 * MIB as usize],
        4 * MIB,
    )
    .unwrap();
    let vhd = convert(&raw, Format::VhdDynamic, "disk.vhd");
    assert_qemu_identical(&raw, "vpc", &vhd);
    assert_eq!(qemu_info("vpc", &vhd)["virtual-size"], size);
    assert_clean(&vhd, size);
    assert_eq!(formats::detect(&vhd).unwrap(), DiskKind::VhdDynamic);
    assert_ne!(
        libyal_matches("vhd", &vhd, &raw),
        Some(false),
        "libvhdi reads different data"
    );
    let bytes = std::fs::read(&vhd).unwrap();
    assert_eq!(&bytes[28..40], b"win \x00\x0a\x00\x00Wi2k");
    assert_eq!(bytes[..512], bytes[bytes.len() - 512..], "footer copy");
    // BAT: exactly ceil(size / 2 MiB) entries, blocks 0,1,(2: 3M..),3,4? (4 MiB..6 MiB is zero)
    let entries = u32::from_be_bytes(bytes[512 + 28..512 + 32].try_into().unwrap());
    assert_eq!(entries as u64, size.div_ceil(2 * MIB));
    let report = formats::vhd::check(&vhd).unwrap();
    let allocated = report
        .details
        .iter()
        .find(|(k, _)| k == "allocated blocks")
        .unwrap();
    // data at block 0, blocks 1..=4 hold 3M+8.5K..8M+8.5K except 4M..6M zeroed => blocks 1,3,4, and the last
    assert_eq!(allocated.1, format!("5 of {entries}"));
}

#[test]
fn all_zero_and_multi_gib_sparse_disks() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(dir.path(), "zero.raw", 64 * MIB, &[]);
    let vhd = convert(&raw, Format::VhdDynamic, "zero.vhd");
    assert_qemu_identical(&raw, "vpc", &vhd);
    assert_clean(&vhd, 64 * MIB);
    assert_eq!(
        std::fs::metadata(&vhd).unwrap().len(),
        512 + 1024 + 512 + 512
    );

    let size = 5 << 30;
    let raw = make_disk(
        dir.path(),
        "big.raw",
        size,
        &[(MIB, 4096), (3 << 30, 65536), (size - 512, 512)],
    );
    let vhd = convert(&raw, Format::VhdDynamic, "big.vhd");
    assert_qemu_identical(&raw, "vpc", &vhd);
    assert_eq!(qemu_info("vpc", &vhd)["virtual-size"], size);
    assert_clean(&vhd, size);
    assert!(std::fs::metadata(&vhd).unwrap().len() < 8 * MIB);
}

#[test]
fn fixed_matches_raw_and_refuses_sizes_that_are_not_whole_mib() {
    let dir = tempfile::tempdir().unwrap();
    let size = 33 * MIB;
    let raw = make_disk(
        dir.path(),
        "disk.raw",
        size,
        &[(512, 3 * MIB as usize), (size - 4096, 4096)],
    );
    let vhd = convert(&raw, Format::VhdFixed, "disk.vhd");
    assert_eq!(std::fs::metadata(&vhd).unwrap().len(), size + 512);
    assert_qemu_identical(&raw, "vpc", &vhd);
    assert_eq!(qemu_info("vpc", &vhd)["virtual-size"], size);
    assert_clean(&vhd, size);
    assert_eq!(formats::detect(&vhd).unwrap(), DiskKind::VhdFixed);
    assert_ne!(
        libyal_matches("vhd", &vhd, &raw),
        Some(false),
        "libvhdi reads different data"
    );

    let odd = make_disk(dir.path(), "odd.raw", size + 512, &[(0, 512)]);
    let out = dir.path().join("odd.vhd");
    let err = formats::convert(&odd, &out, &Format::VhdFixed, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("whole number of MiB") && err.contains("odd.raw"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "no partial output left"
    );
}

#[test]
fn source_date_epoch_makes_builds_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(dir.path(), "disk.raw", 8 * MIB, &[(0, 100_000)]);
    std::env::set_var("SOURCE_DATE_EPOCH", "1700000000");
    let a = std::fs::read(convert(&raw, Format::VhdDynamic, "a.vhd")).unwrap();
    let b = std::fs::read(convert(&raw, Format::VhdDynamic, "b.vhd")).unwrap();
    std::env::remove_var("SOURCE_DATE_EPOCH");
    assert_eq!(a, b);
    assert_eq!(
        u32::from_be_bytes(a[24..28].try_into().unwrap()) as u64,
        1_700_000_000 - 946_684_800
    );
}

#[test]
fn checker_reports_corrupted_copies() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(
        dir.path(),
        "disk.raw",
        16 * MIB,
        &[(0, 3 * MIB as usize), (10 * MIB, 4096)],
    );
    let vhd = convert(&raw, Format::VhdDynamic, "disk.vhd");
    let len = std::fs::metadata(&vhd).unwrap().len() as usize;
    let problems = |name: &str, edit: &dyn Fn(&mut Vec<u8>)| {
        let p = corrupt(&vhd, &dir.path().join(name), |b| edit(b));
        formats::vhd::check(&p).unwrap().problems
    };
    let p = problems("sum.vhd", &|b| b[len - 512 + 64] ^= 1);
    assert!(p.iter().any(|l| l.contains("footer: checksum")), "{p:?}");
    assert!(p.iter().any(|l| l.contains("footer copy")), "{p:?}");
    let p = problems("hdr.vhd", &|b| b[512 + 36] ^= 1);
    assert!(
        p.iter().any(|l| l.contains("dynamic header: checksum")),
        "{p:?}"
    );
    // Second BAT entry pointing at the first block: overlap.
    let p = problems("bat.vhd", &|b| {
        let first: [u8; 4] = b[1536..1540].try_into().unwrap();
        b[1540..1544].copy_from_slice(&first);
    });
    assert!(p.iter().any(|l| l.contains("overlap")), "{p:?}");
    let p = problems("batout.vhd", &|b| {
        b[1536..1540].copy_from_slice(&0x00FF_FFFFu32.to_be_bytes())
    });
    assert!(
        p.iter().any(|l| l.contains("outside the data area")),
        "{p:?}"
    );
    let p = problems("trunc.vhd", &|b| b.truncate(len - 4096));
    assert!(!p.is_empty(), "truncated file passes");
    let p = problems("future.vhd", &|b| {
        for at in [0, len - 512] {
            b[at + 24..at + 28].copy_from_slice(&u32::MAX.to_be_bytes());
            let sum = stemcell::formats::vhd::layout::checksum(&b[at..at + 512], 64);
            b[at + 64..at + 68].copy_from_slice(&sum.to_be_bytes());
        }
    });
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("future"), "{p:?}");
    for l in p {
        assert!(!l.contains('\n'));
    }
}

#[test]
fn cloudstack_bzip2_of_a_dynamic_vhd_round_trips_with_bunzip2() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(
        dir.path(),
        "disk.raw",
        12 * MIB,
        &[(0, 1_500_000), (9 * MIB, 300_000)],
    );
    write_text(&raw, 3 * MIB, 2 * MIB as usize);
    let vhd = convert(&raw, Format::VhdDynamic, "root.vhd");
    let bz = dir.path().join("image");
    let mut out = std::fs::File::create(&bz).unwrap();
    formats::bzip2::compress_file(&vhd, &mut out).unwrap();
    drop(out);
    let (code, text) = run(
        "sh",
        &[
            "-c",
            &format!("bunzip2 -c {} | cmp - {}", bz.display(), vhd.display()),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = run("bzip2", &["-t", bz.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn libvhdi_reads_it_when_installed() {
    if run("sh", &["-c", "command -v vhdiinfo"]).0 != 0 {
        eprintln!("vhdiinfo not installed, skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(dir.path(), "disk.raw", 6 * MIB, &[(0, 10_000)]);
    for (fmt, kind) in [(Format::VhdDynamic, "Dynamic"), (Format::VhdFixed, "Fixed")] {
        let vhd = convert(&raw, fmt, &format!("{kind}.vhd"));
        let (code, text) = run("vhdiinfo", &[vhd.to_str().unwrap()]);
        assert_eq!(code, 0, "{text}");
        assert!(
            text.contains(kind) && text.contains("(6291456 bytes)"),
            "{text}"
        );
    }
}

/// Random byte edits anywhere in the file never make the checker panic.
#[test]
fn checker_survives_random_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(dir.path(), "disk.raw", 4 * MIB, &[(0, 5000)]);
    let vhd = convert(&raw, Format::VhdDynamic, "disk.vhd");
    let bytes = std::fs::read(&vhd).unwrap();
    let noise = random_bytes(7, 4 * 200);
    let target = dir.path().join("c.vhd");
    for (i, n) in noise.chunks_exact(4).enumerate() {
        let mut b = bytes.clone();
        let r = u32::from_le_bytes(n.try_into().unwrap()) as usize;
        let at = match i % 3 {
            0 => r % 2048,
            1 => b.len() - 1 - r % 512,
            _ => r % b.len(),
        };
        b[at] ^= 1 << (r % 8) | 0x80;
        std::fs::write(&target, &b).unwrap();
        let report = formats::vhd::check(&target).unwrap();
        // Any edit in the footer is caught (the checksum covers all of it).
        if at >= b.len() - 512 {
            assert!(!report.problems.is_empty(), "edit at {at} not caught");
        }
    }
}

/// The checker agrees with vhd-util's verdicts on qemu-img's VHDs (docs/formats.md "VHD creator and size"):
/// plain dynamic and fixed are valid, force_size (maximum geometry) is "geometry too large".
#[test]
fn checker_agrees_with_vhd_util_on_qemu_img_output() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_disk(dir.path(), "disk.raw", 70 * MIB, &[(0, 100_000)]);
    let cases = [
        ("subformat=dynamic", true),
        ("subformat=fixed", true),
        ("subformat=fixed,force_size=on", false),
        ("subformat=dynamic,force_size=on", false),
    ];
    for (i, (opts, valid)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("q{i}.vhd"));
        let (code, text) = run(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                opts,
                raw.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{text}");
        let problems = formats::vhd::check(&out).unwrap().problems;
        if valid {
            assert!(problems.is_empty(), "{opts}: {problems:?}");
        } else {
            assert!(
                problems.iter().any(|p| p.contains("geometry too large")),
                "{opts}: {problems:?}"
            );
        }
    }
}

/// Benchmark, run by hand: `BENCH_FILE=<file> cargo test --release --test formats_vhd -- --ignored bench`.
/// Prints our parallel bzip2 against `bzip2 -9` on the same file (the outputs are identical).
#[test]
#[ignore]
fn bench_bzip2_against_the_bzip2_tool() {
    let Ok(src) = std::env::var("BENCH_FILE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.bz2");
    let t = std::time::Instant::now();
    formats::bzip2::compress_file(Path::new(&src), &mut std::fs::File::create(&ours).unwrap())
        .unwrap();
    let ours_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let (code, _) = run(
        "sh",
        &[
            "-c",
            &format!("bzip2 -9 -c {src} > {}/tool.bz2", dir.path().display()),
        ],
    );
    assert_eq!(code, 0);
    let tool_s = t.elapsed().as_secs_f64();
    let size = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().len();
    eprintln!(
        "bzip2: ours {ours_s:.1} s {} bytes, bzip2 -9 {tool_s:.1} s {} bytes, speed-up {:.2}x",
        size("ours.bz2"),
        size("tool.bz2"),
        tool_s / ours_s
    );
    let (code, text) = run(
        "sh",
        &[
            "-c",
            &format!("bunzip2 -c {} | cmp - {src}", ours.display()),
        ],
    );
    assert_eq!(code, 0, "{text}");
}

/// The parallel compressor cuts blocks where libbzip2 does, so its single stream is byte for byte
/// what `bzip2 -9` writes: checked on inputs that stress the cut (runs crossing the block limit,
/// runs of exactly 4 bytes that expand by a quarter, long zero areas that shrink 50-fold, runs of
/// 255 and 256 bytes, random data, host binaries).
#[test]
fn parallel_bzip2_is_byte_identical_to_the_bzip2_tool() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut inputs: Vec<(&str, Vec<u8>)> = Vec::new();
    inputs.push(("random", random(2_000_000)));
    // "aaaabbbbcccc…": every run is 4 bytes, the worst case of the run-length stage (+25 %).
    inputs.push((
        "fours",
        (0..3_000_000u32).map(|i| (i / 4 % 200) as u8).collect(),
    ));
    // Long runs of every length around the 255 limit, crossing block ends at varied offsets.
    let mut runs = Vec::new();
    for i in 0..200_000usize {
        runs.extend(std::iter::repeat((i % 7) as u8 + 1).take(1 + i % 300));
    }
    inputs.push(("runs", runs));
    let mut sparse = vec![0u8; 60 << 20];
    for i in (0..sparse.len()).step_by(4099) {
        sparse[i] = (i >> 12) as u8 | 1;
    }
    inputs.push(("zeros", sparse));
    let mut host = Vec::new();
    for f in ["/usr/bin/qemu-img", "/usr/bin/bash", "/usr/bin/tar"] {
        host.extend(std::fs::read(f).unwrap_or_default());
    }
    host.extend(random(300_000));
    inputs.push(("host", host));
    for (name, data) in inputs {
        let src = dir.path().join(name);
        std::fs::write(&src, &data).unwrap();
        let ours = dir.path().join(format!("{name}.ours.bz2"));
        formats::bzip2::compress_file(&src, &mut std::fs::File::create(&ours).unwrap()).unwrap();
        let tool = dir.path().join(format!("{name}.tool.bz2"));
        let (code, text) = run(
            "sh",
            &[
                "-c",
                &format!("bzip2 -9 -c {} > {}", src.display(), tool.display()),
            ],
        );
        assert_eq!(code, 0, "{text}");
        let (ours, tool) = (std::fs::read(&ours).unwrap(), std::fs::read(&tool).unwrap());
        assert!(
            ours == tool,
            "{name}: ours {} bytes, bzip2 -9 {} bytes",
            ours.len(),
            tool.len()
        );
        std::fs::remove_file(&src).unwrap();
    }
}
