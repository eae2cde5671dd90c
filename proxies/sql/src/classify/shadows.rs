//! Code reachable under PostgreSQL's own names.
//!
//! A call of `lower(5)` reads as the built-in `lower`, but PostgreSQL picks
//! the best match by argument types among *every* function of that name on
//! the search path: a `public.lower(int)` wins over `pg_catalog.lower(text)`
//! whatever the path's order. The same holds for operators (`'a' && 'b'`
//! runs whatever `&&` on text a schema defines). The text alone cannot tell;
//! the database's catalog can. [`Shadows`] is what the proxy read there:
//! the function names and operator symbols that code outside `pg_catalog`
//! defines (extensions' members excluded: a DBA installed those, and their
//! dangerous functions are tagged by name), and the name of every function
//! outside `pg_catalog`, which `p.f` may call when `p` has no column `f`. A call of such a name, or a use
//! of such a symbol, is `opaque` + `user_function`, like any call of
//! somebody's code. Applied after classification, so the classifier stays a
//! function of the text.

use std::collections::HashSet;

use super::functions::is_builtin_function;
use super::{Classification, StatementClass};

/// Function names and operator symbols defined outside `pg_catalog`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shadows {
    /// Built-in function names some other schema also defines.
    functions: HashSet<String>,
    /// Operator symbols some other schema defines.
    operators: HashSet<String>,
    /// Every function name some other schema defines: PostgreSQL calls
    /// `f(p)` for `p.f` when `p` has no column `f` and some `f` takes one
    /// argument of its type (a row type, `record`, a polymorphic type, with
    /// defaults or VARIADIC), which the name alone cannot rule out.
    attributes: HashSet<String>,
    /// The database holds code its users made (a function, a cast, an
    /// operator, a domain constraint, a view or rule, a foreign table, row
    /// security): a read may run it without naming it (a domain's CHECK, an
    /// implicit cast, a view calling `nextval`, a foreign partition), so no
    /// read is a free read.
    user_code: bool,
    /// The catalog could not be read: any call or operator may be
    /// somebody's code.
    unknown: bool,
    /// Made from what the catalog said ([`Shadows::new`]), not a default.
    read: bool,
}

/// Why a statement is unclassified while the catalog cannot be read.
const UNKNOWN: &str =
    "which functions and operators shadow PostgreSQL's own is unknown (the catalog lookup failed)";

impl Shadows {
    /// From the names the catalog lists (any schema but `pg_catalog`).
    /// Names that are not PostgreSQL's own are dropped: calls of them are
    /// `opaque` already.
    pub fn new(
        functions: impl IntoIterator<Item = String>,
        operators: impl IntoIterator<Item = String>,
        attributes: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            functions: functions
                .into_iter()
                .filter(|f| is_builtin_function(f))
                .collect(),
            operators: operators.into_iter().collect(),
            attributes: attributes.into_iter().collect(),
            user_code: false,
            unknown: false,
            read: true,
        }
    }

    /// With whether the database holds code its users made.
    pub fn with_user_code(mut self, user_code: bool) -> Self {
        self.user_code = user_code;
        self
    }

    /// Whether a read could run code the text does not name: the database
    /// holds code of its users, or the catalog could not be read (or was
    /// never read: the default). Only a database without any may have its
    /// reads run before their records are durable.
    pub fn may_run_hidden_code(&self) -> bool {
        self.unknown || self.user_code || !self.read
    }

    /// The catalog could not be read.
    pub fn unknown() -> Self {
        Self {
            unknown: true,
            ..Self::default()
        }
    }

    pub fn is_unknown(&self) -> bool {
        self.unknown
    }

    /// How many names shadow PostgreSQL's own.
    pub fn len(&self) -> usize {
        self.functions.len() + self.operators.len() + self.attributes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && !self.unknown
    }

    /// Tags every statement that calls a shadowed name or uses a shadowed
    /// symbol; with an unknown catalog, a statement that calls or operates
    /// at all is unclassified.
    pub fn apply(&self, class: &mut Classification) {
        let mut unknown = false;
        for stmt in &mut class.statements {
            unknown |= self.apply_to(stmt);
        }
        if unknown && class.unclassified.is_none() {
            class.unclassified = Some(UNKNOWN.into());
        }
    }

    /// Returns whether the statement depends on an unknown catalog.
    fn apply_to(&self, stmt: &mut StatementClass) -> bool {
        let mut unknown = false;
        if let Some((_, inner)) = &mut stmt.prepares {
            unknown |= self.apply_to(inner);
            if inner.has_kind("user_function") {
                stmt.add_kind("opaque");
                stmt.add_kind("user_function");
            }
        }
        let uses_code = !stmt.functions.is_empty() || !stmt.operators.is_empty();
        if self.unknown {
            return unknown || uses_code;
        }
        // Only unqualified names: `pg_catalog.lower` is the built-in, and a
        // name in another schema is somebody's already.
        let shadowed_call = stmt
            .functions
            .iter()
            .any(|f| !f.contains('.') && self.functions.contains(f));
        let shadowed_operator = stmt.operators.iter().any(|o| self.operators.contains(o));
        let attribute_call = stmt.attributes.iter().any(|a| self.attributes.contains(a));
        if shadowed_call || shadowed_operator || attribute_call {
            stmt.add_kind("opaque");
            stmt.add_kind("user_function");
        }
        unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    fn applied(sql: &str, shadows: &Shadows) -> Classification {
        let mut c = classify(sql);
        shadows.apply(&mut c);
        c
    }

    #[test]
    fn shadowed_names_and_symbols_are_somebodys_code() {
        let shadows = Shadows::new(
            ["lower".to_string(), "my_helper".to_string()],
            ["&&".to_string()],
            ["reader".to_string()],
        );
        assert_eq!(shadows.len(), 3, "my_helper is not a built-in name");
        let c = applied("SELECT p.reader FROM patients p WHERE p.id = 1", &shadows);
        assert!(c.statements[0].has_kind("user_function"), "{c:?}");
        let c = applied("SELECT p.name FROM patients p WHERE p.id = 1", &shadows);
        assert!(!c.statements[0].has_kind("opaque"), "{c:?}");
        let c = applied("SELECT lower(5)", &shadows);
        assert!(c.statements[0].has_kind("user_function"), "{c:?}");
        let c = applied("SELECT pg_catalog.lower('X')", &shadows);
        assert!(!c.statements[0].has_kind("opaque"), "{c:?}");
        let c = applied("SELECT 'a' && 'b'", &shadows);
        assert!(c.statements[0].has_kind("opaque"), "{c:?}");
        let c = applied("SELECT upper('x') || 'y', 1 + 2", &shadows);
        assert!(!c.statements[0].has_kind("opaque"), "{c:?}");
        let c = applied("PREPARE p AS SELECT lower(5)", &shadows);
        assert!(c.statements[0].has_kind("opaque"), "{c:?}");
        let c = applied("EXPLAIN SELECT 'a' && 'b'", &shadows);
        assert!(c.statements[0].has_kind("opaque"), "{c:?}");
        // Syntax that runs `=` with no `=` in the text (found by the review).
        let eq = Shadows::new([], ["=".to_string()], []);
        for sql in [
            "SELECT CASE 'a'::text WHEN 1 THEN 'x' END",
            "SELECT 'a'::text IS DISTINCT FROM 1",
            "SELECT NULLIF('a'::text, 1)",
            "SELECT 'a'::text = ANY(ARRAY[1])",
            "SELECT 'a'::text IN (1)",
        ] {
            assert!(applied(sql, &eq).statements[0].has_kind("opaque"), "{sql}");
        }
        let like = Shadows::new([], ["~~".to_string()], []);
        assert!(applied("SELECT 'a' LIKE 'b'", &like).statements[0].has_kind("opaque"));
    }

    #[test]
    fn only_a_database_read_and_found_without_user_code_runs_none() {
        assert!(!Shadows::new([], [], []).may_run_hidden_code());
        assert!(Shadows::new([], [], [])
            .with_user_code(true)
            .may_run_hidden_code());
        assert!(Shadows::unknown().may_run_hidden_code());
        assert!(Shadows::default().may_run_hidden_code(), "never read");
    }

    #[test]
    fn an_unknown_catalog_fails_closed_for_code_only() {
        let unknown = Shadows::unknown();
        assert!(applied("SELECT lower('x')", &unknown)
            .unclassified
            .is_some());
        assert!(applied("SELECT 1 + 1", &unknown).unclassified.is_some());
        let plain = applied("SELECT 1", &unknown);
        assert!(plain.unclassified.is_none(), "{plain:?}");
        assert!(applied("BEGIN", &unknown).unclassified.is_none());
    }

    #[test]
    fn a_named_operator_of_another_schema_is_somebodys_code() {
        let c = classify("SELECT 'a' OPERATOR(public.&&) 'b'");
        assert!(c.statements[0].has_kind("user_function"), "{c:?}");
        let c = classify("SELECT 1 OPERATOR(pg_catalog.+) 2");
        assert!(!c.statements[0].has_kind("opaque"), "{c:?}");
    }
}
