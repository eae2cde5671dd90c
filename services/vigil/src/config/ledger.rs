//! `[ledger]`: the log's origin and listeners, body encryption, witnesses
//! and retention.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use vigil_config::Secret;
use vigil_ledger::Keyring;
use vigil_ledger_service::retention::{RetentionPeriod, RetentionPolicy};

use super::Config;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// The log's origin line (C2SP tlog-checkpoint), e.g. "vigil.example.org/ehr".
    /// It also names the checkpoint signing key. Required by the ledger roles.
    #[serde(default)]
    pub origin: String,
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// How often a new checkpoint is signed while entries arrive.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// MiB of complete bottom tiles (64 bytes an entry) the ledger keeps in
    /// its own memory, the newest first, so that a proof needs no disk read
    /// on a host that reclaims idle page cache. 0: none (the page cache
    /// only).
    #[serde(default = "default_tile_cache_mib")]
    pub tile_cache_mib: u64,
    /// SHA-256 (hex) of the bearer tokens that may read event bodies. Empty:
    /// bodies are served to loopback callers only.
    #[serde(default)]
    pub auditor_tokens_sha256: Vec<String>,
    /// A keyring file for encrypting event bodies at rest: one
    /// `<key id> <base64 of 32 bytes>` per line, the first one seals.
    #[serde(default)]
    pub body_keys_file: Option<PathBuf>,
    /// Or: an environment variable holding the keyring text.
    #[serde(default)]
    pub body_keys_env: Option<String>,
    #[serde(default)]
    pub retention: RetentionSection,
    /// TLS with client certificates for the gRPC API. Required when
    /// `grpc_listen` is not a loopback address.
    #[serde(default)]
    pub grpc_tls: Option<GrpcTlsSection>,
    /// Witnesses (C2SP tlog-witness) every new checkpoint is submitted to;
    /// their cosignatures are served with it.
    #[serde(default)]
    pub witnesses: Vec<WitnessSection>,
}

/// `[[ledger.witnesses]]`: where a witness takes checkpoints, and its key.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WitnessSection {
    /// Its submission prefix, e.g. `https://witness.example/`.
    pub url: String,
    /// Its cosigner verifier key (`name+keyid+base64`, algorithm 0x04).
    pub key: String,
}

/// `[ledger.grpc_tls]`: the server's certificate, and the CA whose client
/// certificates may call (mutual TLS: a caller without one is refused during
/// the handshake).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct GrpcTlsSection {
    /// PEM certificate chain, the server certificate first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM certificates of the CAs that sign callers' certificates.
    pub client_ca_file: PathBuf,
}

impl GrpcTlsSection {
    /// The server's TLS settings, read from the files now (so that a missing
    /// or unreadable file stops the start with its name).
    pub fn server_config(&self) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path)
                .with_context(|| format!("ledger.grpc_tls.{what}: cannot read {}", path.display()))
        };
        let (cert, key) = (
            read("cert_file", &self.cert_file)?,
            read("key_file", &self.key_file)?,
        );
        let ca = read("client_ca_file", &self.client_ca_file)?;
        for (what, pem, marker) in [
            ("cert_file", &cert, "CERTIFICATE"),
            ("key_file", &key, "PRIVATE KEY"),
            ("client_ca_file", &ca, "CERTIFICATE"),
        ] {
            if !String::from_utf8_lossy(pem).contains(&format!("{marker}-----")) {
                bail!("ledger.grpc_tls.{what}: no PEM {marker} in the file");
            }
        }
        Ok(tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key))
            .client_ca_root(tonic::transport::Certificate::from_pem(ca))
            .client_auth_optional(false))
    }
}

fn default_http_listen() -> SocketAddr {
    "127.0.0.1:6580".parse().expect("literal address")
}

fn default_grpc_listen() -> SocketAddr {
    "127.0.0.1:6581".parse().expect("literal address")
}

/// What a config without `[ledger]` (a proxy's) has: no origin, so the
/// ledger roles refuse it.
impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            origin: String::new(),
            http_listen: default_http_listen(),
            grpc_listen: default_grpc_listen(),
            checkpoint_interval_ms: default_checkpoint_interval_ms(),
            tile_cache_mib: default_tile_cache_mib(),
            auditor_tokens_sha256: Vec::new(),
            body_keys_file: None,
            body_keys_env: None,
            retention: RetentionSection::default(),
            grpc_tls: None,
            witnesses: Vec::new(),
        }
    }
}

fn default_tile_cache_mib() -> u64 {
    vigil_ledger::tile_cache::DEFAULT_LIMIT_BYTES >> 20
}

fn default_checkpoint_interval_ms() -> u64 {
    250
}

/// When event bodies are deleted (HIPAA: keep six years).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Bodies of entries older than this are deleted (`6y`, `2200d`, ...).
    #[serde(default = "default_older_than")]
    pub older_than: String,
    /// How often the retention job runs (`24h`, `1h`, `90s`, ...).
    #[serde(default = "default_retention_every")]
    pub every: String,
    /// The shortest period any run may use, here or by `vigil retention
    /// prune` (which can only go below it with `--force`, recorded in the
    /// log). Default `6y`.
    #[serde(default = "default_older_than")]
    pub minimum: String,
}

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            enabled: true,
            older_than: default_older_than(),
            every: default_retention_every(),
            minimum: default_older_than(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_older_than() -> String {
    "6y".into()
}

fn default_retention_every() -> String {
    "24h".into()
}

impl Config {
    /// The checks of `[ledger]` alone.
    pub(super) fn validate_ledger(&self) -> anyhow::Result<()> {
        let origin = &self.ledger.origin;
        if origin.chars().any(|c| c.is_whitespace() || c == '+') {
            bail!(
                "ledger.origin {origin:?} must be without spaces or '+' (it names the signing key)"
            );
        }
        if self.ledger.checkpoint_interval_ms == 0 || self.ledger.checkpoint_interval_ms > 1_000 {
            bail!("ledger.checkpoint_interval_ms must be between 1 and 1000");
        }
        vigil_ledger_service::BodyAccess::new(&self.ledger.auditor_tokens_sha256)?;
        self.body_keys_secret().check(false)?;
        let r = &self.ledger.retention;
        let older_than = RetentionPeriod::parse(&r.older_than)
            .map_err(|e| anyhow::anyhow!("ledger.retention.older_than: {e}"))?;
        RetentionPeriod::parse(&r.every)
            .map_err(|e| anyhow::anyhow!("ledger.retention.every: {e}"))?;
        self.witnesses()?;
        let minimum = self.retention_minimum()?;
        RetentionPolicy::new(older_than, minimum, false)
            .map_err(|e| anyhow::anyhow!("ledger.retention.older_than: {e}"))?;
        if self.ledger.http_listen == self.ledger.grpc_listen {
            bail!("ledger.http_listen and ledger.grpc_listen must differ");
        }
        if self.ledger.grpc_tls.is_none() && !self.ledger.grpc_listen.ip().is_loopback() {
            bail!(
                "ledger.grpc_listen {} is not a loopback address: configure [ledger.grpc_tls] \
                 (a certificate and the CA of the callers' client certificates)",
                self.ledger.grpc_listen
            );
        }
        Ok(())
    }

    /// What a role that runs the ledger needs beyond [`Config::validate`]
    /// (`vigil up`, `vigil ledger`). A proxy never sees the body keyring, so
    /// a proxy machine's config need not (and should not) hold it.
    pub(super) fn check_ledger_role(&self) -> anyhow::Result<()> {
        if self.ledger.origin.is_empty() {
            bail!("ledger.origin is required: it names the log and its signing key (e.g. \"vigil.example.org/ehr\")");
        }
        if !self.body_keys_secret().is_configured() {
            bail!(
                "ledger.body_keys_file or ledger.body_keys_env is required: event bodies can \
                 hold PHI and are encrypted at rest (create a keyring with `vigil body-key new`)"
            );
        }
        Ok(())
    }

    pub(super) fn body_keys_secret(&self) -> Secret<'_> {
        Secret::new(
            "ledger.body_keys",
            &self.ledger.body_keys_env,
            &self.ledger.body_keys_file,
        )
    }

    /// The body keyring, read from its file or environment variable.
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        let text = self.body_keys_secret().read_required()?;
        Keyring::parse(&text).context("invalid body keyring")
    }

    /// The retention policy and interval, if retention is enabled.
    pub fn retention(&self) -> Option<(RetentionPolicy, std::time::Duration)> {
        let r = &self.ledger.retention;
        if !r.enabled {
            return None;
        }
        let period = RetentionPeriod::parse(&r.older_than).ok()?;
        let every = RetentionPeriod::parse(&r.every).ok()?;
        let policy = RetentionPolicy::new(period, self.retention_minimum().ok()?, false).ok()?;
        Some((policy, every.as_duration()))
    }

    /// The configured witnesses, keys parsed.
    pub fn witnesses(
        &self,
    ) -> anyhow::Result<Vec<vigil_ledger_service::witnessing::WitnessClient>> {
        self.ledger
            .witnesses
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let key = vigil_ledger::cosignature::CosignatureVerifier::from_vkey_text(&w.key)
                    .map_err(|e| anyhow::anyhow!("ledger.witnesses[{i}].key: {e}"))?;
                Ok(vigil_ledger_service::witnessing::WitnessClient::new(
                    &w.url, key,
                ))
            })
            .collect()
    }

    /// `ledger.retention.minimum`: no run may use a shorter period unless
    /// forced by hand.
    pub fn retention_minimum(&self) -> anyhow::Result<RetentionPeriod> {
        RetentionPeriod::parse(&self.ledger.retention.minimum)
            .map_err(|e| anyhow::anyhow!("ledger.retention.minimum: {e}"))
    }
}
