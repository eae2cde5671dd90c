//! Ships the outbox to Kafka, in order, forgetting each event only once the
//! broker has acknowledged it.
//!
//! Up to [`WINDOW`] events are in flight at once. Deliveries are taken in
//! outbox order, so "everything below `delivered` is in Kafka" always holds.
//! If a delivery fails (the broker was away longer than the producer's
//! delivery timeout, or the producer hit a fatal error), everything in
//! flight is dropped, the producer is made anew, and shipping starts again
//! at `delivered`: some events may reach Kafka twice, none is skipped, and
//! the ledger keeps the first copy of each.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::DeliveryFuture;

use super::{OutboxStore, Shared};
use crate::kafka::producer::{Producer, SendError};
use crate::kafka::KafkaSettings;

/// Events in flight to the broker at once.
const WINDOW: usize = 20_000;
/// Events read from the outbox at once.
const READ_CHUNK: usize = 2_048;
/// Acknowledged events are deleted from the outbox at most this often (or
/// every [`DELETE_EVERY_EVENTS`]).
const DELETE_EVERY: Duration = Duration::from_millis(100);
const DELETE_EVERY_EVENTS: u64 = 4_096;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct InFlight {
    seq: u64,
    size: u64,
    delivery: DeliveryFuture,
}

pub(crate) async fn run(
    store: Arc<OutboxStore>,
    shared: Arc<Shared>,
    settings: KafkaSettings,
    client_id: String,
) {
    let mut producer = make_producer(&settings, &client_id).await;
    let mut head_rx = shared.head.subscribe();
    let mut delivered = shared.first_at_open; // everything below is in Kafka
    let mut next = delivered; // the next event to send
    let mut deleted = delivered; // everything below is gone from the outbox
    let mut last_delete = Instant::now();
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut backoff = Duration::from_millis(100);

    loop {
        let head = *head_rx.borrow_and_update();
        // Fill the window from the outbox.
        let mut blocked = false;
        if next < head && inflight.len() < WINDOW {
            let want = (WINDOW - inflight.len()).min(READ_CHUNK);
            let reader = store.clone();
            let from = next;
            match tokio::task::spawn_blocking(move || reader.read(from, want)).await {
                Ok(Ok(items)) => {
                    for q in items {
                        match producer.send(&q.key, &q.payload) {
                            Ok(delivery) => {
                                inflight.push_back(InFlight {
                                    seq: q.seq,
                                    size: q.size(),
                                    delivery,
                                });
                                next = q.seq + 1;
                            }
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
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the audit outbox");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox read task failed");
                    continue;
                }
            }
        }
        let room = inflight.len() < WINDOW && !blocked;
        let more_to_read = next < *head_rx.borrow();

        // The producer takes nothing and has nothing in flight to wait for
        // (its queue is stuck, or it is broken): treat it as a failure
        // rather than spin.
        let mut failed = blocked && inflight.is_empty();
        if failed {
            // Handled below, with the delivery failures.
        } else if let Some(front) = inflight.front_mut() {
            if room && more_to_read {
                // Keep filling; take the deliveries that are already done.
                failed = !settle_ready(&mut inflight, &mut delivered, &shared);
            } else {
                tokio::select! {
                    result = &mut front.delivery => {
                        // One wake-up settles every delivery done by now, not
                        // just the one that woke us.
                        failed = !settle(result, &mut inflight, &mut delivered, &shared)
                            || !settle_ready(&mut inflight, &mut delivered, &shared);
                    }
                    _ = head_rx.changed(), if room => {}
                }
            }
        } else if !more_to_read {
            tokio::select! {
                changed = head_rx.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(DELETE_EVERY), if deleted < delivered => {}
            }
        }
        if failed {
            // Start again from the first unacknowledged event, with a new
            // producer (an idempotent producer's failure can be fatal to it).
            inflight.clear();
            next = delivered;
            tracing::warn!(
                from = delivered,
                "re-shipping the outbox after a failed delivery"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            producer = make_producer(&settings, &client_id).await;
            continue;
        } else if delivered > deleted {
            backoff = Duration::from_millis(100);
        }

        // Forget what the broker has.
        if delivered > deleted
            && (delivered - deleted >= DELETE_EVERY_EVENTS || last_delete.elapsed() >= DELETE_EVERY)
        {
            let writer = store.clone();
            let end = delivered;
            match tokio::task::spawn_blocking(move || writer.delete_below(end)).await {
                Ok(Ok(())) => deleted = end,
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot trim the audit outbox"),
                Err(e) => tracing::warn!(error = %e, "outbox trim task failed"),
            }
            last_delete = Instant::now();
        }
    }
    producer.flush(Duration::from_secs(5));
}

/// The result of a delivery if it is already known, without waiting.
fn delivery_now(
    delivery: &mut DeliveryFuture,
) -> Option<<DeliveryFuture as std::future::Future>::Output> {
    use std::future::Future;
    use std::task::{Context, Poll};
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    match std::pin::Pin::new(delivery).poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

/// Settles deliveries from the front for as long as they are already done;
/// false if one of them failed.
fn settle_ready(inflight: &mut VecDeque<InFlight>, delivered: &mut u64, shared: &Shared) -> bool {
    while let Some(front) = inflight.front_mut() {
        match delivery_now(&mut front.delivery) {
            Some(result) => {
                if !settle(result, inflight, delivered, shared) {
                    return false;
                }
            }
            None => return true,
        }
    }
    true
}

/// Takes the front delivery's result; true if it was delivered.
fn settle(
    result: <DeliveryFuture as std::future::Future>::Output,
    inflight: &mut VecDeque<InFlight>,
    delivered: &mut u64,
    shared: &Shared,
) -> bool {
    let Some(front) = inflight.pop_front() else {
        return true;
    };
    match result {
        Ok(Ok(_)) => {
            *delivered = front.seq + 1;
            shared.waiting_events.fetch_sub(1, Ordering::SeqCst);
            shared.waiting_bytes.fetch_sub(front.size, Ordering::SeqCst);
            true
        }
        Ok(Err((e, _))) => {
            tracing::warn!(seq = front.seq, error = %e, "Kafka did not take an event");
            false
        }
        Err(_) => {
            tracing::warn!(seq = front.seq, "the Kafka producer dropped an event");
            false
        }
    }
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
