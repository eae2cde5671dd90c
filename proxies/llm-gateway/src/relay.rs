//! A judged call sent to the provider with the gateway's own key, and its
//! answer relayed: a whole JSON body masked at once, a stream masked event
//! by event (`vigil_llm::output`), the Response event recorded at the end
//! with status, usage, time to first token, finish reason, tool calls and
//! the answer as the agent got it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::sync::mpsc;
use vigil_llm::output::{
    mask_whole, restore_whole, ChatStream, Found, MessagesStream, ResponsesStream,
};
use vigil_llm::request::{Api, Endpoint, LlmRequest};
use vigil_proto::events::{
    event::Kind, response, HttpResult, MaskedField, Response as ResponseEvent,
};
use vigil_proxy_core::mask::Vault;
use vigil_proxy_core::sse;
use vigil_runtime::recorder::SessionRecorder;

use crate::errors::{self, ErrorKind};
use crate::http::LlmGateway;

/// Request headers the provider must see besides the body's type (the
/// agent's other headers, its token above all, stay here).
const PASSED_ON: [&str; 4] = [
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "accept",
];

/// The Response of a call the gateway answered itself.
pub(crate) fn refused_response(seq: u64, status: u32, message: &str) -> ResponseEvent {
    ResponseEvent {
        request_seq: seq,
        not_executed: true,
        error_code: status.to_string(),
        error_message: message.into(),
        detail: Some(response::Detail::Http(HttpResult {
            status,
            ..HttpResult::default()
        })),
        ..ResponseEvent::default()
    }
}

/// Sends the call and relays the answer.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward(
    gw: Arc<LlmGateway>,
    recorder: Arc<SessionRecorder>,
    seq: u64,
    headers: HeaderMap,
    llm: LlmRequest,
    original: Bytes,
    masking: bool,
    prompt_found: Option<Found>,
    vault: Option<Vault>,
    in_flight: tokio::sync::OwnedRwLockReadGuard<()>,
) -> Response {
    let api = llm.endpoint.api();
    let started = Instant::now();
    let body = if prompt_found.is_some() && llm.body.is_object() {
        Bytes::from(llm.body.to_string())
    } else {
        original
    };
    let path = match llm.endpoint {
        Endpoint::Models => "/v1/models".to_string(),
        _ => format!("/v1/{}", llm.endpoint.label()),
    };
    let mut request = hyper::Request::builder()
        .method(if llm.endpoint == Endpoint::Models {
            "GET"
        } else {
            "POST"
        })
        .uri(format!("{}{path}", gw.config.upstream.base_url));
    let out = request.headers_mut().expect("a fresh builder has headers");
    for name in PASSED_ON {
        if let Some(v) = headers.get(name) {
            out.insert(name, v.clone());
        }
    }
    if !body.is_empty() {
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Some(key) = &gw.config.upstream.api_key {
        let (name, value) = match api {
            Api::OpenAi => (header::AUTHORIZATION.as_str(), format!("Bearer {key}")),
            Api::Anthropic => ("x-api-key", key.clone()),
        };
        if let Ok(mut v) = HeaderValue::from_str(&value) {
            v.set_sensitive(true);
            out.insert(name, v);
        }
    }
    let request = match request.body(Full::new(body)) {
        Ok(r) => r,
        Err(_) => {
            let text = "the request cannot be sent on";
            recorder.record_in_background(Kind::Response(refused_response(seq, 400, text)));
            return errors::respond(api, ErrorKind::InvalidRequest, text);
        }
    };
    let mut record = Record::new(seq, prompt_found);
    // The agent hanging up drops this future: its call still gets a
    // Response saying so.
    let mut abandoned = Abandoned {
        recorder: Some(recorder.clone()),
        seq,
        started,
    };
    let upstream = match gw.client.send(request, gw.config.upstream.timeout).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "the model provider gave no answer");
            let text = "Vigil could not reach the model provider";
            abandoned.recorder = None;
            recorder.record_in_background(Kind::Response(record.failed(502, text, started)));
            return errors::respond(api, ErrorKind::Upstream, text);
        }
    };
    let status = upstream.status();
    record.status = u32::from(status.as_u16());
    let streamed = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    // A stream is masked only where it was asked for and its events are
    // known channel by channel; a provider streaming anything else under
    // masking is refused, not passed event by event.
    let channelled = llm.stream
        && matches!(
            llm.endpoint,
            Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Messages
                | Endpoint::Responses
        );
    if streamed && masking && !channelled {
        let text = "the model provider streamed an answer Vigil cannot mask event by event";
        abandoned.recorder = None;
        recorder.record_in_background(Kind::Response(record.failed(502, text, started)));
        return errors::respond(api, ErrorKind::Upstream, &format!("Vigil: {text}"));
    }
    if streamed && status.is_success() {
        abandoned.recorder = None;
        return stream(
            gw,
            recorder,
            api,
            llm.endpoint,
            upstream.into_body(),
            masking,
            vault,
            record,
            started,
            in_flight,
        );
    }
    // A whole answer (or an error), bounded.
    let limit = gw.config.max_response_bytes;
    let bytes = match http_body_util::Limited::new(upstream.into_body(), limit)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let text =
                "the model provider's answer is larger than this gateway relays, or was cut short";
            abandoned.recorder = None;
            recorder.record_in_background(Kind::Response(record.failed(502, text, started)));
            return errors::respond(api, ErrorKind::Upstream, text);
        }
    };
    // Parsing and masking a body of megabytes takes milliseconds: that
    // runs without holding up the worker's other sessions.
    let body = vigil_runtime::blocking::may_block_if_large(bytes.len(), || {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut value) => {
                if masking {
                    mask_whole(&gw.config.masker, &mut value, &mut record.output_found);
                }
                record.read_usage(&value);
                // The record keeps the answer as the model wrote it, masked;
                // the caller gets its own values back.
                let as_written = value.to_string();
                record.output.push_str(&as_written);
                Some(match &vault {
                    Some(vault) => {
                        restore_whole(vault, &mut value, &mut record.output_found);
                        value.to_string()
                    }
                    None => as_written,
                })
            }
            // Not JSON (a proxy's error page, a broken provider): the page
            // is not relayed, and the record keeps it scanned.
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let scanned = match gw.config.masker.scan(text.as_bytes()) {
                    Some(s) => String::from_utf8_lossy(&s.masked).into_owned(),
                    None => text,
                };
                record.output.push_str(&scanned);
                None
            }
        }
    });
    // The agent gets an error in its API's format.
    let Some(body) = body else {
        let message = format!("the model provider answered {status} with a body that is not JSON");
        abandoned.recorder = None;
        recorder.record_in_background(Kind::Response(record.failed(502, &message, started)));
        return errors::respond(api, ErrorKind::Upstream, &format!("Vigil: {message}"));
    };
    if !status.is_success() {
        record.error = Some(format!("the provider answered {status}"));
    }
    abandoned.recorder = None;
    // Hashes what it keeps of the answer (up to the relay's limit).
    let finished =
        vigil_runtime::blocking::may_block_if_large(bytes.len(), || record.finish(started));
    recorder.record_in_background(Kind::Response(finished));
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Records that the agent left while its call was under way, unless
/// disarmed (`recorder` taken) because the call records its own end.
struct Abandoned {
    recorder: Option<Arc<SessionRecorder>>,
    seq: u64,
    started: Instant,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(recorder) = self.recorder.take() {
            let mut response =
                refused_response(self.seq, 499, "the agent left before the provider answered");
            response.not_executed = false;
            response.duration_micros = self.started.elapsed().as_micros() as u64;
            recorder.record_in_background(Kind::Response(response));
        }
    }
}

/// What the Response event will say, gathered as the answer passes.
struct Record {
    seq: u64,
    status: u32,
    input_tokens: u64,
    output_tokens: u64,
    first_token_micros: Option<u64>,
    finish_reason: String,
    tool_calls: Vec<String>,
    /// The answer as the agent got it (text and arguments for a stream).
    output: String,
    prompt_found: Option<Found>,
    output_found: Found,
    error: Option<String>,
}

impl Record {
    fn new(seq: u64, prompt_found: Option<Found>) -> Self {
        Record {
            seq,
            status: 0,
            input_tokens: 0,
            output_tokens: 0,
            first_token_micros: None,
            finish_reason: String::new(),
            tool_calls: Vec::new(),
            output: String::new(),
            prompt_found,
            output_found: Found::default(),
            error: None,
        }
    }

    /// Usage, finish reason and tool calls from a whole answer or a chunk
    /// of either API.
    fn read_usage(&mut self, v: &Value) {
        let num = |p: &str| v.pointer(p).and_then(Value::as_u64);
        for p in [
            "/usage/prompt_tokens",
            "/usage/input_tokens",
            "/message/usage/input_tokens",
        ] {
            if let Some(n) = num(p) {
                self.input_tokens = n;
            }
        }
        for p in ["/usage/completion_tokens", "/usage/output_tokens"] {
            if let Some(n) = num(p) {
                self.output_tokens = n;
            }
        }
        let text = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        if let Some(r) = text("/choices/0/finish_reason")
            .or_else(|| text("/stop_reason"))
            .or_else(|| text("/delta/stop_reason"))
        {
            self.finish_reason = r;
        }
        let mut names = Vec::new();
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            for c in choices {
                for key in ["message", "delta"] {
                    if let Some(calls) = c
                        .pointer(&format!("/{key}/tool_calls"))
                        .and_then(Value::as_array)
                    {
                        names.extend(
                            calls.iter().filter_map(|t| {
                                t.pointer("/function/name").and_then(Value::as_str)
                            }),
                        );
                    }
                }
            }
        }
        if let Some(content) = v.get("content").and_then(Value::as_array) {
            names.extend(
                content
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .filter_map(|b| b["name"].as_str()),
            );
        }
        if v["type"] == "content_block_start" && v["content_block"]["type"] == "tool_use" {
            names.extend(v["content_block"]["name"].as_str());
        }
        for n in names {
            if self.tool_calls.len() < 128 {
                self.tool_calls.push(n.chars().take(128).collect());
            }
        }
    }

    fn failed(&mut self, status: u32, message: &str, started: Instant) -> ResponseEvent {
        self.status = status;
        self.error = Some(message.into());
        self.finish(started)
    }

    fn finish(&mut self, started: Instant) -> ResponseEvent {
        let mut masked = Vec::new();
        if self.output_found.restored > 0 {
            masked.push(MaskedField {
                field: "output".into(),
                method: "restored".into(),
                values_masked: self.output_found.restored as u64,
                ..MaskedField::default()
            });
        }
        for (field, found) in [
            ("prompt", self.prompt_found.as_ref()),
            ("output", Some(&self.output_found)),
        ] {
            if let Some(f) = found.filter(|f| f.hits > 0) {
                masked.push(MaskedField {
                    field: field.into(),
                    method: "detectors".into(),
                    values_masked: f.hits as u64,
                    detector_hits: f
                        .kinds()
                        .iter()
                        .map(|k| (k.as_str().to_string(), 1))
                        .collect(),
                    ..MaskedField::default()
                });
            }
        }
        ResponseEvent {
            request_seq: self.seq,
            duration_micros: started.elapsed().as_micros() as u64,
            error_code: if self.error.is_some() {
                self.status.to_string()
            } else {
                String::new()
            },
            error_message: self.error.clone().unwrap_or_default(),
            masked,
            detail: Some(response::Detail::Http(HttpResult {
                status: self.status,
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
                time_to_first_token_micros: self.first_token_micros.unwrap_or(0),
                finish_reason: self.finish_reason.clone(),
                tool_calls: self.tool_calls.clone(),
                output: (!self.output.is_empty())
                    .then(|| vigil_proxy_core::recorded::recorded(self.output.as_bytes())),
            })),
            ..ResponseEvent::default()
        }
    }
}

/// Relays a streamed answer: read as SSE, each event masked and written
/// anew; ends with what the masks still held, or an error event.
#[allow(clippy::too_many_arguments)]
fn stream(
    gw: Arc<LlmGateway>,
    recorder: Arc<SessionRecorder>,
    api: Api,
    endpoint: Endpoint,
    mut body: hyper::body::Incoming,
    masking: bool,
    vault: Option<Vault>,
    mut record: Record,
    started: Instant,
    in_flight: tokio::sync::OwnedRwLockReadGuard<()>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(async move {
        // The session closes after this stream has recorded its Response.
        let _in_flight = in_flight;
        let masker = gw.config.masker.clone();
        let mut relay =
            StreamRelay::new(api, endpoint, masking.then_some(&*masker), vault.as_ref());
        let mut reader = sse::Reader::new(sse::Limits::default());
        let mut inline = vigil_runtime::blocking::InlineBudget::default();
        let stall = gw.config.upstream.stall_timeout;
        let mut ended = false;
        loop {
            let frame = match tokio::time::timeout(stall, body.frame()).await {
                Err(_) => {
                    record.error = Some(format!("the provider's stream stalled for {stall:?}"));
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    record.error = Some(format!("the provider's stream broke: {e}"));
                    break;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let events = match reader.feed(&data) {
                Ok(events) => events,
                Err(e) => {
                    record.error = Some(format!("the provider's stream is malformed: {e}"));
                    break;
                }
            };
            for event in events {
                // One event may be up to 16 MiB: parsed and masked off the
                // workers when large.
                let size = event.data.len();
                let step = vigil_runtime::blocking::may_block_if_large(size, || {
                    relay.event(event, &mut record)
                });
                inline.spend(size).await;
                match step {
                    Ok(Step::Send(text)) => {
                        if record.first_token_micros.is_none() && relay.released_text {
                            record.first_token_micros = Some(started.elapsed().as_micros() as u64);
                        }
                        // An agent that stops reading does not hold the
                        // provider's connection for ever.
                        let sent =
                            tokio::time::timeout(stall, tx.send(Ok(Bytes::from(text)))).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            record.error = Some(
                                "the agent left (or stopped reading) before the answer ended"
                                    .into(),
                            );
                            ended = true;
                            break;
                        }
                    }
                    Ok(Step::End(text)) => {
                        let _ = tx.send(Ok(Bytes::from(text))).await;
                        ended = true;
                        break;
                    }
                    Err(why) => {
                        record.error = Some(why);
                        break;
                    }
                }
            }
            if ended || record.error.is_some() {
                break;
            }
        }
        if !ended {
            // Cut short: what the masks held is withheld (it may be the
            // front of a value the rest would have shown to be PHI, such
            // as `123-45-`), and the agent is told why the answer ended.
            relay.withhold();
            let message = record
                .error
                .get_or_insert_with(|| "the provider's stream ended before its last event".into())
                .clone();
            let _ = tx
                .send(Ok(Bytes::from(errors::event(
                    api,
                    ErrorKind::Upstream,
                    &format!("Vigil: {message}"),
                ))))
                .await;
        }
        record.output_found = relay.found();
        // Restored or not, the record keeps the answer as the model wrote
        // it, masked: the caller's restored values are not the record's to
        // keep (the sealed prompt holds them).
        record.output = match relay.written().filter(|_| vault.is_some()) {
            Some(written) => written.to_string(),
            None => std::mem::take(&mut relay.transcript),
        };
        let size = record.output.len();
        let finished = vigil_runtime::blocking::may_block_if_large(size, || record.finish(started));
        recorder.record_in_background(Kind::Response(finished));
    });
    let mut response = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

enum Step {
    Send(String),
    /// The stream's last event: the relay is done.
    End(String),
}

/// One stream's masking and re-writing.
struct StreamRelay<'m> {
    api: Api,
    chat: Option<ChatStream<'m>>,
    messages: Option<MessagesStream<'m>>,
    responses: Option<ResponsesStream<'m>>,
    masker: Option<&'m vigil_proxy_core::mask::Masker>,
    whole_found: Found,
    /// What the agent got: text and arguments, for the Response event
    /// (bounded: the event records 64 KiB of it).
    transcript: String,
    transcript_full: bool,
    released_text: bool,
}

const TRANSCRIPT_LIMIT: usize = 256 * 1024;

impl<'m> StreamRelay<'m> {
    fn new(
        api: Api,
        endpoint: Endpoint,
        masker: Option<&'m vigil_proxy_core::mask::Masker>,
        vault: Option<&'m Vault>,
    ) -> Self {
        let chat = matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions);
        StreamRelay {
            api,
            chat: masker.filter(|_| chat).map(|m| match vault {
                Some(v) => ChatStream::new(m).restoring(v),
                None => ChatStream::new(m),
            }),
            messages: masker
                .filter(|_| api == Api::Anthropic)
                .map(|m| match vault {
                    Some(v) => MessagesStream::new(m).restoring(v),
                    None => MessagesStream::new(m),
                }),
            responses: masker
                .filter(|_| endpoint == Endpoint::Responses)
                .map(|m| match vault {
                    Some(v) => ResponsesStream::new(m).restoring(v),
                    None => ResponsesStream::new(m),
                }),
            masker,
            whole_found: Found::default(),
            transcript: String::new(),
            transcript_full: false,
            released_text: false,
        }
    }

    fn note(&mut self, value: &Value) {
        let mut texts = Vec::new();
        for p in ["/delta/text", "/delta/partial_json", "/delta/thinking"] {
            if let Some(t) = value.pointer(p).and_then(Value::as_str) {
                texts.push(t.to_string());
            }
        }
        // A Responses event's text delta.
        let typed = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if typed.ends_with(".delta") {
            if let Some(t) = value.get("delta").and_then(Value::as_str) {
                texts.push(t.to_string());
            }
        }
        let choices: &[Value] = value
            .get("choices")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        for choice in choices {
            for p in [
                "/delta/content",
                "/text",
                "/delta/reasoning_content",
                "/delta/refusal",
            ] {
                if let Some(t) = choice.pointer(p).and_then(Value::as_str) {
                    texts.push(t.to_string());
                }
            }
            if let Some(t) = choice
                .pointer("/delta/function_call/arguments")
                .and_then(Value::as_str)
            {
                texts.push(t.to_string());
            }
        }
        for calls in choices
            .iter()
            .filter_map(|c| c.pointer("/delta/tool_calls").and_then(Value::as_array))
        {
            texts.extend(
                calls
                    .iter()
                    .filter_map(|c| c.pointer("/function/arguments").and_then(Value::as_str))
                    .map(str::to_string),
            );
        }
        for t in texts {
            if !t.is_empty() {
                self.released_text = true;
            }
            // Whole pieces up to the limit, then nothing more: the record
            // is the front of the answer, never a patchwork of it.
            if self.transcript_full || self.transcript.len() + t.len() > TRANSCRIPT_LIMIT {
                self.transcript_full = true;
            } else {
                self.transcript.push_str(&t);
            }
        }
    }

    fn event(&mut self, event: sse::Event, record: &mut Record) -> Result<Step, String> {
        let named = !event.event.is_empty();
        let name = if named {
            event.event.clone()
        } else {
            "message".to_string()
        };
        if self.api == Api::OpenAi && event.data.trim() == "[DONE]" {
            let mut out = self.finish();
            out.push_str("data: [DONE]\n\n");
            return Ok(Step::End(out));
        }
        let mut value: Value = serde_json::from_str(&event.data)
            .map_err(|_| "the provider sent an event that is not JSON".to_string())?;
        record.read_usage(&value);
        let mut out = String::new();
        if let Some(responses) = self.responses.as_mut() {
            let typed = value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // The closing event: whatever a channel still holds goes out
            // before it (a `.done` that named its part otherwise).
            let mut produced = if is_last_responses_event(&typed) {
                responses.finish()
            } else {
                Vec::new()
            };
            produced.extend(responses.event(value));
            for v in produced {
                self.note(&v);
                let kind = v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                out.push_str(&write(Some(&kind), &v)?);
            }
            return Ok(if is_last_responses_event(&typed) {
                Step::End(out)
            } else {
                Step::Send(out)
            });
        }
        match (self.api, self.chat.as_mut(), self.messages.as_mut()) {
            (Api::OpenAi, Some(chat), _) => {
                chat.chunk(&mut value);
                self.note(&value);
                out.push_str(&write(None, &value)?);
            }
            (Api::Anthropic, _, Some(messages)) => {
                let is_stop = value.get("type").and_then(Value::as_str) == Some("message_stop");
                let produced = messages.event(&name, value);
                for (n, v) in produced {
                    self.note(&v);
                    out.push_str(&write(Some(&n), &v)?);
                }
                if is_stop {
                    return Ok(Step::End(out));
                }
            }
            _ => {
                // Unmasked (allow), or an API without a channel masker:
                // the whole walk (a no-op without a masker).
                if let Some(m) = self.masker {
                    mask_whole(m, &mut value, &mut self.whole_found);
                }
                self.note(&value);
                let named = (self.api == Api::Anthropic || named).then_some(name.as_str());
                out.push_str(&write(named, &value)?);
                if name == "message_stop" || is_last_responses_event(&name) {
                    return Ok(Step::End(out));
                }
            }
        }
        Ok(Step::Send(out))
    }

    /// Ends every channel without releasing what it held.
    fn withhold(&mut self) {
        if let Some(chat) = self.chat.as_mut() {
            let _ = chat.finish();
        }
        if let Some(messages) = self.messages.as_mut() {
            let _ = messages.finish();
        }
        if let Some(responses) = self.responses.as_mut() {
            let _ = responses.finish();
        }
    }

    /// What the masks still hold, as events.
    fn finish(&mut self) -> String {
        let mut out = String::new();
        if let Some(chat) = self.chat.as_mut() {
            if let Some(closing) = chat.finish() {
                out.push_str(&format!("data: {closing}\n\n"));
                let v = closing;
                self.note(&v);
            }
        }
        if let Some(messages) = self.messages.as_mut() {
            for (n, v) in messages.finish() {
                out.push_str(&format!("event: {n}\ndata: {v}\n\n"));
                self.note(&v);
            }
        }
        if let Some(responses) = self.responses.as_mut() {
            for v in responses.finish() {
                let kind = v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                out.push_str(&format!("event: {kind}\ndata: {v}\n\n"));
                self.note(&v);
            }
        }
        out
    }

    /// The active stream's text as masked, before restoring.
    fn written(&self) -> Option<&str> {
        self.chat
            .as_ref()
            .map(|c| c.written())
            .or_else(|| self.messages.as_ref().map(|m| m.written()))
            .or_else(|| self.responses.as_ref().map(|r| r.written()))
    }

    fn found(&self) -> Found {
        let mut f = self.whole_found.clone();
        for other in [
            self.chat.as_ref().map(|c| c.found()),
            self.messages.as_ref().map(|m| m.found()),
            self.responses.as_ref().map(|r| r.found()),
        ]
        .into_iter()
        .flatten()
        {
            f.merge(other);
        }
        f
    }
}

/// The events that end a Responses stream.
fn is_last_responses_event(kind: &str) -> bool {
    matches!(
        kind,
        "response.completed" | "response.failed" | "response.incomplete"
    )
}

/// One SSE event, written as a client reads it.
fn write(name: Option<&str>, value: &Value) -> Result<String, String> {
    let event = sse::Event {
        event: name.unwrap_or_default().to_string(),
        data: value.to_string(),
        ..sse::Event::default()
    };
    sse::write(&event).map_err(|e| format!("an event cannot be written on: {e}"))
}
