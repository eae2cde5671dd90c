//! Verification of Merkle inclusion and consistency proofs (RFC 9162
//! §2.1.3.2 and §2.1.4.2).
//!
//! Instead of the RFC's bit-twiddling loop we first derive the exact proof
//! shape from the sizes (see [`inclusion_shape`] / [`consistency_shape`]), so
//! a proof of the wrong length is rejected with a precise error before any
//! hashing, and the generator in [`crate::tree`] uses the very same shape.

use crate::hash::{node_hash, Hash};

/// Why a proof (or a proof request) was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ProofError {
    /// Inclusion: the leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// Consistency: the old tree is empty, which proves nothing.
    #[error("consistency proof from an empty tree (size1 = 0) is meaningless")]
    EmptyOldTree,
    /// Consistency: the old tree is bigger than the new one.
    #[error("size1 {size1} is greater than size2 {size2}")]
    SizesOutOfOrder {
        /// Old tree size.
        size1: u64,
        /// New tree size.
        size2: u64,
    },
    /// The proof does not have the number of hashes the sizes require.
    #[error("proof has {got} hashes, expected {want}")]
    WrongProofLength {
        /// Hashes supplied.
        got: usize,
        /// Hashes required by the tree shape.
        want: usize,
    },
    /// Inclusion (or equal-size consistency): the computed root differs.
    #[error("calculated root does not match the expected root")]
    RootMismatch,
    /// Consistency: the proof does not reproduce the old root.
    #[error("calculated old root (size1) does not match root1")]
    Root1Mismatch,
    /// Consistency: the proof does not reproduce the new root.
    #[error("calculated new root (size2) does not match root2")]
    Root2Mismatch,
}

/// Shape of an inclusion proof: `inner` hashes on the path below the point
/// where the leaf's path leaves the tree's right edge, then `border` hashes of
/// full left siblings along the right edge.
pub(crate) fn inclusion_shape(index: u64, size: u64) -> (u32, u32) {
    debug_assert!(index < size);
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = if inner >= 64 {
        0
    } else {
        (index >> inner).count_ones()
    };
    (inner, border)
}

/// Shape of a consistency proof for `0 < size1 < size2`:
/// `(seed_in_proof, shift, inner_full, border)`. The walk starts at the
/// largest perfect subtree ending at `size1` (level `shift`); when `size1` is
/// a power of two that subtree is root1 itself and is not sent.
pub(crate) fn consistency_shape(size1: u64, size2: u64) -> (bool, u32, u32, u32) {
    debug_assert!(0 < size1 && size1 < size2);
    let index = size1 - 1;
    let inner_full = 64 - (index ^ (size2 - 1)).leading_zeros();
    let shift = size1.trailing_zeros();
    let seed_in_proof = !size1.is_power_of_two();
    let border = if inner_full >= 64 {
        0
    } else {
        (index >> inner_full).count_ones()
    };
    (seed_in_proof, shift, inner_full, border)
}

/// Verifies that `leaf_hash` is the leaf at `index` of the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (inner, border) = inclusion_shape(index, size);
    let want = (inner + border) as usize;
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    let mut h = *leaf_hash;
    for (level, p) in proof[..inner as usize].iter().enumerate() {
        h = if (index >> level) & 1 == 1 {
            node_hash(p, &h)
        } else {
            node_hash(&h, p)
        };
    }
    for p in &proof[inner as usize..] {
        h = node_hash(p, &h);
    }
    if &h == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies that the tree of `size1` leaves with root `root1` is a prefix of
/// the tree of `size2` leaves with root `root2`.
///
/// `size1 == 0` is always an error (nothing is proven); `size1 == size2`
/// holds only with an empty proof and equal roots.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let (seed_in_proof, shift, inner_full, border) = consistency_shape(size1, size2);
    let inner = (inner_full - shift) as usize;
    let want = usize::from(seed_in_proof) + inner + border as usize;
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    let (seed, rest) = if seed_in_proof {
        (proof[0], &proof[1..])
    } else {
        (*root1, proof)
    };
    let mask = (size1 - 1) >> shift;
    let (mut h1, mut h2) = (seed, seed);
    for (i, p) in rest[..inner].iter().enumerate() {
        if (mask >> i) & 1 == 1 {
            h1 = node_hash(p, &h1);
            h2 = node_hash(p, &h2);
        } else {
            h2 = node_hash(&h2, p);
        }
    }
    for p in &rest[inner..] {
        h1 = node_hash(p, &h1);
        h2 = node_hash(p, &h2);
    }
    if &h1 != root1 {
        return Err(ProofError::Root1Mismatch);
    }
    if &h2 != root2 {
        return Err(ProofError::Root2Mismatch);
    }
    Ok(())
}
