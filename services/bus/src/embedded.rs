//! The embedded in-process bus: a bounded queue from every proxy session to
//! the ledger's appender ([`crate::quiet`]: a record nobody waits for does
//! not wake it), with a per-event acknowledgement.

use vigil_proto::events::Event;
use vigil_proxy_core::sink::{
    EventSink, Handover, HandoverFuture, OnRecorded, RecordFuture, SinkError,
};

use crate::delivery::Ack;
use crate::group_commit::awaited_inline;
use crate::quiet::{self, QuietReceiver, QuietSender, SendError, TrySendError};
use crate::{Delivery, Subscriber};

/// The publishing side; cheap to clone, shared by all sessions.
#[derive(Clone, Debug)]
pub struct EmbeddedBus {
    tx: QuietSender<Delivery>,
}

/// The consuming side, owned by the ledger's appender.
#[derive(Debug)]
pub struct EmbeddedSubscriber {
    rx: QuietReceiver<Delivery>,
}

/// A bus holding at most `capacity` unacknowledged-and-unread events; past
/// that, publishers wait (backpressure instead of unbounded memory).
pub fn embedded(capacity: usize) -> (EmbeddedBus, EmbeddedSubscriber) {
    let (tx, rx) = quiet::quiet(capacity);
    (EmbeddedBus { tx }, EmbeddedSubscriber { rx })
}

impl EmbeddedBus {
    /// Enqueues now, while the caller still holds its place in line, so that
    /// a session's events reach the ledger in the order they were made. A
    /// full bus leaves the enqueueing to the returned future (the caller
    /// waits there: backpressure).
    fn hand_over(&self, delivery: Delivery) -> Option<HandoverFuture> {
        let awaited = awaited_inline(&delivery.event);
        match self.tx.try_send(delivery, awaited) {
            Ok(()) => None,
            Err(TrySendError::Full(delivery)) => {
                let queued = self.tx.send(delivery, awaited);
                Some(Box::pin(async move {
                    if let Err(SendError(delivery)) = queued.await {
                        delivery.ack(Err(stopped()));
                    }
                }))
            }
            Err(TrySendError::Closed(delivery)) => {
                delivery.ack(Err(stopped()));
                None
            }
        }
    }
}

fn stopped() -> SinkError {
    SinkError::Unavailable("the ledger has stopped".into())
}

impl EventSink for EmbeddedBus {
    fn record(&self, event: Event) -> RecordFuture {
        let (delivery, done) = Delivery::new(event);
        let queued = self.hand_over(delivery);
        Box::pin(async move {
            if let Some(queued) = queued {
                queued.await;
            }
            done.await.unwrap_or_else(|_| Err(stopped()))
        })
    }

    fn record_then(&self, event: Event, done: OnRecorded) -> Handover {
        match self.hand_over(Delivery::answered_by(event, Ack::call(done))) {
            None => Handover::Done,
            Some(queued) => Handover::Pending(queued),
        }
    }
}

impl EmbeddedSubscriber {
    /// Waits for at least one event, then takes up to `max` that are ready:
    /// the ledger appends them as one group commit. `None` once every
    /// publisher is gone.
    pub async fn recv_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        self.rx.recv_many(max).await
    }
}

impl Subscriber for EmbeddedSubscriber {
    async fn recv_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        EmbeddedSubscriber::recv_batch(self, max).await
    }

    fn awaited_waiting(&self) -> bool {
        self.rx.awaited_waiting()
    }

    async fn next_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        self.rx.next_batch(max).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn record_resolves_with_the_consumers_ack_in_order() {
        let (bus, mut sub) = embedded(16);
        let a = bus.record(event(1));
        let b = bus.record(event(2));
        let batch = sub.recv_batch(10).await.unwrap();
        assert_eq!(
            batch.iter().map(|d| d.event.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let mut it = batch.into_iter();
        it.next().unwrap().ack(Ok(()));
        it.next()
            .unwrap()
            .ack(Err(SinkError::Rejected("disk full".into())));
        assert_eq!(a.await, Ok(()));
        assert_eq!(b.await, Err(SinkError::Rejected("disk full".into())));
    }

    #[tokio::test]
    async fn unacknowledged_or_stopped_means_not_recorded() {
        let (bus, mut sub) = embedded(16);
        let a = bus.record(event(1));
        drop(sub.recv_batch(1).await.unwrap());
        assert!(matches!(a.await, Err(SinkError::Unavailable(_))));
        drop(sub);
        assert!(matches!(
            bus.record(event(2)).await,
            Err(SinkError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_full_bus_waits_instead_of_failing() {
        let (bus, mut sub) = embedded(1);
        let a = bus.record(event(1));
        let b = bus.record(event(2));
        let consumer = tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < 2 {
                for d in sub.recv_batch(8).await.unwrap() {
                    seen.push(d.event.seq);
                    d.ack(Ok(()));
                }
            }
            seen
        });
        assert_eq!(a.await, Ok(()));
        assert_eq!(b.await, Ok(()));
        assert_eq!(consumer.await.unwrap(), vec![1, 2]);
    }
}
