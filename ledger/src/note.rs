//! C2SP signed-note (<https://c2sp.org/signed-note>) with Ed25519 keys.
//!
//! Checkpoints are published as signed notes so that auditors can verify them
//! with stock transparency-log tooling. Only the Ed25519 algorithm (0x01) is
//! implemented; signatures by other keys are parsed and ignored.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature algorithm byte for Ed25519 keys.
pub const ALG_ED25519: u8 = 0x01;
/// Prefix of a signer key text.
const SKEY_PREFIX: &str = "PRIVATE+KEY+";
/// A signature line starts with an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Upper bound on signature lines, as in the reference implementation, so a
/// hostile note cannot make us do unbounded work.
const MAX_SIGNATURES: usize = 100;

/// Errors of key parsing, signing and note verification.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// Key names must be non-empty and free of `+` and whitespace.
    #[error("invalid key name {0:?}: must be non-empty, without '+' or whitespace")]
    InvalidName(String),
    /// A verifier or signer key text could not be parsed.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// The key id in a key text does not match the name and key.
    #[error("key id does not match key name and public key")]
    KeyIdMismatch,
    /// Only Ed25519 (0x01) keys are supported.
    #[error("unsupported signature algorithm 0x{0:02x}")]
    UnsupportedAlgorithm(u8),
    /// Note text to sign is not acceptable.
    #[error("invalid note text: {0}")]
    InvalidText(&'static str),
    /// The note is not a well-formed signed note.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// A signature line by the verifier's key did not verify.
    #[error("signature by key {name} does not verify")]
    InvalidSignature {
        /// Key name.
        name: String,
    },
    /// The note carries no signature by the verifier's key.
    #[error("note has no signature by key {name}")]
    NoSignatureByKey {
        /// Key name.
        name: String,
    },
}

pub(crate) fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Key id: first 4 bytes of `SHA-256(name || 0x0A || 0x01 || pubkey)`.
fn compute_key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Splits `name+hex8+base64` and decodes the `0x01 || key32` part.
/// Splits `name+keyid+base64(alg || key)`, checking the name, the key id's
/// form and the algorithm byte (`alg`: Ed25519 notes, or cosignatures).
pub(crate) fn parse_key_parts(text: &str, alg: u8) -> Result<(&str, u32, [u8; 32]), NoteError> {
    // The base64 key may itself contain '+', so split off only two fields.
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::MalformedKey("expected name+keyid+key"));
    };
    check_name(name)?;
    if id_hex.len() != 8
        || !id_hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(NoteError::MalformedKey(
            "key id must be 8 lowercase hex digits",
        ));
    }
    let id = u32::from_str_radix(id_hex, 16)
        .map_err(|_| NoteError::MalformedKey("key id must be 8 lowercase hex digits"))?;
    let raw = B64
        .decode(key_b64)
        .map_err(|_| NoteError::MalformedKey("key is not valid base64"))?;
    let Some((&found, key)) = raw.split_first() else {
        return Err(NoteError::MalformedKey("empty key"));
    };
    if found != alg {
        return Err(NoteError::UnsupportedAlgorithm(found));
    }
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::MalformedKey("Ed25519 key must be 32 bytes"))?;
    Ok((name, id, key))
}

/// A named Ed25519 note signing key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    key_id: u32,
}

impl std::fmt::Debug for NoteSigner {
    // Never print the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Wraps an existing key. Fails if `name` is not a valid key name.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_name(name)?;
        let key_id = compute_key_id(name, &key.verifying_key());
        Ok(Self {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// A fresh random key from the OS RNG.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Parses `PRIVATE+KEY+name+hex8keyid+base64(0x01||seed)`.
    pub fn from_skey_text(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim_end_matches('\n')
            .strip_prefix(SKEY_PREFIX)
            .ok_or(NoteError::MalformedKey(
                "signer key must start with PRIVATE+KEY+",
            ))?;
        let (name, id, seed) = parse_key_parts(rest, ALG_ED25519)?;
        let signer = Self::new(name, SigningKey::from_bytes(&seed))?;
        if signer.key_id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// `PRIVATE+KEY+name+hex8keyid+base64(0x01||seed)`. Secret: handle with care.
    pub fn to_skey_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{SKEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(raw)
        )
    }

    /// `name+hex8keyid+base64(0x01||pubkey)`, to hand to verifiers.
    pub fn verifier_key_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            key_id: self.key_id,
        }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key id (big-endian first 4 bytes of the key hash).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

/// A named Ed25519 note verification key.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    key_id: u32,
}

impl NoteVerifier {
    /// Parses `name+hex8keyid+base64(0x01||pubkey)`, checking the key id.
    pub fn from_vkey_text(text: &str) -> Result<Self, NoteError> {
        let (name, id, raw) = parse_key_parts(text.trim_end_matches('\n'), ALG_ED25519)?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 public key"))?;
        if compute_key_id(name, &key) != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
            key_id: id,
        })
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

/// Note text must be non-empty, end in a newline and contain no control
/// characters other than newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::InvalidText("text must end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::InvalidText(
            "text must not contain control characters other than newline",
        ));
    }
    Ok(())
}

/// Signs `text` (which must end with `'\n'`) and returns
/// `text + "\n" + "— name base64(keyid4||sig64)\n"`.
pub fn sign_note(text: &str, signer: &NoteSigner) -> Result<String, NoteError> {
    check_text(text)?;
    let sig = signer.key.sign(text.as_bytes());
    let mut raw = Vec::with_capacity(68);
    raw.extend_from_slice(&signer.key_id.to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    Ok(format!(
        "{text}\n{SIG_PREFIX}{} {}\n",
        signer.name,
        B64.encode(raw)
    ))
}

/// Adds `signer`'s signature line to an already signed `note` (a
/// cosignature of the same text, e.g. by the next key in a rotation).
pub fn add_signature(note: &str, signer: &NoteSigner) -> Result<String, NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::MalformedNote("no blank line before signatures"))?;
    let signed = sign_note(&note[..=split], signer)?;
    let line = &signed[split + 2..];
    Ok(format!("{note}{line}"))
}

/// Verifies `note` against `verifier` and returns the signed text.
///
/// The whole note must be well-formed (every signature line parsed, even
/// those by unknown keys); at least one line must be by this key (name and
/// key id), and every line by this key must verify.
pub fn open_note(note: &str, verifier: &NoteVerifier) -> Result<String, NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::MalformedNote("no blank line before signatures"))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    check_text(text).map_err(|_| NoteError::MalformedNote("invalid text"))?;
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(NoteError::MalformedNote(
            "signatures must end with a newline",
        ));
    };
    if sigs.is_empty() {
        return Err(NoteError::MalformedNote("no signature lines"));
    }
    // The spec forbids ASCII control characters other than newline in the
    // whole note, so also in the signature lines of keys we otherwise skip.
    if sigs.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::MalformedNote(
            "control character in signature lines",
        ));
    }
    let mut found = false;
    for (n, line) in sigs.split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(NoteError::MalformedNote("too many signatures"));
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(NoteError::MalformedNote(
                "signature line must start with '\u{2014} '",
            ))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::MalformedNote(
            "signature line must be '\u{2014} name sig'",
        ))?;
        check_name(name).map_err(|_| NoteError::MalformedNote("bad key name in signature"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::MalformedNote("signature is not valid base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::MalformedNote("signature too short"));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if name != verifier.name || id != verifier.key_id {
            continue;
        }
        if found {
            return Err(NoteError::MalformedNote(
                "duplicate signature by the same key",
            ));
        }
        let sig = Signature::from_slice(&raw[4..]).map_err(|_| NoteError::InvalidSignature {
            name: verifier.name.clone(),
        })?;
        verifier
            .key
            .verify_strict(text.as_bytes(), &sig)
            .map_err(|_| NoteError::InvalidSignature {
                name: verifier.name.clone(),
            })?;
        found = true;
    }
    if found {
        Ok(text.to_owned())
    } else {
        Err(NoteError::NoSignatureByKey {
            name: verifier.name.clone(),
        })
    }
}
