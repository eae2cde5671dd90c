//! The routes of an MCP listener, its per-connection state, and the
//! runtime adapter that serves each connection with HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Json, Router};
use tokio::net::{TcpListener, TcpStream};
use vigil_mcp::jsonrpc::{Id, Message};
use vigil_proto::events::{
    event::Kind, login_refused, LoginRefused, McpSession, Protocol, SessionOpened,
};
use vigil_proxy_core::identity::VerifiedIdentity;
use vigil_proxy_core::{Authenticator, EventSink, SessionContext};
use vigil_runtime::drain::Drain;
use vigil_runtime::recorder::{record_login_refused, EndReason, SessionRecorder};

use crate::auth::{self, Challenge};
use crate::session::{Session, Sessions, MAX_SESSIONS};
use crate::upstream::Upstream;
use crate::{codes, GatewayConfig};

/// One MCP listener.
pub struct McpGateway {
    pub(crate) config: GatewayConfig,
    auth: Authenticator,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) upstream: Upstream,
    pub(crate) sessions: Sessions,
    pub(crate) pins: crate::pins::PinStore,
    /// The public URL's origin and host (lower-case), read once: the
    /// Host/Origin checks of every request compare with them.
    public_origin: Option<String>,
    public_host: Option<String>,
    /// Becomes true when the drain's deadline passes: the gateway's own
    /// waits (reviews of changed tools) end then.
    closing: tokio::sync::watch::Sender<bool>,
    /// The listener's drain, once serving: the gateway's own tasks hold
    /// its guards so that shutdown waits for them.
    drain: std::sync::OnceLock<Arc<Drain>>,
}

/// What one HTTP connection carries across its requests.
pub(crate) struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The stateless revision's session of this connection.
    pub stateless: tokio::sync::Mutex<Option<Arc<Session>>>,
}

/// How long a request's headers may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

impl McpGateway {
    /// The listener, and for a stdio server its bridge, started.
    pub async fn new(
        mut config: GatewayConfig,
        auth: Authenticator,
        sink: Arc<dyn EventSink>,
    ) -> anyhow::Result<Arc<Self>> {
        if let Some(stdio) = config.upstream.stdio.clone() {
            let (url, token) = crate::stdio_bridge::start(stdio).await?;
            config.upstream.url = url;
            config.upstream.auth = crate::upstream::UpstreamAuth::Bearer(token);
        }
        let upstream = Upstream::new(config.upstream.clone())?;
        let pins = match &config.pins_file {
            Some(path) => crate::pins::PinStore::open(path.clone())?,
            None => crate::pins::PinStore::in_memory(),
        };
        let public = url::Url::parse(&config.resource).ok();
        let public_origin = public.as_ref().map(|u| u.origin().ascii_serialization());
        let public_host = public
            .as_ref()
            .and_then(|u| u.host_str())
            .map(str::to_ascii_lowercase);
        Ok(Arc::new(Self {
            public_origin,
            public_host,
            pins,
            config,
            auth,
            sink,
            upstream,
            sessions: Sessions::new(MAX_SESSIONS),
            closing: tokio::sync::watch::Sender::new(false),
            drain: std::sync::OnceLock::new(),
        }))
    }

    /// A guard shutdown waits for (`None` before serving).
    pub(crate) fn drain_guard(&self) -> Option<vigil_runtime::drain::SessionGuard> {
        self.drain.get().map(|d| d.session())
    }

    /// Resolves when the gateway begins to shut down.
    pub(crate) async fn closing(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|c| *c).await;
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Serves the listener until the shutdown's drain ends; sessions idle
    /// past the timeout are closed on the way, and every session still
    /// open at the end is closed with reason `shutdown`.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        drain: Arc<Drain>,
    ) -> std::io::Result<()> {
        let _ = self.drain.set(drain.clone());
        {
            let (gw, drain) = (self.clone(), drain.clone());
            tokio::spawn(async move {
                drain.stopping().await;
                gw.closing.send_replace(true);
            });
        }
        // Changed tools still waiting since before a restart.
        crate::tool_review::start(&self);
        let sweeper = {
            let gw = self.clone();
            tokio::spawn(async move {
                let every = (gw.config.idle_timeout / 4)
                    .clamp(Duration::from_millis(100), Duration::from_secs(30));
                loop {
                    tokio::time::sleep(every).await;
                    for s in gw.sessions.take_idle(gw.config.idle_timeout) {
                        gw.end_session(
                            &s,
                            &EndReason::ClientDisconnected(Some(
                                "idle past the session timeout".into(),
                            )),
                        )
                        .await;
                    }
                }
            })
        };
        let closer = {
            let gw = self.clone();
            let drain = drain.clone();
            tokio::spawn(async move {
                drain.deadline().await;
                for s in gw.sessions.take_all() {
                    gw.end_session(&s, &EndReason::Shutdown).await;
                }
            })
        };
        let served =
            vigil_runtime::listener::serve(self.clone(), listener, drain.clone(), 4096).await;
        // Accepting stopped: the drain period, then every session ends.
        drain.deadline().await;
        sweeper.abort();
        let _ = closer.await;
        served
    }

    /// Ends a session here and at the server (a stdio server's process
    /// ends with it), unless the server ended it.
    pub(crate) async fn end_session(&self, session: &Session, reason: &EndReason) {
        self.sessions.remove(&session.gateway_id);
        if let Some(up) = session.upstream_id() {
            if !matches!(reason, EndReason::UpstreamClosed(_)) {
                let _ = self
                    .upstream
                    .send(hyper::Method::DELETE, None, &HeaderMap::new(), Some(&up))
                    .await;
            }
        }
        session.end(reason).await;
    }

    fn router(self: &Arc<Self>, conn: Arc<Conn>) -> Router {
        let path = self.config.path.clone();
        Router::new()
            .route(&path, any(mcp))
            .route(&auth::metadata_path(&path), get(metadata))
            .route("/.well-known/oauth-protected-resource", get(metadata))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
            .layer(Extension(conn))
            .with_state(self.clone())
    }

    /// The URL of this resource's metadata (RFC 9728).
    fn metadata_url(&self) -> String {
        match url::Url::parse(&self.config.resource) {
            Ok(u) => {
                let origin = u.origin().ascii_serialization();
                format!("{origin}{}", auth::metadata_path(u.path()))
            }
            Err(_) => auth::metadata_path(&self.config.path),
        }
    }

    /// The agent's identity from its bearer token, or the 401/403 answer.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        conn: &Conn,
    ) -> Result<VerifiedIdentity, Response> {
        let scopes = &self.config.required_scopes;
        let Some(token) = auth::bearer(headers) else {
            return Err(auth::refuse(
                Challenge::Missing,
                &self.metadata_url(),
                scopes,
            ));
        };
        let auth = self.auth.clone();
        let token = token.to_string();
        let required = scopes.clone();
        // Off the async threads: an unknown key id makes a JWKS request.
        let verdict = tokio::task::spawn_blocking(move || {
            auth.authenticate_bearer(&token, &required, SystemTime::now())
        })
        .await;
        match verdict {
            Ok(Ok(identity)) => Ok(identity),
            Ok(Err(e)) => {
                tracing::info!(peer = %conn.peer, reason = e.code(), error = %e, "MCP token refused");
                if e.worth_recording() {
                    self.record_refused(conn, e.code(), &e.to_string(), headers);
                }
                let challenge = if e.code() == "missing_scope" {
                    Challenge::InsufficientScope(e.to_string())
                } else {
                    Challenge::Invalid(e.to_string())
                };
                Err(auth::refuse(challenge, &self.metadata_url(), scopes))
            }
            Err(_) => Err(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while checking the token",
            )),
        }
    }

    fn record_refused(&self, conn: &Conn, code: &str, reason: &str, headers: &HeaderMap) {
        let nobody = SessionContext::new(
            &self.config.name,
            &VerifiedIdentity::default(),
            Protocol::Mcp,
        );
        let event = nobody.event(Kind::LoginRefused(LoginRefused {
            client_addr: conn.peer.to_string(),
            tls: conn.tls,
            reason_code: code.into(),
            reason: reason.into(),
            detail: Some(login_refused::Detail::Mcp(McpSession {
                protocol_version: header(headers, "mcp-protocol-version")
                    .unwrap_or_default()
                    .into(),
                upstream: self.config.upstream_label.clone(),
                ..McpSession::default()
            })),
        }));
        record_login_refused(&self.sink, event);
    }

    /// Who may make this request: the token's identity, from a Host and
    /// Origin that may use the endpoint; or the refusal.
    pub(crate) async fn admit(
        &self,
        headers: &HeaderMap,
        conn: &Conn,
    ) -> Result<VerifiedIdentity, Response> {
        // Where it comes from first: a rebinding page gets no token check
        // (and leaves no LoginRefused behind).
        self.check_origin(headers)?;
        self.authenticate(headers, conn).await
    }

    /// DNS rebinding: a browser's request from an origin not allowed is
    /// refused (a request without `Origin` is not a browser's); a
    /// listener on loopback also refuses a `Host` that is not a loopback
    /// name or the public URL's host (a rebound name resolves to
    /// 127.0.0.1 but keeps its own Host).
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<(), Response> {
        let public_host = self.public_host.as_deref();
        let loopback_name =
            |host: &str| matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1");
        if self.config.loopback {
            let host = header(headers, "host").map(host_without_port);
            let fine = host
                .as_deref()
                .is_some_and(|h| loopback_name(h) || Some(h) == public_host);
            if !fine {
                return Err(plain(
                    StatusCode::FORBIDDEN,
                    "this Host may not use the MCP endpoint\n",
                ));
            }
        }
        let Some(origin) = header(headers, "origin") else {
            return Ok(());
        };
        let same_origin = self.public_origin.as_deref() == Some(origin);
        let local = self.config.loopback
            && url::Url::parse(origin)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .is_some_and(|h| loopback_name(&h));
        if same_origin || local || self.config.allowed_origins.iter().any(|a| a == origin) {
            Ok(())
        } else {
            Err(plain(
                StatusCode::FORBIDDEN,
                "this Origin may not use the MCP endpoint\n",
            ))
        }
    }

    /// Records SessionOpened (durably: before anything reaches the server).
    pub(crate) async fn open_session(
        &self,
        identity: &VerifiedIdentity,
        conn: &Conn,
        gateway_id: String,
        version: &str,
        initialize: Option<&Message>,
    ) -> Result<Arc<Session>, Response> {
        let context = Arc::new(SessionContext::new(
            &self.config.name,
            identity,
            Protocol::Mcp,
        ));
        let client = initialize
            .and_then(|m| match m {
                Message::Request {
                    params: Some(p), ..
                } => p.get("clientInfo").cloned(),
                _ => None,
            })
            .unwrap_or_default();
        let text = |k: &str| {
            client
                .get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(256)
                .collect::<String>()
        };
        let opened = SessionOpened {
            client_addr: conn.peer.to_string(),
            tls: conn.tls,
            upstream_tls: self.upstream.url().starts_with("https:"),
            upstream_addr: self.config.upstream_label.clone(),
            detail: Some(vigil_proto::events::session_opened::Detail::Mcp(
                McpSession {
                    mcp_session_id: gateway_id.clone(),
                    protocol_version: version.into(),
                    client_name: text("name"),
                    client_version: text("version"),
                    upstream: self.config.upstream_label.clone(),
                },
            )),
        };
        match SessionRecorder::open(context, self.sink.clone(), opened).await {
            Ok(recorder) => Ok(Session::new(recorder, identity.clone(), gateway_id)),
            Err(e) => {
                tracing::error!(error = %e, "MCP session refused: SessionOpened not recorded");
                Err(rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    codes::AUDIT_UNAVAILABLE,
                    "Vigil cannot record this session, so it cannot be opened",
                ))
            }
        }
    }

    /// The session of a request without `Mcp-Session-Id`: the
    /// connection's, opened on its first request and anew when another
    /// identity uses the connection.
    pub(crate) async fn stateless_session(
        &self,
        conn: &Conn,
        identity: &VerifiedIdentity,
        version: &str,
    ) -> Result<Arc<Session>, Response> {
        let mut slot = conn.stateless.lock().await;
        if let Some(s) = slot.as_ref() {
            if s.belongs_to(identity) && !s.has_ended() {
                return Ok(s.clone());
            }
        }
        if let Some(old) = slot.take() {
            old.end(&EndReason::ClientDisconnected(Some(
                "another identity used the connection".into(),
            )))
            .await;
        }
        let session = self
            .open_session(identity, conn, String::new(), version, None)
            .await?;
        *slot = Some(session.clone());
        Ok(session)
    }

    async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        drain: Arc<Drain>,
    ) {
        let tls = self.config.tls.is_some();
        let conn = Arc::new(Conn {
            peer,
            tls,
            stateless: tokio::sync::Mutex::new(None),
        });
        let served = vigil_runtime::http::serve_gateway_connection(
            stream,
            peer,
            self.config.tls.as_ref(),
            self.router(conn.clone()),
            HEADER_TIMEOUT,
        );
        let reason = tokio::select! {
            _ = served => EndReason::ClientDisconnected(None),
            _ = drain.deadline() => EndReason::Shutdown,
        };
        let stateless = conn.stateless.lock().await.take();
        if let Some(s) = stateless {
            s.end(&reason).await;
        }
    }
}

impl vigil_runtime::listener::Adapter for McpGateway {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn serve(
        self: Arc<Self>,
        conn: TcpStream,
        peer: SocketAddr,
        drain: Arc<Drain>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.serve_connection(conn, peer, drain))
    }
}

async fn metadata(State(gw): State<Arc<McpGateway>>) -> Response {
    Json(auth::metadata(
        &gw.config.resource,
        &gw.config.authorization_servers,
        &gw.config.required_scopes,
    ))
    .into_response()
}

async fn mcp(
    State(gw): State<Arc<McpGateway>>,
    Extension(conn): Extension<Arc<Conn>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match method {
        Method::POST => crate::post::post(gw, conn, headers, body).await,
        Method::GET => crate::relay::get_stream(gw, conn, headers).await,
        Method::DELETE => delete(gw, conn, headers).await,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "POST, GET or DELETE\n");
            r.headers_mut()
                .insert("allow", HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
    }
}

/// DELETE: the agent ends its session; the server's session ends too.
async fn delete(gw: Arc<McpGateway>, conn: Arc<Conn>, headers: HeaderMap) -> Response {
    let identity = match gw.admit(&headers, &conn).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Some(id) = header(&headers, "mcp-session-id") else {
        return plain(StatusCode::BAD_REQUEST, "DELETE needs an Mcp-Session-Id\n");
    };
    let Some(session) = gw.sessions.get(id, &identity) else {
        return session_not_found();
    };
    gw.sessions.remove(id);
    let status = match session.upstream_id() {
        Some(up) => match gw
            .upstream
            .send(
                hyper::Method::DELETE,
                None,
                &crate::post::upstream_headers(&headers, None),
                Some(&up),
            )
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 204,
        },
        None => 204,
    };
    session.end(&EndReason::ClientTerminated).await;
    // The server may not allow clients to end sessions (405); the
    // gateway's session has ended either way.
    let status = if status == 405 { 204 } else { status };
    StatusCode::from_u16(status)
        .unwrap_or(StatusCode::NO_CONTENT)
        .into_response()
}

/// A Host header's name, lower-cased, without its port.
fn host_without_port(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or(host);
    }
    host.rsplit_once(':')
        .map_or(host.clone(), |(h, _)| h.to_string())
}

/// A header's value as text (`None` when absent or not visible ASCII).
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// A JSON-RPC error as a whole HTTP answer.
pub(crate) fn rpc_error(status: StatusCode, id: Option<Id>, code: i64, message: &str) -> Response {
    let body = Message::Error {
        id,
        code,
        message: message.to_string(),
        data: None,
    }
    .to_value();
    (status, Json(body)).into_response()
}

pub(crate) fn session_not_found() -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        None,
        codes::SESSION_NOT_FOUND,
        "Session not found",
    )
}
