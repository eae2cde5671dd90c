//! The stdio transport's framing: one JSON-RPC message per line of the
//! server's stdin and stdout, no newline inside a message (the revision
//! says so; JSON escapes every newline in a string, so a conforming
//! message never has one). Lines are read incrementally and bounded; a
//! trailing CR is dropped, as the SDKs' readers drop it. A blank line is no
//! message. Anything else on stdout that is not a message is the server's
//! fault, and the caller ends the session (a server that writes logs to
//! stdout would otherwise have them forwarded as if they were messages).

/// Why the stream cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a line of the stdio stream is longer than {0} bytes")]
    TooLong(usize),
}

/// Splits a byte stream into lines, chunk by chunk.
#[derive(Debug)]
pub struct LineReader {
    max: usize,
    partial: Vec<u8>,
}

impl LineReader {
    pub fn new(max: usize) -> Self {
        LineReader {
            max,
            partial: Vec::new(),
        }
    }

    /// Feeds `chunk`; returns the complete, non-blank lines (without their
    /// line end).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut lines = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    lines.push(line);
                }
            } else {
                if self.partial.len() >= self.max {
                    return Err(FrameError::TooLong(self.max));
                }
                self.partial.push(b);
            }
        }
        Ok(lines)
    }

    /// Bytes of a line not yet ended (at the end of the stream: a message
    /// cut short, which is not delivered).
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// One message as a line to write: compact JSON (which never holds a raw
/// newline) and `\n`.
pub fn frame(message: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(message).expect("a JSON value serialises");
    debug_assert!(!out.contains(&b'\n'));
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_however_the_chunks_fall() {
        let mut r = LineReader::new(1024);
        let mut got = r.feed(b"{\"a\":1}\r\n\n  \n{\"b\"").unwrap();
        got.extend(r.feed(b":2}\n{\"c\":").unwrap());
        assert_eq!(got, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        assert_eq!(r.pending(), 5);
    }

    #[test]
    fn a_line_past_the_bound_is_refused() {
        let mut r = LineReader::new(8);
        assert_eq!(r.feed(b"123456789"), Err(FrameError::TooLong(8)));
    }

    #[test]
    fn a_framed_message_is_one_line_whatever_its_text_holds() {
        let v = serde_json::json!({"text": "line one\nline two\r\n", "u": "\u{2028}"});
        let framed = frame(&v);
        assert_eq!(framed.iter().filter(|&&b| b == b'\n').count(), 1);
        let mut r = LineReader::new(1024);
        let lines = r.feed(&framed).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&lines[0]).unwrap();
        assert_eq!(back, v);
    }
}
