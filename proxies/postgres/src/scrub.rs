//! Data in error and notice text.
//!
//! PostgreSQL quotes values in its messages: `invalid input syntax for type
//! integer: "123-45-6789"` after a cast of a masked column, `Key
//! (ssn)=(123-45-6789) already exists.`, `Failing row contains (...)`. An
//! agent that casts a masked column gets it back in clear through the error
//! channel. In a session whose policy masks anything, the stretch of each
//! of an ErrorResponse's or NoticeResponse's text fields from its first
//! quote or opening parenthesis to its last quote or closing parenthesis
//! is replaced unless the client itself sent all of it (in a statement or
//! a bound value: it learns nothing), and the content detectors run over
//! the rest (see [`scrub_text`] for why one stretch). The original goes only into
//! the ledger's sealed Response event. Pure: no I/O.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use vigil_proxy_core::mask::Masker;

use crate::codec::{malformed, CodecError};

/// Fields that can quote data: message, detail, hint, context (where),
/// internal query. Severity, code, positions, schema/table/column/type/
/// constraint names and source locations come from the server's catalog
/// or code, not from rows.
const TEXT_FIELDS: &[u8] = b"MDHWq";

/// What a quoted value the client did not send becomes.
pub const REDACTED: &str = "<redacted by Vigil>";

/// How much recent client text the session keeps to compare with.
const MAX_KNOWN_BYTES: usize = 1024 * 1024;
const MAX_KNOWN_TEXTS: usize = 64;

/// Text the client sent recently (statements and bound values): what an
/// error may quote back without telling it anything.
#[derive(Debug, Default)]
pub struct ClientText {
    texts: VecDeque<String>,
    bytes: usize,
}

impl ClientText {
    pub fn remember(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let text: String = text.chars().take(MAX_KNOWN_BYTES).collect();
        self.bytes += text.len();
        self.texts.push_back(text);
        while self.texts.len() > MAX_KNOWN_TEXTS || self.bytes > MAX_KNOWN_BYTES {
            match self.texts.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    fn contains(&self, part: &str) -> bool {
        self.texts.iter().any(|t| t.contains(part))
    }
}

/// Scrubs an ErrorResponse or NoticeResponse body. `None` when nothing had
/// to change (the message is forwarded as it came).
pub fn scrub_body(
    body: &[u8],
    known: &ClientText,
    masker: &Masker,
) -> Result<Option<Bytes>, CodecError> {
    let mut out = BytesMut::with_capacity(body.len());
    let mut changed = false;
    let mut rest = body;
    loop {
        let (&kind, after) = rest
            .split_first()
            .ok_or_else(|| malformed("ErrorResponse", "missing terminator"))?;
        if kind == 0 {
            break;
        }
        let end = after
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| malformed("ErrorResponse", "unterminated field"))?;
        let value = &after[..end];
        rest = &after[end + 1..];
        out.put_u8(kind);
        if TEXT_FIELDS.contains(&kind) {
            let text = String::from_utf8_lossy(value);
            let scrubbed = scrub_text(&text, known, masker);
            changed |= scrubbed != text;
            out.put_slice(scrubbed.as_bytes());
        } else {
            out.put_slice(value);
        }
        out.put_u8(0);
    }
    out.put_u8(0);
    Ok(changed.then(|| out.freeze()))
}

/// One text field: the span from its first quote or opening parenthesis
/// to its last quote or closing parenthesis is replaced whole unless the
/// client itself sent all of it; then detector hits in what is left.
///
/// Why one span and not each quoted part: a value may itself hold quotes
/// and parentheses, and an agent that builds one as `ZQ" 9876 "ZQ`, with
/// `ZQ` in its own statement, makes `"ZQ"` look like two known quoted parts
/// with the data between them outside any quotes. PostgreSQL puts data only
/// inside quotes or parentheses, so everything between the first opener
/// and the last closer is where data can be. The price: a message naming
/// two things (`column "x" of relation "y"`) keeps them only when the
/// client sent that whole stretch.
pub fn scrub_text(text: &str, known: &ClientText, masker: &Masker) -> String {
    let first = text.find(['"', '(']);
    let last = text.rfind(['"', ')']);
    let spanned = match (first, last) {
        (Some(first), Some(last)) if first < last => {
            let inner = &text[first + 1..last];
            if inner.is_empty() || known.contains(inner) {
                text.to_string()
            } else {
                let (open, close) = if text[first..].starts_with('"') {
                    ('"', '"')
                } else {
                    ('(', ')')
                };
                format!(
                    "{}{open}{REDACTED}{close}{}",
                    &text[..first],
                    &text[last + 1..]
                )
            }
        }
        _ => text.to_string(),
    };
    detectors(&spanned, masker)
}

/// Replaces what the content detectors recognise (an SSN, an email, ...).
fn detectors(text: &str, masker: &Masker) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut last = 0;
    for hit in masker.find_iter(bytes) {
        out.extend_from_slice(&bytes[last..hit.start]);
        out.extend_from_slice(REDACTED.as_bytes());
        last = hit.end;
    }
    if last == 0 {
        return text.to_string();
    }
    out.extend_from_slice(&bytes[last..]);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> Masker {
        Masker::new([7; 32], &Default::default()).unwrap()
    }

    fn known(texts: &[&str]) -> ClientText {
        let mut k = ClientText::default();
        for t in texts {
            k.remember(t);
        }
        k
    }

    #[test]
    fn values_the_client_did_not_send_are_redacted() {
        let m = masker();
        let k = known(&["SELECT ssn::int FROM rv_patients WHERE id = 1"]);
        for (text, want) in [
            (
                "invalid input syntax for type integer: \"AB12xq\"",
                "invalid input syntax for type integer: \"<redacted by Vigil>\"",
            ),
            (
                "Key (ssn)=(1234) already exists.",
                "Key (<redacted by Vigil>) already exists.",
            ),
            // A value that holds quotes cannot make its middle look
            // unquoted, even around text the client sent.
            (
                "invalid input syntax for type integer: \"ZQ\" bcdefghij \"ZQ\"",
                "invalid input syntax for type integer: \"<redacted by Vigil>\"",
            ),
            (
                "invalid input syntax for type integer: \"ssn\"bcd-ef(ghij)\"ssn\"",
                "invalid input syntax for type integer: \"<redacted by Vigil>\"",
            ),
            (
                "Failing row contains (1, secret, (2,3)).",
                "Failing row contains (<redacted by Vigil>).",
            ),
            // What the client sent itself stays.
            (
                "column \"ssn\" is of type text",
                "column \"ssn\" is of type text",
            ),
            ("division by zero", "division by zero"),
            ("unterminated \"quote", "unterminated \"quote"),
        ] {
            assert_eq!(scrub_text(text, &k, &m), want, "{text}");
        }
    }

    #[test]
    fn detectors_run_over_unquoted_text() {
        let m = masker();
        let k = known(&["SELECT 1"]);
        let out = scrub_text("value 123-45-6789 is bad", &k, &m);
        assert!(!out.contains("123-45-6789"), "{out}");
    }

    #[test]
    fn a_whole_body_keeps_its_other_fields() {
        let m = masker();
        let k = known(&["SELECT ssn::int FROM t"]);
        let mut body = Vec::new();
        for (kind, v) in [
            (b'S', "ERROR"),
            (b'C', "22P02"),
            (b'M', "invalid input syntax for type integer: \"xyz\""),
            (b'c', "ssn"),
        ] {
            body.push(kind);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let out = scrub_body(&body, &k, &m).unwrap().expect("changed");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("22P02") && text.contains("ssn"), "{text}");
        assert!(!text.contains("xyz"), "{text}");
        // Unchanged bodies are forwarded as they are.
        let k2 = known(&["SELECT 'xyz'::int"]);
        assert_eq!(scrub_body(&body, &k2, &m).unwrap(), None);
        assert!(scrub_body(&body[..body.len() - 1], &k, &m).is_err());
    }
}
