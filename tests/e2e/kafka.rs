//! The roles as separate processes over a real Kafka-protocol broker
//! (tansu): `vigil proxy` records into its durable outbox and ships to the
//! broker, `vigil ledger` consumes and appends. Each fault test kills or
//! restarts a real process mid-stream, then checks what a HIPAA auditor
//! would: every statement whose success the client saw is in the ledger
//! exactly once, the consumer group has committed everything the ledger
//! appended, and `vigil audit verify` accepts the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vigil_proto::events::event::Kind;
use vigil_proto::events::Event;
use vigil_tests::kafka::{group_lag, Broker};
use vigil_tests::SqlRequestView;
use vigil_tests::{
    direct_psql, show, spawn_vigil, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD, READY,
};

const TOPIC: &str = "vigil.events";
const GROUP: &str = "vigil-ledger";
/// Long enough for a restarted broker or a standby to catch up.
const CATCH_UP: Duration = Duration::from_secs(60);

/// `[bus]` for a test broker: the settings a user gets by default (those
/// of deploy/local-stack.sh and the example config: 6 partitions, a 10 s
/// session timeout), so that failover is tested as it will run.
fn bus_table(broker: &Broker, outbox: &str) -> String {
    format!(
        "[bus]\nkind = \"kafka\"\nbootstrap = \"{}\"\n{outbox}\n",
        broker.bootstrap()
    )
}

fn role_args(role: &str) -> Vec<String> {
    vec![role.into(), "--config".into(), "vigil.toml".into()]
}

/// Starts `vigil <role>` with `spec` in a fresh directory.
fn start_role(spec: GatewaySpec, role: &str) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    spec.write_config(dir.path());
    Gateway::spawn(spec, dir, role_args(role))
}

fn start_ledger(broker: &Broker) -> Gateway {
    let mut spec = GatewaySpec::new();
    spec.tables_extra = bus_table(broker, "");
    start_role(spec, "ledger")
}

fn start_proxy(broker: &Broker, outbox: &str) -> Gateway {
    let mut spec = GatewaySpec::new();
    spec.tables_extra = bus_table(broker, outbox);
    start_role(spec, "proxy")
}

/// Statements run by a [`Load`]: which the client saw succeed, which failed.
#[derive(Default, Debug)]
struct Outcome {
    ok: Vec<String>,
    failed: Vec<String>,
}

/// Clients running statements through a proxy until stopped, each with
/// one tokio-postgres connection (a new one after an error).
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Outcome>>,
}

impl Outcome {
    /// No statement failed `during` the fault (the first few, if some did).
    fn assert_none_failed(&self, during: &str) {
        assert!(
            self.failed.is_empty(),
            "statements failed {during}: {:?}",
            &self.failed[..self.failed.len().min(5)]
        );
    }
}

impl Load {
    /// `statement(worker, n)` is the n-th statement of a worker.
    fn start(
        port: u16,
        workers: usize,
        statement: impl Fn(usize, u64) -> String + Send + Sync + 'static,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let statement = Arc::new(statement);
        let workers = (0..workers)
            .map(|w| {
                let (stop, statement) = (stop.clone(), statement.clone());
                std::thread::spawn(move || run_worker(port, w, &stop, &*statement))
            })
            .collect();
        Load { stop, workers }
    }

    fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Outcome::default();
        for w in self.workers {
            let o = w.join().expect("load worker");
            all.ok.extend(o.ok);
            all.failed.extend(o.failed);
        }
        all
    }
}

fn run_worker(
    port: u16,
    worker: usize,
    stop: &AtomicBool,
    statement: &(dyn Fn(usize, u64) -> String + Send + Sync),
) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut outcome = Outcome::default();
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={AGENT} password='{AGENT_PASSWORD}' dbname=test connect_timeout=10"
    );
    let mut n = 0;
    rt.block_on(async {
        while !stop.load(Ordering::SeqCst) {
            let client = match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    client
                }
                Err(e) => {
                    outcome.failed.push(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            while !stop.load(Ordering::SeqCst) {
                let sql = statement(worker, n);
                n += 1;
                match client.simple_query(&sql).await {
                    Ok(_) => outcome.ok.push(sql),
                    Err(e) => {
                        let detail = e
                            .as_db_error()
                            .map(|d| format!("{} {}", d.code().code(), d.message()))
                            .unwrap_or_else(|| e.to_string());
                        outcome.failed.push(format!("{sql}: {detail}"));
                        break; // the session is gone: connect again
                    }
                }
                // A steady stream, not a flood: the point is faults mid-stream.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    outcome
}

fn marker_statement(tag: &'static str) -> impl Fn(usize, u64) -> String + Send + Sync {
    move |w, n| format!("SELECT '{tag}-{w}-{n}'")
}

/// A statement within a session: (session id, statement number).
type StatementKey = (String, u64);

/// Requests by statement text, and how many Responses answer each statement.
fn index(
    events: &[Event],
) -> (
    HashMap<String, Vec<StatementKey>>,
    HashMap<StatementKey, usize>,
) {
    let mut requests: HashMap<String, Vec<StatementKey>> = HashMap::new();
    let mut responses: HashMap<StatementKey, usize> = HashMap::new();
    for e in events {
        match &e.kind {
            Some(Kind::Request(r)) => requests
                .entry(r.statement().to_string())
                .or_default()
                .push((e.session_id.clone(), r.request_seq)),
            Some(Kind::Response(r)) => {
                *responses
                    .entry((e.session_id.clone(), r.request_seq))
                    .or_default() += 1
            }
            _ => {}
        }
    }
    (requests, responses)
}

/// Whether every statement in `ok` has its Request and Response in `events`.
fn all_answered(events: &[Event], ok: &[String]) -> bool {
    let (requests, responses) = index(events);
    ok.iter().all(|s| {
        requests
            .get(s)
            .is_some_and(|r| r.iter().all(|k| responses.contains_key(k)))
    })
}

/// Whether every statement in `ok` has its Request in `events`.
fn all_requested(events: &[Event], ok: &[String]) -> bool {
    let (requests, _) = index(events);
    ok.iter().all(|s| requests.contains_key(s))
}

/// The auditor's checks after a fault.
fn assert_exactly_once(events: &[Event], ok: &[String]) {
    check_exactly_once(events, ok, false)
}

/// [`assert_exactly_once`] after a proxy was killed: a Response is recorded
/// in the background once the client has its result, so the result of the
/// last statement of a session the dying proxy cut short may be missing
/// (its Request, recorded before the statement ran, may not).
fn assert_exactly_once_after_a_proxy_crash(events: &[Event], ok: &[String]) {
    check_exactly_once(events, ok, true)
}

fn check_exactly_once(events: &[Event], ok: &[String], proxy_crashed: bool) {
    eprintln!(
        "checking {} statements the client saw succeed against {} ledger events",
        ok.len(),
        events.len()
    );
    let mut ids = std::collections::HashSet::new();
    for e in events {
        assert!(
            ids.insert(&e.event_id),
            "event {} is in the ledger twice",
            e.event_id
        );
    }
    let (requests, responses) = index(events);
    for s in ok {
        let r = requests.get(s).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            r.len(),
            1,
            "{s:?}: {} Request events (want exactly 1)",
            r.len()
        );
        let answered = responses.get(&r[0]).copied().unwrap_or(0);
        if answered == 0 && proxy_crashed && is_last_of_a_cut_session(events, &r[0]) {
            continue;
        }
        assert_eq!(answered, 1, "{s:?}: want exactly one Response");
    }
    for (k, n) in &responses {
        assert_eq!(*n, 1, "statement {k:?} answered {n} times");
    }
    assert_in_order_within_sessions(events);
}

/// Whether `key` is the last statement of a session that has no
/// SessionClosed (its proxy died under it).
fn is_last_of_a_cut_session(events: &[Event], key: &StatementKey) -> bool {
    let of_session = || events.iter().filter(|e| e.session_id == key.0);
    let closed = of_session().any(|e| matches!(e.kind, Some(Kind::SessionClosed(_))));
    let last = of_session()
        .filter_map(|e| match &e.kind {
            Some(Kind::Request(r)) => Some(r.request_seq),
            _ => None,
        })
        .max();
    !closed && last == Some(key.1)
}

/// Within each session, statements are in the log in the order they ran,
/// and each statement's Response comes after its Request.
fn assert_in_order_within_sessions(events: &[Event]) {
    let mut last_request: HashMap<&str, u64> = HashMap::new();
    let mut requested: std::collections::HashSet<(&str, u64)> = Default::default();
    for e in events {
        match &e.kind {
            Some(Kind::Request(r)) => {
                if let Some(before) = last_request.insert(&e.session_id, r.request_seq) {
                    assert!(
                        before < r.request_seq,
                        "session {}: statement #{} is in the log after #{before}",
                        e.session_id,
                        r.request_seq
                    );
                }
                requested.insert((&e.session_id, r.request_seq));
            }
            Some(Kind::Response(r)) => assert!(
                requested.contains(&(e.session_id.as_str(), r.request_seq)),
                "session {}: the result of #{} is in the log before its statement",
                e.session_id,
                r.request_seq
            ),
            _ => {}
        }
    }
}

/// How long the log stood still after a fault at `fault`: once a ledger
/// answers again, and a second later (so that a checkpoint of what the
/// dead ledger appended is not taken for growth), its size is noted; the
/// time is until the signed checkpoint grows past it. Conservative: growth
/// within that second is counted from when it is next seen. Printed as
/// `what` and returned.
fn failover_time(ledger: &Gateway, fault: std::time::Instant, what: &str) -> f64 {
    let deadline = fault + CATCH_UP;
    let before = loop {
        if ledger.try_checkpoint_size().is_some() {
            std::thread::sleep(Duration::from_secs(1));
            if let Some(size) = ledger.try_checkpoint_size() {
                break size;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no ledger answers");
        std::thread::sleep(Duration::from_millis(100));
    };
    loop {
        if ledger.try_checkpoint_size().is_some_and(|s| s > before) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log did not grow past {before} entries"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = fault.elapsed().as_secs_f64();
    eprintln!("failover ({what}): the log grew again {took:.1} s after the fault");
    took
}

/// The ledger's events once the log has stopped growing for 2 s (the
/// stragglers of other partitions are in).
fn settled(ledger: &Gateway) -> Vec<Event> {
    let mut events = ledger.events();
    let mut since = std::time::Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(250));
        let now = ledger.events();
        if now.len() != events.len() {
            since = std::time::Instant::now();
        }
        events = now;
    }
    events
}

fn kill(gateway: &mut Gateway) {
    let _ = gateway.child.kill(); // SIGKILL
    let _ = gateway.child.wait();
}

fn start_standby(ledger: &Gateway, name: &str) -> vigil_tests::Started {
    spawn_vigil(
        ledger.dir.path(),
        &role_args("ledger"),
        name,
        "vigil ledger is standing by",
    )
}

/// What every fault test checks once the load has stopped: no statement
/// failed `during` the fault, every statement a client saw succeed is in
/// the log exactly once and in order, the consumer group has committed
/// everything, and `vigil audit verify` passes.
fn assert_all_recorded_after_the_fault(
    ledger: &Gateway,
    broker: &Broker,
    outcome: &Outcome,
    during: &str,
) {
    outcome.assert_none_failed(during);
    let events = ledger.wait_for_events_within(CATCH_UP, |ev| all_answered(ev, &outcome.ok));
    assert_exactly_once(&events, &outcome.ok);
    assert_group_caught_up(broker);
    audit_verify(ledger);
}

/// `vigil audit verify` against the ledger, with its published key.
fn audit_verify(ledger: &Gateway) {
    let state = ledger.dir.path().join("auditor.state");
    let out = ledger.audit(&["verify", "--state", &state.display().to_string()]);
    assert!(out.status.success(), "audit verify: {}", show(&out));
}

/// The ledger has committed its offsets up to the end of every partition.
fn assert_group_caught_up(broker: &Broker) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lag = group_lag(&broker.bootstrap(), TOPIC, GROUP);
        if lag.values().all(|l| *l == 0) {
            assert!(!lag.is_empty(), "the topic has no partitions");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ledger's committed offsets lag behind the topic: {lag:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn statements_keep_running_through_a_broker_restart_and_arrive_exactly_once() {
    let mut broker = Broker::start();
    let ledger = start_ledger(&broker);
    let proxy = start_proxy(&broker, "");
    let load = Load::start(proxy.spec.pg_port, 2, marker_statement("restart"));

    std::thread::sleep(Duration::from_millis(1500));
    broker.kill();
    // The broker is away: statements go on, their events wait in the outbox.
    std::thread::sleep(Duration::from_secs(2));
    broker.start_again();
    std::thread::sleep(Duration::from_millis(1500));
    let outcome = load.stop();

    assert!(
        outcome.ok.len() > 100,
        "only {} statements ran",
        outcome.ok.len()
    );
    assert_all_recorded_after_the_fault(&ledger, &broker, &outcome, "while the broker restarted");
}

#[test]
fn a_ledger_killed_mid_stream_is_replaced_by_its_standby_without_loss_or_duplicates() {
    let broker = Broker::start();
    let mut active = start_ledger(&broker);
    // The standby: the same config and data directory; it waits for the
    // active process's lock on the log.
    let mut standby = spawn_vigil(
        active.dir.path(),
        &role_args("ledger"),
        "standby.stderr",
        "vigil ledger is standing by",
    );
    let proxy = start_proxy(&broker, "");
    let load = Load::start(proxy.spec.pg_port, 2, marker_statement("standby"));

    std::thread::sleep(Duration::from_millis(1500));
    let killed = std::time::Instant::now();
    let _ = active.child.kill(); // SIGKILL, mid-stream
    let _ = active.child.wait();
    standby.wait_for_line(READY, CATCH_UP);
    // Failover time: until the standby appends (the load goes on meanwhile,
    // into the proxy's outbox and the broker).
    failover_time(&active, killed, "standby takes over");
    let outcome = load.stop();

    // The standby serves the same log on the same addresses.
    assert_all_recorded_after_the_fault(
        &active,
        &broker,
        &outcome,
        "while the ledger changed over",
    );
    let _ = standby.child.kill();
    let _ = standby.child.wait();
}

/// No standby this time: a new `vigil ledger` is started on the data
/// directory the moment the killed one is gone, so it joins the group
/// while the broker still counts the dead member (tansu notices a dead
/// member only when another request comes, and can then form the group
/// with the new member holding nothing). The consumer's watchdog leaves
/// and rejoins the group when it holds no partition for the session
/// timeout plus 1 s; the log must catch up, exactly once.
#[test]
fn a_ledger_restarted_at_once_after_a_kill_catches_up_without_loss_or_duplicates() {
    let broker = Broker::start();
    let mut active = start_ledger(&broker);
    let proxy = start_proxy(&broker, "");
    let load = Load::start(proxy.spec.pg_port, 2, marker_statement("restart"));
    std::thread::sleep(Duration::from_millis(1500));
    let killed = std::time::Instant::now();
    let _ = active.child.kill(); // SIGKILL, mid-stream
    let _ = active.child.wait();
    let mut fresh = spawn_vigil(
        active.dir.path(),
        &role_args("ledger"),
        "fresh.stderr",
        READY,
    );
    failover_time(&active, killed, "ledger restarted at once, no standby");
    let outcome = load.stop();
    assert_all_recorded_after_the_fault(&active, &broker, &outcome, "while the ledger restarted");
    let _ = fresh.child.kill();
    let _ = fresh.child.wait();
}

#[test]
fn a_proxy_killed_with_events_in_its_outbox_ships_them_after_a_restart() {
    let mut broker = Broker::start();
    let ledger = start_ledger(&broker);
    let proxy = start_proxy(&broker, "");
    broker.kill();

    // With the broker away, statements succeed: their events are in the
    // proxy's outbox only.
    let mut ok = Vec::new();
    for i in 0..5 {
        let sql = format!("SELECT 'outbox-{i}'");
        let out = proxy.psql(AGENT, AGENT_PASSWORD, &["-c", &sql]);
        assert!(out.status.success(), "{}", show(&out));
        ok.push(sql);
    }
    // psql has seen every result; give the background Response records
    // their few milliseconds, then crash the proxy with them on disk.
    std::thread::sleep(Duration::from_millis(300));
    let proxy = {
        let (spec, dir) = proxy.stop();
        broker.start_again();
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            !all_answered(&ledger.events(), &ok[..1]),
            "the events reached the ledger without the proxy"
        );
        Gateway::spawn(spec, dir, role_args("proxy"))
    };
    let events = ledger.wait_for_events_within(CATCH_UP, |ev| all_answered(ev, &ok));
    assert_exactly_once(&events, &ok);
    assert_group_caught_up(&broker);
    audit_verify(&ledger);
    drop(proxy);
}

#[test]
fn a_full_outbox_refuses_statements_until_the_broker_is_back() {
    let table = "kafka_outbox_full";
    let out = direct_psql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (n int)"
    ));
    assert!(out.status.success(), "{}", show(&out));
    let mut broker = Broker::start();
    let ledger = start_ledger(&broker);
    // Room for a handful of statements only.
    let proxy = start_proxy(&broker, "[bus.outbox]\nmax_events = 40");
    broker.kill();

    let mut ok = Vec::new();
    let mut refusal = None;
    for n in 0..100 {
        let sql = format!("INSERT INTO {table} VALUES ({n})");
        let out = proxy.psql(AGENT, AGENT_PASSWORD, &["-c", &sql]);
        if out.status.success() {
            ok.push(sql);
        } else {
            refusal = Some((n, String::from_utf8_lossy(&out.stderr).into_owned()));
            break;
        }
    }
    let (refused, message) = refusal.expect("the outbox never filled up");
    assert!(!ok.is_empty(), "nothing ran before the outbox filled");
    assert!(
        message.contains("outbox is full"),
        "the refusal does not say why: {message}"
    );
    // Fail closed: the refused statement never reached PostgreSQL.
    let rows = direct_psql(&format!(
        "SELECT count(*) FROM {table} WHERE n >= {refused}"
    ));
    assert_eq!(
        String::from_utf8_lossy(&rows.stdout).trim(),
        "0",
        "{}",
        show(&rows)
    );

    // The broker is back: the outbox drains, in order, and statements run again.
    broker.start_again();
    let deadline = std::time::Instant::now() + CATCH_UP;
    let after = format!("INSERT INTO {table} VALUES (1000)");
    loop {
        let out = proxy.psql(AGENT, AGENT_PASSWORD, &["-c", &after]);
        if out.status.success() {
            ok.push(after);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: {}",
            show(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = ledger.wait_for_events_within(CATCH_UP, |ev| all_answered(ev, &ok));
    assert_exactly_once(&events, &ok);
    // Each session's events in the order the proxy recorded them.
    let (requests, _) = index(&events);
    for s in &ok {
        let session = &requests[s][0].0;
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| &e.session_id == session)
            .map(|e| e.kind_name())
            .collect();
        assert_eq!(kinds.first(), Some(&"session_opened"), "{s}: {kinds:?}");
        // (The end of the session that filled the outbox may be missing:
        // it found no room.)
        if let Some(closed) = kinds.iter().position(|k| *k == "session_closed") {
            assert_eq!(closed, kinds.len() - 1, "{s}: {kinds:?}");
        }
        let request = kinds.iter().position(|k| *k == "request").unwrap();
        let response = kinds.iter().position(|k| *k == "response").unwrap();
        assert!(request < response, "{s}: {kinds:?}");
    }
    assert_group_caught_up(&broker);
    audit_verify(&ledger);
    let _ = direct_psql(&format!("DROP TABLE {table}"));
}

/// The active ledger and the broker die together (SIGKILL) mid-stream; the
/// broker comes back on its store a second later and the standby takes
/// over. Nothing the clients saw succeed is lost or doubled.
#[test]
fn the_active_ledger_and_the_broker_killed_together_lose_nothing() {
    let mut broker = Broker::start();
    let mut active = start_ledger(&broker);
    let mut standby = start_standby(&active, "standby.stderr");
    let proxy = start_proxy(&broker, "");
    let load = Load::start(proxy.spec.pg_port, 2, marker_statement("both"));

    std::thread::sleep(Duration::from_millis(1500));
    let fault = std::time::Instant::now();
    kill(&mut active);
    broker.kill();
    std::thread::sleep(Duration::from_secs(1));
    broker.start_again();
    standby.wait_for_line(READY, CATCH_UP);
    failover_time(&active, fault, "ledger and broker killed together");
    std::thread::sleep(Duration::from_millis(500));
    let outcome = load.stop();

    assert_all_recorded_after_the_fault(
        &active,
        &broker,
        &outcome,
        "while the ledger and the broker were down",
    );
    let _ = standby.child.kill();
    let _ = standby.child.wait();
}

/// Two takeovers in a row: A dies, standby B takes over, a new standby C
/// joins, B dies, C takes over. Each takeover is timed.
#[test]
fn a_standby_takes_over_twice_in_a_row_without_loss_or_duplicates() {
    let broker = Broker::start();
    let mut first = start_ledger(&broker);
    let mut second = start_standby(&first, "second.stderr");
    let proxy = start_proxy(&broker, "");
    let load = Load::start(proxy.spec.pg_port, 2, marker_statement("twice"));

    std::thread::sleep(Duration::from_millis(1500));
    let fault = std::time::Instant::now();
    kill(&mut first);
    second.wait_for_line(READY, CATCH_UP);
    failover_time(&first, fault, "first takeover");

    let mut third = start_standby(&first, "third.stderr");
    std::thread::sleep(Duration::from_millis(1500));
    let fault = std::time::Instant::now();
    let _ = second.child.kill();
    let _ = second.child.wait();
    third.wait_for_line(READY, CATCH_UP);
    failover_time(&first, fault, "second takeover");
    let outcome = load.stop();

    assert_all_recorded_after_the_fault(
        &first,
        &broker,
        &outcome,
        "while the ledger changed over twice",
    );
    let _ = third.child.kill();
    let _ = third.child.wait();
}

/// Everything at once: the proxy, the broker and the ledger are killed
/// mid-stream and started again. Clients whose statement was in flight in
/// the dying proxy see an error (their statement may or may not be in the
/// log); every statement a client saw succeed, before or after, is in the
/// log exactly once.
#[test]
fn a_proxy_the_broker_and_the_ledger_all_restarted_lose_nothing() {
    let mut broker = Broker::start();
    let mut ledger = start_ledger(&broker);
    let proxy = start_proxy(&broker, "");
    let port = proxy.spec.pg_port;
    let load = Load::start(port, 2, marker_statement("all"));

    std::thread::sleep(Duration::from_millis(1500));
    let fault = std::time::Instant::now();
    let (proxy_spec, proxy_dir) = proxy.stop();
    kill(&mut ledger);
    broker.kill();
    std::thread::sleep(Duration::from_secs(1));
    broker.start_again();
    let proxy = Gateway::spawn(proxy_spec, proxy_dir, role_args("proxy"));
    let ledger = ledger.restart(role_args("ledger"));
    failover_time(&ledger, fault, "proxy, broker and ledger restarted");
    std::thread::sleep(Duration::from_millis(1500));
    let mut outcome = load.stop();
    // And one more, certainly through the restarted proxy.
    let after = "SELECT 'all-after-the-restart'".to_string();
    let out = proxy.psql(AGENT, AGENT_PASSWORD, &["-c", &after]);
    assert!(out.status.success(), "{}", show(&out));
    outcome.ok.push(after);

    assert!(
        outcome.ok.len() > 100,
        "only {} statements ran",
        outcome.ok.len()
    );
    ledger.wait_for_events_within(CATCH_UP, |ev| all_requested(ev, &outcome.ok));
    let events = settled(&ledger);
    assert_exactly_once_after_a_proxy_crash(&events, &outcome.ok);
    assert_group_caught_up(&broker);
    audit_verify(&ledger);
    drop(proxy);
}

/// Events lost between a gateway and the ledger: a session's numbering
/// jumps. The ledger notices within seconds, without an auditor: a log
/// line, and a SequenceGap event in the log itself saying which events of
/// which session are missing. A SequenceGap published on the bus by
/// someone else is refused. `vigil audit verify` names the hole, and that
/// the ledger noticed it live.
#[test]
fn a_session_whose_events_are_lost_raises_the_gap_alarm_within_seconds() {
    use vigil_proto::events::{Request, SequenceGap, SqlStatement};
    use vigil_proto::Message;
    let broker = Broker::start();
    let ledger = start_ledger(&broker);
    let session = uuid::Uuid::now_v7().to_string();
    let event = |seq: u64, kind: Kind| Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        time_unix_nanos: 1,
        session_id: session.clone(),
        seq,
        kind: Some(kind),
        ..Default::default()
    };
    let statement = |seq: u64| {
        Kind::Request(Request::new_sql(
            seq,
            SqlStatement {
                text: format!("SELECT {seq}"),
                ..Default::default()
            },
        ))
    };
    // Events 3 and 4 of the session never arrive; 5 and 6 do.
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = [0, 1, 2, 5, 6]
        .into_iter()
        .map(|seq| {
            (
                session.clone().into_bytes(),
                event(seq, statement(seq)).encode_to_vec(),
            )
        })
        .collect();
    // A forged gap record from the bus, which the ledger must refuse.
    let forged = event(
        7,
        Kind::SequenceGap(SequenceGap {
            session_id: "someone-else".into(),
            ..Default::default()
        }),
    );
    records.push((session.clone().into_bytes(), forged.encode_to_vec()));
    let published = std::time::Instant::now();
    vigil_tests::kafka::publish(&broker.bootstrap(), TOPIC, &records);

    let gap = |ev: &[Event]| {
        ev.iter().find_map(|e| match &e.kind {
            Some(Kind::SequenceGap(g)) if g.session_id == session => Some((e.clone(), g.clone())),
            _ => None,
        })
    };
    let events = ledger.wait_for_events_within(Duration::from_secs(30), |ev| gap(ev).is_some());
    let took = published.elapsed().as_secs_f64();
    eprintln!(
        "gap alarm: the gap record was in the log {took:.1} s after the events were published"
    );
    let (record, g) = gap(&events).unwrap();
    assert_eq!((g.first_missing, g.missing), (3, 2), "{g:?}");
    assert_eq!(record.session_id, "vigil-ledger/gaps");
    assert_eq!(record.seq, 0, "the first record of the ledger's gap stream");
    assert!(
        !events.iter().any(|e| e.event_id == forged.event_id),
        "a gap record from the bus is refused"
    );
    assert!(
        ledger.stderr().contains("its numbering has a hole"),
        "the ledger logs the gap"
    );
    // The auditor's verify names the hole too, and that the ledger raised
    // the alarm when it happened. A hole is a note, not a failure (a full
    // outbox refuses statements whose events were made; see `verify`).
    let state = ledger.dir.path().join("auditor.state");
    let out = ledger.audit(&["verify", "--state", &state.display().to_string()]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = format!(
        "note  {session}: events 3 to 4 not in the log; the ledger noticed it live (record at entry"
    );
    assert!(text.contains(&line), "{text}");
}
