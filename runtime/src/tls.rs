//! TLS to clients, for every adapter: the certificate and key from PEM
//! files, and a client connection that is plaintext TCP or TLS over it,
//! read and written the same way. An adapter decides when to accept TLS
//! (PostgreSQL after an SSLRequest, HTTP from the first byte); the
//! PostgreSQL adapter's TLS to its upstream uses the same stream type.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How a listener offers TLS.
#[derive(Clone)]
pub struct TlsSettings {
    pub acceptor: TlsAcceptor,
    /// Refuse clients that do not switch to TLS.
    pub required: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// Why a certificate or key was refused (names the problem, never key bytes).
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("no certificate in the certificate file")]
    NoCertificate,
    #[error("no private key in the key file")]
    NoKey,
    #[error("cannot read PEM: {0}")]
    Pem(#[from] io::Error),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsSettings {
    /// From a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        required: bool,
    ) -> Result<Self, TlsConfigError> {
        let certs = rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err(TlsConfigError::NoCertificate);
        }
        let key = rustls_pemfile::private_key(&mut &key_pem[..])?.ok_or(TlsConfigError::NoKey)?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            required,
        })
    }
}

/// `[<listener>.tls]` as a config file writes it: a certificate and key
/// (PEM) for TLS to clients.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, the server certificate first.
    pub cert_file: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
    /// Refuse clients that do not switch to TLS (default true).
    #[serde(default = "required_by_default")]
    pub required: bool,
}

fn required_by_default() -> bool {
    true
}

impl TlsSection {
    /// Reads the files now, so that a missing or unusable one stops the
    /// start with its name; `listener` names the listener in errors
    /// (`postgres "ehr"`).
    pub fn load(&self, listener: &str) -> anyhow::Result<TlsSettings> {
        use anyhow::Context;
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .with_context(|| format!("{listener}: cannot read {}", path.display()))
        };
        let (cert, key) = (read(&self.cert_file)?, read(&self.key_file)?);
        TlsSettings::from_pem(&cert, &key, self.required)
            .with_context(|| format!("{listener}: unusable TLS certificate or key"))
    }
}

/// A connection that is plaintext TCP or TLS over it: `ClientStream` for
/// clients (server side of TLS), `UpstreamStream` towards the database
/// (client side of TLS).
pub enum MaybeTls<S> {
    Plain(TcpStream),
    Tls(Box<S>),
}

/// A client connection, plaintext or TLS.
pub type ClientStream = MaybeTls<TlsStream<TcpStream>>;

impl<S> MaybeTls<S> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
