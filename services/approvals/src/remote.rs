//! The proxy's view of an approval service in another process (`vigil
//! proxy` with `[approval_service]`): the [`Approvals`] trait over the
//! service's gRPC API.
//!
//! The PendingOperation reaches the service the way every event does, from
//! the proxy's outbox through Kafka (the service consumes the topic); the
//! proxy then asks `AwaitClosed` and waits. A broken call (the service
//! restarting, a network blip) is asked again until the operation's expiry,
//! so a restart of the service loses no held statement: its book is durable
//! and the PendingOperation stays in Kafka until the service has it. A
//! withdrawal (the client left) is tried again the same way, so that an
//! operation nobody waits for does not stay approvable. An answer that
//! asking again cannot change (a refused token) refuses the statement at
//! once.

// tonic's `Status` is the error type of every gRPC call.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use vigil_proto::approvals as pb;
use vigil_proto::approvals::approvals_client::ApprovalsClient;
use vigil_proto::events::{event::Kind, Event};
use vigil_proxy_core::approval::{
    ApprovalUnavailable, Approvals, GrantFuture, GrantQuery, HoldFuture, HoldOutcome,
};

use super::service::unix_nanos_now;

/// How long one call may take to connect; a hold's own wait is its expiry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct RemoteApprovals {
    channel: Channel,
    token: Option<AsciiMetadataValue>,
    url: String,
}

impl std::fmt::Debug for RemoteApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteApprovals({})", self.url)
    }
}

impl RemoteApprovals {
    /// A client of the service at `url` (connected lazily: the proxy starts
    /// while the service is down, and its held statements wait for it).
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<std::sync::Arc<Self>> {
        let channel = Endpoint::from_shared(url.to_string())?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy();
        let token = token
            .map(|t| format!("Bearer {}", t.trim()).parse())
            .transpose()
            .map_err(|_| anyhow::anyhow!("approval_service token is not a valid header value"))?;
        Ok(std::sync::Arc::new(Self {
            channel,
            token,
            url: url.to_string(),
        }))
    }

    fn client(
        &self,
    ) -> ApprovalsClient<tonic::service::interceptor::InterceptedService<Channel, Auth>> {
        ApprovalsClient::with_interceptor(self.channel.clone(), Auth(self.token.clone()))
    }
}

#[derive(Clone)]
pub struct Auth(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    }
}

/// Whether asking again can help: the service restarting or unreachable,
/// a call cut short. A refused token, a malformed request or an unknown
/// operation stay so however often they are asked, and the held statement
/// is refused at once rather than left waiting for its expiry.
fn transient(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unavailable
            | DeadlineExceeded
            | Cancelled
            | Unknown
            | Aborted
            | ResourceExhausted
            | Internal
    )
}

/// How long a withdrawal is tried while the service is away: a held
/// operation whose client left must not stay approvable once the service
/// is back (nothing could run, but approvers would be asked for nothing).
const WITHDRAW_FOR: Duration = Duration::from_secs(600);

fn unavailable(s: tonic::Status) -> ApprovalUnavailable {
    ApprovalUnavailable(format!("{}: {}", s.code(), s.message()))
}

impl Approvals for RemoteApprovals {
    fn covering_grant(&self, q: GrantQuery) -> GrantFuture {
        let mut client = self.client();
        Box::pin(async move {
            let r = client
                .covering_grant(pb::CoveringGrantRequest {
                    subject: q.subject,
                    issuer: q.issuer,
                    connection: q.connection,
                    rule: q.rule,
                })
                .await
                .map_err(unavailable)?
                .into_inner();
            Ok((!r.grant_id.is_empty()).then_some(r.grant_id))
        })
    }

    fn hold(&self, pending: Event) -> HoldFuture {
        let mut client = self.client();
        Box::pin(async move {
            let Some(Kind::PendingOperation(p)) = pending.kind else {
                return Err(ApprovalUnavailable("not a PendingOperation event".into()));
            };
            let request = pb::AwaitRequest {
                operation_id: p.operation_id.clone(),
                expires_unix_nanos: p.expires_unix_nanos,
            };
            loop {
                match client.await_closed(request.clone()).await {
                    Ok(op) => {
                        let op = op.into_inner();
                        return Ok(HoldOutcome {
                            // An unknown word reads as unspecified, which
                            // never releases the statement.
                            state: vigil_proto::events::OperationState::from_label(&op.state),
                            reason: op.closed_reason,
                        });
                    }
                    Err(s) if !transient(s.code()) => return Err(unavailable(s)),
                    // Unreachable, restarting, or a call cut short: ask
                    // again until the operation would have expired anyway.
                    Err(s) if unix_nanos_now() < p.expires_unix_nanos + 5_000_000_000 => {
                        tracing::warn!(operation = %p.operation_id, error = %s.message(), "approval service not answering; asking again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(s) => return Err(unavailable(s)),
                }
            }
        })
    }

    fn withdraw(&self, operation_id: &str, reason: &str) {
        let mut client = self.client();
        let request = pb::WithdrawRequest {
            operation_id: operation_id.to_string(),
            reason: reason.to_string(),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let give_up = tokio::time::Instant::now() + WITHDRAW_FOR;
                loop {
                    match client.withdraw(request.clone()).await {
                        Ok(_) => return,
                        // NotFound: its PendingOperation has not come
                        // through Kafka yet (the service restarted).
                        Err(e)
                            if (transient(e.code()) || e.code() == tonic::Code::NotFound)
                                && tokio::time::Instant::now() < give_up =>
                        {
                            tracing::warn!(operation = %request.operation_id, error = %e.message(), "cannot withdraw operation yet; trying again");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => {
                            tracing::warn!(operation = %request.operation_id, error = %e.message(), "cannot withdraw operation");
                            return;
                        }
                    }
                }
            });
        }
    }
}
