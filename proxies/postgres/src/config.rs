//! `[[postgres]]`: one PostgreSQL listener as the config file writes it,
//! checked and built into a [`ProxyConfig`] here, by the crate that runs
//! it. The binary only wires: it loads the policy the section names and
//! hands over what every listener shares (the masking key, session limits).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use vigil_config::duration::Renamed;
use vigil_config::Secret;
use vigil_proxy_core::admission::SessionLimits;
use vigil_proxy_core::mask::Masker;
use vigil_runtime::tls::TlsSection;
use vigil_sql::policy::Policy;

use crate::upstream_tls::UpstreamTls;
use crate::{ProxyConfig, UpstreamConfig};

/// The policy a listener applies unless it names one.
pub const DEFAULT_POLICY: &str = "builtin:phi-default";

/// Durations of this section written with units, and the keys (unit in the
/// name) they replace; both spellings are read.
pub const DURATIONS: &[Renamed] = &[Renamed::millis(
    "postgres[].upstream",
    "connect_timeout",
    "connect_timeout_ms",
)];

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

fn default_policy() -> String {
    DEFAULT_POLICY.into()
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

pub fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl PostgresSection {
    /// How errors name this listener: `postgres "ehr"`.
    pub fn label(&self) -> String {
        format!("postgres \"{}\"", self.name)
    }

    /// The upstream password's source (`[postgres.upstream] password_env`
    /// or `password_file`).
    pub fn upstream_password(&self) -> Secret<'_> {
        Secret::new(
            format!("{}: upstream.password", self.label()),
            &self.upstream.password_env,
            &self.upstream.password_file,
        )
    }

    /// What can be checked of this section alone, without reading files.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.upstream_password().check(false)
    }

    /// The listener's config: the upstream password, TLS certificates and
    /// the upstream's CA read now, so that a missing file stops the start
    /// with its name.
    pub fn build(
        &self,
        policy: Arc<Policy>,
        masker: Arc<Masker>,
        limits: SessionLimits,
    ) -> anyhow::Result<ProxyConfig> {
        let label = self.label();
        let up = &self.upstream;
        let tls = self.tls.as_ref().map(|t| t.load(&label)).transpose()?;
        Ok(ProxyConfig {
            name: self.name.clone(),
            upstream: UpstreamConfig {
                host: up.host.clone(),
                port: up.port,
                user: up.user.clone(),
                password: self.upstream_password().read()?,
                database: up.database.clone(),
                connect_timeout_ms: up.connect_timeout_ms,
                tls: self.upstream_tls()?,
            },
            required_scopes: self.required_scopes.clone(),
            tls,
            policy,
            masker,
            approvals: None,
            limits,
        })
    }

    fn upstream_tls(&self) -> anyhow::Result<Option<UpstreamTls>> {
        let Some(t) = &self.upstream.tls else {
            return Ok(None);
        };
        let ca = match &t.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("{}: cannot read {}", self.label(), path.display()))?,
            ),
            None => None,
        };
        let name = t
            .server_name
            .clone()
            .unwrap_or_else(|| self.upstream.host.clone());
        UpstreamTls::new(t.mode == UpstreamTlsMode::VerifyFull, ca.as_deref(), &name)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: upstream TLS: {e}", self.label()))
    }
}
