//! Cache keys. A key is the SHA-256 of length-prefixed parts, so no two different inputs can
//! be confused by concatenation. Stage keys chain: each covers the previous key, so changing
//! stage N changes the keys of N and every stage after it, and nothing before.

use sha2::{Digest, Sha256};

/// Bumped when the meaning of a cached layer changes (key layout, runner semantics).
const KEY_VERSION: &[u8] = b"stemcell-layer-v1";

/// Builds one key from labelled parts.
pub struct KeyHasher(Sha256);

impl KeyHasher {
    pub fn new(kind: &str) -> Self {
        let mut h = KeyHasher(Sha256::new());
        h.part("version", KEY_VERSION);
        h.part("kind", kind.as_bytes());
        h
    }

    /// Adds a labelled byte string; label and length are hashed too.
    pub fn part(&mut self, label: &str, bytes: &[u8]) -> &mut Self {
        for piece in [label.as_bytes(), bytes] {
            self.0.update((piece.len() as u64).to_le_bytes());
            self.0.update(piece);
        }
        self
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The bootstrap key: the OS definition file, the architecture, the mirror, the bootstrap
/// package set (the mmdebstrap variant) and SOURCE_DATE_EPOCH when the build has one (every
/// tool in the chroot stamps it into what it writes: initramfs, shadow dates). Every stage key
/// chains from this one, so every layer of an arm64 build differs from its amd64 twin.
pub fn bootstrap_key(
    os_file_bytes: &[u8],
    arch: &str,
    mirror: &str,
    variant: &str,
    source_date_epoch: Option<u64>,
) -> String {
    let mut h = KeyHasher::new("bootstrap");
    h.part("os", os_file_bytes)
        .part("arch", arch.as_bytes())
        .part("mirror", mirror.as_bytes())
        .part("variant", variant.as_bytes());
    // Absent, not hashed: a build without it keeps the keys it always had.
    if let Some(t) = source_date_epoch {
        h.part("source date epoch", t.to_string().as_bytes());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_not_confused_by_concatenation() {
        let a = {
            let mut h = KeyHasher::new("k");
            h.part("x", b"ab").part("y", b"c");
            h.finish()
        };
        let b = {
            let mut h = KeyHasher::new("k");
            h.part("x", b"a").part("y", b"bc");
            h.finish()
        };
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn bootstrap_key_covers_mirror_and_packages() {
        let k = bootstrap_key(b"os", "amd64", "http://a", "minbase", None);
        assert_eq!(
            k,
            bootstrap_key(b"os", "amd64", "http://a", "minbase", None)
        );
        assert_ne!(
            k,
            bootstrap_key(b"os", "amd64", "http://b", "minbase", None)
        );
        assert_ne!(k, bootstrap_key(b"os", "amd64", "http://a", "buildd", None));
        assert_ne!(
            k,
            bootstrap_key(b"os2", "amd64", "http://a", "minbase", None)
        );
        assert_ne!(
            k,
            bootstrap_key(b"os", "arm64", "http://a", "minbase", None)
        );
    }

    #[test]
    fn bootstrap_key_covers_source_date_epoch() {
        let none = bootstrap_key(b"os", "amd64", "http://a", "minbase", None);
        let one = bootstrap_key(b"os", "amd64", "http://a", "minbase", Some(1700000000));
        assert_ne!(none, one);
        assert_eq!(
            one,
            bootstrap_key(b"os", "amd64", "http://a", "minbase", Some(1700000000))
        );
        assert_ne!(
            one,
            bootstrap_key(b"os", "amd64", "http://a", "minbase", Some(1700000001))
        );
    }
}
