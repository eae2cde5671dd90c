//! The RocksDB store: appends, dedup, durability across reopen, proofs,
//! tiles and checkpoints.

use std::sync::Arc;

use vigil_ledger::checkpoint::Checkpoint;
use vigil_ledger::hash::leaf_hash;
use vigil_ledger::leaf::{body_commitment, LeafRecord};
use vigil_ledger::note::{open_note, sign_note, NoteVerifier};
use vigil_ledger::proof::{verify_consistency, verify_inclusion};
use vigil_ledger::tile::decode_entry_bundle;
use vigil_ledger::tree::root_from_leaf_hashes;
use vigil_ledger::{Appended, BodyLookup, Keyring, NewEntry, Store, StoreError};

/// A fixed test keyring, so that a test can reopen its store.
const KEYS: &str = "t1 AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Keyring::parse(KEYS).unwrap()).unwrap()
}

fn present(store: &Store, index: u64) -> ([u8; 32], Vec<u8>) {
    match store.body(index).unwrap() {
        BodyLookup::Present { salt, body } => (salt, body),
        other => panic!("body {index}: {other:?}"),
    }
}

fn entry(n: u32) -> NewEntry {
    let mut id = [0u8; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    NewEntry {
        event_id: id,
        time_unix_nanos: i64::from(n) * 1000,
        kind: "test.event".into(),
        body: format!("body {n}").into_bytes(),
        session_id: format!("session-{}", n % 3),
        seq: u64::from(n / 3),
        subject: if n.is_multiple_of(2) {
            "alice".into()
        } else {
            "bob".into()
        },
    }
}

fn fill(store: &Store, from: u32, to: u32) {
    let res = store.append_batch((from..to).map(entry).collect()).unwrap();
    assert!(res.iter().all(|a| !a.duplicate));
}

fn leaf_hashes(store: &Store) -> Vec<[u8; 32]> {
    (0..store.size())
        .map(|i| leaf_hash(&store.leaf(i).unwrap().unwrap()))
        .collect()
}

#[test]
fn store_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn append_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.size(), 0);
    assert_eq!(store.root(), vigil_ledger::empty_root());
    assert_eq!(store.append_batch(vec![]).unwrap(), vec![]);

    let res = store
        .append_batch(vec![entry(0), entry(1), entry(2)])
        .unwrap();
    assert_eq!(
        res.iter().map(|a| a.index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(store.size(), 3);
    for i in 0..3u32 {
        let rec = LeafRecord::decode(&store.leaf(u64::from(i)).unwrap().unwrap()).unwrap();
        let e = entry(i);
        assert_eq!(rec.event_id, e.event_id);
        assert_eq!(rec.time_unix_nanos, e.time_unix_nanos);
        assert_eq!(rec.kind, e.kind);
        let (salt, body) = present(&store, u64::from(i));
        assert_eq!(body, e.body);
        assert_eq!(rec.commitment, body_commitment(&salt, &body));
        assert_eq!(store.index_of(&e.event_id).unwrap(), Some(u64::from(i)));
    }
    let (s0, _) = present(&store, 0);
    let (s1, _) = present(&store, 1);
    assert_ne!(s0, s1, "salts must be fresh per entry");
    assert_eq!(store.leaf(3).unwrap(), None);
    assert_eq!(store.body(3).unwrap(), BodyLookup::Absent);
    assert_eq!(store.index_of(&[9; 16]).unwrap(), None);
    assert_eq!(store.root(), root_from_leaf_hashes(&leaf_hashes(&store)));
    assert!(matches!(store.node(0, 3), Err(StoreError::NotFound(_))));

    let too_long = NewEntry {
        kind: "k".repeat(65),
        ..entry(10)
    };
    assert!(store.append_batch(vec![entry(11), too_long]).is_err());
    assert_eq!(store.size(), 3, "a rejected batch appends nothing");
    assert_eq!(store.index_of(&entry(11).event_id).unwrap(), None);
}

#[test]
fn dedup_across_and_within_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_batch(vec![entry(0), entry(1)]).unwrap();
    let root = store.root();
    // Across batches: nothing new is written.
    let res = store.append_batch(vec![entry(1)]).unwrap();
    assert_eq!(
        res,
        vec![Appended {
            index: 1,
            duplicate: true
        }]
    );
    assert_eq!((store.size(), store.root()), (2, root));
    // Within a batch, mixed with new and old ids.
    let res = store
        .append_batch(vec![entry(5), entry(0), entry(5), entry(6)])
        .unwrap();
    assert_eq!(
        res,
        vec![
            Appended {
                index: 2,
                duplicate: false
            },
            Appended {
                index: 0,
                duplicate: true
            },
            Appended {
                index: 2,
                duplicate: true
            },
            Appended {
                index: 3,
                duplicate: false
            },
        ]
    );
    assert_eq!(store.size(), 4);
}

/// A batch large enough to be sealed on several threads (>= 64 KiB of
/// bodies), holding an id already stored and one twice: every fresh entry
/// gets the next index with its own body, leaf and index keys, in order,
/// and the tree is the one its leaves make.
#[test]
fn a_large_batch_sealed_on_several_threads_keeps_every_entry_at_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_batch(vec![entry(0), entry(1)]).unwrap();
    let big = |n: u32| NewEntry {
        body: vec![n as u8; 1024 + n as usize],
        ..entry(n)
    };
    let mut batch: Vec<NewEntry> = (2..302).map(big).collect();
    batch.insert(100, entry(1));
    batch.insert(200, big(150));
    let res = store.append_batch(batch).unwrap();
    assert_eq!(res.len(), 302);
    assert_eq!(
        (
            res[100].index,
            res[100].duplicate,
            res[200].index,
            res[200].duplicate
        ),
        (1, true, 150, true)
    );
    let fresh: Vec<u64> = res
        .iter()
        .filter(|a| !a.duplicate)
        .map(|a| a.index)
        .collect();
    assert_eq!(fresh, (2..302).collect::<Vec<u64>>());
    assert_eq!(store.size(), 302);
    for n in 2..302u32 {
        let index = u64::from(n);
        let (salt, body) = present(&store, index);
        assert_eq!(body, big(n).body, "body at {index}");
        let leaf = LeafRecord::decode(&store.leaf(index).unwrap().unwrap()).unwrap();
        assert_eq!(leaf.event_id, entry(n).event_id);
        assert_eq!(leaf.commitment, body_commitment(&salt, &body));
        assert_eq!(store.index_of(&entry(n).event_id).unwrap(), Some(index));
    }
    assert_eq!(store.root(), root_from_leaf_hashes(&leaf_hashes(&store)));
    let bob = store
        .find(
            &vigil_ledger::EntryFilter::Subject("bob".into()),
            None,
            1000,
        )
        .unwrap();
    assert_eq!(bob.indexes, (1..302).step_by(2).collect::<Vec<u64>>());
}

#[test]
fn reopen_keeps_size_root_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (size, root) = {
        let store = open(dir.path());
        for b in 0..10 {
            fill(&store, b * 13, b * 13 + 13);
        }
        (store.size(), store.root())
    };
    let store = open(dir.path());
    assert_eq!((store.size(), store.root()), (size, root));
    assert_eq!(store.head(), (size, root));
    // Dedup survives reopen; appending continues the same tree.
    assert!(store.append_batch(vec![entry(3)]).unwrap()[0].duplicate);
    fill(&store, 1000, 1007);
    assert_eq!(store.size(), size + 7);
    assert_eq!(store.root(), root_from_leaf_hashes(&leaf_hashes(&store)));
    verify_consistency(
        size,
        store.size(),
        &store.consistency_proof(size, store.size()).unwrap(),
        &root,
        &store.root(),
    )
    .unwrap();
}

#[test]
fn proofs_from_store_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut roots = vec![store.root()];
    for n in 0..70u32 {
        fill(&store, n, n + 1);
        roots.push(store.root());
    }
    let leaves = leaf_hashes(&store);
    for size in 1..=70u64 {
        assert_eq!(store.root_at(size).unwrap(), roots[size as usize]);
        for index in 0..size {
            let p = store.inclusion_proof(index, size).unwrap();
            verify_inclusion(
                &leaves[index as usize],
                index,
                size,
                &p,
                &roots[size as usize],
            )
            .unwrap();
        }
        for size1 in 1..=size {
            let p = store.consistency_proof(size1, size).unwrap();
            verify_consistency(
                size1,
                size,
                &p,
                &roots[size1 as usize],
                &roots[size as usize],
            )
            .unwrap();
        }
    }
    assert!(matches!(
        store.inclusion_proof(70, 70),
        Err(StoreError::OutOfRange { .. })
    ));
    assert!(matches!(
        store.inclusion_proof(0, 71),
        Err(StoreError::OutOfRange { .. })
    ));
    assert!(store.consistency_proof(0, 5).is_err());
    assert!(store.consistency_proof(6, 5).is_err());
    assert!(store.root_at(71).is_err());
}

#[test]
fn tiles_and_bundles_match_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store, 0, 600);
    let leaves = leaf_hashes(&store);

    let full = store.tile(0, 1, 256).unwrap();
    assert_eq!(full.len(), 256 * 32);
    for (i, h) in full.chunks(32).enumerate() {
        assert_eq!(h, leaves[256 + i]);
    }
    let partial = store.tile(0, 2, 600 - 512).unwrap();
    assert_eq!(partial.chunks(32).last().unwrap(), leaves[599]);
    assert!(store.tile(0, 2, 89).is_err());
    assert!(store.tile(0, 2, 0).is_err());
    assert!(store.tile(0, 2, 257).is_err());
    assert!(store.tile(8, 0, 1).is_err());
    for level in 0..=7 {
        assert!(store.tile(level, u64::MAX, 256).is_err());
        assert!(store.tile(level, u64::MAX / 256, 1).is_err());
    }
    assert!(store.entry_bundle(u64::MAX, 256).is_err());

    // Level-1 tile: roots of full level-0 tiles.
    let l1 = store.tile(1, 0, 2).unwrap();
    assert_eq!(&l1[..32], root_from_leaf_hashes(&leaves[..256]));
    assert_eq!(&l1[32..], root_from_leaf_hashes(&leaves[256..512]));
    assert!(store.tile(1, 0, 3).is_err());

    let bundle = decode_entry_bundle(&store.entry_bundle(2, 88).unwrap()).unwrap();
    assert_eq!(bundle.len(), 88);
    for (i, e) in bundle.iter().enumerate() {
        assert_eq!(e, &store.leaf(512 + i as u64).unwrap().unwrap());
    }
    let bundle = decode_entry_bundle(&store.entry_bundle(0, 256).unwrap()).unwrap();
    assert_eq!(leaf_hash(&bundle[255]), leaves[255]);
    assert!(store.entry_bundle(2, 89).is_err());
    assert!(store.entry_bundle(3, 1).is_err());
}

#[test]
fn checkpoints_and_signer_persist() {
    let dir = tempfile::tempdir().unwrap();
    let vkey;
    {
        let store = open(dir.path());
        assert_eq!(store.checkpoint().unwrap(), None);
        fill(&store, 0, 5);
        let signer = store.get_or_create_signer("vigil.test/log").unwrap();
        vkey = signer.verifier_key_text();
        let (size, root) = store.head();
        let cp = Checkpoint {
            origin: "vigil.test/log".into(),
            size,
            root,
        };
        let note = sign_note(&cp.to_text(), &signer).unwrap();
        store.put_checkpoint(&note).unwrap();

        // A checkpoint that does not match the log is refused.
        let bogus = Checkpoint {
            root: [0; 32],
            ..cp.clone()
        };
        assert!(store
            .put_checkpoint(&sign_note(&bogus.to_text(), &signer).unwrap())
            .is_err());
        let future = Checkpoint {
            size: 6,
            ..cp.clone()
        };
        assert!(store
            .put_checkpoint(&sign_note(&future.to_text(), &signer).unwrap())
            .is_err());
        // An older one is refused as stale.
        let old = Checkpoint {
            size: 3,
            root: store.root_at(3).unwrap(),
            ..cp
        };
        assert!(matches!(
            store.put_checkpoint(&sign_note(&old.to_text(), &signer).unwrap()),
            Err(StoreError::StaleCheckpoint {
                stored: 5,
                offered: 3
            })
        ));
    }
    let store = open(dir.path());
    let signer = store.get_or_create_signer("vigil.test/log").unwrap();
    assert_eq!(signer.verifier_key_text(), vkey, "signer key is persistent");
    let note = store.checkpoint().unwrap().unwrap();
    let text = open_note(&note, &NoteVerifier::from_vkey_text(&vkey).unwrap()).unwrap();
    let cp = Checkpoint::parse(&text).unwrap();
    assert_eq!((cp.size, cp.root), store.head());
}

#[test]
fn concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for b in 0..10u32 {
                    // Overlapping ids across threads exercise dedup under contention.
                    let base = (t % 2) * 1000 + b * 5;
                    store
                        .append_batch((base..base + 5).map(entry).collect())
                        .unwrap();
                    let size = store.size();
                    assert!(store.root_at(size).is_ok());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.size(), 100);
    assert_eq!(store.root(), root_from_leaf_hashes(&leaf_hashes(&store)));
    let mut ids: Vec<_> = (0..100)
        .map(|i| {
            LeafRecord::decode(&store.leaf(i).unwrap().unwrap())
                .unwrap()
                .event_id
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
}

/// A written batch is in the log for deduplication at once, but nothing of
/// it is published (size, root, reads by index, id or session) before a
/// sync; one sync publishes every batch written before it, in order.
#[test]
fn written_batches_are_published_only_by_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store, 0, 5);
    let (size, root) = store.head();
    let first = store.write_batch((5..9).map(entry).collect()).unwrap();
    assert_eq!(
        first.iter().map(|a| a.index).collect::<Vec<_>>(),
        [5, 6, 7, 8]
    );
    let second = store.write_batch((9..11).map(entry).collect()).unwrap();
    assert_eq!(second[0].index, 9);
    // Not published: the head, reads by index, by event id and by session
    // all stop at the last sync.
    assert_eq!(store.head(), (size, root));
    assert_eq!(store.leaf(5).unwrap(), None);
    assert_eq!(store.body(5).unwrap(), BodyLookup::Absent);
    assert_eq!(store.sealed_body(9).unwrap(), None);
    assert_eq!(store.index_of(&entry(5).event_id).unwrap(), None);
    let found = store
        .find(
            &vigil_ledger::EntryFilter::Session("session-2".into()),
            None,
            100,
        )
        .unwrap();
    assert_eq!(found.indexes, [2]);
    assert!(store.inclusion_proof(5, 6).is_err());
    // Already in the log: written again, an event is a duplicate of the
    // unpublished entry, not a second one.
    let again = store.write_batch(vec![entry(6)]).unwrap();
    assert_eq!(again[0].index, 6);
    assert!(again[0].duplicate);
    store.sync().unwrap();
    assert_eq!(store.size(), 11);
    let hashes = leaf_hashes(&store);
    assert_eq!(store.root(), root_from_leaf_hashes(&hashes));
    assert_eq!(present(&store, 10).1, b"body 10");
    assert_eq!(store.index_of(&entry(5).event_id).unwrap(), Some(5));
    // A sync with nothing written is a no-op.
    store.sync().unwrap();
    assert_eq!(store.size(), 11);
    drop(store);
    assert_eq!(open(dir.path()).size(), 11);
}

/// Writers and syncers on several threads: every batch becomes durable and
/// published once, in write order, whoever syncs it.
#[test]
fn concurrent_writes_and_syncs_publish_every_batch_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for b in 0..25u32 {
                    let from = 10_000 * (t + 1) + b * 4;
                    let out = store
                        .write_batch((from..from + 4).map(entry).collect())
                        .unwrap();
                    assert!(out.iter().all(|a| !a.duplicate));
                    if b % 3 == t % 3 {
                        store.sync().unwrap();
                        // Everything this thread wrote is published now.
                        assert!(store.size() > out[3].index);
                    }
                }
                store.sync().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.size(), 400);
    let hashes = leaf_hashes(&store);
    assert_eq!(store.root(), root_from_leaf_hashes(&hashes));
    let root = store.root();
    drop(store);
    let reopened = open(dir.path());
    assert_eq!(reopened.head(), (400, root));
}

/// Removes every trace of entries `[from, to)` from a closed log, as a
/// power loss can when RocksDB started a new WAL file between two unsynced
/// batches: the older file comes back cut short, the newer one whole.
fn lose_entries(dir: &std::path::Path, from: u64, to: u64) {
    let opts = rocksdb::Options::default();
    let names = rocksdb::DB::list_cf(&opts, dir).unwrap();
    let db = rocksdb::DB::open_cf(&opts, dir, &names).unwrap();
    let in_range = |key: &[u8]| {
        let index = u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap());
        (from..to).contains(&index)
    };
    for name in ["leaves", "bodies", "by_session", "by_subject", "by_time"] {
        let cf = db.cf_handle(name).unwrap();
        let keys: Vec<Box<[u8]>> = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|item| item.unwrap().0)
            .filter(|key| in_range(key))
            .collect();
        assert!(!keys.is_empty() || name == "by_subject");
        for key in keys {
            db.delete_cf(cf, key).unwrap();
        }
    }
    let ids = db.cf_handle("event_ids").unwrap();
    let lost: Vec<Box<[u8]>> = db
        .iterator_cf(ids, rocksdb::IteratorMode::Start)
        .map(|item| item.unwrap())
        .filter(|(_, value)| in_range(value))
        .map(|(key, _)| key)
        .collect();
    for key in lost {
        db.delete_cf(ids, key).unwrap();
    }
}

/// A log that comes back from a crash with a hole (a later batch without
/// an earlier one, none of them ever synced by the store) is cut at the
/// hole on open: no entry, index key, event id or node hash past it
/// survives, and the lost events can be appended again at the same places.
#[test]
fn a_hole_left_by_a_crash_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let signer_name = "vigil.test/log";
    let (root_at_300, root_at_520);
    {
        let store = open(dir.path());
        fill(&store, 0, 200);
        // The checkpoint bounds the check from below: everything up to it
        // was published.
        let signer = store.get_or_create_signer(signer_name).unwrap();
        let (size, root) = store.head();
        let cp = Checkpoint {
            origin: signer_name.into(),
            size,
            root,
        };
        store
            .put_checkpoint(&sign_note(&cp.to_text(), &signer).unwrap())
            .unwrap();
        fill(&store, 200, 300);
        root_at_300 = store.root();
        fill(&store, 300, 310);
        // Completes the tile of leaves 256..512 and the level-8 node over
        // them, both of which cover the lost entries.
        fill(&store, 310, 520);
        root_at_520 = store.root();
    }
    lose_entries(dir.path(), 300, 310);
    let store = open(dir.path());
    assert_eq!(store.cut_on_open(), Some((300, 520)));
    assert_eq!(store.head(), (300, root_at_300));
    assert_eq!(store.leaf(300).unwrap(), None);
    assert_eq!(store.index_of(&entry(400).event_id).unwrap(), None);
    let found = store
        .find(
            &vigil_ledger::EntryFilter::Subject("alice".into()),
            None,
            1000,
        )
        .unwrap();
    assert!(found.indexes.iter().all(|&i| i < 300));
    // The same events again land where they were (with fresh salts, so
    // another root), on a tree with no stale node: the root is the one of
    // the stored leaves, and it extends the tree at the cut.
    fill(&store, 300, 520);
    let (size, root) = store.head();
    assert_eq!(size, 520);
    assert_ne!(root, root_at_520, "fresh salts");
    assert_eq!(root, root_from_leaf_hashes(&leaf_hashes(&store)));
    let proof = store.inclusion_proof(305, 520).unwrap();
    let leaf = store.leaf(305).unwrap().unwrap();
    verify_inclusion(&leaf_hash(&leaf), 305, 520, &proof, &root).unwrap();
    let consistency = store.consistency_proof(300, 520).unwrap();
    verify_consistency(300, 520, &consistency, &root_at_300, &root).unwrap();
    let found = store
        .find(
            &vigil_ledger::EntryFilter::Session("session-1".into()),
            None,
            1000,
        )
        .unwrap();
    assert_eq!(found.indexes.len(), (0..520).filter(|n| n % 3 == 1).count());
    drop(store);
    let reopened = open(dir.path());
    assert_eq!(reopened.cut_on_open(), None);
    assert_eq!(reopened.size(), 520);
}

/// A missing leaf far below the log's size is not what a crash leaves
/// (only what was written while one sync ran can be lost): open fails
/// instead of cutting tens of thousands of durable entries away.
#[test]
fn a_hole_deeper_than_a_crash_can_leave_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for from in (0..70_000u32).step_by(4096) {
            fill(&store, from, (from + 4096).min(70_000));
        }
    }
    lose_entries(dir.path(), 10, 11);
    match Store::open(dir.path(), Keyring::parse(KEYS).unwrap()) {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("leaf 10 is missing"), "{why}"),
        other => panic!("{other:?}"),
    }
}
