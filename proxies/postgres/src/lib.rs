//! The PostgreSQL wire proxy.
//!
//! - [`codec`]: pure framing and message parsing/encoding (no I/O);
//! - [`upstream_auth`]: the client side of PostgreSQL authentication (trust,
//!   cleartext, MD5, SCRAM-SHA-256) with the gateway's own credential;
//! - [`results`]: pure parsing/encoding of result messages (RowDescription,
//!   DataRow, COPY data) and the messages the proxy writes itself;
//! - [`tracker`]: pure bookkeeping that pairs statements with their results;
//! - [`gate`]: the session's policy gate (classifier + policy, pure);
//! - [`refuse`]: refusing a statement with a probe, so transaction state
//!   stays exactly PostgreSQL's (pure);
//! - [`masking`]: per-result masking plans applied to each row (pure);
//! - [`scrub`]: error and notice text reduced to what no row can steer,
//!   in sessions that mask (pure), and [`sqlstate`] the names of codes;
//! - [`catalog`]: table OIDs to names, through a catalog connection;
//! - [`login`]: the upstream login with the gateway's credential, and
//!   [`upstream_tls`]: TLS to the upstream (require / verify-full);
//! - [`relay`] and [`server`]: the session's socket loops.
#![forbid(unsafe_code)]

pub mod cancel;
pub mod catalog;
pub mod codec;
pub mod config;
pub mod gate;
pub mod login;
pub mod masking;
pub mod messages;
pub mod privileges;
pub mod refuse;
pub mod relay;
pub mod results;
pub mod scrub;
pub mod server;
pub mod sqlstate;
pub mod startup_params;
pub mod tracker;
pub mod upstream_auth;
pub mod upstream_tls;

pub use server::{PostgresProxy, ProxyConfig, UpstreamConfig};
