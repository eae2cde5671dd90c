//! Real drivers other than psql through the proxy: psycopg 3 and asyncpg
//! (tests/clients/python_clients.py), node-postgres (tests/clients/node_pg.js). Their results must be exactly what
//! PostgreSQL returns, and their statements must be in the ledger with the
//! parameters they bound.

use vigil_proto::events::event::Kind;
use vigil_tests::{show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

#[test]
fn psycopg_and_asyncpg_work_unchanged_through_vigil() {
    let gw = Gateway::start(GatewaySpec::new());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python_clients.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .env("VIGIL_PG_PORT", gw.spec.pg_port.to_string())
        .env("VIGIL_USER", AGENT)
        .env("VIGIL_PASSWORD", AGENT_PASSWORD)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK psycopg"), "{}", show(&out));
    assert!(stdout.contains("OK asyncpg"), "{}", show(&out));

    // The ledger holds the drivers' statements with their bound values, as
    // sent: psycopg's pipeline binds small ints as binary int2 (0..5),
    // asyncpg binds 21 as binary int4.
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
            .count()
            == 2
    });
    let bound: Vec<(String, Vec<Vec<u8>>)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Request(r)) => Some((
                r.statement.clone(),
                r.parameters.iter().map(|p| p.value.clone()).collect(),
            )),
            _ => None,
        })
        .collect();
    for i in 0..5 {
        assert!(
            bound.iter().any(|(s, p)| s == "SELECT $1::int * 10"
                && p == &vec![(i as i16).to_be_bytes().to_vec()]),
            "pipeline statement {i} missing: {bound:?}"
        );
    }
    assert!(
        bound
            .iter()
            .any(|(s, p)| s == "SELECT $1::int * 2" && p == &vec![21i32.to_be_bytes().to_vec()]),
        "asyncpg's binary parameter missing: {bound:?}"
    );
    let failed = events
        .iter()
        .any(|e| matches!(&e.kind, Some(Kind::Response(r)) if r.error_code == "22012"));
    assert!(failed, "the division by zero is recorded with its SQLSTATE");
}

#[test]
fn node_postgres_works_unchanged_through_vigil() {
    let gw = Gateway::start(GatewaySpec::new());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/node_pg.js");
    let out = std::process::Command::new("node")
        .arg(script)
        .env("VIGIL_PG_PORT", gw.spec.pg_port.to_string())
        .env("VIGIL_USER", AGENT)
        .env("VIGIL_PASSWORD", AGENT_PASSWORD)
        .output()
        .expect("run node");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK node-postgres"),
        "{}",
        show(&out)
    );
    // The named prepared statement ran twice, each time a Request with its value.
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .any(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
    });
    let shouts: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Request(r)) if r.statement_name == "vigil-shout" => {
                r.parameters.first().map(|p| &p.value)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        shouts,
        vec![&b"hey".to_vec(), &b"again".to_vec()],
        "{events:#?}"
    );
}
