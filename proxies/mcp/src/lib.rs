//! The MCP family of Vigil (issue 23), built up in steps. This first step
//! is the decoding every later part stands on: a message from an agent or
//! an MCP server is parsed once, strictly ([`strict_json`]), into a typed
//! JSON-RPC message ([`jsonrpc`]); policy, masking and recording then act
//! on the type, never on the bytes.
//!
//! Why strict: the gateway and the server must read the same message. A
//! JSON object with a key twice (`{"name":"read","name":"delete"}`) is read
//! as either value by different parsers, and keys that differ only in case
//! are one key to a case-insensitive server; both are ways to make policy
//! judge one tool and the server run another, so both are refused. So is
//! text that is not UTF-8 (or a lone surrogate escape), and nesting deeper
//! than any MCP message needs.
#![forbid(unsafe_code)]

pub mod correlate;
pub mod headers;
pub mod jsonrpc;
pub mod pinning;
pub mod policy;
pub mod result_mask;
pub mod stdio;

// Shared with the model-API family: they live in the core.
pub use vigil_proxy_core::{sse, strict_json};
