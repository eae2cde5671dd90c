//! The RocksDB-backed append-only log.
//!
//! Crash safety: every append is a single `WriteBatch` (leaves, bodies,
//! event ids, node hashes and the new size) written with a synced WAL, so
//! after a crash the log is either entirely before or entirely after the
//! batch. The in-memory [`Frontier`] is only a cache of stored node hashes
//! and is rebuilt from them on open.
//!
//! Concurrency: appends (and key/checkpoint writes) are serialised by one
//! mutex; readers never take it. Node hashes are immutable once written and
//! the published head is only advanced after the batch is durable, so any
//! read at a size `<= size()` sees a complete tree.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};

use rand::RngCore as _;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, WriteBatch, WriteOptions, DB,
};

use crate::checkpoint::Checkpoint;
use crate::hash::{leaf_hash, Hash};
use crate::leaf::{body_commitment, LeafError, LeafRecord};
use crate::note::{NoteError, NoteSigner};
use crate::proof::ProofError;
use crate::tile::{encode_entry_bundle, MAX_TILE_LEVEL, TILE_HEIGHT, TILE_WIDTH};
use crate::tree::{self, Frontier, NodeSource};

const CF_LEAVES: &str = "leaves";
const CF_NODES: &str = "nodes";
const CF_BODIES: &str = "bodies";
const CF_EVENT_IDS: &str = "event_ids";
const CF_META: &str = "meta";
const ALL_CFS: [&str; 5] = [CF_LEAVES, CF_NODES, CF_BODIES, CF_EVENT_IDS, CF_META];

const META_SIZE: &[u8] = b"size";
const META_CHECKPOINT: &[u8] = b"checkpoint";
const META_SIGNER_PREFIX: &str = "signer:";

/// One event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Unique event id; appending an id twice is a no-op (see [`Appended`]).
    pub event_id: [u8; 16],
    /// Event time, nanoseconds since the Unix epoch.
    pub time_unix_nanos: i64,
    /// Event kind, at most 64 bytes of UTF-8.
    pub kind: String,
    /// Event body, stored beside the tree and committed to with a salt.
    pub body: Vec<u8>,
}

/// Outcome of appending one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Leaf index of the event.
    pub index: u64,
    /// True if the event id was already in the log (or earlier in the batch).
    pub duplicate: bool,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A requested leaf, node or size is beyond the current tree.
    #[error("{what} {value} is out of range for tree size {size}")]
    OutOfRange {
        /// What was requested ("leaf index", "tree size", ...).
        what: &'static str,
        /// The requested value.
        value: u64,
        /// The current (or requested) tree size it was checked against.
        size: u64,
    },
    /// A record that should exist does not.
    #[error("not found: {0}")]
    NotFound(String),
    /// A malformed request (bad tile width, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An entry that cannot be appended (e.g. kind too long).
    #[error("invalid entry: {0}")]
    InvalidEntry(#[from] LeafError),
    /// A proof request violated its preconditions.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A checkpoint older than the stored one was offered.
    #[error("checkpoint for size {offered} is older than the stored one for size {stored}")]
    StaleCheckpoint {
        /// Size of the stored checkpoint.
        stored: u64,
        /// Size of the rejected checkpoint.
        offered: u64,
    },
    /// A stored or offered signing key / signed note is unusable.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// RocksDB failure.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Stored data violates an invariant.
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// The published tree head.
#[derive(Debug, Clone, Copy)]
struct Head {
    size: u64,
    root: Hash,
}

/// The durable Merkle log. `Send + Sync`; share it behind an `Arc`.
pub struct Store {
    db: DB,
    /// Serialises writers. Holds the right edge of the tree at `head.size`.
    writer: Mutex<Frontier>,
    head: RwLock<Head>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

fn node_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn u64_value(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!("{what}: expected 8 bytes, got {}", bytes.len()))
    })?;
    Ok(u64::from_be_bytes(arr))
}

fn hash_value(bytes: &[u8], level: u8, index: u64) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "node (level {level}, index {index}) is {} bytes, not 32",
            bytes.len()
        ))
    })
}

fn cf_options() -> Options {
    let mut o = Options::default();
    // The crate is built without compression libraries.
    o.set_compression_type(DBCompressionType::None);
    o
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl Store {
    /// Opens (creating if needed) the log in `dir` and rebuilds the frontier
    /// from the stored node hashes.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut opts = cf_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let mut store = Self {
            db,
            writer: Mutex::new(Frontier::new()),
            head: RwLock::new(Head {
                size: 0,
                root: crate::hash::empty_root(),
            }),
        };
        let size = match store.db.get_cf(store.cf(CF_META), META_SIZE)? {
            Some(v) => u64_value(&v, "meta size")?,
            None => 0,
        };
        if size > 0 && store.leaf(size - 1)?.is_none() {
            return Err(StoreError::Corrupt(format!(
                "size is {size} but leaf {} is missing",
                size - 1
            )));
        }
        if store.leaf(size)?.is_some() {
            return Err(StoreError::Corrupt(format!(
                "size is {size} but leaf {size} exists"
            )));
        }
        let frontier = Frontier::from_nodes(size, |level, index| {
            store.node(level, index).map_err(|e| match e {
                StoreError::NotFound(what) => {
                    StoreError::Corrupt(format!("{what} needed for size {size}"))
                }
                other => other,
            })
        })?;
        let root = frontier.root();
        store.head = RwLock::new(Head { size, root });
        store.writer = Mutex::new(frontier);
        Ok(store)
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("all column families are created on open")
    }

    fn lock_writer(&self) -> MutexGuard<'_, Frontier> {
        // The frontier is only replaced after a successful write, so a panic
        // while holding the lock cannot leave it inconsistent.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_head(&self) -> Head {
        *self.head.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Durably appends a batch (one WriteBatch, WAL synced before returning)
    /// and integrates it into the tree. Events whose id is already in the log
    /// (or earlier in the same batch) are not appended again: they get their
    /// existing index with `duplicate = true`. Fresh random 32-byte salt per
    /// entry. The whole batch is rejected if any entry is invalid.
    pub fn append_batch(&self, entries: Vec<NewEntry>) -> Result<Vec<Appended>, StoreError> {
        for e in &entries {
            if e.kind.len() > crate::leaf::MAX_KIND_LEN {
                return Err(LeafError::KindTooLong(e.kind.len()).into());
            }
        }
        let mut frontier = self.lock_writer();
        let mut next = frontier.clone();
        let mut batch = WriteBatch::default();
        let mut seen: HashMap<[u8; 16], u64> = HashMap::new();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let existing = match seen.get(&e.event_id) {
                Some(&i) => Some(i),
                None => self.index_of(&e.event_id)?,
            };
            if let Some(index) = existing {
                out.push(Appended {
                    index,
                    duplicate: true,
                });
                continue;
            }
            let index = next.size();
            let mut salt = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut salt);
            let data = LeafRecord {
                event_id: e.event_id,
                time_unix_nanos: e.time_unix_nanos,
                kind: e.kind,
                commitment: body_commitment(&salt, &e.body),
            }
            .try_encode()?;
            let key = index.to_be_bytes();
            let mut stored_body = Vec::with_capacity(32 + e.body.len());
            stored_body.extend_from_slice(&salt);
            stored_body.extend_from_slice(&e.body);
            batch.put_cf(self.cf(CF_LEAVES), key, &data);
            batch.put_cf(self.cf(CF_BODIES), key, stored_body);
            batch.put_cf(self.cf(CF_EVENT_IDS), e.event_id, key);
            for (level, idx, h) in next.push(leaf_hash(&data)) {
                batch.put_cf(self.cf(CF_NODES), node_key(level, idx), h);
            }
            seen.insert(e.event_id, index);
            out.push(Appended {
                index,
                duplicate: false,
            });
        }
        if next.size() != frontier.size() {
            batch.put_cf(self.cf(CF_META), META_SIZE, next.size().to_be_bytes());
            self.db.write_opt(batch, &synced())?;
            let head = Head {
                size: next.size(),
                root: next.root(),
            };
            *frontier = next;
            *self.head.write().unwrap_or_else(|e| e.into_inner()) = head;
        }
        Ok(out)
    }

    /// Number of leaves in the published tree.
    pub fn size(&self) -> u64 {
        self.read_head().size
    }

    /// Root at the current size.
    pub fn root(&self) -> Hash {
        self.read_head().root
    }

    /// Size and root read together, for building a checkpoint.
    pub fn head(&self) -> (u64, Hash) {
        let h = self.read_head();
        (h.size, h.root)
    }

    /// Leaf data (a [`LeafRecord`] encoding), or `None` past the end.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_LEAVES), index.to_be_bytes())?)
    }

    /// `(salt, body)` of an entry, or `None` if absent.
    // The tuple type is part of the published API contract.
    #[allow(clippy::type_complexity)]
    pub fn body(&self, index: u64) -> Result<Option<([u8; 32], Vec<u8>)>, StoreError> {
        let Some(v) = self.db.get_cf(self.cf(CF_BODIES), index.to_be_bytes())? else {
            return Ok(None);
        };
        if v.len() < 32 {
            return Err(StoreError::Corrupt(format!(
                "body {index} shorter than its salt"
            )));
        }
        let salt: [u8; 32] = v[..32].try_into().expect("32 bytes");
        Ok(Some((salt, v[32..].to_vec())))
    }

    /// Leaf index of an event id, if it was appended.
    pub fn index_of(&self, event_id: &[u8; 16]) -> Result<Option<u64>, StoreError> {
        self.db
            .get_cf(self.cf(CF_EVENT_IDS), event_id)?
            .map(|v| u64_value(&v, "event id index"))
            .transpose()
    }

    /// Hash of the complete subtree `(level, index)`; `NotFound` if it is not
    /// complete yet.
    pub fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_NODES), node_key(level, index))?
        {
            Some(v) => hash_value(&v, level, index),
            None => Err(StoreError::NotFound(format!(
                "node (level {level}, index {index})"
            ))),
        }
    }

    fn check_size(&self, size: u64) -> Result<(), StoreError> {
        let current = self.size();
        if size > current {
            return Err(StoreError::OutOfRange {
                what: "tree size",
                value: size,
                size: current,
            });
        }
        Ok(())
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves
    /// (`index < size <= self.size()`).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(size)?;
        if index >= size {
            return Err(StoreError::OutOfRange {
                what: "leaf index",
                value: index,
                size,
            });
        }
        tree::inclusion_proof(self, index, size)
    }

    /// Consistency proof between sizes `0 < size1 <= size2 <= self.size()`.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(size2)?;
        tree::consistency_proof(self, size1, size2)
    }

    /// Root of the tree of the first `size` leaves (`size <= self.size()`).
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_size(size)?;
        tree::root_of(self, size)
    }

    fn check_width(width: u64) -> Result<(), StoreError> {
        if !(1..=TILE_WIDTH).contains(&width) {
            return Err(StoreError::InvalidArgument(format!(
                "tile width {width} not in 1..=256"
            )));
        }
        Ok(())
    }

    /// tlog-tiles: concatenated hashes of tile `(level, index)`; tile level
    /// `L` holds tree-level `8L` nodes `[256 * index, 256 * index + width)`,
    /// all of which must be complete at the current size.
    pub fn tile(&self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, StoreError> {
        Self::check_width(width)?;
        if level > MAX_TILE_LEVEL {
            return Err(StoreError::InvalidArgument(format!(
                "tile level {level} > {MAX_TILE_LEVEL}"
            )));
        }
        let tree_level = level * TILE_HEIGHT;
        let size = self.size();
        // Node (tree_level, i) is complete iff (i + 1) << tree_level <= size,
        // i.e. i < size >> tree_level; comparing this way cannot overflow.
        let first = u128::from(index) * u128::from(TILE_WIDTH);
        if first + u128::from(width) > u128::from(size >> tree_level) {
            return Err(StoreError::OutOfRange {
                what: "tile",
                value: index,
                size,
            });
        }
        let first = first as u64; // fits: first < size >> tree_level
        let mut out = Vec::with_capacity(width as usize * 32);
        for i in first..first + width {
            out.extend_from_slice(&self.node(tree_level, i)?);
        }
        Ok(out)
    }

    /// tlog-tiles entry bundle: leaves `[256 * index, 256 * index + width)`,
    /// all of which must exist at the current size.
    pub fn entry_bundle(&self, index: u64, width: u64) -> Result<Vec<u8>, StoreError> {
        Self::check_width(width)?;
        let size = self.size();
        let first = u128::from(index) * u128::from(TILE_WIDTH);
        if first + u128::from(width) > u128::from(size) {
            return Err(StoreError::OutOfRange {
                what: "entry bundle",
                value: index,
                size,
            });
        }
        let first = first as u64;
        let mut leaves = Vec::with_capacity(width as usize);
        for i in first..first + width {
            let leaf = self
                .leaf(i)?
                .ok_or_else(|| StoreError::Corrupt(format!("leaf {i} missing below size")))?;
            leaves.push(leaf);
        }
        let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
        Ok(encode_entry_bundle(&refs))
    }

    /// Durably stores the latest signed checkpoint.
    ///
    /// The note's body must be a checkpoint of this log: its size at most
    /// `size()` and its root equal to `root_at(size)`, so the store never
    /// publishes a head it cannot back with proofs. A checkpoint for a smaller
    /// size than the stored one is refused with `StaleCheckpoint` (callers
    /// racing to publish can ignore that error). The signature is not
    /// checked here.
    pub fn put_checkpoint(&self, signed_note: &str) -> Result<(), StoreError> {
        let split = signed_note
            .rfind("\n\n")
            .ok_or(NoteError::MalformedNote("no blank line before signatures"))?;
        let cp = Checkpoint::parse(&signed_note[..=split])
            .map_err(|e| StoreError::InvalidArgument(format!("checkpoint: {e}")))?;
        let _w = self.lock_writer();
        if self.root_at(cp.size)? != cp.root {
            return Err(StoreError::InvalidArgument(format!(
                "checkpoint root does not match the log's root at size {}",
                cp.size
            )));
        }
        if let Some(old) = self.checkpoint()? {
            if let Some(old_split) = old.rfind("\n\n") {
                if let Ok(old_cp) = Checkpoint::parse(&old[..=old_split]) {
                    if old_cp.size > cp.size {
                        return Err(StoreError::StaleCheckpoint {
                            stored: old_cp.size,
                            offered: cp.size,
                        });
                    }
                }
            }
        }
        self.db
            .put_cf_opt(self.cf(CF_META), META_CHECKPOINT, signed_note, &synced())?;
        Ok(())
    }

    /// The latest stored signed checkpoint, if any.
    pub fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.db
            .get_cf(self.cf(CF_META), META_CHECKPOINT)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| StoreError::Corrupt("stored checkpoint is not UTF-8".into()))
            })
            .transpose()
    }

    /// The note signer named `name`, generated and stored (in the meta column
    /// family) on first use.
    pub fn get_or_create_signer(&self, name: &str) -> Result<NoteSigner, StoreError> {
        let key = format!("{META_SIGNER_PREFIX}{name}");
        let _w = self.lock_writer();
        if let Some(v) = self.db.get_cf(self.cf(CF_META), &key)? {
            let text = std::str::from_utf8(&v)
                .map_err(|_| StoreError::Corrupt("stored signer key is not UTF-8".into()))?;
            let signer = NoteSigner::from_skey_text(text)?;
            if signer.name() != name {
                return Err(StoreError::Corrupt(format!(
                    "signer key stored for {name:?} is named {:?}",
                    signer.name()
                )));
            }
            return Ok(signer);
        }
        let signer = NoteSigner::generate(name)?;
        self.db
            .put_cf_opt(self.cf(CF_META), &key, signer.to_skey_text(), &synced())?;
        Ok(signer)
    }
}

impl NodeSource for Store {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        Store::node(self, level, index)
    }
}
