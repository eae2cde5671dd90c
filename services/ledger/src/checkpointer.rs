//! Signs a new checkpoint whenever the tree has grown.

use std::sync::Arc;
use std::time::Duration;

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
            Ok(Ok(_)) => signed_size = Some(size),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot sign checkpoint"),
            Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
        }
    }
}
