//! The RocksDB-backed append-only log.
//!
//! Crash safety: every append is a single `WriteBatch` (leaves, bodies,
//! event ids, node hashes and the new size), so after a crash the log is
//! either entirely before or entirely after the batch. A batch is written
//! ([`Store::write_batch`]) and later made durable by a sync of the WAL
//! ([`Store::sync`]), which covers every batch written before it: the
//! appender stages and writes the next batch while the previous one syncs.
//! Nothing of a batch is published (size, root, proofs, reads) before its
//! sync. A crash can lose unsynced batches, and a power loss can lose one
//! while keeping a later one; [`Store::open`] cuts the log at such a hole
//! (none of those batches was acknowledged). The in-memory [`Frontier`] is only a cache of stored node hashes
//! and is rebuilt from them on open; so is the bottom tile still filling
//! ([`crate::bottom`]), rebuilt from the stored leaves.
//!
//! Bodies (salt || event bytes) are sealed with the operator's
//! [`Keyring`] before they reach RocksDB; see [`crate::bodycrypt`].
//!
//! Secondary indexes (by session, by subject, by time) are written in the
//! same batch as the leaf, so they can never point at a missing entry or miss
//! a durable one.
//!
//! Retention ([`Store::prune_before`]) deletes sealed bodies of a prefix of
//! the log, advances the C2SP tlog-tiles *minimum index*, records when and
//! why, and appends a record of it in the same batch. Leaves and node hashes
//! stay: they hold no PHI, and every proof keeps verifying.
//!
//! Concurrency: appends (and key/checkpoint writes) are serialised by one
//! mutex, syncs by another; readers take neither. Node hashes are immutable
//! once written and the published head is only advanced after the batch is
//! durable, so any read at a size `<= size()` sees a complete tree; reads
//! by index or event id see only the published tree.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, WriteBatch, WriteOptions, DB,
};

use crate::bodycrypt::{BodyCryptError, Keyring};
use crate::bottom::{self, EdgeTile, BOTTOM_LEVELS, TILE_LEAVES};
use crate::checkpoint::Checkpoint;
use crate::hash::{leaf_hash, Hash};
use crate::leaf::{LeafError, LeafRecord};
use crate::note::{NoteError, NoteSigner};
use crate::proof::ProofError;
use crate::sealing;
use crate::tile::{encode_entry_bundle, MAX_TILE_LEVEL, TILE_HEIGHT, TILE_WIDTH};
use crate::tile_cache::TileCache;
use crate::tree::{self, Frontier, NodeSource};

const CF_LEAVES: &str = "leaves";
const CF_NODES: &str = "nodes";
const CF_BODIES: &str = "bodies";
const CF_EVENT_IDS: &str = "event_ids";
const CF_META: &str = "meta";
const CF_BY_SESSION: &str = "by_session";
const CF_BY_SUBJECT: &str = "by_subject";
const CF_BY_TIME: &str = "by_time";
const ALL_CFS: [&str; 8] = [
    CF_LEAVES,
    CF_NODES,
    CF_BODIES,
    CF_EVENT_IDS,
    CF_META,
    CF_BY_SESSION,
    CF_BY_SUBJECT,
    CF_BY_TIME,
];

const META_SIZE: &[u8] = b"size";
const META_MIN_INDEX: &[u8] = b"min_index";
/// `pruned:` || end index (u64 BE) -> [`PruneRecord`] encoding.
const META_PRUNED_PREFIX: &[u8] = b"pruned:";
const META_CHECKPOINT: &[u8] = b"checkpoint";
const META_SIGNER_PREFIX: &str = "signer:";
const META_ROTATION_PREFIX: &[u8] = b"rotation:";

/// One event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Unique event id; appending an id twice is a no-op (see [`Appended`]).
    pub event_id: [u8; 16],
    /// Event time, nanoseconds since the Unix epoch.
    pub time_unix_nanos: i64,
    /// Event kind, at most 64 bytes of UTF-8.
    pub kind: String,
    /// Event body, stored beside the tree (sealed) and committed to with a salt.
    pub body: Vec<u8>,
    /// Session (or other stream) the event belongs to, for the by-session
    /// index and the leaf's stream position ("" = none).
    pub session_id: String,
    /// The event's number in its stream (0 for events of no stream).
    pub seq: u64,
    /// Who acted (identity subject), for the by-subject index ("" = none).
    pub subject: String,
}

/// What [`Store::body`] finds at a leaf index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyLookup {
    /// The body and the salt its leaf commits to.
    Present {
        /// The 32-byte salt.
        salt: [u8; 32],
        /// The event bytes.
        body: Vec<u8>,
    },
    /// Deleted by retention; the record says when and under which cutoff.
    Pruned(PruneRecord),
    /// No body (index beyond the log).
    Absent,
}

/// One retention run that deleted bodies `[from_index, end_index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneRecord {
    /// First pruned index (the minimum index before the run).
    pub from_index: u64,
    /// One past the last pruned index (the minimum index after the run).
    pub end_index: u64,
    /// Entries older than this (ns since the epoch) were eligible.
    pub cutoff_unix_nanos: i64,
    /// When the run happened (ns since the epoch).
    pub pruned_at_unix_nanos: i64,
}

impl PruneRecord {
    fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&self.from_index.to_be_bytes());
        out[8..16].copy_from_slice(&self.end_index.to_be_bytes());
        out[16..24].copy_from_slice(&self.cutoff_unix_nanos.to_be_bytes());
        out[24..].copy_from_slice(&self.pruned_at_unix_nanos.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let b: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("prune record is not 32 bytes".into()))?;
        let word = |i: usize| <[u8; 8]>::try_from(&b[i * 8..i * 8 + 8]).expect("8 bytes");
        Ok(Self {
            from_index: u64::from_be_bytes(word(0)),
            end_index: u64::from_be_bytes(word(1)),
            cutoff_unix_nanos: i64::from_be_bytes(word(2)),
            pruned_at_unix_nanos: i64::from_be_bytes(word(3)),
        })
    }
}

/// Which entries [`Store::find`] looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryFilter {
    /// Entries of one session, in log order.
    Session(String),
    /// Entries of one identity subject, in log order.
    Subject(String),
    /// Entries with `from <= time < to` (ns since the epoch), in time order.
    TimeRange {
        /// Inclusive lower bound.
        from_unix_nanos: i64,
        /// Exclusive upper bound.
        to_unix_nanos: i64,
    },
}

/// One page of [`Store::find`] results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FoundEntries {
    /// Matching leaf indexes.
    pub indexes: Vec<u64>,
    /// Opaque position to pass back to get the next page; `None` at the end.
    pub next: Option<Vec<u8>>,
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
    /// A sync of the log failed earlier: appends are refused until the
    /// log is reopened.
    #[error("an earlier sync of the log failed; nothing more is appended until it is reopened")]
    Unsynced,
    /// Stored data violates an invariant.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// A stored body cannot be opened with the configured keyring.
    #[error("body of entry {index}: {source}")]
    Body {
        /// Leaf index of the body.
        index: u64,
        /// Why it does not open.
        source: BodyCryptError,
    },
}

/// Tree levels at and above this one are cached in memory (one hash per
/// 256 leaves at this level, so about 0.13 bytes per entry in total).
const UPPER_FROM_LEVEL: u8 = 8;
/// A fixed budget for that cache (64 MiB: every upper node of a log of
/// about 500 million entries). Beyond it nodes are read from RocksDB, so
/// memory stays bounded however large the log grows.
const UPPER_MAX_HASHES: usize = 2 << 20;

/// Complete node hashes of levels >= [`UPPER_FROM_LEVEL`], each level a
/// prefix (index 0, 1, ...) of that level's complete nodes.
#[derive(Default)]
struct UpperNodes {
    levels: Vec<Vec<Hash>>,
    total: usize,
}

impl UpperNodes {
    fn get(&self, level: u8, index: u64) -> Option<Hash> {
        let row = self
            .levels
            .get(usize::from(level.checked_sub(UPPER_FROM_LEVEL)?))?;
        row.get(usize::try_from(index).ok()?).copied()
    }

    /// Adds a node if it extends its level's prefix and the budget allows.
    fn push(&mut self, level: u8, index: u64, hash: Hash) {
        let Some(l) = level.checked_sub(UPPER_FROM_LEVEL).map(usize::from) else {
            return;
        };
        if self.total >= UPPER_MAX_HASHES {
            return;
        }
        if self.levels.len() <= l {
            self.levels.resize_with(l + 1, Vec::new);
        }
        if self.levels[l].len() as u64 == index {
            self.levels[l].push(hash);
            self.total += 1;
        }
    }
}

/// The published tree head.
#[derive(Debug, Clone, Copy)]
struct Head {
    size: u64,
    root: Hash,
}

/// What the writer holds between appends: the tree's right edge after the
/// last written batch (published or not), and the bottom tile still filling.
struct Writer {
    frontier: Frontier,
    edge: EdgeTile,
}

/// What a written batch makes visible once it is durable.
struct Publication {
    head: Head,
    edge: EdgeTile,
    /// Nodes of levels >= [`UPPER_FROM_LEVEL`] for the memory cache.
    upper: Vec<(u8, u64, Hash)>,
}

/// One append being prepared: nothing of it is visible until
/// it is written and a [`Store::sync`] has made it durable.
struct Staged {
    next: Frontier,
    edge: EdgeTile,
    batch: WriteBatch,
    /// Nodes of levels >= [`UPPER_FROM_LEVEL`] for the memory cache.
    upper: Vec<(u8, u64, Hash)>,
    /// Bottom tiles this batch completes, for the tile cache.
    tiles: Vec<(u64, Arc<[u8]>)>,
}

/// The durable Merkle log. `Send + Sync`; share it behind an `Arc`.
pub struct Store {
    db: DB,
    keyring: Keyring,
    /// Node hashes of the upper tree levels, also kept in memory: a proof
    /// needs about one node per level, and these levels are where RocksDB
    /// point reads would otherwise dominate. See [`UpperNodes`].
    upper: RwLock<UpperNodes>,
    /// The published bottom tile still filling (at `head.size` or later:
    /// it is replaced after its batch is durable, before the head moves).
    edge: RwLock<EdgeTile>,
    /// Complete bottom tiles in memory: a proof's one stored read.
    tiles: TileCache,
    /// Bottom tiles read from RocksDB, not the cache (see [`Store::tile_reads`]).
    tile_reads: std::sync::atomic::AtomicU64,
    /// Serialises writers.
    writer: Mutex<Writer>,
    /// Batches written and not yet durable, in write order.
    unpublished: Mutex<std::collections::VecDeque<Publication>>,
    /// Serialises syncs, so publications go out in order.
    syncing: Mutex<()>,
    /// A sync failed: what was written since may or may not be on disk,
    /// so nothing more is appended (fail closed until the log is reopened).
    sync_failed: std::sync::atomic::AtomicBool,
    head: RwLock<Head>,
    /// Entries `[from, to)` cut on open after a crash left a hole below them.
    cut_on_open: Option<(u64, u64)>,
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

/// Tag of a complete bottom tile's key in the nodes column family; node
/// keys start with their level (0 to 63), so the two never meet.
const BOTTOM_TILE_TAG: u8 = 0xF0;

fn bottom_tile_key(tile: u64) -> [u8; 9] {
    node_key(BOTTOM_TILE_TAG, tile)
}

/// Index key of a string term: `len(u16 BE) || term || index(u64 BE)`.
fn term_key(term: &str, index: u64) -> Vec<u8> {
    let mut k = term_prefix(term);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn term_prefix(term: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + term.len() + 8);
    k.extend_from_slice(&(term.len() as u16).to_be_bytes());
    k.extend_from_slice(term.as_bytes());
    k
}

/// Longest session id or subject the indexes take (longer ones are not indexed).
pub const MAX_INDEX_TERM_LEN: usize = 1024;

/// Time as a big-endian key that sorts like the signed value.
fn time_prefix(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_key(t: i64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&time_prefix(t));
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn pruned_key(end_index: u64) -> Vec<u8> {
    let mut k = META_PRUNED_PREFIX.to_vec();
    k.extend_from_slice(&end_index.to_be_bytes());
    k
}

/// The most entries [`Store::open`] cuts after a hole: a crash loses only
/// what was written while a sync ran (a few batches of at most 4096).
const MAX_CUT_ENTRIES: u64 = 1 << 16;

/// The entry index every leaf, body and index key ends with.
fn index_suffix(key: &[u8]) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .map(|at| u64::from_be_bytes(key[at..].try_into().expect("8 bytes")))
        .ok_or_else(|| StoreError::Corrupt("key shorter than an index".into()))
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

/// All memtables together (bounded RSS) ...
const WRITE_BUFFERS_BYTES: usize = 256 << 20;
/// ... and all live WAL files together: a column family written rarely
/// (meta, small indexes) must not keep gigabytes of old WAL alive, which
/// would make disk use and restart time grow with the log.
const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;

fn cf_options() -> Options {
    let mut o = Options::default();
    // The crate is built without compression libraries.
    o.set_compression_type(DBCompressionType::None);
    // Table options stay RocksDB's defaults (a 32 MiB block cache per column
    // family, so bounded). Measured at 10M entries: bloom filters with index
    // and filter blocks in one small shared cache made proof generation 15x
    // slower (the index blocks thrash), and outside the cache they grow with
    // the log. See the README's performance section.
    o
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl Store {
    /// Opens (creating if needed) the log in `dir` and rebuilds the frontier
    /// from the stored node hashes. `keyring` seals new bodies and opens old ones.
    pub fn open(dir: &Path, keyring: Keyring) -> Result<Self, StoreError> {
        let mut opts = cf_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_db_write_buffer_size(WRITE_BUFFERS_BYTES);
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let mut store = Self {
            db,
            keyring,
            upper: RwLock::new(UpperNodes::default()),
            edge: RwLock::new(EdgeTile::empty(0)),
            tiles: TileCache::default(),
            tile_reads: std::sync::atomic::AtomicU64::new(0),
            writer: Mutex::new(Writer {
                frontier: Frontier::new(),
                edge: EdgeTile::empty(0),
            }),
            unpublished: Mutex::default(),
            syncing: Mutex::new(()),
            sync_failed: std::sync::atomic::AtomicBool::new(false),
            head: RwLock::new(Head {
                size: 0,
                root: crate::hash::empty_root(),
            }),
            cut_on_open: None,
        };
        let stored_size = match store.db.get_cf(store.cf(CF_META), META_SIZE)? {
            Some(v) => u64_value(&v, "meta size")?,
            None => 0,
        };
        let size = store.cut_after_hole(stored_size)?;
        if size < stored_size {
            store.cut_on_open = Some((size, stored_size));
        }
        if size > 0 && store.stored_leaf(size - 1)?.is_none() {
            return Err(StoreError::Corrupt(format!(
                "size is {size} but leaf {} is missing",
                size - 1
            )));
        }
        if store.stored_leaf(size)?.is_some() {
            return Err(StoreError::Corrupt(format!(
                "size is {size} but leaf {size} exists"
            )));
        }
        let edge = store.rebuild_edge(size)?;
        *store.edge.write().unwrap_or_else(|e| e.into_inner()) = edge.clone();
        let frontier = Frontier::from_nodes(size, |level, index| {
            store.node(level, index).map_err(|e| match e {
                StoreError::NotFound(what) => {
                    StoreError::Corrupt(format!("{what} needed for size {size}"))
                }
                other => other,
            })
        })?;
        let root = frontier.root();
        store.load_upper_nodes(size)?;
        store.head = RwLock::new(Head { size, root });
        store.writer = Mutex::new(Writer { frontier, edge });
        Ok(store)
    }

    /// Entries `[from, to)` that [`Store::open`] cut off because a crash
    /// had left a hole at `from` (see [`Store::cut_after_hole`]; those
    /// after the hole were removed, those in it were already gone); `None`
    /// when the log came back whole.
    pub fn cut_on_open(&self) -> Option<(u64, u64)> {
        self.cut_on_open
    }

    /// Batches are written before they are synced (see the module docs),
    /// and RocksDB may start a new WAL file between two of them without
    /// syncing the old one. After a power loss the old file can come back
    /// cut short and the new one whole: a later batch without an earlier
    /// one. None of them was acknowledged or published (a sync covers every
    /// WAL file before it), so the log is cut at the first missing leaf.
    /// Everything up to the stored checkpoint was published, so durable:
    /// only the leaves above it are checked. Returns the size to open at.
    fn cut_after_hole(&self, size: u64) -> Result<u64, StoreError> {
        let from = self.checkpoint_size()?;
        if from > size {
            return Err(StoreError::Corrupt(format!(
                "the stored checkpoint is for size {from} but the log has {size} entries"
            )));
        }
        let mut expected = from;
        let leaves = self.db.iterator_cf(
            self.cf(CF_LEAVES),
            rocksdb::IteratorMode::From(&from.to_be_bytes(), rocksdb::Direction::Forward),
        );
        for item in leaves {
            let (key, _) = item?;
            let index = index_suffix(&key)?;
            if index != expected || index >= size {
                break;
            }
            expected += 1;
        }
        if expected < size {
            // What one crash can lose is what was written while a sync ran:
            // a few batches. More than that is not a lost WAL tail but damage
            // (a lost file, a bug), which must not be "repaired" away.
            if size - expected > MAX_CUT_ENTRIES {
                return Err(StoreError::Corrupt(format!(
                    "leaf {expected} is missing, {} entries below the log's size {size}: \
                     more than a crash can lose",
                    size - expected
                )));
            }
            self.cut_from(expected)?;
        }
        Ok(expected.min(size))
    }

    /// Removes every entry from `from` on, with what points at it (its
    /// index keys, its event id, node hashes over it), in one synced batch.
    /// Index keys end with the entry's index and carry no other way back
    /// to it (a leaf commits to its session only by hash), so they are
    /// found by a scan: this runs only when a crash left a hole.
    fn cut_from(&self, from: u64) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let (first, end) = (from.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_range_cf(self.cf(CF_LEAVES), first, end);
        batch.delete_range_cf(self.cf(CF_BODIES), first, end);
        for name in [CF_BY_SESSION, CF_BY_SUBJECT, CF_BY_TIME] {
            let cf = self.cf(name);
            for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (key, _) = item?;
                if index_suffix(&key)? >= from {
                    batch.delete_cf(cf, key);
                }
            }
        }
        let ids = self.cf(CF_EVENT_IDS);
        for item in self.db.iterator_cf(ids, rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            if u64_value(&value, "event id index")? >= from {
                batch.delete_cf(ids, key);
            }
        }
        let nodes = self.cf(CF_NODES);
        for item in self.db.iterator_cf(nodes, rocksdb::IteratorMode::Start) {
            let (key, _) = item?;
            if key.len() != 9 {
                return Err(StoreError::Corrupt("node key of the wrong length".into()));
            }
            let index = index_suffix(&key)?;
            // The leaves past the last one the node or tile covers.
            let level = match key[0] {
                BOTTOM_TILE_TAG => TILE_LEAVES.trailing_zeros(),
                level @ 0..=63 => u32::from(level),
                other => {
                    return Err(StoreError::Corrupt(format!("node key of level {other}")));
                }
            };
            let past = (u128::from(index) + 1) << level;
            if past > u128::from(from) {
                batch.delete_cf(nodes, key);
            }
        }
        batch.put_cf(self.cf(CF_META), META_SIZE, from.to_be_bytes());
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    /// The size of the stored checkpoint, 0 if there is none.
    fn checkpoint_size(&self) -> Result<u64, StoreError> {
        let Some(note) = self.checkpoint()? else {
            return Ok(0);
        };
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| StoreError::Corrupt("stored checkpoint has no signatures".into()))?;
        Checkpoint::parse(&note[..=split])
            .map(|cp| cp.size)
            .map_err(|e| StoreError::Corrupt(format!("stored checkpoint: {e}")))
    }

    /// The bottom tile still filling at `size`, from its stored leaves.
    fn rebuild_edge(&self, size: u64) -> Result<EdgeTile, StoreError> {
        let start = size / TILE_LEAVES * TILE_LEAVES;
        let mut hashes = Vec::with_capacity((size - start) as usize);
        for index in start..size {
            let data = self.stored_leaf(index)?.ok_or_else(|| {
                StoreError::Corrupt(format!("leaf {index} missing below size {size}"))
            })?;
            hashes.push(leaf_hash(&data));
        }
        Ok(EdgeTile::rebuild(size, hashes))
    }

    /// Fills the upper-level cache from the stored nodes of a tree of `size`.
    fn load_upper_nodes(&self, size: u64) -> Result<(), StoreError> {
        let mut upper = UpperNodes::default();
        for level in UPPER_FROM_LEVEL..64 {
            let count = size >> level;
            if count == 0 {
                break;
            }
            let start = node_key(level, 0);
            let iter = self.db.iterator_cf(
                self.cf(CF_NODES),
                rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
            );
            for (index, item) in (0..count).zip(iter) {
                let (k, v) = item?;
                if k.as_ref() != node_key(level, index) {
                    return Err(StoreError::Corrupt(format!(
                        "node (level {level}, index {index}) missing below size {size}"
                    )));
                }
                upper.push(level, index, hash_value(&v, level, index)?);
            }
        }
        *self.upper.write().unwrap_or_else(|e| e.into_inner()) = upper;
        Ok(())
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("all column families are created on open")
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // The frontier is only replaced after a successful write, so a panic
        // while holding the lock cannot leave it inconsistent.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_head(&self) -> Head {
        *self.head.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Durably appends a batch: [`Store::write_batch`], then
    /// [`Store::sync`].
    pub fn append_batch(&self, entries: Vec<NewEntry>) -> Result<Vec<Appended>, StoreError> {
        let out = self.write_batch(entries)?;
        self.sync()?;
        Ok(out)
    }

    /// Writes a batch (one WriteBatch) and integrates it into the writer's
    /// tree, without waiting for the disk: nothing of it is published, and
    /// it is not durable, until a later [`Store::sync`] returns. Events
    /// whose id is already in the log (or earlier in the same batch) are not
    /// appended again: they get their existing index with `duplicate =
    /// true`. Fresh random 32-byte salt per entry. The whole batch is
    /// rejected if any entry is invalid.
    pub fn write_batch(&self, entries: Vec<NewEntry>) -> Result<Vec<Appended>, StoreError> {
        validate(&entries)?;
        let mut writer = self.lock_writer();
        let mut staged = Staged::from(&*writer);
        let out = self.stage(&mut staged, entries)?;
        self.write_staged(&mut writer, staged, false)?;
        Ok(out)
    }

    /// Makes every batch written before this call durable (one sync of the
    /// WAL, shared by all of them) and publishes them in order: size, root,
    /// the edge tile and the upper nodes move to the last one. An error if
    /// the sync fails, or failed before: the log then refuses appends
    /// until it is reopened, since what was written since the last good
    /// sync may or may not be on disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        let _turn = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        self.check_not_failed()?;
        // Taken before the sync: each of these batches was written before
        // it started, so the sync covers them.
        let ready: Vec<Publication> = self
            .unpublished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let Some(last) = ready.last() else {
            return Ok(());
        };
        let (head, edge) = (last.head, last.edge.clone());
        if let Err(e) = self.db.flush_wal(true) {
            self.sync_failed
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(e.into());
        }
        {
            // Durable now: readers may see these nodes before the head moves,
            // which is harmless (node hashes never change).
            let mut cache = self.upper.write().unwrap_or_else(|e| e.into_inner());
            for (level, index, hash) in ready.into_iter().flat_map(|p| p.upper) {
                cache.push(level, index, hash);
            }
        }
        // A reader that misses a node in the old edge finds its tile
        // stored: the batches above are durable before the edge moves on.
        *self.edge.write().unwrap_or_else(|e| e.into_inner()) = edge;
        *self.head.write().unwrap_or_else(|e| e.into_inner()) = head;
        Ok(())
    }

    fn check_not_failed(&self) -> Result<(), StoreError> {
        if self.sync_failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unsynced);
        }
        Ok(())
    }

    /// Adds `entries` to `staged`; nothing is visible until
    /// it is written and synced. Caller holds the writer lock.
    fn stage(
        &self,
        staged: &mut Staged,
        entries: Vec<NewEntry>,
    ) -> Result<Vec<Appended>, StoreError> {
        let Staged {
            next,
            edge,
            batch,
            upper,
            tiles,
        } = staged;
        // In order: which entries are new, and the index each one gets.
        let mut seen: HashMap<[u8; 16], u64> = HashMap::new();
        let mut out = Vec::with_capacity(entries.len());
        let mut fresh = Vec::with_capacity(entries.len());
        for e in entries {
            let existing = match seen.get(&e.event_id) {
                Some(&i) => Some(i),
                None => self.stored_index_of(&e.event_id)?,
            };
            if let Some(index) = existing {
                out.push(Appended {
                    index,
                    duplicate: true,
                });
                continue;
            }
            let index = next.size() + fresh.len() as u64;
            seen.insert(e.event_id, index);
            out.push(Appended {
                index,
                duplicate: false,
            });
            fresh.push((index, e));
        }
        // In any order, on several cores for a large batch: salts, hashes, seals.
        let sealed = sealing::seal_all(&self.keyring, &fresh)?;
        assert_eq!(sealed.len(), fresh.len(), "one sealed entry per fresh one");
        // In order again: the tree and the batch.
        for ((index, e), s) in fresh.iter().zip(sealed) {
            assert_eq!(*index, next.size(), "entries reach the tree in index order");
            let key = index.to_be_bytes();
            batch.put_cf(self.cf(CF_LEAVES), key, &s.leaf);
            batch.put_cf(self.cf(CF_BODIES), key, &s.body);
            batch.put_cf(self.cf(CF_EVENT_IDS), e.event_id, key);
            batch.put_cf(self.cf(CF_BY_TIME), time_key(e.time_unix_nanos, *index), []);
            for (cf, term) in [(CF_BY_SESSION, &e.session_id), (CF_BY_SUBJECT, &e.subject)] {
                if !term.is_empty() && term.len() <= MAX_INDEX_TERM_LEN {
                    batch.put_cf(self.cf(cf), term_key(term, *index), []);
                }
            }
            for (level, idx, h) in next.push(s.leaf_hash) {
                if level < BOTTOM_LEVELS {
                    if let Some(tile) = edge.push(level, idx, h) {
                        let tile: Arc<[u8]> = tile.into();
                        batch.put_cf(self.cf(CF_NODES), bottom_tile_key(edge.tile() - 1), &tile);
                        tiles.push((edge.tile() - 1, tile));
                    }
                    continue;
                }
                batch.put_cf(self.cf(CF_NODES), node_key(level, idx), h);
                if level >= UPPER_FROM_LEVEL {
                    upper.push((level, idx, h));
                }
            }
        }
        Ok(out)
    }

    /// Writes the staged batch (WAL not synced) and moves the writer on;
    /// what it publishes waits for [`Store::sync`].
    /// A `synced` write (retention's) is not visible before it is durable.
    fn write_staged(
        &self,
        writer: &mut Writer,
        staged: Staged,
        synced_write: bool,
    ) -> Result<(), StoreError> {
        self.check_not_failed()?;
        let options = if synced_write {
            synced()
        } else {
            WriteOptions::default()
        };
        let Staged {
            next,
            edge,
            mut batch,
            upper,
            tiles,
        } = staged;
        if next.size() != writer.frontier.size() {
            batch.put_cf(self.cf(CF_META), META_SIZE, next.size().to_be_bytes());
        }
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.db.write_opt(batch, &options) {
            // The record may be in the WAL even so: what the writer holds no
            // longer says what a reopen would find.
            self.sync_failed
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(e.into());
        }
        // Complete tiles never change, so they may be cached before the
        // batch is durable: a reader asks for a tile only below the
        // published size, and the published edge tile comes first.
        for (tile, value) in tiles {
            self.tiles.insert(tile, value);
        }
        let publication = Publication {
            head: Head {
                size: next.size(),
                root: next.root(),
            },
            edge: edge.clone(),
            upper,
        };
        self.unpublished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(publication);
        *writer = Writer {
            frontier: next,
            edge,
        };
        Ok(())
    }

    /// Flushes and compactions RocksDB is running or has pending, over all
    /// column families: what competes with reads for the disk and the CPU
    /// (benchmarks wait for none before they measure).
    pub fn background_work(&self) -> Result<u64, StoreError> {
        let mut busy = 0;
        for name in ALL_CFS {
            for property in [
                "rocksdb.num-running-flushes",
                "rocksdb.num-running-compactions",
                "rocksdb.compaction-pending",
                "rocksdb.mem-table-flush-pending",
            ] {
                busy += self
                    .db
                    .property_int_value_cf(self.cf(name), property)?
                    .unwrap_or(0);
            }
        }
        Ok(busy)
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

    /// Leaf data (a [`LeafRecord`] encoding), or `None` past the end of
    /// the published tree.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index >= self.size() {
            return Ok(None);
        }
        self.stored_leaf(index)
    }

    /// A leaf as stored, published or not (opening, the edge tile).
    fn stored_leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_LEAVES), index.to_be_bytes())?)
    }

    /// The body of an entry, opened with the keyring; or the record of its
    /// pruning; or `Absent` past the end of the log.
    pub fn body(&self, index: u64) -> Result<BodyLookup, StoreError> {
        if index >= self.size() {
            return Ok(BodyLookup::Absent);
        }
        let Some(sealed) = self.db.get_cf(self.cf(CF_BODIES), index.to_be_bytes())? else {
            if let Some(record) = self.prune_record_for(index)? {
                return Ok(BodyLookup::Pruned(record));
            }
            return Err(StoreError::Corrupt(format!(
                "body {index} is missing and was not pruned"
            )));
        };
        let plain = self
            .keyring
            .open(index, &sealed)
            .map_err(|source| StoreError::Body { index, source })?;
        if plain.len() < 32 {
            return Err(StoreError::Corrupt(format!(
                "body {index} shorter than its salt"
            )));
        }
        let salt: [u8; 32] = plain[..32].try_into().expect("32 bytes");
        Ok(BodyLookup::Present {
            salt,
            body: plain[32..].to_vec(),
        })
    }

    /// The raw sealed bytes of a body as stored (for tests of encryption at
    /// rest and for tooling that moves sealed data without opening it).
    pub fn sealed_body(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index >= self.size() {
            return Ok(None);
        }
        Ok(self.db.get_cf(self.cf(CF_BODIES), index.to_be_bytes())?)
    }

    /// The C2SP tlog-tiles minimum index: bodies below it were pruned.
    pub fn min_index(&self) -> Result<u64, StoreError> {
        match self.db.get_cf(self.cf(CF_META), META_MIN_INDEX)? {
            Some(v) => u64_value(&v, "meta min_index"),
            None => Ok(0),
        }
    }

    /// The retention run that pruned `index`, if any.
    pub fn prune_record_for(&self, index: u64) -> Result<Option<PruneRecord>, StoreError> {
        // Records are keyed by end index: the first key above `index` is the
        // only run that can cover it.
        let start = pruned_key(index.saturating_add(1));
        let mut iter = self.db.iterator_cf(
            self.cf(CF_META),
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        match iter.next().transpose()? {
            Some((k, v)) if k.starts_with(META_PRUNED_PREFIX) => {
                let record = PruneRecord::decode(&v)?;
                Ok((record.from_index <= index && index < record.end_index).then_some(record))
            }
            _ => Ok(None),
        }
    }

    /// Every retention run so far, oldest first.
    pub fn prune_records(&self) -> Result<Vec<PruneRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .prefix_iterator_cf(self.cf(CF_META), META_PRUNED_PREFIX)
        {
            let (k, v) = item?;
            if !k.starts_with(META_PRUNED_PREFIX) {
                break;
            }
            out.push(PruneRecord::decode(&v)?);
        }
        Ok(out)
    }

    /// Index of the first entry at or after `from` whose time is not before
    /// `cutoff`, scanning at most `max_scan` leaves (so a huge backlog is
    /// pruned in bounded steps); and the indexes below it whose leaf kind is
    /// `keep_kind`.
    fn prune_end(
        &self,
        from: u64,
        cutoff: i64,
        max_scan: u64,
        keep_kind: &str,
    ) -> Result<(u64, Vec<u64>), StoreError> {
        let size = self.size();
        let stop = size.min(from.saturating_add(max_scan));
        let mut iter = self.db.iterator_cf(
            self.cf(CF_LEAVES),
            rocksdb::IteratorMode::From(&from.to_be_bytes(), rocksdb::Direction::Forward),
        );
        let mut expect = from;
        let mut keep = Vec::new();
        while expect < stop {
            let Some((k, v)) = iter.next().transpose()? else {
                break;
            };
            if k.as_ref() != expect.to_be_bytes() {
                return Err(StoreError::Corrupt(format!("leaf {expect} missing")));
            }
            let leaf = LeafRecord::decode(&v)
                .map_err(|e| StoreError::Corrupt(format!("leaf {expect}: {e}")))?;
            if leaf.time_unix_nanos >= cutoff {
                break;
            }
            if !keep_kind.is_empty() && leaf.kind == keep_kind {
                keep.push(expect);
            }
            expect += 1;
        }
        Ok((expect, keep))
    }

    /// Retention: deletes the sealed bodies (and so the salts) of the longest
    /// prefix of not-yet-pruned entries whose time is before `cutoff`, at
    /// most `max_entries` of them; advances the minimum index; keeps a
    /// [`PruneRecord`]; and appends `record(&prune_record)` as a new entry —
    /// all in one synced batch, so a crash leaves either none or all of it.
    ///
    /// The record entry is of kind `record_kind`. The bodies of earlier
    /// prune records (entries of that kind)
    /// in the range are kept: they are what lets an auditor check every
    /// run against the log itself (its range and cutoff), so they must
    /// outlive every later run.
    ///
    /// Only a prefix is pruned: an entry that is younger than the cutoff
    /// stops the run even if older ones follow it (they are pruned by a
    /// later run), so nothing is ever deleted early. Returns `None` when
    /// nothing was eligible.
    pub fn prune_before(
        &self,
        cutoff_unix_nanos: i64,
        pruned_at_unix_nanos: i64,
        max_entries: u64,
        record_kind: &str,
        record: impl FnOnce(&PruneRecord) -> NewEntry,
    ) -> Result<Option<(PruneRecord, Appended)>, StoreError> {
        let from = self.min_index()?;
        // Leaves are immutable: scan without blocking appends.
        let (end, keep) = self.prune_end(from, cutoff_unix_nanos, max_entries, record_kind)?;
        if end == from {
            return Ok(None);
        }
        let pruned = PruneRecord {
            from_index: from,
            end_index: end,
            cutoff_unix_nanos,
            pruned_at_unix_nanos,
        };
        let entry = record(&pruned);
        if entry.kind != record_kind {
            return Err(StoreError::InvalidArgument(format!(
                "a prune record of kind {:?} was declared as {record_kind:?}",
                entry.kind
            )));
        }
        validate(std::slice::from_ref(&entry))?;
        let mut writer = self.lock_writer();
        if self.min_index()? != from {
            return Err(StoreError::InvalidArgument(
                "another retention run changed the minimum index".into(),
            ));
        }
        let bodies = self.cf(CF_BODIES);
        let mut kept = Vec::with_capacity(keep.len());
        for index in keep {
            let key = index.to_be_bytes();
            let sealed = self.db.get_cf(bodies, key)?.ok_or_else(|| {
                StoreError::Corrupt(format!("the body of prune record {index} is missing"))
            })?;
            kept.push((key, sealed));
        }
        let mut staged = Staged::from(&*writer);
        let batch = &mut staged.batch;
        batch.delete_range_cf(bodies, from.to_be_bytes(), end.to_be_bytes());
        // Later operations of one batch win over earlier ones: the kept
        // bodies survive the range deletion.
        for (key, sealed) in &kept {
            batch.put_cf(bodies, key, sealed);
        }
        batch.put_cf(self.cf(CF_META), META_MIN_INDEX, end.to_be_bytes());
        batch.put_cf(self.cf(CF_META), pruned_key(end), pruned.encode());
        let appended = self.stage(&mut staged, vec![entry])?;
        // Synced: the range deletion, the new minimum index and the record
        // are not visible before they are durable.
        self.write_staged(&mut writer, staged, true)?;
        drop(writer);
        self.sync()?;
        // A range tombstone hides the bodies at once. For the bytes to be gone
        // from disk: flush every memtable (so no live WAL file still holds a
        // sealed body), then compact the range (so no SST file does).
        for name in ALL_CFS {
            self.db.flush_cf(self.cf(name))?;
        }
        self.db
            .compact_range_cf(bodies, Some(from.to_be_bytes()), Some(end.to_be_bytes()));
        Ok(Some((pruned, appended[0])))
    }

    /// Finds entries by session, subject or time range, at most `limit` per
    /// page; pass the returned `next` back as `resume` for the next page.
    /// Only entries of the published tree are returned.
    pub fn find(
        &self,
        filter: &EntryFilter,
        resume: Option<&[u8]>,
        limit: usize,
    ) -> Result<FoundEntries, StoreError> {
        let size = self.size();
        let (cf, lower, upper): (&str, Vec<u8>, Vec<u8>) = match filter {
            EntryFilter::Session(term) | EntryFilter::Subject(term) => {
                let cf = if matches!(filter, EntryFilter::Session(_)) {
                    CF_BY_SESSION
                } else {
                    CF_BY_SUBJECT
                };
                if term.is_empty() || term.len() > MAX_INDEX_TERM_LEN {
                    return Ok(FoundEntries::default());
                }
                (cf, term_key(term, 0), term_key(term, u64::MAX))
            }
            EntryFilter::TimeRange {
                from_unix_nanos,
                to_unix_nanos,
            } => {
                if from_unix_nanos >= to_unix_nanos {
                    return Ok(FoundEntries::default());
                }
                (
                    CF_BY_TIME,
                    time_prefix(*from_unix_nanos).to_vec(),
                    time_prefix(*to_unix_nanos).to_vec(),
                )
            }
        };
        let inclusive_upper = matches!(filter, EntryFilter::Session(_) | EntryFilter::Subject(_));
        let mut start = lower;
        if let Some(r) = resume {
            if r.len() > start.len() + 16 {
                return Err(StoreError::InvalidArgument(
                    "resume position is malformed".into(),
                ));
            }
            // Strictly after the resume key.
            let mut after = r.to_vec();
            after.push(0);
            if after > start {
                start = after;
            }
        }
        let mut out = FoundEntries::default();
        let iter = self.db.iterator_cf(
            self.cf(cf),
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, _) = item?;
            let past = if inclusive_upper {
                k.as_ref() > upper.as_slice()
            } else {
                k.as_ref() >= upper.as_slice()
            };
            if past {
                break;
            }
            if k.len() < 8 {
                return Err(StoreError::Corrupt("index key shorter than 8 bytes".into()));
            }
            let index = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"));
            if index >= size {
                // Written with a batch whose head is not published yet.
                continue;
            }
            if out.indexes.len() >= limit.max(1) {
                // More matches remain: `next` holds the last returned key.
                return Ok(out);
            }
            out.indexes.push(index);
            out.next = Some(k.to_vec());
        }
        out.next = None;
        Ok(out)
    }

    /// Leaf index of an event id, if it is in the published log.
    pub fn index_of(&self, event_id: &[u8; 16]) -> Result<Option<u64>, StoreError> {
        let size = self.size();
        Ok(self.stored_index_of(event_id)?.filter(|&i| i < size))
    }

    /// An event id's index, published or not (what duplicates are found by).
    fn stored_index_of(&self, event_id: &[u8; 16]) -> Result<Option<u64>, StoreError> {
        self.db
            .get_cf(self.cf(CF_EVENT_IDS), event_id)?
            .map(|v| u64_value(&v, "event id index"))
            .transpose()
    }

    /// Hash of the complete subtree `(level, index)`; `NotFound` if it is not
    /// complete yet.
    pub fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        if level < BOTTOM_LEVELS {
            if let Some(h) = self.bottom_node(level, index)? {
                return Ok(h);
            }
        } else if let Some(h) = self
            .upper
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(level, index)
        {
            return Ok(h);
        }
        // Levels >= 8, and the bottom levels of a log written before they
        // were stored by tile: one key per node.
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

    /// A node of the bottom levels: from the edge tile in memory, or from
    /// its complete tile's stored value. `None` if neither holds it.
    fn bottom_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        if let Some(h) = self.edge_node(level, index) {
            return Ok(Some(h));
        }
        let (tile, slot) = bottom::locate(level, index);
        match self.stored_tile(tile)? {
            Some(value) => tile_slot(&value, tile, slot).map(Some),
            None => Ok(None),
        }
    }

    /// Complete bottom tile `tile`: from the tile cache, or read and
    /// cached. `None` if it is not stored (not complete, or a log written
    /// one key per node).
    fn stored_tile(&self, tile: u64) -> Result<Option<Arc<[u8]>>, StoreError> {
        if let Some(value) = self.tiles.get(tile) {
            return Ok(Some(value));
        }
        self.tile_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(value) = self
            .db
            .get_pinned_cf(self.cf(CF_NODES), bottom_tile_key(tile))?
        else {
            return Ok(None);
        };
        let value: Arc<[u8]> = value.as_ref().into();
        // Only what is a tile is kept: a wrong length is reported as
        // corrupt by whoever reads a slot of it, every time.
        if value.len() == bottom::TILE_BYTES {
            self.tiles.insert(tile, value.clone());
        }
        Ok(Some(value))
    }

    /// At most `bytes` of complete bottom tiles are kept in memory (the
    /// newest ones); see [`crate::tile_cache`].
    pub fn set_tile_cache_limit(&self, bytes: u64) {
        self.tiles.set_limit(bytes);
    }

    /// How many complete bottom tiles are in memory now.
    pub fn cached_tiles(&self) -> usize {
        self.tiles.len()
    }

    /// Reads the newest stored bottom tiles into the tile cache until it
    /// is full (or every tile is in it), so that a reopened log's proofs
    /// do not each wait for a read; returns how many it added. Run it off
    /// the path of anything waiting: at 10 million entries it reads about
    /// 600 MiB. [`Store::warm_tile_cache_below`] does the same a part at a
    /// time.
    pub fn warm_tile_cache(&self) -> Result<usize, StoreError> {
        let (mut added, mut below) = (0, Some(u64::MAX));
        while let Some(end) = below {
            let (more, next) = self.warm_tile_cache_below(end, usize::MAX)?;
            added += more;
            below = next;
        }
        Ok(added)
    }

    /// Reads up to `max` stored bottom tiles below tile index `end`, the
    /// newest first, into the tile cache; returns how many it added and
    /// where to go on (`None`: every tile is cached, or the cache is full).
    pub fn warm_tile_cache_below(
        &self,
        end: u64,
        max: usize,
    ) -> Result<(usize, Option<u64>), StoreError> {
        let Some(last) = end.checked_sub(1) else {
            return Ok((0, None));
        };
        let mut options = rocksdb::ReadOptions::default();
        // One pass over every tile: not worth RocksDB's block cache.
        options.fill_cache(false);
        let from = bottom_tile_key(last);
        let (mut added, mut read) = (0, 0);
        for item in self.db.iterator_cf_opt(
            self.cf(CF_NODES),
            options,
            rocksdb::IteratorMode::From(&from, rocksdb::Direction::Reverse),
        ) {
            let (key, value) = item?;
            if key.first() != Some(&BOTTOM_TILE_TAG) || value.len() != bottom::TILE_BYTES {
                return Ok((added, None));
            }
            let tile = index_suffix(&key)?;
            if read == max {
                return Ok((added, Some(tile + 1)));
            }
            read += 1;
            if self.tiles.get(tile).is_none() {
                if !self.tiles.insert(tile, value.as_ref().into()) {
                    return Ok((added, None));
                }
                added += 1;
            }
        }
        Ok((added, None))
    }

    /// How many times a bottom tile was read from RocksDB (not found in the
    /// tile cache) since the store was opened.
    pub fn tile_reads(&self) -> u64 {
        self.tile_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn edge_node(&self, level: u8, index: u64) -> Option<Hash> {
        self.edge
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(level, index)
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
        tree::inclusion_proof(&OneProof::new(self), index, size)
    }

    /// Consistency proof between sizes `0 < size1 <= size2 <= self.size()`.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(size2)?;
        tree::consistency_proof(&OneProof::new(self), size1, size2)
    }

    /// Root of the tree of the first `size` leaves (`size <= self.size()`).
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_size(size)?;
        tree::root_of(&OneProof::new(self), size)
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
        // Tile level 0 is one stored bottom tile (or the edge): one read.
        let nodes = OneProof::new(self);
        for i in first..first + width {
            out.extend_from_slice(&nodes.node(tree_level, i)?);
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

    /// Records a key rotation note (see [`crate::rotation`]) after the ones
    /// before it, and stores it as the current checkpoint too (both keys
    /// signed it). The note's checkpoint must match the log.
    pub fn put_key_rotation(&self, note: &str) -> Result<(), StoreError> {
        self.put_checkpoint(note)?;
        let _w = self.lock_writer();
        let n = self.key_rotations()?.len() as u64;
        let mut key = META_ROTATION_PREFIX.to_vec();
        key.extend_from_slice(&n.to_be_bytes());
        self.db.put_cf_opt(self.cf(CF_META), key, note, &synced())?;
        Ok(())
    }

    /// Every key rotation note, oldest first.
    pub fn key_rotations(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .prefix_iterator_cf(self.cf(CF_META), META_ROTATION_PREFIX)
        {
            let (k, v) = item?;
            if !k.starts_with(META_ROTATION_PREFIX) {
                break;
            }
            out.push(
                String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Corrupt("stored key rotation is not UTF-8".into()))?,
            );
        }
        Ok(out)
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

fn validate(entries: &[NewEntry]) -> Result<(), StoreError> {
    for e in entries {
        if e.kind.len() > crate::leaf::MAX_KIND_LEN {
            return Err(LeafError::KindTooLong(e.kind.len()).into());
        }
    }
    Ok(())
}

fn tile_slot(value: &[u8], tile: u64, slot: usize) -> Result<Hash, StoreError> {
    bottom::slot_of(value, slot).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "bottom tile {tile} is {} bytes, not {}",
            value.len(),
            bottom::TILE_BYTES
        ))
    })
}

/// The store as one proof (or root, or tile) reads it: the bottom tile it read last
/// is kept, since a proof's siblings below level 8 lie in one or two tiles
/// (up to eight lookups of one value otherwise). Complete tiles never
/// change, so the copy cannot go stale.
struct OneProof<'a> {
    store: &'a Store,
    last_tile: std::cell::RefCell<Option<(u64, Arc<[u8]>)>>,
}

impl<'a> OneProof<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            last_tile: std::cell::RefCell::new(None),
        }
    }
}

impl NodeSource for OneProof<'_> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        if level >= BOTTOM_LEVELS {
            return self.store.node(level, index);
        }
        if let Some(h) = self.store.edge_node(level, index) {
            return Ok(h);
        }
        let (tile, slot) = bottom::locate(level, index);
        let mut last = self.last_tile.borrow_mut();
        if let Some((cached, value)) = last.as_ref() {
            if *cached == tile {
                return tile_slot(value, tile, slot);
            }
        }
        match self.store.stored_tile(tile)? {
            Some(value) => {
                let hash = tile_slot(&value, tile, slot)?;
                *last = Some((tile, value));
                Ok(hash)
            }
            // A log written one key per node, before tiles.
            None => self.store.node(level, index),
        }
    }
}

impl From<&Writer> for Staged {
    fn from(writer: &Writer) -> Self {
        Self {
            next: writer.frontier.clone(),
            edge: writer.edge.clone(),
            batch: WriteBatch::default(),
            upper: Vec::new(),
            tiles: Vec::new(),
        }
    }
}

impl NodeSource for Store {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        Store::node(self, level, index)
    }
}
