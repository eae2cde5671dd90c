//! `[[llm]]`: one model-API listener as the config file writes it, checked
//! and built into a [`GatewayConfig`]. The binary only wires: it loads the
//! policy the section names and hands over what listeners share.
//!
//! ```toml
//! [[llm]]
//! name = "models"
//! listen = "127.0.0.1:7400"
//! policy = "builtin:llm-default"
//! required_scopes = ["llm:invoke"]
//! upstream = { url = "https://api.openai.com", api_key_env = "OPENAI_API_KEY" }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use vigil_config::Secret;
use vigil_llm::policy::Policy;
use vigil_proxy_core::mask::Masker;
use vigil_runtime::tls::TlsSection;

use crate::{GatewayConfig, UpstreamConfig};

/// The policy a model-API listener applies unless it names one.
pub const DEFAULT_POLICY: &str = "builtin:llm-default";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSection {
    /// The connection's name, recorded on every event.
    pub name: String,
    pub listen: SocketAddr,
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Scopes an access token must grant to use this endpoint.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// A model-API policy file, or `builtin:llm-default`.
    #[serde(default = "default_policy")]
    pub policy: String,
    /// The largest request body accepted, in bytes (default 8 MiB).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// The largest whole answer relayed, in bytes (default 32 MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    pub upstream: UpstreamSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The provider's base URL (`https://api.anthropic.com`); request
    /// paths (`/v1/messages`) are appended.
    pub url: String,
    /// The gateway's own API key, from an environment variable or a file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Let an http:// URL name a host other than loopback (default false).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// For an https URL: a CA file (PEM) the provider's certificate must
    /// chain to (default: the public web roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long the provider may take to answer a request's headers
    /// (default 120s: a whole answer comes with its headers).
    #[serde(default)]
    pub timeout: Option<String>,
    /// How long a stream may go silent before the gateway gives up on it
    /// (default 60s).
    #[serde(default)]
    pub stall_timeout: Option<String>,
}

fn default_policy() -> String {
    DEFAULT_POLICY.into()
}

fn default_max_request_bytes() -> usize {
    8 << 20
}

fn default_max_response_bytes() -> usize {
    32 << 20
}

impl LlmSection {
    pub fn label(&self) -> String {
        format!("llm \"{}\"", self.name)
    }

    fn api_key(&self) -> Secret<'_> {
        Secret::new(
            format!("{}: upstream.api_key", self.label()),
            &self.upstream.api_key_env,
            &self.upstream.api_key_file,
        )
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let label = self.label();
        let url = vigil_config::upstream_url::check(
            &label,
            &self.upstream.url,
            self.upstream.ca_file.is_some(),
            self.upstream.allow_plaintext,
        )?;
        if url.query().is_some() || url.fragment().is_some() {
            bail!("{label}: upstream.url is a base URL: no query or fragment");
        }
        if self.max_request_bytes < 1024 || self.max_response_bytes < 1024 {
            bail!("{label}: max_request_bytes and max_response_bytes must be at least 1024");
        }
        self.timeouts()?;
        self.api_key().check(false)
    }

    fn timeouts(&self) -> anyhow::Result<(Duration, Duration)> {
        let parse = |text: &Option<String>, default: Duration, what: &str| match text {
            None => Ok(default),
            Some(t) => vigil_config::duration::parse(t)
                .map_err(|e| anyhow::anyhow!(e))
                .with_context(|| format!("{}: upstream.{what}", self.label())),
        };
        Ok((
            parse(&self.upstream.timeout, Duration::from_secs(120), "timeout")?,
            parse(
                &self.upstream.stall_timeout,
                Duration::from_secs(60),
                "stall_timeout",
            )?,
        ))
    }

    pub fn build(&self, policy: Arc<Policy>, masker: Arc<Masker>) -> anyhow::Result<GatewayConfig> {
        let label = self.label();
        let tls = self.tls.as_ref().map(|t| t.load(&label)).transpose()?;
        let (timeout, stall_timeout) = self.timeouts()?;
        Ok(GatewayConfig {
            name: self.name.clone(),
            tls,
            policy,
            masker,
            approvals: None,
            required_scopes: self.required_scopes.clone(),
            max_request_bytes: self.max_request_bytes,
            max_response_bytes: self.max_response_bytes,
            upstream: UpstreamConfig {
                base_url: self.upstream.url.trim_end_matches('/').to_string(),
                ca_pem: match &self.upstream.ca_file {
                    Some(path) => Some(std::fs::read(path).with_context(|| {
                        format!("{label}: cannot read upstream.ca_file {}", path.display())
                    })?),
                    None => None,
                },
                api_key: self.api_key().read()?.map(|k| k.trim().to_string()),
                timeout,
                stall_timeout,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> anyhow::Result<()> {
        let text = format!("name = \"m\"\nlisten = \"127.0.0.1:7400\"\n{extra}\n");
        let s: LlmSection = toml::from_str(&text)?;
        s.validate()
    }

    #[test]
    fn bad_sections_are_refused_with_a_reason() {
        assert!(section("upstream = { url = \"http://127.0.0.1:8080\" }").is_ok());
        for (extra, expected) in [
            ("upstream = { url = \"http://models.example.org\" }", "plaintext"),
            ("upstream = { url = \"ftp://x\" }", "http:// or https://"),
            ("upstream = { url = \"https://u:p@x.example\" }", "user or password"),
            ("upstream = { url = \"https://x.example/?a=b\" }", "no query"),
            ("upstream = { url = \"https://x.example\", timeout = \"soon\" }", "timeout"),
            ("upstream = { url = \"https://x.example\", api_key_env = \"A\", api_key_file = \"/f\" }", "api_key"),
            ("upstream = { url = \"https://x.example\" }\nmodel = \"x\"", "unknown field"),
        ] {
            let e = format!("{:#}", section(extra).unwrap_err());
            assert!(e.contains(expected), "{extra}: {e}");
        }
    }
}
