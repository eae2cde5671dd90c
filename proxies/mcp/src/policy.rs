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
use crate::result_mask::PathRule;

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
    #[serde(default, deserialize_with = "checked_arguments")]
    pub arguments: std::collections::BTreeMap<String, Vec<String>>,
}

fn checked_arguments<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, D::Error> {
    let map = std::collections::BTreeMap::<String, Vec<String>>::deserialize(d)?;
    check_argument_paths(&map).map_err(serde::de::Error::custom)?;
    Ok(map)
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
            match field("arguments") {
                None => None,
                Some(Value::Object(args)) => suspicious_arguments(args),
                Some(_) => Some("a tools/call whose arguments are not an object"),
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            match field("uri").and_then(Value::as_str) {
                None => Some("a resource request whose uri is missing or not a string"),
                Some(uri) if !uri_is_normal(uri) => Some(
                    "a resource uri that a server would read as another (not in normal form: case, dot segments, escapes, spaces)",
                ),
                Some(_) => None,
            }
        }
        _ => None,
    }
}

/// Whether a URI is already what a WHATWG URL parser (the TypeScript SDK's
/// `new URL(uri).toString()`, pydantic's `AnyUrl` likewise) makes of it:
/// otherwise a rule about `file:///etc/*` would not see
/// `file:///srv/../etc/shadow`, which the server reads as that.
fn uri_is_normal(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| u.as_str() == uri)
}

/// Arguments a server may read differently from how a rule sees them: a
/// `__proto__` key (a Node server that merges arguments gets an inherited
/// member policy never saw), or a string that looks like JSON but does not
/// parse strictly (FastMCP parses such strings with Python's lenient
/// `json.loads`, last duplicate key winning).
fn suspicious_arguments(args: &Map<String, Value>) -> Option<&'static str> {
    fn walk(v: &Value) -> Option<&'static str> {
        match v {
            Value::Object(o) => {
                if o.contains_key("__proto__") {
                    return Some("tool arguments with a __proto__ key");
                }
                o.values().find_map(walk)
            }
            Value::Array(a) => a.iter().find_map(walk),
            Value::String(s) => match embedded_json(s) {
                Some(Err(())) => Some(
                    "a tool argument that looks like JSON but is not strict JSON (a server may parse it its own way)",
                ),
                Some(Ok(inner)) => walk(&inner),
                None => None,
            },
            _ => None,
        }
    }
    if args.contains_key("__proto__") {
        return Some("tool arguments with a __proto__ key");
    }
    args.values().find_map(walk)
}

/// A string argument that holds a JSON array or object: its value
/// (`Some(Err)` if it looks like one but is not strict JSON).
fn embedded_json(s: &str) -> Option<Result<Value, ()>> {
    let t = s.trim_start();
    if !(t.starts_with('[') || t.starts_with('{')) {
        return None;
    }
    Some(crate::strict_json::parse(s.as_bytes()).map_err(|_| ()))
}

/// A `tools/call` of `tool` without arguments: how a tool in a
/// `tools/list` answer is judged (a rule that needs arguments does not
/// match it, so it does not hide the tool; it judges each call).
pub fn listed_tool(tool: &str) -> Message {
    listed("tools/call", "name", tool)
}

/// The request an entry of a list stands for (`resources/read` of a
/// listed resource's `uri`, `prompts/get` of a prompt's `name`): how the
/// entry is judged.
pub fn listed(method: &str, param: &str, value: &str) -> Message {
    let mut params = Map::new();
    params.insert(param.into(), Value::from(value));
    Message::Request {
        id: crate::jsonrpc::Id::Number(0),
        method: method.into(),
        params: Some(params),
    }
}

/// The MCP family's sections of a policy file: `[masking]` path rules
/// for fields of results that detectors cannot recognise by shape.
///
/// ```toml
/// [masking]
/// paths = [
///   { path = "structuredContent.patients[*].name", format = "redact" },
///   { path = "structuredContent.patients[*].mrn", format = "hash" },
/// ]
/// ```
#[derive(Clone, Debug, Default)]
pub struct McpSections {
    pub mask_paths: Vec<PathRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaskingKeys {
    #[serde(default)]
    paths: Vec<MaskPath>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaskPath {
    path: String,
    #[serde(default)]
    format: vigil_proxy_core::mask::MaskFormat,
}

impl Family for Mcp {
    type Conditions = McpConditions;
    type Sections = McpSections;
    type Subject = Message;
    type Shapes = ();

    fn sections(top: toml::Table, masking: toml::Table) -> Result<McpSections, PolicyError> {
        if let Some(key) = top.keys().next() {
            return Err(PolicyError::Syntax(format!(
                "unknown field `{key}` (not a key of an MCP policy)"
            )));
        }
        let masking = MaskingKeys::deserialize(toml::Value::Table(masking))
            .map_err(|e| PolicyError::Masking(e.to_string().trim().to_string()))?;
        let paths = masking
            .paths
            .iter()
            .map(|p| PathRule::parse(&p.path, p.format))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PolicyError::Masking(e.to_string()))?;
        Ok(McpSections { mask_paths: paths })
    }

    fn matches(_: &McpSections, rule: &Rule<McpConditions>, message: &Message) -> bool {
        View::of(message).is_some_and(|view| conditions_hold(&rule.conditions, rule.action, &view))
    }
}

/// Whether every condition given holds for the message seen as `subject`.
fn conditions_hold(c: &McpConditions, action: Outcome, subject: &View<'_>) -> bool {
    let listed = |patterns: &[String], value: Option<&str>| {
        patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| exact_or_prefix(p, v)))
    };
    listed(&c.methods, Some(subject.method))
        && listed(&c.tools, subject.tool)
        && listed(&c.resources, subject.resource)
        && (c.arguments.is_empty()
            || subject
                .arguments
                .is_some_and(|args| arguments_hold(&c.arguments, action, args)))
}

/// Argument conditions. A rule that refuses or holds (`deny`, `review`)
/// matches if any value at each path matches: one forbidden value among
/// many is enough. A rule that lets through (`allow`, `mask`) matches only
/// if every value at each path matches: `["weather", "patients"]` is not
/// covered by an exception written for `weather`.
fn arguments_hold(
    conditions: &std::collections::BTreeMap<String, Vec<String>>,
    action: Outcome,
    args: &Map<String, Value>,
) -> bool {
    let lets_through = matches!(action, Outcome::Allow | Outcome::Mask);
    conditions.iter().all(|(path, patterns)| {
        let values = values_at(args, path);
        let matches = |v: &Value| patterns.iter().any(|p| value_matches(p, v));
        if lets_through {
            !values.is_empty() && values.iter().all(matches)
        } else {
            values.iter().any(matches)
        }
    })
}

/// `pattern` is the name, or ends in `*` and starts it.
fn exact_or_prefix(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// An argument value against a pattern: numbers as numbers when the
/// pattern is one (`95`, `95.0`, `9.5e1` alike), text folded so that what
/// a backend takes as equal is equal here ([`fold`]).
fn value_matches(pattern: &str, value: &Value) -> bool {
    if let (Some(n), Ok(p)) = (value.as_f64(), pattern.parse::<f64>()) {
        return n == p;
    }
    let text = match value {
        Value::String(s) => fold(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return false,
    };
    exact_or_prefix(&fold(pattern), &text)
}

/// Text as case-insensitive backends compare it: compatibility forms
/// unified (NFKC: full-width letters, the long s), case folded both ways
/// (`ß` and `SS`, the Turkish dotted capital I), combining marks and
/// invisible characters dropped, surrounding space trimmed (PAD SPACE
/// collations ignore it).
pub fn fold(s: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    let upper: String = s.nfkc().collect::<String>().to_uppercase();
    upper
        .to_lowercase()
        .nfd()
        .filter(|c| !is_combining_mark(*c) && !is_invisible(*c))
        .collect::<String>()
        .trim()
        .to_string()
}

/// Default-ignorable characters that render as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// The values at a dotted path into `args` (`a.b`, `items[*].id`). A string
/// holding JSON is read as that JSON on the way (a server may parse it);
/// at the end, an array where a single value was named counts as its
/// elements (a server may take either).
fn values_at(args: &Map<String, Value>, path: &str) -> Vec<Value> {
    let expand = |v: &Value| -> Value {
        match v {
            Value::String(s) => match embedded_json(s) {
                Some(Ok(inner)) => inner,
                _ => v.clone(),
            },
            _ => v.clone(),
        }
    };
    // Every value in `here` is already expanded.
    let mut here: Vec<Value> = Vec::new();
    for (i, part) in path.split('.').enumerate() {
        let (key, every) = match part.strip_suffix("[*]") {
            Some(k) => (k, true),
            None => (part, false),
        };
        let next: Vec<Value> = if i == 0 {
            args.get(key).map(expand).into_iter().collect()
        } else {
            here.iter().filter_map(|v| v.get(key)).map(expand).collect()
        };
        here = if every {
            next.into_iter()
                .filter_map(|v| match v {
                    Value::Array(a) => Some(a.into_iter().map(|x| expand(&x)).collect::<Vec<_>>()),
                    _ => None,
                })
                .flatten()
                .collect()
        } else {
            next
        };
    }
    here.into_iter()
        .flat_map(|v| match v {
            Value::Array(a) => a,
            v => vec![v],
        })
        .collect()
}

/// Checks an `arguments` condition when the policy loads: a path nobody
/// can reach or a rule with no values would silently never match.
fn check_argument_paths(
    arguments: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    for (path, patterns) in arguments {
        for part in path.split('.') {
            let key = part.strip_suffix("[*]").unwrap_or(part);
            if key.is_empty() || key.contains(['[', ']', '*']) {
                return Err(format!(
                    "arguments path {path:?}: each step is a key, optionally followed by [*]"
                ));
            }
        }
        if patterns.is_empty() {
            return Err(format!("arguments path {path:?} lists no values"));
        }
    }
    Ok(())
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
        let Incoming::One(message) = decode(body.as_bytes(), Batches::Refused).expect(body) else {
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

    /// What a hostile agent tries against argument and resource rules
    /// (each case a reading a Node or Python server would make).
    #[test]
    fn what_a_server_reads_differently_is_judged_as_the_server_reads_it() {
        let p = Policy::parse(
            r#"
name = "hostile"
default = "review"
[[rules]]
name = "weather-only"
action = "allow"
tools = ["run_query"]
arguments = { "tables[*]" = ["weather"] }
[[rules]]
name = "no-patients"
action = "deny"
tools = ["run_query", "fetch"]
arguments = { "table" = ["patients"] }
[[rules]]
name = "no-bulk"
action = "deny"
tools = ["fetch_records"]
arguments = { "ids[*]" = ["95"], "options.format" = ["csv"] }
[[rules]]
name = "secrets"
action = "deny"
resources = ["file:///etc/*"]
[[rules]]
name = "reads"
action = "allow"
methods = ["resources/read"]
"#,
        )
        .unwrap();
        let fail_closed = vigil_proxy_core::policy::FAIL_CLOSED_RULE;
        let read = |uri: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#
            )
        };
        let cases: Vec<(String, Outcome, &str)> = vec![
            // An exception for one table does not cover a list with another.
            (
                call("run_query", r#"{"tables":["weather","patients"]}"#),
                Outcome::Review,
                "default",
            ),
            (
                call("run_query", r#"{"tables":["weather"]}"#),
                Outcome::Allow,
                "weather-only",
            ),
            (
                call("run_query", r#"{"tables":[]}"#),
                Outcome::Review,
                "default",
            ),
            // Folded as case-insensitive backends fold.
            (
                call("run_query", r#"{"table":"PATİENTS"}"#),
                Outcome::Deny,
                "no-patients",
            ),
            (
                call("run_query", r#"{"table":"patientſ"}"#),
                Outcome::Deny,
                "no-patients",
            ),
            (
                call("run_query", r#"{"table":"ｐａｔｉｅｎｔｓ"}"#),
                Outcome::Deny,
                "no-patients",
            ),
            (
                call("run_query", r#"{"table":"patients "}"#),
                Outcome::Deny,
                "no-patients",
            ),
            (
                call("run_query", r#"{"table":"pat\u200bients"}"#),
                Outcome::Deny,
                "no-patients",
            ),
            // A list where one value was expected.
            (
                call("fetch", r#"{"table":["patients"]}"#),
                Outcome::Deny,
                "no-patients",
            ),
            // Numbers as numbers.
            (
                call(
                    "fetch_records",
                    r#"{"ids":[95.0],"options":{"format":"csv"}}"#,
                ),
                Outcome::Deny,
                "no-bulk",
            ),
            (
                call(
                    "fetch_records",
                    r#"{"ids":[9.5e1],"options":{"format":"csv"}}"#,
                ),
                Outcome::Deny,
                "no-bulk",
            ),
            // JSON inside strings, as FastMCP parses it.
            (
                call(
                    "fetch_records",
                    r#"{"ids":"[95]","options":"{\"format\":\"csv\"}"}"#,
                ),
                Outcome::Deny,
                "no-bulk",
            ),
            // JSON inside a string that strict parsing refuses: fail closed.
            (
                call(
                    "fetch_records",
                    r#"{"ids":"[95]","options":"{\"format\":\"json\",\"format\":\"csv\"}"}"#,
                ),
                Outcome::Deny,
                fail_closed,
            ),
            (
                call("run_query", r#"{"__proto__":{"table":"patients"}}"#),
                Outcome::Deny,
                fail_closed,
            ),
            // URIs a server reads as /etc/shadow.
            (read("file:///etc/shadow"), Outcome::Deny, "secrets"),
            (read("file:///srv/a"), Outcome::Allow, "reads"),
            (read("FILE:///etc/shadow"), Outcome::Deny, fail_closed),
            (
                read("file:///srv/../etc/shadow"),
                Outcome::Deny,
                fail_closed,
            ),
            (
                read("file:///%2e%2e/etc/shadow"),
                Outcome::Deny,
                fail_closed,
            ),
            (
                read("file://localhost/etc/shadow"),
                Outcome::Deny,
                fail_closed,
            ),
            (read(" file:///etc/shadow"), Outcome::Deny, fail_closed),
            (read("file:///et\\tc/shadow"), Outcome::Deny, fail_closed),
        ];
        for (body, outcome, rule) in cases {
            assert_eq!(outcome_of(&p, &body), (outcome, rule.to_string()), "{body}");
        }
    }

    #[test]
    fn masking_paths_load_with_the_policy_and_bad_ones_are_refused() {
        let p = Policy::parse(
            "name = \"x\"\ndefault = \"mask\"\n[masking]\npaths = [{ path = \"structuredContent.patients[*].name\" }, { path = \"result.structuredContent.mrn\", format = \"hash\" }]\n",
        )
        .unwrap();
        let paths = &p.family().mask_paths;
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[1].format, vigil_proxy_core::mask::MaskFormat::Hash);
        for (text, want) in [
            (
                "[masking]\npaths = [{ path = \"a..b\" }]\n",
                "each step is a key",
            ),
            (
                "[masking]\npaths = [{ path = \"a\", format = \"blur\" }]\n",
                "blur",
            ),
            (
                "[masking]\npaths = [{ path = \"a\", fromat = \"hash\" }]\n",
                "fromat",
            ),
            ("[masking]\ncolumns = []\n", "columns"),
        ] {
            let err = Policy::parse(&format!("name = \"x\"\ndefault = \"mask\"\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn a_misspelled_key_is_refused_naming_the_rule() {
        for (text, want) in [
            ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\ntool = [\"a\"]\n", "rule \"r\""),
            ("name = \"x\"\ndefault = \"allow\"\ntables = [\"a\"]\n", "not a key of an MCP policy"),
            ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\narguments = { a = \"b\" }\n", "rule \"r\""),
            ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\narguments = { \"ids[*][*]\" = [\"1\"] }\n", "each step is a key"),
            ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\narguments = { \"a\" = [] }\n", "lists no values"),
        ] {
            let err = Policy::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
