//! One event handed to the ledger, with the way back to whoever waits for it.

use tokio::sync::oneshot;
use vigil_proto::events::Event;
use vigil_proxy_core::sink::SinkError;

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
    ack: oneshot::Sender<Result<(), SinkError>>,
}

/// What the publisher (or the Kafka offset committer) awaits.
pub type AckReceiver = oneshot::Receiver<Result<(), SinkError>>;

impl Delivery {
    pub fn new(event: Event) -> (Self, AckReceiver) {
        let (ack, done) = oneshot::channel();
        let received = None;
        (
            Self {
                event,
                received,
                ack,
            },
            done,
        )
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
        let _ = self.ack.send(result);
    }
}
