//! Vigil's event schema and the ledger's gRPC API, generated from `proto/vigil/*.proto`.
//!
//! Every part of Vigil speaks these types: proxies publish [`events::Event`]s,
//! the bus carries them as protobuf bytes, the ledger stores those bytes as
//! entry bodies, and auditors decode them again to check a leaf against its event.
//!
//! Read stored or received event bytes with [`events::decode`], never with
//! `Event::decode`: bodies written before schema v2 are still in ledgers
//! (six years of them) and only [`events::decode`] reads both versions.
#![forbid(unsafe_code)]

mod labels;
mod upgrade;

/// `vigil.events.v2`: what the gateway records (proto/vigil/events.proto).
pub mod events {
    include!(concat!(env!("OUT_DIR"), "/vigil.events.v2.rs"));

    pub use crate::upgrade::{decode, DecodeError};

    impl event::Kind {
        /// The short kind name that the ledger's leaf commits to (the same
        /// names as in schema v1).
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
                event::Kind::SequenceGap(_) => "sequence_gap",
                event::Kind::NotificationFailed(_) => "notification_failed",
            }
        }

        /// As [`Event::decision`], for a kind not yet in an event.
        pub fn decision(&self) -> Option<&Decision> {
            match self {
                event::Kind::Decision(d) => Some(d),
                event::Kind::Request(r) => r.decision.as_ref(),
                _ => None,
            }
        }
    }

    impl Event {
        /// The kind name, or "unknown" for an event without a body (never produced by Vigil).
        pub fn kind_name(&self) -> &'static str {
            self.kind.as_ref().map_or("unknown", |k| k.name())
        }

        /// The policy decision this event records: a Decision event's, or
        /// the one a Request carries. Readers use this, never a match on
        /// `Kind::Decision` alone: a request's first decision is part of
        /// its Request (older logs hold it as a Decision event).
        pub fn decision(&self) -> Option<&Decision> {
            self.kind.as_ref().and_then(event::Kind::decision)
        }
    }

    impl Request {
        /// The SQL statement, for a request of the SQL family.
        pub fn sql(&self) -> Option<&SqlStatement> {
            match &self.detail {
                Some(request::Detail::Sql(s)) => Some(s),
                _ => None,
            }
        }

        /// The JSON-RPC message, for a request of the MCP family.
        pub fn mcp(&self) -> Option<&McpMessage> {
            match &self.detail {
                Some(request::Detail::Mcp(m)) => Some(m),
                _ => None,
            }
        }

        /// The model-API call, for a request of the HTTP family.
        pub fn http(&self) -> Option<&HttpCall> {
            match &self.detail {
                Some(request::Detail::Http(h)) => Some(h),
                _ => None,
            }
        }

        /// A SQL request (the detail every SQL-family adapter records).
        pub fn new_sql(request_seq: u64, statement: SqlStatement) -> Self {
            Self {
                request_seq,
                detail: Some(request::Detail::Sql(statement)),
                decision: None,
            }
        }

        /// This request with the decision taken as it was made: one event
        /// records both. The decision's `request_seq` is the request's.
        pub fn decided(mut self, mut decision: Decision) -> Self {
            decision.request_seq = self.request_seq;
            self.decision = Some(decision);
            self
        }
    }

    impl Response {
        /// The SQL result, for a response of the SQL family.
        pub fn sql(&self) -> Option<&SqlResult> {
            match &self.detail {
                Some(response::Detail::Sql(s)) => Some(s),
                _ => None,
            }
        }

        /// The MCP result, for a response of the MCP family.
        pub fn mcp(&self) -> Option<&McpResult> {
            match &self.detail {
                Some(response::Detail::Mcp(m)) => Some(m),
                _ => None,
            }
        }

        /// The model's answer, for a response of the HTTP family.
        pub fn http(&self) -> Option<&HttpResult> {
            match &self.detail {
                Some(response::Detail::Http(h)) => Some(h),
                _ => None,
            }
        }
    }

    impl SessionOpened {
        /// The SQL session detail, for a session of the SQL family.
        pub fn sql(&self) -> Option<&SqlSession> {
            match &self.detail {
                Some(session_opened::Detail::Sql(s)) => Some(s),
                _ => None,
            }
        }

        /// The MCP session detail, for a session of the MCP family.
        pub fn mcp(&self) -> Option<&McpSession> {
            match &self.detail {
                Some(session_opened::Detail::Mcp(m)) => Some(m),
                _ => None,
            }
        }

        /// The HTTP session detail, for a session of the model-API family.
        pub fn http(&self) -> Option<&HttpSession> {
            match &self.detail {
                Some(session_opened::Detail::Http(h)) => Some(h),
                _ => None,
            }
        }
    }

    impl LoginRefused {
        /// What a SQL client presented, for a refusal of the SQL family.
        pub fn sql(&self) -> Option<&SqlSession> {
            match &self.detail {
                Some(login_refused::Detail::Sql(s)) => Some(s),
                _ => None,
            }
        }
    }
}

/// `vigil.events.v1`, frozen: bodies written before schema v2. Only
/// [`events::decode`] reads them, upgrading to v2 in memory.
pub mod events_v1 {
    include!(concat!(env!("OUT_DIR"), "/vigil.events.v1.rs"));
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
