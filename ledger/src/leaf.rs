//! What a leaf commits to.
//!
//! The log never stores audited payloads in the tree itself: each leaf is a
//! small fixed-layout record binding the event id, time and kind to a salted
//! hash of the body. The salt lets a body be deleted later (HIPAA retention)
//! without breaking the tree, and keeps low-entropy bodies from being guessed
//! from the public leaf.
//!
//! Version 2 adds a *stream position*: a hash of the event's stream (its
//! session, approval operation or grant) and its number in that stream.
//! The leaf keeps it after retention deletes the body, so a bundle can
//! still prove that a pruned entry was event `seq` of session `s`: without
//! it, nothing ties a body-less leaf to a session, and a session's
//! completeness could not be shown across pruning (or could be faked with
//! any old leaf). Version 1 leaves (no position) are still read.

use sha2::{Digest, Sha256};

use crate::hash::Hash;

/// Encoding version of leaves without a stream position (still read).
pub const LEAF_VERSION_1: u8 = 0x01;
/// Encoding version of leaves with a stream position (written since v2).
pub const LEAF_VERSION: u8 = 0x02;
/// Longest allowed `kind`, in bytes.
pub const MAX_KIND_LEN: usize = 64;
const FIXED_LEN: usize = 1 + 16 + 8 + 1 + 32;

/// Why leaf bytes were rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum LeafError {
    /// Fewer bytes than the layout needs.
    #[error("leaf record truncated: {0} bytes")]
    Truncated(usize),
    /// Unknown version byte.
    #[error("unsupported leaf record version 0x{0:02x}")]
    UnsupportedVersion(u8),
    /// `kind` longer than [`MAX_KIND_LEN`].
    #[error("leaf kind is {0} bytes, at most {MAX_KIND_LEN} allowed")]
    KindTooLong(usize),
    /// `kind` is not UTF-8.
    #[error("leaf kind is not valid UTF-8")]
    KindNotUtf8,
    /// Bytes after the commitment.
    #[error("{0} trailing bytes after leaf record")]
    TrailingBytes(usize),
}

/// The data that gets `leaf_hash`ed for one audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRecord {
    /// Event id (e.g. a UUIDv7), unique within the log.
    pub event_id: [u8; 16],
    /// Event time, nanoseconds since the Unix epoch.
    pub time_unix_nanos: i64,
    /// Event kind, at most [`MAX_KIND_LEN`] bytes of UTF-8.
    pub kind: String,
    /// [`body_commitment`] of the event body.
    pub commitment: Hash,
    /// [`stream_position`] of the event (version 2); `None` for a version 1
    /// leaf.
    pub position: Option<Hash>,
}

impl LeafRecord {
    /// Checks the invariants [`LeafRecord::encode`] relies on.
    pub fn validate(&self) -> Result<(), LeafError> {
        if self.kind.len() > MAX_KIND_LEN {
            return Err(LeafError::KindTooLong(self.kind.len()));
        }
        Ok(())
    }

    /// `version || event_id(16) || time(i64 BE) || kind_len(u8) || kind ||
    /// commitment(32) [|| position(32)]`: version 0x02 with a position,
    /// 0x01 without.
    pub fn try_encode(&self) -> Result<Vec<u8>, LeafError> {
        self.validate()?;
        let mut out = Vec::with_capacity(FIXED_LEN + self.kind.len() + 32);
        out.push(match self.position {
            Some(_) => LEAF_VERSION,
            None => LEAF_VERSION_1,
        });
        out.extend_from_slice(&self.event_id);
        out.extend_from_slice(&self.time_unix_nanos.to_be_bytes());
        out.push(self.kind.len() as u8);
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(&self.commitment);
        if let Some(position) = &self.position {
            out.extend_from_slice(position);
        }
        Ok(out)
    }

    /// Like [`LeafRecord::try_encode`].
    ///
    /// # Panics
    /// If `kind` is longer than [`MAX_KIND_LEN`] bytes; use `try_encode` for
    /// untrusted input.
    pub fn encode(&self) -> Vec<u8> {
        self.try_encode().expect("LeafRecord::kind too long")
    }

    /// Strict inverse of [`LeafRecord::encode`]: anything else is rejected.
    pub fn decode(bytes: &[u8]) -> Result<Self, LeafError> {
        let Some(&version) = bytes.first() else {
            return Err(LeafError::Truncated(0));
        };
        let position_len = match version {
            LEAF_VERSION_1 => 0,
            LEAF_VERSION => 32,
            other => return Err(LeafError::UnsupportedVersion(other)),
        };
        if bytes.len() < FIXED_LEN {
            return Err(LeafError::Truncated(bytes.len()));
        }
        let event_id: [u8; 16] = bytes[1..17].try_into().expect("16 bytes");
        let time = i64::from_be_bytes(bytes[17..25].try_into().expect("8 bytes"));
        let kind_len = bytes[25] as usize;
        if kind_len > MAX_KIND_LEN {
            return Err(LeafError::KindTooLong(kind_len));
        }
        let want = FIXED_LEN + kind_len + position_len;
        if bytes.len() < want {
            return Err(LeafError::Truncated(bytes.len()));
        }
        if bytes.len() > want {
            return Err(LeafError::TrailingBytes(bytes.len() - want));
        }
        let kind = std::str::from_utf8(&bytes[26..26 + kind_len])
            .map_err(|_| LeafError::KindNotUtf8)?
            .to_owned();
        let at = 26 + kind_len;
        let commitment: Hash = bytes[at..at + 32].try_into().expect("32 bytes");
        let position = (position_len == 32).then(|| bytes[at + 32..].try_into().expect("32 bytes"));
        Ok(Self {
            event_id,
            time_unix_nanos: time,
            kind,
            commitment,
            position,
        })
    }
}

/// `SHA-256(salt || body)`: hides the body while binding the leaf to it.
pub fn body_commitment(salt: &[u8; 32], body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(body);
    h.finalize().into()
}

/// Domain separation of [`stream_position`] from every other hash.
const POSITION_DOMAIN: &[u8] = b"vigil-stream-position/v1\n";

/// `SHA-256(domain || len(stream) u64 BE || stream || seq u64 BE)`: event
/// number `seq` of stream `stream` (a session id, approval operation id or
/// grant id; "" for events of no stream). Whoever knows the stream id can
/// check a leaf's position; stream ids are random UUIDs, so the public
/// leaves do not reveal which leaves belong together.
pub fn stream_position(stream: &str, seq: u64) -> Hash {
    let mut h = Sha256::new();
    h.update(POSITION_DOMAIN);
    h.update((stream.len() as u64).to_be_bytes());
    h.update(stream.as_bytes());
    h.update(seq.to_be_bytes());
    h.finalize().into()
}
