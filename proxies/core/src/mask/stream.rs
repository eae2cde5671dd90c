//! Masking text that arrives in pieces (a model's output streamed as SSE
//! deltas, a tool's arguments streamed as partial JSON): a value split
//! across pieces (`123-4` + `5-6789`) must be masked as if it had arrived
//! whole, so the tail that could still become part of a hit is held back
//! until the next piece shows what it is.
//!
//! What is held back is the smallest tail that a detector could still
//! extend into a hit (every shape is told in `detect.rs`):
//! - the unfinished last token (no whitespace after it): an email's local
//!   part, a number, a URL are single tokens;
//! - from the earliest word among the last [`ZONE_WORDS`] that holds a
//!   digit, `(` or `@`, or is a month name: multi-word shapes (a street
//!   address after its house number, `April 5, 2023`, `(555) 123 4567`,
//!   `123 45 6789`) start with such a word.
//!
//! Prose without digits is therefore released a word at a time: what an
//! agent waits for is the word being finished (in practice the next
//! token), not a fixed window. The hold is bounded ([`MAX_HOLD`]): a
//! run of text that never lets go is released in part, masked as far as
//! it can be judged, so a stream cannot be stalled (a hit still growing at
//! the bound, such as a URL, is held whole: detectors cap their hits, a
//! URL at 2 KiB). A hit that began in
//! text already released (only possible past that bound) is masked from
//! where the release stopped, and counted in [`StreamMasker::late_hits`].

use super::{DetectorKind, Masker};

/// Words looked back over for the start of a multi-word shape; the longest
/// one (an address: number, four words, suffix, unit) fits.
pub const ZONE_WORDS: usize = 8;
/// The most text held back at once, in bytes.
pub const MAX_HOLD: usize = 512;
/// Text already released kept as context for the detectors' look-behind
/// (a state code before a ZIP, a month name before a day).
const CONTEXT: usize = 128;

/// One stream's masking state.
#[derive(Debug)]
pub struct StreamMasker<'m> {
    masker: &'m Masker,
    /// Released text (the last [`CONTEXT`] bytes, raw) then held text.
    buf: String,
    /// Where the held text starts in `buf`.
    held_from: usize,
    hits: usize,
    late_hits: usize,
    kinds: u32,
}

impl<'m> StreamMasker<'m> {
    pub fn new(masker: &'m Masker) -> Self {
        StreamMasker {
            masker,
            buf: String::new(),
            held_from: 0,
            hits: 0,
            late_hits: 0,
            kinds: 0,
        }
    }

    /// Takes the next piece; returns the masked text that may be released
    /// now (possibly empty).
    pub fn push(&mut self, piece: &str) -> String {
        self.buf.push_str(piece);
        let hold = hold_start(self.buf.as_bytes(), self.held_from);
        self.release(hold)
    }

    /// The stream ended: everything held, masked.
    pub fn finish(&mut self) -> String {
        self.release(self.buf.len())
    }

    /// Detector hits masked so far.
    pub fn hits(&self) -> usize {
        self.hits
    }

    /// Hits that began in text released before they could be recognised.
    pub fn late_hits(&self) -> usize {
        self.late_hits
    }

    /// The kinds found so far, in [`DetectorKind`] order.
    pub fn kinds(&self) -> Vec<DetectorKind> {
        DetectorKind::ALL
            .into_iter()
            .filter(|k| self.kinds & k.bit() != 0)
            .collect()
    }

    /// Whether text is held back now.
    pub fn is_holding(&self) -> bool {
        self.held_from < self.buf.len()
    }

    /// Releases `buf[held_from..upto]`, moved back so that no hit is cut.
    fn release(&mut self, upto: usize) -> String {
        let bytes = self.buf.as_bytes();
        let from = self.held_from;
        let mut upto = upto;
        let hits: Vec<_> = self
            .masker
            .find_iter(bytes)
            .filter(|h| h.end > from)
            .collect();
        // A hit that would be cut is held whole: it may still grow (a URL,
        // an email's domain). Hits are bounded (a URL at 2 KiB), so this
        // does not undo the hold's bound by more than one hit.
        if let Some(h) = hits.iter().find(|h| h.start < upto && h.end > upto) {
            upto = h.start.max(from);
        }
        let mut out = Vec::with_capacity(upto - from + 16);
        let mut copied = from;
        for h in hits.iter().filter(|h| h.end <= upto) {
            if h.start < from {
                self.late_hits += 1;
            }
            let start = h.start.max(from);
            out.extend_from_slice(&bytes[copied..start]);
            self.masker
                .mask_hit_into(h.kind, &bytes[h.start..h.end], &mut out);
            copied = h.end;
            self.hits += 1;
            self.kinds |= h.kind.bit();
        }
        out.extend_from_slice(&bytes[copied..upto]);
        self.held_from = upto;
        self.trim_context();
        // Markers and hash tokens are ASCII and cuts are at char boundaries.
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// Drops released text beyond the look-behind context.
    fn trim_context(&mut self) {
        if self.held_from <= CONTEXT {
            return;
        }
        // Cut after whitespace where there is some, so the context does not
        // begin mid-word (a word's tail could read as a hit of its own).
        let mut cut = self.held_from - CONTEXT;
        if let Some(ws) = self.buf.as_bytes()[cut..self.held_from]
            .iter()
            .position(u8::is_ascii_whitespace)
        {
            cut += ws + 1;
        }
        while !self.buf.is_char_boundary(cut) {
            cut += 1;
        }
        self.buf.drain(..cut);
        self.held_from -= cut;
    }
}

/// Where the text that must still be held begins (`from`: the first byte
/// not released yet).
fn hold_start(b: &[u8], from: usize) -> usize {
    let n = b.len();
    // The unfinished last token.
    let mut hold = n;
    while hold > from && !b[hold - 1].is_ascii_whitespace() {
        hold -= 1;
    }
    // The earliest risky word among the last few.
    let mut words = 0;
    let mut i = hold;
    let mut earliest = None;
    while i > from && words < ZONE_WORDS {
        while i > from && b[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        let end = i;
        while i > from && !b[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        if end == i {
            break;
        }
        words += 1;
        if is_risky(&b[i..end]) {
            earliest = Some(i);
        }
    }
    if let Some(e) = earliest {
        hold = hold.min(e);
    }
    // Bounded: a stream cannot be stalled by text that never lets go.
    if n - hold > MAX_HOLD {
        hold = n - MAX_HOLD;
    }
    let mut hold = hold.max(from);
    while hold < n && !is_char_boundary(b, hold) {
        hold += 1;
    }
    hold
}

fn is_char_boundary(b: &[u8], i: usize) -> bool {
    // Not a UTF-8 continuation byte.
    b.get(i).is_none_or(|&c| (c as i8) >= -0x40)
}

/// A word that can begin (or be part of) a multi-word shape.
fn is_risky(word: &[u8]) -> bool {
    if word
        .iter()
        .any(|&c| c.is_ascii_digit() || c == b'(' || c == b'@' || c == b'#')
    {
        return true;
    }
    // Any run of letters in it: `see-April` holds a month as well.
    word.split(|c| !c.is_ascii_alphabetic()).any(|run| {
        MONTHS
            .iter()
            .any(|m| run.eq_ignore_ascii_case(m.as_bytes()))
    })
}

const MONTHS: [&str; 24] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

#[cfg(test)]
mod tests {
    use super::super::DetectorConfig;
    use super::*;

    fn masker() -> Masker {
        Masker::new([7; 32], &DetectorConfig::default()).unwrap()
    }

    const TEXTS: &[&str] = &[
        "The patient's SSN is 123-45-6789 and her email is jane.doe@example.org.",
        "Call (555) 123-4567 after April 5, 2023; she lives at 1234 Oak Street Apt 4B, Springfield, IL 62704.",
        "No identifiers here, just a long sentence about blood pressure and the ward.",
        "MRN and SSN 234 56 7890, seen on 2023-04-05T10:20:30Z at https://ehr.example.org/p/17 ok",
        "Ünïcödé text — with a date 05/04/2023 and «123-45-6789» inside.",
        "jane@example.org",
        "123-45-6789",
    ];

    fn streamed(m: &Masker, text: &str, cuts: &[usize]) -> String {
        let mut s = StreamMasker::new(m);
        let mut out = String::new();
        let mut last = 0;
        for &c in cuts {
            if c > last && c < text.len() && text.is_char_boundary(c) {
                out.push_str(&s.push(&text[last..c]));
                last = c;
            }
        }
        out.push_str(&s.push(&text[last..]));
        out.push_str(&s.finish());
        out
    }

    fn whole(m: &Masker, text: &str) -> String {
        match m.scan(text.as_bytes()) {
            Some(s) => String::from_utf8(s.masked).unwrap(),
            None => text.to_string(),
        }
    }

    #[test]
    fn every_split_gives_what_the_whole_text_gives() {
        let m = masker();
        for text in TEXTS {
            let expected = whole(&m, text);
            // Every single cut, and every piece size (tokens are 1-12 bytes).
            for c in 0..text.len() {
                assert_eq!(streamed(&m, text, &[c]), expected, "cut at {c}: {text}");
            }
            for size in 1..12 {
                let cuts: Vec<usize> = (size..text.len()).step_by(size).collect();
                assert_eq!(
                    streamed(&m, text, &cuts),
                    expected,
                    "pieces of {size}: {text}"
                );
            }
        }
    }

    #[test]
    fn random_splits_never_leak_a_value() {
        let m = masker();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            for text in TEXTS {
                let mut cuts: Vec<usize> = (0..(next() % 12))
                    .map(|_| (next() as usize) % text.len())
                    .collect();
                cuts.sort_unstable();
                assert_eq!(
                    streamed(&m, text, &cuts),
                    whole(&m, text),
                    "{cuts:?}: {text}"
                );
            }
        }
    }

    #[test]
    fn prose_is_released_a_word_at_a_time_and_numbers_wait() {
        let m = masker();
        let mut s = StreamMasker::new(&m);
        assert_eq!(
            s.push("The"),
            "",
            "an unfinished word could be an email's local part"
        );
        assert_eq!(s.push(" patient"), "The ");
        assert_eq!(s.push(" is"), "patient ");
        assert_eq!(s.push(" 123-"), "is ");
        assert_eq!(s.push("45-"), "");
        assert_eq!(s.push("6789"), "");
        // A number could begin a multi-word shape (`123 45 6789`, a street
        // address): what follows it waits until it is eight words back.
        assert_eq!(s.push(" today"), "");
        let mut released = String::new();
        for word in [" and", " the", " ward", " is", " calm", " and", " quiet"] {
            released.push_str(&s.push(word));
        }
        assert_eq!(released, "");
        assert_eq!(
            s.push(" now"),
            "[SSN] today and the ward is calm and quiet "
        );
        assert_eq!(s.finish(), "now");
        assert_eq!(s.hits(), 1);
        assert_eq!(s.kinds(), [DetectorKind::Ssn]);
        assert_eq!(s.late_hits(), 0);
    }

    #[test]
    fn a_month_inside_a_hyphenated_word_still_holds_the_date_back() {
        let m = masker();
        let text = "Seen see-April 5, 2023 at noon";
        for c in 0..text.len() {
            assert_eq!(streamed(&m, text, &[c]), whole(&m, text), "cut at {c}");
        }
    }

    #[test]
    fn a_url_that_never_ends_is_bounded_and_scanned_in_linear_time() {
        let m = masker();
        // Quadratic bracket counting took minutes on this; linear is instant.
        let text = format!("see https://a{}", ")".repeat(200_000));
        let whole = whole(&m, &text);
        assert!(whole.starts_with("see [URL]"), "{}", &whole[..40]);
        let mut s = StreamMasker::new(&m);
        let mut held_most = 0;
        for piece in text.as_bytes().chunks(1000) {
            s.push(std::str::from_utf8(piece).unwrap());
            held_most = held_most.max(s.buf.len() - s.held_from);
        }
        assert!(held_most <= MAX_HOLD + 4096, "{held_most}");
    }

    #[test]
    fn a_stream_that_never_lets_go_is_released_within_the_bound() {
        let m = masker();
        let mut s = StreamMasker::new(&m);
        let mut released = 0;
        for _ in 0..200 {
            released += s.push("abcdefghij").len();
        }
        assert!(released >= 2000 - MAX_HOLD, "{released}");
        released += s.finish().len();
        assert_eq!(released, 2000);
    }
}
