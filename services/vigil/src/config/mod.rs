//! The config file (TOML), and the built-in development config of `--dev`.
//!
//! Everything is checked at load time, so that a typo stops `vigil up` with a
//! message naming the problem instead of surfacing at a client's first login.
//! Secrets (the upstream password) are never written in the file itself: it
//! names an environment variable or a file that holds them.

//!
//! One file per section: `bus`, `ledger`; a protocol's listener sections
//! (`[[postgres]]`) are parsed, checked and built by that protocol's crate
//! (`vigil_proxy_postgres::config`). This module holds the file as a whole:
//! loading, checks that span sections (unique names and addresses, roles),
//! and the wiring of listeners to policies.

mod bus;
mod dev;
mod ledger;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Deserialize;
use vigil_proxy_core::identity::LoginThrottle;
use vigil_proxy_core::identity::{IssuerSettings, TokenVerifier};
use vigil_proxy_core::mask::Masker;
use vigil_proxy_core::{Authenticator, StaticIdentities, StaticIdentity};
use vigil_proxy_llm::config::LlmSection;
use vigil_proxy_mcp::config::McpSection;
use vigil_proxy_postgres::config::PostgresSection;
use vigil_proxy_postgres::ProxyConfig;

use vigil_config::duration::{rewrite_with_units, Renamed};
use vigil_config::Secret;

use bus::BusSection;
use ledger::LedgerSection;
use vigil_ledger_service::retention::RetentionPeriod;

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
    /// MCP listeners (Streamable HTTP) in front of MCP servers.
    #[serde(default)]
    pub mcp: Vec<McpSection>,
    /// Model-API listeners (`[[llm]]`): OpenAI-compatible and Anthropic.
    #[serde(default)]
    pub llm: Vec<LlmSection>,
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

/// The keyring file `vigil up --dev` creates in its data directory.
pub const DEV_BODY_KEYS_FILE: &str = "ledger-body.keys";

/// The name of the development identity and its password.
pub const DEV_IDENTITY: &str = "dev";

/// Durations written with units, and the keys (unit in the name) they
/// replace; both spellings are read.
const DURATIONS: &[Renamed] = &[
    Renamed::millis("ledger", "checkpoint_interval", "checkpoint_interval_ms"),
    Renamed::millis("bus", "session_timeout", "session_timeout_ms"),
    Renamed::millis("bus", "delivery_timeout", "delivery_timeout_ms"),
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
        for renamed in [DURATIONS, vigil_proxy_postgres::config::DURATIONS] {
            rewrite_with_units(&mut root, renamed).map_err(|e| anyhow::anyhow!(e))?;
        }
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

    fn validate(&self) -> anyhow::Result<()> {
        self.shutdown_drain()?;
        self.validate_ledger()?;
        let mut names = HashSet::new();
        let mut addrs = HashSet::from([self.ledger.http_listen, self.ledger.grpc_listen]);
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
            pg.validate()?;
        }
        for mcp in &self.mcp {
            if mcp.name.is_empty() || !names.insert(mcp.name.as_str()) {
                bail!(
                    "listener names must be unique and non-empty ({:?} is used twice)",
                    mcp.name
                );
            }
            if !addrs.insert(mcp.listen) {
                bail!(
                    "{}: listen address {} is used twice",
                    mcp.label(),
                    mcp.listen
                );
            }
            mcp.validate()?;
        }
        for llm in &self.llm {
            if llm.name.is_empty() || !names.insert(llm.name.as_str()) {
                bail!(
                    "listener names must be unique and non-empty ({:?} is used twice)",
                    llm.name
                );
            }
            if !addrs.insert(llm.listen) {
                bail!(
                    "{}: listen address {} is used twice",
                    llm.label(),
                    llm.listen
                );
            }
            llm.validate()?;
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
        if let Some(llm) = self.llm.first() {
            if self.oidc.issuers.is_empty() {
                bail!(
                    "{}: model-API agents present OIDC access tokens, so [[oidc.issuers]] is required",
                    llm.label()
                );
            }
        }
        if let Some(mcp) = self.mcp.first() {
            if self.oidc.issuers.is_empty() {
                bail!(
                    "{}: MCP agents present OIDC access tokens, so [[oidc.issuers]] is required",
                    mcp.label()
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

    /// What a role that runs proxies needs beyond [`Config::validate`]
    /// (`vigil up`, `vigil proxy`; a ledger-only process has no listeners).
    fn check_proxy_role(&self) -> anyhow::Result<()> {
        if self.postgres.is_empty() && self.mcp.is_empty() && self.llm.is_empty() {
            bail!("no [[postgres]], [[mcp]] or [[llm]] listener configured: the gateway would have nothing to do");
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

    /// The drain period of a graceful shutdown (`shutdown_drain`).
    pub fn shutdown_drain(&self) -> anyhow::Result<std::time::Duration> {
        match &self.shutdown_drain {
            None => Ok(std::time::Duration::from_secs(10)),
            Some(text) => RetentionPeriod::parse(text)
                .map(|p| p.as_duration())
                .map_err(|e| anyhow::anyhow!("shutdown_drain: {e}")),
        }
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

    /// The masker of a listener whose policy masks by `detectors`.
    fn masker(
        &self,
        label: &str,
        policy_name: &str,
        masks: bool,
        detectors: &vigil_proxy_core::mask::DetectorConfig,
    ) -> anyhow::Result<Masker> {
        let key = match self.masking_key()? {
            Some(key) => key,
            None if masks => bail!(
                "{label}: policy \"{policy_name}\" masks results, so masking.hash_key_file \
                 or masking.hash_key_env is required"
            ),
            // Nothing is masked: the key is never used.
            None => [0; 32],
        };
        Masker::new(key, detectors)
            .map_err(|e| anyhow::anyhow!("{label}: policy \"{policy_name}\": {e}"))
    }

    /// The MCP listeners' configs (approvals wired by the caller).
    pub fn mcp_gateways(
        &self,
    ) -> anyhow::Result<Vec<(SocketAddr, vigil_proxy_mcp::GatewayConfig)>> {
        let issuers: Vec<String> = self.oidc.issuers.iter().map(|i| i.issuer.clone()).collect();
        self.mcp
            .iter()
            .map(|m| {
                let label = m.label();
                let policy =
                    crate::policy_setup::load_mcp_policy(&m.policy).context(label.clone())?;
                let masks = masks_anything(&policy);
                let masker =
                    self.masker(&label, policy.name(), masks, &policy.masking().detectors)?;
                let built = m.build(policy, Arc::new(masker), issuers.clone(), &self.data_dir)?;
                Ok((m.listen, built))
            })
            .collect()
    }

    /// The model-API gateways' configs, with their policies and maskers.
    pub fn llm_gateways(
        &self,
    ) -> anyhow::Result<Vec<(SocketAddr, vigil_proxy_llm::GatewayConfig)>> {
        self.llm
            .iter()
            .map(|l| {
                let label = l.label();
                let policy =
                    crate::policy_setup::load_llm_policy(&l.policy).context(label.clone())?;
                let masks = masks_anything(&policy);
                let masker =
                    self.masker(&label, policy.name(), masks, &policy.masking().detectors)?;
                Ok((l.listen, l.build(policy, Arc::new(masker))?))
            })
            .collect()
    }

    /// The proxy configs: each listener's section builds its own (reading
    /// its password and certificates); the binary adds the policy it names
    /// and what listeners share.
    pub fn proxies(&self) -> anyhow::Result<Vec<(SocketAddr, ProxyConfig)>> {
        let masking_key = self.masking_key()?;
        self.postgres
            .iter()
            .map(|pg| {
                let label = pg.label();
                let policy = crate::policy_setup::load_policy(&pg.policy).context(label.clone())?;
                let key = match masking_key {
                    Some(key) => key,
                    None if policy.masks_anything() => bail!(
                        "{label}: policy \"{}\" masks results, so masking.hash_key_file \
                         or masking.hash_key_env is required",
                        policy.name()
                    ),
                    // Nothing is masked: the key is never used.
                    None => [0; 32],
                };
                let masker = Masker::new(key, &policy.masking().detectors)
                    .map_err(|e| anyhow::anyhow!("{label}: policy \"{}\": {e}", policy.name()))?;
                let proxy = pg.build(policy, Arc::new(masker), self.logins.sessions())?;
                Ok((pg.listen, proxy))
            })
            .collect()
    }
}

/// Whether a gateway policy can mask (its default or a rule says `mask`):
/// then it needs the masking key.
fn masks_anything<F: vigil_proxy_core::policy::Family>(
    policy: &vigil_proxy_core::policy::PolicyEngine<F>,
) -> bool {
    use vigil_proxy_core::policy::Outcome;
    policy.default_outcome() == Outcome::Mask
        || policy.rules().iter().any(|r| r.action == Outcome::Mask)
}
