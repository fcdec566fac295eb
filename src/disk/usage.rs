//! How much ext4 space a directory tree needs, computed before `mke2fs -d` runs so a too-small
//! disk fails early with a clear message instead of a half-populated filesystem.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const BLOCK: u64 = 4096;

/// Space a tree takes as ext4 with 4 KiB blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Data and directory blocks, in bytes.
    pub data_bytes: u64,
    /// Inodes needed (files, directories, links, devices), hard links counted once.
    pub inodes: u64,
}

impl Usage {
    /// Bytes of filesystem that hold the tree with room to spare: data plus 10%, one 256-byte
    /// inode per 16 KiB (mke2fs' default ratio) at least for every inode, the 64 MiB journal of
    /// a multi-GiB filesystem, and 64 MiB slack for group metadata and the first boot.
    pub fn min_fs_bytes(&self) -> u64 {
        let data = self.data_bytes + self.data_bytes / 10;
        let inode_tables = (data / 16384).max(self.inodes) * 256;
        data + inode_tables + (64 << 20) + (64 << 20)
    }
}

/// Walks `root` without following symlinks or crossing into other filesystems.
pub fn measure(root: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    let mut links = HashSet::new();
    let root_dev = std::fs::symlink_metadata(root)
        .with_context(|| format!("{}: cannot read the root directory", root.display()))?
        .dev();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        usage.inodes += 1;
        let mut dir_bytes = 24; // "." and ".."
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("{}: cannot list", dir.display()))?;
            let md = e
                .metadata()
                .with_context(|| format!("{}: cannot stat", e.path().display()))?;
            let round = |n: u64| n.div_ceil(BLOCK) * BLOCK;
            dir_bytes += (e.file_name().len() as u64 + 8 + 3) & !3;
            if md.is_dir() {
                if md.dev() == root_dev {
                    stack.push(e.path());
                }
                continue;
            }
            if md.nlink() > 1 && !links.insert((md.dev(), md.ino())) {
                continue;
            }
            usage.inodes += 1;
            if md.is_file() {
                // Sparse files (e.g. lastlog) take only their allocated blocks.
                usage.data_bytes += round(md.len()).min(round(md.blocks() * 512));
            } else if md.file_type().is_symlink() && md.len() >= 60 {
                usage.data_bytes += BLOCK;
            }
        }
        usage.data_bytes += dir_bytes.div_ceil(BLOCK).max(1) * BLOCK;
    }
    Ok(usage)
}
