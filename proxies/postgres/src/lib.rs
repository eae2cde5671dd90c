//! The PostgreSQL wire proxy.
//!
//! - [`codec`]: pure framing and message parsing/encoding (no I/O);
//! - [`upstream_auth`]: the client side of PostgreSQL authentication (trust,
//!   cleartext, MD5, SCRAM-SHA-256) with the gateway's own credential;
//! - [`tracker`]: pure bookkeeping that pairs statements with their results;
//! - [`relay`] and [`server`]: the only code here that touches sockets.
#![forbid(unsafe_code)]

pub mod cancel;
pub mod codec;
pub mod relay;
pub mod server;
pub mod tls;
pub mod tracker;
pub mod upstream_auth;

pub use server::{PostgresProxy, ProxyConfig, UpstreamConfig};
