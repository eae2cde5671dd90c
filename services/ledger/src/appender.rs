//! Appends events from the bus to the log, one group commit per sync.
//!
//! While one batch is being synced to disk, new events queue on the bus; the
//! next batch takes them all. So a burst of concurrent statements shares one
//! fsync, and durability costs little throughput.
//!
//! The appender has a thread of its own ([`start`]), and writes on it: a
//! statement's record goes from the proxy's task to this thread and, once
//! durable, straight back through the publisher's callback. Appending from
//! a task of the shared runtime would add a hand-over to a blocking thread
//! and back (two more wake-ups) to every statement's path.
//!
//! A written batch is made durable on the same thread when no awaited
//! record waits on the bus; when one is, a second thread (the syncer)
//! syncs while the appender seals, hashes and writes the next batch, and
//! the sync after that covers everything written meanwhile. No event is
//! answered before a sync that began after its batch was written.

use std::sync::Arc;

use vigil_bus::group_commit::{Committer, Durability};
use vigil_bus::Subscriber;
use vigil_ledger::{NewEntry, Store};
use vigil_proto::events::{event::Kind, Event};
use vigil_proxy_core::SinkError;

use crate::gap_log::GapLog;
use crate::gaps::SequenceWatch;

/// Largest batch one group commit takes.
pub const MAX_BATCH: usize = 4096;

/// Turns an event into what the log stores: the leaf commits to the id, time
/// and kind; `body`, the protobuf bytes as they arrived, becomes the
/// (salted) body.
pub fn to_entry(event: &Event, body: Vec<u8>) -> Result<NewEntry, String> {
    let id = uuid::Uuid::parse_str(&event.event_id)
        .map_err(|_| format!("event id {:?} is not a UUID", event.event_id))?;
    if event.kind.is_none() {
        return Err("event has no kind".into());
    }
    // Vigil's session ids are UUIDs and short names; a longer one could
    // neither be found by session nor be watched for gaps cheaply.
    if event.session_id.len() > vigil_ledger::store::MAX_INDEX_TERM_LEN {
        return Err(format!(
            "session id of {} bytes (at most {})",
            event.session_id.len(),
            vigil_ledger::store::MAX_INDEX_TERM_LEN
        ));
    }
    // What only the ledger records (retention runs and gaps, in their own
    // streams) never comes from the bus: a proxy or anyone who can publish
    // could otherwise forge a run that makes deleted bodies look pruned, or
    // a gap record that muddles the ledger's own.
    if event
        .kind
        .as_ref()
        .is_some_and(crate::own_records::is_own_kind)
        || event
            .session_id
            .starts_with(crate::own_records::LEDGER_STREAM_PREFIX)
    {
        return Err("the ledger's own records are refused from the bus".into());
    }
    Ok(NewEntry {
        event_id: *id.as_bytes(),
        time_unix_nanos: event.time_unix_nanos,
        kind: event.kind_name().to_string(),
        body,
        session_id: event.session_id.clone(),
        seq: event.seq,
        subject: event
            .identity
            .as_ref()
            .map(|i| i.subject.clone())
            .unwrap_or_default(),
    })
}

/// Starts the appender on its own thread; the returned handle resolves when
/// it stops, which is when the bus ends (embedded: every publisher is gone;
/// Kafka: the consumer stopped). Dropping the handle stops it, and drops
/// the subscriber (a Kafka consumer then commits and leaves its group).
pub fn start(
    store: Arc<Store>,
    bus: impl Subscriber + 'static,
) -> std::io::Result<vigil_bus::own_thread::Running> {
    vigil_bus::own_thread::spawn("vigil-appender", move || run(store, bus))
}

/// Appends until the bus ends. Each batch is written on this thread; its
/// sync runs here too when no record somebody waits for is queued (one
/// statement alone pays one sync and no hand-over, even when its Response
/// arrived meanwhile), and on the syncer's thread otherwise,
/// while this thread takes and writes the next batch: one sync then covers
/// every batch written while the one before ran. Blocks its thread while it
/// writes or syncs: run it only on the appender's own thread.
async fn run(store: Arc<Store>, mut bus: impl Subscriber) {
    let watch = Arc::new(std::sync::Mutex::new(SequenceWatch::default()));
    let reporter = tokio::spawn(report_gaps(watch.clone(), GapLog::new(store.clone())));
    let metrics = Arc::new(BatchMetrics::new());
    let durable = Arc::new(Durable {
        store: store.clone(),
        watch,
        metrics: metrics.clone(),
    });
    let committer = Committer::start("vigil-syncer", durable);
    while let Some(batch) = bus.next_batch(MAX_BATCH).await {
        let started = std::time::Instant::now();
        metrics.events.observe(batch.len() as f64);
        let Some((entries, written)) = to_entries(batch) else {
            continue;
        };
        if let Err(e) = store.write_batch(entries) {
            tracing::error!(error = %e, events = written.deliveries.len(), "ledger append failed");
            written.ack(&Err(SinkError::Unavailable(format!("append failed: {e}"))));
            continue;
        }
        metrics.write.observe(started.elapsed().as_secs_f64());
        committer.commit(written, bus.awaited_waiting());
    }
    // Syncs and answers what it still holds, then stops.
    drop(committer);
    reporter.abort();
    tracing::info!("ledger appender stopped: the bus has ended");
}

/// A batch written to the log and not yet durable: its deliveries, and the
/// stream positions the gap watch sees once it is.
struct Written {
    deliveries: Vec<vigil_bus::Delivery>,
    numbered: Vec<(String, u64, bool)>,
}

impl Written {
    fn ack(self, result: &Result<(), SinkError>) {
        for delivery in self.deliveries {
            delivery.ack(result.clone());
        }
    }
}

/// Turns a batch into the log's entries; events the ledger refuses are
/// answered at once. `None` when nothing is left to write.
fn to_entries(batch: Vec<vigil_bus::Delivery>) -> Option<(Vec<NewEntry>, Written)> {
    let mut entries = Vec::with_capacity(batch.len());
    let mut deliveries = Vec::with_capacity(batch.len());
    for mut delivery in batch {
        let body = delivery.take_body();
        match to_entry(&delivery.event, body) {
            Ok(entry) => {
                entries.push(entry);
                deliveries.push(delivery);
            }
            Err(reason) => {
                tracing::warn!(%reason, "event refused by the ledger");
                delivery.ack(Err(SinkError::Rejected(reason)));
            }
        }
    }
    if entries.is_empty() {
        return None;
    }
    let numbered = deliveries
        .iter()
        .map(|d| {
            let ends = matches!(d.event.kind, Some(Kind::SessionClosed(_)));
            (d.event.session_id.clone(), d.event.seq, ends)
        })
        .collect();
    Some((
        entries,
        Written {
            deliveries,
            numbered,
        },
    ))
}

/// What makes written batches durable and answers their publishers; used
/// by the appender's thread and the syncer's alike.
struct Durable {
    store: Arc<Store>,
    watch: Arc<std::sync::Mutex<SequenceWatch>>,
    metrics: Arc<BatchMetrics>,
}

impl Durability for Durable {
    type Written = Written;

    /// One sync for all of `written` (and whatever else was written before
    /// it), then every delivery is answered with its outcome.
    fn sync_and_ack(&self, written: Vec<Written>) {
        let started = std::time::Instant::now();
        let result = match self.store.sync() {
            Ok(()) => Ok(()),
            Err(e) => {
                let events: usize = written.iter().map(|w| w.deliveries.len()).sum();
                tracing::error!(error = %e, events, "ledger sync failed");
                Err(SinkError::Unavailable(format!("append failed: {e}")))
            }
        };
        self.metrics.sync.observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            let now = std::time::Instant::now();
            let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
            for (session, seq, ends) in written.iter().flat_map(|w| &w.numbered) {
                if let crate::gaps::Observed::Implausible { next } =
                    watch.observe(session, *seq, *ends, now)
                {
                    tracing::error!(
                        %session,
                        seq,
                        expected_near = next,
                        "an event numbered far past its session's others: forged or corrupt; not watched for gaps"
                    );
                }
            }
        }
        for w in written {
            w.ack(&result);
        }
    }

    fn refuse(&self, written: Vec<Written>, why: &str) {
        let refused = Err(SinkError::Unavailable(format!("ledger: {why}")));
        for w in written {
            w.ack(&refused);
        }
    }
}

/// How the appender's batches go: their sizes, how long each takes from
/// its arrival to its write, and how long each sync takes (one sync may
/// cover several batches).
struct BatchMetrics {
    events: vigil_metrics::Histogram,
    write: vigil_metrics::Histogram,
    sync: vigil_metrics::Histogram,
}

/// Events per batch: one to [`MAX_BATCH`].
const BATCH_EVENTS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];

impl BatchMetrics {
    fn new() -> Self {
        Self {
            events: vigil_metrics::histogram(
                "vigil_ledger_batch_events",
                "Events the appender took as one group commit.",
                &[],
                BATCH_EVENTS,
            ),
            write: vigil_metrics::histogram(
                "vigil_ledger_batch_write_seconds",
                "Time from taking a batch to its write to the log (sealing, hashing, the write), before its sync.",
                &[],
                vigil_metrics::LATENCY_SECONDS,
            ),
            sync: vigil_metrics::histogram(
                "vigil_ledger_sync_seconds",
                "Time of one sync of the log, which makes every batch written before it durable.",
                &[],
                vigil_metrics::LATENCY_SECONDS,
            ),
        }
    }
}

/// Every second: the holes in sessions' numbering that stayed open past
/// the grace, as a log line each, the gap counter, and a record in the log.
async fn report_gaps(watch: Arc<std::sync::Mutex<SequenceWatch>>, log: GapLog) {
    let log = Arc::new(std::sync::Mutex::new(log));
    let gaps = vigil_metrics::counter(
        "vigil_ledger_sequence_gaps_total",
        "Holes in a session's event numbering noticed by the ledger: events that never reached the log.",
        &[],
    );
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let overdue = watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .overdue(std::time::Instant::now());
        for gap in &overdue {
            gaps.inc();
            tracing::error!(
                session = %gap.session,
                first_missing = gap.first_missing,
                missing = gap.missing,
                "events of this session never reached the log: its numbering has a hole"
            );
        }
        if overdue.is_empty() && log.lock().unwrap_or_else(|e| e.into_inner()).is_idle() {
            continue;
        }
        let log = log.clone();
        let written = tokio::task::spawn_blocking(move || {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(overdue)
        })
        .await;
        // The log line and the counter above stand even if this fails; the
        // records stay queued and are written on a later tick.
        match written {
            Ok(Ok(0)) => {}
            Ok(Ok(queued)) => tracing::warn!(queued, "gap records queued for the next batch"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot record a gap in the log; trying again")
            }
            Err(e) => tracing::error!(error = %e, "gap recording task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::events::{Request, RetentionPruned};
    use vigil_proto::Message;

    fn event(session: &str, kind: Kind) -> Event {
        Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            time_unix_nanos: 1,
            session_id: session.into(),
            seq: 3,
            kind: Some(kind),
            ..Default::default()
        }
    }

    #[test]
    fn the_bus_cannot_forge_the_ledgers_own_records() {
        let run = Kind::RetentionPruned(RetentionPruned::default());
        let request = Kind::Request(Request::default());
        let entry = |e: Event| to_entry(&e, e.encode_to_vec());
        assert!(entry(event("", run.clone())).is_err());
        assert!(entry(event("0190a0a0-0000-7000-8000-000000000001", run)).is_err());
        assert!(entry(event(crate::retention::RETENTION_STREAM, request.clone())).is_err());
        assert!(entry(event(crate::gap_log::GAP_STREAM, request.clone())).is_err());
        let gap = Kind::SequenceGap(vigil_proto::events::SequenceGap::default());
        assert!(entry(event("0190a0a0-0000-7000-8000-000000000001", gap)).is_err());
        assert!(entry(event(&"s".repeat(1025), request.clone())).is_err());
        let fine = entry(event("0190a0a0-0000-7000-8000-000000000001", request)).unwrap();
        assert_eq!(fine.seq, 3);
    }
}
