//! `[bus]`: how events travel from proxies to the ledger: the embedded
//! in-process bus (one process, the default) or Kafka, and the proxy's
//! outbox.

use std::path::PathBuf;

use anyhow::bail;
use serde::Deserialize;

use super::Config;

/// `[bus]`: the embedded in-process bus (one process, the default), or Kafka
/// (proxies, ledger and approvals as separate processes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSection {
    #[serde(default)]
    pub kind: BusKind,
    /// Kafka: `host:port[,host:port...]`.
    #[serde(default)]
    pub bootstrap: Option<String>,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Partitions and replicas when Vigil creates the topic.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// A silent ledger loses its partitions to a standby after this long.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// How long the producer retries one event before the outbox ships again.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Extra librdkafka properties (security.protocol, ssl.*, sasl.*).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub outbox: OutboxSection,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    #[default]
    Embedded,
    Kafka,
}

/// `[bus.outbox]`: the proxy's durable outbox (Kafka only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// Default: `<data_dir>/outbox`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_outbox_events")]
    pub max_events: u64,
    #[serde(default = "default_outbox_bytes")]
    pub max_bytes: u64,
}

impl Default for OutboxSection {
    fn default() -> Self {
        Self {
            dir: None,
            max_events: default_outbox_events(),
            max_bytes: default_outbox_bytes(),
        }
    }
}

fn default_topic() -> String {
    "vigil.events".into()
}
fn default_partitions() -> i32 {
    6
}
fn default_replication() -> i32 {
    1
}
fn default_group() -> String {
    "vigil-ledger".into()
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_delivery_timeout_ms() -> u64 {
    30_000
}
fn default_outbox_events() -> u64 {
    vigil_bus::outbox::OutboxLimits::default().max_events
}
fn default_outbox_bytes() -> u64 {
    vigil_bus::outbox::OutboxLimits::default().max_bytes
}

impl Config {
    pub(super) fn validate_bus(&self) -> anyhow::Result<()> {
        let bus = &self.bus;
        match (bus.kind, &bus.bootstrap) {
            (BusKind::Kafka, None) => {
                bail!("bus.kind = \"kafka\" needs bus.bootstrap (host:port of the brokers)")
            }
            (BusKind::Kafka, Some(b)) if b.trim().is_empty() => bail!("bus.bootstrap is empty"),
            (BusKind::Embedded, Some(_)) => {
                bail!("bus.bootstrap is set but bus.kind is not \"kafka\"")
            }
            (BusKind::Embedded, None) => return Ok(()),
            _ => {}
        }
        if bus.topic.is_empty() || bus.consumer_group.is_empty() {
            bail!("bus.topic and bus.consumer_group must not be empty");
        }
        if bus.partitions < 1 || bus.replication_factor < 1 {
            bail!("bus.partitions and bus.replication_factor must be at least 1");
        }
        if !(1_000..=300_000).contains(&bus.session_timeout_ms) {
            bail!("bus.session_timeout_ms must be between 1000 and 300000");
        }
        if !(1_000..=3_600_000).contains(&bus.delivery_timeout_ms) {
            bail!("bus.delivery_timeout_ms must be between 1000 and 3600000");
        }
        if bus.outbox.max_events == 0 || bus.outbox.max_bytes < 1024 {
            bail!("bus.outbox.max_events must be at least 1 and max_bytes at least 1024");
        }
        Ok(())
    }

    /// The Kafka settings of `[bus]`, if the bus is Kafka.
    pub fn kafka(&self) -> Option<vigil_bus::kafka::KafkaSettings> {
        let bus = &self.bus;
        let bootstrap = match (bus.kind, &bus.bootstrap) {
            (BusKind::Kafka, Some(b)) => b.clone(),
            _ => return None,
        };
        let mut k = vigil_bus::kafka::KafkaSettings::new(bootstrap, bus.topic.clone());
        k.partitions = bus.partitions;
        k.replication_factor = bus.replication_factor;
        k.consumer_group = bus.consumer_group.clone();
        k.session_timeout = std::time::Duration::from_millis(bus.session_timeout_ms);
        k.delivery_timeout = std::time::Duration::from_millis(bus.delivery_timeout_ms);
        k.properties = bus.properties.clone();
        Some(k)
    }

    /// Where the proxy's outbox lives, and its limits.
    pub fn outbox(&self) -> (PathBuf, vigil_bus::outbox::OutboxLimits) {
        let o = &self.bus.outbox;
        (
            o.dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("outbox")),
            vigil_bus::outbox::OutboxLimits {
                max_events: o.max_events,
                max_bytes: o.max_bytes,
            },
        )
    }
}
