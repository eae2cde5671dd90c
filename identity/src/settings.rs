//! One trusted issuer, as the operator writes it in the config (`[[oidc.issuers]]`),
//! checked once at start so that a typo stops the gateway with a reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The signature algorithms Vigil accepts at all. Symmetric (HS*) algorithms
/// are absent on purpose: a shared secret would let anyone holding it mint
/// tokens, and accepting them invites the "public key as HMAC secret" attack.
pub const SUPPORTED_ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// The longest clock skew the config may allow: beyond this, expiry means little.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    /// The issuer URL, exactly as it appears in tokens' `iss` and in its
    /// discovery document. `https://` unless the host is loopback.
    pub issuer: String,
    /// A token must name at least one of these in `aud` (RFC 9068: the
    /// resource indicator the agent asked its token for).
    pub audiences: Vec<String>,
    /// The allow-list of signature algorithms (a subset of RS256, PS256, ES256, EdDSA).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat`, in seconds (at most 300).
    #[serde(default = "default_clock_skew_secs")]
    pub clock_skew_secs: u64,
    /// The claim holding the caller's groups: a name, or a dotted path into
    /// nested objects (`realm_access.roles` for Keycloak).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim naming the OAuth client. Unset: `client_id` (RFC 9068), then
    /// `azp`, `cid` (Okta) or `appid` (Entra ID v1), whichever is present.
    #[serde(default)]
    pub client_id_claim: Option<String>,
    /// Vigil role -> the issuer's groups that grant it. Empty: the issuer's
    /// groups are used as Vigil roles unchanged.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Accept only tokens typed `at+jwt` (RFC 9068). Off: plain JWTs
    /// (`typ` absent or `JWT`) are accepted too, as many IdPs issue them.
    #[serde(default)]
    pub require_at_jwt: bool,
    /// A PEM file of CA certificates to trust for the issuer's HTTPS
    /// endpoints instead of the public web roots (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// An unknown key id triggers a JWKS refresh at most this often (seconds).
    #[serde(default = "default_min_refresh_secs")]
    pub jwks_min_refresh_secs: u64,
    /// Keys are refreshed when older than this (seconds), so that a key the
    /// issuer withdrew stops being accepted.
    #[serde(default = "default_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// If refreshing keeps failing, cached keys are trusted for this long
    /// (seconds) after the last successful fetch; after that tokens of this
    /// issuer are refused until the issuer answers again.
    #[serde(default = "default_max_stale_secs")]
    pub jwks_max_stale_secs: u64,
    /// Timeout of one discovery or JWKS request (milliseconds).
    #[serde(default = "default_http_timeout_ms")]
    pub http_timeout_ms: u64,
}

fn default_algorithms() -> Vec<String> {
    SUPPORTED_ALGORITHMS.iter().map(|s| s.to_string()).collect()
}
fn default_clock_skew_secs() -> u64 {
    60
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_min_refresh_secs() -> u64 {
    30
}
fn default_refresh_secs() -> u64 {
    900
}
fn default_max_stale_secs() -> u64 {
    86_400
}
fn default_http_timeout_ms() -> u64 {
    5_000
}

/// Why an issuer's settings are unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("issuer {0:?}: not a URL")]
    NotAUrl(String),
    #[error("issuer {issuer:?}: {why}")]
    Unusable { issuer: String, why: String },
    #[error("issuer {0:?}: must use https (plain http is accepted only for a loopback host)")]
    NotHttps(String),
    #[error("issuer {0:?} is configured twice")]
    Duplicate(String),
    #[error("issuer {0:?}: audiences must list at least one non-empty audience")]
    NoAudience(String),
    #[error("issuer {issuer:?}: algorithm {alg:?} is not accepted (choose from RS256, PS256, ES256, EdDSA)")]
    Algorithm { issuer: String, alg: String },
    #[error("issuer {0:?}: algorithms must not be empty")]
    NoAlgorithm(String),
    #[error("issuer {0:?}: clock_skew_secs must be at most {MAX_CLOCK_SKEW_SECS}")]
    Skew(String),
    #[error("issuer {issuer:?}: {field} must be positive")]
    Zero { issuer: String, field: &'static str },
    #[error("issuer {issuer:?}: jwks_refresh_secs must not exceed jwks_max_stale_secs")]
    StaleBeforeRefresh { issuer: String },
    #[error("issuer {0:?}: groups_claim must be a claim name or dotted path")]
    GroupsClaim(String),
    #[error("issuer {issuer:?}: role {role:?} lists no groups")]
    EmptyRole { issuer: String, role: String },
}

impl IssuerSettings {
    /// Settings with every default, for `issuer` and `audience` (tests, examples).
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_string(),
            audiences: vec![audience.to_string()],
            algorithms: default_algorithms(),
            clock_skew_secs: default_clock_skew_secs(),
            groups_claim: default_groups_claim(),
            client_id_claim: None,
            roles: BTreeMap::new(),
            require_at_jwt: false,
            ca_file: None,
            jwks_min_refresh_secs: default_min_refresh_secs(),
            jwks_refresh_secs: default_refresh_secs(),
            jwks_max_stale_secs: default_max_stale_secs(),
            http_timeout_ms: default_http_timeout_ms(),
        }
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let issuer = || self.issuer.clone();
        let (scheme, rest) = self
            .issuer
            .split_once("://")
            .ok_or_else(|| SettingsError::NotAUrl(issuer()))?;
        let host_port = rest.split('/').next().unwrap_or("");
        // No user info (`http://localhost@evil.example` is evil.example),
        // query or fragment: an issuer identifier has none (OIDC Discovery §2).
        if host_port.is_empty()
            || self
                .issuer
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '@' | '?' | '#'))
        {
            return Err(SettingsError::NotAUrl(issuer()));
        }
        match scheme {
            "https" => {}
            "http" if is_loopback_host(host_port) => {}
            "http" => return Err(SettingsError::NotHttps(issuer())),
            _ => return Err(SettingsError::NotAUrl(issuer())),
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(SettingsError::NoAudience(issuer()));
        }
        if self.algorithms.is_empty() {
            return Err(SettingsError::NoAlgorithm(issuer()));
        }
        for alg in &self.algorithms {
            if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                return Err(SettingsError::Algorithm {
                    issuer: issuer(),
                    alg: alg.clone(),
                });
            }
        }
        if self.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return Err(SettingsError::Skew(issuer()));
        }
        for (field, value) in [
            ("jwks_min_refresh_secs", self.jwks_min_refresh_secs),
            ("jwks_refresh_secs", self.jwks_refresh_secs),
            ("jwks_max_stale_secs", self.jwks_max_stale_secs),
            ("http_timeout_ms", self.http_timeout_ms),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero {
                    issuer: issuer(),
                    field,
                });
            }
        }
        if self.jwks_refresh_secs > self.jwks_max_stale_secs {
            return Err(SettingsError::StaleBeforeRefresh { issuer: issuer() });
        }
        if self.groups_claim.is_empty() || self.groups_claim.split('.').any(str::is_empty) {
            return Err(SettingsError::GroupsClaim(issuer()));
        }
        for (role, groups) in &self.roles {
            if groups.is_empty() {
                return Err(SettingsError::EmptyRole {
                    issuer: issuer(),
                    role: role.clone(),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn skew(&self) -> Duration {
        Duration::from_secs(self.clock_skew_secs)
    }

    /// The Vigil roles that `groups` grant.
    pub fn roles_for(&self, groups: &[String]) -> Vec<String> {
        if self.roles.is_empty() {
            return groups.to_vec();
        }
        self.roles
            .iter()
            .filter(|(_, granting)| granting.iter().any(|g| groups.contains(g)))
            .map(|(role, _)| role.clone())
            .collect()
    }
}

/// Checks a whole list: each entry valid, no issuer twice.
pub fn validate_all(issuers: &[IssuerSettings]) -> Result<(), SettingsError> {
    let mut seen = BTreeSet::new();
    for settings in issuers {
        settings.validate()?;
        if !seen.insert(settings.issuer.as_str()) {
            return Err(SettingsError::Duplicate(settings.issuer.clone()));
        }
    }
    Ok(())
}

fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        IssuerSettings::new("https://idp.example.org/realms/h", "urn:vigil:ehr")
            .validate()
            .unwrap();
        IssuerSettings::new("http://127.0.0.1:9000", "a")
            .validate()
            .unwrap();
        IssuerSettings::new("http://[::1]:9000", "a")
            .validate()
            .unwrap();
    }

    #[test]
    fn bad_settings_are_named() {
        let base = IssuerSettings::new("https://idp.example.org", "aud");
        let cases: Vec<(IssuerSettings, &str)> = vec![
            (
                IssuerSettings {
                    issuer: "http://idp.example.org".into(),
                    ..base.clone()
                },
                "must use https",
            ),
            (
                IssuerSettings {
                    issuer: "idp.example.org".into(),
                    ..base.clone()
                },
                "not a URL",
            ),
            (
                IssuerSettings {
                    issuer: "http://localhost:80@evil.example.org".into(),
                    ..base.clone()
                },
                "not a URL",
            ),
            (
                IssuerSettings {
                    audiences: vec![],
                    ..base.clone()
                },
                "audiences",
            ),
            (
                IssuerSettings {
                    algorithms: vec!["HS256".into()],
                    ..base.clone()
                },
                "\"HS256\" is not accepted",
            ),
            (
                IssuerSettings {
                    algorithms: vec!["none".into()],
                    ..base.clone()
                },
                "\"none\" is not accepted",
            ),
            (
                IssuerSettings {
                    clock_skew_secs: 3600,
                    ..base.clone()
                },
                "clock_skew_secs",
            ),
            (
                IssuerSettings {
                    jwks_min_refresh_secs: 0,
                    ..base.clone()
                },
                "jwks_min_refresh_secs must be positive",
            ),
            (
                IssuerSettings {
                    groups_claim: "a..b".into(),
                    ..base.clone()
                },
                "groups_claim",
            ),
            (
                IssuerSettings {
                    roles: BTreeMap::from([("analyst".into(), vec![])]),
                    ..base.clone()
                },
                "role \"analyst\" lists no groups",
            ),
        ];
        for (settings, want) in cases {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = validate_all(&[base.clone(), base]).unwrap_err();
        assert!(matches!(err, SettingsError::Duplicate(_)));
    }

    #[test]
    fn roles_map_groups_or_pass_them_through() {
        let mut s = IssuerSettings::new("https://idp", "a");
        let groups = vec!["ehr-analysts".to_string(), "staff".to_string()];
        assert_eq!(s.roles_for(&groups), groups);
        s.roles = BTreeMap::from([
            ("phi-readers".into(), vec!["ehr-analysts".into()]),
            ("dba".into(), vec!["platform-dba".into()]),
        ]);
        assert_eq!(s.roles_for(&groups), vec!["phi-readers".to_string()]);
        assert!(s.roles_for(&[]).is_empty());
    }
}
