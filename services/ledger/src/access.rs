//! Who may read event bodies. Leaves, tiles and checkpoints are public
//! evidence; bodies can hold PHI (a statement's literals), so they are served
//! only to loopback callers when no auditor tokens are configured, and only to
//! bearers of a configured token when some are.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

#[derive(Clone, Debug, Default)]
pub struct BodyAccess {
    /// SHA-256 of each accepted bearer token (tokens are high-entropy secrets,
    /// so a plain hash is enough and keeps them out of the config).
    token_hashes: Vec<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
#[error("auditor token hash {0:?} is not 64 hex digits")]
pub struct BadTokenHash(pub String);

impl BodyAccess {
    pub fn new(token_sha256_hex: &[String]) -> Result<Self, BadTokenHash> {
        let token_hashes = token_sha256_hex
            .iter()
            .map(|h| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h, &mut out).map_err(|_| BadTokenHash(h.clone()))?;
                Ok(out)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { token_hashes })
    }

    /// May a caller at `peer` presenting `bearer` read bodies?
    pub fn allows(&self, peer: Option<SocketAddr>, bearer: Option<&str>) -> bool {
        if self.token_hashes.is_empty() {
            return peer.is_some_and(|p| p.ip().is_loopback());
        }
        bearer.is_some_and(|token| token_matches(&self.token_hashes, token))
    }
}

/// Whether `token`'s SHA-256 is one of `hashes` (the configured tokens of
/// auditors, or of proxies), compared without short-circuiting on content.
pub fn token_matches(hashes: &[[u8; 32]], token: &str) -> bool {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    hashes
        .iter()
        .fold(false, |found, h| found | constant_time_eq(h, &digest))
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token from an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header?.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_without_tokens() {
        let a = BodyAccess::new(&[]).unwrap();
        assert!(a.allows(Some("127.0.0.1:1".parse().unwrap()), None));
        assert!(!a.allows(Some("10.0.0.1:1".parse().unwrap()), None));
        assert!(!a.allows(None, None));
    }

    #[test]
    fn tokens_required_when_configured() {
        let hash = hex::encode(Sha256::digest(b"s3cret-token"));
        let a = BodyAccess::new(&[hash]).unwrap();
        let local = Some("127.0.0.1:1".parse().unwrap());
        assert!(!a.allows(local, None));
        assert!(!a.allows(local, Some("wrong")));
        assert!(a.allows(Some("10.0.0.1:1".parse().unwrap()), Some("s3cret-token")));
        assert!(BodyAccess::new(&["xyz".into()]).is_err());
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
    }
}
