//! The hold coordinator: a request that policy holds for review waits at
//! the gateway until the approval service decides, whatever the protocol.
//!
//! Order, each step durable before the next:
//! 1. a live grant covering (agent, connection, rule) lets the request
//!    through at once: the Request, carrying its decision (stage `grant`,
//!    naming the grant); a service that cannot be asked counts as no grant
//!    (hold, the stricter path: the operation waits for the service to
//!    come back);
//! 2. otherwise the Request, carrying its `review` decision, and a
//!    PendingOperation (the request's text as the adapter redacted it) are
//!    recorded in the session's stream, and only then is the operation
//!    handed to the approval service;
//! 3. when it closes, a second Decision (stage `approval`) records what the
//!    gateway did: ran it (approved) or refused it (denied, expired,
//!    withdrawn, service lost until the expiry), and only then does the adapter
//!    forward it or answer with the refusal.
//!
//! The adapter does the protocol's part: it says what the client is told
//! for each [`Refusal`], pushes what came before the held request upstream
//! between [`prepare`] and [`Pending::wait`], and gives the wait a future
//! that resolves when the client leaves.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::futures::Notified;
use vigil_proto::events::{event::Kind, OperationState, PendingOperation, Request, Stage};
use vigil_proxy_core::approval::{ApprovalUnavailable, Approvals, GrantQuery, HoldOutcome};
use vigil_proxy_core::policy::{Outcome, ReviewSettings, Verdict};
use vigil_proxy_core::SinkError;

use crate::recorder::SessionRecorder;

/// What the coordinator needs to know about one held request.
/// `S`: what the protocol family's verdicts carry for result masking
/// ([`vigil_proxy_core::policy::Family::Shapes`]); kept on release.
pub struct HoldRequest<S = ()> {
    /// Its Request event (statement number, text, protocol details).
    pub request: Request,
    /// The text approvers, webhooks and chat may see (literals redacted).
    pub shown_to_approvers: String,
    /// The review verdict that holds it.
    pub verdict: Arc<Verdict<S>>,
    pub settings: ReviewSettings,
    pub approvals: Arc<dyn Approvals>,
    /// Who asks: the grant check needs it.
    pub subject: String,
    pub issuer: String,
    /// The policy's name, for the decisions recorded.
    pub policy_name: String,
}

/// Why a held request is refused; the adapter words it for its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client cancelled the request while it waited.
    Cancelled { operation_id: String },
    /// The operation closed without releasing it (denied, expired,
    /// withdrawn): its state and the decider's reason.
    Closed {
        operation_id: String,
        state: OperationState,
        reason: String,
    },
    /// The service was lost while waiting (or no decision by the expiry).
    Lost { operation_id: String, error: String },
}

impl Refusal {
    /// One line for the client and the record: the operation and why.
    pub fn describe(&self) -> String {
        match self {
            Refusal::Closed {
                operation_id,
                state,
                reason,
            } => format!("operation {operation_id} {}: {reason}", state.label()),
            Refusal::Cancelled { operation_id } => format!("operation {operation_id} withdrawn"),
            Refusal::Lost {
                operation_id,
                error,
            } => format!("operation {operation_id}: {error}"),
        }
    }
}

/// How a hold ended.
#[derive(Debug)]
pub enum HoldEnd<S = ()> {
    /// Forward it, under this verdict (masked: an approval never lifts
    /// masking).
    Released(Arc<Verdict<S>>),
    /// Answer with the refusal instead; the refusing Decision is recorded.
    Refused(Refusal),
    /// The client left while it waited; the operation was withdrawn.
    ClientGone,
}

/// After [`prepare`]: decided at once, or waiting for a decision.
pub enum Prepared<S = ()> {
    Done(HoldEnd<S>),
    // Boxed: the pending operation carries its whole request and event.
    Pending(Box<Pending<S>>),
}

/// An operation recorded and not yet decided.
pub struct Pending<S = ()> {
    request: HoldRequest<S>,
    operation_id: String,
    pending_event: vigil_proto::events::Event,
}

fn decision<S>(request: &HoldRequest<S>, verdict: &Verdict<S>, stage: Stage) -> Kind {
    Kind::Decision(verdict.to_decision(request.request.request_seq, &request.policy_name, stage))
}

/// The held request with the decision taken as it was made: one event.
fn decided<S>(request: &HoldRequest<S>, verdict: &Verdict<S>, stage: Stage) -> Kind {
    let decision = verdict.to_decision(request.request.request_seq, &request.policy_name, stage);
    Kind::Request(request.request.clone().decided(decision))
}

/// Step 1 and 2: a grant releases it at once; otherwise the hold is
/// recorded and the operation is ready to be submitted. An error: the
/// events could not be recorded (the adapter ends the session).
pub async fn prepare<S: Clone + Default>(
    recorder: &SessionRecorder,
    request: HoldRequest<S>,
) -> Result<Prepared<S>, SinkError> {
    let session = recorder.session();
    let settings = &request.settings;
    let verdict = &request.verdict;
    // Rules that allow no grants (quorum above one, or max_grant 0) are
    // not asked about: the gateway's own policy decides that, whatever
    // the service's rule table says.
    let grantable = settings.quorum <= 1 && !settings.max_grant.is_zero();
    let grant = if grantable {
        request
            .approvals
            .covering_grant(GrantQuery {
                subject: request.subject.clone(),
                issuer: request.issuer.clone(),
                connection: session.connection().to_string(),
                rule: verdict.rule.clone(),
            })
            .await
    } else {
        Ok(None)
    };
    let mut grant_error = None;
    match grant {
        Ok(Some(grant_id)) => {
            let released = released(
                verdict,
                format!(
                    "run under grant {grant_id} (rule \"{}\" holds it for review otherwise)",
                    verdict.rule
                ),
            );
            recorder
                .record_durably(vec![decided(&request, &released, Stage::Grant)])
                .await?;
            return Ok(Prepared::Done(HoldEnd::Released(Arc::new(released))));
        }
        Ok(None) => {}
        // The service cannot say whether a grant covers it (restarting,
        // unreachable): hold it, the stricter path. The PendingOperation
        // waits in the bus for the service, and the wait below asks again
        // until the operation's expiry, so a restart of the service refuses
        // nothing that an approver could still have approved.
        Err(e) => {
            tracing::warn!(
                error = %e,
                rule = %verdict.rule,
                "cannot ask the approval service for a grant; holding the request for review"
            );
            grant_error = Some(e.to_string());
        }
    }
    // The review Decision says so when no grant could be checked.
    let noted;
    let held: &Verdict<S> = match grant_error {
        Some(e) => {
            noted = Verdict {
                reason: format!(
                    "{} (the approval service could not be asked for a grant: {e})",
                    verdict.reason
                ),
                ..(**verdict).clone()
            };
            &noted
        }
        None => verdict,
    };

    let operation_id = uuid::Uuid::now_v7().to_string();
    let expires = SystemTime::now() + settings.ttl;
    let pending = Kind::PendingOperation(PendingOperation {
        operation_id: operation_id.clone(),
        request_seq: request.request.request_seq,
        text: request.shown_to_approvers.clone(),
        rule: settings.rule.clone(),
        approver_groups: settings.approver_groups.clone(),
        quorum: settings.quorum,
        expires_unix_nanos: unix_nanos(expires),
    });
    // The PendingOperation as recorded (its `seq` too) is what the
    // approval service is given.
    let pending_event = recorder
        .record_durably_copied(vec![decided(&request, held, Stage::Request), pending])
        .await?
        .pop()
        .ok_or_else(|| SinkError::Unavailable("the recorder gave back no copy".into()))?;
    Ok(Prepared::Pending(Box::new(Pending {
        request,
        operation_id,
        pending_event,
    })))
}

/// Withdraws the operation if the wait ends any other way than by its
/// closing, including the session being dropped mid-wait (token expiry,
/// the ledger failing): an operation nobody waits for must not stay
/// approvable.
struct WithdrawUnlessClosed<'a> {
    approvals: &'a dyn Approvals,
    operation_id: &'a str,
    reason: &'static str,
    armed: bool,
}

impl Drop for WithdrawUnlessClosed<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.approvals.withdraw(self.operation_id, self.reason);
        }
    }
}

enum Waited {
    Closed(Result<HoldOutcome, ApprovalUnavailable>),
    Cancelled,
    ClientGone,
}

impl<S: Clone + Default> Pending<S> {
    pub fn operation_id(&self) -> &str {
        &self.operation_id
    }

    /// Step 3: submits the operation and waits for its decision, the
    /// client's cancel, or the client leaving; records the closing
    /// Decision (unless the client left) and says what to do.
    pub async fn wait(
        self: Box<Self>,
        recorder: &SessionRecorder,
        cancelled: std::pin::Pin<&mut Notified<'_>>,
        client_gone: impl Future<Output = ()>,
    ) -> Result<HoldEnd<S>, SinkError> {
        let request = &self.request;
        let approvals = request.approvals.clone();
        let operation_id = self.operation_id.clone();
        let mut guard = WithdrawUnlessClosed {
            approvals: approvals.as_ref(),
            operation_id: &operation_id,
            reason: "the client's session ended while the statement waited",
            armed: true,
        };
        // A safety net: whatever the service does, nothing waits much past
        // the operation's expiry.
        let give_up = tokio::time::sleep(request.settings.ttl + Duration::from_secs(10));
        tokio::pin!(give_up);
        tokio::pin!(client_gone);
        let mut cancelled = cancelled;
        let waited = {
            let hold = approvals.hold(self.pending_event.clone());
            tokio::pin!(hold);
            tokio::select! {
                r = &mut hold => Waited::Closed(r),
                _ = &mut cancelled => Waited::Cancelled,
                _ = &mut give_up => Waited::Closed(Err(ApprovalUnavailable(
                    "no decision arrived by the operation's expiry".into(),
                ))),
                _ = &mut client_gone => Waited::ClientGone,
            }
        };
        let verdict = &request.verdict;
        let (outcome, refusal) = match waited {
            Waited::ClientGone => {
                guard.reason = "the client disconnected while the statement waited";
                drop(guard);
                return Ok(HoldEnd::ClientGone);
            }
            Waited::Cancelled => {
                guard.reason = "the client cancelled the statement";
                drop(guard);
                let reason = format!(
                    "operation {operation_id} withdrawn: the client cancelled the statement"
                );
                (
                    refused(verdict, reason),
                    Refusal::Cancelled {
                        operation_id: operation_id.clone(),
                    },
                )
            }
            Waited::Closed(result) => {
                // Closed for the service: nothing left to withdraw. A
                // state this release does not know is refused below and
                // still withdrawn, so it cannot be approved afterwards.
                guard.armed = matches!(
                    &result,
                    Ok(o) if o.state == OperationState::Unspecified
                );
                guard.reason = "the operation closed in a state this proxy does not know";
                match result {
                    Ok(o) if o.releases() => {
                        let released = released(
                            verdict,
                            format!("operation {operation_id} approved: {}", o.reason),
                        );
                        recorder
                            .record_durably(vec![decision(request, &released, Stage::Approval)])
                            .await?;
                        return Ok(HoldEnd::Released(Arc::new(released)));
                    }
                    Ok(o) => {
                        let reason =
                            format!("operation {operation_id} {}: {}", o.state.label(), o.reason);
                        (
                            refused(verdict, reason),
                            Refusal::Closed {
                                operation_id: operation_id.clone(),
                                state: o.state,
                                reason: o.reason.clone(),
                            },
                        )
                    }
                    Err(e) => {
                        approvals.withdraw(&operation_id, "the proxy lost the approval service");
                        let reason = format!("operation {operation_id}: {e}");
                        (
                            refused(verdict, reason),
                            Refusal::Lost {
                                operation_id: operation_id.clone(),
                                error: e.to_string(),
                            },
                        )
                    }
                }
            }
        };
        recorder
            .record_durably(vec![decision(request, &outcome, Stage::Approval)])
            .await?;
        Ok(HoldEnd::Refused(refusal))
    }
}

/// The verdict under which an approved (or granted) request runs: its
/// results are masked, whatever the rule's review would have been.
fn released<S: Clone>(held: &Verdict<S>, reason: String) -> Verdict<S> {
    Verdict {
        outcome: Outcome::Mask,
        rule: held.rule.clone(),
        reason,
        max_rows: held.max_rows,
        over_limit: held.over_limit,
        shapes: held.shapes.clone(),
    }
}

fn refused<S: Default>(held: &Verdict<S>, reason: String) -> Verdict<S> {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use vigil_proto::events::Event;
    use vigil_proxy_core::approval::{GrantFuture, HoldFuture};
    use vigil_proxy_core::sink::RecordFuture;
    use vigil_proxy_core::{EventSink, SessionContext, VerifiedIdentity};

    use super::*;

    #[derive(Default)]
    struct Collecting(Mutex<Vec<Event>>);

    impl EventSink for Collecting {
        fn record(&self, event: Event) -> RecordFuture {
            self.0.lock().unwrap().push(event);
            Box::pin(async { Ok(()) })
        }
    }

    /// An approval service that answers as told: a grant id, a closing
    /// state, or never.
    #[derive(Debug, Default)]
    struct Scripted {
        grant: Option<String>,
        /// The grant check cannot reach the service.
        grant_unreachable: bool,
        closes_as: Option<OperationState>,
        withdrawn: Mutex<Vec<String>>,
    }

    impl Approvals for Scripted {
        fn covering_grant(&self, _: GrantQuery) -> GrantFuture {
            let grant = self.grant.clone();
            let unreachable = self.grant_unreachable;
            Box::pin(async move {
                if unreachable {
                    return Err(ApprovalUnavailable("connection refused".into()));
                }
                Ok(grant)
            })
        }
        fn hold(&self, _: Event) -> HoldFuture {
            match self.closes_as {
                Some(state) => Box::pin(async move {
                    Ok(HoldOutcome {
                        state,
                        reason: "because".into(),
                    })
                }),
                None => Box::pin(std::future::pending()),
            }
        }
        fn withdraw(&self, operation_id: &str, _: &str) {
            self.withdrawn.lock().unwrap().push(operation_id.into());
        }
    }

    async fn run(approvals: Arc<Scripted>, client_leaves: bool) -> (HoldEnd, Vec<String>) {
        let sink = Arc::new(Collecting::default());
        let identity = VerifiedIdentity {
            subject: "agent".into(),
            issuer: "test".into(),
            ..VerifiedIdentity::default()
        };
        let session = Arc::new(SessionContext::new(
            "ehr",
            &identity,
            vigil_proto::events::Protocol::Postgres,
        ));
        let recorder = SessionRecorder::open(session, sink.clone(), Default::default())
            .await
            .unwrap();
        let verdict = Arc::new(Verdict {
            outcome: Outcome::Review,
            rule: "review-export".into(),
            reason: "held".into(),
            max_rows: None,
            over_limit: Outcome::Deny,
            shapes: Default::default(),
        });
        let request = HoldRequest {
            request: Request::new_sql(
                0,
                vigil_proto::events::SqlStatement {
                    text: "COPY patients TO STDOUT".into(),
                    ..Default::default()
                },
            ),
            shown_to_approvers: "COPY patients TO STDOUT".into(),
            verdict,
            settings: ReviewSettings {
                rule: "review-export".into(),
                approver_groups: vec!["privacy".into()],
                quorum: 1,
                ttl: Duration::from_secs(60),
                max_grant: Duration::from_secs(3600),
            },
            approvals: approvals.clone(),
            subject: "agent".into(),
            issuer: "test".into(),
            policy_name: "phi".into(),
        };
        let notify = tokio::sync::Notify::new();
        let cancelled = notify.notified();
        tokio::pin!(cancelled);
        let end = match prepare(&recorder, request).await.unwrap() {
            Prepared::Done(end) => end,
            Prepared::Pending(p) => {
                let gone = async move {
                    if !client_leaves {
                        std::future::pending::<()>().await;
                    }
                };
                p.wait(&recorder, cancelled.as_mut(), gone).await.unwrap()
            }
        };
        let recorded = sink.0.lock().unwrap().clone();
        // One stream, numbered from 0 without a hole (the ledger's gap
        // watch would flag one), however many events a step records.
        let seqs: Vec<u64> = recorded.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..recorded.len() as u64).collect::<Vec<_>>());
        let kinds = recorded
            .iter()
            .map(|e| {
                let decision = |d: &vigil_proto::events::Decision| {
                    format!(
                        "decision {} {}{}",
                        d.outcome().label(),
                        d.stage().label(),
                        if d.reason.contains("could not be asked for a grant") {
                            " (no grant check)"
                        } else {
                            ""
                        }
                    )
                };
                match e.kind.as_ref().unwrap() {
                    Kind::Decision(d) => decision(d),
                    Kind::PendingOperation(_) => "pending".into(),
                    Kind::Request(r) => match &r.decision {
                        Some(d) => format!("request, {}", decision(d)),
                        None => "request".into(),
                    },
                    Kind::SessionOpened(_) => "opened".into(),
                    other => format!("{other:?}"),
                }
            })
            .collect();
        (end, kinds)
    }

    #[tokio::test]
    async fn a_grant_releases_at_once_and_a_denial_refuses_each_recorded() {
        let granted = Arc::new(Scripted {
            grant: Some("g1".into()),
            ..Default::default()
        });
        let (end, kinds) = run(granted, false).await;
        assert!(matches!(end, HoldEnd::Released(v) if v.outcome == Outcome::Mask));
        assert_eq!(kinds, ["opened", "request, decision mask grant"]);

        let denied = Arc::new(Scripted {
            closes_as: Some(OperationState::Denied),
            ..Default::default()
        });
        let (end, kinds) = run(denied.clone(), false).await;
        assert!(
            matches!(&end, HoldEnd::Refused(Refusal::Closed { state, .. }) if *state == OperationState::Denied),
            "{end:?}"
        );
        assert_eq!(
            kinds,
            [
                "opened",
                "request, decision review request",
                "pending",
                "decision deny approval"
            ]
        );
        assert!(
            denied.withdrawn.lock().unwrap().is_empty(),
            "closed, not withdrawn"
        );
    }

    #[tokio::test]
    async fn a_service_that_cannot_be_asked_for_a_grant_holds_the_request_for_its_return() {
        // The service is restarting: no grant can be checked, so the
        // request is held (the stricter path), and the operation is
        // approved once the service is back.
        let restarting = Arc::new(Scripted {
            grant_unreachable: true,
            closes_as: Some(OperationState::Approved),
            ..Default::default()
        });
        let (end, kinds) = run(restarting, false).await;
        assert!(matches!(end, HoldEnd::Released(v) if v.outcome == Outcome::Mask));
        assert_eq!(
            kinds,
            [
                "opened",
                "request, decision review request (no grant check)",
                "pending",
                "decision mask approval"
            ]
        );
    }

    #[tokio::test]
    async fn a_client_that_leaves_withdraws_the_operation() {
        let never = Arc::new(Scripted::default());
        let (end, kinds) = run(never.clone(), true).await;
        assert!(matches!(end, HoldEnd::ClientGone));
        assert_eq!(never.withdrawn.lock().unwrap().len(), 1);
        assert_eq!(kinds.last().map(String::as_str), Some("pending"));
    }
}
