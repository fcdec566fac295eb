//! `stemcell inspect`: what `bosh inspect-local-stemcell` shows (name, OS, version,
//! infrastructure, hypervisor) plus api version, sha1, formats, cloud properties, the members
//! with their sizes, the image's format and virtual size, and the tarball's digests.

use super::manifest::ManifestView;
use super::reader::read_stemcell;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// The report text for the stemcell at `path`.
pub fn inspect(path: &Path) -> Result<String> {
    let scan = read_stemcell(path, None)?;
    let text = scan.manifest_text.as_deref().with_context(|| {
        format!(
            "{}: no stemcell.MF member (Missing 'stemcell.MF')",
            path.display()
        )
    })?;
    let view = ManifestView::parse(text).with_context(|| format!("{}", path.display()))?;
    if let Some(p) = scan.problems.first() {
        bail!("{}: {p}", path.display());
    }
    let mut o = String::new();
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    writeln!(o, "Name            {}", s(&view.name))?;
    writeln!(o, "OS              {}", s(&view.operating_system))?;
    writeln!(o, "Version         {}", s(&view.version))?;
    writeln!(
        o,
        "Infrastructure  {}",
        view.cloud_str("infrastructure").unwrap_or("unknown")
    )?;
    writeln!(
        o,
        "Hypervisor      {}",
        view.cloud_str("hypervisor").unwrap_or("-")
    )?;
    writeln!(
        o,
        "API version     {}",
        view.api_version
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".into())
    )?;
    writeln!(o, "Image sha1      {}", s(&view.sha1))?;
    writeln!(o, "Formats         {}", view.stemcell_formats.join(", "))?;
    writeln!(
        o,
        "Light           {}",
        if view.is_light() { "yes" } else { "no" }
    )?;
    writeln!(o, "Cloud properties:")?;
    for line in serde_yaml::to_string(&view.cloud_properties)?.lines() {
        writeln!(o, "  {line}")?;
    }
    writeln!(o, "Members:")?;
    for m in &scan.members {
        writeln!(o, "  {:>14}  {}", m.size, m.name)?;
    }
    if let Some(img) = &scan.image {
        writeln!(o, "Image:")?;
        writeln!(o, "  container     {}", img.container)?;
        writeln!(
            o,
            "  sha1          {}{}",
            img.sha1,
            if Some(&img.sha1) == view.sha1.as_ref() {
                " (matches)"
            } else {
                " (differs from stemcell.MF)"
            }
        )?;
        for i in &img.inner {
            let vs = i
                .virtual_size
                .map(|v| format!(", virtual size {v} ({} MiB)", v >> 20))
                .unwrap_or_default();
            writeln!(
                o,
                "  member        {} ({} bytes): {}{}",
                i.name, i.size, i.format, vs
            )?;
        }
        if let Some((f, vs)) = &img.bzip2_disk {
            writeln!(
                o,
                "  disk          {f}, virtual size {vs} ({} MiB)",
                vs >> 20
            )?;
        }
        for p in &img.problems {
            writeln!(o, "  problem       {p}")?;
        }
    }
    writeln!(o, "Tarball:")?;
    writeln!(o, "  size          {}", scan.size)?;
    writeln!(o, "  sha1          {}", scan.sha1)?;
    writeln!(o, "  sha256        {}", scan.sha256)?;
    writeln!(
        o,
        "  digest        sha1:{};sha256:{}",
        scan.sha1, scan.sha256
    )?;
    Ok(o)
}
