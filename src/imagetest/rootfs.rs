//! The root filesystem of a raw disk, copied into a directory without a mount or loop device
//! (this machine's kernel sees no partitions on loop devices and has no vfat driver):
//! - the partition table is read with `sfdisk --json`; the root is the Linux partition (MBR
//!   type 83, GPT "Linux filesystem"), else the last one, as the official suite mounts it;
//! - the ext4 root is copied with `debugfs rdump` on `disk?offset=N`; debugfs sets the mode
//!   before the owner, and the kernel clears setuid/setgid on chown, and it skips device
//!   nodes, FIFOs and sockets, so a second debugfs pass (`ls -p` of every directory) gives the
//!   exact mode of every entry, which is then set again, and the special files are created;
//! - the ESP (MBR type ef, GPT "EFI System") is read with the `fatfs` crate into `boot/efi`,
//!   files 0600 root:root as the official suite mounts it (`umask=0177`).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const LINUX_GPT: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const ESP_GPT: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

#[derive(Deserialize)]
struct SfdiskDump {
    partitiontable: PartitionTable,
}

#[derive(Deserialize)]
struct PartitionTable {
    #[serde(default)]
    sectorsize: Option<u64>,
    #[serde(default)]
    partitions: Vec<Partition>,
}

#[derive(Clone, Deserialize)]
struct Partition {
    start: u64,
    size: u64,
    #[serde(rename = "type")]
    kind: String,
}

/// Byte ranges (offset, length) of the root partition and of the ESP, if any.
fn partitions(raw: &Path) -> Result<((u64, u64), Option<(u64, u64)>)> {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(raw)
        .output()
        .context("sfdisk: cannot run (install the Debian package fdisk)")?;
    if !out.status.success() {
        bail!(
            "{}: no partition table: {}",
            raw.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let dump: SfdiskDump = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: unreadable sfdisk output", raw.display()))?;
    let sector = dump.partitiontable.sectorsize.unwrap_or(512);
    let parts = dump.partitiontable.partitions;
    let is = |p: &&Partition, mbr: &str, gpt: &str| {
        p.kind.eq_ignore_ascii_case(mbr) || p.kind.eq_ignore_ascii_case(gpt)
    };
    let range = |p: &Partition| (p.start * sector, p.size * sector);
    let root = parts
        .iter()
        .find(|p| is(p, "83", LINUX_GPT))
        .or(parts.last())
        .with_context(|| format!("{}: the partition table lists no partition", raw.display()))?;
    let esp = parts.iter().find(|p| is(p, "ef", ESP_GPT));
    Ok((range(root), esp.map(range)))
}

/// Copies the root filesystem (and the ESP into `boot/efi`) of `raw` into the empty `dest`.
pub fn copy_out(raw: &Path, dest: &Path) -> Result<()> {
    let (root, esp) = partitions(raw)?;
    let device = format!("{}?offset={}", raw.display(), root.0);
    debugfs(&device, &[format!("rdump / \"{}\"", dest.display())])
        .with_context(|| format!("{}: cannot copy the root filesystem", raw.display()))?;
    restore_modes(&device, dest)?;
    if let Some(esp) = esp {
        copy_esp(raw, esp, &dest.join("boot/efi"))
            .with_context(|| format!("{}: cannot copy the ESP", raw.display()))?;
    }
    Ok(())
}

/// Runs debugfs read-only with `commands` and returns its standard output; any line on
/// standard error other than the banner is an error.
fn debugfs(device: &str, commands: &[String]) -> Result<String> {
    let mut script = tempfile::NamedTempFile::new()?;
    for c in commands {
        writeln!(script, "{c}")?;
    }
    let out = Command::new("debugfs")
        .env("DEBUGFS_PAGER", "__none__")
        .arg("-f")
        .arg(script.path())
        .arg(device)
        .output()
        .context("debugfs: cannot run (install the Debian package e2fsprogs)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problem = stderr.lines().find(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with("debugfs ") && !l.starts_with("debugfs: ")
    });
    if !out.status.success() || problem.is_some() {
        bail!("debugfs: {}", problem.unwrap_or("failed").trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sets every entry's exact mode (setuid, setgid and sticky bits included) and creates the
/// device nodes, FIFOs and sockets `rdump` left out, from `ls -p` of every directory.
fn restore_modes(device: &str, dest: &Path) -> Result<()> {
    let mut dirs = vec![PathBuf::from("/")];
    let mut i = 0;
    while i < dirs.len() {
        let host = dest.join(dirs[i].strip_prefix("/").unwrap());
        for entry in std::fs::read_dir(&host)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(dirs[i].join(entry.file_name()));
            }
        }
        i += 1;
    }
    let commands: Vec<String> = dirs
        .iter()
        .map(|d| format!("ls -p \"{}\"", d.display()))
        .collect();
    let listing = debugfs(device, &commands)?;
    let mut devices = Vec::new();
    let mut dir = PathBuf::from("/");
    for line in listing.lines() {
        if let Some(cmd) = line.strip_prefix("debugfs: ls -p ") {
            dir = PathBuf::from(cmd.trim_matches('"'));
            continue;
        }
        // `/inode/mode/uid/gid/name/size/`
        let fields: Vec<&str> = line.split('/').collect();
        if fields.len() < 7 || fields[5] == "." || fields[5] == ".." || fields[5].is_empty() {
            continue;
        }
        let mode = u32::from_str_radix(fields[2], 8)
            .with_context(|| format!("debugfs: unexpected listing line {line:?}"))?;
        let path = dir.join(fields[5]);
        let host = dest.join(path.strip_prefix("/").unwrap());
        match mode & 0o170000 {
            0o100000 | 0o040000 => {
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode & 0o7777))
                    .with_context(|| format!("{}: cannot set the mode", host.display()))?;
            }
            0o020000 | 0o060000 | 0o010000 | 0o140000 => devices.push((
                path,
                host,
                mode,
                fields[3].to_string(),
                fields[4].to_string(),
            )),
            _ => {}
        }
    }
    // Device numbers come from `stat`; FIFOs and sockets need none.
    for (path, host, mode, uid, gid) in devices {
        let rdev = if mode & 0o170000 == 0o020000 || mode & 0o170000 == 0o060000 {
            let stat = debugfs(device, &[format!("stat \"{}\"", path.display())])?;
            device_numbers(&stat)
                .with_context(|| format!("{}: no device number in debugfs stat", path.display()))?
        } else {
            0
        };
        let cpath = std::ffi::CString::new(host.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid NUL-terminated path; mknod only reads it.
        if unsafe { libc::mknod(cpath.as_ptr(), mode as libc::mode_t, rdev) } != 0 {
            let e = std::io::Error::last_os_error();
            if mode & 0o170000 != 0o140000 {
                return Err(e).with_context(|| format!("{}: cannot create", host.display()));
            }
        }
        let (uid, gid) = (uid.parse().unwrap_or(0), gid.parse().unwrap_or(0));
        std::os::unix::fs::lchown(&host, Some(uid), Some(gid))?;
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

/// `Device major/minor number: 01:03 (hex 01:03)` in `debugfs stat` output.
fn device_numbers(stat: &str) -> Option<libc::dev_t> {
    let rest = stat.split("Device major/minor number:").nth(1)?;
    let pair = rest.split_whitespace().next()?;
    let (major, minor) = pair.split_once(':')?;
    Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
}

/// Copies the FAT filesystem at `range` of `raw` into `dest` (files 0600, directories 0700).
fn copy_esp(raw: &Path, range: (u64, u64), dest: &Path) -> Result<()> {
    let file = std::fs::File::open(raw)?;
    let slice = fscommon::StreamSlice::new(file, range.0, range.0 + range.1)?;
    let fs = fatfs::FileSystem::new(slice, fatfs::FsOptions::new())?;
    std::fs::create_dir_all(dest)?;
    let root = fs.root_dir();
    copy_fat_dir(&root, dest)
}

fn copy_fat_dir<T: fatfs::ReadWriteSeek>(dir: &fatfs::Dir<T>, dest: &Path) -> Result<()> {
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o700))?;
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == "." || name == ".." {
            continue;
        }
        if name.contains('/') {
            bail!("ESP entry {name:?}: a name with a slash");
        }
        let path = dest.join(&name);
        if entry.is_dir() {
            std::fs::create_dir(&path)?;
            copy_fat_dir(&entry.to_dir(), &path)?;
        } else {
            let mut out = std::fs::File::create(&path)?;
            std::io::copy(&mut entry.to_file(), &mut out)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn device_numbers_come_from_debugfs_stat() {
        let stat = "Inode: 12   Type: character special    Mode:  0666\nDevice major/minor number: 01:03 (hex 01:03)\n";
        assert_eq!(super::device_numbers(stat), Some(libc::makedev(1, 3)));
        assert_eq!(super::device_numbers("Inode: 12"), None);
    }
}
