//! The event bus: how events travel from proxies to the ledger.
//!
//! Publishers see the [`EventSink`] trait of `vigil-proxy-core`; the ledger
//! consumes [`Delivery`]s and acknowledges each once it is durable. The
//! embedded bus ([`embedded`]) connects them in one process with a bounded
//! channel: an event is "recorded" when the ledger has appended it with a
//! synced WAL, so it needs no storage of its own.
#![forbid(unsafe_code)]

pub mod embedded;

pub use embedded::{embedded, Delivery, EmbeddedBus, EmbeddedSubscriber};
