//! What every Vigil proxy shares, whatever protocol it speaks:
//!
//! - [`identity`]: re-exported from `vigil-identity` (static identities, OIDC
//!   tokens -> [`identity::VerifiedIdentity`]);
//! - [`session`]: the per-connection context that stamps every event with
//!   session id, sequence number, identity and connection name;
//! - [`sink`]: the [`sink::EventSink`] trait through which proxies record events;
//! - [`admission`]: how many sessions a listener holds, in all and per identity;
//! - [`approval`]: the [`approval::Approvals`] trait through which a proxy holds
//!   a statement for review and learns the decision;
//! - [`policy`]: the protocol-neutral policy engine (who and where, first
//!   match, strictest, review settings, limits); each protocol family adds
//!   its conditions through [`policy::Family`] (SQL: crate `vigil-sql`);
//! - [`mask`]: the PHI detectors and mask formats every family's result
//!   masking uses.
//!
//! This crate does no I/O and depends on no async runtime, so that the rules it
//! holds can be tested (and fuzzed) without sockets.
#![forbid(unsafe_code)]

pub mod admission;
pub mod approval;
pub mod mask;
pub mod policy;
pub mod recorded;
pub mod session;
pub mod sink;
pub mod sse;
pub mod strict_json;

pub use approval::{Approvals, HoldOutcome};
pub use session::SessionContext;
pub use sink::{EventSink, SinkError};
pub use vigil_identity as identity;
pub use vigil_identity::{
    AuthError, Authenticator, StaticIdentities, StaticIdentity, VerifiedIdentity,
};
