//! One POST of the agent: a request, a notification, or its answer to a
//! request of the server. Decoded once, judged, recorded durably, then
//! forwarded (or refused, or held); the server's reply goes through
//! [`crate::relay`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};
use vigil_mcp::headers::{self, RequestHeaders, HEADER_MISMATCH};
use vigil_mcp::jsonrpc::{self, Batches, Id, Incoming, Message};
use vigil_mcp::policy::{judge, Asker, Outcome, Verdict};
use vigil_proto::events::{event::Kind, McpDirection, Stage};
use vigil_runtime::hold::{self, HoldEnd, HoldRequest, Prepared, Refusal};
use vigil_runtime::recorder::EndReason;

use crate::http::{header, plain, rpc_error, session_not_found, Conn, McpGateway};
use crate::relay::{self, Reply};
use crate::session::{Asked, Session, Sessions};
use crate::{codes, record};

pub(crate) async fn post(
    gw: Arc<McpGateway>,
    conn: Arc<Conn>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let identity = match gw.admit(&headers, &conn).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    if !json_utf8(&headers) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (UTF-8)\n",
        );
    }
    let bytes = match axum::body::to_bytes(body, gw.config.max_request_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                jsonrpc::INVALID_REQUEST,
                &format!(
                    "the request body is larger than this gateway accepts ({} bytes)",
                    gw.config.max_request_bytes
                ),
            )
        }
    };
    // Batches (revision 2025-03-26 only) are refused: no SDK sends them,
    // and one judged, recorded and answered message per POST keeps each
    // answer tied to its request.
    let message = match jsonrpc::decode(&bytes, Batches::Refused) {
        Ok(Incoming::One(m)) => m,
        Ok(Incoming::Batch(_)) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::INVALID_REQUEST,
                "batches are not accepted",
            )
        }
        Err(e) => {
            tracing::info!(peer = %conn.peer, kind = e.kind(), "malformed MCP message refused");
            return rpc_error(
                StatusCode::BAD_REQUEST,
                e.id().cloned(),
                e.code(),
                &e.to_string(),
            );
        }
    };
    if let Some(name) = repeated_metadata(&headers) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            message.id().cloned(),
            HEADER_MISMATCH,
            &format!(
                "the header {name} is given more than once, or holds characters a header may not"
            ),
        );
    }
    let mirrored = request_headers(&headers);
    if matches!(
        message,
        Message::Request { .. } | Message::Notification { .. }
    ) {
        if let Err(m) = headers::check(&mirrored, &message, &[]) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                message.id().cloned(),
                HEADER_MISMATCH,
                &m.to_string(),
            );
        }
    }
    let version = mirrored.protocol_version.clone().unwrap_or_default();
    let is_initialize =
        matches!(&message, Message::Request { method, .. } if method == "initialize");
    let (session, opening) = match header(&headers, "mcp-session-id") {
        Some(id) => match gw.sessions.get(id, &identity) {
            Some(s) => (s, false),
            None => return session_not_found(),
        },
        None if is_initialize => {
            if !gw.sessions.has_room(&identity) {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many MCP sessions are open\n",
                );
            }
            let requested = match &message {
                Message::Request {
                    params: Some(p), ..
                } => p
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            match gw
                .open_session(
                    &identity,
                    &conn,
                    Sessions::new_id(),
                    &requested,
                    Some(&message),
                )
                .await
            {
                Ok(s) if gw.sessions.try_insert(s.clone()) => (s, true),
                Ok(s) => {
                    s.end(&EndReason::Error("too many MCP sessions are open".into()))
                        .await;
                    return plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many MCP sessions are open\n",
                    );
                }
                Err(r) => return r,
            }
        }
        None => match gw.stateless_session(&conn, &identity, &version).await {
            Ok(s) => (s, false),
            Err(r) => return r,
        },
    };
    session.presented(&identity);
    let accepts_sse = accepts(
        header(&headers, "accept").unwrap_or_default(),
        "text/event-stream",
    );
    let headers = upstream_headers(&headers, Some(&message));
    let exchange = Exchange {
        gw,
        roles: identity.roles.clone(),
        session,
        headers,
        accepts_sse,
        opening,
    };
    match message {
        Message::Request { .. } => exchange.request(message).await,
        Message::Notification { .. } => exchange.notification(message).await,
        Message::Result { .. } | Message::Error { .. } => exchange.answer(message).await,
    }
}

/// One POST's context.
pub(crate) struct Exchange {
    pub gw: Arc<McpGateway>,
    /// The roles of this request's token (policy judges by these).
    pub roles: Vec<String>,
    pub session: Arc<Session>,
    pub headers: HeaderMap,
    pub accepts_sse: bool,
    /// An `initialize` that opens a session (registered once the server
    /// accepts it).
    pub opening: bool,
}

impl Exchange {
    pub fn asker(&self) -> Asker<'_> {
        Asker {
            subject: &self.session.identity.subject,
            groups: &self.roles,
            connection: &self.gw.config.name,
        }
    }

    fn policy_name(&self) -> &str {
        self.gw.config.policy.name()
    }

    /// The session could not be recorded: nothing goes upstream, and the
    /// session ends.
    async fn audit_failed(&self, id: Option<Id>) -> Response {
        self.gw
            .end_session(&self.session, &EndReason::AuditUnavailable)
            .await;
        rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            codes::AUDIT_UNAVAILABLE,
            "Vigil cannot record this request, so it was not forwarded",
        )
    }

    async fn request(self, message: Message) -> Response {
        let Message::Request { id, method, params } = &message else {
            unreachable!("called for requests")
        };
        let mut verdict = judge(&self.gw.config.policy, self.asker(), &message);
        // A task-augmented request's result comes back later by
        // `tasks/result`, judged on its own: under a mask verdict it could
        // escape the call's masking, so it is refused.
        let tasked = params.as_ref().is_some_and(|p| p.contains_key("task"));
        if tasked && verdict.outcome == Outcome::Mask {
            verdict = Verdict {
                outcome: Outcome::Deny,
                rule: TASKS_RULE.into(),
                reason: "a masked call cannot run as a task (its result would come back by tasks/result); call it without one".into(),
                ..verdict
            };
        }
        if let Some(tool) = called_tool(&message) {
            if self.gw.pins.is_held(tool) {
                verdict = Verdict {
                    outcome: Outcome::Deny,
                    rule: crate::pins::CHANGED_RULE.into(),
                    reason: "the tool's definition changed since it was pinned; an operator must accept it first".into(),
                    ..verdict
                };
            }
        }
        let recorder = self.session.recorder.clone();
        let seq = recorder.session().next_statement_seq();
        let request = record::request(seq, McpDirection::ClientToServer, &message, "");
        let what = describe(method, params.as_ref());
        if verdict.outcome == Outcome::Review {
            return self
                .hold(seq, message.clone(), request, verdict, what)
                .await;
        }
        let decision = verdict.to_decision(seq, self.policy_name(), Stage::Request);
        if recorder
            .record_durably(vec![Kind::Request(request.decided(decision))])
            .await
            .is_err()
        {
            return self.audit_failed(Some(id.clone())).await;
        }
        if verdict.outcome == Outcome::Deny {
            let text = format!(
                "Vigil refused {what}: rule \"{}\": {}",
                verdict.rule, verdict.reason
            );
            return self.refuse(seq, id.clone(), codes::REFUSED, &text).await;
        }
        self.forward(
            seq,
            id.clone(),
            method.clone(),
            params.clone(),
            Arc::new(verdict),
        )
        .await
    }

    /// Answers a request the gateway refused (the Response records it as
    /// never executed).
    async fn refuse(&self, seq: u64, id: Id, code: i64, text: &str) -> Response {
        self.session
            .recorder
            .record_in_background(Kind::Response(record::refused(seq, code, text, false)));
        if self.opening {
            self.gw.sessions.remove(&self.session.gateway_id);
            self.session.end(&EndReason::Error(text.to_string())).await;
        }
        rpc_error(StatusCode::OK, Some(id), code, text)
    }

    /// A request policy holds for review: recorded with its pending
    /// operation, then the agent waits (its SSE stream kept alive) until
    /// approvers decide.
    async fn hold(
        self,
        seq: u64,
        message: Message,
        request: vigil_proto::events::Request,
        verdict: Verdict,
        what: String,
    ) -> Response {
        let Message::Request { id, method, params } = message else {
            unreachable!("called for requests")
        };
        let settings = self.gw.config.policy.review_settings(&verdict.rule);
        let (Some(approvals), Some(settings)) = (self.gw.config.approvals.clone(), settings) else {
            // Nobody could decide: refused, as for SQL.
            let decision = Verdict {
                outcome: Outcome::Deny,
                reason: format!(
                    "{} (held for review, but no approval service or approver group is configured)",
                    verdict.reason
                ),
                ..verdict.clone()
            };
            let recorded = self
                .session
                .recorder
                .record_durably(vec![Kind::Request(request.decided(decision.to_decision(
                    seq,
                    self.policy_name(),
                    Stage::Request,
                )))])
                .await;
            if recorded.is_err() {
                return self.audit_failed(Some(id)).await;
            }
            let text = format!("Vigil refused {what}: rule \"{}\" holds it for review, and no approver can be asked", verdict.rule);
            return self.refuse(seq, id, codes::REFUSED, &text).await;
        };
        // The tool (or resource) by name, its arguments with every
        // literal replaced.
        let arguments = params
            .as_ref()
            .and_then(|p| p.get("arguments"))
            .map(|a| redacted(a).to_string());
        let for_approvers = describe_for_approvers(&method, params.as_ref());
        let shown = match arguments {
            Some(a) => format!("{for_approvers} {a}"),
            None => for_approvers,
        };
        let hold_request = HoldRequest {
            request,
            shown_to_approvers: shown,
            verdict: Arc::new(verdict),
            settings,
            approvals,
            subject: self.session.identity.subject.clone(),
            issuer: self.session.identity.issuer.clone(),
            policy_name: self.policy_name().to_string(),
        };
        let prepared = match hold::prepare(&self.session.recorder, hold_request).await {
            Ok(p) => p,
            Err(_) => return self.audit_failed(Some(id)).await,
        };
        let pending = match prepared {
            Prepared::Done(end) => {
                return self.after_hold(seq, id, method, params, end, what).await
            }
            Prepared::Pending(p) => p,
        };
        tracing::info!(session = %self.session.recorder.session().session_id(), operation = %pending.operation_id(), "MCP request held for review");
        if self.accepts_sse {
            // The answer is an SSE stream at once, kept alive by comments
            // while approvers decide; the agent leaving withdraws it.
            let (reply, out) = Reply::stream();
            tokio::spawn(async move {
                let cancel = self.session.hold_started(&id);
                let cancelled = std::pin::pin!(cancel.notified());
                let gone = out.closed();
                let kept_alive = relay::keep_alive_while(
                    &out,
                    pending.wait(&self.session.recorder, cancelled, gone),
                );
                let waited = kept_alive.await;
                self.session.held(&id);
                let end = match waited {
                    Ok(end) => end,
                    Err(_) => {
                        out.send_message(&Message::Error {
                            id: Some(id),
                            code: codes::AUDIT_UNAVAILABLE,
                            message: "Vigil cannot record this request".into(),
                            data: None,
                        })
                        .await;
                        return;
                    }
                };
                let response = self.after_hold(seq, id, method, params, end, what).await;
                relay::into_stream(response, &out).await;
            });
            return reply.into_response();
        }
        let cancel = self.session.hold_started(&id);
        let cancelled = std::pin::pin!(cancel.notified());
        let waited = pending
            .wait(
                &self.session.recorder,
                cancelled,
                std::future::pending::<()>(),
            )
            .await;
        self.session.held(&id);
        match waited {
            Ok(end) => self.after_hold(seq, id, method, params, end, what).await,
            Err(_) => self.audit_failed(Some(id)).await,
        }
    }

    async fn after_hold(
        self,
        seq: u64,
        id: Id,
        method: String,
        params: Option<Map<String, Value>>,
        end: HoldEnd,
        what: String,
    ) -> Response {
        match end {
            HoldEnd::Released(verdict) => self.forward(seq, id, method, params, verdict).await,
            HoldEnd::Refused(refusal) => {
                let text = match refusal {
                    Refusal::Cancelled { operation_id } => format!(
                        "Vigil withdrew {what}: cancelled while held (operation {operation_id})"
                    ),
                    Refusal::Closed {
                        operation_id,
                        state,
                        reason,
                    } => format!(
                        "Vigil refused {what}: operation {operation_id} {}: {reason}",
                        state.label()
                    ),
                    Refusal::Lost {
                        operation_id,
                        error,
                    } => format!("Vigil refused {what}: operation {operation_id}: {error}"),
                };
                self.refuse(seq, id, codes::NOT_APPROVED, &text).await
            }
            HoldEnd::ClientGone => {
                self.session
                    .recorder
                    .record_in_background(Kind::Response(record::refused(
                        seq,
                        codes::NOT_APPROVED,
                        "the agent left while the request was held",
                        false,
                    )));
                StatusCode::NO_CONTENT.into_response()
            }
        }
    }

    /// Sends the request upstream under the gateway's own id and relays
    /// the server's reply.
    async fn forward(
        self,
        seq: u64,
        id: Id,
        method: String,
        params: Option<Map<String, Value>>,
        verdict: Arc<Verdict>,
    ) -> Response {
        let asked = Asked {
            seq,
            method: method.clone(),
            verdict,
            started: Instant::now(),
        };
        let sent = self.session.ids().send(id.clone(), asked);
        let upstream_id = match sent {
            Ok(u) => u,
            Err(e) => {
                return self
                    .refuse(seq, id, jsonrpc::INVALID_REQUEST, &e.to_string())
                    .await
            }
        };
        // From here the agent may leave at any await: the guard forgets
        // the request and records that it went unanswered.
        let mut abandoned = relay::Abandoned::new(self.session.clone(), upstream_id.clone());
        let body = Message::Request {
            id: upstream_id.clone(),
            method,
            params,
        }
        .to_value()
        .to_string();
        let sent = self.post_upstream(body).await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.session.ids().forget(&upstream_id);
                tracing::warn!(listener = %self.gw.config.name, error = %e, "MCP server unavailable");
                let text = format!("Vigil could not reach the MCP server: {}", e.for_agent());
                return self
                    .refuse(seq, id, codes::UPSTREAM_UNAVAILABLE, &text)
                    .await;
            }
        };
        let mut extra = HeaderMap::new();
        if self.opening {
            if response.status().is_success() {
                let server_id = response
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                self.session.set_upstream_id(server_id);
                if let Ok(v) = HeaderValue::from_str(&self.session.gateway_id) {
                    extra.insert("mcp-session-id", v);
                }
            } else {
                self.gw.sessions.remove(&self.session.gateway_id);
                self.session
                    .end(&EndReason::UpstreamUnavailable(format!(
                        "the server refused initialize: HTTP {}",
                        response.status().as_u16()
                    )))
                    .await;
            }
        }
        let mut reply = relay::answer(&self, response, upstream_id, id, &mut abandoned).await;
        reply.headers_mut().extend(extra);
        reply
    }

    async fn notification(self, message: Message) -> Response {
        let Message::Notification { method, params } = &message else {
            unreachable!("called for notifications")
        };
        let verdict = judge(&self.gw.config.policy, self.asker(), &message);
        let recorder = &self.session.recorder;
        let seq = recorder.session().next_statement_seq();
        let request = record::request(seq, McpDirection::ClientToServer, &message, "");
        let decision = verdict.to_decision(seq, self.policy_name(), Stage::Request);
        if recorder
            .record_durably(vec![Kind::Request(request.decided(decision))])
            .await
            .is_err()
        {
            return self.audit_failed(None).await;
        }
        if !matches!(verdict.outcome, Outcome::Allow | Outcome::Mask) {
            // A notification has no answer to carry a refusal.
            return StatusCode::ACCEPTED.into_response();
        }
        let mut params = params.clone();
        if method == "notifications/cancelled" {
            // The agent names its own id; the server knows the gateway's.
            let named = params
                .as_ref()
                .and_then(|p| p.get("requestId"))
                .and_then(|v| {
                    jsonrpc::message(serde_json::json!({"jsonrpc":"2.0","id":v,"result":{}})).ok()
                })
                .and_then(|m| m.id().cloned());
            // A request still held at the gateway is withdrawn here.
            if let Some(notify) = named.as_ref().and_then(|id| self.session.held(id)) {
                notify.notify_one();
                return StatusCode::ACCEPTED.into_response();
            }
            match named.and_then(|id| self.session.ids().upstream_of(&id)) {
                Some(up) => {
                    if let Some(p) = params.as_mut() {
                        p.insert("requestId".into(), up.to_value());
                    }
                }
                None => return StatusCode::ACCEPTED.into_response(),
            }
        }
        let body = Message::Notification {
            method: method.clone(),
            params,
        }
        .to_value()
        .to_string();
        self.pass_on(body).await
    }

    /// The agent answers a request of the server: only one the gateway
    /// forwarded, recorded, and passed on under the server's own id.
    async fn answer(self, message: Message) -> Response {
        let Some(id) = message.id().cloned() else {
            return plain(
                StatusCode::BAD_REQUEST,
                "an answer without an id answers nothing\n",
            );
        };
        let Some(method) = self.session.client_answers(&id) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Some(id),
                jsonrpc::INVALID_REQUEST,
                "this answers no request the server made",
            );
        };
        // The roots an agent offers cannot reach past what policy lets it
        // read (a filesystem server reads whatever roots it is given).
        let message = match message {
            Message::Result { id, mut result } if method == "roots/list" => {
                let removed =
                    crate::answers::filter_roots(&self.gw.config.policy, self.asker(), &mut result);
                if !removed.is_empty() {
                    tracing::info!(session = %self.session.recorder.session().session_id(), removed = removed.len(), "roots the policy refuses were taken out of the agent's answer");
                }
                Message::Result { id, result }
            }
            m => m,
        };
        let recorder = &self.session.recorder;
        let seq = recorder.session().next_statement_seq();
        // Recorded as forwarded.
        let request = record::request(seq, McpDirection::ClientToServer, &message, &method);
        if recorder
            .record_durably(vec![Kind::Request(request)])
            .await
            .is_err()
        {
            return self.audit_failed(None).await;
        }
        self.pass_on(message.to_value().to_string()).await
    }

    /// POSTs `body` to the server in this session, with this request's
    /// headers as the gateway wrote them.
    async fn post_upstream(
        &self,
        body: String,
    ) -> Result<hyper::Response<hyper::body::Incoming>, crate::upstream::UpstreamError> {
        self.gw
            .upstream
            .send(
                hyper::Method::POST,
                Some(Bytes::from(body)),
                &self.headers,
                self.session.upstream_id().as_deref(),
            )
            .await
    }

    /// Passes a notification or answer on; the server says 202.
    async fn pass_on(self, body: String) -> Response {
        match self.post_upstream(body).await {
            Ok(r) => {
                let status = r.status();
                StatusCode::from_u16(status.as_u16())
                    .unwrap_or(StatusCode::BAD_GATEWAY)
                    .into_response()
            }
            Err(e) => rpc_error(
                StatusCode::BAD_GATEWAY,
                None,
                codes::UPSTREAM_UNAVAILABLE,
                &format!("Vigil could not reach the MCP server: {}", e.for_agent()),
            ),
        }
    }
}

/// The rule a refused task-augmented masked request is recorded under.
const TASKS_RULE: &str = "masked-calls-run-without-tasks";

/// The tool a `tools/call` names.
fn called_tool(message: &Message) -> Option<&str> {
    match message {
        Message::Request {
            method,
            params: Some(p),
            ..
        } if method == "tools/call" => p.get("name").and_then(Value::as_str),
        _ => None,
    }
}

/// "tools/call of \"lookup\"", "resources/read of \"file:///x\"": what a
/// refusal names (never arguments).
fn describe(method: &str, params: Option<&Map<String, Value>>) -> String {
    let named = params
        .and_then(|p| p.get("name").or_else(|| p.get("uri")))
        .and_then(Value::as_str);
    match named {
        Some(n) => format!("{method} of {:?}", n.chars().take(128).collect::<String>()),
        None => method.to_string(),
    }
}

/// What approvers (and their webhooks, chat) are told a held request is:
/// the tool or prompt by name, a resource by its URI's scheme only (the
/// rest of a URI, `patients://MRN-0042`, can name a patient).
fn describe_for_approvers(method: &str, params: Option<&Map<String, Value>>) -> String {
    let uri = params.and_then(|p| p.get("uri")).and_then(Value::as_str);
    match uri {
        Some(u) => {
            let scheme = u.split_once(':').map_or("", |(s, _)| s);
            let scheme: String = scheme
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
                .take(32)
                .collect();
            format!("{method} of a {scheme}: resource")
        }
        None => describe(method, params),
    }
}

/// The params as approvers see them: keys and structure kept, every
/// literal replaced, as for SQL (the agent's arguments can carry PHI).
fn redacted(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::from("?"),
        Value::Number(_) => Value::from("#"),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), redacted(v))).collect())
        }
        other => other.clone(),
    }
}

/// Whether the body is declared JSON in UTF-8 (the only charset the
/// gateway and every server read alike).
fn json_utf8(headers: &HeaderMap) -> bool {
    let Some(ct) = header(headers, "content-type") else {
        return false;
    };
    let mut parts = ct.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    })
}

fn accepts(accept: &str, kind: &str) -> bool {
    accept.split(',').any(|p| {
        p.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(kind))
    })
}

/// The MCP headers a client may give once only; a second value could be
/// read by the server (or a router before it) instead of the one checked.
const SINGLE_HEADERS: [&str; 4] = [
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
];

/// The first metadata header given twice or not in visible ASCII.
fn repeated_metadata(headers: &HeaderMap) -> Option<String> {
    for name in SINGLE_HEADERS {
        let values: Vec<_> = headers.get_all(name).iter().collect();
        if values.len() > 1 || values.iter().any(|v| v.to_str().is_err()) {
            return Some(name.to_string());
        }
    }
    headers
        .iter()
        .find(|(n, v)| n.as_str().starts_with("mcp-param-") && v.to_str().is_err())
        .map(|(n, _)| n.to_string())
}

/// The headers the server gets: the protocol version and Last-Event-ID
/// as the agent gave them, and the 2026-07-28 `Mcp-Method` and
/// `Mcp-Name` written anew from the message the gateway forwards (when
/// the agent sent them), never the agent's own; `Mcp-Param-*` are not
/// passed (the gateway cannot check them without the tool's schema).
pub(crate) fn upstream_headers(client: &HeaderMap, message: Option<&Message>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in ["mcp-protocol-version", "last-event-id"] {
        if let Some(v) = client.get(name) {
            out.insert(name, v.clone());
        }
    }
    let (method, params) = match message {
        Some(
            Message::Request { method, params, .. } | Message::Notification { method, params },
        ) => (method.as_str(), params.as_ref()),
        _ => return out,
    };
    if client.contains_key("mcp-method") {
        if let Ok(v) = HeaderValue::from_str(method) {
            out.insert("mcp-method", v);
        }
    }
    let name = params
        .and_then(|p| p.get("name").or_else(|| p.get("uri")))
        .and_then(Value::as_str);
    if let (true, Some(name)) = (client.contains_key("mcp-name"), name) {
        // A value a header cannot carry goes in the revision's Base64 form.
        let text =
            if name.chars().all(|c| c.is_ascii_graphic() || c == ' ') && !name.starts_with("=?") {
                name.to_string()
            } else {
                use base64::Engine as _;
                format!(
                    "=?base64?{}?=",
                    base64::engine::general_purpose::STANDARD.encode(name)
                )
            };
        if let Ok(v) = HeaderValue::from_str(&text) {
            out.insert("mcp-name", v);
        }
    }
    out
}

/// The 2026-07-28 metadata headers of a request.
fn request_headers(headers: &HeaderMap) -> RequestHeaders {
    let mut out = RequestHeaders {
        protocol_version: header(headers, "mcp-protocol-version").map(str::to_string),
        method: header(headers, "mcp-method").map(str::to_string),
        name: header(headers, "mcp-name").map(str::to_string),
        params: Vec::new(),
    };
    for (name, value) in headers {
        if let Some(rest) = name.as_str().strip_prefix("mcp-param-") {
            out.params.push((
                rest.to_string(),
                value.to_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_in_utf8_is_accepted() {
        let mut h = HeaderMap::new();
        assert!(!json_utf8(&h));
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=UTF-8", true),
            ("application/json; charset=\"utf-8\"", true),
            ("application/json; charset=utf-16", false),
            ("application/json;charset=iso-8859-1", false),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            h.insert("content-type", HeaderValue::from_str(ct).unwrap());
            assert_eq!(json_utf8(&h), ok, "{ct}");
        }
    }

    #[test]
    fn approvers_see_structure_not_literals() {
        let v = serde_json::json!({"name": "lookup", "arguments": {"mrn": "123", "n": 5, "all": true, "ids": ["a"]}});
        assert_eq!(
            redacted(&v),
            serde_json::json!({"name": "?", "arguments": {"mrn": "?", "n": "#", "all": true, "ids": ["?"]}})
        );
    }

    #[test]
    fn approvers_see_a_resource_by_its_scheme_only() {
        let p = serde_json::json!({"uri": "patients://MRN-0042/chart"});
        let d = describe_for_approvers("resources/read", p.as_object());
        assert_eq!(d, "resources/read of a patients: resource");
        let t = serde_json::json!({"name": "discharge_patient"});
        assert_eq!(
            describe_for_approvers("tools/call", t.as_object()),
            "tools/call of \"discharge_patient\""
        );
    }

    #[test]
    fn refusals_name_the_tool_and_never_the_arguments() {
        let p = serde_json::json!({"name": "lookup", "arguments": {"ssn": "123-45-6789"}});
        let d = describe("tools/call", p.as_object());
        assert_eq!(d, "tools/call of \"lookup\"");
    }
}
