//! The producer the outbox shipper sends with.

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use super::{KafkaError, KafkaSettings};

/// An idempotent, `acks=all` producer to the events topic.
pub struct Producer {
    inner: FutureProducer,
    topic: String,
}

/// Why an event could not be handed to the producer.
#[derive(Debug)]
pub enum SendError {
    /// librdkafka's own queue is full: wait for deliveries, then send again.
    QueueFull,
    Other(rdkafka::error::KafkaError),
}

impl Producer {
    pub fn new(settings: &KafkaSettings, client_id: &str) -> Result<Self, KafkaError> {
        let mut config = settings.client_config(client_id);
        config
            // Exactly once per partition, in order, even across retries; every
            // in-sync replica has it before it counts as delivered.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set(
                "message.timeout.ms",
                settings.delivery_timeout.as_millis().to_string(),
            )
            // Small batches, sent soon: the ledger's lag matters more than
            // the last percent of throughput.
            .set("linger.ms", "2")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "100000")
            .set("compression.type", "none");
        for (k, v) in &settings.properties {
            config.set(k, v);
        }
        let inner = config.create().map_err(|source| KafkaError::Client {
            what: "producer",
            bootstrap: settings.bootstrap.clone(),
            source,
        })?;
        Ok(Self {
            inner,
            topic: settings.topic.clone(),
        })
    }

    /// Queues one event (already encoded); the future resolves when the
    /// broker has it, or with the reason it never will.
    pub fn send(&self, key: &[u8], payload: &[u8]) -> Result<DeliveryFuture, SendError> {
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(payload)
            .headers(OwnedHeaders::new());
        match self.inner.send_result(record) {
            Ok(delivery) => Ok(delivery),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) => Err(SendError::QueueFull),
            Err((e, _)) => Err(SendError::Other(e)),
        }
    }

    /// Waits up to `timeout` for everything queued to be delivered.
    pub fn flush(&self, timeout: std::time::Duration) {
        let _ = self.inner.flush(Timeout::After(timeout));
    }
}
