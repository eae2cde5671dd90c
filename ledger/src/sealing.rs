//! The per-entry work of an append that needs no order: a fresh salt, the
//! body's commitment, the leaf record and its hash, and the sealed body.
//!
//! It is most of an append's CPU (XChaCha20-Poly1305 over the body, two
//! SHA-256), and each entry's result depends only on the entry and its
//! index, so a large batch is split over the machine's cores (at most
//! [`MAX_SEALERS`] threads). What needs
//! order (deduplication, the tree, the `WriteBatch`) stays with the caller.

use rand::RngCore as _;

use crate::bodycrypt::Keyring;
use crate::hash::{leaf_hash, Hash};
use crate::leaf::{body_commitment, stream_position, LeafError, LeafRecord};
use crate::store::NewEntry;

/// Below this many body bytes a batch is sealed on the caller's thread:
/// starting a thread (tens of µs) would cost more than half the work. At
/// about 2.5 µs a KiB, 64 KiB is about 160 µs of sealing.
const SPLIT_FROM_BYTES: usize = 64 << 10;

/// At most this many threads seal one batch (the caller's included).
const MAX_SEALERS: usize = 4;

/// An entry ready to be stored at its index.
pub(crate) struct SealedEntry {
    /// The encoded [`LeafRecord`] (what the tree commits to).
    pub leaf: Vec<u8>,
    /// [`leaf_hash`] of `leaf`.
    pub leaf_hash: Hash,
    /// `salt || body`, sealed for the index.
    pub body: Vec<u8>,
}

/// Seals `entry` for leaf `index`.
pub(crate) fn seal_entry(
    keyring: &Keyring,
    index: u64,
    entry: &NewEntry,
) -> Result<SealedEntry, LeafError> {
    let mut salt = [0u8; 32];
    // A CSPRNG seeded from the OS, without a syscall per salt.
    rand::thread_rng().fill_bytes(&mut salt);
    let leaf = LeafRecord {
        event_id: entry.event_id,
        time_unix_nanos: entry.time_unix_nanos,
        kind: entry.kind.clone(),
        commitment: body_commitment(&salt, &entry.body),
        position: Some(stream_position(&entry.session_id, entry.seq)),
    }
    .try_encode()?;
    let mut plain = Vec::with_capacity(salt.len() + entry.body.len());
    plain.extend_from_slice(&salt);
    plain.extend_from_slice(&entry.body);
    Ok(SealedEntry {
        leaf_hash: leaf_hash(&leaf),
        body: keyring.seal(index, &plain),
        leaf,
    })
}

/// Seals every `(index, entry)`, in order; a batch of at least
/// [`SPLIT_FROM_BYTES`] of bodies is split into contiguous runs sealed on
/// the available cores at once.
pub(crate) fn seal_all(
    keyring: &Keyring,
    entries: &[(u64, NewEntry)],
) -> Result<Vec<SealedEntry>, LeafError> {
    seal_on(keyring, entries, sealers_for(entries))
}

/// Seals `entries` in order on `sealers` threads (the caller's included).
/// A run whose thread cannot be started (a process or cgroup thread
/// limit) is sealed on the caller's thread instead.
fn seal_on(
    keyring: &Keyring,
    entries: &[(u64, NewEntry)],
    sealers: usize,
) -> Result<Vec<SealedEntry>, LeafError> {
    let seal_run = |run: &[(u64, NewEntry)]| -> Result<Vec<SealedEntry>, LeafError> {
        run.iter()
            .map(|(index, entry)| seal_entry(keyring, *index, entry))
            .collect()
    };
    if sealers < 2 || entries.len() < 2 {
        return seal_run(entries);
    }
    let run_len = entries.len().div_ceil(sealers);
    std::thread::scope(|scope| {
        let mut runs = entries.chunks(run_len);
        let own = runs.next().unwrap_or_default();
        let others: Vec<_> = runs
            .map(|run| {
                let spawned = std::thread::Builder::new()
                    .name("vigil-sealer".into())
                    .spawn_scoped(scope, move || seal_run(run));
                (run, spawned.ok())
            })
            .collect();
        let mut sealed = Vec::with_capacity(entries.len());
        sealed.extend(seal_run(own)?);
        for (run, thread) in others {
            let run = match thread {
                Some(thread) => match thread.join() {
                    Ok(run) => run,
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                None => seal_run(run),
            };
            sealed.extend(run?);
        }
        Ok(sealed)
    })
}

/// How many threads should seal `entries`: 1 for a small batch.
fn sealers_for(entries: &[(u64, NewEntry)]) -> usize {
    let bytes: usize = entries.iter().map(|(_, e)| e.body.len()).sum();
    if bytes < SPLIT_FROM_BYTES || entries.len() < 2 {
        return 1;
    }
    available_cores().min(MAX_SEALERS).min(entries.len())
}

/// The cores this process may use, asked once: std reads the affinity mask
/// and cgroup quota files on every call.
fn available_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64, body_len: usize) -> (u64, NewEntry) {
        let mut event_id = [0u8; 16];
        event_id[..8].copy_from_slice(&n.to_be_bytes());
        let entry = NewEntry {
            event_id,
            time_unix_nanos: n as i64,
            kind: "request".into(),
            body: vec![n as u8; body_len],
            session_id: format!("s{}", n % 3),
            seq: n,
            subject: "alice".into(),
        };
        (100 + n, entry)
    }

    /// A batch split over four threads gives each entry the leaf and the
    /// body of its own index, in order, with a salt and a nonce of its own:
    /// what a reader opens at an index is that entry.
    #[test]
    fn a_batch_split_over_threads_keeps_each_entry_at_its_index() {
        let keyring = Keyring::random("t");
        let entries: Vec<_> = (0..300).map(|n| entry(n, 1024)).collect();
        assert!(sealers_for(&entries) >= 2 || available_cores() < 2);
        let sealed = seal_on(&keyring, &entries, 4).unwrap();
        assert_eq!(sealed.len(), entries.len());
        let mut salts = std::collections::HashSet::new();
        let mut nonces = std::collections::HashSet::new();
        for ((index, e), s) in entries.iter().zip(&sealed) {
            let leaf = LeafRecord::decode(&s.leaf).unwrap();
            assert_eq!(leaf.event_id, e.event_id);
            assert_eq!(s.leaf_hash, leaf_hash(&s.leaf));
            let plain = keyring.open(*index, &s.body).unwrap();
            assert_eq!(&plain[32..], &e.body[..]);
            let salt: [u8; 32] = plain[..32].try_into().unwrap();
            assert_eq!(leaf.commitment, body_commitment(&salt, &e.body));
            // Sealed for this index and no other.
            assert!(keyring.open(*index + 1, &s.body).is_err());
            assert!(salts.insert(salt), "a salt drawn twice");
            // The nonce follows the version, the key id's length and the key id.
            let id_len = s.body[1] as usize;
            assert!(nonces.insert(s.body[2 + id_len..2 + id_len + 24].to_vec()));
        }
    }

    /// The same entries sealed on one thread and on four commit to the
    /// same leaves but for the salt: only the salt's randomness differs.
    #[test]
    fn split_and_unsplit_batches_differ_only_by_their_salts() {
        let keyring = Keyring::random("t");
        let entries: Vec<_> = (0..64).map(|n| entry(n, 2048)).collect();
        let one = seal_on(&keyring, &entries, 1).unwrap();
        let four = seal_on(&keyring, &entries, 4).unwrap();
        for (a, b) in one.iter().zip(&four) {
            let (a, b) = (
                LeafRecord::decode(&a.leaf).unwrap(),
                LeafRecord::decode(&b.leaf).unwrap(),
            );
            assert_eq!(
                (a.event_id, a.time_unix_nanos, &a.kind, a.position),
                (b.event_id, b.time_unix_nanos, &b.kind, b.position)
            );
            assert_ne!(a.commitment, b.commitment);
        }
    }

    #[test]
    fn a_small_batch_is_sealed_on_the_callers_thread() {
        let entries: Vec<_> = (0..8).map(|n| entry(n, 512)).collect();
        assert_eq!(sealers_for(&entries), 1);
    }

    /// An invalid entry in any run of a split batch fails the whole batch.
    #[test]
    fn an_invalid_entry_in_any_run_fails_the_batch() {
        let keyring = Keyring::random("t");
        for bad in [0, 150, 299] {
            let mut entries: Vec<_> = (0..300).map(|n| entry(n, 1024)).collect();
            entries[bad].1.kind = "k".repeat(200);
            assert!(seal_on(&keyring, &entries, 4).is_err(), "entry {bad}");
        }
    }
}
