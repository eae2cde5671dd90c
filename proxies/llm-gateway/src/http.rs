//! The listener: each connection served with HTTP/1.1, each request
//! admitted (token), decoded, judged and recorded, then relayed
//! (`relay`). A connection's calls by one identity are one session, as
//! the MCP gateway's stateless revision records them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request as AxumRequest, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use vigil_llm::policy::{Asker, Outcome, Verdict};
use vigil_llm::request::{self, Api, Endpoint, LlmRequest};
use vigil_proto::events::{
    event::Kind, login_refused, request as request_event, session_opened, HttpCall, HttpSession,
    LoginRefused, Protocol, Request, SessionOpened, Stage,
};
use vigil_proxy_core::identity::VerifiedIdentity;
use vigil_proxy_core::mask::Vault;
use vigil_proxy_core::{Authenticator, EventSink, SessionContext};
use vigil_runtime::drain::Drain;
use vigil_runtime::hold::{self, HoldEnd, HoldRequest, Prepared};
use vigil_runtime::recorder::{record_login_refused, EndReason, SessionRecorder};
use vigil_runtime::upstream::HttpClient;

use crate::errors::{self, ErrorKind};
use crate::relay;
use crate::GatewayConfig;

/// How long a request's headers may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// One model-API listener.
pub struct LlmGateway {
    pub(crate) config: GatewayConfig,
    auth: Authenticator,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) client: HttpClient,
}

/// One HTTP connection: its peer and the session of its identity.
pub(crate) struct Conn {
    peer: SocketAddr,
    tls: bool,
    user_agent: std::sync::Mutex<String>,
    session: tokio::sync::Mutex<Option<(Arc<SessionRecorder>, VerifiedIdentity)>>,
    /// Held (read) by each call under way, a stream's relay task included:
    /// the session closes once none is left, so no Response is recorded
    /// after its SessionClosed.
    in_flight: Arc<tokio::sync::RwLock<()>>,
}

impl LlmGateway {
    pub fn new(
        config: GatewayConfig,
        auth: Authenticator,
        sink: Arc<dyn EventSink>,
    ) -> anyhow::Result<Arc<Self>> {
        let client = HttpClient::new(config.upstream.ca_pem.as_deref())?;
        Ok(Arc::new(Self {
            config,
            auth,
            sink,
            client,
        }))
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Serves the listener until the shutdown's drain ends.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        drain: Arc<Drain>,
    ) -> std::io::Result<()> {
        let served = vigil_runtime::listener::serve(self, listener, drain.clone(), 4096).await;
        drain.deadline().await;
        served
    }

    async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        drain: Arc<Drain>,
    ) {
        let conn = Arc::new(Conn {
            peer,
            tls: self.config.tls.is_some(),
            user_agent: std::sync::Mutex::new(String::new()),
            session: tokio::sync::Mutex::new(None),
            in_flight: Arc::new(tokio::sync::RwLock::new(())),
        });
        let router = Router::new()
            .fallback(handle)
            .layer(Extension(conn.clone()))
            .with_state(self.clone());
        let served = vigil_runtime::http::serve_gateway_connection(
            stream,
            peer,
            self.config.tls.as_ref(),
            router,
            HEADER_TIMEOUT,
        );
        let reason = tokio::select! {
            _ = served => EndReason::ClientDisconnected(None),
            _ = drain.deadline() => EndReason::Shutdown,
        };
        // Calls still under way (a stream the provider is still writing
        // after the agent left) end within the stall timeout.
        let _ = tokio::time::timeout(
            self.config.upstream.stall_timeout + Duration::from_secs(1),
            conn.in_flight.write(),
        )
        .await;
        let session = conn.session.lock().await.take();
        if let Some((recorder, _)) = session {
            recorder.close(&reason).await;
        }
    }

    /// The agent's identity from its token (`Authorization: Bearer`, or
    /// `x-api-key` as the Anthropic SDK sends its key), or the 401/403.
    async fn authenticate(
        &self,
        api: Api,
        headers: &HeaderMap,
        conn: &Conn,
    ) -> Result<VerifiedIdentity, Response> {
        let token = vigil_runtime::http::bearer_token(headers).or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|t| !t.is_empty())
        });
        let Some(token) = token else {
            return Err(errors::respond(
                api,
                ErrorKind::Authentication,
                "Vigil needs an access token from your identity provider, as the API key (Authorization: Bearer or x-api-key)",
            ));
        };
        let (auth, token, required) = (
            self.auth.clone(),
            token.to_string(),
            self.config.required_scopes.clone(),
        );
        // Off the async threads: an unknown key id makes a JWKS request.
        let verdict = tokio::task::spawn_blocking(move || {
            auth.authenticate_bearer(&token, &required, SystemTime::now())
        })
        .await;
        match verdict {
            Ok(Ok(identity)) => Ok(identity),
            Ok(Err(e)) => {
                tracing::info!(peer = %conn.peer, reason = e.code(), error = %e, "model-API token refused");
                if e.worth_recording() {
                    let nobody = SessionContext::new(
                        &self.config.name,
                        &VerifiedIdentity::default(),
                        Protocol::Llm,
                    );
                    let event = nobody.event(Kind::LoginRefused(LoginRefused {
                        client_addr: conn.peer.to_string(),
                        tls: conn.tls,
                        reason_code: e.code().into(),
                        reason: e.to_string(),
                        detail: Some(login_refused::Detail::Http(HttpSession {
                            user_agent: user_agent(headers),
                            upstream: self.config.upstream.base_url.clone(),
                        })),
                    }));
                    record_login_refused(&self.sink, event);
                }
                let kind = if e.code() == "missing_scope" {
                    ErrorKind::Permission
                } else {
                    ErrorKind::Authentication
                };
                Err(errors::respond(
                    api,
                    kind,
                    &format!("Vigil refused the token: {e}"),
                ))
            }
            Err(_) => Err(errors::respond(
                api,
                ErrorKind::Upstream,
                "internal error while checking the token",
            )),
        }
    }

    /// The connection's session for `identity`: opened (SessionOpened
    /// durable) on its first call, anew when another identity uses the
    /// connection.
    async fn session(
        &self,
        conn: &Conn,
        identity: &VerifiedIdentity,
        api: Api,
    ) -> Result<Arc<SessionRecorder>, Response> {
        let mut slot = conn.session.lock().await;
        if let Some((recorder, who)) = slot.as_ref() {
            if who.subject == identity.subject && who.issuer == identity.issuer {
                return Ok(recorder.clone());
            }
        }
        if let Some((old, _)) = slot.take() {
            old.close(&EndReason::ClientDisconnected(Some(
                "another identity used the connection".into(),
            )))
            .await;
        }
        let context = Arc::new(SessionContext::new(
            &self.config.name,
            identity,
            Protocol::Llm,
        ));
        let opened = SessionOpened {
            client_addr: conn.peer.to_string(),
            tls: conn.tls,
            upstream_tls: self.config.upstream.base_url.starts_with("https:"),
            upstream_addr: self.config.upstream.base_url.clone(),
            detail: Some(session_opened::Detail::Http(HttpSession {
                user_agent: conn.user_agent.lock().expect("conn lock").clone(),
                upstream: self.config.upstream.base_url.clone(),
            })),
        };
        match SessionRecorder::open(context, self.sink.clone(), opened).await {
            Ok(recorder) => {
                *slot = Some((recorder.clone(), identity.clone()));
                Ok(recorder)
            }
            Err(e) => {
                tracing::error!(error = %e, "model-API call refused: SessionOpened not recorded");
                Err(errors::respond(
                    api,
                    ErrorKind::AuditUnavailable,
                    "Vigil cannot record this call, so it was not made",
                ))
            }
        }
    }
}

fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(256)
        .collect()
}

/// Every request: admitted, decoded, judged, recorded, then relayed.
async fn handle(
    State(gw): State<Arc<LlmGateway>>,
    Extension(conn): Extension<Arc<Conn>>,
    request: AxumRequest,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let api = if path.starts_with("/v1/messages") {
        Api::Anthropic
    } else {
        Api::OpenAi
    };
    // WebSocket modes (Responses over WebSocket, realtime) would carry the
    // conversation past every check made here.
    if parts.headers.contains_key(axum::http::header::UPGRADE) {
        return errors::respond(
            api,
            ErrorKind::InvalidRequest,
            "Vigil does not inspect WebSocket modes (realtime, Responses over WebSocket), so it refuses them; use the HTTP API",
        );
    }
    let Some(endpoint) = Endpoint::of(parts.method.as_str(), &path) else {
        return errors::respond(
            api,
            ErrorKind::NotFound,
            &format!("Vigil serves no {} {}", parts.method, clip(&path)),
        );
    };
    let identity = match gw.authenticate(api, &parts.headers, &conn).await {
        Ok(i) => i,
        Err(refusal) => return refusal,
    };
    *conn.user_agent.lock().expect("conn lock") = user_agent(&parts.headers);
    let recorder = match gw.session(&conn, &identity, api).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let seq = recorder.session().next_statement_seq();
    let unread = |why: String| {
        let call = call_event(seq, parts.method.as_str(), &path, None, &[]);
        refuse_call(&gw, &recorder, call, api, ErrorKind::InvalidRequest, why)
    };
    let encoding = match parts.headers.get(axum::http::header::CONTENT_ENCODING) {
        None => None,
        Some(v) => match v.to_str().map(|e| e.trim().to_ascii_lowercase()) {
            Ok(e) if e == "identity" || e.is_empty() => None,
            Ok(e) if matches!(e.as_str(), "gzip" | "x-gzip" | "deflate" | "br") => Some(e),
            _ => {
                return unread(
                    "Vigil decodes request bodies in gzip, deflate or br only, one at a time"
                        .into(),
                )
                .await
            }
        },
    };
    let bytes = match http_body_util::Limited::new(body, gw.config.max_request_bytes)
        .collect()
        .await
    {
        Ok(b) => match encoding {
            None => b.to_bytes(),
            Some(e) => {
                match decode_off_thread(e, b.to_bytes(), gw.config.max_request_bytes).await {
                    Ok(body) => body,
                    Err(why) => {
                        let call = call_event(seq, parts.method.as_str(), &path, None, &[]);
                        let kind = if why.contains("larger") {
                            ErrorKind::TooLarge
                        } else {
                            ErrorKind::InvalidRequest
                        };
                        return refuse_call(&gw, &recorder, call, api, kind, why).await;
                    }
                }
            }
        },
        Err(_) => {
            let text = format!(
                "the request body is larger than this gateway accepts ({} bytes)",
                gw.config.max_request_bytes
            );
            let call = call_event(seq, parts.method.as_str(), &path, None, &[]);
            return refuse_call(&gw, &recorder, call, api, ErrorKind::TooLarge, text).await;
        }
    };
    // Parsing (and below, masking) a prompt of megabytes takes
    // milliseconds: that runs without holding up other sessions.
    let (decoded, call) = vigil_runtime::blocking::may_block_if_large(bytes.len(), || {
        let decoded = request::decode(endpoint, &bytes);
        let call = call_event(
            seq,
            parts.method.as_str(),
            &path,
            decoded.as_ref().ok(),
            &bytes,
        );
        (decoded, call)
    });
    let mut llm = match decoded {
        Ok(r) => r,
        Err(e) => {
            let text = format!("Vigil refused the request: {e}");
            return refuse_call(&gw, &recorder, call, api, ErrorKind::InvalidRequest, text).await;
        }
    };
    let roles = identity.roles.clone();
    let asker = Asker {
        subject: &identity.subject,
        groups: &roles,
        connection: &gw.config.name,
    };
    let verdict = gw.config.policy.first_match(asker, &llm);
    let verdict = match verdict.outcome {
        Outcome::Review => match held(&gw, &recorder, &identity, call, verdict, &llm).await {
            Ok(v) => v,
            Err(response) => return response,
        },
        _ => {
            if let Err(response) = record_judged(&gw, &recorder, call, &verdict, api).await {
                return response;
            }
            verdict
        }
    };
    if !verdict.outcome.forwards() {
        let text = format!(
            "Vigil refused the call: rule \"{}\": {}",
            verdict.rule, verdict.reason
        );
        recorder.record_in_background(Kind::Response(relay::refused_response(seq, 403, &text)));
        return errors::respond(api, ErrorKind::Permission, &text);
    }
    let directions = *gw.config.policy.family();
    let masking = verdict.outcome == Outcome::Mask;
    let (mask_prompt, mask_output) = (masking && directions.prompt, masking && directions.output);
    let refuse = |text: String| {
        recorder.record_in_background(Kind::Response(relay::refused_response(seq, 400, &text)));
        errors::respond(api, ErrorKind::InvalidRequest, &text)
    };
    // What would carry the answer past masking is refused under it.
    if let Some(why) = llm.unmaskable_output().filter(|_| mask_output) {
        return refuse(format!("Vigil masks this answer, and {why}"));
    }
    // A rule may have the prompt's values restored in the answer: they
    // are numbered in a vault of this call's own.
    let restore =
        mask_prompt && mask_output && vigil_llm::policy::restores(&gw.config.policy, &verdict.rule);
    if let Some(why) = llm.restore_refusal().filter(|_| restore) {
        return refuse(format!(
            "Vigil restores this call's values for you, and {why}"
        ));
    }
    let mut vault = restore.then(Vault::new);
    let prompt_bytes = if mask_prompt { bytes.len() } else { 0 };
    let masked = vigil_runtime::blocking::may_block_if_large(prompt_bytes, || {
        match (mask_prompt, vault.as_mut()) {
            (false, _) => Ok(None),
            (true, Some(vault)) => llm.mask_prompt_numbered(&gw.config.masker, vault).map(Some),
            (true, None) => llm.mask_prompt(&gw.config.masker).map(Some),
        }
    });
    let prompt_found = match masked {
        Ok(found) => found,
        Err(refused) => return refuse(format!("Vigil masks the prompt, and {}", refused.0)),
    };
    relay::forward(
        gw,
        recorder,
        seq,
        parts.headers,
        llm,
        bytes,
        mask_output,
        prompt_found,
        vault,
        conn.in_flight.clone().read_owned().await,
    )
    .await
}

/// [`decoded_body`] off the async threads: it is CPU work of up to the
/// request limit.
async fn decode_off_thread(
    encoding: String,
    body: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, String> {
    tokio::task::spawn_blocking(move || decoded_body(&encoding, &body, limit))
        .await
        .unwrap_or_else(|_| Err("the request body could not be decoded".into()))
}

/// A compressed body, decoded; never more than `limit` bytes of it (a
/// small body can decode to gigabytes).
fn decoded_body(encoding: &str, body: &[u8], limit: usize) -> Result<bytes::Bytes, String> {
    use std::io::Read;
    let reader: Box<dyn Read + '_> = match encoding {
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(body)),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(body)),
        _ => Box::new(brotli_decompressor::Decompressor::new(body, 4096)),
    };
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| format!("the request body is not valid {encoding}"))?;
    if out.len() > limit {
        return Err(format!(
            "the request body decodes to more than this gateway accepts ({limit} bytes)"
        ));
    }
    Ok(out.into())
}

/// A call refused before policy could judge it (unreadable, too large,
/// malformed): recorded as asked (Request, a refusing Decision, the
/// Response), then answered in the API's format.
async fn refuse_call(
    gw: &LlmGateway,
    recorder: &Arc<SessionRecorder>,
    call: Request,
    api: Api,
    kind: ErrorKind,
    text: String,
) -> Response {
    let seq = call.request_seq;
    let refused = Verdict {
        outcome: Outcome::Deny,
        ..gw.config.policy.nothing_to_judge(&text)
    };
    if let Err(response) = record_judged(gw, recorder, call, &refused, api).await {
        return response;
    }
    recorder.record_in_background(Kind::Response(relay::refused_response(seq, 400, &text)));
    errors::respond(api, kind, &text)
}

/// Records a call's Request and the Decision on it durably, before
/// anything else happens to it; if they cannot be, the agent is told the
/// call was not made.
async fn record_judged(
    gw: &LlmGateway,
    recorder: &SessionRecorder,
    call: Request,
    verdict: &Verdict,
    api: Api,
) -> Result<(), Response> {
    let decision = verdict.to_decision(call.request_seq, gw.config.policy.name(), Stage::Request);
    recorder
        .record_durably(vec![Kind::Request(call.decided(decision))])
        .await
        .map_err(|_| {
            errors::respond(
                api,
                ErrorKind::AuditUnavailable,
                "Vigil cannot record this call, so it was not made",
            )
        })
}

/// A review: held through the approval service until approvers decide.
/// `Ok`: the verdict to go on with (released: masked); `Err`: the answer.
async fn held(
    gw: &Arc<LlmGateway>,
    recorder: &Arc<SessionRecorder>,
    identity: &VerifiedIdentity,
    call: Request,
    verdict: Verdict,
    llm: &LlmRequest,
) -> Result<Verdict, Response> {
    let api = llm.endpoint.api();
    let seq = call.request_seq;
    let settings = gw.config.policy.review_settings(&verdict.rule);
    let (Some(approvals), Some(settings)) = (gw.config.approvals.clone(), settings) else {
        let refused = Verdict {
            outcome: Outcome::Deny,
            reason: format!(
                "{} (held for review, but no approval service or approver group is configured)",
                verdict.reason
            ),
            ..verdict
        };
        record_judged(gw, recorder, call, &refused, api).await?;
        recorder.record_in_background(Kind::Response(relay::refused_response(
            seq,
            403,
            "held for review, but nobody can be asked",
        )));
        return Err(errors::respond(api, ErrorKind::Permission, &format!("Vigil refused the call: rule \"{}\" holds it for review, and no approver can be asked", refused.rule)));
    };
    // Approvers read what is asked of which model, never the prompt.
    let shown = format!(
        "{} to model {} ({} tools offered: {}; max tokens {})",
        llm.endpoint.label(),
        serde_json::Value::from(llm.model.chars().take(128).collect::<String>()),
        llm.tools.len(),
        llm.tools
            .iter()
            .take(16)
            .map(|t| t.chars().take(64).collect::<String>())
            .collect::<Vec<_>>()
            .join(", "),
        llm.max_tokens
            .map_or("not set".to_string(), |n| n.to_string()),
    );
    let hold_request = HoldRequest {
        request: call,
        shown_to_approvers: shown,
        verdict: Arc::new(verdict),
        settings,
        approvals,
        subject: identity.subject.clone(),
        issuer: identity.issuer.clone(),
        policy_name: gw.config.policy.name().to_string(),
    };
    let unavailable = || {
        errors::respond(
            api,
            ErrorKind::AuditUnavailable,
            "Vigil cannot record this call, so it was not made",
        )
    };
    let end = match hold::prepare(recorder, hold_request)
        .await
        .map_err(|_| unavailable())?
    {
        Prepared::Done(end) => end,
        Prepared::Pending(pending) => {
            let never = tokio::sync::Notify::new();
            let cancelled = std::pin::pin!(never.notified());
            // The agent leaving drops this future: the operation is withdrawn.
            pending
                .wait(recorder, cancelled, std::future::pending::<()>())
                .await
                .map_err(|_| unavailable())?
        }
    };
    match end {
        HoldEnd::Released(v) => Ok((*v).clone()),
        HoldEnd::Refused(refusal) => {
            let why = refusal.describe();
            let text = format!("Vigil did not make the call: approvers did not release it ({why})");
            recorder.record_in_background(Kind::Response(relay::refused_response(seq, 403, &text)));
            Err(errors::respond(api, ErrorKind::Permission, &text))
        }
        HoldEnd::ClientGone => Err(errors::respond(
            api,
            ErrorKind::Permission,
            "the call was withdrawn",
        )),
    }
}

/// The Request event: what was asked, the body whole as the agent sent
/// it (the ledger seals it).
fn call_event(
    seq: u64,
    method: &str,
    path: &str,
    decoded: Option<&LlmRequest>,
    body: &[u8],
) -> Request {
    let mut call = HttpCall {
        method: method.into(),
        path: clip(path),
        body: (!body.is_empty()).then(|| vigil_proxy_core::recorded::recorded(body)),
        ..HttpCall::default()
    };
    if let Some(r) = decoded {
        call.model = r.model.chars().take(256).collect();
        call.stream = r.stream;
        call.max_tokens = r.max_tokens.unwrap_or(0);
        call.tools = r
            .tools
            .iter()
            .take(128)
            .map(|t| t.chars().take(128).collect())
            .collect();
    }
    Request {
        request_seq: seq,
        detail: Some(request_event::Detail::Http(call)),
        decision: None,
    }
}

fn clip(text: &str) -> String {
    vigil_proxy_core::strict_json::clip(text, 256)
}

impl vigil_runtime::listener::Adapter for LlmGateway {
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn compressed_bodies_are_decoded_within_the_limit() {
        let body = br#"{"model":"m","messages":[]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(&decoded_body("gzip", &gz, 1024).unwrap()[..], body);
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(body).unwrap();
        assert_eq!(
            &decoded_body("deflate", &zl.finish().unwrap(), 1024).unwrap()[..],
            body
        );
        // A bomb: 10 MB of zeros in a few kB, refused at the limit.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        bomb.write_all(&vec![0u8; 10 << 20]).unwrap();
        let bomb = bomb.finish().unwrap();
        assert!(bomb.len() < 64 << 10);
        assert!(decoded_body("gzip", &bomb, 1 << 20)
            .unwrap_err()
            .contains("more than"));
        assert!(decoded_body("gzip", b"not gzip", 1024)
            .unwrap_err()
            .contains("not valid gzip"));
        assert!(decoded_body("br", b"\xff\xff\xff", 1024).is_err());
    }
}
