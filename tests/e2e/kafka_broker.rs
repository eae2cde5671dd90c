//! The broker the Kafka tests rely on, checked with rdkafka (the client Vigil
//! uses) before those tests trust it: an idempotent producer's acks=all
//! messages are all there once, in order per key; a consumer group's
//! committed offsets are where it committed them, a new member resumes
//! after them and a broker killed with SIGKILL and started again keeps both
//! the messages and the offsets.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use vigil_tests::kafka::Broker;

const TOPIC: &str = "conformance";
const PARTITIONS: i32 = 3;
const MESSAGES: usize = 300;
const GROUP: &str = "conformance-group";

fn config(broker: &Broker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.bootstrap())
        .set("log_level", "3");
    c
}

fn create_topic(broker: &Broker) {
    let admin: AdminClient<DefaultClientContext> = config(broker).create().expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt
        .block_on(admin.create_topics(
            [&NewTopic::new(
                TOPIC,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topic");
    for r in results {
        r.expect("topic created");
    }
}

/// Message `i`: key `k<i % 7>`, value `v<i>`.
fn produce_all(broker: &Broker) {
    let producer: ThreadedProducer<DefaultProducerContext> = config(broker)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..MESSAGES {
        let (key, value) = (format!("k{}", i % 7), format!("v{i}"));
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .expect("queue message");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every message acknowledged");
}

fn consumer(broker: &Broker) -> BaseConsumer {
    let c: BaseConsumer = config(broker)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    c
}

/// Reads until `want` messages arrived or `wait` passed: (partition, offset, key, value).
fn read(c: &BaseConsumer, want: usize, wait: Duration) -> Vec<(i32, i64, String, String)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    while got.len() < want && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            let text =
                |b: Option<&[u8]>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
            got.push((m.partition(), m.offset(), text(m.key()), text(m.payload())));
        }
    }
    got
}

/// The group's committed offsets, by partition, as a fresh member sees them.
fn committed(broker: &Broker) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = config(broker)
        .set("group.id", GROUP)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The next offset per partition after what was read (what a consumer commits).
fn next_offsets(read: &[(i32, i64, String, String)]) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for (p, o, _, _) in read {
        let e = next.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    next
}

#[test]
fn messages_and_committed_offsets_survive_a_broker_restart() {
    let mut broker = Broker::start();
    create_topic(&broker);
    produce_all(&broker);

    // A first member reads some of the messages and commits what it read.
    let first = consumer(&broker);
    let part = read(&first, MESSAGES / 2, Duration::from_secs(30));
    assert!(part.len() >= MESSAGES / 2, "read only {}", part.len());
    let want = next_offsets(&part);
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &want {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
            .unwrap();
    }
    first
        .commit(&tpl, CommitMode::Sync)
        .expect("commit offsets");
    drop(first); // leaves the group (close)

    assert_eq!(committed(&broker), want, "committed offsets as committed");

    // The broker crashes and comes back: messages and offsets are kept.
    broker.restart();
    assert_eq!(
        committed(&broker),
        want,
        "committed offsets after a broker restart"
    );

    // A new member resumes after the committed offsets: together the two
    // read every message exactly once, each key's values in produce order.
    let second = consumer(&broker);
    let rest = read(&second, MESSAGES - part.len(), Duration::from_secs(30));
    let mut all: Vec<_> = part.iter().chain(rest.iter()).cloned().collect();
    // Nothing more arrives: no duplicates beyond the total.
    assert!(
        read(&second, 1, Duration::from_secs(2)).is_empty(),
        "a message was delivered twice"
    );
    assert_eq!(all.len(), MESSAGES, "{}", broker.log());
    all.sort_by_key(|(p, o, _, _)| (*p, *o));
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (_, _, k, v) in &all {
        by_key
            .entry(k.clone())
            .or_default()
            .push(v[1..].parse().unwrap());
    }
    let mut values: Vec<usize> = by_key.values().flatten().copied().collect();
    values.sort_unstable();
    assert_eq!(values, (0..MESSAGES).collect::<Vec<_>>());
    for (key, vals) in by_key {
        assert!(
            vals.windows(2).all(|w| w[0] < w[1]),
            "key {key}: values out of order {vals:?}"
        );
    }
}
