//! The outbox's writer: proxies record events here; one synced write per
//! burst (group commit), then every waiting publisher is acknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use vigil_proto::events::Event;
use vigil_proto::Message;
use vigil_proxy_core::sink::{EventSink, RecordFuture, SinkError};

use super::{OutboxStore, Shared};

/// Largest burst one synced write takes.
const MAX_BURST: usize = 4096;

struct Pending {
    key: Vec<u8>,
    payload: Vec<u8>,
    ack: oneshot::Sender<Result<(), SinkError>>,
}

/// The publishing side of the Kafka bus, as proxies see it. Cheap to clone.
#[derive(Clone)]
pub struct OutboxSink {
    tx: mpsc::Sender<Pending>,
}

impl OutboxSink {
    pub(crate) fn start(store: Arc<OutboxStore>, shared: Arc<Shared>) -> Self {
        let (tx, rx) = mpsc::channel(2 * MAX_BURST);
        tokio::spawn(write_loop(store, shared, rx));
        Self { tx }
    }
}

impl EventSink for OutboxSink {
    fn record(&self, event: Event) -> RecordFuture {
        let (ack, done) = oneshot::channel();
        let pending = Pending {
            key: crate::kafka::message_key(&event).as_bytes().to_vec(),
            payload: event.encode_to_vec(),
            ack,
        };
        // Enqueue now, while the caller still holds its place in line: a
        // session's events enter the outbox in the order they were made.
        let queued = match self.tx.try_send(pending) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(p)) => Some(p),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Box::pin(async { Err(stopped()) });
            }
        };
        let tx = self.tx.clone();
        Box::pin(async move {
            if let Some(p) = queued {
                tx.send(p).await.map_err(|_| stopped())?;
            }
            done.await.unwrap_or_else(|_| Err(stopped()))
        })
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
                let _ = p.ack.send(Err(SinkError::Unavailable(format!(
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
        let writer = store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = writer.append(first, &accepted);
            (result, accepted)
        })
        .await;
        let result = match written {
            Ok((Ok(()), accepted)) => {
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
            Ok((Err(e), _)) => {
                tracing::error!(error = %e, "cannot write the audit outbox");
                Err(SinkError::Unavailable(format!(
                    "cannot write the audit outbox: {e}"
                )))
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox write task failed");
                Err(SinkError::Unavailable("the outbox write failed".into()))
            }
        };
        for (ack, _) in acks {
            let _ = ack.send(result.clone());
        }
    }
}
