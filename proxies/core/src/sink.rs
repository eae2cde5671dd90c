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

    /// Hands `event` over now, in the same order as [`EventSink::record`],
    /// and has `done` called once with the outcome.
    ///
    /// A sink that can call back itself (the embedded bus calls `done` on
    /// the ledger's appender thread the moment the event is durable)
    /// answers [`Handover::Done`]: no task waits on the record, which saves
    /// a wake-up on the path from a durable record to its session. The
    /// default hands over through [`EventSink::record`] and awaits its
    /// outcome in the future it hands back ([`Handover::Outcome`]).
    /// Outcomes of several records may arrive in any order.
    fn record_then(&self, event: Event, done: OnRecorded) -> Handover {
        let pending = self.record(event);
        let done = AnswerOnDrop(Some(done));
        Handover::Outcome(Box::pin(async move { done.answer(pending.await) }))
    }
}

/// Calls back once: with the outcome, or, dropped unanswered (its future
/// dropped before it finished), with a failure: a record nobody saw
/// through is not durable.
struct AnswerOnDrop(Option<OnRecorded>);

impl AnswerOnDrop {
    fn answer(mut self, result: Result<(), SinkError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for AnswerOnDrop {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(SinkError::Unavailable(
                "the record was abandoned before its outcome was known".into(),
            )));
        }
    }
}

/// Called once with the outcome of one record.
pub type OnRecorded = Box<dyn FnOnce(Result<(), SinkError>) + Send + 'static>;

/// A future [`EventSink::record_then`] leaves to its caller.
pub type HandoverFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What [`EventSink::record_then`] leaves to its caller.
#[must_use = "a future left to the caller must be run for the callback to be called"]
pub enum Handover {
    /// Handed over; the sink calls back by itself.
    Done,
    /// Handed over; the caller must run this future to completion (on any
    /// executor, in any order with others): it calls back.
    Outcome(HandoverFuture),
    /// Not handed over yet (the bus is full): the caller must run this
    /// future, which hands the event over (the sink calls back later), and
    /// must hand over nothing later of the same stream before it has
    /// finished, or the later event could overtake this one.
    Pending(HandoverFuture),
}

/// The event could not be recorded durably.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SinkError {
    #[error("the audit ledger is not accepting events ({0})")]
    Unavailable(String),
    #[error("the audit ledger refused the event ({0})")]
    Rejected(String),
}
