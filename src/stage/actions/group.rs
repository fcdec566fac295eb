//! `group:` create a group unless it exists.

use super::ActionContext;
use crate::recipe::stage::GroupAction;
use crate::rootfs::chroot::sh_quote;
use anyhow::Result;

pub fn apply(a: &GroupAction, ctx: &mut ActionContext) -> Result<()> {
    let n = sh_quote(&a.name);
    let mut add = String::from("groupadd");
    if let Some(gid) = a.gid {
        add.push_str(&format!(" -g {gid}"));
    }
    if a.system {
        add.push_str(" -r");
    }
    let script = format!("getent group {n} >/dev/null || {add} {n}");
    ctx.sh(&format!("group {}", a.name), &script, None)
}
