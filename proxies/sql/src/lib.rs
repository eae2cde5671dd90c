//! The SQL protocol family: what every SQL gateway (PostgreSQL now, MySQL
//! next) shares above the wire protocol.
//!
//! - [`classify`]: what one client message's statements do (kinds, tables,
//!   functions), failing closed on anything it cannot be sure of;
//! - [`lineage`]: where each result column of a statement comes from, so
//!   masking follows the column rules through views, joins and functions;
//! - [`policy`]: the SQL family of policy conditions on the protocol-neutral
//!   engine of `vigil_proxy_core::policy`, and the SQL policy;
//! - [`dialect`]: the seam where SQL dialects differ.
//!
//! Like `vigil-proxy-core`, this crate does no I/O and depends on no async
//! runtime: all of it is tested without sockets.
#![forbid(unsafe_code)]

pub mod classify;
pub mod dialect;
pub mod lineage;
pub mod policy;

pub use dialect::Dialect;
