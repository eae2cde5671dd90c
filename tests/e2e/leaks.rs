//! Issue 19's corpus: PHI an agent asks for in another form, through a
//! channel other than a masked result, against `vigil up` with the shipped
//! PHI policy, the real PostgreSQL and psql. Each case is named by its
//! channel and transformation, and says what the client must not see.
//! Look-alikes (values the client sent itself) must come through as they
//! are. Add every new variant found here.

use std::process::Output;

use vigil_proto::events::event::Kind;
use vigil_tests::{direct_psql, show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

const TABLE: &str = "vigil_leak_patients";
/// Values of the masked columns; none may reach the client in clear.
const SSN: &str = "123-45-6789";
const MRN: &str = "MRN-00417-X";
const EMAIL: &str = "ada@example.org";

fn setup() {
    let out = direct_psql(&format!(
        "DROP TABLE IF EXISTS {TABLE};
         CREATE TABLE {TABLE} (id int PRIMARY KEY, ssn text UNIQUE, mrn text, email text);
         INSERT INTO {TABLE} VALUES (1, '{SSN}', '{MRN}', '{EMAIL}');"
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
            name: "error detail / unique violation quotes the key",
            sql: format!("INSERT INTO {TABLE} (id, ssn) SELECT 2, ssn FROM {TABLE} WHERE id = 1"),
            code: "23505",
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

    // The auditor's copy keeps the server's own words.
    let events = gw.wait_for_events(|ev| {
        ev.iter().any(|e| {
            matches!(&e.kind, Some(Kind::Response(r)) if r.error_code == "22P02" && r.error_message.contains(MRN))
        })
    });
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, Some(Kind::Response(r)) if r.error_code == "23505")));
}
