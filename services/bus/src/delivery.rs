//! One event handed to the ledger, with the way back to whoever waits for it.

use tokio::sync::oneshot;
use vigil_proto::events::Event;
use vigil_proxy_core::sink::SinkError;

/// One event on its way to the ledger. Dropping it unacknowledged tells the
/// publisher the event was not recorded.
#[derive(Debug)]
pub struct Delivery {
    pub event: Event,
    ack: oneshot::Sender<Result<(), SinkError>>,
}

/// What the publisher (or the Kafka offset committer) awaits.
pub type AckReceiver = oneshot::Receiver<Result<(), SinkError>>;

impl Delivery {
    pub fn new(event: Event) -> (Self, AckReceiver) {
        let (ack, done) = oneshot::channel();
        (Self { event, ack }, done)
    }

    /// Tells the publisher whether the event is durably recorded.
    pub fn ack(self, result: Result<(), SinkError>) {
        let _ = self.ack.send(result);
    }
}
