//! One entry point for "who is this?": a password that is a JWT goes to the
//! token verifier, anything else to the static list (when the config allows
//! static identities). The PostgreSQL proxy calls it with the startup user
//! and password; the approval service's API with a bearer token.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::gate::Busy;
use crate::statics::StaticIdentities;
use crate::throttle::{LoginThrottle, Throttled};
use crate::verifier::{TokenIdentity, TokenVerifier};
use crate::{jwt, TokenError};

/// An identity that has proven itself. It carries no secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub issuer: String,
    /// The groups as the issuer (or the static list) gave them.
    pub groups: Vec<String>,
    /// The Vigil roles those groups map to: what policy matches on.
    pub roles: Vec<String>,
    /// OAuth client id and token id (`jti`); empty for static identities.
    pub client_id: String,
    pub token_id: String,
    pub scopes: Vec<String>,
    /// When the token expires (its `exp`); the session's identity expires with it.
    pub expires_at: Option<SystemTime>,
    /// The issuer's clock skew: the identity is honoured until `expires_at` plus this.
    pub expiry_leeway: Duration,
    /// How the identity was proven: "password" or "oidc".
    pub auth_method: String,
}

impl VerifiedIdentity {
    /// The identity as it rides on every event.
    pub fn to_event_identity(&self) -> vigil_proto::events::Identity {
        vigil_proto::events::Identity {
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            groups: self.groups.clone(),
            client_id: self.client_id.clone(),
            token_id: self.token_id.clone(),
            auth_method: self.auth_method.clone(),
            roles: self.roles.clone(),
            scopes: self.scopes.clone(),
            expires_unix_secs: self
                .expires_at
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    fn from_token(token: TokenIdentity) -> Self {
        Self {
            subject: token.subject,
            issuer: token.issuer,
            groups: token.groups,
            roles: token.roles,
            client_id: token.client_id,
            token_id: token.token_id,
            scopes: token.scopes,
            expires_at: Some(token.expires_at),
            expiry_leeway: token.expiry_leeway,
            auth_method: "oidc".into(),
        }
    }

    /// Whether the identity has expired at `now` (past `exp` plus the
    /// issuer's skew, as at login); returns the token's `exp` if so.
    pub fn expired_at(&self, now: SystemTime) -> Option<SystemTime> {
        let deadline = self.deadline()?;
        self.expires_at.filter(|_| now >= deadline)
    }

    /// The moment the identity stops being honoured: `exp` plus the
    /// issuer's skew. `None` for identities that do not expire.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.expires_at.map(|at| at + self.expiry_leeway)
    }
}

/// Why a caller was not let in. The `Display` text is safe to show the
/// caller: it never contains a secret, and for static identities it never
/// says whether the user exists or which part was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("password authentication failed for user \"{0}\"")]
    BadCredentials(String),
    #[error("this connection requires the scope(s) {0}, which only an access token can grant: log in with a token")]
    StaticOnScopedListener(String),
    #[error("Vigil refused the access token: {0}")]
    Token(#[from] TokenError),
    /// Refused before any check: too many failures from the address or
    /// for the name.
    #[error("{0}")]
    Throttled(Throttled),
    /// Refused before any check: too many passwords are being hashed.
    #[error("{0}")]
    Busy(#[from] Busy),
}

impl AuthError {
    /// A short stable name for the reason (logs, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::BadCredentials(_) => "bad_credentials",
            AuthError::StaticOnScopedListener(_) => "static_on_scoped_listener",
            AuthError::Token(e) => e.code(),
            AuthError::Throttled(_) => "throttled",
            AuthError::Busy(_) => "busy",
        }
    }

    /// Whether the refusal is worth a ledger event: every checked failure
    /// is, a throttled attempt only as the first of its spell, a busy gate
    /// never (it says nothing about the caller; the log counts it).
    pub fn worth_recording(&self) -> bool {
        match self {
            AuthError::Throttled(t) => t.first,
            AuthError::Busy(_) => false,
            _ => true,
        }
    }

    /// Whether the caller should try again later rather than fix its
    /// credential (PostgreSQL: 53300 rather than 28P01).
    pub fn is_overload(&self) -> bool {
        matches!(self, AuthError::Throttled(_) | AuthError::Busy(_))
    }
}

/// Static identities and token issuers, as configured.
#[derive(Clone, Default)]
pub struct Authenticator {
    statics: Arc<StaticIdentities>,
    tokens: Option<Arc<TokenVerifier>>,
    /// Failed logins of every entry point that shares this authenticator.
    throttle: Arc<LoginThrottle>,
}

impl Authenticator {
    pub fn new(statics: StaticIdentities, tokens: Option<Arc<TokenVerifier>>) -> Self {
        Self {
            statics: Arc::new(statics),
            tokens: tokens.filter(|t| !t.is_empty()),
            throttle: Arc::default(),
        }
    }

    /// The same, with the failed-login limits of `[logins]`.
    pub fn with_throttle(mut self, throttle: LoginThrottle) -> Self {
        self.throttle = Arc::new(throttle);
        self
    }

    pub fn token_verifier(&self) -> Option<&Arc<TokenVerifier>> {
        self.tokens.as_ref()
    }

    /// Checks what a client at `peer` presented. A password that looks
    /// like a JWT (or any password when no static identities are
    /// configured) must be a valid access token granting
    /// `required_scopes`. An address or name with too many recent failures
    /// is refused before anything is checked. Blocking: Argon2 hashing (at
    /// most a few at once, see [`crate::gate`]), and a key refresh when a
    /// token names an unknown key.
    pub fn authenticate(
        &self,
        user: &str,
        password: &[u8],
        peer: IpAddr,
        required_scopes: &[String],
        now: SystemTime,
    ) -> Result<VerifiedIdentity, AuthError> {
        // Charged as a failure before the check, so that concurrent
        // attempts cannot overrun the budget; refunded below.
        self.throttle
            .charge(peer, user, Instant::now())
            .map_err(AuthError::Throttled)?;
        let result = self.check(user, password, peer.is_loopback(), required_scopes, now);
        // A success, or a busy gate that checked nothing, was no failure.
        if matches!(result, Ok(_) | Err(AuthError::Busy(_))) {
            self.throttle.refund(peer, user);
        }
        result
    }

    fn check(
        &self,
        user: &str,
        password: &[u8],
        peer_is_loopback: bool,
        required_scopes: &[String],
        now: SystemTime,
    ) -> Result<VerifiedIdentity, AuthError> {
        let as_token =
            self.tokens.is_some() && (jwt::looks_like_jwt(password) || self.statics.is_empty());
        match &self.tokens {
            Some(tokens) if as_token => {
                let token = std::str::from_utf8(password)
                    .map_err(|_| TokenError::Malformed("the password is not valid UTF-8".into()))?;
                self.bearer(tokens, token, required_scopes, now)
            }
            _ => {
                let identity = self.statics.verify(user, password, peer_is_loopback)?;
                // Static identities have no scopes: a listener that demands
                // some is for tokens only.
                if !required_scopes.is_empty() {
                    return Err(AuthError::StaticOnScopedListener(required_scopes.join(" ")));
                }
                Ok(identity)
            }
        }
    }

    /// Checks a bearer token (an HTTP `Authorization: Bearer` value, the
    /// approval service's callers).
    pub fn authenticate_bearer(
        &self,
        token: &str,
        required_scopes: &[String],
        now: SystemTime,
    ) -> Result<VerifiedIdentity, AuthError> {
        match &self.tokens {
            Some(tokens) => self.bearer(tokens, token, required_scopes, now),
            None => {
                Err(TokenError::UnknownIssuer("(no token issuers are configured)".into()).into())
            }
        }
    }

    fn bearer(
        &self,
        tokens: &TokenVerifier,
        token: &str,
        required_scopes: &[String],
        now: SystemTime,
    ) -> Result<VerifiedIdentity, AuthError> {
        let identity = tokens.verify(token, now)?;
        identity.require_scopes(required_scopes)?;
        Ok(VerifiedIdentity::from_token(identity))
    }
}
