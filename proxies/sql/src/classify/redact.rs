//! Statement text with its data taken out, for anything that leaves the
//! ledger (notifications, logs).

use sqlparser::tokenizer::{Token, Whitespace};

use super::lexguard;
use super::tokens::{is_string_literal, tokenize, Positions};

/// The statement with every string, number, bit-string and dollar-quoted
/// literal replaced by `?` and every comment (comments can hold PHI too)
/// by a single space. Identifiers, keywords, operators, parameters (`$1`)
/// and whitespace are kept.
///
/// Works from the tokenizer alone, so it also handles text that does not
/// parse. Where even that cannot be trusted, it returns a fixed placeholder
/// naming only the length: text that does not tokenize, and text whose
/// literal boundaries PostgreSQL could read differently (see the lexer guard
/// in `classify`), since then a "literal" here could end early and leave
/// data in the output. Never panics.
pub fn redact_literals(sql: &str) -> String {
    redact(sql).unwrap_or_else(|why| format!("<statement not shown: {} bytes, {why}>", sql.len()))
}

fn redact(sql: &str) -> Result<String, &'static str> {
    if sql.len() > super::MAX_CLASSIFIED_BYTES {
        // The same bound as classification, for the same reason (memory).
        return Err("longer than the classifier reads");
    }
    let tokens = tokenize(sql).ok_or("could not be tokenized")?;
    lexguard::check(sql, &tokens).map_err(|_| "literal boundaries are ambiguous")?;
    let positions = Positions::new(sql);
    let ranges = positions
        .token_ranges(&tokens)
        .ok_or("could not be tokenized")?;
    let mut out = String::with_capacity(sql.len());
    for (token, start, end) in ranges {
        let text = positions
            .byte_offset(start)
            .zip(positions.byte_offset(end))
            .and_then(|(s, e)| sql.get(s..e))
            .ok_or("could not be tokenized")?;
        match token {
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => out.push(' '),
            Token::Whitespace(_) | Token::Word(_) | Token::Placeholder(_) => out.push_str(text),
            Token::Number(..) => out.push('?'),
            t if is_string_literal(t) => out.push('?'),
            // Operators and punctuation are kept; anything else that carries
            // letters, digits or quotes is a literal form this list does not
            // name yet, and is redacted.
            _ if text.chars().all(|c| c.is_ascii_punctuation())
                && !text.contains(['\'', '"', '$']) =>
            {
                out.push_str(text)
            }
            _ => out.push('?'),
        }
    }
    Ok(out)
}
