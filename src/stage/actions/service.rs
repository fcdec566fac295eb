//! `service:` enable, disable or mask systemd units. `systemctl` works offline in a chroot (it
//! only edits symlinks). Disabling a unit that is not installed is a no-op.

use super::ActionContext;
use crate::recipe::stage::ServiceAction;
use crate::rootfs::chroot::sh_quote;
use anyhow::Result;

pub fn apply(a: &ServiceAction, ctx: &mut ActionContext) -> Result<()> {
    let mut script = String::new();
    for u in &a.enable {
        script.push_str(&format!("systemctl enable {}\n", sh_quote(u)));
    }
    for u in &a.disable {
        let q = sh_quote(u);
        script.push_str(&format!(
            "if [ -n \"$(systemctl list-unit-files --no-legend {q} 2>/dev/null)\" ]; then systemctl disable {q}; fi\n"
        ));
    }
    for u in &a.mask {
        script.push_str(&format!("systemctl mask {}\n", sh_quote(u)));
    }
    let what = format!(
        "service: enable [{}] disable [{}] mask [{}]",
        a.enable.join(" "),
        a.disable.join(" "),
        a.mask.join(" ")
    );
    ctx.sh(&what, &script, None)
}
