//! `directory:` create a directory (and parents) with mode and ownership.

use super::{image_path, mode, ActionContext};
use crate::recipe::stage::DirectoryAction;
use crate::rootfs::chroot::sh_quote;
use anyhow::Result;

pub fn apply(a: &DirectoryAction, ctx: &mut ActionContext) -> Result<()> {
    let q = sh_quote(image_path(&a.path)?);
    let owner = a.owner.as_deref().unwrap_or("root");
    let group = a.group.as_deref().unwrap_or(owner);
    let script = format!(
        "mkdir -p {q}\nchown {}:{} {q}\nchmod {} {q}",
        sh_quote(owner),
        sh_quote(group),
        mode(&a.mode, "0755")?
    );
    ctx.sh(&format!("directory {}", a.path), &script, None)
}
