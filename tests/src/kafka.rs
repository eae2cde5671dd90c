//! A real Kafka-protocol broker for the tests: tansu (crates.io), one
//! process per test on a free port, its topics and committed offsets in a
//! SQLite file of the test's own, so that a restart (after SIGKILL) keeps them
//! the way a real broker's log directory would.
//!
//! The test command (`tests/run.sh`, through `deploy/install-deps.sh`)
//! installs tansu when it is missing; `$TANSU_BIN` names another binary.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Path of the tansu binary: `$TANSU_BIN`, else `tansu` on `PATH`, else
/// `~/.cargo/bin/tansu` (where `cargo install` puts it).
pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let bin = home.join(".cargo/bin/tansu");
    assert!(
        bin.is_file(),
        "tansu not found: run deploy/install-deps.sh (or set TANSU_BIN)"
    );
    bin
}

/// A running broker; killed when dropped.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker with empty storage and waits until it takes connections.
    pub fn start() -> Self {
        let mut broker = Broker {
            child: None,
            port: crate::free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        broker.spawn();
        broker
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("broker log");
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                // Relative to the working directory: the test's own file.
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("tansu exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu not listening within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the broker dies as in a crash; its storage file stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// [`Broker::kill`], then [`Broker::start_again`].
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// What the broker wrote to stderr (its warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How far a consumer group is behind: for every partition of `topic`, the
/// high watermark minus the group's committed offset (a partition without a
/// commit counts from 0). Read with rdkafka, as any Kafka tooling would.
pub fn group_lag(bootstrap: &str, topic: &str, group: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("log_level", "3")
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .expect("committed offsets");
    partitions
        .iter()
        .map(|&p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .expect("watermarks");
            let done = committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            (p, high - done)
        })
        .collect()
}

/// Publishes `records` (key, payload) to `topic` as any Kafka client could,
/// bypassing every proxy: how a test makes the ledger see events that a
/// real fault would lose or forge.
pub fn publish(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("log_level", "3")
        .create()
        .expect("producer");
    for (key, payload) in records {
        producer
            .send(BaseRecord::to(topic).key(key).payload(payload))
            .map_err(|(e, _)| e)
            .expect("queue a record");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("records delivered");
}
