//! `symlink:` make `path` a symlink to `target` (replacing a file or link already there).

use super::{image_path, ActionContext};
use crate::recipe::stage::SymlinkAction;
use crate::rootfs::chroot::sh_quote;
use anyhow::Result;

pub fn apply(a: &SymlinkAction, ctx: &mut ActionContext) -> Result<()> {
    let q = sh_quote(image_path(&a.path)?);
    let t = sh_quote(&ctx.render(&a.path, &a.target)?);
    let script = format!(
        "mkdir -p \"$(dirname {q})\"\nif [ -d {q} ] && [ ! -L {q} ]; then echo \"{} is a directory\" >&2; exit 1; fi\nln -sfn {t} {q}",
        a.path
    );
    ctx.sh(
        &format!("symlink {} -> {}", a.path, a.target),
        &script,
        None,
    )
}
