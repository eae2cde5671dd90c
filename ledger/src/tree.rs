//! Building trees and generating proofs from stored complete-subtree hashes.
//!
//! The log only ever stores hashes of *complete* (perfect) subtrees: node
//! `(level, index)` covers leaves `[index << level, (index + 1) << level)`.
//! Such a node never changes once written, which is what makes the store
//! append-only and crash-safe. Every hash of an incomplete subtree (the right
//! edge of a tree that is not a power of two) is recomputed on demand from at
//! most 64 complete ones.

use std::collections::HashMap;

use crate::hash::{empty_root, leaf_hash as hash_leaf, node_hash, Hash};
use crate::proof::{consistency_shape, inclusion_shape, ProofError};

/// The right edge of a tree (compact range from 0): enough to append and
/// compute the root.
///
/// Holds one hash per set bit of `size`: the perfect subtrees of the binary
/// decomposition of `size`, largest (leftmost) first.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the hashes of the complete subtrees this
    /// append completed, as `(level, index, hash)`, level 0 = the leaf itself
    /// (index = leaf index). Callers store these as the tree's node hashes.
    ///
    /// # Panics
    /// If the tree already holds `u64::MAX` leaves (unreachable in practice).
    pub fn push(&mut self, leaf_hash: Hash) -> Vec<(u8, u64, Hash)> {
        let index = self.size;
        let merges = index.trailing_ones();
        let mut out = Vec::with_capacity(merges as usize + 1);
        out.push((0u8, index, leaf_hash));
        let mut cur = leaf_hash;
        for level in 1..=merges {
            let left = self
                .hashes
                .pop()
                .expect("frontier holds one hash per set bit of size");
            cur = node_hash(&left, &cur);
            out.push((level as u8, index >> level, cur));
        }
        self.hashes.push(cur);
        self.size = index.checked_add(1).expect("tree size overflow");
        out
    }

    /// The Merkle tree hash (root) of the whole tree.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Rebuild from stored node hashes: the frontier of a tree of `size`
    /// leaves consists of the perfect subtrees given by the binary
    /// decomposition of `size`. `get(level, index)` is called once per set bit.
    pub fn from_nodes<E>(
        size: u64,
        mut get: impl FnMut(u8, u64) -> Result<Hash, E>,
    ) -> Result<Self, E> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        for level in (0..64u32).rev() {
            if (size >> level) & 1 == 1 {
                hashes.push(get(level as u8, (size >> level) - 1)?);
            }
        }
        Ok(Self { size, hashes })
    }
}

/// Source of complete-subtree hashes: node `(level, index)` covers leaves
/// `[index << level, (index + 1) << level)`.
///
/// `Error: From<ProofError>` lets the proof generators report violated
/// preconditions (`index >= size`, `size1 == 0`, `size1 > size2`) as an error
/// value of the source's own error type instead of panicking.
pub trait NodeSource {
    /// Error of a failed lookup (or a bad request, via `From<ProofError>`).
    type Error: From<ProofError>;
    /// Hash of the complete subtree `(level, index)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// MTH of leaves `[start, end)` where `start` is aligned to the largest power
/// of two not exceeding `end - start` (true for every range the RFC needs):
/// fold the perfect subtrees of the decomposition from the right.
fn range_root<S: NodeSource>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let mut parts = Vec::new();
    let mut pos = start;
    while pos < end {
        let mut level = 63 - (end - pos).leading_zeros();
        if pos != 0 {
            level = level.min(pos.trailing_zeros());
        }
        parts.push(src.node(level as u8, pos >> level)?);
        pos += 1u64 << level;
    }
    let mut it = parts.into_iter().rev();
    let Some(last) = it.next() else {
        return Ok(empty_root());
    };
    Ok(it.fold(last, |acc, left| node_hash(&left, &acc)))
}

/// Hash of the sibling of node `n` at `level` in a tree of `size` leaves:
/// a stored complete node when it is a left sibling, possibly a partial
/// (right-edge) subtree when it is a right sibling.
fn sibling<S: NodeSource>(src: &S, level: u32, n: u64, size: u64) -> Result<Hash, S::Error> {
    let s = n ^ 1;
    if n & 1 == 1 {
        src.node(level as u8, s)
    } else {
        let start = s << level;
        let end = start.saturating_add(1u64 << level).min(size);
        range_root(src, start, end)
    }
}

/// MTH of the first `size` leaves.
pub fn root_of<S: NodeSource>(src: &S, size: u64) -> Result<Hash, S::Error> {
    range_root(src, 0, size)
}

/// RFC 9162 §2.1.3.1 inclusion proof for leaf `index` in the tree of `size`
/// leaves. `index >= size` yields `ProofError::IndexOutOfRange` (converted).
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    let (inner, border) = inclusion_shape(index, size);
    let mut proof = Vec::with_capacity((inner + border) as usize);
    for level in 0..inner {
        proof.push(sibling(src, level, index >> level, size)?);
    }
    for level in inner..64 {
        let n = index >> level;
        if n & 1 == 1 {
            proof.push(src.node(level as u8, n ^ 1)?);
        }
    }
    Ok(proof)
}

/// RFC 9162 §2.1.4.1 consistency proof between the trees of `size1` and
/// `size2` leaves. Requires `0 < size1 <= size2` (else a converted
/// `ProofError`); `size1 == size2` gives the empty proof.
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, S::Error> {
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree.into());
    }
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 }.into());
    }
    if size1 == size2 {
        return Ok(Vec::new());
    }
    let (seed_in_proof, shift, inner_full, _) = consistency_shape(size1, size2);
    let index = size1 - 1;
    let mut proof = Vec::new();
    if seed_in_proof {
        proof.push(src.node(shift as u8, index >> shift)?);
    }
    for level in shift..inner_full {
        proof.push(sibling(src, level, index >> level, size2)?);
    }
    for level in inner_full..64 {
        let n = index >> level;
        if n & 1 == 1 {
            proof.push(src.node(level as u8, n ^ 1)?);
        }
    }
    Ok(proof)
}

/// MTH of a list of leaf hashes, straight from the RFC's recursive
/// definition. Independent of [`Frontier`]; used to cross-check it.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(
                &root_from_leaf_hashes(&leaves[..k]),
                &root_from_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// Error of [`MemoryTree`] lookups.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TreeError {
    /// A precondition of a proof request was violated.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The node is not (yet) complete in this tree.
    #[error("node (level {level}, index {index}) is not in the tree")]
    MissingNode {
        /// Tree level (0 = leaves).
        level: u8,
        /// Index at that level.
        index: u64,
    },
}

/// An in-memory tree: a [`Frontier`] plus every complete node it emitted.
/// Handy for tests and for verifying a batch before it is stored.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    nodes: HashMap<(u8, u64), Hash>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends raw leaf data (hashed with [`crate::hash::leaf_hash`]).
    pub fn push_data(&mut self, data: &[u8]) {
        self.push(hash_leaf(data));
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf_hash: Hash) {
        for (level, index, h) in self.frontier.push(leaf_hash) {
            self.nodes.insert((level, index), h);
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root at the current size.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeSource for MemoryTree {
    type Error = TreeError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, TreeError> {
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or(TreeError::MissingNode { level, index })
    }
}
