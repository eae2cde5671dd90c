//! What the server sends back, passed to the agent message by message:
//! the answer to a forwarded request (as JSON or on an SSE stream), the
//! server's notifications and its requests of the agent, and the GET
//! stream of a session. Every message is decoded once; an answer goes
//! back only for an id the gateway sent ([`vigil_mcp::correlate`]),
//! treated by [`crate::answers`]; a server request is judged and recorded
//! before the agent sees it. A stream the server cuts short ends in a
//! JSON-RPC error for the request it owed, never a hung agent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use vigil_mcp::jsonrpc::{self, Batches, Id, Incoming as Decoded, Message};
use vigil_mcp::policy::{judge, Asker, Outcome};
use vigil_mcp::sse;
use vigil_proto::events::{event::Kind, McpDirection, Stage};
use vigil_runtime::recorder::EndReason;

use crate::answers::{judge_server_request, mask_params, treat_answer, Treatment};
use crate::http::{header, plain, rpc_error, session_not_found, Conn, McpGateway};
use crate::post::Exchange;
use crate::session::Session;
use crate::{codes, record};
use vigil_runtime::blocking::{may_block, may_block_if_large, InlineBudget};

/// How often a waiting SSE stream gets a comment, so that proxies and
/// clients do not time it out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long an agent that reads JSON (not a stream) waits for an answer
/// at most: its request would otherwise hold a connection and an id for
/// as long as a hung server does. (An SSE stream is kept alive instead,
/// and ends when the agent leaves.)
const REQUEST_DEADLINE: Duration = Duration::from_secs(600);

/// The sending end of an SSE answer.
pub(crate) struct Out {
    tx: mpsc::Sender<Bytes>,
}

impl Out {
    async fn send_raw(&self, bytes: Bytes) -> bool {
        self.tx.send(bytes).await.is_ok()
    }

    /// Sends one event; an id that could not be written is left out.
    pub async fn send_event(&self, mut event: sse::Event) -> bool {
        let text = match sse::write(&event) {
            Ok(t) => t,
            Err(_) => {
                event.id = None;
                event.event.clear();
                match sse::write(&event) {
                    Ok(t) => t,
                    Err(_) => return false,
                }
            }
        };
        self.send_raw(Bytes::from(text)).await
    }

    pub async fn send_message(&self, message: &Message) -> bool {
        self.send_event(sse::Event {
            data: message.to_value().to_string(),
            ..sse::Event::default()
        })
        .await
    }

    /// Resolves when the agent is gone (the stream's body was dropped).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// An SSE answer being written.
pub(crate) struct Reply {
    rx: mpsc::Receiver<Bytes>,
}

impl Reply {
    pub fn stream() -> (Reply, Out) {
        let (tx, rx) = mpsc::channel(64);
        (Reply { rx }, Out { tx })
    }

    pub fn into_response(self) -> Response {
        let body =
            Body::from_stream(ReceiverStream::new(self.rx).map(Ok::<_, std::convert::Infallible>));
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-cache"));
        r
    }
}

/// Runs `work`, sending a keep-alive comment every 15 s until it is done.
pub(crate) async fn keep_alive_while<T>(
    out: &Out,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = tokio::time::sleep(KEEP_ALIVE) => {
                let _ = out.send_raw(Bytes::from_static(sse::keep_alive().as_bytes())).await;
            }
        }
    }
}

/// Writes a finished answer (JSON, or an SSE stream) into an SSE stream
/// already begun (after a hold).
pub(crate) async fn into_stream(response: Response, out: &Out) {
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut body = response.into_body();
    if is_sse {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if !out.send_raw(data).await {
                    return;
                }
            }
        }
        return;
    }
    if let Ok(bytes) = body.collect().await.map(|c| c.to_bytes()) {
        if !bytes.is_empty() {
            let _ = out
                .send_event(sse::Event {
                    data: String::from_utf8_lossy(&bytes).into_owned(),
                    ..sse::Event::default()
                })
                .await;
        }
    }
}

/// What the server's messages are read against.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub gw: Arc<McpGateway>,
    pub session: Arc<Session>,
    pub headers: HeaderMap,
}

impl Ctx {
    /// Who is asked, with `roles`: the latest token's, read when each
    /// server message arrives (a stream outlives the token that opened it).
    fn asker<'a>(&'a self, roles: &'a [String]) -> Asker<'a> {
        Asker {
            subject: &self.session.identity.subject,
            groups: roles,
            connection: &self.gw.config.name,
        }
    }

    /// Whether a call of this session waits under a `mask` verdict: the
    /// server's notifications and requests meanwhile (its log lines, its
    /// progress text) can speak of what that call read, so they are
    /// masked too, whatever their own verdict.
    fn masked_call_waits(&self) -> bool {
        self.session
            .ids()
            .waiting_states()
            .any(|a| a.verdict.outcome == Outcome::Mask)
    }

    /// The server's answer to `upstream_id` is too large to read whole:
    /// refused, with a Decision at stage `result_size`.
    fn too_large(&self, upstream_id: &Id) {
        let Some((_, asked)) = self.session.ids().answered(upstream_id) else {
            return;
        };
        let recorder = &self.session.recorder;
        recorder.record_in_background(Kind::Decision(result_size_decision(&self.gw, &asked)));
        recorder.record_in_background(Kind::Response(record::refused(
            asked.seq,
            codes::RESULT_TOO_LARGE,
            "the result is larger than this gateway relays",
            true,
        )));
    }

    /// The agent's request `upstream_id` gets no answer from the server:
    /// recorded, and the agent gets `text` as a JSON-RPC error.
    fn fail(&self, upstream_id: &Id, code: i64, text: &str) -> Option<Message> {
        let (client_id, asked) = self.session.ids().answered(upstream_id)?;
        self.session
            .recorder
            .record_in_background(Kind::Response(record::refused(asked.seq, code, text, true)));
        Some(Message::Error {
            id: Some(client_id),
            code,
            message: text.to_string(),
            data: None,
        })
    }
}

/// The Decision that stops a result past the size limit.
fn result_size_decision(
    gw: &McpGateway,
    asked: &crate::session::Asked,
) -> vigil_proto::events::Decision {
    let mut decision =
        asked
            .verdict
            .to_decision(asked.seq, gw.config.policy.name(), Stage::ResultSize);
    decision.outcome = vigil_proto::events::Outcome::Deny as i32;
    decision.reason = format!(
        "the result is larger than this gateway relays ({} bytes)",
        gw.config.max_result_bytes
    );
    decision
}

/// What became of one server message.
enum ToAgent {
    /// The answer to a forwarded request, as the agent gets it.
    Answer {
        message: Message,
        upstream_id: Id,
    },
    /// A notification or server request the agent may see.
    Pass(Message),
    Nothing,
}

/// `size`: the message's length as it came, which says whether decoding and
/// treating it may take long.
async fn on_server_message(ctx: &Ctx, message: Message, size: usize, to_agent: bool) -> ToAgent {
    let gw = &ctx.gw;
    let session = &ctx.session;
    let roles = session.roles();
    match message {
        Message::Result { ref id, .. }
        | Message::Error {
            id: Some(ref id), ..
        } => {
            let id = id.clone();
            let Some((client_id, asked)) = session.ids().answered(&id) else {
                tracing::warn!(session = %session.recorder.session().session_id(), "the MCP server answered an id the gateway did not send (dropped)");
                return ToAgent::Nothing;
            };
            // Tool definitions against their pins: a changed one (or one
            // listed twice) is taken out before policy sees the list.
            let mut pinned_out = Vec::new();
            let mut pin_record = (Vec::new(), Vec::new(), Vec::new());
            let message = match message {
                Message::Result { id, mut result } if asked.method == "tools/list" => {
                    if let Some(tools) = result
                        .get_mut("tools")
                        .and_then(serde_json::Value::as_array_mut)
                    {
                        // Reads and may write and sync the pins file.
                        let reviewed = may_block(|| gw.pins.review(tools));
                        tools.retain(|t| {
                            let name = t
                                .get("name")
                                .and_then(serde_json::Value::as_str)
                                .unwrap_or_default();
                            !reviewed.hidden.iter().any(|h| h == name)
                        });
                        pinned_out = reviewed.hidden;
                        pin_record = (reviewed.pinned, reviewed.noticed, reviewed.accepted);
                        if !reviewed.changed.is_empty() {
                            crate::tool_review::start(gw);
                        }
                    }
                    Message::Result { id, result }
                }
                m => m,
            };
            let treatment = Treatment {
                policy: &gw.config.policy,
                masker: &gw.config.masker,
                asker: ctx.asker(&roles),
                max_result_bytes: gw.config.max_result_bytes,
            };
            // Masking an answer of megabytes takes milliseconds.
            let mut treated = may_block_if_large(size, || {
                treat_answer(
                    &treatment,
                    &asked.method,
                    &asked.verdict,
                    client_id,
                    message,
                )
            });
            treated.changes.hidden.extend(pinned_out);
            (
                treated.changes.pinned,
                treated.changes.pin_changes,
                treated.changes.pins_accepted,
            ) = pin_record;
            let recorder = &session.recorder;
            if treated.too_large {
                recorder.record_in_background(Kind::Decision(result_size_decision(gw, &asked)));
            }
            let micros = asked.started.elapsed().as_micros() as u64;
            // Serializes and hashes the answer as the agent gets it.
            let response = may_block_if_large(size, || {
                record::response(asked.seq, &treated.message, &treated.changes, micros)
            });
            recorder.record_in_background(Kind::Response(response));
            ToAgent::Answer {
                message: treated.message,
                upstream_id: id,
            }
        }
        Message::Error { id: None, .. } => {
            tracing::warn!(session = %session.recorder.session().session_id(), "the MCP server sent an error for no request (dropped)");
            ToAgent::Nothing
        }
        Message::Request {
            ref id, ref method, ..
        } => {
            let verdict = judge_server_request(&gw.config.policy, ctx.asker(&roles), &message);
            let (id, method) = (id.clone(), method.clone());
            // Recorded as the agent would get it: masked under `mask`.
            let mut message = message;
            if verdict.outcome == Outcome::Mask || ctx.masked_call_waits() {
                mask_params(&mut message, &gw.config.masker);
            }
            let recorder = &session.recorder;
            let seq = recorder.session().next_statement_seq();
            let request = record::request(seq, McpDirection::ServerToClient, &message, "");
            let decision = verdict.to_decision(seq, gw.config.policy.name(), Stage::Request);
            if recorder
                .record_durably(vec![Kind::Request(request.decided(decision))])
                .await
                .is_err()
            {
                return ToAgent::Nothing;
            }
            let allowed = matches!(verdict.outcome, Outcome::Allow | Outcome::Mask);
            if allowed && to_agent && session.server_asked(id.clone(), &method) {
                return ToAgent::Pass(message);
            }
            let text = if allowed {
                "Vigil could not pass this request to the agent".to_string()
            } else {
                format!(
                    "Vigil refused {method}: rule \"{}\": {}",
                    verdict.rule, verdict.reason
                )
            };
            recorder.record_in_background(Kind::Response(record::refused(
                seq,
                codes::REFUSED,
                &text,
                false,
            )));
            let refusal = Message::Error {
                id: Some(id.clone()),
                code: codes::REFUSED,
                message: text,
                data: None,
            };
            // An answer carries no request metadata: the version alone.
            let mut headers = HeaderMap::new();
            if let Some(v) = ctx.headers.get("mcp-protocol-version") {
                headers.insert("mcp-protocol-version", v.clone());
            }
            let (gw, upstream) = (gw.clone(), session.upstream_id());
            tokio::spawn(async move {
                let body = Bytes::from(refusal.to_value().to_string());
                if let Err(e) = gw
                    .upstream
                    .send(
                        hyper::Method::POST,
                        Some(body),
                        &headers,
                        upstream.as_deref(),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not tell the MCP server its request was refused");
                }
            });
            ToAgent::Nothing
        }
        Message::Notification { .. } => {
            let verdict = judge(&gw.config.policy, ctx.asker(&roles), &message);
            // A log message or progress text can quote what the server
            // read: masked (and recorded) as the agent gets it.
            let mut message = message;
            if verdict.outcome == Outcome::Mask || ctx.masked_call_waits() {
                mask_params(&mut message, &gw.config.masker);
            }
            let recorder = &session.recorder;
            let seq = recorder.session().next_statement_seq();
            let request = record::request(seq, McpDirection::ServerToClient, &message, "");
            let decision = verdict.to_decision(seq, gw.config.policy.name(), Stage::Request);
            recorder.record_in_background(Kind::Request(request.decided(decision)));
            if matches!(verdict.outcome, Outcome::Allow | Outcome::Mask) && to_agent {
                ToAgent::Pass(message)
            } else {
                ToAgent::Nothing
            }
        }
    }
}

/// The server's reply to a forwarded request, for the agent.
/// A request sent upstream that the agent may abandon: its handler is
/// dropped when the agent's connection closes, and with it this guard,
/// which takes the request out of the session's id map (a late answer is
/// dropped) and records that it was never answered to the agent.
pub(crate) struct Abandoned {
    session: Arc<Session>,
    upstream_id: Id,
    armed: bool,
}

impl Abandoned {
    pub fn new(session: Arc<Session>, upstream_id: Id) -> Self {
        Self {
            session,
            upstream_id,
            armed: true,
        }
    }

    /// Another task now owns the request (an SSE stream's pump).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if !self.armed || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        // Answered already: nothing left (the usual case).
        let Some((_, asked)) = self.session.ids().answered(&self.upstream_id) else {
            return;
        };
        self.session
            .recorder
            .record_in_background(Kind::Response(record::refused(
                asked.seq,
                codes::UPSTREAM_UNAVAILABLE,
                "the agent left before the answer came",
                true,
            )));
    }
}

pub(crate) async fn answer(
    ex: &Exchange,
    response: hyper::Response<Incoming>,
    upstream_id: Id,
    client_id: Id,
    abandoned: &mut Abandoned,
) -> Response {
    let ctx = Ctx {
        gw: ex.gw.clone(),
        session: ex.session.clone(),
        headers: ex.headers.clone(),
    };
    let status = response.status();
    if status == StatusCode::NOT_FOUND && !ex.opening && ex.session.upstream_id().is_some() {
        // The server ended its session: so does the gateway, and the agent
        // learns it as the spec says (404: initialize anew).
        let _ = ctx.fail(
            &upstream_id,
            codes::SESSION_NOT_FOUND,
            "the MCP server ended the session",
        );
        ex.gw.sessions.remove(&ex.session.gateway_id);
        ex.session
            .end(&EndReason::UpstreamClosed(Some(
                "the server answered 404 for its session".into(),
            )))
            .await;
        return session_not_found();
    }
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    if status.is_success() && is_sse {
        let body = response.into_body();
        if ex.accepts_sse {
            let (reply, out) = Reply::stream();
            abandoned.disarm();
            tokio::spawn(async move {
                pump(&ctx, body, Some(upstream_id), Some(&out)).await;
            });
            return reply.into_response();
        }
        let answered = tokio::time::timeout(
            REQUEST_DEADLINE,
            pump(&ctx, body, Some(upstream_id.clone()), None),
        )
        .await;
        let answered = answered.unwrap_or_else(|_| {
            ctx.fail(
                &upstream_id,
                codes::UPSTREAM_UNAVAILABLE,
                "the MCP server did not answer in time",
            )
        });
        return match answered {
            Some(m) => (StatusCode::OK, axum::Json(m.to_value())).into_response(),
            None => rpc_error(
                StatusCode::BAD_GATEWAY,
                Some(client_id),
                codes::UPSTREAM_MALFORMED,
                "the MCP server did not answer",
            ),
        };
    }
    // A JSON answer (or an HTTP error with one).
    let limit = ex.gw.config.max_result_bytes + 64 * 1024;
    let read = tokio::time::timeout(
        REQUEST_DEADLINE,
        http_body_util::Limited::new(response.into_body(), limit).collect(),
    )
    .await;
    // No answer to give: recorded, and the agent gets the error.
    let failed = |code: i64, text: &str| {
        ctx.fail(&upstream_id, code, text);
        rpc_error(StatusCode::OK, Some(client_id.clone()), code, text)
    };
    let bytes = match read {
        Err(_) => {
            return failed(
                codes::UPSTREAM_UNAVAILABLE,
                "the MCP server did not finish its answer in time",
            )
        }
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            ctx.too_large(&upstream_id);
            let text = format!(
                "Vigil refused the result: past this gateway's limit of {} bytes",
                ex.gw.config.max_result_bytes
            );
            return rpc_error(
                StatusCode::OK,
                Some(client_id),
                codes::RESULT_TOO_LARGE,
                &text,
            );
        }
        Ok(Err(_)) => {
            return failed(
                codes::UPSTREAM_UNAVAILABLE,
                "the MCP server's answer broke off before it was whole",
            )
        }
    };
    let decoded = may_block_if_large(bytes.len(), || jsonrpc::decode(&bytes, Batches::Refused));
    let message = match decoded {
        Ok(Decoded::One(m)) => m,
        _ => {
            let text = format!(
                "the MCP server answered HTTP {} without a JSON-RPC answer",
                status.as_u16()
            );
            ctx.fail(&upstream_id, codes::UPSTREAM_MALFORMED, &text);
            let code = if status.is_success() {
                StatusCode::BAD_GATEWAY
            } else {
                status
            };
            return rpc_error(code, Some(client_id), codes::UPSTREAM_MALFORMED, &text);
        }
    };
    // An error without an id answers the request it came back for.
    let message = match message {
        Message::Error {
            id: None,
            code,
            message,
            data,
        } => Message::Error {
            id: Some(upstream_id.clone()),
            code,
            message,
            data,
        },
        m => m,
    };
    match on_server_message(&ctx, message, bytes.len(), false).await {
        ToAgent::Answer { message, .. } => {
            let status = if status.is_success() {
                StatusCode::OK
            } else {
                status
            };
            (status, axum::Json(message.to_value())).into_response()
        }
        _ => {
            let text = "the MCP server's answer did not answer the request";
            ctx.fail(&upstream_id, codes::UPSTREAM_MALFORMED, text);
            rpc_error(
                StatusCode::BAD_GATEWAY,
                Some(client_id),
                codes::UPSTREAM_MALFORMED,
                text,
            )
        }
    }
}

/// Reads the server's SSE stream; passes what the agent may see to `out`
/// (keep-alives while it is quiet), and returns the answer to
/// `awaiting` once it came (the stream is then done, as the spec says).
async fn pump(
    ctx: &Ctx,
    mut body: Incoming,
    awaiting: Option<Id>,
    out: Option<&Out>,
) -> Option<Message> {
    let limits = sse::Limits {
        max_line: ctx.gw.config.max_result_bytes + 64 * 1024,
        max_event: ctx.gw.config.max_result_bytes + 64 * 1024,
    };
    let mut reader = sse::Reader::new(limits);
    let mut inline = InlineBudget::default();
    let failure = loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = tokio::time::sleep(KEEP_ALIVE), if out.is_some() => {
                if let Some(out) = out {
                    if !out.send_raw(Bytes::from_static(sse::keep_alive().as_bytes())).await {
                        break "the agent left";
                    }
                }
                continue;
            }
            _ = async { match out { Some(o) => o.closed().await, None => std::future::pending().await } } => break "the agent left",
        };
        let data = match frame {
            None => break "the MCP server ended its stream before answering",
            Some(Err(_)) => break "the MCP server's stream broke off before answering",
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        let events = match reader.feed(&data) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(session = %ctx.session.recorder.session().session_id(), error = %e, "unreadable SSE stream from the MCP server");
                break "the MCP server's stream could not be read";
            }
        };
        for event in events {
            let size = event.data.len();
            let decoded = may_block_if_large(size, || {
                jsonrpc::decode(event.data.as_bytes(), Batches::Refused)
            });
            inline.spend(size).await;
            let message = match decoded {
                Ok(Decoded::One(m)) => m,
                Ok(Decoded::Batch(_)) | Err(_) => {
                    tracing::warn!(session = %ctx.session.recorder.session().session_id(), "an SSE event of the MCP server is not one JSON-RPC message (dropped)");
                    continue;
                }
            };
            match on_server_message(ctx, message, size, out.is_some()).await {
                ToAgent::Nothing => {}
                ToAgent::Answer {
                    message,
                    upstream_id,
                } => {
                    pass(out, &message, &event).await;
                    if awaiting.as_ref() == Some(&upstream_id) {
                        return Some(message);
                    }
                }
                ToAgent::Pass(message) => pass(out, &message, &event).await,
            }
        }
    };
    let awaiting = awaiting?;
    if failure == "the agent left" {
        ctx.fail(
            &awaiting,
            codes::UPSTREAM_UNAVAILABLE,
            "the agent left before the answer came",
        );
        return None;
    }
    let message = ctx.fail(&awaiting, codes::UPSTREAM_UNAVAILABLE, failure)?;
    if let Some(out) = out {
        out.send_message(&message).await;
    }
    Some(message)
}

/// Writes `message` to the agent's stream (if it has one) under the
/// server's event id, so that Last-Event-ID resumes where it should.
async fn pass(out: Option<&Out>, message: &Message, event: &sse::Event) {
    if let Some(out) = out {
        out.send_event(sse::Event {
            data: message.to_value().to_string(),
            id: event.id.clone(),
            ..sse::Event::default()
        })
        .await;
    }
}

/// GET: the session's stream of server messages (handshake revisions).
pub(crate) async fn get_stream(
    gw: Arc<McpGateway>,
    conn: Arc<Conn>,
    headers: HeaderMap,
) -> Response {
    let identity = match gw.admit(&headers, &conn).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Some(id) = header(&headers, "mcp-session-id") else {
        // No session: nothing to stream (the stateless revision has no GET).
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET needs an Mcp-Session-Id\n",
        );
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("POST"));
        return r;
    };
    let Some(session) = gw.sessions.get(id, &identity) else {
        return session_not_found();
    };
    session.presented(&identity);
    let upstream = match gw
        .upstream
        .send(
            hyper::Method::GET,
            None,
            &crate::post::upstream_headers(&headers, None),
            session.upstream_id().as_deref(),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_GATEWAY,
                None,
                codes::UPSTREAM_UNAVAILABLE,
                &format!("Vigil could not reach the MCP server: {}", e.for_agent()),
            )
        }
    };
    let status = upstream.status();
    let is_sse = upstream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/event-stream"));
    if !status.is_success() || !is_sse {
        let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let code = if code.is_success() {
            StatusCode::BAD_GATEWAY
        } else {
            code
        };
        return (code, "the MCP server offers no stream here\n").into_response();
    }
    let ctx = Ctx {
        gw,
        session,
        headers: crate::post::upstream_headers(&headers, None),
    };
    let (reply, out) = Reply::stream();
    let body = upstream.into_body();
    // The stream ends with the token that opened it: the agent opens it
    // anew with a fresh one (and is judged by that one's roles).
    let deadline = vigil_runtime::deadline::TokenDeadline::of(&identity);
    tokio::spawn(async move {
        tokio::select! {
            _ = pump(&ctx, body, None, Some(&out)) => {}
            _ = deadline.reached() => {}
        }
    });
    reply.into_response()
}
