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
