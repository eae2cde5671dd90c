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
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

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
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> anyhow::Result<Self> {
        let uri: hyper::Uri = config.url.parse()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new();
        let https = match &config.ca_pem {
            Some(pem) => https.with_tls_config(tls_config(pem)?),
            None => https.with_webpki_roots(),
        };
        // An http URL stays plaintext (loopback); an https URL is TLS,
        // the server's name checked against its certificate.
        let connector = https
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
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
        match tokio::time::timeout(self.config.timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout(self.config.timeout)),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(
                vigil_proxy_core::identity::keys::error_chain(&e),
            )),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// A client TLS config trusting only the CA certificates in `pem`.
fn tls_config(pem: &[u8]) -> anyhow::Result<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "the CA file holds no certificate");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
