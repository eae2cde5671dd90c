//! A bound on how deeply the parsed tree can nest, checked on tokens before
//! parsing.
//!
//! sqlparser limits recursion while parsing (parentheses, subqueries, prefix
//! operators), but builds left-associative chains in a loop: `1+1+...+1`
//! with 100 000 terms parses into a tree 100 000 levels deep, and merely
//! dropping that tree overflows the stack. A stack overflow aborts the
//! whole gateway, so such text must never reach the parser.
//!
//! The estimate charges one level for every operator token and every
//! keyword that can extend a chain (`AND`, `IS`, `LIKE`, `UNION`, ...), and
//! one for every open parenthesis or bracket. A comma ends an expression, so
//! it resets the count of its parenthesis level, except for set operations
//! (`SELECT 1, 2 UNION SELECT 1, 2 UNION ...` nests across commas). The
//! estimate is an upper bound on the nesting those tokens can build; the
//! limit sits far below what a 2 MiB thread stack survives (about 20 000
//! levels in a debug build) and far above what generated queries use (a
//! thousand `OR`ed comparisons is about 2 000).

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

/// The largest estimated nesting that is parsed.
pub(crate) const MAX_ESTIMATED_DEPTH: usize = 4_000;

#[derive(Default)]
struct Level {
    operators: usize,
    set_operations: usize,
}

pub(crate) fn check(tokens: &[TokenWithSpan]) -> Result<(), &'static str> {
    if estimate(tokens) > MAX_ESTIMATED_DEPTH {
        Err("the statement nests too deeply to be classified safely")
    } else {
        Ok(())
    }
}

pub(crate) fn estimate(tokens: &[TokenWithSpan]) -> usize {
    let mut levels = vec![Level::default()];
    let mut total = 0usize;
    let mut max = 0usize;
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) | Token::EOF | Token::Period | Token::Placeholder(_) => {}
            Token::Number(..) => {}
            t if super::tokens::is_string_literal(t) => {}
            Token::SemiColon => {
                levels = vec![Level::default()];
                total = 0;
            }
            Token::Comma => {
                if let Some(level) = levels.last_mut() {
                    total -= level.operators;
                    level.operators = 0;
                }
            }
            Token::LParen | Token::LBracket | Token::LBrace => {
                // A subscript chains like an operator; any opening adds a level.
                if matches!(t.token, Token::LBracket) {
                    bump(&mut levels, &mut total, false);
                }
                levels.push(Level::default());
                total += 1;
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if levels.len() > 1 {
                    if let Some(level) = levels.pop() {
                        total -= level.operators + level.set_operations + 1;
                    }
                }
            }
            Token::Word(w) if w.quote_style.is_none() => {
                if is_set_operation(w.keyword) {
                    bump(&mut levels, &mut total, true);
                } else if is_chain_keyword(w.keyword) {
                    bump(&mut levels, &mut total, false);
                }
            }
            Token::Word(_) => {}
            // Every other token is an operator or a stray character.
            _ => bump(&mut levels, &mut total, false),
        }
        max = max.max(total);
    }
    max
}

fn bump(levels: &mut [Level], total: &mut usize, set_operation: bool) {
    if let Some(level) = levels.last_mut() {
        if set_operation {
            level.set_operations += 1;
        } else {
            level.operators += 1;
        }
        *total += 1;
    }
}

fn is_set_operation(k: Keyword) -> bool {
    matches!(
        k,
        Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS
    )
}

fn is_chain_keyword(k: Keyword) -> bool {
    matches!(
        k,
        Keyword::AND
            | Keyword::OR
            | Keyword::XOR
            | Keyword::NOT
            | Keyword::IS
            | Keyword::LIKE
            | Keyword::ILIKE
            | Keyword::SIMILAR
            | Keyword::IN
            | Keyword::BETWEEN
            | Keyword::AT
            | Keyword::COLLATE
            | Keyword::OPERATOR
            | Keyword::OVERLAPS
            | Keyword::ESCAPE
            | Keyword::REGEXP
            | Keyword::RLIKE
            | Keyword::DIV
            | Keyword::MEMBER
            | Keyword::ANY
            | Keyword::ALL
            | Keyword::SOME
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tokens::tokenize;

    fn depth(sql: &str) -> usize {
        estimate(&tokenize(sql).expect("tokenizes"))
    }

    #[test]
    fn lists_do_not_accumulate() {
        let values: Vec<String> = (0..10_000).map(|i| format!("(-{i}, 'x')")).collect();
        let sql = format!("INSERT INTO t VALUES {}", values.join(", "));
        assert!(depth(&sql) < 10, "{}", depth(&sql));
        let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        assert!(depth(&format!("SELECT * FROM t WHERE a IN ({})", list.join(","))) < 10);
    }

    #[test]
    fn chains_accumulate() {
        assert!(depth(&format!("SELECT 1{}", "+1".repeat(5_000))) >= 5_000);
        assert!(
            depth(&format!(
                "SELECT 1, 2{}",
                " UNION SELECT 1, 2".repeat(5_000)
            )) >= 5_000
        );
        assert!(depth(&format!("SELECT a{}", "[1]".repeat(5_000))) >= 5_000);
        assert!(depth(&format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000))) >= 5_000);
    }
}
