//! The MCP gateway (issue 23): a Streamable HTTP endpoint in front of an
//! MCP server, an adapter of the gateway runtime. Every request carries an
//! OIDC access token ([`auth`]); every JSON-RPC message in either
//! direction is decoded once (`vigil_mcp`), judged by the MCP policy,
//! recorded ([`record`]) before it moves on, held for approval through
//! the runtime's hold coordinator when policy says review, and the
//! server's answers are masked and filtered ([`answers`]) before the agent
//! sees them. The server is reached with the gateway's own credential
//! ([`upstream`]); sessions are the gateway's ([`session`]).
//!
//! - [`post`]: one POST (a request, notification or answer of the agent);
//! - [`relay`]: what the server sends back (JSON or an SSE stream), and
//!   the GET stream of server messages;
//! - [`http`]: the routes, the per-connection state and the adapter.
#![forbid(unsafe_code)]
// A handler's early answer is an axum `Response` (128 bytes), returned as
// the `Err` of small checks; boxing each would only add allocations.
#![allow(clippy::result_large_err)]

pub mod answers;
pub mod auth;
pub mod config;
mod http;
pub mod pins;
mod post;
pub mod record;
mod relay;
pub mod session;
pub mod stdio_bridge;
mod tool_review;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use vigil_mcp::policy::Policy;
use vigil_proxy_core::approval::Approvals;
use vigil_proxy_core::mask::Masker;
use vigil_runtime::tls::TlsSettings;

pub use http::McpGateway;

/// JSON-RPC error codes of the gateway's own answers (the range JSON-RPC
/// leaves to servers).
pub mod codes {
    /// Refused by policy (the message names the rule).
    pub const REFUSED: i64 = -32010;
    /// Held for review and not released (denied, expired, withdrawn).
    pub const NOT_APPROVED: i64 = -32011;
    /// The MCP server could not be reached or did not answer.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32012;
    /// The server's result is larger than this gateway relays.
    pub const RESULT_TOO_LARGE: i64 = -32013;
    /// The request could not be recorded, so it was not forwarded.
    pub const AUDIT_UNAVAILABLE: i64 = -32014;
    /// The server's answer could not be read.
    pub const UPSTREAM_MALFORMED: i64 = -32015;
    /// The session is unknown (ended, expired, or another agent's).
    pub const SESSION_NOT_FOUND: i64 = -32001;
}

/// One `[[mcp]]` listener, built.
pub struct GatewayConfig {
    pub name: String,
    /// The path agents POST to.
    pub path: String,
    /// The protected resource's identifier (RFC 9728).
    pub resource: String,
    /// The issuers agents get tokens from.
    pub authorization_servers: Vec<String>,
    pub required_scopes: Vec<String>,
    pub allowed_origins: Vec<String>,
    /// The listener is on a loopback address (Host is checked then).
    pub loopback: bool,
    pub tls: Option<TlsSettings>,
    pub policy: Arc<Policy>,
    pub masker: Arc<Masker>,
    /// The approval service; `None`: review rules refuse.
    pub approvals: Option<Arc<dyn Approvals>>,
    pub max_request_bytes: usize,
    pub max_result_bytes: usize,
    pub idle_timeout: Duration,
    /// Where the tool pins are kept (`None`: in memory only).
    pub pins_file: Option<std::path::PathBuf>,
    /// The server as events name it: its URL, or `stdio:<command>`.
    pub upstream_label: String,
    pub upstream: upstream::UpstreamConfig,
}
