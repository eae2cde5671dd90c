//! C2SP tlog-checkpoint (<https://c2sp.org/tlog-checkpoint>) note bodies.
//!
//! The checkpoint is the text that gets signed as a note: it commits the log
//! (identified by its origin) to a tree size and root.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::hash::Hash;

/// Why a checkpoint body was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CheckpointError {
    /// The body must end with a newline.
    #[error("checkpoint must end with a newline")]
    MissingTrailingNewline,
    /// Fewer than the three mandatory lines.
    #[error("checkpoint must have origin, size and root lines")]
    TooFewLines,
    /// The origin line is empty.
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// The size is not a canonical decimal u64.
    #[error("checkpoint size {0:?} is not a canonical decimal number")]
    BadSize(String),
    /// The root is not base64 of 32 bytes.
    #[error("checkpoint root {0:?} is not base64 of a 32-byte hash")]
    BadRoot(String),
    /// Extension lines must not be empty.
    #[error("checkpoint extension lines must not be empty")]
    EmptyExtension,
}

/// A checkpoint body: origin, tree size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Unique log identity, e.g. `vigil.example.com/audit`. Must be non-empty
    /// and contain no newline.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash at `size`.
    pub root: Hash,
}

impl Checkpoint {
    /// `"<origin>\n<size>\n<base64 root>\n"`.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body; extension lines are accepted and ignored.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        Self::parse_with_extensions(text).map(|(c, _)| c)
    }

    /// Parses a checkpoint body and returns its extension lines too.
    pub fn parse_with_extensions(text: &str) -> Result<(Self, Vec<String>), CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingTrailingNewline)?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::TooFewLines);
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size_n: u64 = match size.parse() {
            Ok(n) if canonical => n,
            _ => return Err(CheckpointError::BadSize(size.to_owned())),
        };
        let root_h: Hash = B64
            .decode(root)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| CheckpointError::BadRoot(root.to_owned()))?;
        let mut ext = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(CheckpointError::EmptyExtension);
            }
            ext.push(line.to_owned());
        }
        Ok((
            Self {
                origin: origin.to_owned(),
                size: size_n,
                root: root_h,
            },
            ext,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let c = Checkpoint {
            origin: "example.com/log".into(),
            size: 20852163,
            root: [7; 32],
        };
        assert_eq!(Checkpoint::parse(&c.to_text()).unwrap(), c);
        let with_ext = format!("{}ext one\n", c.to_text());
        let (p, e) = Checkpoint::parse_with_extensions(&with_ext).unwrap();
        assert_eq!((p, e), (c.clone(), vec!["ext one".to_owned()]));
        let root = B64.encode([7u8; 32]);
        for bad in [
            format!("o\n1\n{root}"),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_owned(),
            "o\n1\n".to_owned(),
            format!("o\n1\n{root}\n\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
