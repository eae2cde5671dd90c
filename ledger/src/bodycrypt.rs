//! Encryption at rest of event bodies (and their salts).
//!
//! Bodies can hold PHI (a statement's literals), so the store never writes
//! them in the clear. Each body is sealed with XChaCha20-Poly1305 under the
//! operator's *active* key, with a fresh random 192-bit nonce (random nonces
//! are safe at this size, so no nonce state has to survive a crash) and the
//! leaf index as associated data, so a sealed body moved to another index
//! does not open.
//!
//! Key rotation: a [`Keyring`] holds any number of named keys. The first one
//! seals new bodies; every one can open what it sealed, because each sealed
//! body names its key. Rotating is "put a new key line first, keep the old
//! lines"; dropping an old line makes the bodies it sealed unreadable (that is
//! also a way to crypto-shred).
//!
//! Sealed layout: `0x01 || id_len(u8) || id || nonce(24) || ciphertext+tag`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use zeroize::Zeroizing;

const SEALED_VERSION: u8 = 0x01;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 32;
const AAD_PREFIX: &[u8] = b"vigil-ledger-body-v1\0";

/// Why a keyring or a sealed body was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BodyCryptError {
    /// The keyring text holds no key.
    #[error("the body keyring holds no key")]
    EmptyKeyring,
    /// A keyring line is malformed; the key material is never echoed.
    #[error("body keyring line {line}: {reason}")]
    BadKeyLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The same key id appears twice.
    #[error("body keyring: key id {0:?} appears twice")]
    DuplicateKeyId(String),
    /// A sealed body names a key this keyring does not hold.
    #[error("sealed with key {0:?}, which is not in the keyring")]
    UnknownKey(String),
    /// A sealed body is too short or has an unknown version.
    #[error("sealed body is malformed: {0}")]
    Malformed(&'static str),
    /// Authentication failed: wrong key, wrong index or altered bytes.
    #[error(
        "sealed body does not authenticate (altered, moved, or a different key with the same id)"
    )]
    Unauthentic,
}

struct BodyKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The operator's body keys; the first seals, all open.
pub struct Keyring {
    keys: Vec<BodyKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: key material never reaches a log.
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn aad(index: u64) -> [u8; AAD_PREFIX.len() + 8] {
    let mut out = [0u8; AAD_PREFIX.len() + 8];
    out[..AAD_PREFIX.len()].copy_from_slice(AAD_PREFIX);
    out[AAD_PREFIX.len()..].copy_from_slice(&index.to_be_bytes());
    out
}

impl Keyring {
    /// Parses keyring text: one key per line, `<id> <base64 of 32 bytes>`;
    /// blank lines and lines starting with `#` are ignored. The first key
    /// seals new bodies. Ids are 1..=32 characters of `[A-Za-z0-9._-]`.
    pub fn parse(text: &str) -> Result<Self, BodyCryptError> {
        let mut keys: Vec<BodyKey> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| BodyCryptError::BadKeyLine {
                line: n + 1,
                reason: reason.to_string(),
            };
            let mut parts = line.split_whitespace();
            let (Some(id), Some(material), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected `<key id> <base64 key>`"));
            };
            if !valid_key_id(id) {
                return Err(bad(
                    "key id must be 1 to 32 characters of A-Z a-z 0-9 . _ -",
                ));
            }
            let bytes = Zeroizing::new(
                B64.decode(material)
                    .map_err(|_| bad("key is not valid base64"))?,
            );
            if bytes.len() != 32 {
                return Err(bad("key must be 32 bytes (44 base64 characters)"));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(BodyCryptError::DuplicateKeyId(id.to_string()));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| bad("bad key"))?;
            keys.push(BodyKey {
                id: id.to_string(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(BodyCryptError::EmptyKeyring);
        }
        Ok(Self { keys })
    }

    /// A new random key as one keyring line (`<id> <base64>`).
    ///
    /// # Panics
    /// If `id` is not a valid key id.
    pub fn generate_line(id: &str) -> String {
        assert!(valid_key_id(id), "invalid body key id {id:?}");
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        format!("{id} {}", B64.encode(key.as_ref()))
    }

    /// Whether `id` is acceptable as a key id.
    pub fn is_valid_key_id(id: &str) -> bool {
        valid_key_id(id)
    }

    /// A keyring of one fresh random key (tests and benchmarks).
    pub fn random(id: &str) -> Self {
        Self::parse(&Self::generate_line(id)).expect("a generated line parses")
    }

    /// The ids of the keys, the sealing one first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Id of the key that seals new bodies.
    pub fn active_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `plaintext` for leaf `index` under the active key.
    pub fn seal(&self, index: u64, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        // rand's thread-local CSPRNG (ChaCha12, seeded and reseeded from the
        // OS) instead of a getrandom syscall for every nonce.
        rand::thread_rng().fill_bytes(&mut nonce);
        let ad = aad(index);
        let ct = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory sizes");
        let mut out = Vec::with_capacity(2 + key.id.len() + NONCE_LEN + ct.len());
        out.push(SEALED_VERSION);
        out.push(key.id.len() as u8);
        out.extend_from_slice(key.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// The key id a sealed body names, without opening it.
    pub fn sealed_key_id(sealed: &[u8]) -> Result<&str, BodyCryptError> {
        let (&version, rest) = sealed
            .split_first()
            .ok_or(BodyCryptError::Malformed("empty"))?;
        if version != SEALED_VERSION {
            return Err(BodyCryptError::Malformed("unknown version"));
        }
        let (&id_len, rest) = rest
            .split_first()
            .ok_or(BodyCryptError::Malformed("truncated key id"))?;
        let id = rest
            .get(..id_len as usize)
            .ok_or(BodyCryptError::Malformed("truncated key id"))?;
        std::str::from_utf8(id).map_err(|_| BodyCryptError::Malformed("key id is not UTF-8"))
    }

    /// Opens a body sealed for leaf `index`.
    pub fn open(&self, index: u64, sealed: &[u8]) -> Result<Vec<u8>, BodyCryptError> {
        let id = Self::sealed_key_id(sealed)?;
        let rest = &sealed[2 + id.len()..];
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(BodyCryptError::Malformed("shorter than nonce and tag"));
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| BodyCryptError::UnknownKey(id.to_string()))?;
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let ad = aad(index);
        key.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &ad })
            .map_err(|_| BodyCryptError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding_to_the_index() {
        let ring = Keyring::random("k1");
        let sealed = ring.seal(7, b"SELECT * FROM patients WHERE ssn = '123-45-6789'");
        assert!(!sealed.windows(11).any(|w| w == b"123-45-6789"));
        assert_eq!(
            ring.open(7, &sealed).unwrap(),
            b"SELECT * FROM patients WHERE ssn = '123-45-6789'"
        );
        assert_eq!(ring.open(8, &sealed), Err(BodyCryptError::Unauthentic));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(ring.open(7, &flipped), Err(BodyCryptError::Unauthentic));
    }

    #[test]
    fn rotation_keeps_old_bodies_readable_and_seals_with_the_first_key() {
        let old_line = Keyring::generate_line("2025");
        let old = Keyring::parse(&old_line).unwrap();
        let sealed_old = old.seal(1, b"old");
        let new_line = Keyring::generate_line("2026");
        let rotated = Keyring::parse(&format!("# rotated\n{new_line}\n\n{old_line}\n")).unwrap();
        assert_eq!(rotated.active_key_id(), "2026");
        assert_eq!(rotated.open(1, &sealed_old).unwrap(), b"old");
        let sealed_new = rotated.seal(2, b"new");
        assert_eq!(Keyring::sealed_key_id(&sealed_new).unwrap(), "2026");
        assert_eq!(
            old.open(2, &sealed_new),
            Err(BodyCryptError::UnknownKey("2026".into()))
        );
    }

    #[test]
    fn same_id_different_key_does_not_authenticate() {
        let a = Keyring::random("k");
        let b = Keyring::random("k");
        assert_eq!(
            b.open(0, &a.seal(0, b"x")),
            Err(BodyCryptError::Unauthentic)
        );
    }

    #[test]
    fn malformed_keyrings_are_refused_without_echoing_key_material() {
        let cases: &[(&str, &str)] = &[
            ("", "holds no key"),
            ("# only a comment\n", "holds no key"),
            ("k1", "line 1: expected"),
            ("k1 a b", "line 1: expected"),
            ("bad/id AAAA", "line 1: key id"),
            ("k1 !!!notbase64", "line 1: key is not valid base64"),
            ("k1 c2hvcnQ=", "line 1: key must be 32 bytes"),
        ];
        for (text, want) in cases {
            let err = Keyring::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains("c2hvcnQ"), "key material echoed: {err}");
        }
        let line = Keyring::generate_line("k1");
        let dup = format!("{line}\n{line}\n");
        assert_eq!(
            Keyring::parse(&dup).unwrap_err(),
            BodyCryptError::DuplicateKeyId("k1".into())
        );
    }

    #[test]
    fn malformed_sealed_bodies_are_clear_errors() {
        let ring = Keyring::random("k1");
        for bad in [
            &b""[..],
            &[0x02, 1, b'k'][..],
            &[0x01][..],
            &[0x01, 5, b'k'][..],
            &[0x01, 2, b'k', b'1', 0, 0][..],
        ] {
            assert!(ring.open(0, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_ids_only() {
        let line = Keyring::generate_line("visible-id");
        let ring = Keyring::parse(&line).unwrap();
        let dbg = format!("{ring:?}");
        assert!(dbg.contains("visible-id"));
        assert!(!dbg.contains(line.split(' ').nth(1).unwrap()));
    }
}
