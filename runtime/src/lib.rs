//! The protocol-neutral gateway runtime (issue 21): the parts of a
//! gateway that make it fail closed and that every protocol adapter
//! shares, so that a new protocol never copies them: the listener with
//! its [`listener::Adapter`] trait ([`listener`]), graceful shutdown
//! ([`drain`]) and the session recorder with typed end reasons
//! ([`recorder`]), the hold coordinator ([`hold`]), the token deadline
//! ([`deadline`]), TLS to clients ([`tls`]), HTTP serving with
//! connection and time limits ([`http`]) for every port others reach, and
//! the HTTP client to upstream servers ([`upstream`]), and work that may
//! block its thread run without stalling other sessions ([`blocking`]).
//!
//! tokio lives here, not in `proxies/core` (which stays free of async
//! runtimes: the dependency rule in `tests/run.sh`).

pub mod blocking;
pub mod deadline;
pub mod drain;
pub mod hold;
pub mod http;
pub mod listener;
pub mod recorder;
pub mod tls;
pub mod upstream;
