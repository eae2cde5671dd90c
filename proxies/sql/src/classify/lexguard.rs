//! The lexer guard: PostgreSQL and sqlparser must agree on what every
//! character of the text is part of.
//!
//! The classifier only sees what sqlparser's tokenizer calls code. Where the
//! two lexers disagree about where a string literal, a quoted identifier or a
//! comment ends, text that PostgreSQL executes can sit, for sqlparser, inside
//! a literal: `PREPARE p(int) AS SELECT $1x$ ; DROP TABLE t; --$1x$` is one
//! statement for sqlparser (a `$1x$` dollar quote) and a `DROP TABLE` for
//! PostgreSQL 14 (a parameter `$1`, then an identifier). Literal boundaries
//! also depend on a session setting the gateway does not control:
//! with `standard_conforming_strings = off`, `'a\'' ; DROP TABLE t; --'` hides
//! a `DROP TABLE` from a lexer that assumes it is on.
//!
//! So the text is scanned again here, by a small re-implementation of the
//! boundary rules of PostgreSQL's `scan.l` (strings of every prefix with their
//! escapes and newline continuations, dollar quotes and their tag rules,
//! quoted identifiers, nested comments, identifier characters), once with
//! `standard_conforming_strings` on and once off. Every character gets a
//! class: code, whitespace, comment, string literal or quoted identifier. If
//! sqlparser's tokens give any character a different class than PostgreSQL
//! would under either setting, the text is not classified. Comparing
//! classes, not just code against the rest, also keeps redaction honest:
//! what PostgreSQL reads as a literal is a literal for sqlparser too (and not,
//! say, a quoted identifier that redaction would keep).
//!
//! The scanner only needs to be exact about literals, quoted identifiers,
//! comments and whitespace; numbers, operators and punctuation are all code,
//! one character at a time. Where PostgreSQL
//! versions differ (14 lexes `1e'x'` as a number and an escape string, 15 and
//! later reject it), it follows the version that accepts the text, since a
//! version that rejects it runs nothing. A scan that hits a lexical error
//! PostgreSQL would also raise (an unterminated literal or comment, a `U&''`
//! string with `standard_conforming_strings` off) imposes nothing: the server
//! would refuse the whole message.

use sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::tokens::{is_string_literal, Positions};

/// What a character is part of, for one lexer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// Keywords, unquoted names, numbers, operators, parameters.
    Code,
    Space,
    Comment,
    /// A string constant of any kind, prefix and quotes included.
    Literal,
    /// A quoted identifier, quotes included.
    Ident,
}

/// `Err` carries the reason the text is not classified; it holds no SQL.
pub(crate) fn check(sql: &str, tokens: &[TokenWithSpan]) -> Result<(), &'static str> {
    let chars: Vec<char> = sql.chars().collect();
    let ours = sqlparser_partition(sql, tokens)
        .ok_or("the tokenizer's positions could not be mapped onto the text")?;
    if let Some(pg) = pg_partition(&chars, true) {
        if pg != ours {
            return Err("PostgreSQL would read literal, comment or identifier boundaries differently from the classifier's parser");
        }
    }
    if let Some(pg) = pg_partition(&chars, false) {
        if pg != ours {
            return Err("where a string literal ends depends on standard_conforming_strings");
        }
    }
    Ok(())
}

fn sqlparser_partition(sql: &str, tokens: &[TokenWithSpan]) -> Option<Vec<Class>> {
    let positions = Positions::new(sql);
    let mut out = vec![Class::Code; positions.len()];
    for (token, start, end) in positions.token_ranges(tokens)? {
        let class = match token {
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
            ) => Class::Comment,
            Token::Whitespace(_) => Class::Space,
            Token::Word(w) if w.quote_style.is_some() => Class::Ident,
            t if is_string_literal(t) => Class::Literal,
            _ => Class::Code,
        };
        out[start..end].fill(class);
    }
    Some(out)
}

/// How backslashes behave inside a quoted literal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// `'...'` with standard_conforming_strings on, `U&'...'`: `''` is a quote.
    Standard,
    /// `E'...'`, or `'...'` with standard_conforming_strings off: `\x` and `''`.
    Escape,
    /// `B'...'`, `X'...'`: no escapes at all; the first `'` ends it.
    Bits,
}

/// PostgreSQL's view of the text, or `None` where its lexer raises an error.
fn pg_partition(chars: &[char], standard_strings: bool) -> Option<Vec<Class>> {
    let n = chars.len();
    let at = |i: usize| chars.get(i).copied();
    let plain = if standard_strings {
        Quoting::Standard
    } else {
        Quoting::Escape
    };
    let mut out = vec![Class::Code; n];
    let mut i = 0;
    while i < n {
        let c = chars[i];
        i = match c {
            // `space` in scan.l. A vertical tab is whitespace only from
            // PostgreSQL 16 on; calling it code makes any mismatch fail closed.
            ' ' | '\t' | '\n' | '\r' | '\x0c' => mark(&mut out, i, i + 1, Class::Space),
            '-' if at(i + 1) == Some('-') => {
                mark(&mut out, i, line_comment_end(chars, i), Class::Comment)
            }
            '/' if at(i + 1) == Some('*') => {
                mark(&mut out, i, block_comment_end(chars, i)?, Class::Comment)
            }
            '\'' => literal(chars, &mut out, i, i, plain)?,
            '"' => mark(&mut out, i, quoted_identifier_end(chars, i)?, Class::Ident),
            '$' if at(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                // A parameter `$n`; what follows is lexed afresh.
                let mut j = i + 1;
                while at(j).is_some_and(|d| d.is_ascii_digit()) {
                    j += 1;
                }
                j
            }
            '$' => match dollar_delimiter_end(chars, i) {
                Some(open_end) => {
                    let end = dollar_quote_end(chars, i, open_end)?;
                    mark(&mut out, i, end, Class::Literal)
                }
                // `dolqfailed`: a lone `$` token; the rest is lexed afresh.
                None => i + 1,
            },
            _ if is_ident_start(c) => match (c, at(i + 1), at(i + 2)) {
                ('e' | 'E', Some('\''), _) => literal(chars, &mut out, i, i + 1, Quoting::Escape)?,
                ('b' | 'B' | 'x' | 'X', Some('\''), _) => {
                    literal(chars, &mut out, i, i + 1, Quoting::Bits)?
                }
                // `N'...'` is the keyword NCHAR followed by a plain string.
                ('n' | 'N', Some('\''), _) => literal(chars, &mut out, i, i + 1, plain)?,
                ('u' | 'U', Some('&'), Some('\'')) => {
                    if !standard_strings {
                        // "unsafe use of string constant with Unicode escapes"
                        return None;
                    }
                    literal(chars, &mut out, i, i + 2, Quoting::Standard)?
                }
                ('u' | 'U', Some('&'), Some('"')) => mark(
                    &mut out,
                    i,
                    quoted_identifier_end(chars, i + 2)?,
                    Class::Ident,
                ),
                _ => {
                    // An identifier or keyword: `$` continues it, so `a$$b`
                    // never opens a dollar quote.
                    let mut j = i + 1;
                    while at(j).is_some_and(is_ident_cont) {
                        j += 1;
                    }
                    j
                }
            },
            // Digits, operators, punctuation and anything else: code, one
            // character at a time. Digits need no rule of their own because
            // nothing after them can continue them into a literal: `1e'x'`
            // is `1` then `e'x'`, as PostgreSQL 14 lexes it.
            _ => i + 1,
        };
    }
    Some(out)
}

/// Marks `[start, end)` and returns `end`.
fn mark(out: &mut [Class], start: usize, end: usize, class: Class) -> usize {
    out[start..end].fill(class);
    end
}

/// `ident_start`: letters, `_`, and every non-ASCII character (PostgreSQL
/// treats each byte >= 0x80 as a letter).
fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

/// `ident_cont`: also digits and `$`.
fn is_ident_cont(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// `--` up to (not including) the next `\n` or `\r`.
fn line_comment_end(chars: &[char], start: usize) -> usize {
    let mut i = start + 2;
    while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
        i += 1;
    }
    i
}

/// `/* ... */`, nested; `None` if it never closes.
fn block_comment_end(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = start + 2;
    loop {
        let c = *chars.get(i)?;
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('*') {
            depth += 1;
            i += 2;
        } else if c == '*' && next == Some('/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
}

/// A literal starting at `start` (its prefix, if any) whose opening quote is
/// at `quote`, including any continuation segments: `'a'` newline `'b'` is
/// one literal for PostgreSQL, and every segment is lexed in the opening
/// segment's mode. The whitespace and comments between segments are marked
/// as such, as sqlparser sees them. Returns the index after the last quote.
fn literal(
    chars: &[char],
    out: &mut [Class],
    start: usize,
    quote: usize,
    quoting: Quoting,
) -> Option<usize> {
    let mut segment_start = start;
    let mut i = quote + 1;
    loop {
        // Inside the literal.
        loop {
            let c = *chars.get(i)?;
            match c {
                '\\' if quoting == Quoting::Escape => i += 2,
                '\'' if quoting != Quoting::Bits && chars.get(i + 1) == Some(&'\'') => i += 2,
                '\'' => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
        mark(out, segment_start, i, Class::Literal);
        match continuation_quote(chars, out, i) {
            Some(next_quote) => {
                segment_start = next_quote;
                i = next_quote + 1;
            }
            None => return Some(i),
        }
    }
}

/// scan.l's `quotecontinue`: `{whitespace_with_newline}{quote}` right after a
/// closing quote. Returns the index of the continuing quote, having marked
/// the whitespace and comments before it.
fn continuation_quote(chars: &[char], out: &mut [Class], from: usize) -> Option<usize> {
    let at = |i: usize| chars.get(i).copied();
    let mut gap: Vec<(usize, usize, Class)> = Vec::new();
    let mut i = from;
    // horiz_whitespace*: spaces, tabs, form feeds and `--` comments.
    loop {
        match at(i) {
            Some(' ' | '\t' | '\x0c') => {
                gap.push((i, i + 1, Class::Space));
                i += 1;
            }
            Some('-') if at(i + 1) == Some('-') => {
                let end = line_comment_end(chars, i);
                gap.push((i, end, Class::Comment));
                i = end;
            }
            _ => break,
        }
    }
    // One newline is required.
    if !matches!(at(i), Some('\n' | '\r')) {
        return None;
    }
    gap.push((i, i + 1, Class::Space));
    i += 1;
    // special_whitespace*: any spaces and newlines, and `--` comments that
    // are followed by a newline.
    loop {
        match at(i) {
            Some(' ' | '\t' | '\x0c' | '\n' | '\r') => {
                gap.push((i, i + 1, Class::Space));
                i += 1;
            }
            Some('-') if at(i + 1) == Some('-') => {
                let end = line_comment_end(chars, i);
                if !matches!(at(end), Some('\n' | '\r')) {
                    return None;
                }
                gap.push((i, end, Class::Comment));
                gap.push((end, end + 1, Class::Space));
                i = end + 1;
            }
            _ => break,
        }
    }
    if at(i) != Some('\'') {
        return None;
    }
    for (s, e, class) in gap {
        mark(out, s, e, class);
    }
    Some(i)
}

/// `"..."` with `""` as an escaped quote; `None` if it never closes.
fn quoted_identifier_end(chars: &[char], quote: usize) -> Option<usize> {
    let mut i = quote + 1;
    loop {
        if *chars.get(i)? == '"' {
            if chars.get(i + 1) == Some(&'"') {
                i += 2;
            } else {
                return Some(i + 1);
            }
        } else {
            i += 1;
        }
    }
}

/// `dolqdelim`: `$tag$` where the tag is empty or a letter, `_` or non-ASCII
/// character followed by those and digits. Returns the index after the
/// second `$`.
fn dollar_delimiter_end(chars: &[char], dollar: usize) -> Option<usize> {
    let tag_start = |c: char| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii();
    let mut i = dollar + 1;
    if chars.get(i).copied().is_some_and(tag_start) {
        i += 1;
        while chars
            .get(i)
            .copied()
            .is_some_and(|c| tag_start(c) || c.is_ascii_digit())
        {
            i += 1;
        }
    }
    (chars.get(i) == Some(&'$')).then_some(i + 1)
}

/// The body ends at the first later occurrence of the same delimiter (scan.l
/// backs up over a non-matching `$tag$` by one character, so no occurrence
/// is skipped). `None` if it never closes.
fn dollar_quote_end(chars: &[char], open: usize, open_end: usize) -> Option<usize> {
    let delimiter = &chars[open..open_end];
    let len = delimiter.len();
    let mut i = open_end;
    while i + len <= chars.len() {
        if &chars[i..i + len] == delimiter {
            return Some(i + len);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tokens::tokenize;

    fn guard(sql: &str) -> Result<(), &'static str> {
        check(sql, &tokenize(sql).expect("tokenizes"))
    }

    #[test]
    fn ordinary_statements_pass() {
        for sql in [
            "SELECT * FROM patients WHERE ssn = '123-45-6789' AND age > 40",
            "SELECT 'it''s', E'a\\'b', $$x$$, $tag$ $$ $tag$, \"Quoted\"\"Id\", x'ff', b'01'",
            "SELECT 1 /* a /* nested */ comment */ + 1 -- trailing",
            "SELECT a$$b FROM t; SELECT 'C:\\path'",
            "SELECT 'a'\n  'b', U&'d\\0061t'",
            "SELECT größe FROM maße",
            // B'1' then a second literal for PostgreSQL, one literal for
            // sqlparser: the same characters are literal either way.
            "SELECT B'1''; DROP TABLE t; --'",
            "",
        ] {
            assert_eq!(guard(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn boundary_differentials_are_refused() {
        for sql in [
            // `$1x$` is a dollar-quote tag for sqlparser, a parameter for PostgreSQL.
            "PREPARE p(int) AS SELECT $1x$ ; DROP TABLE t; --$1x$",
            // sqlparser lets a backslash escape the quote in X'...'.
            "SELECT X'\\' ; DROP TABLE t; --'",
            // Backslash before a quote: standard_conforming_strings decides.
            "SELECT 'x\\'' ; DROP TABLE t; --'",
            "SELECT 'a\\'; DROP TABLE t; --'",
            // A continuation segment of an escape string is itself escaped.
            "SELECT E'a'\n'\\'' ; DROP TABLE t; --'",
            // A vertical tab is not whitespace before PostgreSQL 16.
            "SELECT 1\x0b; DROP TABLE t",
        ] {
            assert!(guard(sql).is_err(), "{sql:?} should be refused");
        }
    }
}
