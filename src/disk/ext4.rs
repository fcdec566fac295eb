//! The root filesystem: ext4 built from a directory by `mke2fs -d`, written straight into the
//! root partition of the disk file (`-E offset=`), so nothing is mounted and no loop device
//! is used.
//!
//! Reproducible: the feature set comes from our own mke2fs.conf (not the host's), the UUID and
//! directory hash seed are given, `E2FSPROGS_FAKE_TIME` fixes the superblock times, and
//! afterwards `debugfs` sets every inode's atime, ctime and crtime (which mke2fs copies from
//! the source or the clock) to SOURCE_DATE_EPOCH. mtimes are the input's, clamped to
//! SOURCE_DATE_EPOCH beforehand by [`clamp_mtimes`].

use super::layout::Extent;
use super::usage::Usage;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

pub const BLOCK_SIZE: u64 = 4096;

/// The ext4 feature set of Ubuntu's and Debian's mke2fs.conf before 1.47 (no `orphan_file`,
/// which jammy's e2fsck cannot check), fixed here so the host's config does not leak in.
const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tdefault = {
\t}
";

/// What to build.
pub struct Ext4<'a> {
    pub source: &'a Path,
    pub uuid: uuid::Uuid,
    pub hash_seed: uuid::Uuid,
    pub usage: Usage,
    pub source_date_epoch: Option<u64>,
}

/// A path naming an open file, for a child process: `/proc/<our pid>/fd/<fd>`. The disk
/// being written is an unnamed temporary of [`crate::output::AtomicOutput`]; this reaches it
/// without a second name that could be left behind.
fn proc_path(f: &File) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd())
}

/// Runs a tool, turning a failure into one line with its stderr.
fn run(cmd: duct::Expression, what: &str) -> Result<()> {
    let out = cmd
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        bail!("{what} failed ({}): {last}", out.status);
    }
    Ok(())
}

/// Builds the filesystem into `part` of `disk`.
pub fn build(disk: &File, part: &Extent, fs: &Ext4) -> Result<()> {
    let blocks = part.bytes() / BLOCK_SIZE;
    let mut conf =
        tempfile::NamedTempFile::new().context("cannot create a temporary mke2fs.conf")?;
    conf.write_all(MKE2FS_CONF.as_bytes())
        .context("cannot write a temporary mke2fs.conf")?;
    let mut args: Vec<String> = vec![
        "-q".into(),
        "-F".into(),
        "-t".into(),
        "ext4".into(),
        "-T".into(),
        "default".into(),
    ];
    args.extend([
        "-b".into(),
        BLOCK_SIZE.to_string(),
        "-U".into(),
        fs.uuid.to_string(),
    ]);
    args.extend([
        "-E".into(),
        format!(
            "hash_seed={},offset={},assume_storage_prezeroed=1,nodiscard",
            fs.hash_seed,
            part.offset()
        ),
    ]);
    // The default ratio gives one inode per 16 KiB; a small disk of small files needs more.
    let wanted_inodes = fs.usage.inodes + fs.usage.inodes / 4 + 1024;
    if wanted_inodes > part.bytes() / 16384 {
        args.extend(["-N".into(), wanted_inodes.to_string()]);
    }
    args.extend([
        "-d".into(),
        fs.source.display().to_string(),
        proc_path(disk),
        blocks.to_string(),
    ]);
    // mke2fs -d adds each directory's entries in alphasort (strcoll) order: the C locale keeps
    // that order, and so the inode numbers, the same whatever the caller's locale.
    let mut cmd = duct::cmd("mke2fs", &args)
        .env("MKE2FS_CONFIG", conf.path())
        .env("LC_ALL", "C");
    if let Some(t) = fs.source_date_epoch {
        cmd = cmd.env("E2FSPROGS_FAKE_TIME", t.to_string());
    }
    run(cmd, &format!("mke2fs -d {}", fs.source.display()))?;
    if let Some(t) = fs.source_date_epoch {
        fix_inode_times(disk, part, t)?;
        reset_lifetime_writes(disk, part)?;
    }
    Ok(())
}

/// The primary superblock's offset in the filesystem, and the size of every copy.
const SUPERBLOCK_AT: u64 = 1024;
const SUPERBLOCK_BYTES: usize = 1024;

/// Reads the superblock copy `at` bytes into the root partition, checking its magic.
fn read_superblock(disk: &File, part: &Extent, at: u64) -> Result<[u8; SUPERBLOCK_BYTES]> {
    let mut sb = [0u8; SUPERBLOCK_BYTES];
    disk.read_exact_at(&mut sb, part.offset() + at)
        .context("cannot read an ext4 superblock")?;
    if u16::from_le_bytes([sb[56], sb[57]]) != 0xEF53 {
        bail!("no ext4 superblock at byte {at} of the root partition");
    }
    Ok(sb)
}

/// The little-endian u32 field at byte `at` of a superblock.
fn le32(sb: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(sb[at..at + 4].try_into().unwrap()) as u64
}

/// Sets the superblock's lifetime-writes counter (`s_kbytes_written`) to 0 in every copy of
/// the superblock. mke2fs and debugfs add the bytes they wrote to it, and mke2fs -d writes more
/// or fewer zero blocks depending on how the source's files are laid out on the host (sparse or
/// not, copied up by overlayfs or not), which changes nothing else in the filesystem.
pub fn reset_lifetime_writes(disk: &File, part: &Extent) -> Result<()> {
    let primary = read_superblock(disk, part, SUPERBLOCK_AT)?;
    let block_size = 1024u64 << le32(&primary, 24);
    let first_data_block = le32(&primary, 20);
    let per_group = le32(&primary, 32);
    let mut blocks = le32(&primary, 4);
    if le32(&primary, 96) & 0x80 != 0 {
        blocks |= le32(&primary, 336) << 32; // 64bit: s_blocks_count_hi
    }
    let sparse_super = le32(&primary, 100) & 0x1 != 0;
    let metadata_csum = le32(&primary, 100) & 0x400 != 0;
    let groups = (blocks - first_data_block).div_ceil(per_group);
    // Groups holding a backup: all, or with sparse_super 1 and the powers of 3, 5 and 7.
    let has_backup = |g: u64| {
        let power_of = |b: u64| {
            let mut n = b;
            while n < g {
                n *= b;
            }
            n == g
        };
        !sparse_super || g == 1 || power_of(3) || power_of(5) || power_of(7)
    };
    let crc32c = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    for g in (0..groups).filter(|&g| g == 0 || has_backup(g)) {
        let (at, mut sb) = if g == 0 {
            (SUPERBLOCK_AT, primary)
        } else {
            let at = (first_data_block + g * per_group) * block_size;
            (at, read_superblock(disk, part, at)?)
        };
        sb[376..384].fill(0);
        if metadata_csum {
            // ext4's crc32c has no final inversion; CRC-32/ISCSI's has.
            let sum = !crc32c.checksum(&sb[..SUPERBLOCK_BYTES - 4]);
            sb[SUPERBLOCK_BYTES - 4..].copy_from_slice(&sum.to_le_bytes());
        }
        disk.write_all_at(&sb, part.offset() + at)
            .context("cannot write an ext4 superblock")?;
    }
    Ok(())
}

/// Sets atime, ctime and crtime of every used inode to `t`. mke2fs -d allocates inodes in
/// order from the first group, so the used ones are 2 (root), the reserved ones and 11..=N
/// where N = inodes_count - free_inodes_count.
fn fix_inode_times(disk: &File, part: &Extent, t: u64) -> Result<()> {
    let sb = read_superblock(disk, part, SUPERBLOCK_AT)?;
    let last = le32(&sb, 0) - le32(&sb, 16);
    let mut script =
        tempfile::NamedTempFile::new().context("cannot create a temporary debugfs script")?;
    {
        let mut w = std::io::BufWriter::new(script.as_file_mut());
        for ino in std::iter::once(2).chain(11..=last) {
            for f in ["atime", "ctime", "crtime"] {
                writeln!(w, "sif <{ino}> {f} @{t}")?;
                writeln!(w, "sif <{ino}> {f}_extra 0")?;
            }
        }
        w.flush()?;
    }
    let target = format!("{}?offset={}", proc_path(disk), part.offset());
    let cmd = duct::cmd!("debugfs", "-w", "-f", script.path(), target)
        .env("E2FSPROGS_FAKE_TIME", t.to_string());
    run(cmd, "debugfs (fixing inode times)")
}

/// Sets the mtime of every entry of `root` newer than `t` to `t` (as `tar --clamp-mtime`),
/// without following symlinks.
pub fn clamp_mtimes(root: &Path, t: u64) -> Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let ts = TimeSpec::new(t as i64, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p)
            .with_context(|| format!("{}: cannot stat", p.display()))?;
        if md.is_dir() {
            for e in
                std::fs::read_dir(&p).with_context(|| format!("{}: cannot list", p.display()))?
            {
                stack.push(
                    e.with_context(|| format!("{}: cannot list", p.display()))?
                        .path(),
                );
            }
        }
        if md.mtime() > t as i64 {
            let atime = TimeSpec::new(md.atime(), md.atime_nsec());
            utimensat(
                nix::fcntl::AT_FDCWD,
                &p,
                &atime,
                &ts,
                UtimensatFlags::NoFollowSymlink,
            )
            .with_context(|| format!("{}: cannot set mtime", p.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::layout::Role;

    fn dumpe2fs(image: &Path, superblock: Option<u64>) -> String {
        let mut args = vec!["-h".to_string()];
        if let Some(b) = superblock {
            args.extend([
                "-o".into(),
                format!("superblock={b}"),
                "-o".into(),
                "blocksize=4096".into(),
            ]);
        }
        args.push(format!("{}?offset=1048576", image.display()));
        let out = std::process::Command::new("dumpe2fs")
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("does not match"),
            "{superblock:?}: {stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A 1.3 GB filesystem (ten groups: backups in 1, 3, 5, 7 and 9) one MiB into the file,
    /// written by mke2fs with some data; every superblock copy must lose its lifetime-writes
    /// counter and keep a valid checksum (e2fsck refuses a copy whose checksum is wrong).
    #[test]
    fn lifetime_writes_reset_in_every_superblock_copy() {
        let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("data"), vec![7u8; 4 << 20]).unwrap();
        let image = tmp.path().join("disk");
        let disk = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&image)
            .unwrap();
        let blocks: u64 = 10 * 32768;
        disk.set_len((1 << 20) + blocks * BLOCK_SIZE).unwrap();
        let part = Extent {
            role: Role::Root,
            number: 1,
            first_lba: 2048,
            sectors: blocks * 8,
        };
        // Without SOURCE_DATE_EPOCH, build leaves mke2fs's counter in place.
        let fs = Ext4 {
            source: &src,
            uuid: uuid::Uuid::from_u128(1),
            hash_seed: uuid::Uuid::from_u128(2),
            usage: crate::disk::usage::measure(&src).unwrap(),
            source_date_epoch: None,
        };
        build(&disk, &part, &fs).unwrap();
        let backups = [32768u64, 98304, 163840, 229376, 294912];
        assert!(dumpe2fs(&image, None).contains("Lifetime writes:"));
        assert!(dumpe2fs(&image, Some(backups[0])).contains("Lifetime writes:"));

        reset_lifetime_writes(&disk, &part).unwrap();

        // dumpe2fs refuses a superblock copy whose checksum is wrong ("Superblock checksum
        // does not match"); e2fsck checks the whole filesystem from the primary one.
        for b in std::iter::once(None).chain(backups.map(Some)) {
            let header = dumpe2fs(&image, b);
            assert!(
                !header.contains("Lifetime writes:"),
                "superblock {b:?}: {header}"
            );
        }
        let out = std::process::Command::new("e2fsck")
            .arg("-fn")
            .arg(format!("{}?offset=1048576", image.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
