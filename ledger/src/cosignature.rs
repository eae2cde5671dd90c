//! C2SP tlog-cosignature (<https://c2sp.org/tlog-cosignature>): a witness's
//! timestamped Ed25519 signature on a checkpoint, a statement that as of
//! that time this is the largest consistent tree it has seen for the log.
//!
//! The signed message is `"cosignature/v1\ntime <unix seconds>\n" ||
//! checkpoint body`; the signature line is `— <witness name>
//! base64(key id(4) || timestamp(u64 BE) || Ed25519 signature(64))`, with
//! the key id computed over algorithm byte 0x04.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::note::{check_name, parse_key_parts, NoteError};

/// Algorithm byte of timestamped Ed25519 cosignatures.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
const SIG_PREFIX: &str = "\u{2014} ";
const SKEY_PREFIX: &str = "PRIVATE+KEY+";

fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_COSIGNATURE_V1]);
    h.update(public.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// The body of a signed note (the text before the blank line).
fn note_body(note: &str) -> Result<&str, NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::MalformedNote("no blank line before signatures"))?;
    Ok(&note[..=split])
}

/// A witness's signing key.
pub struct CosignerKey {
    name: String,
    key: SigningKey,
    key_id: u32,
}

impl std::fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosignerKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl CosignerKey {
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let key_id = key_id(name, &key.verifying_key());
        Ok(Self {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// `PRIVATE+KEY+name+hex8+base64(0x04||seed)`.
    pub fn to_skey_text(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{SKEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(raw)
        )
    }

    pub fn from_skey_text(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim_end_matches('\n')
            .strip_prefix(SKEY_PREFIX)
            .ok_or(NoteError::MalformedKey(
                "signer key must start with PRIVATE+KEY+",
            ))?;
        let (name, id, seed) = parse_key_parts(rest, ALG_COSIGNATURE_V1)?;
        let key = SigningKey::from_bytes(&seed);
        let computed = key_id(name, &key.verifying_key());
        if computed != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
            key_id: id,
        })
    }

    /// `name+hex8+base64(0x04||pubkey)`.
    pub fn verifier_key_text(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            key_id: self.key_id,
        }
    }

    /// The signature line cosigning `note`'s body at `timestamp`.
    pub fn cosign(&self, note: &str, timestamp: u64) -> Result<String, NoteError> {
        if timestamp > i64::MAX as u64 {
            return Err(NoteError::InvalidText("timestamp beyond 2^63 - 1"));
        }
        let body = note_body(note)?;
        let sig = self.key.sign(message(body, timestamp).as_bytes());
        let mut raw = Vec::with_capacity(76);
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Ok(format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw)))
    }
}

/// A witness's public key, as an auditor or a ledger configures it.
#[derive(Clone, Debug)]
pub struct CosignatureVerifier {
    name: String,
    key: VerifyingKey,
    key_id: u32,
}

impl CosignatureVerifier {
    /// The witness's Ed25519 public key: what makes two witnesses two
    /// (the name is not part of the signed message).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Parses `name+hex8+base64(0x04||pubkey)`, checking the key id.
    pub fn from_vkey_text(text: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_key_parts(text.trim(), ALG_COSIGNATURE_V1)?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 public key"))?;
        if key_id(name, &key) != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
            key_id: id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The timestamp of this witness's valid cosignature on `note`, if the
    /// note carries one (lines by other keys are ignored; a line by this
    /// key that does not verify is an error).
    pub fn verify(&self, note: &str) -> Result<Option<u64>, NoteError> {
        let body = note_body(note)?;
        let sigs = &note[body.len() + 1..];
        let mut found = None;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
                continue;
            };
            let Some((name, b64)) = rest.split_once(' ') else {
                continue;
            };
            if name != self.name {
                continue;
            }
            let Ok(raw) = B64.decode(b64) else {
                continue;
            };
            if raw.len() != 76 || raw[..4] != self.key_id.to_be_bytes() {
                continue;
            }
            let timestamp = u64::from_be_bytes(raw[4..12].try_into().expect("8 bytes"));
            let sig =
                Signature::from_slice(&raw[12..]).map_err(|_| NoteError::InvalidSignature {
                    name: self.name.clone(),
                })?;
            self.key
                .verify_strict(message(body, timestamp).as_bytes(), &sig)
                .map_err(|_| NoteError::InvalidSignature {
                    name: self.name.clone(),
                })?;
            if timestamp > i64::MAX as u64 {
                return Err(NoteError::MalformedNote(
                    "cosignature timestamp beyond 2^63 - 1",
                ));
            }
            found = Some(found.map_or(timestamp, |t: u64| t.max(timestamp)));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{open_note, sign_note, NoteSigner};

    #[test]
    fn a_cosignature_verifies_is_timestamped_and_leaves_the_log_signature_alone() {
        let log = NoteSigner::generate("example.org/log").unwrap();
        let note = sign_note(
            "example.org/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            &log,
        )
        .unwrap();
        let w = CosignerKey::generate("witness.example/w1").unwrap();
        let cosigned = format!("{note}{}", w.cosign(&note, 1_700_000_000).unwrap());
        let v = CosignatureVerifier::from_vkey_text(&w.verifier_key_text()).unwrap();
        assert_eq!(v.verify(&cosigned).unwrap(), Some(1_700_000_000));
        assert_eq!(v.verify(&note).unwrap(), None);
        // The log's own signature still opens the cosigned note.
        assert!(open_note(&cosigned, &log.verifier()).is_ok());
        // Another body: the cosignature does not verify.
        let other = sign_note(
            "example.org/log\n6\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            &log,
        )
        .unwrap();
        let line = w.cosign(&note, 1).unwrap();
        assert!(v.verify(&format!("{other}{line}")).is_err());
        // Key texts round-trip; a note-signing key is not a cosigner key.
        let again = CosignerKey::from_skey_text(&w.to_skey_text()).unwrap();
        assert_eq!(again.verifier_key_text(), w.verifier_key_text());
        assert!(CosignatureVerifier::from_vkey_text(&log.verifier_key_text()).is_err());
    }
}
