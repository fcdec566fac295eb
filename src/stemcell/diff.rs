//! `stemcell diff A.tgz B.tgz`: what a release engineer reviews before publishing a new
//! stemcell: the manifests key by key, the packages (added, removed, upgraded, downgraded),
//! the SBOM components, the sizes of the tarballs and disks, and optionally (`--files`) the
//! root filesystem's file list (path, mode, owner, size, digest).

use super::filelist::{list_stemcell_files, scratch, FileInfo};
use super::reader::{read_stemcell, Scan};
use super::sbom::parse_dpkg_list;
use anyhow::{Context, Result};
use serde::Serialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One manifest key whose value differs (`null` when absent on that side).
#[derive(Clone, Debug, Serialize)]
pub struct ValueChange {
    pub key: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Versioned {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct VersionChange {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// Packages (from `packages.txt`) or SBOM components.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SetDiff {
    pub added: Vec<Versioned>,
    pub removed: Vec<Versioned>,
    pub upgraded: Vec<VersionChange>,
    pub downgraded: Vec<VersionChange>,
}

/// Sizes of one side.
#[derive(Clone, Debug, Serialize)]
pub struct Sizes {
    pub tarball: u64,
    pub image: u64,
    /// Disks inside the image: name, stored size, format, virtual size.
    pub disks: Vec<DiskSize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiskSize {
    pub name: String,
    pub size: u64,
    pub format: String,
    pub virtual_size: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileChange {
    pub path: String,
    pub a: FileInfo,
    pub b: FileInfo,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FilesDiff {
    /// How many files each root filesystem holds.
    pub count_a: usize,
    pub count_b: usize,
    pub added: Vec<FileInfo>,
    pub removed: Vec<FileInfo>,
    pub changed: Vec<FileChange>,
}

/// The whole comparison; field names are the `--json` contract (README).
#[derive(Clone, Debug, Serialize)]
pub struct StemcellDiff {
    pub a: String,
    pub b: String,
    pub manifest: Vec<ValueChange>,
    pub packages: SetDiff,
    pub sbom: SetDiff,
    pub sizes: BTreeMap<String, Sizes>,
    /// Present with `--files`.
    pub files: Option<FilesDiff>,
}

/// Compares two stemcell tarballs.
pub fn diff(a: &Path, b: &Path, files: bool) -> Result<StemcellDiff> {
    let sa = read_stemcell(a, None)?;
    let sb = read_stemcell(b, None)?;
    let ma = manifest_values(&sa, a)?;
    let mb = manifest_values(&sb, b)?;
    let mut manifest = Vec::new();
    for key in ma.keys().chain(mb.keys().filter(|k| !ma.contains_key(*k))) {
        let (va, vb) = (ma.get(key).cloned(), mb.get(key).cloned());
        if va != vb {
            manifest.push(ValueChange {
                key: key.clone(),
                a: va,
                b: vb,
            });
        }
    }
    let packages = set_diff(&packages(&sa), &packages(&sb));
    let sbom = set_diff(&sbom_components(&sa), &sbom_components(&sb));
    let mut sizes = BTreeMap::new();
    sizes.insert("a".to_string(), sizes_of(&sa));
    sizes.insert("b".to_string(), sizes_of(&sb));
    let files = if files {
        let tmp = scratch()?;
        let (ta, tb) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&ta)?;
        std::fs::create_dir(&tb)?;
        let fa = list_stemcell_files(a, &ta)?;
        // One disk at a time on the scratch disk.
        std::fs::remove_dir_all(&ta)?;
        let fb = list_stemcell_files(b, &tb)?;
        Some(files_diff(&fa, &fb))
    } else {
        None
    };
    Ok(StemcellDiff {
        a: a.display().to_string(),
        b: b.display().to_string(),
        manifest,
        packages,
        sbom,
        sizes,
        files,
    })
}

/// `stemcell.MF` flattened to dotted keys (`cloud_properties.version`) and YAML scalar text.
fn manifest_values(scan: &Scan, path: &Path) -> Result<BTreeMap<String, String>> {
    let text = scan
        .manifest_text
        .as_deref()
        .with_context(|| format!("{}: no stemcell.MF member", path.display()))?;
    let v: Value = serde_yaml::from_str(text)
        .with_context(|| format!("{}: stemcell.MF: invalid YAML", path.display()))?;
    let mut out = BTreeMap::new();
    flatten("", &v, &mut out);
    Ok(out)
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        // Lists and scalars as their YAML text: quoting shows a type change (`'1.606'` vs `1.606`).
        other => {
            let text = serde_yaml::to_string(other).unwrap_or_default();
            let text = text.trim().replace('\n', " ");
            out.insert(prefix.to_string(), text);
        }
    }
}

fn small<'a>(scan: &'a Scan, name: &str) -> Option<&'a [u8]> {
    scan.small
        .iter()
        .find(|(n, _)| n.strip_prefix("./").unwrap_or(n) == name)
        .map(|(_, d)| d.as_slice())
}

fn packages(scan: &Scan) -> BTreeMap<String, String> {
    let text = small(scan, "packages.txt")
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    parse_dpkg_list(&text)
        .into_iter()
        .map(|p| (p.name, p.version))
        .collect()
}

/// The SPDX packages (name, versionInfo), else the CycloneDX components (name, version).
fn sbom_components(scan: &Scan) -> BTreeMap<String, String> {
    let parse =
        |n: &str| small(scan, n).and_then(|d| serde_json::from_slice::<serde_json::Value>(d).ok());
    let pick = |doc: Option<serde_json::Value>,
                list: &str,
                ver: &str|
     -> Option<BTreeMap<String, String>> {
        let doc = doc?;
        let items = doc[list].as_array()?;
        Some(
            items
                .iter()
                .filter_map(|c| {
                    Some((
                        c["name"].as_str()?.to_string(),
                        c[ver].as_str().unwrap_or("").to_string(),
                    ))
                })
                .collect(),
        )
    };
    pick(parse("sbom.spdx.json"), "packages", "versionInfo")
        .or_else(|| pick(parse("sbom.cdx.json"), "components", "version"))
        .unwrap_or_default()
}

fn set_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> SetDiff {
    let mut d = SetDiff::default();
    for (name, va) in a {
        match b.get(name) {
            None => d.removed.push(Versioned {
                name: name.clone(),
                version: va.clone(),
            }),
            Some(vb) if vb != va => {
                let c = VersionChange {
                    name: name.clone(),
                    from: va.clone(),
                    to: vb.clone(),
                };
                if version_newer(vb, va) {
                    d.upgraded.push(c);
                } else {
                    d.downgraded.push(c);
                }
            }
            _ => {}
        }
    }
    for (name, vb) in b {
        if !a.contains_key(name) {
            d.added.push(Versioned {
                name: name.clone(),
                version: vb.clone(),
            });
        }
    }
    d
}

/// Debian version order, by dpkg itself (`dpkg --compare-versions`); plain text order if dpkg
/// cannot run.
fn version_newer(new: &str, old: &str) -> bool {
    match duct::cmd!("dpkg", "--compare-versions", new, "gt", old)
        .stderr_null()
        .unchecked()
        .run()
    {
        Ok(o) => o.status.success(),
        Err(_) => new > old,
    }
}

fn sizes_of(scan: &Scan) -> Sizes {
    let img = scan.image.as_ref();
    let mut disks: Vec<DiskSize> = img
        .map(|i| {
            i.inner
                .iter()
                .map(|m| DiskSize {
                    name: m.name.clone(),
                    size: m.size,
                    format: m.format.clone(),
                    virtual_size: m.virtual_size,
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some((format, vs)) = img.and_then(|i| i.bzip2_disk.clone()) {
        disks.push(DiskSize {
            name: "(bzip2 stream)".into(),
            size: img.map(|i| i.size).unwrap_or(0),
            format,
            virtual_size: Some(vs),
        });
    }
    Sizes {
        tarball: scan.size,
        image: img.map(|i| i.size).unwrap_or(0),
        disks,
    }
}

fn files_diff(a: &BTreeMap<String, FileInfo>, b: &BTreeMap<String, FileInfo>) -> FilesDiff {
    let mut d = FilesDiff {
        count_a: a.len(),
        count_b: b.len(),
        ..Default::default()
    };
    for (p, fa) in a {
        match b.get(p) {
            None => d.removed.push(fa.clone()),
            Some(fb) if fb != fa => d.changed.push(FileChange {
                path: p.clone(),
                a: fa.clone(),
                b: fb.clone(),
            }),
            _ => {}
        }
    }
    d.added = b
        .iter()
        .filter(|(p, _)| !a.contains_key(*p))
        .map(|(_, f)| f.clone())
        .collect();
    d
}

/// The human report.
pub fn render(d: &StemcellDiff) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "--- {}\n+++ {}", d.a, d.b);
    let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
    let _ = writeln!(o, "Manifest: {} key(s) differ", d.manifest.len());
    for c in &d.manifest {
        let _ = writeln!(o, "  {}: {} -> {}", c.key, none(&c.a), none(&c.b));
    }
    for (title, s) in [("Packages", &d.packages), ("SBOM components", &d.sbom)] {
        let _ = writeln!(
            o,
            "{title}: {} added, {} removed, {} upgraded, {} downgraded",
            s.added.len(),
            s.removed.len(),
            s.upgraded.len(),
            s.downgraded.len()
        );
        for p in &s.added {
            let _ = writeln!(o, "  + {} {}", p.name, p.version);
        }
        for p in &s.removed {
            let _ = writeln!(o, "  - {} {}", p.name, p.version);
        }
        for c in &s.upgraded {
            let _ = writeln!(o, "  ^ {} {} -> {}", c.name, c.from, c.to);
        }
        for c in &s.downgraded {
            let _ = writeln!(o, "  v {} {} -> {}", c.name, c.from, c.to);
        }
    }
    let (a, b) = (&d.sizes["a"], &d.sizes["b"]);
    let _ = writeln!(o, "Sizes (bytes):");
    let row = |o: &mut String, what: &str, x: u64, y: u64| {
        let pct = if x > 0 {
            format!(" ({:+.1} %)", (y as f64 - x as f64) * 100.0 / x as f64)
        } else {
            String::new()
        };
        let _ = writeln!(o, "  {what:<28} {x:>14} -> {y:>14}{pct}");
    };
    row(&mut o, "tarball", a.tarball, b.tarball);
    row(&mut o, "image", a.image, b.image);
    for da in &a.disks {
        if let Some(db) = b.disks.iter().find(|x| x.name == da.name) {
            row(&mut o, &da.name, da.size, db.size);
            if let (Some(x), Some(y)) = (da.virtual_size, db.virtual_size) {
                row(&mut o, &format!("{} (virtual)", da.name), x, y);
            }
        }
    }
    if let Some(f) = &d.files {
        let _ = writeln!(
            o,
            "Files ({} -> {}): {} added, {} removed, {} changed",
            f.count_a,
            f.count_b,
            f.added.len(),
            f.removed.len(),
            f.changed.len()
        );
        let show = |f: &FileInfo| format!("{} {} {}:{} {}", f.kind, f.mode, f.uid, f.gid, f.size);
        for x in &f.added {
            let _ = writeln!(o, "  + {} ({})", x.path, show(x));
        }
        for x in &f.removed {
            let _ = writeln!(o, "  - {} ({})", x.path, show(x));
        }
        for c in &f.changed {
            let mut what = Vec::new();
            if c.a.kind != c.b.kind {
                what.push(format!("kind {} -> {}", c.a.kind, c.b.kind));
            }
            if c.a.mode != c.b.mode {
                what.push(format!("mode {} -> {}", c.a.mode, c.b.mode));
            }
            if (c.a.uid, c.a.gid) != (c.b.uid, c.b.gid) {
                what.push(format!(
                    "owner {}:{} -> {}:{}",
                    c.a.uid, c.a.gid, c.b.uid, c.b.gid
                ));
            }
            if c.a.size != c.b.size {
                what.push(format!("size {} -> {}", c.a.size, c.b.size));
            }
            if c.a.digest != c.b.digest {
                what.push(if c.a.kind == "symlink" {
                    format!("target {} -> {}", c.a.digest, c.b.digest)
                } else {
                    "content".into()
                });
            }
            let _ = writeln!(o, "  ~ {}: {}", c.path, what.join(", "));
        }
    }
    o
}
