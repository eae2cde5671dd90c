//! Static identities: a list from the config, each a name, an Argon2id hash
//! of its secret (never the secret itself) and its groups. For development
//! and break-glass accounts; off unless the config allows them.

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use serde::Deserialize;

use crate::gate::{GateSettings, HashingGate, Turn};
use crate::{AuthError, VerifiedIdentity};

/// Issuer recorded on events for identities from the static list.
pub const STATIC_ISSUER: &str = "vigil:static";

/// One entry of the static identity list, as written in the config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticIdentity {
    /// The user name the client presents.
    pub name: String,
    /// Argon2id PHC string (`vigil hash-password` makes one).
    pub password_hash: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Accept this identity only from loopback clients (the dev identity is).
    #[serde(default)]
    pub loopback_only: bool,
}

/// Why the static identity list is unusable.
#[derive(Debug, thiserror::Error)]
pub enum IdentityConfigError {
    #[error("identity \"{name}\": password_hash is not an Argon2 PHC string ({detail})")]
    BadHash { name: String, detail: String },
    #[error("identity \"{0}\" is listed twice")]
    Duplicate(String),
    #[error("identity with an empty name")]
    EmptyName,
}

/// The static identity list, checked once at start.
#[derive(Debug, Default)]
pub struct StaticIdentities {
    entries: Vec<StaticIdentity>,
    /// Argon2 checks run a few at a time (each holds ~19 MiB).
    gate: HashingGate,
}

impl StaticIdentities {
    /// Checks every entry (names unique and non-empty, hashes parse) so that a
    /// typo in the config fails at start, not at a client's first login.
    pub fn new(entries: Vec<StaticIdentity>) -> Result<Self, IdentityConfigError> {
        let mut seen = std::collections::HashSet::new();
        for entry in &entries {
            if entry.name.is_empty() {
                return Err(IdentityConfigError::EmptyName);
            }
            if !seen.insert(entry.name.clone()) {
                return Err(IdentityConfigError::Duplicate(entry.name.clone()));
            }
            PasswordHash::new(&entry.password_hash).map_err(|e| IdentityConfigError::BadHash {
                name: entry.name.clone(),
                detail: e.to_string(),
            })?;
        }
        Ok(Self {
            entries,
            gate: HashingGate::default(),
        })
    }

    /// The same, with the hashing gate of `[logins]`.
    pub fn with_gate(mut self, settings: GateSettings) -> Self {
        self.gate = HashingGate::new(settings);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Verifies `password` for `user`. Unknown users cost the same hash work as
    /// known ones, so response time does not reveal which names exist.
    pub fn verify(
        &self,
        user: &str,
        password: &[u8],
        peer_is_loopback: bool,
    ) -> Result<VerifiedIdentity, AuthError> {
        let entry = self.entries.iter().find(|e| e.name == user);
        let hash_text = entry.map_or(DUMMY_HASH, |e| e.password_hash.as_str());
        let hash = PasswordHash::new(hash_text)
            .map_err(|_| AuthError::BadCredentials(user.to_string()))?;
        let matches = {
            let mut turn = self.gate.enter()?;
            verify_in(&mut turn, password, &hash)
        };
        match entry {
            // A loopback-only identity from elsewhere gets the answer of a
            // wrong password: telling it apart would confirm the password.
            Some(e) if matches && (peer_is_loopback || !e.loopback_only) => {
                Ok(VerifiedIdentity {
                    subject: e.name.clone(),
                    issuer: STATIC_ISSUER.to_string(),
                    // A static identity's groups are Vigil roles already.
                    groups: e.groups.clone(),
                    roles: e.groups.clone(),
                    auth_method: "password".to_string(),
                    ..VerifiedIdentity::default()
                })
            }
            _ => Err(AuthError::BadCredentials(user.to_string())),
        }
    }
}

/// Whether `password` hashes to `hash`, computed in the turn's memory (the
/// gate's, reused) rather than in a fresh 19 MiB allocation each time.
/// The comparison is constant-time (`Output`'s equality).
fn verify_in(turn: &mut Turn<'_>, password: &[u8], hash: &PasswordHash<'_>) -> bool {
    let (Some(expected), Some(salt)) = (&hash.hash, &hash.salt) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        argon2::Algorithm::try_from(hash.algorithm),
        argon2::Params::try_from(hash),
    ) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
        None => argon2::Version::default(),
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password, salt, &mut out, turn.memory(blocks))
        .is_err()
    {
        return false;
    }
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == *expected)
}

/// Argon2id hash of a random secret nobody knows: verified against when the
/// user does not exist, to keep timing uniform.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9m1cN0m6bw8Vx3Sm4O5E7QyYp9m0Ai5o3mMVxTvYxGc";

/// Hashes a secret for the config (Argon2id, default parameters, random salt).
pub fn hash_password(secret: &[u8]) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(secret, &salt)
        .expect("argon2 with default parameters accepts any secret")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> StaticIdentities {
        StaticIdentities::new(vec![
            StaticIdentity {
                name: "agent".into(),
                password_hash: hash_password(b"s3cret"),
                groups: vec!["agents".into()],
                loopback_only: false,
            },
            StaticIdentity {
                name: "dev".into(),
                password_hash: hash_password(b"dev"),
                groups: vec![],
                loopback_only: true,
            },
        ])
        .unwrap()
    }

    #[test]
    fn right_password_gives_identity_with_groups() {
        let id = list().verify("agent", b"s3cret", false).unwrap();
        assert_eq!(id.subject, "agent");
        assert_eq!(id.issuer, STATIC_ISSUER);
        assert_eq!(id.groups, vec!["agents".to_string()]);
    }

    #[test]
    fn wrong_password_unknown_user_and_remote_dev_are_refused() {
        let ids = list();
        assert_eq!(
            ids.verify("agent", b"wrong", true),
            Err(AuthError::BadCredentials("agent".into()))
        );
        assert_eq!(
            ids.verify("nobody", b"s3cret", true),
            Err(AuthError::BadCredentials("nobody".into()))
        );
        assert_eq!(
            ids.verify("dev", b"dev", false),
            Err(AuthError::BadCredentials("dev".into()))
        );
        assert!(ids.verify("dev", b"dev", true).is_ok());
    }

    #[test]
    fn config_errors_are_caught_at_start() {
        let bad = StaticIdentity {
            name: "x".into(),
            password_hash: "plaintext".into(),
            groups: vec![],
            loopback_only: false,
        };
        assert!(matches!(
            StaticIdentities::new(vec![bad.clone()]),
            Err(IdentityConfigError::BadHash { .. })
        ));
        let good = StaticIdentity {
            password_hash: hash_password(b"a"),
            ..bad
        };
        assert!(matches!(
            StaticIdentities::new(vec![good.clone(), good]),
            Err(IdentityConfigError::Duplicate(_))
        ));
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
