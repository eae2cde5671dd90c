//! Kafka: the bus between processes (proxies on many machines, one ledger).
//!
//! - [`producer`]: the client the proxy's outbox shipper produces with
//!   (idempotent, `acks=all`: an event is acknowledged only once every
//!   in-sync replica has it, and a retried send never lands twice or out of
//!   order within a partition);
//! - [`consumer`]: the ledger's [`Subscriber`](crate::Subscriber): a consumer
//!   group member that commits an offset only after every event before it is
//!   durable in the log.
//!
//! One topic carries every event. The message key is the session id, so a
//! session's events land in one partition, in order; the value is the
//! protobuf `vigil.events.v1.Event`. Events without a session (retention
//! runs) are keyed by their event id.

pub mod consumer;
pub mod producer;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

pub use consumer::{subscribe, KafkaSubscriber};
pub use producer::Producer;

/// Where the topic is and how it is used. Built from the `[bus]` section of
/// the config by the binary.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`
    pub bootstrap: String,
    pub topic: String,
    /// Partitions when Vigil creates the topic (an existing topic is kept).
    pub partitions: i32,
    /// Replicas when Vigil creates the topic; 3 on a real cluster.
    pub replication_factor: i32,
    /// The ledger's consumer group. Every ledger process (active and
    /// standbys) uses the same one.
    pub consumer_group: String,
    /// How long the group waits for a silent consumer before handing its
    /// partitions to another (a killed ledger's standby takes over after this).
    pub session_timeout: Duration,
    /// How long the producer keeps retrying one event before it reports
    /// failure (the shipper then starts again from the first unsent event).
    pub delivery_timeout: Duration,
    /// Extra librdkafka properties (TLS, SASL, ...), applied last.
    pub properties: BTreeMap<String, String>,
}

impl KafkaSettings {
    pub fn new(bootstrap: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            partitions: 6,
            replication_factor: 1,
            consumer_group: "vigil-ledger".into(),
            session_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(30),
            properties: BTreeMap::new(),
        }
    }

    /// The settings every client shares, then the operator's own.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", client_id)
            // Brokers come and go (restarts, outages): reconnect quickly but
            // never give up.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000")
            .set("log_level", "4");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// The bus could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot create the Kafka {what} for {bootstrap}: {source}")]
    Client {
        what: &'static str,
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create the Kafka topic {topic:?} on {bootstrap}: {reason}")]
    Topic {
        topic: String,
        bootstrap: String,
        reason: String,
    },
}

/// Creates the topic if it does not exist (an existing one is left as it is).
/// Fails if the broker cannot be reached within `timeout`.
pub async fn ensure_topic(settings: &KafkaSettings, timeout: Duration) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config("vigil-admin")
        .create()
        .map_err(|source| KafkaError::Client {
        what: "admin client",
        bootstrap: settings.bootstrap.clone(),
        source,
    })?;
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(settings.replication_factor),
    );
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let fail = |reason: String| KafkaError::Topic {
        topic: settings.topic.clone(),
        bootstrap: settings.bootstrap.clone(),
        reason,
    };
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .map_err(|e| fail(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) => {
                tracing::info!(topic = %settings.topic, partitions = settings.partitions, "Kafka topic created")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(fail(code.to_string())),
        }
    }
    Ok(())
}

/// The message key of an event: its session, so that a session stays in one
/// partition and in order; an event outside any session is keyed by its id.
pub fn message_key(event: &vigil_proto::events::Event) -> &str {
    if event.session_id.is_empty() {
        &event.event_id
    } else {
        &event.session_id
    }
}
