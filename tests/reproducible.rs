//! Reproducible from scratch: the OS image tarball and the OpenStack stemcells of a build in an
//! empty work directory are byte-identical to those of an independent build with the same
//! SOURCE_DATE_EPOCH, version, inputs and GRUB password. On a difference the test names every
//! file that differs (OS image members; files of the two root filesystems, read from the disks
//! with debugfs, never mounted), so an identity of the build run cannot creep back unnoticed.
//!
//! The independent build is the suite's own (`target/e2e/work`, the layer cache that
//! `tests/build_boot.rs` uses: empty on a clean clone, so there both builds start from nothing;
//! on a developer's machine its layers come from earlier runs, which is the stronger check). Set
//! `STEMCELL_REPRO_BOTH_FRESH=1` to build the second side in an empty directory as well.
//! Needs root and the Debian mirror, as `tests/build_boot.rs`.

#[path = "common/e2e.rs"]
mod e2e;

use anyhow::{Context, Result};
use e2e::{e2e_dir, root_fs_spec, run, sha256_file, EPOCH};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const OS: &str = "debian-bookworm";
const STEMCELLS: [&str; 2] = [
    "bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz",
    "bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm-raw.tgz",
];

/// The one build of this test: the OS image tarball (`out/os.tgz`) and the OpenStack stemcells
/// (raw disk kept in `work/disks/openstack.raw`), with the inputs `tests/build_boot.rs` gives
/// so that the suite's layer cache serves both.
fn build_os_image_and_stemcells(work: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    run(e2e::stemcell()
        .args(["os-image", "--os", OS, "--force", "--work-dir"])
        .arg(work)
        .arg("-o")
        .arg(out.join("os.tgz"))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("BUILD_TIME"))?;
    run(e2e::build_command(OS, &["openstack"], work, out)
        .arg("--keep-disks")
        .env_remove("BUILD_TIME"))?;
    Ok(())
}

/// Removes a directory tree when dropped, so a failed assertion leaves nothing behind.
struct Scratch(PathBuf);

impl Scratch {
    fn empty(path: PathBuf) -> Result<Scratch> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What identifies one file: type and mode, owner, mtime, size, and a digest of the content
/// (or the link target).
#[derive(PartialEq, Eq, Debug)]
struct Entry {
    kind_mode: u32,
    owner: (u64, u64),
    mtime: Option<u64>,
    digest: String,
}

/// Every member of an OS image tarball, by path.
fn tar_entries(tgz: &Path) -> Result<BTreeMap<String, Entry>> {
    let f = std::fs::File::open(tgz).with_context(|| format!("{}: cannot open", tgz.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    let mut entries = BTreeMap::new();
    for e in archive.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().into_owned();
        let h = e.header().clone();
        let mut digest = Sha256::new();
        if let Some(link) = e.link_name()? {
            digest.update(link.to_string_lossy().as_bytes());
        }
        if let Some(pax) = e.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                digest.update(ext.key_bytes());
                digest.update(ext.value_bytes());
            }
        }
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = e.read(&mut buf)?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
        }
        entries.insert(
            path,
            Entry {
                kind_mode: (u32::from(h.entry_type().as_byte()) << 16) | h.mode()?,
                owner: (h.uid()?, h.gid()?),
                mtime: Some(h.mtime()?),
                digest: hex::encode(digest.finalize()),
            },
        );
    }
    Ok(entries)
}

/// Every file under `root` (a tree `debugfs rdump` wrote), by path relative to it. mtimes are
/// left out: rdump sets its own.
fn tree_entries(root: &Path) -> Result<BTreeMap<String, Entry>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) -> Result<()> {
        for e in
            std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
        {
            let path = e?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let mut digest = Sha256::new();
            if meta.file_type().is_symlink() {
                digest.update(std::fs::read_link(&path)?.to_string_lossy().as_bytes());
            } else if meta.is_file() {
                std::io::copy(&mut std::fs::File::open(&path)?, &mut digest)?;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(
                rel,
                Entry {
                    kind_mode: meta.permissions().mode(),
                    owner: (meta.uid() as u64, meta.gid() as u64),
                    mtime: None,
                    digest: hex::encode(digest.finalize()),
                },
            );
            if meta.is_dir() {
                walk(root, &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// One line per path that is missing on one side or differs, saying how.
fn differences(a: &BTreeMap<String, Entry>, b: &BTreeMap<String, Entry>) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, ea) in a {
        match b.get(path) {
            None => lines.push(format!("{path}: only in the first build")),
            Some(eb) if ea != eb => {
                let mut how = Vec::new();
                if ea.digest != eb.digest {
                    how.push("content".to_string());
                }
                if ea.kind_mode != eb.kind_mode {
                    how.push(format!("mode {:o} vs {:o}", ea.kind_mode, eb.kind_mode));
                }
                if ea.owner != eb.owner {
                    how.push(format!("owner {:?} vs {:?}", ea.owner, eb.owner));
                }
                if ea.mtime != eb.mtime {
                    how.push(format!("mtime {:?} vs {:?}", ea.mtime, eb.mtime));
                }
                lines.push(format!("{path}: {}", how.join(", ")));
            }
            Some(_) => {}
        }
    }
    lines.extend(
        b.keys()
            .filter(|p| !a.contains_key(*p))
            .map(|p| format!("{p}: only in the second build")),
    );
    lines
}

/// The root filesystem of a kept raw disk, copied out with debugfs (no mount, no loop device).
fn dump_root(raw: &Path, into: &Path) -> Result<()> {
    let layout = run(Command::new("sfdisk").arg("-d").arg(raw))?;
    let root_fs = root_fs_spec(raw, &layout)?;
    std::fs::create_dir_all(into)?;
    run(Command::new("debugfs")
        .args(["-R", &format!("rdump / {}", into.display())])
        .arg(root_fs))?;
    Ok(())
}

/// The files that differ between the root filesystems of two raw disks.
fn disk_differences(a: &Path, b: &Path, scratch: &Path) -> Result<Vec<String>> {
    let (da, db) = (scratch.join("root-a"), scratch.join("root-b"));
    dump_root(a, &da)?;
    dump_root(b, &db)?;
    let lines = differences(&tree_entries(&da)?, &tree_entries(&db)?);
    let _ = std::fs::remove_dir_all(&da);
    let _ = std::fs::remove_dir_all(&db);
    if lines.is_empty() {
        return Ok(vec![
            "no file differs: the difference is in filesystem metadata (inode order, times, ids)"
                .into(),
        ]);
    }
    Ok(lines)
}

#[test]
fn os_image_and_openstack_stemcells_are_byte_identical_from_an_empty_work_directory() -> Result<()>
{
    let started = Instant::now();
    let fresh = Scratch::empty(e2e_dir().join("repro-fresh"))?;
    build_os_image_and_stemcells(&fresh.0.join("work"), &fresh.0.join("out"))?;
    let fresh_took = started.elapsed();

    let other_started = Instant::now();
    let both_fresh = std::env::var_os("STEMCELL_REPRO_BOTH_FRESH").is_some_and(|v| !v.is_empty());
    let second = Scratch::empty(e2e_dir().join(if both_fresh {
        "repro-fresh-2"
    } else {
        "repro-suite-out"
    }))?;
    let second_work = if both_fresh {
        second.0.join("work")
    } else {
        e2e_dir().join("work")
    };
    let second_out = second.0.join("out");
    let second_disks = second_work.join("disks");
    let built = build_os_image_and_stemcells(&second_work, &second_out);
    let second_took = other_started.elapsed();
    eprintln!(
        "from an empty work directory: {fresh_took:.0?}; the {} build: {second_took:.0?}",
        if both_fresh {
            "second empty-directory"
        } else {
            "suite's cached"
        }
    );
    // The suite's own work directory keeps its layers, not this test's disk.
    let result = built.and_then(|()| {
        let mut problems = Vec::new();
        let (a, b) = (fresh.0.join("out/os.tgz"), second_out.join("os.tgz"));
        if sha256_file(&a) != sha256_file(&b) {
            let lines = differences(&tar_entries(&a)?, &tar_entries(&b)?);
            problems.push(format!(
                "the OS image tarballs differ in {} member(s):\n  {}",
                lines.len(),
                lines.join("\n  ")
            ));
        }
        for side in ["packages.txt", "dev_tools_file_list.txt"] {
            let (a, b) = (
                fresh.0.join(format!("out/os.{side}")),
                second_out.join(format!("os.{side}")),
            );
            if std::fs::read(&a)? != std::fs::read(&b)? {
                problems.push(format!("the OS image's {side} differ"));
            }
        }
        let differing: Vec<&str> = STEMCELLS
            .iter()
            .copied()
            .filter(|name| {
                let (a, b) = (fresh.0.join("out").join(name), second_out.join(name));
                !(a.is_file() && b.is_file() && sha256_file(&a) == sha256_file(&b))
            })
            .collect();
        if !differing.is_empty() {
            let lines = disk_differences(
                &fresh.0.join("work/disks/openstack.raw"),
                &second_disks.join("openstack.raw"),
                &fresh.0,
            )?;
            problems.push(format!(
                "{} differ; their root filesystems differ in:\n  {}",
                differing.join(", "),
                lines.join("\n  ")
            ));
        }
        Ok(problems)
    });
    let _ = std::fs::remove_dir_all(&second_disks);
    let problems = result?;
    assert!(
        problems.is_empty(),
        "two builds with SOURCE_DATE_EPOCH={EPOCH} differ:\n{}",
        problems.join("\n")
    );
    eprintln!(
        "byte-identical: OS image and {}; whole test {:.0?}",
        STEMCELLS.join(", "),
        started.elapsed()
    );
    Ok(())
}
