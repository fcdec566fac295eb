//! Helpers for the recipe tests: a fresh copy of the fixture tree (plus the real OS definitions)
//! in a temporary directory that a test may break on purpose.

use std::path::{Path, PathBuf};

/// The repository root (holds the real `stages/os/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary project root: `tests/fixtures/recipe/tree` plus the real `stages/os/*.yaml`.
pub fn fixture_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("tests/fixtures/recipe/tree"), dir.path());
    copy_dir(
        &repo_root().join("stages/os"),
        &dir.path().join("stages/os"),
    );
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A host apt configuration naming `mirror` for bookworm, so Debian plans do not depend on the
/// machine running the test.
pub fn fake_etc_apt(mirror: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
    std::fs::write(
        dir.path().join("sources.list.d/debian.sources"),
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n"
        ),
    )
    .unwrap();
    dir
}
