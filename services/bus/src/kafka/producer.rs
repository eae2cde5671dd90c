//! The producer the outbox shipper sends with.
//!
//! Every message carries its outbox sequence number as librdkafka's delivery
//! opaque (a plain integer, nothing allocated per message). librdkafka's
//! polling thread collects the delivery reports into one list and wakes the
//! shipper once for however many arrived, rather than completing a future
//! per message: at tens of thousands of events a second the per-message
//! futures and wake-ups were a large part of a proxy's CPU.

use std::sync::Mutex;

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use tokio::sync::Notify;

use super::{KafkaError, KafkaSettings};

/// An idempotent, `acks=all` producer to the events topic.
pub struct Producer {
    inner: ThreadedProducer<Reports>,
    topic: String,
}

/// Why an event could not be handed to the producer.
#[derive(Debug)]
pub enum SendError {
    /// librdkafka's own queue is full: wait for deliveries, then send again.
    QueueFull,
    Other(rdkafka::error::KafkaError),
}

/// What became of one sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The number the message was sent with.
    pub seq: u64,
    /// `Err` carries librdkafka's reason (never the message's content).
    pub result: Result<(), String>,
}

/// The producer's context: delivery reports wait here for the shipper.
pub struct Reports {
    done: Mutex<Vec<Report>>,
    arrived: Notify,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery: &DeliveryResult<'_>, seq: usize) {
        let result = match delivery {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Report {
                seq: seq as u64,
                result,
            });
        // Coalesces: a shipper that is busy finds one permit, not thousands.
        self.arrived.notify_one();
    }
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
        let context = Reports {
            done: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        };
        let inner = config
            .create_with_context(context)
            .map_err(|source| KafkaError::Client {
                what: "producer",
                bootstrap: settings.bootstrap.clone(),
                source,
            })?;
        Ok(Self {
            inner,
            topic: settings.topic.clone(),
        })
    }

    /// Queues one event (already encoded) under the number `seq`; its
    /// [`Report`] comes back through [`Producer::reports`].
    pub fn send(&self, seq: u64, key: &[u8], payload: &[u8]) -> Result<(), SendError> {
        let record = BaseRecord::with_opaque_to(&self.topic, seq as usize)
            .key(key)
            .payload(payload)
            .headers(OwnedHeaders::new());
        match self.inner.send(record) {
            Ok(()) => Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) => Err(SendError::QueueFull),
            Err((e, _)) => Err(SendError::Other(e)),
        }
    }

    /// The reports that have arrived since the last call, without waiting.
    pub fn take_reports(&self) -> Vec<Report> {
        std::mem::take(
            &mut *self
                .inner
                .context()
                .done
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Waits for at least one report, then returns all that have arrived.
    pub async fn reports(&self) -> Vec<Report> {
        loop {
            let reports = self.take_reports();
            if !reports.is_empty() {
                return reports;
            }
            // A report that lands between the take and this wait leaves a
            // permit behind, so it is not missed.
            self.inner.context().arrived.notified().await;
        }
    }

    /// Waits up to `timeout` for everything queued to be delivered.
    pub fn flush(&self, timeout: std::time::Duration) {
        let _ = self.inner.flush(Timeout::After(timeout));
    }
}
