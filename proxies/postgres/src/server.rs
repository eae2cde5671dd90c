//! Accepting clients: the startup handshake, client authentication, the
//! upstream login with the gateway's own credential, then the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vigil_proto::events::{
    event::Kind, login_refused, session_opened, CancelRequested, LoginRefused, Protocol,
    SessionOpened, SqlSession,
};
use vigil_proxy_core::{Approvals, Authenticator, EventSink, SessionContext, VerifiedIdentity};

use vigil_proxy_core::admission::{Admission, SessionLimits};
use vigil_proxy_core::mask::Masker;
use vigil_runtime::drain::Drain;
use vigil_runtime::recorder::{EndReason, SessionRecorder};
use vigil_sql::policy::Policy;

use crate::cancel::{CancelRegistry, Registration, UpstreamKey};
use crate::catalog::Catalog;
use crate::codec::{self, Frame, StartupPacket};
use crate::gate::Gate;
use crate::login::{self, UpstreamError};
use crate::relay;
use crate::results;
use crate::startup_params;
use crate::upstream_tls::{UpstreamStream, UpstreamTls};
use vigil_runtime::tls::{ClientStream, TlsSettings};

/// How long a client may take to send its startup packet and password.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the proxy logs in, and as whom. The password never reaches clients.
/// (Parsed from the config file by the binary; this crate only uses it.)
#[derive(Clone)]
pub struct UpstreamConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The gateway's password for `user` (None for trust authentication).
    pub password: Option<String>,
    /// Pin every session to this database; by default the client's choice.
    pub database: Option<String>,
    pub connect_timeout_ms: u64,
    /// TLS to the upstream (`None`: plaintext).
    pub tls: Option<UpstreamTls>,
}

/// Written by hand so that the password can never reach a log line.
impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("tls", &self.tls)
            .finish()
    }
}

/// One PostgreSQL listener of the gateway.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The connection's name, recorded on every event ("ehr-primary").
    pub name: String,
    pub upstream: UpstreamConfig,
    /// OAuth scopes an access token must grant to connect here (static
    /// identities have no scopes and are not checked).
    pub required_scopes: Vec<String>,
    /// TLS to clients (SSLRequest answered 'S'); `None`: answered 'N'.
    pub tls: Option<TlsSettings>,
    /// What statements may run and how results are masked.
    pub policy: Arc<Policy>,
    /// The masking engine (keyed-hash key and content detectors).
    pub masker: Arc<Masker>,
    /// Where statements that policy holds for review wait for a decision;
    /// `None`: no approval service, so they are refused.
    pub approvals: Option<Arc<dyn Approvals>>,
    /// How many sessions the listener holds at once, in all and per identity.
    pub limits: SessionLimits,
}

/// The PostgreSQL proxy: shared by every connection it accepts.
pub struct PostgresProxy {
    config: ProxyConfig,
    auth: Authenticator,
    sink: Arc<dyn EventSink>,
    cancels: CancelRegistry,
    catalog: Arc<Catalog>,
    sessions: Admission,
}

/// Connections open at once on a listener whose sessions are not capped.
const MAX_CONNECTIONS_UNCAPPED: usize = 4096;

impl vigil_runtime::listener::Adapter for PostgresProxy {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn serve(
        self: Arc<Self>,
        conn: TcpStream,
        peer: SocketAddr,
        drain: Arc<Drain>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.handle_client(conn, peer, drain))
    }

    fn refuse_busy(
        &self,
        mut conn: TcpStream,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            // PostgreSQL's own answer when it is full.
            let msg = codec::error_response("FATAL", "53300", "sorry, too many clients already");
            let _ = conn.write_all(&msg).await;
        })
    }
}

/// Why a session ended before the relay started. The text goes to the client.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("{0}")]
    Protocol(#[from] codec::CodecError),
    #[error("connection closed during startup")]
    Closed,
    #[error("i/o error during startup: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for the client")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

impl PostgresProxy {
    pub fn new(config: ProxyConfig, auth: Authenticator, sink: Arc<dyn EventSink>) -> Arc<Self> {
        let catalog = Arc::new(Catalog::new(config.upstream.clone()));
        let sessions = Admission::new(config.limits);
        Arc::new(Self {
            config,
            auth,
            sink,
            cancels: CancelRegistry::default(),
            catalog,
            sessions,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Accepts clients until the shutdown begins (the runtime's listener);
    /// each runs in its own task, and nothing one client sends can stop
    /// the others. Sessions still open at the end of the drain period are
    /// ended (see [`vigil_runtime::drain`]).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        drain: Arc<Drain>,
    ) -> std::io::Result<()> {
        // Connections not yet logged in count too: a cap well above the
        // session cap keeps a flood of half-open logins from exhausting
        // file descriptors, without refusing anyone a session could admit.
        let max_connections = match self.config.limits.max_sessions {
            0 => MAX_CONNECTIONS_UNCAPPED,
            n => (n * 4).max(64),
        };
        vigil_runtime::listener::serve(self, listener, drain, max_connections).await
    }

    async fn handle_client(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr, drain: Arc<Drain>) {
        let mut buf = BytesMut::with_capacity(8192);
        let (mut client, startup) = match tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            read_startup(tcp, &mut buf, self.config.tls.as_ref()),
        )
        .await
        .unwrap_or(Err((None, HandshakeError::Timeout)))
        {
            Ok((client, Startup::Session(params))) => (client, params),
            Ok((
                _,
                Startup::Cancel {
                    process_id,
                    secret_key,
                },
            )) => {
                // PostgreSQL answers a CancelRequest with nothing.
                self.forward_cancel(process_id, secret_key, peer).await;
                return;
            }
            Err((client, e)) => {
                tracing::info!(%peer, error = %e, "refused client: bad startup");
                if let Some(mut client) = client {
                    send_fatal(&mut client, "08P01", &format!("invalid startup: {e}")).await;
                }
                return;
            }
        };
        if !client.is_tls() && self.config.tls.as_ref().is_some_and(|t| t.required) {
            tracing::info!(%peer, "refused client: TLS required");
            send_fatal(
                &mut client,
                "28000",
                "Vigil requires TLS on this listener (use sslmode=require or stronger)",
            )
            .await;
            return;
        }

        let identity = match self
            .authenticate(&mut client, &mut buf, &startup, peer)
            .await
        {
            Some(identity) => identity,
            None => return,
        };
        // Held until the session ends: one database connection each.
        let _slot = match self.sessions.admit(&identity.issuer, &identity.subject) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::info!(%peer, subject = %identity.subject, error = %refusal, "refused client: session cap");
                self.record_refused_login(
                    &startup,
                    peer,
                    client.is_tls(),
                    "too_many_sessions",
                    &refusal.to_string(),
                );
                send_fatal(&mut client, "53300", &refusal.to_string()).await;
                return;
            }
        };

        let session = Arc::new(SessionContext::new(
            &self.config.name,
            &identity,
            Protocol::Postgres,
        ));
        let database = self
            .config
            .upstream
            .database
            .clone()
            .or_else(|| startup.param("database").map(str::to_string))
            .unwrap_or_else(|| self.config.upstream.user.clone());
        let opened = SessionOpened {
            client_addr: peer.to_string(),
            tls: client.is_tls(),
            upstream_tls: self.config.upstream.tls.is_some(),
            upstream_addr: format!(
                "{}:{}",
                self.config.upstream.host, self.config.upstream.port
            ),
            detail: Some(session_opened::Detail::Sql(SqlSession {
                database: database.clone(),
                client_user: identity.subject.clone(),
                upstream_user: self.config.upstream.user.clone(),
                application_name: startup.param("application_name").unwrap_or("").into(),
            })),
        };
        // Durable before anything reaches the upstream.
        let recorder = match SessionRecorder::open(session.clone(), self.sink.clone(), opened).await
        {
            Ok(recorder) => recorder,
            Err(e) => {
                tracing::error!(session = %session.session_id(), error = %e, "cannot record session start; refusing session");
                send_fatal(
                    &mut client,
                    "57P03",
                    &format!("Vigil cannot record this session: {e}"),
                )
                .await;
                return;
            }
        };
        tracing::info!(session = %session.session_id(), subject = %identity.subject, %peer, "session opened");

        let reason = match self.connect_upstream(&startup, &database, &recorder).await {
            // `registration` keeps the session's cancel key live until it ends.
            Ok((upstream, greeting, registration)) => {
                if let Err(e) = client.write_all(&greeting).await {
                    EndReason::ClientDisconnected(Some(e.to_string()))
                } else {
                    let policy = self.session_policy(&identity, &database, registration.as_ref());
                    relay::run(client, buf, upstream, recorder.clone(), policy, &drain).await
                }
            }
            Err(UpstreamError::StartupSetting(refusal)) => {
                tracing::info!(session = %session.session_id(), "refused client: startup setting");
                send_fatal(&mut client, "42501", &refusal).await;
                EndReason::Error(refusal)
            }
            Err(UpstreamError::Encoding(refusal)) => {
                tracing::info!(session = %session.session_id(), "refused client: client_encoding is not UTF-8");
                send_fatal(&mut client, "0A000", &refusal).await;
                EndReason::Error(refusal)
            }
            Err(e) => {
                tracing::warn!(session = %session.session_id(), error = %e, "upstream login failed");
                send_fatal(
                    &mut client,
                    "08006",
                    &format!(
                        "Vigil could not reach the upstream database \"{}\": {e}",
                        self.config.name
                    ),
                )
                .await;
                EndReason::UpstreamUnavailable(e.to_string())
            }
        };
        recorder.close(&reason).await;
        tracing::info!(session = %session.session_id(), reason = %reason.to_reason_text(), "session closed");
    }

    /// Asks for the password and checks it. On failure the client has been
    /// told why, and `None` comes back.
    async fn authenticate(
        &self,
        client: &mut ClientStream,
        buf: &mut BytesMut,
        startup: &StartupPacket,
        peer: SocketAddr,
    ) -> Option<VerifiedIdentity> {
        let Some(user) = startup.param("user").map(str::to_string) else {
            send_fatal(
                client,
                "28000",
                "no PostgreSQL user name specified in startup packet",
            )
            .await;
            return None;
        };
        if let Some(v) = startup.param("replication") {
            if !matches!(v, "false" | "off" | "no" | "0") {
                send_fatal(
                    client,
                    "42501",
                    "Vigil does not relay replication connections",
                )
                .await;
                return None;
            }
        }
        // The password is a secret (a static identity's, or a bearer token
        // that anyone who sees it can replay until it expires): cleartext
        // only where nobody can watch the wire.
        let loopback = peer.ip().is_loopback();
        if !loopback && !client.is_tls() {
            send_fatal(
                client,
                "28000",
                "Vigil refuses passwords over an unencrypted connection from a remote address (use sslmode=require or stronger)",
            )
            .await;
            return None;
        }
        if client
            .write_all(&codec::auth_cleartext_request())
            .await
            .is_err()
        {
            return None;
        }
        let password =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_password_frame(client, buf)).await {
                Ok(Ok(Some(frame))) if frame.tag == b'p' => {
                    match codec::parse_password(frame.body()) {
                        Ok(p) => p,
                        Err(e) => {
                            send_fatal(client, "08P01", &e.to_string()).await;
                            return None;
                        }
                    }
                }
                Ok(Ok(Some(_))) => {
                    send_fatal(client, "08P01", "expected a password message").await;
                    return None;
                }
                // psql hangs up here once to ask the user for a password: not an error.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    send_fatal(client, "08P01", &format!("invalid password message: {e}")).await;
                    return None;
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            };
        // Off the async threads: Argon2 is slow on purpose, and a token
        // naming an unknown key makes a (rate-limited) JWKS request.
        let auth = self.auth.clone();
        let user_for_check = user.clone();
        let scopes = self.config.required_scopes.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            auth.authenticate(
                &user_for_check,
                &password,
                peer.ip(),
                &scopes,
                std::time::SystemTime::now(),
            )
        })
        .await;
        match verdict {
            Ok(Ok(identity)) => Some(identity),
            Ok(Err(e)) => {
                // The reason, never the password or token.
                tracing::info!(%peer, %user, reason = e.code(), error = %e, "authentication failed");
                // A throttled spell is recorded once, a busy gate not at all:
                // a flood of refusals must not become a flood of events.
                if e.worth_recording() {
                    self.record_refused_login(
                        startup,
                        peer,
                        client.is_tls(),
                        e.code(),
                        &e.to_string(),
                    );
                }
                // PostgreSQL's "too many connections": try again later.
                let code = if e.is_overload() { "53300" } else { "28P01" };
                send_fatal(client, code, &e.to_string()).await;
                None
            }
            Err(_) => {
                send_fatal(
                    client,
                    "XX000",
                    "internal error while checking the password",
                )
                .await;
                None
            }
        }
    }

    /// Records a failed login (HIPAA log-in monitoring). Not awaited: nothing
    /// was let in, so there is nothing to hold back while it becomes durable.
    fn record_refused_login(
        &self,
        startup: &StartupPacket,
        peer: SocketAddr,
        tls: bool,
        reason_code: &str,
        reason: &str,
    ) {
        let nobody = SessionContext::new(
            &self.config.name,
            &VerifiedIdentity::default(),
            Protocol::Postgres,
        );
        let event = nobody.event(Kind::LoginRefused(LoginRefused {
            client_addr: peer.to_string(),
            tls,
            reason_code: reason_code.into(),
            reason: reason.into(),
            detail: Some(login_refused::Detail::Sql(SqlSession {
                database: startup.param("database").unwrap_or("").into(),
                client_user: startup.param("user").unwrap_or("").into(),
                upstream_user: String::new(),
                application_name: startup.param("application_name").unwrap_or("").into(),
            })),
        }));
        vigil_runtime::recorder::record_login_refused(&self.sink, event);
    }

    /// Logs in upstream and returns the stream with the messages the client
    /// should see to finish its own startup (AuthenticationOk, ParameterStatus,
    /// our BackendKeyData, ReadyForQuery), and the upstream's cancel key.
    async fn connect_upstream(
        &self,
        startup: &StartupPacket,
        database: &str,
        recorder: &Arc<SessionRecorder>,
    ) -> Result<(UpstreamStream, Bytes, Option<Registration>), UpstreamError> {
        let client_params = match startup {
            StartupPacket::Startup { params } => {
                startup_params::filter(params).map_err(UpstreamError::StartupSetting)?
            }
            _ => Vec::new(),
        };
        let (upstream, frames) =
            login::login(&self.config.upstream, database, &client_params).await?;
        let mut greeting = BytesMut::new();
        let mut registration = None;
        greeting.extend_from_slice(&codec::auth_ok());
        for frame in frames {
            if frame.tag == b'K' {
                // Clients get a key of the proxy's own: the upstream's key
                // would let them cancel queries behind the gateway's back.
                // The registry maps it back (see `cancel`).
                let (process_id, secret_key) = codec::parse_backend_key_data(&frame.body())?;
                let reg = self.cancels.register(
                    UpstreamKey {
                        process_id,
                        secret_key,
                    },
                    Some(recorder.clone()),
                );
                let (pid, key) = reg.client_key();
                greeting.extend_from_slice(&codec::backend_key_data(pid, key));
                registration = Some(reg);
            } else {
                if frame.tag == b'S' {
                    // A client_encoding other than UTF-8 (from the startup
                    // packet or its `options`) would let statements read
                    // differently by the classifier and by PostgreSQL.
                    let (name, value) = results::parse_parameter_status(frame.body())?;
                    if name == "client_encoding" && !results::is_utf8_encoding(&value) {
                        return Err(UpstreamError::Encoding(results::encoding_refusal(&value)));
                    }
                }
                // ParameterStatus, NoticeResponse, ReadyForQuery and the
                // like go to the client as they are.
                greeting.extend_from_slice(&frame.raw);
            }
        }
        Ok((upstream, greeting.freeze(), registration))
    }

    /// The policy state of a new session.
    fn session_policy(
        &self,
        identity: &VerifiedIdentity,
        database: &str,
        registration: Option<&Registration>,
    ) -> relay::SessionPolicy {
        let cfg = &self.config.upstream;
        relay::SessionPolicy {
            gate: Gate::new(
                self.config.policy.clone(),
                &identity.subject,
                &identity.roles,
                &self.config.name,
            ),
            identity: identity.clone(),
            masker: self.config.masker.clone(),
            catalog: self.catalog.clone(),
            database: database.to_string(),
            approvals: self.config.approvals.clone(),
            hold_cancel: registration.map(|r| r.hold_cancel()),
            cancel: registration.map(|r| {
                let key = r.upstream_key();
                relay::UpstreamCancel {
                    addr: format!("{}:{}", cfg.host, cfg.port),
                    process_id: key.process_id,
                    secret_key: key.secret_key,
                }
            }),
        }
    }

    /// Sends the upstream's CancelRequest for a client's proxy key, if the
    /// key belongs to a live session. Best effort, like PostgreSQL's own:
    /// the client learns the outcome from its running query.
    async fn forward_cancel(&self, process_id: i32, secret_key: i32, peer: SocketAddr) {
        let Some(found) = self.cancels.lookup(process_id, secret_key) else {
            tracing::info!(%peer, "cancel request with an unknown key: ignored");
            return;
        };
        let (upstream_key, recorder) = (found.upstream, found.recorder);
        // A statement held for review is not upstream yet: the cancel
        // withdraws it (only one waiting now; a later hold is not touched).
        found.hold_cancel.notify_waiters();
        let cfg = &self.config.upstream;
        let addr = (cfg.host.as_str(), cfg.port);
        let connect = TcpStream::connect(addr);
        let result = match tokio::time::timeout(
            Duration::from_millis(cfg.connect_timeout_ms),
            connect,
        )
        .await
        {
            Ok(Ok(mut upstream)) => upstream
                .write_all(&codec::cancel_request(
                    upstream_key.process_id,
                    upstream_key.secret_key,
                ))
                .await
                .map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connection timed out".into()),
        };
        match &result {
            Ok(()) => tracing::info!(%peer, "cancel request forwarded upstream"),
            Err(e) => tracing::warn!(%peer, error = %e, "cannot forward cancel request"),
        }
        // Recorded after forwarding: a cancel only ever stops work, so it is
        // not held back for the ledger (unlike a statement).
        if let Some(recorder) = recorder {
            let cancel = Kind::CancelRequested(CancelRequested {
                client_addr: peer.to_string(),
                forwarded: result.is_ok(),
            });
            if let Err(e) = recorder.record_durably(vec![cancel]).await {
                tracing::error!(session = %recorder.session().session_id(), error = %e, "cannot record a cancel request");
            }
        }
    }
}

/// What a client's first packets asked for.
enum Startup {
    /// A session (the StartupMessage).
    Session(StartupPacket),
    /// A CancelRequest for the session holding this (proxy) key.
    Cancel { process_id: i32, secret_key: i32 },
}

/// Reads until a StartupMessage or CancelRequest arrives. An SSLRequest is
/// answered 'S' and the connection switched to TLS when the listener has a
/// certificate, else 'N'; GSSENCRequest is always 'N' (libpq then goes on
/// without it, or gives up when the client demands it). On error, the
/// stream comes back when the client can still be told why.
async fn read_startup(
    tcp: TcpStream,
    buf: &mut BytesMut,
    tls: Option<&TlsSettings>,
) -> Result<(ClientStream, Startup), (Option<ClientStream>, HandshakeError)> {
    let mut client = ClientStream::Plain(tcp);
    loop {
        let packet = match codec::decode_startup(buf) {
            Ok(p) => p,
            Err(e) => return Err((Some(client), e.into())),
        };
        if let Some(packet) = packet {
            match packet {
                StartupPacket::SslRequest => match (tls, client) {
                    (Some(settings), ClientStream::Plain(mut tcp)) => {
                        // Bytes already sent after the SSLRequest would be
                        // read as if they came over TLS (CVE-2021-23214).
                        if !buf.is_empty() {
                            return Err((
                                Some(ClientStream::Plain(tcp)),
                                HandshakeError::Protocol(codec::CodecError::Malformed {
                                    what: "SSLRequest",
                                    detail: "data sent before the TLS handshake",
                                }),
                            ));
                        }
                        if let Err(e) = tcp.write_all(b"S").await {
                            return Err((None, e.into()));
                        }
                        match settings.acceptor.accept(tcp).await {
                            Ok(stream) => client = ClientStream::Tls(Box::new(stream)),
                            Err(e) => return Err((None, HandshakeError::Tls(e.to_string()))),
                        }
                    }
                    (_, mut other) => {
                        // No TLS here, or a second SSLRequest inside TLS.
                        if let Err(e) = other.write_all(b"N").await {
                            return Err((None, e.into()));
                        }
                        client = other;
                    }
                },
                StartupPacket::GssEncRequest => {
                    if let Err(e) = client.write_all(b"N").await {
                        return Err((None, e.into()));
                    }
                }
                StartupPacket::Cancel {
                    process_id,
                    secret_key,
                } => {
                    return Ok((
                        client,
                        Startup::Cancel {
                            process_id,
                            secret_key,
                        },
                    ))
                }
                startup @ StartupPacket::Startup { .. } => {
                    return Ok((client, Startup::Session(startup)))
                }
            }
            continue;
        }
        match client.read_buf(buf).await {
            Ok(0) => return Err((None, HandshakeError::Closed)),
            Ok(_) => {}
            Err(e) => return Err((None, e.into())),
        }
    }
}

/// The longest password message accepted: a token is capped at 16 KiB, and
/// an unauthenticated client must not make the proxy reserve more.
const MAX_PASSWORD_MESSAGE: usize = 32 * 1024;

/// Reads the client's password message, refusing a declared length over
/// [`MAX_PASSWORD_MESSAGE`] before any buffer is reserved for it.
async fn read_password_frame(
    client: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, std::io::Error> {
    loop {
        if buf.len() >= 5 {
            let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if declared > MAX_PASSWORD_MESSAGE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "password message too long",
                ));
            }
            if let Some(frame) = codec::decode_frame(buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                return Ok(Some(frame));
            }
        }
        if client.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Reads one typed message; `Ok(None)` when the peer closed cleanly.
pub(crate) async fn read_frame<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, std::io::Error> {
    loop {
        match codec::decode_frame(buf) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn send_fatal<S: tokio::io::AsyncWrite + Unpin>(client: &mut S, code: &str, message: &str) {
    let _ = client
        .write_all(&codec::error_response("FATAL", code, message))
        .await;
    let _ = client.shutdown().await;
}
