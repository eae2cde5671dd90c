//! The attack corpus: what a hostile (for instance prompt-injected) agent
//! tries against `vigil up` with the shipped PHI policy, with real psql and
//! the real PostgreSQL. Each case names what the gateway must answer and,
//! where the attack would leave a trace in the database, a check made
//! directly on the server afterwards that it left none. Add every new
//! variant found to these tables.

use std::process::{Command, Output};

use vigil_proxy_postgres::startup_params::split_options;
use vigil_tests::{direct_psql, show, vigil_bin, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

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

/// A statement as the server sees it, run directly as the DBA.
fn direct(sql: &str) -> String {
    let out = direct_psql(sql);
    assert!(out.status.success(), "{sql}: {}", show(&out));
    stdout(&out).trim().to_string()
}

/// One attack: the statement, the rules any of which may refuse it (some
/// forms are refused by the rule for their kind, others because they do not
/// parse: either way they never reach the server).
struct Attack {
    sql: String,
    rules: &'static [&'static str],
}

fn attack(sql: impl Into<String>, rules: &'static [&'static str]) -> Attack {
    Attack {
        sql: sql.into(),
        rules,
    }
}

const CODE: &[&str] = &["deny-code-definition"];
const CODE_OR_UNPARSED: &[&str] = &["deny-code-definition", "fail-closed"];
const UNPARSED: &[&str] = &["fail-closed"];
const OPAQUE: &[&str] = &["review-opaque-code"];
const STORED: &[&str] = &["review-stored-code"];
const STORED_OR_OPAQUE: &[&str] = &["review-stored-code", "review-opaque-code"];
const STORED_OR_CHANNEL: &[&str] = &[
    "review-stored-code",
    "deny-unmasked-channels",
    "deny-masked-copy",
];
const DESTRUCTIVE: &[&str] = &["deny-destructive"];

fn assert_refused(gw: &Gateway, a: &Attack) {
    let out = psql(gw, &a.sql);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{} should be refused: {}",
        a.sql,
        show(&out)
    );
    assert!(
        err.contains("42501")
            && a.rules
                .iter()
                .any(|rule| { err.contains(&format!("(rule \"{rule}\")")) }),
        "{} should be refused by one of {:?}: {err}",
        a.sql,
        a.rules
    );
    assert_eq!(stdout(&out).trim(), "", "{}: {}", a.sql, show(&out));
}

/// Finding 1: code defined through the gateway would run later, out of
/// the policy's sight (a function reading files, running programs through
/// COPY TO PROGRAM, creating a superuser, deleting rows from a trigger; an
/// operator naming pg_read_file; a rename laundering a denied function).
/// Every way of defining or changing such code is refused, and calling a
/// function that is not PostgreSQL's own is held for review (refused here:
/// no approval service runs).
#[test]
fn code_the_policy_cannot_see_is_never_defined_or_run_unreviewed() {
    let t = "vigil_atk_code";
    direct(&format!(
        "DROP TABLE IF EXISTS {t} CASCADE;
         CREATE TABLE {t} (id int PRIMARY KEY, ssn text);
         INSERT INTO {t} VALUES (1, '123-45-6789'), (2, '234-56-7890');
         CREATE OR REPLACE FUNCTION vigil_atk_dba_reader() RETURNS text
           LANGUAGE sql AS $$ SELECT pg_read_file('/etc/hostname') $$;"
    ));
    let gw = phi_gateway();
    let attacks = [
        attack(
            "CREATE FUNCTION vigil_atk_rd(f text) RETURNS text LANGUAGE plpgsql AS 'BEGIN RETURN pg_read_file(f); END'",
            CODE,
        ),
        attack(
            "CREATE FUNCTION vigil_atk_sh() RETURNS void LANGUAGE plpgsql AS $$BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id > /tmp/vigil_atk_pwned'''; END$$",
            CODE,
        ),
        attack(
            "CREATE FUNCTION vigil_atk_su() RETURNS void LANGUAGE plpgsql AS $$BEGIN EXECUTE 'CREATE ROLE vigil_atk_root SUPERUSER LOGIN'; END$$",
            CODE,
        ),
        attack(
            format!("CREATE FUNCTION vigil_atk_wipe() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM {t}; RETURN NEW; END$$"),
            CODE,
        ),
        attack(
            "create or replace function VIGIL_ATK_RD(text) returns text language sql as 'select pg_read_file($1)'",
            CODE,
        ),
        attack(
            "CREATE FUNCTION vigil_atk_sqlbody(f text) RETURNS text LANGUAGE sql RETURN pg_read_file(f)",
            &["deny-code-definition", "deny-server-files-and-programs"],
        ),
        attack(
            format!("CREATE PROCEDURE vigil_atk_proc() LANGUAGE sql AS $$ DELETE FROM {t} $$"),
            CODE_OR_UNPARSED,
        ),
        attack(
            "CREATE OPERATOR |/ (RIGHTARG = text, FUNCTION = pg_read_file)",
            CODE,
        ),
        attack(
            "CREATE OPERATOR public.### (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_read_file)",
            CODE_OR_UNPARSED,
        ),
        attack(
            "ALTER FUNCTION pg_catalog.pg_read_file(text) RENAME TO harmless",
            CODE,
        ),
        attack(
            "ALTER FUNCTION vigil_atk_dba_reader() RENAME TO harmless",
            CODE,
        ),
        attack("ALTER FUNCTION vigil_atk_dba_reader() SECURITY DEFINER", CODE),
        attack(
            "ALTER FUNCTION vigil_atk_dba_reader() SET search_path = public",
            CODE,
        ),
        attack(
            format!("CREATE TRIGGER vigil_atk_tr AFTER INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION vigil_atk_dba_reader()"),
            CODE,
        ),
        attack(format!("ALTER TABLE {t} ENABLE TRIGGER ALL"), CODE),
        attack(
            "CREATE CAST (text AS int) WITH FUNCTION vigil_atk_rd(text) AS IMPLICIT",
            UNPARSED,
        ),
        attack(
            "CREATE AGGREGATE vigil_atk_agg(text) (SFUNC = textcat, STYPE = text)",
            UNPARSED,
        ),
        attack(
            format!("CREATE RULE vigil_atk_rule AS ON INSERT TO {t} DO ALSO DELETE FROM {t}"),
            UNPARSED,
        ),
        attack(
            "CREATE EVENT TRIGGER vigil_atk_evt ON ddl_command_start EXECUTE FUNCTION vigil_atk_dba_reader()",
            UNPARSED,
        ),
        attack("CREATE LANGUAGE plperlu", UNPARSED),
        attack("ALTER PROCEDURE vigil_atk_proc() RENAME TO x", UNPARSED),
        attack("ALTER ROUTINE vigil_atk_dba_reader() RENAME TO x", UNPARSED),
        attack("ALTER AGGREGATE max(int) RENAME TO vigil_atk_max", CODE_OR_UNPARSED),
        attack(
            "CREATE TYPE vigil_atk_range AS RANGE (SUBTYPE = float8, SUBTYPE_DIFF = vigil_atk_rd)",
            CODE_OR_UNPARSED,
        ),
        attack(
            "DO $$BEGIN EXECUTE 'SELECT pg_read_file(''/etc/hostname'')'; END$$",
            UNPARSED,
        ),
        // Calls of code the gateway cannot see into.
        attack("SELECT vigil_atk_dba_reader()", OPAQUE),
        attack("SELECT public.vigil_atk_dba_reader()", OPAQUE),
        attack("SELECT harmless('/etc/hostname')", OPAQUE),
        attack("SELECT * FROM vigil_atk_dba_reader()", OPAQUE),
        attack(
            format!("SELECT id FROM {t} WHERE id = 1 AND vigil_atk_dba_reader() IS NOT NULL"),
            OPAQUE,
        ),
        attack("SELECT public.lower('X')", OPAQUE),
        // Found by the independent review.
        attack("SELECT * FROM set_config('role', 'postgres', false)", UNPARSED),
        attack("SELECT ('/etc/hostname'::text).pg_read_file", UNPARSED),
        attack("SELECT ('/etc'::text).pg_ls_dir", UNPARSED),
        attack(
            "UPDATE pg_settings SET setting = 'replica' WHERE name = 'session_replication_role'",
            &["deny-administration"],
        ),
        attack(
            "UPDATE pg_settings SET setting = 'SJIS' WHERE name = 'client_encoding'",
            &["deny-administration"],
        ),
        attack(
            "SELECT ts_rewrite('a'::tsquery, 'SELECT pg_read_file(''/etc/hostname'')::int::text::tsquery, ''b''::tsquery')",
            OPAQUE,
        ),
        attack("SELECT \"coalesce\"(1)", OPAQUE),
        attack("EXPLAIN SELECT vigil_atk_dba_reader()", OPAQUE),
        attack("SELECT query FROM pg_stat_activity", &["deny-administration"]),
        attack("SELECT * FROM pg_file_settings", &["deny-administration"]),
        // Stored expressions run later, on every row: a CHECK added to a
        // table is evaluated on each existing row at once.
        attack(
            format!("ALTER TABLE {t} ADD CONSTRAINT vigil_atk_chk CHECK (lo_from_bytea(0, convert_to(ssn, 'UTF8')) > 0)"),
            &["deny-large-objects"],
        ),
        attack(
            format!("ALTER TABLE {t} ADD CONSTRAINT vigil_atk_chk CHECK (length(pg_notify('vigil_atk', ssn)::text) >= 0)"),
            STORED_OR_CHANNEL,
        ),
        attack(
            format!("ALTER TABLE {t} ALTER COLUMN ssn SET DEFAULT vigil_atk_dba_reader()"),
            STORED_OR_OPAQUE,
        ),
        attack(
            format!("CREATE INDEX vigil_atk_idx ON {t} ((set_config('vigil.atk', ssn, false)))"),
            STORED_OR_CHANNEL,
        ),
        attack(
            "CREATE TABLE vigil_atk_gen (a text, b text GENERATED ALWAYS AS (md5(a)) STORED)",
            STORED,
        ),
        attack(
            format!("CREATE VIEW vigil_atk_view AS SELECT pg_notify('vigil_atk', ssn) FROM {t}"),
            STORED_OR_CHANNEL,
        ),
        // Large objects: data where no column rule follows it.
        attack(
            format!("SELECT lo_from_bytea(0, convert_to(ssn, 'UTF8')) FROM {t} WHERE id = 1"),
            &["deny-large-objects"],
        ),
        attack("SELECT lo_get(1)", &["deny-large-objects"]),
        // Whole-table writes in other spellings (found by the review).
        attack(format!("DELETE FROM {t} WHERE id * 0 = 0"), DESTRUCTIVE),
        attack(format!("DELETE FROM {t} WHERE id IN (SELECT id FROM {t})"), DESTRUCTIVE),
        attack(format!("DELETE FROM {t} WHERE id = (SELECT id)"), DESTRUCTIVE),
        attack(format!("DELETE FROM {t} USING {t} p2 WHERE {t}.id = p2.id"), DESTRUCTIVE),
        attack(format!("UPDATE {t} SET ssn = NULL WHERE (ssn = ssn) IS TRUE"), DESTRUCTIVE),
        attack(format!("DELETE FROM {t} WHERE ssn LIKE '%'"), DESTRUCTIVE),
    ];
    for a in &attacks {
        assert_refused(&gw, a);
    }
    // Nothing of it reached the server.
    assert_eq!(
        direct(
            "SELECT count(*) FROM pg_proc WHERE proname IN
               ('vigil_atk_rd', 'vigil_atk_sh', 'vigil_atk_su', 'vigil_atk_wipe', 'vigil_atk_sqlbody',
                'vigil_atk_proc', 'harmless', 'vigil_atk_agg')"
        ),
        "0"
    );
    assert_eq!(
        direct("SELECT count(*) FROM pg_proc WHERE proname = 'pg_read_file'"),
        "3",
        "pg_read_file keeps its name"
    );
    assert_eq!(
        direct("SELECT count(*) FROM pg_operator WHERE oprname IN ('|/', '###') AND oprright = 'text'::regtype"),
        "0"
    );
    assert_eq!(
        direct("SELECT count(*) FROM pg_roles WHERE rolname = 'vigil_atk_root'"),
        "0"
    );
    assert_eq!(
        direct(&format!(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = '{t}'::regclass"
        )),
        "0"
    );
    assert_eq!(
        direct("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'vigil_atk_evt'"),
        "0"
    );
    assert_eq!(direct(&format!("SELECT count(*) FROM {t}")), "2");
    assert!(!std::path::Path::new("/tmp/vigil_atk_pwned").exists());
    assert_eq!(
        direct(&format!(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = '{t}'::regclass AND contype = 'c'"
        )),
        "0",
        "no CHECK was added"
    );
    assert_eq!(
        direct("SELECT count(*) FROM pg_class WHERE relname IN ('vigil_atk_idx', 'vigil_atk_gen', 'vigil_atk_view')"),
        "0"
    );
    // A table with ordinary defaults and checks is still created.
    direct("DROP TABLE IF EXISTS vigil_atk_plain");
    let out = psql(
        &gw,
        "CREATE TABLE vigil_atk_plain (id uuid DEFAULT gen_random_uuid(), at timestamptz DEFAULT now(), n text CHECK (length(n) < 10))",
    );
    assert!(out.status.success(), "{}", show(&out));
    direct("DROP TABLE vigil_atk_plain");
    // PostgreSQL's own functions still work as before (a value computed
    // from a masked column, even its length, is masked by lineage).
    let out = psql(
        &gw,
        &format!("SELECT lower('A'), coalesce(NULL, 'b'), length(ssn) FROM {t} WHERE id = 1"),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "a|b|");
}

/// Finding 3: a MERGE whose DELETE (or UPDATE) clause matches every row is
/// a destructive statement, like the DELETE it performs; a MERGE bounded by
/// a target column works.
#[test]
fn merge_is_judged_like_the_update_or_delete_it_performs() {
    let t = "vigil_atk_merge";
    direct(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id int PRIMARY KEY, name text);
         INSERT INTO {t} VALUES (1, 'a'), (2, 'b'), (3, 'c');"
    ));
    let gw = phi_gateway();
    let attacks = [
        attack(
            format!("MERGE INTO {t} p USING (SELECT 1 AS one) s ON true WHEN MATCHED THEN DELETE"),
            DESTRUCTIVE,
        ),
        attack(
            format!("MERGE INTO {t} p USING (SELECT 1 AS one) s ON s.one = 1 WHEN MATCHED THEN DELETE"),
            DESTRUCTIVE,
        ),
        attack(
            format!("MERGE INTO {t} p USING (SELECT 1 AS one) s ON one = 1 WHEN MATCHED THEN UPDATE SET name = 'x'"),
            DESTRUCTIVE,
        ),
        attack(
            format!("WITH s AS (SELECT 1 AS one) MERGE INTO {t} p USING s ON true WHEN MATCHED THEN DELETE"),
            DESTRUCTIVE,
        ),
        attack(
            format!("MERGE INTO {t} USING (VALUES (1)) s(v) ON 1 = 1 WHEN MATCHED THEN DELETE"),
            DESTRUCTIVE,
        ),
    ];
    for a in &attacks {
        assert_refused(&gw, a);
    }
    assert_eq!(direct(&format!("SELECT count(*) FROM {t}")), "3");
    let out = psql(
        &gw,
        &format!(
            "MERGE INTO {t} p USING (SELECT 2 AS id) s ON p.id = s.id WHEN MATCHED THEN DELETE"
        ),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        direct(&format!(
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM {t}"
        )),
        "1,3"
    );
}

/// Finding 2: PostgreSQL splits `options` at C's isspace(), vertical tab
/// and form feed included. For every ASCII byte, the server's own split
/// (a direct connection whose second setting takes effect, or not) must be
/// the gateway's; and an options string that the server would read as a
/// role switch is refused at login.
#[test]
fn startup_options_are_split_exactly_where_postgresql_splits_them() {
    let mut server_separators = Vec::new();
    for byte in 1u8..=0x7f {
        if byte == b'\\' {
            continue;
        }
        let sep = (byte as char).to_string();
        let options =
            format!("-c application_name=vigil_split{sep}-c{sep}search_path=vigil_split_{byte}");
        let out = Command::new("psql")
            .env("PGOPTIONS", &options)
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-X",
                "-A",
                "-t",
                "-c",
                "SHOW search_path",
            ])
            .output()
            .expect("run psql");
        let split_by_server =
            out.status.success() && stdout(&out).trim() == format!("vigil_split_{byte}");
        let split_by_gateway = split_options(&options).count() == 4;
        assert_eq!(
            split_by_server,
            split_by_gateway,
            "byte {byte:#04x}: the server {} there, the gateway {}",
            if split_by_server {
                "splits"
            } else {
                "does not split"
            },
            if split_by_gateway { "does" } else { "does not" }
        );
        if split_by_server {
            server_separators.push(byte);
        }
    }
    assert_eq!(server_separators, b"\t\n\x0b\x0c\r ".to_vec());

    let gw = phi_gateway();
    for sep in ["\x0b", "\x0c", "\t", "\r", "\n"] {
        for setting in [
            "role=postgres",
            "session_replication_role=replica",
            "log_statement=none",
        ] {
            let options = format!("-c application_name=x{sep}-c{sep}{setting}");
            let out = gw.psql_command_env(
                AGENT,
                AGENT_PASSWORD,
                &[("PGOPTIONS", options.as_str())],
                &["-A", "-t", "-c", "SELECT current_user"],
            );
            let name = setting.split('=').next().unwrap();
            assert!(
                !out.status.success() && stderr(&out).contains(&format!("{name:?}")),
                "{options:?} should be refused naming {name}: {}",
                show(&out)
            );
        }
    }
    // Locale-dependent bytes are refused outright.
    let out = gw.psql_command_env(
        AGENT,
        AGENT_PASSWORD,
        &[("PGOPTIONS", "-c application_name=x\u{a0}-crole=postgres")],
        &["-c", "SELECT 1"],
    );
    assert!(!out.status.success(), "{}", show(&out));
    // Ordinary options still pass.
    let out = gw.psql_command_env(
        AGENT,
        AGENT_PASSWORD,
        &[("PGOPTIONS", "-c statement_timeout=5s\t--search_path=public")],
        &["-A", "-t", "-c", "SHOW statement_timeout"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "5s");
}

/// The peak resident memory of a process, in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Finding 4: one 8 MiB statement used to grow the process by about
/// 5 GiB while it was classified. Now classification has a budget (past it
/// the statement is unclassified and refused), a statement message has a
/// 16 MiB limit, and the process stays small.
#[test]
fn one_huge_statement_cannot_exhaust_the_gateway_memory() {
    let gw = phi_gateway();
    let huge = format!("SELECT {}1;\n", "1,".repeat(4 * 1024 * 1024));
    let out = gw.psql_with_stdin(
        AGENT,
        AGENT_PASSWORD,
        &["-A", "-t", "-v", "VERBOSITY=verbose", "-f", "-"],
        &huge,
    );
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("42501") && err.contains("fail-closed"),
        "an 8 MiB statement is refused as unclassified: {err}"
    );
    let too_long = format!("SELECT '{}';\n", "x".repeat(17 * 1024 * 1024));
    let out = gw.psql_with_stdin(AGENT, AGENT_PASSWORD, &["-f", "-"], &too_long);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exceeds the proxy's limit"),
        "{}",
        show(&out)
    );
    // The session limits nothing else: the gateway still answers.
    let out = psql(&gw, "SELECT 1");
    assert!(out.status.success(), "{}", show(&out));
    let peak_mib = peak_rss_kib(gw.child.id()) / 1024;
    assert!(
        peak_mib < 400,
        "peak resident memory {peak_mib} MiB after an 8 MiB and a 17 MiB statement"
    );
}

/// Least privilege upstream: a non-dev config whose upstream role is a
/// superuser (or holds server file/program roles, CREATEROLE, ...) does not
/// start without the explicit override, `vigil check-config` says why, and
/// a least-privilege role starts and is reported as such.
#[test]
fn a_privileged_upstream_role_is_refused_unless_explicitly_allowed() {
    let role = "vigil_atk_gateway";
    direct(&format!(
        "DO $$BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
             CREATE ROLE {role} LOGIN;
           END IF;
         END$$;
         GRANT CONNECT ON DATABASE test TO {role};"
    ));

    let mut spec = GatewaySpec::new();
    spec.privileged_upstream_ok = false;
    let dir = tempfile::tempdir().unwrap();
    let config = spec.write_config(dir.path());
    // The config names its keys as `data/../<file>`: the directory must exist.
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let check = Command::new(vigil_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!check.status.success(), "{}", show(&check));
    let err = stderr(&check);
    assert!(
        err.contains("SUPERUSER") && err.contains("allow_privileged_role"),
        "{err}"
    );
    let up = Command::new(vigil_bin())
        .args(["up", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!up.status.success(), "{}", show(&up));
    assert!(stderr(&up).contains("SUPERUSER"), "{}", show(&up));

    // The same config with a least-privilege role starts.
    spec.upstream_user = role.into();
    let gw = Gateway::start(spec);
    assert!(
        gw.banner.iter().any(|l| l.contains("least privilege")),
        "{:?}",
        gw.banner
    );
    // Defense in depth: what a gap in policy would let through, the
    // server itself refuses to this role.
    let out = psql(&gw, "SELECT pg_read_file('/etc/hostname')");
    assert!(!out.status.success());
    let out = psql(&gw, "SELECT current_user");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), role);
}

/// The classifier's list of PostgreSQL's own functions is the server's: a
/// name missing from it would make an ordinary call look like user code
/// (reviewed), and a name in it that the server lacks would let a user
/// function of that name pass as built in.
#[test]
fn the_builtin_function_list_matches_the_server() {
    let listed: std::collections::BTreeSet<&str> =
        include_str!("../../proxies/sql/src/classify/pg_catalog_functions.txt")
            .lines()
            .collect();
    let on_server = direct(
        "SELECT string_agg(DISTINCT proname, E'\\n') FROM pg_proc \
         WHERE pronamespace = 'pg_catalog'::regnamespace",
    );
    let on_server: std::collections::BTreeSet<&str> = on_server.lines().collect();
    let missing: Vec<_> = on_server.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&on_server).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "regenerate pg_catalog_functions.txt for this server: missing {missing:?}, not on the server {extra:?}"
    );
}

/// Finding 7: with auditor tokens configured, the indexes that say who was
/// active when (`find` by subject, session or time, `lookup` by event id)
/// are served only to an auditor token, like the bodies they point at;
/// checkpoints and proofs stay public.
#[test]
fn who_did_what_is_served_only_to_auditors() {
    use sha2::Digest;
    let token = "auditor-token-for-the-find-test";
    let digest: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut spec = GatewaySpec::new();
    spec.ledger_extra = format!("auditor_tokens_sha256 = [\"{digest}\"]\n");
    let gw = Gateway::start(spec);
    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(out.status.success(), "{}", show(&out));
    let base = gw.ledger_url();
    let get = |path: &str, bearer: Option<&str>| {
        let mut req = ureq::get(&format!("{base}/{path}"));
        if let Some(t) = bearer {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    };
    let restricted = [
        format!("vigil/v1/find?subject={AGENT}"),
        "vigil/v1/find?from=0&to=9223372036854775807".to_string(),
        "vigil/v1/lookup?event_id=0190f0f0-0000-7000-8000-000000000000".to_string(),
        "vigil/v1/bodies?start=0&count=1".to_string(),
    ];
    for path in &restricted {
        for bearer in [None, Some("not-the-token")] {
            let (status, body) = get(path, bearer);
            assert_eq!(status, 403, "{path} with {bearer:?}: {body}");
            assert!(body.contains("auditor token is required"), "{path}: {body}");
        }
    }
    let (status, body) = get(&format!("vigil/v1/find?subject={AGENT}"), Some(token));
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        !found["indexes"].as_array().unwrap().is_empty(),
        "the agent's session is found: {body}"
    );
    // Public evidence stays public.
    assert_eq!(get("checkpoint", None).0, 200);
}

/// The review's size findings: a masked result that carries a row too
/// large to mask in reasonable time is stopped (fail closed) rather than
/// holding a worker thread; a Bind over 64 MiB ends the session; a large
/// bound value is recorded as its start, its length and its SHA-256, not
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_rows_and_binds_are_bounded() {
    use sha2::Digest;
    let gw = phi_gateway();
    // 18 MiB in one row of a masked result (computed from a column, so
    // scanned: a value computed from literals alone is not masked).
    let out = psql(
        &gw,
        "SELECT repeat(c.relname::text || 'x', 2 * 1024 * 1024) AS big FROM pg_class c WHERE c.relname = 'pg_class'",
    );
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("54000")
            && stderr(&out).contains("larger than the 4 MiB it masks per row"),
        "{}",
        show(&out)
    );
    assert!(stdout(&out).trim().is_empty());
    // Many rows under the row cap, together past the result's budget.
    let out = psql(
        &gw,
        "SELECT repeat(c.relname::text, 400 * 1024) FROM pg_class c, generate_series(1, 30) g WHERE c.relname = 'pg_class' LIMIT 30",
    );
    assert!(
        stderr(&out).contains("54000")
            && stderr(&out).contains("larger than the 64 MiB it masks per result"),
        "{}",
        show(&out).chars().take(2000).collect::<String>()
    );
    // The session goes on: the next statement works.
    let out = psql(
        &gw,
        "SELECT repeat('x', 1024 * 1024) = repeat('x', 1024 * 1024)",
    );
    assert_eq!(stdout(&out).trim(), "t", "{}", show(&out));

    let conninfo = format!(
        "host=127.0.0.1 port={} user={AGENT} password='{AGENT_PASSWORD}' dbname=test",
        gw.spec.pg_port
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(connection);
    let value = "v".repeat(1024 * 1024);
    let row = client
        .query_one("SELECT length($1::text)", &[&value])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1024 * 1024);
    let huge = "h".repeat(65 * 1024 * 1024);
    let err = client
        .query_one("SELECT length($1::text)", &[&huge])
        .await
        .unwrap_err();
    // The client sees the FATAL 08P01, unless the connection's reset
    // overtakes it; either way the session ends, and its end says why.
    if let Some(db) = err.as_db_error() {
        assert_eq!(db.code().code(), "08P01", "{}", db.message());
    }
    let _ = conn.await;
    let events = gw.wait_for_events(|ev| {
        ev.iter().any(|e| {
            matches!(&e.kind, Some(vigil_proto::events::event::Kind::SessionClosed(c))
                if c.reason_text().contains("exceeds the proxy's limit"))
        })
    });
    let recorded = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(vigil_proto::events::event::Kind::Request(r)) => r
                .sql()?
                .parameters
                .iter()
                .find(|p| p.length == 1024 * 1024)
                .cloned(),
            _ => None,
        })
        .unwrap();
    assert_eq!(recorded.value.len(), 64 * 1024);
    assert_eq!(
        recorded.sha256,
        sha2::Sha256::digest(value.as_bytes()).to_vec()
    );
}

/// The review: code reachable under PostgreSQL's own names. `lower(5)`
/// runs a `lower(int)` of any schema (resolution picks the best argument
/// match across the path), and `'a' && 'b'` any `&&` on text. The proxy
/// reads from the catalog which built-in function names and operator
/// symbols code outside pg_catalog defines, and holds such calls for
/// review. (A database of its own: other tests' sessions must not see
/// these names.)
#[test]
fn builtin_names_that_other_schemas_define_are_somebodys_code() {
    let db = "vigil_atk_shadow";
    let _ = direct_psql(&format!("CREATE DATABASE {db}"));
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db])
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(
            "CREATE SCHEMA IF NOT EXISTS shadow;
             CREATE OR REPLACE FUNCTION shadow.lower(int) RETURNS text LANGUAGE sql AS $$ SELECT 'shadowed' $$;
             CREATE OR REPLACE FUNCTION shadow.txt_and(text, text) RETURNS bool LANGUAGE sql AS $$ SELECT true $$;
             DROP OPERATOR IF EXISTS shadow.&& (text, text);
             CREATE OPERATOR shadow.&& (LEFTARG = text, RIGHTARG = text, FUNCTION = shadow.txt_and);
             CREATE TABLE IF NOT EXISTS shadow.pt (id int);
             CREATE OR REPLACE FUNCTION shadow.reader(shadow.pt) RETURNS text LANGUAGE sql AS $$ SELECT 'shadowed' $$;
             CREATE OR REPLACE FUNCTION shadow.any_reader(record) RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'shadowed'; END $$;
             CREATE OR REPLACE FUNCTION shadow.txt_int_eq(text, int) RETURNS bool LANGUAGE sql AS $$ SELECT true $$;
             DROP OPERATOR IF EXISTS shadow.= (text, int);
             CREATE OPERATOR shadow.= (LEFTARG = text, RIGHTARG = int, FUNCTION = shadow.txt_int_eq);",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let gw = phi_gateway();
    let run = |sql: &str| gw.psql(AGENT, AGENT_PASSWORD, &["-A", "-t", "-d", db, "-c", sql]);
    for sql in [
        "SET search_path = shadow, public; SELECT lower(5)",
        "SELECT lower(5)",
        "SET search_path = shadow; SELECT 'a' && 'b'",
        "SELECT 'a' OPERATOR(shadow.&&) 'b'",
        // Attribute notation: `p.reader` is `reader(p)`, of a row type or
        // of any record.
        "SELECT p.reader FROM shadow.pt p WHERE p.id IS NULL",
        "SELECT p.any_reader FROM shadow.pt p WHERE p.id IS NULL",
        // Syntax that runs `=` with no `=` in the text (the review).
        "SET search_path = shadow; SELECT CASE 'a'::text WHEN 1 THEN 'x' END",
        "SET search_path = shadow; SELECT 'a'::text IS DISTINCT FROM 1",
        "SET search_path = shadow; SELECT NULLIF('a'::text, 1)",
        "SET search_path = shadow; SELECT 'a'::text = ANY(ARRAY[1])",
        "SET search_path = shadow; SELECT 'a'::text IN (1)",
    ] {
        let out = run(sql);
        assert!(!out.status.success(), "{sql}: {}", show(&out));
        assert!(
            stderr(&out).contains("review-opaque-code"),
            "{sql}: {}",
            show(&out)
        );
        assert!(!stdout(&out).contains("shadowed"), "{sql}: {}", show(&out));
    }
    // PostgreSQL's own, named as such, still runs.
    let out = run("SELECT pg_catalog.lower('X'), upper('y')");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "x|Y");
}
