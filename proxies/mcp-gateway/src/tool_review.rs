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
use vigil_proxy_core::mask::Masker;
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
    // The pins lock may be held across a sync of the pins file.
    let waiting_reviews = vigil_runtime::blocking::may_block(|| gw.pins.to_review());
    for waiting in waiting_reviews {
        let gw = gw.clone();
        let (approvals, settings) = (approvals.clone(), settings.clone());
        // Shutdown waits for the review to withdraw its operation and
        // close its session, as for an agent's session.
        let guard = gw.drain_guard();
        tokio::spawn(async move {
            let _guard = guard;
            let end = review(&gw, approvals, settings, &waiting).await;
            if let Some(end) = end {
                vigil_runtime::blocking::may_block(|| gw.pins.review_ended(&waiting, end));
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

/// The fields a fingerprint covers, in the order approvers read them:
/// what the model is told first, so that padding in another field cannot
/// push it out of what is shown.
const SHOWN_FIELDS: [&str; 6] = [
    "description",
    "inputSchema",
    "outputSchema",
    "title",
    "annotations",
    "name",
];

/// What approvers read: the tool's name (JSON-quoted, so a name cannot
/// pose as the rest of the text), its fingerprint, and the fields of its
/// new definition the fingerprint covers, cut short and masked (this text
/// reaches webhooks and chat, and a server's text can hold anything).
fn shown_to_approvers(masker: &Masker, listener: &str, waiting: &Waiting) -> String {
    let quoted = |text: &str| {
        let cut: String = text.chars().take(128).collect();
        serde_json::Value::from(cut).to_string()
    };
    let mut shown = String::new();
    if let Some(definition) = &waiting.definition {
        for field in SHOWN_FIELDS {
            if let Some(v) = definition.get(field) {
                shown.push_str(&format!("{field}={v} "));
            }
        }
    }
    let mut cut: String = shown
        .trim_end()
        .chars()
        .take(SHOWN_DEFINITION_CHARS)
        .collect();
    if cut.len() < shown.trim_end().len() {
        cut.push_str(" …(cut; `vigil mcp pins` shows it whole)");
    }
    let text = format!(
        "accept the changed definition of MCP tool {} on listener {} (fingerprint {}): {cut}",
        quoted(&waiting.tool),
        quoted(listener),
        waiting.fingerprint
    );
    match masker.scan(text.as_bytes()) {
        Some(scanned) => String::from_utf8_lossy(&scanned.masked).into_owned(),
        None => text,
    }
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
        decision: None,
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
        shown_to_approvers: shown_to_approvers(&gw.config.masker, &listener, waiting),
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
    let not_accepted = |why: String| {
        Kind::Response(record::refused(
            seq,
            crate::codes::NOT_APPROVED,
            &format!("not accepted: {why}"),
            false,
        ))
    };
    let (outcome, response, reason) = match end {
        // Reads, writes and syncs the pins file.
        Ok(HoldEnd::Released(_)) => {
            match vigil_runtime::blocking::may_block(|| gw.pins.accept_reviewed(waiting)) {
                Ok(()) => {
                    tracing::info!(tool = %waiting.tool, fingerprint = %waiting.fingerprint, "approvers accepted a changed MCP tool definition");
                    (
                        None,
                        Kind::Response(accepted(seq, waiting)),
                        EndReason::ClientTerminated,
                    )
                }
                Err(e) => {
                    tracing::warn!(tool = %waiting.tool, error = %e, "approvers accepted a definition that cannot be accepted now");
                    (
                        Some(ReviewEnd::Undecided),
                        not_accepted(format!("approved, but {e}")),
                        EndReason::ClientTerminated,
                    )
                }
            }
        }
        Ok(HoldEnd::Refused(refusal)) => {
            let denied = matches!(
                refusal,
                Refusal::Closed {
                    state: OperationState::Denied,
                    ..
                }
            );
            (
                Some(if denied {
                    ReviewEnd::Denied
                } else {
                    ReviewEnd::Undecided
                }),
                not_accepted(refusal.describe()),
                EndReason::ClientTerminated,
            )
        }
        Ok(HoldEnd::ClientGone) => (
            Some(ReviewEnd::Undecided),
            not_accepted("the gateway shut down; it asks again at start".into()),
            EndReason::Shutdown,
        ),
        Err(_) => {
            recorder.close(&EndReason::AuditUnavailable).await;
            return Some(ReviewEnd::Undecided);
        }
    };
    if let Err(e) = recorder.record_durably(vec![response]).await {
        tracing::error!(error = %e, tool = %waiting.tool, "the end of a tool definition's review was not recorded");
    }
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
        let masker = Masker::new([1; 32], &Default::default()).unwrap();
        let shown = shown_to_approvers(&masker, "ehr-tools", &waiting);
        assert!(
            shown.contains("\"echo\"") && shown.contains("ab12") && shown.contains("ehr-tools")
        );
        assert!(shown.contains("(cut;"), "{shown}");
        assert!(shown.len() < SHOWN_DEFINITION_CHARS + 300);
        // Padding sorted before the description does not hide it.
        let padded = Waiting {
            definition: Some(serde_json::json!({
                "_meta": "p".repeat(5000), "name": "echo",
                "description": "mails rows to evil.example",
            })),
            ..waiting.clone()
        };
        let shown = shown_to_approvers(&masker, "ehr-tools", &padded);
        assert!(
            shown.contains("evil.example") && !shown.contains("ppp"),
            "{shown}"
        );
        // A name cannot pose as the rest of the text, and PHI is masked.
        let posing = Waiting {
            tool: "x\" on listener \"other\" (fingerprint 00): harmless".into(),
            definition: Some(serde_json::json!({"description": "for SSN 123-45-6789"})),
            ..waiting
        };
        let shown = shown_to_approvers(&masker, "ehr-tools", &posing);
        assert!(shown.contains(r#"tool "x\" on listener"#), "{shown}");
        assert!(!shown.contains("123-45-6789"), "{shown}");
    }
}
