//! Kafka bus benchmark (tests/bench/kafka-bench.sh starts the broker and a
//! real `vigil ledger` process, then runs this).
//!
//! Plays N proxies: each records events into its own durable outbox (the
//! proxy's real `vigil_bus::outbox`, synced group commits) at a fixed rate,
//! and the outbox's shipper produces them to Kafka; the ledger process
//! consumes, appends and signs checkpoints. Measures:
//! - sustained events/s from the first publish until a signed checkpoint
//!   covers the last event;
//! - lag from publish to inclusion in a signed checkpoint, for every 200th
//!   event (a probe): the probe's leaf index comes from the ledger's gRPC
//!   API, the checkpoint times from polling `/checkpoint` every 5 ms.
//!
//! - the CPU time each process took over the run (`--pids name=PID,...`,
//!   read from /proc), per event: on two shared cores that is the budget.
//!
//! Usage: vigil-kafka-bench --bootstrap HOST:PORT --ledger-http URL
//!        --ledger-grpc URL [--proxies 2] [--rate 25000] [--seconds 20]
//!        [--property librdkafka.key=value ...] [--pids name=PID,...]
//!
//! Drain mode, to see the ledger's side alone (the script runs the steps):
//! `--prefill N` produces N events straight into the topic (no outbox), then
//! reads them all back with a consumer of its own (the broker's fetch rate)
//! and exits; `--drain N` then waits for a ledger started afterwards to
//! cover N events with a signed checkpoint and reports its rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use vigil_bus::kafka::KafkaSettings;
use vigil_bus::outbox::{Outbox, OutboxLimits};
use vigil_proto::events::{
    event::Kind, Event, Identity, Protocol, Request, SqlProtocolPath, SqlStatement,
};
use vigil_proto::ledger::ledger_client::LedgerClient;
use vigil_proto::ledger::{get_inclusion_proof_request::Leaf, GetInclusionProofRequest};
use vigil_proxy_core::EventSink;

const PROBE_EVERY: u64 = 200;
const EVENTS_PER_SESSION: u64 = 20;

struct Args {
    bootstrap: String,
    ledger_http: String,
    ledger_grpc: String,
    proxies: usize,
    rate: u64,
    seconds: u64,
    /// librdkafka properties for the proxies' producers (`--property k=v`).
    properties: Vec<(String, String)>,
    /// Processes whose CPU time to report, besides this one.
    pids: Vec<(String, u32)>,
    prefill: Option<u64>,
    drain: Option<u64>,
    /// `--count-topic yes`: print how many messages and distinct event ids
    /// the topic holds, and exit (a check of the broker).
    count_topic: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        bootstrap: String::new(),
        ledger_http: String::new(),
        ledger_grpc: String::new(),
        proxies: 2,
        rate: 25_000,
        seconds: 20,
        properties: Vec::new(),
        pids: Vec::new(),
        prefill: None,
        drain: None,
        count_topic: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = value,
            "--ledger-http" => args.ledger_http = value,
            "--ledger-grpc" => args.ledger_grpc = value,
            "--proxies" => args.proxies = value.parse().expect("--proxies N"),
            "--rate" => args.rate = value.parse().expect("--rate events/s"),
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            "--prefill" => args.prefill = Some(value.parse().expect("--prefill N")),
            "--drain" => args.drain = Some(value.parse().expect("--drain N")),
            "--count-topic" => args.count_topic = value == "yes",
            "--pids" => {
                for pair in value.split(',').filter(|p| !p.is_empty()) {
                    let (name, pid) = pair.split_once('=').expect("--pids name=PID,...");
                    args.pids.push((name.into(), pid.parse().expect("a PID")));
                }
            }
            "--property" => {
                let (k, v) = value.split_once('=').expect("--property key=value");
                args.properties.push((k.into(), v.into()));
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.bootstrap.is_empty(), "--bootstrap is required");
    assert!(
        args.prefill.is_some()
            || args.count_topic
            || (!args.ledger_http.is_empty() && !args.ledger_grpc.is_empty()),
        "--ledger-http and --ledger-grpc are required"
    );
    args
}

/// A Request event of about 600 bytes, like a proxied statement's.
fn event(session: &str, seq: u64) -> Event {
    Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        time_unix_nanos: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
        session_id: session.to_string(),
        seq,
        identity: Some(Identity {
            subject: "bench-agent".into(),
            issuer: "https://login.example.org".into(),
            groups: vec!["agents".into(), "research".into()],
            client_id: "bench".into(),
            auth_method: "oidc".into(),
            roles: vec!["agents".into()],
            ..Default::default()
        }),
        connection: "bench-pg".into(),
        protocol: Protocol::Postgres as i32,
        kind: Some(Kind::Request(Request::new_sql(
            seq,
            SqlStatement {
                text: format!(
                    "SELECT p.id, p.mrn, p.name, e.code, e.started_at FROM patients p JOIN encounters e \
                     ON e.patient_id = p.id WHERE e.started_at > now() - interval '30 days' AND p.ward = {} \
                     ORDER BY e.started_at DESC LIMIT 100 /* {} */",
                    seq % 40,
                    "x".repeat(200)
                ),
                path: SqlProtocolPath::Simple as i32,
                ..Default::default()
            },
        ))),
    }
}

/// The broker's own ingest rate, measured first in the same run: `n` of the
/// same events sent as fast as possible with the proxies' producer settings
/// (idempotent, acks=all) to a topic of their own, no outbox, no ledger.
async fn broker_baseline(settings: &KafkaSettings, n: u64) -> f64 {
    let mut settings = settings.clone();
    settings.topic = "vigil.bench-baseline".into();
    vigil_bus::kafka::ensure_topic(&settings, Duration::from_secs(10))
        .await
        .expect("baseline topic");
    produce(&settings, n, "bench-baseline", false).await
}

/// Sends `n` bench events to the settings' topic as fast as the producer
/// takes them; returns events/s. `fresh`: every event new (its own id, so
/// the ledger keeps each); otherwise 1,000 made up front are sent round.
async fn produce(settings: &KafkaSettings, n: u64, client_id: &str, fresh: bool) -> f64 {
    use vigil_bus::kafka::producer::SendError;
    use vigil_proto::Message as _;
    let producer = vigil_bus::kafka::Producer::new(settings, client_id).expect("producer");
    // Made up front only when they are sent round.
    let events: Vec<(String, Vec<u8>)> = (0..if fresh { 0 } else { 1000 })
        .map(|i| {
            let e = event(&uuid::Uuid::now_v7().to_string(), i);
            (e.session_id.clone(), e.encode_to_vec())
        })
        .collect();
    let began = Instant::now();
    let (mut sent, mut reported) = (0u64, 0u64);
    while sent < n {
        let made;
        let (key, payload) = if fresh {
            let e = event(
                &format!("prefill-{}", sent / EVENTS_PER_SESSION),
                sent % EVENTS_PER_SESSION,
            );
            made = (e.session_id.clone(), e.encode_to_vec());
            &made
        } else {
            &events[(sent % 1000) as usize]
        };
        match producer.send(sent, key.as_bytes(), payload) {
            Ok(()) => sent += 1,
            Err(SendError::QueueFull) => reported += count_delivered(producer.reports().await),
            Err(SendError::Other(e)) => panic!("baseline send: {e}"),
        }
    }
    while reported < n {
        reported += count_delivered(producer.reports().await);
    }
    n as f64 / began.elapsed().as_secs_f64()
}

/// A consumer in a group of its own, reading the topic from the start and
/// committing nothing.
fn topic_reader(settings: &KafkaSettings, name: &str) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = settings
        .client_config(name)
        .set("group.id", format!("{name}-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&settings.topic]).expect("subscribe");
    consumer
}

/// Reads the whole events topic with a consumer of its own (until it is
/// quiet for 5 s): messages, and distinct event ids among them.
fn count_topic(settings: &KafkaSettings) -> (u64, usize) {
    use rdkafka::message::Message as _;
    let consumer = topic_reader(settings, "bench-audit");
    let mut ids = std::collections::HashSet::new();
    let mut messages = 0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(5) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            messages += 1;
            quiet_since = Instant::now();
            if let Ok(e) = vigil_proto::events::decode(m.payload().unwrap_or_default()) {
                ids.insert(e.event_id);
            }
        }
    }
    (messages, ids.len())
}

fn count_delivered(reports: Vec<vigil_bus::kafka::producer::Report>) -> u64 {
    for r in &reports {
        r.result.as_ref().expect("delivered");
    }
    reports.len() as u64
}

/// CPU seconds (user + system) a process has used so far, from
/// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its ")".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU time of this process and of `--pids`, sampled at the start of a run.
struct CpuMeter {
    procs: Vec<(String, String, f64)>,
    began: Instant,
}

impl CpuMeter {
    fn start(pids: &[(String, u32)]) -> Self {
        let mut procs = vec![("bench (proxies)".to_string(), "self".to_string())];
        procs.extend(pids.iter().map(|(n, p)| (n.clone(), p.to_string())));
        Self {
            procs: procs
                .into_iter()
                .map(|(n, p)| {
                    let c = cpu_seconds(&p).unwrap_or(f64::NAN);
                    (n, p, c)
                })
                .collect(),
            began: Instant::now(),
        }
    }

    /// Prints cores used and CPU microseconds per event, per process.
    fn report(&self, events: u64) {
        let wall = self.began.elapsed().as_secs_f64();
        let mut total_us = 0.0;
        for (name, pid, at_start) in &self.procs {
            let used = cpu_seconds(pid).unwrap_or(f64::NAN) - at_start;
            let us = used * 1e6 / events as f64;
            total_us += us;
            println!(
                "cpu {name}: {used:.1} s over {wall:.1} s ({:.2} cores), {us:.1} us per event",
                used / wall
            );
        }
        println!("cpu all measured processes: {total_us:.1} us per event");
    }
}

/// Prefill: `n` events straight into the events topic with the proxies'
/// producer (no outbox), then read back by a consumer of its own: how fast
/// the broker serves a backlog, with no ledger behind it.
async fn prefill(settings: &KafkaSettings, n: u64) {
    use rdkafka::message::Message as _;
    vigil_bus::kafka::ensure_topic(settings, Duration::from_secs(10))
        .await
        .expect("events topic");
    let rate = produce(settings, n, "bench-prefill", true).await;
    println!(
        "prefill: {n} events into {} at {rate:.0} events/s",
        settings.topic
    );
    let consumer = topic_reader(settings, "bench-fetch");
    let mut began = None;
    let mut got = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while got < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            began.get_or_insert_with(Instant::now);
            got += u64::from(m.payload().is_some());
        }
    }
    let secs = began.map_or(f64::NAN, |b| b.elapsed().as_secs_f64());
    println!(
        "broker fetch baseline: a bare consumer read {got} events in {secs:.2} s: {:.0} events/s",
        got as f64 / secs
    );
}

/// Drain: a ledger started after the prefill works through the backlog;
/// timed from the first checkpoint that shows progress to the one that
/// covers all `n`.
fn drain(args: &Args, n: u64) {
    let http = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let cpu = CpuMeter::start(&args.pids);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first: Option<(Instant, u64)> = None;
    let mut last = (Instant::now(), 0);
    while last.1 < n {
        assert!(
            Instant::now() < deadline,
            "the ledger never covered {n} events: {}",
            last.1
        );
        if let Some(size) = checkpoint_size(&http, &args.ledger_http) {
            if size > last.1 {
                last = (Instant::now(), size);
                first.get_or_insert(last);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (t0, s0) = first.expect("progress");
    let secs = last.0.duration_since(t0).as_secs_f64();
    println!(
        "ledger drain: {} events from the first signed checkpoint to the last in {secs:.2} s: {:.0} events/s",
        last.1 - s0,
        (last.1 - s0) as f64 / secs
    );
    cpu.report(n);
}

fn checkpoint_size(client: &ureq::Agent, url: &str) -> Option<u64> {
    let text = client
        .get(&format!("{url}/checkpoint"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    text.lines().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    if args.count_topic {
        let settings = KafkaSettings::new(args.bootstrap.clone(), "vigil.events");
        let (messages, distinct) = tokio::task::block_in_place(|| count_topic(&settings));
        println!("topic vigil.events: {messages} messages, {distinct} distinct event ids");
        return;
    }
    if let Some(n) = args.prefill {
        let settings = KafkaSettings::new(args.bootstrap.clone(), "vigil.events");
        return prefill(&settings, n).await;
    }
    if let Some(n) = args.drain {
        return tokio::task::block_in_place(|| drain(&args, n));
    }
    let http = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let start_size = checkpoint_size(&http, &args.ledger_http).expect("ledger /checkpoint");

    // The checkpoint poller: (time, size) of every change.
    let checkpoints: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop_polling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (cps, stop, url, http) = (
            checkpoints.clone(),
            stop_polling.clone(),
            args.ledger_http.clone(),
            http.clone(),
        );
        std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(size) = checkpoint_size(&http, &url) {
                    if size != last {
                        cps.lock().unwrap().push((Instant::now(), size));
                        last = size;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let mut settings = KafkaSettings::new(args.bootstrap.clone(), "vigil.events");
    settings.properties.extend(args.properties.iter().cloned());
    let baseline = broker_baseline(&settings, 200_000).await;
    println!(
        "baseline: the producer alone into tansu (no outbox, no ledger): {baseline:.0} events/s"
    );
    let dirs: Vec<tempfile::TempDir> = (0..args.proxies)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let per_proxy = args.rate / args.proxies as u64;
    let total_per_proxy = per_proxy * args.seconds;
    let cpu = CpuMeter::start(&args.pids);
    let began = Instant::now();
    let mut publishers = Vec::new();
    for (p, dir) in dirs.iter().enumerate() {
        let outbox = Outbox::open(dir.path(), OutboxLimits::default()).expect("outbox");
        let _shipper = outbox.ship(settings.clone(), format!("bench-proxy-{p}"));
        let sink = outbox.sink().expect("outbox writer thread");
        publishers.push(tokio::spawn(async move {
            // Publish in 1 ms ticks at the proxy's share of the rate.
            let mut probes = Vec::new();
            let mut pending = Vec::new();
            let mut session = uuid::Uuid::now_v7().to_string();
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut sent: u64 = 0;
            while sent < total_per_proxy {
                tick.tick().await;
                let due = (began.elapsed().as_secs_f64() * per_proxy as f64) as u64;
                while sent < due.min(total_per_proxy) {
                    if sent.is_multiple_of(EVENTS_PER_SESSION) {
                        session = uuid::Uuid::now_v7().to_string();
                    }
                    let e = event(&session, sent % EVENTS_PER_SESSION);
                    if sent.is_multiple_of(PROBE_EVERY) {
                        probes.push((e.event_id.clone(), Instant::now()));
                    }
                    pending.push(sink.record(e));
                    sent += 1;
                }
                if pending.len() >= 512 {
                    for f in pending.drain(..) {
                        f.await.expect("outbox accepted the event");
                    }
                }
            }
            for f in pending.drain(..) {
                f.await.expect("outbox accepted the event");
            }
            (probes, outbox)
        }));
    }
    let mut probes = Vec::new();
    let mut outboxes = Vec::new();
    for p in publishers {
        let (pr, ob) = p.await.unwrap();
        probes.extend(pr);
        outboxes.push(ob);
    }
    let published_in = began.elapsed();
    let total = total_per_proxy * args.proxies as u64;
    let want = start_size + total;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut shipped_at = None;
    let covered_at = loop {
        if shipped_at.is_none() && outboxes.iter().all(|o| o.status().waiting_events == 0) {
            shipped_at = Some(began.elapsed());
        }
        let last = checkpoints.lock().unwrap().last().copied();
        if let Some((at, size)) = last {
            if size >= want {
                break at;
            }
        }
        if Instant::now() >= deadline {
            let (messages, distinct) = count_topic(&settings);
            panic!(
                "the ledger never caught up: checkpoint {last:?} of {want}; still in the outboxes: {:?}; \
                 the topic holds {messages} messages, {distinct} distinct event ids",
                outboxes.iter().map(|o| o.status()).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop_polling.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.join().unwrap();
    cpu.report(total_per_proxy * args.proxies as u64);
    drop(outboxes);

    // Each probe's leaf index, then the first checkpoint that covers it.
    let channel = tonic::transport::Channel::from_shared(args.ledger_grpc.clone())
        .expect("--ledger-grpc URL")
        .connect()
        .await
        .expect("ledger gRPC");
    let mut grpc = LedgerClient::new(channel);
    let cps = checkpoints.lock().unwrap().clone();
    let mut lags = Vec::new();
    for (id, published) in &probes {
        let index = grpc
            .get_inclusion_proof(GetInclusionProofRequest {
                leaf: Some(Leaf::EventId(id.clone())),
                tree_size: 0,
            })
            .await
            .expect("probe in the ledger")
            .into_inner()
            .index;
        let (at, _) = cps
            .iter()
            .find(|(_, size)| *size > index)
            .expect("a checkpoint covers the probe");
        lags.push(at.saturating_duration_since(*published).as_secs_f64() * 1000.0);
    }
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let elapsed = covered_at.duration_since(began).as_secs_f64();
    let rate = total as f64 / elapsed;
    let (p50, p99) = (percentile(&lags, 0.50), percentile(&lags, 0.99));
    println!(
        "proxies {}  offered {} events/s for {} s  ({total} events, published in {:.2} s)",
        args.proxies,
        args.rate,
        args.seconds,
        published_in.as_secs_f64()
    );
    if let Some(shipped) = shipped_at {
        println!(
            "every outbox empty (all acknowledged by the broker) after {:.2} s: {:.0} events/s into Kafka",
            shipped.as_secs_f64(),
            total as f64 / shipped.as_secs_f64()
        );
    }
    println!("end to end: {rate:.0} events/s (first publish to a signed checkpoint covering the last event, {elapsed:.2} s)");
    println!("publish -> signed checkpoint lag over {} probes: p50 {p50:.0} ms, p99 {p99:.0} ms, max {:.0} ms", lags.len(), lags.last().copied().unwrap_or(f64::NAN));
    println!(
        "end to end against the broker's own ingest rate: x{:.2}",
        rate / baseline
    );
    println!("against the target (20000 events/s, p99 < 2000 ms): throughput x{:.2}, p99 {:.2} of the budget", rate / 20_000.0, p99 / 2000.0);
}
