//! Holding a statement for review, the PostgreSQL side: the statement
//! waits at the proxy, the client sees nothing but a query that has not
//! answered yet. The protocol-neutral coordinator
//! (`vigil_runtime::hold`) records the hold, asks for a grant, waits for
//! the decision and records it; this adapter words refusals as SQLSTATEs,
//! forwards or replaces the held Query or Parse, and while waiting keeps
//! reading the client (without passing anything upstream: later pipelined
//! messages queue behind the held statement, as they would behind a slow
//! one) so that a client that leaves withdraws the operation; a
//! CancelRequest with the session's key withdraws it too. Waiting holds no
//! upstream work: the statement is not sent, and nothing else of the
//! session runs meanwhile.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_proto::events::Request;
use vigil_proxy_core::approval::Approvals;
use vigil_runtime::hold::{self as coordinator, HoldEnd, HoldRequest, Prepared};
use vigil_sql::classify::redact_literals;
use vigil_sql::policy::{Outcome, ReviewSettings, Verdict};

use super::{Fatal, Forward, Frontend, Io};
use crate::codec::Frame;
use crate::refuse::Refusal;
use crate::results;

/// Past this many bytes of pipelined input, a held session stops reading
/// the client (it can still be withdrawn by a cancel or by expiry).
const MAX_BUFFERED_WHILE_HELD: usize = 1 << 20;

/// How the held message runs or is refused, by protocol.
pub(super) enum Held {
    /// A simple Query: forwarded as is, or a probe Query in its place.
    Query,
    /// A Parse (extended protocol), held before it reaches the server:
    /// forwarded on approval (and the name's verdict becomes the released
    /// one, so its Executes run masked without another hold), or a probe
    /// Parse in its place, whose error makes the server skip to the Sync
    /// exactly as for any refused Parse.
    Parse { statement: String, query: String },
}

fn unrecorded(e: vigil_proxy_core::SinkError) -> Fatal {
    Fatal {
        code: "57P03",
        message: format!("Vigil refused the statement because it cannot be audited: {e}"),
    }
}

/// What the client is told when a held statement is refused.
fn refusal_for(verdict: &Verdict, refusal: &coordinator::Refusal) -> Refusal {
    let rule = &verdict.rule;
    match refusal {
        coordinator::Refusal::Cancelled { operation_id } => Refusal {
            code: "57014",
            message: format!(
                "canceling statement due to user request (Vigil operation {operation_id} withdrawn: the client cancelled the statement)"
            ),
            detail: String::new(),
            hint: String::new(),
        },
        coordinator::Refusal::Closed {
            operation_id,
            state,
            reason,
        } => Refusal {
            code: "42501",
            message: format!(
                "Vigil refused this statement: operation {operation_id} {}: {reason}",
                state.label()
            ),
            detail: format!("rule \"{rule}\" holds it for review"),
            hint: String::new(),
        },
        coordinator::Refusal::Lost {
            operation_id,
            error,
        } => Refusal {
            code: "57P03",
            message: format!("Vigil refused this statement: operation {operation_id}: {error}"),
            detail: format!("rule \"{rule}\" holds it for review"),
            hint: "Try again when the approval service is back.".into(),
        },
    }
}

impl Frontend {
    /// The approval service and the rule's review settings, when this
    /// verdict holds the statement for review and both exist; otherwise the
    /// statement is refused as before.
    pub(super) fn reviewer(
        &self,
        verdict: &Verdict,
    ) -> Option<(Arc<dyn Approvals>, ReviewSettings)> {
        if verdict.outcome != Outcome::Review {
            return None;
        }
        let approvals = self.approvals.clone()?;
        let settings = self.gate.policy().review_settings(&verdict.rule)?;
        Some((approvals, settings))
    }

    /// A Query or Parse that policy holds for review; `request` is its
    /// Request event.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hold(
        &mut self,
        frame: &Frame,
        held: Held,
        request: Request,
        verdict: &Arc<Verdict>,
        (approvals, settings): (Arc<dyn Approvals>, ReviewSettings),
        out: &mut BytesMut,
        io: &mut Io<'_>,
    ) -> Result<Forward, Fatal> {
        // Listening for a cancel from the start: a CancelRequest that comes
        // while the hold is being recorded must not be lost
        // (`notify_waiters` keeps no permit for later listeners).
        let hold_cancel = self.hold_cancel.clone().unwrap_or_default();
        let cancelled = hold_cancel.notified();
        tokio::pin!(cancelled);
        cancelled.as_mut().enable();
        let shared = self.shared.clone();
        let seq = request.request_seq;
        let sql = request.sql().map(|s| s.text.clone()).unwrap_or_default();
        let hold_request = HoldRequest {
            // Approvers, webhooks and chat see this text: never the values.
            shown_to_approvers: redact_literals(&sql),
            request,
            verdict: verdict.clone(),
            settings,
            approvals,
            subject: self.identity.subject.clone(),
            issuer: self.identity.issuer.clone(),
            policy_name: shared.policy_name.clone(),
        };
        let end = match coordinator::prepare(&shared.recorder, hold_request)
            .await
            .map_err(unrecorded)?
        {
            Prepared::Done(end) => end,
            Prepared::Pending(pending) => {
                // Statements before this one in the same read go upstream
                // now; only the held one and what follows it wait.
                if !out.is_empty() {
                    if let Err(e) = io.upstream.write_all(out).await {
                        return Err(Fatal {
                            code: "08006",
                            message: format!("the upstream connection failed: {e}"),
                        });
                    }
                    out.clear();
                }
                let session = shared.session.session_id();
                tracing::info!(%session, operation = %pending.operation_id(), rule = %verdict.rule, "statement held for review");
                let client = &mut *io.client;
                let buf = &mut *io.buf;
                let client_gone = async move {
                    loop {
                        if buf.len() >= MAX_BUFFERED_WHILE_HELD {
                            std::future::pending::<()>().await;
                        }
                        match client.read_buf(buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                };
                pending
                    .wait(&shared.recorder, cancelled.as_mut(), client_gone)
                    .await
                    .map_err(unrecorded)?
            }
        };
        match end {
            HoldEnd::Released(released) => {
                tracing::info!(session = %shared.session.session_id(), "held statement released; forwarding");
                self.release(frame, held, &released, seq, &sql, out);
                Ok(Forward::Done)
            }
            HoldEnd::Refused(refusal) => {
                tracing::info!(session = %shared.session.session_id(), "held statement refused");
                self.refuse_held(held, seq, refusal_for(verdict, &refusal), out);
                Ok(Forward::Done)
            }
            HoldEnd::ClientGone => Ok(Forward::Disconnected),
        }
    }

    /// Forwards the held message under the verdict it runs with now.
    fn release(
        &mut self,
        frame: &Frame,
        held: Held,
        verdict: &Arc<Verdict>,
        seq: u64,
        sql: &str,
        out: &mut BytesMut,
    ) {
        // What it does to names the protocol shares (PREPARE, DECLARE, ...)
        // counts from now: the gate last judged this text.
        self.sql_touches_protocol_names(verdict, sql);
        match held {
            Held::Query => self.forward_or_probe(frame, verdict, seq, out),
            Held::Parse { statement, query } => {
                // The name holds the released verdict once the server
                // confirms the Parse; a named statement that already exists
                // refuses it (42P05) and keeps its own.
                self.tracker().push_parse(statement, query, verdict.clone());
                out.extend_from_slice(&frame.raw);
            }
        }
    }

    fn refuse_held(&self, held: Held, seq: u64, refusal: Refusal, out: &mut BytesMut) {
        match held {
            Held::Query => self.refuse(seq, refusal, out),
            Held::Parse { statement, .. } => {
                // The probe fails: the name keeps what the server held.
                let probe = self.probe_for(refusal);
                self.tracker().push_refused_parse(seq);
                out.extend_from_slice(&results::parse_message(&statement, &probe));
            }
        }
    }
}
