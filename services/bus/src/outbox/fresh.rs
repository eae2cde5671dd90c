//! The newest events of the outbox, kept in memory once they are synced, so
//! that the shipper takes them from here instead of reading them back from
//! disk on a blocking thread (which was a large share of a proxy's CPU).
//!
//! It holds one contiguous run of sequence numbers, at most [`MAX_BYTES`]
//! worth; older events fall out of the front and the shipper reads those
//! from the store, as it does after a restart or a failed delivery. Memory
//! is only a shortcut: every event in it is already on disk.

use std::collections::VecDeque;

use super::store::Queued;

/// How much the in-memory copy holds at most.
pub const MAX_BYTES: usize = 32 << 20;

/// What one event counts against [`MAX_BYTES`].
fn size_of(key: &[u8], payload: &[u8]) -> usize {
    key.len() + payload.len()
}

#[derive(Debug)]
pub(crate) struct Fresh {
    /// The sequence number of `items[0]` (where the next push continues when
    /// `items` is empty).
    first: u64,
    items: VecDeque<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

impl Fresh {
    pub fn new(next: u64) -> Self {
        Self {
            first: next,
            items: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Events `first, first+1, ...` (key, payload), just synced to disk.
    pub fn push(&mut self, first: u64, events: Vec<(Vec<u8>, Vec<u8>)>) {
        if self.first + self.items.len() as u64 != first {
            // Not contiguous with what is held (the shipper fell behind and
            // the front was dropped, then emptied): start a new run.
            self.items.clear();
            self.bytes = 0;
            self.first = first;
        }
        for (key, payload) in events {
            self.bytes += size_of(&key, &payload);
            self.items.push_back((key, payload));
        }
        while self.bytes > MAX_BYTES {
            let Some((key, payload)) = self.items.pop_front() else {
                break;
            };
            self.bytes -= size_of(&key, &payload);
            self.first += 1;
        }
    }

    /// Takes up to `max` events from `from` on out of memory. `Err(start)`
    /// when memory begins after `from`: the events `from..start` must come
    /// from the store.
    pub fn take(&mut self, from: u64, max: usize) -> Result<Vec<Queued>, u64> {
        while self.first < from {
            let Some((key, payload)) = self.items.pop_front() else {
                break;
            };
            self.bytes -= size_of(&key, &payload);
            self.first += 1;
        }
        if self.first > from {
            return Err(self.first);
        }
        let n = max.min(self.items.len());
        let mut out = Vec::with_capacity(n);
        for (key, payload) in self.items.drain(..n) {
            self.bytes -= size_of(&key, &payload);
            out.push(Queued {
                seq: self.first,
                key,
                payload,
            });
            self.first += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n).map(|i| (vec![b'k'], vec![i as u8; 10])).collect()
    }

    fn seqs(q: &[Queued]) -> Vec<u64> {
        q.iter().map(|q| q.seq).collect()
    }

    #[test]
    fn hands_out_what_was_pushed_in_order_and_once() {
        let mut f = Fresh::new(5);
        f.push(5, ev(3));
        f.push(8, ev(2));
        assert_eq!(seqs(&f.take(5, 2).unwrap()), vec![5, 6]);
        assert_eq!(seqs(&f.take(7, 10).unwrap()), vec![7, 8, 9]);
        assert!(f.take(10, 10).unwrap().is_empty());
        assert_eq!(f.bytes, 0);
    }

    #[test]
    fn what_memory_no_longer_holds_is_named_for_the_store() {
        let mut f = Fresh::new(0);
        f.push(0, ev(4));
        f.take(0, 4).unwrap();
        // A failed delivery sends the shipper back to 1: memory starts at 4.
        assert_eq!(f.take(1, 10).unwrap_err(), 4);
        f.push(4, ev(1));
        assert_eq!(f.take(2, 10).unwrap_err(), 4);
        assert_eq!(seqs(&f.take(4, 10).unwrap()), vec![4]);
    }

    #[test]
    fn skipping_ahead_drops_the_older_events() {
        let mut f = Fresh::new(0);
        f.push(0, ev(5));
        assert_eq!(seqs(&f.take(3, 10).unwrap()), vec![3, 4]);
    }

    #[test]
    fn stays_within_its_byte_budget_by_dropping_the_oldest() {
        let mut f = Fresh::new(0);
        let big = MAX_BYTES / 4 + 1;
        f.push(0, (0..4).map(|_| (vec![], vec![0; big])).collect());
        assert!(f.bytes <= MAX_BYTES);
        assert_eq!(f.take(0, 10).unwrap_err(), 1);
        assert_eq!(seqs(&f.take(1, 10).unwrap()), vec![1, 2, 3]);
    }

    #[test]
    fn a_gap_after_an_empty_run_starts_a_new_one() {
        let mut f = Fresh::new(0);
        f.push(0, ev(2));
        f.take(0, 2).unwrap();
        f.push(7, ev(1));
        assert_eq!(f.take(2, 10).unwrap_err(), 7);
        assert_eq!(seqs(&f.take(7, 10).unwrap()), vec![7]);
    }
}
