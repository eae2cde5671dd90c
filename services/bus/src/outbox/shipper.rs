//! Ships the outbox to Kafka, in order, forgetting each event only once the
//! broker has acknowledged it.
//!
//! Up to [`WINDOW`] events are in flight at once. Delivery reports may come
//! back in any order (partitions are independent); they are settled in
//! outbox order, so "everything below `delivered` is in Kafka" always holds.
//! Events are taken from the outbox's in-memory copy of its newest events
//! when it has them, and read from disk otherwise.
//! If a delivery fails (the broker was away longer than the producer's
//! delivery timeout, or the producer hit a fatal error), everything in
//! flight is dropped, the producer is made anew, and shipping starts again
//! at `delivered`: some events may reach Kafka twice, none is skipped, and
//! the ledger keeps the first copy of each.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::Queued;
use super::{OutboxError, OutboxStore, Shared};
use crate::kafka::producer::{Producer, Report, SendError};
use crate::kafka::KafkaSettings;

/// Events in flight to the broker at once.
const WINDOW: usize = 20_000;
/// Events taken from the outbox at once.
const READ_CHUNK: usize = 2_048;
/// Acknowledged events are deleted from the outbox at most this often (or
/// every [`DELETE_EVERY_EVENTS`]).
const DELETE_EVERY: Duration = Duration::from_millis(100);
const DELETE_EVERY_EVENTS: u64 = 4_096;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One event sent and not yet settled. The window holds consecutive
/// sequence numbers, oldest first.
struct InFlight {
    seq: u64,
    size: u64,
    delivered: bool,
}

/// What the shipper knows about the window.
struct Window {
    inflight: VecDeque<InFlight>,
    /// Everything below is in Kafka.
    delivered: u64,
}

impl Window {
    /// Applies delivery reports, then settles the front for as long as it is
    /// delivered. False if a report says an event did not make it.
    fn apply(&mut self, reports: Vec<Report>, shared: &Shared) -> bool {
        let Some(front) = self.inflight.front().map(|f| f.seq) else {
            return true;
        };
        for report in reports {
            // Reports only come from the current producer, for events in the
            // window; anything else is ignored rather than trusted.
            let Some(slot) = report
                .seq
                .checked_sub(front)
                .and_then(|i| self.inflight.get_mut(i as usize))
            else {
                continue;
            };
            if let Err(e) = report.result {
                tracing::warn!(seq = report.seq, error = %e, "Kafka did not take an event");
                return false;
            }
            slot.delivered = true;
        }
        let (mut events, mut bytes) = (0, 0);
        while self.inflight.front().is_some_and(|f| f.delivered) {
            let settled = self.inflight.pop_front().expect("front exists");
            self.delivered = settled.seq + 1;
            events += 1;
            bytes += settled.size;
        }
        if events > 0 {
            shared.waiting_events.fetch_sub(events, Ordering::SeqCst);
            shared.waiting_bytes.fetch_sub(bytes, Ordering::SeqCst);
        }
        true
    }
}

/// Up to `max` events from `from` on: from memory when it holds them,
/// otherwise from the store (only as far as where memory begins).
async fn take(
    store: &Arc<OutboxStore>,
    shared: &Shared,
    from: u64,
    max: usize,
) -> Result<Vec<Queued>, OutboxError> {
    let in_memory = shared
        .fresh
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(from, max);
    match in_memory {
        Ok(items) => Ok(items),
        Err(memory_starts) => {
            let want = max.min((memory_starts - from) as usize);
            let reader = store.clone();
            tokio::task::spawn_blocking(move || reader.read(from, want))
                .await
                .unwrap_or_else(|e| Err(OutboxError::Task(format!("outbox read task failed: {e}"))))
        }
    }
}

pub(crate) async fn run(
    store: Arc<OutboxStore>,
    shared: Arc<Shared>,
    settings: KafkaSettings,
    client_id: String,
) {
    let mut producer = make_producer(&settings, &client_id).await;
    let mut head_rx = shared.head.subscribe();
    let mut window = Window {
        inflight: VecDeque::new(),
        delivered: shared.first_at_open,
    };
    let mut next = window.delivered; // the next event to send
    let mut deleted = window.delivered; // everything below is gone from the outbox
    let mut last_delete = Instant::now();
    let mut backoff = Duration::from_millis(100);

    loop {
        let head = *head_rx.borrow_and_update();
        // Fill the window.
        let mut blocked = false;
        if next < head && window.inflight.len() < WINDOW {
            let want = (WINDOW - window.inflight.len()).min(READ_CHUNK);
            match take(&store, &shared, next, want).await {
                Ok(items) => {
                    for q in items {
                        match producer.send(q.seq, &q.key, &q.payload) {
                            Ok(()) => {
                                window.inflight.push_back(InFlight {
                                    seq: q.seq,
                                    size: q.size(),
                                    delivered: false,
                                });
                                next = q.seq + 1;
                            }
                            // What was taken and not sent is read again from
                            // the store next time.
                            Err(SendError::QueueFull) => {
                                blocked = true;
                                break;
                            }
                            Err(SendError::Other(e)) => {
                                tracing::warn!(error = %e, "cannot hand an event to the Kafka producer");
                                blocked = true;
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the audit outbox");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        let room = window.inflight.len() < WINDOW && !blocked;
        let more_to_read = next < *head_rx.borrow();

        // Settle what has arrived; then, if there is nothing to send, wait
        // for reports or new events. The producer takes nothing and has
        // nothing in flight to wait for (its queue is stuck, or it is
        // broken): treat it as a failure rather than spin.
        let mut failed = !window.apply(producer.take_reports(), &shared)
            || (blocked && window.inflight.is_empty());
        let keep_filling = room && more_to_read;
        if !failed && !keep_filling {
            if !window.inflight.is_empty() {
                tokio::select! {
                    reports = producer.reports() => failed = !window.apply(reports, &shared),
                    _ = head_rx.changed(), if room => {}
                }
            } else if !more_to_read {
                tokio::select! {
                    changed = head_rx.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep(DELETE_EVERY), if deleted < window.delivered => {}
                }
            }
        }
        if failed {
            // Start again from the first unacknowledged event, with a new
            // producer (an idempotent producer's failure can be fatal to it).
            window.inflight.clear();
            next = window.delivered;
            tracing::warn!(
                from = window.delivered,
                "re-shipping the outbox after a failed delivery"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            producer = make_producer(&settings, &client_id).await;
            continue;
        } else if window.delivered > deleted {
            backoff = Duration::from_millis(100);
        }

        // Forget what the broker has.
        let delivered = window.delivered;
        if delivered > deleted
            && (delivered - deleted >= DELETE_EVERY_EVENTS || last_delete.elapsed() >= DELETE_EVERY)
        {
            let writer = store.clone();
            match tokio::task::spawn_blocking(move || writer.delete_below(delivered)).await {
                Ok(Ok(())) => deleted = delivered,
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot trim the audit outbox"),
                Err(e) => tracing::warn!(error = %e, "outbox trim task failed"),
            }
            last_delete = Instant::now();
        }
    }
    producer.flush(Duration::from_secs(5));
}

async fn make_producer(settings: &KafkaSettings, client_id: &str) -> Producer {
    let mut backoff = Duration::from_millis(200);
    loop {
        match Producer::new(settings, client_id) {
            Ok(p) => return p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the Kafka producer; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    use super::*;
    use crate::outbox::{fresh::Fresh, OutboxLimits};

    fn shared(waiting: u64) -> Shared {
        Shared {
            waiting_events: AtomicU64::new(waiting),
            waiting_bytes: AtomicU64::new(waiting * 10),
            head: tokio::sync::watch::channel(0).0,
            first_at_open: 0,
            fresh: Mutex::new(Fresh::new(0)),
            limits: OutboxLimits::default(),
        }
    }

    fn window(first: u64, n: u64) -> Window {
        Window {
            inflight: (first..first + n)
                .map(|seq| InFlight {
                    seq,
                    size: 10,
                    delivered: false,
                })
                .collect(),
            delivered: first,
        }
    }

    fn ok(seq: u64) -> Report {
        Report {
            seq,
            result: Ok(()),
        }
    }

    #[test]
    fn reports_out_of_order_settle_only_the_delivered_front() {
        let shared = shared(5);
        let mut w = window(10, 5);
        // Partitions answer independently: 12 and 14 first.
        assert!(w.apply(vec![ok(12), ok(14)], &shared));
        assert_eq!(
            w.delivered, 10,
            "10 is not in Kafka yet, so nothing settles"
        );
        assert!(w.apply(vec![ok(10)], &shared));
        assert_eq!(w.delivered, 11);
        assert!(w.apply(vec![ok(11), ok(13)], &shared));
        assert_eq!(w.delivered, 15);
        assert!(w.inflight.is_empty());
        assert_eq!(shared.waiting_events.load(Ordering::SeqCst), 0);
        assert_eq!(shared.waiting_bytes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_failed_delivery_is_reported_and_nothing_after_it_settles() {
        let shared = shared(3);
        let mut w = window(0, 3);
        let failed = Report {
            seq: 1,
            result: Err("Local: Message timed out".into()),
        };
        assert!(!w.apply(vec![ok(2), failed], &shared));
        assert_eq!(w.delivered, 0);
        assert_eq!(shared.waiting_events.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn reports_outside_the_window_are_ignored() {
        let shared = shared(2);
        let mut w = window(5, 2);
        assert!(w.apply(vec![ok(3), ok(7), ok(100)], &shared));
        assert_eq!(w.delivered, 5);
        assert_eq!(w.inflight.len(), 2);
        assert!(w.apply(vec![ok(5), ok(6)], &shared));
        assert_eq!(w.delivered, 7);
    }
}
