//! End-to-end helpers shared by the suites that run the real pipeline (`stemcell build`, `boot`,
//! `test-image`) against the Debian mirror: the inputs every such build uses, and the checks
//! every built stemcell gets.
//!
//! Include with `#[path = "common/e2e.rs"] mod e2e;`.
#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const VERSION: &str = "0.0.1";
pub const EPOCH: &str = "1700000000";
pub const GRUB_PASSWORD: &str = "e2e-grub-password";

pub fn stemcell() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stemcell"))
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the suites keep their layer caches and outputs (under `target/`, so reruns are cached).
pub fn e2e_dir() -> PathBuf {
    manifest_dir().join("target/e2e")
}

pub fn standin_agent() -> PathBuf {
    manifest_dir().join("tests/fixtures/standin-agent/bosh-agent")
}

/// The real BOSH agent, if this machine has it.
pub fn real_agent() -> Option<PathBuf> {
    real_agent_for("amd64")
}

/// The real BOSH agent built for `arch` (`amd64`: STEMCELL_TEST_AGENT or
/// ../shared/bosh-agent/bosh-agent; `arm64`: STEMCELL_TEST_AGENT_ARM64 or
/// ../shared/bosh-agent/bosh-agent-linux-arm64), if this machine has it.
pub fn real_agent_for(arch: &str) -> Option<PathBuf> {
    let (var, file) = match arch {
        "arm64" => ("STEMCELL_TEST_AGENT_ARM64", "bosh-agent-linux-arm64"),
        _ => ("STEMCELL_TEST_AGENT", "bosh-agent"),
    };
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../shared/bosh-agent").join(file));
    path.is_file().then_some(path)
}

/// The agent a build installs: the real one, else the stand-in.
pub fn agent() -> PathBuf {
    agent_for("amd64")
}

/// The agent a build for `arch` installs: the real one, else the stand-in (a shell script).
pub fn agent_for(arch: &str) -> PathBuf {
    real_agent_for(arch).unwrap_or_else(|| {
        eprintln!("real {arch} bosh-agent not found (../shared/bosh-agent): building with the stand-in agent, boots skipped");
        standin_agent()
    })
}

pub fn standin_dav_cli() -> PathBuf {
    manifest_dir().join("tests/fixtures/standin-blobstore/bosh-blobstore-dav")
}

/// sha256 of a file, streamed (stemcells are hundreds of MB).
pub fn sha256_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    hex::encode(h.finalize())
}

/// Asserts that each of `names` has the same bytes in `again` (a rebuild) as in `first`.
/// `again` is removed before asserting, so a difference leaves no rebuild behind.
pub fn assert_rebuild_identical(first: &Path, again: &Path, names: &[&str]) -> Result<()> {
    let digests: Vec<(String, String)> = names
        .iter()
        .map(|n| (sha256_file(&first.join(n)), sha256_file(&again.join(n))))
        .collect();
    std::fs::remove_dir_all(again)?;
    for (name, (a, b)) in names.iter().zip(digests) {
        assert_eq!(a, b, "{name} differs between two builds");
    }
    Ok(())
}

/// The root filesystem of the raw disk `raw` whose `sfdisk -d` output is `layout`, as
/// e2fsprogs address it without a loop device: `RAW?offset=BYTES` (the Linux partition's start).
pub fn root_fs_spec(raw: &Path, layout: &str) -> Result<String> {
    let line = layout
        .lines()
        .find(|l| l.contains("type=83"))
        .with_context(|| format!("{}: no Linux partition", raw.display()))?;
    let sector: u64 = line
        .split("start=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .with_context(|| format!("{}: no start in {line:?}", raw.display()))?
        .trim()
        .parse()?;
    Ok(format!("{}?offset={}", raw.display(), sector * 512))
}

/// Runs a command; its output on failure names what ran.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("{cmd:?}: cannot start"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{text}", out.status);
    }
    Ok(text)
}

/// `stemcell build` of `os` for `infrastructures` with the suites' inputs: the agent above, the
/// stand-in as all four blobstore CLIs (the pinned releases need the network), a GRUB password,
/// SOURCE_DATE_EPOCH; `work` is the layer cache, `out` the output directory.
pub fn build_command(os: &str, infrastructures: &[&str], work: &Path, out: &Path) -> Command {
    build_command_for(os, "amd64", infrastructures, work, out)
}

/// [`build_command`] for `arch`, with that architecture's agent.
pub fn build_command_for(
    os: &str,
    arch: &str,
    infrastructures: &[&str],
    work: &Path,
    out: &Path,
) -> Command {
    let agent = agent_for(arch);
    let mut cmd = stemcell();
    cmd.args(["build", "--arch", arch]);
    for i in infrastructures {
        cmd.args(["--infrastructure", i]);
    }
    cmd.args(["--version", VERSION, "--os", os, "--agent"])
        .arg(&agent)
        .args(["--agent-sha256", &sha256_file(&agent)]);
    let (cli_path, cli_sha256) = (standin_dav_cli(), sha256_file(&standin_dav_cli()));
    for cli in ["dav", "gcs", "s3", "azure-storage"] {
        cmd.arg(format!("--blobstore-{cli}"))
            .arg(&cli_path)
            .args([&format!("--blobstore-{cli}-sha256"), &cli_sha256]);
    }
    cmd.args(["--grub-password", GRUB_PASSWORD, "--force", "--work-dir"])
        .arg(work)
        .arg("-o")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH);
    cmd
}

/// `stemcell boot --ping` of `tgz` with the real agent: pong, then `get_state` with
/// `job_state: running`, through the settings source its agent.json names (`source`), having
/// asked the metadata service `requests`. Skipped (with a message) without the real agent.
pub fn boot_and_ping(
    tgz: &Path,
    firmware: Option<&str>,
    source: &str,
    requests: &[&str],
) -> Result<()> {
    let name = tgz.file_name().unwrap().to_string_lossy();
    let arch = if name.contains("-arm64") {
        "arm64"
    } else {
        "amd64"
    };
    if real_agent_for(arch).is_none() {
        eprintln!(
            "SKIPPED: booting {name} needs the real {arch} bosh-agent (../shared/bosh-agent)"
        );
        return Ok(());
    }
    let label = format!("{name}-{}", firmware.unwrap_or("default"));
    let mut cmd = stemcell();
    cmd.arg("boot")
        .arg(tgz)
        .args(["--ping", "--json", "--accel", "tcg", "--timeout", "900"]);
    if let Some(f) = firmware {
        cmd.args(["--firmware", f]);
    }
    cmd.arg("--work-dir")
        .arg(e2e_dir())
        .arg("--serial-log")
        .arg(e2e_dir().join(format!("last-serial-{label}.log")));
    let started = std::time::Instant::now();
    let text = run(&mut cmd)?;
    // stdout (the --json outcome) comes first in `run`'s text, then stderr's progress lines.
    let start = text.find("{\n").context("a JSON outcome")?;
    let outcome: serde_json::Value = serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<serde_json::Value>()
        .next()
        .context("a JSON outcome")??;
    eprintln!(
        "{label}: {:.1}s to pong ({:?} in all): {outcome}",
        outcome["seconds_to_pong"].as_f64().unwrap_or(0.0),
        started.elapsed()
    );
    assert_eq!(outcome["job_state"], "running", "{outcome}");
    assert!(
        outcome["settings_source"]
            .as_str()
            .unwrap_or("")
            .contains(source),
        "{outcome}"
    );
    if let Some(f) = firmware {
        assert_eq!(outcome["firmware"], f, "{outcome}");
    }
    // Nothing left behind: no temporary directory of the boot.
    let left: Vec<_> = std::fs::read_dir(e2e_dir())?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("stemcell-boot.")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // What the guest asked the metadata services (HTTP sources only).
    let asked = outcome["metadata_requests"].to_string();
    for request in requests {
        assert!(
            asked.contains(request),
            "`{request}` not among the metadata requests: {asked}"
        );
    }
    Ok(())
}

/// `stemcell test-image --json` of an OS image or stemcell: no check fails, more than 100 pass,
/// and no work directory is left in `scratch` (its TMPDIR). Returns the report.
pub fn assert_test_image_passes(image: &Path, scratch: &Path) -> Result<serde_json::Value> {
    let started = std::time::Instant::now();
    let output = stemcell()
        .args(["test-image", "--json"])
        .arg(image)
        .env("TMPDIR", scratch)
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "{}: not JSON: {}",
            image.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let checks = report["checks"].as_array().context("checks")?;
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| format!("{} {}: {}", c["id"], c["description"], c["reason"]))
        .collect();
    let not_applicable: Vec<&str> = checks
        .iter()
        .filter(|c| c["verdict"] == "not_applicable")
        .filter_map(|c| c["id"].as_str())
        .collect();
    eprintln!(
        "{}: {} passed, {} failed, {} skipped ({} not applicable: {}) in {:.0?}",
        image.display(),
        report["passed"],
        report["failed"],
        report["skipped"],
        not_applicable.len(),
        not_applicable.join(", "),
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{}: failed:\n{}",
        image.display(),
        failed.join("\n")
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report["passed"].as_u64().unwrap() > 100, "{report}");
    let left: Vec<String> = std::fs::read_dir(scratch)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("stemcell-test-image-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    Ok(report)
}
