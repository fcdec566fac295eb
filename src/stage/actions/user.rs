//! `user:` create a user, or bring an existing one to the stated groups, shell, home and
//! password (useradd/usermod in the chroot).

use super::ActionContext;
use crate::recipe::stage::UserAction;
use crate::rootfs::chroot::sh_quote;
use anyhow::Result;

pub fn apply(a: &UserAction, ctx: &mut ActionContext) -> Result<()> {
    let n = sh_quote(&a.name);
    let mut common = String::new();
    if !a.groups.is_empty() {
        common.push_str(&format!(" -G {}", sh_quote(&a.groups.join(","))));
    }
    if let Some(s) = &a.shell {
        common.push_str(&format!(" -s {}", sh_quote(s)));
    }
    if let Some(p) = &a.password {
        let hash = ctx.render(&format!("user {} password", a.name), p)?;
        common.push_str(&format!(" -p {}", sh_quote(&hash)));
    }
    let mut add = String::from("useradd");
    if let Some(uid) = a.uid {
        add.push_str(&format!(" -u {uid}"));
    }
    if let Some(h) = &a.home {
        add.push_str(&format!(" -d {}", sh_quote(h)));
    }
    add.push_str(if a.system { " -r" } else { " -m" });
    let group_opt = match &a.group {
        Some(g) => format!(" -g {}", sh_quote(g)),
        None => String::new(),
    };
    // Without a primary group the user gets its own; reuse one of the same name if it exists.
    let add_group = match &a.group {
        Some(_) => group_opt.clone(),
        None => format!(" $(getent group {n} >/dev/null && echo -g {n} || echo -U)"),
    };
    let mut modify = String::from("usermod");
    modify.push_str(&group_opt);
    if let Some(h) = &a.home {
        modify.push_str(&format!(" -d {}", sh_quote(h)));
    }
    let script = format!(
        "if getent passwd {n} >/dev/null; then\n  {modify}{common} {n}\nelse\n  {add}{add_group}{common} {n}\nfi"
    );
    ctx.sh(&format!("user {}", a.name), &script, None)
}
