//! Light stemcells (cloudfoundry/bosh-aws-light-stemcell-builder, cloudfoundry/bosh-stemcells-ci
//! `ci/tasks/light-google`, bosh-cli `cmd/repack_stemcell.go`): the heavy tarball's members with an empty
//! `image` and a manifest pointing at an image already in the cloud, written the way each
//! official path writes it:
//! - AWS: `light-stemcell-builder`'s Go struct (name, version, api_version, bosh_protocol "1",
//!   sha1 unchanged, operating_system, stemcell_formats [aws-light], cloud_properties reduced
//!   to infrastructure and ami).
//! - Google: the CI's `bosh int` patch of the heavy manifest (sha1 of the empty file,
//!   [google-light], cloud_properties.image_url added), which re-emits every key sorted.
//! - OpenStack: `bosh repack-stemcell --empty-image --format openstack-light
//!   --cloud-properties '{image_id: …}'` (bosh-cli's struct order, bosh_protocol "1", sha1
//!   unchanged, cloud_properties merged and sorted).

use super::manifest::{to_yaml, ManifestView, EMPTY_SHA1};
use super::naming::light_tarball_name;
use super::reader::read_stemcell;
use super::tarball::{source_date_epoch, write_stemcell_tgz, ImageContent, Member, Written};
use crate::output::AtomicOutput;
use anyhow::{bail, Context, Result};
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// The cloud image a light stemcell points at.
#[derive(Clone, Debug)]
pub enum LightTarget {
    /// REGION → AMI id.
    Aws(Vec<(String, String)>),
    /// `https://www.googleapis.com/compute/v1/projects/<p>/global/images/<image>`.
    Google(String),
    /// Glance image id.
    Openstack(String),
}

impl LightTarget {
    fn infrastructure(&self) -> &'static str {
        match self {
            LightTarget::Aws(_) => "aws",
            LightTarget::Google(_) => "google",
            LightTarget::Openstack(_) => "openstack",
        }
    }
}

/// Parses `REGION=AMI` pairs, refusing empty parts and repeated regions.
pub fn parse_amis(pairs: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for p in pairs {
        let Some((region, ami)) = p.split_once('=') else {
            bail!("--ami {p:?}: expected REGION=AMI-ID");
        };
        if region.is_empty() || ami.is_empty() {
            bail!("--ami {p:?}: expected REGION=AMI-ID");
        }
        if out.iter().any(|(r, _)| r == region) {
            bail!("--ami: region {region} given twice");
        }
        out.push((region.to_string(), ami.to_string()));
    }
    Ok(out)
}

fn sorted(m: &Mapping) -> Mapping {
    let mut entries: Vec<(Value, Value)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    entries.sort_by(|a, b| {
        a.0.as_str()
            .unwrap_or_default()
            .cmp(b.0.as_str().unwrap_or_default())
    });
    entries
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                if let Value::Mapping(m) = v {
                    Value::Mapping(sorted(&m))
                } else {
                    v
                },
            )
        })
        .collect()
}

/// The light manifest for `target`, from the heavy manifest.
pub fn light_manifest(heavy: &ManifestView, target: &LightTarget) -> Result<Value> {
    let name = heavy.name.clone().unwrap_or_default();
    let version = heavy.version.clone().unwrap_or_default();
    let mut m = Mapping::new();
    match target {
        LightTarget::Aws(amis) => {
            // The light builder turns `xen` into `xen-hvm` in the name if needed.
            let name = if name.contains("xen-hvm") {
                name
            } else {
                name.replacen("xen", "xen-hvm", 1)
            };
            m.insert("name".into(), name.into());
            m.insert("version".into(), version.into());
            if let Some(api) = heavy.api_version.filter(|a| *a != 0) {
                m.insert("api_version".into(), api.into());
            }
            m.insert("bosh_protocol".into(), "1".into());
            m.insert("sha1".into(), heavy.sha1.clone().unwrap_or_default().into());
            m.insert(
                "operating_system".into(),
                heavy.operating_system.clone().unwrap_or_default().into(),
            );
            m.insert(
                "stemcell_formats".into(),
                vec![Value::from("aws-light")].into(),
            );
            let mut cp = Mapping::new();
            cp.insert("infrastructure".into(), "aws".into());
            let mut ami = Mapping::new();
            let mut amis = amis.clone();
            amis.sort();
            for (r, id) in amis {
                ami.insert(r.into(), id.into());
            }
            cp.insert("ami".into(), ami.into());
            m.insert("cloud_properties".into(), cp.into());
        }
        LightTarget::Google(url) => {
            m = heavy.raw.clone();
            m.insert("sha1".into(), EMPTY_SHA1.into());
            m.insert(
                "stemcell_formats".into(),
                vec![Value::from("google-light")].into(),
            );
            let mut cp = heavy.cloud_properties.clone();
            cp.insert("image_url".into(), url.clone().into());
            m.insert("cloud_properties".into(), cp.into());
            m = sorted(&m);
        }
        LightTarget::Openstack(id) => {
            m.insert("name".into(), name.into());
            m.insert("version".into(), version.into());
            m.insert(
                "operating_system".into(),
                heavy.operating_system.clone().unwrap_or_default().into(),
            );
            m.insert("sha1".into(), heavy.sha1.clone().unwrap_or_default().into());
            m.insert("bosh_protocol".into(), "1".into());
            m.insert(
                "stemcell_formats".into(),
                vec![Value::from("openstack-light")].into(),
            );
            if let Some(api) = heavy.api_version.filter(|a| *a != 0) {
                m.insert("api_version".into(), api.into());
            }
            let mut cp = heavy.cloud_properties.clone();
            cp.insert("image_id".into(), id.clone().into());
            m.insert("cloud_properties".into(), sorted(&cp).into());
        }
    }
    Ok(Value::Mapping(m))
}

/// Writes the light stemcell of `heavy` into `out_dir`.
pub fn make_light(
    heavy: &Path,
    target: &LightTarget,
    out_dir: &Path,
    force: bool,
) -> Result<Written> {
    let scan = read_stemcell(heavy, None)?;
    if let Some(p) = scan.problems.first() {
        bail!("{}: {p}", heavy.display());
    }
    let text = scan
        .manifest_text
        .as_deref()
        .with_context(|| format!("{}: no stemcell.MF member", heavy.display()))?;
    let view = ManifestView::parse(text).with_context(|| format!("{}", heavy.display()))?;
    if let Some(p) = view.problems.first() {
        bail!("{}: {p}", heavy.display());
    }
    if scan.image.is_none() {
        bail!("{}: no image member", heavy.display());
    }
    if view.is_light() {
        bail!("{}: already a light stemcell", heavy.display());
    }
    let infra = view.cloud_str("infrastructure").unwrap_or("unknown");
    if infra != target.infrastructure() {
        bail!(
            "{}: a {} light stemcell needs a {} heavy stemcell, this one is for {infra}",
            heavy.display(),
            target.infrastructure(),
            target.infrastructure()
        );
    }
    let manifest = light_manifest(&view, target)?;
    let name = manifest
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let file_name = light_tarball_name(&name, view.version.as_deref().unwrap_or_default())?;
    // Made only now: a heavy stemcell refused above leaves no directory behind.
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create the output directory", out_dir.display()))?;
    let mut out = AtomicOutput::create(&out_dir.join(&file_name), force)?;
    // The heavy's other members, on the same side of `image` as in the heavy tarball.
    let image_at = scan
        .members
        .iter()
        .position(|m| m.name == "image")
        .unwrap_or(usize::MAX);
    let side = |name: &str| {
        scan.members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or(0)
            < image_at
    };
    let keep = |before: bool| -> Vec<Member> {
        scan.small
            .iter()
            .filter(|(n, _)| n != "stemcell.MF" && n != "image" && side(n) == before)
            .map(|(n, d)| Member {
                name: n.clone(),
                data: d.clone(),
            })
            .collect()
    };
    let written = write_stemcell_tgz(
        &mut out,
        &to_yaml(&manifest)?,
        &keep(true),
        ImageContent::Empty,
        &keep(false),
        source_date_epoch(),
    )?;
    out.commit()?;
    Ok(written)
}
