//! JSON parsed strictly into a [`serde_json::Value`]: the grammar is
//! serde_json's (which already refuses invalid UTF-8 and lone surrogate
//! escapes), and on top of it every object is checked while it is read:
//! no key twice, no two keys equal but for case (Unicode lowercase), and
//! no nesting deeper than [`MAX_DEPTH`].

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Objects and arrays nested deeper than this are refused (an MCP message
/// needs a handful of levels; a tool's arguments a few more).
pub const MAX_DEPTH: usize = 64;

/// Why a text is not strict JSON. The path names where (`$.params.name`);
/// it may carry the sender's key names, so it goes back to the sender, and
/// logs take only [`JsonError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("not JSON: {0}")]
    Syntax(String),
    #[error("the key {key:?} appears twice in the object at {path}")]
    DuplicateKey { path: String, key: String },
    #[error("the keys {first:?} and {second:?} differ only in case in the object at {path}")]
    CaseCollision {
        path: String,
        first: String,
        second: String,
    },
    #[error("nested deeper than {MAX_DEPTH} levels at {path}")]
    TooDeep { path: String },
}

/// Longest key or path an error quotes (the rest is cut, marked `...`):
/// an error goes back to the sender and must not grow with its input.
pub const MAX_QUOTED: usize = 64;

/// `text` cut to `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

impl JsonError {
    /// A fixed word for logs (never the sender's text).
    pub fn kind(&self) -> &'static str {
        match self {
            JsonError::Syntax(_) => "syntax",
            JsonError::DuplicateKey { .. } => "duplicate_key",
            JsonError::CaseCollision { .. } => "case_collision",
            JsonError::TooDeep { .. } => "too_deep",
        }
    }
}

/// Parses `bytes` as one strict JSON value.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = std::cell::RefCell::new(None);
    let value = Strict {
        path: &Path::Root,
        depth: 0,
        found: &found,
    }
    .deserialize(&mut de);
    // A strictness error is raised through serde as a custom error; the
    // typed one waits in `found`.
    if let Some(e) = found.into_inner() {
        return Err(e);
    }
    let value = value.map_err(|e| JsonError::Syntax(e.to_string()))?;
    de.end().map_err(|e| JsonError::Syntax(e.to_string()))?;
    Ok(value)
}

/// Where a value is, for error messages: built only when one is needed.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Key(parent, key) => {
                // Keys a reader can take for a path go in quotes.
                if !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    write!(f, "{parent}.{key}")
                } else {
                    write!(f, "{parent}[{key:?}]")
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

struct Strict<'a> {
    path: &'a Path<'a>,
    depth: usize,
    found: &'a std::cell::RefCell<Option<JsonError>>,
}

impl Strict<'_> {
    fn fail<E: serde::de::Error>(&self, error: JsonError) -> E {
        let text = error.to_string();
        *self.found.borrow_mut() = Some(error);
        E::custom(text)
    }

    fn enter<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(JsonError::TooDeep {
                path: clip(&self.path.to_string(), MAX_QUOTED * 4),
            }));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        loop {
            let path = Path::Index(self.path, items.len());
            let seed = Strict {
                path: &path,
                depth: self.depth + 1,
                found: self.found,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut object = Map::new();
        // Lowercased key -> the key as written, for the case check.
        let mut folded: std::collections::HashMap<String, String> = Default::default();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(self.fail(JsonError::DuplicateKey {
                    path: clip(&self.path.to_string(), MAX_QUOTED * 4),
                    key: clip(&key, MAX_QUOTED),
                }));
            }
            // Folded both ways: `ſ`/`s`, `ß`/`SS` and `ı`/`i` are one key to
            // servers that compare by upper case or full case folding.
            if let Some(first) = folded.insert(key.to_uppercase().to_lowercase(), key.clone()) {
                return Err(self.fail(JsonError::CaseCollision {
                    path: clip(&self.path.to_string(), MAX_QUOTED * 4),
                    first: clip(&first, MAX_QUOTED),
                    second: clip(&key, MAX_QUOTED),
                }));
            }
            let path = Path::Key(self.path, &key);
            let value = map.next_value_seed(Strict {
                path: &path,
                depth: self.depth + 1,
                found: self.found,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_json_refuses_what_two_readers_could_read_differently() {
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"name":"read","name":"delete"}"#,
                "the key \"name\" appears twice in the object at $",
            ),
            (
                br#"{"params":{"arguments":{"id":1,"id":2}}}"#,
                "appears twice in the object at $.params.arguments",
            ),
            (
                br#"{"Name":"read","name":"delete"}"#,
                "differ only in case in the object at $",
            ),
            // Unicode case: the Kelvin sign K lowercases to k; the long s
            // upper-cases to S.
            ("{\"k\":1,\"\u{212a}\":2}".as_bytes(), "differ only in case"),
            (
                "{\"arguments\":1,\"argument\u{17f}\":2}".as_bytes(),
                "differ only in case",
            ),
            (br#"{"a":[{"x":1},{"x":1,"X":2}]}"#, "at $.a[1]"),
            (b"{\"a\":\"\xff\"}", "not JSON"),
            (br#"{"a":"\ud800"}"#, "not JSON"),
            (br#"{"a":1} {"b":2}"#, "not JSON"),
            (br#"{"a":1,}"#, "not JSON"),
            (b"", "not JSON"),
            (deep.as_bytes(), "nested deeper than 64 levels"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(&String::from_utf8_lossy(text));
            assert!(
                err.to_string().contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn ordinary_json_reads_as_serde_json_reads_it() {
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2.5,"\u00e9",null,true]}}}"#,
            r#"[]"#,
            r#"{"a":{"a":{"a":1}}}"#,
            r#"{"same-name-in-two-objects":{"x":1},"other":{"x":2}}"#,
            ok.as_str(),
        ] {
            let strict = parse(text.as_bytes()).unwrap();
            let plain: Value = serde_json::from_str(text).unwrap();
            assert_eq!(strict, plain, "{text}");
        }
    }

    #[test]
    fn an_error_quotes_a_bounded_part_of_what_was_sent() {
        let key = "k".repeat(10_000);
        let text = format!("{{\"{key}\":{{\"{key}\":1,\"{key}\":2}}}}");
        let err = parse(text.as_bytes()).unwrap_err().to_string();
        assert!(err.len() < 1000, "{} bytes", err.len());
    }

    #[test]
    fn the_kind_of_an_error_carries_none_of_the_senders_text() {
        let err =
            parse(br#"{"patient-ssn-123-45-6789":1,"patient-ssn-123-45-6789":2}"#).unwrap_err();
        assert_eq!(err.kind(), "duplicate_key");
        assert!(!err.kind().contains("6789"));
    }

    proptest::proptest! {
        /// Any bytes: an answer, never a panic; what parses is what
        /// serde_json parses.
        #[test]
        fn any_bytes_get_an_answer(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(v) = parse(&bytes) {
                let plain: Value = serde_json::from_slice(&bytes).expect("serde_json reads it too");
                proptest::prop_assert_eq!(v, plain);
            }
        }

        /// JSON-ish text from a small alphabet reaches the interesting paths.
        #[test]
        fn json_like_text_gets_an_answer(text in r#"[\{\}\[\]",:a-cA-C0-9 \\u]{0,64}"#) {
            let _ = parse(text.as_bytes());
        }
    }
}
