//! What calling a built-in (or well-known extension) function, or setting a
//! configuration parameter, means for policy.
//!
//! Function names are matched on their last part whatever schema they were
//! called through: `pg_catalog.pg_read_file`, `public.pg_read_file` and
//! `PG_READ_FILE` all count. Extensions such as dblink live in whatever
//! schema they were installed into, and tagging a look-alike user function
//! too is the safe side.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::names::last_part;

/// Functions that read, list or write files on the database server.
const FILE_ACCESS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_logicalmapdir",
    "pg_ls_replslotdir",
    "pg_current_logfile",
    "lo_import",
    "lo_export",
    // adminpack
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "pg_file_read",
    "pg_file_length",
    "pg_logdir_ls",
    "pg_logfile_rotate",
];

/// Functions that run SQL (or fetch rows) given as text or from another
/// database, so the statement that really runs is not in front of us.
const DYNAMIC_SQL: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    // ts_rewrite(query, text) runs the text as a query.
    "ts_rewrite",
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_fetch",
    "dblink_send_query",
    "dblink_get_result",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_binary_changes",
];

/// Functions that control the server, other sessions, replication or
/// statistics: operator business, never an agent's.
const SERVER_ADMIN: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_stat_statements_reset",
    "pg_import_system_collations",
    "pg_log_backend_memory_contexts",
    // pg_stat_activity by function: other sessions' statement text, with
    // its literals (which can be PHI).
    "pg_stat_get_activity",
    "pg_stat_get_backend_activity",
];

/// Large-object functions. Large objects are storage outside every table:
/// writing one copies data where no column rule follows it
/// (`lo_from_bytea(0, convert_to(ssn, 'UTF8'))`), reading one returns bytes
/// no column rule masks. (`lo_import`/`lo_export` are file access too.)
const LARGE_OBJECTS: &[&str] = &[
    "lo_from_bytea",
    "lo_put",
    "lo_get",
    "lo_create",
    "lo_creat",
    "lo_open",
    "lo_close",
    "loread",
    "lowrite",
    "lo_lseek",
    "lo_lseek64",
    "lo_tell",
    "lo_tell64",
    "lo_truncate",
    "lo_truncate64",
    "lo_unlink",
    "lo_import",
    "lo_export",
];

/// Functions a stored expression (a DEFAULT, CHECK, generated column, index
/// expression, domain check or view) may call without review: they compute
/// from their arguments or the clock and write nothing. Any other call in a
/// stored expression runs later, on rows and in sessions the statement
/// does not name (a CHECK is evaluated on every existing row when it is
/// added), so it is reviewed like code the gateway cannot see.
const STORABLE_FUNCTIONS: &[&str] = &[
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "gen_random_uuid",
    "nextval",
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "btrim",
    "ltrim",
    "rtrim",
    "abs",
    "round",
    "date_trunc",
    "date_part",
    "extract",
    "to_tsvector",
    "jsonb_typeof",
    "json_typeof",
    "array_length",
    "cardinality",
];

/// Whether a stored expression may call `name` (normalised) unreviewed.
pub(crate) fn is_storable_function(name: &str) -> bool {
    let f = last_part(name);
    is_builtin_function(name)
        && (STORABLE_FUNCTIONS.contains(&f)
            || SQL_SYNTAX_FUNCTIONS.contains(&f)
            || SCALAR_AGGREGATES.contains(&f))
}

/// Every function name PostgreSQL 15 defines in `pg_catalog`, one a line
/// (`SELECT DISTINCT proname FROM pg_proc WHERE pronamespace =
/// 'pg_catalog'::regnamespace`; a test compares it with the server the
/// suite runs against).
const PG_CATALOG_FUNCTIONS: &str = include_str!("pg_catalog_functions.txt");

/// Words sqlparser reads as function calls that PostgreSQL treats as
/// syntax (no `pg_proc` entry of that name, or one only reached through
/// the syntax): they run no code of anybody's choosing.
const SQL_SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_catalog",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "grouping",
    "xmlelement",
    "xmlforest",
    "xmlconcat",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmlexists",
    "treat",
    "row",
    "trim",
    "collation",
];

/// Whether `word` is one of the words sqlparser reads as a call that
/// PostgreSQL treats as syntax. Quoted (`"coalesce"(x)`), it is no longer
/// syntax: PostgreSQL looks up a function of that name, which may be
/// anybody's.
pub(crate) fn is_sql_syntax_word(word: &str) -> bool {
    SQL_SYNTAX_FUNCTIONS.contains(&word)
}

/// Catalog relations whose rows are not the database's data but the
/// server's secrets or other sessions': configuration files, password
/// hashes, other sessions' statement text (with their literals), large
/// objects' contents. Reading them is operator business.
const SENSITIVE_RELATIONS: &[&str] = &[
    "pg_file_settings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_authid",
    "pg_shadow",
    "pg_user_mappings",
    "pg_user_mapping",
    "pg_stat_activity",
    "pg_stat_statements",
    "pg_largeobject",
    "pg_settings",
    "pg_config",
    // Column statistics: most common values and histogram bounds are
    // samples of every column's values, masked ones included.
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
];

/// The tags reading (or writing) relation `name` (normalised) adds.
pub(crate) fn relation_tags(name: &str) -> &'static [&'static str] {
    let (schema, relation) = match name.rsplit_once('.') {
        Some((schema, relation)) => (Some(schema), relation),
        None => (None, name),
    };
    if matches!(schema, None | Some("pg_catalog")) && SENSITIVE_RELATIONS.contains(&relation) {
        &["admin"]
    } else {
        &[]
    }
}

fn builtin_functions() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        PG_CATALOG_FUNCTIONS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .chain(SQL_SYNTAX_FUNCTIONS.iter().copied())
            .collect()
    })
}

/// Whether `name` (normalised) can only mean one of PostgreSQL's own
/// functions: unqualified or qualified with `pg_catalog`, and defined
/// there. Anything else is code somebody wrote (a function in another
/// schema, or a name the server does not ship), whose body the gateway
/// cannot see: calling it is `opaque`. An unqualified built-in name could
/// still be shadowed by a function earlier on the search path, which needs
/// CREATE FUNCTION (refused by the shipped policy) or a DBA's own function
/// placed there (the DBA's business).
pub(crate) fn is_builtin_function(name: &str) -> bool {
    let (schema, function) = match name.rsplit_once('.') {
        Some((schema, function)) => (Some(schema), function),
        None => (None, name),
    };
    matches!(schema, None | Some("pg_catalog")) && builtin_functions().contains(function)
}

/// The derived kind tags a call of `name` (normalised) adds.
pub(crate) fn call_tags(name: &str) -> Vec<&'static str> {
    let f = last_part(name);
    let mut tags = Vec::new();
    if !is_builtin_function(name) {
        // Code the gateway cannot see into: its body may read files, run
        // dynamic SQL or write anything its owner may.
        tags.extend(["opaque", "user_function"]);
    }
    if FILE_ACCESS.contains(&f) {
        tags.extend(["file_access", "admin"]);
    }
    if DYNAMIC_SQL.contains(&f) {
        tags.push("opaque");
    }
    if SERVER_ADMIN.contains(&f) || f.starts_with("pg_logical_slot_") {
        tags.push("admin");
    }
    if LARGE_OBJECTS.contains(&f) {
        tags.push("large_object");
    }
    tags
}

/// Why a change of client_encoding is not classified: the gateway decodes
/// client text as UTF-8, and in a multi-byte encoding such as SJIS or BIG5
/// a byte that reads as a backslash here is the second half of a character
/// for the server, so string literals would end in different places.
pub(crate) const NOT_UTF8: &str = "a change of client_encoding away from UTF8";

/// How PostgreSQL names UTF-8: case and punctuation do not matter.
pub(crate) fn is_utf8_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    folded == "utf8" || folded == "unicode"
}

/// `set_config(name, value, is_local)` is `SET` in function form.
pub(crate) fn is_set_config(name: &str) -> bool {
    last_part(name) == "set_config"
}

/// Aggregates that fold any number of rows into one scalar. A query whose
/// select list holds only these (and no GROUP BY) returns one row, so it is
/// not a bulk read. Aggregates that collect rows (`array_agg`, `string_agg`,
/// `json_agg`, ...) are deliberately absent: one row of them can hold a
/// whole table.
const SCALAR_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "every",
    "bool_and",
    "bool_or",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
];

pub(crate) fn is_scalar_aggregate(name: &str) -> bool {
    SCALAR_AGGREGATES.contains(&last_part(name))
}

/// Aggregates that gather rows into one value: a LIMIT does not bound what
/// they return.
const COLLECTING_AGGREGATES: &[&str] = &[
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "json_agg_strict",
    "jsonb_agg_strict",
    "json_object_agg_strict",
    "jsonb_object_agg_strict",
    "json_object_agg_unique",
    "jsonb_object_agg_unique",
    "json_arrayagg",
    "json_objectagg",
    "xmlagg",
    "range_agg",
];

pub(crate) fn is_collecting_aggregate(name: &str) -> bool {
    COLLECTING_AGGREGATES.contains(&last_part(name))
}

/// What setting configuration parameter `name` (normalised, any scope)
/// means, as derived kind tags, whether by `SET`, `RESET` or `set_config`.
pub(crate) fn setting_tags(name: &str) -> &'static [&'static str] {
    match last_part(name) {
        "role" | "session_authorization" => &["set_role", "admin", "privilege_change"],
        // Libraries named here are loaded into the backend: LOAD by another name.
        "session_preload_libraries"
        | "local_preload_libraries"
        | "shared_preload_libraries"
        | "dynamic_library_path" => &["load_library", "admin"],
        // Switch off integrity checks, triggers, row security or the
        // server's own statement logging.
        "session_replication_role"
        | "allow_system_table_mods"
        | "ignore_system_indexes"
        | "zero_damaged_pages"
        | "ignore_checksum_failure"
        | "ignore_invalid_pages"
        | "lo_compat_privileges"
        | "row_security"
        | "log_statement"
        | "log_min_duration_statement"
        | "log_min_messages"
        | "log_min_error_statement"
        | "log_duration" => &["admin"],
        _ => &[],
    }
}
