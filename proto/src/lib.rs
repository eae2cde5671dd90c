//! Vigil's event schema and the ledger's gRPC API, generated from `proto/vigil/*.proto`.
//!
//! Every part of Vigil speaks these types: proxies publish [`events::Event`]s,
//! the bus carries them as protobuf bytes, the ledger stores those bytes as
//! entry bodies, and auditors decode them again to check a leaf against its event.
#![forbid(unsafe_code)]

/// `vigil.events.v1`: what the gateway records.
pub mod events {
    include!(concat!(env!("OUT_DIR"), "/vigil.events.v1.rs"));

    impl event::Kind {
        /// The short kind name that the ledger's leaf commits to.
        pub fn name(&self) -> &'static str {
            match self {
                event::Kind::SessionOpened(_) => "session_opened",
                event::Kind::Request(_) => "request",
                event::Kind::Decision(_) => "decision",
                event::Kind::Response(_) => "response",
                event::Kind::SessionClosed(_) => "session_closed",
                event::Kind::PendingOperation(_) => "pending_operation",
                event::Kind::ApprovalDecision(_) => "approval_decision",
                event::Kind::RetentionPruned(_) => "retention_pruned",
                event::Kind::CancelRequested(_) => "cancel_requested",
                event::Kind::LoginRefused(_) => "login_refused",
                event::Kind::OperationClosed(_) => "operation_closed",
                event::Kind::AccessGranted(_) => "access_granted",
                event::Kind::GrantRevoked(_) => "grant_revoked",
            }
        }
    }

    impl Event {
        /// The kind name, or "unknown" for an event without a body (never produced by Vigil).
        pub fn kind_name(&self) -> &'static str {
            self.kind.as_ref().map_or("unknown", |k| k.name())
        }
    }
}

/// `vigil.ledger.v1`: the ledger's gRPC API (feature `grpc`).
#[cfg(feature = "grpc")]
pub mod ledger {
    tonic::include_proto!("vigil.ledger.v1");
}

/// `vigil.approvals.v1`: the approval service's gRPC API (feature `grpc`).
#[cfg(feature = "grpc")]
pub mod approvals {
    tonic::include_proto!("vigil.approvals.v1");
}

pub use prost::Message;
