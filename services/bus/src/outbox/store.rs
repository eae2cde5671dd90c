//! The outbox on disk: a RocksDB queue of encoded events, keyed by a
//! sequence number. A burst is written ([`OutboxStore::write`]), then made
//! durable by a sync of the WAL ([`OutboxStore::sync`]) that covers every
//! burst written before it.
//!
//! Synchronous and small on purpose: the writer and the shipper call it from
//! blocking threads. A record is `u16 key length | key | payload`, where the
//! key is the Kafka message key (the session id) and the payload the encoded
//! event, so that the shipper never decodes an event.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, Options, WriteBatch, DB};

/// Where the queue stood when it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    /// The oldest event not yet known to be in Kafka.
    pub first: u64,
    /// The sequence number the next appended event gets.
    pub next: u64,
    /// Bytes held (keys and payloads).
    pub bytes: u64,
}

impl QueueState {
    pub fn len(&self) -> u64 {
        self.next - self.first
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One event waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub seq: u64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Queued {
    /// What the event counts against the outbox's byte limit.
    pub fn size(&self) -> u64 {
        (self.key.len() + self.payload.len()) as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox store {dir}: {source}")]
    Open { dir: String, source: rocksdb::Error },
    #[error("outbox write failed: {0}")]
    Write(rocksdb::Error),
    #[error("outbox read failed: {0}")]
    Read(rocksdb::Error),
    #[error("outbox record {seq} is damaged ({what})")]
    Damaged { seq: u64, what: &'static str },
    #[error("{0}")]
    Task(String),
}

pub struct OutboxStore {
    db: DB,
    /// Syncs that succeeded, for the writer's tests.
    syncs: std::sync::atomic::AtomicU64,
}

fn key_of(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn encode(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let klen = u16::try_from(key.len()).unwrap_or(u16::MAX) as usize;
    let mut v = Vec::with_capacity(2 + klen + payload.len());
    v.extend_from_slice(&(klen as u16).to_be_bytes());
    v.extend_from_slice(&key[..klen]);
    v.extend_from_slice(payload);
    v
}

fn decode(seq: u64, raw: &[u8]) -> Result<Queued, OutboxError> {
    if raw.len() < 2 {
        return Err(OutboxError::Damaged {
            seq,
            what: "shorter than its header",
        });
    }
    let klen = u16::from_be_bytes([raw[0], raw[1]]) as usize;
    if raw.len() < 2 + klen {
        return Err(OutboxError::Damaged {
            seq,
            what: "key runs past the end",
        });
    }
    Ok(Queued {
        seq,
        key: raw[2..2 + klen].to_vec(),
        payload: raw[2 + klen..].to_vec(),
    })
}

fn seq_of(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

impl OutboxStore {
    /// Opens (or creates) the outbox in `dir`, and reads how much it holds.
    pub fn open(dir: &Path) -> Result<(Self, QueueState), OutboxError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // The queue is small and short-lived: modest memtables, and old WAL
        // files let go of quickly.
        opts.set_write_buffer_size(16 << 20);
        opts.set_max_total_wal_size(64 << 20);
        let db = DB::open(&opts, dir).map_err(|source| OutboxError::Open {
            dir: dir.display().to_string(),
            source,
        })?;
        let mut state = QueueState::default();
        let mut first = None;
        let mut hole_at = None;
        for item in db.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(OutboxError::Read)?;
            if &*k == COUNTER_KEY {
                continue;
            }
            let seq = seq_of(&k).ok_or(OutboxError::Damaged {
                seq: 0,
                what: "key is not a sequence number",
            })?;
            if first.is_some() && seq != state.next {
                hole_at = Some(state.next);
                break;
            }
            first.get_or_insert(seq);
            state.next = seq + 1;
            state.bytes += v.len().saturating_sub(2) as u64;
        }
        if let Some(hole) = hole_at {
            // A crash kept a burst written after one it lost. A sync covers
            // every burst written before it, so nothing from the hole on
            // was ever acknowledged (its statements never ran): it goes.
            tracing::warn!(
                first_missing = hole,
                "the outbox lost unsynced events in a crash; dropping the unacknowledged ones written after them"
            );
            let mut cut = WriteBatch::default();
            cut.delete_range(key_of(hole).as_slice(), COUNTER_KEY);
            let mut synced = rocksdb::WriteOptions::default();
            synced.set_sync(true);
            db.write_opt(cut, &synced).map_err(OutboxError::Write)?;
        }
        state.first = first.unwrap_or(0);
        if first.is_none() {
            // Empty: keep counting from where an earlier run stopped, so that
            // a sequence number is never reused (it only names a position).
            state.first = read_counter(&db)?;
            state.next = state.first;
        }
        Ok((
            Self {
                db,
                syncs: Default::default(),
            },
            state,
        ))
    }

    /// Writes events at `first, first+1, ...`, not synced: they are durable
    /// once a later [`OutboxStore::sync`] has returned.
    pub fn write(&self, first: u64, events: &[(Vec<u8>, Vec<u8>)]) -> Result<(), OutboxError> {
        let mut batch = WriteBatch::default();
        for (i, (key, payload)) in events.iter().enumerate() {
            batch.put(key_of(first + i as u64), encode(key, payload));
        }
        self.db.write(batch).map_err(OutboxError::Write)
    }

    /// Makes everything written before this call durable (one fdatasync of
    /// the WAL): once it has returned, a crash of the proxy loses none of it.
    pub fn sync(&self) -> Result<(), OutboxError> {
        self.db.flush_wal(true).map_err(OutboxError::Write)?;
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// How many syncs succeeded since it was opened.
    #[cfg(test)]
    pub fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes events at `first, first+1, ...` and syncs them.
    #[cfg(test)]
    pub fn append(&self, first: u64, events: &[(Vec<u8>, Vec<u8>)]) -> Result<(), OutboxError> {
        self.write(first, events)?;
        self.sync()
    }

    /// Up to `max` events from `from` on, in order.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<Queued>, OutboxError> {
        let from_key = key_of(from);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&from_key, Direction::Forward))
        {
            if out.len() >= max {
                break;
            }
            let (k, v) = item.map_err(OutboxError::Read)?;
            let Some(seq) = seq_of(&k) else { continue };
            out.push(decode(seq, &v)?);
        }
        Ok(out)
    }

    /// Forgets every event below `end` (they are in Kafka). Not synced: if
    /// the deletion is lost in a crash, those events are shipped again, and
    /// the ledger's deduplication by event id absorbs them.
    pub fn delete_below(&self, end: u64) -> Result<(), OutboxError> {
        let mut batch = WriteBatch::default();
        batch.delete_range(key_of(0), key_of(end));
        batch.put(COUNTER_KEY, end.to_be_bytes());
        self.db.write(batch).map_err(OutboxError::Write)
    }
}

/// Where the sequence continues when the queue is empty (9 bytes, so it
/// never collides with an 8-byte sequence key and sorts after them all).
const COUNTER_KEY: &[u8] = b"\xff\xffcounter";

fn read_counter(db: &DB) -> Result<u64, OutboxError> {
    match db.get(COUNTER_KEY).map_err(OutboxError::Read)? {
        Some(v) => Ok(v.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0)),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u8) -> (Vec<u8>, Vec<u8>) {
        (
            format!("session-{}", i % 3).into_bytes(),
            vec![i; 10 + i as usize],
        )
    }

    #[test]
    fn appended_events_survive_a_reopen_in_order_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, state) = OutboxStore::open(dir.path()).unwrap();
            assert!(state.is_empty());
            store.append(0, &[ev(0), ev(1), ev(2)]).unwrap();
            store.append(3, &[ev(3)]).unwrap();
        }
        let (store, state) = OutboxStore::open(dir.path()).unwrap();
        assert_eq!((state.first, state.next), (0, 4));
        let all = store.read(0, 100).unwrap();
        assert_eq!(
            all.iter().map(|q| q.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(all[1].key, b"session-1");
        assert_eq!(all[1].payload, vec![1; 11]);
        assert_eq!(state.bytes, all.iter().map(Queued::size).sum::<u64>());
        assert_eq!(store.read(2, 1).unwrap()[0].seq, 2);

        store.delete_below(3).unwrap();
        drop(store);
        let (store, state) = OutboxStore::open(dir.path()).unwrap();
        assert_eq!((state.first, state.next), (3, 4));
        assert_eq!(store.read(0, 100).unwrap().len(), 1);
    }

    #[test]
    fn an_emptied_outbox_never_reuses_a_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = OutboxStore::open(dir.path()).unwrap();
            store.append(0, &[ev(0), ev(1)]).unwrap();
            store.delete_below(2).unwrap();
        }
        let (store, state) = OutboxStore::open(dir.path()).unwrap();
        assert_eq!((state.first, state.next), (2, 2));
        assert!(store.read(0, 10).unwrap().is_empty());
    }

    #[test]
    fn what_follows_a_hole_left_by_a_crash_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = OutboxStore::open(dir.path()).unwrap();
            store.append(0, &[ev(0), ev(1), ev(2)]).unwrap();
            // Shipped: the counter now says where an emptied queue goes on.
            store.delete_below(1).unwrap();
            // As if a crash lost the burst at 3..5 but kept the next one.
            store.append(5, &[ev(5), ev(6)]).unwrap();
        }
        let (store, state) = OutboxStore::open(dir.path()).unwrap();
        assert_eq!((state.first, state.next), (1, 3));
        assert_eq!(state.bytes, (1..3).map(|i| 10 + i as u64 + 9).sum::<u64>());
        // The cut stops short of the counter.
        assert_eq!(read_counter(&store.db).unwrap(), 1);
        drop(store);
        // Gone for good, not only skipped: the next run sees the same.
        let (store, state) = OutboxStore::open(dir.path()).unwrap();
        assert_eq!((state.first, state.next), (1, 3));
        let seqs: Vec<u64> = store.read(0, 100).unwrap().iter().map(|q| q.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
    }

    #[test]
    fn a_damaged_record_is_named_not_shipped() {
        assert!(matches!(
            decode(7, &[0]),
            Err(OutboxError::Damaged { seq: 7, .. })
        ));
        assert!(matches!(
            decode(8, &[0, 9, b'a']),
            Err(OutboxError::Damaged { seq: 8, .. })
        ));
        assert_eq!(decode(9, &[0, 1, b'k', b'p']).unwrap().payload, b"p");
    }
}
