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
use vigil_proto::events::{event, Event, Identity, SequenceGap};
use vigil_proto::Message;

use crate::gaps::Gap;

/// The stream the ledger's gap records form.
pub const GAP_STREAM: &str = "vigil-ledger/gaps";

/// Appends gap records to the log, numbering them.
pub struct GapLog {
    store: Arc<Store>,
    /// The next record's number; read from the log at the first gap.
    next: Option<u64>,
}

impl GapLog {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, next: None }
    }

    /// Appends one record per gap in one synced batch. Blocking (RocksDB).
    pub fn record(&mut self, gaps: &[Gap]) -> Result<(), StoreError> {
        if gaps.is_empty() {
            return Ok(());
        }
        let first = match self.next {
            Some(n) => n,
            None => count_stream(&self.store, GAP_STREAM)?,
        };
        let entries: Vec<NewEntry> = gaps
            .iter()
            .enumerate()
            .map(|(i, gap)| gap_entry(gap, first + i as u64))
            .collect();
        self.store.append_batch(entries)?;
        self.next = Some(first + gaps.len() as u64);
        Ok(())
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

fn now_unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The log entry recording `gap` as number `seq` of the gap stream.
fn gap_entry(gap: &Gap, seq: u64) -> NewEntry {
    let id = uuid::Uuid::now_v7();
    let event = Event {
        event_id: id.to_string(),
        time_unix_nanos: now_unix_nanos(),
        session_id: GAP_STREAM.into(),
        seq,
        identity: Some(Identity {
            subject: "vigil-ledger".into(),
            issuer: "vigil:internal".into(),
            auth_method: "internal".into(),
            ..Default::default()
        }),
        kind: Some(event::Kind::SequenceGap(SequenceGap {
            session_id: gap.session.clone(),
            first_missing: gap.first_missing,
            missing: gap.missing,
            open_for_nanos: gap.open_for.as_nanos().min(i64::MAX as u128) as i64,
        })),
        ..Default::default()
    };
    NewEntry {
        event_id: *id.as_bytes(),
        time_unix_nanos: event.time_unix_nanos,
        kind: event.kind_name().to_string(),
        body: event.encode_to_vec(),
        session_id: GAP_STREAM.into(),
        seq,
        subject: "vigil-ledger".into(),
    }
}
