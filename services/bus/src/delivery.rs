//! One event handed to the ledger, with the way back to whoever waits for it.

use tokio::sync::oneshot;
use vigil_proto::events::Event;
use vigil_proxy_core::sink::{OnRecorded, SinkError};

/// Where one record's outcome goes: a channel its publisher awaits, or a
/// call made right where the outcome is known (on the ledger's or the
/// outbox's writer thread). Answered once; dropped unanswered, it answers
/// that the event was not recorded.
pub struct Ack(Option<AckTo>);

enum AckTo {
    Channel(oneshot::Sender<Result<(), SinkError>>),
    Call(OnRecorded),
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(AckTo::Channel(_)) => "Ack::Channel",
            Some(AckTo::Call(_)) => "Ack::Call",
            None => "Ack::Answered",
        })
    }
}

impl Ack {
    /// An answer its publisher awaits on the returned receiver.
    pub fn channel() -> (Self, AckReceiver) {
        let (tx, rx) = oneshot::channel();
        (Self(Some(AckTo::Channel(tx))), rx)
    }

    /// An answer given by calling `done`.
    pub fn call(done: OnRecorded) -> Self {
        Self(Some(AckTo::Call(done)))
    }

    /// Gives the outcome.
    pub fn send(mut self, result: Result<(), SinkError>) {
        if let Some(to) = self.0.take() {
            answer(to, result);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        // A channel's receiver sees its sender dropped (the Kafka committer
        // reads that as "the appender is gone"); a callback must be told.
        if let Some(AckTo::Call(done)) = self.0.take() {
            done(Err(SinkError::Unavailable(
                "the event was dropped without being recorded".into(),
            )));
        }
    }
}

fn answer(to: AckTo, result: Result<(), SinkError>) {
    match to {
        AckTo::Channel(tx) => {
            let _ = tx.send(result);
        }
        AckTo::Call(done) => done(result),
    }
}

/// One event on its way to the ledger. Dropping it unacknowledged tells the
/// publisher the event was not recorded.
#[derive(Debug)]
pub struct Delivery {
    pub event: Event,
    /// The bytes as they arrived (Kafka), which the ledger stores as the
    /// body: never re-encoded, so a v1 body stays v1 and a field of a newer
    /// schema that this release does not know is kept, not dropped. `None`
    /// in process (embedded bus), where the event was never encoded.
    pub received: Option<Vec<u8>>,
    ack: Ack,
}

/// What the publisher (or the Kafka offset committer) awaits.
pub type AckReceiver = oneshot::Receiver<Result<(), SinkError>>;

impl Delivery {
    pub fn new(event: Event) -> (Self, AckReceiver) {
        let (ack, done) = Ack::channel();
        (Self::answered_by(event, ack), done)
    }

    /// A delivery whose outcome goes to `ack`.
    pub fn answered_by(event: Event, ack: Ack) -> Self {
        Self {
            event,
            received: None,
            ack,
        }
    }

    /// A delivery of bytes that came over the wire, decoded as `event`.
    pub fn received(event: Event, bytes: Vec<u8>) -> (Self, AckReceiver) {
        let (mut delivery, done) = Self::new(event);
        delivery.received = Some(bytes);
        (delivery, done)
    }

    /// The body the ledger stores: the bytes as received (moved out, not
    /// copied), or the event encoded when it never was.
    pub fn take_body(&mut self) -> Vec<u8> {
        use vigil_proto::Message as _;
        self.received
            .take()
            .unwrap_or_else(|| self.event.encode_to_vec())
    }

    /// Tells the publisher whether the event is durably recorded.
    pub fn ack(self, result: Result<(), SinkError>) {
        self.ack.send(result);
    }
}
