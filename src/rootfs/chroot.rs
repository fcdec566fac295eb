//! Chroot sessions. Every command runs in a private mount and PID namespace, so `/proc`, `/sys`,
//! `/dev` and `/dev/pts` mounted for it vanish with the process, even on SIGKILL.
//!
//! (Minimal first version; the full runner replaces the body and keeps this API.)

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A root directory commands can be run in.
pub struct Session {
    root: PathBuf,
}

/// The outcome of a command: exit status (or -signal) and combined output.
pub struct CommandOutput {
    pub status: i32,
    pub output: String,
}

impl Session {
    pub fn open(root: &Path) -> Result<Self> {
        anyhow::ensure!(root.join("bin/sh").exists() || root.join("usr/bin/sh").exists(),
            "{}: not a root filesystem (no /bin/sh)", root.display());
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `script` with `/bin/sh -e` inside the root and captures stdout and stderr together.
    pub fn output(&self, script: &str) -> Result<CommandOutput> {
        let out = Command::new("unshare")
            .args(["--mount", "--pid", "--fork", "--kill-child"])
            .arg(format!("--mount-proc={}/proc", self.root.display()))
            .arg("chroot")
            .arg(&self.root)
            .args(["/bin/sh", "-e", "-c", script])
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .output()
            .with_context(|| format!("{}: cannot run a command in the chroot", self.root.display()))?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        use std::os::unix::process::ExitStatusExt;
        let status = out.status.code().unwrap_or_else(|| -out.status.signal().unwrap_or(0));
        Ok(CommandOutput { status, output })
    }
}
