//! The model-API gateway (issue 24): an `[[llm]]` listener in front of a
//! model provider speaking the OpenAI-compatible API (chat completions,
//! responses, completions, embeddings, models) and Anthropic's (messages,
//! count_tokens). An adapter of the gateway runtime: the listener, drain,
//! recorder and hold coordinator are the runtime's; decoding, policy and
//! masking are `vigil-llm` and the core's.
//!
//! One call's path: the agent's OIDC token (as `Authorization: Bearer`
//! or the `x-api-key` the Anthropic SDK sends) is verified; the body is
//! decoded once; policy judges it; the Request (the prompt whole, in the
//! ledger's sealed body) and its Decision are durable before anything
//! leaves; a review holds it until approvers decide; under `mask` the
//! prompt is masked before it leaves and the answer before the agent sees
//! it (streamed answers event by event, with a bounded hold-back); the
//! provider sees the gateway's own key, never the agent's token; the
//! Response records status, usage, time to first token, finish reason,
//! tool calls and the answer as the agent got it.

use std::sync::Arc;
use std::time::Duration;

use vigil_llm::policy::Policy;
use vigil_proxy_core::approval::Approvals;
use vigil_proxy_core::mask::Masker;
use vigil_runtime::tls::TlsSettings;

pub mod config;
mod errors;
mod http;
mod relay;

pub use http::LlmGateway;

/// One `[[llm]]` listener, built.
pub struct GatewayConfig {
    pub name: String,
    pub tls: Option<TlsSettings>,
    pub policy: Arc<Policy>,
    pub masker: Arc<Masker>,
    /// The approval service; `None`: review rules refuse.
    pub approvals: Option<Arc<dyn Approvals>>,
    pub required_scopes: Vec<String>,
    pub max_request_bytes: usize,
    /// The largest whole (not streamed) answer relayed.
    pub max_response_bytes: usize,
    pub upstream: UpstreamConfig,
}

#[derive(Clone)]
pub struct UpstreamConfig {
    /// The provider's base URL, without a trailing slash
    /// (`https://api.openai.com`, `http://127.0.0.1:8080`); paths such as
    /// `/v1/chat/completions` are appended.
    pub base_url: String,
    pub ca_pem: Option<Vec<u8>>,
    /// The gateway's own API key (`None`: the provider needs none).
    pub api_key: Option<String>,
    /// How long the provider may take to send a response's headers.
    pub timeout: Duration,
    /// How long a streamed answer may go without a byte before the
    /// gateway gives up on it.
    pub stall_timeout: Duration,
}

impl std::fmt::Debug for UpstreamConfig {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| ".."))
            .field("timeout", &self.timeout)
            .field("stall_timeout", &self.stall_timeout)
            .finish()
    }
}
