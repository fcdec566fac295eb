//! `file:` write inline `content` (a template) or copy `source` from `assets/` verbatim.

use super::{image_path, mode, ActionContext};
use crate::recipe::stage::FileAction;
use anyhow::{bail, Context, Result};

pub fn apply(a: &FileAction, ctx: &mut ActionContext) -> Result<()> {
    let path = image_path(&a.path)?;
    let content = match (&a.content, &a.source) {
        (Some(c), None) => ctx.render(path, c)?.into_bytes(),
        (None, Some(s)) => {
            let src = ctx.plan.assets_dir.join(s);
            std::fs::read(&src).with_context(|| format!("{}: cannot read asset", src.display()))?
        }
        _ => bail!("file {path}: give exactly one of content or source"),
    };
    if a.append {
        // Idempotent append: only when the file does not already end with this content.
        if let Some(existing) = ctx.read(path)? {
            if existing.ends_with(&content) {
                return Ok(());
            }
        }
    }
    let owner = a.owner.as_deref().unwrap_or("root");
    let group = a.group.as_deref().unwrap_or(owner);
    ctx.write(
        path,
        &content,
        &mode(&a.mode, "0644")?,
        owner,
        group,
        a.append,
    )
}
