//! Issue 19's corpus: PHI an agent asks for in another form, through a
//! channel other than a masked result, against `vigil up` with the shipped
//! PHI policy, the real PostgreSQL and psql. Each case is named by its
//! channel and transformation, and says what the client must not see.
//! Look-alikes (values the client sent itself) must come through as they
//! are. Add every new variant found here.

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
        let leaked: Vec<&str> = [SSN, MRN, EMAIL, "00417", "45-6789"]
            .into_iter()
            .filter(|v| all.contains(v))
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

    // Look-alikes: what the client sent itself comes back as it was.
    let out = psql(&gw, "SELECT 'not-a-number'::int");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"not-a-number\""),
        "{}",
        show(&out)
    );
    let out = psql(
        &gw,
        &format!("SELECT nosuchcolumn FROM {TABLE} WHERE id = 1"),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"nosuchcolumn\""),
        "{}",
        show(&out)
    );
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
/// (`tests/clients/leak_clients.py`).
#[test]
fn python_drivers_see_no_phi_in_errors_settings_or_notifications() {
    let table = "vigil_leak_drivers";
    let out = direct_psql(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id int PRIMARY KEY, mrn text);
         INSERT INTO {table} VALUES (1, '{MRN}');"
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
