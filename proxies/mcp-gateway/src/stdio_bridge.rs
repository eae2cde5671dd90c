//! The stdio mode: Vigil starts a local MCP server command itself, with the
//! credentials it holds in the command's environment, and serves it to
//! agents through the same gateway as any Streamable HTTP server. So an
//! agent never gets the server's secrets, and a stdio server is judged,
//! masked and recorded exactly like a remote one.
//!
//! How: a bridge on a loopback port (random, behind a random bearer token
//! only the gateway holds) speaks Streamable HTTP on one side and stdio on
//! the other, one child process per MCP session (stdio has one client; a
//! session is the server's lifetime). The gateway's upstream is that
//! bridge, so sessions, ids, policy, holds, masking and recording are not
//! written twice. The child's environment is emptied first: it gets
//! `PATH`, `HOME` and `LANG` and what the config gives it, never the
//! gateway's own environment (its other secrets).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use vigil_mcp::stdio::{frame, LineReader};

/// A command to run as an MCP server over stdio.
#[derive(Clone)]
pub struct StdioConfig {
    pub command: Vec<String>,
    /// Variables set for the command (names and values; values may be secrets).
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

impl std::fmt::Debug for StdioConfig {
    // Never the variables' values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioConfig")
            .field("command", &self.command)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// The largest message line a stdio server may write.
const MAX_LINE: usize = 32 << 20;
/// Server messages waiting for a stream, at most, per session.
const QUEUE: usize = 256;
/// Child processes (sessions) one bridge runs at most.
const MAX_CHILDREN: usize = 256;

struct ChildSession {
    /// `None` once the session is ended (dropping it closes the pipe: a
    /// server that reads stdin ends on its own).
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    child: Mutex<Option<Child>>,
    /// Requests waiting for their answer, by id as JSON text.
    waiting: Mutex<HashMap<String, mpsc::Sender<Value>>>,
    /// Where the server's own requests and notifications go: the newest
    /// open POST stream, else the GET stream.
    streams: Mutex<Vec<mpsc::Sender<Value>>>,
}

struct Bridge {
    config: StdioConfig,
    token: String,
    sessions: Mutex<HashMap<String, Arc<ChildSession>>>,
}

/// Starts the bridge; returns its URL and the token it requires.
pub async fn start(config: StdioConfig) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(!config.command.is_empty(), "the stdio command is empty");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let token = crate::session::random_hex::<32>();
    let bridge = Arc::new(Bridge {
        config,
        token: token.clone(),
        sessions: Mutex::new(HashMap::new()),
    });
    let app = Router::new().route("/mcp", any(serve)).with_state(bridge);
    tokio::spawn(async move {
        vigil_runtime::http::serve(
            listener,
            app,
            vigil_runtime::http::ServeLimits {
                max_connections: 1024,
                per_peer: 1024,
                keep_alive: true,
                header_timeout: std::time::Duration::from_secs(10),
                connection_timeout: std::time::Duration::from_secs(24 * 3600),
            },
        )
        .await
    });
    Ok((format!("http://127.0.0.1:{port}/mcp"), token))
}

/// Equal, in time that does not depend on where they differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn serve(
    State(bridge): State<Arc<Bridge>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let expected = format!("Bearer {}", bridge.token);
    let presented = headers
        .get("authorization")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_bytes(presented, expected.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let session_id = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match method {
        Method::POST => post(bridge, session_id, body).await,
        Method::GET => {
            let Some(session) = session_id.and_then(|id| bridge.session(&id)) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            session.streams.lock().expect("streams lock").insert(0, tx);
            sse(rx, None)
        }
        Method::DELETE => {
            let Some(id) = session_id else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            // Killed now; it leaves the map (and the cap) once its output
            // has ended, so a server that lingers still counts.
            match bridge.session(&id) {
                Some(s) => {
                    s.kill();
                    StatusCode::NO_CONTENT.into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn post(bridge: Arc<Bridge>, session_id: Option<String>, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_LINE).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Ok(message) = serde_json::from_slice::<Value>(&bytes) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
    let (id, session) = match session_id {
        Some(id) => match bridge.session(&id) {
            Some(s) => (id, s),
            None => return StatusCode::NOT_FOUND.into_response(),
        },
        None if is_initialize => match bridge.spawn() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the stdio MCP server");
                return (
                    StatusCode::BAD_GATEWAY,
                    format!("cannot start the stdio MCP server: {e}"),
                )
                    .into_response();
            }
        },
        // A stdio server speaks the handshake revisions: a stateless
        // request (no session) has no server to go to.
        None => {
            return (
                StatusCode::BAD_REQUEST,
                "a stdio MCP server needs initialize first",
            )
                .into_response()
        }
    };
    let is_request = message.get("method").is_some() && message.get("id").is_some();
    let answer = if is_request {
        let (tx, rx) = mpsc::channel(QUEUE);
        let key = message["id"].to_string();
        session
            .waiting
            .lock()
            .expect("waiting lock")
            .insert(key.clone(), tx.clone());
        session.streams.lock().expect("streams lock").push(tx);
        Some((rx, key))
    } else {
        None
    };
    if session.write(&message).await.is_err() {
        return (StatusCode::BAD_GATEWAY, "the stdio MCP server is gone").into_response();
    }
    match answer {
        Some((rx, key)) => {
            let mut r = sse(rx, Some(key));
            if let Ok(v) = HeaderValue::from_str(&id) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            r
        }
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// An SSE answer of the messages sent to `rx`, ended right after the
/// answer to `until` (a request's stream) or when the server goes (the
/// GET stream).
fn sse(mut rx: mpsc::Receiver<Value>, until: Option<String>) -> Response {
    let (tx, out) = mpsc::channel::<Bytes>(QUEUE);
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let answers = message.get("method").is_none()
                && message
                    .get("id")
                    .is_some_and(|id| until.as_deref() == Some(id.to_string().as_str()));
            let event = Bytes::from(format!("event: message\ndata: {message}\n\n"));
            if tx.send(event).await.is_err() || answers {
                break;
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(out).map(Ok::<_, std::convert::Infallible>));
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

impl Bridge {
    fn session(&self, id: &str) -> Option<Arc<ChildSession>> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .cloned()
    }

    /// Starts the command for a new session.
    fn spawn(self: &Arc<Self>) -> anyhow::Result<(String, Arc<ChildSession>)> {
        anyhow::ensure!(
            self.sessions.lock().expect("sessions lock").len() < MAX_CHILDREN,
            "{MAX_CHILDREN} stdio servers already run"
        );
        let mut cmd = tokio::process::Command::new(&self.config.command[0]);
        cmd.args(&self.config.command[1..])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The server's own log may quote what it read: not ours to keep.
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group, so that ending the session ends what
            // it started too (`npx` runs the server as a grandchild).
            .process_group(0);
        for name in ["PATH", "HOME", "LANG"] {
            if let Ok(v) = std::env::var(name) {
                cmd.env(name, v);
            }
        }
        for (k, v) in &self.config.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.config.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let session = Arc::new(ChildSession {
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            child: Mutex::new(Some(child)),
            waiting: Mutex::new(HashMap::new()),
            streams: Mutex::new(Vec::new()),
        });
        let id = crate::session::random_hex::<16>();
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(id.clone(), session.clone());
        let (bridge, key) = (self.clone(), id.clone());
        let reader = session.clone();
        tokio::spawn(async move {
            read_child(stdout, reader).await;
            // The process is gone: its session is too (and no longer
            // counts against the cap).
            bridge.sessions.lock().expect("sessions lock").remove(&key);
        });
        Ok((id, session))
    }
}

impl ChildSession {
    async fn write(&self, message: &Value) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        };
        pipe.write_all(&frame(message)).await?;
        pipe.flush().await
    }

    /// Ends the server: its stdin closed, its whole process group killed,
    /// the process reaped. Its session leaves the bridge when its output
    /// ends (every process that held the pipe is gone).
    fn kill(&self) {
        if let Ok(mut stdin) = self.stdin.try_lock() {
            stdin.take();
        }
        if let Some(mut child) = self.child.lock().expect("child lock").take() {
            if let Some(pid) = child.id() {
                // The group the child leads (process_group(0)): its
                // children too. `kill` the command: no unsafe libc call.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.start_kill();
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        self.waiting.lock().expect("waiting lock").clear();
        self.streams.lock().expect("streams lock").clear();
    }
}

/// Routes what the server writes: an answer to its request's stream, the
/// rest to the newest stream still open.
async fn read_child(mut stdout: tokio::process::ChildStdout, session: Arc<ChildSession>) {
    let mut reader = LineReader::new(MAX_LINE);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Ok(lines) = reader.feed(&buf[..n]) else {
            tracing::warn!("the stdio MCP server wrote a line past the limit; stopped");
            break;
        };
        for line in lines {
            let Ok(message) = serde_json::from_slice::<Value>(&line) else {
                tracing::warn!("the stdio MCP server wrote a line that is not JSON (dropped)");
                continue;
            };
            let is_answer = message.get("method").is_none();
            let target = if is_answer {
                let key = message.get("id").map(Value::to_string).unwrap_or_default();
                session.waiting.lock().expect("waiting lock").remove(&key)
            } else {
                let mut streams = session.streams.lock().expect("streams lock");
                streams.retain(|s| !s.is_closed());
                streams.last().cloned()
            };
            if let Some(tx) = target {
                let _ = tx.send(message).await;
            }
        }
    }
    session.kill();
}
