//! The config file (TOML), and the built-in development config of `--dev`.
//!
//! Everything is checked at load time, so that a typo stops `vigil up` with a
//! message naming the problem instead of surfacing at a client's first login.
//! Secrets (the upstream password) are never written in the file itself: it
//! names an environment variable or a file that holds them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Deserialize;
use vigil_ledger::Keyring;
use vigil_ledger_service::retention::{RetentionPeriod, RetentionPolicy};
use vigil_proxy_core::identity::LoginThrottle;
use vigil_proxy_core::identity::{IssuerSettings, TokenVerifier};
use vigil_proxy_core::mask::Masker;
use vigil_proxy_core::{Authenticator, StaticIdentities, StaticIdentity};
use vigil_proxy_postgres::upstream_tls::UpstreamTls;
use vigil_proxy_postgres::{ProxyConfig, UpstreamConfig};
use vigil_runtime::tls::TlsSettings;

use vigil_config::duration::{rewrite_with_units, Renamed};
use vigil_config::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the ledger and its signing key live.
    pub data_dir: PathBuf,
    /// The ledger (`vigil up`, `vigil ledger`). A `vigil proxy` config may
    /// leave it out.
    #[serde(default)]
    pub ledger: LedgerSection,
    #[serde(default)]
    pub postgres: Vec<PostgresSection>,
    /// Static identities (password -> identity). For development and
    /// break-glass accounts; refused unless `allow_static_identities` is true.
    #[serde(default)]
    pub identities: Vec<StaticIdentity>,
    /// Whether `[[identities]]` may be used at all (off by default: in
    /// production every caller is an OIDC identity).
    #[serde(default)]
    pub allow_static_identities: bool,
    /// The OIDC issuers whose access tokens are accepted as passwords.
    #[serde(default)]
    pub oidc: OidcSection,
    /// The key for keyed-hash masking (needed when a policy masks).
    #[serde(default)]
    pub masking: MaskingKeySection,
    /// How events travel from proxies to the ledger (default: embedded).
    #[serde(default)]
    pub bus: BusSection,
    /// The approval service (statements held for review wait for it).
    /// Absent: none, and review rules refuse.
    #[serde(default)]
    pub approvals: Option<vigil_approval_service::settings::ApprovalsSection>,
    /// For `vigil proxy`: the approval service of a Kafka deployment.
    #[serde(default)]
    pub approval_service: Option<vigil_approval_service::settings::ApprovalServiceSection>,
    /// Failed-login limits, password-hashing concurrency, session caps.
    #[serde(default)]
    pub logins: crate::logins::LoginsSection,
    /// How long open sessions may go on after SIGTERM before the gateway
    /// ends them (each records SessionClosed with reason `shutdown`);
    /// units s, m, h. Default 10s.
    #[serde(default)]
    pub shutdown_drain: Option<String>,
    /// A Prometheus `/metrics` endpoint for this process (sessions,
    /// decisions, record latency, outbox depth, ledger size and checkpoint
    /// age, pending operations). The ledger's HTTP API serves the same at
    /// its own `/metrics`; a `vigil proxy` or `vigil approvals serve`
    /// process needs this to be scraped.
    #[serde(default)]
    pub metrics: Option<MetricsSection>,
}

/// `[metrics]`: where this process serves `/metrics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: SocketAddr,
}

/// `[bus]`: the embedded in-process bus (one process, the default), or Kafka
/// (proxies, ledger and approvals as separate processes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSection {
    #[serde(default)]
    pub kind: BusKind,
    /// Kafka: `host:port[,host:port...]`.
    #[serde(default)]
    pub bootstrap: Option<String>,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Partitions and replicas when Vigil creates the topic.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// A silent ledger loses its partitions to a standby after this long.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// How long the producer retries one event before the outbox ships again.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Extra librdkafka properties (security.protocol, ssl.*, sasl.*).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub outbox: OutboxSection,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    #[default]
    Embedded,
    Kafka,
}

/// `[bus.outbox]`: the proxy's durable outbox (Kafka only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// Default: `<data_dir>/outbox`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_outbox_events")]
    pub max_events: u64,
    #[serde(default = "default_outbox_bytes")]
    pub max_bytes: u64,
}

impl Default for OutboxSection {
    fn default() -> Self {
        Self {
            dir: None,
            max_events: default_outbox_events(),
            max_bytes: default_outbox_bytes(),
        }
    }
}

fn default_topic() -> String {
    "vigil.events".into()
}
fn default_partitions() -> i32 {
    6
}
fn default_replication() -> i32 {
    1
}
fn default_group() -> String {
    "vigil-ledger".into()
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_delivery_timeout_ms() -> u64 {
    30_000
}
fn default_outbox_events() -> u64 {
    vigil_bus::outbox::OutboxLimits::default().max_events
}
fn default_outbox_bytes() -> u64 {
    vigil_bus::outbox::OutboxLimits::default().max_bytes
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    #[serde(default)]
    pub issuers: Vec<IssuerSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingKeySection {
    /// A file holding one line of base64 (32 bytes); `vigil up --dev`
    /// creates `<data>/masking.key`.
    #[serde(default)]
    pub hash_key_file: Option<PathBuf>,
    /// Or: an environment variable holding that line.
    #[serde(default)]
    pub hash_key_env: Option<String>,
}

/// The masking key file `vigil up --dev` creates in its data directory.
pub const DEV_MASKING_KEY_FILE: &str = "masking.key";

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
            auditor_tokens_sha256: Vec::new(),
            body_keys_file: None,
            body_keys_env: None,
            retention: RetentionSection::default(),
            grpc_tls: None,
            witnesses: Vec::new(),
        }
    }
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

/// The keyring file `vigil up --dev` creates in its data directory.
pub const DEV_BODY_KEYS_FILE: &str = "ledger-body.keys";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// The connection's name, recorded on every event.
    pub name: String,
    pub listen: SocketAddr,
    /// Scopes an access token must grant to connect here (e.g. `["db:read"]`).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// TLS to clients: a certificate and key (PEM).
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// The policy: a file path, or `builtin:phi-default` (the default) or
    /// `builtin:allow-all`.
    #[serde(default = "default_policy")]
    pub policy: String,
    pub upstream: UpstreamSection,
}

/// A listener's upstream password (`[postgres.upstream] password_env` or
/// `password_file`).
fn upstream_password(pg: &PostgresSection) -> Secret<'_> {
    Secret::new(
        format!("postgres \"{}\": upstream.password", pg.name),
        &pg.upstream.password_env,
        &pg.upstream.password_file,
    )
}

fn default_policy() -> String {
    crate::policy_setup::PHI_DEFAULT.into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, the server certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Refuse clients that do not switch to TLS (default true).
    #[serde(default = "default_true")]
    pub required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub user: String,
    /// Name of an environment variable holding the gateway's password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the gateway's password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// TLS to the upstream database (default: plaintext).
    #[serde(default)]
    pub tls: Option<UpstreamTlsSection>,
    /// Run even though `user` is a superuser or holds CREATEROLE,
    /// BYPASSRLS, REPLICATION or a server file/program role (default
    /// false: such a role is refused at start, since any code the policy
    /// cannot see into would run with those privileges).
    #[serde(default)]
    pub allow_privileged_role: bool,
}

/// TLS from the gateway to the database, as libpq's sslmode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// `require` (encrypted, certificate not checked) or `verify-full`
    /// (certificate chains to `ca_file` and names `server_name`).
    pub mode: UpstreamTlsMode,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the certificate must carry (default: `host`).
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    Require,
    VerifyFull,
}

fn default_pg_port() -> u16 {
    5432
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

/// The name of the development identity and its password.
pub const DEV_IDENTITY: &str = "dev";

/// Durations written with units, and the keys (unit in the name) they
/// replace; both spellings are read.
const DURATIONS: &[Renamed] = &[
    Renamed::millis("ledger", "checkpoint_interval", "checkpoint_interval_ms"),
    Renamed::millis("bus", "session_timeout", "session_timeout_ms"),
    Renamed::millis("bus", "delivery_timeout", "delivery_timeout_ms"),
    Renamed::millis(
        "postgres[].upstream",
        "connect_timeout",
        "connect_timeout_ms",
    ),
    Renamed::secs(
        "logins",
        "forgive_failure_every",
        "forgive_failure_every_secs",
    ),
    Renamed::secs("oidc.issuers[]", "clock_skew", "clock_skew_secs"),
    Renamed::secs(
        "oidc.issuers[]",
        "jwks_min_refresh",
        "jwks_min_refresh_secs",
    ),
    Renamed::secs("oidc.issuers[]", "jwks_refresh", "jwks_refresh_secs"),
    Renamed::secs("oidc.issuers[]", "jwks_max_stale", "jwks_max_stale_secs"),
    Renamed::millis("oidc.issuers[]", "http_timeout", "http_timeout_ms"),
];

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut root: toml::Table = toml::from_str(text)?;
        let before = root.clone();
        rewrite_with_units(&mut root, DURATIONS).map_err(|e| anyhow::anyhow!(e))?;
        // Read from the text when nothing was rewritten: its errors say
        // where in the file they are.
        let config: Config = if root == before {
            toml::from_str(text)?
        } else {
            toml::Value::Table(root).try_into()?
        };
        config.validate()?;
        Ok(config)
    }

    /// The `vigil up --dev` config: no file needed.
    pub fn dev(data_dir: PathBuf) -> Self {
        let body_keys_file = Some(data_dir.join(DEV_BODY_KEYS_FILE));
        let data_dir_for_key = data_dir.clone();
        Config {
            data_dir,
            ledger: LedgerSection {
                origin: "localhost/vigil-dev".into(),
                http_listen: "127.0.0.1:6580".parse().expect("literal address"),
                grpc_listen: "127.0.0.1:6581".parse().expect("literal address"),
                checkpoint_interval_ms: default_checkpoint_interval_ms(),
                auditor_tokens_sha256: Vec::new(),
                body_keys_file,
                body_keys_env: None,
                retention: RetentionSection::default(),
                grpc_tls: None,
                witnesses: Vec::new(),
            },
            postgres: vec![PostgresSection {
                name: "dev".into(),
                listen: "127.0.0.1:6543".parse().expect("literal address"),
                required_scopes: Vec::new(),
                tls: None,
                policy: default_policy(),
                upstream: UpstreamSection {
                    host: "127.0.0.1".into(),
                    port: 5432,
                    user: "postgres".into(),
                    password_env: None,
                    password_file: None,
                    database: None,
                    connect_timeout_ms: default_connect_timeout_ms(),
                    tls: None,
                    // Development only, and the banner says so.
                    allow_privileged_role: true,
                },
            }],
            identities: vec![StaticIdentity {
                name: DEV_IDENTITY.into(),
                password_hash: vigil_proxy_core::identity::hash_password(DEV_IDENTITY.as_bytes()),
                groups: vec!["developers".into()],
                loopback_only: true,
            }],
            allow_static_identities: true,
            oidc: OidcSection::default(),
            masking: MaskingKeySection {
                hash_key_file: Some(data_dir_for_key.join(DEV_MASKING_KEY_FILE)),
                hash_key_env: None,
            },
            bus: BusSection::default(),
            approvals: Some(vigil_approval_service::settings::ApprovalsSection::dev()),
            approval_service: None,
            logins: crate::logins::LoginsSection::default(),
            shutdown_drain: None,
            // The ledger's HTTP API (127.0.0.1:6580) serves /metrics.
            metrics: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.shutdown_drain()?;
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
        let mut names = HashSet::new();
        let mut addrs = HashSet::from([self.ledger.http_listen, self.ledger.grpc_listen]);
        if addrs.len() != 2 {
            bail!("ledger.http_listen and ledger.grpc_listen must differ");
        }
        if self.ledger.grpc_tls.is_none() && !self.ledger.grpc_listen.ip().is_loopback() {
            bail!(
                "ledger.grpc_listen {} is not a loopback address: configure [ledger.grpc_tls] \
                 (a certificate and the CA of the callers' client certificates)",
                self.ledger.grpc_listen
            );
        }
        for pg in &self.postgres {
            if pg.name.is_empty() || !names.insert(pg.name.as_str()) {
                bail!(
                    "postgres listener names must be unique and non-empty ({:?})",
                    pg.name
                );
            }
            if !addrs.insert(pg.listen) {
                bail!(
                    "postgres \"{}\": listen address {} is used twice",
                    pg.name,
                    pg.listen
                );
            }
            upstream_password(pg).check(false)?;
        }
        StaticIdentities::new(self.identities.clone())?;
        if !self.identities.is_empty() && !self.allow_static_identities {
            bail!(
                "[[identities]] are listed but allow_static_identities is false: static \
                 identities are for development and break-glass use; set \
                 allow_static_identities = true to use them"
            );
        }
        vigil_proxy_core::identity::settings::validate_all(&self.oidc.issuers)
            .context("[[oidc.issuers]]")?;
        for pg in &self.postgres {
            if !pg.required_scopes.is_empty() && self.oidc.issuers.is_empty() {
                bail!(
                    "postgres \"{}\": required_scopes needs [[oidc.issuers]] (static identities have no scopes)",
                    pg.name
                );
            }
        }
        self.masking_key_secret().check(false)?;
        if let Some(a) = &self.approval_service {
            a.validate()?;
        }
        self.logins.validate()?;
        if let Some(a) = &self.approvals {
            a.validate()?;
            if !addrs.insert(a.grpc_listen) {
                bail!("approvals.grpc_listen {} is used twice", a.grpc_listen);
            }
            if let Some(c) = &a.callback {
                if !addrs.insert(c.listen) {
                    bail!("approvals.callback.listen {} is used twice", c.listen);
                }
            }
        }
        self.validate_bus()
    }

    fn validate_bus(&self) -> anyhow::Result<()> {
        let bus = &self.bus;
        match (bus.kind, &bus.bootstrap) {
            (BusKind::Kafka, None) => {
                bail!("bus.kind = \"kafka\" needs bus.bootstrap (host:port of the brokers)")
            }
            (BusKind::Kafka, Some(b)) if b.trim().is_empty() => bail!("bus.bootstrap is empty"),
            (BusKind::Embedded, Some(_)) => {
                bail!("bus.bootstrap is set but bus.kind is not \"kafka\"")
            }
            (BusKind::Embedded, None) => return Ok(()),
            _ => {}
        }
        if bus.topic.is_empty() || bus.consumer_group.is_empty() {
            bail!("bus.topic and bus.consumer_group must not be empty");
        }
        if bus.partitions < 1 || bus.replication_factor < 1 {
            bail!("bus.partitions and bus.replication_factor must be at least 1");
        }
        if !(1_000..=300_000).contains(&bus.session_timeout_ms) {
            bail!("bus.session_timeout_ms must be between 1000 and 300000");
        }
        if !(1_000..=3_600_000).contains(&bus.delivery_timeout_ms) {
            bail!("bus.delivery_timeout_ms must be between 1000 and 3600000");
        }
        if bus.outbox.max_events == 0 || bus.outbox.max_bytes < 1024 {
            bail!("bus.outbox.max_events must be at least 1 and max_bytes at least 1024");
        }
        Ok(())
    }

    /// What a role that runs proxies needs beyond [`Config::validate`]
    /// (`vigil up`, `vigil proxy`; a ledger-only process has no listeners).
    fn check_proxy_role(&self) -> anyhow::Result<()> {
        if self.postgres.is_empty() {
            bail!("no [[postgres]] listener configured: the gateway would have nothing to do");
        }
        if self.oidc.issuers.is_empty() && self.identities.is_empty() {
            bail!("nobody can log in: configure [[oidc.issuers]] (or, for development, static [[identities]])");
        }
        Ok(())
    }

    /// Everything `roles` needs beyond [`Config::validate`].
    pub fn check_role(&self, roles: crate::up::Roles) -> anyhow::Result<()> {
        use crate::up::Roles;
        if roles != Roles::All && self.kafka().is_none() {
            bail!("`vigil proxy`, `vigil ledger` and `vigil approvals serve` need [bus] kind = \"kafka\" (one process on the embedded bus is `vigil up`)");
        }
        if roles == Roles::Approvals {
            let Some(approvals) = &self.approvals else {
                bail!("`vigil approvals serve` needs an [approvals] section");
            };
            // Its proxies are in other processes and must prove they are.
            if approvals.proxy_tokens_sha256.is_empty() {
                bail!(
                    "`vigil approvals serve` needs approvals.proxy_tokens_sha256: the proxies \
                     call it with a token, from loopback too (`vigil approvals proxy-token` makes one)"
                );
            }
            return Ok(());
        }
        if roles != Roles::Ledger {
            self.check_proxy_role()?;
        }
        if roles != Roles::Proxy {
            self.check_ledger_role()?;
        }
        Ok(())
    }

    /// What a role that runs the ledger needs beyond [`Config::validate`]
    /// (`vigil up`, `vigil ledger`). A proxy never sees the body keyring, so
    /// a proxy machine's config need not (and should not) hold it.
    fn check_ledger_role(&self) -> anyhow::Result<()> {
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

    /// The Kafka settings of `[bus]`, if the bus is Kafka.
    pub fn kafka(&self) -> Option<vigil_bus::kafka::KafkaSettings> {
        let bus = &self.bus;
        let bootstrap = match (bus.kind, &bus.bootstrap) {
            (BusKind::Kafka, Some(b)) => b.clone(),
            _ => return None,
        };
        let mut k = vigil_bus::kafka::KafkaSettings::new(bootstrap, bus.topic.clone());
        k.partitions = bus.partitions;
        k.replication_factor = bus.replication_factor;
        k.consumer_group = bus.consumer_group.clone();
        k.session_timeout = std::time::Duration::from_millis(bus.session_timeout_ms);
        k.delivery_timeout = std::time::Duration::from_millis(bus.delivery_timeout_ms);
        k.properties = bus.properties.clone();
        Some(k)
    }

    /// Where the proxy's outbox lives, and its limits.
    pub fn outbox(&self) -> (PathBuf, vigil_bus::outbox::OutboxLimits) {
        let o = &self.bus.outbox;
        (
            o.dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("outbox")),
            vigil_bus::outbox::OutboxLimits {
                max_events: o.max_events,
                max_bytes: o.max_bytes,
            },
        )
    }

    /// Every listener applies this policy instead of its own (`--policy`).
    pub fn override_policy(&mut self, spec: &str) {
        for pg in &mut self.postgres {
            pg.policy = spec.to_string();
        }
    }

    /// The masking key; `None` when no key is configured. A configured key
    /// that cannot be read is an error.
    fn masking_key(&self) -> anyhow::Result<Option<[u8; 32]>> {
        let Some(text) = self.masking_key_secret().read()? else {
            return Ok(None);
        };
        crate::policy_setup::parse_masking_key(&text)
            .context("invalid masking key")
            .map(Some)
    }

    fn masking_key_secret(&self) -> Secret<'_> {
        Secret::new(
            "masking.hash_key",
            &self.masking.hash_key_env,
            &self.masking.hash_key_file,
        )
    }

    fn body_keys_secret(&self) -> Secret<'_> {
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
    /// The drain period of a graceful shutdown (`shutdown_drain`).
    pub fn shutdown_drain(&self) -> anyhow::Result<std::time::Duration> {
        match &self.shutdown_drain {
            None => Ok(std::time::Duration::from_secs(10)),
            Some(text) => RetentionPeriod::parse(text)
                .map(|p| p.as_duration())
                .map_err(|e| anyhow::anyhow!("shutdown_drain: {e}")),
        }
    }

    pub fn retention_minimum(&self) -> anyhow::Result<RetentionPeriod> {
        RetentionPeriod::parse(&self.ledger.retention.minimum)
            .map_err(|e| anyhow::anyhow!("ledger.retention.minimum: {e}"))
    }

    /// Who may log in: the static identities (if allowed) and the token
    /// verifier of the configured issuers (keys not fetched yet).
    pub fn authenticator(&self) -> anyhow::Result<Authenticator> {
        let statics = if self.allow_static_identities {
            StaticIdentities::new(self.identities.clone())?.with_gate(self.logins.gate())
        } else {
            StaticIdentities::default()
        };
        let tokens = if self.oidc.issuers.is_empty() {
            None
        } else {
            Some(Arc::new(
                TokenVerifier::new(self.oidc.issuers.clone()).context("[[oidc.issuers]]")?,
            ))
        };
        Ok(Authenticator::new(statics, tokens)
            .with_throttle(LoginThrottle::new(self.logins.throttle())))
    }

    /// The proxy configs, with upstream passwords read from their sources.
    pub fn proxies(&self) -> anyhow::Result<Vec<(SocketAddr, ProxyConfig)>> {
        let masking_key = self.masking_key()?;
        self.postgres
            .iter()
            .map(|pg| {
                let up = &pg.upstream;
                let password = upstream_password(pg).read()?;
                let policy = crate::policy_setup::load_policy(&pg.policy)
                    .with_context(|| format!("postgres \"{}\"", pg.name))?;
                let key = match masking_key {
                    Some(key) => key,
                    None if policy.masks_anything() => bail!(
                        "postgres \"{}\": policy \"{}\" masks results, so masking.hash_key_file \
                         or masking.hash_key_env is required",
                        pg.name,
                        policy.name()
                    ),
                    // Nothing is masked: the key is never used.
                    None => [0; 32],
                };
                let masker = Masker::new(key, &policy.masking().detectors).map_err(|e| {
                    anyhow::anyhow!(
                        "postgres \"{}\": policy \"{}\": {e}",
                        pg.name,
                        policy.name()
                    )
                })?;
                let upstream_tls = match &up.tls {
                    None => None,
                    Some(t) => {
                        let ca = match &t.ca_file {
                            Some(path) => Some(std::fs::read(path).with_context(|| {
                                format!("postgres \"{}\": cannot read {}", pg.name, path.display())
                            })?),
                            None => None,
                        };
                        let name = t.server_name.clone().unwrap_or_else(|| up.host.clone());
                        Some(
                            UpstreamTls::new(
                                t.mode == UpstreamTlsMode::VerifyFull,
                                ca.as_deref(),
                                &name,
                            )
                            .map_err(|e| {
                                anyhow::anyhow!("postgres \"{}\": upstream TLS: {e}", pg.name)
                            })?,
                        )
                    }
                };
                let tls = match &pg.tls {
                    None => None,
                    Some(t) => {
                        let read = |path: &Path| {
                            std::fs::read(path).with_context(|| {
                                format!("postgres \"{}\": cannot read {}", pg.name, path.display())
                            })
                        };
                        let (cert, key) = (read(&t.cert_file)?, read(&t.key_file)?);
                        Some(
                            TlsSettings::from_pem(&cert, &key, t.required).with_context(|| {
                                format!("postgres \"{}\": unusable TLS certificate or key", pg.name)
                            })?,
                        )
                    }
                };
                Ok((
                    pg.listen,
                    ProxyConfig {
                        name: pg.name.clone(),
                        upstream: UpstreamConfig {
                            host: up.host.clone(),
                            port: up.port,
                            user: up.user.clone(),
                            password,
                            database: up.database.clone(),
                            connect_timeout_ms: up.connect_timeout_ms,
                            tls: upstream_tls,
                        },
                        required_scopes: pg.required_scopes.clone(),
                        tls,
                        policy,
                        masker: Arc::new(masker),
                        approvals: None,
                        limits: self.logins.sessions(),
                    },
                ))
            })
            .collect()
    }

    /// What this config runs, for `vigil check-config` and the start banner.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "data directory: {}\nledger: origin {}, HTTP (tlog-tiles) on {}, gRPC on {} ({})\n",
            self.data_dir.display(),
            self.ledger.origin,
            self.ledger.http_listen,
            self.ledger.grpc_listen,
            if self.ledger.grpc_tls.is_some() {
                "TLS, client certificates required"
            } else {
                "plaintext, loopback only"
            }
        );
        let keys = self.body_keys_secret().describe();
        out.push_str(&format!(
            "event bodies encrypted at rest, keyring from {keys}\n"
        ));
        let r = &self.ledger.retention;
        if r.enabled {
            out.push_str(&format!(
                "retention: bodies older than {} deleted, checked every {} (minimum period {})\n",
                r.older_than, r.every, r.minimum
            ));
        } else {
            out.push_str("retention: disabled (bodies are kept forever)\n");
        }
        for pg in &self.postgres {
            out.push_str(&format!(
                "postgres \"{}\": clients on {} -> {}:{} as {}, policy {}\n",
                pg.name, pg.listen, pg.upstream.host, pg.upstream.port, pg.upstream.user, pg.policy
            ));
        }
        if let Some(a) = &self.approvals {
            out.push_str(&format!(
                "approvals: gRPC API on {} ({}), book in {}, {} webhook(s){}\n",
                a.grpc_listen,
                if a.grpc_tls.is_some() {
                    "TLS"
                } else {
                    "plaintext, loopback only"
                },
                a.dir(&self.data_dir).display(),
                a.webhooks.len(),
                a.callback
                    .as_ref()
                    .map(|c| format!(", signed callbacks on {}", c.listen))
                    .unwrap_or_default()
            ));
        } else {
            out.push_str("approvals: none (statements held for review are refused)\n");
        }
        for issuer in &self.oidc.issuers {
            out.push_str(&format!(
                "OIDC issuer {}: audiences {}, algorithms {}\n",
                issuer.issuer,
                issuer.audiences.join(", "),
                issuer.algorithms.join(", ")
            ));
        }
        if let Some(k) = self.kafka() {
            let (dir, limits) = self.outbox();
            out.push_str(&format!(
                "bus: Kafka {} topic {} (group {}); proxy outbox {} (up to {} events, {} bytes)\n",
                k.bootstrap,
                k.topic,
                k.consumer_group,
                dir.display(),
                limits.max_events,
                limits.max_bytes
            ));
        } else {
            out.push_str("bus: embedded (one process)\n");
        }
        if self.allow_static_identities {
            out.push_str(&format!("static identities: {}", self.identities.len()));
        } else {
            out.push_str("static identities: off");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
data_dir = "/tmp/x"
[ledger]
origin = "vigil.example.org/ehr"
http_listen = "127.0.0.1:7580"
grpc_listen = "127.0.0.1:7581"
body_keys_env = "VIGIL_TEST_BODY_KEYS"
[[postgres]]
name = "ehr"
listen = "127.0.0.1:7543"
policy = "builtin:allow-all"
upstream = { host = "127.0.0.1", user = "postgres" }
[[oidc.issuers]]
issuer = "https://idp.example.org/realms/hospital"
audiences = ["urn:vigil:ehr"]
"#;

    /// The TOML blocks (`name: |` then indented lines) of a ConfigMap.
    fn configmap_blocks(yaml: &str) -> Vec<(String, String)> {
        let mut blocks = Vec::new();
        let mut lines = yaml.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(name) = line.trim().strip_suffix(": |") {
                let mut body = String::new();
                while let Some(next) = lines.next_if(|l| l.starts_with("    ") || l.is_empty()) {
                    body.push_str(next.trim_start_matches("    "));
                    body.push('\n');
                }
                blocks.push((name.to_string(), body));
            }
        }
        blocks
    }

    #[test]
    fn grpc_tls_files_that_are_missing_or_not_pem_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ok.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key = dir.path().join("ok.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let missing = dir.path().join("missing.pem");
        let cases = [
            (
                (&missing, &key, &pem),
                "ledger.grpc_tls.cert_file: cannot read",
            ),
            (
                (&pem, &missing, &pem),
                "ledger.grpc_tls.key_file: cannot read",
            ),
            (
                (&pem, &key, &missing),
                "ledger.grpc_tls.client_ca_file: cannot read",
            ),
            ((&junk, &key, &pem), "cert_file: no PEM CERTIFICATE"),
            ((&pem, &junk, &pem), "key_file: no PEM PRIVATE KEY"),
            ((&pem, &key, &junk), "client_ca_file: no PEM CERTIFICATE"),
        ];
        for ((cert, key, ca), want) in cases {
            let section = GrpcTlsSection {
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_ca_file: ca.clone(),
            };
            let err = format!("{:#}", section.server_config().unwrap_err());
            assert!(err.contains(want), "want {want:?}, got {err:?}");
        }
    }

    #[test]
    fn a_grpc_listener_off_loopback_needs_tls() {
        let open = GOOD.replace(
            "grpc_listen = \"127.0.0.1:7581\"",
            "grpc_listen = \"0.0.0.0:7581\"",
        );
        let err = format!("{:#}", Config::parse(&open).unwrap_err());
        assert!(err.contains("[ledger.grpc_tls]"), "{err}");
        let with_tls = format!(
            "{open}\n[ledger.grpc_tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nclient_ca_file = \"/ca.pem\"\n"
        );
        // Appended at the end, the table still belongs to [ledger].
        let parsed = Config::parse(&with_tls);
        assert!(parsed.is_ok(), "{:#}", parsed.unwrap_err());
    }

    #[test]
    fn the_kubernetes_configs_are_valid_for_their_roles() {
        let blocks = configmap_blocks(include_str!("../../../deploy/k8s/config.yaml"));
        assert_eq!(blocks.len(), 3, "{blocks:?}");
        for (name, text) in blocks {
            let config = Config::parse(&text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let role = match name.as_str() {
                "ledger.toml" => crate::up::Roles::Ledger,
                "proxy.toml" => crate::up::Roles::Proxy,
                "approvals.toml" => crate::up::Roles::Approvals,
                other => panic!("unexpected block {other}"),
            };
            config
                .check_role(role)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../deploy/vigil.example.toml");
        let config = Config::parse(text).expect("deploy/vigil.example.toml must stay valid");
        assert!(!config.postgres.is_empty());
    }

    #[test]
    fn durations_take_units_and_the_older_keys_still_work() {
        let with_units = GOOD
            .replace(
                "body_keys_env",
                "checkpoint_interval = \"100ms\"\nbody_keys_env",
            )
            .replace(
                "user = \"postgres\" }",
                "user = \"postgres\", connect_timeout = \"3s\" }",
            )
            .replace(
                "audiences = [\"urn:vigil:ehr\"]",
                "audiences = [\"urn:vigil:ehr\"]\nclock_skew = \"2m\"\njwks_refresh = \"1h\"\nhttp_timeout = \"2s\"",
            )
            + "[bus]\nsession_timeout = \"15s\"\n[logins]\nforgive_failure_every = \"10s\"\n";
        let c = Config::parse(&with_units).unwrap();
        assert_eq!(c.ledger.checkpoint_interval_ms, 100);
        assert_eq!(c.postgres[0].upstream.connect_timeout_ms, 3000);
        assert_eq!(c.bus.session_timeout_ms, 15_000);
        let issuer = &c.oidc.issuers[0];
        assert_eq!(
            (
                issuer.clock_skew_secs,
                issuer.jwks_refresh_secs,
                issuer.http_timeout_ms
            ),
            (120, 3600, 2000)
        );
        let older = GOOD.replace(
            "body_keys_env",
            "checkpoint_interval_ms = 100\nbody_keys_env",
        );
        assert_eq!(
            Config::parse(&older).unwrap().ledger.checkpoint_interval_ms,
            100
        );
        let both = GOOD.replace(
            "body_keys_env",
            "checkpoint_interval = \"1s\"\ncheckpoint_interval_ms = 100\nbody_keys_env",
        );
        let err = format!("{:#}", Config::parse(&both).unwrap_err());
        assert!(
            err.contains("ledger.checkpoint_interval or the older ledger.checkpoint_interval_ms"),
            "{err}"
        );
        let unitless = GOOD.replace(
            "body_keys_env",
            "checkpoint_interval = \"100\"\nbody_keys_env",
        );
        let err = format!("{:#}", Config::parse(&unitless).unwrap_err());
        assert!(err.contains("has no unit"), "{err}");
    }

    #[test]
    fn a_minimal_config_parses() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.postgres[0].upstream.port, 5432);
        assert_eq!(c.ledger.checkpoint_interval_ms, 250);
    }

    #[test]
    fn a_proxy_config_needs_no_ledger_table_but_a_ledger_does() {
        use crate::up::Roles;
        let proxy = r#"
data_dir = "/tmp/p"
allow_static_identities = true
[[identities]]
name = "agent"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$iqsy4O4Ol4VAH/VXv6VdpA$1SwGaLpokOXrpFNH2hvPVwbl941eoFPEYyCxTF0kZnc"
[[postgres]]
name = "ehr"
listen = "127.0.0.1:7543"
policy = "builtin:allow-all"
upstream = { host = "127.0.0.1", user = "postgres" }
[bus]
kind = "kafka"
bootstrap = "127.0.0.1:9092"
"#;
        let c = Config::parse(proxy).unwrap();
        c.check_role(Roles::Proxy).unwrap();
        let err = format!("{:#}", c.check_role(Roles::Ledger).unwrap_err());
        assert!(err.contains("ledger.origin is required"), "{err}");
        let err = format!("{:#}", c.check_role(Roles::All).unwrap_err());
        assert!(err.contains("ledger.origin is required"), "{err}");
        // Without Kafka, a proxy-only process has nowhere to send events.
        let embedded = proxy.split("[bus]").next().unwrap();
        let err = format!(
            "{:#}",
            Config::parse(embedded)
                .unwrap()
                .check_role(Roles::Proxy)
                .unwrap_err()
        );
        assert!(err.contains("need [bus] kind = \"kafka\""), "{err}");
    }

    #[test]
    fn broken_configs_are_refused_with_a_reason() {
        let cases = [
            (
                "unknown key",
                GOOD.replace("name = \"ehr\"", "name = \"ehr\"\nbogus = 1"),
                "unknown field",
            ),
            (
                "bad address",
                GOOD.replace("127.0.0.1:7543", "nowhere"),
                "invalid socket address",
            ),
            (
                "no listeners",
                GOOD.split("[[postgres]]").next().unwrap().to_string(),
                "no [[postgres]]",
            ),
            (
                "no origin",
                GOOD.replace("origin = \"vigil.example.org/ehr\"", ""),
                "ledger.origin is required",
            ),
            (
                "origin with space",
                GOOD.replace("vigil.example.org/ehr", "a b"),
                "ledger.origin",
            ),
            (
                "same port twice",
                GOOD.replace("7543", "7580"),
                "used twice",
            ),
            ("not toml", "data_dir = ".to_string(), "TOML parse error"),
            (
                "kafka without brokers",
                format!("{GOOD}\n[bus]\nkind = \"kafka\"\n"),
                "needs bus.bootstrap",
            ),
            (
                "brokers without kafka",
                format!("{GOOD}\n[bus]\nbootstrap = \"127.0.0.1:9092\"\n"),
                "bus.kind is not",
            ),
            (
                "unknown bus kind",
                format!("{GOOD}\n[bus]\nkind = \"rabbit\"\n"),
                "unknown variant `rabbit`",
            ),
            (
                "empty outbox",
                format!("{GOOD}\n[bus]\nkind = \"kafka\"\nbootstrap = \"b:9092\"\n[bus.outbox]\nmax_events = 0\n"),
                "bus.outbox.max_events",
            ),
            (
                "silly session timeout",
                format!("{GOOD}\n[bus]\nkind = \"kafka\"\nbootstrap = \"b:9092\"\nsession_timeout_ms = 5\n"),
                "bus.session_timeout_ms",
            ),
            (
                "no body keys",
                GOOD.replace("body_keys_env = \"VIGIL_TEST_BODY_KEYS\"", ""),
                "body_keys_file or ledger.body_keys_env is required",
            ),
            (
                "bad retention",
                GOOD.replace(
                    "body_keys_env = \"VIGIL_TEST_BODY_KEYS\"",
                    "body_keys_env = \"K\"\n[ledger.retention]\nolder_than = \"6 years\"",
                ),
                "ledger.retention.older_than",
            ),
            (
                "retention below its minimum",
                GOOD.replace(
                    "body_keys_env = \"VIGIL_TEST_BODY_KEYS\"",
                    "body_keys_env = \"K\"\n[ledger.retention]\nolder_than = \"30d\"",
                ),
                "shorter than the configured minimum 6y",
            ),
            (
                "bad retention minimum",
                GOOD.replace(
                    "body_keys_env = \"VIGIL_TEST_BODY_KEYS\"",
                    "body_keys_env = \"K\"\n[ledger.retention]\nminimum = \"0d\"",
                ),
                "ledger.retention.minimum",
            ),
            (
                "plaintext hash",
                format!("{GOOD}\n[[identities]]\nname = \"a\"\npassword_hash = \"secret\"\n"),
                "not an Argon2",
            ),
            (
                "static identities not allowed",
                format!(
                    "{GOOD}\n[[identities]]\nname = \"a\"\npassword_hash = \"{}\"\n",
                    vigil_proxy_core::identity::hash_password(b"a")
                ),
                "allow_static_identities is false",
            ),
            (
                "nobody can log in",
                GOOD.split("[[oidc.issuers]]").next().unwrap().to_string(),
                "nobody can log in",
            ),
            (
                "plain-http issuer",
                GOOD.replace("https://idp.example.org", "http://idp.example.org"),
                "must use https",
            ),
            (
                "symmetric algorithm",
                format!("{GOOD}algorithms = [\"RS256\", \"HS256\"]\n"),
                "\"HS256\" is not accepted",
            ),
            (
                "unknown issuer key",
                format!("{GOOD}audience = \"x\"\n"),
                "unknown field `audience`",
            ),
            (
                "scopes without issuers",
                format!(
                    "allow_static_identities = true\n{}[[identities]]\nname = \"a\"\npassword_hash = \"{}\"\n",
                    GOOD.split("[[oidc.issuers]]")
                        .next()
                        .unwrap()
                        .replace("policy = ", "required_scopes = [\"db:read\"]\npolicy = "),
                    vigil_proxy_core::identity::hash_password(b"a")
                ),
                "required_scopes needs [[oidc.issuers]]",
            ),
            (
                "bad token hash",
                GOOD.replace(
                    "grpc_listen = \"127.0.0.1:7581\"",
                    "grpc_listen = \"127.0.0.1:7581\"\nauditor_tokens_sha256 = [\"zz\"]",
                ),
                "64 hex",
            ),
        ];
        for (name, text, expected) in cases {
            let parsed =
                Config::parse(&text).and_then(|c| c.check_role(crate::up::Roles::All).map(|()| c));
            let err = format!("{:#}", parsed.expect_err(name));
            assert!(err.contains(expected), "{name}: {err}");
        }
    }

    #[test]
    fn dev_config_is_valid_and_loopback_only() {
        let c = Config::dev(PathBuf::from("vigil-data"));
        c.validate().unwrap();
        assert!(c.identities.iter().all(|i| i.loopback_only));
        assert!(c.allow_static_identities);
        assert!(c.postgres.iter().all(|p| p.listen.ip().is_loopback()));
    }

    #[test]
    fn unusable_tls_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        for (cert, want) in [
            (
                "/nonexistent/cert.pem".to_string(),
                "cannot read /nonexistent/cert.pem",
            ),
            (
                junk.display().to_string(),
                "unusable TLS certificate or key",
            ),
        ] {
            let text = GOOD.replace(
                "listen = \"127.0.0.1:7543\"",
                &format!(
                    "listen = \"127.0.0.1:7543\"\ntls = {{ cert_file = \"{cert}\", key_file = \"{}\" }}",
                    junk.display()
                ),
            );
            let err = format!("{:#}", Config::parse(&text).unwrap().proxies().unwrap_err());
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn a_masking_policy_needs_a_masking_key_and_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let phi = GOOD.replace("builtin:allow-all", "builtin:phi-default");
        let err = format!("{:#}", Config::parse(&phi).unwrap().proxies().unwrap_err());
        assert!(
            err.contains("masking.hash_key_file or masking.hash_key_env is required"),
            "{err}"
        );

        let key = dir.path().join("masking.key");
        std::fs::write(&key, crate::policy_setup::new_masking_key_line()).unwrap();
        let with_key = format!("{phi}\n[masking]\nhash_key_file = \"{}\"\n", key.display());
        let proxies = Config::parse(&with_key).unwrap().proxies().unwrap();
        assert_eq!(proxies[0].1.policy.name(), "phi-default");

        let bad = dir.path().join("bad-policy.toml");
        for (text, want) in [
            ("name = \"x\"\ndefault = \"maybe\"", "unknown variant"),
            ("name = \"x\"\ndefault = \"deny\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\nkinds = [\"drop\"]\ncolour = \"red\"", "unknown field"),
            ("name = \"x\"\ndefault = \"deny\"\n[limits]\nmax_rows = 0", "max_rows must be at least 1"),
            ("name = \"x\"\ndefault = \"deny\"\n[masking.detectors]\npatterns = { mrn = [\"\"] }", "mrn"),
        ] {
            std::fs::write(&bad, text).unwrap();
            let cfg = with_key.replace("builtin:phi-default", &bad.display().to_string());
            let err = format!("{:#}", Config::parse(&cfg).unwrap().proxies().unwrap_err());
            assert!(err.contains(want) && err.contains("postgres \"ehr\""), "{text}: {err}");
        }
        let missing = with_key.replace("builtin:phi-default", "/nonexistent/policy.toml");
        let err = format!(
            "{:#}",
            Config::parse(&missing).unwrap().proxies().unwrap_err()
        );
        assert!(
            err.contains("cannot read policy file /nonexistent/policy.toml"),
            "{err}"
        );
    }

    #[test]
    fn upstream_tls_settings_are_checked() {
        for (tls, want) in [
            (
                r#"{ mode = "verify-full" }"#,
                "verify-full needs a CA certificate file",
            ),
            (
                r#"{ mode = "verify-full", ca_file = "/nonexistent/ca.pem" }"#,
                "cannot read /nonexistent/ca.pem",
            ),
            (r#"{ mode = "sometimes" }"#, "unknown variant"),
        ] {
            let text = GOOD.replace(
                "user = \"postgres\" }",
                &format!("user = \"postgres\", tls = {tls} }}"),
            );
            let err = match Config::parse(&text) {
                Ok(c) => format!("{:#}", c.proxies().unwrap_err()),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(want), "{tls}: {err}");
        }
        let ok = GOOD.replace(
            "user = \"postgres\" }",
            "user = \"postgres\", tls = { mode = \"require\" } }",
        );
        assert!(Config::parse(&ok).unwrap().proxies().unwrap()[0]
            .1
            .upstream
            .tls
            .is_some());
    }

    #[test]
    fn missing_password_env_is_a_clear_error() {
        let text = GOOD.replace(
            "user = \"postgres\" }",
            "user = \"postgres\", password_env = \"VIGIL_TEST_SURELY_UNSET\" }",
        );
        let err = format!("{:#}", Config::parse(&text).unwrap().proxies().unwrap_err());
        assert!(err.contains("VIGIL_TEST_SURELY_UNSET"), "{err}");
    }
}
