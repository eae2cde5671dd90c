//! The approval service's core, free of any runtime or RPC stack.
//!
//! A statement that policy sends to `review` is held at the proxy, which
//! publishes a PendingOperation event. The approval service turns it into an
//! [`Operation`] ([`operation`]: the pure state machine of votes, quorum,
//! expiry and withdrawal), keeps every operation and every time-boxed
//! [`Grant`] ([`grant`]) in a durable [`Book`] ([`book`]), and publishes each
//! transition as an event so that the ledger records who decided what, when
//! and why.

#![forbid(unsafe_code)]

pub mod book;
pub mod grant;
pub mod operation;

pub use book::{Book, BookError, Outgoing};
pub use grant::{Grant, GrantError, GrantRequest, GrantRule};
pub use operation::{
    Approver, DecideError, Decided, Hold, HoldError, Operation, Principal, State, Verdict,
};

use vigil_proto::events::{event::Kind, Event};

/// The hold a proxy's PendingOperation event asks for; `None` for any other
/// event. The requester is the event's verified identity, never a field the
/// event body could set.
pub fn hold_of(event: &Event) -> Option<Hold> {
    let Some(Kind::PendingOperation(p)) = &event.kind else {
        return None;
    };
    let identity = event.identity.clone().unwrap_or_default();
    Some(Hold {
        operation_id: p.operation_id.clone(),
        session_id: event.session_id.clone(),
        connection: event.connection.clone(),
        requester: Principal {
            subject: identity.subject,
            issuer: identity.issuer,
        },
        statement: p.text.clone(),
        rule: p.rule.clone(),
        approver_groups: p.approver_groups.clone(),
        quorum: p.quorum,
        opened_unix_nanos: event.time_unix_nanos,
        expires_unix_nanos: p.expires_unix_nanos,
    })
}

/// Principals and approvers the unit tests of every module share.
#[cfg(test)]
mod test_support {
    use crate::operation::{Approver, Principal};

    pub const SEC: i64 = 1_000_000_000;

    pub fn principal(subject: &str) -> Principal {
        Principal {
            subject: subject.into(),
            issuer: "https://idp.example".into(),
        }
    }

    pub fn approver(subject: &str, groups: &[&str]) -> Approver {
        Approver {
            principal: principal(subject),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}
