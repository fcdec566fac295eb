//! Build inputs that do not come from the package archive: the BOSH agent and the blobstore
//! CLIs. Each is given as a local PATH or a URL plus the sha256 it must have; the bytes are
//! verified and stored in a content-addressed cache, `<cache>/inputs/sha256/<digest>`.
//!
//! Invariant: a file exists under its digest name in the cache only if its content has that
//! digest (it is written under a temporary name, hashed while written, and renamed into place
//! only on a match), so a cache hit needs no download and no re-hash.
//!
//! The stemcell stages never see host paths: [`stage_into`] copies the verified files to
//! [`IMAGE_INPUTS_DIR`] inside the root, where the `bosh-agent` stage installs them and
//! re-checks their digests (the digests are build variables, so they are part of the stage's
//! cache key).

use crate::output::AtomicOutput;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The name under `/run` at which the runner shows the staged inputs inside the chroot
/// (a read-only bind on the command's private tmpfs: the inputs never land in a layer).
pub const RUN_INPUTS_NAME: &str = "stemcell-inputs";

/// Names an input can have, with the option that sets it and the build variable carrying its
/// digest.
pub const KNOWN_INPUTS: &[(&str, &str)] = &[
    ("bosh-agent", "agent_sha256"),
    ("bosh-blobstore-dav", "blobstore_dav_sha256"),
    ("bosh-blobstore-gcs", "blobstore_gcs_sha256"),
    ("bosh-blobstore-s3", "blobstore_s3_sha256"),
    (
        "bosh-blobstore-azure-storage",
        "blobstore_azure_storage_sha256",
    ),
];

/// One input as the user (or the pinned release file) gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// The installed name, e.g. `bosh-agent`.
    pub name: String,
    /// A local path, or an `http://`/`https://`/`file://` URL.
    pub location: String,
    /// Expected sha256, lower-case hex.
    pub sha256: String,
}

impl InputSpec {
    /// Checks the name and normalises the digest; `--agent X` without `--agent-sha256` ends
    /// here with a clear error.
    pub fn new(name: &str, location: &str, sha256: Option<&str>) -> Result<Self> {
        if !KNOWN_INPUTS.iter().any(|(n, _)| *n == name) {
            let known: Vec<&str> = KNOWN_INPUTS.iter().map(|(n, _)| *n).collect();
            bail!("unknown input `{name}` (known: {})", known.join(", "));
        }
        let Some(sha256) = sha256 else {
            let flag = name.strip_prefix("bosh-").unwrap_or(name);
            bail!("{name}: {location}: a sha256 is required (e.g. --{flag}-sha256 HEX)");
        };
        let sha256 = sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{name}: sha256 `{sha256}` is not 64 hexadecimal digits");
        }
        Ok(Self {
            name: name.to_string(),
            location: location.to_string(),
            sha256,
        })
    }

    /// The build variable holding this input's digest (see [`KNOWN_INPUTS`]).
    pub fn digest_var(&self) -> &'static str {
        KNOWN_INPUTS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|(_, v)| *v)
            .expect("checked in new")
    }

    fn is_url(&self) -> bool {
        ["http://", "https://", "file://"]
            .iter()
            .any(|p| self.location.starts_with(p))
    }
}

/// A verified input in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedInput {
    pub name: String,
    pub sha256: String,
    /// The cached file (content has `sha256`).
    pub path: PathBuf,
}

/// The cache file for a digest.
pub fn cache_path(cache_dir: &Path, sha256: &str) -> PathBuf {
    cache_dir.join("inputs").join("sha256").join(sha256)
}

/// Fetches `spec` into the cache unless it is there already, verifying the digest.
pub fn fetch(spec: &InputSpec, cache_dir: &Path) -> Result<FetchedInput> {
    let path = cache_path(cache_dir, &spec.sha256);
    let fetched = FetchedInput {
        name: spec.name.clone(),
        sha256: spec.sha256.clone(),
        path: path.clone(),
    };
    if path.is_file() {
        return Ok(fetched);
    }
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the input cache", dir.display()))?;
    let mut out = AtomicOutput::create(&path, true)?;
    let actual = if spec.is_url() {
        download(spec, dir, out.file())?
    } else {
        let mut src = File::open(&spec.location)
            .with_context(|| format!("{}: {}: cannot read the input", spec.name, spec.location))?;
        if !src.metadata()?.is_file() {
            bail!("{}: {}: not a regular file", spec.name, spec.location);
        }
        copy_hashing(&mut src, out.file())
            .with_context(|| format!("{}: {}: cannot read the input", spec.name, spec.location))?
    };
    if actual != spec.sha256 {
        // `out` is dropped here without commit: nothing enters the cache.
        bail!(
            "{}: {}: sha256 mismatch: expected {}, got {}",
            spec.name,
            spec.location,
            spec.sha256,
            actual
        );
    }
    out.commit()?;
    Ok(fetched)
}

/// Downloads with curl (retries like the official builder's 5), then hashes what arrived.
fn download(spec: &InputSpec, dir: &Path, out: &mut File) -> Result<String> {
    let temp = tempfile::Builder::new()
        .prefix(".download.")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a download file", dir.display()))?;
    let result = duct::cmd!(
        "curl",
        "-fsSL",
        "--retry",
        "5",
        "--proto",
        "=https,http,file",
        "-o",
        temp.path(),
        &spec.location
    )
    .stdout_null()
    .stderr_capture()
    .unchecked()
    .run();
    let output = match result {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "{}: curl not found (install the Debian package curl)",
                spec.name
            )
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot run curl", spec.name)),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().last().unwrap_or("").trim();
        bail!(
            "{}: {}: download failed ({})",
            spec.name,
            spec.location,
            if reason.is_empty() {
                "curl failed"
            } else {
                reason
            }
        );
    }
    let mut src = File::open(temp.path())?;
    copy_hashing(&mut src, out).with_context(|| format!("{}: cannot read the download", spec.name))
}

/// Copies `src` to `dst` and returns the sha256 of what was copied.
fn copy_hashing(src: &mut impl Read, dst: &mut impl Write) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Copies verified inputs into the host directory `dir` as `<name>` (mode 0755), for the runner
/// to bind at `/run/`[`RUN_INPUTS_NAME`], and returns the build variables `(digest_var, sha256)`.
pub fn stage_into(
    dir: &Path,
    inputs: &[(InputSpec, FetchedInput)],
) -> Result<Vec<(String, String)>> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut vars = Vec::new();
    for (spec, fetched) in inputs {
        let dest = dir.join(&fetched.name);
        std::fs::copy(&fetched.path, &dest).with_context(|| {
            format!(
                "{}: cannot copy {} into the image",
                dest.display(),
                fetched.path.display()
            )
        })?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
        vars.push((spec.digest_var().to_string(), fetched.sha256.clone()));
    }
    Ok(vars)
}

/// `assets/stemcell/agent-release.yaml`: the default release of each input for real builds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedRelease {
    pub version: String,
    pub url: String,
    /// `None` when the digest is not known to the project yet: then the user must pass the
    /// input explicitly.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// The release file's path under the assets directory.
pub const RELEASE_FILE: &str = "stemcell/agent-release.yaml";

/// Loads the pinned releases, keyed by input name.
pub fn load_pinned(assets_dir: &Path) -> Result<BTreeMap<String, PinnedRelease>> {
    let path = assets_dir.join(RELEASE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let releases: BTreeMap<String, PinnedRelease> = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: invalid release file", path.display()))?;
    for name in releases.keys() {
        if !KNOWN_INPUTS.iter().any(|(n, _)| n == name) {
            bail!("{}: unknown input `{name}`", path.display());
        }
    }
    Ok(releases)
}

/// The pinned default for `name`, as an [`InputSpec`]; an error when no digest is pinned.
pub fn pinned_spec(assets_dir: &Path, name: &str) -> Result<InputSpec> {
    let releases = load_pinned(assets_dir)?;
    let path = assets_dir.join(RELEASE_FILE);
    let Some(release) = releases.get(name) else {
        bail!("{}: no pinned release for `{name}`", path.display());
    };
    let Some(sha256) = release.sha256.as_deref() else {
        bail!(
            "{}: {name} {} has no pinned sha256; give the input explicitly (PATH or URL and its sha256)",
            path.display(),
            release.version
        );
    };
    InputSpec::new(name, &release.url, Some(sha256)).with_context(|| path.display().to_string())
}

/// The flags that give `name` explicitly, and the opt-out when there is one: the hint every
/// "cannot have this input" error ends with.
pub fn input_hint(name: &str) -> String {
    let flag = name.strip_prefix("bosh-").unwrap_or(name);
    if is_blobstore_cli(name) {
        format!("pass --{flag} PATH --{flag}-sha256 HEX, or --no-blobstore-clis")
    } else {
        format!("pass --{flag} PATH --{flag}-sha256 HEX")
    }
}

/// The blobstore CLIs, installed by default (the agent fetches packages with them).
pub fn is_blobstore_cli(name: &str) -> bool {
    name.starts_with("bosh-blobstore-")
}

/// The input to use for `name`: the one given on the command line (`location` needs
/// `sha256`), else the pinned release, which is linux-amd64 (as the official builder's): a
/// build for another `arch` must be given every input. The agent is always required; the
/// blobstore CLIs are too unless `no_blobstore_clis` (then `None`).
pub fn select(
    assets_dir: &Path,
    name: &str,
    arch: crate::recipe::arch::Arch,
    location: Option<&str>,
    sha256: Option<&str>,
    no_blobstore_clis: bool,
) -> Result<Option<InputSpec>> {
    if let Some(location) = location {
        return InputSpec::new(name, location, sha256).map(Some);
    }
    if sha256.is_some() {
        bail!("{name}: a sha256 was given without a PATH or URL");
    }
    if no_blobstore_clis && is_blobstore_cli(name) {
        return Ok(None);
    }
    if arch != crate::recipe::arch::Arch::Amd64 {
        bail!(
            "{name}: the release pinned in {} is linux-amd64, and this build is for {arch}; {}",
            assets_dir.join(RELEASE_FILE).display(),
            input_hint(name)
        );
    }
    match pinned_spec(assets_dir, name) {
        Ok(spec) => Ok(Some(spec)),
        Err(e) => bail!("{name}: {e:#}; {}", input_hint(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_requires_a_well_formed_digest() {
        let e = InputSpec::new("bosh-agent", "/x", None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "bosh-agent: /x: a sha256 is required (e.g. --agent-sha256 HEX)"
        );
        let e = InputSpec::new("bosh-agent", "/x", Some("abc"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "bosh-agent: sha256 `abc` is not 64 hexadecimal digits");
        let e = InputSpec::new("agent", "/x", Some("abc"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown input `agent` (known: bosh-agent, "),
            "{e}"
        );
        let ok = InputSpec::new("bosh-agent", "/x", Some(&"AB".repeat(32))).unwrap();
        assert_eq!(ok.sha256, "ab".repeat(32));
        assert_eq!(ok.digest_var(), "agent_sha256");
    }

    use crate::recipe::arch::Arch;

    #[test]
    fn select_prefers_the_given_input_and_defaults_to_the_pinned_releases() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let d = "c".repeat(64);
        let given = select(
            &assets,
            "bosh-agent",
            Arch::Amd64,
            Some("/a"),
            Some(&d),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(given.location, "/a");
        // Without a flag, the pinned release with the official digest.
        let agent = select(&assets, "bosh-agent", Arch::Amd64, None, None, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            agent.sha256,
            "643de21ae5caced425c128ab2397ef8e0d3ffb588c2c891bc5342682690a40c7"
        );
        let dav = select(
            &assets,
            "bosh-blobstore-dav",
            Arch::Amd64,
            None,
            None,
            false,
        )
        .unwrap()
        .unwrap();
        assert!(dav.location.contains("davcli-0.0.372"), "{}", dav.location);
        // The opt-out drops the CLIs, never the agent.
        assert_eq!(
            select(&assets, "bosh-blobstore-dav", Arch::Amd64, None, None, true).unwrap(),
            None
        );
        let e = select(
            &assets,
            "bosh-blobstore-s3",
            Arch::Amd64,
            None,
            Some(&d),
            false,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "bosh-blobstore-s3: a sha256 was given without a PATH or URL"
        );
        assert_eq!(
            input_hint("bosh-blobstore-azure-storage"),
            "pass --blobstore-azure-storage PATH --blobstore-azure-storage-sha256 HEX, or --no-blobstore-clis"
        );
        assert_eq!(
            input_hint("bosh-agent"),
            "pass --agent PATH --agent-sha256 HEX"
        );
        // The pinned releases are amd64 binaries: an arm64 build names every input itself.
        let e = select(&assets, "bosh-agent", Arch::Arm64, None, None, false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bosh-agent: the release pinned in "), "{e}");
        assert!(e.ends_with("agent-release.yaml is linux-amd64, and this build is for arm64; pass --agent PATH --agent-sha256 HEX"), "{e}");
        assert!(select(
            &assets,
            "bosh-agent",
            Arch::Arm64,
            Some("/a"),
            Some(&d),
            false
        )
        .is_ok());
    }
}
