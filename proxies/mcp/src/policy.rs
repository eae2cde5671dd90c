//! The MCP family of policy conditions: what a rule may say about one
//! JSON-RPC message of an MCP session. The engine (who and where, first
//! match, strictest, review settings) is `vigil_proxy_core::policy`; the
//! server a message goes to is the engine's `connections` (the `[[mcp]]`
//! listener's name).
//!
//! ```toml
//! [[rules]]
//! name = "no-deletes"
//! action = "deny"
//! tools = ["delete_*"]
//!
//! [[rules]]
//! name = "exports-need-a-second-look"
//! action = "review"
//! tools = ["run_query"]
//! arguments = { "table" = ["patients", "notes*"] }
//!
//! [[rules]]
//! name = "no-sampling"
//! action = "deny"
//! methods = ["sampling/createMessage", "elicitation/*"]
//! ```
//!
//! How names match (and why):
//! - methods, tools and resource URIs exactly, case and all, with `*` at
//!   the end for a prefix: MCP names are case-sensitive, so `Delete_x` is
//!   another tool the server would have to offer, and a case-insensitive
//!   `allow` would let it through under a rule written for another;
//! - argument values case-insensitively (with `*` at the end for a
//!   prefix): they often name what a backend resolves without case (a
//!   table, a user), and a rule about them is usually a refusal, which
//!   must not be dodged by `PATIENTS` for `patients`.

use serde::Deserialize;
use serde_json::{Map, Value};
use vigil_proxy_core::policy::{Family, PolicyEngine, PolicyError, Rule};

use crate::jsonrpc::Message;

pub use vigil_proxy_core::policy::{Asker, Outcome, Verdict};

/// The MCP protocol family.
#[derive(Clone, Copy, Debug)]
pub struct Mcp;

/// A policy whose rules carry MCP conditions.
pub type Policy = PolicyEngine<Mcp>;

/// The conditions an MCP rule may carry: all that are given must hold; a
/// list holds if any entry matches.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConditions {
    /// JSON-RPC methods (`tools/call`, `resources/read`,
    /// `sampling/createMessage`, `notifications/*`).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Tool names of a `tools/call`.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Resource URIs of a `resources/read` or `resources/subscribe`.
    #[serde(default)]
    pub resources: Vec<String>,
    /// A tool call's arguments: for each path (dotted keys into the
    /// arguments object, `[*]` for every element of an array), the values
    /// that match. The condition holds if every path has a value that
    /// matches one of its patterns.
    #[serde(default)]
    pub arguments: std::collections::BTreeMap<String, Vec<String>>,
}

/// What of a message the conditions look at (borrowed from it).
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    method: &'a str,
    /// The tool of a `tools/call`.
    tool: Option<&'a str>,
    /// The resource of a `resources/read` or `resources/subscribe`.
    resource: Option<&'a str>,
    /// The arguments of a `tools/call`.
    arguments: Option<&'a Map<String, Value>>,
}

impl<'a> View<'a> {
    /// The view of a request or notification (`None` for an answer:
    /// answers are judged by the request they answer, and match no rule).
    fn of(message: &'a Message) -> Option<Self> {
        let (method, params) = match message {
            Message::Request { method, params, .. } | Message::Notification { method, params } => {
                (method.as_str(), params.as_ref())
            }
            _ => return None,
        };
        let text = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_str);
        let (tool, resource, arguments) = match method {
            "tools/call" => (
                text("name"),
                None,
                params
                    .and_then(|p| p.get("arguments"))
                    .and_then(Value::as_object),
            ),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                (None, text("uri"), None)
            }
            _ => (None, None, None),
        };
        Some(View {
            method,
            tool,
            resource,
            arguments,
        })
    }
}

/// The verdict on one message from `asker`: the first rule that matches,
/// or, for a message whose parts policy reads are malformed (a
/// `tools/call` whose name is not a string or whose arguments are not an
/// object, a `resources/read` whose uri is not a string), the strictest
/// outcome any rule could give this asker: a rule cannot be matched
/// against a name nobody can read, and the server may read it some way.
pub fn judge(policy: &Policy, asker: Asker<'_>, message: &Message) -> Verdict {
    if let Some(problem) = malformed(message) {
        return policy.strictest(asker, problem);
    }
    policy.first_match(asker, message)
}

/// What is wrong with the parts of `message` policy reads, if anything.
fn malformed(message: &Message) -> Option<&'static str> {
    let (Message::Request { method, params, .. } | Message::Notification { method, params }) =
        message
    else {
        return None;
    };
    let field = |key: &str| params.as_ref().and_then(|p| p.get(key));
    match method.as_str() {
        "tools/call" => {
            if !field("name").is_some_and(Value::is_string) {
                return Some("a tools/call whose tool name is missing or not a string");
            }
            if field("arguments").is_some_and(|a| !a.is_object()) {
                return Some("a tools/call whose arguments are not an object");
            }
            None
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe"
            if !field("uri").is_some_and(Value::is_string) =>
        {
            Some("a resource request whose uri is missing or not a string")
        }
        _ => None,
    }
}

/// A `tools/call` of `tool` without arguments: how a tool in a
/// `tools/list` answer is judged (a rule that needs arguments does not
/// match it, so it does not hide the tool; it judges each call).
pub fn listed_tool(tool: &str) -> Message {
    let mut params = Map::new();
    params.insert("name".into(), Value::from(tool));
    Message::Request {
        id: crate::jsonrpc::Id::Number(0),
        method: "tools/call".into(),
        params: Some(params),
    }
}

impl Family for Mcp {
    type Conditions = McpConditions;
    type Sections = ();
    type Subject = Message;
    type Shapes = ();

    fn sections(top: toml::Table, masking: toml::Table) -> Result<(), PolicyError> {
        match top.keys().chain(masking.keys()).next() {
            Some(key) => Err(PolicyError::Syntax(format!(
                "unknown field `{key}` (not a key of an MCP policy)"
            ))),
            None => Ok(()),
        }
    }

    fn matches(_: &(), rule: &Rule<McpConditions>, message: &Message) -> bool {
        View::of(message).is_some_and(|view| conditions_hold(&rule.conditions, &view))
    }
}

/// Whether every condition given holds for the message seen as `subject`.
fn conditions_hold(c: &McpConditions, subject: &View<'_>) -> bool {
    let listed = |patterns: &[String], value: Option<&str>| {
        patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| exact_or_prefix(p, v)))
    };
    listed(&c.methods, Some(subject.method))
        && listed(&c.tools, subject.tool)
        && listed(&c.resources, subject.resource)
        && (c.arguments.is_empty()
            || subject.arguments.is_some_and(|args| {
                c.arguments.iter().all(|(path, patterns)| {
                    values_at(args, path)
                        .iter()
                        .any(|v| patterns.iter().any(|p| value_matches(p, v)))
                })
            }))
}

/// `pattern` is the name, or ends in `*` and starts it.
fn exact_or_prefix(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// An argument value against a pattern, without case.
fn value_matches(pattern: &str, value: &Value) -> bool {
    let text = match value {
        Value::String(s) => s.to_lowercase(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return false,
    };
    exact_or_prefix(&pattern.to_lowercase(), &text)
}

/// The values at a dotted path into `args` (`a.b`, `items[*].id`).
fn values_at<'v>(args: &'v Map<String, Value>, path: &str) -> Vec<&'v Value> {
    let mut here: Vec<&Value> = Vec::new();
    let mut first = true;
    for part in path.split('.') {
        let (key, every) = match part.strip_suffix("[*]") {
            Some(k) => (k, true),
            None => (part, false),
        };
        let next: Vec<&Value> = if first {
            args.get(key).into_iter().collect()
        } else {
            here.iter()
                .filter_map(|v| v.as_object().and_then(|o| o.get(key)))
                .collect()
        };
        first = false;
        here = if every {
            next.into_iter()
                .filter_map(Value::as_array)
                .flatten()
                .collect()
        } else {
            next
        };
    }
    here
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{decode, Batches, Incoming};

    const POLICY: &str = r#"
name = "mcp-test"
default = "allow"
[review]
approver_groups = ["privacy"]
[[rules]]
name = "no-deletes"
action = "deny"
tools = ["delete_*"]
[[rules]]
name = "exports"
action = "review"
tools = ["run_query"]
arguments = { "table" = ["patients", "notes*"] }
[[rules]]
name = "bulk-ids"
action = "review"
tools = ["fetch_records"]
arguments = { "ids[*]" = ["9*"], "options.format" = ["csv"] }
[[rules]]
name = "no-sampling"
action = "deny"
methods = ["sampling/createMessage", "elicitation/*"]
[[rules]]
name = "secrets"
action = "deny"
resources = ["file:///etc/*"]
[[rules]]
name = "reads"
action = "mask"
tools = ["read_*"]
"#;

    fn asker() -> Asker<'static> {
        Asker {
            subject: "agent",
            groups: &[],
            connection: "ehr",
        }
    }

    fn outcome_of(policy: &Policy, body: &str) -> (Outcome, String) {
        let Incoming::One(message) = decode(body.as_bytes(), Batches::Refused).unwrap() else {
            unreachable!()
        };
        let v = judge(policy, asker(), &message);
        (v.outcome, v.rule)
    }

    fn call(tool: &str, args: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        )
    }

    #[test]
    fn rules_match_methods_tools_resources_and_arguments() {
        let p = Policy::parse(POLICY).unwrap();
        let cases: &[(String, Outcome, &str)] = &[
            (call("delete_patient", "{}"), Outcome::Deny, "no-deletes"),
            // Tool names are case-sensitive: another tool, the default.
            (call("Delete_patient", "{}"), Outcome::Allow, "default"),
            (call("run_query", r#"{"table":"patients"}"#), Outcome::Review, "exports"),
            // Argument values without case, and by prefix.
            (call("run_query", r#"{"table":"PATIENTS"}"#), Outcome::Review, "exports"),
            (call("run_query", r#"{"table":"notes_2024"}"#), Outcome::Review, "exports"),
            (call("run_query", r#"{"table":"weather"}"#), Outcome::Allow, "default"),
            (call("run_query", r#"{}"#), Outcome::Allow, "default"),
            // Every path must hold; [*] looks into each element.
            (
                call("fetch_records", r#"{"ids":[1,95],"options":{"format":"csv"}}"#),
                Outcome::Review,
                "bulk-ids",
            ),
            (
                call("fetch_records", r#"{"ids":[1,95],"options":{"format":"json"}}"#),
                Outcome::Allow,
                "default",
            ),
            (call("read_chart", r#"{"mrn":"1"}"#), Outcome::Mask, "reads"),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"sampling/createMessage","params":{}}"#.into(),
                Outcome::Deny,
                "no-sampling",
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"elicitation/create","params":{}}"#.into(),
                Outcome::Deny,
                "no-sampling",
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:///etc/shadow"}}"#.into(),
                Outcome::Deny,
                "secrets",
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///srv/a"}}"#.into(),
                Outcome::Allow,
                "default",
            ),
            (
                r#"{"jsonrpc":"2.0","id":6,"method":"tools/list"}"#.into(),
                Outcome::Allow,
                "default",
            ),
            // A tool name that is not a string names no tool a rule can
            // match: the strictest outcome that could apply.
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":["delete_x"]}}"#.into(),
                Outcome::Deny,
                vigil_proxy_core::policy::FAIL_CLOSED_RULE,
            ),
            (
                r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"run_query","arguments":"table=patients"}}"#.into(),
                Outcome::Deny,
                vigil_proxy_core::policy::FAIL_CLOSED_RULE,
            ),
            (
                r#"{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{}}"#.into(),
                Outcome::Deny,
                vigil_proxy_core::policy::FAIL_CLOSED_RULE,
            ),
        ];
        for (body, outcome, rule) in cases {
            assert_eq!(outcome_of(&p, body), (*outcome, rule.to_string()), "{body}");
        }
        // A listed tool is judged as a call with unknown arguments: a rule
        // that needs arguments does not hide it.
        let listed = |tool: &str| p.first_match(asker(), &listed_tool(tool)).outcome;
        assert_eq!(listed("delete_patient"), Outcome::Deny);
        assert_eq!(listed("run_query"), Outcome::Allow);
    }

    #[test]
    fn a_misspelled_key_is_refused_naming_the_rule() {
        for (text, want) in [
            ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\ntool = [\"a\"]\n", "rule \"r\""),
            ("name = \"x\"\ndefault = \"allow\"\ntables = [\"a\"]\n", "not a key of an MCP policy"),
            ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\narguments = { a = \"b\" }\n", "rule \"r\""),
        ] {
            let err = Policy::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
