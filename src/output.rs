//! Atomic output files: every file the tool produces is written under a temporary name in the
//! destination directory and renamed into place only once it is complete, so an interrupted run
//! or a full disk never leaves a half-written file under the final name.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A file being written; it becomes `path` on [`AtomicOutput::commit`], and is deleted when
/// dropped without a commit (error, panic, early return).
pub struct AtomicOutput {
    temp: Option<tempfile::NamedTempFile>,
    path: PathBuf,
}

impl AtomicOutput {
    /// Starts writing `path`. Refuses an existing `path` unless `force` is set.
    pub fn create(path: &Path, force: bool) -> Result<Self> {
        if !force && path.symlink_metadata().is_ok() {
            bail!(
                "{}: output exists (use --force to overwrite)",
                path.display()
            );
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(&dir)
            .with_context(|| format!("{}: cannot create output", path.display()))?;
        Ok(Self {
            temp: Some(temp),
            path: path.to_path_buf(),
        })
    }

    /// The open temporary file, for writing, seeking and reading back.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_mut().expect("not committed").as_file_mut()
    }

    /// The final path this output becomes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames into place (see the note on durability inside).
    pub fn commit(mut self) -> Result<()> {
        let temp = self.temp.take().expect("not committed");
        // The temporary file is 0600; the result gets the usual 0666 less the umask, as any
        // other tool's output would.
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: umask only swaps the process mask; it is restored at once.
        let mask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o666 & !(mask as u32)))
            .with_context(|| format!("{}: cannot set permissions", self.path.display()))?;
        // No fsync: the rename makes the file appear complete or not at all for any process
        // stop (error, Ctrl-C, kill); surviving power loss is left to the filesystem, as with
        // qemu-img, tar and gzip. An fsync here cost 0.8 s per 700 MB written.
        temp.persist(&self.path)
            .map_err(|e| e.error)
            .with_context(|| format!("{}: cannot rename output into place", self.path.display()))?;
        Ok(())
    }
}

/// Refuses `dir`, a directory a command will make (or use), when it or its nearest existing
/// ancestor is not a directory. Checked before the slow work, so a mistyped `-o` or
/// `--work-dir` stops the run at once instead of at its end; `what` names the flag's role.
pub fn check_dir_can_be_made(dir: &Path, what: &str) -> Result<()> {
    let mut next = Some(dir);
    while let Some(d) = next {
        if let Ok(meta) = std::fs::metadata(d) {
            if !meta.is_dir() {
                bail!("{}: not a directory (the {what})", d.display());
            }
            return Ok(());
        }
        next = d.parent().filter(|p| !p.as_os_str().is_empty());
    }
    Ok(())
}

#[cfg(test)]
mod dir_tests {
    use super::check_dir_can_be_made;

    #[test]
    fn a_file_on_the_way_to_a_directory_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("file");
        std::fs::write(&file, "").unwrap();
        check_dir_can_be_made(&t.path().join("new/deeper"), "work directory").unwrap();
        check_dir_can_be_made(t.path(), "work directory").unwrap();
        let e = check_dir_can_be_made(&file.join("x/y"), "output directory").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: not a directory (the output directory)", file.display())
        );
        assert!(check_dir_can_be_made(&file, "work directory").is_err());
    }
}
