//! The repository stands alone: code, stages, infrastructures, assets, CI and tests cite public
//! upstream sources or the project's own `docs/`, never a document that is not in the
//! repository (the team's working notes and their section numbers).
//!
//! The needles are assembled from pieces so that this file does not match itself.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A citation of a document outside the repository: (needle, allowed only when preceded by).
fn needles() -> Vec<(String, Option<&'static str>)> {
    vec![
        (concat!("official", "-builder").to_string(), None),
        (concat!("consumers", ".md").to_string(), None),
        (concat!("formats", ".md").to_string(), Some("docs/")),
        (concat!("agent", "-needs").to_string(), Some("docs/")),
        (concat!("Appendix", " A.").to_string(), None),
        (concat!("shared", "/reference").to_string(), None),
        (concat!("/work", "/shared").to_string(), None),
        // A bare section sign: every section reference names its document in words.
        ('\u{a7}'.to_string(), None),
    ]
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Tracked files, or every file outside `target/` and `.git` when git cannot list them.
fn files(root: &Path) -> Vec<String> {
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output();
    if let Ok(out) = listed {
        if out.status.success() && !out.stdout.is_empty() {
            return String::from_utf8_lossy(&out.stdout)
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
        }
    }
    println!("git ls-files unavailable: scanning the directory tree instead");
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == "target" || rel == ".git" {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(rel);
            }
        }
    }
    out
}

/// Every `file:line: needle` where a needle occurs without its allowed prefix.
fn citations(rel: &str, text: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (needle, allowed_after) in needles() {
            for (at, _) in line.match_indices(needle.as_str()) {
                let ok = allowed_after.is_some_and(|prefix| line[..at].ends_with(prefix));
                if !ok {
                    hits.push(format!(
                        "{rel}:{}: cites `{needle}`: {}",
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    hits
}

#[test]
fn no_file_outside_docs_cites_documents_missing_from_the_repository() {
    let root = root();
    let mut found = Vec::new();
    let mut scanned = 0;
    for rel in files(&root) {
        if rel.starts_with("docs/") {
            continue;
        }
        let Ok(bytes) = std::fs::read(root.join(&rel)) else {
            continue; // listed by git but deleted in the working tree
        };
        scanned += 1;
        found.extend(citations(&rel, &String::from_utf8_lossy(&bytes)));
    }
    assert!(
        scanned > 50,
        "only {scanned} files scanned under {}",
        root.display()
    );
    assert!(
        found.is_empty(),
        "cite the public upstream file or docs/ instead:\n{}",
        found.join("\n")
    );
}

/// The scanner itself: each needle is caught, and the docs/ forms are allowed.
#[test]
fn scanner_catches_each_needle_and_allows_docs() {
    for (needle, allowed_after) in needles() {
        let bare = format!("see {needle} 1");
        assert_eq!(citations("x", &bare).len(), 1, "{bare:?} not caught");
        if let Some(prefix) = allowed_after {
            let ok = format!("see {prefix}{needle} \"Heading\"");
            assert!(citations("x", &ok).is_empty(), "{ok:?} refused");
        }
    }
    let ok =
        "see cloudfoundry/bosh-linux-stemcell-builder stemcell_builder/stages/base_ssh/apply.sh";
    assert!(citations("x", ok).is_empty());
}
