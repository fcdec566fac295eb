//! The layer cache under `<work-dir>/layers/`. Each cached step (bootstrap, then each stage) is
//! one directory named by its cache key; the stages are overlayfs upper directories stacked on
//! the bootstrap tree, whiteouts and opaque directories handled by the kernel.
//!
//! Invariants: a layer is usable iff `<key>.done` exists (the contract shared with the planner);
//! a layer is built in `<key>.partial/` and renamed to `<key>/` before `<key>.done` is created,
//! so an interrupted build never leaves a `.done` for an incomplete tree. Stale `.partial` and
//! overlay work directories are removed when the store is opened (under the work-dir lock).

use anyhow::{Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The layer directory of a work directory.
pub struct LayerStore {
    dir: PathBuf,
    work_dir: PathBuf,
    _lock: nix::fcntl::Flock<File>,
}

impl LayerStore {
    /// Opens (creating) `<work_dir>/layers`, takes the work-dir lock (one build at a time) and
    /// removes what an interrupted build left.
    pub fn open(work_dir: &Path) -> Result<Self> {
        // Absolute: mounts run with the layer directory as their working directory, so a
        // relative `--work-dir` would name the wrong mount point.
        let work_dir = &std::path::absolute(work_dir)
            .with_context(|| format!("{}: cannot resolve", work_dir.display()))?;
        let dir = work_dir.join("layers");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create the layer cache", dir.display()))?;
        let lock_path = work_dir.join("lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("{}: cannot create", lock_path.display()))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                anyhow::anyhow!(
                    "{}: another build is using this work directory ({e})",
                    work_dir.display()
                )
            })?;
        let store = Self {
            dir,
            work_dir: work_dir.to_path_buf(),
            _lock: lock,
        };
        store.remove_stale()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// `<work-dir>/layers/<key>.done`.
    pub fn done_marker(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.done"))
    }

    pub fn is_done(&self, key: &str) -> bool {
        self.done_marker(key).exists() && self.dir.join(key).is_dir()
    }

    /// The finished layer directory.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Name (relative to [`LayerStore::dir`]) of the directory a layer is built in.
    pub fn partial_name(key: &str) -> String {
        format!("{key}.partial")
    }

    /// Name of the overlay work directory used while building `key`.
    pub fn overlay_work_name(key: &str) -> String {
        format!("{key}.ovlwork")
    }

    /// Empty `<key>.partial/` and `<key>.ovlwork/`, ready for a build; any previous result of
    /// `key` is invalidated first.
    pub fn begin(&self, key: &str) -> Result<PathBuf> {
        let _ = std::fs::remove_file(self.done_marker(key));
        for name in [Self::partial_name(key), Self::overlay_work_name(key)] {
            let p = self.dir.join(&name);
            remove_tree(&p)?;
            std::fs::create_dir(&p).with_context(|| format!("{}: cannot create", p.display()))?;
        }
        Ok(self.dir.join(Self::partial_name(key)))
    }

    /// Publishes `<key>.partial/` as `<key>/` and marks it done.
    pub fn commit(&self, key: &str) -> Result<()> {
        let final_dir = self.path(key);
        remove_tree(&final_dir)?;
        remove_tree(&self.dir.join(Self::overlay_work_name(key)))?;
        let partial = self.dir.join(Self::partial_name(key));
        // The chroot's dpkg skips its fsyncs (bootstrap::DPKG_BUILD_CONFIG): one syncfs makes the
        // layer durable before it is marked done, so a crash never leaves a done, torn layer.
        sync_filesystem(&partial)?;
        std::fs::rename(&partial, &final_dir)
            .with_context(|| format!("{}: cannot rename into place", partial.display()))?;
        File::create(self.done_marker(key))
            .and_then(|f| f.sync_all())
            .with_context(|| {
                format!(
                    "{}: cannot write the cache marker",
                    self.done_marker(key).display()
                )
            })?;
        Ok(())
    }

    /// Removes `<key>.partial/` and `<key>.ovlwork/` after a failure.
    pub fn abandon(&self, key: &str) {
        for name in [Self::partial_name(key), Self::overlay_work_name(key)] {
            let _ = remove_tree(&self.dir.join(name));
        }
    }

    fn remove_stale(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("{}: cannot read", self.dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") || name.ends_with(".ovlwork") {
                remove_tree(&entry.path())?;
            }
        }
        Ok(())
    }
}

/// `rm -rf`, absent is fine. Overlay work dirs hold a mode-000 `work/` dir; root removes it anyway.
/// Flushes the whole filesystem holding `dir` (syncfs(2)).
fn sync_filesystem(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir).with_context(|| format!("{}: cannot open", dir.display()))?;
    // SAFETY: syncfs takes a valid descriptor, owned by `f` for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("{}: cannot sync", dir.display()));
    }
    Ok(())
}

pub fn remove_tree(p: &Path) -> Result<()> {
    match p.symlink_metadata() {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).with_context(|| format!("{}: cannot remove", p.display()))
        }
        Ok(_) => std::fs::remove_file(p).with_context(|| format!("{}: cannot remove", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_is_invisible_until_commit_and_stale_partials_go() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LayerStore::open(tmp.path()).unwrap();
        let p = store.begin("k1").unwrap();
        std::fs::write(p.join("f"), "x").unwrap();
        assert!(!store.is_done("k1"));
        store.commit("k1").unwrap();
        assert!(store.is_done("k1"));
        assert_eq!(std::fs::read(store.path("k1").join("f")).unwrap(), b"x");
        store.begin("k2").unwrap();
        drop(store);
        let store = LayerStore::open(tmp.path()).unwrap();
        assert!(!store.dir().join("k2.partial").exists());
        assert!(store.is_done("k1"));
        // A second open of the same work dir is refused while the first is held.
        assert!(LayerStore::open(tmp.path()).is_err());
    }
}
