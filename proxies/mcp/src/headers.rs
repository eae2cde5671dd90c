//! The request metadata headers of Streamable HTTP (revision 2026-07-28,
//! "Request Metadata"): `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`
//! and `Mcp-Param-{Name}` mirror fields of the body so that intermediaries
//! can route without parsing it. Two sources of truth are a way to make a
//! load balancer or the server act on one value while Vigil judged
//! another, so every mirrored header that is present must agree with the
//! body, whatever the revision, and the ones the revision requires must be
//! present; a request that fails is refused with `HeaderMismatch`
//! (-32020, HTTP 400).
//!
//! Values may be Base64 in the sentinel form `=?base64?...?=` (a name or
//! value that is not plain visible ASCII); they are decoded before the
//! comparison. Integers compare numerically (`42` and `42.0`).

use base64::Engine as _;
use serde_json::Value;

use crate::jsonrpc::Message;

/// The JSON-RPC error code of a header that disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// The first revision that defines `Mcp-Method` and `Mcp-Name` and requires
/// them (and carries the version in each request's `_meta`).
pub const STATELESS_REVISION: &str = "2026-07-28";

/// Where a request's protocol version sits in its body (stateless
/// revisions).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The headers of one POST that matter here, as received (names matched
/// without case by the caller).
#[derive(Debug, Default, Clone)]
pub struct RequestHeaders {
    pub protocol_version: Option<String>,
    pub method: Option<String>,
    pub name: Option<String>,
    /// `Mcp-Param-{Name}` headers: (the `{Name}` part, value).
    pub params: Vec<(String, String)>,
}

/// Why a request's headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header mismatch: {0}")]
pub struct Mismatch(pub String);

/// Checks the mirrored headers of a request against its body. `param_paths`
/// are the tool's `x-mcp-header` properties (name, path of `properties`
/// keys), from [`param_headers`]; empty when the tool is not known.
pub fn check(
    headers: &RequestHeaders,
    message: &Message,
    param_paths: &[(String, Vec<String>)],
) -> Result<(), Mismatch> {
    let (method, params) = match message {
        Message::Request { method, params, .. } | Message::Notification { method, params } => {
            (method.as_str(), params.as_ref())
        }
        _ => {
            return Err(Mismatch(
                "a client POSTs requests and notifications only".into(),
            ))
        }
    };
    let modern = headers
        .protocol_version
        .as_deref()
        .is_some_and(|v| v >= STATELESS_REVISION);
    let body_version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    for (header, value) in [
        ("MCP-Protocol-Version", &headers.protocol_version),
        ("Mcp-Method", &headers.method),
        ("Mcp-Name", &headers.name),
    ] {
        if value.as_deref().is_some_and(|v| !visible_ascii(v)) {
            return Err(Mismatch(format!(
                "{header} holds characters a header may not"
            )));
        }
    }
    if modern {
        let header = headers.protocol_version.as_deref();
        if body_version != header {
            return Err(Mismatch(
                "MCP-Protocol-Version differs from the protocol version in the body's _meta".into(),
            ));
        }
    } else if body_version.is_some_and(|v| v >= STATELESS_REVISION) {
        return Err(Mismatch(
            "the body asks for a stateless revision without MCP-Protocol-Version saying so".into(),
        ));
    }
    match headers.method.as_deref() {
        Some(m) if m != method => {
            return Err(Mismatch("Mcp-Method differs from the body's method".into()))
        }
        None if modern => return Err(Mismatch("Mcp-Method is missing".into())),
        _ => {}
    }
    let body_name = match method {
        "tools/call" | "prompts/get" => params.and_then(|p| p.get("name")),
        "resources/read" => params.and_then(|p| p.get("uri")),
        _ => None,
    }
    .and_then(Value::as_str);
    match (headers.name.as_deref(), body_name) {
        (Some(h), Some(b)) if decode_value(h)? != b => {
            return Err(Mismatch(
                "Mcp-Name differs from the body's name or uri".into(),
            ))
        }
        (Some(_), None) => return Err(Mismatch("Mcp-Name names what the body does not".into())),
        (None, Some(_)) if modern => return Err(Mismatch("Mcp-Name is missing".into())),
        _ => {}
    }
    check_params(
        headers,
        params.and_then(|p| p.get("arguments")),
        param_paths,
    )
}

fn check_params(
    headers: &RequestHeaders,
    arguments: Option<&Value>,
    param_paths: &[(String, Vec<String>)],
) -> Result<(), Mismatch> {
    for (name, value) in &headers.params {
        if !visible_ascii(value) {
            return Err(Mismatch(format!(
                "Mcp-Param-{name} holds characters a header may not"
            )));
        }
    }
    for (name, path) in param_paths {
        let body = path
            .iter()
            .try_fold(arguments, |v, key| Some(v?.get(key)))
            .flatten()
            .filter(|v| !v.is_null());
        let header = headers
            .params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        match (header, body) {
            (None, None) => {}
            (None, Some(_)) => return Err(Mismatch(format!("Mcp-Param-{name} is missing"))),
            (Some(_), None) => {
                return Err(Mismatch(format!(
                    "Mcp-Param-{name} has no value in the body"
                )))
            }
            (Some(h), Some(b)) => {
                let h = decode_value(h)?;
                let same = match b {
                    Value::String(s) => *s == h,
                    Value::Bool(v) => h == v.to_string(),
                    Value::Number(n) => match (n.as_f64(), h.parse::<f64>()) {
                        (Some(a), Ok(b)) => a == b,
                        _ => false,
                    },
                    _ => false,
                };
                if !same {
                    return Err(Mismatch(format!("Mcp-Param-{name} differs from the body")));
                }
            }
        }
    }
    Ok(())
}

/// Visible ASCII, space and tab (RFC 9110 field values).
fn visible_ascii(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
}

/// A header value as the sender meant it: the sentinel form decoded.
pub fn decode_value(v: &str) -> Result<String, Mismatch> {
    let Some(inner) = v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Ok(v.to_string());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(inner)
        .map_err(|_| Mismatch("a header's =?base64?...?= value is not Base64".into()))?;
    String::from_utf8(bytes).map_err(|_| Mismatch("a header's Base64 value is not UTF-8".into()))
}

/// Why a tool's `x-mcp-header` annotations are invalid (the tool is then
/// left out of `tools/list`, as the revision requires of clients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("x-mcp-header: {0}")]
pub struct SchemaError(pub String);

/// The `x-mcp-header` properties of a tool's input schema: (header name
/// part, path of `properties` keys). Only annotations reachable from the
/// root through `properties` alone, on integer, string or boolean
/// properties, with token names unique without case, are valid.
pub fn param_headers(input_schema: &Value) -> Result<Vec<(String, Vec<String>)>, SchemaError> {
    let mut found = Vec::new();
    walk(input_schema, &mut Vec::new(), true, &mut found)?;
    let mut lower: Vec<String> = found.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    lower.sort();
    if lower.windows(2).any(|w| w[0] == w[1]) {
        return Err(SchemaError("two annotations name the same header".into()));
    }
    Ok(found)
}

fn walk(
    schema: &Value,
    path: &mut Vec<String>,
    reachable: bool,
    found: &mut Vec<(String, Vec<String>)>,
) -> Result<(), SchemaError> {
    let Some(o) = schema.as_object() else {
        return Ok(());
    };
    if let Some(name) = o.get("x-mcp-header") {
        let Some(name) = name.as_str() else {
            return Err(SchemaError("an annotation that is not a string".into()));
        };
        if !reachable || path.is_empty() {
            return Err(SchemaError(format!(
                "{name:?} is not on a property reachable through properties alone"
            )));
        }
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(SchemaError(format!("{name:?} is not an HTTP token")));
        }
        let primitive = matches!(
            o.get("type").and_then(Value::as_str),
            Some("string" | "integer" | "boolean")
        );
        if !primitive {
            return Err(SchemaError(format!(
                "{name:?} is on a property that is not a string, integer or boolean"
            )));
        }
        found.push((name.to_string(), path.clone()));
    }
    for (key, value) in o {
        if key == "properties" {
            if let Some(props) = value.as_object() {
                for (prop, sub) in props {
                    path.push(prop.clone());
                    walk(sub, path, reachable, found)?;
                    path.pop();
                }
            }
        } else if value.is_object() || value.is_array() {
            // Anything else (items, oneOf, $defs, ...) is not statically
            // reachable: an annotation in it makes the tool invalid.
            let subs: Vec<&Value> = match value {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            for sub in subs {
                walk(sub, path, false, found)?;
            }
        }
    }
    Ok(())
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{decode, Batches, Incoming};
    use serde_json::json;

    fn msg(body: &str) -> Message {
        let Incoming::One(m) = decode(body.as_bytes(), Batches::Refused).unwrap() else {
            unreachable!()
        };
        m
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sql","arguments":{"region":"us-west1","limit":42,"opts":{"dry":true}},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

    fn modern(name: Option<&str>, params: &[(&str, &str)]) -> RequestHeaders {
        RequestHeaders {
            protocol_version: Some("2026-07-28".into()),
            method: Some("tools/call".into()),
            name: name.map(str::to_string),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn paths() -> Vec<(String, Vec<String>)> {
        param_headers(&json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "limit": {"type": "integer", "x-mcp-header": "Limit"},
                "opts": {"type": "object", "properties": {"dry": {"type": "boolean", "x-mcp-header": "Dry"}}},
                "note": {"type": "string", "x-mcp-header": "Note"}
            }
        }))
        .unwrap()
    }

    #[test]
    fn headers_that_agree_with_the_body_pass() {
        let m = msg(CALL);
        let ok = modern(
            Some("execute_sql"),
            &[("region", "us-west1"), ("Limit", "42.0"), ("Dry", "true")],
        );
        check(&ok, &m, &paths()).unwrap();
        // The sentinel form, decoded before comparing.
        let encoded = modern(
            Some("=?base64?ZXhlY3V0ZV9zcWw=?="),
            &[("Region", "us-west1"), ("Limit", "42"), ("Dry", "true")],
        );
        check(&encoded, &m, &paths()).unwrap();
        // A legacy request without mirrored headers.
        let legacy = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#);
        let h = RequestHeaders {
            protocol_version: Some("2025-06-18".into()),
            ..Default::default()
        };
        check(&h, &legacy, &[]).unwrap();
    }

    #[test]
    fn headers_that_disagree_or_are_missing_are_refused() {
        let m = msg(CALL);
        let all = &[("Region", "us-west1"), ("Limit", "42"), ("Dry", "true")];
        let cases: Vec<(RequestHeaders, &str)> = vec![
            (modern(Some("drop_table"), all), "Mcp-Name differs"),
            (
                modern(Some("=?base64?ZHJvcF90YWJsZQ==?="), all),
                "Mcp-Name differs",
            ),
            (modern(None, all), "Mcp-Name is missing"),
            (
                modern(
                    Some("execute_sql"),
                    &[("Region", "eu-west1"), ("Limit", "42"), ("Dry", "true")],
                ),
                "Mcp-Param-Region differs",
            ),
            (
                modern(Some("execute_sql"), &[("Limit", "42"), ("Dry", "true")]),
                "Mcp-Param-Region is missing",
            ),
            (
                modern(
                    Some("execute_sql"),
                    &[
                        ("Region", "us-west1"),
                        ("Limit", "42"),
                        ("Dry", "true"),
                        ("Note", "x"),
                    ],
                ),
                "Mcp-Param-Note has no value",
            ),
            (
                modern(Some("execute_sql\u{7f}"), all),
                "characters a header may not",
            ),
            (modern(Some("=?base64?!!?="), all), "not Base64"),
            (
                RequestHeaders {
                    method: Some("tools/list".into()),
                    ..modern(Some("execute_sql"), all)
                },
                "Mcp-Method differs",
            ),
            (
                RequestHeaders {
                    method: None,
                    ..modern(Some("execute_sql"), all)
                },
                "Mcp-Method is missing",
            ),
            (
                RequestHeaders {
                    protocol_version: Some("2026-09-01".into()),
                    ..modern(Some("execute_sql"), all)
                },
                "differs from the protocol version in the body",
            ),
            (
                RequestHeaders {
                    protocol_version: None,
                    ..modern(Some("execute_sql"), all)
                },
                "without MCP-Protocol-Version",
            ),
        ];
        for (h, want) in cases {
            let err = check(&h, &m, &paths()).unwrap_err();
            assert!(err.to_string().contains(want), "{h:?}: {err}");
        }
        // Even on a legacy revision, a mirrored header present must agree.
        let legacy = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#);
        let h = RequestHeaders {
            protocol_version: Some("2025-11-25".into()),
            name: Some("y".into()),
            ..Default::default()
        };
        assert!(check(&h, &legacy, &[]).is_err());
    }

    #[test]
    fn invalid_annotations_make_the_tool_invalid() {
        for (schema, want) in [
            (
                json!({"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "A"}}}}),
                "reachable",
            ),
            (
                json!({"properties": {"a": {"oneOf": [{"type": "string", "x-mcp-header": "A"}]}}}),
                "reachable",
            ),
            (
                json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
                "not a string, integer or boolean",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}),
                "not an HTTP token",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
                "not an HTTP token",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": "X"}, "b": {"type": "string", "x-mcp-header": "x"}}}),
                "same header",
            ),
            (
                json!({"type": "string", "x-mcp-header": "Root"}),
                "reachable",
            ),
        ] {
            let err = param_headers(&schema).unwrap_err();
            assert!(err.to_string().contains(want), "{schema}: {err}");
        }
        assert_eq!(paths().len(), 4);
    }
}
