//! Complete bottom tiles held in the store's own memory, so that a proof
//! does not depend on the page cache.
//!
//! A proof reads one stored bottom tile (levels 0 to 7 of its leaf's
//! subtree); the levels above are in memory already ([`crate::store`]'s
//! upper nodes). Through RocksDB that tile comes from the page cache when
//! the host keeps it there, and from the disk otherwise. A host that
//! reclaims page cache nobody touched for a while (this project's VMs run
//! a DAMON `pageout` scheme that evicts it after about a minute) turns a
//! proof for anything written more than a minute ago and not read since
//! into a disk read: the p99 the ledger bench measured. Anonymous memory is
//! not reclaimed that way (without swap it cannot be), so the store keeps
//! tiles here: every complete tile it writes and every one it reads.
//!
//! The cache is bounded: it keeps the newest tiles (highest index) up to
//! its limit. A complete tile never changes, so a cached copy cannot go
//! stale. Each tile costs 510 hashes (16,320 bytes), 64 bytes an entry: the
//! default limit of [`DEFAULT_LIMIT_BYTES`] holds the tiles of the newest
//! 16 million or so entries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::bottom;

/// What a cache holds by default (`[ledger] tile_cache_mib` sets it).
pub const DEFAULT_LIMIT_BYTES: u64 = 1 << 30;

/// The newest complete bottom tiles, by tile index.
#[derive(Debug)]
pub struct TileCache {
    limit_tiles: AtomicU64,
    tiles: RwLock<BTreeMap<u64, Arc<[u8]>>>,
}

impl Default for TileCache {
    fn default() -> Self {
        Self::with_limit(DEFAULT_LIMIT_BYTES)
    }
}

impl TileCache {
    /// A cache holding at most `bytes` of tile values (0: none).
    pub fn with_limit(bytes: u64) -> Self {
        Self {
            limit_tiles: AtomicU64::new(tiles_in(bytes)),
            tiles: RwLock::new(BTreeMap::new()),
        }
    }

    /// Sets the limit; shrinking drops the oldest tiles now.
    pub fn set_limit(&self, bytes: u64) {
        self.limit_tiles.store(tiles_in(bytes), Ordering::Relaxed);
        let mut tiles = self.tiles.write().unwrap_or_else(|e| e.into_inner());
        self.evict(&mut tiles);
    }

    pub fn get(&self, tile: u64) -> Option<Arc<[u8]>> {
        self.tiles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tile)
            .cloned()
    }

    /// Keeps `value` as complete tile `tile`, unless the cache is full of
    /// newer tiles (then `false`).
    pub fn insert(&self, tile: u64, value: Arc<[u8]>) -> bool {
        let mut tiles = self.tiles.write().unwrap_or_else(|e| e.into_inner());
        // Read under the lock, as `set_limit` evicts under it.
        let limit = self.limit_tiles.load(Ordering::Relaxed);
        if tiles.len() as u64 >= limit && !tiles.contains_key(&tile) {
            match tiles.first_key_value() {
                Some((&oldest, _)) if oldest < tile => {}
                _ => return false,
            }
        }
        tiles.insert(tile, value);
        self.evict(&mut tiles);
        true
    }

    /// How many tiles it holds.
    pub fn len(&self) -> usize {
        self.tiles.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&self, tiles: &mut BTreeMap<u64, Arc<[u8]>>) {
        let limit = self.limit_tiles.load(Ordering::Relaxed);
        while tiles.len() as u64 > limit {
            tiles.pop_first();
        }
    }
}

fn tiles_in(bytes: u64) -> u64 {
    bytes / bottom::TILE_BYTES as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(n: u8) -> Arc<[u8]> {
        vec![n; bottom::TILE_BYTES].into()
    }

    fn limit(tiles: u64) -> u64 {
        tiles * bottom::TILE_BYTES as u64
    }

    #[test]
    fn it_keeps_the_newest_tiles_up_to_its_limit() {
        let cache = TileCache::with_limit(limit(2));
        cache.insert(5, tile(5));
        cache.insert(7, tile(7));
        cache.insert(9, tile(9));
        assert!(cache.get(5).is_none(), "the oldest tile made room");
        assert_eq!(cache.get(7).unwrap()[0], 7);
        assert_eq!(cache.get(9).unwrap()[0], 9);
        // An older tile read later does not push a newer one out.
        assert!(!cache.insert(1, tile(1)));
        assert!(cache.get(1).is_none());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_smaller_limit_drops_the_oldest_and_zero_holds_nothing() {
        let cache = TileCache::with_limit(limit(3));
        for n in 0..3 {
            cache.insert(n, tile(n as u8));
        }
        cache.set_limit(limit(1));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(2).is_some());
        cache.set_limit(0);
        cache.insert(8, tile(8));
        assert!(cache.is_empty());
    }
}
