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

/// The bootstrap key: the OS definition file, the mirror, and the bootstrap package set
/// (the mmdebstrap variant).
pub fn bootstrap_key(os_file_bytes: &[u8], mirror: &str, variant: &str) -> String {
    let mut h = KeyHasher::new("bootstrap");
    h.part("os", os_file_bytes)
        .part("mirror", mirror.as_bytes())
        .part("variant", variant.as_bytes());
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
        let k = bootstrap_key(b"os", "http://a", "minbase");
        assert_eq!(k, bootstrap_key(b"os", "http://a", "minbase"));
        assert_ne!(k, bootstrap_key(b"os", "http://b", "minbase"));
        assert_ne!(k, bootstrap_key(b"os", "http://a", "buildd"));
        assert_ne!(k, bootstrap_key(b"os2", "http://a", "minbase"));
    }
}
