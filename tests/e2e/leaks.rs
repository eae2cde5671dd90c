//! Issue 19's corpus: PHI an agent asks for in another form, through a
//! channel other than a masked result, against `vigil up` with the shipped
//! PHI policy, the real PostgreSQL and psql. Each case is named by its
//! channel and transformation, and says what the client must not see.
//! Look-alikes that are not PHI (values computed from nothing, copies of no
//! masked column) must come through. Add every new variant found here.

use std::process::Output;

use vigil_proto::events::event::Kind;
use vigil_tests::{direct_psql, python_client, show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

const TABLE: &str = "vigil_leak_patients";
/// Values of the masked columns; none may reach the client in clear.
const SSN: &str = "123-45-6789";
const MRN: &str = "MRN-00417-X";
const EMAIL: &str = "ada@example.org";

fn setup() {
    let out = direct_psql(&format!(
        "DROP VIEW IF EXISTS vigil_leak_view;
         DROP TABLE IF EXISTS {TABLE}, vigil_leak_copy, vigil_leak_ctas;
         CREATE TABLE {TABLE} (id int PRIMARY KEY, ssn text UNIQUE, mrn text, email text NOT NULL);
         INSERT INTO {TABLE} VALUES (1, '{SSN}', '{MRN}', '{EMAIL}');
         CREATE TABLE vigil_leak_copy (id int, note text);"
    ));
    assert!(out.status.success(), "{}", show(&out));
}

fn psql(gw: &Gateway, sql: &str) -> Output {
    gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-A", "-t", "-v", "VERBOSITY=verbose", "-c", sql],
    )
}

struct Leak {
    name: &'static str,
    sql: String,
    /// The SQLSTATE the client gets (the error is kept, only its values go).
    code: &'static str,
}

#[test]
fn phi_does_not_leave_through_errors_settings_or_notifications() {
    setup();
    let mut spec = GatewaySpec::new();
    spec.policy = "builtin:phi-default".into();
    let gw = Gateway::start(spec);
    let leaks = [
        Leak {
            name: "error text / cast to integer",
            sql: format!("SELECT mrn::int FROM {TABLE} WHERE id = 1"),
            code: "22P02",
        },
        Leak {
            name: "error text / cast to date",
            sql: format!("SELECT email::date FROM {TABLE} WHERE id = 1"),
            code: "22007",
        },
        Leak {
            name: "error text / cast to numeric of a concatenation",
            sql: format!("SELECT (mrn || ssn)::numeric FROM {TABLE} WHERE id = 1"),
            code: "22P02",
        },
        Leak {
            name: "error text / the value sent first, so that the error seems to quote the client",
            sql: format!("SELECT length('{MRN}'); SELECT mrn::int FROM {TABLE} WHERE id = 1"),
            code: "22P02",
        },
        Leak {
            name: "error text / regclass cast names the value as a relation",
            sql: format!("SELECT mrn::regclass FROM {TABLE} WHERE id = 1"),
            code: "42P01",
        },
        Leak {
            name: "error context / regtype cast parses the value, with a position",
            sql: format!("SELECT mrn::regtype FROM {TABLE} WHERE id = 1"),
            code: "42601",
        },
        Leak {
            name: "error text / a dotted name shaped around the value, printed unquoted",
            sql: format!("SELECT ('\"' || mrn || '\".s.t')::regtype FROM {TABLE} WHERE id = 1"),
            code: "0A000",
        },
        Leak {
            name: "error text / too many dotted names: the value after the last parenthesis",
            sql: format!(
                "SELECT ('a.b.c.\"' || mrn || '\"')::regtype FROM {TABLE} WHERE id = 1"
            ),
            code: "42601",
        },
        Leak {
            name: "error detail / libxml echoes the document it could not parse",
            sql: format!("SELECT xmlparse(document mrn) FROM {TABLE} WHERE id = 1"),
            code: "2200M",
        },
        Leak {
            name: "error context / a JSON cast shows the text it parsed",
            sql: format!("SELECT ('\"' || mrn || E'\\t\"')::json FROM {TABLE} WHERE id = 1"),
            code: "22P02",
        },
        Leak {
            name: "error text / invalid encoding writes the bytes out unquoted",
            sql: format!(
                "SELECT convert_from('\\xe2'::bytea || substr(mrn, 5, 2)::bytea, 'UTF8') FROM {TABLE} WHERE id = 1"
            ),
            code: "22021",
        },
        Leak {
            name: "error text / a computed integer printed as an out-of-range date",
            sql: format!(
                "SELECT make_date(-1000000, ascii(substr(mrn, 6, 1)), ascii(substr(mrn, 7, 1))) FROM {TABLE} WHERE id = 1"
            ),
            code: "22008",
        },
        Leak {
            name: "error position / a syntax error's offset inside a value counts characters",
            sql: format!(
                "SELECT (repeat(' ', ascii(substr(mrn, 6, 1))) || '-')::regtype FROM {TABLE} WHERE id = 1"
            ),
            code: "42601",
        },
        Leak {
            name: "error detail / a NOT NULL violation quotes the failing row",
            sql: format!("UPDATE {TABLE} SET email = NULL WHERE id = 1"),
            code: "23502",
        },
        Leak {
            name: "new name / rename column",
            sql: format!("ALTER TABLE {TABLE} RENAME COLUMN mrn TO m"),
            code: "42501",
        },
        Leak {
            name: "new name / view",
            sql: format!("CREATE VIEW vigil_leak_view AS SELECT id, mrn AS m FROM {TABLE}"),
            code: "42501",
        },
        Leak {
            name: "copy / INSERT ... SELECT into another table",
            sql: format!(
                "INSERT INTO vigil_leak_copy (id, note) SELECT id, mrn FROM {TABLE} WHERE id = 1"
            ),
            code: "42501",
        },
        Leak {
            name: "copy / UPDATE ... SET another column",
            sql: format!("UPDATE {TABLE} SET email = mrn WHERE id = 1"),
            code: "42501",
        },
        Leak {
            name: "copy / CREATE TABLE AS",
            sql: format!(
                "CREATE TABLE vigil_leak_ctas AS SELECT id, mrn AS m FROM {TABLE} WHERE id = 1"
            ),
            code: "42501",
        },
        Leak {
            name: "parameter status / set_config of a reported setting",
            sql: format!(
                "SELECT set_config('application_name', mrn, false) FROM {TABLE} WHERE id = 1"
            ),
            code: "42501",
        },
        Leak {
            name: "setting / set_config of a custom setting read back",
            sql: format!("SELECT set_config('vigil.x', mrn, false) FROM {TABLE} WHERE id = 1"),
            code: "42501",
        },
        Leak {
            name: "notification / pg_notify payload",
            sql: format!("LISTEN c; SELECT pg_notify('c', mrn) FROM {TABLE} WHERE id = 1"),
            code: "42501",
        },
    ];
    let mut failures = Vec::new();
    for leak in &leaks {
        let out = psql(&gw, &leak.sql);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Lower case: a regclass cast folds the name. `0x30`: the MRN's
        // digits as bytes; `-48-52`: as character codes in a date; `48`:
        // as a position (psql writes a caret under it, so no caret either).
        let lower = all.to_lowercase();
        let leaked: Vec<&str> = [SSN, MRN, EMAIL, "00417", "45-6789", "0x30", "-48-52", "^"]
            .into_iter()
            .filter(|v| lower.contains(&v.to_lowercase()))
            .collect();
        if !leaked.is_empty() {
            failures.push(format!("{}: leaked {leaked:?}: {all}", leak.name));
        } else if out.status.success() || !all.contains(leak.code) {
            failures.push(format!(
                "{}: expected SQLSTATE {}: {all}",
                leak.name, leak.code
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A notification from another session (a trigger's `pg_notify` would
    // do the same) may carry a row: the payload is withheld, the channel
    // and the sender are kept.
    let notifier = std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(700));
        direct_psql(&format!("NOTIFY vigil_leak_chan, '{MRN}'"))
    });
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &[
            "-c",
            "LISTEN vigil_leak_chan",
            "-c",
            "SELECT pg_sleep(2)",
            "-c",
            "SELECT 1",
        ],
    );
    assert!(notifier.join().unwrap().status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("notification \"vigil_leak_chan\" with payload \"<redacted by Vigil>\"")
            && !all.contains(MRN),
        "{}",
        show(&out)
    );

    // What the client sent itself is withheld too (keeping it would answer
    // "is the value this one?"), but the error still says what it is: the
    // SQLSTATE and its name, and a hint that says why the rest is gone.
    for (sql, code, name) in [
        (
            "SELECT 'not-a-number'::int".to_string(),
            "22P02",
            "invalid text representation: <redacted by Vigil>",
        ),
        (
            format!("SELECT nosuchcolumn FROM {TABLE} WHERE id = 1"),
            "42703",
            "undefined column: <redacted by Vigil>",
        ),
    ] {
        let out = psql(&gw, &sql);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(code) && err.contains(name) && err.contains("audit ledger keeps them"),
            "{sql}: {}",
            show(&out)
        );
    }
    let out = psql(
        &gw,
        "SELECT set_config('application_name', 'report', false)",
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = psql(
        &gw,
        &format!(
            "INSERT INTO vigil_leak_copy (id, note) SELECT id, 'seen' FROM {TABLE} WHERE id = 1"
        ),
    );
    assert!(
        out.status.success(),
        "a copy of no masked column: {}",
        show(&out)
    );
    // Nothing of the refused writes reached the server.
    let out = direct_psql(&format!(
        "SELECT (SELECT count(*) FROM information_schema.columns WHERE table_name = '{TABLE}' AND column_name = 'mrn'),
                (SELECT count(*) FROM pg_class WHERE relname IN ('vigil_leak_view', 'vigil_leak_ctas')),
                (SELECT email FROM {TABLE} WHERE id = 1)"
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("1|0|{EMAIL}"),
        "{}",
        show(&out)
    );

    // The auditor's copy keeps the server's own words.
    let events = gw.wait_for_events(|ev| {
        ev.iter().any(|e| {
            matches!(&e.kind, Some(Kind::Response(r)) if r.error_code == "22P02" && r.error_message.contains(MRN))
        })
    });
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, Some(Kind::Response(r)) if r.error_code == "23502")));
}

/// The same channels through psycopg (text and binary results) and asyncpg
/// (`tests/clients/leak_clients.py`), and values computed from the masked
/// column or a date of the PHI table, in both formats.
#[test]
fn python_drivers_see_no_phi_in_errors_settings_or_notifications() {
    let table = "vigil_leak_drivers";
    let out = direct_psql(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id int PRIMARY KEY, mrn text, admitted date);
         INSERT INTO {table} VALUES (1, '{MRN}', '2026-03-01');"
    ));
    assert!(out.status.success(), "{}", show(&out));
    let mut spec = GatewaySpec::new();
    spec.policy = "builtin:phi-default".into();
    let gw = Gateway::start(spec);
    let out = python_client(
        "leak_clients.py",
        &gw,
        &[("VIGIL_TABLE", table), ("VIGIL_SECRET", MRN)],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    for line in ["OK psycopg leaks", "OK asyncpg leaks"] {
        assert!(text.contains(line), "{}", show(&out));
    }
}

const LINEAGE_TABLE: &str = "vigil_lineage_patients";

/// A transformation of masked columns: the value the server computes
/// (read directly, without Vigil) must not reach the agent, and the
/// statement still runs.
struct Transformed {
    name: &'static str,
    sql: String,
}

/// Issue 19: lineage through expressions. Every case computes a new value
/// from a masked column (or a date of a PHI table) in a shape no detector
/// recognises; the client gets the row, but not the value. Look-alikes,
/// computed from no masked column, come back exactly as PostgreSQL
/// computes them.
#[test]
fn transformed_phi_is_masked_by_lineage_and_the_rest_is_left_alone() {
    let t = LINEAGE_TABLE;
    let out = direct_psql(&format!(
        "DROP TABLE IF EXISTS {t} CASCADE;
         DROP TABLE IF EXISTS vigil_lineage_sink, vigil_lineage_b, vigil_lineage_x, vigil_lineage_swap, vigil_lineage_swap_old;
         CREATE TABLE vigil_lineage_sink (code text);
         CREATE TABLE vigil_lineage_b (x text);
         CREATE TABLE {t} (id int PRIMARY KEY, name text, ssn text, mrn text, dob date, admitted timestamptz, visits int);
         INSERT INTO {t} VALUES (1, 'Ada Lovelace', '{SSN}', '{MRN}', '1815-12-10', '2026-03-01 10:00+00', 7);
         CREATE VIEW vigil_lineage_view AS SELECT id, dob AS born, reverse(mrn) AS r, name FROM {t};"
    ));
    assert!(out.status.success(), "{}", show(&out));
    let mut spec = GatewaySpec::new();
    spec.policy = "builtin:phi-default".into();
    let gw = Gateway::start(spec);
    let w = "WHERE id = 1";
    let case = |name: &'static str, sql: String| Transformed { name, sql };
    let cases = [
        case(
            "encoding / base64",
            format!("SELECT encode(convert_to(mrn, 'UTF8'), 'base64') FROM {t} {w}"),
        ),
        case(
            "encoding / hex",
            format!("SELECT encode(ssn::bytea, 'hex') FROM {t} {w}"),
        ),
        case(
            "encoding / md5 (a dictionary reverses it)",
            format!("SELECT md5(ssn) FROM {t} {w}"),
        ),
        case(
            "characters / translate",
            format!("SELECT translate(ssn, '0123456789', 'abcdefghij') FROM {t} {w}"),
        ),
        case(
            "characters / reverse",
            format!("SELECT reverse(mrn) FROM {t} {w}"),
        ),
        case(
            "characters / spaced out",
            format!("SELECT regexp_replace(ssn, '(.)', '\\1 ', 'g') FROM {t} {w}"),
        ),
        case(
            "characters / split into an array",
            format!("SELECT string_to_array(ssn, NULL) FROM {t} {w}"),
        ),
        case(
            "characters / split and joined",
            format!("SELECT array_to_string(regexp_split_to_array(mrn, ''), '.') FROM {t} {w}"),
        ),
        case(
            "characters / one code point at a time",
            format!("SELECT ascii(substr(ssn, 1, 1)), ascii(substr(ssn, 2, 1)) FROM {t} {w}"),
        ),
        case(
            "characters / CASE over a digit",
            format!(
                "SELECT CASE WHEN substr(ssn, 1, 1) = '1' THEN 'one' ELSE 'other' END FROM {t} {w}"
            ),
        ),
        case(
            "date / of birth as text",
            format!("SELECT to_char(dob, 'YYYY-MM-DD') FROM {t} {w}"),
        ),
        case(
            "date / of birth as a number",
            format!("SELECT extract(epoch FROM dob) FROM {t} {w}"),
        ),
        case(
            "date / admission under another name",
            format!("SELECT admitted FROM {t} {w}"),
        ),
        case(
            "date / admission as text",
            format!("SELECT admitted::text FROM {t} {w}"),
        ),
        case(
            "json / row_to_json",
            format!("SELECT row_to_json(p) FROM {t} p {w}"),
        ),
        case(
            "json / object builder",
            format!("SELECT json_build_object('k', reverse(mrn)) FROM {t} {w}"),
        ),
        case(
            "row / constructor",
            format!("SELECT ROW(id, reverse(ssn)) FROM {t} {w}"),
        ),
        case(
            "subquery / scalar",
            format!("SELECT (SELECT reverse(mrn) FROM {t} {w})"),
        ),
        case(
            "cte / renamed",
            format!("WITH x AS (SELECT reverse(mrn) AS r FROM {t} {w}) SELECT r FROM x"),
        ),
        case(
            "set operation / union",
            format!("SELECT 'a' UNION ALL SELECT reverse(mrn) FROM {t} {w}"),
        ),
        case(
            "lateral / unnest of parts",
            format!("SELECT u FROM {t}, unnest(string_to_array(mrn, '-')) AS u {w}"),
        ),
        case(
            "aggregate / string_agg",
            format!("SELECT string_agg(reverse(ssn), ',') FROM {t} {w}"),
        ),
        case(
            "view / renamed date and transformed column",
            "SELECT born, r FROM vigil_lineage_view WHERE id = 1".into(),
        ),
        case(
            "several statements / the second transforms",
            format!("SELECT 1; SELECT reverse(mrn) FROM {t} {w}"),
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let direct = direct_psql(&c.sql);
        assert!(direct.status.success(), "{}: {}", c.name, show(&direct));
        let secret = String::from_utf8_lossy(&direct.stdout).trim().to_string();
        let secret = secret.lines().last().unwrap_or_default().to_string();
        let out = psql(&gw, &c.sql);
        let seen = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            failures.push(format!("{}: refused: {}", c.name, show(&out)));
        } else if let Some(part) = secret
            .split('|')
            .find(|part| part.len() >= 3 && seen.contains(part))
        {
            failures.push(format!("{}: leaked {part:?} in {seen:?}", c.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // Whole rows copied into another table are refused (deny-masked-copy).
    for sql in [
        format!("INSERT INTO vigil_lineage_b SELECT reverse(p::text) FROM {t} p {w}"),
        format!("CREATE TABLE vigil_lineage_x AS SELECT translate(p::text, '0123456789', 'abcdefghij') AS j FROM {t} p {w}"),
        format!("INSERT INTO vigil_lineage_b SELECT * FROM (SELECT mrn FROM {t} {w}) s"),
    ] {
        let out = psql(&gw, &sql);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("deny-masked-copy"),
            "{sql}: {}",
            show(&out)
        );
    }
    // A table renamed away through the gateway, and a view of a masked
    // value put under its name: the name is looked up anew, not taken
    // from the cache of 30 s (the rename dropped it).
    for sql in [
        "CREATE TABLE vigil_lineage_swap (j text)",
        "SELECT j || '' FROM vigil_lineage_swap LIMIT 1",
        "ALTER TABLE vigil_lineage_swap RENAME TO vigil_lineage_swap_old",
    ] {
        let out = psql(&gw, sql);
        assert!(out.status.success(), "{sql}: {}", show(&out));
    }
    direct_psql(&format!(
        "CREATE OR REPLACE VIEW vigil_lineage_swap AS SELECT reverse(mrn) AS j FROM {t} {w}"
    ));
    let out = psql(&gw, "SELECT j || '' FROM vigil_lineage_swap");
    let reversed: String = MRN.chars().rev().collect();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&reversed),
        "{}",
        show(&out)
    );
    // Error text: a value holding quotes cannot step outside them.
    let out = psql(
        &gw,
        &format!("SELECT (upper('zq') || '\"' || translate(ssn, '0123456789', 'abcdefghij') || '\"' || upper('wk'))::int FROM {t} {w}"),
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("bcd-ef-ghij"),
        "{}",
        show(&out)
    );

    // Look-alikes: computed from nothing masked, exactly as the server says.
    for sql in [
        "SELECT to_char(now(), 'YYYY'), current_user, 1 + 1".to_string(),
        "SELECT reverse('123-45-6789'), encode('MRN-1'::bytea, 'base64')".into(),
        format!("SELECT upper(name), length(name), id + 1, visits * 2 FROM {t} {w}"),
        format!("SELECT count(*), max(id) FROM {t}"),
        "SELECT name FROM vigil_lineage_view WHERE id = 1".into(),
    ] {
        let direct = direct_psql(&sql);
        let out = psql(&gw, &sql);
        assert!(out.status.success(), "{sql}: {}", show(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&direct.stdout).trim(),
            "{sql}"
        );
    }
    // README's demo: now() comes back, not NULL.
    let out = psql(&gw, "SELECT now() IS NOT NULL, now()::text <> ''");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "t|t",
        "{}",
        show(&out)
    );
    let out = psql(&gw, "SELECT now()");
    assert!(
        !String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{}",
        show(&out)
    );
}
