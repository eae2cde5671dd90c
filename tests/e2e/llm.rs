//! The model-API gateway end to end: a real OpenID provider issues the
//! agents' tokens, the official `openai` and `anthropic` Python SDKs are
//! the agents (unchanged but for base URL and key), and llama.cpp's
//! server with a small model is the provider. What the agent sees is
//! checked, and what the ledger holds.

use serde_json::{json, Value};
use vigil_proto::events::event::Kind;
use vigil_proto::events::{request, response, Event, Protocol};
use vigil_tests::llm::{agent, FaultyProvider, ModelServer};
use vigil_tests::oidc::OidcProvider;
use vigil_tests::{free_port, Gateway, GatewaySpec};

const AUDIENCE: &str = "urn:vigil:models";
const SSN: &str = "123-45-6789";
const PHONE: &str = "555-123-4567";
const PROMPT: &str = "Copy this text: Patient SSN 123-45-6789, phone 555-123-4567.";

/// Answers masked for the agent; the model, run in-house, reads the prompt.
const OUTPUT_MASKED: &str = r#"
name = "answers-masked"
default = "mask"

[[rules]]
name = "no-frontier-models"
action = "deny"
models = ["gpt-5*"]
reason = "agents use the in-house model"

[masking]
prompt = false
"#;

/// The prompt masked before it leaves; answers as the model wrote them.
const PROMPT_MASKED: &str = r#"
name = "prompts-masked"
default = "mask"

[masking]
output = false
"#;

/// The prompt's values numbered for the model and given back to the agent.
const RESTORED: &str = r#"
name = "own-values-back"
default = "mask"

[[rules]]
name = "analysts-get-their-values-back"
action = "mask"
groups = ["analysts"]
restore = true
"#;

struct Setup {
    provider: OidcProvider,
    gw: Gateway,
    /// Base URLs of the two listeners.
    answers_masked: String,
    prompts_masked: String,
    restored: String,
    _model: Option<ModelServer>,
}

impl Setup {
    fn start() -> Self {
        let model = ModelServer::start();
        let url = model.url.clone();
        Self::with_upstream(Some(model), &url, "")
    }

    /// Both listeners in front of `url`, with `extra` in their upstream.
    fn with_upstream(model: Option<ModelServer>, url: &str, extra: &str) -> Self {
        let provider = OidcProvider::start_with(Some(json!({
            "clients": [
                { "client_id": "agent", "client_secret": "agent-secret", "groups": ["analysts"] },
            ],
            "resources": { AUDIENCE: { "scope": "llm:invoke", "ttl": 300, "alg": "RS256" } }
        })));
        let dir = tempfile::tempdir().unwrap().keep();
        let (a, b, c) = (dir.join("a.toml"), dir.join("b.toml"), dir.join("c.toml"));
        std::fs::write(&a, OUTPUT_MASKED).unwrap();
        std::fs::write(&b, PROMPT_MASKED).unwrap();
        std::fs::write(&c, RESTORED).unwrap();
        let (pa, pb, pc) = (free_port(), free_port(), free_port());
        let mut spec = GatewaySpec::new();
        let listener = |name: &str, port: u16, policy: &std::path::Path| {
            format!(
                "[[llm]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\npolicy = \"{}\"\n\
                 required_scopes = [\"llm:invoke\"]\nupstream = {{ url = \"{url}\"{extra} }}\n",
                policy.display(),
            )
        };
        spec.tables_extra = format!(
            "{}\n{}\n{}\n{}",
            provider.issuer_toml(&[AUDIENCE], ""),
            listener("answers-masked", pa, &a),
            listener("prompts-masked", pb, &b),
            listener("restored", pc, &c),
        );
        let gw = Gateway::start(spec);
        Setup {
            provider,
            gw,
            answers_masked: format!("http://127.0.0.1:{pa}"),
            prompts_masked: format!("http://127.0.0.1:{pb}"),
            restored: format!("http://127.0.0.1:{pc}"),
            _model: model,
        }
    }

    fn token(&self) -> String {
        self.provider
            .token("agent", "agent-secret", AUDIENCE, "llm:invoke")
    }
}

fn text(line: &Value) -> String {
    line["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text: {line}"))
        .to_string()
}

#[test]
fn both_sdks_get_masked_answers_streamed_or_whole_and_every_call_is_recorded() {
    let s = Setup::start();
    let token = s.token();
    let ops: Vec<Value> = ["openai", "anthropic", "responses"]
        .iter()
        .flat_map(|sdk| {
            [false, true].map(|stream| json!({"sdk": sdk, "stream": stream, "prompt": PROMPT}))
        })
        .collect();
    let lines = agent(&s.answers_masked, &token, Value::Array(ops));
    for line in &lines {
        let t = text(line);
        // The small model copies its prompt: the SSN and the phone number
        // were in the answer, split over many deltas when streamed.
        assert!(
            !t.contains(SSN) && !t.contains(PHONE) && !t.contains("6789"),
            "PHI reached the agent: {line}"
        );
        assert!(t.contains("[SSN]"), "{line}");
    }
    assert!(lines[1]["chunks"].as_u64().unwrap() > 5, "{}", lines[1]);
    assert_eq!(
        lines[3]["final"], lines[3]["text"],
        "the SDK's final message agrees with the stream"
    );
    // The Responses stream's closing event carries the whole answer again.
    assert!(!lines[5].to_string().contains("6789"), "{}", lines[5]);

    // The prompt masked on the way out: the model only ever saw the marker.
    let lines = agent(
        &s.prompts_masked,
        &token,
        json!([{"sdk": "openai", "prompt": PROMPT}]),
    );
    let t = text(&lines[0]);
    assert!(t.contains("[SSN]") && !t.contains(SSN), "{t}");

    // A rule that restores: the model read `[SSN_1]` and `[PHONE_2]` and
    // copied them; the agent gets its own values back, whole or streamed
    // (the answer is masked too, so a value the model had seen would have
    // come back as `[SSN]`).
    let lines = agent(
        &s.restored,
        &token,
        json!([{"sdk": "openai", "prompt": PROMPT},
               {"sdk": "openai", "stream": true, "prompt": PROMPT},
               {"sdk": "anthropic", "stream": true, "prompt": PROMPT}]),
    );
    for line in &lines {
        let t = text(line);
        assert!(t.contains(SSN) && t.contains(PHONE), "not restored: {line}");
    }

    // Denied by policy, in the API's own error format.
    let lines = agent(
        &s.answers_masked,
        &token,
        json!([{"sdk": "openai", "model": "gpt-5-mini", "prompt": "hi"},
               {"sdk": "anthropic", "model": "GPT-5", "prompt": "hi"}]),
    );
    for line in &lines {
        assert_eq!(line["error"], 403, "{line}");
        assert_eq!(line["type"], "permission_error", "{line}");
        assert!(
            line["message"]
                .as_str()
                .unwrap()
                .contains("no-frontier-models"),
            "{line}"
        );
    }
    // What would spell the answer out past masking, or let the provider
    // call tools out of Vigil's sight, is refused with the reason.
    let lines = agent(
        &s.answers_masked,
        &token,
        json!([{"sdk": "openai", "prompt": "hi", "extra": {"logprobs": true, "top_logprobs": 3}},
               {"sdk": "anthropic", "prompt": "hi",
                "extra_body": {"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]}}]),
    );
    assert_eq!(lines[0]["error"], 400, "{}", lines[0]);
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("log probabilities"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["error"], 400, "{}", lines[1]);
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .contains("MCP gateway"),
        "{}",
        lines[1]
    );
    // A key that is not a token from the provider.
    let lines = agent(
        &s.answers_masked,
        "sk-not-a-token",
        json!([{"prompt": "hi"}]),
    );
    assert_eq!(lines[0]["error"], 401, "{}", lines[0]);

    // The ledger: each call a Request (model, stream, the prompt whole)
    // and a Response (status, tokens, the answer as the agent got it).
    let events = s.gw.wait_for_events(|ev| responses(ev).len() >= 14);
    let calls: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Request(r)) => match &r.detail {
                Some(request::Detail::Http(h)) => Some((e, h)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(calls.iter().all(|(e, _)| e.protocol() == Protocol::Llm));
    assert!(calls
        .iter()
        .any(|(_, h)| h.stream && h.path == "/v1/messages"));
    assert!(calls.iter().any(|(_, h)| h
        .body
        .as_ref()
        .is_some_and(|b| String::from_utf8_lossy(&b.value).contains(SSN))));
    let answered = responses(&events);
    let masked_output = answered.iter().filter(|(r, h)| {
        let out = h
            .output
            .as_ref()
            .map(|o| String::from_utf8_lossy(&o.value).to_string())
            .unwrap_or_default();
        h.status == 200
            && out.contains("[SSN]")
            && !out.contains(SSN)
            && r.masked
                .iter()
                .any(|m| m.field == "output" && m.values_masked > 0)
    });
    assert_eq!(masked_output.count(), 6, "{answered:?}");
    assert!(answered
        .iter()
        .any(|(r, _)| r.masked.iter().any(|m| m.field == "prompt")));
    // Restored answers are recorded as the model wrote them: placeholders,
    // never the values (the sealed prompt holds those).
    let restored: Vec<_> = answered
        .iter()
        .filter(|(r, _)| r.masked.iter().any(|m| m.method == "restored"))
        .collect();
    assert_eq!(restored.len(), 3, "{answered:?}");
    for (_, h) in restored {
        let out = String::from_utf8_lossy(&h.output.as_ref().unwrap().value).to_string();
        assert!(out.contains("[SSN_1]") && !out.contains(SSN), "{out}");
    }
    assert!(answered
        .iter()
        .any(|(_, h)| h.status == 200 && h.output_tokens > 0));
    assert!(answered
        .iter()
        .any(|(_, h)| h.time_to_first_token_micros > 0));
    assert_eq!(
        answered
            .iter()
            .filter(|(r, _)| r.error_code == "403")
            .count(),
        2
    );

    // Nothing is recorded in a session after it closed (a stream's
    // Response comes before its connection's SessionClosed).
    let events = s.gw.wait_for_events(|ev| {
        ev.iter()
            .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
            .count()
            >= 3
    });
    for closed in events
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
    {
        let last = events
            .iter()
            .filter(|e| e.session_id == closed.session_id)
            .map(|e| e.seq)
            .max();
        assert_eq!(last, Some(closed.seq), "an event after SessionClosed");
    }

    // Replay shows a conversation call by call.
    let session = calls
        .iter()
        .find(|(_, h)| h.path == "/v1/messages")
        .map(|(e, _)| e.session_id.clone())
        .unwrap();
    s.gw.wait_for_events(|ev| {
        ev.iter()
            .any(|e| e.session_id == session && matches!(e.kind, Some(Kind::SessionClosed(_))))
    });
    let replay = s.gw.audit(&["replay", "--session", &session]);
    assert!(replay.status.success(), "{}", vigil_tests::show(&replay));
    let text = String::from_utf8_lossy(&replay.stdout);
    for expected in [
        "model-API session opened",
        "call #0: POST /v1/messages model \"gemma\", max 48 tokens",
        "answer to #",
        "output masked",
        "as the agent received it",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

fn responses(
    events: &[Event],
) -> Vec<(
    &vigil_proto::events::Response,
    &vigil_proto::events::HttpResult,
)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Response(r)) => match &r.detail {
                Some(response::Detail::Http(h)) => Some((r, h)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_provider_that_breaks_mid_stream_or_answers_garbage_gets_the_agent_a_clear_error() {
    let faulty = FaultyProvider::start();
    let s = Setup::with_upstream(None, &faulty.url, ", stall_timeout = \"1s\"");
    let token = s.token();
    let streamed =
        |model: &str| json!({"sdk": "openai", "stream": true, "model": model, "prompt": "x"});
    let lines = agent(
        &s.answers_masked,
        &token,
        json!([streamed("cut"), streamed("stall"), streamed("garbage"),
               {"sdk": "openai", "model": "html", "prompt": "x"},
               {"sdk": "anthropic", "model": "huge", "prompt": "x"}]),
    );
    for (line, why) in lines[..3]
        .iter()
        .zip(["ended before its last event", "stalled", "not JSON"])
    {
        assert_eq!(line["error"], "stream", "{line}");
        assert!(
            line["message"].as_str().unwrap().contains(why),
            "{why}: {line}"
        );
        // What arrived before the break, and not the half of a value the
        // rest would have completed.
        assert_eq!(line["text"], "The SSN is ", "{line}");
    }
    assert_eq!(lines[3]["error"], 502, "{}", lines[3]);
    assert!(
        lines[3]["message"].as_str().unwrap().contains("not JSON"),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4]["error"], 502, "{}", lines[4]);
    assert_eq!(lines[4]["type"], "api_error", "{}", lines[4]);

    // Each is recorded with its error; the gateway serves on.
    let events = s.gw.wait_for_events(|ev| responses(ev).len() >= 5);
    let errors: Vec<String> = responses(&events)
        .iter()
        .map(|(r, _)| r.error_message.clone())
        .collect();
    assert_eq!(
        errors.iter().filter(|e| !e.is_empty()).count(),
        5,
        "{errors:?}"
    );
    for (r, h) in responses(&events) {
        let out = h
            .output
            .as_ref()
            .map(|o| String::from_utf8_lossy(&o.value).to_string())
            .unwrap_or_default();
        assert!(
            !out.contains("123-45") && !r.error_message.contains("123-45"),
            "a Response holds (part of) the SSN: {out} {}",
            r.error_message
        );
    }
    let lines = agent(&s.answers_masked, &token, json!([streamed("cut")]));
    assert_eq!(lines[0]["error"], "stream");
}

/// What is sent, where, with which extra headers and body; the status and
/// a part of the message expected back.
type BadRequest<'a> = (
    &'a str,
    String,
    Vec<(&'a str, &'a str)>,
    String,
    u16,
    &'a str,
);

/// Requests no SDK would send, each answered with a clear error in the
/// API's own format and recorded; the gateway serves on.
#[test]
fn malformed_oversized_and_unknown_requests_get_clear_errors() {
    let faulty = FaultyProvider::start();
    let s = Setup::with_upstream(None, &faulty.url, "");
    let token = s.token();
    let bearer = format!("Bearer {token}");
    let chat = format!("{}/v1/chat/completions", s.answers_masked);
    let messages = format!("{}/v1/messages", s.answers_masked);
    let big = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "x".repeat(9 << 20)
    );
    let cases: Vec<BadRequest> = vec![
        (
            "not JSON",
            chat.clone(),
            vec![],
            "{\"model\":".into(),
            400,
            "not valid JSON",
        ),
        (
            "a key twice",
            chat.clone(),
            vec![],
            r#"{"model":"a","model":"gpt-5"}"#.into(),
            400,
            "twice",
        ),
        (
            "no model",
            messages.clone(),
            vec![],
            r#"{"messages":[]}"#.into(),
            400,
            "`model`",
        ),
        ("too large", chat.clone(), vec![], big, 413, "larger than"),
        (
            "an encoding Vigil cannot read",
            chat.clone(),
            vec![("content-encoding", "zstd")],
            "{}".into(),
            400,
            "gzip, deflate or br",
        ),
        (
            "a WebSocket upgrade",
            chat.clone(),
            vec![("upgrade", "websocket"), ("connection", "upgrade")],
            "{}".into(),
            400,
            "WebSocket",
        ),
        (
            "an unknown path",
            format!("{}/v1/fine_tuning/jobs", s.answers_masked),
            vec![],
            "{}".into(),
            404,
            "no POST",
        ),
    ];
    for (what, url, extra, body, status, expected) in &cases {
        let mut headers = vec![
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend(extra.iter().copied());
        let (got, _, text) = vigil_tests::mcp::post(url, &headers, body);
        assert_eq!(got, *status, "{what}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
        let message = if url.contains("/v1/messages") {
            assert_eq!(error["type"], "error", "{what}: {text}");
            error["error"]["message"].as_str().unwrap().to_string()
        } else {
            error["error"]["message"].as_str().unwrap().to_string()
        };
        assert!(message.contains(expected), "{what}: {message}");
    }
    // A gzip body is read like any other.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, br#"{"model":"html","messages":[]}"#).unwrap();
    let response = ureq::post(&chat)
        .set("authorization", &bearer)
        .set("content-type", "application/json")
        .set("content-encoding", "gzip")
        .send_bytes(&gz.finish().unwrap());
    let status = match response {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(c, _)) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        status, 502,
        "decoded and sent on (the html provider answers garbage)"
    );
    // Every authenticated refusal is on record.
    let events = s.gw.wait_for_events(|ev| responses(ev).len() >= 6);
    assert!(responses(&events).len() >= 6);
}
