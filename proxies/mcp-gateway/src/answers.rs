//! What the agent gets of the server's messages, decided without I/O: an
//! answer is given back under the agent's own id, a `tools/list` loses
//! the tools policy denies, a result under a `mask` verdict is masked
//! (path rules, then the detectors over every string and key, error
//! messages too: a server's error can quote what it read), a result past
//! the size limit is refused; a request the server makes of the agent
//! (sampling, elicitation, roots) is judged like the agent's own, and
//! sampling and elicitation need a rule that allows them.

use serde_json::{Map, Value};
use vigil_mcp::jsonrpc::{Id, Message};
use vigil_mcp::policy::{judge, listed, Asker, Outcome, Policy, Verdict};
use vigil_mcp::result_mask::{mask_any, mask_result};
use vigil_proxy_core::mask::Masker;

use crate::codes;
use crate::record::Changes;

/// What a server may ask the agent without a rule: `ping` alone. Every
/// other server request (sampling, elicitation, roots, what later
/// revisions add) reaches the agent only where a rule names its method
/// exactly in `methods`: a server that samples the agent's model or asks
/// its user for input can make the agent do or say what policy never
/// saw, and the agent's answer to `roots/list` sets what a filesystem
/// server may read. A catch-all rule (by group only, or `methods =
/// ["*"]`) does not count.
pub const WITHOUT_A_RULE: [&str; 1] = ["ping"];

/// The rule name recorded when a server request has no rule of its own.
pub const SERVER_REQUEST_RULE: &str = "server-requests-need-a-rule";

/// The protocol's own answers, never masked: they carry versions, names
/// and schemas, which the detectors would mistake for PHI (a protocol
/// version is a date). Every other answer under a `mask` verdict is
/// masked: results can come back by more than one method (a task's
/// `tasks/result` carries a tool call's result), so masking does not
/// follow a list of data methods, which a new method would escape.
pub const PROTOCOL_ANSWERS: [&str; 6] = [
    "initialize",
    "server/discover",
    "ping",
    "tools/list",
    "prompts/list",
    "logging/setLevel",
];

/// The answer as the agent receives it, and what was changed.
pub struct Treated {
    pub message: Message,
    pub changes: Changes,
    /// The result was refused for its size (Decision stage result_size).
    pub too_large: bool,
}

/// What an answer is treated by: the listener's policy and masker, who
/// asked, and the size limit.
pub struct Treatment<'a> {
    pub policy: &'a Policy,
    pub masker: &'a Masker,
    pub asker: Asker<'a>,
    pub max_result_bytes: usize,
}

/// Gives `answer` (to the agent's request `method`, judged `verdict`)
/// back under `client_id`.
pub fn treat_answer(
    t: &Treatment<'_>,
    method: &str,
    verdict: &Verdict,
    client_id: Id,
    answer: Message,
) -> Treated {
    let (policy, masker, asker, max_result_bytes) =
        (t.policy, t.masker, t.asker, t.max_result_bytes);
    let mut changes = Changes::default();
    let masks = verdict.outcome == Outcome::Mask && !PROTOCOL_ANSWERS.contains(&method);
    let message = match answer {
        Message::Result { mut result, .. } => {
            let size = result.to_string().len();
            if size > max_result_bytes {
                return Treated {
                    message: Message::Error {
                        id: Some(client_id),
                        code: codes::RESULT_TOO_LARGE,
                        message: format!(
                            "Vigil refused the result of {method}: {size} bytes, past this gateway's limit of {max_result_bytes}"
                        ),
                        data: None,
                    },
                    changes,
                    too_large: true,
                };
            }
            if method == "tools/list" {
                changes.hidden = hide_denied_tools(policy, asker, &mut result);
            }
            if method == "resources/list" {
                changes.hidden = hide_denied_resources(policy, asker, &mut result);
            }
            if method == "prompts/list" {
                changes.hidden = hide_denied_prompts(policy, asker, &mut result);
            }
            if masks {
                let report = mask_result(&mut result, masker, &policy.family().mask_paths);
                changes.masked_by_path = report.by_path;
                changes.detector_hits = report.detector_hits;
                changes.detector_kinds = report.kinds;
                changes.unscanned_binary = report.unscanned_binary;
            }
            Message::Result {
                id: client_id,
                result,
            }
        }
        Message::Error {
            code,
            message,
            data,
            ..
        } => {
            let (message, data) = if masks {
                let mut whole = Value::Object(Map::from_iter([
                    ("message".to_string(), Value::String(message)),
                    ("data".to_string(), data.unwrap_or(Value::Null)),
                ]));
                let report = mask_any(&mut whole, masker);
                changes.detector_hits = report.detector_hits;
                changes.detector_kinds = report.kinds;
                let message = whole["message"].as_str().unwrap_or_default().to_string();
                let data = match whole["data"].take() {
                    Value::Null => None,
                    d => Some(d),
                };
                (message, data)
            } else {
                (message, data)
            };
            Message::Error {
                id: Some(client_id),
                code,
                message,
                data,
            }
        }
        other => other,
    };
    Treated {
        message,
        changes,
        too_large: false,
    }
}

/// Removes from a `tools/list` result the tools policy denies to this
/// agent (judged as a call without arguments: a rule that needs
/// arguments judges each call instead). Returns the hidden names.
pub fn hide_denied_tools(policy: &Policy, asker: Asker<'_>, result: &mut Value) -> Vec<String> {
    keep_allowed(
        policy,
        asker,
        result,
        "tools",
        ("name", "tools/call", "name"),
    )
}

/// Removes from a `resources/list` result the resources policy would
/// refuse to read to this agent. Returns the hidden URIs.
pub fn hide_denied_resources(policy: &Policy, asker: Asker<'_>, result: &mut Value) -> Vec<String> {
    keep_allowed(
        policy,
        asker,
        result,
        "resources",
        ("uri", "resources/read", "uri"),
    )
}

/// Removes from a `prompts/list` result the prompts policy would refuse
/// to get to this agent. Returns the hidden names.
pub fn hide_denied_prompts(policy: &Policy, asker: Asker<'_>, result: &mut Value) -> Vec<String> {
    keep_allowed(
        policy,
        asker,
        result,
        "prompts",
        ("name", "prompts/get", "name"),
    )
}

/// The roots the agent gave in its answer to `roots/list`, less those
/// policy would refuse to read: an agent cannot widen a server's reach
/// past the policy. Returns the URIs taken out.
pub fn filter_roots(policy: &Policy, asker: Asker<'_>, result: &mut Value) -> Vec<String> {
    keep_allowed(
        policy,
        asker,
        result,
        "roots",
        ("uri", "resources/read", "uri"),
    )
}

/// Keeps of `result[list]` the entries whose request (`method` with
/// `param` set to the entry's `key`) policy would not deny this agent;
/// an entry without a `key` is removed too. Returns the removed keys (""
/// for an entry without one).
fn keep_allowed(
    policy: &Policy,
    asker: Asker<'_>,
    result: &mut Value,
    list: &str,
    (key, method, param): (&str, &str, &str),
) -> Vec<String> {
    let mut removed = Vec::new();
    let Some(entries) = result.get_mut(list).and_then(Value::as_array_mut) else {
        return removed;
    };
    entries.retain(|entry| {
        let value = entry.get(key).and_then(Value::as_str).unwrap_or_default();
        let kept = !value.is_empty()
            && judge(policy, asker, &listed(method, param, value)).outcome != Outcome::Deny;
        if !kept {
            removed.push(value.to_string());
        }
        kept
    });
    removed
}

/// The verdict on a request the server makes of the agent.
pub fn judge_server_request(policy: &Policy, asker: Asker<'_>, request: &Message) -> Verdict {
    let verdict = judge(policy, asker, request);
    let method = request.method().unwrap_or_default();
    if WITHOUT_A_RULE.contains(&method) {
        return verdict;
    }
    let named = policy
        .rules()
        .iter()
        .any(|r| r.name == verdict.rule && r.conditions.methods.iter().any(|m| m == method));
    if named && verdict.outcome != Outcome::Review {
        return verdict;
    }
    Verdict {
        outcome: Outcome::Deny,
        rule: SERVER_REQUEST_RULE.into(),
        reason: format!(
            "the server's {method} request reaches the agent only where a rule names that method"
        ),
        ..verdict
    }
}

/// The params of a server notification or request, masked under a
/// `mask` verdict (a log message or progress text can quote what the
/// server read); returns the detector hits.
pub fn mask_params(message: &mut Message, masker: &Masker) -> usize {
    let (Message::Request {
        params: Some(p), ..
    }
    | Message::Notification {
        params: Some(p), ..
    }) = message
    else {
        return 0;
    };
    let mut whole = Value::Object(std::mem::take(p));
    let report = mask_any(&mut whole, masker);
    if let Value::Object(o) = whole {
        *p = o;
    }
    report.detector_hits
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vigil_proxy_core::mask::DetectorConfig;

    use vigil_mcp::policy::listed_tool;

    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(text).unwrap()
    }

    fn asker() -> Asker<'static> {
        Asker {
            subject: "agent",
            groups: &[],
            connection: "tools",
        }
    }

    fn masker() -> Masker {
        Masker::new([7; 32], &DetectorConfig::default()).unwrap()
    }

    fn treat(p: &Policy, verdict: &Verdict, id: Id, answer: Message, max: usize) -> Treated {
        let m = masker();
        let t = Treatment {
            policy: p,
            masker: &m,
            asker: asker(),
            max_result_bytes: max,
        };
        treat_answer(&t, "tools/call", verdict, id, answer)
    }

    const POLICY: &str = r#"
name = "t"
default = "mask"
[[rules]]
name = "no-delete"
action = "deny"
tools = ["delete_patient"]
[masking]
paths = [{ path = "structuredContent.patients[*].mrn", format = "redact" }]
"#;

    #[test]
    fn denied_tools_disappear_from_the_list() {
        let p = policy(POLICY);
        let mut result = json!({"tools": [{"name": "lookup"}, {"name": "delete_patient"}, {"title": "no name"}]});
        let hidden = hide_denied_tools(&p, asker(), &mut result);
        assert_eq!(result, json!({"tools": [{"name": "lookup"}]}));
        assert_eq!(hidden, ["delete_patient", ""]);
    }

    #[test]
    fn denied_prompts_disappear_from_the_list() {
        let p = policy("name = \"t\"\ndefault = \"allow\"\n[[rules]]\nname = \"no-prompts\"\naction = \"deny\"\nmethods = [\"prompts/get\"]\n");
        let mut result = json!({"prompts": [{"name": "summarise"}]});
        assert_eq!(hide_denied_prompts(&p, asker(), &mut result), ["summarise"]);
        assert_eq!(result, json!({"prompts": []}));
    }

    #[test]
    fn denied_resources_disappear_from_the_list() {
        let p = policy("name = \"t\"\ndefault = \"allow\"\n[[rules]]\nname = \"no-notes\"\naction = \"deny\"\nresources = [\"notes://*\"]\n");
        let mut result = json!({"resources": [{"uri": "patients://1", "name": "a"}, {"uri": "notes://1", "name": "b"}]});
        assert_eq!(
            hide_denied_resources(&p, asker(), &mut result),
            ["notes://1"]
        );
        assert_eq!(
            result,
            json!({"resources": [{"uri": "patients://1", "name": "a"}]})
        );
    }

    #[test]
    fn a_masked_result_is_masked_by_path_and_by_detector_and_goes_back_under_the_agents_id() {
        let p = policy(POLICY);
        let verdict = p.first_match(asker(), &listed_tool("lookup"));
        assert_eq!(verdict.outcome, Outcome::Mask);
        let answer = Message::Result {
            id: Id::Number(900),
            result: json!({
                "content": [{"type": "text", "text": "SSN 123-45-6789"}],
                "structuredContent": {"patients": [{"mrn": "MRN-1"}]}
            }),
        };
        let t = treat(&p, &verdict, Id::String("a".into()), answer, 1 << 20);
        let Message::Result { id, result } = &t.message else {
            panic!()
        };
        assert_eq!(id, &Id::String("a".into()));
        let text = result.to_string();
        assert!(!text.contains("123-45-6789"), "{text}");
        assert!(!text.contains("MRN-1"), "{text}");
        assert_eq!(t.changes.masked_by_path, 1);
        assert!(t.changes.detector_hits >= 1);
    }

    #[test]
    fn an_error_message_is_masked_too_and_a_large_result_is_refused() {
        let p = policy(POLICY);
        let verdict = p.first_match(asker(), &listed_tool("lookup"));
        let answer = Message::Error {
            id: Some(Id::Number(1)),
            code: -32000,
            message: "no such patient 123-45-6789".into(),
            data: None,
        };
        let t = treat(&p, &verdict, Id::Number(5), answer, 1 << 20);
        let Message::Error { message, id, .. } = &t.message else {
            panic!()
        };
        assert!(!message.contains("123-45-6789"), "{message}");
        assert_eq!(id, &Some(Id::Number(5)));
        let big = Message::Result {
            id: Id::Number(1),
            result: json!({"content": [{"type": "text", "text": "x".repeat(5000)}]}),
        };
        let t = treat(&p, &verdict, Id::Number(5), big, 1024);
        assert!(t.too_large);
        assert!(matches!(
            t.message,
            Message::Error {
                code: codes::RESULT_TOO_LARGE,
                ..
            }
        ));
    }

    #[test]
    fn sampling_elicitation_and_roots_need_a_rule_and_notifications_are_masked() {
        let p = policy("name = \"t\"\ndefault = \"allow\"\n");
        let sampling = vigil_mcp::jsonrpc::message(
            json!({"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}),
        )
        .unwrap();
        let v = judge_server_request(&p, asker(), &sampling);
        assert_eq!(
            (v.outcome, v.rule.as_str()),
            (Outcome::Deny, SERVER_REQUEST_RULE)
        );
        let roots =
            vigil_mcp::jsonrpc::message(json!({"jsonrpc":"2.0","id":2,"method":"roots/list"}))
                .unwrap();
        assert_eq!(
            judge_server_request(&p, asker(), &roots).outcome,
            Outcome::Deny,
            "roots widen a server's reach"
        );
        let log = vigil_mcp::jsonrpc::message(json!({"jsonrpc":"2.0","method":"notifications/message","params":{"data":"read 123-45-6789"}})).unwrap();
        let mut masked = log.clone();
        assert_eq!(mask_params(&mut masked, &masker()), 1);
        assert!(!masked.to_value().to_string().contains("123-45-6789"));
        let allowing = policy("name = \"t\"\ndefault = \"deny\"\n[[rules]]\nname = \"s\"\naction = \"allow\"\nmethods = [\"sampling/createMessage\"]\n");
        assert_eq!(
            judge_server_request(&allowing, asker(), &sampling).outcome,
            Outcome::Allow
        );
    }
}
