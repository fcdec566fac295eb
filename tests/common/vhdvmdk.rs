//! Test disks for the VHD/VMDK/OVF tests: sparse raw files with random data where asked.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Creates a sparse raw disk of `size` bytes with `len` random bytes at each `(offset, len)`;
/// everything else is a hole.
pub fn make_disk(dir: &Path, name: &str, size: u64, data: &[(u64, usize)]) -> PathBuf {
    let path = dir.join(name);
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(size).unwrap();
    for (i, &(offset, len)) in data.iter().enumerate() {
        f.write_all_at(&random_bytes(offset ^ i as u64, len), offset)
            .unwrap();
    }
    path
}

/// Writes compressible text-like data (so compression does something) at `offset`.
pub fn write_text(path: &Path, offset: u64, len: usize) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    let line = b"the quick brown fox jumps over the lazy stemcell 0123456789\n";
    let data: Vec<u8> = line.iter().cycle().take(len).copied().collect();
    f.write_all_at(&data, offset).unwrap();
}

/// Runs a command, returns (exit code, stdout + stderr).
pub fn run(cmd: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `qemu-img compare -f raw -F <fmt> raw img`, asserting "identical".
pub fn assert_qemu_identical(raw: &Path, fmt: &str, img: &Path) {
    let (code, text) = run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            fmt,
            raw.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    assert_eq!(
        code,
        0,
        "qemu-img compare {} vs {}: {text}",
        raw.display(),
        img.display()
    );
}

/// `qemu-img info --output=json -f <fmt>` as JSON.
pub fn qemu_info(fmt: &str, img: &Path) -> serde_json::Value {
    let (code, text) = run(
        "qemu-img",
        &["info", "--output=json", "-f", fmt, img.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Copies `src` to `dst` and lets `edit` change bytes in the copy.
pub fn corrupt(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(src).unwrap();
    edit(&mut bytes);
    std::fs::write(dst, &bytes).unwrap();
    dst.to_path_buf()
}

/// Reads `img` back with libyal's Python bindings (python3-libvmdk / python3-libvhdi, an
/// independent reader) and compares every byte with `raw`. `None` when they are not installed.
pub fn libyal_matches(kind: &str, img: &Path, raw: &Path) -> Option<bool> {
    let open = match kind {
        "vmdk" => "import pyvmdk\nh = pyvmdk.handle(); h.open(img); h.open_extent_data_files()",
        "vhd" => "import pyvhdi\nh = pyvhdi.file(); h.open(img)",
        _ => panic!("unknown kind {kind}"),
    };
    let script = format!(
        "import sys\nimg, raw = sys.argv[1], sys.argv[2]\ntry:\n    {}\nexcept ImportError:\n    sys.exit(3)\n\
         data = h.read_buffer(h.get_media_size())\nsys.exit(0 if data == open(raw, 'rb').read() else 1)\n",
        open.replace('\n', "\n    ")
    );
    let (code, text) = run(
        "/usr/bin/python3",
        &["-c", &script, img.to_str().unwrap(), raw.to_str().unwrap()],
    );
    match code {
        3 => None,
        0 => Some(true),
        1 => Some(false),
        _ => panic!("libyal read of {}: {text}", img.display()),
    }
}
