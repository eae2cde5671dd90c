//! Token-level classification for a few harmless statements sqlparser 0.63
//! cannot parse with its PostgreSQL dialect, so that a PHI policy's default
//! does not refuse ordinary session housekeeping:
//!
//! - `BEGIN`/`START TRANSACTION` with a mode list it rejects
//!   (`BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE`);
//! - `FETCH`/`MOVE` forms it rejects (`FETCH c`, `FETCH FROM c`, `MOVE NEXT
//!   FROM c`): they only move through a cursor whose query was classified
//!   when it was DECLAREd;
//! - `SET CONSTRAINTS ALL DEFERRED` and `RESET TIME ZONE`.
//!
//! The rule is strict: the whole text must be exactly one statement (only
//! empty statements may follow a `;`), every token must come from a short
//! list of keywords (plus numbers and one cursor or constraint name where the
//! grammar has one), and the lexer guard must already have passed. Anything
//! else that does not parse stays unclassified.

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::StatementClass;

pub(crate) fn classify(tokens: &[TokenWithSpan]) -> Option<StatementClass> {
    let mut sig: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .collect();
    while matches!(sig.last(), Some(Token::SemiColon)) {
        sig.pop();
    }
    if sig.iter().any(|t| matches!(t, Token::SemiColon)) {
        return None;
    }
    let (first, rest) = sig.split_first()?;
    let kind = match keyword(first)?.as_str() {
        "BEGIN" => transaction(rest, false).then_some("begin"),
        "START" => transaction(rest, true).then_some("begin"),
        "FETCH" | "MOVE" => cursor_motion(rest).then_some("fetch"),
        "SET" => set_constraints(rest).then_some("set"),
        "RESET" => words(rest)
            .is_some_and(|w| w == ["TIME", "ZONE"])
            .then_some("reset"),
        _ => None,
    }?;
    let mut class = StatementClass::default();
    class.add_kind(kind);
    Some(class)
}

/// An unquoted word, upper-cased.
fn keyword(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn words(tokens: &[&Token]) -> Option<Vec<String>> {
    tokens.iter().map(|t| keyword(t)).collect()
}

fn transaction(rest: &[&Token], start: bool) -> bool {
    const MODE_WORDS: &[&str] = &[
        "ISOLATION",
        "LEVEL",
        "SERIALIZABLE",
        "REPEATABLE",
        "READ",
        "COMMITTED",
        "UNCOMMITTED",
        "ONLY",
        "WRITE",
        "NOT",
        "DEFERRABLE",
    ];
    let rest = match (rest.first().and_then(|t| keyword(t)).as_deref(), start) {
        (Some("TRANSACTION"), _) => &rest[1..],
        (Some("WORK"), false) => &rest[1..],
        (_, true) => return false,
        (_, false) => rest,
    };
    rest.iter().all(|t| {
        matches!(t, Token::Comma) || keyword(t).is_some_and(|w| MODE_WORDS.contains(&w.as_str()))
    })
}

/// `[direction] [FROM | IN] cursor`.
fn cursor_motion(rest: &[&Token]) -> bool {
    const DIRECTION_WORDS: &[&str] = &[
        "NEXT", "PRIOR", "FIRST", "LAST", "ABSOLUTE", "RELATIVE", "ALL", "FORWARD", "BACKWARD",
        "FROM", "IN",
    ];
    let Some((cursor, direction)) = rest.split_last() else {
        return false;
    };
    let cursor_ok = match cursor {
        Token::Word(w) if w.quote_style.is_some() => true,
        Token::Word(w) => !DIRECTION_WORDS.contains(&w.value.to_ascii_uppercase().as_str()),
        _ => false,
    };
    cursor_ok
        && direction.iter().all(|t| {
            matches!(t, Token::Number(..) | Token::Minus | Token::Plus)
                || keyword(t).is_some_and(|w| DIRECTION_WORDS.contains(&w.as_str()))
        })
}

/// `CONSTRAINTS { ALL | name [, ...] } { DEFERRED | IMMEDIATE }`.
fn set_constraints(rest: &[&Token]) -> bool {
    let Some((head, tail)) = rest.split_first() else {
        return false;
    };
    let Some((mode, names)) = tail.split_last() else {
        return false;
    };
    keyword(head).as_deref() == Some("CONSTRAINTS")
        && matches!(keyword(mode).as_deref(), Some("DEFERRED" | "IMMEDIATE"))
        && !names.is_empty()
        && names
            .iter()
            .all(|t| matches!(t, Token::Word(_) | Token::Comma | Token::Period))
}
