//! `stemcell inspect`: what `bosh inspect-local-stemcell` shows (name, OS, version,
//! infrastructure, hypervisor) plus api version, sha1, formats, cloud properties, the members
//! with their sizes, the image's format and virtual size, and the tarball's digests.
//! [`inspect_data`] is the `--json` document; [`render`] the text.

use super::manifest::ManifestView;
use super::reader::read_stemcell;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Everything `inspect` reports; field names are the `--json` contract (README).
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub file: String,
    pub name: Option<String>,
    pub operating_system: Option<String>,
    pub version: Option<String>,
    pub infrastructure: Option<String>,
    pub hypervisor: Option<String>,
    pub api_version: Option<i64>,
    pub sha1: Option<String>,
    pub stemcell_formats: Vec<String>,
    pub light: bool,
    /// In the manifest's key order.
    pub cloud_properties: serde_yaml::Mapping,
    pub members: Vec<Member>,
    pub image: Option<Image>,
    pub tarball: Digests,
}

#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub name: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Image {
    /// `empty`, `gzip tar`, `bzip2`, `unknown`.
    pub container: String,
    pub size: u64,
    pub sha1: String,
    pub sha1_matches_manifest: bool,
    pub members: Vec<ImageMember>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageMember {
    pub name: String,
    pub size: u64,
    pub format: String,
    pub virtual_size: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Digests {
    pub size: u64,
    pub sha1: String,
    pub sha256: String,
}

/// Reads the stemcell at `path`.
pub fn inspect_data(path: &Path) -> Result<Inspection> {
    let scan = read_stemcell(path, None)?;
    let text = scan.manifest_text.as_deref().with_context(|| {
        format!(
            "{}: no stemcell.MF member (Missing 'stemcell.MF')",
            path.display()
        )
    })?;
    let view = ManifestView::parse(text).with_context(|| format!("{}", path.display()))?;
    // Refused: what no consumer would extract safely. A `./` prefix or an odd member is shown
    // as it is (`verify` warns about it), as `bosh inspect-local-stemcell` shows it.
    let unsafe_name = |n: &str| n.starts_with('/') || n.split('/').any(|c| c == "..");
    if let Some(m) = scan.members.iter().find(|m| unsafe_name(&m.name)) {
        let p = super::reader::name_problem(&m.name).unwrap_or_default();
        bail!("{}: {p}", path.display());
    }
    let image = scan.image.as_ref().map(|img| {
        let mut members: Vec<ImageMember> = img
            .inner
            .iter()
            .map(|i| ImageMember {
                name: i.name.clone(),
                size: i.size,
                format: i.format.clone(),
                virtual_size: i.virtual_size,
            })
            .collect();
        if let Some((f, vs)) = &img.bzip2_disk {
            members.push(ImageMember {
                name: "(bzip2 stream)".into(),
                size: img.size,
                format: f.clone(),
                virtual_size: Some(*vs),
            });
        }
        Image {
            container: img.container.clone(),
            size: img.size,
            sha1: img.sha1.clone(),
            sha1_matches_manifest: Some(&img.sha1) == view.sha1.as_ref(),
            members,
            problems: img.problems.clone(),
        }
    });
    Ok(Inspection {
        file: path.display().to_string(),
        name: view.name.clone(),
        operating_system: view.operating_system.clone(),
        version: view.version.clone(),
        infrastructure: view.cloud_str("infrastructure").map(String::from),
        hypervisor: view.cloud_str("hypervisor").map(String::from),
        api_version: view.api_version,
        sha1: view.sha1.clone(),
        stemcell_formats: view.stemcell_formats.clone(),
        light: view.is_light(),
        cloud_properties: view.cloud_properties.clone(),
        members: scan
            .members
            .iter()
            .map(|m| Member {
                name: m.name.clone(),
                size: m.size,
            })
            .collect(),
        image,
        tarball: Digests {
            size: scan.size,
            sha1: scan.sha1.clone(),
            sha256: scan.sha256.clone(),
        },
    })
}

/// The report text for the stemcell at `path`.
pub fn inspect(path: &Path) -> Result<String> {
    render(&inspect_data(path)?)
}

/// The text form of an [`Inspection`].
pub fn render(i: &Inspection) -> Result<String> {
    let mut o = String::new();
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    writeln!(o, "Name            {}", s(&i.name))?;
    writeln!(o, "OS              {}", s(&i.operating_system))?;
    writeln!(o, "Version         {}", s(&i.version))?;
    writeln!(
        o,
        "Infrastructure  {}",
        i.infrastructure.as_deref().unwrap_or("unknown")
    )?;
    writeln!(
        o,
        "Hypervisor      {}",
        i.hypervisor.as_deref().unwrap_or("-")
    )?;
    writeln!(
        o,
        "API version     {}",
        i.api_version
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".into())
    )?;
    writeln!(o, "Image sha1      {}", s(&i.sha1))?;
    writeln!(o, "Formats         {}", i.stemcell_formats.join(", "))?;
    writeln!(o, "Light           {}", if i.light { "yes" } else { "no" })?;
    writeln!(o, "Cloud properties:")?;
    for line in serde_yaml::to_string(&i.cloud_properties)?.lines() {
        writeln!(o, "  {line}")?;
    }
    writeln!(o, "Members:")?;
    for m in &i.members {
        writeln!(o, "  {:>14}  {}", m.size, m.name)?;
    }
    if let Some(img) = &i.image {
        writeln!(o, "Image:")?;
        writeln!(o, "  container     {}", img.container)?;
        writeln!(
            o,
            "  sha1          {}{}",
            img.sha1,
            if img.sha1_matches_manifest {
                " (matches)"
            } else {
                " (differs from stemcell.MF)"
            }
        )?;
        for m in &img.members {
            let vs = m
                .virtual_size
                .map(|v| format!(", virtual size {v} ({} MiB)", v >> 20))
                .unwrap_or_default();
            if m.name == "(bzip2 stream)" {
                let v = m.virtual_size.unwrap_or(0);
                writeln!(
                    o,
                    "  disk          {}, virtual size {v} ({} MiB)",
                    m.format,
                    v >> 20
                )?;
            } else {
                writeln!(
                    o,
                    "  member        {} ({} bytes): {}{}",
                    m.name, m.size, m.format, vs
                )?;
            }
        }
        for p in &img.problems {
            writeln!(o, "  problem       {p}")?;
        }
    }
    writeln!(o, "Tarball:")?;
    writeln!(o, "  size          {}", i.tarball.size)?;
    writeln!(o, "  sha1          {}", i.tarball.sha1)?;
    writeln!(o, "  sha256        {}", i.tarball.sha256)?;
    writeln!(
        o,
        "  digest        sha1:{};sha256:{}",
        i.tarball.sha1, i.tarball.sha256
    )?;
    Ok(o)
}
