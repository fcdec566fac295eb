//! The GRUB `password_pbkdf2` hash, computed as `grub-mkpasswd-pbkdf2` does: PBKDF2 with
//! HMAC-SHA512, 10000 iterations, a 64-byte salt and a 64-byte key, printed as
//! `grub.pbkdf2.sha512.10000.<SALT>.<HASH>` in upper-case hex.
//!
//! HMAC and PBKDF2 are a few lines over `sha2` (RFC 2104, RFC 8018), which saves a crate.

use sha2::{Digest, Sha512};

const BLOCK: usize = 128; // SHA-512 block size in bytes
const ITERATIONS: u32 = 10_000;

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..64].copy_from_slice(&Sha512::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha512::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha512::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// PBKDF2-HMAC-SHA512 with a 64-byte output (one block).
pub fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 64] {
    let mut u = hmac_sha512(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha512(password, &[&u]);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// The `password_pbkdf2` hash line value for `password` with `salt`.
pub fn grub_pbkdf2_hash(password: &str, salt: &[u8; 64]) -> String {
    let key = pbkdf2_sha512(password.as_bytes(), salt, ITERATIONS);
    format!(
        "grub.pbkdf2.sha512.{ITERATIONS}.{}.{}",
        hex::encode_upper(salt),
        hex::encode_upper(key)
    )
}

/// A random 16-character password over `[A-Za-z0-9_]`, as the official builder makes.
pub fn random_password() -> anyhow::Result<String> {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
    let mut out = String::new();
    while out.len() < 16 {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
        // 252 = 4 × 63: rejecting larger bytes keeps every character equally likely.
        out.extend(
            b.iter()
                .filter(|&&x| x < 252)
                .map(|&x| CHARS[(x % 63) as usize] as char),
        );
    }
    out.truncate(16);
    Ok(out)
}

/// A random 64-byte salt.
pub fn random_salt() -> anyhow::Result<[u8; 64]> {
    let mut s = [0u8; 64];
    getrandom::fill(&mut s).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_vector() {
        // PBKDF2-HMAC-SHA512("password", "salt", 1), also what Python's hashlib gives.
        assert_eq!(
            hex::encode(pbkdf2_sha512(b"password", b"salt", 1)),
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
             c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
        );
    }

    #[test]
    fn grub_hash_has_grubs_format() {
        let salt: [u8; 64] = std::array::from_fn(|i| i as u8);
        // Reference value from Python: hashlib.pbkdf2_hmac('sha512', b'vcap-test', bytes(range(64)), 10000)
        let h = grub_pbkdf2_hash("vcap-test", &salt);
        assert!(h.starts_with("grub.pbkdf2.sha512.10000.000102"), "{h}");
        assert!(h.ends_with(".CFCE44B3E3E6B26BEC91B53354A8DDCA0999E14E0136CA1385D46E0ED35FD658E6104ED8F96D1EA37DBB5AA29DD04887FB4C6EA2D6656D51CC9B8CDFB566A49C"), "{h}");
    }

    #[test]
    fn random_password_is_16_word_characters() {
        let p = random_password().unwrap();
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
    }
}
