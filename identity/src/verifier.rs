//! Verifying an access token against the configured issuers: which issuer,
//! which key, the signature, then the claims. The order matters: nothing a
//! token says is believed before its signature checks, except the `iss` that
//! picks whose keys to check it with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

impl TokenVerifier {
    /// Verifiers for `settings`, fetching keys through OIDC discovery. No
    /// request is made yet: call [`TokenVerifier::refresh_all`] at start.
    pub fn new(settings: Vec<IssuerSettings>) -> Result<Self, SettingsError> {
        crate::settings::validate_all(&settings)?;
        let mut with_sources = Vec::with_capacity(settings.len());
        for s in settings {
            let source = DiscoveryKeySource::new(&s)
                .map_err(|_| SettingsError::NotAUrl(s.issuer.clone()))?;
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
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.settings.issuer == iss)
            .ok_or_else(|| TokenError::UnknownIssuer(shown(iss)))?;
        let settings = &issuer.settings;
        if !settings.algorithms.iter().any(|a| a == alg_name) {
            return Err(TokenError::AlgorithmNotAllowed(shown(alg_name)));
        }
        check_type(parsed.header.typ.as_deref(), settings.require_at_jwt)?;

        let kid = parsed.header.kid.as_deref();
        let (keys, index) = issuer.keys.key_for(kid, alg).map_err(|e| match e {
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
        check_times(&parsed.claims, now, settings.skew())?;
        check_audience(&parsed.claims, &settings.audiences)?;
        let subject = string_claim(&parsed.claims, "sub")
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("sub"))?;
        let groups = groups_claim(&parsed.claims, &settings.groups_claim)?;
        Ok(TokenIdentity {
            subject: subject.to_string(),
            issuer: settings.issuer.clone(),
            client_id: client_id(&parsed.claims, settings.client_id_claim.as_deref()),
            token_id: string_claim(&parsed.claims, "jti")
                .unwrap_or("")
                .to_string(),
            roles: settings.roles_for(&groups),
            groups,
            scopes: scopes(&parsed.claims),
            expires_at: unix_time(numeric_claim(&parsed.claims, "exp")?.unwrap_or(0.0)),
            expiry_leeway: settings.skew(),
        })
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

fn check_times(
    claims: &Map<String, Value>,
    now: SystemTime,
    skew: Duration,
) -> Result<(), TokenError> {
    let exp = numeric_claim(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let exp = unix_time(exp);
    if now >= exp + skew {
        return Err(TokenError::Expired(exp));
    }
    if let Some(nbf) = numeric_claim(claims, "nbf")? {
        let nbf = unix_time(nbf);
        if now + skew < nbf {
            return Err(TokenError::NotYetValid(nbf));
        }
    }
    if let Some(iat) = numeric_claim(claims, "iat")? {
        let iat = unix_time(iat);
        if now + skew < iat {
            return Err(TokenError::IssuedInFuture(iat));
        }
    }
    Ok(())
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
