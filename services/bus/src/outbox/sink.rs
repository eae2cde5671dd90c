//! The outbox's writer: proxies record events here; one synced write per
//! burst (group commit), then every waiting publisher is acknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use vigil_proto::events::Event;
use vigil_proto::Message;
use vigil_proxy_core::sink::{
    EventSink, Handover, HandoverFuture, OnRecorded, RecordFuture, SinkError,
};

use crate::delivery::Ack;

use super::{OutboxStore, Shared};

/// Largest burst one synced write takes.
const MAX_BURST: usize = 4096;

struct Pending {
    key: Vec<u8>,
    payload: Vec<u8>,
    ack: Ack,
}

/// The publishing side of the Kafka bus, as proxies see it. Cheap to clone.
#[derive(Clone)]
pub struct OutboxSink {
    tx: mpsc::Sender<Pending>,
}

impl OutboxSink {
    /// Starts the writer on a thread of its own (see
    /// [`crate::own_thread`]); it stops when every sink is dropped.
    pub(crate) fn start(store: Arc<OutboxStore>, shared: Arc<Shared>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(2 * MAX_BURST);
        // It ends when every sink is gone; the sinks' callbacks say what
        // failed before that.
        crate::own_thread::spawn("vigil-outbox", move || write_loop(store, shared, rx))?.detach();
        Ok(Self { tx })
    }
}

impl OutboxSink {
    /// Enqueues now, while the caller still holds its place in line: a
    /// session's events enter the outbox in the order they were made. A
    /// full queue leaves the enqueueing to the returned future.
    fn hand_over(&self, event: &Event, ack: Ack) -> Option<HandoverFuture> {
        let pending = Pending {
            key: crate::kafka::message_key(event).as_bytes().to_vec(),
            payload: event.encode_to_vec(),
            ack,
        };
        match self.tx.try_send(pending) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(p)) => {
                let tx = self.tx.clone();
                Some(Box::pin(async move {
                    if let Err(mpsc::error::SendError(p)) = tx.send(p).await {
                        p.ack.send(Err(stopped()));
                    }
                }))
            }
            Err(mpsc::error::TrySendError::Closed(p)) => {
                p.ack.send(Err(stopped()));
                None
            }
        }
    }
}

impl EventSink for OutboxSink {
    fn record(&self, event: Event) -> RecordFuture {
        let (ack, done) = Ack::channel();
        let queued = self.hand_over(&event, ack);
        Box::pin(async move {
            if let Some(queued) = queued {
                queued.await;
            }
            done.await.unwrap_or_else(|_| Err(stopped()))
        })
    }

    fn record_then(&self, event: Event, done: OnRecorded) -> Handover {
        match self.hand_over(&event, Ack::call(done)) {
            None => Handover::Done,
            Some(queued) => Handover::Pending(queued),
        }
    }
}

fn stopped() -> SinkError {
    SinkError::Unavailable("the audit outbox has stopped".into())
}

async fn write_loop(store: Arc<OutboxStore>, shared: Arc<Shared>, mut rx: mpsc::Receiver<Pending>) {
    let mut burst = Vec::with_capacity(MAX_BURST);
    loop {
        burst.clear();
        if rx.recv_many(&mut burst, MAX_BURST).await == 0 {
            return;
        }
        let limits = shared.limits;
        let mut events = shared.waiting_events.load(Ordering::SeqCst);
        let mut bytes = shared.waiting_bytes.load(Ordering::SeqCst);
        let mut accepted = Vec::with_capacity(burst.len());
        let mut acks = Vec::with_capacity(burst.len());
        // Once one event of a burst finds no room, the rest are refused too,
        // even smaller ones: a session's events must not skip one.
        let mut full = false;
        for p in burst.drain(..) {
            let size = (p.key.len() + p.payload.len()) as u64;
            full = full || events + 1 > limits.max_events || bytes + size > limits.max_bytes;
            if full {
                p.ack.send(Err(SinkError::Unavailable(format!(
                    "the audit outbox is full ({events} events, {bytes} bytes wait for the Kafka broker; limits {} events, {} bytes); statements are refused until it drains",
                    limits.max_events, limits.max_bytes
                ))));
                continue;
            }
            events += 1;
            bytes += size;
            accepted.push((p.key, p.payload));
            acks.push((p.ack, size));
        }
        if accepted.is_empty() {
            continue;
        }
        let first = *shared.head.borrow();
        let n = accepted.len() as u64;
        // This thread is the writer's own: it blocks on the synced write.
        let result = match store.append(first, &accepted) {
            Ok(()) => {
                let total: u64 = acks.iter().map(|(_, s)| s).sum();
                shared.waiting_events.fetch_add(n, Ordering::SeqCst);
                shared.waiting_bytes.fetch_add(total, Ordering::SeqCst);
                // In memory for the shipper before the head says it exists.
                shared
                    .fresh
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(first, accepted);
                shared.head.send_replace(first + n);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the audit outbox");
                Err(SinkError::Unavailable(format!(
                    "cannot write the audit outbox: {e}"
                )))
            }
        };
        for (ack, _) in acks {
            ack.send(result.clone());
        }
    }
}
