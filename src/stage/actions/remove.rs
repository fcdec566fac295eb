//! `remove:` delete files or trees; absent paths are fine. Shell globs (`*`, `?`, `[...]`) are
//! expanded in the image, e.g. `/etc/ssh/ssh_host_*`.

use super::{image_path, ActionContext};
use crate::recipe::stage::RemoveAction;
use crate::rootfs::chroot::sh_quote;
use anyhow::{bail, Result};

pub fn apply(a: &RemoveAction, ctx: &mut ActionContext) -> Result<()> {
    let mut script = String::new();
    for p in &a.paths {
        let p = image_path(p)?;
        if p == "/" {
            bail!("remove: refusing to remove /");
        }
        if p.contains(['*', '?', '[']) {
            if !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-*?[]!+@:".contains(&b))
            {
                bail!("remove: {p:?}: a glob may only hold letters, digits and /._-*?[]!+@:");
            }
            script.push_str(&format!("for p in {p}; do rm -rf -- \"$p\"; done\n"));
        } else {
            script.push_str(&format!("rm -rf -- {}\n", sh_quote(p)));
        }
    }
    ctx.sh(&format!("remove {}", a.paths.join(" ")), &script, None)
}
