//! The proxy's durable outbox: where an event waits between the statement
//! that made it and the Kafka broker.
//!
//! A proxy's [`EventSink::record`](vigil_proxy_core::EventSink::record)
//! resolves once the event is synced into the outbox ([`OutboxSink`], one
//! group commit per burst), so a statement runs only when its audit can no
//! longer be lost, whether or not the broker is up. A [`shipper`] produces
//! the outbox to Kafka in order and forgets each event only after the broker
//! has acknowledged it. While the broker is away the outbox grows; when it
//! holds [`OutboxLimits`] worth, new events are refused, and so are the
//! statements behind them (fail closed). When the broker is back it drains
//! in order.
//!
//! After a crash the outbox reopens with what was not yet acknowledged and
//! ships it again. Some of it may already be in Kafka (acknowledged, but the
//! deletion not yet on disk): the ledger's deduplication by event id makes
//! those copies harmless.

mod fresh;
pub mod shipper;
pub mod sink;
pub mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub use sink::OutboxSink;
pub use store::{OutboxError, OutboxStore, QueueState};

/// How much may wait in the outbox before statements are refused.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    pub max_events: u64,
    pub max_bytes: u64,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_events: 1_000_000,
            max_bytes: 1 << 30,
        }
    }
}

/// What the writer and the shipper share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Events in the outbox not yet acknowledged by the broker.
    waiting_events: AtomicU64,
    waiting_bytes: AtomicU64,
    /// The next sequence number the writer will give (everything below it is
    /// on disk); the shipper watches it for work.
    head: watch::Sender<u64>,
    /// The first sequence number the outbox held when it was opened.
    first_at_open: u64,
    /// The newest synced events, for the shipper to take without a read.
    fresh: Mutex<fresh::Fresh>,
    limits: OutboxLimits,
}

/// An open outbox. [`Outbox::sink`] is what the proxies record into;
/// [`Outbox::ship`] starts the shipper.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<OutboxStore>,
    shared: Arc<Shared>,
}

/// How full the outbox is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxStatus {
    pub waiting_events: u64,
    pub waiting_bytes: u64,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`. Only one process can hold it.
    pub fn open(dir: &Path, limits: OutboxLimits) -> Result<Self, OutboxError> {
        let (store, state) = OutboxStore::open(dir)?;
        if !state.is_empty() {
            tracing::info!(
                events = state.len(),
                bytes = state.bytes,
                "outbox holds events from an earlier run; shipping them first"
            );
        }
        let (head, _) = watch::channel(state.next);
        let shared = Arc::new(Shared {
            waiting_events: AtomicU64::new(state.len()),
            waiting_bytes: AtomicU64::new(state.bytes),
            head,
            first_at_open: state.first,
            fresh: Mutex::new(fresh::Fresh::new(state.next)),
            limits,
        });
        let (events, bytes) = (Arc::downgrade(&shared), Arc::downgrade(&shared));
        vigil_metrics::gauge_fn(
            "vigil_outbox_events",
            "Events in the proxy's outbox not yet acknowledged by the broker.",
            &[],
            move || {
                events.upgrade().map_or(f64::NAN, |s| {
                    s.waiting_events.load(Ordering::Relaxed) as f64
                })
            },
        );
        vigil_metrics::gauge_fn(
            "vigil_outbox_bytes",
            "Bytes of events in the proxy's outbox not yet acknowledged by the broker.",
            &[],
            move || {
                bytes
                    .upgrade()
                    .map_or(f64::NAN, |s| s.waiting_bytes.load(Ordering::Relaxed) as f64)
            },
        );
        Ok(Self {
            store: Arc::new(store),
            shared,
        })
    }

    /// The sink proxies record into. Starts the writer's thread: call it
    /// once.
    pub fn sink(&self) -> std::io::Result<OutboxSink> {
        OutboxSink::start(self.store.clone(), self.shared.clone())
    }

    /// Starts shipping to Kafka; runs until the runtime stops.
    pub fn ship(
        &self,
        settings: crate::kafka::KafkaSettings,
        client_id: String,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(shipper::run(
            self.store.clone(),
            self.shared.clone(),
            settings,
            client_id,
        ))
    }

    pub fn status(&self) -> OutboxStatus {
        OutboxStatus {
            waiting_events: self.shared.waiting_events.load(Ordering::SeqCst),
            waiting_bytes: self.shared.waiting_bytes.load(Ordering::SeqCst),
        }
    }
}
