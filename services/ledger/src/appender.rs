//! Appends events from the bus to the log, one group commit per batch.
//!
//! While one batch is being synced to disk, new events queue on the bus; the
//! next batch takes them all. So a burst of concurrent statements shares one
//! fsync, and durability costs little throughput.
//!
//! The appender has a thread of its own ([`start`]), and appends on it: a
//! statement's record goes from the proxy's task to this thread and, once
//! durable, straight back through the publisher's callback. Appending from
//! a task of the shared runtime would add a hand-over to a blocking thread
//! and back (two more wake-ups) to every statement's path.

use std::sync::Arc;

use vigil_bus::Subscriber;
use vigil_ledger::{NewEntry, Store};
use vigil_proto::events::Event;
use vigil_proxy_core::SinkError;

use crate::gap_log::GapLog;
use crate::gaps::SequenceWatch;

/// Largest batch one group commit takes.
pub const MAX_BATCH: usize = 4096;

/// How long a batch holding only events nobody waits on (Responses,
/// SessionClosed, CancelRequested) may wait for company before it is synced.
/// Without it, a lone session pays two fsyncs per statement: its Response
/// is synced on its own, and the next statement's Request queues behind that
/// sync. With it, the Response rides along with the next Request (or is
/// synced this much later); the statement path waits for one fsync.
pub const LAZY_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

use vigil_proto::events::event::Kind;

/// Whether a publisher waits for this event's durability before going on
/// (SessionOpened, Request, Decision, ...): such an event is synced at once.
fn awaited_inline(event: &Event) -> bool {
    !matches!(
        event.kind,
        Some(Kind::Response(_))
            | Some(Kind::SessionClosed(_))
            | Some(Kind::CancelRequested(_))
            | Some(Kind::LoginRefused(_))
    )
}

/// The next batch: everything waiting, and if none of it is awaited inline,
/// whatever else arrives within [`LAZY_WAIT`].
async fn next_batch(bus: &mut impl Subscriber) -> Option<Vec<vigil_bus::Delivery>> {
    let mut batch = bus.recv_batch(MAX_BATCH).await?;
    let deadline = tokio::time::Instant::now() + LAZY_WAIT;
    while batch.len() < MAX_BATCH && !batch.iter().any(|d| awaited_inline(&d.event)) {
        match tokio::time::timeout_at(deadline, bus.recv_batch(MAX_BATCH - batch.len())).await {
            Ok(Some(more)) => batch.extend(more),
            // Timed out, or every publisher is gone: sync what there is.
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch)
}

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

/// Appends until the bus ends. Blocks its thread while a batch is synced:
/// run it only on the appender's own thread.
async fn run(store: Arc<Store>, mut bus: impl Subscriber) {
    let watch = Arc::new(std::sync::Mutex::new(SequenceWatch::default()));
    let reporter = tokio::spawn(report_gaps(watch.clone(), GapLog::new(store.clone())));
    while let Some(batch) = next_batch(&mut bus).await {
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
            continue;
        }
        let numbered: Vec<(String, u64, bool)> = deliveries
            .iter()
            .map(|d| {
                let ends = matches!(d.event.kind, Some(Kind::SessionClosed(_)));
                (d.event.session_id.clone(), d.event.seq, ends)
            })
            .collect();
        let result = match store.append_batch(entries) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, events = deliveries.len(), "ledger append failed");
                Err(SinkError::Unavailable(format!("append failed: {e}")))
            }
        };
        if result.is_ok() {
            let now = std::time::Instant::now();
            let mut watch = watch.lock().unwrap_or_else(|e| e.into_inner());
            for (session, seq, ends) in &numbered {
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
        for delivery in deliveries {
            delivery.ack(result.clone());
        }
    }
    reporter.abort();
    tracing::info!("ledger appender stopped: the bus has ended");
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
