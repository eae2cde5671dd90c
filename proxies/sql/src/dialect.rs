//! The dialect seam: what differs between the SQL servers Vigil fronts.
//!
//! Today there is one dialect, PostgreSQL. MySQL (a later issue) adds a
//! variant here; every `match` on [`Dialect`] is then a place the compiler
//! points at. What goes through the seam now:
//!
//! - the tokenizer and parser dialect the classifier and the lineage
//!   resolver read statements with ([`Dialect::parser`]);
//! - how the classifier folds unquoted identifiers
//!   ([`Dialect::fold_unquoted`], used by `classify::names`).
//!
//! A policy file's names do not go through it: they match
//! case-insensitively in every dialect (covering more is the safe side).
//!
//! What is still PostgreSQL's alone and moves behind the seam with MySQL
//! (the classifier is called without a dialect today): its built-in function catalog (`pg_catalog_functions.txt`), `search_path`
//! shadowing, the session settings it tracks, and the lexer guard's
//! knowledge of `standard_conforming_strings`.

/// A SQL dialect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    PostgreSql,
}

impl Dialect {
    /// The tokenizer and parser dialect statements are read with.
    pub fn parser(self) -> &'static dyn sqlparser::dialect::Dialect {
        match self {
            Dialect::PostgreSql => &sqlparser::dialect::PostgreSqlDialect {},
        }
    }

    /// An unquoted name as the server stores it. PostgreSQL folds ASCII
    /// letters to lower case (multibyte characters are left alone in UTF-8
    /// databases).
    pub fn fold_unquoted(self, name: &str) -> String {
        match self {
            Dialect::PostgreSql => name.to_ascii_lowercase(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_folds_ascii_letters_only() {
        assert_eq!(Dialect::PostgreSql.fold_unquoted("Patients"), "patients");
        assert_eq!(
            Dialect::PostgreSql.fold_unquoted("ÄrzteListe"),
            "Ärzteliste"
        );
    }
}
