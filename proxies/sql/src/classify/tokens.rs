//! The one tokenization every part of the classifier works from, and the
//! helpers that map sqlparser's token positions back onto the text.

use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// Tokenizes `sql` the way the parser will see it. Classification and the
/// lexer guard must work from the *same* tokens, so the parser is later fed
/// exactly this vector rather than re-tokenizing.
pub(crate) fn tokenize(sql: &str) -> Option<Vec<TokenWithSpan>> {
    Tokenizer::new(crate::Dialect::PostgreSql.parser(), sql)
        .tokenize_with_location()
        .ok()
}

/// Every token kind whose text is literal data: string constants of every
/// flavour. Numbers are data too but are listed separately by callers that
/// care (the lexer guard treats them as code, redaction does not).
pub(crate) fn is_string_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

/// Maps sqlparser's (line, column) positions to character and byte offsets.
/// sqlparser counts lines at `\n` only and columns in characters, from 1.
pub(crate) struct Positions {
    /// Character index at which each line starts.
    line_starts: Vec<usize>,
    /// Byte offset of each character, plus the text's length at the end.
    byte_of_char: Vec<usize>,
}

impl Positions {
    pub(crate) fn new(sql: &str) -> Self {
        let mut line_starts = vec![0];
        let mut byte_of_char = Vec::with_capacity(sql.len() + 1);
        for (i, (byte, c)) in sql.char_indices().enumerate() {
            byte_of_char.push(byte);
            if c == '\n' {
                line_starts.push(i + 1);
            }
        }
        byte_of_char.push(sql.len());
        Positions {
            line_starts,
            byte_of_char,
        }
    }

    /// Number of characters in the text.
    pub(crate) fn len(&self) -> usize {
        self.byte_of_char.len() - 1
    }

    pub(crate) fn char_index(&self, loc: Location) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let index = self.line_starts.get(line)?.checked_add(column)?;
        (index <= self.len()).then_some(index)
    }

    pub(crate) fn byte_offset(&self, char_index: usize) -> Option<usize> {
        self.byte_of_char.get(char_index).copied()
    }

    /// Each token with the character range `[start, end)` it covers: from its
    /// start to the next token's start. `None` if the positions are not
    /// strictly increasing from 0 (never expected; callers then fail closed).
    pub(crate) fn token_ranges<'t>(
        &self,
        tokens: &'t [TokenWithSpan],
    ) -> Option<Vec<(&'t Token, usize, usize)>> {
        let starts: Vec<(&Token, usize)> = tokens
            .iter()
            .filter(|t| !matches!(t.token, Token::EOF))
            .map(|t| Some((&t.token, self.char_index(t.span.start)?)))
            .collect::<Option<_>>()?;
        if self.len() > 0 && starts.first().map(|s| s.1) != Some(0) {
            return None;
        }
        let mut ranges = Vec::with_capacity(starts.len());
        for (i, &(token, start)) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(self.len(), |s| s.1);
            if end <= start {
                return None;
            }
            ranges.push((token, start, end));
        }
        Some(ranges)
    }
}
