//! The pattern language for organisation-specific identifiers.
//!
//! Medical record numbers, health-plan ids, account numbers, licence and
//! certificate numbers and device serials have no national shape: every
//! organisation has its own. The operator describes them with a deliberately
//! tiny language, one character of the pattern per character of the value:
//!
//! | pattern | matches |
//! |---|---|
//! | `#` | one ASCII digit |
//! | `A` | one ASCII uppercase letter |
//! | `a` | one ASCII letter, either case |
//! | `*` | one ASCII letter or digit |
//! | `\x` | the character `x` itself (so `\#`, `\A`, `\a`, `\*`, `\\`) |
//! | anything else | itself; ASCII letters match in either case |
//!
//! Examples: `MRN-#######` (matches `MRN-0012345` and `mrn-0012345`),
//! `###-###-###`, `HP\A##########` (a literal `A` after `HP`), `AA-######`.
//!
//! There is no repetition, alternation or optional part: give several
//! patterns instead (each kind takes a list). That keeps every pattern a fixed
//! length, which makes matching a single linear comparison, with no
//! backtracking and no way for a config to make the scanner slow.
//!
//! A match must sit on word boundaries: the characters just before and just
//! after it must not be letters, digits or `_`, so `###-###` does not fire
//! inside `order_123-456` or `X123-4567`; nor may the match be followed by
//! `-` or `.` and a digit (it would be the front of a longer number), or
//! follow a digit and `-` or `.`. A pattern that starts (ends) with a
//! literal that is not a letter, digit or `_` (`(###)`, `#####-`) delimits
//! itself on that side, and the neighbouring character does not matter.
//!
//! Every pattern must require at least one digit (a `#` or a literal digit).
//! The scanner only looks closer at text that contains a digit (that is what
//! makes it fast on ordinary prose), and a pattern of letters alone would
//! mask ordinary words.

use std::fmt;

/// The longest pattern accepted, in characters (bytes of the value it matches).
pub const MAX_PATTERN_LEN: usize = 64;

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern is empty")]
    Empty,
    #[error("the pattern ends with a lone `\\` (write `\\\\` for a literal backslash)")]
    TrailingEscape,
    #[error("the pattern matches {len} characters; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error(
        "the pattern requires no digit; add a `#` or a literal digit \
         (patterns of letters alone would mask ordinary words)"
    )]
    NoDigit,
    #[error("the pattern starts or ends with whitespace, which would defeat its word boundaries")]
    EdgeWhitespace,
    #[error("the pattern contains a control character")]
    ControlChar,
}

/// One position of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    Digit,
    Upper,
    Letter,
    Alnum,
    /// A literal byte; ASCII letters compare case-insensitively.
    Lit(u8),
}

impl Elem {
    #[inline]
    fn matches(self, b: u8) -> bool {
        match self {
            Elem::Digit => b.is_ascii_digit(),
            Elem::Upper => b.is_ascii_uppercase(),
            Elem::Letter => b.is_ascii_alphabetic(),
            Elem::Alnum => b.is_ascii_alphanumeric(),
            Elem::Lit(c) => b.eq_ignore_ascii_case(&c),
        }
    }

    fn must_be_digit(self) -> bool {
        match self {
            Elem::Digit => true,
            Elem::Lit(c) => c.is_ascii_digit(),
            _ => false,
        }
    }

    fn may_be_digit(self) -> bool {
        self.must_be_digit() || self == Elem::Alnum
    }

    /// Can this position hold a word character (letter, digit, `_`)?
    fn is_wordish(self) -> bool {
        match self {
            Elem::Lit(c) => c.is_ascii_alphanumeric() || c == b'_',
            _ => true,
        }
    }
}

/// A compiled pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    elems: Vec<Elem>,
    /// The offsets, from the start of a match, at which the match's first
    /// digit can sit. The scanner finds digits; these tell it where a match
    /// would have to start for that digit to be its first.
    first_digit_offsets: Vec<usize>,
    /// The first literal that is not a digit, with its offset: checked
    /// before anything else, it turns most candidate positions away with
    /// one comparison.
    anchor: Option<(usize, u8)>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl Pattern {
    /// Compile a pattern, see the [module documentation](self).
    pub fn parse(source: &str) -> Result<Pattern, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        if source.starts_with(char::is_whitespace) || source.ends_with(char::is_whitespace) {
            return Err(PatternError::EdgeWhitespace);
        }
        let mut elems = Vec::with_capacity(source.len());
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            if c.is_control() {
                return Err(PatternError::ControlChar);
            }
            let lit = match c {
                '#' => {
                    elems.push(Elem::Digit);
                    continue;
                }
                'A' => {
                    elems.push(Elem::Upper);
                    continue;
                }
                'a' => {
                    elems.push(Elem::Letter);
                    continue;
                }
                '*' => {
                    elems.push(Elem::Alnum);
                    continue;
                }
                '\\' => match chars.next() {
                    Some(e) if e.is_control() => return Err(PatternError::ControlChar),
                    Some(e) => e,
                    None => return Err(PatternError::TrailingEscape),
                },
                other => other,
            };
            let mut buf = [0u8; 4];
            for &b in lit.encode_utf8(&mut buf).as_bytes() {
                elems.push(Elem::Lit(b));
            }
        }
        if elems.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong {
                len: elems.len(),
                max: MAX_PATTERN_LEN,
            });
        }
        let Some(last) = elems.iter().position(|e| e.must_be_digit()) else {
            return Err(PatternError::NoDigit);
        };
        let first_digit_offsets = (0..=last).filter(|&i| elems[i].may_be_digit()).collect();
        let anchor = elems.iter().enumerate().find_map(|(i, e)| match *e {
            Elem::Lit(c) if !c.is_ascii_digit() => Some((i, c)),
            _ => None,
        });
        Ok(Pattern {
            source: source.to_owned(),
            elems,
            first_digit_offsets,
            anchor,
        })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How many bytes a match spans.
    pub fn len(&self) -> usize {
        self.elems.len()
    }

    /// Never true: an empty pattern is refused by [`Pattern::parse`].
    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    pub(crate) fn first_digit_offsets(&self) -> &[usize] {
        &self.first_digit_offsets
    }

    /// Does a match need a word boundary before it (the pattern starts
    /// with something that can be a word character)?
    pub(crate) fn word_start(&self) -> bool {
        self.elems.first().is_some_and(|e| e.is_wordish())
    }

    /// Does a match need a word boundary after it?
    pub(crate) fn word_end(&self) -> bool {
        self.elems.last().is_some_and(|e| e.is_wordish())
    }

    /// Does the pattern match `text[start..start + len]`? Boundaries are the
    /// caller's business.
    #[inline]
    pub(crate) fn matches_at(&self, text: &[u8], start: usize) -> bool {
        let Some(window) = text.get(start..start + self.elems.len()) else {
            return false;
        };
        if let Some((i, c)) = self.anchor {
            if !window[i].eq_ignore_ascii_case(&c) {
                return false;
            }
        }
        self.elems.iter().zip(window).all(|(e, &b)| e.matches(b))
    }

    /// Does the whole of `text` match the pattern (no boundary context)?
    pub fn matches_whole(&self, text: &[u8]) -> bool {
        text.len() == self.elems.len() && self.matches_at(text, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p = Pattern::parse("MRN-#######").unwrap();
        assert_eq!(p.len(), 11);
        assert!(p.matches_whole(b"MRN-0012345"));
        assert!(p.matches_whole(b"mrn-0012345"));
        assert!(!p.matches_whole(b"MRN-001234"));
        assert!(!p.matches_whole(b"MRN-001234X"));
        assert_eq!(p.first_digit_offsets(), &[4]);

        let p = Pattern::parse(r"HP\A##").unwrap();
        assert!(p.matches_whole(b"HPA12"));
        assert!(p.matches_whole(b"hpa12"));
        assert!(!p.matches_whole(b"HPB12"));

        let p = Pattern::parse("A*#").unwrap();
        assert!(p.matches_whole(b"XY1"));
        assert!(p.matches_whole(b"X91"));
        assert!(!p.matches_whole(b"x91"));
        assert_eq!(p.first_digit_offsets(), &[1, 2]);

        let p = Pattern::parse(r"\#\*\\#").unwrap();
        assert!(p.matches_whole(b"#*\\7"));
        assert!(!p.word_start() && p.word_end());
        let p = Pattern::parse("(###)").unwrap();
        assert!(!p.word_start() && !p.word_end());
        let p = Pattern::parse("_#").unwrap();
        assert!(p.word_start());

        let p = Pattern::parse("Nº#").unwrap();
        assert!(p.matches_whole("Nº5".as_bytes()));
    }

    #[test]
    fn refuses_bad_patterns() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert_eq!(Pattern::parse("##\\"), Err(PatternError::TrailingEscape));
        assert_eq!(Pattern::parse("AAAA"), Err(PatternError::NoDigit));
        assert_eq!(Pattern::parse("**-**"), Err(PatternError::NoDigit));
        assert_eq!(Pattern::parse(r"\#\#"), Err(PatternError::NoDigit));
        assert_eq!(Pattern::parse(" ###"), Err(PatternError::EdgeWhitespace));
        assert_eq!(Pattern::parse("### "), Err(PatternError::EdgeWhitespace));
        assert_eq!(Pattern::parse("#\t#"), Err(PatternError::ControlChar));
        assert_eq!(
            Pattern::parse(&"#".repeat(65)),
            Err(PatternError::TooLong { len: 65, max: 64 })
        );
        assert!(Pattern::parse(&"#".repeat(64)).is_ok());
        // A literal digit is enough.
        assert!(Pattern::parse("ID-7AAA").is_ok());
    }
}
