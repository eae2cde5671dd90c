//! An upstream's URL as an HTTP gateway's config gives it (an MCP server,
//! a model provider), checked the same way for every gateway: http or
//! https; no user or password in it (credentials come from a secret);
//! plaintext only to loopback unless the operator says the network is
//! trusted; a CA file only for https.

use anyhow::{bail, Context};

/// Checks `text` (the config's `upstream.url`) for the listener `label`.
pub fn check(
    label: &str,
    text: &str,
    ca_file_given: bool,
    allow_plaintext: bool,
) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(text).with_context(|| format!("{label}: upstream.url {text:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("{label}: upstream.url must be http:// or https://");
    }
    if url.scheme() == "http" && ca_file_given {
        bail!("{label}: upstream.ca_file is for an https:// server");
    }
    if url.scheme() == "http" && !url.host().is_some_and(is_loopback) && !allow_plaintext {
        bail!(
            "{label}: upstream.url is plaintext http:// to another host: the gateway's \
             credential and everything sent would cross the network in the clear; use \
             https:// (or allow_plaintext = true on a network you trust)"
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("{label}: upstream.url must not hold a user or password: give the credential as a secret (an environment variable or a file)");
    }
    Ok(url)
}

/// Whether a URL's host is this machine.
pub fn is_loopback(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}
