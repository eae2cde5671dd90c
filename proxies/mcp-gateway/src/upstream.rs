//! The MCP server behind the gateway, reached over Streamable HTTP with the
//! gateway's own credential. The agent's token and every header the agent
//! sent stay at the gateway: only the headers MCP defines are passed on,
//! and the session id is the server's, never the one the agent was given.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use vigil_runtime::upstream::{HttpClient, SendError};

/// How the gateway proves itself to the server.
#[derive(Clone)]
pub enum UpstreamAuth {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl std::fmt::Debug for UpstreamAuth {
    // Never the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAuth::None => f.write_str("None"),
            UpstreamAuth::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// For an https URL: the CA certificates (PEM) the server's
    /// certificate must chain to; `None`: the public web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The server's endpoint; for a stdio server, the gateway's bridge to
    /// it (set when the listener starts).
    pub url: String,
    /// A stdio server the gateway runs itself (`None`: a remote server).
    pub stdio: Option<crate::stdio_bridge::StdioConfig>,
    pub auth: UpstreamAuth,
    /// How long the server may take to send a response's headers.
    pub timeout: Duration,
}

/// The headers of MCP a client request carries that the server must see
/// (the session id is set separately: it is the server's own).
pub const PASSED_ON: [&str; 2] = ["mcp-protocol-version", "last-event-id"];

/// The 2026-07-28 metadata headers, as the gateway wrote them from the
/// body it sends (`crate::post::upstream_headers`; `Mcp-Param-*` are not
/// passed).
fn is_metadata(name: &str) -> bool {
    name == "mcp-method" || name == "mcp-name"
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the MCP server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the MCP server cannot be reached: {0}")]
    Unreachable(String),
}

impl UpstreamError {
    /// What the agent is told: no address, no inner error (the address of
    /// a stdio server's bridge, a server's internals, are not theirs).
    pub fn for_agent(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) => "the MCP server did not answer in time",
            UpstreamError::Unreachable(_) => "the MCP server cannot be reached",
        }
    }
}

/// A client for one upstream server, shared by every session.
#[derive(Clone)]
pub struct Upstream {
    config: UpstreamConfig,
    uri: hyper::Uri,
    client: HttpClient,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> anyhow::Result<Self> {
        let uri: hyper::Uri = config.url.parse()?;
        let client = HttpClient::new(config.ca_pem.as_deref())?;
        Ok(Self {
            config,
            uri,
            client,
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// Sends one request: `method` with `body`, the MCP headers taken from
    /// the client's `passed`, and the server's own session id.
    pub async fn send(
        &self,
        method: Method,
        body: Option<Bytes>,
        passed: &HeaderMap,
        session: Option<&str>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(self.uri.clone());
        let headers = request.headers_mut().expect("a fresh builder has headers");
        for (name, value) in passed {
            let lower = name.as_str();
            if PASSED_ON.contains(&lower) || is_metadata(lower) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(if method == Method::GET {
                "text/event-stream"
            } else {
                "application/json, text/event-stream"
            }),
        );
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(id) = session {
            if let Ok(v) = HeaderValue::from_str(id) {
                headers.insert(HeaderName::from_static("mcp-session-id"), v);
            }
        }
        if let UpstreamAuth::Bearer(token) = &self.config.auth {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        self.client
            .send(request, self.config.timeout)
            .await
            .map_err(|e| match e {
                SendError::Timeout(t) => UpstreamError::Timeout(t),
                SendError::Unreachable(e) => UpstreamError::Unreachable(e),
            })
    }
}
