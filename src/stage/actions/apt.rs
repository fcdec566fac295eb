//! `apt:` install and purge packages (`--no-install-recommends`). Installing an installed
//! package and purging an absent one are no-ops in apt, so the action is idempotent.
//!
//! An install never upgrades a package already there (`--no-upgrade`): upgrades are base-apt's
//! dist-upgrade. So when every package is already installed and marked manual, apt-get would
//! change nothing, and it is not run: each run first rebuilds apt's cache from the package lists
//! (0.8 s here), and several stages name packages the base list already installed.

use super::ActionContext;
use crate::recipe::stage::AptAction;
use crate::rootfs::chroot::sh_quote;
use anyhow::Result;

const APT: &str = "apt-get -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o Acquire::Retries=2";

/// `installed_manually NAME...`: true when dpkg has each package installed (one architecture)
/// and apt does not list it as automatically installed (`apt-get install` would mark it
/// manual). Any name it cannot judge (an architecture or version qualifier, a virtual package)
/// makes it false, so apt-get runs.
const INSTALLED_MANUALLY: &str = r#"installed_manually() {
  for p in "$@"; do
    case $p in *[:=/]*) return 1 ;; esac
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || return 1
  done
  [ ! -f /var/lib/apt/extended_states ] || ! awk -v want=" $* " '/^Package:/ {p = $2} /^Auto-Installed: 1/ && index(want, " " p " ") {auto = 1} END {exit !auto}' /var/lib/apt/extended_states
}
"#;

/// Package lists, fetched when a stage needs them and none are there (a bootstrap cached by an
/// older builder, which removed mmdebstrap's).
const LISTS: &str = "ls /var/lib/apt/lists/ | grep -q '_Packages$' || apt-get -q update\n";

pub fn apply(a: &AptAction, ctx: &mut ActionContext) -> Result<()> {
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
    let what = format!(
        "apt: install [{}] purge [{}]",
        install.join(" "),
        purge.join(" ")
    );
    // The first line is what the stage log shows.
    let mut script = format!("# {what}\n");
    if a.update {
        script.push_str("apt-get -q update\n");
    }
    if !install.is_empty() {
        let names = install.join(" ");
        script.push_str(INSTALLED_MANUALLY);
        script.push_str(&format!(
            "if installed_manually {names}; then\n  echo apt: already installed: {names}\nelse\n"
        ));
        if !a.update {
            script.push_str(&format!("  {LISTS}"));
        }
        script.push_str(&format!(
            "  {APT} --no-upgrade install {names}\n  apt-get clean\nfi\n"
        ));
    }
    if !purge.is_empty() {
        if !a.update {
            script.push_str(LISTS);
        }
        // --autoremove: the purge also purges what became unused, in the same apt-get run
        // (as `autoremove --purge` would after it).
        script.push_str(&format!("{APT} --autoremove purge {}\n", purge.join(" ")));
        script.push_str("apt-get clean\n");
    }
    ctx.sh(&what, &script, None)
}
