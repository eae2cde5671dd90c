//! Which of a client's startup parameters reach the database. PostgreSQL
//! treats every startup parameter (and every `-c name=value` in `options`)
//! as a session setting, applied before the first statement — so `role`,
//! `session_authorization` or `options=-c role=admin` would change who the
//! session runs as without any statement for the policy to judge. Only
//! settings that shape how results look pass; anything else ends the
//! startup with a reason. Pure: no I/O.

use vigil_sql::classify::search_path_text_shadows_builtins;

/// Settings a client may give at startup (lower case; PostgreSQL's names
/// are case-insensitive). The same settings a client can `SET` later under
/// the shipped policies.
pub const PASSED: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "client_min_messages",
    "bytea_output",
    "standard_conforming_strings",
    "default_transaction_isolation",
    "default_transaction_read_only",
];

/// Parameters that are the protocol's, not settings: handled by the proxy.
const PROTOCOL: &[&str] = &["user", "database", "replication"];

/// The client's parameters to pass upstream, or why the startup is refused.
pub fn filter(params: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    let mut passed = Vec::new();
    for (name, value) in params {
        if PROTOCOL.contains(&name.as_str()) {
            continue;
        }
        if name == "options" {
            check_options(value)?;
        } else if !allowed(name) {
            return Err(refusal(name));
        } else {
            check_value(name, value)?;
        }
        passed.push((name.clone(), value.clone()));
    }
    Ok(passed)
}

fn allowed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    PASSED.contains(&lower.as_str())
}

/// A passed setting whose value would still change what statements mean:
/// a search_path that puts another schema before `pg_catalog` lets its
/// functions shadow PostgreSQL's own (`SET` of it is administration).
fn check_value(name: &str, value: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    if lower == "search_path" && search_path_text_shadows_builtins(value) != Some(false) {
        return Err(
            "Vigil does not accept a startup search_path that puts another schema before pg_catalog"
                .into(),
        );
    }
    Ok(())
}

fn refusal(name: &str) -> String {
    format!(
        "Vigil does not pass the startup setting {name:?} to the database (allowed: {})",
        PASSED.join(", ")
    )
}

/// The bytes PostgreSQL's `pg_split_opts` separates `options` words at:
/// C's `isspace()`, which unlike Rust's ASCII whitespace includes vertical
/// tab. Splitting anywhere else would let `-c application_name=x\x0b-c\x0b
/// role=other` pass here as one harmless setting and reach the server as two.
pub const OPTION_SEPARATORS: &[u8] = b" \t\n\x0b\x0c\r";

/// The words PostgreSQL reads out of `options`, split exactly where it
/// splits them (for text that passed [`check_options`]'s character rules).
pub fn split_options(options: &str) -> impl Iterator<Item = &str> {
    options
        .split(|c: char| c.is_ascii() && OPTION_SEPARATORS.contains(&(c as u8)))
        .filter(|w| !w.is_empty())
}

/// `options` as libpq sends it: `-c name=value`, `-cname=value` or
/// `--name=value`, separated by whitespace. Backslash escapes (spaces inside
/// a value) are refused rather than interpreted: reading them differently
/// from PostgreSQL would be a bypass. So are non-ASCII and control bytes
/// other than the separators: whether the server's `isspace()` counts such
/// a byte as a separator depends on its locale.
fn check_options(options: &str) -> Result<(), String> {
    if options.contains('\\') {
        return Err("Vigil does not accept backslash escapes in the startup options".into());
    }
    if options
        .bytes()
        .any(|b| !(b.is_ascii_graphic() || OPTION_SEPARATORS.contains(&b)))
    {
        return Err(
            "Vigil accepts only printable ASCII and whitespace in the startup options".into(),
        );
    }
    let mut words = split_options(options);
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words
                .next()
                .ok_or_else(|| "the startup options end after -c".to_string())?
        } else if let Some(rest) = word.strip_prefix("--").or_else(|| word.strip_prefix("-c")) {
            rest
        } else {
            return Err(format!(
                "Vigil does not accept the startup option {word:?} (only -c name=value)"
            ));
        };
        let (name, value) = setting.split_once('=').unwrap_or((setting, ""));
        if !setting.contains('=') || !allowed(name) {
            return Err(refusal(name));
        }
        check_value(name, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn what_clients_send_passes() {
        let given = params(&[
            ("user", "agent"),
            ("database", "ehr"),
            ("application_name", "psql"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            (
                "options",
                "-c statement_timeout=5s --search_path=public -cTimeZone=UTC",
            ),
        ]);
        let passed = filter(&given).unwrap();
        assert_eq!(passed.len(), 4, "user and database are the proxy's");
    }

    #[test]
    fn settings_that_change_who_runs_are_refused() {
        for (name, value, want) in [
            ("role", "phi_admin", "\"role\""),
            (
                "session_authorization",
                "postgres",
                "\"session_authorization\"",
            ),
            ("options", "-c role=phi_admin", "\"role\""),
            ("options", "-crole=phi_admin", "\"role\""),
            ("options", "--role=phi_admin", "\"role\""),
            ("options", "-c application_name=x -c Role=y", "\"Role\""),
            ("options", "-c", "end after -c"),
            ("options", "-d 5", "\"-d\""),
            ("options", "-c role\\ =x", "backslash"),
            ("options", "-c search_path", "\"search_path\""),
            ("log_statement", "none", "\"log_statement\""),
            // Another schema before pg_catalog shadows built-in functions.
            ("search_path", "public, pg_catalog", "before pg_catalog"),
            (
                "options",
                "-c search_path=public,pg_catalog",
                "before pg_catalog",
            ),
            (
                "options",
                "--search_path=\"$user\",PG_CATALOG",
                "before pg_catalog",
            ),
            // PostgreSQL splits at vertical tab and form feed too.
            (
                "options",
                "-c application_name=x\x0b-c\x0brole=other",
                "\"role\"",
            ),
            (
                "options",
                "-c application_name=x\x0c-c\x0csession_replication_role=replica",
                "\"session_replication_role\"",
            ),
            (
                "options",
                "-capplication_name=x\r--log_statement=none",
                "\"log_statement\"",
            ),
            // Bytes whose meaning depends on the server's locale.
            (
                "options",
                "-c application_name=x\u{a0}-crole=y",
                "printable ASCII",
            ),
            ("options", "-c application_name=x\u{1}", "printable ASCII"),
            ("options", "-c application_name=x\u{7f}", "printable ASCII"),
        ] {
            let err = filter(&params(&[(name, value)])).unwrap_err();
            assert!(err.contains(want), "{name}={value}: {err}");
        }
    }
}
