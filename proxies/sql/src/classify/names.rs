//! Names as PostgreSQL resolves them: unquoted identifiers fold to lower
//! case, quoted ones keep their case, and a name is only as qualified as it
//! was written.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

/// One identifier. PostgreSQL folds only ASCII letters of an unquoted name
/// (multibyte characters are left alone in UTF-8 databases).
pub(crate) fn ident(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        crate::Dialect::PostgreSql.fold_unquoted(&id.value)
    }
}

/// A dotted name: `public.patients`, `patients`, `Patients` (quoted).
/// A part that itself holds a `.` or `"` is rendered quoted, so that the
/// table `"a.b"` cannot pass for the table `b` in schema `a`.
/// `None` for names computed at run time (e.g. `IDENTIFIER(...)`, which
/// PostgreSQL does not have), so that the caller fails closed.
pub(crate) fn object_name(name: &ObjectName) -> Option<String> {
    let mut parts = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(id) => parts.push(quote_if_ambiguous(ident(id))),
            ObjectNamePart::Function(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("."))
}

/// The reason given when [`relation_name`] refuses a name.
pub(crate) const UNREADABLE_TABLE: &str =
    "a table name that is computed or that PostgreSQL would not read as a table name";

/// A table or view name. Like [`object_name`], but also `None` when an
/// unquoted part is a word PostgreSQL reserves: PostgreSQL cannot read such
/// a name as a table, so sqlparser has read the statement differently from
/// the server. (`SELECT * FROM ONLY patients` parses here as the table
/// `only` with the alias `patients`.)
pub(crate) fn relation_name(name: &ObjectName) -> Option<String> {
    checked_name(name, |w| is_reserved(w) || is_type_or_function_only(w))
}

/// A function called in FROM. Reserved words cannot name a function there
/// either: `FROM ONLY (patients)` parses here as a call of `only`.
pub(crate) fn from_function_name(name: &ObjectName) -> Option<String> {
    checked_name(name, is_reserved)
}

fn checked_name(name: &ObjectName, refused: impl Fn(&str) -> bool) -> Option<String> {
    let bad = name.0.iter().any(|part| match part {
        ObjectNamePart::Identifier(id) => {
            id.quote_style.is_none() && refused(&id.value.to_ascii_lowercase())
        }
        ObjectNamePart::Function(_) => true,
    });
    if bad {
        None
    } else {
        object_name(name)
    }
}

/// PostgreSQL's reserved key words (Appendix C of its manual).
fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "current_catalog",
        "current_date",
        "current_role",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "initially",
        "intersect",
        "into",
        "lateral",
        "leading",
        "limit",
        "localtime",
        "localtimestamp",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "placing",
        "primary",
        "references",
        "returning",
        "select",
        "session_user",
        "some",
        "symmetric",
        "system_user",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "when",
        "where",
        "window",
        "with",
    ];
    RESERVED.contains(&word)
}

/// Key words that may name a function or type but not a table.
fn is_type_or_function_only(word: &str) -> bool {
    const TYPE_FUNC_NAME: &[&str] = &[
        "authorization",
        "binary",
        "collation",
        "concurrently",
        "cross",
        "current_schema",
        "freeze",
        "full",
        "ilike",
        "inner",
        "is",
        "isnull",
        "join",
        "left",
        "like",
        "natural",
        "notnull",
        "outer",
        "overlaps",
        "right",
        "similar",
        "tablesample",
        "verbose",
    ];
    TYPE_FUNC_NAME.contains(&word)
}

fn quote_if_ambiguous(part: String) -> String {
    if part.contains('.') || part.contains('"') {
        format!("\"{}\"", part.replace('"', "\"\""))
    } else {
        part
    }
}

/// The unqualified last part of a dotted name, for matching function names
/// whatever schema they were called through.
pub(crate) fn last_part(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// A single-part name, for matching against CTE names.
pub(crate) fn single_part(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(id)] => Some(ident(id)),
        _ => None,
    }
}
