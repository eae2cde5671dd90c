//! The content scanner: hand-written recognisers for the HIPAA Safe Harbor
//! identifiers that have a recognisable shape.
//!
//! # How it stays fast
//!
//! Every shape we look for contains a digit, an `@`, a `:` (`://`, IPv6) or
//! `www.`. The scanner hops from one such *trigger* byte to the next (32 bytes
//! at a time where there is none, a loop the compiler turns into SIMD
//! compares), so prose without digits costs little more than reading it, and
//! a value without any trigger is rejected without allocating.
//!
//! At a trigger, only the recognisers that can involve it run, each a
//! straight-line parser of a fixed shape with bounded look-behind (a month
//! name before a day, a state code before a ZIP, a `(` before an area code,
//! the local part before an `@`). Digits are looked at once per token: after
//! a digit trigger the scanner resumes at the end of its token. Every
//! look-ahead or look-behind is capped (64 bytes for an email's local part,
//! 30 per address word, ...), so the scan is linear in the input whatever it
//! holds.
//!
//! # Boundaries
//!
//! Word characters are ASCII letters, digits and `_`. A hit must not touch a
//! word character on either side (`order_12345`, `abc123-45-6789` and
//! `MRN123-45-6789` are not SSNs), and a numeric hit must not continue with
//! `-` or `.` and a digit on either side (`1.2.3.4.5` is no IP address,
//! `123-45-6789-01` is no SSN). Non-ASCII bytes are *not* word characters: a
//! no-break space or a `«` before an SSN still separates it, since missing
//! that would leak the SSN.
//!
//! # Overlaps
//!
//! Hits never overlap. When several recognisers match around one trigger the
//! earliest start wins, then the longest, then the more specific kind (the
//! operator's patterns first). Hits are produced left to right and never
//! revised.

use super::pattern::Pattern;
use super::{DetectorKind, Hit};

/// Byte classes, one table lookup each (the scanner asks these of nearly
/// every byte it looks at).
const WORD: u8 = 1;
const TRIG: u8 = 2;
const LOCAL: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            t[c] |= WORD;
        }
        if b.is_ascii_digit() || b == b'@' || b == b':' || b == b'.' {
            t[c] |= TRIG;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') {
            t[c] |= LOCAL;
        }
        c += 1;
    }
    t
};

/// Word characters for boundaries: ASCII letters, digits and `_`.
#[inline]
fn is_word(c: u8) -> bool {
    CLASS[usize::from(c)] & WORD != 0
}

#[inline]
fn is_word_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(|&c| is_word(c))
}

#[inline]
fn byte_at(b: &[u8], i: usize) -> Option<u8> {
    b.get(i).copied()
}

/// Number of consecutive ASCII digits at `i`, capped at 64 (no shape needs
/// more, and the cap keeps every parser's work bounded).
#[inline]
fn digits(b: &[u8], i: usize) -> usize {
    let end = b.len().min(i.saturating_add(64));
    let mut j = i;
    while j < end && b[j].wrapping_sub(b'0') < 10 {
        j += 1;
    }
    j.max(i) - i
}

/// Value of the `n` (at most 9) digits at `i`; the caller checked they are digits.
#[inline]
fn num(b: &[u8], i: usize, n: usize) -> u32 {
    b[i..i + n]
        .iter()
        .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
}

/// Number of consecutive `c` bytes at `i`, at most `max`.
#[inline]
fn run_of(b: &[u8], i: usize, c: u8, max: usize) -> usize {
    match b.get(i..) {
        Some(rest) => rest.iter().take(max).take_while(|&&x| x == c).count(),
        None => 0,
    }
}

/// May a hit end at `e`? Not before a word character, and not before `-` or
/// `.` followed by a digit (the hit would be the front of a longer number).
#[inline]
fn ends_clean(b: &[u8], e: usize) -> bool {
    match b.get(e) {
        None => true,
        Some(&c) if is_word(c) => false,
        Some(b'-' | b'.') => !b.get(e + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

/// May a hit start at `s`? Not after a word character, and not after a digit
/// and `-` or `.` (the tail of a longer number), unless that character
/// belongs to the previous hit (`floor` is where the previous hit ended): it
/// is replaced by a marker, and masked output must not match anew, so what
/// follows a hit is judged as if the hit were already masked.
#[inline]
fn starts_clean(b: &[u8], s: usize, floor: usize) -> bool {
    if s == 0 || s == floor {
        return true;
    }
    let p = b[s - 1];
    if is_word(p) {
        return false;
    }
    !(matches!(p, b'-' | b'.') && s >= 2 && s - 2 >= floor && b[s - 2].is_ascii_digit())
}

/// Lower-case `w` into `buf` if it fits; `None` otherwise (no word we compare
/// against is longer than the buffer).
#[inline]
fn lower<'a>(w: &[u8], buf: &'a mut [u8; 12]) -> Option<&'a [u8]> {
    let out = buf.get_mut(..w.len())?;
    for (o, &c) in out.iter_mut().zip(w) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

/// Month number of a month name or abbreviation. Abbreviations and "May"
/// must start with a capital: lower-case `dec`, `mar`, `may` are ordinary
/// words in clinical shorthand ("BP dec 5 pts", "may 2 days"), while full
/// month names are unambiguous in any case.
fn month_index(w: &[u8]) -> Option<u8> {
    // Every month name starts with one of these letters and has 3-9 of them.
    if !(3..=9).contains(&w.len())
        || !matches!(
            w[0] | 0x20,
            b'j' | b'f' | b'm' | b'a' | b's' | b'o' | b'n' | b'd'
        )
    {
        return None;
    }
    let mut buf = [0u8; 12];
    let l = lower(w, &mut buf)?;
    let (m, full) = match l {
        b"january" => (1, true),
        b"february" => (2, true),
        b"march" => (3, true),
        b"april" => (4, true),
        b"june" => (6, true),
        b"july" => (7, true),
        b"august" => (8, true),
        b"september" => (9, true),
        b"october" => (10, true),
        b"november" => (11, true),
        b"december" => (12, true),
        b"jan" => (1, false),
        b"feb" => (2, false),
        b"mar" => (3, false),
        b"apr" => (4, false),
        b"may" => (5, false),
        b"jun" => (6, false),
        b"jul" => (7, false),
        b"aug" => (8, false),
        b"sep" | b"sept" => (9, false),
        b"oct" => (10, false),
        b"nov" => (11, false),
        b"dec" => (12, false),
        _ => return None,
    };
    (full || w[0].is_ascii_uppercase()).then_some(m)
}

/// Skip an English ordinal suffix (`st`, `nd`, `rd`, `th`) at `i` if one is
/// there and ends the word.
#[inline]
fn skip_ordinal(b: &[u8], i: usize) -> usize {
    match b.get(i..i + 2) {
        Some(s)
            if (s.eq_ignore_ascii_case(b"st")
                || s.eq_ignore_ascii_case(b"nd")
                || s.eq_ignore_ascii_case(b"rd")
                || s.eq_ignore_ascii_case(b"th"))
                && !is_word_at(b, i + 2) =>
        {
            i + 2
        }
        _ => i,
    }
}

/// A year written out in full: four digits starting with 1 or 2.
#[inline]
fn year4_at(b: &[u8], i: usize) -> bool {
    digits(b, i) == 4 && matches!(b[i], b'1' | b'2')
}

/// USPS codes of the states, DC and the inhabited territories.
fn is_state(w: &[u8]) -> bool {
    matches!(
        w,
        b"AL"
            | b"AK"
            | b"AZ"
            | b"AR"
            | b"CA"
            | b"CO"
            | b"CT"
            | b"DE"
            | b"FL"
            | b"GA"
            | b"HI"
            | b"ID"
            | b"IL"
            | b"IN"
            | b"IA"
            | b"KS"
            | b"KY"
            | b"LA"
            | b"ME"
            | b"MD"
            | b"MA"
            | b"MI"
            | b"MN"
            | b"MS"
            | b"MO"
            | b"MT"
            | b"NE"
            | b"NV"
            | b"NH"
            | b"NJ"
            | b"NM"
            | b"NY"
            | b"NC"
            | b"ND"
            | b"OH"
            | b"OK"
            | b"OR"
            | b"PA"
            | b"RI"
            | b"SC"
            | b"SD"
            | b"TN"
            | b"TX"
            | b"UT"
            | b"VT"
            | b"VA"
            | b"WA"
            | b"WV"
            | b"WI"
            | b"WY"
            | b"DC"
            | b"PR"
            | b"VI"
            | b"GU"
            | b"AS"
            | b"MP"
    )
}

/// Street suffixes (lower case).
fn is_street_suffix(l: &[u8]) -> bool {
    matches!(
        l,
        b"street"
            | b"st"
            | b"avenue"
            | b"ave"
            | b"av"
            | b"road"
            | b"rd"
            | b"boulevard"
            | b"blvd"
            | b"lane"
            | b"ln"
            | b"drive"
            | b"dr"
            | b"court"
            | b"ct"
            | b"way"
            | b"place"
            | b"pl"
            | b"terrace"
            | b"ter"
            | b"circle"
            | b"cir"
            | b"highway"
            | b"hwy"
            | b"parkway"
            | b"pkwy"
    )
}

/// Suffixes accepted in an all-lower-case address ("42 main st"). Words like
/// "way", "court", "place", "drive", "dr" are too common in lower-case prose
/// ("2 doses by the way", "given 5 mg by dr") to count there.
fn is_lowercase_ok_suffix(l: &[u8]) -> bool {
    matches!(
        l,
        b"street"
            | b"st"
            | b"avenue"
            | b"ave"
            | b"rd"
            | b"boulevard"
            | b"blvd"
            | b"ln"
            | b"highway"
            | b"hwy"
            | b"pkwy"
    )
}

/// Little words that show a lower-case run of words is prose, not a street name.
fn is_function_word(l: &[u8]) -> bool {
    matches!(
        l,
        b"the"
            | b"a"
            | b"an"
            | b"of"
            | b"on"
            | b"in"
            | b"at"
            | b"to"
            | b"by"
            | b"for"
            | b"from"
            | b"with"
            | b"and"
            | b"or"
            | b"per"
            | b"mg"
            | b"ml"
            | b"was"
            | b"were"
            | b"is"
            | b"are"
    )
}

fn is_unit_keyword(l: &[u8]) -> bool {
    matches!(
        l,
        b"apt"
            | b"apartment"
            | b"suite"
            | b"ste"
            | b"unit"
            | b"rm"
            | b"room"
            | b"fl"
            | b"floor"
            | b"bldg"
            | b"building"
    )
}

fn is_directional(w: &[u8]) -> bool {
    matches!(w, b"N" | b"S" | b"E" | b"W" | b"NE" | b"NW" | b"SE" | b"SW")
}

#[inline]
fn is_email_local(c: u8) -> bool {
    CLASS[usize::from(c)] & LOCAL != 0
}

#[inline]
fn is_url_char(c: u8) -> bool {
    c > 0x20
        && c < 0x7f
        && !matches!(
            c,
            b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'\\' | b'^'
        )
}

/// The bytes the scanner has to stop at: digits, `@`, `:` and `.`.
#[inline]
fn is_trigger(c: u8) -> bool {
    CLASS[usize::from(c)] & TRIG != 0
}

/// Position of the next trigger at or after `i`: a digit, `@`, `:`, or the
/// `.` of a `www.` (other full stops are passed over here, without going
/// back to the caller: prose has plenty of them).
#[inline]
fn next_trigger(b: &[u8], mut i: usize) -> Option<usize> {
    const CHUNK: usize = 32;
    loop {
        while let Some(chunk) = b.get(i..i + CHUNK) {
            // Branch-free over the chunk, so it compiles to vector compares.
            let mut any = 0u8;
            for &c in chunk {
                any |=
                    u8::from((c.wrapping_sub(b'0') < 10) | (c == b'@') | (c == b':') | (c == b'.'));
            }
            if any != 0 {
                break;
            }
            i += CHUNK;
        }
        let p = b.get(i..)?.iter().position(|&c| is_trigger(c))? + i;
        if b[p] != b'.' || (p >= 3 && b[p - 3..p].eq_ignore_ascii_case(b"www")) {
            return Some(p);
        }
        i = p + 1;
    }
}

/// Where the scanner would first stop in `b`, if anywhere: the prefilter.
#[inline]
pub(crate) fn first_trigger(b: &[u8]) -> Option<usize> {
    next_trigger(b, 0)
}

/// Tie-break order when two candidates span the same bytes (lower wins).
mod prio {
    pub const PATTERN: u8 = 0;
    pub const EMAIL: u8 = 1;
    pub const URL: u8 = 2;
    pub const SSN: u8 = 3;
    pub const PHONE: u8 = 4;
    pub const IP: u8 = 5;
    pub const DATE: u8 = 6;
    pub const ADDRESS: u8 = 7;
    pub const ZIP: u8 = 8;
    pub const VEHICLE: u8 = 9;
}

#[derive(Clone, Copy)]
struct Cand {
    start: usize,
    end: usize,
    kind: DetectorKind,
    prio: u8,
}

/// The best candidate around one trigger: earliest start, then longest,
/// then lowest priority number.
#[derive(Default)]
struct Best(Option<Cand>);

impl Best {
    #[inline]
    fn offer(&mut self, start: usize, end: usize, kind: DetectorKind, prio: u8) {
        debug_assert!(start < end);
        let better = match self.0 {
            None => true,
            Some(c) => {
                start < c.start
                    || (start == c.start && (end > c.end || (end == c.end && prio < c.prio)))
            }
        };
        if better {
            self.0 = Some(Cand {
                start,
                end,
                kind,
                prio,
            });
        }
    }
}

/// The compiled detectors of a [`super::Masker`].
#[derive(Clone, Debug)]
pub(crate) struct Detectors {
    on: u32,
    bare_ssn: bool,
    compact_dates: bool,
    vin_check_digit: bool,
    patterns: Vec<(DetectorKind, Pattern)>,
    /// (offset of a match's first digit, index into `patterns`), by
    /// offset: where a match must start for a given digit to be its first.
    pattern_starts: Vec<(usize, usize)>,
}

/// Iterator over the hits in one value; see [`super::Masker::find_iter`].
pub struct Hits<'m, 'b> {
    d: &'m Detectors,
    b: &'b [u8],
    pos: usize,
    floor: usize,
    /// The next `@` at or after `at_from` (`None`: there is none), found
    /// once and reused, so digits only look ahead for an email when there
    /// is an `@` to find.
    next_at: Option<usize>,
    at_from: usize,
}

impl<'m, 'b> Hits<'m, 'b> {
    pub(crate) fn new(d: &'m Detectors, b: &'b [u8]) -> Self {
        Hits::from_trigger(d, b, 0)
    }

    /// Hits from `pos` on, when nothing before `pos` is a trigger.
    pub(crate) fn from_trigger(d: &'m Detectors, b: &'b [u8], pos: usize) -> Self {
        Hits {
            d,
            b,
            pos,
            floor: 0,
            next_at: None,
            at_from: usize::MAX,
        }
    }

    /// Is there an `@` at or after `t`?
    #[inline]
    fn at_ahead(&mut self, t: usize) -> bool {
        let stale = match self.next_at {
            _ if self.at_from == usize::MAX => true,
            Some(a) => a < t,
            None => false,
        };
        if stale {
            self.at_from = t;
            self.next_at = self.b[t..].iter().position(|&c| c == b'@').map(|p| p + t);
        }
        self.next_at.is_some()
    }
}

impl Iterator for Hits<'_, '_> {
    type Item = Hit;

    fn next(&mut self) -> Option<Hit> {
        let b = self.b;
        while let Some(t) = next_trigger(b, self.pos) {
            let mut best = Best::default();
            let resume = match b[t] {
                b'0'..=b'9' => {
                    let email = self.d.on(DetectorKind::Email) && self.at_ahead(t);
                    self.d.at_digit(b, t, self.floor, email, &mut best)
                }
                b'@' => {
                    if self.d.on(DetectorKind::Email) {
                        self.d.email(b, t, self.floor, &mut best);
                    }
                    t + 1
                }
                b':' => {
                    self.d.at_colon(b, t, self.floor, &mut best);
                    t + 1
                }
                _ => {
                    // The '.' of "www.".
                    if self.d.on(DetectorKind::Url) {
                        self.d.www(b, t - 3, self.floor, &mut best);
                    }
                    t + 1
                }
            };
            if let Some(c) = best.0 {
                self.pos = c.end;
                self.floor = c.end;
                return Some(Hit {
                    kind: c.kind,
                    start: c.start,
                    end: c.end,
                });
            }
            self.pos = resume;
        }
        self.pos = b.len();
        None
    }
}

impl Detectors {
    pub(crate) fn new(
        on: u32,
        bare_ssn: bool,
        compact_dates: bool,
        vin_check_digit: bool,
        patterns: Vec<(DetectorKind, Pattern)>,
    ) -> Self {
        let mut pattern_starts: Vec<(usize, usize)> = patterns
            .iter()
            .enumerate()
            .flat_map(|(i, (_, p))| p.first_digit_offsets().iter().map(move |&k| (k, i)))
            .collect();
        pattern_starts.sort_unstable();
        Detectors {
            on,
            bare_ssn,
            compact_dates,
            vin_check_digit,
            patterns,
            pattern_starts,
        }
    }

    #[inline]
    pub(crate) fn on(&self, k: DetectorKind) -> bool {
        self.on & k.bit() != 0
    }

    /// A digit at `t`, the first digit of its token. Returns where to resume.
    #[inline(never)]
    fn at_digit(&self, b: &[u8], t: usize, floor: usize, email: bool, best: &mut Best) -> usize {
        let n = digits(b, t);
        let mut te = t + n;
        while te < b.len() && is_word(b[te]) {
            te += 1;
        }
        let mut ts = t;
        if t > floor && is_word(b[t - 1]) {
            ts -= 1;
            while ts > floor && is_word(b[ts - 1]) {
                ts -= 1;
            }
        }
        // Every numeric shape needs a clean start at the digits, or just
        // before them ('(', '+', a month name and a space): none of those
        // leaves the digits unclean, so tokens that continue a number
        // ("98.6", "1.2.3") skip them all.
        if ts == t && starts_clean(b, t, floor) {
            self.numeric(b, t, n, floor, best);
        }
        if te - ts == 17 && self.on(DetectorKind::Vehicle) {
            self.vin(b, ts, te, floor, best);
        }
        for &(k, i) in &self.pattern_starts {
            if k > t || t - k < floor {
                break;
            }
            let (kind, p) = &self.patterns[i];
            let s = t - k;
            let e = s + p.len();
            if p.matches_at(b, s)
                && (!p.word_start() || starts_clean(b, s, floor))
                && (!p.word_end() || ends_clean(b, e))
            {
                best.offer(s, e, *kind, prio::PATTERN);
            }
        }
        if email {
            // The digits may be part of an email's local part ("jane.doe85@x.org"):
            // let the email compete, or the digits alone might win.
            let mut j = t;
            while j < b.len() && j - t < 64 && is_email_local(b[j]) {
                j += 1;
            }
            if byte_at(b, j) == Some(b'@') {
                self.email(b, j, floor, best);
            }
        }
        if byte_at(b, te) == Some(b':') && self.on(DetectorKind::IpAddress) {
            self.ipv6(b, ts, floor, best);
        }
        te
    }

    /// Shapes that start with the run of `n` digits at `t` (or just before
    /// it), `t` starting cleanly. The run's length and the byte after it
    /// decide which recognisers can apply at all: numbers are everywhere in
    /// result data, and most of them ("98.6", "120/80", "500 mg") are turned
    /// away here after a comparison or two.
    #[inline(always)]
    fn numeric(&self, b: &[u8], t: usize, n: usize, floor: usize, best: &mut Best) {
        use DetectorKind as K;
        let nx = byte_at(b, t + n);
        match nx {
            Some(c @ (b'-' | b'.' | b'/')) => {
                let i2 = t + n + 1;
                let n2 = digits(b, i2);
                // SSNs, phones, numeric dates and IPv4 addresses repeat
                // their first separator after the second group of digits;
                // decimals and ratios do not.
                if n2 > 0 && byte_at(b, i2 + n2) == Some(c) {
                    if n == 3 && c == b'-' && self.on(K::Ssn) {
                        if let Some(e) = self.ssn(b, t, n) {
                            best.offer(t, e, K::Ssn, prio::SSN);
                        }
                    }
                    if matches!(n, 1 | 2 | 4) && self.on(K::Date) {
                        if let Some(e) = self.date_numeric(b, t, n) {
                            best.offer(t, e, K::Date, prio::DATE);
                        }
                    }
                    if n <= 3 && c == b'.' && self.on(K::IpAddress) {
                        if let Some(e) = ipv4(b, t) {
                            best.offer(t, e, K::IpAddress, prio::IP);
                        }
                    }
                    if c != b'/' && (n == 3 || (n == 1 && b[t] == b'1')) && self.on(K::Phone) {
                        phone(b, t, n, floor, best);
                    }
                } else if n2 == 0 && matches!(n, 1 | 2) && self.on(K::Date) {
                    // "05-Apr-2023"
                    if let Some(e) = date_day_first(b, t, n) {
                        best.offer(t, e, K::Date, prio::DATE);
                    }
                }
            }
            Some(b' ') => {
                if n == 3 && self.on(K::Ssn) {
                    if let Some(e) = self.ssn(b, t, n) {
                        best.offer(t, e, K::Ssn, prio::SSN);
                    }
                }
                if (n == 3 || (n == 1 && b[t] == b'1')) && self.on(K::Phone) {
                    phone(b, t, n, floor, best);
                }
                if n <= 6 && self.on(K::StreetAddress) {
                    if let Some(e) = address(b, t, n) {
                        best.offer(t, e, K::StreetAddress, prio::ADDRESS);
                    }
                }
                if matches!(n, 1 | 2) && self.on(K::Date) {
                    if let Some(e) = date_day_first(b, t, n) {
                        best.offer(t, e, K::Date, prio::DATE);
                    }
                }
            }
            Some(b')') if n == 3 && self.on(K::Phone) => phone(b, t, n, floor, best),
            Some(b'(') if n == 1 && b[t] == b'1' && self.on(K::Phone) => {
                phone(b, t, n, floor, best)
            }
            Some(c) if c.is_ascii_alphabetic() => {
                // "12B Main St", "5th April", "05Apr2023".
                if n <= 6 && self.on(K::StreetAddress) {
                    if let Some(e) = address(b, t, n) {
                        best.offer(t, e, K::StreetAddress, prio::ADDRESS);
                    }
                }
                if matches!(n, 1 | 2) && self.on(K::Date) {
                    if let Some(e) = date_day_first(b, t, n) {
                        best.offer(t, e, K::Date, prio::DATE);
                    }
                }
            }
            _ => {}
        }
        // Shapes decided by the run alone, or by what comes before it.
        match n {
            5 | 9 if self.on(K::Zip) => {
                if let Some(e) = zip(b, t, n) {
                    best.offer(t, e, K::Zip, prio::ZIP);
                }
            }
            _ => {}
        }
        if n == 9 && self.bare_ssn && self.on(K::Ssn) {
            if let Some(e) = self.ssn(b, t, n) {
                best.offer(t, e, K::Ssn, prio::SSN);
            }
        }
        if n == 8 && self.compact_dates && self.on(K::Date) {
            if let Some(e) = self.date_numeric(b, t, n) {
                best.offer(t, e, K::Date, prio::DATE);
            }
        }
        if n == 11 && b[t] == b'1' && self.on(K::Phone) {
            phone(b, t, n, floor, best);
        }
        if matches!(n, 1 | 2 | 4)
            && t >= 2
            && b[t - 1] == b' '
            && matches!(b[t - 2], b'a'..=b'z' | b'A'..=b'Z' | b'.' | b' ')
            && self.on(K::Date)
        {
            date_month_first(b, t, n, floor, best);
        }
    }

    /// `NNN-NN-NNNN` or `NNN NN NNNN` (same separator twice); with `bare_ssn`
    /// also nine bare digits.
    ///
    /// A bare nine-digit number is not an SSN by default: result data is full
    /// of nine-digit ids, amounts and counters, and masking all of them would
    /// destroy the data, while the separators are what make an SSN
    /// recognisable in free text. A deployment whose text really holds bare
    /// SSNs turns `bare_ssn` on (and should mask the SSN column by rule).
    ///
    /// Numbers the SSA never issues are not masked: area 000, 666 or 900-999,
    /// group 00, serial 0000.
    fn ssn(&self, b: &[u8], t: usize, n: usize) -> Option<usize> {
        let (g, s, e) = match n {
            3 => {
                let sep = byte_at(b, t + 3)?;
                if !matches!(sep, b'-' | b' ')
                    || digits(b, t + 4) != 2
                    || byte_at(b, t + 6) != Some(sep)
                    || digits(b, t + 7) != 4
                {
                    return None;
                }
                (t + 4, t + 7, t + 11)
            }
            9 if self.bare_ssn => (t + 3, t + 5, t + 9),
            _ => return None,
        };
        let area = num(b, t, 3);
        let valid =
            area != 0 && area != 666 && area < 900 && num(b, g, 2) != 0 && num(b, s, 4) != 0;
        (valid && ends_clean(b, e)).then_some(e)
    }

    /// Numeric dates: `YYYY-MM-DD` (also `/` and `.`), `MM/DD/YYYY`,
    /// `M/D/YY`, `DD.MM.YYYY`, `MM-DD-YYYY`, `MM-DD-YY`, each optionally
    /// followed by a time of day and zone (a timestamp is masked whole: the
    /// time is part of the same date element, and a lone "T12:00:00Z" left
    /// behind would only be noise). With `compact_dates`, also `YYYYMMDD`.
    ///
    /// Month and day are range-checked (either order for the day-first and
    /// month-first forms). `.` needs a four-digit year so that version
    /// numbers ("1.10.23") stay; `-` with a two-digit year needs two-digit
    /// month and day.
    fn date_numeric(&self, b: &[u8], t: usize, n1: usize) -> Option<usize> {
        if n1 == 8 && self.compact_dates {
            let (y, m, d) = (num(b, t, 4), num(b, t + 4, 2), num(b, t + 6, 2));
            let ok = (1900..=2099).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d);
            return (ok && ends_clean(b, t + 8)).then_some(t + 8);
        }
        if !matches!(n1, 1 | 2 | 4) {
            return None;
        }
        let sep = byte_at(b, t + n1)?;
        if !matches!(sep, b'-' | b'/' | b'.') {
            return None;
        }
        let i2 = t + n1 + 1;
        let n2 = digits(b, i2);
        if !(1..=2).contains(&n2) || byte_at(b, i2 + n2) != Some(sep) {
            return None;
        }
        let i3 = i2 + n2 + 1;
        let n3 = digits(b, i3);
        let (v1, v2) = (num(b, t, n1), num(b, i2, n2));
        let ok = if n1 == 4 {
            (1..=2).contains(&n3)
                && matches!(b[t], b'1' | b'2')
                && (1..=12).contains(&v2)
                && (1..=31).contains(&num(b, i3, n3))
        } else {
            let shape = match (sep, n3) {
                (b'/', 2 | 4) => true,
                (b'-', 4) | (b'.', 4) => true,
                (b'-', 2) => n1 == 2 && n2 == 2,
                _ => false,
            };
            shape
                && (((1..=12).contains(&v1) && (1..=31).contains(&v2))
                    || ((1..=12).contains(&v2) && (1..=31).contains(&v1)))
        };
        if !ok {
            return None;
        }
        let e = i3 + n3;
        if n1 == 4 || n3 == 4 {
            if let Some(te) = time_suffix(b, e) {
                if ends_clean(b, te) {
                    return Some(te);
                }
            }
        }
        ends_clean(b, e).then_some(e)
    }

    /// VIN: 17 characters of digits and upper-case letters other than I, O
    /// and Q, with at least one letter; optionally with a valid check digit
    /// (North American VINs have one, others need not).
    fn vin(&self, b: &[u8], ts: usize, te: usize, floor: usize, best: &mut Best) {
        let tok = &b[ts..te];
        let ok = tok.len() == 17
            && ts >= floor
            && tok.iter().all(|&c| {
                c.is_ascii_digit() || (c.is_ascii_uppercase() && !matches!(c, b'I' | b'O' | b'Q'))
            })
            && tok.iter().any(u8::is_ascii_uppercase)
            && (!self.vin_check_digit || vin_check_digit_ok(tok))
            && starts_clean(b, ts, floor)
            && ends_clean(b, te);
        if ok {
            best.offer(ts, te, DetectorKind::Vehicle, prio::VEHICLE);
        }
    }

    /// `local@domain.tld` around the `@` at `at`.
    fn email(&self, b: &[u8], at: usize, floor: usize, best: &mut Best) {
        let mut s = at;
        while s > floor && at - s < 64 && is_email_local(b[s - 1]) {
            s -= 1;
        }
        let stopped_at_a_hit = s == floor && floor > 0;
        while s < at && b[s] == b'.' {
            s += 1;
        }
        // The previous hit ends where this address's local part would
        // start ("::4B@host", "1::@host", "::4B.@host": an IPv6 address,
        // then "@host"): the rest is masked too, from the '@'. Left alone,
        // the previous hit's replacement (a hash token ends in hex digits)
        // would read as a new local part, and the domain would go out as
        // it is.
        let after_a_hit = s == at && stopped_at_a_hit;
        if s == at && !after_a_hit {
            return;
        }
        let Some(e) = domain_end(b, at + 1) else {
            return;
        };
        best.offer(s, e, DetectorKind::Email, prio::EMAIL);
    }

    /// A `:` at `c`: a URL scheme before `://`, or part of an IPv6 address.
    #[inline(never)]
    fn at_colon(&self, b: &[u8], c: usize, floor: usize, best: &mut Best) {
        if self.on(DetectorKind::Url) && b.get(c + 1..c + 3) == Some(b"//") {
            let mut j = c;
            while j > floor && c - j < 5 && b[j - 1].is_ascii_alphabetic() {
                j -= 1;
            }
            let mut buf = [0u8; 12];
            let scheme_ok = matches!(
                lower(&b[j..c], &mut buf),
                Some(b"http" | b"https" | b"ftp" | b"ftps" | b"sftp")
            );
            let host_ok = b
                .get(c + 3)
                .is_some_and(|&h| h.is_ascii_alphanumeric() || h == b'[');
            if scheme_ok && host_ok && j >= floor && starts_clean(b, j, floor) {
                let e = url_end(b, c + 3);
                best.offer(j, e, DetectorKind::Url, prio::URL);
            }
        }
        if self.on(DetectorKind::IpAddress) {
            // Look-behinds never reach into the previous hit: it will be a
            // marker, and masked output must not match anew.
            let mut j = c;
            while j > floor && c - j < 5 && b[j - 1].is_ascii_hexdigit() {
                j -= 1;
            }
            if (1..=4).contains(&(c - j)) {
                self.ipv6(b, j, floor, best);
            } else if c == j && byte_at(b, c + 1) == Some(b':') {
                self.ipv6(b, c, floor, best);
            }
        }
    }

    /// `www.` at `s`. Not when a hash token follows it: `www.::1` holds no
    /// URL, but with the address masked in the `hash` format it read as
    /// `www.h:d0d7...`, and masked output must not match again.
    fn www(&self, b: &[u8], s: usize, floor: usize, best: &mut Best) {
        if s >= floor
            && starts_clean(b, s, floor)
            && b.get(s + 4).is_some_and(u8::is_ascii_alphanumeric)
            && !is_hash_token_at(b, s + 4)
        {
            let e = url_end(b, s + 4);
            best.offer(s, e, DetectorKind::Url, prio::URL);
        }
    }

    /// IPv6, full (`2001:0db8:0000:0000:0000:ff00:0042:8329`) or compressed
    /// (`2001:db8::ff00:42:8329`, `fe80::1`, `::1`), optionally ending in a
    /// dotted IPv4 (`::ffff:192.0.2.1`). At least one digit is required, so
    /// that hex-looking words ("dead::beef", "add::") stay.
    ///
    /// Not right after a `*`: partial masking turns `6789::123` into
    /// `****::123`, whose tail is itself a compressed address, and masked
    /// output must not match again.
    fn ipv6(&self, b: &[u8], s: usize, floor: usize, best: &mut Best) {
        if s < floor || !starts_clean(b, s, floor) || (s > floor && matches!(b[s - 1], b':' | b'*'))
        {
            return;
        }
        let hex_run = |i: usize| match b.get(i..) {
            Some(r) => r
                .iter()
                .take(5)
                .take_while(|c| c.is_ascii_hexdigit())
                .count(),
            None => 0,
        };
        let mut i = s;
        let mut groups = 0usize;
        let mut compressed = false;
        let mut has_digit = false;
        // Where the address would end if cut right after its "::", and
        // whether it would then be valid: "1::1HGC..." is the address
        // "1::" before a word, as it reads once that word is masked.
        let mut cut = None;
        if b.get(i..i + 2) == Some(b"::") {
            compressed = true;
            i += 2;
        }
        loop {
            let h = hex_run(i);
            if h == 0 || h > 4 {
                break;
            }
            if byte_at(b, i + h) == Some(b'.') && groups <= 6 {
                if let Some(e4) = ipv4(b, i) {
                    groups += 2;
                    i = e4;
                    has_digit = true;
                    break;
                }
            }
            has_digit |= b[i..i + h].iter().any(u8::is_ascii_digit);
            groups += 1;
            i += h;
            if groups == 8 {
                break;
            }
            if b.get(i..i + 2) == Some(b"::") {
                if compressed {
                    return;
                }
                compressed = true;
                i += 2;
                cut = has_digit.then_some(i);
                continue;
            }
            if byte_at(b, i) == Some(b':') && hex_run(i + 1) > 0 {
                i += 1;
                continue;
            }
            break;
        }
        let valid = if compressed {
            (1..=7).contains(&groups)
        } else {
            groups == 8
        };
        // An address ending in "::" ends itself; otherwise it must not run
        // into a word or another ':'.
        let ends = b[..i].ends_with(b"::") || (!is_word_at(b, i) && byte_at(b, i) != Some(b':'));
        if valid && has_digit && ends {
            best.offer(s, i, DetectorKind::IpAddress, prio::IP);
        } else if let Some(e) = cut {
            best.offer(s, e, DetectorKind::IpAddress, prio::IP);
        }
    }
}

/// The domain of an email starting at `i`: at least two labels, the last
/// (the TLD) two or more letters. Returns the end.
fn domain_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    let mut labels = 0;
    let mut end = None;
    loop {
        let ls = i;
        while i < b.len() && i - start < 253 && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
            i += 1;
        }
        if i == ls || b[ls] == b'-' {
            break;
        }
        labels += 1;
        let label = &b[ls..i];
        if labels >= 2 && label.len() >= 2 && label.iter().all(u8::is_ascii_alphabetic) {
            end = Some(i);
        }
        if byte_at(b, i) == Some(b'.') && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) {
            i += 1;
            continue;
        }
        break;
    }
    end.filter(|&e| !is_word_at(b, e))
}

/// The longest URL a hit covers: past it the scan goes on from the cut
/// (so the work stays linear, and a stream masker's hold-back bounded).
pub(crate) const MAX_URL: usize = 2048;

/// End of a URL whose host starts at `i`: up to whitespace, a quote or
/// angle bracket or a non-ASCII byte, without trailing punctuation (a
/// sentence's full stop, a closing parenthesis that opened before the URL);
/// at most [`MAX_URL`] bytes. Brackets are counted once, then kept up to
/// date while trimming: one pass, however many `)` the URL ends with.
/// Whether a hash token (`h:` and 16 hex digits, not followed by another
/// letter or digit) starts at `i`.
fn is_hash_token_at(b: &[u8], i: usize) -> bool {
    let prefix = super::HASH_PREFIX;
    let end = i + prefix.len() + super::HASH_HEX_LEN;
    b.get(i..i + prefix.len()) == Some(prefix)
        && b.get(i + prefix.len()..end)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        && !b.get(end).is_some_and(u8::is_ascii_alphanumeric)
}

fn url_end(b: &[u8], i: usize) -> usize {
    let limit = b.len().min(i.saturating_add(MAX_URL));
    let mut e = i;
    let (mut open_paren, mut close_paren, mut open_bracket, mut close_bracket) = (0, 0, 0, 0);
    while e < limit && is_url_char(b[e]) {
        match b[e] {
            b'(' => open_paren += 1,
            b')' => close_paren += 1,
            b'[' => open_bracket += 1,
            b']' => close_bracket += 1,
            _ => {}
        }
        e += 1;
    }
    while e > i {
        match b[e - 1] {
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b'*' => e -= 1,
            b')' if open_paren < close_paren => {
                close_paren -= 1;
                e -= 1;
            }
            b']' if open_bracket < close_bracket => {
                close_bracket -= 1;
                e -= 1;
            }
            _ => break,
        }
    }
    // The host's first character is alphanumeric or '[', never trimmed.
    e.max(i + 1)
}

/// Dotted-quad IPv4 at `t` (each octet 0-255, one to three digits).
fn ipv4(b: &[u8], t: usize) -> Option<usize> {
    let mut i = t;
    for k in 0..4 {
        let n = digits(b, i);
        if n == 0 || n > 3 || num(b, i, n) > 255 {
            return None;
        }
        i += n;
        if k < 3 {
            if byte_at(b, i) != Some(b'.') {
                return None;
            }
            i += 1;
        }
    }
    ends_clean(b, i).then_some(i)
}

/// A time of day after a date at `i`: `T` or a space, `H:MM`, optional
/// `:SS`, fraction, and zone (`Z`, `+HH`, `+HHMM`, `+HH:MM`) or ` AM`/` PM`.
fn time_suffix(b: &[u8], i: usize) -> Option<usize> {
    if !matches!(byte_at(b, i)?, b'T' | b't' | b' ') {
        return None;
    }
    let j = i + 1;
    let h = digits(b, j);
    if !(1..=2).contains(&h) || byte_at(b, j + h) != Some(b':') || digits(b, j + h + 1) != 2 {
        return None;
    }
    let mut k = j + h + 3;
    if byte_at(b, k) == Some(b':') && digits(b, k + 1) == 2 {
        k += 3;
        if matches!(byte_at(b, k), Some(b'.' | b',')) {
            let f = digits(b, k + 1);
            if f > 0 {
                k += 1 + f;
            }
        }
    }
    match byte_at(b, k) {
        Some(b'Z' | b'z') => k += 1,
        Some(b'+' | b'-') => {
            let z = digits(b, k + 1);
            if z == 2 || z == 4 {
                k += 1 + z;
                if z == 2 && byte_at(b, k) == Some(b':') && digits(b, k + 1) == 2 {
                    k += 3;
                }
            }
        }
        Some(b' ') => {
            if let Some(ap) = b.get(k + 1..k + 3) {
                if ap.eq_ignore_ascii_case(b"am") || ap.eq_ignore_ascii_case(b"pm") {
                    k += 3;
                }
            }
        }
        _ => {}
    }
    Some(k)
}

/// Day first: `5 April 2023`, `5th April 2023`, `5th of April`, `05-Apr-2023`,
/// `5/Apr/23`, `05Apr2023`, `5 Apr. 2023`, `5 April` (a day and month is a
/// date element even without the year).
fn date_day_first(b: &[u8], t: usize, n: usize) -> Option<usize> {
    if !(1..=2).contains(&n) || !(1..=31).contains(&num(b, t, n)) {
        return None;
    }
    let e = t + n;
    let o = skip_ordinal(b, e);
    // Separator between day and month; 0 for none ("05Apr2023").
    let (sep, mut i) = match byte_at(b, o)? {
        b' ' => {
            let mut i = o + run_of(b, o, b' ', 2);
            if b.get(i..i + 3)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"of "))
            {
                i += 3;
            }
            (b' ', i)
        }
        s @ (b'-' | b'/' | b'.') => (s, o + 1),
        c if c.is_ascii_alphabetic() && o == e && n == 2 => (0, o),
        _ => return None,
    };
    let ms = i;
    while i < b.len() && i - ms < 10 && b[i].is_ascii_alphabetic() {
        i += 1;
    }
    month_index(&b[ms..i])?;
    let month_end = i;
    // Year.
    let mut y = i;
    match sep {
        b' ' => {
            if byte_at(b, y) == Some(b'.') {
                y += 1;
            }
            if byte_at(b, y) == Some(b',') {
                y += 1;
            }
            let sp = run_of(b, y, b' ', 2);
            if sp > 0 && year4_at(b, y + sp) && ends_clean(b, y + sp + 4) {
                return Some(y + sp + 4);
            }
        }
        0 => {
            let yn = digits(b, y);
            if (yn == 2 || (yn == 4 && year4_at(b, y))) && ends_clean(b, y + yn) {
                return Some(y + yn);
            }
            // "05Apr" alone is too weak a shape.
            return None;
        }
        s => {
            if byte_at(b, y) == Some(s) {
                y += 1;
                let yn = digits(b, y);
                if (yn == 2 || (yn == 4 && year4_at(b, y))) && ends_clean(b, y + yn) {
                    return Some(y + yn);
                }
            }
        }
    }
    (!is_word_at(b, month_end)).then_some(month_end)
}

/// Month first, the month name before the number at `t`: `April 5, 2023`,
/// `Apr 5 2023`, `Apr. 5th, 2023`, `April 5`, `April 2023`.
fn date_month_first(b: &[u8], t: usize, n: usize, floor: usize, best: &mut Best) {
    let sp = {
        let mut k = 0;
        while k < 2 && t > k && b[t - 1 - k] == b' ' {
            k += 1;
        }
        k
    };
    if sp == 0 {
        return;
    }
    let mut we = t - sp;
    if we > 0 && b[we - 1] == b'.' {
        we -= 1;
    }
    let mut ws = we;
    while ws > 0 && we - ws < 10 && b[ws - 1].is_ascii_alphabetic() {
        ws -= 1;
    }
    if ws == we || ws < floor || !starts_clean(b, ws, floor) || month_index(&b[ws..we]).is_none() {
        return;
    }
    match n {
        1 | 2 => {
            if !(1..=31).contains(&num(b, t, n)) {
                return;
            }
            let e = skip_ordinal(b, t + n);
            // Only the day's own token must end here: "April 5-7" still
            // masks "April 5".
            if is_word_at(b, e) {
                return;
            }
            let mut y = e;
            if byte_at(b, y) == Some(b',') {
                y += 1;
            }
            let ysp = run_of(b, y, b' ', 2);
            if ysp > 0 && year4_at(b, y + ysp) && ends_clean(b, y + ysp + 4) {
                best.offer(ws, y + ysp + 4, DetectorKind::Date, prio::DATE);
            } else {
                best.offer(ws, e, DetectorKind::Date, prio::DATE);
            }
        }
        4 if year4_at(b, t) && ends_clean(b, t + 4) => {
            best.offer(ws, t + 4, DetectorKind::Date, prio::DATE);
        }
        _ => {}
    }
}

/// US phone numbers: `(555) 123-4567`, `(555)123-4567`, `555-123-4567`,
/// `555.123.4567`, `555 123 4567`, `555 123-4567`, with an optional country
/// code `1`/`+1` (`+1 555 123 4567`, `1-555-123-4567`, `+1 (555) 123-4567`),
/// and E.164 `+15551234567`. Fax numbers have the same shape.
fn phone(b: &[u8], t: usize, n: usize, floor: usize, best: &mut Best) {
    let plus = t > 0 && b[t - 1] == b'+';
    // "(555) ..." with the digits at t.
    if n == 3 && t > floor && b[t - 1] == b'(' && starts_clean(b, t - 1, floor) {
        if let Some(e) = phone_body(b, t - 1) {
            best.offer(t - 1, e, DetectorKind::Phone, prio::PHONE);
        }
    }
    if n == 3 && starts_clean(b, t, floor) {
        if let Some(e) = phone_body(b, t) {
            best.offer(t, e, DetectorKind::Phone, prio::PHONE);
        }
    }
    if b[t] == b'1' {
        let s = if plus { t - 1 } else { t };
        if s < floor || !starts_clean(b, s, floor) {
            return;
        }
        if n == 11 && plus && ends_clean(b, t + 11) {
            best.offer(s, t + 11, DetectorKind::Phone, prio::PHONE);
        }
        if n == 1 {
            let body = match byte_at(b, t + 1) {
                Some(b' ' | b'-' | b'.') => t + 2,
                Some(b'(') => t + 1,
                _ => return,
            };
            if let Some(e) = phone_body(b, body) {
                best.offer(s, e, DetectorKind::Phone, prio::PHONE);
            }
        }
    }
}

/// Area code, exchange and line from `i`; returns the end.
fn phone_body(b: &[u8], i: usize) -> Option<usize> {
    let (j, sep1) = if byte_at(b, i) == Some(b'(') {
        if digits(b, i + 1) != 3 || byte_at(b, i + 4) != Some(b')') {
            return None;
        }
        match byte_at(b, i + 5) {
            Some(b' ' | b'-') => (i + 6, None),
            _ => (i + 5, None),
        }
    } else {
        if digits(b, i) != 3 {
            return None;
        }
        let s = byte_at(b, i + 3)?;
        if !matches!(s, b'-' | b'.' | b' ') {
            return None;
        }
        (i + 4, Some(s))
    };
    if digits(b, j) != 3 {
        return None;
    }
    let sep2 = byte_at(b, j + 3)?;
    if !matches!(sep2, b'-' | b'.' | b' ') || digits(b, j + 4) != 4 {
        return None;
    }
    if let Some(s1) = sep1 {
        if !(s1 == sep2 || (s1 == b' ' && sep2 == b'-')) {
            return None;
        }
    }
    let e = j + 8;
    ends_clean(b, e).then_some(e)
}

/// ZIP codes: ZIP+4 (`62704-1234`) anywhere; five digits (or nine bare)
/// only after a state code (`IL 62704`, `IL, 62704`) or a word naming it
/// (`ZIP 62704`, `zip code: 62704`, `postal code 62704`, `zip_code=62704`):
/// a five-digit number alone is far more often a count, an amount or an id.
fn zip(b: &[u8], t: usize, n: usize) -> Option<usize> {
    match n {
        5 => {
            if byte_at(b, t + 5) == Some(b'-') && digits(b, t + 6) == 4 && ends_clean(b, t + 10) {
                return Some(t + 10);
            }
            (ends_clean(b, t + 5) && zip_context(b, t)).then_some(t + 5)
        }
        9 => (ends_clean(b, t + 9) && zip_context(b, t)).then_some(t + 9),
        _ => None,
    }
}

fn zip_context(b: &[u8], t: usize) -> bool {
    let mut j = t;
    let mut k = 0;
    while j > 0 && k < 3 && matches!(b[j - 1], b' ' | b':' | b'#' | b',' | b'=') {
        j -= 1;
        k += 1;
    }
    if k == 0 {
        return false;
    }
    let we = j;
    while j > 0 && we - j < 11 && b[j - 1].is_ascii_alphabetic() {
        j -= 1;
    }
    let ws = j;
    let w = &b[ws..we];
    if w.is_empty() {
        return false;
    }
    let boundary = |s: usize| s == 0 || !is_word(b[s - 1]);
    if w.len() == 2 && is_state(w) && boundary(ws) {
        return true;
    }
    let mut buf = [0u8; 12];
    match lower(w, &mut buf) {
        Some(b"zip" | b"zipcode" | b"postcode" | b"postalcode") => boundary(ws),
        Some(b"code") => {
            // "zip code", "postal code", "zip_code", "zip-code".
            if ws == 0 || !matches!(b[ws - 1], b' ' | b'_' | b'-') {
                return false;
            }
            let pe = ws - 1;
            let mut ps = pe;
            while ps > 0 && pe - ps < 7 && b[ps - 1].is_ascii_alphabetic() {
                ps -= 1;
            }
            let mut buf2 = [0u8; 12];
            matches!(lower(&b[ps..pe], &mut buf2), Some(b"zip" | b"postal")) && boundary(ps)
        }
        _ => false,
    }
}

/// Street addresses: a house number (up to six digits, optionally one
/// letter: `12B`), one to four words, a street suffix, then optionally a
/// directional (`NW`) and a unit (`Apt 4B`, `Suite 200`, `#12`).
///
/// To keep "ran 5 miles down the road" and "gave 2 doses by the way" out,
/// either every word before the suffix starts with a capital or digit
/// ("123 Main St", "42 N. 5th Avenue"), or the whole address is lower case,
/// its words are no little prose words (the, of, by, mg, ...) and its suffix
/// is an unambiguous one ("42 main st", "7 elm avenue"). "St." and "Dr."
/// followed by a capitalised word ("St. Mary's", "Dr. Smith") are read as
/// Saint and Doctor, not as suffixes, unless that word is a unit or a
/// directional.
fn address(b: &[u8], t: usize, n: usize) -> Option<usize> {
    if n == 0 || n > 6 {
        return None;
    }
    let mut i = t + n;
    if b.get(i).is_some_and(u8::is_ascii_alphabetic) && !is_word_at(b, i + 1) {
        i += 1;
    }
    if byte_at(b, i) != Some(b' ') {
        return None;
    }
    let mut title = true;
    let mut lowercase = true;
    let mut names = 0;
    let end = loop {
        let sp = run_of(b, i, b' ', 2);
        if sp == 0 {
            return None;
        }
        let ws = i + sp;
        if !b.get(ws).is_some_and(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut we = ws;
        while we < b.len()
            && we - ws <= 30
            && (b[we].is_ascii_alphanumeric() || matches!(b[we], b'\'' | b'.' | b'-'))
        {
            we += 1;
        }
        if we - ws > 30 {
            return None;
        }
        let mut core_end = we;
        while core_end > ws && b[core_end - 1] == b'.' {
            core_end -= 1;
        }
        let word = &b[ws..core_end];
        let mut buf = [0u8; 12];
        let l = lower(word, &mut buf);
        if names >= 1 && l.is_some_and(is_street_suffix) {
            let l = l.unwrap_or_default();
            let suffix_lower = !word.iter().any(u8::is_ascii_uppercase);
            let ok = title || (lowercase && suffix_lower && is_lowercase_ok_suffix(l));
            let saint_or_doctor = matches!(l, b"st" | b"dr") && followed_by_name(b, core_end);
            if ok && !saint_or_doctor {
                break core_end;
            }
        }
        // A street name is never a bare number ("1 2 3 4 5 6 St"), and
        // never more than four words.
        if names == 4 || word.iter().all(u8::is_ascii_digit) {
            return None;
        }
        names += 1;
        if !(word[0].is_ascii_uppercase() || word[0].is_ascii_digit()) {
            title = false;
        }
        if word.iter().any(u8::is_ascii_uppercase) || l.is_some_and(is_function_word) {
            lowercase = false;
        }
        i = we;
    };
    let mut e = end;
    // Directional: "123 Main St NW".
    if byte_at(b, e) == Some(b' ') {
        let ds = e + 1;
        let mut de = ds;
        while de < b.len() && de - ds < 3 && b[de].is_ascii_uppercase() {
            de += 1;
        }
        if is_directional(&b[ds..de]) && !is_word_at(b, de) {
            e = de;
        }
    }
    if let Some(u) = unit_end(b, e) {
        e = u;
    }
    (!is_word_at(b, e)).then_some(e)
}

/// Is the suffix ending at `i` followed by a dot and a capitalised word that
/// is not a unit keyword or directional ("St. Mary's", "Dr. Smith")?
fn followed_by_name(b: &[u8], i: usize) -> bool {
    if byte_at(b, i) != Some(b'.') {
        return false;
    }
    let j = i + 1;
    let sp = run_of(b, j, b' ', 2);
    if sp == 0 || !b.get(j + sp).is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    let ws = j + sp;
    let mut we = ws;
    while we < b.len() && we - ws < 12 && b[we].is_ascii_alphabetic() {
        we += 1;
    }
    let w = &b[ws..we];
    let mut buf = [0u8; 12];
    !(is_directional(w) || lower(w, &mut buf).is_some_and(is_unit_keyword))
}

/// A unit after an address ending at `i`: `[,] Apt 4B`, `Suite 200`,
/// `Ste. 5`, `Unit #3`, `#12`. Returns its end.
fn unit_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if byte_at(b, j) == Some(b'.') {
        j += 1;
    }
    if byte_at(b, j) == Some(b',') {
        j += 1;
    }
    let sp = run_of(b, j, b' ', 2);
    if sp == 0 {
        return None;
    }
    j += sp;
    if byte_at(b, j) != Some(b'#') {
        let ks = j;
        while j < b.len() && j - ks < 10 && b[j].is_ascii_alphabetic() {
            j += 1;
        }
        let mut buf = [0u8; 12];
        if !lower(&b[ks..j], &mut buf).is_some_and(is_unit_keyword) {
            return None;
        }
        if byte_at(b, j) == Some(b'.') {
            j += 1;
        }
        j += run_of(b, j, b' ', 2);
    }
    if byte_at(b, j) == Some(b'#') {
        j += 1;
    }
    let is = j;
    while j < b.len() && j - is < 6 && (b[j].is_ascii_alphanumeric() || b[j] == b'-') {
        j += 1;
    }
    // The id must hold a digit or be a single letter ("Apt B").
    let id = &b[is..j];
    let ok = !id.is_empty()
        && (id.iter().any(u8::is_ascii_digit) || (id.len() == 1 && id[0].is_ascii_alphabetic()))
        && !is_word_at(b, j);
    ok.then_some(j)
}

/// ISO 3779 check digit (position 9) of a VIN already known to be 17 legal characters.
fn vin_check_digit_ok(v: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let value = |c: u8| -> u32 {
        match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'H' => u32::from(c - b'A') + 1,
            b'J'..=b'N' => u32::from(c - b'J') + 1,
            b'P' => 7,
            b'R' => 9,
            b'S'..=b'Z' => u32::from(c - b'S') + 2,
            _ => 0,
        }
    };
    let sum: u32 = v.iter().zip(WEIGHTS).map(|(&c, w)| value(c) * w).sum();
    let check = match sum % 11 {
        10 => b'X',
        r => b'0' + r as u8,
    };
    v[8] == check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_trigger_finds_the_first() {
        let long = "x".repeat(100) + "1";
        assert_eq!(next_trigger(long.as_bytes(), 0), Some(100));
        assert_eq!(next_trigger(b"abc", 0), None);
        assert_eq!(next_trigger(b"a@b", 0), Some(1));
        assert_eq!(next_trigger(b"a@b", 2), None);
        let mut v = vec![b'y'; 70];
        v[64] = b':';
        assert_eq!(next_trigger(&v, 0), Some(64));
        assert_eq!(next_trigger(&v, 65), None);
        assert_eq!(next_trigger(b"a.b.c", 0), None);
        assert_eq!(next_trigger(b"see www.x", 0), Some(7));
        assert_eq!(next_trigger(b"a. WWW.x", 0), Some(6));
    }

    #[test]
    fn vin_check_digit() {
        assert!(vin_check_digit_ok(b"1HGCM82633A004352"));
        assert!(vin_check_digit_ok(b"1M8GDM9AXKP042788"));
        assert!(!vin_check_digit_ok(b"1HGCM82643A004352"));
    }

    #[test]
    fn month_names() {
        assert_eq!(month_index(b"April"), Some(4));
        assert_eq!(month_index(b"april"), Some(4));
        assert_eq!(month_index(b"APRIL"), Some(4));
        assert_eq!(month_index(b"Sept"), Some(9));
        assert_eq!(month_index(b"May"), Some(5));
        assert_eq!(month_index(b"may"), None);
        assert_eq!(month_index(b"dec"), None);
        assert_eq!(month_index(b"Dec"), Some(12));
        assert_eq!(month_index(b"Decimal"), None);
        assert_eq!(month_index(b"Septembers"), None);
    }
}
