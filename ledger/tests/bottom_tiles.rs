//! The bottom eight tree levels, stored a 256-leaf tile at a time: proofs
//! and roots across tile boundaries and reopens (the tile still filling
//! lives only in memory and is rebuilt from the leaves), and logs written
//! with one key per node, before this layout.

use vigil_ledger::hash::leaf_hash;
use vigil_ledger::proof::{verify_consistency, verify_inclusion};
use vigil_ledger::tree::root_from_leaf_hashes;
use vigil_ledger::{Frontier, Hash, Keyring, NewEntry, Store};

const KEYS: &str = "t1 AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Keyring::parse(KEYS).unwrap()).unwrap()
}

fn entry(n: u32) -> NewEntry {
    let mut id = [0u8; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    NewEntry {
        event_id: id,
        time_unix_nanos: i64::from(n),
        kind: "test.event".into(),
        body: format!("body {n}").into_bytes(),
        session_id: "s".into(),
        seq: u64::from(n),
        subject: String::new(),
    }
}

fn leaf_hashes(store: &Store) -> Vec<Hash> {
    (0..store.size())
        .map(|i| leaf_hash(&store.leaf(i).unwrap().unwrap()))
        .collect()
}

/// Checks roots, inclusion and consistency proofs of `store` at sizes
/// around every tile boundary against a tree built from its leaves.
fn check_proofs(store: &Store) {
    let leaves = leaf_hashes(store);
    let n = leaves.len() as u64;
    let root = |size: u64| root_from_leaf_hashes(&leaves[..size as usize]);
    let mut sizes: Vec<u64> = vec![1, 2, 3, n];
    for boundary in (256..=n + 256).step_by(256) {
        sizes.extend([boundary - 1, boundary, boundary + 1]);
    }
    sizes.retain(|&s| (1..=n).contains(&s));
    sizes.sort_unstable();
    sizes.dedup();
    for &size in &sizes {
        let expected = root(size);
        assert_eq!(store.root_at(size).unwrap(), expected, "root at {size}");
        for index in [0, size / 2, size.saturating_sub(256), size - 1] {
            let proof = store.inclusion_proof(index, size).unwrap();
            verify_inclusion(&leaves[index as usize], index, size, &proof, &expected)
                .unwrap_or_else(|e| panic!("inclusion of {index} at {size}: {e}"));
        }
        for &size1 in sizes.iter().filter(|&&s| s <= size) {
            let proof = store.consistency_proof(size1, size).unwrap();
            verify_consistency(size1, size, &proof, &root(size1), &expected)
                .unwrap_or_else(|e| panic!("consistency {size1} -> {size}: {e}"));
        }
    }
    // Tile level 0 (the leaf hashes) of every complete tile, and the
    // partial one.
    for tile in 0..n / 256 {
        let hashes = store.tile(0, tile, 256).unwrap();
        let from = tile as usize * 256;
        assert_eq!(hashes, leaves[from..from + 256].concat(), "tile {tile}");
    }
    if !n.is_multiple_of(256) {
        let width = n % 256;
        let hashes = store.tile(0, n / 256, width).unwrap();
        assert_eq!(hashes, leaves[(n - width) as usize..].concat());
    }
}

#[test]
fn proofs_hold_across_tile_boundaries_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut next = 0u32;
    for batch in [1u32, 254, 1, 1, 300, 255, 2, 513, 3] {
        let store = open(dir.path());
        let before = (store.size(), store.root());
        store
            .append_batch((next..next + batch).map(entry).collect())
            .unwrap();
        next += batch;
        assert_eq!(store.size(), u64::from(next));
        assert_eq!(store.root(), root_from_leaf_hashes(&leaf_hashes(&store)));
        if before.0 > 0 {
            let proof = store.consistency_proof(before.0, store.size()).unwrap();
            verify_consistency(before.0, store.size(), &proof, &before.1, &store.root()).unwrap();
        }
        check_proofs(&store);
    }
    // And once more after the last reopen, with nothing appended.
    check_proofs(&open(dir.path()));
}

/// Every bottom node equals the one a tree built from the store's own
/// leaves has (leaves carry random salts, so each store has its own).
fn check_bottom_nodes(store: &Store) {
    let size = store.size();
    let mut tree = Frontier::new();
    for leaf in leaf_hashes(store) {
        for (level, index, hash) in tree.push(leaf) {
            if level < 8 {
                assert_eq!(
                    store.node(level, index).unwrap(),
                    hash,
                    "node ({level}, {index})"
                );
            }
        }
    }
    for level in 0..8u8 {
        // Not complete: not there.
        assert!(store.node(level, size >> level).is_err(), "level {level}");
    }
}

#[test]
fn one_entry_at_a_time_fills_tiles_as_a_batch_does() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, batched) = (open(a.path()), open(b.path()));
    for n in 0..600 {
        one.append_batch(vec![entry(n)]).unwrap();
    }
    batched.append_batch((0..600).map(entry).collect()).unwrap();
    assert_eq!(one.size(), batched.size());
    check_bottom_nodes(&one);
    check_bottom_nodes(&batched);
}

/// Rewrites a closed log's bottom levels the way logs were written before
/// tiles: one key (`level || index`, big-endian) per complete node, and no
/// tile values.
fn to_one_key_per_node(dir: &std::path::Path, leaves: &[Hash]) {
    let opts = rocksdb::Options::default();
    let names = rocksdb::DB::list_cf(&opts, dir).unwrap();
    let db = rocksdb::DB::open_cf(&opts, dir, &names).unwrap();
    let nodes = db.cf_handle("nodes").unwrap();
    let tiles: Vec<Box<[u8]>> = db
        .iterator_cf(nodes, rocksdb::IteratorMode::Start)
        .map(|item| item.unwrap().0)
        .filter(|key| key[0] == 0xF0)
        .collect();
    assert!(!tiles.is_empty(), "the log has complete tiles to rewrite");
    let mut tree = Frontier::new();
    for leaf in leaves {
        for (level, index, hash) in tree.push(*leaf) {
            if level < 8 {
                let mut key = vec![level];
                key.extend_from_slice(&index.to_be_bytes());
                db.put_cf(nodes, key, hash).unwrap();
            }
        }
    }
    for key in tiles {
        db.delete_cf(nodes, key).unwrap();
    }
    db.flush_wal(true).unwrap();
}

#[test]
fn a_log_written_one_key_per_node_still_proves_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let (root, leaves) = {
        let store = open(dir.path());
        store.append_batch((0..700).map(entry).collect()).unwrap();
        (store.root(), leaf_hashes(&store))
    };
    to_one_key_per_node(dir.path(), &leaves);
    let store = open(dir.path());
    assert_eq!(store.root(), root);
    check_proofs(&store);
    // It grows in the new layout from where it stands; old and new nodes
    // make one tree.
    store
        .append_batch((700..1100).map(entry).collect())
        .unwrap();
    assert_eq!(store.root(), root_from_leaf_hashes(&leaf_hashes(&store)));
    check_proofs(&store);
    drop(store);
    check_proofs(&open(dir.path()));
}

#[test]
fn proofs_hold_from_the_tile_cache_at_any_limit_and_after_a_reopen() {
    const TILE: u64 = vigil_ledger::bottom::TILE_BYTES as u64;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for batch in [(0u32, 700u32), (700, 603)] {
        store
            .append_batch((batch.0..batch.1 + batch.0).map(entry).collect())
            .unwrap();
    }
    assert_eq!(store.size(), 1303);
    // Every tile the store completed is in memory, and proofs take them
    // from there: not one tile is read from RocksDB.
    assert_eq!(store.cached_tiles(), 5);
    check_proofs(&store);
    assert_eq!(store.tile_reads(), 0, "proofs read tiles the cache holds");
    // A limit of two keeps the newest two; the older tiles are read from
    // RocksDB every time, and do not push the newer ones out.
    store.set_tile_cache_limit(2 * TILE);
    assert_eq!(store.cached_tiles(), 2);
    check_proofs(&store);
    assert_eq!(store.cached_tiles(), 2);
    assert!(store.tile_reads() > 0);
    let reads = store.tile_reads();
    for index in [3 * 256, 4 * 256 + 255] {
        store.inclusion_proof(index, store.size()).unwrap();
    }
    assert_eq!(store.tile_reads(), reads, "tiles 3 and 4 stayed cached");
    store.set_tile_cache_limit(0);
    assert_eq!(store.cached_tiles(), 0);
    check_proofs(&store);
    drop(store);
    // After a reopen the cache fills as tiles are read ...
    let store = open(dir.path());
    check_proofs(&store);
    assert_eq!(store.cached_tiles(), 5);
    drop(store);
    // ... or all at once, the newest first, up to the limit, a part at a time.
    let store = open(dir.path());
    store.set_tile_cache_limit(2 * TILE);
    store.warm_tile_cache().unwrap();
    assert_eq!(store.cached_tiles(), 2);
    store.set_tile_cache_limit(vigil_ledger::tile_cache::DEFAULT_LIMIT_BYTES);
    let before = store.cached_tiles();
    let (added, next) = store.warm_tile_cache_below(u64::MAX, 4).unwrap();
    assert_eq!(
        (added, next),
        (4 - 2, Some(1)),
        "tiles 4 to 1 read, 4 and 3 already in"
    );
    let (added, next) = store.warm_tile_cache_below(1, 4).unwrap();
    assert_eq!((added, next), (1, None));
    assert_eq!(store.cached_tiles(), 5);
    assert!(before <= 2);
    let reads = store.tile_reads();
    check_proofs(&store);
    assert_eq!(store.tile_reads(), reads);
}

#[test]
fn a_tile_written_and_not_yet_synced_changes_no_published_proof() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_batch((0..300).map(entry).collect()).unwrap();
    // Completes tiles 1 and 2 (cached as written), not published.
    store.write_batch((300..800).map(entry).collect()).unwrap();
    assert_eq!(store.size(), 300);
    assert_eq!(store.cached_tiles(), 3);
    check_proofs(&store);
    store.sync().unwrap();
    assert_eq!(store.size(), 800);
    check_proofs(&store);
}
