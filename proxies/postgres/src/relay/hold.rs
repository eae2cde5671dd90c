//! Holding a statement for review: the statement waits at the proxy, the
//! client sees nothing but a query that has not answered yet, and the
//! approval service's decision either forwards it or refuses it.
//!
//! Order, each step durable before the next:
//! 1. a live grant covering (agent, connection, rule) lets the statement
//!    through at once: Request + Decision (stage `grant`, naming the grant);
//! 2. otherwise Request + Decision (`review`) + PendingOperation (the
//!    statement with its literals masked) are recorded in the session's
//!    stream, and only then is the operation handed to the approval service;
//! 3. when it closes, a second Decision (stage `approval`) records what the
//!    proxy did: ran it (approved) or refused it (denied, expired,
//!    withdrawn, service unavailable), and only then is it forwarded.
//!
//! While waiting, the frontend reads nothing more from the client into the
//! upstream: later pipelined messages queue behind the held statement, as
//! they would behind a slow one. It still watches the socket, so that a
//! client that leaves withdraws the operation, and the session's cancel key,
//! so that a CancelRequest does too. Waiting holds no upstream work: the
//! statement is not sent, and nothing else of the session runs meanwhile.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_proto::events::{event::Kind, PendingOperation, Request};
use vigil_proxy_core::approval::{ApprovalUnavailable, Approvals, GrantQuery, HoldOutcome};
use vigil_proxy_core::classify::redact_literals;
use vigil_proxy_core::policy::{Outcome, ReviewSettings, Verdict};

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

/// What ended the wait.
enum Waited {
    Closed(Result<HoldOutcome, ApprovalUnavailable>),
    Cancelled,
    Disconnected,
}

/// Withdraws the operation if the wait ends any other way than by its
/// closing, including the session being dropped mid-wait (token expiry,
/// the ledger failing): an operation nobody waits for must not stay
/// approvable.
struct WithdrawUnlessClosed<'a> {
    approvals: &'a dyn Approvals,
    operation_id: String,
    reason: &'static str,
    armed: bool,
}

impl Drop for WithdrawUnlessClosed<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.approvals.withdraw(&self.operation_id, self.reason);
        }
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
    /// Request event and `sql` the statement it runs.
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
        let session = &shared.session;
        let seq = request.statement_seq;
        let sql = request.statement.clone();
        let request = Kind::Request(request);

        // Rules that allow no grants (quorum above one, or max_grant 0) are
        // not asked about: the proxy's own policy decides that, whatever
        // the service's rule table says.
        let grantable = settings.quorum <= 1 && !settings.max_grant.is_zero();
        let grant = if grantable {
            approvals
                .covering_grant(GrantQuery {
                    subject: self.identity.subject.clone(),
                    issuer: self.identity.issuer.clone(),
                    connection: session.connection().to_string(),
                    rule: verdict.rule.clone(),
                })
                .await
        } else {
            Ok(None)
        };
        match grant {
            Ok(Some(grant_id)) => {
                let released = released(
                    verdict,
                    format!(
                        "run under grant {grant_id} (rule \"{}\" holds it for review otherwise)",
                        verdict.rule
                    ),
                );
                self.record_durably(vec![request, shared.decision(seq, &released, "grant")])
                    .await?;
                self.release(frame, held, &Arc::new(released), seq, &sql, out);
                return Ok(Forward::Done);
            }
            Ok(None) => {}
            Err(e) => {
                let refused = refused(verdict, e.to_string());
                self.record_durably(vec![request, shared.decision(seq, &refused, "approval")])
                    .await?;
                self.refuse_held(
                    held,
                    seq,
                    Refusal {
                        code: "57P03",
                        message: format!(
                            "Vigil holds this statement for review (rule \"{}\"), but {e}; it is refused",
                            verdict.rule
                        ),
                        detail: String::new(),
                        hint: "Try again when the approval service is back.".into(),
                    },
                    out,
                );
                return Ok(Forward::Done);
            }
        }

        let operation_id = uuid::Uuid::now_v7().to_string();
        let expires = SystemTime::now() + settings.ttl;
        // Made in this order so that their `seq`s are in this order.
        let request = session.event(request);
        let decision = session.event(shared.decision(seq, verdict, "statement"));
        let pending = session.event(Kind::PendingOperation(PendingOperation {
            operation_id: operation_id.clone(),
            statement_seq: seq,
            // Approvers, webhooks and chat see this text: never the values.
            statement: redact_literals(&sql),
            rule: settings.rule.clone(),
            approver_groups: settings.approver_groups.clone(),
            quorum: settings.quorum,
            expires_unix_nanos: unix_nanos(expires),
        }));
        self.record_events(vec![request, decision, pending.clone()])
            .await?;

        // Statements before this one in the same read go upstream now; only
        // the held one and what follows it wait.
        if !out.is_empty() {
            if let Err(e) = io.upstream.write_all(out).await {
                return Err(Fatal {
                    code: "08006",
                    message: format!("the upstream connection failed: {e}"),
                });
            }
            out.clear();
        }

        tracing::info!(session = %session.session_id(), operation = %operation_id, rule = %settings.rule, "statement held for review");
        let mut guard = WithdrawUnlessClosed {
            approvals: approvals.as_ref(),
            operation_id: operation_id.clone(),
            reason: "the client's session ended while the statement waited",
            armed: true,
        };
        // A safety net: whatever the service does, nothing waits much past
        // the operation's expiry.
        let give_up = tokio::time::sleep(settings.ttl + Duration::from_secs(10));
        tokio::pin!(give_up);
        let waited = {
            let mut hold = approvals.hold(pending);
            loop {
                tokio::select! {
                    r = &mut hold => break Waited::Closed(r),
                    _ = &mut cancelled => break Waited::Cancelled,
                    _ = &mut give_up => break Waited::Closed(Err(ApprovalUnavailable(
                        "no decision arrived by the operation's expiry".into(),
                    ))),
                    n = io.client.read_buf(io.buf), if io.buf.len() < MAX_BUFFERED_WHILE_HELD => match n {
                        Ok(0) | Err(_) => break Waited::Disconnected,
                        Ok(_) => continue,
                    },
                }
            }
        };
        let (outcome, refusal) = match waited {
            Waited::Disconnected => {
                guard.reason = "the client disconnected while the statement waited";
                drop(guard);
                return Ok(Forward::Disconnected);
            }
            Waited::Cancelled => {
                guard.reason = "the client cancelled the statement";
                drop(guard);
                let reason = format!(
                    "operation {operation_id} withdrawn: the client cancelled the statement"
                );
                (
                    refused(verdict, reason.clone()),
                    Refusal {
                        code: "57014",
                        message: format!(
                            "canceling statement due to user request (Vigil {reason})"
                        ),
                        detail: String::new(),
                        hint: String::new(),
                    },
                )
            }
            Waited::Closed(result) => {
                guard.armed = false;
                match result {
                    Ok(o) if o.releases() => {
                        let released = released(
                            verdict,
                            format!("operation {operation_id} approved: {}", o.reason),
                        );
                        self.record_durably(vec![shared.decision(seq, &released, "approval")])
                            .await?;
                        tracing::info!(session = %session.session_id(), operation = %operation_id, "held statement approved; forwarding");
                        self.release(frame, held, &Arc::new(released), seq, &sql, out);
                        return Ok(Forward::Done);
                    }
                    Ok(o) => {
                        let reason = format!("operation {operation_id} {}: {}", o.state, o.reason);
                        (
                            refused(verdict, reason.clone()),
                            Refusal {
                                code: "42501",
                                message: format!("Vigil refused this statement: {reason}"),
                                detail: format!("rule \"{}\" holds it for review", verdict.rule),
                                hint: String::new(),
                            },
                        )
                    }
                    Err(e) => {
                        approvals.withdraw(&operation_id, "the proxy lost the approval service");
                        let reason = format!("operation {operation_id}: {e}");
                        (
                            refused(verdict, reason.clone()),
                            Refusal {
                                code: "57P03",
                                message: format!("Vigil refused this statement: {reason}"),
                                detail: format!("rule \"{}\" holds it for review", verdict.rule),
                                hint: "Try again when the approval service is back.".into(),
                            },
                        )
                    }
                }
            }
        };
        tracing::info!(session = %session.session_id(), operation = %operation_id, "held statement refused");
        self.record_durably(vec![shared.decision(seq, &outcome, "approval")])
            .await?;
        self.refuse_held(held, seq, refusal, out);
        Ok(Forward::Done)
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

/// The verdict under which an approved (or granted) statement runs: its
/// results are masked, whatever the rule's review would have been.
fn released(held: &Verdict, reason: String) -> Verdict {
    Verdict {
        outcome: Outcome::Mask,
        rule: held.rule.clone(),
        reason,
        max_rows: held.max_rows,
        over_limit: held.over_limit,
        shapes: held.shapes.clone(),
    }
}

fn refused(held: &Verdict, reason: String) -> Verdict {
    Verdict {
        outcome: Outcome::Deny,
        rule: held.rule.clone(),
        reason,
        max_rows: None,
        over_limit: Outcome::Deny,
        shapes: Default::default(),
    }
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as i64
}
