//! The walking skeleton end to end: real psql and pgbench through `vigil up`
//! to the real PostgreSQL on this machine, then the ledger read back and
//! verified with `vigil audit verify`.

use vigil_proto::events::{event::Kind, Event};
use vigil_tests::SqlRequestView;
use vigil_tests::SqlResponseView;
use vigil_tests::{show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

fn requests(events: &[Event]) -> Vec<&vigil_proto::events::Request> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Request(r)) => Some(r),
            _ => None,
        })
        .collect()
}

fn responses(events: &[Event]) -> Vec<&vigil_proto::events::Response> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Response(r)) => Some(r),
            _ => None,
        })
        .collect()
}

fn closed_sessions(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
        .count()
}

#[test]
fn statements_pass_through_and_the_ledger_records_exactly_them() {
    let gw = Gateway::start(GatewaySpec::new());
    let table = format!("vigil_e2e_{}", std::process::id());
    let script = format!(
        "CREATE TABLE {table} (id int, name text);\n\
         INSERT INTO {table} VALUES (1, 'ada'), (2, 'grace');\n\
         SELECT name FROM {table} ORDER BY id;\n\
         DROP TABLE {table};\n"
    );
    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-A", "-t", "-c", &script]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ada\ngrace"), "rows came back: {stdout}");

    let events = gw.wait_for_events(|ev| closed_sessions(ev) == 1);
    let reqs = requests(&events);
    assert_eq!(reqs.len(), 1, "psql -c sends one Query message");
    assert_eq!(reqs[0].statement(), script, "the exact text psql sent");
    assert_eq!(reqs[0].protocol_path(), "simple");
    let resps = responses(&events);
    assert_eq!(resps.len(), 1);
    assert_eq!(
        resps[0].command_tags(),
        vec!["CREATE TABLE", "INSERT 0 2", "SELECT 2", "DROP TABLE"]
    );
    assert!(resps[0].error_code.is_empty());

    // Every event carries the verified identity, the connection and the session.
    let session = &events[0].session_id;
    for (i, e) in events.iter().enumerate() {
        let id = e.identity.as_ref().expect("identity on every event");
        assert_eq!(id.subject, AGENT);
        assert_eq!(id.issuer, "vigil:static");
        assert_eq!(id.groups, vec!["agents", "research"]);
        assert_eq!(e.connection, "e2e-pg");
        assert_eq!(&e.session_id, session);
        assert_eq!(e.seq, i as u64, "events of a session are numbered in order");
    }
    match &events[0].kind {
        Some(Kind::SessionOpened(o)) => {
            assert_eq!(
                events[0].protocol(),
                vigil_proto::events::Protocol::Postgres
            );
            let o = o.sql().expect("a SQL session");
            assert_eq!(o.client_user, AGENT);
            assert_eq!(o.upstream_user, "postgres");
            assert_eq!(o.database, "test");
        }
        other => panic!("first event should open the session: {other:?}"),
    }

    // An independent check of the whole ledger with only the verifier key.
    let key = gw.verifier_key();
    let out = gw.vigil(&[
        "audit",
        "verify",
        "--ledger",
        &gw.ledger_url(),
        "--key",
        &key,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("root matches the signed checkpoint"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{} event bodies match their leaves; 0 pruned",
            events.len()
        )),
        "{report}"
    );
    assert!(report.contains("verified: every check passed"), "{report}");
}

#[test]
fn failing_statements_are_recorded_with_their_error() {
    let gw = Gateway::start(GatewaySpec::new());
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-c", "SELECT * FROM no_such_table_vigil"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not exist"),
        "PostgreSQL's error reaches the client: {stderr}"
    );
    let events = gw.wait_for_events(|ev| closed_sessions(ev) == 1);
    let resps = responses(&events);
    assert_eq!(resps.len(), 1);
    assert_eq!(resps[0].error_code, "42P01");
}

#[test]
fn wrong_password_is_refused_clearly_and_opens_no_session() {
    let gw = Gateway::start(GatewaySpec::new());
    for (user, password) in [(AGENT, "wrong"), ("nobody", AGENT_PASSWORD)] {
        let out = gw.psql(user, password, &["-c", "SELECT 1"]);
        assert!(!out.status.success(), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            "{stderr}"
        );
    }
    // The gateway still serves the right password, and only that session is recorded.
    let ok = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(ok.status.success(), "{}", show(&ok));
    let events = gw.wait_for_events(|ev| closed_sessions(ev) == 1);
    let opened = events
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::SessionOpened(_))))
        .count();
    assert_eq!(opened, 1);
}

/// pgbench as the agent through the gateway, running `script` (no vacuum:
/// a custom script needs no pgbench tables).
fn pgbench(gw: &Gateway, args: &[&str], script: &std::path::Path) -> std::process::Output {
    std::process::Command::new("pgbench")
        .env("PGPASSWORD", AGENT_PASSWORD)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &gw.spec.pg_port.to_string(),
            "-U",
            AGENT,
            "-n",
        ])
        .args(args)
        .arg("-f")
        .arg(script)
        .arg("test")
        .output()
        .expect("run pgbench")
}

#[test]
fn extended_protocol_from_pgbench_is_recorded_per_execution() {
    let gw = Gateway::start(GatewaySpec::new());
    // pgbench's built-in select-only script needs its tables; a custom script does not.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("q.sql");
    std::fs::write(
        &script,
        "\\set v random(1, 1000)\nSELECT :v::int + 1 AS answer;\n",
    )
    .unwrap();
    for mode in ["extended", "prepared"] {
        let out = pgbench(&gw, &["-M", mode, "-c", "2", "-t", "10"], &script);
        assert!(out.status.success(), "pgbench -M {mode}: {}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("number of failed transactions: 0"),
            "{stdout}"
        );
    }
    // 2 modes x 2 clients x 10 transactions, one Execute each. (pgbench also
    // opens a connection of its own per run, so count sessions, not a number.)
    let events = gw.wait_for_events(|ev| {
        let opened = ev
            .iter()
            .filter(|e| matches!(e.kind, Some(Kind::SessionOpened(_))))
            .count();
        responses(ev).len() >= 40 && opened >= 4 && closed_sessions(ev) == opened
    });
    let extended: Vec<_> = requests(&events)
        .into_iter()
        .filter(|r| r.protocol_path() == "extended")
        .collect();
    assert_eq!(extended.len(), 40);
    for r in &extended {
        assert_eq!(r.statement(), "SELECT $1::int + 1 AS answer;");
        assert_eq!(r.parameters().len(), 1, "the bound value is recorded");
        let v: i32 = String::from_utf8_lossy(&r.parameters()[0].value)
            .parse()
            .unwrap();
        assert!((1..=1000).contains(&v));
    }
    let ok = responses(&events)
        .into_iter()
        .filter(|r| r.command_tags() == vec!["SELECT 1"] && r.rows() == 1)
        .count();
    assert_eq!(ok, 40);
}

#[test]
fn dev_mode_needs_no_config_and_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spec = GatewaySpec {
        pg_port: 6543,
        http_port: 6580,
        grpc_port: 6581,
        upstream_port: 5432,
        // What --dev applies by itself.
        policy: "builtin:phi-default".into(),
        ..GatewaySpec::new()
    };
    let args = vec![
        "up".to_string(),
        "--dev".into(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    let gw = Gateway::spawn(spec, dir, args);
    assert!(
        gw.stderr().contains("DEVELOPMENT MODE"),
        "dev mode says so loudly"
    );
    let key = gw.verifier_key();
    let stored = std::fs::read_to_string(data.join("ledger-verifier.key")).unwrap();
    assert_eq!(stored.trim(), key);

    let out = gw.psql("dev", "dev", &["-A", "-t", "-c", "SELECT current_user"]);
    assert!(out.status.success(), "{}", show(&out));
    // The agent is dev; the database sees the gateway's own credential.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres");
    // --dev applies the shipped PHI policy.
    let out = gw.psql(
        "dev",
        "dev",
        &["-c", "DROP TABLE IF EXISTS vigil_dev_nothing"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Vigil denied this statement"),
        "{}",
        show(&out)
    );
    let size = {
        gw.wait_for_events(|ev| closed_sessions(ev) == 2);
        gw.checkpoint_size()
    };

    // A restart on the same data directory keeps the key and the log.
    // ... and --policy replaces it.
    let args = vec![
        "up".to_string(),
        "--dev".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--policy".into(),
        "builtin:allow-all".into(),
    ];
    let again = gw.restart(args);
    assert_eq!(again.verifier_key(), key);
    let out = again.psql(
        "dev",
        "dev",
        &["-c", "DROP TABLE IF EXISTS vigil_dev_nothing"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(again.checkpoint_size() >= size);
    let out = again.vigil(&[
        "audit",
        "verify",
        "--ledger",
        &again.ledger_url(),
        "--key",
        &key,
    ]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn verify_fails_against_the_wrong_key() {
    let gw = Gateway::start(GatewaySpec::new());
    // A real key with the right name, but not the ledger's.
    let other = vigil_ledger::NoteSigner::generate("test.vigil/e2e")
        .unwrap()
        .verifier_key_text();
    let out = gw.vigil(&[
        "audit",
        "verify",
        "--ledger",
        &gw.ledger_url(),
        "--key",
        &other,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("FAIL  checkpoint signature"),
        "{}",
        show(&out)
    );
    assert!(report.contains("NOT VERIFIED"), "{}", show(&out));

    // A key that is not a key at all is a usage error, not a verdict.
    let garbled = "test.vigil/e2e+12345678+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = gw.vigil(&[
        "audit",
        "verify",
        "--ledger",
        &gw.ledger_url(),
        "--key",
        garbled,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the verifier key is not valid"),
        "{}",
        show(&out)
    );
}

#[test]
fn ctrl_c_in_psql_cancels_the_upstream_query_through_the_proxy() {
    let gw = Gateway::start(GatewaySpec::new());
    let child = std::process::Command::new("psql")
        .env("PGPASSWORD", AGENT_PASSWORD)
        .args(["-X", "-h", "127.0.0.1", "-p", &gw.spec.pg_port.to_string()])
        .args(["-U", AGENT, "-d", "test", "-c", "SELECT pg_sleep(60)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The statement is recorded before it is forwarded: once the Request is
    // in the ledger, give the upstream a moment to start running it.
    gw.wait_for_events(|ev| {
        ev.iter().any(
            |e| matches!(&e.kind, Some(Kind::Request(r)) if r.statement().contains("pg_sleep")),
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    // What Ctrl-C does: psql sends a CancelRequest with the key it was given
    // (the proxy's), on a new connection to the proxy.
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the query was not cancelled"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{}",
        show(&out)
    );
    // The ledger records the cancel, in the cancelled session, and the
    // cancelled statement's outcome.
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .any(|e| matches!(&e.kind, Some(Kind::Response(r)) if r.error_code == "57014"))
            && ev
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::CancelRequested(_))))
    });
    let request = events
        .iter()
        .find(|e| matches!(&e.kind, Some(Kind::Request(r)) if r.statement().contains("pg_sleep")))
        .unwrap();
    let cancel = events
        .iter()
        .find(|e| matches!(e.kind, Some(Kind::CancelRequested(_))))
        .unwrap();
    assert_eq!(cancel.session_id, request.session_id);
    assert!(matches!(&cancel.kind, Some(Kind::CancelRequested(c)) if c.forwarded));
}

#[test]
fn copy_in_and_out_and_notifications_pass_through_and_are_recorded() {
    let gw = Gateway::start(GatewaySpec::new());
    let table = format!("vigil_copy_{}", std::process::id());
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &[
            "-c",
            &format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table}(id int, name text)"),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));

    // COPY FROM STDIN: psql streams CopyData from its standard input.
    let out = gw.psql_with_stdin(
        AGENT,
        AGENT_PASSWORD,
        &["-c", &format!("\\copy {table} FROM STDIN")],
        "1\talice\n2\tbob\n3\tcarol\n",
    );
    assert!(out.status.success(), "{}", show(&out));

    // COPY TO STDOUT returns exactly the rows.
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &[
            "-c",
            &format!("COPY (SELECT id, name FROM {table} ORDER BY id) TO STDOUT"),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\talice\n2\tbob\n3\tcarol\n"
    );

    // LISTEN/NOTIFY in one session: the NotificationResponse reaches psql.
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &[
            "-c",
            "LISTEN vigil_chan",
            "-c",
            "NOTIFY vigil_chan, 'hello'",
            "-c",
            "SELECT 1",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Asynchronous notification \"vigil_chan\" with payload \"hello\""),
        "{}",
        show(&out)
    );

    let _ = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-c", &format!("DROP TABLE {table}")],
    );
    // The ledger has both COPYs with their tags.
    let events = gw.wait_for_events(|ev| {
        let tags: Vec<&String> = ev
            .iter()
            .filter_map(|e| match &e.kind {
                Some(Kind::Response(r)) => Some(r.command_tags()),
                _ => None,
            })
            .flatten()
            .collect();
        tags.iter().filter(|t| t.as_str() == "COPY 3").count() == 2
    });
    assert!(events.iter().any(|e| matches!(&e.kind,
        Some(Kind::Request(r)) if r.statement().starts_with("COPY") && r.statement().contains("FROM STDIN"))));
}

#[test]
fn a_pgbench_pipeline_script_runs_and_every_step_is_recorded_in_order() {
    let gw = Gateway::start(GatewaySpec::new());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("pipeline.sql");
    // Three statements sent before any result is read, one Sync at the end.
    std::fs::write(
        &script,
        "\\set v random(1, 1000)\n\\startpipeline\nSELECT :v::int AS a;\nSELECT :v::int * 2 AS b;\nSELECT :v::int * 3 AS c;\n\\endpipeline\n",
    )
    .unwrap();
    let out = pgbench(&gw, &["-M", "extended", "-c", "2", "-t", "10"], &script);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("number of failed transactions: 0"),
        "{}",
        show(&out)
    );
    // 2 clients x 10 transactions x 3 pipelined statements.
    let events = gw.wait_for_events(|ev| responses(ev).len() >= 60);
    let reqs = requests(&events);
    assert_eq!(reqs.len(), 60);
    // Within each session, a, b, c in order, each with its own result.
    for session in events
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::SessionOpened(_))))
        .map(|e| e.session_id.clone())
    {
        let stmts: Vec<String> = events
            .iter()
            .filter(|e| e.session_id == session)
            .filter_map(|e| match &e.kind {
                Some(Kind::Request(r)) => Some(r.statement().to_string()),
                _ => None,
            })
            .collect();
        for chunk in stmts.chunks(3) {
            assert_eq!(
                chunk,
                [
                    "SELECT $1::int AS a;",
                    "SELECT $1::int * 2 AS b;",
                    "SELECT $1::int * 3 AS c;"
                ]
            );
        }
    }
    let ok = responses(&events)
        .into_iter()
        .filter(|r| r.command_tags() == vec!["SELECT 1"] && r.rows() == 1 && !r.not_executed)
        .count();
    assert_eq!(ok, 60);
}

#[test]
fn notices_and_transaction_state_reach_the_client_exactly() {
    let gw = Gateway::start(GatewaySpec::new());
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            "DO $$ BEGIN RAISE NOTICE 'vigil notice %', 42; END $$",
            "-c",
            "SET application_name = 'vigil-changed'",
            "-c",
            "SHOW application_name",
            "-f",
            "-",
        ],
    );
    // (-f - reads nothing: stdin is not a terminal and empty.)
    assert!(out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NOTICE:  vigil notice 42"),
        "{}",
        show(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("vigil-changed"));

    // An error inside a transaction block: the client sees the aborted state
    // (SQLSTATE 25P02) exactly as PostgreSQL reports it, and ROLLBACK clears it.
    let script = "BEGIN;\nSELECT 1/0;\nSELECT 1;\nROLLBACK;\nSELECT 'after' AS state;\n";
    // (ON_ERROR_STOP off: psql must go on to the ROLLBACK.)
    let out = gw.psql_with_stdin(
        AGENT,
        AGENT_PASSWORD,
        &["-v", "ON_ERROR_STOP=0", "-f", "-"],
        script,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("division by zero"), "{}", show(&out));
    assert!(
        stderr.contains(
            "current transaction is aborted, commands ignored until end of transaction block"
        ),
        "{}",
        show(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("after"));
    let events = gw.wait_for_events(|ev| closed_sessions(ev) == 2);
    let codes: Vec<String> = responses(&events)
        .into_iter()
        .map(|r| r.error_code.clone())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(codes, vec!["22012", "25P02"]);
}

#[test]
fn large_objects_over_the_function_call_protocol_round_trip_and_are_recorded() {
    let gw = Gateway::start(GatewaySpec::new());
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.bin"), dir.path().join("out.bin"));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    // psql's \lo_import / \lo_export use libpq's fast path (FunctionCall).
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-c", &format!("\\lo_import {}", src.display())],
    );
    assert!(out.status.success(), "{}", show(&out));
    let oid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("lo_import ")
        .unwrap_or_else(|| panic!("{}", show(&out)))
        .parse()
        .unwrap();
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-c", &format!("\\lo_export {oid} {}", dst.display())],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        std::fs::read(&dst).unwrap(),
        data,
        "bytes survive the round trip"
    );
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-c", &format!("\\lo_unlink {oid}")],
    );
    assert!(out.status.success(), "{}", show(&out));

    let events = gw.wait_for_events(|ev| closed_sessions(ev) == 3);
    let calls: Vec<_> = requests(&events)
        .into_iter()
        .filter(|r| r.protocol_path() == "function_call")
        .collect();
    assert!(
        calls.len() >= 4,
        "open, write, read, close at least: {}",
        calls.len()
    );
    assert!(calls
        .iter()
        .all(|r| r.statement().starts_with("function call: oid ")));
    assert!(
        responses(&events).iter().all(|r| r.error_code.is_empty()),
        "every call succeeded"
    );
}

#[test]
fn sigterm_lets_sessions_finish_then_closes_the_rest_with_reason_shutdown() {
    use std::io::Write as _;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let spec = GatewaySpec::new();
    let config = spec.write_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("shutdown_drain = \"3s\"\n{text}")).unwrap();
    let args = Gateway::config_args(dir.path());
    let mut gw = Gateway::spawn(spec, dir, args);

    // An idle session that will still be open when the drain ends.
    let mut idle = gw
        .psql_command(AGENT, AGENT_PASSWORD, &["-A", "-t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut idle_in = idle.stdin.take().unwrap();
    idle_in.write_all(b"SELECT 'idle session';\n").unwrap();
    gw.wait_for_events(|ev| {
        requests(ev)
            .iter()
            .any(|r| r.statement().contains("idle session"))
    });
    // A statement still running when SIGTERM arrives: it may finish.
    let busy = gw
        .psql_command(
            AGENT,
            AGENT_PASSWORD,
            &["-A", "-t", "-c", "SELECT pg_sleep(1.5), 'slept'"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gw.wait_for_events(|ev| {
        requests(ev)
            .iter()
            .any(|r| r.statement().contains("pg_sleep"))
    });

    let term = std::process::Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let sent = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    // No new sessions once the shutdown has begun.
    let late = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(!late.status.success(), "{}", show(&late));

    let busy = busy.wait_with_output().unwrap();
    assert!(busy.status.success(), "{}", show(&busy));
    assert!(String::from_utf8_lossy(&busy.stdout).contains("slept"));

    let status = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "vigil did not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}\n{}", gw.stderr());
    assert!(
        sent.elapsed() >= Duration::from_secs(3),
        "the idle session got its drain period"
    );
    drop(idle_in);
    let idle = idle.wait_with_output().unwrap();
    let idle_text = show(&idle);

    // Started again on the same data: every session has its SessionClosed,
    // the one the shutdown ended with reason "shutdown".
    let (spec, dir) = gw.stop();
    let args = Gateway::config_args(dir.path());
    let gw = Gateway::spawn(spec, dir, args);
    let events = gw.wait_for_events(|ev| closed_sessions(ev) >= 2);
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::SessionClosed(c)) => Some(c.reason_text()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "shutdown").count(),
        1,
        "{reasons:?}\nidle psql: {idle_text}"
    );
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let session_of = |text: &str| {
        events
            .iter()
            .find(|e| matches!(&e.kind, Some(Kind::Request(r)) if r.statement().contains(text)))
            .map(|e| e.session_id.clone())
            .unwrap()
    };
    let closed_reason = |session: &str| {
        events
            .iter()
            .find_map(|e| match &e.kind {
                Some(Kind::SessionClosed(c)) if e.session_id == session => Some(c.reason_text()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(closed_reason(&session_of("idle session")), "shutdown");
    let busy_session = session_of("pg_sleep");
    assert_ne!(closed_reason(&busy_session), "shutdown");
    let slept = events.iter().find_map(|e| match &e.kind {
        Some(Kind::Response(r)) if e.session_id == busy_session => Some(r),
        _ => None,
    });
    let slept = slept.expect("the running statement's response");
    assert_eq!(
        (slept.rows(), slept.error_code.as_str()),
        (1, ""),
        "{slept:?}"
    );
}

/// The value of one series in a `/metrics` page (`name{labels}` exactly).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[test]
fn metrics_count_sessions_decisions_refusals_and_the_ledger() {
    let mut spec = GatewaySpec::new();
    let metrics_port = vigil_tests::free_port();
    spec.policy = "builtin:phi-default".into();
    spec.tables_extra = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    let gw = Gateway::start(spec);
    let ok = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-c", "SELECT 1", "-c", "DROP TABLE nothing_here"],
    );
    assert!(!ok.status.success(), "the DROP is denied: {}", show(&ok));
    let refused = gw.psql(AGENT, "wrong", &["-c", "SELECT 1"]);
    assert!(!refused.status.success());
    // The refused login is recorded in the background: wait for it too.
    gw.wait_for_events(|ev| {
        closed_sessions(ev) == 1
            && ev
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::LoginRefused(_))))
    });

    // The process's own endpoint and the ledger's HTTP API serve the same series.
    for url in [
        format!("http://127.0.0.1:{metrics_port}/metrics"),
        format!("{}/metrics", gw.ledger_url()),
    ] {
        let page = ureq::get(&url).call().unwrap().into_string().unwrap();
        let value = |s: &str| sample(&page, s).unwrap_or_else(|| panic!("{s} in\n{page}"));
        assert_eq!(
            value("vigil_sessions_opened_total{protocol=\"postgres\"}"),
            1.0
        );
        assert_eq!(value("vigil_sessions_open{protocol=\"postgres\"}"), 0.0);
        assert_eq!(
            value(
                "vigil_sessions_closed_total{protocol=\"postgres\",reason=\"client_terminated\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                "vigil_decisions_total{protocol=\"postgres\",outcome=\"mask\",stage=\"request\"}"
            ),
            1.0,
            "SELECT 1 under phi-default's default"
        );
        assert_eq!(
            value(
                "vigil_decisions_total{protocol=\"postgres\",outcome=\"deny\",stage=\"request\"}"
            ),
            1.0
        );
        assert!(
            page.lines().any(
                |l| l.starts_with("vigil_logins_refused_total{protocol=\"postgres\"")
                    && l.ends_with(" 1")
            ),
            "{page}"
        );
        // The DROP's record was durable before it went upstream; SELECT 1
        // changes nothing, so where the database holds no code of its
        // users it ran while its record became durable.
        let durable = value("vigil_record_seconds_count{mode=\"durable\"}");
        let overlapped = sample(&page, "vigil_record_seconds_count{mode=\"overlapped\"}");
        assert!(durable >= 1.0 && durable + overlapped.unwrap_or(0.0) >= 2.0);
        // SessionOpened, two Requests (each with its Decision), two
        // Responses, SessionClosed, and the refused login.
        assert!(value("vigil_ledger_entries") >= 7.0);
        assert!(value("vigil_ledger_checkpoint_age_seconds") >= 0.0);
        // Fewer than 256 entries: no complete tile to cache or read yet.
        assert_eq!(value("vigil_ledger_tile_cache_tiles"), 0.0);
        assert_eq!(value("vigil_ledger_tile_store_reads"), 0.0);
        assert!(page.contains("# TYPE vigil_record_seconds histogram"));
    }
}

/// The ledger watches every session's event numbering for holes (events
/// lost on the way) and counts them in `vigil_ledger_sequence_gaps_total`.
/// Under load with concurrent sessions, whose Responses are recorded in
/// the background and can arrive after the next Request, nothing is lost
/// and nothing may be reported: the counter stays 0 past the watch's grace.
#[test]
fn concurrent_sessions_raise_no_sequence_gap_alarm() {
    let gw = Gateway::start(GatewaySpec::new());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("q.sql");
    std::fs::write(&script, "SELECT 1;\nSELECT 2;\n").unwrap();
    let out = pgbench(
        &gw,
        &["-M", "extended", "-c", "8", "-j", "2", "-t", "100"],
        &script,
    );
    assert!(out.status.success(), "pgbench: {}", show(&out));
    // Past the grace (5 s) during which a late event is not yet a hole.
    std::thread::sleep(std::time::Duration::from_secs(7));
    let page = ureq::get(&format!("{}/metrics", gw.ledger_url()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(
        sample(&page, "vigil_ledger_sequence_gaps_total"),
        Some(0.0),
        "{page}"
    );
}

/// The ledger's RocksDB fails for real: every file `vigil up` writes is
/// limited to 2 MiB, so once the ledger's write-ahead log reaches that, its
/// next write fails with EFBIG, as on a full disk. From then on the gateway
/// fails closed: the statement whose record failed gets 57P03 and never
/// runs, every write the client saw succeed is in the ledger, and a new
/// session gets nothing through.
#[test]
fn a_failing_ledger_disk_ends_sessions_with_57p03_and_no_write_reaches_the_database() {
    let table = "vigil_e2e_failing_ledger";
    let setup = vigil_tests::direct_psql_setup(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (n int); TRUNCATE {table};"
    ));
    assert!(setup.status.success(), "{}", show(&setup));
    let mut gw = Gateway::start_with_file_limit(GatewaySpec::new(), 2 << 20);
    // Writes only (a read may run while its record is written), far more
    // than 2 MiB of log can record (about a KiB an entry, two a statement);
    // line n of the script inserts n.
    let script: String = (1..=5_000)
        .map(|n| format!("INSERT INTO {table} VALUES ({n});\n"))
        .collect();
    // From a file: psql stops reading at the first error.
    let script_path = gw.dir.path().join("statements.sql");
    std::fs::write(&script_path, script).unwrap();
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &[
            "-A",
            "-t",
            "-v",
            "VERBOSITY=verbose",
            "-f",
            &script_path.display().to_string(),
        ],
    );
    assert!(
        !out.status.success(),
        "psql stopped at an error: {}",
        show(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("57P03"), "the refusal is 57P03: {stderr}");
    // "psql:<path>:<line>: ERROR:  57P03: ..."
    let failed_line: usize = stderr
        .split_once("statements.sql:")
        .and_then(|(_, rest)| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("psql names the failing line: {stderr}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let inserted = stdout.lines().filter(|l| *l == "INSERT 0 1").count();
    assert!(
        inserted > 10,
        "the ledger took statements first: {stdout:.300}"
    );
    assert_eq!(
        inserted,
        failed_line - 1,
        "every statement before the refused one ran"
    );
    let count = |filter: &str| {
        let out = vigil_tests::direct_psql(&format!("SELECT count(*) FROM {table} {filter}"));
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    // The refused write never ran; the ones before it all did.
    assert_eq!(count(&format!("WHERE n = {failed_line}")), 0);
    assert_eq!(count(""), inserted);
    // A new session gets nothing through, and the gateway still runs.
    let again = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-c", &format!("INSERT INTO {table} VALUES (-1)")],
    );
    assert!(!again.status.success(), "refused: {}", show(&again));
    // (libpq prints a login's FATAL without its SQLSTATE.)
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("Vigil cannot record this session"),
        "{}",
        show(&again)
    );
    assert!(gw.child.try_wait().unwrap().is_none(), "vigil still runs");
    assert_eq!(count(""), inserted);
    let log = gw.stderr();
    assert!(
        log.contains("ledger append failed") || log.contains("ledger sync failed"),
        "the gateway says why: {log:.2000}"
    );
    // Restarted without the limit: the last write the client saw succeed
    // was recorded before it ran (its Request is in the ledger).
    let gw = gw.restart(Gateway::config_args_for(&GatewaySpec::new()));
    let last = format!("INSERT INTO {table} VALUES ({inserted})");
    gw.wait_for_events(|events| {
        vigil_tests::statements_by_seq(events)
            .values()
            .any(|s| s.trim_end_matches(';') == last)
    });
}
