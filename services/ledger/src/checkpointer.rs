//! Signs a new checkpoint whenever the tree has grown.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vigil_ledger::{sign_note, Checkpoint, StoreError};

use crate::{witnessing, Ledger};

/// Signs and stores a checkpoint of the current tree; returns the signed note.
pub fn sign_now(ledger: &Ledger) -> Result<String, StoreError> {
    let (size, root) = ledger.store.head();
    let checkpoint = Checkpoint {
        origin: ledger.origin.clone(),
        size,
        root,
    };
    let note = sign_note(&checkpoint.to_text(), &ledger.signer)?;
    // Cosigned by whichever witnesses answer (blocking: this runs on a
    // blocking thread, and the witnesses' answers are what it waits for).
    let note = witnessing::cosign_all(&ledger.store, &note, &ledger.witnesses);
    match ledger.store.put_checkpoint(&note) {
        // Another signer published a larger one first: that one stands.
        Ok(()) | Err(StoreError::StaleCheckpoint { .. }) => Ok(note),
        Err(e) => Err(e),
    }
}

/// Every `interval`, signs a checkpoint if entries arrived since the last one.
pub async fn run(ledger: Arc<Ledger>, interval: Duration) {
    let mut signed_size = None;
    let signed = Arc::new(SignedMetrics::default());
    signed.register(&ledger);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let size = ledger.store.size();
        if signed_size == Some(size) {
            continue;
        }
        let l = ledger.clone();
        match tokio::task::spawn_blocking(move || sign_now(&l)).await {
            Ok(Ok(_)) => {
                signed_size = Some(size);
                signed.size.store(size, Ordering::Relaxed);
                signed.at.store(unix_secs_now(), Ordering::Relaxed);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot sign checkpoint"),
            Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
        }
    }
}

/// What `/metrics` says of the log and its newest checkpoint signed here.
/// Entries past the checkpoint's size are appended but not yet signed;
/// the age grows while nothing new arrives (nothing to sign).
#[derive(Default)]
struct SignedMetrics {
    size: AtomicU64,
    /// Unix seconds of the last signing, 0 before the first.
    at: AtomicI64,
}

impl SignedMetrics {
    fn register(self: &Arc<Self>, ledger: &Arc<Ledger>) {
        store_gauge(ledger, "vigil_ledger_entries", "Entries in the log.", |s| {
            s.size() as f64
        });
        store_gauge(
            ledger,
            "vigil_ledger_tile_cache_tiles",
            "Complete node tiles (256 entries each) held in memory for proofs ([ledger] tile_cache_mib).",
            |s| s.cached_tiles() as f64,
        );
        store_gauge(
            ledger,
            "vigil_ledger_tile_store_reads",
            "Node tiles read from the store since the ledger opened, because the tile cache did not hold them.",
            |s| s.tile_reads() as f64,
        );
        let s = self.clone();
        vigil_metrics::gauge_fn(
            "vigil_ledger_checkpoint_size",
            "Size of the newest checkpoint this process signed.",
            &[],
            move || s.size.load(Ordering::Relaxed) as f64,
        );
        let s = self.clone();
        vigil_metrics::gauge_fn(
            "vigil_ledger_checkpoint_age_seconds",
            "Seconds since this process last signed a checkpoint (NaN before the first).",
            &[],
            move || match s.at.load(Ordering::Relaxed) {
                0 => f64::NAN,
                at => (unix_secs_now() - at) as f64,
            },
        );
    }
}

/// A gauge read from the ledger's store when scraped; NaN once that ledger
/// is closed. Weak: the registry lives as long as the process, an open
/// ledger not necessarily (a key rotation reopens it).
fn store_gauge(
    ledger: &Arc<Ledger>,
    name: &'static str,
    help: &'static str,
    read: fn(&vigil_ledger::Store) -> f64,
) {
    let l = Arc::downgrade(ledger);
    vigil_metrics::gauge_fn(name, help, &[], move || {
        l.upgrade().map_or(f64::NAN, |l| read(&l.store))
    });
}

fn unix_secs_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
