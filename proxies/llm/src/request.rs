//! A request to a model API, decoded once: which endpoint, which model,
//! streamed or not, how many tokens it may produce, which tools it offers
//! the model. The body is parsed strictly (no key twice, no keys equal but
//! for case): a provider that reads the last of two `model` keys must not
//! be asked for another model than the one policy judged.

use serde_json::Value;
use vigil_proxy_core::mask::{Masker, Vault};
use vigil_proxy_core::strict_json::{self, JsonError};

use crate::output::{mask_prompt_value, Found, PromptRefused};

/// The endpoints a listener serves; anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// OpenAI-compatible.
    ChatCompletions,
    Responses,
    Completions,
    Embeddings,
    Models,
    /// Anthropic.
    Messages,
    CountTokens,
}

/// Which API's error format and headers a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

impl Endpoint {
    /// The endpoint of `method` and `path` (without its query).
    pub fn of(method: &str, path: &str) -> Option<Endpoint> {
        let path = path.strip_suffix('/').unwrap_or(path);
        match (method, path) {
            ("POST", "/v1/chat/completions") => Some(Endpoint::ChatCompletions),
            ("POST", "/v1/responses") => Some(Endpoint::Responses),
            ("POST", "/v1/completions") => Some(Endpoint::Completions),
            ("POST", "/v1/embeddings") => Some(Endpoint::Embeddings),
            ("POST", "/v1/messages") => Some(Endpoint::Messages),
            ("POST", "/v1/messages/count_tokens") => Some(Endpoint::CountTokens),
            ("GET", "/v1/models") => Some(Endpoint::Models),
            ("GET", p) if p.strip_prefix("/v1/models/").is_some_and(is_model_id) => {
                Some(Endpoint::Models)
            }
            _ => None,
        }
    }

    pub fn api(self) -> Api {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => Api::Anthropic,
            _ => Api::OpenAi,
        }
    }

    /// The name rules and events use (`chat/completions`, `messages`).
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Responses => "responses",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "messages/count_tokens",
        }
    }

    /// The body keys whose text reaches the model or the provider's
    /// records: what is masked on the way in. Besides the prompt itself,
    /// the tools' descriptions and schemas, a predicted output, and the
    /// request's metadata and end-user id (an organisation may put an
    /// email there); structural values (types, roles, ids) stay.
    fn prompt_keys(self) -> &'static [&'static str] {
        match self {
            Endpoint::ChatCompletions => &[
                "messages",
                "tools",
                "functions",
                "prediction",
                "metadata",
                "user",
            ],
            Endpoint::Responses => &["input", "instructions", "tools", "metadata", "user"],
            Endpoint::Completions => &["prompt", "suffix", "user"],
            Endpoint::Embeddings => &["input", "user"],
            Endpoint::Messages | Endpoint::CountTokens => {
                &["messages", "system", "tools", "metadata"]
            }
            Endpoint::Models => &[],
        }
    }
}

/// A model id in a path: no further segments, nothing a router would
/// read as another path.
fn is_model_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// One request, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub endpoint: Endpoint,
    /// Empty for `GET /v1/models`.
    pub model: String,
    pub stream: bool,
    /// `max_tokens`, `max_completion_tokens` or `max_output_tokens`.
    pub max_tokens: Option<u64>,
    /// The tools offered to the model: function names, or the type of a
    /// provider's built-in tool (`web_search`).
    pub tools: Vec<String>,
    pub body_bytes: usize,
    /// The body (`Null` for a GET).
    pub body: Value,
}

/// Why a request body was refused; the message is safe to send back (it
/// names a field, never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the body is not valid JSON: {0}")]
    Json(#[from] JsonError),
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("`model` is missing or not a string")]
    Model,
    #[error("`{0}` has the wrong type")]
    Field(&'static str),
    #[error("both `{0}` and `{1}` are given")]
    Both(&'static str, &'static str),
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Tools the provider would call itself, out of Vigil's sight: an MCP
/// server named in the request (Anthropic's `mcp_servers`, a Responses
/// tool of type `mcp`) would reach a host the agent chose, past the MCP
/// gateway and its policy.
fn provider_side_tools(map: &serde_json::Map<String, Value>) -> Option<&'static str> {
    if map.contains_key("mcp_servers") {
        return Some("`mcp_servers` lets the provider call MCP servers past Vigil; reach MCP servers through Vigil's MCP gateway instead");
    }
    // A prompt stored at the provider brings its own text and tools,
    // which neither policy nor masking could see.
    if map.get("prompt").is_some_and(Value::is_object) {
        return Some("a prompt stored at the provider (`prompt: {id}`) brings text and tools Vigil cannot see; send the prompt itself");
    }
    let mcp_tool = map.get("tools").and_then(Value::as_array).is_some_and(|t| {
        t.iter()
            .any(|t| t.get("type").and_then(Value::as_str) == Some("mcp"))
    });
    mcp_tool.then_some("a tool of type `mcp` lets the provider call an MCP server past Vigil; reach MCP servers through Vigil's MCP gateway instead")
}

/// Decodes the body of a request to `endpoint` (`body` empty for a GET).
pub fn decode(endpoint: Endpoint, body: &[u8]) -> Result<LlmRequest, RequestError> {
    if endpoint == Endpoint::Models {
        return Ok(LlmRequest {
            endpoint,
            model: String::new(),
            stream: false,
            max_tokens: None,
            tools: Vec::new(),
            body_bytes: body.len(),
            body: Value::Null,
        });
    }
    let value = strict_json::parse(body)?;
    let Value::Object(map) = &value else {
        return Err(RequestError::NotAnObject);
    };
    let model = match map.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(RequestError::Model),
    };
    let stream = match map.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(RequestError::Field("stream")),
    };
    if let Some(refusal) = provider_side_tools(map) {
        return Err(RequestError::Unsupported(refusal));
    }
    let mut max_tokens = None;
    let mut named = None;
    // `n_predict` is llama.cpp's own name for the limit, and it wins there.
    for key in [
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "n_predict",
    ] {
        match map.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = v.as_u64().ok_or(RequestError::Field(key))?;
                if let Some(first) = named {
                    // Two limits: which one the provider honours is its
                    // own business; policy would judge the wrong one.
                    return Err(RequestError::Both(first, key));
                }
                named = Some(key);
                max_tokens = Some(n);
            }
        }
    }
    // Several answers to one request (`n`, `best_of`) are as many times
    // the tokens: the limit policy judges is the total.
    let mut answers = 1;
    for key in ["n", "best_of"] {
        match map.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => answers = answers.max(v.as_u64().ok_or(RequestError::Field(key))?),
        }
    }
    let max_tokens = max_tokens.map(|n| n.saturating_mul(answers));
    // The legacy `functions` are tools as well.
    let mut tools = Vec::new();
    for key in ["tools", "functions"] {
        match map.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => tools.extend(
                list.iter()
                    .map(tool_name)
                    .collect::<Option<Vec<_>>>()
                    .ok_or(RequestError::Field(key))?,
            ),
            Some(_) => return Err(RequestError::Field(key)),
        }
    }
    Ok(LlmRequest {
        endpoint,
        model,
        stream,
        max_tokens,
        tools,
        body_bytes: body.len(),
        body: value,
    })
}

/// The name of one offered tool: `function.name` (OpenAI chat), `name`
/// (Anthropic, Responses), else its `type` (a built-in tool).
fn tool_name(tool: &Value) -> Option<String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    text(tool.pointer("/function/name"))
        .or_else(|| text(tool.get("name")))
        .or_else(|| text(tool.get("type")))
}

impl LlmRequest {
    /// Why the answer to this request could not be masked, if it could
    /// not: parts that spell the output out a token at a time or in a
    /// form the detectors cannot read (log probabilities, audio).
    pub fn unmaskable_output(&self) -> Option<&'static str> {
        let Value::Object(map) = &self.body else {
            return None;
        };
        let set = |key: &str| {
            map.get(key).is_some_and(|v| {
                !matches!(v, Value::Null | Value::Bool(false)) && v != &Value::from(0)
            })
        };
        if set("logprobs") || set("top_logprobs") || set("n_probs") {
            return Some("log probabilities spell the answer out token by token, past masking: ask without logprobs, top_logprobs or n_probs");
        }
        // llama.cpp's token ids and sampling probabilities spell it out too.
        if set("return_tokens") || set("post_sampling_probs") {
            return Some("token ids spell the answer out past masking: ask without return_tokens or post_sampling_probs");
        }
        let includes_logprobs = match map.get("include") {
            Some(Value::Array(i)) => i
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.contains("logprobs"))),
            Some(Value::String(s)) => s.contains("logprobs"),
            _ => false,
        };
        if includes_logprobs {
            return Some("log probabilities spell the answer out token by token, past masking: leave them out of `include`");
        }
        let audio = map
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|v| v == "audio"))
            || map.contains_key("audio");
        if audio {
            return Some("audio answers cannot be masked: ask for text");
        }
        None
    }

    /// Masks the prompt in place (every message, the system prompt, the
    /// tool results the agent passes back), before the request leaves for
    /// the provider.
    pub fn mask_prompt(&mut self, masker: &Masker) -> Result<Found, PromptRefused> {
        self.mask_prompt_into(masker, None)
    }

    /// [`LlmRequest::mask_prompt`] with numbered placeholders kept in
    /// `vault`, so that the answer can have them restored for the caller.
    pub fn mask_prompt_numbered(
        &mut self,
        masker: &Masker,
        vault: &mut Vault,
    ) -> Result<Found, PromptRefused> {
        self.mask_prompt_into(masker, Some(vault))
    }

    /// Why the values of this request cannot be restored in its answer: a
    /// conversation kept at the provider (its placeholders were numbered
    /// by other calls), or text already shaped like a placeholder (the
    /// answer's `[SSN_1]` could mean either).
    pub fn restore_refusal(&self) -> Option<&'static str> {
        let Value::Object(map) = &self.body else {
            return None;
        };
        let references_stored = map
            .get("input")
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(|i| i["type"] == "item_reference"));
        if references_stored
            || ["previous_response_id", "conversation"]
                .iter()
                .any(|k| map.get(*k).is_some_and(|v| !v.is_null()))
        {
            return Some("a conversation kept at the provider cannot have its values restored (its placeholders were numbered by earlier calls)");
        }
        let keys = self.endpoint.prompt_keys();
        let shaped = keys
            .iter()
            .filter_map(|k| map.get(*k))
            .any(|v| vigil_proxy_core::mask::vault::holds_placeholder_shape(&v.to_string()));
        shaped.then_some("the prompt already holds text shaped like Vigil's placeholders (such as [SSN_1]), so restoring them would be ambiguous")
    }

    fn mask_prompt_into(
        &mut self,
        masker: &Masker,
        mut vault: Option<&mut Vault>,
    ) -> Result<Found, PromptRefused> {
        let mut found = Found::default();
        let keys = self.endpoint.prompt_keys();
        if let Value::Object(map) = &mut self.body {
            for key in keys {
                if let Some(v) = map.get_mut(*key) {
                    mask_prompt_value(masker, vault.as_deref_mut(), v, &mut found)?;
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vigil_proxy_core::mask::DetectorConfig;

    use super::*;

    #[test]
    fn endpoints_are_known_exactly() {
        assert_eq!(
            Endpoint::of("POST", "/v1/chat/completions"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::of("POST", "/v1/messages/"),
            Some(Endpoint::Messages)
        );
        assert_eq!(
            Endpoint::of("GET", "/v1/models/gemma-3:270m"),
            Some(Endpoint::Models)
        );
        for (m, p) in [
            ("GET", "/v1/chat/completions"),
            ("POST", "/v1/chat/completions/../admin"),
            ("GET", "/v1/models/a/b"),
            ("GET", "/v1/models/%2e%2e"),
            ("POST", "/v1/realtime"),
            ("POST", "/V1/messages"),
        ] {
            assert_eq!(Endpoint::of(m, p), None, "{m} {p}");
        }
        assert_eq!(Endpoint::Messages.api(), Api::Anthropic);
    }

    #[test]
    fn a_request_is_decoded_once_and_bad_ones_are_named() {
        let body = json!({"model": "gemma", "stream": true, "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "lookup"}}, {"type": "web_search"}]});
        let r = decode(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        assert_eq!(r.model, "gemma");
        assert!(r.stream);
        assert_eq!(r.max_tokens, Some(64));
        assert_eq!(r.tools, ["lookup", "web_search"]);
        let cases: &[(&[u8], &str)] = &[
            (b"{\"model\":\"a\",\"model\":\"b\"}", "twice"),
            (b"{\"model\":\"a\",\"Model\":\"b\"}", "case"),
            (b"[1]", "not a JSON object"),
            (b"{\"messages\":[]}", "`model`"),
            (b"{\"model\":\"a\",\"stream\":\"yes\"}", "`stream`"),
            (b"{\"model\":\"a\",\"max_tokens\":-1}", "`max_tokens`"),
            (
                b"{\"model\":\"a\",\"max_tokens\":5,\"max_completion_tokens\":50000}",
                "both",
            ),
            (b"{\"model\":\"a\",\"tools\":[{\"x\":1}]}", "`tools`"),
            (b"{\"model\":\"a\"", "JSON"),
            (
                b"{\"model\":\"a\",\"max_tokens\":5,\"n_predict\":5000}",
                "both",
            ),
            (b"{\"model\":\"a\",\"mcp_servers\":[]}", "MCP gateway"),
            (
                b"{\"model\":\"a\",\"prompt\":{\"id\":\"pmpt_1\"}}",
                "stored at the provider",
            ),
            (
                b"{\"model\":\"a\",\"tools\":[{\"type\":\"mcp\",\"server_url\":\"https://x\"}]}",
                "MCP gateway",
            ),
        ];
        for (body, expected) in cases {
            let e = decode(Endpoint::ChatCompletions, body)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(expected),
                "{}: {e}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn what_could_bypass_policy_or_masking_is_seen() {
        let d = |v: serde_json::Value| {
            decode(Endpoint::ChatCompletions, v.to_string().as_bytes()).unwrap()
        };
        let r = d(json!({"model": "a", "max_tokens": 100, "n": 8,
            "functions": [{"name": "lookup_patient"}]}));
        assert_eq!(
            r.max_tokens,
            Some(800),
            "eight answers are eight times the tokens"
        );
        assert_eq!(r.tools, ["lookup_patient"]);
        assert!(r.unmaskable_output().is_none());
        for body in [
            json!({"model": "a", "logprobs": true}),
            json!({"model": "a", "top_logprobs": 5}),
            json!({"model": "a", "n_probs": 3}),
            json!({"model": "a", "include": ["message.output_text.logprobs"]}),
            json!({"model": "a", "modalities": ["text", "audio"]}),
            json!({"model": "a", "include": "message.output_text.logprobs"}),
            json!({"model": "a", "return_tokens": true}),
        ] {
            assert!(d(body.clone()).unmaskable_output().is_some(), "{body}");
        }
        assert!(d(json!({"model": "a", "logprobs": false}))
            .unmaskable_output()
            .is_none());
    }

    #[test]
    fn tool_descriptions_predictions_and_metadata_are_masked_too() {
        let masker = Masker::new([1; 32], &DetectorConfig::default()).unwrap();
        let body = json!({"model": "gpt", "messages": [],
            "tools": [{"type": "function", "function": {"name": "lookup",
                "description": "looks up the patient with SSN 123-45-6789",
                "parameters": {"type": "object", "properties": {"mrn": {"type": "string"}}}}}],
            "prediction": {"type": "content", "content": "call 555-123-4567"},
            "metadata": {"note": "jane@example.org"}, "user": "bob@example.org"});
        let mut r = decode(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        let found = r.mask_prompt(&masker).unwrap();
        let text = r.body.to_string();
        assert_eq!(found.hits, 4, "{text}");
        assert!(
            !text.contains("123-45") && !text.contains("@example.org"),
            "{text}"
        );
        assert_eq!(r.body["tools"][0]["function"]["name"], "lookup");
        assert_eq!(
            r.body["tools"][0]["function"]["parameters"]["properties"]["mrn"]["type"],
            "string"
        );
    }

    const SMUGGLED: &str = "call 123-45-6789";

    #[test]
    fn the_prompt_is_masked_and_the_rest_kept() {
        let masker = Masker::new([1; 32], &DetectorConfig::default()).unwrap();
        let body = json!({"model": "claude", "max_tokens": 100,
            "system": "The patient's email is jane@example.org",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "SSN 123-45-6789?"}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2023-04-05",
                    "content": "born 04/05/1980"}]}
            ],
            "metadata": {"user_id": "u-1"}});
        let mut r = decode(Endpoint::Messages, body.to_string().as_bytes()).unwrap();
        let found = r.mask_prompt(&masker).unwrap();
        let text = r.body.to_string();
        assert!(
            !text.contains("123-45-6789") && !text.contains("jane@") && !text.contains("1980"),
            "{text}"
        );
        assert_eq!(found.hits, 3);
        assert_eq!(
            r.body["messages"][1]["content"][0]["tool_use_id"], "toolu_2023-04-05",
            "a real id glues its characters to a word"
        );
        // An id the agent wrote to carry an SSN to the provider.
        let body = json!({"model": "gemma", "messages": [
            {"role": "assistant", "tool_calls": [{"id": SMUGGLED, "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": SMUGGLED, "content": "ok"}]});
        let mut ids = decode(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        let refused = ids.mask_prompt(&masker).unwrap_err().0;
        assert!(
            refused.contains("`id`") && refused.contains("ssn"),
            "{refused}"
        );
        assert!(!refused.contains("6789"), "never the value: {refused}");
        // A key that is PHI (metadata keys are kept by providers).
        let body = json!({"model": "gemma", "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"jane@example.org": "x"}});
        let mut keyed = decode(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        let refused = keyed.mask_prompt(&masker).unwrap_err().0;
        assert!(
            refused.contains("key") && !refused.contains("jane"),
            "{refused}"
        );
        // Restoring is refused where it would be ambiguous.
        let body = json!({"model": "gemma", "input": "about [SSN_1]"});
        let q = decode(Endpoint::Responses, body.to_string().as_bytes()).unwrap();
        assert!(q.restore_refusal().unwrap().contains("shaped like"));
        let body = json!({"model": "gemma", "input": "hi", "previous_response_id": "resp_1"});
        let q = decode(Endpoint::Responses, body.to_string().as_bytes()).unwrap();
        assert!(q
            .restore_refusal()
            .unwrap()
            .contains("kept at the provider"));
        let body = json!({"model": "gemma", "input": [{"type": "item_reference", "id": "msg_1"}]});
        let q = decode(Endpoint::Responses, body.to_string().as_bytes()).unwrap();
        assert!(q.restore_refusal().is_some());
        // A signature outside a provider's item is text like any other.
        let body = json!({"model": "gemma", "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"signature": "SSN 123-45-6789"}});
        let mut signed = decode(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        signed.mask_prompt(&masker).unwrap();
        assert!(!signed.body.to_string().contains("6789"), "{}", signed.body);
        let body = json!({"model": "gemma", "input": "SSN 123-45-6789 [SSN]"});
        let q = decode(Endpoint::Responses, body.to_string().as_bytes()).unwrap();
        assert_eq!(q.restore_refusal(), None);
        assert_eq!(r.body["model"], "claude");
    }
}
