//! The upstream -> client half of a session: results are paired with the
//! statements the frontend judged, masked, counted against row limits and
//! stopped, and each run's Response is recorded.
//!
//! A plan and a shell, as the frontend: [`Backend::plan`] decides what one
//! upstream message does without I/O and returns [`Effects`] (what the
//! client gets, whether to cancel the upstream's work, whether the
//! catalog's names are stale). The one step that needs the catalog, a
//! RowDescription of a result to mask, is planned in two: the shell takes
//! [`Backend::on_row_description`], looks the result's tables and lineage
//! up, and hands them to the plan.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use vigil_proto::events::{MaskedField, Stage};
use vigil_proxy_core::mask::Masker;
use vigil_runtime::recorder::EndReason;
use vigil_sql::lineage::{self, Outputs, StatementShape};
use vigil_sql::policy::{Outcome, Policy, Verdict};

use super::{send_fatal, ClientWriter, Shared, UpstreamCancel};
use crate::catalog::{self, Catalog};
use crate::codec::{self, Frame};
use crate::gate;
use crate::masking::{self, RowPlan};
use crate::messages::BackendMessage;
use crate::refuse::Refusal;
use crate::results;
use crate::tracker::{Completed, DescriptionFor, RunAttrs};
use crate::upstream_tls::UpstreamStream;
use vigil_runtime::blocking::{may_block_if_large, InlineBudget};

/// What the backend needs to mask and stop results.
pub(super) struct Masking {
    pub policy: Arc<Policy>,
    pub masker: Arc<Masker>,
    pub catalog: Arc<Catalog>,
    pub database: String,
    pub cancel: Option<UpstreamCancel>,
}

/// Rows each open portal has returned so far (backend side).
type PortalRows = std::collections::HashMap<String, u64>;

/// Rows (and COPY lines) larger than this are not masked: scanning one
/// holds an async worker thread (a 240 MB row took the masker 14 s, a
/// 16 MB one 1.2 s, while every other session on that thread waited), so a
/// masked result that carries one is stopped, fail closed. Unmasked
/// results pass whole.
pub const MAX_MASKED_ROW_LEN: usize = 4 * 1024 * 1024;
/// The most bytes of one masked result (or masked COPY) the proxy masks;
/// past it the result is stopped like one with an oversized row. Bounds
/// the masking work one statement can ask for (about 5 s of one core).
pub const MAX_MASKED_RESULT_BYTES: u64 = 64 * 1024 * 1024;

/// The result being streamed now.
#[derive(Default)]
struct ResultState {
    plan: Option<RowPlan>,
    /// A RowDescription of this result was read to mask by (the plan may
    /// still be `None`: nothing in it needs masking).
    described: bool,
    /// Bytes of this result masked so far.
    masked_bytes: u64,
    /// Textual COPY out being masked line by line.
    copy: Option<MaskedField>,
    /// Stopped by the proxy: what the client is told instead of the end.
    stopped: Option<Refusal>,
}

/// The backend's state: what it masks with, the result being streamed,
/// and the rows each open portal has returned.
pub(super) struct Backend {
    shared: Arc<Shared>,
    masking: Masking,
    result: ResultState,
    portal_rows: PortalRows,
}

/// What one upstream message asks of the shell.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// What the client gets in its place (`None`: nothing).
    pub to_client: Option<Bytes>,
    /// Ask the server to cancel the statement it is running (a result was
    /// stopped, and nothing else of the session is queued behind it).
    pub cancel_upstream: bool,
    /// Schema changes are settled: the catalog's cached names are stale.
    pub forget_names: bool,
}

/// A RowDescription's first step: who it is for, which result of its run
/// it describes, and how that run's results are treated.
pub(super) struct Description {
    who: DescriptionFor,
    index: usize,
    attrs: RunAttrs,
}

/// What the catalog says of a result's columns, for masking it.
pub(super) struct Lookups {
    pub tables: HashMap<u32, Arc<catalog::TableInfo>>,
    pub lineage: Outputs,
}

impl Default for Lookups {
    /// Nothing known: every column of a masked result is masked as
    /// strictly as its treatment allows.
    fn default() -> Self {
        Lookups {
            tables: HashMap::new(),
            lineage: Outputs::Unknown,
        }
    }
}

impl Backend {
    pub(super) fn new(shared: Arc<Shared>, masking: Masking) -> Self {
        Backend {
            shared,
            masking,
            result: ResultState::default(),
            portal_rows: PortalRows::new(),
        }
    }

    /// The first step of a RowDescription: the registry pairs it with its
    /// run, and a new result begins.
    pub(super) fn on_row_description(&mut self) -> Description {
        let mut tracker = self.shared.tracker.lock().expect("tracker lock");
        let (who, index) = tracker.on_row_description();
        let attrs = attrs_or_fail_closed(tracker.front_attrs(), &self.masking);
        drop(tracker);
        self.result = ResultState::default();
        Description { who, index, attrs }
    }

    /// The catalog lookups a result to mask needs: its tables, and the
    /// lineage of its computed and view columns.
    async fn lookups(&self, fields: &[results::Field], description: &Description) -> Lookups {
        let masking = &self.masking;
        let oids: Vec<u32> = fields.iter().map(|f| f.table_oid).collect();
        let tables = match masking.catalog.tables(&masking.database, &oids).await {
            Ok(tables) => tables,
            Err(e) => {
                // Fail closed: columns of unnamed tables are redacted.
                tracing::warn!(session = %self.shared.session.session_id(), error = %e, "catalog lookup failed; masking those columns entirely");
                Default::default()
            }
        };
        let shape = description
            .attrs
            .verdict
            .as_ref()
            .and_then(|v| v.shapes.nth(description.index));
        let lineage = result_lineage(&self.shared, masking, fields, &tables, shape).await;
        Lookups { tables, lineage }
    }
}

/// Upstream -> client: the shell around [`Backend::plan`].
pub(super) async fn backend(
    mut upstream: ReadHalf<UpstreamStream>,
    client_wr: ClientWriter,
    mut state: Backend,
) -> EndReason {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        match upstream.read_buf(&mut buf).await {
            Ok(0) => return EndReason::UpstreamClosed(None),
            Ok(_) => {}
            Err(e) => return EndReason::UpstreamClosed(Some(e.to_string())),
        }
        // Whatever these bytes answer went upstream before they came, so
        // after its overlapped record (if it had one) was handed over: the
        // tickets issued by now cover it. Nothing of it reaches the client
        // before they are durable.
        let disclose_after = state.shared.recorder.overlapped_issued();
        let mut completed = Vec::new();
        let ended = relay_buffered(
            &mut state,
            &mut buf,
            &mut out,
            &client_wr,
            &mut completed,
            disclose_after,
        )
        .await;
        // The runs that ended are recorded even when the session ends
        // here: their statements ran.
        for done in completed {
            state.shared.record_response(done);
        }
        if let Some(reason) = ended {
            return reason;
        }
        if !out.is_empty() {
            if let Some(reason) = wait_until_durable(&state, &client_wr, disclose_after).await {
                return reason;
            }
            if let Err(e) = client_wr.lock().await.write_all(&out).await {
                return EndReason::ClientDisconnected(Some(e.to_string()));
            }
            out.clear();
        }
    }
}

/// Waits until the overlapped records up to `ticket` are durable; if one
/// cannot be, the client is told so instead of getting the answer, and the
/// session ends.
async fn wait_until_durable(
    state: &Backend,
    client_wr: &ClientWriter,
    ticket: u64,
) -> Option<EndReason> {
    match state.shared.recorder.durable_through(ticket).await {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(session = %state.shared.session.session_id(), error = %e, "a read's record failed; its result is withheld");
            send_fatal(
                client_wr,
                "57P03",
                "Vigil withheld the result because its statement could not be recorded in the audit ledger; the session is closed",
            )
            .await;
            Some(EndReason::AuditUnavailable)
        }
    }
}

/// Relays every whole message in `buf`; `Some` when the session ends.
/// Runs that end are added to `completed`.
async fn relay_buffered(
    state: &mut Backend,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    client_wr: &ClientWriter,
    completed: &mut Vec<Completed>,
    disclose_after: u64,
) -> Option<EndReason> {
    let mut inline = InlineBudget::default();
    loop {
        let frame = match codec::decode_frame(buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => return Some(invalid_upstream_message(client_wr, e).await),
        };
        let message = match BackendMessage::decode(&frame) {
            Ok(message) => message,
            Err(e) => return Some(invalid_upstream_message(client_wr, e).await),
        };
        if let BackendMessage::ParameterStatus { name, value } = &message {
            if name == "client_encoding" && !results::is_utf8_encoding(value) {
                // Fail closed: statements after this would be read by
                // PostgreSQL in an encoding the classifier does not use.
                let refusal = results::encoding_refusal(value);
                send_fatal(client_wr, "0A000", &refusal).await;
                return Some(EndReason::Error(refusal));
            }
        }
        let described = match &message {
            BackendMessage::RowDescription(fields) => {
                let description = state.on_row_description();
                let lookups = if description.attrs.mask {
                    state.lookups(fields, &description).await
                } else {
                    Lookups::default()
                };
                Some((description, lookups))
            }
            _ => None,
        };
        let effects = match state.plan(&frame, message, described, completed) {
            Ok(effects) => effects,
            Err(e) => return Some(invalid_upstream_message(client_wr, e).await),
        };
        if effects.cancel_upstream {
            if let Some(cancel) = state.masking.cancel.clone() {
                send_cancel(cancel);
            }
        }
        if effects.forget_names {
            // The DDL is committed or rolled back: names resolve anew.
            let masking = &state.masking;
            masking.catalog.forget_names(&masking.database).await;
        }
        if let Some(bytes) = effects.to_client {
            out.extend_from_slice(&bytes);
        }
        inline.spend(frame.raw.len()).await;
        // Keep memory flat on huge results: flush as we go.
        if out.len() >= 256 * 1024 {
            if let Some(reason) = wait_until_durable(state, client_wr, disclose_after).await {
                return Some(reason);
            }
            if let Err(e) = client_wr.lock().await.write_all(out).await {
                return Some(EndReason::ClientDisconnected(Some(e.to_string())));
            }
            out.clear();
        }
    }
    None
}

/// What each column of a result is computed from, when any column needs it
/// (a computed column or a view's); unknown when the statement is not
/// known or the catalog cannot be read (its computed columns are then
/// redacted).
async fn result_lineage(
    shared: &Arc<Shared>,
    masking: &Masking,
    fields: &[results::Field],
    tables: &HashMap<u32, Arc<catalog::TableInfo>>,
    shape: Option<(&StatementShape, bool)>,
) -> Outputs {
    let needed = fields
        .iter()
        .any(|f| f.table_oid == 0 || tables.get(&f.table_oid).is_some_and(|t| t.is_view));
    let Some((shape, settings_hold_data)) = shape.filter(|_| needed) else {
        return Outputs::Unknown;
    };
    if shared
        .schema_changing
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Outputs::Unknown;
    }
    let names = lineage::relation_names(shape)
        .into_iter()
        .map(|(_, name)| name);
    match masking.catalog.relations(&masking.database, names).await {
        Ok(relations) => lineage::resolve(shape, &relations, settings_hold_data),
        Err(e) => {
            tracing::warn!(session = %shared.session.session_id(), error = %e, "catalog lookup for lineage failed; computed columns are redacted");
            Outputs::Unknown
        }
    }
}

/// The server's answers no longer match the proxy's model of the session:
/// ended like an unreadable message (fail closed).
fn out_of_step(d: crate::tracker::Desync) -> codec::CodecError {
    codec::malformed("upstream answer", d.0)
}

/// Ends the session on a message from the upstream the proxy cannot read.
async fn invalid_upstream_message(client_wr: &ClientWriter, e: codec::CodecError) -> EndReason {
    send_fatal(
        client_wr,
        "08P01",
        "the upstream server sent an invalid message",
    )
    .await;
    EndReason::Error(format!("invalid upstream message: {e}"))
}

impl Backend {
    /// Decides what one upstream message does, without I/O. A
    /// RowDescription comes with its first step and lookups (`described`).
    pub(super) fn plan(
        &mut self,
        frame: &Frame,
        message: BackendMessage,
        described: Option<(Description, Lookups)>,
        completed: &mut Vec<Completed>,
    ) -> Result<Effects, codec::CodecError> {
        let mut effects = Effects::default();
        effects.to_client =
            self.plan_message(frame, message, described, completed, &mut effects)?;
        Ok(effects)
    }

    /// What goes to the client in the message's place (`None`: nothing).
    fn plan_message(
        &mut self,
        frame: &Frame,
        message: BackendMessage,
        described: Option<(Description, Lookups)>,
        completed: &mut Vec<Completed>,
        effects: &mut Effects,
    ) -> Result<Option<Bytes>, codec::CodecError> {
        // A RowDescription planned without its first step (the shell always
        // takes it): paired now, and with no lookups masking redacts what
        // it cannot name.
        debug_assert!(
            described.is_none() || matches!(message, BackendMessage::RowDescription(_)),
            "only a RowDescription comes described"
        );
        let described = match (&message, described) {
            (BackendMessage::RowDescription(_), None) => {
                Some((self.on_row_description(), Lookups::default()))
            }
            (_, described) => described,
        };
        let Backend {
            shared,
            masking,
            result,
            portal_rows,
        } = self;
        let forward = Some(frame.raw.clone());
        match message {
            BackendMessage::RowDescription(fields) => {
                let (Description { who, attrs, .. }, lookups) =
                    described.expect("a RowDescription is described above");
                if attrs.mask {
                    let plan = RowPlan::build(
                        &fields,
                        &lookups.tables,
                        &lookups.lineage,
                        &masking.policy,
                        masking.masker.clone(),
                    );
                    result.plan = (!plan.is_noop()).then_some(plan);
                    result.described = true;
                }
                Ok(if who == DescriptionFor::Proxy {
                    None
                } else {
                    forward
                })
            }
            BackendMessage::NoData => {
                let who = shared
                    .tracker
                    .lock()
                    .expect("tracker lock")
                    .on_description();
                Ok(if who == DescriptionFor::Proxy {
                    None
                } else {
                    forward
                })
            }
            BackendMessage::DataRow => {
                let (rows, attrs) = {
                    let mut tracker = shared.tracker.lock().expect("tracker lock");
                    let rows = tracker.on_data_row();
                    (rows, attrs_or_fail_closed(tracker.front_attrs(), masking))
                };
                if result.stopped.is_some() {
                    return Ok(None);
                }
                let earlier = match &attrs.portal {
                    Some((portal, true)) if rows == 1 => {
                        // A freshly bound portal starts counting again.
                        portal_rows.remove(portal);
                        0
                    }
                    Some((portal, _)) => portal_rows.get(portal).copied().unwrap_or(0),
                    None => 0,
                };
                if let Some(limit) = attrs.max_rows.filter(|&m| earlier + rows > m) {
                    effects.cancel_upstream = stop_result(shared, masking, result, &attrs, limit);
                    return Ok(None);
                }
                if result.plan.is_some() {
                    if let Some(why) = too_much_to_mask(result, frame.raw.len()) {
                        effects.cancel_upstream =
                            stop_unmaskable(shared, masking, result, &attrs, rows - 1, why);
                        return Ok(None);
                    }
                }
                if attrs.mask && !result.described {
                    // Rows to mask with no description to mask them by (the
                    // server ran a stricter statement than the Execute was
                    // sent for): none of them goes out.
                    effects.cancel_upstream = stop_unmaskable(
                        shared,
                        masking,
                        result,
                        &attrs,
                        rows - 1,
                        "the result has no description to mask it by".into(),
                    );
                    return Ok(None);
                }
                match &mut result.plan {
                    // A row of megabytes takes milliseconds to scan.
                    Some(plan) => Ok(Some(
                        may_block_if_large(frame.raw.len(), || plan.apply(&frame.body()))?
                            .unwrap_or(frame.raw.clone()),
                    )),
                    None => Ok(forward),
                }
            }
            BackendMessage::CopyOut { binary } => {
                let attrs = front_attrs(shared, masking);
                *result = ResultState::default();
                if attrs.mask {
                    if binary {
                        // Binary COPY cannot be scanned: stopped, fail closed,
                        // and the stop recorded like any other.
                        let rule = attrs
                            .verdict
                            .as_ref()
                            .map(|v| v.rule.clone())
                            .unwrap_or_default();
                        let refusal = Refusal {
                            code: "42501",
                            message: format!(
                                "Vigil stopped this COPY: binary COPY output cannot be masked (rule \"{rule}\")"
                            ),
                            detail: "no row of it was sent".into(),
                            hint: "Use COPY ... TO STDOUT in text or CSV format.".into(),
                        };
                        let stopped = Verdict {
                            outcome: Outcome::Deny,
                            rule,
                            reason: "binary COPY output cannot be masked".into(),
                            max_rows: None,
                            over_limit: Outcome::Deny,
                            shapes: Default::default(),
                        };
                        effects.cancel_upstream = stop(
                            shared,
                            masking,
                            result,
                            0,
                            refusal,
                            &stopped,
                            Stage::ResultSize,
                        );
                    } else {
                        result.copy = Some(MaskedField {
                            field: "(copy)".into(),
                            source: String::new(),
                            method: "detectors".into(),
                            ..Default::default()
                        });
                    }
                }
                Ok(forward)
            }
            BackendMessage::CopyData => {
                let (rows, attrs) = {
                    let mut tracker = shared.tracker.lock().expect("tracker lock");
                    let rows = tracker.on_data_row();
                    (rows, attrs_or_fail_closed(tracker.front_attrs(), masking))
                };
                if result.stopped.is_some() {
                    return Ok(None);
                }
                if let Some(limit) = attrs.max_rows.filter(|&m| rows > m) {
                    effects.cancel_upstream = stop_result(shared, masking, result, &attrs, limit);
                    return Ok(None);
                }
                if result.copy.is_some() {
                    if let Some(why) = too_much_to_mask(result, frame.raw.len()) {
                        effects.cancel_upstream =
                            stop_unmaskable(shared, masking, result, &attrs, rows - 1, why);
                        return Ok(None);
                    }
                }
                match &mut result.copy {
                    Some(report) => Ok(Some(
                        may_block_if_large(frame.raw.len(), || {
                            masking::mask_copy_line(&masking.masker, &frame.body(), report)
                        })
                        .unwrap_or(frame.raw.clone()),
                    )),
                    None => Ok(forward),
                }
            }
            BackendMessage::StepComplete => {
                // ParseComplete / BindComplete / CloseComplete: the registry
                // takes the change the server has now made.
                shared
                    .tracker
                    .lock()
                    .expect("tracker lock")
                    .on_step_complete()
                    .map_err(out_of_step)?;
                Ok(forward)
            }
            BackendMessage::FunctionCallResponse => {
                // FunctionCallResponse: the fast-path call was answered.
                shared
                    .tracker
                    .lock()
                    .expect("tracker lock")
                    .on_function_result();
                Ok(forward)
            }
            BackendMessage::CopyIn => {
                shared.tracker.lock().expect("tracker lock").on_copy_in();
                Ok(forward)
            }
            BackendMessage::CopyDone => Ok(if result.stopped.is_some() {
                None
            } else {
                forward
            }),
            end @ (BackendMessage::CommandComplete { .. } | BackendMessage::PortalSuspended) => {
                let suspended = end == BackendMessage::PortalSuspended;
                let mut tracker = shared.tracker.lock().expect("tracker lock");
                if let Some(refusal) = result.stopped.take() {
                    // The stopped result ends in the refusal, not its real end.
                    *result = ResultState::default();
                    if let Some(attrs) = tracker.front_attrs() {
                        if let (Some((portal, _)), Some(limit)) = (&attrs.portal, attrs.max_rows) {
                            // A suspended portal stays open upstream: every
                            // later Execute of it is over the limit at once.
                            portal_rows.insert(portal.clone(), limit);
                        }
                    }
                    let fields = refusal_fields(&refusal);
                    completed.extend(tracker.on_error(fields));
                    return Ok(Some(refusal_bytes(&refusal)));
                }
                tracker.add_masked(take_report(result));
                *result = ResultState::default();
                if let Some(attrs) = tracker.front_attrs() {
                    if let Some((portal, fresh)) = &attrs.portal {
                        if suspended {
                            // Suspended: the portal's next Execute continues it.
                            let base = if *fresh {
                                0
                            } else {
                                portal_rows.get(portal).copied().unwrap_or(0)
                            };
                            let rows = tracker.front_rows();
                            portal_rows.insert(portal.clone(), base + rows);
                        } else {
                            portal_rows.remove(portal);
                        }
                    }
                }
                match end {
                    BackendMessage::CommandComplete { tag } => {
                        completed.extend(tracker.on_command_complete(tag))
                    }
                    _ => completed.extend(tracker.on_execute_end()),
                }
                Ok(forward)
            }
            BackendMessage::EmptyQuery => {
                completed.extend(
                    shared
                        .tracker
                        .lock()
                        .expect("tracker lock")
                        .on_execute_end(),
                );
                Ok(forward)
            }
            BackendMessage::Error(fields) => {
                let mut tracker = shared.tracker.lock().expect("tracker lock");
                if let Some(refusal) = result.stopped.take() {
                    // Typically 57014 from the proxy's own cancel.
                    *result = ResultState::default();
                    completed.extend(tracker.on_error(refusal_fields(&refusal)));
                    return Ok(Some(refusal_bytes(&refusal)));
                }
                tracker.add_masked(take_report(result));
                *result = ResultState::default();
                let rewritten = shared
                    .refusals
                    .lock()
                    .expect("refusals lock")
                    .rewrite(&fields);
                match rewritten {
                    Some((bytes, fields)) => {
                        completed.extend(tracker.on_error(fields));
                        Ok(Some(bytes))
                    }
                    None => {
                        // The ledger keeps the error as the server sent it; the
                        // client gets it without the values it quotes.
                        completed.extend(tracker.on_error(fields));
                        drop(tracker);
                        let scrubbed = shared.scrub_message(frame)?;
                        Ok(Some(scrubbed.unwrap_or(frame.raw.clone())))
                    }
                }
            }
            BackendMessage::Notice => {
                let scrubbed = shared.scrub_message(frame)?;
                Ok(Some(scrubbed.unwrap_or(frame.raw.clone())))
            }
            BackendMessage::Notification => {
                let scrubbed = shared.scrub_notification(frame)?;
                Ok(Some(scrubbed.unwrap_or(frame.raw.clone())))
            }
            BackendMessage::ReadyForQuery { idle } => {
                *result = ResultState::default();
                if idle {
                    // Out of any transaction: every portal is gone.
                    portal_rows.clear();
                }
                let settled = {
                    let mut tracker = shared.tracker.lock().expect("tracker lock");
                    completed.extend(tracker.on_ready_for_query(idle).map_err(out_of_step)?);
                    idle && tracker.outstanding_runs() == 0
                };
                if settled
                    && shared
                        .schema_changing
                        .swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    effects.forget_names = true;
                }
                Ok(forward)
            }
            BackendMessage::ParameterStatus { .. } | BackendMessage::PassThrough => Ok(forward),
        }
    }
}

fn front_attrs(shared: &Shared, masking: &Masking) -> RunAttrs {
    attrs_or_fail_closed(
        shared.tracker.lock().expect("tracker lock").front_attrs(),
        masking,
    )
}

/// The attributes of the run a result belongs to, or, when the proxy cannot
/// pair the result with a statement it judged (it should always can; this
/// is the fail-closed answer if it ever cannot), masking and the policy's
/// row limit.
fn attrs_or_fail_closed(attrs: Option<RunAttrs>, masking: &Masking) -> RunAttrs {
    if let Some(attrs) = attrs {
        return attrs;
    }
    let limits = masking.policy.limits();
    RunAttrs {
        mask: masking.policy.masks_anything(),
        max_rows: limits.max_rows,
        own_describe: false,
        verdict: Some(Arc::new(Verdict {
            outcome: Outcome::Mask,
            rule: vigil_sql::policy::FAIL_CLOSED_RULE.into(),
            reason: "a result the proxy could not pair with a judged statement".into(),
            max_rows: limits.max_rows,
            over_limit: limits.over_limit,
            shapes: Default::default(),
        })),
        portal: None,
    }
}

fn take_report(result: &mut ResultState) -> Vec<MaskedField> {
    let mut report = result
        .plan
        .as_mut()
        .map(RowPlan::take_report)
        .unwrap_or_default();
    if let Some(copy) = result.copy.take() {
        if copy.values_masked > 0 {
            report.push(copy);
        }
    }
    report
}

/// A result grew past its row limit: no further row goes out, and the
/// decision is recorded. Returns whether to cancel the upstream's work.
fn stop_result(
    shared: &Arc<Shared>,
    masking: &Masking,
    result: &mut ResultState,
    attrs: &RunAttrs,
    limit: u64,
) -> bool {
    let Some(verdict) = attrs.verdict.clone() else {
        return false;
    };
    let stopped = Verdict {
        outcome: verdict.over_limit,
        reason: format!("the result grew past {limit} rows"),
        ..(*verdict).clone()
    };
    let refusal = gate::row_limit_refusal(&verdict, limit);
    stop(
        shared,
        masking,
        result,
        limit,
        refusal,
        &stopped,
        Stage::RowLimit,
    )
}

/// Why the next row of `len` bytes is more than the proxy masks, if it is.
fn too_much_to_mask(result: &mut ResultState, len: usize) -> Option<String> {
    result.masked_bytes += len as u64;
    if len > MAX_MASKED_ROW_LEN {
        // Not the row's size: in a masking session that would be a number
        // the agent computed from a masked value (`repeat('x', 4 MiB +
        // f(mrn))`), told back in Vigil's own, unscrubbed, words.
        Some(format!(
            "a row is larger than the {} MiB it masks per row",
            MAX_MASKED_ROW_LEN >> 20
        ))
    } else if result.masked_bytes > MAX_MASKED_RESULT_BYTES {
        Some(format!(
            "the result is larger than the {} MiB it masks per result",
            MAX_MASKED_RESULT_BYTES >> 20
        ))
    } else {
        None
    }
}

/// Stops a masked result at a row (or COPY line) too large to mask, or
/// past the masking budget of a result: scanning on would hold a worker
/// thread for seconds. Fail closed.
fn stop_unmaskable(
    shared: &Arc<Shared>,
    masking: &Masking,
    result: &mut ResultState,
    attrs: &RunAttrs,
    rows_sent: u64,
    why: String,
) -> bool {
    let rule = attrs
        .verdict
        .as_ref()
        .map(|v| v.rule.clone())
        .unwrap_or_default();
    let refusal = gate::too_large_to_mask(&rule, &why);
    let stopped = Verdict {
        outcome: Outcome::Deny,
        rule,
        reason: why,
        max_rows: None,
        over_limit: Outcome::Deny,
        shapes: Default::default(),
    };
    stop(
        shared,
        masking,
        result,
        rows_sent,
        refusal,
        &stopped,
        Stage::ResultSize,
    )
}

/// Ends the current result with `refusal` after `rows_sent` rows and
/// records why; returns whether to ask the server to stop producing it.
fn stop(
    shared: &Arc<Shared>,
    masking: &Masking,
    result: &mut ResultState,
    rows_sent: u64,
    refusal: Refusal,
    stopped: &Verdict,
    stage: Stage,
) -> bool {
    result.stopped = Some(refusal);
    let seq = {
        let mut tracker = shared.tracker.lock().expect("tracker lock");
        tracker.mark_stopped(rows_sent);
        tracker.front_statement_seq().unwrap_or_default()
    };
    shared.record_in_background(shared.decision(seq, stopped, stage));
    may_cancel(shared, masking)
}

/// Whether the upstream may be asked to stop the running statement: only
/// when nothing else of this session is queued behind it (a cancel that
/// arrives late must not hit an innocent later statement).
fn may_cancel(shared: &Shared, masking: &Masking) -> bool {
    masking.cancel.is_some()
        && shared
            .tracker
            .lock()
            .expect("tracker lock")
            .outstanding_runs()
            <= 1
}

/// Asks the upstream, on a connection of its own, to cancel the running
/// statement.
fn send_cancel(cancel: UpstreamCancel) {
    tokio::spawn(async move {
        if let Ok(mut conn) = TcpStream::connect(&cancel.addr).await {
            let _ = conn
                .write_all(&codec::cancel_request(cancel.process_id, cancel.secret_key))
                .await;
        }
    });
}

fn refusal_fields(refusal: &Refusal) -> codec::ErrorFields {
    codec::ErrorFields {
        severity: "ERROR".into(),
        code: refusal.code.into(),
        message: refusal.message.clone(),
    }
}

fn refusal_bytes(refusal: &Refusal) -> Bytes {
    results::error_response_full(
        refusal.code,
        &refusal.message,
        &refusal.detail,
        &refusal.hint,
    )
}
