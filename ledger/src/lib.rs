#![forbid(unsafe_code)]
//! Vigil's Merkle-anchored append-only audit log.
//!
//! - [`hash`]: RFC 6962 leaf/node hashing.
//! - [`tree`] / [`proof`]: tree building, proof generation and verification.
//! - [`leaf`]: what each leaf commits to.
//! - [`note`] / [`checkpoint`]: C2SP signed notes and checkpoints.
//! - [`rotation`]: signing-key rotations an auditor can follow.
//! - [`tile`]: C2SP tlog-tiles paths and entry bundles.
//! - [`store`]: the durable RocksDB log; [`bottom`]: its bottom tree levels, stored by tile.
//! - `sealing`: an append's per-entry hashing and sealing, on several cores for a large batch.
//! - [`tile_cache`]: complete bottom tiles held in memory for proofs.
//! - [`bodycrypt`]: encryption at rest of event bodies, with key rotation.

pub mod bodycrypt;
pub mod bottom;
pub mod checkpoint;
pub mod cosignature;
pub mod hash;
pub mod leaf;
pub mod note;
pub mod proof;
pub mod rotation;
mod sealing;
pub mod store;
pub mod tile;
pub mod tile_cache;
pub mod tree;

pub use bodycrypt::{BodyCryptError, Keyring};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use hash::{empty_root, leaf_hash, node_hash, Hash};
pub use leaf::{body_commitment, stream_position, LeafError, LeafRecord};
pub use note::{add_signature, open_note, sign_note, NoteError, NoteSigner, NoteVerifier};
pub use proof::{verify_consistency, verify_inclusion, ProofError};
pub use store::{
    Appended, BodyLookup, EntryFilter, FoundEntries, NewEntry, PruneRecord, Store, StoreError,
};
pub use tile::{TileError, TilePath, TILE_WIDTH};
pub use tree::{Frontier, MemoryTree, NodeSource, TreeError};
