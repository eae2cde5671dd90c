//! Real drivers other than psql through the proxy: psycopg 3 and asyncpg
//! (tests/clients/python_clients.py), node-postgres (tests/clients/node_pg.js). Their results must be exactly what
//! PostgreSQL returns, and their statements must be in the ledger with the
//! parameters they bound.

use vigil_proto::events::event::Kind;
use vigil_tests::SqlRequestView;
use vigil_tests::SqlResponseView;
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
                r.statement().to_string(),
                r.parameters().iter().map(|p| p.value.clone()).collect(),
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
            Some(Kind::Request(r)) if r.statement_name() == "vigil-shout" => {
                r.parameters().first().map(|p| &p.value)
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

#[tokio::test]
async fn tokio_postgres_binary_formats_and_pipelining_work_through_vigil() {
    let gw = Gateway::start(GatewaySpec::new());
    let client = connect_tokio_postgres(&gw).await;
    // tokio-postgres binds and reads everything in binary.
    let row = client
        .query_one(
            "SELECT $1::int8 * 2, $2::text || '!', $3::float8, $4::bool, $5::bytea",
            &[&21i64, &"hi", &1.5f64, &true, &vec![0u8, 255]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, String>(1), "hi!");
    assert_eq!(row.get::<_, f64>(2), 1.5);
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, Vec<u8>>(4), vec![0, 255]);
    // Several queries in flight at once on one connection (pipelining).
    let stmt = client.prepare("SELECT $1::int4 + 1").await.unwrap();
    let futures = (0..10i32).map(|i| {
        let (client, stmt) = (&client, &stmt);
        async move {
            client
                .query_one(stmt, &[&i])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    });
    // Polled together, so their messages are pipelined on the connection.
    let got = futures_util::future::join_all(futures).await;
    assert_eq!(got, (1..=10).collect::<Vec<i32>>());
    // An error keeps the connection usable, with the right SQLSTATE.
    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    assert_eq!(
        client
            .query_one("SELECT 7::int4", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
}

/// COPY TO STDOUT in the middle of a pipeline (tokio-postgres sends the
/// queries around it without waiting), under a policy that masks: the COPY
/// lines are scanned by the content detectors, the queries around it get
/// their own results, in order.
#[tokio::test]
async fn copy_out_inside_a_pipeline_is_masked_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "name = \"copy-masks\"\ndefault = \"mask\"\n[masking]\nscan_all_results = true\n",
    )
    .unwrap();
    let mut spec = GatewaySpec::new();
    spec.policy = policy.display().to_string();
    let gw = Gateway::start(spec);
    let client = connect_tokio_postgres(&gw).await;
    let stmt = client.prepare("SELECT $1::int4 * 10").await.unwrap();
    let before = client.query_one(&stmt, &[&1i32]);
    let copy = async {
        use futures_util::StreamExt as _;
        let stream = client
            .copy_out(
                "COPY (SELECT g, 'call 555-123-4567 or ' || g || '@example.org' AS note \
                 FROM generate_series(1, 3) g) TO STDOUT",
            )
            .await
            .unwrap();
        let chunks: Vec<_> = stream.collect().await;
        chunks
            .into_iter()
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect::<String>()
    };
    let after = client.query_one(&stmt, &[&2i32]);
    let (before, copied, after) = futures_util::future::join3(before, copy, after).await;
    assert_eq!(before.unwrap().get::<_, i32>(0), 10);
    assert_eq!(after.unwrap().get::<_, i32>(0), 20);
    assert_eq!(
        copied,
        "1\tcall [PHONE] or [EMAIL]\n2\tcall [PHONE] or [EMAIL]\n3\tcall [PHONE] or [EMAIL]\n",
        "every COPY line masked, framing intact"
    );
}

/// tokio-postgres runs COPY FROM STDIN through the extended protocol and
/// sends its Sync before the data, which PostgreSQL ignores while copying:
/// the proxy must still pair every later statement with its own result.
#[tokio::test]
async fn extended_protocol_copy_in_keeps_results_paired() {
    let gw = Gateway::start(GatewaySpec::new());
    let client = connect_tokio_postgres(&gw).await;
    client
        .batch_execute("CREATE TEMP TABLE copied (n int, note text)")
        .await
        .unwrap();
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY copied FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    use futures_util::SinkExt as _;
    sink.send(bytes::Bytes::from_static(b"1\tone\n2\ttwo\n"))
        .await
        .unwrap();
    let copied = sink.finish().await.unwrap();
    assert_eq!(copied, 2);
    for i in 0..3i32 {
        let row = client
            .query_one("SELECT $1::int4 + 100", &[&i])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 100 + i);
    }
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .filter(
                |e| matches!(&e.kind, Some(Kind::Response(r)) if r.command_tags() == ["SELECT 1"]),
            )
            .count()
            >= 3
    });
    // Every Request's Response carries its own tag.
    let statements = vigil_tests::statements_by_seq(&events);
    for e in &events {
        if let Some(Kind::Response(r)) = &e.kind {
            let stmt = &statements[&r.request_seq];
            if stmt.starts_with("COPY") {
                assert_eq!(r.command_tags(), ["COPY 2"], "{stmt}: {r:?}");
            }
            if stmt.starts_with("SELECT $1") {
                assert_eq!(r.command_tags(), ["SELECT 1"], "{stmt}: {r:?}");
            }
        }
    }
}

/// tokio-postgres connected through the gateway as the test agent, its
/// connection driven in the background.
async fn connect_tokio_postgres(gw: &Gateway) -> tokio_postgres::Client {
    let conninfo = format!(
        "host=127.0.0.1 port={} user={AGENT} password='{AGENT_PASSWORD}' dbname=test",
        gw.spec.pg_port
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .expect("connect through vigil");
    tokio::spawn(connection);
    client
}
