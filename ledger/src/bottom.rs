//! The tree's bottom eight levels, stored a tile at a time.
//!
//! Levels 0 to 7 hold 255 of every 256 node hashes. Stored one key per node,
//! they cost about two RocksDB puts per appended entry and eight point reads
//! per proof. Instead, the 510 node hashes of each complete 256-leaf tile
//! (256 leaf hashes at level 0, 128 at level 1, ..., 2 at level 7) are one
//! value, written in the batch that appends the tile's last leaf. The tile
//! still filling, at the right edge, lives in memory ([`EdgeTile`]); on open
//! it is rebuilt from the stored leaves, which commit to the same hashes. A
//! crash can therefore lose nothing of it. Levels 8 and up (one node in 128)
//! stay one key per node.
//!
//! Logs written before this layout keep their nodes one key per node; the
//! store reads those where a tile value is absent.

use crate::hash::Hash;
use crate::tree::Frontier;

/// Tree levels stored by tile (0 to 7).
pub const BOTTOM_LEVELS: u8 = 8;
/// Leaves under one bottom tile.
pub const TILE_LEAVES: u64 = 1 << BOTTOM_LEVELS;
/// Node hashes in a complete bottom tile: 256 + 128 + ... + 2.
pub const TILE_HASHES: usize = 510;
/// Bytes of a stored bottom tile.
pub const TILE_BYTES: usize = TILE_HASHES * 32;

/// First slot of `level` in a tile's value (levels in order, each left to
/// right): 0, 256, 384, ..., 508.
fn level_offset(level: u8) -> usize {
    512 - (512 >> level)
}

/// Where node `(level, index)` of a bottom level lives: its tile, and its
/// slot in that tile's value.
pub fn locate(level: u8, index: u64) -> (u64, usize) {
    debug_assert!(level < BOTTOM_LEVELS);
    let shift = BOTTOM_LEVELS - level;
    let within = (index & ((1u64 << shift) - 1)) as usize;
    (index >> shift, level_offset(level) + within)
}

/// One hash of a stored tile value; `None` if the value is not a tile.
pub fn slot_of(value: &[u8], slot: usize) -> Option<Hash> {
    if value.len() != TILE_BYTES {
        return None;
    }
    value.get(slot * 32..slot * 32 + 32)?.try_into().ok()
}

/// The bottom tile still filling: the node hashes of its levels 0 to 7
/// that are complete so far.
#[derive(Clone)]
pub struct EdgeTile {
    tile: u64,
    hashes: Box<[Hash; TILE_HASHES]>,
    /// How many nodes of each level are complete (a prefix of the level).
    complete: [u16; BOTTOM_LEVELS as usize],
}

impl std::fmt::Debug for EdgeTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeTile")
            .field("tile", &self.tile)
            .field("leaves", &self.complete[0])
            .finish_non_exhaustive()
    }
}

impl EdgeTile {
    /// The empty tile `tile`.
    pub fn empty(tile: u64) -> Self {
        Self {
            tile,
            hashes: Box::new([[0u8; 32]; TILE_HASHES]),
            complete: [0; BOTTOM_LEVELS as usize],
        }
    }

    /// The edge tile of a tree of `size` leaves, from the hashes of its
    /// leaves past the last complete tile (`size % 256` of them, in order).
    pub fn rebuild(size: u64, leaf_hashes: impl IntoIterator<Item = Hash>) -> Self {
        let mut edge = Self::empty(size / TILE_LEAVES);
        // The tile's own small tree: its nodes' indexes count from the tile.
        let mut local = Frontier::new();
        for leaf in leaf_hashes {
            for (level, within, hash) in local.push(leaf) {
                edge.set(level, within, hash);
            }
        }
        debug_assert_eq!(u64::from(edge.complete[0]), size % TILE_LEAVES);
        edge
    }

    /// The tile's index.
    pub fn tile(&self) -> u64 {
        self.tile
    }

    /// Records node `(level, index)` (tree-wide index) that an append
    /// completed. Returns the tile's value once it is complete; the edge
    /// then moves on to the next, empty tile.
    pub fn push(&mut self, level: u8, index: u64, hash: Hash) -> Option<Vec<u8>> {
        let (tile, _) = locate(level, index);
        debug_assert_eq!(tile, self.tile, "nodes arrive in order");
        self.set(level, index - (tile << (BOTTOM_LEVELS - level)), hash);
        if self.complete[usize::from(BOTTOM_LEVELS - 1)] < 2 {
            return None;
        }
        let value = self.encode();
        *self = Self::empty(self.tile + 1);
        Some(value)
    }

    fn set(&mut self, level: u8, within: u64, hash: Hash) {
        let count = &mut self.complete[usize::from(level)];
        debug_assert_eq!(u64::from(*count), within, "nodes arrive in order");
        self.hashes[level_offset(level) + within as usize] = hash;
        *count += 1;
    }

    /// Node `(level, index)` if it lies in this tile and is complete.
    pub fn get(&self, level: u8, index: u64) -> Option<Hash> {
        let (tile, slot) = locate(level, index);
        let within = slot - level_offset(level);
        (tile == self.tile && within < usize::from(self.complete[usize::from(level)]))
            .then(|| self.hashes[slot])
    }

    fn encode(&self) -> Vec<u8> {
        self.hashes.iter().flatten().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn slots_follow_levels_in_order() {
        assert_eq!(locate(0, 0), (0, 0));
        assert_eq!(locate(0, 255), (0, 255));
        assert_eq!(locate(0, 256), (1, 0));
        assert_eq!(locate(1, 0), (0, 256));
        assert_eq!(locate(1, 129), (1, 257));
        assert_eq!(locate(7, 1), (0, 509));
        assert_eq!(locate(7, 2), (1, 508));
    }

    /// Every node the global frontier completes is found in the edge, or in
    /// the values the edge hands out, at the slot `locate` names.
    #[test]
    fn the_edge_and_its_values_hold_every_bottom_node() {
        let mut tree = Frontier::new();
        let mut edge = EdgeTile::empty(0);
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut all = Vec::new();
        for i in 0..700u32 {
            for (level, index, hash) in tree.push(leaf_hash(&i.to_be_bytes())) {
                if level < BOTTOM_LEVELS {
                    if let Some(v) = edge.push(level, index, hash) {
                        values.push(v);
                    }
                    all.push((level, index, hash));
                }
            }
        }
        assert_eq!(values.len(), 2);
        assert_eq!(edge.tile(), 2);
        for (level, index, hash) in all {
            let (tile, slot) = locate(level, index);
            let found = match values.get(tile as usize) {
                Some(v) => slot_of(v, slot),
                None => edge.get(level, index),
            };
            assert_eq!(found, Some(hash), "node ({level}, {index})");
        }
        // Not complete yet: the right sibling of leaf 699, and the second
        // level-7 node of tile 2 (leaves 640 to 767); the first is.
        assert_eq!(edge.get(0, 700), None);
        assert_eq!(edge.get(7, 5), None);
        assert!(edge.get(7, 4).is_some());
        // Other tiles' nodes are never answered from the edge.
        assert_eq!(edge.get(0, 3), None);
    }

    #[test]
    fn rebuilt_from_leaves_equals_the_edge_built_by_appends() {
        for size in [0u64, 1, 2, 255, 256, 257, 511, 600] {
            let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let mut tree = Frontier::new();
            let mut edge = EdgeTile::empty(0);
            for leaf in &leaves {
                for (level, index, hash) in tree.push(*leaf) {
                    if level < BOTTOM_LEVELS {
                        let _ = edge.push(level, index, hash);
                    }
                }
            }
            let start = (size / TILE_LEAVES * TILE_LEAVES) as usize;
            let rebuilt = EdgeTile::rebuild(size, leaves[start..].iter().copied());
            assert_eq!(rebuilt.tile, edge.tile, "size {size}");
            assert_eq!(rebuilt.complete, edge.complete, "size {size}");
            assert_eq!(rebuilt.hashes, edge.hashes, "size {size}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_length_is_not_a_tile() {
        assert_eq!(slot_of(&[0u8; 32], 0), None);
        assert_eq!(slot_of(&vec![7u8; TILE_BYTES], 509), Some([7u8; 32]));
        assert_eq!(slot_of(&vec![7u8; TILE_BYTES], 510), None);
    }
}
