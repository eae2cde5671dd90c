//! Server-sent events (text/event-stream), read incrementally and written,
//! as the WHATWG HTML standard defines them and both gateway families use
//! them: an MCP server answers a POST, or serves a GET stream, as events
//! whose `data` is one JSON-RPC message each; a model provider streams its
//! answer as events whose `data` is one JSON chunk each.
//!
//! Reading follows the standard where a client does, so that the gateway
//! sees the events the agent's SDK will see: lines end in CRLF, LF or CR
//! (a CR at a chunk's end may pair with an LF in the next); a BOM at the
//! start is dropped; `:` starts a comment; one space after the colon is
//! dropped; `data` lines join with `\n`; an `id` holding NUL is ignored;
//! `retry` takes only digits; a blank line ends an event, and an event
//! without data is not dispatched. Where the standard repairs, the reader
//! refuses instead: text that is not UTF-8 (a client would show U+FFFD
//! where the gateway's masking saw other bytes), and lines or events past
//! the bounds.

use std::fmt::Write as _;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// `event:`; empty means "message".
    pub event: String,
    pub data: String,
    /// The last event id in effect when it was dispatched (the stream's,
    /// as a client keeps it for Last-Event-ID).
    pub id: Option<String>,
    /// A `retry:` in this event, in milliseconds.
    pub retry: Option<u64>,
}

/// Why a stream cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("the event stream is not UTF-8")]
    NotUtf8,
    #[error("a line of the event stream is longer than {0} bytes")]
    LineTooLong(usize),
    #[error("an event of the stream is larger than {0} bytes")]
    EventTooLarge(usize),
}

/// Limits of a reader.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_line: usize,
    pub max_event: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 16 << 20,
            max_event: 16 << 20,
        }
    }
}

/// Reads an event stream chunk by chunk.
#[derive(Debug, Default)]
pub struct Reader {
    limits: Limits,
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The last chunk ended in CR: an LF first in the next belongs to it.
    after_cr: bool,
    /// Past the place where a BOM may be.
    started: bool,
    /// How many bytes of a BOM have been seen at the start.
    bom_seen: usize,
    data: String,
    has_data: bool,
    event: String,
    retry: Option<u64>,
    last_id: Option<String>,
    /// Bytes of the event being read, for the bound.
    event_bytes: usize,
    failed: Option<SseError>,
}

impl Reader {
    pub fn new(limits: Limits) -> Self {
        Reader {
            limits,
            ..Default::default()
        }
    }

    /// Feeds `chunk`; returns the events it completed. After an error,
    /// every later call returns the same error.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut events = Vec::new();
        let result = self.feed_inner(chunk, &mut events);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result.map(|()| events)
    }

    fn feed_inner(&mut self, chunk: &[u8], events: &mut Vec<Event>) -> Result<(), SseError> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        for &b in chunk {
            if !self.started {
                // A BOM at the start goes, however the chunks cut it.
                if b == BOM[self.bom_seen] {
                    self.bom_seen += 1;
                    self.started = self.bom_seen == BOM.len();
                    continue;
                }
                self.started = true;
                self.line.extend_from_slice(&BOM[..self.bom_seen]);
            }
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(events)?;
                }
                b'\n' => self.end_line(events)?,
                _ => {
                    if self.line.len() >= self.limits.max_line {
                        return Err(SseError::LineTooLong(self.limits.max_line));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, events: &mut Vec<Event>) -> Result<(), SseError> {
        let bytes = std::mem::take(&mut self.line);
        let line = std::str::from_utf8(&bytes).map_err(|_| SseError::NotUtf8)?;
        if line.is_empty() {
            self.dispatch(events);
            return Ok(());
        }
        self.event_bytes += line.len() + 1;
        if self.event_bytes > self.limits.max_event {
            return Err(SseError::EventTooLarge(self.limits.max_event));
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            // Unknown fields are ignored, as a client ignores them.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<Event>) {
        let data = std::mem::take(&mut self.data);
        let event = std::mem::take(&mut self.event);
        let retry = self.retry.take();
        let had_data = std::mem::replace(&mut self.has_data, false);
        self.event_bytes = 0;
        if had_data {
            events.push(Event {
                event,
                data,
                id: self.last_id.clone(),
                retry,
            });
        }
    }
}

/// Why an event cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event's {0} holds a line break or NUL")]
pub struct WriteError(&'static str);

/// Writes one event as it goes on the wire (LF line ends; `data` split on
/// its line breaks, one `data:` line each).
pub fn write(event: &Event) -> Result<String, WriteError> {
    let bad = |s: &str| s.contains(['\n', '\r', '\0']);
    if bad(&event.event) {
        return Err(WriteError("event type"));
    }
    if event.id.as_deref().is_some_and(bad) {
        return Err(WriteError("id"));
    }
    let mut out = String::new();
    if let Some(id) = &event.id {
        let _ = writeln!(out, "id: {id}");
    }
    if !event.event.is_empty() {
        let _ = writeln!(out, "event: {}", event.event);
    }
    if let Some(r) = event.retry {
        let _ = writeln!(out, "retry: {r}");
    }
    // CRLF, LF and CR all end a line for the reader.
    let normalized = event.data.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split('\n') {
        let _ = writeln!(out, "data: {line}");
    }
    out.push('\n');
    Ok(out)
}

/// A comment line, which readers ignore: a keep-alive for a stream that
/// waits (a held tool call).
pub fn keep_alive() -> &'static str {
    ": keep-alive\n\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> Result<Vec<Event>, SseError> {
        let mut r = Reader::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(r.feed(c)?);
        }
        Ok(out)
    }

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn events_are_read_as_a_client_reads_them() {
        let cases: &[(&[&[u8]], &[&str])] = &[
            (&[b"data: {\"a\":1}\n\n"], &["{\"a\":1}"]),
            // CRLF, CR and LF line ends, a CR at a chunk's end.
            (
                &[b"data: a\r\n\r\ndata: b\r\rdata: c\r", b"\n\r\n"],
                &["a", "b", "c"],
            ),
            // Lines of data join with \n; one space after the colon goes.
            (&[b"data:x\ndata:  y\n\n"], &["x\n y"]),
            // Comments, unknown fields and events without data are not events.
            (&[b": ping\n\nfoo: bar\n\nevent: x\n\n"], &[]),
            // An empty data line is data.
            (&[b"data\n\n"], &[""]),
            // The BOM at the start goes.
            (&[b"\xEF\xBB\xBFdata: a\n\n"], &["a"]),
            // An event not ended by a blank line is not dispatched.
            (&[b"data: a\n"], &[]),
            // Split anywhere, the BOM too.
            (&[b"da", b"ta: sp", b"lit\n", b"\n"], &["split"]),
            (&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"], &["a"]),
        ];
        for (chunks, want) in cases {
            let got = read_all(chunks).unwrap();
            assert_eq!(data(&got), *want, "{chunks:?}");
        }
    }

    #[test]
    fn ids_types_and_retry_follow_the_standard() {
        let got = read_all(&[
            b"id: 7\nevent: message\nretry: 1500\ndata: a\n\ndata: b\n\nid: x\0y\nretry: 1s\ndata: c\n\nid\ndata: d\n\n",
        ])
        .unwrap();
        assert_eq!(got[0].id.as_deref(), Some("7"));
        assert_eq!(got[0].event, "message");
        assert_eq!(got[0].retry, Some(1500));
        assert_eq!(
            got[1].id.as_deref(),
            Some("7"),
            "the last id stays in effect"
        );
        assert_eq!(got[1].retry, None);
        assert_eq!(got[2].id.as_deref(), Some("7"), "an id with NUL is ignored");
        assert_eq!(got[2].retry, None, "retry takes digits only");
        assert_eq!(got[3].id.as_deref(), Some(""), "an empty id resets it");
    }

    #[test]
    fn what_a_client_would_repair_is_refused_and_stays_refused() {
        let mut r = Reader::default();
        assert_eq!(r.feed(b"data: \xff\n\n"), Err(SseError::NotUtf8));
        assert_eq!(r.feed(b"data: fine\n\n"), Err(SseError::NotUtf8));
        let mut r = Reader::new(Limits {
            max_line: 8,
            max_event: 32,
        });
        assert_eq!(r.feed(b"data: 123456789"), Err(SseError::LineTooLong(8)));
        let mut r = Reader::new(Limits {
            max_line: 8,
            max_event: 16,
        });
        assert_eq!(
            r.feed(b"data: a\ndata: b\ndata: c\n"),
            Err(SseError::EventTooLarge(16))
        );
    }

    #[test]
    fn written_events_read_back_the_same_and_cannot_be_split() {
        let e = Event {
            event: "message".into(),
            data: "{\"a\":\"x\"}\nsecond line\r\nthird".into(),
            id: Some("42".into()),
            retry: Some(100),
        };
        let text = write(&e).unwrap();
        let back = read_all(&[text.as_bytes()]).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].data, "{\"a\":\"x\"}\nsecond line\nthird");
        assert_eq!(back[0].id.as_deref(), Some("42"));
        // A value that would start another field or event is refused.
        let forged = Event {
            event: "message\ndata: injected".into(),
            ..Default::default()
        };
        assert!(write(&forged).is_err());
        let forged = Event {
            id: Some("1\r\n\r\ndata: x".into()),
            data: "a".into(),
            ..Default::default()
        };
        assert!(write(&forged).is_err());
        assert!(read_all(&[keep_alive().as_bytes()]).unwrap().is_empty());
    }

    proptest::proptest! {
        /// Any bytes in any chunking: the same events (or the same error)
        /// as in one piece, and never a panic.
        #[test]
        fn chunking_does_not_change_what_is_read(
            bytes in proptest::collection::vec(proptest::sample::select(vec![b'a', b':', b' ', b'\r', b'\n', b'd', b'i', 0xff, 0xEF, 0xBB, 0xBF]), 0..200),
            cut in 0usize..200,
        ) {
            let whole = read_all(&[&bytes]);
            let cut = cut.min(bytes.len());
            let split = read_all(&[&bytes[..cut], &bytes[cut..]]);
            proptest::prop_assert_eq!(whole, split);
        }

        /// Whatever data an event carries, it reads back unchanged (but
        /// for CR and CRLF, which become LF).
        #[test]
        fn any_data_round_trips(data in "\\PC{0,40}(\n\\PC{0,10}){0,3}") {
            let e = Event { data: data.clone(), ..Default::default() };
            let back = read_all(&[write(&e).unwrap().as_bytes()]).unwrap();
            proptest::prop_assert_eq!(back.len(), 1);
            proptest::prop_assert_eq!(&back[0].data, &data);
        }
    }
}
