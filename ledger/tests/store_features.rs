//! Encryption at rest, key rotation, secondary indexes and retention pruning
//! of the RocksDB store, checked against the bytes on disk and with proofs.

use std::path::Path;

use vigil_ledger::hash::leaf_hash;
use vigil_ledger::leaf::{body_commitment, LeafRecord};
use vigil_ledger::proof::{verify_consistency, verify_inclusion};
use vigil_ledger::{
    BodyCryptError, BodyLookup, EntryFilter, Keyring, NewEntry, PruneRecord, Store, StoreError,
};

const MARKER: &str = "PHI-MARKER-123-45-6789";

fn entry(n: u32, time: i64) -> NewEntry {
    let mut id = [0u8; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    NewEntry {
        event_id: id,
        time_unix_nanos: time,
        kind: "request".into(),
        body: format!("SELECT * FROM patients WHERE ssn = '{MARKER}-{n:06}'").into_bytes(),
        session_id: format!("session-{}", n % 3),
        seq: u64::from(n / 3),
        subject: if n.is_multiple_of(2) {
            "alice".into()
        } else {
            "bob".into()
        },
    }
}

/// Every byte RocksDB keeps on disk (SSTs, WAL, manifest), concatenated.
fn disk_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn bodies_are_encrypted_on_disk_and_open_with_the_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Keyring::random("k1")).unwrap();
    store
        .append_batch((0..50).map(|n| entry(n, 1_000 + i64::from(n))).collect())
        .unwrap();
    assert!(
        !contains(&disk_bytes(dir.path()), MARKER.as_bytes()),
        "a statement literal reached the disk in the clear"
    );
    let BodyLookup::Present { salt, body } = store.body(7).unwrap() else {
        panic!("body 7 missing")
    };
    assert!(String::from_utf8(body.clone()).unwrap().contains(MARKER));
    let leaf = LeafRecord::decode(&store.leaf(7).unwrap().unwrap()).unwrap();
    assert_eq!(leaf.commitment, body_commitment(&salt, &body));
    assert_eq!(
        Keyring::sealed_key_id(&store.sealed_body(7).unwrap().unwrap()).unwrap(),
        "k1"
    );
}

#[test]
fn rotation_keeps_old_bodies_readable_and_a_missing_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let old = Keyring::generate_line("2025");
    let new = Keyring::generate_line("2026");
    {
        let store = Store::open(dir.path(), Keyring::parse(&old).unwrap()).unwrap();
        store.append_batch(vec![entry(0, 1)]).unwrap();
    }
    {
        let rotated = Keyring::parse(&format!("{new}\n{old}\n")).unwrap();
        let store = Store::open(dir.path(), rotated).unwrap();
        store.append_batch(vec![entry(1, 2)]).unwrap();
        for i in 0..2 {
            assert!(matches!(store.body(i).unwrap(), BodyLookup::Present { .. }));
        }
        let id = |i| {
            Keyring::sealed_key_id(&store.sealed_body(i).unwrap().unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!((id(0), id(1)), ("2025".to_string(), "2026".to_string()));
    }
    // Dropping the old key makes exactly its bodies unreadable, by name.
    let store = Store::open(dir.path(), Keyring::parse(&new).unwrap()).unwrap();
    match store.body(0) {
        Err(StoreError::Body { index: 0, source }) => {
            assert_eq!(source, BodyCryptError::UnknownKey("2025".into()))
        }
        other => panic!("expected an unknown-key error, got {other:?}"),
    }
    assert!(matches!(store.body(1).unwrap(), BodyLookup::Present { .. }));
}

#[test]
fn find_by_session_subject_and_time_with_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Keyring::random("k")).unwrap();
    // Times are deliberately not in index order for the last entries.
    let mut entries: Vec<NewEntry> = (0..30).map(|n| entry(n, 1_000 * i64::from(n))).collect();
    entries[29].time_unix_nanos = 500; // older than entry 1
    store.append_batch(entries).unwrap();

    let all = |filter: EntryFilter, page: usize| {
        let mut out = Vec::new();
        let mut resume: Option<Vec<u8>> = None;
        loop {
            let found = store.find(&filter, resume.as_deref(), page).unwrap();
            assert!(found.indexes.len() <= page);
            out.extend(found.indexes);
            match found.next {
                Some(n) => resume = Some(n),
                None => return out,
            }
        }
    };
    let session1: Vec<u64> = (0..30).filter(|n| n % 3 == 1).collect();
    for page in [1, 2, 3, 7, 100] {
        assert_eq!(
            all(EntryFilter::Session("session-1".into()), page),
            session1
        );
    }
    let bob: Vec<u64> = (0..30).filter(|n| n % 2 == 1).collect();
    assert_eq!(all(EntryFilter::Subject("bob".into()), 4), bob);
    assert!(all(EntryFilter::Subject("mallory".into()), 4).is_empty());
    // "session-1" must not match "session-10" and the like.
    assert!(all(EntryFilter::Session("session-".into()), 4).is_empty());
    // Time order, upper bound exclusive.
    let range = EntryFilter::TimeRange {
        from_unix_nanos: 0,
        to_unix_nanos: 3_000,
    };
    assert_eq!(all(range.clone(), 2), vec![0, 29, 1, 2]);
    let empty = EntryFilter::TimeRange {
        from_unix_nanos: 3_000,
        to_unix_nanos: 3_000,
    };
    assert!(all(empty, 2).is_empty());
}

fn check_all_proofs(store: &Store, sizes: &[u64]) {
    let size = store.size();
    let root = store.root();
    for i in 0..size {
        let lh = leaf_hash(&store.leaf(i).unwrap().unwrap());
        let proof = store.inclusion_proof(i, size).unwrap();
        verify_inclusion(&lh, i, size, &proof, &root).unwrap();
    }
    for &m in sizes {
        let proof = store.consistency_proof(m, size).unwrap();
        verify_consistency(m, size, &proof, &store.root_at(m).unwrap(), &root).unwrap();
    }
}

#[test]
fn pruning_deletes_old_bodies_from_disk_and_every_proof_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Keyring::random("k")).unwrap();
    store
        .append_batch((0..40).map(|n| entry(n, 1_000 * i64::from(n))).collect())
        .unwrap();
    let roots: Vec<_> = (1..=40).map(|m| store.root_at(m).unwrap()).collect();
    let sealed_5 = store.sealed_body(5).unwrap().unwrap();
    let record_entry = |r: &PruneRecord| NewEntry {
        event_id: [0xee; 16],
        time_unix_nanos: r.pruned_at_unix_nanos,
        kind: "retention_pruned".into(),
        body: format!("pruned {}..{}", r.from_index, r.end_index).into_bytes(),
        session_id: String::new(),
        seq: 0,
        subject: "vigil-ledger".into(),
    };

    // Cutoff 10_500: entries 0..=10 are older.
    let (record, appended) = store
        .prune_before(10_500, 99_000, 1_000, "retention_pruned", record_entry)
        .unwrap()
        .expect("something to prune");
    assert_eq!((record.from_index, record.end_index), (0, 11));
    assert_eq!(appended.index, 40, "the run is recorded as the next entry");
    assert_eq!(store.size(), 41);
    assert_eq!(store.min_index().unwrap(), 11);
    for i in 0..11 {
        assert_eq!(
            store.body(i).unwrap(),
            BodyLookup::Pruned(record),
            "entry {i}"
        );
        assert_eq!(store.sealed_body(i).unwrap(), None);
    }
    for i in 11..41 {
        assert!(
            matches!(store.body(i).unwrap(), BodyLookup::Present { .. }),
            "entry {i}"
        );
    }
    let disk = disk_bytes(dir.path());
    assert!(
        !contains(&disk, &sealed_5[sealed_5.len() - 32..]),
        "a pruned sealed body is still on disk"
    );
    // The tree is unchanged below the old size; every proof verifies.
    for m in 1..=40u64 {
        assert_eq!(store.root_at(m).unwrap(), roots[m as usize - 1]);
    }
    check_all_proofs(&store, &[1, 5, 11, 12, 40]);

    // Nothing newly eligible: no second run, no second record.
    assert!(store
        .prune_before(10_500, 99_500, 1_000, "retention_pruned", record_entry)
        .unwrap()
        .is_none());
    assert_eq!(store.size(), 41);

    // A bounded run prunes at most max_entries; the next continues.
    let (r2, _) = store
        .prune_before(20_500, 100_000, 4, "retention_pruned", |r| NewEntry {
            event_id: [0xef; 16],
            ..record_entry(r)
        })
        .unwrap()
        .unwrap();
    assert_eq!((r2.from_index, r2.end_index), (11, 15));
    assert_eq!(store.prune_records().unwrap(), vec![record, r2]);
    assert_eq!(store.prune_record_for(3).unwrap(), Some(record));
    assert_eq!(store.prune_record_for(14).unwrap(), Some(r2));
    assert_eq!(store.prune_record_for(15).unwrap(), None);
    check_all_proofs(&store, &[1, 11, 15, 41]);

    // A later run over the records of earlier runs keeps their bodies:
    // they are the auditor's evidence of what each run pruned.
    let (r3, _) = store
        .prune_before(200_000, 300_000, 100, "retention_pruned", |r| NewEntry {
            event_id: [0xf0; 16],
            ..record_entry(r)
        })
        .unwrap()
        .unwrap();
    assert_eq!((r3.from_index, r3.end_index), (15, 42));
    for i in [40, 41] {
        assert!(
            matches!(store.body(i).unwrap(), BodyLookup::Present { ref body, .. } if body.starts_with(b"pruned ")),
            "prune record {i} keeps its body"
        );
    }
    assert_eq!(store.body(39).unwrap(), BodyLookup::Pruned(r3));
    // A record entry of another kind than declared is refused.
    assert!(store
        .prune_before(400_000, 500_000, 100, "other_kind", record_entry)
        .is_err());

    // Survives reopening.
    drop(store);
    let store = Store::open(dir.path(), Keyring::random("other")).unwrap();
    assert_eq!(store.min_index().unwrap(), 42);
    assert_eq!(store.body(2).unwrap(), BodyLookup::Pruned(record));
}

#[test]
fn pruning_only_takes_a_prefix_and_never_a_younger_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Keyring::random("k")).unwrap();
    // Entry 2 is young, entry 3 is old again.
    let times = [10, 20, 5_000, 30, 40];
    store
        .append_batch(
            times
                .iter()
                .enumerate()
                .map(|(n, &t)| entry(n as u32, t))
                .collect(),
        )
        .unwrap();
    let (r, _) = store
        .prune_before(1_000, 9_000, 100, "request", |_| entry(100, 9_000))
        .unwrap()
        .unwrap();
    assert_eq!((r.from_index, r.end_index), (0, 2));
    assert!(matches!(store.body(3).unwrap(), BodyLookup::Present { .. }));
}

#[test]
fn upper_tree_levels_survive_reopen_and_agree_with_the_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::generate_line("k");
    let store = Store::open(dir.path(), Keyring::parse(&keys).unwrap()).unwrap();
    // Three batches crossing the 256- and 512-leaf boundaries.
    for (from, to) in [(0u32, 200u32), (200, 530), (530, 800)] {
        store
            .append_batch((from..to).map(|n| entry(n, i64::from(n))).collect())
            .unwrap();
    }
    let before: Vec<_> = (0..3).map(|i| store.node(8, i).unwrap()).collect();
    assert!(matches!(store.node(8, 3), Err(StoreError::NotFound(_))));
    let leaf_hashes: Vec<_> = (0..800u64)
        .map(|i| leaf_hash(&store.leaf(i).unwrap().unwrap()))
        .collect();
    for (i, h) in before.iter().enumerate() {
        assert_eq!(
            *h,
            vigil_ledger::tree::root_from_leaf_hashes(&leaf_hashes[i * 256..(i + 1) * 256])
        );
    }
    drop(store);
    let store = Store::open(dir.path(), Keyring::parse(&keys).unwrap()).unwrap();
    let after: Vec<_> = (0..3).map(|i| store.node(8, i).unwrap()).collect();
    assert_eq!(before, after);
    store
        .append_batch((800..1100).map(|n| entry(n, i64::from(n))).collect())
        .unwrap();
    check_all_proofs(&store, &[1, 255, 256, 257, 512, 800, 1024]);
}
