//! Export of the finished layer stack as the OS image tarball: `tar -c -C <root> .` (every
//! member path starts with `./`, as the official `sudo tar -cz -f <path> -C chroot .`), gzip,
//! written atomically. The export sees the tree through a throwaway top layer in which the
//! build-only pieces are undone ([`UNDO_BUILD_ONLY`]).

use super::chroot::{describe_status, Exec, OverlaySpec, Session};
use super::layers::LayerStore;
use crate::output::AtomicOutput;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

/// Undoes, in the tree at `$ROOT`, what only the build needed: the `policy-rc.d` that keeps
/// daemons from starting, dpkg's build-only options (bootstrap::DPKG_BUILD_CONFIG), the apt
/// options mmdebstrap keeps in `99mmdebstrap` (the build's mirror retries and timeout), and
/// the host's name servers in a regular `/etc/resolv.conf`. Every shipped tree goes through
/// it: the OS image tarball and each stemcell's root.
pub const UNDO_BUILD_ONLY: &str = r#"rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/dpkg/dpkg.cfg.d/zz-stemcell-build" "$ROOT/etc/apt/apt.conf.d/99mmdebstrap"
rc="$ROOT/etc/resolv.conf"
if [ -f "$rc" ] && [ ! -L "$rc" ]; then : > "$rc"; fi
"#;

/// After [`UNDO_BUILD_ONLY`], streams the tree as tar on stdout. Owners numeric, so the image's
/// uids are kept whatever the build host's /etc/passwd says; file capabilities kept; members
/// sorted. `--xattrs` makes the archive POSIX (pax), whose extended headers would record each
/// file's atime and ctime (the build's clock): they are left out, and the headers' own names
/// fixed. `$MTIME_OPTIONS` clamps every mtime to SOURCE_DATE_EPOCH in a reproducible build.
const EXPORT_TAR: &str = r#"exec tar --numeric-owner --xattrs --xattrs-include=security.capability --sort=name --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime $MTIME_OPTIONS -C "$ROOT" -cf - .
"#;

/// The tar options that make the export reproducible: no mtime newer than SOURCE_DATE_EPOCH
/// (files written during the build carry the build's clock otherwise).
fn mtime_options(source_date_epoch: Option<u64>) -> String {
    match source_date_epoch {
        Some(t) => format!("--mtime=@{t} --clamp-mtime"),
        None => String::new(),
    }
}

/// The OS image is an intermediate (the stemcell builds read it), so its gzip level is the
/// fastest that writes no more than the official builder's `tar -cz` (gzip -6). Measured on the
/// debian-bookworm tarball with the release binary: level 6 exports in 8.0 s and writes
/// 413.5 MB, level 5 in 7.0 s and 416.2 MB, level 4 in 6.0 s and 424.5 MB; GNU `gzip -6`
/// writes 418.3 MB of the same tar.
const GZIP_LEVEL: u32 = 5;

/// Writes the merged view of `lower` (layer names, topmost first) to `output` as a gzip tarball.
/// Returns the uncompressed tar size in bytes.
pub fn write_tarball(
    store: &LayerStore,
    lower: &[String],
    source_date_epoch: Option<u64>,
    output: &Path,
    force: bool,
    log: &Path,
) -> Result<u64> {
    let key = "export";
    store.begin(key)?;
    let result = (|| {
        let session = Session::overlay(OverlaySpec {
            layers_dir: store.dir().to_path_buf(),
            lower: lower.to_vec(),
            upper: Some(LayerStore::partial_name(key)),
            work: Some(LayerStore::overlay_work_name(key)),
            mountpoint: store.work_dir().join("mnt"),
        })?;
        let mut out = AtomicOutput::create(output, force)?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("{}: cannot create log", log.display()))?;
        let mut child = session.spawn(
            Exec::Host,
            &format!(
                "{UNDO_BUILD_ONLY}MTIME_OPTIONS='{}'\n{EXPORT_TAR}",
                mtime_options(source_date_epoch)
            ),
            Stdio::null(),
            Stdio::piped(),
            Stdio::from(log_file),
        )?;
        let tar = child.stdout.take().expect("stdout piped");
        let copied = (|| -> Result<u64> {
            use crate::parallel::gzip::{GzOptions, ParallelGzWriter};
            let file = out.file().try_clone().context("cannot reopen the output")?;
            let mut gz = ParallelGzWriter::new(
                std::io::BufWriter::with_capacity(1 << 20, file),
                GzOptions {
                    level: GZIP_LEVEL,
                    block_size: 1 << 20,
                },
            );
            let total = std::io::copy(&mut InterruptibleRead(tar), &mut gz)
                .with_context(|| format!("{}: cannot write", output.display()))?;
            gz.finish()?
                .flush()
                .with_context(|| format!("{}: cannot write", output.display()))?;
            Ok(total)
        })();
        if copied.is_err() {
            let _ = child.kill();
        }
        let status = child.wait()?;
        let total = copied?;
        if !status.success() {
            bail!(
                "{}: exporting the root filesystem failed ({}; log: {})",
                output.display(),
                describe_status(status.code().unwrap_or(-1)),
                log.display()
            );
        }
        out.commit()?;
        Ok(total)
    })();
    store.abandon(key);
    result
}

/// A read-only session on the merged view of `lower` (for `dpkg -l` and other queries).
pub fn read_only_session(store: &LayerStore, lower: &[String]) -> Result<Session> {
    Session::overlay(OverlaySpec {
        layers_dir: store.dir().to_path_buf(),
        lower: lower.to_vec(),
        upper: None,
        work: None,
        mountpoint: store.work_dir().join("mnt"),
    })
}

/// Runs `script` in `session` and writes its stdout atomically to `output`.
pub fn write_command_output(
    session: &Session,
    script: &str,
    output: &Path,
    force: bool,
) -> Result<()> {
    let result = session.output(script)?;
    if result.status != 0 {
        bail!(
            "{}: `{script}` failed in the image ({}): {}",
            output.display(),
            describe_status(result.status),
            result.output.trim()
        );
    }
    let mut out = AtomicOutput::create(output, force)?;
    out.file()
        .write_all(result.output.as_bytes())
        .with_context(|| format!("{}: cannot write", output.display()))?;
    out.commit()
}

/// A file written next to the OS image: `ubuntu-noble.tgz` → `ubuntu-noble.<suffix>`.
pub fn side_file(output: &Path, suffix: &str) -> std::path::PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".tgz")
        .or_else(|| name.strip_suffix(".tar.gz"))
        .unwrap_or(&name);
    output.with_file_name(format!("{stem}.{suffix}"))
}

/// Removes temporary files an earlier run killed by SIGKILL left next to `output`
/// (`AtomicOutput` names them `.<name>.XXXXXX.partial`).
pub fn remove_stale_outputs(output: &Path) {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let names: Vec<String> = ["", "packages.txt", "dev_tools_file_list.txt"]
        .iter()
        .map(|s| {
            if s.is_empty() {
                output.to_path_buf()
            } else {
                side_file(output, s)
            }
        })
        .filter_map(|p| p.file_name().map(|n| format!(".{}.", n.to_string_lossy())))
        .collect();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".partial") && names.iter().any(|p| n.starts_with(p.as_str())) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The OS image and its two lists: `<stem>.packages.txt` (`dpkg -l`) and
/// `<stem>.dev_tools_file_list.txt` (the image's `/var/vcap/bosh/etc/dev_tools_file_list`,
/// empty when the image has none).
pub fn write_os_image(
    store: &LayerStore,
    lower: &[String],
    source_date_epoch: Option<u64>,
    output: &Path,
    force: bool,
) -> Result<()> {
    // The export is cached by the top layer's key and the export recipe, so a rerun with
    // nothing changed only copies three files (make-style: seconds, not a re-compression).
    let cached = store
        .work_dir()
        .join("exports")
        .join(cached_export_name(&lower[0]));
    let parts = |base: &Path| {
        [
            base.to_path_buf(),
            side_file(base, "packages.txt"),
            side_file(base, "dev_tools_file_list.txt"),
        ]
    };
    if !parts(&cached).iter().all(|p| p.is_file()) {
        std::fs::create_dir_all(cached.parent().unwrap())
            .with_context(|| format!("{}: cannot create", cached.display()))?;
        let logs = store.work_dir().join("logs");
        write_tarball(
            store,
            lower,
            source_date_epoch,
            &cached,
            true,
            &logs.join("export.log"),
        )?;
        let session = read_only_session(store, lower)?;
        write_command_output(
            &session,
            "dpkg -l",
            &side_file(&cached, "packages.txt"),
            true,
        )?;
        write_command_output(
            &session,
            "cat /var/vcap/bosh/etc/dev_tools_file_list 2>/dev/null || true",
            &side_file(&cached, "dev_tools_file_list.txt"),
            true,
        )?;
    }
    for (from, to) in parts(&cached).iter().zip(parts(output).iter()) {
        let mut out = AtomicOutput::create(to, force)?;
        let mut src = std::fs::File::open(from)
            .with_context(|| format!("{}: cannot open", from.display()))?;
        std::io::copy(&mut src, out.file())
            .with_context(|| format!("{}: cannot write", to.display()))?;
        out.commit()?;
    }
    Ok(())
}

/// The cached export of the layer stack topped by `top`: `<top>-<recipe>.tgz`, where `<recipe>`
/// digests what the export undoes and its tar options, so a builder that exports differently
/// never reuses an export an older one wrote from the same layers.
fn cached_export_name(top: &str) -> String {
    use sha2::{Digest, Sha256};
    let recipe = hex::encode(Sha256::digest(format!("{UNDO_BUILD_ONLY}{EXPORT_TAR}")));
    format!("{top}-{}.tgz", &recipe[..12])
}

/// The top layer key a file of `exports/` belongs to: the export and its side files
/// (`<top>-<recipe>.tgz`, `<top>-<recipe>.packages.txt`, ...; `<top>.tgz` from older builders).
pub fn cached_export_top(file_name: &str) -> &str {
    file_name.split(['.', '-']).next().unwrap_or("")
}

/// A reader that stops with an error once an interrupt (Ctrl-C, SIGTERM) was requested.
struct InterruptibleRead<R>(R);

impl<R: std::io::Read> std::io::Read for InterruptibleRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if super::interrupt::requested() {
            return Err(std::io::Error::other("interrupted")); // not ErrorKind::Interrupted: io::copy retries those
        }
        self.0.read(buf)
    }
}
