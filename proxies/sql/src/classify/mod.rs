//! Statement classification: what one client message (a simple Query's text,
//! or a Parse's text) does, in terms a policy can match on.
//!
//! [`classify`] returns one [`StatementClass`] per statement: kind tags, the
//! tables read and written, the functions called, and whether a table is
//! read in bulk. [`redact_literals`] gives the text with its data taken out,
//! for anything that leaves the ledger.
//!
//! # Fail closed
//!
//! Whenever the classifier cannot be sure it sees what PostgreSQL will run,
//! [`Classification::unclassified`] holds the reason (never any SQL text or
//! literal: it may be logged) and the policy applies its strictest outcome.
//! That happens when:
//!
//! - the text contains a NUL character, does not tokenize, or does not parse
//!   (except for the few harmless statements listed in the `fallback`
//!   module);
//! - the lexer guard finds that PostgreSQL could read a literal, comment or
//!   identifier boundary differently from sqlparser, under either setting of
//!   `standard_conforming_strings` (see the `lexguard` module), so that code
//!   could hide inside what the classifier takes for a literal;
//! - the statement nests too deeply to walk safely (see the `depth` module);
//! - a statement parses but has a form this module does not handle
//!   precisely: its kind is then `other`. This includes every statement
//!   form PostgreSQL does not have (sqlparser parses other dialects too);
//! - sqlparser read a PostgreSQL key word as a table or function name, so
//!   its tree is not what the server will run: `SELECT * FROM ONLY
//!   patients` parses as the table `only` with the alias `patients`
//!   (statements using ONLY are therefore unclassified);
//! - it changes `client_encoding` away from UTF8 (see below);
//! - some part of it is computed or unusual in a way that hides what it
//!   touches: a `set_config` whose parameter name is not a literal, a
//!   statement nested where only a query belongs, a `TABLE name` query, a
//!   DML target that is not a plain table, a BEGIN ... END block.
//!
//! The statements are still returned, filled in as far as they go.
//!
//! # What the caller must guarantee
//!
//! - The text is exactly what the server will lex, decoded strictly as
//!   UTF-8, from a session whose `client_encoding` is UTF8. In SJIS, BIG5,
//!   GBK, UHC or GB18030 a byte that decodes here as `\` can be the second
//!   half of a character for the server (`C3 81 5C` is valid UTF-8 `Á\`
//!   and, in SJIS, a katakana followed by one two-byte character), which
//!   moves where string literals end. Check the startup parameter and every
//!   `ParameterStatus` for `client_encoding`; `SET client_encoding`/`SET
//!   NAMES` to anything else is refused here, but `ALTER ROLE ... SET` and
//!   `PGOPTIONS` are not statements of this session.
//! - Classification covers the text only: views, rules, triggers, column
//!   defaults and function bodies run code that is not in it.
//!
//! # Kind vocabulary
//!
//! `kinds` lists the main kind first, then derived tags, without repeats.
//!
//! Main kinds: `select` (also `VALUES`), `insert`, `update`, `delete`,
//! `merge` (a `WITH ... DELETE` has the DML's kind), `copy`, `create`,
//! `alter`, `drop`, `truncate`, `grant`, `revoke`, `create_role`,
//! `alter_role`, `drop_role`, `set_role` (SET ROLE, SET SESSION
//! AUTHORIZATION, `SET role = ...`), `set`, `show`, `reset`, `discard`,
//! `begin`, `commit`, `rollback`, `savepoint`, `release`, `prepare`,
//! `execute`, `deallocate`, `call`, `explain`, `listen`, `notify`,
//! `unlisten`, `load`, `vacuum`, `analyze`, `lock`, `comment`, `declare`,
//! `fetch` (also MOVE), `close`, `create_extension`, `create_function`,
//! `other` (always with `unclassified` set).
//!
//! Of the main kinds PostgreSQL has and sqlparser 0.63 does not parse, these
//! never appear because their statements are unclassified instead: `do`,
//! `alter_system`, `cluster`, `reindex`, `checkpoint`, `refresh` and GRANT or
//! REVOKE of a role (`GRANT admin TO bob`). They are refused by the fail
//! closed rule, which is stricter than any rule naming them could be.
//!
//! Derived tags:
//!
//! - `read`: reads at least one table or view (`reads` is not empty);
//! - `write`: modifies table data: INSERT, UPDATE, DELETE, MERGE (also
//!   inside a CTE or run by EXPLAIN ANALYZE), COPY FROM, SELECT INTO,
//!   CREATE TABLE AS, CREATE MATERIALIZED VIEW, TRUNCATE, ALTER COLUMN TYPE,
//!   ALTER TABLE ... DROP COLUMN;
//! - `update`, `delete`, `insert` on a MERGE: what its WHEN clauses do, so
//!   it is judged like those statements; a MERGE whose UPDATE or DELETE
//!   clause is bounded by nothing naming a target column (qualified with
//!   the target's name or alias: `ON true`, `ON s.one = 1`) is
//!   `unbounded_write` and `destructive`;
//! - `cte_write`: a data-modifying statement inside a WITH clause; its kind
//!   (`delete`, ...) and `write` are listed too;
//! - `unbounded_write`: UPDATE or DELETE without a WHERE (or with one that
//!   names no column, like `WHERE true`); also tagged `destructive`;
//! - `ddl`: creates, alters, drops or comments on schema objects;
//! - `destructive`: loses data or definitions: every DROP (roles too),
//!   TRUNCATE, ALTER TABLE ... DROP COLUMN / CONSTRAINT / PRIMARY KEY /
//!   FOREIGN KEY / INDEX / PARTITION, ALTER COLUMN ... TYPE, and
//!   `unbounded_write`. Renames are not destructive;
//! - `admin`: operator business: role management, GRANT/REVOKE, SET ROLE
//!   and SET SESSION AUTHORIZATION to a named role, LOAD, CREATE/DROP
//!   EXTENSION, functions in C or an untrusted language, CREATE DATABASE,
//!   DROP DATABASE, CREATE SERVER, COPY to/from a server file or program,
//!   VACUUM FULL, disabling triggers or rules, setting parameters that
//!   load libraries or switch off integrity checks, row security or
//!   statement logging, and calls of server-file, server-control,
//!   replication and statistics-reset functions;
//! - `privilege_change`: changes who may do what: GRANT, REVOKE, role
//!   statements, SET ROLE / SESSION AUTHORIZATION, `set_config('role', ...)`,
//!   row security on/off, row security policies, OWNER TO, SECURITY
//!   DEFINER functions, and `role_reset`;
//! - `role_reset`: returns to the login role (RESET ROLE, SET ROLE NONE,
//!   RESET SESSION AUTHORIZATION, RESET ALL, DISCARD ALL): harmless unless
//!   the gateway itself lowered the session's role;
//! - `set`: changes a setting (also tagged on `set_config(...)` calls);
//! - `copy_out`: COPY ... TO (a table or a query, to the client, a file or a
//!   program); `copy_in`: COPY ... FROM;
//! - `file_access`: COPY to/from a server file or program, and calls of
//!   pg_read_file, pg_read_binary_file, pg_ls_dir (and the other pg_ls_*),
//!   pg_stat_file, pg_current_logfile, lo_import, lo_export and adminpack's
//!   pg_file_* / pg_logdir_ls;
//! - `program_execution`: COPY TO/FROM PROGRAM (also tagged `file_access`);
//! - `load_library`: LOAD, CREATE EXTENSION, functions in C or internal,
//!   setting `*_preload_libraries` or `dynamic_library_path`;
//! - `define_code`: defines or changes code the server runs later, out of
//!   the classifier's sight: CREATE FUNCTION / PROCEDURE, CREATE TRIGGER,
//!   CREATE OPERATOR (and operator classes and families), CREATE TYPE with
//!   functions (base and range types), ALTER FUNCTION / AGGREGATE (a
//!   rename launders a denied function under a new name), ALTER OPERATOR,
//!   and switching a trigger or rule on. CREATE CAST, AGGREGATE, RULE,
//!   EVENT TRIGGER, LANGUAGE, TRANSFORM and CONVERSION, and ALTER
//!   PROCEDURE / ROUTINE / TRIGGER do not parse and are unclassified;
//! - `user_function`: a call of a function that is not one of PostgreSQL's
//!   own (`pg_catalog`, unqualified or so qualified): always with `opaque`;
//! - `opaque`: code the gateway cannot see into: CALL, `user_function`
//!   calls, and functions that
//!   run SQL given as text or elsewhere (query_to_xml and the other
//!   *_to_xml*, ts_stat, dblink*, logical decoding functions);
//! - `explain_analyze`: EXPLAIN ANALYZE (or `EXPLAIN (ANALYZE)`, `ANALYSE`,
//!   any value but off/false/0), which runs the inner statement: its kinds,
//!   tables, functions and bulk-read flag are included. A plain EXPLAIN
//!   only lists the inner statement's tables as reads and its functions;
//! - `row_lock`: SELECT ... FOR UPDATE / FOR SHARE;
//! - `maintenance`: VACUUM and ANALYZE.
//!
//! # Objects
//!
//! Names are normalised as PostgreSQL folds them: unquoted parts lower-cased
//! (ASCII only), quoted parts kept (`"Patients"` is `Patients`, `"patients"`
//! is `patients`), and only as qualified as written (`public.patients`,
//! `patients`; a three-part name keeps its database). A part holding a `.`
//! or `"` is rendered quoted. CTE names are not tables; table functions in
//! FROM (`pg_ls_dir('.')`) are functions.
//!
//! - `reads`: tables and views whose rows the statement reads or returns:
//!   FROM, JOIN, subqueries anywhere, INSERT ... SELECT sources, UPDATE ...
//!   FROM, DELETE ... USING, MERGE sources, COPY ... TO, the target of a
//!   DML with RETURNING, tables a new foreign key references or CREATE
//!   TABLE ... (LIKE t) copies, names in other table positions (PARTITION
//!   OF, ANALYZE t, VACUUM t). A plain EXPLAIN lists everything its
//!   statement would touch here. A view is reported as itself: what it
//!   reads is not visible in the text.
//! - `writes`: tables whose data, definition or access the statement
//!   changes: DML targets, COPY FROM targets, SELECT INTO / CREATE TABLE AS
//!   targets, created, altered, dropped or truncated objects (for DROP of a
//!   schema or index, its name), the table of CREATE INDEX / TRIGGER /
//!   POLICY, tables named in GRANT/REVOKE, COMMENT ON TABLE/COLUMN, LOCK.
//! - `functions`: every function named in the statement: in expressions,
//!   DEFAULTs, FROM, CALL, and a trigger's function.
//!
//! `unbounded_read` is a review aid, not a guarantee: it is set when some
//! query level reads a table with no WHERE (or one naming no column, like
//! `WHERE true`), no constant LIMIT or FETCH FIRST, and is not a single row
//! of scalar aggregates: `SELECT count(*) FROM patients` (one row) is
//! bounded. A LIMIT does not bound a level whose select list uses an
//! aggregate that gathers rows (`string_agg`, `array_agg`, `json_agg`, ...):
//! one row of it can carry a whole table. A LIMIT on a set operation
//! (`(SELECT ...) UNION (SELECT ...) LIMIT 5`) bounds its branches; a
//! subquery that only feeds EXISTS, IN or ANY/ALL is never a bulk read. A
//! LIMIT given as a parameter (`LIMIT $1`) is not constant. The flag is also
//! set for COPY of a whole table, MERGE ... USING a table, and
//! UPDATE/DELETE ... RETURNING of every row. `WHERE id > 0` defeats it.
//!
//! # Prepared statements
//!
//! `PREPARE name AS stmt` yields kind `prepare` and `prepares` with the
//! inner statement's class (its failures make the whole message
//! unclassified); `EXECUTE name` yields kind `execute` and `executes`.
//! Names are normalised like identifiers (`"P"` and `p` differ) and must be
//! compared as given: folding them again would let `EXECUTE "P"` be judged
//! by what `p` runs. A PREPARE and an EXECUTE may share one message: handle
//! the statements in order. EXPLAIN of an EXECUTE carries `executes` too.

mod collect;
mod ddl;
mod depth;
mod dml;
mod fallback;
mod free_read;
mod functions;
mod lexguard;
pub(crate) mod names;
mod redact;
mod search_path;
mod selective;
mod session;
mod shadows;
mod statement;
mod tokens;

use std::collections::BTreeSet;

use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan};

pub use redact::redact_literals;
pub use search_path::search_path_text_shadows_builtins;
pub use shadows::Shadows;

pub(crate) use functions::is_builtin_function;
pub(crate) use names::last_part;

/// The longest text the classifier reads. Parsing costs 300 to 600 bytes
/// of memory per token (measured: `SELECT 1,1,...` of 2 MB, 1.2 GB; an
/// 8 MiB one once took 5 GiB), so without a bound one statement could
/// exhaust the gateway's memory. Longer texts are unclassified: the
/// policy's strictest outcome. Tokenizing this much costs about 20 MB at
/// worst, before the token budget below can be checked.
pub const MAX_CLASSIFIED_BYTES: usize = 256 * 1024;

/// The most tokens the classifier parses (whitespace and punctuation
/// included): about 60 MB of parser memory at worst, freed when the
/// classification is made. Classification runs on the proxy's async
/// worker threads (one per core), so at most that many run at once. A
/// multi-row INSERT of 5,000 rows of three values is about 60,000 tokens.
pub const MAX_CLASSIFIED_TOKENS: usize = 100_000;

/// What one client message does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classification {
    /// One per statement, in order; empty for an empty query string.
    pub statements: Vec<StatementClass>,
    /// Set when the text could not be parsed or fully classified: the
    /// reason, without any SQL text or literal in it. The policy then
    /// applies the strictest outcome.
    pub unclassified: Option<String>,
}

/// What one statement does. See the module documentation for the meaning of
/// every field and tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatementClass {
    /// Kind tags: the main kind first, then derived tags; no repeats.
    pub kinds: Vec<String>,
    /// Tables and views read, normalised.
    pub reads: BTreeSet<String>,
    /// Tables and other objects written, normalised.
    pub writes: BTreeSet<String>,
    /// Function names called, normalised.
    pub functions: BTreeSet<String>,
    /// Operator symbols used without a schema (`+`, `&&`): which function
    /// runs depends on the operators the database defines (see
    /// [`Shadows`]).
    pub operators: BTreeSet<String>,
    /// The last part of every qualified name (`p.name` -> `name`): a column,
    /// or attribute notation for a call `name(p)` (see [`Shadows`]).
    pub attributes: BTreeSet<String>,
    /// The columns the statement's expressions mention (the last part of
    /// every name in an expression, and a renamed column's old name), so
    /// that policy can tell a write that moves a masked column.
    pub columns: BTreeSet<String>,
    /// An expression takes whole rows (`*`, `t.*`, `row_to_json(t)`,
    /// `t::text`): every column of them moves, none by name.
    pub copies_whole_rows: bool,
    /// The columns named in a WHERE, HAVING or JOIN ... ON (last parts):
    /// what decides which rows come back, for `filters_masked`.
    pub filter_columns: BTreeSet<String>,
    /// A table is read in bulk (see the module documentation).
    pub unbounded_read: bool,
    /// SQL-level `PREPARE name AS <stmt>`: the name and the inner class.
    pub prepares: Option<(String, Box<StatementClass>)>,
    /// SQL-level `EXECUTE name`: the caller looks the name up among this
    /// session's PREPAREs; an unknown name must be treated as unclassified.
    pub executes: Option<String>,
    /// SQL-level `DECLARE name CURSOR`: the portal it creates, which the
    /// extended protocol can Execute by that name.
    pub declares: Vec<String>,
    /// What its result columns are computed from, before names are bound
    /// to the catalog (see [`crate::lineage`]); `None` for statements the
    /// parser did not read (the fallback's).
    pub shape: Option<std::sync::Arc<crate::lineage::StatementShape>>,
}

impl StatementClass {
    /// The main kind (`select`, `drop`, ...), or `""` if there is none.
    pub fn main_kind(&self) -> &str {
        self.kinds.first().map_or("", String::as_str)
    }

    /// Whether `kind` is among the kinds.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k == kind)
    }

    pub(crate) fn add_kind(&mut self, kind: &str) {
        if !self.has_kind(kind) {
            self.kinds.push(kind.to_string());
        }
    }
}

/// Classifies one client message. Never panics.
pub fn classify(sql: &str) -> Classification {
    let unclassified = |why: String| Classification {
        statements: Vec::new(),
        unclassified: Some(why),
    };
    if sql.len() > MAX_CLASSIFIED_BYTES {
        return unclassified(format!(
            "the text is longer than the {} KiB the classifier reads",
            MAX_CLASSIFIED_BYTES / 1024
        ));
    }
    if sql.contains('\0') {
        // PostgreSQL reads the query as a C string; text after a NUL would
        // be seen here and not there.
        return unclassified("the text contains a NUL character".into());
    }
    let Some(tokens) = tokens::tokenize(sql) else {
        return unclassified("the text could not be tokenized".into());
    };
    if tokens.len() > MAX_CLASSIFIED_TOKENS {
        return unclassified(format!(
            "the text has more than the {MAX_CLASSIFIED_TOKENS} tokens the classifier parses"
        ));
    }
    if let Err(why) = lexguard::check(sql, &tokens) {
        return unclassified(why.into());
    }
    if let Err(why) = depth::check(&tokens) {
        return unclassified(why.into());
    }
    if tokens.iter().all(|t| {
        matches!(
            t.token,
            Token::Whitespace(_) | Token::SemiColon | Token::EOF
        )
    }) {
        return Classification::default();
    }
    let leading = leading_keywords(&tokens);
    let parsed = Parser::new(crate::Dialect::PostgreSql.parser())
        .with_tokens_with_locations(tokens.clone())
        .parse_statements();
    let statements = match parsed {
        Ok(statements) => statements,
        Err(_) => {
            return match fallback::classify(&tokens) {
                Some(class) => Classification {
                    statements: vec![class],
                    unclassified: None,
                },
                None => unclassified(format!(
                    "the text could not be parsed (statements beginning with {leading})"
                )),
            };
        }
    };
    let mut out = Classification::default();
    let mut reasons: Vec<&'static str> = Vec::new();
    for stmt in &statements {
        let (mut class, problems) = statement::classify_statement(stmt);
        class.shape = Some(std::sync::Arc::new(crate::lineage::statement_shape(stmt)));
        if let sqlparser::ast::Statement::Declare { stmts } = stmt {
            class.declares = stmts
                .iter()
                .flat_map(|d| d.names.iter().map(names::ident))
                .collect();
        }
        for p in problems {
            if !reasons.contains(&p) {
                reasons.push(p);
            }
        }
        out.statements.push(class);
    }
    if !reasons.is_empty() {
        out.unclassified = Some(reasons.join("; "));
    }
    out
}

/// The first word of each statement, for a reason that names no data: a
/// keyword as written in upper case, or `a name` / `a symbol` otherwise.
fn leading_keywords(tokens: &[TokenWithSpan]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut at_start = true;
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => at_start = true,
            tok if at_start => {
                at_start = false;
                let word = match tok {
                    Token::Word(w)
                        if w.quote_style.is_none()
                            && w.keyword != sqlparser::keywords::Keyword::NoKeyword =>
                    {
                        format!("{:?}", w.keyword)
                    }
                    Token::Word(_) => "a name".to_string(),
                    Token::LParen => "(".to_string(),
                    _ => "a symbol".to_string(),
                };
                if !out.contains(&word) {
                    out.push(word);
                }
            }
            _ => {}
        }
    }
    out.join(", ")
}
