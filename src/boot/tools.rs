//! Host tools a boot runs; each missing one is one line naming its Debian package.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// Tool → Debian package.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-system-aarch64", "qemu-system-arm"),
    ("qemu-img", "qemu-utils"),
    ("genisoimage", "genisoimage"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("debugfs", "e2fsprogs"),
    ("sfdisk", "fdisk"),
];

/// Fails on the first missing tool, naming the package to install.
pub fn require(tools: &[&str]) -> Result<()> {
    for tool in tools {
        if find(tool).is_none() {
            let pkg = TOOLS
                .iter()
                .find(|(t, _)| t == tool)
                .map(|(_, p)| *p)
                .unwrap_or(tool);
            bail!("{tool}: not found on this host (install the Debian package '{pkg}')");
        }
    }
    Ok(())
}

/// A tool on PATH, or in the sbin directories a non-login root shell may leave out.
fn find(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(std::path::PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Runs a tool to completion; its stderr (first line) is the error.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().with_context(|| format!("cannot run {name}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        bail!("{name} failed ({}): {line}", out.status);
    }
    Ok(out.stdout)
}
