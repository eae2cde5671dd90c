//! A tool whose definition changed since it was pinned goes to approvers
//! through the approval service, as a held request does: the gateway asks
//! in a session of its own (subject `vigil:mcp-gateway/<listener>`, so no
//! agent can approve it as "someone else's" request and no grant covers
//! it), records the Request (the new definition), the review Decision and
//! the PendingOperation, and waits. Approved: the new fingerprint becomes
//! the tool's pin, the Response of that request says so, and the next
//! `tools/list` lists the tool again. Denied: it stays hidden and is not
//! asked about again while the gateway runs. Expired or the service lost:
//! the next `tools/list` that shows the change asks again; a restart asks
//! again for every change still waiting.
//!
//! Who decides is the policy's `[review]` section (its approver groups,
//! quorum and expiry). Without approver groups or an approval service
//! only the operator can accept (`vigil mcp accept-tool`).

use std::sync::Arc;
use std::time::Duration;

use vigil_mcp::policy::Verdict;
use vigil_proto::events::{
    event::Kind, request, response, session_opened, McpDirection, McpMessage, McpResult,
    McpSession, OperationState, Protocol, Request, Response, SessionOpened,
};
use vigil_proxy_core::identity::VerifiedIdentity;
use vigil_proxy_core::policy::{Outcome, ReviewSettings};
use vigil_proxy_core::SessionContext;
use vigil_runtime::hold::{self, HoldEnd, HoldRequest, Prepared, Refusal};
use vigil_runtime::recorder::{EndReason, SessionRecorder};

use crate::http::McpGateway;
use crate::pins::{ReviewEnd, Waiting, CHANGED_RULE};
use crate::record;

/// The method the review's Request event is recorded under: not a method
/// of the protocol, so no rule written for agents' messages matches it.
pub const METHOD: &str = "vigil/tool-definition-changed";

/// How much of a definition approvers (and webhooks) are shown; the whole
/// is in the Request event and in `vigil mcp pins`.
const SHOWN_DEFINITION_CHARS: usize = 2000;

/// Asks approvers about every changed definition not under review yet.
/// Does nothing when nobody could decide (no approval service, or no
/// approver group in `[review]`).
pub(crate) fn start(gw: &Arc<McpGateway>) {
    let Some(approvals) = gw.config.approvals.clone() else {
        return;
    };
    let Some(settings) = gw.config.policy.review_defaults_as(CHANGED_RULE) else {
        return;
    };
    // Accepting a definition is one decision about one fingerprint: never
    // covered by a time-boxed grant.
    let settings = ReviewSettings {
        max_grant: Duration::ZERO,
        ..settings
    };
    for waiting in gw.pins.to_review() {
        let gw = gw.clone();
        let (approvals, settings) = (approvals.clone(), settings.clone());
        tokio::spawn(async move {
            let end = review(&gw, approvals, settings, &waiting).await;
            if let Some(end) = end {
                gw.pins.review_ended(&waiting, end);
            }
        });
    }
}

/// The gateway's own identity, as the requester of its reviews.
fn gateway_identity(listener: &str) -> VerifiedIdentity {
    VerifiedIdentity {
        subject: format!("vigil:mcp-gateway/{listener}"),
        issuer: "vigil".into(),
        auth_method: "gateway".into(),
        ..VerifiedIdentity::default()
    }
}

/// What approvers read: the tool, its fingerprint, and its new definition
/// (cut short).
fn shown_to_approvers(listener: &str, waiting: &Waiting) -> String {
    let definition = waiting
        .definition
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_else(|| "(not kept: see `vigil mcp pins`)".into());
    let mut shown: String = definition.chars().take(SHOWN_DEFINITION_CHARS).collect();
    if shown.len() < definition.len() {
        shown.push_str(" …(cut; `vigil mcp pins` shows it whole)");
    }
    format!(
        "accept the changed definition of MCP tool \"{}\" on listener {listener} (fingerprint {}): {shown}",
        waiting.tool, waiting.fingerprint
    )
}

/// One review, from its session's opening to its closing. `None`: the
/// acceptance was made (or failed and was logged), nothing to note.
async fn review(
    gw: &Arc<McpGateway>,
    approvals: Arc<dyn vigil_proxy_core::approval::Approvals>,
    settings: ReviewSettings,
    waiting: &Waiting,
) -> Option<ReviewEnd> {
    let listener = gw.config.name.clone();
    let identity = gateway_identity(&listener);
    let context = Arc::new(SessionContext::new(&listener, &identity, Protocol::Mcp));
    let opened = SessionOpened {
        upstream_addr: gw.config.upstream_label.clone(),
        detail: Some(session_opened::Detail::Mcp(McpSession {
            upstream: gw.config.upstream_label.clone(),
            ..McpSession::default()
        })),
        ..SessionOpened::default()
    };
    let recorder = match SessionRecorder::open(context, gw.sink.clone(), opened).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, tool = %waiting.tool, "cannot record the review of a changed MCP tool; it stays hidden");
            return Some(ReviewEnd::Undecided);
        }
    };
    let seq = recorder.session().next_statement_seq();
    let definition = waiting
        .definition
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let request = Request {
        request_seq: seq,
        detail: Some(request::Detail::Mcp(McpMessage {
            direction: McpDirection::ServerToClient as i32,
            method: METHOD.into(),
            name: waiting.tool.clone(),
            params: Some(record::parameter(definition.as_bytes())),
            ..McpMessage::default()
        })),
    };
    let verdict = Verdict {
        outcome: Outcome::Review,
        rule: CHANGED_RULE.into(),
        reason: format!(
            "the definition of tool \"{}\" changed since it was pinned; fingerprint {} waits for approvers",
            waiting.tool, waiting.fingerprint
        ),
        max_rows: None,
        over_limit: Outcome::Deny,
        shapes: (),
    };
    let hold_request = HoldRequest {
        request,
        shown_to_approvers: shown_to_approvers(&listener, waiting),
        verdict: Arc::new(verdict),
        settings,
        approvals,
        subject: identity.subject.clone(),
        issuer: identity.issuer.clone(),
        policy_name: gw.config.policy.name().to_string(),
    };
    let prepared = match hold::prepare(&recorder, hold_request).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, tool = %waiting.tool, "cannot record the review of a changed MCP tool; it stays hidden");
            recorder.close(&EndReason::AuditUnavailable).await;
            return Some(ReviewEnd::Undecided);
        }
    };
    let end = match prepared {
        Prepared::Done(end) => Ok(end),
        Prepared::Pending(pending) => {
            tracing::info!(tool = %waiting.tool, operation = %pending.operation_id(), "a changed MCP tool definition waits for approvers");
            // Nothing cancels it but the gateway's shutdown (the operation
            // is withdrawn then; the next start asks again).
            let never = tokio::sync::Notify::new();
            let cancelled = std::pin::pin!(never.notified());
            pending.wait(&recorder, cancelled, gw.closing()).await
        }
    };
    let (outcome, reason) = match end {
        Ok(HoldEnd::Released(_)) => match gw.pins.accept_reviewed(waiting) {
            Ok(()) => {
                tracing::info!(tool = %waiting.tool, fingerprint = %waiting.fingerprint, "approvers accepted a changed MCP tool definition");
                recorder.record_in_background(Kind::Response(accepted(seq, waiting)));
                (None, EndReason::ClientTerminated)
            }
            Err(e) => {
                tracing::warn!(tool = %waiting.tool, error = %e, "approvers accepted a definition that no longer waits");
                recorder.record_in_background(Kind::Response(record::refused(
                    seq,
                    crate::codes::REFUSED,
                    &format!("approved, but not accepted: {e}"),
                    false,
                )));
                (Some(ReviewEnd::Undecided), EndReason::ClientTerminated)
            }
        },
        Ok(HoldEnd::Refused(Refusal::Closed {
            state: OperationState::Denied,
            ..
        })) => (Some(ReviewEnd::Denied), EndReason::ClientTerminated),
        Ok(HoldEnd::Refused(_)) => (Some(ReviewEnd::Undecided), EndReason::ClientTerminated),
        Ok(HoldEnd::ClientGone) => (Some(ReviewEnd::Undecided), EndReason::Shutdown),
        Err(_) => (Some(ReviewEnd::Undecided), EndReason::AuditUnavailable),
    };
    recorder.close(&reason).await;
    outcome
}

/// The Response of an accepted review: the pin it made.
fn accepted(seq: u64, waiting: &Waiting) -> Response {
    Response {
        request_seq: seq,
        detail: Some(response::Detail::Mcp(McpResult {
            pins_accepted: vec![format!("{}={}", waiting.tool, waiting.fingerprint)],
            ..McpResult::default()
        })),
        ..Response::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvers_read_the_tool_its_fingerprint_and_a_bounded_definition() {
        let waiting = Waiting {
            tool: "echo".into(),
            fingerprint: "ab12".into(),
            definition: Some(serde_json::json!({
                "name": "echo",
                "description": "x".repeat(5000),
            })),
        };
        let shown = shown_to_approvers("ehr-tools", &waiting);
        assert!(
            shown.contains("\"echo\"") && shown.contains("ab12") && shown.contains("ehr-tools")
        );
        assert!(shown.contains("(cut;"), "{shown}");
        assert!(shown.len() < SHOWN_DEFINITION_CHARS + 300);
        let none = shown_to_approvers(
            "l",
            &Waiting {
                definition: None,
                ..waiting
            },
        );
        assert!(none.contains("vigil mcp pins"));
    }
}
