//! Who is asking: static identities and OIDC access tokens, behind one
//! [`Authenticator`] shared by every place that lets a caller in (the
//! PostgreSQL proxy, the approval service's API).
//!
//! - [`authenticator`]: password or bearer token -> [`VerifiedIdentity`];
//! - [`statics`]: the config's static identities (Argon2id), for development;
//! - [`throttle`]: failed logins limited per address and per name;
//! - [`gate`]: at most a few Argon2 checks at once, a bounded queue behind;
//! - [`settings`]: one trusted issuer as configured, checked at start;
//! - [`jwt`]: splitting a compact JWS without trusting it (pure, fuzzed);
//! - [`keys`]: an issuer's signing keys via OIDC discovery, cached and
//!   refreshed on an unknown key id (rate-limited) or when old;
//! - [`signature`]: the keys' material checked with ring;
//! - [`verifier`]: issuer, algorithm, key, signature, then the claims
//!   (RFC 9068: `iss`, `aud`, `exp`, `nbf`, `iat`, scopes, groups, client id).
//!
//! No async runtime: a key refresh blocks, so async callers verify on a
//! blocking thread.
#![forbid(unsafe_code)]

pub mod authenticator;
pub mod gate;
pub mod jwt;
pub mod keys;
pub mod settings;
pub mod signature;
pub mod statics;
pub mod throttle;
pub mod verifier;

use std::time::SystemTime;

pub use authenticator::{AuthError, Authenticator, VerifiedIdentity};
pub use gate::{Busy, GateSettings, HashingGate};
pub use keys::KeySource;
pub use settings::IssuerSettings;
pub use statics::{hash_password, StaticIdentities, StaticIdentity, STATIC_ISSUER};
pub use throttle::{LoginThrottle, ThrottleSettings, Throttled};
pub use verifier::{TokenIdentity, TokenVerifier};

/// Why a token was refused. Each reason has its own text, safe to show the
/// caller and to log: it never contains the token, and what it quotes from
/// an unverified token is escaped and cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the password is not a well-formed JWT access token: {0}")]
    Malformed(String),
    #[error("token signature algorithm {0} is not allowed (accepted: RS256, PS256, ES256, EdDSA, as configured per issuer)")]
    AlgorithmNotAllowed(String),
    #[error("token issuer {0} is not a trusted issuer of this gateway")]
    UnknownIssuer(String),
    #[error("token type {0} is not an access token (expected at+jwt)")]
    NotAnAccessToken(String),
    #[error("token key id {kid} is not among the signing keys of {issuer}")]
    UnknownKey { kid: String, issuer: String },
    #[error("signing keys of {issuer} are unavailable: {why}")]
    KeysUnavailable { issuer: String, why: String },
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token expired at {}", rfc3339(*.0))]
    Expired(SystemTime),
    #[error("token is not valid before {}", rfc3339(*.0))]
    NotYetValid(SystemTime),
    #[error("token claims to be issued in the future ({})", rfc3339(*.0))]
    IssuedInFuture(SystemTime),
    #[error("token audience {got} is not accepted here (expected one of: {})", .accepted.join(", "))]
    WrongAudience { got: String, accepted: Vec<String> },
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("token claim {0} has the wrong type")]
    InvalidClaim(&'static str),
    #[error("token lacks the scope(s) {} this connection requires (granted: {})", .missing.join(" "), if .granted.is_empty() { "none".to_string() } else { .granted.join(" ") })]
    MissingScope {
        missing: Vec<String>,
        granted: Vec<String>,
    },
}

impl TokenError {
    /// A short stable name for the reason, for events and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            TokenError::UnknownIssuer(_) => "unknown_issuer",
            TokenError::NotAnAccessToken(_) => "not_an_access_token",
            TokenError::UnknownKey { .. } => "unknown_key",
            TokenError::KeysUnavailable { .. } => "keys_unavailable",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired(_) => "expired",
            TokenError::NotYetValid(_) => "not_yet_valid",
            TokenError::IssuedInFuture(_) => "issued_in_future",
            TokenError::WrongAudience { .. } => "wrong_audience",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::InvalidClaim(_) => "invalid_claim",
            TokenError::MissingScope { .. } => "missing_scope",
        }
    }
}

/// `2026-11-22T06:00:00Z`: how times are shown in errors.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
