//! Host tool checks: before any work starts, every tool the build runs on the host must be on
//! PATH; the error names the Debian package that provides it.

use anyhow::{bail, Result};
use std::path::Path;

/// Tool → Debian package that provides it.
pub const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("debootstrap", "debootstrap"),
    ("unshare", "util-linux"),
    ("mount", "mount"),
    ("chroot", "coreutils"),
    ("env", "coreutils"),
    ("mknod", "coreutils"),
    ("tar", "tar"),
    ("gpgv", "gpgv"),
    ("apt-get", "apt"),
    ("mke2fs", "e2fsprogs"),
    ("arch-test", "arch-test"),
];

/// The Debian package providing `tool`, if known.
pub fn package_for(tool: &str) -> Option<&'static str> {
    TOOLS.iter().find(|(t, _)| *t == tool).map(|(_, p)| *p)
}

/// Whether `tool` is an executable on PATH (or the standard sbin directories).
pub fn find(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(|p| Path::new(p).to_path_buf()),
        )
        .map(|d| d.join(tool))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Fails on the first missing tool with the package to install.
pub fn require(tools: &[&str]) -> Result<()> {
    for tool in tools {
        if find(tool).is_none() {
            match package_for(tool) {
                Some(pkg) => {
                    bail!("{tool}: not found on this host (install the Debian package '{pkg}')")
                }
                None => bail!("{tool}: not found on this host"),
            }
        }
    }
    Ok(())
}

/// Building a root filesystem needs root (mounts, chroot, device nodes).
pub fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("{what}: must run as root (mounts, chroot and device nodes in private namespaces)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_package() {
        let err = require(&["sh", "definitely-not-a-tool-xyz"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("definitely-not-a-tool-xyz: not found"),
            "{err}"
        );
        assert_eq!(package_for("unshare"), Some("util-linux"));
        assert_eq!(package_for("mmdebstrap"), Some("mmdebstrap"));
    }
}
