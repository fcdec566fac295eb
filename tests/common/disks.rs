//! Test disk generators (raw images) shared by the format tests. Each generator writes a raw
//! disk under `dir` and returns where its data is, so readers can compare just those ranges.
//! Content is deterministic (a seeded xorshift), mixing incompressible random bytes,
//! compressible text, explicit zero runs (written, not holes) and holes.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// A generated raw disk.
pub struct Disk {
    pub path: PathBuf,
    pub size: u64,
    /// Byte ranges written (possibly with zeros); everything else is a hole.
    pub written: Vec<std::ops::Range<u64>>,
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text-like bytes that deflate well but not trivially (numbered lines of words).
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "stemcell",
        "agent",
        "bosh",
        "vcap",
        "monit",
        "kernel",
        "grub",
        "/var/vcap/bosh/bin",
        "eth0",
        "ext4",
        "root",
        "director",
    ];
    let noise = random_bytes(seed, len / 4 + 16);
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0usize;
    while out.len() < len {
        let n = noise[i % noise.len()] as usize;
        out.extend_from_slice(
            format!(
                "{:08} {} {} {}\n",
                i,
                WORDS[n % 12],
                WORDS[(n / 12) % 12],
                n
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

struct Builder {
    file: File,
    disk: Disk,
}

impl Builder {
    fn new(dir: &Path, name: &str, size: u64) -> Self {
        let path = dir.join(name);
        let file = File::create(&path).unwrap();
        file.set_len(size).unwrap();
        Builder {
            file,
            disk: Disk {
                path,
                size,
                written: Vec::new(),
            },
        }
    }

    fn put(mut self, offset: u64, data: &[u8]) -> Self {
        assert!(offset + data.len() as u64 <= self.disk.size);
        self.file.write_all_at(data, offset).unwrap();
        self.disk.written.push(offset..offset + data.len() as u64);
        self
    }

    fn done(self) -> Disk {
        self.file.sync_all().unwrap();
        self.disk
    }
}

/// 24 MiB: random data, text, a written zero run, a cluster with a single non-zero byte,
/// unaligned data straddling clusters, and holes between them.
pub fn mixed(dir: &Path) -> Disk {
    Builder::new(dir, "mixed.raw", 24 * MIB)
        .put(0, &random_bytes(1, 512))
        .put(64 * KIB, &text_bytes(2, 3 * MIB as usize))
        .put(4 * MIB, &random_bytes(3, 2 * MIB as usize))
        .put(7 * MIB, &vec![0u8; 2 * MIB as usize])
        .put(10 * MIB + 100, &text_bytes(4, 300 * KIB as usize))
        .put(12 * MIB + 65535, &[0xAB])
        .put(20 * MIB - 4096, &random_bytes(5, 8192))
        .done()
}

/// A size that is a multiple of 512 but not of 64 KiB, with data in the partial last cluster.
pub fn partial_last_cluster(dir: &Path) -> Disk {
    let size = 3 * MIB + 7 * 512;
    Builder::new(dir, "partial.raw", size)
        .put(MIB, &text_bytes(6, 100 * KIB as usize))
        .put(size - 2048, &random_bytes(7, 2048))
        .done()
}

/// 4 MiB of zeros: half written explicitly, half a hole.
pub fn all_zero(dir: &Path) -> Disk {
    Builder::new(dir, "zero.raw", 4 * MIB)
        .put(0, &vec![0u8; 2 * MIB as usize])
        .done()
}

/// 8 GiB virtual with a few MiB of data: at the start, across the 512 MiB L2 boundaries, and
/// in the last sector.
pub fn large_sparse(dir: &Path) -> Disk {
    let size = 8 * GIB;
    Builder::new(dir, "sparse8g.raw", size)
        .put(0, &text_bytes(8, MIB as usize))
        .put(512 * MIB - 32 * KIB, &random_bytes(9, 64 * KIB as usize))
        .put(3 * GIB + 5 * MIB, &text_bytes(10, 2 * MIB as usize))
        .put(7 * GIB + 512 * MIB, &random_bytes(11, MIB as usize))
        .put(size - 512, &random_bytes(12, 512))
        .done()
}

/// Every generator, with a short name for messages.
pub fn all(dir: &Path) -> Vec<(&'static str, Disk)> {
    vec![
        ("mixed", mixed(dir)),
        ("partial", partial_last_cluster(dir)),
        ("zero", all_zero(dir)),
        ("sparse8g", large_sparse(dir)),
    ]
}
