//! `apt:` install and purge packages (`--no-install-recommends`). Installing an installed
//! package and purging an absent one are no-ops in apt, so the action is idempotent.

use super::ActionContext;
use crate::recipe::stage::AptAction;
use crate::rootfs::chroot::sh_quote;
use anyhow::Result;

const APT: &str = "apt-get -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o Acquire::Retries=2";

pub fn apply(a: &AptAction, ctx: &mut ActionContext) -> Result<()> {
    let mut script = String::new();
    // The bootstrap leaves no package lists; fetch them when a stage first needs them.
    if a.update {
        script.push_str("apt-get -q update\n");
    } else {
        script.push_str("ls /var/lib/apt/lists/ | grep -q '_Packages$' || apt-get -q update\n");
    }
    let render = |ctx: &ActionContext, names: &[String]| -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in names {
            // A variable may expand to several names ("{{ packages.kernel }}").
            out.extend(
                ctx.render("apt package", n)?
                    .split_whitespace()
                    .map(sh_quote),
            );
        }
        Ok(out)
    };
    let install = render(ctx, &a.install)?;
    let purge = render(ctx, &a.purge)?;
    if !install.is_empty() {
        script.push_str(&format!("{APT} install {}\n", install.join(" ")));
    }
    if !purge.is_empty() {
        // --autoremove: the purge also purges what became unused, in the same apt-get run
        // (as `autoremove --purge` would after it).
        script.push_str(&format!("{APT} --autoremove purge {}\n", purge.join(" ")));
    }
    script.push_str("apt-get clean\n");
    let what = format!(
        "apt: install [{}] purge [{}]",
        install.join(" "),
        purge.join(" ")
    );
    ctx.sh(&what, &script, None)
}
