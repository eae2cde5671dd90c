//! Reads that change nothing: the statements whose record the proxy may
//! make durable while the statement already runs (issue 25), because
//! running it early can disclose nothing (its results wait for the record)
//! and change nothing (so a record that then fails leaves nothing the
//! ledger does not know of).
//!
//! A message is a free read when the text says so and nothing the text
//! cannot show could make it otherwise:
//! - every statement is a plain `SELECT` (or `VALUES`) whose only tag is
//!   `read`: no `INTO`, no `FOR UPDATE`/`FOR SHARE`, no data-modifying
//!   CTE, no SQL-level PREPARE, EXECUTE or DECLARE;
//! - every function it calls is one of PostgreSQL's own on the list below,
//!   each of which neither writes, nor locks, nor signals, nor changes a
//!   setting or a sequence (`nextval`, `set_config`, `pg_advisory_lock`,
//!   `pg_notify`, `txid_current` and every function not listed are not
//!   free); a name another schema shadows is somebody's code already
//!   (`opaque`, see [`super::Shadows`]), and so is an operator another
//!   schema defines;
//! - the caller checks what only the catalog knows: a read can run code
//!   its text never names (a domain's CHECK, an implicit or JSON cast, an
//!   `=` that `USING` implies, a view calling `nextval`, a foreign
//!   partition, a row-security policy), so only in a database that holds
//!   no code of its users at all is a read free
//!   ([`super::Shadows::may_run_hidden_code`]).
//!
//! Anything else, unclassified text above all, is not free: it is recorded
//! before it runs, as every statement was before.

use super::{Classification, StatementClass};

/// PostgreSQL's own functions that change nothing when called, sorted.
/// Volatile ones are here only where their volatility is a clock or a
/// random number, never state.
const FREE_FUNCTIONS: &[&str] = &[
    "abs",
    "age",
    "array_agg",
    "array_length",
    "array_lower",
    "array_position",
    "array_to_string",
    "array_upper",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "clock_timestamp",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "cume_dist",
    "current_database",
    "current_date",
    "current_schema",
    "current_setting",
    "current_time",
    "current_timestamp",
    "current_user",
    "date_part",
    "date_trunc",
    "dense_rank",
    "div",
    "every",
    "exp",
    "extract",
    "first_value",
    "floor",
    "format",
    "generate_series",
    "greatest",
    "initcap",
    "json_agg",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_extract_path",
    "json_extract_path_text",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_object_agg",
    "jsonb_typeof",
    "lag",
    "last_value",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "localtime",
    "localtimestamp",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_timestamp",
    "max",
    "md5",
    "min",
    "mod",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "octet_length",
    "percent_rank",
    "position",
    "power",
    "random",
    "rank",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "session_user",
    "sign",
    "split_part",
    "sqrt",
    "statement_timestamp",
    "stddev",
    "string_agg",
    "strpos",
    "substr",
    "substring",
    "sum",
    "timeofday",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "translate",
    "trim",
    "trunc",
    "unnest",
    "upper",
    "variance",
    "version",
];

/// Whether `name` (normalised, unqualified or in `pg_catalog`) is one of
/// [`FREE_FUNCTIONS`].
fn is_free_function(name: &str) -> bool {
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    FREE_FUNCTIONS.binary_search(&name).is_ok()
}

impl StatementClass {
    /// Whether the text of this statement only reads and changes nothing
    /// (see the module documentation; the catalog's part is the caller's).
    pub fn is_free_read(&self) -> bool {
        self.main_kind() == "select"
            && self.kinds.iter().all(|k| k == "select" || k == "read")
            && self.writes.is_empty()
            && self.prepares.is_none()
            && self.executes.is_none()
            && self.declares.is_empty()
            && self.functions.iter().all(|f| is_free_function(f))
    }
}

impl Classification {
    /// Whether every statement of the message is a free read, as far as
    /// the text tells; an unclassified or empty message is not.
    pub fn is_free_read(&self) -> bool {
        self.unclassified.is_none()
            && !self.statements.is_empty()
            && self.statements.iter().all(StatementClass::is_free_read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classify, Shadows};

    #[test]
    fn the_list_is_sorted_for_binary_search() {
        assert!(FREE_FUNCTIONS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn only_reads_that_change_nothing_are_free() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "SELECT 1",
            "SELECT count(*), max(id) FROM patients p JOIN visits v ON v.pid = p.id",
            "SELECT lower(name) FROM patients WHERE id IN (SELECT pid FROM visits); SELECT now()",
            "WITH recent AS (SELECT * FROM visits) SELECT * FROM recent",
            "VALUES (1), (2)",
            "SELECT pg_catalog.upper('x')",
        ] {
            assert!(classify(sql).is_free_read(), "{sql}");
        }
        for sql in [
            "SELECT nextval('s')",
            "SELECT set_config('role', 'x', false)",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_notify('c', 'x')",
            "SELECT txid_current()",
            "SELECT my_function(1)",
            "SELECT public.lower('x')",
            "SELECT * FROM patients FOR UPDATE",
            "SELECT * FROM (SELECT * FROM patients FOR UPDATE) p",
            "(SELECT * FROM patients FOR SHARE)",
            "WITH x AS (SELECT * FROM patients FOR UPDATE) SELECT * FROM x",
            "SELECT (SELECT id FROM patients FOR NO KEY UPDATE)",
            "SELECT * INTO copy FROM patients",
            "WITH gone AS (DELETE FROM visits RETURNING *) SELECT * FROM gone",
            "INSERT INTO t VALUES (1)",
            "SELECT 1; UPDATE t SET a = 1",
            "EXPLAIN ANALYZE DELETE FROM t",
            "SHOW search_path",
            "PREPARE p AS SELECT 1",
            "EXECUTE p",
            "DECLARE c CURSOR FOR SELECT 1",
            "SELECT pg_sleep(1)",
            "SELECT query_to_xml('DELETE FROM t', true, true, '')",
            "not sql at all",
            "",
            "LISTEN c",
            "NOTIFY c",
        ] {
            assert!(!classify(sql).is_free_read(), "{sql}");
        }
    }

    #[test]
    fn a_shadowed_name_or_operator_is_not_free() {
        let shadows = Shadows::new(["lower".to_string()], ["=".to_string()], []);
        for sql in ["SELECT lower('x')", "SELECT * FROM t WHERE a = 1"] {
            let mut c = classify(sql);
            assert!(c.is_free_read(), "{sql}");
            shadows.apply(&mut c);
            assert!(!c.is_free_read(), "{sql}");
        }
    }
}
