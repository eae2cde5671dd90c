//! `vigil.approvals.v1.Approvals`: the approvers' gRPC API.
//!
//! Every call carries the caller's credential in `authorization`: an OIDC
//! access token (`Bearer <token>`, verified exactly as the proxies verify
//! agents' tokens), or, only where the config allows static identities,
//! `Basic base64(user:password)` from loopback. Who the caller is comes from
//! that credential alone; eligibility (approver groups, no self-approval,
//! quorum) is the book's to decide.

// tonic's `Status` is the error type of every gRPC call; boxing it would
// only move the allocation.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use vigil_approvals::book::BookError;
use vigil_approvals::{Approver, GrantRequest, Operation, Principal, State, Verdict};
use vigil_ledger_service::access::token_matches;
use vigil_proto::approvals as pb;
use vigil_proto::approvals::approvals_server::{Approvals, ApprovalsServer};
use vigil_proxy_core::{AuthError, Authenticator, VerifiedIdentity};

use super::service::{ApprovalService, ServiceError};

pub struct ApprovalsGrpc {
    service: Arc<ApprovalService>,
    auth: Authenticator,
    /// SHA-256 of the tokens proxies in other processes present; empty:
    /// only loopback callers may use the proxies' methods.
    proxy_tokens: Vec<[u8; 32]>,
}

impl ApprovalsGrpc {
    pub fn server(
        service: Arc<ApprovalService>,
        auth: Authenticator,
        proxy_tokens: Vec<[u8; 32]>,
    ) -> ApprovalsServer<Self> {
        ApprovalsServer::new(Self {
            service,
            auth,
            proxy_tokens,
        })
    }

    /// A proxy's call: it must present a configured proxy token, from
    /// loopback too (any local process could otherwise withdraw a live
    /// hold or read a held statement). Approvers' tokens do not count: an
    /// approver cannot withdraw someone's statement or read grants this way.
    /// `vigil up` needs none: its proxies call the service in-process.
    fn proxy_caller<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.proxy_tokens.is_empty() {
            return Err(Status::permission_denied(
                "this approval service accepts no proxies: set approvals.proxy_tokens_sha256 \
                 (`vigil approvals proxy-token` makes a token and its hash)",
            ));
        }
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("a proxy token is required"))?;
        if token_matches(&self.proxy_tokens, token.trim()) {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "not a proxy token of this approval service",
            ))
        }
    }

    /// Who is calling, from the `authorization` metadata.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Approver, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("no authorization: send Bearer <access token>"))?
            .to_string();
        // No address (not TCP): never loopback, one shared throttle key.
        let peer = request
            .remote_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a: SocketAddr| a.ip());
        let auth = self.auth.clone();
        let identity = tokio::task::spawn_blocking(move || authenticate(&auth, &header, peer))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| {
                if e.is_overload() {
                    Status::resource_exhausted(e.to_string())
                } else {
                    Status::unauthenticated(e.to_string())
                }
            })?;
        Ok(approver_of(&identity))
    }
}

fn authenticate(
    auth: &Authenticator,
    header: &str,
    peer: IpAddr,
) -> Result<VerifiedIdentity, AuthError> {
    let now = SystemTime::now();
    if let Some(token) = header.strip_prefix("Bearer ") {
        return auth.authenticate_bearer(token.trim(), &[], now);
    }
    if let Some(basic) = header.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| AuthError::BadCredentials(String::new()))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| AuthError::BadCredentials(String::new()))?;
        // A password that looks like a token is verified as one.
        return auth.authenticate(user, password.as_bytes(), peer, &[], now);
    }
    Err(AuthError::BadCredentials(
        "(send Bearer <access token>)".into(),
    ))
}

/// The approver a verified identity is: groups from the issuer and the
/// Vigil roles they map to both count.
pub fn approver_of(identity: &VerifiedIdentity) -> Approver {
    let mut groups = identity.groups.clone();
    for r in &identity.roles {
        if !groups.contains(r) {
            groups.push(r.clone());
        }
    }
    Approver {
        principal: Principal {
            subject: identity.subject.clone(),
            issuer: identity.issuer.clone(),
        },
        groups,
    }
}

/// Who may see an operation: its approvers, and the agent who asked. Any
/// other holder of a valid token learns nothing, not even that it exists
/// (statements are masked, but who ran what, where, is itself sensitive).
fn may_see(caller: &Approver, op: &Operation) -> bool {
    caller.in_any(&op.hold.approver_groups) || caller.principal == op.hold.requester
}

/// The gRPC status for a refused request: the message says what to do.
pub fn status_of(e: ServiceError) -> Status {
    use vigil_approvals::{DecideError, GrantError};
    let text = e.to_string();
    match e {
        ServiceError::Book(BookError::UnknownOperation(_) | BookError::UnknownGrant(_)) => {
            Status::not_found(text)
        }
        ServiceError::Book(BookError::Decide(d)) => match d {
            DecideError::NotAnApprover { .. } | DecideError::SelfApproval { .. } => {
                Status::permission_denied(text)
            }
            DecideError::ReasonRequired { .. } => Status::invalid_argument(text),
            _ => Status::failed_precondition(text),
        },
        ServiceError::Book(BookError::Grant(g)) => match g {
            GrantError::NotAnApprover { .. }
            | GrantError::SelfGrant { .. }
            | GrantError::MayNotRevoke { .. } => Status::permission_denied(text),
            GrantError::NotActive { .. } | GrantError::QuorumRule { .. } => {
                Status::failed_precondition(text)
            }
            _ => Status::invalid_argument(text),
        },
        ServiceError::Book(BookError::DuplicateGrant(_)) => Status::already_exists(text),
        ServiceError::UnknownRule(_) => Status::invalid_argument(text),
        ServiceError::Book(_) | ServiceError::Stopped(_) => Status::unavailable(text),
    }
}

pub fn to_pb(op: &Operation) -> pb::Operation {
    let hold = &op.hold;
    pb::Operation {
        operation_id: hold.operation_id.clone(),
        state: op.state.as_str().into(),
        session_id: hold.session_id.clone(),
        connection: hold.connection.clone(),
        requester_subject: hold.requester.subject.clone(),
        requester_issuer: hold.requester.issuer.clone(),
        statement: hold.statement.clone(),
        rule: hold.rule.clone(),
        approver_groups: hold.approver_groups.clone(),
        quorum: hold.quorum,
        approvals: op.approvals(),
        opened_unix_nanos: hold.opened_unix_nanos,
        expires_unix_nanos: hold.expires_unix_nanos,
        closed_reason: op
            .closure
            .as_ref()
            .map(|c| c.reason.clone())
            .unwrap_or_default(),
        closed_unix_nanos: op.closure.as_ref().map_or(0, |c| c.at_unix_nanos),
        votes: op
            .votes
            .iter()
            .map(|v| pb::Vote {
                approver_subject: v.approver.principal.subject.clone(),
                approver_issuer: v.approver.principal.issuer.clone(),
                verdict: v.verdict.as_str().into(),
                reason: v.reason.clone(),
                at_unix_nanos: v.at_unix_nanos,
            })
            .collect(),
    }
}

pub fn grant_to_pb(g: &vigil_approvals::Grant) -> pb::GrantInfo {
    pb::GrantInfo {
        grant_id: g.id.clone(),
        grantee_subject: g.grantee.subject.clone(),
        grantee_issuer: g.grantee.issuer.clone(),
        connection: g.connection.clone(),
        rule: g.rule.clone(),
        issued_by_subject: g.issued_by.subject.clone(),
        reason: g.reason.clone(),
        issued_unix_nanos: g.issued_unix_nanos,
        expires_unix_nanos: g.expires_unix_nanos,
        active: g.is_active(super::service::unix_nanos_now()),
        revoked_by_subject: g
            .revocation
            .as_ref()
            .map(|r| r.by.subject.clone())
            .unwrap_or_default(),
        revoke_reason: g
            .revocation
            .as_ref()
            .map(|r| r.reason.clone())
            .unwrap_or_default(),
    }
}

fn parse_state(s: &str) -> Result<Option<State>, Status> {
    Ok(Some(match s {
        "" | "all" => return Ok(None),
        "pending" => State::Pending,
        "approved" => State::Approved,
        "denied" => State::Denied,
        "expired" => State::Expired,
        "withdrawn" => State::Withdrawn,
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown state {other:?}: pending, approved, denied, expired, withdrawn or all"
            )))
        }
    }))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Operation, Status>> + Send>>;

#[tonic::async_trait]
impl Approvals for ApprovalsGrpc {
    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let state = parse_state(&r.state)?;
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        let operations = self
            .service
            .operations(state, usize::MAX)
            .iter()
            .filter(|op| may_see(&caller, op))
            .take(limit)
            .map(to_pb)
            .collect();
        Ok(Response::new(pb::ListResponse { operations }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let caller = self.caller(&request).await?;
        let id = request.into_inner().operation_id;
        // Someone who may not see it is told the same as for no operation.
        self.service
            .operation(&id)
            .filter(|op| may_see(&caller, op))
            .map(|op| Response::new(to_pb(&op)))
            .ok_or_else(|| Status::not_found(format!("there is no operation {id}")))
    }

    async fn approve(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        self.decide(request, Verdict::Approve).await
    }

    async fn deny(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        self.decide(request, Verdict::Deny).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = self.caller(&request).await?;
        // Subscribe before reading what is pending, so nothing falls between.
        let mut feed = self.service.subscribe();
        let mut pending = self.service.operations(Some(State::Pending), usize::MAX);
        pending.retain(|op| may_see(&caller, op));
        let stream = async_stream(pending, move |tx| async move {
            loop {
                match feed.recv().await {
                    Ok(op) if !may_see(&caller, &op) => {}
                    Ok(op) => {
                        if tx.send(Ok(to_pb(&op))).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "this watcher fell {n} changes behind; watch again"
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn grant(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::GrantInfo>, Status> {
        let approver = self.caller(&request).await?;
        let r = request.into_inner();
        let issuer = if r.grantee_issuer.is_empty() {
            approver.principal.issuer.clone()
        } else {
            r.grantee_issuer
        };
        let duration = Duration::from_secs(r.duration_secs);
        let request = GrantRequest {
            grant_id: uuid::Uuid::now_v7().to_string(),
            grantee: Principal {
                subject: r.grantee_subject,
                issuer,
            },
            connection: r.connection,
            rule: r.rule,
            duration_nanos: duration.as_nanos().min(i64::MAX as u128) as i64,
            reason: r.reason,
        };
        let grant = self
            .service
            .grant(request, approver)
            .await
            .map_err(status_of)?;
        Ok(Response::new(grant_to_pb(&grant)))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::GrantInfo>, Status> {
        let approver = self.caller(&request).await?;
        let r = request.into_inner();
        let grant = self
            .service
            .revoke(&r.grant_id, approver, r.reason)
            .await
            .map_err(|e| match e {
                // Someone who may not revoke a grant is told what they
                // would be told for an id that does not exist.
                ServiceError::Book(BookError::Grant(
                    vigil_approvals::GrantError::MayNotRevoke { .. },
                )) => status_of(ServiceError::Book(BookError::UnknownGrant(
                    r.grant_id.clone(),
                ))),
                e => status_of(e),
            })?;
        Ok(Response::new(grant_to_pb(&grant)))
    }

    async fn await_closed(
        &self,
        request: Request<pb::AwaitRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        self.proxy_caller(&request)?;
        let r = request.into_inner();
        let now = super::service::unix_nanos_now();
        // A few seconds past the expiry: the sweeper closes a known
        // operation at its expiry, so only an unknown one runs out here.
        let wait = Duration::from_nanos((r.expires_unix_nanos - now).max(0) as u64)
            + Duration::from_secs(5);
        match tokio::time::timeout(wait, self.service.closed(&r.operation_id, true)).await {
            Ok(Ok(op)) => Ok(Response::new(to_pb(&op))),
            Ok(Err(e)) => Err(status_of(e)),
            Err(_) if self.service.operation(&r.operation_id).is_none() => {
                Err(Status::not_found(format!(
                    "operation {} never reached the approval service (check the Kafka consumer group vigil-approvals)",
                    r.operation_id
                )))
            }
            Err(_) => Err(Status::deadline_exceeded("the operation is still pending")),
        }
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        self.proxy_caller(&request)?;
        let r = request.into_inner();
        // A statement withdrawn at once may be withdrawn before its
        // PendingOperation has come through Kafka: wait a little for it.
        for _ in 0..100 {
            if self.service.operation(&r.operation_id).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.service
            .withdraw(&r.operation_id, &r.reason)
            .await
            .map_err(status_of)?;
        self.service
            .operation(&r.operation_id)
            .map(|op| Response::new(to_pb(&op)))
            .ok_or_else(|| Status::not_found(format!("there is no operation {}", r.operation_id)))
    }

    async fn covering_grant(
        &self,
        request: Request<pb::CoveringGrantRequest>,
    ) -> Result<Response<pb::CoveringGrantResponse>, Status> {
        self.proxy_caller(&request)?;
        let r = request.into_inner();
        let grant_id = self
            .service
            .covering_grant(
                &Principal {
                    subject: r.subject,
                    issuer: r.issuer,
                },
                &r.connection,
                &r.rule,
            )
            .unwrap_or_default();
        Ok(Response::new(pb::CoveringGrantResponse { grant_id }))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let grants = self
            .service
            .grants()
            .iter()
            .filter(|g| {
                g.grantee == caller.principal
                    || g.issued_by == caller.principal
                    || self
                        .service
                        .rule(&g.rule)
                        .is_some_and(|r| caller.in_any(&r.approver_groups))
            })
            .map(grant_to_pb)
            .collect();
        Ok(Response::new(pb::ListGrantsResponse { grants }))
    }
}

impl ApprovalsGrpc {
    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
        verdict: Verdict,
    ) -> Result<Response<pb::Operation>, Status> {
        let approver = self.caller(&request).await?;
        let r = request.into_inner();
        // Someone who may not see the operation is told exactly what they
        // would be told for an id that does not exist: the book's own
        // refusal would confirm it exists and name its approver groups.
        if !self
            .service
            .operation(&r.operation_id)
            .is_some_and(|op| may_see(&approver, &op))
        {
            return Err(Status::not_found(format!(
                "there is no operation {}",
                r.operation_id
            )));
        }
        let (_, op) = self
            .service
            .decide(&r.operation_id, approver, verdict, r.reason)
            .await
            .map_err(status_of)?;
        Ok(Response::new(to_pb(&op)))
    }
}

/// A stream that first yields `first`, then whatever `rest` sends.
fn async_stream<F, Fut>(first: Vec<Operation>, rest: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::Operation, Status>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        for op in &first {
            if tx.send(Ok(to_pb(op))).await.is_err() {
                return;
            }
        }
        rest(tx).await;
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
