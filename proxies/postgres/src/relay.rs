//! The relay loop of one session: client and upstream bytes flow through
//! unchanged, and every statement is recorded on the way.
//!
//! Two tasks, one per direction, so that neither side can stall the other
//! (a client pipelining writes while the server streams rows). They share the
//! [`Tracker`] that pairs statements with results. The relay parses only
//! message framing and the handful of message bodies named below; it never
//! interprets SQL.
//!
//! Fail closed: a Request event is recorded durably *before* its statement is
//! forwarded. If it cannot be, the session ends with a FATAL error and the
//! statement never reaches the database.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use vigil_proto::events::{event::Kind, Parameter, Request, Response};
use vigil_proxy_core::{EventSink, SessionContext};

use crate::codec::{self, Frame};
use crate::tls::ClientStream;
use crate::tracker::{Completed, Tracker};

/// Runs the session until either side ends it; returns why it ended.
pub async fn run(
    client: ClientStream,
    client_buf: BytesMut,
    upstream: TcpStream,
    session: Arc<SessionContext>,
    sink: Arc<dyn EventSink>,
) -> String {
    let (client_rd, client_wr) = tokio::io::split(client);
    let (upstream_rd, upstream_wr) = upstream.into_split();
    let shared = Arc::new(Shared {
        tracker: Mutex::new(Tracker::new()),
        session,
        sink,
        audit_failed: Notify::new(),
    });
    // The client writer is shared: the frontend task uses it to report a
    // refusal, the backend task to relay results.
    let client_wr = Arc::new(tokio::sync::Mutex::new(client_wr));

    let frontend = frontend(
        client_rd,
        client_buf,
        upstream_wr,
        client_wr.clone(),
        shared.clone(),
    );
    let backend = backend(upstream_rd, client_wr.clone(), shared.clone());
    let reason = tokio::select! {
        r = frontend => r,
        r = backend => r,
        _ = shared.audit_failed.notified() => {
            send_fatal(&client_wr, "57P03", "Vigil could not record a result in the audit ledger; the session is closed").await;
            "error: audit ledger unavailable".to_string()
        }
    };
    let _ = client_wr.lock().await.shutdown().await;

    let unfinished = shared
        .tracker
        .lock()
        .expect("tracker lock")
        .drain_unfinished();
    for done in unfinished {
        shared.record_response(done);
    }
    reason
}

type ClientWriter = Arc<tokio::sync::Mutex<WriteHalf<ClientStream>>>;

/// Tells the client why the session ends (best effort: it may be gone).
async fn send_fatal(client_wr: &ClientWriter, code: &str, message: &str) {
    let msg = codec::error_response("FATAL", code, message);
    let _ = client_wr.lock().await.write_all(&msg).await;
}

struct Shared {
    tracker: Mutex<Tracker>,
    session: Arc<SessionContext>,
    sink: Arc<dyn EventSink>,
    audit_failed: Notify,
}

impl Shared {
    /// Records a Response without holding up the results: if recording fails,
    /// the session is ended (fail closed) before the client can send much more.
    fn record_response(self: &Arc<Self>, done: Completed) {
        let (error_code, error_message) =
            done.error.map(|e| (e.code, e.message)).unwrap_or_default();
        let event = self.session.event(Kind::Response(Response {
            statement_seq: done.statement_seq,
            command_tags: done.tags,
            rows: done.rows,
            error_code,
            error_message,
            duration_micros: done.duration.as_micros() as u64,
            not_executed: done.not_executed,
        }));
        // `record` hands the event to the bus before it returns, so events keep
        // their order; only the wait for durability happens in the background.
        let pending = self.sink.record(event);
        let shared = self.clone();
        tokio::spawn(async move {
            if let Err(e) = pending.await {
                tracing::error!(session = %shared.session.session_id(), error = %e, "response event not recorded");
                shared.audit_failed.notify_one();
            }
        });
    }
}

/// Client -> upstream.
async fn frontend(
    mut client: ReadHalf<ClientStream>,
    mut buf: BytesMut,
    mut upstream: OwnedWriteHalf,
    client_wr: ClientWriter,
    shared: Arc<Shared>,
) -> String {
    let mut out = BytesMut::with_capacity(8192);
    loop {
        loop {
            let frame = match codec::decode_frame(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    send_fatal(
                        &client_wr,
                        "08P01",
                        &format!("invalid frontend message: {e}"),
                    )
                    .await;
                    return format!("error: invalid frontend message: {e}");
                }
            };
            match on_client_frame(&frame, &shared).await {
                Ok(Forward::Yes) => out.extend_from_slice(&frame.raw),
                Ok(Forward::Terminate) => {
                    out.extend_from_slice(&frame.raw);
                    let _ = upstream.write_all(&out).await;
                    return "client_terminated".into();
                }
                Err(refusal) => {
                    send_fatal(&client_wr, refusal.code, &refusal.message).await;
                    return format!("error: {}", refusal.message);
                }
            }
        }
        if !out.is_empty() {
            if let Err(e) = upstream.write_all(&out).await {
                return format!("upstream_closed: {e}");
            }
            out.clear();
        }
        match client.read_buf(&mut buf).await {
            Ok(0) => return "client_disconnected".into(),
            Ok(_) => {}
            Err(e) => return format!("client_disconnected: {e}"),
        }
    }
}

enum Forward {
    Yes,
    Terminate,
}

/// Why the proxy ended a session instead of forwarding a message.
struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    fn protocol(e: codec::CodecError) -> Self {
        Refusal {
            code: "08P01",
            message: format!("invalid frontend message: {e}"),
        }
    }
}

/// Bound values as the Request event records them: exactly as sent.
fn parameters(params: Vec<codec::BindParam>) -> Vec<Parameter> {
    params
        .into_iter()
        .map(|p| Parameter {
            is_null: p.value.is_none(),
            binary: p.binary,
            value: p.value.map(|v| v.to_vec()).unwrap_or_default(),
        })
        .collect()
}

async fn on_client_frame(frame: &Frame, shared: &Arc<Shared>) -> Result<Forward, Refusal> {
    let request = match frame.tag {
        b'Q' => {
            let sql = codec::parse_query(frame.body()).map_err(Refusal::protocol)?;
            let seq = shared.session.next_statement_seq();
            shared.tracker.lock().expect("tracker lock").push_query(seq);
            Some(Request {
                statement_seq: seq,
                statement: sql,
                protocol_path: "simple".into(),
                ..Default::default()
            })
        }
        b'P' => {
            let parse = codec::parse_parse(frame.body()).map_err(Refusal::protocol)?;
            shared
                .tracker
                .lock()
                .expect("tracker lock")
                .on_parse(parse.statement, parse.query);
            None
        }
        b'B' => {
            let bind = codec::parse_bind(frame.body()).map_err(Refusal::protocol)?;
            shared.tracker.lock().expect("tracker lock").on_bind(
                bind.portal,
                bind.statement,
                bind.params,
            );
            None
        }
        b'E' => {
            let (portal, _max_rows) =
                codec::parse_execute(frame.body()).map_err(Refusal::protocol)?;
            let seq = shared.session.next_statement_seq();
            let mut tracker = shared.tracker.lock().expect("tracker lock");
            let info = tracker.portal(&portal).cloned();
            tracker.push_execute(seq);
            drop(tracker);
            let (statement, statement_name, parameters) = match info {
                Some(info) => (
                    info.query.to_string(),
                    info.statement_name,
                    parameters(info.params),
                ),
                None => (String::new(), String::new(), Vec::new()),
            };
            Some(Request {
                statement_seq: seq,
                statement,
                protocol_path: "extended".into(),
                statement_name,
                portal_name: portal,
                parameters,
            })
        }
        b'C' => {
            let (is_portal, name) = codec::parse_close(frame.body()).map_err(Refusal::protocol)?;
            shared
                .tracker
                .lock()
                .expect("tracker lock")
                .on_close(is_portal, &name);
            None
        }
        b'S' => {
            shared.tracker.lock().expect("tracker lock").push_sync();
            None
        }
        b'X' => return Ok(Forward::Terminate),
        b'F' => {
            // libpq's fast path (large objects and the like): a server function
            // by OID. No statement text exists, so the Request names the OID
            // and carries the arguments; the call ends at ReadyForQuery like a
            // simple Query.
            let call = codec::parse_function_call(frame.body()).map_err(Refusal::protocol)?;
            let seq = shared.session.next_statement_seq();
            shared.tracker.lock().expect("tracker lock").push_query(seq);
            Some(Request {
                statement_seq: seq,
                statement: format!("function call: oid {}", call.function_oid),
                protocol_path: "function_call".into(),
                parameters: parameters(call.args),
                ..Default::default()
            })
        }
        // Describe, Flush, COPY data and the rest pass through as they are.
        _ => None,
    };
    if let Some(request) = request {
        let event = shared.session.event(Kind::Request(request));
        if let Err(e) = shared.sink.record(event).await {
            tracing::error!(session = %shared.session.session_id(), error = %e, "request event not recorded; statement refused");
            return Err(Refusal {
                code: "57P03",
                message: format!("Vigil refused the statement because it cannot be audited: {e}"),
            });
        }
    }
    Ok(Forward::Yes)
}

/// Upstream -> client.
async fn backend(
    mut upstream: OwnedReadHalf,
    client_wr: ClientWriter,
    shared: Arc<Shared>,
) -> String {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        match upstream.read_buf(&mut buf).await {
            Ok(0) => return "upstream_closed".into(),
            Ok(_) => {}
            Err(e) => return format!("upstream_closed: {e}"),
        }
        let mut completed = Vec::new();
        loop {
            let frame = match codec::decode_frame(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    send_fatal(
                        &client_wr,
                        "08P01",
                        "the upstream server sent an invalid message",
                    )
                    .await;
                    return format!("error: invalid upstream message: {e}");
                }
            };
            {
                let mut tracker = shared.tracker.lock().expect("tracker lock");
                match frame.tag {
                    b'D' => tracker.on_data_row(),
                    b'C' => {
                        if let Ok(tag) = codec::parse_command_complete(frame.body()) {
                            completed.extend(tracker.on_command_complete(tag));
                        }
                    }
                    b'I' | b's' => completed.extend(tracker.on_execute_end()),
                    b'E' => {
                        if let Ok(fields) = codec::parse_error_fields(frame.body()) {
                            completed.extend(tracker.on_error(fields));
                        }
                    }
                    b'Z' => completed.extend(tracker.on_ready_for_query()),
                    _ => {}
                }
            }
            out.extend_from_slice(&frame.raw);
        }
        for done in completed {
            shared.record_response(done);
        }
        if !out.is_empty() {
            if let Err(e) = client_wr.lock().await.write_all(&out).await {
                return format!("client_disconnected: {e}");
            }
            out.clear();
        }
    }
}
