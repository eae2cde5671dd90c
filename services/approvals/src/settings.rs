//! `[approvals]` in the config: where the approval service keeps its book,
//! where its API listens, and its webhooks. Absent: no approval service, and
//! statements that policy holds for review are refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use vigil_config::Secret;

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// The approvers' gRPC API.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// TLS for the API; required when `grpc_listen` is not loopback
    /// (approvers send their access tokens).
    #[serde(default)]
    pub grpc_tls: Option<ServerTlsSection>,
    /// Where the book of operations and grants lives (default
    /// `<data_dir>/approvals`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
    #[serde(default)]
    pub callback: Option<CallbackSection>,
    /// SHA-256 (hex) of the tokens `vigil proxy` processes present
    /// (`[approval_service] token_env`/`token_file`). Empty: no proxy in
    /// another process may call (loopback included); `vigil up`'s own
    /// proxies call in-process and need none.
    #[serde(default)]
    pub proxy_tokens_sha256: Vec<String>,
    /// The policies whose review rules this service decides, for grants
    /// (a file or builtin:...). `vigil up` adds its listeners' policies; a
    /// separate `vigil approvals serve` has only these.
    #[serde(default)]
    pub policies: Vec<String>,
}

/// `[approval_service]` in a `vigil proxy` config: where the approval
/// service of a Kafka deployment answers.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ApprovalServiceSection {
    /// e.g. "http://127.0.0.1:6582" (https:// with `[approvals.grpc_tls]`).
    pub url: String,
    /// The proxy token (its SHA-256 is in the service's
    /// `proxy_tokens_sha256`), from an environment variable or a file.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl ApprovalServiceSection {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            bail!("approval_service.url must be an http(s) URL");
        }
        let token = Secret::new("approval_service.token", &self.token_env, &self.token_file);
        token.check(false)?;
        if !token.is_configured() {
            bail!(
                "approval_service: a proxy token is required (token_env or token_file; \
                 `vigil approvals proxy-token` makes one and the hash for the service)"
            );
        }
        Ok(())
    }

    pub fn token(&self) -> anyhow::Result<Option<String>> {
        read_secret("approval_service.token", &self.token_env, &self.token_file)
            .map(|b| Some(String::from_utf8_lossy(&b).into_owned()))
    }
}

/// Server-side TLS (no client certificates: approvers prove who they are
/// with their token).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSection {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[[approvals.webhooks]]`: one outgoing webhook.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: String,
    /// The HMAC secret, from an environment variable or a file (never the
    /// config text).
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Tries per notification (0.5 s apart, doubling) before it is given up
    /// and recorded as a `NotificationFailed` event.
    #[serde(default = "default_tries")]
    pub tries: u32,
}

/// 12 tries wait 0.5 s doubling: about 17 minutes in all.
const MAX_TRIES: u32 = 12;

fn default_tries() -> u32 {
    crate::webhook::DEFAULT_TRIES
}

/// `[approvals.callback]`: the incoming signed webhook.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CallbackSection {
    pub listen: SocketAddr,
    /// Names the callers' issuer: approvers are `webhook:<name>` identities.
    #[serde(default = "default_callback_name")]
    pub name: String,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The groups every approver the calling system names is taken to have.
    pub approver_groups: Vec<String>,
}

fn default_grpc_listen() -> SocketAddr {
    "127.0.0.1:6582".parse().expect("literal address")
}

fn default_callback_name() -> String {
    "callback".into()
}

impl ApprovalsSection {
    /// The dev mode's service: loopback API, no webhooks.
    pub fn dev() -> Self {
        Self {
            grpc_listen: default_grpc_listen(),
            grpc_tls: None,
            dir: None,
            webhooks: Vec::new(),
            callback: None,
            proxy_tokens_sha256: Vec::new(),
            policies: Vec::new(),
        }
    }

    /// The proxy tokens' hashes as bytes.
    pub fn proxy_tokens(&self) -> anyhow::Result<Vec<[u8; 32]>> {
        self.proxy_tokens_sha256
            .iter()
            .map(|h| {
                hex::decode(h.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .with_context(|| {
                        format!("approvals.proxy_tokens_sha256: {h:?} is not 64 hex digits")
                    })
            })
            .collect()
    }

    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("approvals"))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.proxy_tokens()?;
        if self.grpc_tls.is_none() && !self.grpc_listen.ip().is_loopback() {
            bail!(
                "approvals.grpc_listen {} is not a loopback address: configure [approvals.grpc_tls] \
                 (approvers send their access tokens to it)",
                self.grpc_listen
            );
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let what = format!("approvals.webhooks[{i}]");
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                bail!("{what}.url must be an http(s) URL");
            }
            if w.url.starts_with("http://") && !is_loopback_url(&w.url) {
                bail!(
                    "{what}.url must be https (statements and decisions would travel in the clear)"
                );
            }
            Secret::new(format!("{what}.secret"), &w.secret_env, &w.secret_file).check(true)?;
            if !(1..=MAX_TRIES).contains(&w.tries) {
                bail!("{what}.tries must be 1 to {MAX_TRIES}");
            }
        }
        if let Some(c) = &self.callback {
            Secret::new("approvals.callback.secret", &c.secret_env, &c.secret_file).check(true)?;
            if c.approver_groups.iter().all(|g| g.trim().is_empty()) {
                bail!("approvals.callback.approver_groups is empty: nobody it names could decide");
            }
            if c.name.is_empty() || c.name.contains(char::is_whitespace) {
                bail!("approvals.callback.name must be a word (it names the callers' issuer)");
            }
        }
        Ok(())
    }
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Reads a secret now, so that a missing one stops the start with its name.
pub fn read_secret(
    what: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
) -> anyhow::Result<Vec<u8>> {
    let secret = Secret::new(what, env, file).read_required()?;
    let secret = secret.trim();
    if secret.len() < 16 {
        bail!("{what}: the secret must be at least 16 characters");
    }
    Ok(secret.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<ApprovalsSection> {
        let s: ApprovalsSection = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn bad_approvals_sections_are_refused_with_the_reason() {
        for (text, expected) in [
            ("grpc_listen = \"0.0.0.0:6582\"", "not a loopback address"),
            (
                "[[webhooks]]\nurl = \"ftp://x\"\nsecret_env = \"S\"",
                "http(s) URL",
            ),
            (
                "[[webhooks]]\nurl = \"http://hooks.example.com/x\"\nsecret_env = \"S\"",
                "must be https",
            ),
            (
                "[[webhooks]]\nurl = \"https://hooks.example.com/x\"",
                "a secret is required",
            ),
            (
                "[[webhooks]]\nurl = \"https://h/x\"\nsecret_env = \"S\"\nsecret_file = \"/f\"",
                "not both",
            ),
            (
                "[callback]\nlisten = \"127.0.0.1:1\"\nsecret_env = \"S\"\napprover_groups = []",
                "nobody it names",
            ),
            (
                "[[webhooks]]\nurl = \"https://h/x\"\nsecret_env = \"S\"\ntries = 0",
                "tries must be 1 to 12",
            ),
            (
                "[[webhooks]]\nurl = \"https://h/x\"\nsecret_env = \"S\"\ntries = 13",
                "tries must be 1 to 12",
            ),
            ("surprise = 1", "unknown field"),
            ("proxy_tokens_sha256 = [\"abc\"]", "not 64 hex digits"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let ok =
            parse("[[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_env = \"S\"").unwrap();
        assert_eq!(ok.grpc_listen, default_grpc_listen());
        assert_eq!(ok.webhooks[0].tries, 6, "six tries unless told");
    }
}
