//! Gaps written into the log itself: each hole the [`SequenceWatch`]
//! reports becomes a `SequenceGap` event of the ledger's own stream
//! [`GAP_STREAM`], so the evidence says what the ledger noticed and when,
//! not only a log line an operator may have rotated away.
//!
//! The stream is numbered from 0 without holes like every other: the next
//! number is the count of its entries already in the log (read once, at the
//! first gap), so a restarted ledger goes on where the last one stopped. The
//! bus cannot add to it (the appender refuses every `vigil-ledger/` stream
//! and the kind).
//!
//! [`SequenceWatch`]: crate::gaps::SequenceWatch

use std::sync::Arc;

use vigil_ledger::store::EntryFilter;
use vigil_ledger::{NewEntry, Store, StoreError};
use vigil_proto::events::{event, SequenceGap};

use crate::gaps::Gap;
use crate::own_records;

/// The stream the ledger's gap records form.
pub const GAP_STREAM: &str = "vigil-ledger/gaps";

/// Records written per call at most: a flood of gaps (forged events, say)
/// is written in bounded batches, not in one that holds the log's writer.
pub const MAX_PER_BATCH: usize = 1000;

/// Appends gap records to the log, numbering them.
pub struct GapLog {
    store: Arc<Store>,
    /// The next record's number; read from the log at the first gap.
    next: Option<u64>,
    /// Gaps not written yet: past the batch bound, or after a failed write
    /// (a gap once reported is never dropped for a write error).
    pending: Vec<Gap>,
}

impl GapLog {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            next: None,
            pending: Vec::new(),
        }
    }

    /// Nothing waits to be written.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues `gaps` and appends up to [`MAX_PER_BATCH`] queued records in
    /// one synced batch. Blocking (RocksDB). Returns how many are still
    /// queued; on an error every unwritten gap stays queued for the next
    /// call.
    pub fn record(&mut self, gaps: Vec<Gap>) -> Result<usize, StoreError> {
        self.pending.extend(gaps);
        if self.pending.is_empty() {
            return Ok(0);
        }
        let first = match self.next {
            Some(n) => n,
            None => count_stream(&self.store, GAP_STREAM)?,
        };
        let take = self.pending.len().min(MAX_PER_BATCH);
        let entries: Vec<NewEntry> = self.pending[..take]
            .iter()
            .enumerate()
            .map(|(i, gap)| gap_entry(gap, first + i as u64))
            .collect();
        match self.store.append_batch(entries) {
            Ok(_) => {
                self.pending.drain(..take);
                self.next = Some(first + take as u64);
                Ok(self.pending.len())
            }
            Err(e) => {
                // The count is read again: the write may or may not have
                // reached the log.
                self.next = None;
                Err(e)
            }
        }
    }
}

/// How many entries of `session` the log holds.
fn count_stream(store: &Store, session: &str) -> Result<u64, StoreError> {
    let filter = EntryFilter::Session(session.to_string());
    let mut count = 0u64;
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let page = store.find(&filter, resume.as_deref(), 10_000)?;
        count += page.indexes.len() as u64;
        match page.next {
            Some(next) => resume = Some(next),
            None => return Ok(count),
        }
    }
}

/// The log entry recording `gap` as number `seq` of the gap stream.
fn gap_entry(gap: &Gap, seq: u64) -> NewEntry {
    own_records::entry(
        GAP_STREAM,
        seq,
        own_records::now_unix_nanos(),
        event::Kind::SequenceGap(SequenceGap {
            session_id: gap.session.clone(),
            first_missing: gap.first_missing,
            missing: gap.missing,
            open_for_nanos: gap.open_for.as_nanos().min(i64::MAX as u128) as i64,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vigil_ledger::Keyring;

    fn gap(session: &str) -> Gap {
        Gap {
            session: session.into(),
            first_missing: 3,
            missing: 2,
            open_for: Duration::from_secs(5),
        }
    }

    /// The gap stream's numbers in the log, in log order.
    fn numbers(store: &Store) -> Vec<u64> {
        let found = store
            .find(&EntryFilter::Session(GAP_STREAM.into()), None, 100_000)
            .unwrap();
        found
            .indexes
            .iter()
            .map(|&i| {
                let vigil_ledger::store::BodyLookup::Present { body, .. } = store.body(i).unwrap()
                else {
                    panic!("no body")
                };
                vigil_proto::events::decode(&body).unwrap().seq
            })
            .collect()
    }

    #[test]
    fn records_are_numbered_without_holes_in_bounded_batches_and_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Keyring::random("k1")).unwrap());
        let mut log = GapLog::new(store.clone());
        assert_eq!(log.record(vec![gap("a"), gap("b")]).unwrap(), 0);
        let flood: Vec<Gap> = (0..MAX_PER_BATCH + 5)
            .map(|i| gap(&format!("s{i}")))
            .collect();
        assert_eq!(log.record(flood).unwrap(), 5, "the rest waits its turn");
        assert!(!log.is_idle());
        assert_eq!(log.record(Vec::new()).unwrap(), 0);
        // A restarted ledger goes on where the last one stopped.
        let mut again = GapLog::new(store.clone());
        again.record(vec![gap("c")]).unwrap();
        let want: Vec<u64> = (0..(2 + MAX_PER_BATCH + 5 + 1) as u64).collect();
        assert_eq!(numbers(&store), want);
    }
}
