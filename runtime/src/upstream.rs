//! The HTTP client a gateway reaches its upstream server with (an MCP
//! server, a model provider): HTTP/1.1 over plaintext to loopback or TLS
//! (rustls with ring, as everywhere in Vigil) checked against a configured
//! CA or the public web roots, with a time limit for the response's
//! headers. What is sent (which headers, which credential) is the
//! adapter's business.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("cannot be reached: {0}")]
    Unreachable(String),
}

/// A pooled client for one upstream.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// `ca_pem`: the CA certificates an https server's certificate must
    /// chain to; `None`: the public web roots.
    pub fn new(ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new();
        let https = match ca_pem {
            Some(pem) => https.with_tls_config(tls_config(pem)?),
            None => https.with_webpki_roots(),
        };
        // An http URL stays plaintext (the config allows it for loopback);
        // an https URL is TLS, the server's name checked.
        let connector = https
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client })
    }

    /// Sends `request`; its response's headers must arrive within `timeout`
    /// (the body then goes on as long as the server writes).
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => Err(SendError::Timeout(timeout)),
            Ok(Err(e)) => Err(SendError::Unreachable(
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
