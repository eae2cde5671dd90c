//! The ledger service: the bus's consumer and the auditors' server.
//!
//! - [`appender`]: takes event batches off the bus, appends them to the
//!   [`vigil_ledger::Store`] as one synced write (group commit), then acks;
//! - [`checkpointer`]: signs a C2SP checkpoint whenever the tree has grown;
//! - [`http`]: C2SP tlog-tiles (`/checkpoint`, `/tile/...`) plus event bodies;
//! - [`grpc`]: the `vigil.ledger.v1.Ledger` API (checkpoint, proofs, entries);
//! - [`access`]: who may read event bodies (they can hold PHI).
#![forbid(unsafe_code)]

pub mod access;
pub mod appender;
pub mod checkpointer;
pub mod gap_log;
pub mod gaps;
pub mod grpc;
pub mod http;
pub mod own_records;
pub mod retention;
pub mod signing_key;
pub mod witness;
pub mod witnessing;

use std::path::Path;
use std::sync::Arc;

use vigil_ledger::{Keyring, NoteSigner, Store};

pub use access::BodyAccess;

/// An open ledger: the store and the key that signs its checkpoints.
pub struct Ledger {
    pub store: Arc<Store>,
    pub signer: Arc<NoteSigner>,
    pub origin: String,
    /// Witnesses every new checkpoint is submitted to (none by default).
    pub witnesses: Arc<Vec<witnessing::WitnessClient>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the ledger store in {dir}: {source}")]
    Store {
        dir: String,
        source: vigil_ledger::StoreError,
    },
    #[error(transparent)]
    Key(#[from] signing_key::KeyError),
    #[error(
        "the signing key {path} (key id {key_id}) did not sign this log's latest checkpoint: \
         it is not this log's key (a wrong backup, or a replaced file); restore the right key"
    )]
    KeyMismatch { path: String, key_id: String },
}

impl Ledger {
    /// Opens (or creates) the ledger under `data_dir`: the RocksDB log in
    /// `data_dir/ledger`, the signing key in `data_dir/ledger-signing.key`;
    /// `keyring` seals and opens event bodies.
    pub fn open(data_dir: &Path, origin: &str, keyring: Keyring) -> Result<Self, OpenError> {
        let dir = data_dir.join("ledger");
        let store = Store::open(&dir, keyring).map_err(|source| OpenError::Store {
            dir: dir.display().to_string(),
            source,
        })?;
        if let Some((from, to)) = store.cut_on_open() {
            tracing::error!(
                from,
                to,
                "the log came back from a crash with a hole: entries from `from` on were written but never acknowledged or published, and were cut"
            );
        }
        let key_path = data_dir.join("ledger-signing.key");
        signing_key::finish_rotation(&store, &key_path)?;
        let checkpoint = store.checkpoint().map_err(|source| OpenError::Store {
            dir: dir.display().to_string(),
            source,
        })?;
        let signer =
            signing_key::load_or_create(&key_path, origin, store.size(), checkpoint.is_some())?;
        // The key must be the one that signed the log so far: a replaced key
        // file (a wrong backup, a takeover) would sign checkpoints no
        // auditor can follow.
        if let Some(note) = checkpoint {
            if vigil_ledger::open_note(&note, &signer.verifier()).is_err() {
                return Err(OpenError::KeyMismatch {
                    path: key_path.display().to_string(),
                    key_id: format!("{:08x}", signer.key_id()),
                });
            }
        }
        Ok(Self {
            store: Arc::new(store),
            signer: Arc::new(signer),
            origin: origin.to_string(),
            witnesses: Arc::new(Vec::new()),
        })
    }

    /// Replaces the signing key (see [`signing_key::rotate`]); the returned
    /// ledger signs with the new key. Returns the rotation note too.
    pub fn rotate_key(self, data_dir: &Path) -> Result<(Self, String), OpenError> {
        let path = data_dir.join("ledger-signing.key");
        let (next, note) = signing_key::rotate(&self.store, &path, &self.signer)?;
        Ok((
            Self {
                signer: Arc::new(next),
                ..self
            },
            note,
        ))
    }

    /// Reads the newest stored node tiles into the store's tile cache on a
    /// thread of its own (`vigil_ledger::tile_cache`): a restarted ledger
    /// serves proofs from memory once it is done, from RocksDB meanwhile.
    /// It holds the store only for a part at a time (256 tiles, about
    /// 4 MiB), and stops once everyone else has let go of it: it never
    /// keeps a stopping ledger's RocksDB open, and the process's wait for
    /// its threads at exit covers it.
    pub fn warm_tile_cache_in_background(&self) {
        const TILES_AT_A_TIME: usize = 256;
        let store = Arc::downgrade(&self.store);
        let started = vigil_bus::own_thread::spawn("vigil-tile-warm", move || async move {
            let t = std::time::Instant::now();
            let (mut tiles, mut below) = (0, Some(u64::MAX));
            while let Some(end) = below {
                let Some(store) = store.upgrade() else {
                    tracing::info!(tiles, "the ledger stopped while its tile cache was filling");
                    return;
                };
                match store.warm_tile_cache_below(end, TILES_AT_A_TIME) {
                    Ok((added, next)) => (tiles, below) = (tiles + added, next),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot fill the tile cache; proofs read tiles from the store");
                        return;
                    }
                }
            }
            tracing::info!(
                tiles,
                secs = t.elapsed().as_secs_f64(),
                "node tiles read into the tile cache"
            );
        });
        match started {
            Ok(running) => running.detach(),
            Err(e) => tracing::warn!(error = %e, "cannot start the tile cache's warm-up"),
        }
    }

    /// The verifier key auditors need (`name+keyid+base64`).
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key_text()
    }
}
