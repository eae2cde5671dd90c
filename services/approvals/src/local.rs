//! The proxy's view of an approval service in the same process (`vigil up`):
//! the [`Approvals`] trait answered by direct calls into the service.

use std::sync::Arc;

use vigil_approvals::{hold_of, Principal};
use vigil_proto::events::Event;
use vigil_proxy_core::approval::{
    ApprovalUnavailable, Approvals, GrantFuture, GrantQuery, HoldFuture, HoldOutcome,
};

use super::service::ApprovalService;

pub struct LocalApprovals {
    service: Arc<ApprovalService>,
}

impl std::fmt::Debug for LocalApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalApprovals")
    }
}

impl LocalApprovals {
    pub fn new(service: Arc<ApprovalService>) -> Arc<Self> {
        Arc::new(Self { service })
    }
}

/// What the proxy is told about a closed operation.
pub fn outcome_of(op: &vigil_approvals::Operation) -> HoldOutcome {
    HoldOutcome {
        state: op.state.to_event(),
        reason: op
            .closure
            .as_ref()
            .map(|c| c.reason.clone())
            .unwrap_or_default(),
    }
}

impl Approvals for LocalApprovals {
    fn covering_grant(&self, query: GrantQuery) -> GrantFuture {
        let found = self.service.covering_grant(
            &Principal {
                subject: query.subject,
                issuer: query.issuer,
            },
            &query.connection,
            &query.rule,
        );
        Box::pin(async move { Ok(found) })
    }

    fn hold(&self, pending: Event) -> HoldFuture {
        let service = self.service.clone();
        Box::pin(async move {
            let hold = hold_of(&pending)
                .ok_or_else(|| ApprovalUnavailable("not a PendingOperation event".into()))?;
            let id = hold.operation_id.clone();
            service
                .hold(hold)
                .await
                .map_err(|e| ApprovalUnavailable(e.to_string()))?;
            let op = service
                .closed(&id, false)
                .await
                .map_err(|e| ApprovalUnavailable(e.to_string()))?;
            Ok(outcome_of(&op))
        })
    }

    fn withdraw(&self, operation_id: &str, reason: &str) {
        let (service, id, reason) = (
            self.service.clone(),
            operation_id.to_string(),
            reason.to_string(),
        );
        // Called from a Drop too: never block, never panic outside a runtime.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = service.withdraw(&id, &reason).await {
                    tracing::warn!(operation = %id, error = %e, "cannot withdraw operation");
                }
            });
        }
    }
}
