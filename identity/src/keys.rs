//! One issuer's signing keys: fetched through OIDC discovery, cached, and
//! refreshed when a token names a key id we do not know (rate-limited), or
//! when the cache is older than the refresh interval. Rotation at the issuer
//! is therefore picked up without a restart.
//!
//! Blocking: a refresh makes HTTP requests. Callers on an async runtime run
//! verification on a blocking thread (it is cheap unless a refresh is due).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use openidconnect::IssuerUrl;

use crate::settings::IssuerSettings;
use crate::signature::{Algorithm, PreparedKey};

/// Where an issuer's current key set comes from.
pub trait KeySource: Send + Sync {
    /// The issuer's current keys, or why they could not be had.
    fn fetch(&self) -> Result<CoreJsonWebKeySet, String>;
}

/// The real source: the issuer's discovery document, then its `jwks_uri`
/// (the openidconnect crate checks that the document names the same issuer).
pub struct DiscoveryKeySource {
    issuer: IssuerUrl,
    agent: openidconnect::ureq::Agent,
}

impl DiscoveryKeySource {
    pub fn new(settings: &IssuerSettings) -> Result<Self, String> {
        let issuer = IssuerUrl::new(settings.issuer.clone()).map_err(|e| e.to_string())?;
        let timeout = Duration::from_millis(settings.http_timeout_ms);
        // No redirects: a discovery document must be where the issuer says.
        let mut builder = openidconnect::ureq::AgentBuilder::new()
            .timeout(timeout)
            .redirects(0);
        if let Some(path) = &settings.ca_file {
            builder = builder.tls_config(Arc::new(private_ca_config(path)?));
        }
        Ok(Self {
            issuer,
            agent: builder.build(),
        })
    }
}

impl KeySource for DiscoveryKeySource {
    fn fetch(&self) -> Result<CoreJsonWebKeySet, String> {
        let metadata = CoreProviderMetadata::discover(&self.issuer, &self.agent)
            .map_err(|e| error_chain(&e))?;
        // The keys decide everything: fetched in cleartext, anyone on the
        // path could swap in their own. (The crate follows any jwks_uri.)
        let jwks_uri = metadata.jwks_uri().url();
        let loopback = jwks_uri.host().is_some_and(|h| match h {
            openidconnect::url::Host::Domain(d) => d == "localhost",
            openidconnect::url::Host::Ipv4(ip) => ip.is_loopback(),
            openidconnect::url::Host::Ipv6(ip) => ip.is_loopback(),
        });
        if jwks_uri.scheme() != "https" && !(jwks_uri.scheme() == "http" && loopback) {
            return Err(format!(
                "the discovery document's jwks_uri {jwks_uri} is not https; refusing its keys"
            ));
        }
        Ok(metadata.jwks().clone())
    }
}

/// An error with its sources, on one line (HTTP clients' own errors say
/// only "client error (Connect)"); shared with the MCP gateway's upstream.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn private_ca_config(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What the cache knows right now.
#[derive(Default)]
struct Cached {
    keys: Arc<Vec<PreparedKey>>,
    /// When the keys were last fetched successfully.
    fetched: Option<Instant>,
    /// When a fetch was last tried (successful or not): the rate limit.
    attempted: Option<Instant>,
    last_error: Option<String>,
    /// Bumped whenever a fetch brings a different key set: results verified
    /// under an older generation are not reused.
    generation: u64,
}

/// Why no key could be found for a token.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyLookupError {
    /// The issuer's key set has no key with that id (after a refresh, or
    /// while refreshes are rate-limited).
    UnknownKeyId,
    /// The token names no key and the issuer has several keys for its algorithm.
    Ambiguous,
    /// No usable keys: never fetched, or too stale to trust.
    Unavailable(String),
}

/// The key cache of one issuer.
pub struct IssuerKeys {
    source: Box<dyn KeySource>,
    cached: RwLock<Cached>,
    /// Serialises fetches so that a burst of tokens with a new key id makes
    /// one request, not one each.
    fetching: Mutex<()>,
    min_refresh: Duration,
    refresh_every: Duration,
    max_stale: Duration,
}

impl IssuerKeys {
    pub fn new(source: Box<dyn KeySource>, settings: &IssuerSettings) -> Self {
        Self {
            source,
            cached: RwLock::new(Cached::default()),
            fetching: Mutex::new(()),
            min_refresh: Duration::from_secs(settings.jwks_min_refresh_secs),
            refresh_every: Duration::from_secs(settings.jwks_refresh_secs),
            max_stale: Duration::from_secs(settings.jwks_max_stale_secs),
        }
    }

    /// Fetches the keys now, whatever the rate limit says (at start).
    /// Returns how many keys the issuer publishes.
    pub fn refresh_now(&self) -> Result<usize, String> {
        let _one_at_a_time = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        self.fetch_locked()
    }

    fn fetch_locked(&self) -> Result<usize, String> {
        let result = self.source.fetch();
        let mut cached = self.cached.write().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        cached.attempted = Some(now);
        match result {
            Ok(set) => {
                let n = set.keys().len();
                let keys: Vec<PreparedKey> =
                    set.keys().iter().cloned().map(PreparedKey::new).collect();
                if cached.fetched.is_none() || !PreparedKey::same_set(&cached.keys, &keys) {
                    cached.generation += 1;
                }
                cached.keys = Arc::new(keys);
                cached.fetched = Some(now);
                cached.last_error = None;
                Ok(n)
            }
            Err(e) => {
                cached.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Refreshes unless another fetch was tried within the rate limit (an
    /// unknown key id, or the periodic refresh of old keys).
    fn refresh_if_allowed(&self) {
        let _one_at_a_time = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        // Re-check under the lock: the thread before us may just have fetched.
        let recently = {
            let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
            cached
                .attempted
                .is_some_and(|t| t.elapsed() < self.min_refresh)
        };
        if !recently {
            let _ = self.fetch_locked();
        }
    }

    fn snapshot(&self) -> (Arc<Vec<PreparedKey>>, Option<Instant>, Option<String>, u64) {
        let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
        (
            cached.keys.clone(),
            cached.fetched,
            cached.last_error.clone(),
            cached.generation,
        )
    }

    /// The current key set's generation, after the periodic refresh if one
    /// is due; `None` when the keys are too stale to trust.
    pub fn usable_generation(&self) -> Option<u64> {
        self.refresh_if_old();
        let (_, fetched, _, generation) = self.snapshot();
        fetched
            .is_some_and(|t| t.elapsed() < self.max_stale)
            .then_some(generation)
    }

    fn refresh_if_old(&self) {
        let (_, fetched, _, _) = self.snapshot();
        if fetched.is_none_or(|t| t.elapsed() >= self.refresh_every) {
            self.refresh_if_allowed();
        }
    }

    /// The key a token with `kid` and `alg` must be verified with. Refreshes
    /// (rate-limited) when the keys are old or the key id is unknown.
    pub fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(Arc<Vec<PreparedKey>>, usize, u64), KeyLookupError> {
        self.refresh_if_old();
        match self.find(kid, alg) {
            Err(KeyLookupError::UnknownKeyId) => {
                self.refresh_if_allowed();
                self.find(kid, alg)
            }
            other => other,
        }
    }

    fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(Arc<Vec<PreparedKey>>, usize, u64), KeyLookupError> {
        let (keys, fetched, last_error, generation) = self.snapshot();
        let usable = fetched.is_some_and(|t| t.elapsed() < self.max_stale);
        if !usable {
            let why = last_error.unwrap_or_else(|| "never fetched".into());
            return Err(KeyLookupError::Unavailable(match fetched {
                Some(t) => format!(
                    "the last successful fetch was {} s ago ({why})",
                    t.elapsed().as_secs()
                ),
                None => why,
            }));
        }
        let index = match kid {
            Some(kid) => keys
                .iter()
                .position(|k| k.kid() == Some(kid))
                .ok_or(KeyLookupError::UnknownKeyId)?,
            None => {
                // Without a key id, accept only an unambiguous key: trying
                // every key would make a verification cost as many as there are.
                let mut fitting = keys.iter().enumerate().filter(|(_, k)| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some((i, _)), None) => i,
                    (None, _) => return Err(KeyLookupError::UnknownKeyId),
                    (Some(_), Some(_)) => return Err(KeyLookupError::Ambiguous),
                }
            }
        };
        Ok((keys, index, generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::core::CoreJsonWebKey;
    use openidconnect::JsonWebKeyId;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source whose key ids the test changes, counting fetches.
    struct Scripted {
        kids: Mutex<Vec<&'static str>>,
        fetches: AtomicUsize,
        fail: Mutex<bool>,
    }

    impl KeySource for Arc<Scripted> {
        fn fetch(&self) -> Result<CoreJsonWebKeySet, String> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if *self.fail.lock().unwrap() {
                return Err("connection refused".into());
            }
            let keys = self
                .kids
                .lock()
                .unwrap()
                .iter()
                .map(|kid| {
                    CoreJsonWebKey::new_rsa(
                        vec![0xC5; 256],
                        vec![1, 0, 1],
                        Some(JsonWebKeyId::new(kid.to_string())),
                    )
                })
                .collect();
            Ok(CoreJsonWebKeySet::new(keys))
        }
    }

    fn setup(min_refresh: u64) -> (Arc<Scripted>, IssuerKeys) {
        let source = Arc::new(Scripted {
            kids: Mutex::new(vec!["k1"]),
            fetches: AtomicUsize::new(0),
            fail: Mutex::new(false),
        });
        let mut settings = IssuerSettings::new("https://idp", "a");
        settings.jwks_min_refresh_secs = min_refresh;
        let keys = IssuerKeys::new(Box::new(source.clone()), &settings);
        (source, keys)
    }

    const RS256: Algorithm = Algorithm::Rs256;

    #[test]
    fn an_unknown_kid_refreshes_once_then_is_rate_limited() {
        let (source, keys) = setup(3600);
        assert_eq!(keys.refresh_now(), Ok(1));
        assert!(keys.key_for(Some("k1"), RS256).is_ok());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        // Rotation at the issuer, but the last fetch was just now: limited.
        *source.kids.lock().unwrap() = vec!["k2"];
        assert_eq!(
            keys.key_for(Some("k2"), RS256).unwrap_err(),
            KeyLookupError::UnknownKeyId
        );
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn rotation_is_picked_up_once_the_limit_allows() {
        let (source, keys) = setup(1);
        keys.refresh_now().unwrap();
        *source.kids.lock().unwrap() = vec!["k2"];
        std::thread::sleep(Duration::from_millis(1_100));
        let (set, i, _) = keys.key_for(Some("k2"), RS256).unwrap();
        assert_eq!(set[i].kid(), Some("k2"));
        // The withdrawn key is gone with the refresh.
        assert!(keys.key_for(Some("k1"), RS256).is_err());
    }

    #[test]
    fn no_kid_needs_exactly_one_fitting_key() {
        let (source, keys) = setup(3600);
        keys.refresh_now().unwrap();
        assert!(keys.key_for(None, RS256).is_ok());
        assert_eq!(
            keys.key_for(None, Algorithm::Es256).unwrap_err(),
            KeyLookupError::UnknownKeyId
        );
        *source.kids.lock().unwrap() = vec!["k1", "k2"];
        keys.refresh_now().unwrap();
        assert_eq!(
            keys.key_for(None, RS256).unwrap_err(),
            KeyLookupError::Ambiguous
        );
    }

    #[test]
    fn an_unreachable_issuer_makes_keys_unavailable_with_the_reason() {
        let (source, keys) = setup(3600);
        *source.fail.lock().unwrap() = true;
        assert!(keys.refresh_now().is_err());
        match keys.key_for(Some("k1"), RS256).unwrap_err() {
            KeyLookupError::Unavailable(why) => {
                assert!(why.contains("connection refused"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
