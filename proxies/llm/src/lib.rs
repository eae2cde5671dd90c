//! The model-API family of Vigil: what passes between an agent and a model
//! provider (OpenAI-compatible chat completions, responses, completions
//! and embeddings; Anthropic messages), decoded once and masked in place.
//! Pure: no I/O runtime; the gateway adapter does the I/O.
//!
//! - `request`: a request decoded once (endpoint, model, stream, token
//!   limit, tools offered), strictly parsed; its prompt masked in place.
//! - `policy`: the model-API family of policy conditions.
//! - `output`: the model's answer masked, whole (a JSON body) or streamed
//!   (SSE events of either API), with a bounded hold-back so that a value
//!   split across deltas is still caught and every event keeps its
//!   framing, ids and usage.

pub mod output;
pub mod policy;
pub mod request;
