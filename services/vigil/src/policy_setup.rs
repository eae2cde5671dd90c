//! Loading policies (shipped or from a file) and the masking key.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use base64::Engine as _;
use vigil_sql::policy::Policy;

/// The shipped policy for PHI databases (the default everywhere).
pub const PHI_DEFAULT: &str = "builtin:phi-default";
/// The shipped allow-all policy, for databases without PHI.
pub const ALLOW_ALL: &str = "builtin:allow-all";

const PHI_DEFAULT_TEXT: &str = include_str!("../../../deploy/policy/phi-default.toml");
const ALLOW_ALL_TEXT: &str = include_str!("../../../deploy/policy/allow-all.toml");

/// A policy by name (`builtin:phi-default`, `builtin:allow-all`) or file path.
pub fn load_policy(spec: &str) -> anyhow::Result<Arc<Policy>> {
    let (text, what) = match spec {
        PHI_DEFAULT => (PHI_DEFAULT_TEXT.to_string(), spec.to_string()),
        ALLOW_ALL => (ALLOW_ALL_TEXT.to_string(), spec.to_string()),
        other if other.starts_with("builtin:") => {
            bail!("unknown shipped policy {other:?} (there are {PHI_DEFAULT} and {ALLOW_ALL})")
        }
        path => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read policy file {path}"))?,
            format!("policy file {path}"),
        ),
    };
    let policy = Policy::parse(&text).with_context(|| format!("invalid {what}"))?;
    Ok(Arc::new(policy))
}

/// The shipped MCP policy: every call allowed, results masked, server
/// sampling and elicitation refused (the default for `[[mcp]]`).
pub const MCP_DEFAULT: &str = vigil_proxy_mcp::config::DEFAULT_POLICY;
/// The shipped MCP policy that masks nothing (servers without PHI).
pub const MCP_ALLOW_ALL: &str = "builtin:mcp-allow-all";

const MCP_DEFAULT_TEXT: &str = include_str!("../../../deploy/policy/mcp-default.toml");
const MCP_ALLOW_ALL_TEXT: &str = include_str!("../../../deploy/policy/mcp-allow-all.toml");

/// An MCP policy by name (`builtin:mcp-default`, `builtin:mcp-allow-all`)
/// or file path.
pub fn load_mcp_policy(spec: &str) -> anyhow::Result<Arc<vigil_mcp::policy::Policy>> {
    let (text, what) = match spec {
        MCP_DEFAULT => (MCP_DEFAULT_TEXT.to_string(), spec.to_string()),
        MCP_ALLOW_ALL => (MCP_ALLOW_ALL_TEXT.to_string(), spec.to_string()),
        other if other.starts_with("builtin:") => {
            bail!("unknown shipped MCP policy {other:?} (there are {MCP_DEFAULT} and {MCP_ALLOW_ALL})")
        }
        path => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read policy file {path}"))?,
            format!("policy file {path}"),
        ),
    };
    let policy =
        vigil_mcp::policy::Policy::parse(&text).with_context(|| format!("invalid MCP {what}"))?;
    Ok(Arc::new(policy))
}

/// The shipped model-API policy (`[[llm]]` listeners that name none).
pub const LLM_DEFAULT: &str = vigil_proxy_llm::config::DEFAULT_POLICY;
const LLM_DEFAULT_TEXT: &str = include_str!("../../../deploy/policy/llm-default.toml");

/// A model-API listener's policy: `builtin:llm-default` or a file.
pub fn load_llm_policy(spec: &str) -> anyhow::Result<Arc<vigil_llm::policy::Policy>> {
    let (text, what) = match spec {
        LLM_DEFAULT => (LLM_DEFAULT_TEXT.to_string(), spec.to_string()),
        other if other.starts_with("builtin:") => {
            bail!("unknown shipped model-API policy {other:?} (there is {LLM_DEFAULT})")
        }
        path => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read policy file {path}"))?,
            format!("policy file {path}"),
        ),
    };
    let policy = vigil_llm::policy::Policy::parse(&text)
        .with_context(|| format!("invalid model-API {what}"))?;
    Ok(Arc::new(policy))
}

/// Reads a masking key: one line of base64 holding 32 bytes (lines starting
/// with `#` are comments).
pub fn parse_masking_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .context("the masking key holds no key line")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| anyhow::anyhow!("the masking key is not base64"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("the masking key must be 32 bytes, not {}", b.len()))
}

/// A new masking key line.
pub fn new_masking_key_line() -> String {
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Creates a masking key file (mode 0600) unless it exists.
pub fn create_masking_key_if_missing(path: &Path) -> anyhow::Result<()> {
    let text = format!(
        "# Vigil masking key: keyed hashes of masked values (format \"hash\") use it.\n\
         # Changing it changes every hashed value.\n{}\n",
        new_masking_key_line()
    );
    crate::body_key::create_secret_file_if_missing(path, &text, "masking key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policies_load() {
        let phi = load_policy(PHI_DEFAULT).unwrap();
        assert_eq!(phi.name(), "phi-default");
        assert!(phi.masks_anything());
        let all = load_policy(ALLOW_ALL).unwrap();
        assert!(!all.masks_anything());
        assert!(load_policy("builtin:nope").is_err());
    }

    #[test]
    fn masking_keys_parse_or_say_why() {
        let line = new_masking_key_line();
        assert!(parse_masking_key(&format!("# c\n{line}\n")).is_ok());
        for (bad, why) in [
            ("", "no key line"),
            ("not base64!", "not base64"),
            ("AAAA", "32 bytes"),
        ] {
            let e = parse_masking_key(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
