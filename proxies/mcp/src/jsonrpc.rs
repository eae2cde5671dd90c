//! JSON-RPC 2.0 messages as MCP uses them, decoded once into a type.
//!
//! MCP's rules on top of JSON-RPC: a request id is a string or an integer,
//! never null; a message is one object (a batch, an array of them, was
//! allowed only by the 2025-03-26 revision, and only where the caller says
//! so). Anything else is refused with a reason, and a refusal can still be
//! answered when the id could be read ([`DecodeError::id`]).

use serde_json::{Map, Value};

use crate::strict_json::{self, JsonError};

/// The largest integer id magnitude: 2^53 - 1, JavaScript's safe integers.
pub const MAX_SAFE_ID: u64 = (1 << 53) - 1;

/// A request id: MCP allows a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Number(i64),
    String(String),
}

impl Id {
    fn read(value: &Value) -> Option<Id> {
        match value {
            Value::String(s) => Some(Id::String(s.clone())),
            // Within what JavaScript holds exactly: a Node server rounds
            // larger ids, and two ids the gateway tells apart would be one.
            Value::Number(n) => n
                .as_i64()
                .filter(|i| i.unsigned_abs() <= MAX_SAFE_ID)
                .map(Id::Number),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => Value::from(*n),
            Id::String(s) => Value::String(s.clone()),
        }
    }
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that expects an answer (`tools/call`, `sampling/createMessage`, ...).
    Request {
        id: Id,
        method: String,
        params: Option<Map<String, Value>>,
    },
    /// A call without an answer (`notifications/...`).
    Notification {
        method: String,
        params: Option<Map<String, Value>>,
    },
    /// A successful answer.
    Result { id: Id, result: Value },
    /// A failed answer; `id` is absent when the request could not be read.
    Error {
        id: Option<Id>,
        code: i64,
        message: String,
        data: Option<Value>,
    },
}

impl Message {
    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            _ => None,
        }
    }

    /// The id of a request or an answer.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Message::Request { id, .. } | Message::Result { id, .. } => Some(id),
            Message::Error { id, .. } => id.as_ref(),
            Message::Notification { .. } => None,
        }
    }

    /// The message as JSON, as it goes on the wire.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        out.insert("jsonrpc".into(), Value::from("2.0"));
        match self {
            Message::Request { id, method, params } => {
                out.insert("id".into(), id.to_value());
                out.insert("method".into(), Value::from(method.as_str()));
                if let Some(p) = params {
                    out.insert("params".into(), Value::Object(p.clone()));
                }
            }
            Message::Notification { method, params } => {
                out.insert("method".into(), Value::from(method.as_str()));
                if let Some(p) = params {
                    out.insert("params".into(), Value::Object(p.clone()));
                }
            }
            Message::Result { id, result } => {
                out.insert("id".into(), id.to_value());
                out.insert("result".into(), result.clone());
            }
            Message::Error {
                id,
                code,
                message,
                data,
            } => {
                out.insert("id".into(), id.as_ref().map_or(Value::Null, Id::to_value));
                let mut error = Map::new();
                error.insert("code".into(), Value::from(*code));
                error.insert("message".into(), Value::from(message.as_str()));
                if let Some(d) = data {
                    error.insert("data".into(), d.clone());
                }
                out.insert("error".into(), Value::Object(error));
            }
        }
        Value::Object(out)
    }
}

/// What a body held: one message, or (where allowed) a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    One(Message),
    Batch(Vec<Message>),
}

/// Whether a body may be a batch (only the 2025-03-26 revision allowed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batches {
    Refused,
    Allowed,
}

/// Why a message was refused, with the JSON-RPC error code to answer with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("not a JSON-RPC 2.0 message: {reason}")]
    Invalid { id: Option<Id>, reason: String },
    #[error("a batch of messages is not allowed here")]
    BatchRefused,
    #[error("an empty batch")]
    EmptyBatch,
}

/// JSON-RPC's code for a body that is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's code for JSON that is not a valid request.
pub const INVALID_REQUEST: i64 = -32600;

impl DecodeError {
    /// The JSON-RPC error code an answer to it carries.
    pub fn code(&self) -> i64 {
        match self {
            DecodeError::Json(JsonError::Syntax(_)) => PARSE_ERROR,
            _ => INVALID_REQUEST,
        }
    }

    /// The id of the refused message, if it could be read (so the answer
    /// can name it).
    pub fn id(&self) -> Option<&Id> {
        match self {
            DecodeError::Invalid { id, .. } => id.as_ref(),
            _ => None,
        }
    }

    /// A fixed word for logs (never the sender's text).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Json(e) => e.kind(),
            DecodeError::Invalid { .. } => "invalid_message",
            DecodeError::BatchRefused => "batch_refused",
            DecodeError::EmptyBatch => "empty_batch",
        }
    }
}

/// Most messages one batch may hold.
pub const MAX_BATCH: usize = 100;

/// Decodes a body: strict JSON, then one message (or a batch where
/// `batches` allows one).
pub fn decode(bytes: &[u8], batches: Batches) -> Result<Incoming, DecodeError> {
    match strict_json::parse(bytes)? {
        Value::Array(items) => {
            if batches == Batches::Refused {
                return Err(DecodeError::BatchRefused);
            }
            if items.is_empty() {
                return Err(DecodeError::EmptyBatch);
            }
            if items.len() > MAX_BATCH {
                return Err(DecodeError::Invalid {
                    id: None,
                    reason: format!("a batch of more than {MAX_BATCH} messages"),
                });
            }
            items
                .into_iter()
                .map(message)
                .collect::<Result<_, _>>()
                .map(Incoming::Batch)
        }
        value => message(value).map(Incoming::One),
    }
}

/// One message from its JSON.
pub fn message(value: Value) -> Result<Message, DecodeError> {
    let Value::Object(mut o) = value else {
        return Err(invalid(None, "a message is a JSON object"));
    };
    // The id, read first, so that a refusal can name it.
    let raw_id = o.remove("id");
    let null_id = raw_id.as_ref().is_some_and(Value::is_null);
    let id = match raw_id {
        None => None,
        Some(v) => match Id::read(&v) {
            Some(id) => Some(id),
            // Only an error answer may carry a null id (its request could
            // not be read).
            None if v.is_null() => None,
            None => return Err(invalid(None, "the id is neither a string nor an integer")),
        },
    };
    if o.remove("jsonrpc") != Some(Value::from("2.0")) {
        return Err(invalid(id, "\"jsonrpc\" is not \"2.0\""));
    }
    let method = o.remove("method");
    let params = o.remove("params");
    let result = o.remove("result");
    let error = o.remove("error");
    if let Some(key) = o.keys().next() {
        return Err(invalid(
            id,
            &format!("an unknown member {:?}", crate::strict_json::clip(key, 64)),
        ));
    }
    match (method, result, error) {
        (Some(method), None, None) => {
            let Value::String(method) = method else {
                return Err(invalid(id, "\"method\" is not a string"));
            };
            let params = match params {
                None => None,
                Some(Value::Object(p)) => Some(p),
                // JSON-RPC allows positional params; MCP never uses them.
                Some(_) => return Err(invalid(id, "\"params\" is not an object")),
            };
            // A null id makes a request to one reader and a notification
            // (no answer) to another: refused.
            if null_id {
                return Err(invalid(None, "a request id must not be null"));
            }
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        (None, Some(result), None) if params.is_none() => match id {
            // (a null id lands here too: a result answers a request)
            Some(id) => Ok(Message::Result { id, result }),
            None => Err(invalid(None, "a result without an id")),
        },
        (None, None, Some(error)) if params.is_none() => {
            let Value::Object(mut e) = error else {
                return Err(invalid(id, "\"error\" is not an object"));
            };
            let code = e.remove("code").and_then(|c| c.as_i64());
            let message = e.remove("message");
            let data = e.remove("data");
            match (code, message, e.keys().next()) {
                (Some(code), Some(Value::String(message)), None) => Ok(Message::Error {
                    id,
                    code,
                    message,
                    data,
                }),
                (_, _, Some(key)) => Err(invalid(
                    id,
                    &format!(
                        "an unknown member {:?} in \"error\"",
                        crate::strict_json::clip(key, 64)
                    ),
                )),
                _ => Err(invalid(id, "\"error\" needs an integer code and a string message")),
            }
        }
        _ => Err(invalid(
            id,
            "a message has exactly one of \"method\", \"result\" and \"error\" (and \"params\" only with \"method\")",
        )),
    }
}

fn invalid(id: Option<Id>, reason: &str) -> DecodeError {
    DecodeError::Invalid {
        id,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Message, DecodeError> {
        match decode(text.as_bytes(), Batches::Refused)? {
            Incoming::One(m) => Ok(m),
            Incoming::Batch(_) => unreachable!(),
        }
    }

    #[test]
    fn each_kind_of_message_decodes_into_its_type_and_back() {
        let cases = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup","arguments":{"mrn":"x"}}}"#,
            r#"{"jsonrpc":"2.0","id":"a-7","method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no such method"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error","data":{"at":3}}}"#,
        ];
        for text in cases {
            let m = one(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let back: Value = serde_json::from_str(text).unwrap();
            assert_eq!(m.to_value(), back, "{text}");
        }
        let m = one(cases[0]).unwrap();
        assert_eq!(m.method(), Some("tools/call"));
        assert_eq!(m.id(), Some(&Id::Number(1)));
        assert!(matches!(
            one(cases[2]).unwrap(),
            Message::Notification { .. }
        ));
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason_and_the_id_when_known() {
        // (text, words of the reason, the id the refusal can name, code)
        let cases: &[(&str, &str, Option<Id>, i64)] = &[
            ("{", "not JSON", None, PARSE_ERROR),
            (r#""tools/call""#, "a JSON object", None, INVALID_REQUEST),
            (
                r#"{"id":1,"method":"x"}"#,
                "\"jsonrpc\" is not \"2.0\"",
                Some(Id::Number(1)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
                "not \"2.0\"",
                Some(Id::Number(1)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
                "neither a string nor an integer",
                None,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
                "neither a string",
                None,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":7}"#,
                "\"method\" is not a string",
                Some(Id::Number(2)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"x","params":[1]}"#,
                "\"params\" is not an object",
                Some(Id::Number(3)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"x","result":1}"#,
                "exactly one of",
                Some(Id::Number(4)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":5}"#,
                "exactly one of",
                Some(Id::Number(5)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","result":1}"#,
                "a result without an id",
                None,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":6,"method":"x","extra":1}"#,
                "an unknown member \"extra\"",
                Some(Id::Number(6)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"error":{"code":"x","message":"m"}}"#,
                "an integer code",
                Some(Id::Number(7)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":8,"error":{"code":1,"message":"m","x":1}}"#,
                "unknown member \"x\" in \"error\"",
                Some(Id::Number(8)),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read","name":"delete"}}"#,
                "appears twice",
                None,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read","Name":"delete"}}"#,
                "differ only in case",
                None,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","ID":9,"id":9,"method":"x"}"#,
                "differ only in case",
                None,
                INVALID_REQUEST,
            ),
            (
                r#"[{"jsonrpc":"2.0","method":"x"}]"#,
                "batch of messages is not allowed",
                None,
                INVALID_REQUEST,
            ),
        ];
        for (text, want, id, code) in cases {
            let err = one(text).expect_err(text);
            assert!(err.to_string().contains(want), "{text}: {err}");
            assert_eq!(err.id(), id.as_ref(), "{text}");
            assert_eq!(err.code(), *code, "{text}");
        }
    }

    #[test]
    fn a_batch_is_read_only_where_allowed_and_each_member_is_checked() {
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
        let Incoming::Batch(items) = decode(batch.as_bytes(), Batches::Allowed).unwrap() else {
            panic!("a batch")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            decode(b"[]", Batches::Allowed),
            Err(DecodeError::EmptyBatch)
        );
        let bad = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0"}]"#;
        assert!(decode(bad.as_bytes(), Batches::Allowed).is_err());
        let many = format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","method":"n"}"#; MAX_BATCH + 1].join(",")
        );
        assert!(decode(many.as_bytes(), Batches::Allowed).is_err());
    }

    proptest::proptest! {
        /// Whatever arrives: a message or a reason, never a panic; a
        /// message decoded, encoded and decoded again is the same message.
        #[test]
        fn any_body_gets_an_answer_and_messages_round_trip(
            text in r#"\{"jsonrpc":"2\.0"(,"id":(1|"a"|null|1\.5))?(,"method":"[a-z/]{1,8}")?(,"params":\{("a":1)?\})?(,"result":(1|\{\}))?(,"error":\{"code":-1,"message":"m"\})?\}"#
        ) {
            if let Ok(Incoming::One(m)) = decode(text.as_bytes(), Batches::Refused) {
                let again = message(m.to_value()).expect("what we encode decodes");
                proptest::prop_assert_eq!(again, m);
            }
        }
    }
}
