//! Where proxies send events.
//!
//! The trait is runtime-neutral (a boxed `Future`), so this crate needs no
//! async runtime; the bus crate implements it for the embedded bus and Kafka.

use std::future::Future;
use std::pin::Pin;

use vigil_proto::events::Event;

/// A boxed future, as returned by [`EventSink::record`].
pub type RecordFuture = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'static>>;

/// Records events for the audit trail.
///
/// `record` resolves `Ok` only once the event can no longer be lost (for the
/// embedded bus: appended to the ledger with a synced WAL). Proxies await it
/// before they forward a statement: a statement whose audit cannot be recorded
/// is not run.
pub trait EventSink: Send + Sync + 'static {
    fn record(&self, event: Event) -> RecordFuture;
}

/// The event could not be recorded durably.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SinkError {
    #[error("the audit ledger is not accepting events ({0})")]
    Unavailable(String),
    #[error("the audit ledger refused the event ({0})")]
    Rejected(String),
}
