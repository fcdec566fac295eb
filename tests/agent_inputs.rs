//! Build inputs (agent, blobstore CLIs): fetch from a path or a URL, verify sha256, cache by
//! digest, refuse a mismatch naming both digests, leave nothing behind on failure.

use sha2::{Digest, Sha256};
use std::path::Path;
use stemcell::stage::inputs::{self, InputSpec};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

#[test]
fn path_input_is_verified_and_cached_by_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("agent");
    std::fs::write(&src, b"#!/bin/sh\necho agent\n").unwrap();
    let digest = sha256(b"#!/bin/sh\necho agent\n");
    let cache = tmp.path().join("cache");
    let spec = InputSpec::new("bosh-agent", src.to_str().unwrap(), Some(&digest)).unwrap();
    let fetched = inputs::fetch(&spec, &cache).unwrap();
    assert_eq!(fetched.path, cache.join("inputs/sha256").join(&digest));
    assert_eq!(
        std::fs::read(&fetched.path).unwrap(),
        b"#!/bin/sh\necho agent\n"
    );
    // Second fetch is a cache hit: works even when the source is gone.
    std::fs::remove_file(&src).unwrap();
    assert_eq!(inputs::fetch(&spec, &cache).unwrap(), fetched);
}

#[test]
fn digest_mismatch_names_both_digests_and_caches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("agent");
    std::fs::write(&src, b"not the agent").unwrap();
    let wrong = "0".repeat(64);
    let cache = tmp.path().join("cache");
    let spec = InputSpec::new("bosh-agent", src.to_str().unwrap(), Some(&wrong)).unwrap();
    let err = inputs::fetch(&spec, &cache).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "bosh-agent: {}: sha256 mismatch: expected {wrong}, got {}",
            src.display(),
            sha256(b"not the agent")
        )
    );
    assert!(
        files_in(&cache.join("inputs/sha256")).is_empty(),
        "{:?}",
        files_in(&cache.join("inputs/sha256"))
    );
}

#[test]
fn url_input_is_downloaded_with_curl() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("dav");
    std::fs::write(&src, b"davcli").unwrap();
    let url = format!("file://{}", src.display());
    let cache = tmp.path().join("cache");
    let spec = InputSpec::new("bosh-blobstore-dav", &url, Some(&sha256(b"davcli"))).unwrap();
    let fetched = inputs::fetch(&spec, &cache).unwrap();
    assert_eq!(std::fs::read(&fetched.path).unwrap(), b"davcli");
    assert_eq!(
        files_in(&cache.join("inputs/sha256")),
        vec![sha256(b"davcli")]
    );
}

#[test]
fn missing_inputs_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let d = "1".repeat(64);
    let spec = InputSpec::new("bosh-agent", "/nonexistent/agent", Some(&d)).unwrap();
    let err = format!("{:#}", inputs::fetch(&spec, &cache).unwrap_err());
    assert!(
        err.starts_with("bosh-agent: /nonexistent/agent: cannot read the input: "),
        "{err}"
    );
    assert!(!err.contains('\n'));
    let url = format!("file://{}/nope", tmp.path().display());
    let spec = InputSpec::new("bosh-agent", &url, Some(&d)).unwrap();
    let err = inputs::fetch(&spec, &cache).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("bosh-agent: {url}: download failed (")),
        "{err}"
    );
    assert!(!err.contains('\n'));
    assert!(files_in(&cache.join("inputs/sha256")).is_empty());
}

#[test]
fn staged_inputs_land_in_the_image_with_their_digest_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("a");
    std::fs::write(&src, b"x").unwrap();
    let spec = InputSpec::new("bosh-agent", src.to_str().unwrap(), Some(&sha256(b"x"))).unwrap();
    let fetched = inputs::fetch(&spec, &tmp.path().join("cache")).unwrap();
    let root = tmp.path().join("root");
    let vars = inputs::stage_into(&root, &[(spec, fetched)]).unwrap();
    assert_eq!(vars, vec![("agent_sha256".to_string(), sha256(b"x"))]);
    let staged = root.join("bosh-agent");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&staged).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[test]
fn pinned_release_file_parses_and_unpinned_digests_are_refused_clearly() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let releases = inputs::load_pinned(&assets).unwrap();
    assert_eq!(releases["bosh-agent"].version, "2.695.0");
    for (name, _) in inputs::KNOWN_INPUTS {
        let release = &releases[*name];
        assert!(release.url.starts_with("https://"), "{name}");
        match inputs::pinned_spec(&assets, name) {
            Ok(spec) => assert_eq!(spec.sha256.len(), 64),
            Err(e) => assert!(e.to_string().contains("has no pinned sha256"), "{e}"),
        }
    }
}
