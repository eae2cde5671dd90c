//! Policy at the proxy, with real psql and the real PostgreSQL: statements
//! the shipped PHI policy denies or holds for review never reach the
//! database whatever way they are phrased, the client gets SQLSTATE 42501
//! naming the rule, transactions behave as PostgreSQL's own errors make
//! them, results are masked by column origin and by content, results past
//! the row limit are stopped, and every decision is in the ledger.

use std::process::Output;

use vigil_proto::events::event::Kind;
use vigil_proto::events::Event;
use vigil_tests::SqlResponseView;
use vigil_tests::{direct_psql, python_client, show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

const SSN_1: &str = "123-45-6789";
const SSN_2: &str = "234-56-7890";

/// A PHI table of our own (unique per test, so tests can run in parallel).
fn create_patients(table: &str) {
    let out = direct_psql(&format!(
        "DROP TABLE IF EXISTS {table} CASCADE;
         CREATE TABLE {table} (id int PRIMARY KEY, name text, ssn text, dob date, notes text, member_id int);
         INSERT INTO {table} VALUES
           (1, 'Jane Roe', '{SSN_1}', '1980-03-04', 'call 555-123-4567 or jane.roe@example.org', 42),
           (2, 'John Doe', '{SSN_2}', '1975-11-30', 'no contact details', 43);"
    ));
    assert!(out.status.success(), "{}", show(&out));
}

fn phi_gateway() -> Gateway {
    let mut spec = GatewaySpec::new();
    spec.policy = "builtin:phi-default".into();
    Gateway::start(spec)
}

fn psql(gw: &Gateway, sql: &str) -> Output {
    gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-A", "-t", "-v", "VERBOSITY=verbose", "-c", sql],
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn table_exists(table: &str) -> bool {
    let out = direct_psql(&format!("SELECT to_regclass('{table}') IS NOT NULL"));
    stdout(&out).trim() == "t"
}

fn decisions(events: &[Event]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|e| {
            e.decision().map(|d| {
                (
                    d.outcome().label().to_string(),
                    d.rule.clone(),
                    d.stage().label().to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn destructive_and_admin_statements_are_denied_however_phrased() {
    let table = "vigil_pol_deny";
    create_patients(table);
    let gw = phi_gateway();
    let cases: &[(&str, &str)] = &[
        (&format!("DROP TABLE {table}"), "deny-destructive"),
        (
            &format!("dRoP /* hidden */ TABLE \"{table}\""),
            "deny-destructive",
        ),
        (
            &format!("drop table public.{table} cascade"),
            "deny-destructive",
        ),
        (&format!("SELECT 1; DROP TABLE {table}"), "deny-destructive"),
        (&format!("TRUNCATE {table}"), "deny-destructive"),
        (
            &format!("ALTER TABLE {table} DROP COLUMN notes"),
            "deny-destructive",
        ),
        ("ALTER SYSTEM SET work_mem = '1MB'", "fail-closed"),
        ("CREATE ROLE vigil_pol_intruder", "deny-administration"),
        (
            &format!("GRANT ALL ON {table} TO PUBLIC"),
            "deny-administration",
        ),
        (
            "SELECT pg_read_file('/etc/passwd')",
            "deny-server-files-and-programs",
        ),
        (
            &format!("COPY {table} TO PROGRAM 'cat > /tmp/vigil_pol_leak'"),
            "deny-server-files-and-programs",
        ),
        (
            &format!("COPY {table} TO '/tmp/vigil_pol_leak'"),
            "deny-server-files-and-programs",
        ),
    ];
    for (sql, rule) in cases {
        let out = psql(&gw, sql);
        assert!(
            !out.status.success(),
            "{sql} should be refused: {}",
            show(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("42501")
                && err.contains(&format!("Vigil denied this statement (rule \"{rule}\")")),
            "{sql}: {err}"
        );
        // Nothing of the message ran: not even the "SELECT 1" before a DROP.
        assert_eq!(stdout(&out).trim(), "", "{sql}: {}", show(&out));
    }
    assert!(table_exists(table), "the table survived every attempt");
    assert!(!std::path::Path::new("/tmp/vigil_pol_leak").exists());
    let role = direct_psql("SELECT count(*) FROM pg_roles WHERE rolname = 'vigil_pol_intruder'");
    assert_eq!(stdout(&role).trim(), "0");

    // A DO block's body is code Vigil cannot see into: it cannot be
    // classified, so it gets the strictest outcome any rule could give.
    let out = psql(
        &gw,
        &format!("DO $$ BEGIN EXECUTE 'DROP TABLE {table}'; END $$"),
    );
    let err = stderr(&out);
    assert!(
        err.contains("42501") && err.contains("could not be classified"),
        "{err}"
    );
    assert!(table_exists(table));

    let events = gw.wait_for_events(|ev| decisions(ev).len() > cases.len());
    let denied = decisions(&events)
        .into_iter()
        .filter(|(o, _, _)| o == "deny")
        .count();
    assert!(denied > cases.len(), "{:?}", decisions(&events));
    // Each refused statement is still recorded with its text and its
    // (rewritten) error.
    let refused_responses = events
        .iter()
        .filter(|e| matches!(&e.kind, Some(Kind::Response(r)) if r.error_code == "42501"))
        .count();
    assert!(refused_responses >= cases.len(), "{refused_responses}");
}

#[test]
fn a_refusal_aborts_the_transaction_like_any_postgres_error() {
    let table = "vigil_pol_txn";
    create_patients(table);
    let gw = phi_gateway();
    let script = format!(
        "\\set ON_ERROR_STOP 0\n\
         BEGIN;\n\
         INSERT INTO {table} VALUES (3, 'New Patient', '345-67-8901', '1990-01-01', '', 44);\n\
         DROP TABLE {table};\n\
         SELECT 'after';\n\
         ROLLBACK;\n\
         SELECT count(*) AS n FROM {table} WHERE id = 3;\n"
    );
    let out = gw.psql_with_stdin(AGENT, AGENT_PASSWORD, &["-A", "-t", "-f", "-"], &script);
    let err = stderr(&out);
    assert!(
        err.contains("Vigil denied this statement"),
        "{}",
        show(&out)
    );
    // In this masking session the server's words are withheld; the
    // SQLSTATE's name is what the client reads (25P02).
    assert!(
        err.contains("in failed sql transaction"),
        "the statement after the refusal meets an aborted transaction: {}",
        show(&out)
    );
    assert!(!stdout(&out).contains("after"), "{}", show(&out));
    // The rollback undid the insert: the database saw a real error.
    assert_eq!(
        stdout(&out).trim().lines().last(),
        Some("0"),
        "{}",
        show(&out)
    );
}

#[test]
fn opaque_code_bulk_exports_and_unbounded_phi_reads_are_held_for_review() {
    let table = "vigil_pol_review";
    create_patients(table);
    let gw = phi_gateway();
    for (sql, rule) in [
        (
            format!("SELECT * FROM {table}"),
            "review-unbounded-phi-read",
        ),
        (
            format!("select name from {table} order by 1"),
            "review-unbounded-phi-read",
        ),
        (format!("COPY {table} TO STDOUT"), "review-bulk-export"),
        (
            format!("COPY (SELECT ssn FROM {table}) TO STDOUT WITH CSV"),
            "review-bulk-export",
        ),
    ] {
        let out = psql(&gw, &sql);
        let err = stderr(&out);
        assert!(!out.status.success(), "{sql}: {}", show(&out));
        assert!(
            err.contains("42501")
                && err.contains(&format!(
                    "Vigil holds this statement for review (rule \"{rule}\")"
                )),
            "{sql}: {err}"
        );
        assert!(!stdout(&out).contains(SSN_1), "{sql}: {}", show(&out));
    }
    assert!(table_exists(table));
    let events = gw.wait_for_events(|ev| {
        decisions(ev)
            .iter()
            .filter(|(o, _, _)| o == "review")
            .count()
            >= 4
    });
    assert!(decisions(&events)
        .iter()
        .any(|(o, r, s)| o == "review" && r == "review-bulk-export" && s == "request"));
}

#[test]
fn results_are_masked_by_column_origin_and_by_content() {
    let table = "vigil_pol_mask";
    create_patients(table);
    let gw = phi_gateway();
    let out = psql(
        &gw,
        &format!(
            "SELECT id, ssn, ssn AS innocent_alias, dob, notes, name \
             FROM {table} WHERE id > 0 ORDER BY id"
        ),
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    // Column rule `partial` on ssn, followed through the alias.
    assert!(text.contains("***-**-6789|***-**-6789"), "{text}");
    assert!(!text.contains(SSN_1) && !text.contains(SSN_2), "{text}");
    // dob is a date under `redact`: NULL, so drivers still decode the row.
    assert!(text.contains("|***-**-6789||"), "{text}");
    // Content detectors on free text: the phone and the email are gone.
    assert!(!text.contains("555-123-4567"), "{text}");
    assert!(!text.contains("jane.roe@example.org"), "{text}");
    assert!(
        text.contains("no contact details"),
        "clean text untouched: {text}"
    );
    assert!(text.contains("Jane Roe"), "{text}");

    // Computed from a PHI column: no table behind it, the detectors catch it.
    let out = psql(
        &gw,
        &format!("SELECT 'SSN: ' || ssn AS x, upper(ssn) FROM {table} WHERE id = 1"),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stdout(&out).contains(SSN_1), "{}", show(&out));

    // A subquery does not hide where a column comes from.
    let out = psql(
        &gw,
        &format!("SELECT s FROM (SELECT id, ssn AS s FROM {table} WHERE id = 2) sub"),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "***-**-7890", "{}", show(&out));
    // A view reports itself as the column's origin (PostgreSQL resolves the
    // origin before expanding views); lineage follows the view's definition
    // to the base column, whose rule applies whole to a renamed copy.
    direct_psql(&format!(
        "CREATE OR REPLACE VIEW {table}_v AS SELECT id, ssn AS s FROM {table}"
    ));
    let out = psql(&gw, &format!("SELECT s FROM {table}_v WHERE id = 2"));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "***-**-7890", "{}", show(&out));

    // The Response events say what was masked, and never hold a raw value.
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .any(|e| matches!(&e.kind, Some(Kind::Response(r)) if !r.masked.is_empty()))
    });
    let masked: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Response(r)) => Some(r.masked.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        masked.iter().any(|m| m.field == "innocent_alias"
            && m.source.ends_with(&format!("{table}.ssn"))
            && m.method == "partial"),
        "{masked:?}"
    );
    assert!(
        masked
            .iter()
            .any(|m| m.method == "detectors" && !m.detector_hits.is_empty()),
        "{masked:?}"
    );
    let mask_decisions = decisions(&events)
        .into_iter()
        .filter(|(o, _, _)| o == "mask")
        .count();
    assert!(mask_decisions >= 3);
}

#[test]
fn a_result_past_the_row_limit_is_stopped_and_refused() {
    let gw = phi_gateway();
    let out = psql(&gw, "SELECT g FROM generate_series(1, 200000) g");
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("42501") && err.contains("stopped this result after 1000 rows"),
        "{err}"
    );
    // Under the limit, all is well.
    let out = psql(&gw, "SELECT count(*) FROM generate_series(1, 200000) g");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "200000");

    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .any(|e| matches!(&e.kind, Some(Kind::Response(r)) if r.stopped_after_rows() > 0))
    });
    let stopped = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(Kind::Response(r)) if r.stopped_after_rows() > 0 => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((stopped.stopped_after_rows(), stopped.rows()), (1000, 1000));
    assert_eq!(stopped.error_code, "42501");
    assert!(decisions(&events)
        .iter()
        .any(|(o, _, s)| o == "review" && s == "row_limit"));
}

#[test]
fn drivers_see_refusals_and_masked_values_in_text_and_binary() {
    let table = "vigil_pol_drivers";
    create_patients(table);
    let gw = phi_gateway();
    let out = python_client("policy_clients.py", &gw, &[("VIGIL_TABLE", table)]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for line in ["OK psycopg policy", "OK asyncpg policy"] {
        assert!(text.contains(line), "{}", show(&out));
    }
    assert!(table_exists(table));
}

#[test]
fn allow_all_policy_masks_nothing_and_records_allow() {
    let table = "vigil_pol_allow";
    create_patients(table);
    let gw = Gateway::start(GatewaySpec::new());
    let out = psql(&gw, &format!("SELECT ssn FROM {table} ORDER BY id"));
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains(SSN_1));
    let events = gw.wait_for_events(|ev| !decisions(ev).is_empty());
    assert!(decisions(&events)
        .iter()
        .all(|(o, r, _)| o == "allow" && r == "default"));
}

#[test]
fn a_client_encoding_other_than_utf8_is_refused() {
    // Under SJIS, bytes the classifier reads as one UTF-8 character can hold
    // a quote for PostgreSQL and hide a second statement: only UTF-8 passes.
    let gw = phi_gateway();
    let out = gw.psql_command_env(
        AGENT,
        AGENT_PASSWORD,
        &[("PGCLIENTENCODING", "SJIS")],
        &["-c", "SELECT 1"],
    );
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("requires client_encoding UTF8"),
        "{}",
        show(&out)
    );
    let out = gw.psql_command_env(
        AGENT,
        AGENT_PASSWORD,
        &[("PGOPTIONS", "-c client_encoding=BIG5")],
        &["-c", "SELECT 1"],
    );
    assert!(
        stderr(&out).contains("requires client_encoding UTF8"),
        "{}",
        show(&out)
    );
    // Switching later is refused by policy (SET client_encoding is not
    // classified as harmless), and the session stays UTF-8.
    let out = psql(&gw, "SET client_encoding = 'SJIS'");
    assert!(stderr(&out).contains("42501"), "{}", show(&out));
}

#[test]
fn startup_settings_cannot_change_who_the_session_runs_as() {
    // Under allow-all: nothing but the startup check stands in the way.
    let gw = Gateway::start(GatewaySpec::new());
    // `-c role=...` in the startup options would become SET ROLE before any
    // statement reaches the policy.
    for options in [
        "-c role=pg_read_server_files",
        "--session_authorization=postgres",
    ] {
        let out = gw.psql_command_env(
            AGENT,
            AGENT_PASSWORD,
            &[("PGOPTIONS", options)],
            &["-tAc", "SELECT current_user"],
        );
        assert!(!out.status.success(), "{options}: {}", show(&out));
        assert!(
            stderr(&out).contains("Vigil does not pass the startup setting"),
            "{options}: {}",
            show(&out)
        );
    }
    // Settings that only shape results still pass.
    let out = gw.psql_command_env(
        AGENT,
        AGENT_PASSWORD,
        &[("PGOPTIONS", "-c statement_timeout=5s -c TimeZone=UTC")],
        &["-tAc", "SHOW statement_timeout"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5s");
}

#[test]
fn a_policy_file_of_our_own_decides_by_identity_and_hashes_deterministically() {
    let table = "vigil_pol_custom";
    create_patients(table);
    let out = direct_psql(&format!(
        "UPDATE {table} SET ssn = '{SSN_1}' WHERE id = 2" // two patients, one SSN
    ));
    assert!(out.status.success(), "{}", show(&out));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
name = "custom"
default = "mask"
[[masking.columns]]
table = "{table}"
columns = ["ssn"]
format = "hash"
[[masking.columns]]
table = "{table}"
columns = ["member_id"]
format = "hash"
[[rules]]
name = "research-reads-names-unmasked"
action = "allow"
groups = ["research"]
reads = ["public.{table}"]
[[rules]]
name = "nobody-else-truncates"
action = "deny"
subjects = ["someone-else"]
kinds = ["truncate"]
"#
        ),
    )
    .unwrap();
    let mut spec = GatewaySpec::new();
    spec.policy = policy.display().to_string();
    let gw = Gateway::start(spec);

    // The agent is in group "research": the allow rule names the table
    // exactly (schema-qualified), so its results are not masked...
    let out = psql(&gw, &format!("SELECT ssn FROM public.{table} WHERE id = 1"));
    assert_eq!(stdout(&out).trim(), SSN_1, "{}", show(&out));
    // ... while an unqualified name is not covered by an allow rule: masked,
    // with a keyed hash that is the same for the same SSN (joins work) and
    // a keyed integer for an int column.
    let out = psql(
        &gw,
        &format!("SELECT ssn, member_id FROM {table} WHERE id IN (1, 2) ORDER BY id"),
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let rows: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    let (a, b) = (
        rows[0].split('|').collect::<Vec<_>>(),
        rows[1].split('|').collect::<Vec<_>>(),
    );
    assert!(
        a[0].starts_with("h:") && a[0] == b[0],
        "same SSN, same token: {text}"
    );
    assert!(!text.contains(SSN_1), "{text}");
    assert!(
        a[1].parse::<i64>().is_ok() && a[1] != "42" && a[1] != b[1],
        "{text}"
    );
    // A rule for another subject does not touch this one.
    let out = psql(&gw, &format!("TRUNCATE {table}_nonexistent"));
    assert!(
        stderr(&out).contains("undefined table"),
        "reached the database: {}",
        show(&out)
    );
}

/// A minimal raw protocol client, for message sequences no driver sends.
mod raw {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn cstr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    pub fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = cstr(name);
        b.extend(cstr(sql));
        b.extend_from_slice(&0i16.to_be_bytes());
        msg(b'P', &b)
    }

    pub fn bind(portal: &str, stmt: &str) -> Vec<u8> {
        let mut b = cstr(portal);
        b.extend(cstr(stmt));
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        msg(b'B', &b)
    }

    pub fn execute(portal: &str) -> Vec<u8> {
        let mut b = cstr(portal);
        b.extend_from_slice(&0i32.to_be_bytes());
        msg(b'E', &b)
    }

    pub fn sync() -> Vec<u8> {
        msg(b'S', &[])
    }

    pub fn copy_data(data: &[u8]) -> Vec<u8> {
        msg(b'd', data)
    }

    pub fn copy_done() -> Vec<u8> {
        msg(b'c', &[])
    }

    /// Every message until the server or the proxy closes the connection
    /// (or 5 s pass without one).
    pub fn read_until_closed(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut out = Vec::new();
        loop {
            let mut head = [0u8; 5];
            if s.read_exact(&mut head).is_err() {
                return out;
            }
            let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
            let mut body = vec![0u8; len];
            if s.read_exact(&mut body).is_err() {
                return out;
            }
            out.push((head[0], body));
        }
    }

    pub fn close_statement(name: &str) -> Vec<u8> {
        let mut b = vec![b'S'];
        b.extend(cstr(name));
        msg(b'C', &b)
    }

    pub fn query(sql: &str) -> Vec<u8> {
        msg(b'Q', &cstr(sql))
    }

    /// Logs in with a cleartext password; returns the connection.
    pub fn connect(port: u16, user: &str, password: &str) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut body = 196_608i32.to_be_bytes().to_vec();
        for p in ["user", user, "database", "test"] {
            body.extend(cstr(p));
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        s.write_all(&startup).unwrap();
        read_until_ready(&mut s, Some(password));
        s
    }

    /// Reads messages up to ReadyForQuery; answers a password request.
    /// Returns (tag, body) of every message.
    pub fn read_until_ready(s: &mut TcpStream, password: Option<&str>) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut head = [0u8; 5];
            s.read_exact(&mut head).unwrap();
            let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).unwrap();
            if head[0] == b'R' && body[..4] == 3i32.to_be_bytes() {
                s.write_all(&msg(b'p', &cstr(password.unwrap()))).unwrap();
                continue;
            }
            let done = head[0] == b'Z';
            out.push((head[0], body));
            if done {
                return out;
            }
        }
    }
}

#[test]
fn a_portal_keeps_the_verdict_of_what_it_runs_and_computed_values_are_scanned() {
    use std::io::Write as _;
    let table = "vigil_pol_portal";
    create_patients(table);
    let gw = phi_gateway();
    let mut conn = raw::connect(gw.spec.pg_port, AGENT, AGENT_PASSWORD);
    // Bind a portal to a masked query, then replace the unnamed statement
    // with an empty one (which alone would be allowed): the portal still
    // runs the masked query, and its rows must still be masked.
    let mut batch = Vec::new();
    batch.extend(raw::parse(
        "",
        &format!("SELECT ssn FROM {table} WHERE id > 0 ORDER BY id"),
    ));
    batch.extend(raw::bind("p", ""));
    batch.extend(raw::parse("", ""));
    batch.extend(raw::execute("p"));
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    let msgs = raw::read_until_ready(&mut conn, None);
    let rows: Vec<String> = msgs
        .iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, b)| String::from_utf8_lossy(&b[6..]).into_owned())
        .collect();
    assert_eq!(rows, vec!["***-**-6789", "***-**-7890"], "{msgs:?}");

    // Computed values of non-text types carry PHI too: arrays, records and
    // dates computed from PHI columns are scanned and become NULL on a hit.
    let out = psql(
        &gw,
        &format!("SELECT ARRAY[ssn], ROW(ssn, dob), dob + 0, 41 + 1 FROM {table} WHERE id = 1"),
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        !text.contains(SSN_1) && !text.contains("1980-03-04"),
        "{text}"
    );
    assert_eq!(text.trim(), "|||42", "{text}");
}

#[test]
fn a_query_skipped_after_an_extended_error_is_recorded_as_skipped_and_pairing_holds() {
    use std::io::Write as _;
    let table = "vigil_pol_skip";
    create_patients(table);
    let gw = phi_gateway();
    let mut conn = raw::connect(gw.spec.pg_port, AGENT, AGENT_PASSWORD);
    // A refused Parse fails the cycle; the server then ignores everything up
    // to Sync, including a simple Query sent in between.
    let mut batch = Vec::new();
    batch.extend(raw::parse("", &format!("TRUNCATE {table}")));
    batch.extend(raw::query("SELECT 'skipped'"));
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    let msgs = raw::read_until_ready(&mut conn, None);
    assert_eq!(
        msgs.iter().filter(|(t, _)| *t == b'E').count(),
        1,
        "{msgs:?}"
    );
    // The next statement is paired with its own result, and masked.
    conn.write_all(&raw::query(&format!(
        "SELECT ssn FROM {table} WHERE id = 1"
    )))
    .unwrap();
    let msgs = raw::read_until_ready(&mut conn, None);
    let row = msgs.iter().find(|(t, _)| *t == b'D').expect("a row");
    assert_eq!(String::from_utf8_lossy(&row.1[6..]), "***-**-6789");
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .filter(|e| matches!(&e.kind, Some(Kind::Response(_))))
            .count()
            >= 3
    });
    let statements = vigil_tests::statements_by_seq(&events);
    for e in &events {
        if let Some(Kind::Response(r)) = &e.kind {
            match statements[&r.request_seq].as_str() {
                "SELECT 'skipped'" => assert!(r.not_executed, "{r:?}"),
                s if s.starts_with("SELECT ssn") => {
                    assert_eq!(r.command_tags(), ["SELECT 1"], "{r:?}");
                    assert!(!r.masked.is_empty(), "{r:?}");
                }
                _ => {}
            }
        }
    }
}

/// The rows (first column, text) of every DataRow in `msgs`.
fn first_columns(msgs: &[(u8, Vec<u8>)]) -> Vec<Option<String>> {
    msgs.iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, b)| {
            let len = i32::from_be_bytes([b[2], b[3], b[4], b[5]]);
            (len >= 0).then(|| String::from_utf8_lossy(&b[6..6 + len as usize]).into_owned())
        })
        .collect()
}

#[test]
fn a_statement_the_server_skipped_never_lends_its_verdict_to_the_one_it_kept() {
    use std::io::Write as _;
    let table = "vigil_pol_skipped_parse";
    create_patients(table);
    let gw = phi_gateway();
    let mut conn = raw::connect(gw.spec.pg_port, AGENT, AGENT_PASSWORD);
    // "s" computes an SSN in base64: no detector recognises it, only its
    // lineage (from ssn) masks it.
    let encoded =
        format!("SELECT encode(convert_to(ssn, 'UTF8'), 'base64') AS v FROM {table} WHERE id = 1");
    let mut batch = raw::parse("s", &encoded);
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    let msgs = raw::read_until_ready(&mut conn, None);
    assert!(msgs.iter().all(|(t, _)| *t != b'E'), "{msgs:?}");

    // One pipeline, sent before any answer: an error makes the server skip
    // the Close and the new Parse of "s" (it keeps the encoded SSN query),
    // and after the Sync it runs a portal of "s". A proxy that takes the
    // harmless Parse for done would pass the base64 SSN through.
    let mut batch = Vec::new();
    batch.extend(raw::parse("", "SELECT 1/0"));
    batch.extend(raw::bind("", ""));
    batch.extend(raw::execute(""));
    batch.extend(raw::close_statement("s"));
    batch.extend(raw::parse("s", "SELECT 'harmless'::text AS v"));
    batch.extend(raw::sync());
    batch.extend(raw::bind("p", "s"));
    batch.extend(raw::execute("p"));
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    let first = raw::read_until_ready(&mut conn, None);
    assert_eq!(
        first.iter().filter(|(t, _)| *t == b'E').count(),
        1,
        "division by zero: {first:?}"
    );
    let second = raw::read_until_ready(&mut conn, None);
    let encoded_ssn = "MTIzLTQ1LTY3ODk=";
    let rows = first_columns(&second);
    assert_eq!(
        rows.len(),
        1,
        "the server ran the kept statement: {second:?}"
    );
    let shown = format!("{second:?}");
    for leaked in [encoded_ssn, SSN_1] {
        assert!(
            !rows.iter().flatten().any(|r| r.contains(leaked)),
            "{leaked} reached the client: {shown}"
        );
    }
    assert_ne!(rows[0].as_deref(), Some("harmless"), "{shown}");

    // The proxy's view is the server's again: a new portal of "s" is
    // masked by the kept statement's lineage, and a real replacement of
    // "s" (Close and Parse confirmed) runs unmasked.
    let mut batch = raw::bind("q", "s");
    batch.extend(raw::execute("q"));
    batch.extend(raw::close_statement("s"));
    batch.extend(raw::parse("s", "SELECT 'harmless'::text AS v"));
    batch.extend(raw::bind("r", "s"));
    batch.extend(raw::execute("r"));
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    let third = raw::read_until_ready(&mut conn, None);
    let rows = first_columns(&third);
    assert_eq!(rows.len(), 2, "{third:?}");
    assert!(
        rows[0].as_deref().is_none_or(|r| !r.contains(encoded_ssn)),
        "{third:?}"
    );
    assert_eq!(rows[1].as_deref(), Some("harmless"), "{third:?}");
}

#[test]
fn an_execute_sent_under_an_allowed_statement_gets_no_rows_of_a_kept_masked_one() {
    use std::io::Write as _;
    let table = "vigil_pol_kept_unnamed";
    create_patients(table);
    let gw = phi_gateway();
    let mut conn = raw::connect(gw.spec.pg_port, AGENT, AGENT_PASSWORD);
    let mut batch = raw::parse("", &format!("SELECT ssn FROM {table} WHERE id = 1"));
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    raw::read_until_ready(&mut conn, None);
    // The empty statement is allowed (nothing to mask, no Describe of the
    // proxy's own); the server skips it and binds "p" to the SSN query.
    let mut batch = Vec::new();
    batch.extend(raw::parse("e", "SELECT 1/0"));
    batch.extend(raw::bind("", "e"));
    batch.extend(raw::execute(""));
    batch.extend(raw::parse("", ""));
    batch.extend(raw::sync());
    batch.extend(raw::bind("p", ""));
    batch.extend(raw::execute("p"));
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    raw::read_until_ready(&mut conn, None);
    let second = raw::read_until_ready(&mut conn, None);
    let shown = format!("{second:?}");
    assert!(
        !first_columns(&second)
            .iter()
            .flatten()
            .any(|r| r.contains(SSN_1)),
        "{shown}"
    );
    assert!(second.iter().any(|(t, _)| *t == b'E'), "stopped: {shown}");
}

#[test]
fn sql_that_prepares_a_name_in_a_pipeline_tightens_it_at_once() {
    use std::io::Write as _;
    let table = "vigil_pol_sql_prepare";
    create_patients(table);
    let gw = phi_gateway();
    let mut conn = raw::connect(gw.spec.pg_port, AGENT, AGENT_PASSWORD);
    let mut batch = raw::parse("s", "");
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    raw::read_until_ready(&mut conn, None);
    // DEALLOCATE and PREPARE through the extended protocol, then a portal
    // of the name they replaced, all before any answer.
    let mut batch = Vec::new();
    batch.extend(raw::parse("", "DEALLOCATE s"));
    batch.extend(raw::bind("", ""));
    batch.extend(raw::execute(""));
    batch.extend(raw::parse(
        "",
        &format!("PREPARE s AS SELECT ssn FROM {table} WHERE id = 1"),
    ));
    batch.extend(raw::bind("", ""));
    batch.extend(raw::execute(""));
    batch.extend(raw::bind("p", "s"));
    batch.extend(raw::execute("p"));
    batch.extend(raw::sync());
    conn.write_all(&batch).unwrap();
    let msgs = raw::read_until_ready(&mut conn, None);
    let shown = format!("{msgs:?}");
    let rows = first_columns(&msgs);
    assert!(!rows.iter().flatten().any(|r| r.contains(SSN_1)), "{shown}");
}

#[test]
fn a_sync_the_server_answers_after_a_failed_copy_ends_the_session_not_the_masking() {
    use std::io::Write as _;
    let table = "vigil_pol_copy_sync";
    create_patients(table);
    let out = direct_psql(
        "DROP TABLE IF EXISTS vigil_copy_scratch; CREATE TABLE vigil_copy_scratch (n int);",
    );
    assert!(out.status.success(), "{}", show(&out));
    let gw = phi_gateway();
    let mut conn = raw::connect(gw.spec.pg_port, AGENT, AGENT_PASSWORD);
    // A bad row fails the COPY at once; the Sync sent during it is then
    // answered (the COPY is over), one ReadyForQuery more than a proxy
    // that assumes Syncs during a COPY are ignored expects.
    let mut batch = raw::query("COPY vigil_copy_scratch FROM STDIN");
    batch.extend(raw::copy_data(b"not a number\n"));
    batch.extend(raw::sync());
    batch.extend(raw::copy_done());
    batch.extend(raw::query(&format!("SELECT ssn FROM {table} WHERE id = 1")));
    batch.extend(raw::query(""));
    conn.write_all(&batch).unwrap();
    let msgs = raw::read_until_closed(&mut conn);
    let shown = format!("{msgs:?}");
    assert!(
        !first_columns(&msgs)
            .iter()
            .flatten()
            .any(|r| r.contains(SSN_1)),
        "{shown}"
    );
}
