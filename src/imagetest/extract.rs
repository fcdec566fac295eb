//! Safe extraction of an OS image tarball (gzip or plain tar) into a directory owned by the
//! caller. Every member is checked before anything is written for it:
//! - no absolute path and no `..` component (a member could otherwise write outside the root);
//! - device nodes and FIFOs only under `dev/` (anywhere else they would be a way into the host);
//! - links may point anywhere (a root filesystem is full of absolute links), but the tar crate
//!   refuses to write *through* a link that leaves the root.
//!
//! Ownership, modes (setuid included), mtimes and hard links are preserved, so the checks see
//! the image exactly as the tarball holds it.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Extracts `tarball` into the existing, empty directory `dest`. Errors name the tarball and
/// the offending member.
pub fn extract(tarball: &Path, dest: &Path) -> Result<()> {
    let name = tarball.display();
    let mut file = File::open(tarball).with_context(|| format!("{name}: cannot open"))?;
    let mut magic = [0u8; 2];
    let gzipped = file
        .read(&mut magic)
        .with_context(|| format!("{name}: cannot read"))?
        == 2
        && magic == [0x1f, 0x8b];
    let file = File::open(tarball).with_context(|| format!("{name}: cannot open"))?;
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            file,
        )))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut members = 0usize;
    for entry in archive
        .entries()
        .with_context(|| format!("{name}: not a tar archive"))?
    {
        let mut entry = entry.with_context(|| format!("{name}: corrupt tar archive"))?;
        let path = entry
            .path()
            .with_context(|| format!("{name}: member with an unreadable name"))?
            .into_owned();
        let relative = checked_member_path(&path)
            .with_context(|| format!("{name}: member {}", path.display()))?;
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            if !relative.starts_with("dev") {
                bail!(
                    "{name}: member {}: device file outside /dev",
                    path.display()
                );
            }
            make_node(&entry, &dest.join(&relative)).with_context(|| {
                format!(
                    "{name}: member {}: cannot create the device node",
                    path.display()
                )
            })?;
        } else {
            entry
                .unpack_in(dest)
                .with_context(|| format!("{name}: member {}", path.display()))?;
        }
        members += 1;
    }
    if members == 0 {
        bail!("{name}: empty archive");
    }
    Ok(())
}

/// The member path relative to the root, refusing absolute paths and `..`.
pub fn checked_member_path(path: &Path) -> Result<PathBuf> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => bail!("absolute path"),
            Component::ParentDir => bail!("path with `..`"),
        }
    }
    Ok(relative)
}

/// Creates a character or block device or FIFO with the member's numbers, mode and owner.
fn make_node<R: Read>(entry: &tar::Entry<R>, target: &Path) -> Result<()> {
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode()? & 0o7777;
    let file_type = if kind.is_character_special() {
        libc::S_IFCHR
    } else if kind.is_block_special() {
        libc::S_IFBLK
    } else {
        libc::S_IFIFO
    };
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(target);
    let c_path = CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: c_path is a valid NUL-terminated path; mknod and lchown do not retain it.
    let made = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            file_type | mode,
            libc::makedev(major, minor),
        )
    };
    if made != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let (uid, gid) = (header.uid()? as libc::uid_t, header.gid()? as libc::gid_t);
    // SAFETY: as above.
    if unsafe { libc::lchown(c_path.as_ptr(), uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_stay_inside_the_root() {
        assert_eq!(
            checked_member_path(Path::new("./etc/passwd")).unwrap(),
            Path::new("etc/passwd")
        );
        assert_eq!(checked_member_path(Path::new("./")).unwrap(), Path::new(""));
        assert_eq!(
            checked_member_path(Path::new("/etc/passwd"))
                .unwrap_err()
                .to_string(),
            "absolute path"
        );
        assert_eq!(
            checked_member_path(Path::new("etc/../../x"))
                .unwrap_err()
                .to_string(),
            "path with `..`"
        );
    }
}
