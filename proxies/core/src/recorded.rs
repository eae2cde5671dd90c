//! A value as a Request or Response event records it: whole, or, past
//! [`MAX_RECORDED_LEN`], its start with the whole's length and SHA-256 (a
//! 200 MB value once cost 384 MB of ledger). Every protocol records large
//! values the same way, so the auditor reads them the same way.

use sha2::Digest as _;
use vigil_proto::events::Parameter;

/// The most of one value an event keeps.
pub const MAX_RECORDED_LEN: usize = 64 * 1024;

/// `bytes` as recorded (not null, not flagged binary: the caller sets those).
pub fn recorded(bytes: &[u8]) -> Parameter {
    if bytes.len() > MAX_RECORDED_LEN {
        Parameter {
            value: bytes[..MAX_RECORDED_LEN].to_vec(),
            length: bytes.len() as u64,
            sha256: sha2::Sha256::digest(bytes).to_vec(),
            ..Parameter::default()
        }
    } else {
        Parameter {
            value: bytes.to_vec(),
            ..Parameter::default()
        }
    }
}
