//! Logging in to the upstream with the gateway's own credential: used by
//! every session and by the catalog connection (see `catalog`).

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::codec::{self, AuthRequest, Frame};
use crate::server::{read_frame, UpstreamConfig};
use crate::upstream_auth::{md5_password, ScramClient, UpstreamAuthError};
use crate::upstream_tls::UpstreamStream;
use vigil_runtime::tls::MaybeTls;

/// Why the upstream login failed. Shown to the client: holds no credential.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection timed out")]
    Timeout,
    #[error("the server closed the connection during login")]
    Closed,
    #[error("the server sent an invalid message: {0}")]
    Protocol(#[from] codec::CodecError),
    #[error("{0}")]
    Auth(#[from] UpstreamAuthError),
    #[error("the server refused the gateway's login ({code}: {message})")]
    Refused { code: String, message: String },
    #[error("{0}")]
    Encoding(String),
    /// A startup parameter the proxy does not pass on (`startup_params`).
    #[error("{0}")]
    StartupSetting(String),
}

/// Connects (over TLS when configured) and authenticates (trust, cleartext,
/// MD5 or SCRAM-SHA-256) as
/// `cfg.user` to `database`, with the extra startup parameters given. Returns
/// the stream and every message after authentication up to and including
/// the first ReadyForQuery (ParameterStatus, BackendKeyData, notices).
pub async fn login(
    cfg: &UpstreamConfig,
    database: &str,
    extra_params: &[(String, String)],
) -> Result<(UpstreamStream, Vec<Frame>), UpstreamError> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let timeout = Duration::from_millis(cfg.connect_timeout_ms);
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| UpstreamError::Timeout)??;
    let _ = tcp.set_nodelay(true);
    let mut upstream = match &cfg.tls {
        Some(tls) => tokio::time::timeout(timeout, tls.connect(tcp))
            .await
            .map_err(|_| UpstreamError::Timeout)??,
        None => MaybeTls::Plain(tcp),
    };

    let mut params = vec![
        ("user".to_string(), cfg.user.clone()),
        ("database".to_string(), database.to_string()),
    ];
    params.extend(extra_params.iter().cloned());
    upstream.write_all(&codec::startup_message(&params)).await?;

    let password = || {
        cfg.password
            .as_deref()
            .ok_or(UpstreamAuthError::PasswordRequired)
    };
    let mut buf = BytesMut::with_capacity(8192);
    let mut scram: Option<ScramClient> = None;
    let mut after_auth = Vec::new();
    loop {
        let frame = tokio::time::timeout(timeout, read_frame(&mut upstream, &mut buf))
            .await
            .map_err(|_| UpstreamError::Timeout)??
            .ok_or(UpstreamError::Closed)?;
        match frame.tag {
            b'R' => {
                let reply = match codec::parse_auth_request(frame.body())? {
                    AuthRequest::Ok => continue,
                    AuthRequest::CleartextPassword => {
                        codec::password_message(password()?.as_bytes())
                    }
                    AuthRequest::Md5Password { salt } => codec::password_message(
                        md5_password(&cfg.user, password()?, salt).as_bytes(),
                    ),
                    AuthRequest::Sasl { mechanisms } => {
                        if !mechanisms.iter().any(|m| m == ScramClient::MECHANISM) {
                            return Err(UpstreamAuthError::NoSupportedMechanism(
                                mechanisms.join(", "),
                            )
                            .into());
                        }
                        let client = ScramClient::new(password()?);
                        let msg = codec::sasl_initial_response(
                            ScramClient::MECHANISM,
                            &client.client_first(),
                        );
                        scram = Some(client);
                        msg
                    }
                    AuthRequest::SaslContinue { data } => {
                        let client = scram.as_mut().ok_or(UpstreamAuthError::MalformedScram(
                            "unexpected SASL continue",
                        ))?;
                        // PBKDF2 at the server's iteration count: milliseconds
                        // at PostgreSQL's 4096, more if the server asks.
                        let answer =
                            vigil_runtime::blocking::may_block(|| client.client_final(&data))?;
                        codec::sasl_response(&answer)
                    }
                    AuthRequest::SaslFinal { data } => {
                        scram
                            .as_ref()
                            .ok_or(UpstreamAuthError::MalformedScram("unexpected SASL final"))?
                            .verify_server_final(&data)?;
                        continue;
                    }
                    AuthRequest::Other(code) => {
                        return Err(UpstreamAuthError::Unsupported(code).into())
                    }
                };
                upstream.write_all(&reply).await?;
            }
            b'E' => {
                let fields = codec::parse_error_fields(frame.body())?;
                return Err(UpstreamError::Refused {
                    code: fields.code,
                    message: fields.message,
                });
            }
            b'Z' => {
                after_auth.push(frame);
                return Ok((upstream, after_auth));
            }
            _ => after_auth.push(frame),
        }
    }
}
