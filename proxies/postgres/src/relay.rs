//! The relay loop of one session: client and upstream bytes flow through,
//! every statement is judged by policy and recorded on the way, and results
//! are masked on the way back.
//!
//! Two tasks, one per direction, so that neither side can stall the other
//! (a client pipelining writes while the server streams rows). They share the
//! [`Tracker`] that pairs statements with results. Each frame is decoded
//! once into a typed message (`crate::messages`); SQL is judged by the
//! session's [`Gate`] (classifier and policy, pure code).
//!
//! The frontend is a plan and a shell: `Frontend::plan` decides what one
//! client message does with no I/O (what goes upstream in its place, the
//! registry's pending change, whether to record, hold or end), and the
//! shell around it does the I/O (token expiry, the catalog lookup of
//! shadowed names, durable records, holds). `relay/tests.rs` tests the
//! plan message by message.
//!
//! Fail closed: a Request event and its Decision are recorded durably
//! *before* the statement is forwarded. If they cannot be, the session ends
//! with a FATAL error and the statement never reaches the database. The one
//! exception is a read the classifier proves changes nothing (see
//! `vigil_sql::classify::free_read`): it goes upstream while its record
//! becomes durable, and the backend holds every byte the server sends
//! after it until the record is durable (durable before disclosure); if it
//! cannot be, the client gets 57P03 instead of the result and the session
//! ends. A
//! statement the policy refuses never reaches it either: a probe that fails
//! without touching data goes in its place, and its error is rewritten into
//! the refusal (see `refuse`), so that transaction state stays exactly as
//! PostgreSQL would have it.

mod backend;
mod hold;
#[cfg(test)]
mod tests;

use backend::{Backend, Masking};
use hold::Held;

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use vigil_proto::events::{
    event::Kind, response, Parameter, Request, Response, SqlProtocolPath, SqlResult, SqlStatement,
    Stage,
};
use vigil_proxy_core::mask::Masker;
use vigil_proxy_core::{Approvals, SessionContext};
use vigil_runtime::deadline::TokenDeadline;
use vigil_runtime::recorder::{EndReason, SessionRecorder};
use vigil_sql::classify::Classification;
use vigil_sql::policy::{stricter, Outcome, ReviewSettings, Verdict};

use crate::catalog::Catalog;
use crate::codec::{self, Frame};
use crate::gate::{self, Gate};
use crate::messages::ClientMessage;
use crate::refuse::{Refusal, Refusals};
use crate::results;
use crate::scrub;
use crate::tracker::{Completed, RunAttrs, Tracker};
use crate::upstream_tls::UpstreamStream;
use vigil_runtime::blocking::{may_block_if_large, InlineBudget};
use vigil_runtime::tls::ClientStream;

/// Everything policy needs for one session.
pub struct SessionPolicy {
    pub gate: Gate,
    pub masker: Arc<Masker>,
    pub catalog: Arc<Catalog>,
    /// The upstream database (catalog lookups are per database).
    pub database: String,
    /// Where and with which key the proxy can cancel the upstream's work
    /// (a result stopped at its row limit).
    pub cancel: Option<UpstreamCancel>,
    /// Who is asking: from the moment its access token expires, nothing
    /// more of the session runs.
    pub identity: vigil_proxy_core::VerifiedIdentity,
    /// Where statements held for review wait; `None`: they are refused.
    pub approvals: Option<Arc<dyn Approvals>>,
    /// Woken by a CancelRequest with this session's key (see `cancel`).
    pub hold_cancel: Option<Arc<Notify>>,
}

#[derive(Clone, Debug)]
pub struct UpstreamCancel {
    pub addr: String,
    pub process_id: i32,
    pub secret_key: i32,
}

/// Runs the session until either side ends it; returns why it ended.
pub async fn run(
    client: ClientStream,
    client_buf: BytesMut,
    upstream: UpstreamStream,
    recorder: Arc<SessionRecorder>,
    policy: SessionPolicy,
    drain: &vigil_runtime::drain::Drain,
) -> EndReason {
    let (client_rd, client_wr) = tokio::io::split(client);
    let (upstream_rd, upstream_wr) = tokio::io::split(upstream);
    let SessionPolicy {
        gate,
        masker,
        catalog,
        database,
        cancel,
        identity,
        approvals,
        hold_cancel,
    } = policy;
    let gate_policy = gate.policy_arc();
    let shared = Arc::new(Shared::new(recorder, &gate));
    // The client writer is shared: the frontend task uses it to report a
    // refusal, the backend task to relay results.
    let client_wr = Arc::new(tokio::sync::Mutex::new(client_wr));
    // When the identity expires the session ends, idle or not: an open
    // transaction, a COPY or a long query of an expired identity does not
    // go on (dropping the upstream connection rolls it back).
    let deadline = TokenDeadline::of(&identity);

    let frontend = frontend(
        client_rd,
        client_buf,
        upstream_wr,
        client_wr.clone(),
        Frontend {
            shared: shared.clone(),
            gate,
            catalog: catalog.clone(),
            database: database.clone(),
            identity,
            deadline,
            approvals,
            hold_cancel,
        },
    );
    let backend = backend::backend(
        upstream_rd,
        client_wr.clone(),
        Backend::new(
            shared.clone(),
            Masking {
                policy: gate_policy,
                masker,
                catalog,
                database,
                cancel,
            },
        ),
    );
    let reason = tokio::select! {
        r = frontend => r,
        r = backend => r,
        _ = deadline.reached() => {
            let message = deadline.message();
            send_fatal(&client_wr, "28000", &message).await;
            EndReason::Error(message)
        }
        _ = shared.recorder.audit_failed() => {
            send_fatal(&client_wr, "57P03", "Vigil could not record a result in the audit ledger; the session is closed").await;
            EndReason::AuditUnavailable
        }
        _ = drain.deadline() => {
            // PostgreSQL's own code for an administrator's shutdown.
            send_fatal(&client_wr, "57P01", "Vigil is shutting down; the session is closed").await;
            EndReason::Shutdown
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

/// After a fatal error the client may still be sending (the rest of a
/// message past the limit). A client library still writing when the
/// connection closes reports a lost connection and never reads the error
/// (libpq does), and a socket closed with bytes unread answers with a
/// reset that can destroy the error in flight. So the proxy reads and
/// discards what the client still sends until it pauses (500 ms) or ends,
/// for at most 2 s and 64 MiB, and only then closes.
async fn linger_after_fatal(client: &mut ReadHalf<ClientStream>) {
    let mut sink = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let mut total = 0usize;
        while total < 64 << 20 {
            let pause = std::time::Duration::from_millis(500);
            match tokio::time::timeout(pause, client.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => total += n,
                _ => break,
            }
        }
    })
    .await;
}

/// A message of type `tag` around `body`.
fn reframe(tag: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.extend_from_slice(&[tag]);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out.freeze()
}

struct Shared {
    tracker: Mutex<Tracker>,
    refusals: Mutex<Refusals>,
    policy_name: String,
    masks_anything: bool,
    /// The session's context (also `recorder.session()`).
    session: Arc<SessionContext>,
    recorder: Arc<SessionRecorder>,
    /// A statement that changes the schema (DDL) has gone upstream and the
    /// session has not yet been idle outside a transaction since: the
    /// catalog connection may not see what this session sees (its own
    /// uncommitted DDL) and cached names may be stale, so results get no
    /// lineage until then, and the name cache is dropped after.
    schema_changing: std::sync::atomic::AtomicBool,
    /// This session has sent a statement that changes the schema: from
    /// then on none of its reads runs before its record is durable. A
    /// prepared DDL statement can run again by Execute long after its
    /// Parse, and the catalog's cached answer can lag behind it (a review
    /// showed both); sessions that change the schema are rare enough to
    /// pay for the simple rule.
    changed_schema: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn new(recorder: Arc<SessionRecorder>, gate: &Gate) -> Self {
        Shared {
            tracker: Mutex::new(Tracker::new()),
            refusals: Mutex::new(Refusals::new(rand::random())),
            policy_name: gate.policy().name().to_string(),
            masks_anything: gate.policy().masks_anything(),
            session: recorder.session().clone(),
            recorder,
            schema_changing: Default::default(),
            changed_schema: Default::default(),
        }
    }

    /// An ErrorResponse or NoticeResponse as the client may see it: in a
    /// session that masks, the server's words are withheld and the SQLSTATE
    /// and catalog names kept (see [`crate::scrub`]). `None`: forward it as
    /// it is.
    fn scrub_message(&self, frame: &Frame) -> Result<Option<Bytes>, codec::CodecError> {
        if !self.masks_anything {
            return Ok(None);
        }
        let body = scrub::scrub_body(&frame.body())?;
        Ok(body.map(|body| reframe(frame.tag, &body)))
    }

    /// A NotificationResponse as the client may see it: in a session that
    /// masks, without its payload (a NOTIFY from any session or trigger
    /// may carry a row, `pg_notify('c', row_to_json(NEW)::text)`), with
    /// its channel and sender. `None`: forward it as it is.
    fn scrub_notification(&self, frame: &Frame) -> Result<Option<Bytes>, codec::CodecError> {
        if !self.masks_anything {
            return Ok(None);
        }
        let body = scrub::scrub_notification(&frame.body())?;
        Ok(body.map(|body| reframe(frame.tag, &body)))
    }
    /// Records a Response without holding up the results: if recording fails,
    /// the session is ended (fail closed) before the client can send much more.
    fn record_response(self: &Arc<Self>, done: Completed) {
        let (error_code, error_message) =
            done.error.map(|e| (e.code, e.message)).unwrap_or_default();
        self.record_in_background(Kind::Response(Response {
            request_seq: done.statement_seq,
            error_code,
            error_message,
            duration_micros: done.duration.as_micros() as u64,
            not_executed: done.not_executed,
            masked: done.masked_columns,
            detail: Some(response::Detail::Sql(SqlResult {
                command_tags: done.tags,
                rows: done.rows,
                stopped_after_rows: done.stopped_after_rows,
            })),
        }));
    }

    fn record_in_background(&self, kind: Kind) {
        self.recorder.record_in_background(kind);
    }

    /// A Decision event: one taken after its request was recorded.
    fn decision(&self, statement_seq: u64, verdict: &Verdict, stage: Stage) -> Kind {
        Kind::Decision(verdict.to_decision(statement_seq, &self.policy_name, stage))
    }

    /// A request and policy's decision on it as asked: one event.
    fn decided(&self, request: Request, verdict: &Verdict) -> Kind {
        let decision = verdict.to_decision(request.request_seq, &self.policy_name, Stage::Request);
        Kind::Request(request.decided(decision))
    }

    /// What the backend must do with a run's results under this verdict.
    fn run_attrs(&self, verdict: &Arc<Verdict>) -> RunAttrs {
        RunAttrs {
            // Only `allow` goes unmasked. A refused verdict masks too: an
            // Execute of a name whose Parse was refused may still reach an
            // older statement of that name upstream (the probe's Parse
            // failed as a duplicate), and its results must not go out
            // unmasked.
            mask: verdict.outcome != Outcome::Allow && self.masks_anything,
            max_rows: verdict.max_rows,
            own_describe: false,
            verdict: Some(verdict.clone()),
            portal: None,
        }
    }
}

/// The frontend's own state: the policy gate and what it needs to judge.
/// What each prepared statement and portal holds, and under which verdict,
/// lives in the tracker's registry (confirmed by the server's answers).
struct Frontend {
    shared: Arc<Shared>,
    gate: Gate,
    /// Where the gate learns which names code outside pg_catalog defines.
    catalog: Arc<Catalog>,
    database: String,
    identity: vigil_proxy_core::VerifiedIdentity,
    deadline: TokenDeadline,
    approvals: Option<Arc<dyn Approvals>>,
    hold_cancel: Option<Arc<Notify>>,
}

/// Client -> upstream.
async fn frontend(
    mut client: ReadHalf<ClientStream>,
    mut buf: BytesMut,
    mut upstream: WriteHalf<UpstreamStream>,
    client_wr: ClientWriter,
    mut state: Frontend,
) -> EndReason {
    let mut out = BytesMut::with_capacity(8192);
    let mut inline = InlineBudget::default();
    loop {
        loop {
            let frame = match codec::decode_client_frame(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    send_fatal(
                        &client_wr,
                        "08P01",
                        &format!("invalid frontend message: {e}"),
                    )
                    .await;
                    linger_after_fatal(&mut client).await;
                    return EndReason::Error(format!("invalid frontend message: {e}"));
                }
            };
            let mut io = Io {
                client: &mut client,
                buf: &mut buf,
                upstream: &mut upstream,
            };
            match state.on_client_frame(&frame, &mut out, &mut io).await {
                Ok(Forward::Done) => {}
                Ok(Forward::Disconnected) => return EndReason::ClientLeftWhileHeld,
                Ok(Forward::Terminate) => {
                    out.extend_from_slice(&frame.raw);
                    let _ = upstream.write_all(&out).await;
                    return EndReason::ClientTerminated;
                }
                Err(refusal) => {
                    send_fatal(&client_wr, refusal.code, &refusal.message).await;
                    return EndReason::Error(refusal.message);
                }
            }
            inline.spend(frame.raw.len()).await;
        }
        if !out.is_empty() {
            if let Err(e) = upstream.write_all(&out).await {
                return EndReason::UpstreamClosed(Some(e.to_string()));
            }
            out.clear();
        }
        match client.read_buf(&mut buf).await {
            Ok(0) => return EndReason::ClientDisconnected(None),
            Ok(_) => {}
            Err(e) => return EndReason::ClientDisconnected(Some(e.to_string())),
        }
    }
}

/// What the shell must do for one client message, as [`Frontend::plan`]
/// decided it.
enum Step {
    /// Record these events durably; then what the plan put in `out` goes
    /// upstream.
    Record(Vec<Kind>),
    /// A read that changes nothing: hand these events over and let what
    /// the plan put in `out` go upstream at once; the backend withholds
    /// its answer until they are durable.
    RecordOverlapped(Vec<Kind>),
    /// Hold the message for review.
    Hold(Box<HoldPlan>),
    /// The client ends the session.
    Terminate,
}

impl Step {
    fn hold(
        held: Held,
        request: Request,
        verdict: Arc<Verdict>,
        review: (Arc<dyn Approvals>, ReviewSettings),
    ) -> Self {
        Step::Hold(Box::new(HoldPlan {
            held,
            request,
            verdict,
            review,
        }))
    }
}

/// A message policy holds for review, and what the hold needs.
struct HoldPlan {
    held: Held,
    /// Its Request event.
    request: Request,
    verdict: Arc<Verdict>,
    /// The approval service and the rule's review settings.
    review: (Arc<dyn Approvals>, ReviewSettings),
}

enum Forward {
    /// The frame (or what the proxy sends in its place) is in `out`.
    Done,
    Terminate,
    /// The client left while a statement was held.
    Disconnected,
}

/// The frontend's sockets, lent to a held statement: it must push what came
/// before it upstream, and notice the client leaving while it waits.
struct Io<'a> {
    client: &'a mut ReadHalf<ClientStream>,
    buf: &'a mut BytesMut,
    upstream: &'a mut WriteHalf<UpstreamStream>,
}

/// Why the proxy ended a session instead of forwarding a message.
struct Fatal {
    code: &'static str,
    message: String,
}

impl Fatal {
    fn protocol(e: codec::CodecError) -> Self {
        Fatal {
            code: "08P01",
            message: format!("invalid frontend message: {e}"),
        }
    }
}

/// Judges a statement's text. Classifying a statement of megabytes takes
/// milliseconds: that runs without holding up the worker's other sessions.
fn judge_text(gate: &mut Gate, sql: &str) -> Verdict {
    may_block_if_large(sql.len(), || gate.judge(sql))
}

/// A Request of the SQL family with no prepared statement or parameters.
fn sql_request(seq: u64, text: String, path: SqlProtocolPath) -> Request {
    Request::new_sql(
        seq,
        SqlStatement {
            text,
            path: path as i32,
            ..Default::default()
        },
    )
}

/// Bound values as the Request event records them
/// ([`vigil_proxy_core::recorded`]: whole, or past 64 KiB their start with
/// the full length and SHA-256).
fn parameters(params: Vec<codec::BindParam>) -> Vec<Parameter> {
    params
        .into_iter()
        .map(|p| {
            let mut recorded = p
                .value
                .as_deref()
                .map(vigil_proxy_core::recorded::recorded)
                .unwrap_or_default();
            recorded.is_null = p.value.is_none();
            recorded.binary = p.binary;
            recorded
        })
        .collect()
}

impl Frontend {
    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.shared.tracker.lock().expect("tracker lock")
    }

    /// Which names code outside pg_catalog defines, before a statement is
    /// judged (cached by the catalog; an unknown answer fails closed).
    async fn refresh_shadows(&mut self) {
        let shadows = self.catalog.shadows(&self.database).await;
        self.gate.set_shadows(shadows);
    }

    /// The I/O around [`Frontend::plan`]: refuses work after the token's
    /// expiry, looks up which names user code shadows before a statement
    /// is judged, then records, holds or ends as the plan says.
    async fn on_client_frame(
        &mut self,
        frame: &Frame,
        out: &mut BytesMut,
        io: &mut Io<'_>,
    ) -> Result<Forward, Fatal> {
        let message = ClientMessage::decode(frame).map_err(Fatal::protocol)?;
        if message.starts_work()
            && self
                .deadline
                .expired_at(std::time::SystemTime::now())
                .is_some()
        {
            return Err(self.token_expired(&message).await);
        }
        if matches!(
            message,
            ClientMessage::Query { .. } | ClientMessage::Parse(_) | ClientMessage::Execute { .. }
        ) {
            self.refresh_shadows().await;
        }
        // A read's record failed: nothing more goes upstream (the backend
        // ends the session with 57P03).
        if self.shared.recorder.overlapped_failed() {
            return Err(Fatal {
                code: "57P03",
                message: "Vigil withheld the result because its statement could not be recorded in the audit ledger; the session is closed".into(),
            });
        }
        match self.plan(frame, message, out) {
            Step::Record(events) => {
                // Parse, Bind, Sync and the like record nothing: no wait.
                if !events.is_empty() {
                    self.record_durably(events).await?;
                }
                Ok(Forward::Done)
            }
            Step::RecordOverlapped(events) => {
                self.shared.recorder.record_overlapped(events);
                Ok(Forward::Done)
            }
            Step::Hold(plan) => {
                let HoldPlan {
                    held,
                    request,
                    verdict,
                    review,
                } = *plan;
                self.hold(frame, held, request, &verdict, review, out, io)
                    .await
            }
            Step::Terminate => Ok(Forward::Terminate),
        }
    }

    /// Decides what one client message does, without I/O: what goes
    /// upstream in its place is appended to `out`, the registry of
    /// statements and portals takes its pending change, and the returned
    /// step says what the shell must record or hold first.
    fn plan(&mut self, frame: &Frame, message: ClientMessage, out: &mut BytesMut) -> Step {
        let shared = self.shared.clone();
        let events: Vec<Kind> = match message {
            ClientMessage::Query { sql } => {
                let verdict = Arc::new(judge_text(&mut self.gate, &sql));
                if verdict.outcome.forwards() {
                    self.sql_touches_protocol_names(&verdict, &sql);
                    self.note_schema_change();
                }
                let seq = shared.session.next_statement_seq();
                if let Some(review) = self.reviewer(&verdict) {
                    return Step::hold(
                        Held::Query,
                        sql_request(seq, sql, SqlProtocolPath::Simple),
                        verdict,
                        review,
                    );
                }
                self.forward_or_probe(frame, &verdict, seq, out);
                let events =
                    vec![shared.decided(sql_request(seq, sql, SqlProtocolPath::Simple), &verdict)];
                if self.may_overlap(&verdict) {
                    return Step::RecordOverlapped(events);
                }
                events
            }
            ClientMessage::Parse(parse) => {
                let mut verdict = Arc::new(judge_text(&mut self.gate, &parse.query));
                // A named statement cannot be replaced while it exists: the
                // server refuses the second Parse (42P05) and keeps the
                // first. The registry would drop the change at that error;
                // judging by the stricter of both also covers what is
                // pipelined behind it before the error comes back.
                if !parse.statement.is_empty() {
                    if let Some(old) = self.tracker().statement(&parse.statement) {
                        verdict = Arc::new(stricter(&old.verdict, &verdict));
                    }
                }
                // Held before the Parse reaches the server: SQL nobody has
                // approved never exists upstream, not even as a prepared
                // statement (the proxy's idea of what a name holds can lag
                // behind the server's after an error skips messages).
                if let Some(review) = self.reviewer(&verdict) {
                    let seq = shared.session.next_statement_seq();
                    let request = Request::new_sql(
                        seq,
                        SqlStatement {
                            text: parse.query.clone(),
                            path: SqlProtocolPath::ExtendedParse as i32,
                            statement_name: parse.statement.clone(),
                            ..Default::default()
                        },
                    );
                    let held = Held::Parse {
                        statement: parse.statement,
                        query: parse.query,
                    };
                    return Step::hold(held, request, verdict, review);
                }
                if verdict.outcome.forwards() {
                    // SQL run through the extended protocol (PREPARE,
                    // DEALLOCATE, DECLARE, DISCARD) touches names as well.
                    self.sql_touches_protocol_names(&verdict, &parse.query);
                    self.note_schema_change();
                    self.tracker()
                        .push_parse(parse.statement, parse.query, verdict);
                    out.extend_from_slice(&frame.raw);
                    Vec::new()
                } else {
                    // Refused at Parse: recorded now, with a statement number
                    // of its own; the probe takes the Parse's place. It
                    // fails, so the name keeps what the server held.
                    let seq = shared.session.next_statement_seq();
                    let probe = self.probe(&verdict);
                    self.tracker().push_refused_parse(seq);
                    out.extend_from_slice(&results::parse_message(&parse.statement, &probe));
                    vec![shared.decided(
                        Request::new_sql(
                            seq,
                            SqlStatement {
                                text: parse.query,
                                path: SqlProtocolPath::ExtendedParse as i32,
                                statement_name: parse.statement,
                                ..Default::default()
                            },
                        ),
                        &verdict,
                    )]
                }
            }
            ClientMessage::Bind(bind) => {
                // The values as recorded, made once here rather than at
                // each Execute: a Bind may carry 64 MiB, and a client may
                // pipeline thousands of Executes of its portal.
                let params = may_block_if_large(frame.raw.len(), || parameters(bind.params));
                // The portal runs what the statement is *now*: later Parses
                // of the statement's name do not change it.
                self.tracker()
                    .push_bind(bind.portal, bind.statement, params.into());
                out.extend_from_slice(&frame.raw);
                Vec::new()
            }
            ClientMessage::Execute { portal, .. } => {
                let seq = shared.session.next_statement_seq();
                let info = self.tracker().portal(&portal).cloned();
                let (statement, statement_name, parameters) = match info {
                    Some(info) => (
                        info.query.to_string(),
                        info.statement_name,
                        info.params.to_vec(),
                    ),
                    None => (String::new(), String::new(), Vec::new()),
                };
                // A portal of a statement this session never parsed through
                // the proxy cannot exist upstream either; if it somehow did,
                // its results are masked as strictly as policy could ask.
                let verdict = self
                    .tracker()
                    .portal(&portal)
                    .and_then(|p| p.verdict.clone())
                    .unwrap_or_else(|| {
                        Arc::new(self.unclassifiable("an Execute of an unknown statement"))
                    });
                let mut attrs = shared.run_attrs(&verdict);
                // Whether it counts afresh is known once the server has
                // confirmed (or skipped) its Bind: the tracker says.
                attrs.portal = Some((portal.clone(), false));
                if attrs.mask {
                    // The result's columns and formats decide how it is
                    // masked, and a client need not Describe before Execute.
                    attrs.own_describe = true;
                    out.extend_from_slice(&results::describe_portal(&portal));
                }
                self.tracker().push_execute_with(seq, attrs);
                out.extend_from_slice(&frame.raw);
                let events = vec![shared.decided(
                    Request::new_sql(
                        seq,
                        SqlStatement {
                            text: statement,
                            path: SqlProtocolPath::Extended as i32,
                            statement_name,
                            portal_name: portal,
                            parameters,
                        },
                    ),
                    &verdict,
                )];
                if self.may_overlap(&verdict) {
                    return Step::RecordOverlapped(events);
                }
                events
            }
            ClientMessage::Describe { .. } => {
                self.tracker().push_client_describe();
                out.extend_from_slice(&frame.raw);
                Vec::new()
            }
            ClientMessage::Close { is_portal, name } => {
                self.tracker().push_close(is_portal, name);
                out.extend_from_slice(&frame.raw);
                Vec::new()
            }
            ClientMessage::Sync => {
                self.tracker().push_sync();
                out.extend_from_slice(&frame.raw);
                Vec::new()
            }
            ClientMessage::Terminate => return Step::Terminate,
            ClientMessage::CopyEnd => {
                // CopyDone / CopyFail: the end of a COPY FROM STDIN.
                self.tracker().on_client_copy_end();
                out.extend_from_slice(&frame.raw);
                Vec::new()
            }
            ClientMessage::FunctionCall(call) => {
                // libpq's fast path (large objects and the like): a server
                // function by OID, with no SQL to classify. Policy treats it
                // as unclassifiable (fail closed); the Request names the OID
                // and carries the arguments; the call ends at ReadyForQuery.
                let mut verdict =
                    self.unclassifiable("a function call by OID (fast-path protocol)");
                if verdict.outcome == Outcome::Mask && shared.masks_anything {
                    // Its answer is one value of a type Vigil is not told and
                    // a lineage it cannot see (`query_to_xml` by OID returns
                    // a table): masking cannot apply, so it cannot pass.
                    verdict.outcome = Outcome::Deny;
                    verdict.reason =
                        "a function call by OID returns a value that cannot be masked".into();
                }
                let verdict = Arc::new(verdict);
                let seq = shared.session.next_statement_seq();
                self.forward_or_probe(frame, &verdict, seq, out);
                let args = may_block_if_large(frame.raw.len(), || parameters(call.args));
                vec![shared.decided(
                    Request::new_sql(
                        seq,
                        SqlStatement {
                            text: format!("function call: oid {}", call.function_oid),
                            path: SqlProtocolPath::FunctionCall as i32,
                            parameters: args,
                            ..Default::default()
                        },
                    ),
                    &verdict,
                )]
            }
            // Flush, COPY data from the client and the rest pass through.
            ClientMessage::PassThrough => {
                out.extend_from_slice(&frame.raw);
                Vec::new()
            }
        };
        Step::Record(events)
    }

    /// Records events of this session, in order, and waits until all are
    /// durable; if any cannot be, the session ends (fail closed).
    async fn record_durably(&self, kinds: Vec<Kind>) -> Result<(), Fatal> {
        let shared = &self.shared;
        // Handed to the bus in order now; awaited together, so they share
        // one group commit.
        shared.recorder.record_durably(kinds).await.map_err(|e| {
            tracing::error!(session = %shared.session.session_id(), error = %e, "request event not recorded; statement refused");
            Fatal {
                code: "57P03",
                message: format!("Vigil refused the statement because it cannot be audited: {e}"),
            }
        })
    }

    /// A probe Query in place of a refused statement, its error rewritten
    /// into `refusal`.
    fn refuse(&self, seq: u64, refusal: Refusal, out: &mut BytesMut) {
        let probe = self.probe_for(refusal);
        self.tracker().push_query(seq);
        out.extend_from_slice(&codec::query(&probe));
    }

    /// A probe whose error the backend rewrites into `refusal`.
    fn probe_for(&self, refusal: Refusal) -> String {
        self.shared
            .refusals
            .lock()
            .expect("refusals lock")
            .probe(refusal)
    }

    /// The session's token has expired: what the client sent is refused,
    /// recorded (a statement's text with a deny Decision, rule
    /// `token-expired`), and the session ends, since a PostgreSQL session
    /// cannot log in again.
    async fn token_expired(&self, message: &ClientMessage) -> Fatal {
        let shared = &self.shared;
        let statement = match message {
            ClientMessage::Query { sql } => Some((sql.clone(), SqlProtocolPath::Simple)),
            ClientMessage::Parse(p) => Some((p.query.clone(), SqlProtocolPath::ExtendedParse)),
            _ => None,
        };
        if let Some((statement, path)) = statement {
            let seq = shared.session.next_statement_seq();
            let request = sql_request(seq, statement, path);
            if let Err(e) = self
                .deadline
                .record_refusal(&shared.recorder, request, &shared.policy_name)
                .await
            {
                tracing::error!(session = %shared.session.session_id(), error = %e, "expired-token refusal not recorded");
            }
        }
        Fatal {
            code: "28000",
            message: self.deadline.message(),
        }
    }

    /// A message that ends at ReadyForQuery (Query, FunctionCall): forwarded
    /// if the verdict lets it through, else a probe Query in its place.
    fn forward_or_probe(
        &self,
        frame: &Frame,
        verdict: &Arc<Verdict>,
        seq: u64,
        out: &mut BytesMut,
    ) {
        if verdict.outcome.forwards() {
            self.tracker()
                .push_query_with(seq, self.shared.run_attrs(verdict));
            out.extend_from_slice(&frame.raw);
        } else {
            let probe = self.probe(verdict);
            self.tracker().push_query(seq);
            out.extend_from_slice(&codec::query(&probe));
        }
    }

    /// Whether a statement under `verdict` may go upstream while its record
    /// becomes durable: a read that changes nothing, let through, in a
    /// session that never changed the schema (its own DDL may be out of
    /// the catalog's sight: a view created in this transaction would read
    /// as a table).
    fn may_overlap(&self, verdict: &Verdict) -> bool {
        verdict.outcome.forwards()
            && verdict.shapes.is_free_read()
            // Now, not only when it was parsed: a named statement is
            // analysed again by the server after DDL (a table replaced by a
            // view calling `nextval`).
            && !self.gate.may_run_hidden_code()
            && !self
                .shared
                .changed_schema
                .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The probe to forward in place of a refused statement.
    fn probe(&self, verdict: &Verdict) -> String {
        self.probe_for(gate::refusal_for(verdict))
    }

    /// SQL PREPARE, DECLARE, DEALLOCATE and DISCARD act on the names the
    /// extended protocol uses too: a Bind of a name SQL prepared, or an
    /// Execute of a cursor SQL declared, runs that SQL, not what the proxy
    /// last saw Parsed or Bound under the name. Those names take this
    /// message's verdict, with no lineage (its results are paired with no
    /// statement text).
    fn sql_touches_protocol_names(&mut self, verdict: &Verdict, sql: &str) {
        let names = self.gate.sql_names().clone();
        if !names.forgets && names.prepared.is_empty() && names.cursors.is_empty() {
            return;
        }
        let blind = Arc::new(Verdict {
            shapes: Default::default(),
            ..verdict.clone()
        });
        let prepared: Vec<String> = names.prepared.into_iter().collect();
        let cursors: Vec<String> = names.cursors.into_iter().collect();
        self.tracker()
            .tighten_names(names.forgets, &prepared, &cursors, sql, &blind, |old| {
                Verdict {
                    shapes: Default::default(),
                    ..stricter(old, verdict)
                }
            });
    }

    /// The text just judged (and let through) changes the schema.
    fn note_schema_change(&self) {
        if self.gate.sql_names().changes_schema {
            self.shared
                .schema_changing
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.shared
                .changed_schema
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn unclassifiable(&self, what: &str) -> Verdict {
        self.gate.judge_classification(&Classification {
            statements: Vec::new(),
            unclassified: Some(what.to_string()),
        })
    }
}
