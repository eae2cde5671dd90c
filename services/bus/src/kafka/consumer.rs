//! The ledger's consumer: a consumer-group member that hands events to the
//! appender and commits an offset only once every event up to it is durable.
//!
//! Two threads do the work, because librdkafka's consumer is a blocking API:
//! the *poller* takes messages off the topic in batches and passes them to
//! the appender as [`Delivery`]s, and sends each batch's acknowledgements and
//! offsets, in order, to the *committer*. The committer waits for every event
//! of a batch to be acknowledged and only then commits the batch's offsets.
//! So after a crash the group resumes at the first event that may not be in
//! the log, and the log's deduplication by event id turns the replay of the
//! ones that were into no-ops: nothing lost, nothing twice.
//!
//! If an append fails (the ledger cannot write), nothing more is committed
//! and the subscriber ends: the ledger stops, and whoever takes over starts
//! from the last committed offset.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use vigil_proxy_core::SinkError;

use super::{KafkaError, KafkaSettings};
use crate::delivery::AckReceiver;
use crate::{Delivery, Subscriber};

/// Largest batch the poller takes at once.
const POLL_BATCH: usize = 4096;
/// How long the committer lets acknowledged offsets pile up before it
/// commits them (one synchronous commit per this interval at most).
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// The consuming side of the Kafka bus, owned by the ledger's appender.
///
/// The poller hands over whole polled batches: handing events over one at a
/// time let the appender wake on the first and sync tiny batches, one fsync
/// each.
pub struct KafkaSubscriber {
    rx: mpsc::Receiver<Vec<Delivery>>,
    /// What the last batch held beyond what the appender asked for, in order.
    leftover: Vec<Delivery>,
    stop: Arc<AtomicBool>,
}

/// One batch's acknowledgements and the offsets to commit once all are in.
struct Ticket {
    acks: Vec<AckReceiver>,
    /// partition -> the next offset to read (last taken + 1)
    offsets: BTreeMap<i32, i64>,
}

/// Joins the ledger's consumer group on the events topic. Events flow once
/// the group has assigned partitions to this member.
pub fn subscribe(settings: &KafkaSettings, client_id: &str) -> Result<KafkaSubscriber, KafkaError> {
    let mut config = settings.client_config(client_id);
    let session_ms = settings.session_timeout.as_millis().max(1000);
    config
        .set("group.id", &settings.consumer_group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the beginning of the topic: nothing that was
        // published before the first ledger started is skipped.
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (session_ms / 4).max(100).to_string(),
        )
        .set("fetch.wait.max.ms", "10");
    for (k, v) in &settings.properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create().map_err(|source| KafkaError::Client {
        what: "consumer",
        bootstrap: settings.bootstrap.clone(),
        source,
    })?;
    consumer
        .subscribe(&[&settings.topic])
        .map_err(|source| KafkaError::Client {
            what: "subscription",
            bootstrap: settings.bootstrap.clone(),
            source,
        })?;
    let consumer = Arc::new(consumer);
    let stop = Arc::new(AtomicBool::new(false));
    // Two polled batches may wait: the appender syncs one while the next fills.
    let (tx, rx) = mpsc::channel(2);
    let (tickets_tx, tickets_rx) = std_mpsc::channel();
    {
        let (consumer, stop) = (consumer.clone(), stop.clone());
        let watchdog = AssignmentWatchdog::new(settings.topic.clone(), settings.session_timeout);
        std::thread::Builder::new()
            .name("kafka-poller".into())
            .spawn(move || poll_loop(&consumer, &tx, &tickets_tx, &stop, watchdog))
            .expect("spawn the Kafka poller thread");
    }
    {
        let (stop, topic) = (stop.clone(), settings.topic.clone());
        std::thread::Builder::new()
            .name("kafka-committer".into())
            .spawn(move || commit_loop(&consumer, &topic, tickets_rx, &stop))
            .expect("spawn the Kafka committer thread");
    }
    Ok(KafkaSubscriber {
        rx,
        leftover: Vec::new(),
        stop,
    })
}

impl Subscriber for KafkaSubscriber {
    async fn recv_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        let max = max.max(1);
        if self.leftover.is_empty() {
            self.leftover = self.rx.recv().await?;
        }
        let mut batch = take_front(&mut self.leftover, max);
        // Whatever else is already polled rides along, without waiting.
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(more) => {
                    self.leftover = more;
                    batch.extend(take_front(&mut self.leftover, max - batch.len()));
                }
                Err(_) => break,
            }
        }
        Some(batch)
    }
}

/// Up to `n` items from the front of `v`, in order.
fn take_front(v: &mut Vec<Delivery>, n: usize) -> Vec<Delivery> {
    if v.len() <= n {
        std::mem::take(v)
    } else {
        v.drain(..n).collect()
    }
}

impl Drop for KafkaSubscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Rejoins the group when this member holds no partition for too long.
///
/// A member with no partition is always wrong here: one ledger (or one
/// approval service) consumes every partition. tansu's coordinator can
/// leave a group formed with an empty assignment after its previous
/// member was killed (it has no session timer: a dead member is noticed
/// only when another request comes, and depending on which request
/// notices it, the new member can end up leader of nothing), and nothing
/// moves it again but a JoinGroup or a LeaveGroup. So after the session
/// timeout plus 1 s without a partition (by then a member killed before
/// this one started has missed its session, so a fresh join evicts it; a
/// normal join takes a few seconds), the member leaves the group
/// (LeaveGroup) and joins again, as leader of a group that is its own.
struct AssignmentWatchdog {
    topic: String,
    patience: Duration,
    last_assigned: Instant,
    last_checked: Instant,
}

impl AssignmentWatchdog {
    fn new(topic: String, session_timeout: Duration) -> Self {
        let now = Instant::now();
        AssignmentWatchdog {
            topic,
            patience: session_timeout + Duration::from_secs(1),
            last_assigned: now,
            last_checked: now,
        }
    }

    /// Checked about once a second from the poller.
    fn check(&mut self, consumer: &BaseConsumer) {
        let now = Instant::now();
        if now.duration_since(self.last_checked) < Duration::from_secs(1) {
            return;
        }
        self.last_checked = now;
        let assigned = consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false);
        if assigned {
            self.last_assigned = now;
            return;
        }
        if now.duration_since(self.last_assigned) < self.patience {
            return;
        }
        tracing::warn!(
            waited = ?self.patience,
            "no partition assigned to this consumer; leaving the group and joining again"
        );
        consumer.unsubscribe();
        if let Err(e) = consumer.subscribe(&[&self.topic]) {
            tracing::error!(error = %e, "cannot subscribe again; retrying");
        }
        self.last_assigned = now;
    }
}

fn poll_loop(
    consumer: &BaseConsumer,
    tx: &mpsc::Sender<Vec<Delivery>>,
    tickets: &std_mpsc::Sender<Ticket>,
    stop: &AtomicBool,
    mut watchdog: AssignmentWatchdog,
) {
    while !stop.load(Ordering::SeqCst) {
        watchdog.check(consumer);
        let mut deliveries = Vec::new();
        let mut ticket = Ticket {
            acks: Vec::new(),
            offsets: BTreeMap::new(),
        };
        let mut wait = Duration::from_millis(100);
        while deliveries.len() < POLL_BATCH {
            let Some(result) = consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let message = match result {
                Ok(m) => m,
                Err(e) => {
                    // Broker gone, rebalance in progress, ...: librdkafka
                    // reconnects by itself; nothing was taken.
                    tracing::warn!(error = %e, "Kafka consumer error");
                    break;
                }
            };
            ticket
                .offsets
                .insert(message.partition(), message.offset() + 1);
            let payload = message.payload().unwrap_or_default();
            match vigil_proto::events::decode(payload) {
                Ok(event) => {
                    let (delivery, ack) = Delivery::received(event, payload.to_vec());
                    deliveries.push(delivery);
                    ticket.acks.push(ack);
                }
                Err(e) => {
                    // Not an event: nothing to append. Named by position,
                    // never by content (it could be anything).
                    tracing::error!(
                        partition = message.partition(),
                        offset = message.offset(),
                        error = %e,
                        "skipping a message on the events topic that is not a Vigil event"
                    );
                }
            }
        }
        if ticket.offsets.is_empty() {
            continue;
        }
        if tickets.send(ticket).is_err() {
            return;
        }
        if !deliveries.is_empty() && tx.blocking_send(deliveries).is_err() {
            return;
        }
    }
}

fn commit_loop(
    consumer: &BaseConsumer,
    topic: &str,
    tickets: std_mpsc::Receiver<Ticket>,
    stop: &AtomicBool,
) {
    let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    loop {
        let ticket = match tickets.recv_timeout(COMMIT_EVERY) {
            Ok(t) => Some(t),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(ticket) = ticket {
            for ack in ticket.acks {
                match ack.blocking_recv() {
                    Ok(Ok(())) => {}
                    // The ledger refused it for good (not a valid event): it
                    // must not block everything behind it. The appender has
                    // logged it.
                    Ok(Err(SinkError::Rejected(_))) => {}
                    Ok(Err(SinkError::Unavailable(reason))) => {
                        tracing::error!(%reason, "the ledger could not append; no more offsets are committed");
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(_) => {
                        // The appender is gone (shutting down): what it did
                        // not acknowledge is read again by whoever comes next.
                        commit(consumer, topic, &mut pending);
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
            pending.extend(ticket.offsets);
        }
        if !pending.is_empty() && last_commit.elapsed() >= COMMIT_EVERY {
            commit(consumer, topic, &mut pending);
            last_commit = Instant::now();
        }
    }
    commit(consumer, topic, &mut pending);
}

/// Commits what is pending; on failure (a rebalance took the partition, the
/// broker is away) the offsets stay pending and the next commit carries them,
/// or the partition's next owner reads those events again (deduplicated).
fn commit(consumer: &BaseConsumer, topic: &str, pending: &mut BTreeMap<i32, i64>) {
    if pending.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (&partition, &offset) in pending.iter() {
        if list
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .is_err()
        {
            return;
        }
    }
    match consumer.commit(&list, CommitMode::Sync) {
        Ok(()) => pending.clear(),
        Err(e) => tracing::warn!(error = %e, "Kafka offset commit failed; will retry"),
    }
}
