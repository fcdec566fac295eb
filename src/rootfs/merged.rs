//! The finished layer stack as one writable directory, without copying it: an overlay of the
//! cached layers under a scratch upper directory, mounted in this process's own private mount
//! namespace. The disk assembly writes its boot files into the scratch layer and `mke2fs -d`
//! reads the merged view; the cached layers are never touched.
//!
//! Why a private namespace: the mount is invisible to the host and to every other process, and
//! the kernel drops it when this process (and its children) exit, even on SIGKILL, so nothing
//! can be left mounted. [`enter_private_mount_namespace`] must run before the process starts a
//! thread: threads created afterwards share the new namespace, earlier ones would not.

use super::chroot::OverlaySpec;
use super::export::UNDO_BUILD_ONLY;
use super::layers::{remove_tree, LayerStore};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Moves this process into a new mount namespace in which every mount is private.
pub fn enter_private_mount_namespace() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("cannot create a private mount namespace (run as root)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("cannot make the mount namespace private")?;
    Ok(())
}

/// A merged, writable view of a layer stack at [`MergedRoot::path`]; unmounted and its scratch
/// layer removed on drop.
pub struct MergedRoot {
    scratch: PathBuf,
    root: PathBuf,
}

impl MergedRoot {
    /// Mounts `lower` (layer names, topmost first) of `store` under a fresh scratch layer
    /// `<work>/finish/<pid>.<name>/` and undoes the build-only pieces there, as the OS image
    /// export does ([`UNDO_BUILD_ONLY`]).
    pub fn mount(store: &LayerStore, lower: &[String], name: &str) -> Result<Self> {
        let finish = store.work_dir().join("finish");
        remove_stale(&finish);
        let scratch = finish.join(format!("{}.{name}", std::process::id()));
        remove_tree(&scratch)?;
        let merged = Self {
            root: scratch.join("root"),
            scratch,
        };
        for d in ["upper", "work", "root"] {
            let p = merged.scratch.join(d);
            std::fs::create_dir_all(&p)
                .with_context(|| format!("{}: cannot create", p.display()))?;
        }
        // Layer names relative to the layer directory keep the options under the one-page limit.
        let overlay = OverlaySpec {
            layers_dir: store.dir().to_path_buf(),
            lower: lower.to_vec(),
            upper: Some(merged.scratch.join("upper").to_string_lossy().into_owned()),
            work: Some(merged.scratch.join("work").to_string_lossy().into_owned()),
            mountpoint: merged.root.clone(),
        };
        // metacopy=on: the disk assembly clamps the mtime of every file newer than
        // SOURCE_DATE_EPOCH, and without it overlayfs copies each such file's data up into the
        // scratch layer to change its metadata. A kernel without metacopy support refuses the
        // option: mount without it then.
        let options = overlay.mount_options();
        let mount = |options: &str| {
            let mut mount = std::process::Command::new("mount");
            mount
                .current_dir(&overlay.layers_dir)
                .args(["-t", "overlay", "overlay", "-o", options])
                .arg(&overlay.mountpoint);
            run(mount, &merged.root, "cannot mount the layer stack")
        };
        if mount(&format!("{options},metacopy=on")).is_err() {
            mount(&options)?;
        }
        let mut undo = std::process::Command::new("/bin/sh");
        undo.args(["-e", "-c", UNDO_BUILD_ONLY])
            .env("ROOT", &merged.root);
        run(undo, &merged.root, "cannot undo the build-only changes")?;
        Ok(merged)
    }

    /// The merged root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A path beside the root in the scratch directory, removed with it (for intermediates
    /// such as the raw disk).
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }
}

impl Drop for MergedRoot {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
        let _ = remove_tree(&self.scratch);
    }
}

/// Runs `cmd`; a failure becomes one line naming `path`, `what` failed and the command's stderr.
fn run(mut cmd: std::process::Command, path: &Path, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{}: {what}: cannot start {cmd:?}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{}: {what}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes scratch layers of earlier builds whose process is gone (killed before its drop ran).
fn remove_stale(finish: &Path) {
    let Ok(entries) = std::fs::read_dir(finish) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('.').next().and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = remove_tree(&e.path());
        }
    }
}
