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

    /// Whether events are waiting to be taken now. The appender hands a
    /// written batch's sync to another thread when they are (and takes
    /// them meanwhile), and syncs on its own thread when they are not. A
    /// bus that cannot tell says `false`.
    fn has_ready(&self) -> bool {
        false
    }
}
