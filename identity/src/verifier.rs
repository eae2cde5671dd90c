//! Verifying an access token against the configured issuers: which issuer,
//! which key, the signature, then the claims. The order matters: nothing a
//! token says is believed before its signature checks, except the `iss` that
//! picks whose keys to check it with.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use serde_json::{Map, Value};

use crate::keys::{DiscoveryKeySource, IssuerKeys, KeyLookupError, KeySource};
use crate::settings::{IssuerSettings, SettingsError};
use crate::signature::Algorithm;
use crate::{jwt, TokenError};

/// Who a valid token says is asking. Carries no part of the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIdentity {
    pub subject: String,
    pub issuer: String,
    /// The OAuth client the token was issued to (empty if the token names none).
    pub client_id: String,
    /// The token's `jti` (empty if it has none).
    pub token_id: String,
    /// The issuer's groups, as the token lists them.
    pub groups: Vec<String>,
    /// The Vigil roles those groups map to (the issuer's `roles` table).
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub expires_at: SystemTime,
    /// The issuer's clock skew: the token is honoured until `expires_at` plus this.
    pub expiry_leeway: Duration,
}

impl TokenIdentity {
    /// Checks that the token grants every scope in `required`.
    pub fn require_scopes(&self, required: &[String]) -> Result<(), TokenError> {
        let missing: Vec<String> = required
            .iter()
            .filter(|s| !self.scopes.contains(s))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(TokenError::MissingScope {
                missing,
                granted: self.scopes.clone(),
            })
        }
    }
}

struct Issuer {
    settings: IssuerSettings,
    keys: IssuerKeys,
}

/// Verifies tokens of any of the configured issuers.
pub struct TokenVerifier {
    issuers: Vec<Issuer>,
    /// Tokens verified before, by SHA-256 of the token: what a repeat
    /// presentation of the same token needs, without a signature check.
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

/// A token that passed every check, under the issuer's key set `generation`.
struct Verified {
    issuer: usize,
    generation: u64,
    times: Times,
    identity: TokenIdentity,
}

/// Past this many remembered tokens the memory is cleared (tokens are
/// short-lived; a full memory means many distinct callers, not repeats).
const MAX_VERIFIED: usize = 4096;

impl TokenVerifier {
    /// Verifiers for `settings`, fetching keys through OIDC discovery. No
    /// request is made yet: call [`TokenVerifier::refresh_all`] at start.
    pub fn new(settings: Vec<IssuerSettings>) -> Result<Self, SettingsError> {
        crate::settings::validate_all(&settings)?;
        let mut with_sources = Vec::with_capacity(settings.len());
        for s in settings {
            let source = DiscoveryKeySource::new(&s).map_err(|why| SettingsError::Unusable {
                issuer: s.issuer.clone(),
                why,
            })?;
            with_sources.push((s, Box::new(source) as Box<dyn KeySource>));
        }
        Self::with_sources(with_sources)
    }

    /// Verifiers whose keys come from the given sources (tests, benches).
    pub fn with_sources(
        settings: Vec<(IssuerSettings, Box<dyn KeySource>)>,
    ) -> Result<Self, SettingsError> {
        let list: Vec<IssuerSettings> = settings.iter().map(|(s, _)| s.clone()).collect();
        crate::settings::validate_all(&list)?;
        Ok(Self {
            issuers: settings
                .into_iter()
                .map(|(settings, source)| Issuer {
                    keys: IssuerKeys::new(source, &settings),
                    settings,
                })
                .collect(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Fetches every issuer's keys now. One result per issuer: how many keys
    /// it publishes, or why they could not be fetched (tokens of that issuer
    /// are refused until a later refresh succeeds).
    pub fn refresh_all(&self) -> Vec<(String, Result<usize, String>)> {
        self.issuers
            .iter()
            .map(|i| (i.settings.issuer.clone(), i.keys.refresh_now()))
            .collect()
    }

    /// Verifies `token` at time `now`. May block on a key refresh.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TokenIdentity, TokenError> {
        // The same token again (a connection pool opening its connections):
        // its signature and claims were checked under keys that are still
        // current; only its validity window is re-checked.
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(identity) = self.recall(&digest, now) {
            return identity;
        }
        let parsed = jwt::parse(token)?;
        let alg_name = parsed.header.alg.as_str();
        let Some(alg) = Algorithm::from_name(alg_name) else {
            return Err(TokenError::AlgorithmNotAllowed(shown(alg_name)));
        };
        if parsed.header.crit.is_some() {
            return Err(TokenError::Malformed(
                "header lists critical extensions Vigil does not understand".into(),
            ));
        }
        let iss = string_claim(&parsed.claims, "iss").ok_or(TokenError::MissingClaim("iss"))?;
        let (issuer_index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.settings.issuer == iss)
            .ok_or_else(|| TokenError::UnknownIssuer(shown(iss)))?;
        let settings = &issuer.settings;
        if !settings.algorithms.iter().any(|a| a == alg_name) {
            return Err(TokenError::AlgorithmNotAllowed(shown(alg_name)));
        }
        check_type(parsed.header.typ.as_deref(), settings.require_at_jwt)?;

        let kid = parsed.header.kid.as_deref();
        let (keys, index, generation) = issuer.keys.key_for(kid, alg).map_err(|e| match e {
            KeyLookupError::UnknownKeyId => TokenError::UnknownKey {
                kid: shown(kid.unwrap_or("(none)")),
                issuer: settings.issuer.clone(),
            },
            KeyLookupError::Ambiguous => TokenError::UnknownKey {
                kid: "(none, and the issuer has several keys)".into(),
                issuer: settings.issuer.clone(),
            },
            KeyLookupError::Unavailable(why) => TokenError::KeysUnavailable {
                issuer: settings.issuer.clone(),
                why,
            },
        })?;
        if !keys[index].verify(alg, parsed.signing_input, &parsed.signature) {
            return Err(TokenError::BadSignature);
        }

        // From here on the claims are the issuer's word.
        let times = Times::of(&parsed.claims)?;
        times.check(now, settings.skew())?;
        check_audience(&parsed.claims, &settings.audiences)?;
        let subject = string_claim(&parsed.claims, "sub")
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("sub"))?;
        let groups = groups_claim(&parsed.claims, &settings.groups_claim)?;
        let identity = TokenIdentity {
            subject: subject.to_string(),
            issuer: settings.issuer.clone(),
            client_id: client_id(&parsed.claims, settings.client_id_claim.as_deref()),
            token_id: string_claim(&parsed.claims, "jti")
                .unwrap_or("")
                .to_string(),
            roles: settings.roles_for(&groups),
            groups,
            scopes: scopes(&parsed.claims),
            expires_at: times.expires,
            expiry_leeway: settings.skew(),
        };
        self.remember(digest, issuer_index, generation, times, &identity);
        Ok(identity)
    }
}

impl TokenVerifier {
    /// Forgets every remembered token (the next presentation of each is
    /// verified in full). For benches and operators' tools.
    pub fn forget_verified(&self) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A remembered token's result, if its issuer's keys have not changed
    /// since (a refetch that brings a different key set forgets it) and the
    /// keys are still usable. Its validity window is checked again.
    fn recall(
        &self,
        digest: &[u8; 32],
        now: SystemTime,
    ) -> Option<Result<TokenIdentity, TokenError>> {
        let (issuer, generation, times, identity) = {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            let hit = verified.get(digest)?;
            (hit.issuer, hit.generation, hit.times, hit.identity.clone())
        };
        let issuer = &self.issuers[issuer];
        if issuer.keys.usable_generation() != Some(generation) {
            return None;
        }
        Some(times.check(now, issuer.settings.skew()).map(|()| identity))
    }

    fn remember(
        &self,
        digest: [u8; 32],
        issuer: usize,
        generation: u64,
        times: Times,
        identity: &TokenIdentity,
    ) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(
            digest,
            Verified {
                issuer,
                generation,
                times,
                identity: identity.clone(),
            },
        );
    }
}

/// Untrusted text from a token, made safe to show and log: escaped, and cut short.
fn shown(text: &str) -> String {
    let escaped = format!("{text:?}");
    if escaped.len() > 80 {
        let cut: String = escaped.chars().take(77).collect();
        format!("{cut}...")
    } else {
        escaped
    }
}

fn check_type(typ: Option<&str>, require_at_jwt: bool) -> Result<(), TokenError> {
    let normalized = typ.map(|t| t.to_ascii_lowercase());
    let ok = match normalized.as_deref() {
        Some("at+jwt") | Some("application/at+jwt") => true,
        None | Some("jwt") | Some("application/jwt") => !require_at_jwt,
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::NotAnAccessToken(shown(typ.unwrap_or("(none)"))))
    }
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// A NumericDate claim (seconds since the epoch; RFC 7519 allows fractions).
fn numeric_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or(TokenError::InvalidClaim(name)),
    }
}

fn unix_time(secs: f64) -> SystemTime {
    if secs <= 0.0 {
        UNIX_EPOCH
    } else {
        UNIX_EPOCH + Duration::from_secs_f64(secs.min(1e11))
    }
}

/// A token's validity window (`exp`, `nbf`, `iat`).
#[derive(Clone, Copy, Debug)]
struct Times {
    expires: SystemTime,
    not_before: Option<SystemTime>,
    issued: Option<SystemTime>,
}

impl Times {
    fn of(claims: &Map<String, Value>) -> Result<Self, TokenError> {
        let exp = numeric_claim(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        Ok(Self {
            expires: unix_time(exp),
            not_before: numeric_claim(claims, "nbf")?.map(unix_time),
            issued: numeric_claim(claims, "iat")?.map(unix_time),
        })
    }

    fn check(&self, now: SystemTime, skew: Duration) -> Result<(), TokenError> {
        if now >= self.expires + skew {
            return Err(TokenError::Expired(self.expires));
        }
        if let Some(nbf) = self.not_before.filter(|&nbf| now + skew < nbf) {
            return Err(TokenError::NotYetValid(nbf));
        }
        if let Some(iat) = self.issued.filter(|&iat| now + skew < iat) {
            return Err(TokenError::IssuedInFuture(iat));
        }
        Ok(())
    }
}

fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), TokenError> {
    let auds: Vec<&str> = match claims.get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(TokenError::InvalidClaim("aud")),
    };
    if auds.iter().any(|a| accepted.iter().any(|x| x == a)) {
        Ok(())
    } else {
        Err(TokenError::WrongAudience {
            got: shown(&auds.join(" ")),
            accepted: accepted.to_vec(),
        })
    }
}

/// Groups from a claim name or dotted path: an array of strings, or one string.
fn groups_claim(claims: &Map<String, Value>, path: &str) -> Result<Vec<String>, TokenError> {
    let mut parts = path.split('.');
    let mut value = parts.next().and_then(|first| claims.get(first));
    for part in parts {
        value = value.and_then(|v| v.get(part));
    }
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenError::InvalidClaim("groups")),
        Some(_) => Err(TokenError::InvalidClaim("groups")),
    }
}

fn client_id(claims: &Map<String, Value>, configured: Option<&str>) -> String {
    let names: &[&str] = match configured {
        Some(name) => &[name][..],
        None => &["client_id", "azp", "cid", "appid"][..],
    };
    names
        .iter()
        .find_map(|n| string_claim(claims, n))
        .unwrap_or("")
        .to_string()
}

/// Scopes from `scope` (RFC 9068: space-separated) or `scp` (an array, as
/// Okta and Entra ID write it).
fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
        (_, Some(Value::Array(list))) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}
