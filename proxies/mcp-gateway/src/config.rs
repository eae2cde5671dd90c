//! `[[mcp]]`: one MCP listener as the config file writes it, checked and
//! built into a [`GatewayConfig`] by this crate. The binary only wires: it
//! loads the policy the section names and hands over what listeners share.
//!
//! ```toml
//! [[mcp]]
//! name = "ehr-tools"
//! listen = "127.0.0.1:7300"
//! policy = "deploy/policy/mcp-phi.toml"     # or builtin:mcp-default
//! required_scopes = ["mcp:tools"]
//! upstream = { url = "http://127.0.0.1:3001/mcp", bearer_env = "EHR_TOOLS_TOKEN" }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use vigil_config::Secret;
use vigil_mcp::policy::Policy;
use vigil_proxy_core::mask::Masker;
use vigil_runtime::tls::TlsSection;

use crate::upstream::{UpstreamAuth, UpstreamConfig};
use crate::GatewayConfig;

/// The policy an MCP listener applies unless it names one.
pub const DEFAULT_POLICY: &str = "builtin:mcp-default";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSection {
    /// The connection's name, recorded on every event.
    pub name: String,
    pub listen: SocketAddr,
    /// The path agents POST to (default `/mcp`).
    #[serde(default = "default_path")]
    pub path: String,
    /// The URL agents know this endpoint by: the protected resource of RFC
    /// 9728 (default `http://<listen><path>`, or https with `tls`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Scopes an access token must grant to use this endpoint.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// `Origin` headers allowed besides the public URL's own (and, on a
    /// loopback listener, loopback origins): a browser's request from
    /// elsewhere is refused (DNS rebinding). A request without `Origin` is
    /// not a browser's and is let in.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// An MCP policy file, or `builtin:mcp-default` / `builtin:mcp-allow-all`.
    #[serde(default = "default_policy")]
    pub policy: String,
    /// The largest request body accepted, in bytes (default 4 MiB).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// The largest result (one message from the server) relayed, in bytes
    /// (default 8 MiB); a larger one is refused with an error and recorded.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: usize,
    /// A session unused this long is closed (default 30m).
    #[serde(default)]
    pub session_idle_timeout: Option<String>,
    pub upstream: UpstreamSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The MCP server's Streamable HTTP endpoint; or `command`.
    #[serde(default)]
    pub url: String,
    /// A stdio MCP server Vigil runs itself, one process per session
    /// (`["npx", "-y", "@modelcontextprotocol/server-filesystem", "/data"]`).
    #[serde(default)]
    pub command: Vec<String>,
    /// The stdio server's environment (the gateway's own is not passed,
    /// but for PATH, HOME and LANG): each value from an environment
    /// variable of the gateway (`{ env = "EHR_API_KEY" }`), a file
    /// (`{ file = "/run/secrets/ehr" }`) or given (`{ value = "eu" }`).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, EnvValue>,
    /// The stdio server's working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// The gateway's own bearer token for the server, from an environment
    /// variable or a file (never the agent's token: that one stays here).
    #[serde(default)]
    pub bearer_env: Option<String>,
    #[serde(default)]
    pub bearer_file: Option<PathBuf>,
    /// Let an http:// URL name a host other than loopback (default false).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// For an https URL: a CA file (PEM) the server's certificate must
    /// chain to (default: the public web roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long the server may take to answer a request's headers
    /// (default 60s; streams then go on as long as the server writes).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// Where one variable of a stdio server's environment comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvValue {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub value: Option<String>,
}

fn default_path() -> String {
    "/mcp".into()
}

fn default_policy() -> String {
    DEFAULT_POLICY.into()
}

fn default_max_request_bytes() -> usize {
    4 << 20
}

fn default_max_result_bytes() -> usize {
    8 << 20
}

impl McpSection {
    /// How errors name this listener: `mcp "ehr-tools"`.
    pub fn label(&self) -> String {
        format!("mcp \"{}\"", self.name)
    }

    fn bearer(&self) -> Secret<'_> {
        Secret::new(
            format!("{}: upstream.bearer", self.label()),
            &self.upstream.bearer_env,
            &self.upstream.bearer_file,
        )
    }

    /// What can be checked of this section alone, without reading files.
    pub fn validate(&self) -> anyhow::Result<()> {
        let label = self.label();
        if !self.path.starts_with('/') || self.path.contains(['?', '#']) {
            bail!(
                "{label}: path must be an absolute path without query (got {:?})",
                self.path
            );
        }
        if self.upstream.url.is_empty() == self.upstream.command.is_empty() {
            bail!("{label}: upstream needs exactly one of url (a Streamable HTTP server) or command (a stdio server)");
        }
        if !self.upstream.command.is_empty() {
            if self.upstream.bearer_env.is_some() || self.upstream.bearer_file.is_some() {
                bail!("{label}: a stdio server takes its credentials in upstream.env, not a bearer token");
            }
            for (name, v) in &self.upstream.env {
                let given = [v.env.is_some(), v.file.is_some(), v.value.is_some()];
                if given.iter().filter(|g| **g).count() != 1 {
                    bail!("{label}: upstream.env.{name} needs exactly one of env, file or value");
                }
            }
            return self.idle_timeout().map(|_| ());
        }
        if !self.upstream.env.is_empty() || self.upstream.cwd.is_some() {
            bail!("{label}: upstream.env and upstream.cwd are for a stdio server (command)");
        }
        vigil_config::upstream_url::check(
            &label,
            &self.upstream.url,
            self.upstream.ca_file.is_some(),
            self.upstream.allow_plaintext,
        )?;
        if let Some(public) = &self.public_url {
            url::Url::parse(public).with_context(|| format!("{label}: public_url {public:?}"))?;
        }
        if self.max_request_bytes < 1024 || self.max_result_bytes < 1024 {
            bail!("{label}: max_request_bytes and max_result_bytes must be at least 1024");
        }
        self.idle_timeout()?;
        self.upstream_timeout()?;
        self.bearer().check(false)
    }

    fn idle_timeout(&self) -> anyhow::Result<Duration> {
        parse_duration(&self.session_idle_timeout, Duration::from_secs(30 * 60))
            .with_context(|| format!("{}: session_idle_timeout", self.label()))
    }

    fn upstream_timeout(&self) -> anyhow::Result<Duration> {
        parse_duration(&self.upstream.timeout, Duration::from_secs(60))
            .with_context(|| format!("{}: upstream.timeout", self.label()))
    }

    /// The resource identifier agents' tokens are for (RFC 9728).
    pub fn resource_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}{}", self.listen, self.path)
            }
        }
    }

    /// The listener's config: the upstream credential and TLS files read
    /// now, so that a missing file stops the start with its name.
    pub fn build(
        &self,
        policy: Arc<Policy>,
        masker: Arc<Masker>,
        issuers: Vec<String>,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<GatewayConfig> {
        let label = self.label();
        let tls = self.tls.as_ref().map(|t| t.load(&label)).transpose()?;
        let bearer = self.bearer().read()?;
        Ok(GatewayConfig {
            name: self.name.clone(),
            path: self.path.clone(),
            resource: self.resource_url(),
            authorization_servers: issuers,
            required_scopes: self.required_scopes.clone(),
            allowed_origins: self.allowed_origins.clone(),
            loopback: self.listen.ip().is_loopback(),
            tls,
            policy,
            masker,
            approvals: None,
            max_request_bytes: self.max_request_bytes,
            max_result_bytes: self.max_result_bytes,
            idle_timeout: self.idle_timeout()?,
            pins_file: Some(crate::pins::pins_path(data_dir, &self.name)),
            upstream_label: self.upstream_label(),
            upstream: UpstreamConfig {
                ca_pem: match &self.upstream.ca_file {
                    Some(path) => Some(std::fs::read(path).with_context(|| {
                        format!("{label}: cannot read upstream.ca_file {}", path.display())
                    })?),
                    None => None,
                },
                url: self.upstream.url.clone(),
                stdio: self.stdio()?,
                auth: match bearer {
                    Some(token) => UpstreamAuth::Bearer(token.trim().to_string()),
                    None => UpstreamAuth::None,
                },
                timeout: self.upstream_timeout()?,
            },
        })
    }
}

impl McpSection {
    /// The stdio command with its environment read now (a missing
    /// variable or file stops the start with its name).
    fn stdio(&self) -> anyhow::Result<Option<crate::stdio_bridge::StdioConfig>> {
        if self.upstream.command.is_empty() {
            return Ok(None);
        }
        let label = self.label();
        let mut env = Vec::new();
        for (name, v) in &self.upstream.env {
            let value = if let Some(var) = &v.env {
                std::env::var(var).with_context(|| {
                    format!("{label}: upstream.env.{name}: environment variable {var} is not set")
                })?
            } else if let Some(path) = &v.file {
                std::fs::read_to_string(path)
                    .with_context(|| {
                        format!(
                            "{label}: upstream.env.{name}: cannot read {}",
                            path.display()
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string()
            } else {
                v.value.clone().unwrap_or_default()
            };
            env.push((name.clone(), value));
        }
        Ok(Some(crate::stdio_bridge::StdioConfig {
            command: self.upstream.command.clone(),
            env,
            cwd: self.upstream.cwd.clone(),
        }))
    }

    /// What the server is, for events and the banner: its URL, or the
    /// stdio command's program.
    pub fn upstream_label(&self) -> String {
        if self.upstream.command.is_empty() {
            self.upstream.url.clone()
        } else {
            // The program only: its arguments may hold a secret.
            format!("stdio:{}", self.upstream.command[0])
        }
    }
}

fn parse_duration(text: &Option<String>, default: Duration) -> anyhow::Result<Duration> {
    match text {
        None => Ok(default),
        Some(t) => vigil_config::duration::parse(t).map_err(|e| anyhow::anyhow!(e)),
    }
}
