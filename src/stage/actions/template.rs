//! `template:` render a Tera template from `assets/` with the build variables.

use super::{image_path, mode, ActionContext};
use crate::recipe::stage::TemplateAction;
use anyhow::{Context, Result};

pub fn apply(a: &TemplateAction, ctx: &mut ActionContext) -> Result<()> {
    let path = image_path(&a.path)?;
    let src = ctx.plan.assets_dir.join(&a.template);
    let text = std::fs::read_to_string(&src)
        .with_context(|| format!("{}: cannot read template", src.display()))?;
    let content = ctx.render(&src.display().to_string(), &text)?;
    let owner = a.owner.as_deref().unwrap_or("root");
    let group = a.group.as_deref().unwrap_or(owner);
    ctx.write(
        path,
        content.as_bytes(),
        &mode(&a.mode, "0644")?,
        owner,
        group,
        false,
    )
}
