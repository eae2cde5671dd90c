//! TLS to the upstream database, as libpq's `sslmode=require` and
//! `sslmode=verify-full` do it: an SSLRequest, the server's 'S', then a TLS
//! handshake on the same connection.
//!
//! - `require`: the connection is encrypted, the certificate is not checked
//!   (it protects against eavesdropping, not against an active attacker);
//!   the handshake signatures are still verified;
//! - `verify-full`: the certificate must chain to the configured CA and name
//!   the configured server name.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use vigil_runtime::tls::MaybeTls;

/// A connection to the upstream, plaintext or TLS.
pub type UpstreamStream = MaybeTls<TlsStream<TcpStream>>;

/// How the proxy protects its connection to the upstream.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    verify: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("verify-full needs a CA certificate file (ca_file)")]
    NoCa,
    #[error("no certificate in the CA file")]
    EmptyCa,
    #[error("cannot read the CA file: {0}")]
    Pem(#[from] std::io::Error),
    #[error("invalid server name {0:?}")]
    ServerName(String),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

impl UpstreamTls {
    /// `verify`: verify-full with the CA certificates in `ca_pem`; else
    /// require (encrypted, certificate not checked).
    pub fn new(
        verify: bool,
        ca_pem: Option<&[u8]>,
        server_name: &str,
    ) -> Result<Self, UpstreamTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let config = if verify {
            let pem = ca_pem.ok_or(UpstreamTlsError::NoCa)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                roots.add(cert?)?;
            }
            if roots.is_empty() {
                return Err(UpstreamTlsError::EmptyCa);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth()
        };
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|_| UpstreamTlsError::ServerName(server_name.to_string()))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            verify,
        })
    }

    /// Asks the server for TLS (SSLRequest) and performs the handshake.
    pub async fn connect(&self, mut tcp: TcpStream) -> std::io::Result<UpstreamStream> {
        tcp.write_all(&crate::codec::ssl_request()).await?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await?;
        if answer[0] != b'S' {
            return Err(std::io::Error::other(
                "the upstream server does not offer TLS (it answered the SSLRequest with 'N')",
            ));
        }
        let stream = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| std::io::Error::other(format!("TLS to the upstream failed: {e}")))?;
        Ok(MaybeTls::Tls(Box::new(stream)))
    }
}

/// `require`: any certificate is accepted, the handshake is still checked.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
