//! What a proxy needs from the approval service while it holds a statement.
//!
//! Runtime-neutral, like [`EventSink`](crate::EventSink): boxed futures, so
//! that the in-process service (`vigil up`) and a remote one (a separate
//! `vigil approvals` process) look the same to the relay.
//!
//! The proxy records its PendingOperation event durably first (in the
//! session's stream, before anything waits), then hands the same event here
//! and waits for the operation to close. Only an `approved` closure lets the
//! statement run; anything else, including the service being unreachable,
//! refuses it (fail closed).

use std::future::Future;
use std::pin::Pin;

use vigil_proto::events::{Event, OperationState};

/// How a held operation ended, as the proxy needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldOutcome {
    pub state: OperationState,
    /// Why: the denial's reason, who approved, or when it expired.
    pub reason: String,
}

impl HoldOutcome {
    /// Whether the statement may run.
    pub fn releases(&self) -> bool {
        self.state == OperationState::Approved
    }
}

/// The approval service could not be asked (or stopped answering).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the approval service is unavailable ({0})")]
pub struct ApprovalUnavailable(pub String);

pub type HoldFuture =
    Pin<Box<dyn Future<Output = Result<HoldOutcome, ApprovalUnavailable>> + Send + 'static>>;
pub type GrantFuture =
    Pin<Box<dyn Future<Output = Result<Option<String>, ApprovalUnavailable>> + Send + 'static>>;

/// Who is asking, where, under which rule: what a grant must cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantQuery {
    pub subject: String,
    pub issuer: String,
    pub connection: String,
    pub rule: String,
}

pub trait Approvals: Send + Sync + std::fmt::Debug + 'static {
    /// The id of a live grant that lets this agent run what `rule` holds on
    /// this connection without a review, if there is one.
    fn covering_grant(&self, query: GrantQuery) -> GrantFuture;

    /// Submits the (already recorded) PendingOperation event and resolves
    /// when its operation closes.
    fn hold(&self, pending: Event) -> HoldFuture;

    /// The client cancelled the statement or went away: the operation is
    /// withdrawn unless it has already closed. Best effort; the expiry
    /// closes it otherwise.
    fn withdraw(&self, operation_id: &str, reason: &str);
}
