//! What a work directory holds, and pruning it: `stemcell cache list` and `stemcell cache prune`.
//!
//! Each layer under `layers/` may carry a record, `<key>.json` (OS, phase, stage,
//! infrastructure, parent), written by the runner when it commits the layer; the `.done`
//! marker's mtime is the layer's last use (the runner touches it on every cache hit).
//!
//! Safety: pruning holds the work-dir lock ([`LayerStore::open`]), so no stage runs meanwhile,
//! and refuses while a build still has a merged root mounted (its `finish/<pid>.*` scratch
//! directory belongs to a live process): those mounts read layers without the lock. A layer is
//! removed marker first, then renamed to `<key>.partial` and deleted: an interruption leaves
//! at most a `.partial` that the next open of the store removes, never a `.done` over half a tree.

use super::layers::{remove_tree, LayerStore};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What built a layer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    pub os: String,
    /// `bootstrap`, `os-image`, `stemcell` or `import`.
    pub phase: String,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<String>,
    /// The layer below (none for a bootstrap or an import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

fn record_path(store: &LayerStore, key: &str) -> PathBuf {
    store.dir().join(format!("{key}.json"))
}

/// Writes the record of a committed layer (best effort: a missing record only makes
/// `cache list` say `unknown`).
pub fn record(store: &LayerStore, key: &str, rec: &LayerRecord) {
    if let Ok(text) = serde_json::to_vec_pretty(rec) {
        let _ = std::fs::write(record_path(store, key), text);
    }
}

/// Marks a cached layer as used now (its `.done` mtime).
pub fn touch(store: &LayerStore, key: &str) {
    if let Ok(f) = std::fs::File::options()
        .append(true)
        .open(store.done_marker(key))
    {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// One layer in the listing.
#[derive(Clone, Debug, Serialize)]
pub struct LayerEntry {
    pub key: String,
    /// False for a directory without its `.done` marker (an interrupted build or prune).
    pub complete: bool,
    pub record: Option<LayerRecord>,
    pub bytes: u64,
    /// Seconds since the last use (the `.done` mtime, else the directory's).
    pub age_seconds: u64,
}

/// Another item of the work directory (OS image export, kept disk, input, logs).
#[derive(Clone, Debug, Serialize)]
pub struct FileEntry {
    /// `export`, `disk`, `inputs`, `logs`, `other`.
    pub kind: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub age_seconds: u64,
}

/// The whole work directory.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    pub work_dir: PathBuf,
    pub layers: Vec<LayerEntry>,
    pub files: Vec<FileEntry>,
    pub total_bytes: u64,
}

/// Lists `work_dir` without taking the lock (read only).
pub fn list(work_dir: &Path) -> Result<Listing> {
    if !work_dir.is_dir() {
        bail!("{}: no such work directory", work_dir.display());
    }
    let layers_dir = work_dir.join("layers");
    let mut layers = Vec::new();
    if layers_dir.is_dir() {
        for e in read_dir(&layers_dir)? {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type()?.is_dir() || name.contains('.') {
                continue; // markers, records, .partial/.ovlwork of a running build
            }
            let done = layers_dir.join(format!("{name}.done"));
            let record = std::fs::read(layers_dir.join(format!("{name}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let age_from = if done.exists() {
                done.clone()
            } else {
                e.path()
            };
            layers.push(LayerEntry {
                complete: done.exists(),
                record,
                bytes: disk_usage(&e.path())?,
                age_seconds: age(&age_from),
                key: name,
            });
        }
    }
    order_layers(&mut layers);
    let mut files = Vec::new();
    for (dir, kind) in [("exports", "export"), ("disks", "disk")] {
        let d = work_dir.join(dir);
        if d.is_dir() {
            for e in read_dir(&d)? {
                files.push(FileEntry {
                    kind: kind.into(),
                    path: e.path(),
                    bytes: disk_usage(&e.path())?,
                    age_seconds: age(&e.path()),
                });
            }
        }
    }
    for (dir, kind) in [
        ("inputs", "inputs"),
        ("logs", "logs"),
        ("run-inputs", "inputs"),
        ("finish", "other"),
    ] {
        let d = work_dir.join(dir);
        if d.exists() {
            files.push(FileEntry {
                kind: kind.into(),
                bytes: disk_usage(&d)?,
                age_seconds: age(&d),
                path: d,
            });
        }
    }
    files.sort_by(|a, b| (&a.kind, &a.path).cmp(&(&b.kind, &b.path)));
    let total_bytes =
        layers.iter().map(|l| l.bytes).sum::<u64>() + files.iter().map(|f| f.bytes).sum::<u64>();
    Ok(Listing {
        work_dir: work_dir.to_path_buf(),
        layers,
        files,
        total_bytes,
    })
}

/// Orders layers by OS, then chain by chain (a bootstrap or an import and what was built on
/// it), parent before child; unknown ones last.
fn order_layers(layers: &mut [LayerEntry]) {
    let parents: BTreeMap<String, Option<String>> = layers
        .iter()
        .map(|l| {
            (
                l.key.clone(),
                l.record.as_ref().and_then(|r| r.parent.clone()),
            )
        })
        .collect();
    // (chain root, depth) of each layer.
    let place = |key: &str| {
        let (mut depth, mut k) = (0usize, key.to_string());
        while let Some(Some(p)) = parents.get(&k) {
            depth += 1;
            k = p.clone();
            if depth > 10_000 {
                break;
            }
        }
        (k, depth)
    };
    layers.sort_by_cached_key(|l| {
        let os = l
            .record
            .as_ref()
            .map(|r| r.os.clone())
            .unwrap_or_else(|| "~unknown".into());
        let infra = l
            .record
            .as_ref()
            .and_then(|r| r.infrastructure.clone())
            .unwrap_or_default();
        let (root, depth) = place(&l.key);
        (os, root, depth, infra, l.age_seconds)
    });
}

/// What to prune. A layer goes when it matches every criterion given.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Keep the N most recently used layers of each (OS, phase, stage, infrastructure).
    pub keep_latest: Option<usize>,
    /// Only layers (and exports, kept disks) unused for more than this.
    pub older_than: Option<Duration>,
    pub dry_run: bool,
}

/// What was (or, with `dry_run`, would be) removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pruned {
    pub layers: Vec<String>,
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

/// Removes what `options` selects. Refuses (and removes nothing) while a build uses the work
/// directory.
pub fn prune(work_dir: &Path, options: &PruneOptions) -> Result<Pruned> {
    if options.keep_latest.is_none() && options.older_than.is_none() {
        bail!("cache prune: give --keep-latest N, --older-than DAYS, or both");
    }
    if !work_dir.join("layers").is_dir() {
        bail!(
            "{}: not a stemcell work directory (no layers/)",
            work_dir.display()
        );
    }
    // Lock first: no stage can start while we look and remove.
    let store = LayerStore::open(work_dir)
        .with_context(|| format!("{}: nothing removed", work_dir.display()))?;
    if let Some(pid) = live_finisher(&work_dir.join("finish")) {
        bail!(
            "{}: build process {pid} is still packing stemcells from mounted layers; nothing removed",
            work_dir.display()
        );
    }
    let listing = list(work_dir)?;
    let old = |age: u64| options.older_than.is_none_or(|d| age > d.as_secs());
    let mut doomed: Vec<&LayerEntry> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&LayerEntry>> = BTreeMap::new();
    for l in &listing.layers {
        if !l.complete {
            doomed.push(l); // never usable: a tree without its marker
            continue;
        }
        let group = match &l.record {
            Some(r) => format!(
                "{}/{}/{}/{}",
                r.os,
                r.phase,
                r.stage,
                r.infrastructure.as_deref().unwrap_or("")
            ),
            None => format!("unknown/{}", l.key),
        };
        groups.entry(group).or_default().push(l);
    }
    for mut members in groups.into_values() {
        members.sort_by_key(|l| l.age_seconds);
        let keep = options.keep_latest.unwrap_or(0);
        for (i, l) in members.into_iter().enumerate() {
            let beyond = options.keep_latest.is_none() || i >= keep;
            if beyond && old(l.age_seconds) {
                doomed.push(l);
            }
        }
    }
    let mut out = Pruned::default();
    let gone: HashSet<&str> = doomed.iter().map(|l| l.key.as_str()).collect();
    for l in &doomed {
        if !options.dry_run {
            remove_layer(&store, &l.key)?;
        }
        out.layers.push(l.key.clone());
        out.bytes += l.bytes;
    }
    let live: HashSet<&str> = listing
        .layers
        .iter()
        .map(|l| l.key.as_str())
        .filter(|k| !gone.contains(k))
        .collect();
    for f in listing
        .files
        .iter()
        .filter(|f| f.kind == "export" || f.kind == "disk")
    {
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let orphan = f.kind == "export" && !live.contains(super::export::cached_export_top(&name));
        let criteria = options.older_than.is_some() && old(f.age_seconds);
        if orphan || criteria {
            if !options.dry_run {
                remove_tree(&f.path)?;
            }
            out.files.push(f.path.clone());
            out.bytes += f.bytes;
        }
    }
    Ok(out)
}

/// Marker and record first (the layer stops being one), then the tree under a `.partial` name.
fn remove_layer(store: &LayerStore, key: &str) -> Result<()> {
    let done = store.done_marker(key);
    if done.exists() {
        std::fs::remove_file(&done)
            .with_context(|| format!("{}: cannot remove", done.display()))?;
    }
    let _ = std::fs::remove_file(record_path(store, key));
    let partial = store.dir().join(LayerStore::partial_name(key));
    remove_tree(&partial)?;
    std::fs::rename(store.path(key), &partial)
        .with_context(|| format!("{}: cannot rename for removal", store.path(key).display()))?;
    remove_tree(&partial)
}

/// The pid of a live process that has a merged root under `finish/` (named `<pid>.<name>`).
fn live_finisher(finish: &Path) -> Option<u32> {
    let entries = std::fs::read_dir(finish).ok()?;
    entries.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid: u32 = name.split('.').next()?.parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    })
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{}: cannot read", dir.display()))?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

fn age(p: &Path) -> u64 {
    p.symlink_metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Allocated bytes under `p` (`du`), hard links counted once.
pub fn disk_usage(p: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![p.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        total += m.blocks() * 512;
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    Ok(total)
}

/// `1.5 GiB`, `312 MiB`, `4 KiB`.
pub fn human_size(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b.div_ceil(1024)),
    }
}

/// `45s`, `12m`, `5h`, `3d`.
pub fn human_age(s: u64) -> String {
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(store: &LayerStore, key: &str, rec: Option<LayerRecord>, bytes: usize) {
        let d = store.begin(key).unwrap();
        std::fs::write(d.join("f"), vec![7u8; bytes]).unwrap();
        store.commit(key).unwrap();
        if let Some(r) = rec {
            record(store, key, &r);
        }
    }

    fn rec(stage: &str, parent: Option<&str>) -> LayerRecord {
        LayerRecord {
            os: "debian-bookworm".into(),
            phase: "os-image".into(),
            stage: stage.into(),
            infrastructure: None,
            parent: parent.map(String::from),
        }
    }

    fn set_age(store: &LayerStore, key: &str, days: u64) {
        let f = std::fs::File::options()
            .append(true)
            .open(store.done_marker(key))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
            .unwrap();
    }

    #[test]
    fn prune_keeps_the_latest_per_stage_and_refuses_under_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let w = tmp.path();
        {
            let store = LayerStore::open(w).unwrap();
            layer(&store, "old1", Some(rec("base", None)), 10_000);
            layer(&store, "new1", Some(rec("base", None)), 10_000);
            layer(&store, "new2", Some(rec("sshd", Some("new1"))), 10_000);
            layer(&store, "anon", None, 10_000);
            set_age(&store, "old1", 10);
            set_age(&store, "anon", 40);
            // A tree without its marker: an interrupted prune.
            std::fs::create_dir(store.dir().join("torn")).unwrap();
            std::fs::create_dir_all(w.join("exports")).unwrap();
            std::fs::write(w.join("exports/old1.tgz"), b"x").unwrap();
            std::fs::write(w.join("exports/new2-0123456789ab.tgz"), b"x").unwrap();
            // While a build holds the lock, prune refuses and removes nothing.
            let e = prune(
                w,
                &PruneOptions {
                    keep_latest: Some(1),
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert!(
                format!("{e:#}").contains("another build is using this work directory"),
                "{e:#}"
            );
            assert!(store.is_done("old1"));
        }
        let l = list(w).unwrap();
        assert_eq!(l.layers.len(), 5);
        assert_eq!(l.layers[0].record.as_ref().unwrap().stage, "base");
        assert!(l.layers.iter().any(|x| x.key == "torn" && !x.complete));
        let dry = prune(
            w,
            &PruneOptions {
                keep_latest: Some(1),
                dry_run: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(dry.layers, ["torn", "old1"]);
        assert!(w.join("layers/old1").is_dir());
        let done = prune(
            w,
            &PruneOptions {
                keep_latest: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(done.layers, ["torn", "old1"]);
        assert_eq!(done.files, [w.join("exports/old1.tgz")]);
        assert!(!w.join("layers/old1").exists() && !w.join("layers/old1.done").exists());
        assert!(!w.join("layers/old1.json").exists() && !w.join("layers/torn").exists());
        assert!(
            w.join("layers/new1.done").exists() && w.join("exports/new2-0123456789ab.tgz").exists()
        );
        // --older-than alone reaches the unrecorded layer once it is old enough.
        let p = prune(
            w,
            &PruneOptions {
                older_than: Some(Duration::from_secs(30 * 86_400)),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.layers, ["anon"]);
        assert!(w.join("layers/new2.done").exists());
        // A live process's merged root blocks pruning.
        std::fs::create_dir_all(w.join(format!("finish/{}.openstack", std::process::id())))
            .unwrap();
        let e = prune(
            w,
            &PruneOptions {
                keep_latest: Some(0),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("still packing stemcells"), "{e}");
        assert!(w.join("layers/new2.done").exists());
    }
}
