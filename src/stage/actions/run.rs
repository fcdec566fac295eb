//! `run:` the escape hatch: a script (a template) run with `/bin/sh -e` in the chroot.

use super::ActionContext;
use crate::recipe::stage::RunAction;
use anyhow::Result;

pub fn apply(a: &RunAction, ctx: &mut ActionContext) -> Result<()> {
    let script = ctx.render("run script", &a.script)?;
    let first = script
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    ctx.sh(
        &format!("run: script starting {first:?} failed"),
        &script,
        None,
    )
}
