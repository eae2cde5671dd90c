//! The event bus: how events travel from proxies to the ledger.
//!
//! Publishers see the [`EventSink`](vigil_proxy_core::EventSink) trait of
//! `vigil-proxy-core`; the ledger sees a [`Subscriber`] that hands out
//! [`Delivery`]s and acknowledges each once it is durable. Two buses
//! implement both sides:
//!
//! - [`embedded`]: one process, a bounded channel. An event is "recorded"
//!   when the ledger has appended it with a synced WAL, so it needs no storage
//!   of its own.
//! - [`kafka`] + [`outbox`]: separate processes. A proxy's event is "recorded"
//!   once it is synced into the proxy's local [`outbox`]; a shipper then
//!   produces it to a Kafka topic (idempotent, `acks=all`, keyed by session)
//!   and forgets it only when the broker has it. The ledger consumes the
//!   topic and commits offsets only after the events are durable in the log.
#![forbid(unsafe_code)]

pub mod delivery;
pub mod embedded;
pub mod group_commit;
pub mod kafka;
pub mod outbox;
pub mod own_thread;
pub mod quiet;

use std::future::Future;

pub use delivery::Delivery;
pub use embedded::{embedded, EmbeddedBus, EmbeddedSubscriber};

/// The ledger's side of a bus: batches of events to append, each to be
/// acknowledged once durable (or refused).
pub trait Subscriber: Send {
    /// Waits for at least one event, then takes up to `max` that are ready.
    /// `None` once the bus has ended (every publisher gone, or the consumer
    /// stopped after a failure): the ledger stops.
    fn recv_batch(&mut self, max: usize) -> impl Future<Output = Option<Vec<Delivery>>> + Send;

    /// Whether an event somebody waits for ([`group_commit::awaited_inline`])
    /// is waiting to be taken now. The appender hands a written batch's
    /// sync to another thread when one is (and takes it meanwhile), and
    /// syncs on its own thread when none is: a Response that arrived while
    /// the batch was written waits for company anyway, so a hand-over would
    /// only add a wake-up. A bus that cannot tell says `false`.
    fn awaited_waiting(&self) -> bool {
        false
    }

    /// The next batch to commit, up to `max` events: at once when one of
    /// them is awaited ([`group_commit::awaited_inline`]); otherwise with
    /// what else arrives within [`group_commit::LAZY_WAIT`]. `None` once
    /// the bus has ended and nothing is left.
    fn next_batch(&mut self, max: usize) -> impl Future<Output = Option<Vec<Delivery>>> + Send {
        async move {
            let mut batch = self.recv_batch(max).await?;
            let deadline = tokio::time::Instant::now() + group_commit::LAZY_WAIT;
            while batch.len() < max && !batch.iter().any(|d| group_commit::awaited_inline(&d.event))
            {
                match tokio::time::timeout_at(deadline, self.recv_batch(max - batch.len())).await {
                    Ok(Some(more)) => batch.extend(more),
                    // Timed out, or the bus has ended: commit what there is.
                    Ok(None) | Err(_) => break,
                }
            }
            Some(batch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use vigil_proto::events::{event::Kind, Event, Request, Response};

    /// A bus with nothing but the trait's own batching.
    struct Plain(mpsc::UnboundedReceiver<Delivery>);

    impl Subscriber for Plain {
        async fn recv_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
            let mut batch = Vec::new();
            (self.0.recv_many(&mut batch, max).await > 0).then_some(batch)
        }
    }

    fn delivery(kind: Kind) -> Delivery {
        Delivery::new(Event {
            kind: Some(kind),
            ..Default::default()
        })
        .0
    }

    fn kinds(batch: &[Delivery]) -> Vec<&'static str> {
        batch.iter().map(|d| d.event.kind_name()).collect()
    }

    #[tokio::test]
    async fn a_batch_of_background_records_waits_for_an_awaited_one() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut bus = Plain(rx);
        tx.send(delivery(Kind::Response(Response::default())))
            .unwrap();
        let later = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(group_commit::LAZY_WAIT / 4).await;
            later
                .send(delivery(Kind::Request(Request::default())))
                .unwrap();
        });
        let batch = bus.next_batch(64).await.unwrap();
        assert_eq!(kinds(&batch), ["response", "request"]);
        // An awaited record is never held back.
        tx.send(delivery(Kind::Request(Request::default())))
            .unwrap();
        assert_eq!(kinds(&bus.next_batch(64).await.unwrap()), ["request"]);
        // A background record with no company is committed once the bus ends.
        tx.send(delivery(Kind::Response(Response::default())))
            .unwrap();
        drop(tx);
        assert_eq!(kinds(&bus.next_batch(64).await.unwrap()), ["response"]);
        assert!(bus.next_batch(64).await.is_none());
    }
}
