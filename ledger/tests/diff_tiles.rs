//! Differential tests of C2SP tlog-tiles against `tlog_tiles` (Cloudflare's
//! port of Go's `sumdb/tlog` tiles).
//!
//! `tlog_tiles` uses the older Go path form `tile/<H>/<L>/<N>[.p/<W>]` with
//! an explicit height, and `tile/<H>/data/<N>` for record data; C2SP dropped
//! the height (always 8) and named the data tiles `entries`. Paths are
//! compared after mapping one form to the other.
//!
//! Tile *contents* are checked end to end: vigil's [`Store`] serves the
//! tiles, and `tlog_tiles`' generic tile client (`TileHashReader`)
//! authenticates them against vigil's root and computes proofs from them,
//! which vigil's verifier must accept.

use std::cell::Cell;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tlog_tiles::{
    prove_record, prove_tree, record_hash, stored_hashes, tree_hash, HashReader, Tile,
    TileHashReader, TileReader,
};
use vigil_ledger::hash::leaf_hash;
use vigil_ledger::proof::{verify_consistency, verify_inclusion};
use vigil_ledger::tile::{
    decode_entry_bundle, entries_path, parse_tile_path, tile_path, TilePath, TILE_WIDTH,
};
use vigil_ledger::{Keyring, NewEntry, Store, StoreError};

const H: u8 = 8;

/// C2SP path -> Go/tlog_tiles path.
fn to_tlog_path(p: &str) -> Option<String> {
    if let Some(rest) = p.strip_prefix("tile/entries/") {
        Some(format!("tile/{H}/data/{rest}"))
    } else if p.starts_with("tile/data/") {
        // Go's name for data tiles; not a C2SP path.
        None
    } else {
        p.strip_prefix("tile/")
            .map(|rest| format!("tile/{H}/{rest}"))
    }
}

/// Go/tlog_tiles path -> C2SP path.
fn from_tlog_path(p: &str) -> String {
    let rest = p.strip_prefix("tile/8/").expect("height 8");
    match rest.strip_prefix("data/") {
        Some(n) => format!("tile/entries/{n}"),
        None => format!("tile/{rest}"),
    }
}

/// `Tile::from_path`, except for inputs on which `tlog_tiles` 0.2.0 panics
/// instead of returning an error (its `Tile::new` asserts `1 <= W` and
/// `L < 64` before the canonical-form check): a zero partial width, or a
/// level in 64..=255. Such paths are invalid, so they count as rejected.
fn tlog_parse(path: &str) -> Option<Tile> {
    if let Some((_, w)) = path.rsplit_once(".p/") {
        if w.parse::<u32>() == Ok(0) {
            return None;
        }
    }
    if let Some(level) = path.split('/').nth(2) {
        if level.parse::<u8>().is_ok_and(|l| l >= 64) {
            return None;
        }
    }
    Tile::from_path(path).ok()
}

fn as_vigil(t: &Tile) -> TilePath {
    if t.is_data() {
        TilePath::Entries {
            index: t.level_index(),
            width: u64::from(t.width()),
        }
    } else {
        TilePath::Hashes {
            level: t.level(),
            index: t.level_index(),
            width: u64::from(t.width()),
        }
    }
}

#[test]
fn paths_match_for_all_levels_widths_and_index_shapes() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut indices = vec![0u64, 1, 9, 10, 99, 100, 999, 1000, 1001, 999_999, 1_000_000];
    indices.extend([1234067, u64::MAX, u64::MAX - 1, u64::MAX / 256]);
    for k in 0..64 {
        indices.push(1 << k);
        indices.push((1u64 << k).wrapping_sub(1));
    }
    indices.extend((0..50).map(|_| rng.gen::<u64>() >> rng.gen_range(0..64)));
    for (k, &index) in indices.iter().enumerate() {
        let widths: Vec<u64> = if k < 3 {
            (1..=TILE_WIDTH).collect()
        } else {
            vec![1, 2, 9, 10, 99, 100, 127, 128, 255, 256]
        };
        for width in widths {
            for level in 0..=7u8 {
                let t = Tile::new(H, level, index, width as u32, false);
                let ours = tile_path(level, index, width);
                assert_eq!(ours, from_tlog_path(&t.path()));
                assert_eq!(tlog_parse(&t.path()), Some(t));
                assert_eq!(
                    parse_tile_path(&ours).unwrap(),
                    TilePath::Hashes {
                        level,
                        index,
                        width
                    }
                );
            }
            let mut t = Tile::new(H, 0, index, width as u32, false);
            t.set_is_data();
            let ours = entries_path(index, width);
            assert_eq!(ours, from_tlog_path(&t.path()));
            assert_eq!(
                parse_tile_path(&ours).unwrap(),
                TilePath::Entries { index, width }
            );
            assert_eq!(
                as_vigil(&tlog_parse(&t.path()).unwrap()),
                TilePath::Entries { index, width }
            );
        }
    }
}

/// Compares both parsers on one C2SP-form path.
fn compare_path(p: &str) {
    let ours = parse_tile_path(p);
    let theirs = to_tlog_path(p).and_then(|t| tlog_parse(&t));
    match (&ours, &theirs) {
        (Ok(a), Some(t)) => assert_eq!(*a, as_vigil(t), "{p:?}"),
        (Err(_), None) => {}
        // C2SP allows levels up to 63; vigil refuses levels above 7, where
        // no tile can exist in a tree of fewer than 2^64 leaves.
        (Err(e), Some(t)) if !t.is_data() && t.level() > 7 => {
            assert!(e.to_string().contains("level out of range"), "{e}");
        }
        _ => panic!("verdicts differ on {p:?}: vigil {ours:?}, tlog_tiles {theirs:?}"),
    }
}

#[test]
fn path_table_same_verdict() {
    for p in [
        "tile/0/000",
        "tile/0/001.p/1",
        "tile/7/x001/x234/067.p/255",
        "tile/entries/x001/000",
        "tile/entries/000.p/0",
        "tile/0/000.p/0",
        "tile/0/000.p/00",
        "tile/0/000.p/256",
        "tile/0/000.p/+5",
        "tile/0/000.p/05",
        "tile/0/+00",
        "tile/0/x000/000",
        "tile/0/xx001/000",
        "tile/0/x01/000",
        "tile/0/x0001/000",
        "tile/0/1000",
        "tile/8/000",
        "tile/63/000",
        "tile/64/000",
        "tile/+1/000",
        "tile/01/000",
        "tile/0/x018/x446/x744/x073/x709/x551/615",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/000/",
        "tile/0//000",
        "tile/entries/000.p/8.p/8",
        "tile/data/000",
    ] {
        compare_path(p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Near-valid paths: right alphabet and structure, random details.
    #[test]
    fn generated_paths_same_verdict(
        p in "tile/(entries|[0-9+]{1,3})/(x[0-9]{2,4}/){0,7}[0-9]{2,4}(\\.p/[0-9+]{1,4})?"
    ) {
        compare_path(&p);
    }

    #[test]
    fn canonical_paths_same_verdict(level in 0u8..8, index in any::<u64>(), width in 1u64..=256, entries in any::<bool>()) {
        let p = if entries { entries_path(index, width) } else { tile_path(level, index, width) };
        compare_path(&p);
        prop_assert!(parse_tile_path(&p).is_ok());
    }
}

/// Go-style hash storage built by `tlog_tiles` itself from the entries.
#[derive(Default)]
struct TlogStorage(Vec<tlog_tiles::Hash>);

impl HashReader for TlogStorage {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// vigil's store as a tile server for `tlog_tiles`' client, optionally
/// corrupting one byte of the `n`-th tile it serves.
struct StoreTiles<'a> {
    store: &'a Store,
    served: Cell<usize>,
    corrupt_nth: Option<usize>,
}

impl TileReader for StoreTiles<'_> {
    fn height(&self) -> u8 {
        H
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                assert!(!t.is_data());
                let mut data = self
                    .store
                    .tile(t.level(), t.level_index(), u64::from(t.width()))
                    .map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))?;
                let n = self.served.get();
                self.served.set(n + 1);
                if self.corrupt_nth == Some(n) {
                    let i = n * 7 % data.len();
                    data[i] ^= 0x40;
                }
                Ok(data)
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

fn entry(n: u64) -> NewEntry {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    NewEntry {
        event_id: id,
        time_unix_nanos: n as i64,
        kind: "t".into(),
        body: Vec::new(),
        session_id: String::new(),
        seq: 0,
        subject: String::new(),
    }
}

/// Grows a store through sizes around the tile boundaries up to the spec's
/// 70,000-entry example. At each size: every tile that `tlog_tiles` says
/// must be published is served by the store with the same contents, the
/// entry bundles hash to the level-0 tiles, and `tlog_tiles`' tile client
/// authenticates the store's tiles against vigil's root and derives proofs
/// that vigil verifies (and that equal the store's own proofs).
#[test]
fn store_tiles_match_tlog_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::parse("t1 AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=").unwrap();
    let store = Store::open(dir.path(), keyring).unwrap();
    let mut storage = TlogStorage::default();
    let mut rng = StdRng::seed_from_u64(6);
    let mut prev = 0u64;
    for size in [
        1u64, 2, 255, 256, 257, 511, 512, 513, 1000, 65535, 65536, 65537, 70000,
    ] {
        let new: Vec<NewEntry> = (prev..size).map(entry).collect();
        store.append_batch(new).unwrap();
        assert_eq!(store.size(), size);
        for i in prev..size {
            let leaf = store.leaf(i).unwrap().unwrap();
            storage.0.extend(stored_hashes(i, &leaf, &storage).unwrap());
        }
        let root = store.root();
        assert_eq!(tree_hash(size, &storage).unwrap().0, root, "root at {size}");

        for t in Tile::new_tiles(H, prev, size) {
            let (l, n, w) = (t.level(), t.level_index(), u64::from(t.width()));
            let want = t.read_data(&storage).unwrap();
            assert_eq!(store.tile(l, n, w).unwrap(), want, "{}", t.path());
            assert_eq!(tile_path(l, n, w), from_tlog_path(&t.path()));
            if w < TILE_WIDTH {
                // One hash more than the tree has is refused.
                assert!(matches!(
                    store.tile(l, n, w + 1),
                    Err(StoreError::OutOfRange { .. })
                ));
            }
            if l == 0 {
                let bundle = decode_entry_bundle(&store.entry_bundle(n, w).unwrap()).unwrap();
                assert_eq!(bundle.len() as u64, w);
                for (i, e) in bundle.iter().enumerate() {
                    assert_eq!(record_hash(e).0, leaf_hash(e));
                    assert_eq!(&want[i * 32..i * 32 + 32], leaf_hash(e));
                }
            }
        }

        let reader = StoreTiles {
            store: &store,
            served: Cell::new(0),
            corrupt_nth: None,
        };
        let thr = TileHashReader::new(size, tlog_tiles::Hash(root), &reader);
        assert_eq!(tree_hash(size, &thr).unwrap().0, root);
        let mut indices = vec![0, size - 1, size / 2];
        indices.extend((0..3).map(|_| rng.gen_range(0..size)));
        for i in indices {
            let p: Vec<[u8; 32]> = prove_record(size, i, &thr)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(p, store.inclusion_proof(i, size).unwrap());
            let leaf = leaf_hash(&store.leaf(i).unwrap().unwrap());
            verify_inclusion(&leaf, i, size, &p, &root).unwrap();
        }
        let mut olds = vec![1, size, prev.max(1)];
        olds.extend((0..3).map(|_| rng.gen_range(1..=size)));
        for m in olds {
            let p: Vec<[u8; 32]> = prove_tree(size, m, &thr)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(p, store.consistency_proof(m, size).unwrap());
            verify_consistency(m, size, &p, &store.root_at(m).unwrap(), &root).unwrap();
        }
        // Corrupted tiles: whatever `tlog_tiles` derives from them is either
        // refused by it, or equal to the real proof (the corrupted hash was
        // not needed), or refused by vigil's verifier. (`tlog_tiles`, like
        // Go's `TileHashReader`, does not re-authenticate every extra tile
        // it fetches, so the last line of defence is the proof check.)
        let i = size / 3;
        let truth = store.inclusion_proof(i, size).unwrap();
        let leaf = leaf_hash(&store.leaf(i).unwrap().unwrap());
        let mut caught = 0;
        for nth in 0..3 {
            let bad = StoreTiles {
                store: &store,
                served: Cell::new(0),
                corrupt_nth: Some(nth),
            };
            let thr = TileHashReader::new(size, tlog_tiles::Hash(root), &bad);
            match prove_record(size, i, &thr) {
                Err(_) => caught += 1,
                Ok(p) => {
                    let p: Vec<[u8; 32]> = p.iter().map(|h| h.0).collect();
                    if p != truth {
                        caught += 1;
                        assert!(verify_inclusion(&leaf, i, size, &p, &root).is_err());
                    }
                }
            }
        }
        // The first tile served is on the tree-hash path, so at least that
        // corruption is caught (a one-leaf tree needs no tiles for a proof).
        assert!(caught >= usize::from(size > 1), "size {size}");
        let wrong = TileHashReader::new(size, tlog_tiles::Hash(leaf_hash(b"x")), &reader);
        assert!(tree_hash(size, &wrong).is_err());
        prev = size;
    }

    // The spec's example: a tree of 70,000 entries is 273 full level-0
    // tiles, a level-0 tile of width 112, one full level-1 tile, a level-1
    // tile of width 17 and a level-2 tile of width 1.
    let all = Tile::new_tiles(H, 0, 70000);
    let shape: Vec<(u8, u64, u32)> = all
        .iter()
        .filter(|t| t.width() < 256 || t.level() > 0)
        .map(|t| (t.level(), t.level_index(), t.width()))
        .collect();
    assert_eq!(shape, [(0, 273, 112), (1, 0, 256), (1, 1, 17), (2, 0, 1)]);
    assert_eq!(all.len(), 273 + 4);
    assert!(store.tile(0, 272, 256).is_ok());
    assert!(store.tile(0, 273, 113).is_err());
    assert!(store.tile(0, 274, 1).is_err());
    assert!(store.tile(1, 1, 18).is_err());
    assert!(store.tile(2, 0, 2).is_err());
    assert!(store.tile(3, 0, 1).is_err());
    assert!(store.entry_bundle(273, 113).is_err());
}
