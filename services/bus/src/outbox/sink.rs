//! The outbox's writer: proxies record events here. One group commit per
//! burst ([`crate::group_commit`], as the ledger's appender): the burst is
//! written without a sync, one sync of the outbox's WAL makes it durable,
//! and only then is it visible to the shipper and every waiting publisher
//! acknowledged. A burst of Responses alone waits a little for a Request
//! to share its sync ([`crate::quiet`]). Unlike the appender it syncs on
//! its own thread only: see [`Committer::inline`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vigil_proto::events::Event;
use vigil_proto::Message;
use vigil_proxy_core::sink::{
    EventSink, Handover, HandoverFuture, OnRecorded, RecordFuture, SinkError,
};

use crate::delivery::Ack;
use crate::group_commit::{self, Committer, Durability};
use crate::quiet::{self, QuietReceiver, QuietSender, SendError, TrySendError};

use super::{OutboxStore, Shared};

/// Largest burst one write takes.
const MAX_BURST: usize = 4096;

struct Pending {
    key: Vec<u8>,
    payload: Vec<u8>,
    ack: Ack,
}

/// The publishing side of the Kafka bus, as proxies see it. Cheap to clone.
#[derive(Clone)]
pub struct OutboxSink {
    tx: QuietSender<Pending>,
}

impl OutboxSink {
    /// Starts the writer on a thread of its own (see
    /// [`crate::own_thread`]); it stops when every sink is dropped.
    pub(crate) fn start(store: Arc<OutboxStore>, shared: Arc<Shared>) -> std::io::Result<Self> {
        let (tx, rx) = quiet::quiet(2 * MAX_BURST);
        // It ends when every sink is gone; the sinks' callbacks say what
        // failed before that.
        crate::own_thread::spawn("vigil-outbox", move || write_loop(store, shared, rx))?.detach();
        Ok(Self { tx })
    }
}

impl OutboxSink {
    /// Enqueues now, while the caller still holds its place in line: a
    /// session's events enter the outbox in the order they were made. A
    /// full queue leaves the enqueueing to the returned future.
    fn hand_over(&self, event: &Event, ack: Ack) -> Option<HandoverFuture> {
        let awaited = group_commit::awaited_inline(event);
        let pending = Pending {
            key: crate::kafka::message_key(event).as_bytes().to_vec(),
            payload: event.encode_to_vec(),
            ack,
        };
        match self.tx.try_send(pending, awaited) {
            Ok(()) => None,
            Err(TrySendError::Full(p)) => {
                let queued = self.tx.send(p, awaited);
                Some(Box::pin(async move {
                    if let Err(SendError(p)) = queued.await {
                        p.ack.send(Err(stopped()));
                    }
                }))
            }
            Err(TrySendError::Closed(p)) => {
                p.ack.send(Err(stopped()));
                None
            }
        }
    }
}

impl EventSink for OutboxSink {
    fn record(&self, event: Event) -> RecordFuture {
        let (ack, done) = Ack::channel();
        let queued = self.hand_over(&event, ack);
        Box::pin(async move {
            if let Some(queued) = queued {
                queued.await;
            }
            done.await.unwrap_or_else(|_| Err(stopped()))
        })
    }

    fn record_then(&self, event: Event, done: OnRecorded) -> Handover {
        match self.hand_over(&event, Ack::call(done)) {
            None => Handover::Done,
            Some(queued) => Handover::Pending(queued),
        }
    }
}

fn stopped() -> SinkError {
    SinkError::Unavailable("the audit outbox has stopped".into())
}

/// Takes bursts off the queue, admits what the limits allow, writes it and
/// commits it, until every sink is gone. Blocks its thread while it writes
/// (or syncs, when nothing else waits): run it only on the writer's own
/// thread.
async fn write_loop(store: Arc<OutboxStore>, shared: Arc<Shared>, mut rx: QuietReceiver<Pending>) {
    let durable = Arc::new(Durable {
        store: store.clone(),
        shared: shared.clone(),
        failed: AtomicBool::new(false),
    });
    // No syncer thread: writing a burst costs little next to its sync, and
    // at 16 clients the hand-overs to a syncer cost more throughput than
    // overlapping the two gained (ARCHITECTURE.md, issue 25's sixth step).
    let committer = Committer::inline(durable.clone());
    // The sequence number the next written event gets. Ahead of the
    // shipper's head by what is written and not yet durable.
    let mut next = *shared.head.borrow();
    while let Some(burst) = rx.next_batch(MAX_BURST).await {
        if durable.failed.load(Ordering::SeqCst) {
            refuse(burst, &durable.failure());
            continue;
        }
        let Some(written) = admit(&shared, next, burst) else {
            continue;
        };
        // This thread is the writer's own: it blocks on the write.
        if let Err(e) = store.write(next, &written.events) {
            durable.fail(&e);
            written.settle(&shared, Err(durable.failure()));
            continue;
        }
        next += written.events.len() as u64;
        committer.commit(written, rx.awaited_waiting());
    }
}

fn refuse(burst: Vec<Pending>, error: &SinkError) {
    for p in burst {
        p.ack.send(Err(error.clone()));
    }
}

/// Counts what fits within the outbox's limits into its waiting totals and
/// refuses the rest; `None` when nothing fits. Once one event of a burst
/// finds no room, the rest are refused too, even smaller ones: a session's
/// events must not skip one.
fn admit(shared: &Shared, first: u64, burst: Vec<Pending>) -> Option<Written> {
    let limits = shared.limits;
    let mut events = shared.waiting_events.load(Ordering::SeqCst);
    let mut bytes = shared.waiting_bytes.load(Ordering::SeqCst);
    let mut written = Written {
        first,
        events: Vec::with_capacity(burst.len()),
        acks: Vec::with_capacity(burst.len()),
        bytes: 0,
    };
    let mut full = false;
    for p in burst {
        let size = (p.key.len() + p.payload.len()) as u64;
        full = full || events + 1 > limits.max_events || bytes + size > limits.max_bytes;
        if full {
            p.ack.send(Err(SinkError::Unavailable(format!(
                "the audit outbox is full ({events} events, {bytes} bytes wait for the Kafka broker; limits {} events, {} bytes); statements are refused until it drains",
                limits.max_events, limits.max_bytes
            ))));
            continue;
        }
        events += 1;
        bytes += size;
        written.bytes += size;
        written.events.push((p.key, p.payload));
        written.acks.push(p.ack);
    }
    if written.events.is_empty() {
        return None;
    }
    // Counted from now on, durable or not yet: the next burst's room is
    // what is left after this one.
    let n = written.events.len() as u64;
    shared.waiting_events.fetch_add(n, Ordering::SeqCst);
    shared
        .waiting_bytes
        .fetch_add(written.bytes, Ordering::SeqCst);
    Some(written)
}

/// A burst written to the outbox and not yet durable.
struct Written {
    /// Its first event's sequence number; the rest follow.
    first: u64,
    events: Vec<(Vec<u8>, Vec<u8>)>,
    acks: Vec<Ack>,
    bytes: u64,
}

impl Written {
    /// Answers its publishers. A refused burst no longer counts as
    /// waiting; a durable one is handed to the shipper first.
    fn settle(self, shared: &Shared, result: Result<(), SinkError>) {
        let Written {
            first,
            events,
            acks,
            bytes,
        } = self;
        if result.is_ok() {
            // In memory for the shipper before the head says it exists.
            let n = events.len() as u64;
            shared
                .fresh
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(first, events);
            shared.head.send_replace(first + n);
        } else {
            shared
                .waiting_events
                .fetch_sub(events.len() as u64, Ordering::SeqCst);
            shared.waiting_bytes.fetch_sub(bytes, Ordering::SeqCst);
        }
        for ack in acks {
            ack.send(result.clone());
        }
    }
}

/// What makes written bursts durable: one sync of the outbox's WAL. After a
/// failed write or sync nothing more is taken until the proxy restarts:
/// what was written since the last good sync may or may not be on disk, and
/// the sequence numbers after it would be ambiguous.
struct Durable {
    store: Arc<OutboxStore>,
    shared: Arc<Shared>,
    failed: AtomicBool,
}

impl Durable {
    fn fail(&self, error: &super::OutboxError) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(%error, "cannot write the audit outbox; every later event is refused until the proxy restarts");
        }
    }

    fn failure(&self) -> SinkError {
        SinkError::Unavailable(
            "the audit outbox failed to write or sync; statements are refused until the proxy restarts"
                .into(),
        )
    }
}

impl Durability for Durable {
    type Written = Written;

    fn sync_and_ack(&self, written: Vec<Written>) {
        let result = if self.failed.load(Ordering::SeqCst) {
            Err(self.failure())
        } else {
            match self.store.sync() {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.fail(&e);
                    Err(self.failure())
                }
            }
        };
        for w in written {
            w.settle(&self.shared, result.clone());
        }
    }

    fn refuse(&self, written: Vec<Written>, why: &str) {
        // Bursts written after these must not become durable past them
        // (their numbers would follow refused events): stop taking any.
        self.failed.store(true, Ordering::SeqCst);
        tracing::error!(why, "the audit outbox's syncer stopped; every later event is refused until the proxy restarts");
        let refused = Err(SinkError::Unavailable(format!("the audit outbox: {why}")));
        for w in written {
            w.settle(&self.shared, refused.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Outbox, OutboxLimits};
    use vigil_proto::events::{event::Kind, Request, Response};

    fn event(session: &str, seq: u64, kind: Kind) -> Event {
        Event {
            event_id: format!("{session}-{seq}"),
            session_id: session.into(),
            seq,
            kind: Some(kind),
            ..Default::default()
        }
    }

    fn request(session: &str, seq: u64) -> Event {
        event(session, seq, Kind::Request(Request::default()))
    }

    fn response(session: &str, seq: u64) -> Event {
        event(session, seq, Kind::Response(Response::default()))
    }

    /// Records `event` in the background; the receiver gets its outcome.
    fn record_then(
        sink: &OutboxSink,
        event: Event,
    ) -> tokio::sync::oneshot::Receiver<Result<(), SinkError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match sink.record_then(event, Box::new(move |r| drop(tx.send(r)))) {
            Handover::Done => {}
            Handover::Pending(_) | Handover::Outcome(_) => panic!("the queue is not full"),
        }
        rx
    }

    /// The test's directory and outbox, dropped after the test's own
    /// bindings (the sink first): waits for the writer's thread to end
    /// ([`crate::own_thread::wait_for_all`]), so that RocksDB is closed here
    /// and not on that thread while the test's process exits (which aborted
    /// a test now and then: "pthread lock: Invalid argument").
    /// (Fields drop in order: the store closes before its directory goes.)
    struct Teardown {
        _outbox: Outbox,
        _dir: tempfile::TempDir,
    }

    impl Drop for Teardown {
        fn drop(&mut self) {
            let left = crate::own_thread::wait_for_all(std::time::Duration::from_secs(10));
            if !std::thread::panicking() {
                assert_eq!(left, 0, "the outbox's writer did not stop");
            }
        }
    }

    fn open(limits: OutboxLimits) -> (Teardown, Outbox, OutboxSink) {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), limits).unwrap();
        let sink = outbox.sink().unwrap();
        let teardown = Teardown {
            _outbox: outbox.clone(),
            _dir: dir,
        };
        (teardown, outbox, sink)
    }

    #[tokio::test]
    async fn concurrent_records_are_acknowledged_once_durable_and_shipped_in_their_order() {
        let (_dir, outbox, sink) = open(OutboxLimits::default());
        let mut tasks = Vec::new();
        for s in 0..8 {
            let sink = sink.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0..50 {
                    sink.record(request(&format!("s{s}"), seq)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Every acknowledged event is visible to the shipper, and on disk
        // in the order each session recorded it.
        assert_eq!(*outbox.shared.head.borrow(), 400);
        assert_eq!(outbox.status().waiting_events, 400);
        let stored = outbox.store.read(0, 1000).unwrap();
        assert_eq!(stored.len(), 400);
        let mut next_seq = std::collections::HashMap::new();
        for q in stored {
            let e = <Event as vigil_proto::Message>::decode(&q.payload[..]).unwrap();
            let expected = next_seq.entry(e.session_id.clone()).or_insert(0);
            assert_eq!(e.seq, *expected, "session {} out of order", e.session_id);
            *expected += 1;
        }
        // Bursts shared syncs.
        let syncs = outbox.store.syncs();
        assert!(syncs > 0 && syncs < 400, "{syncs} syncs");
    }

    #[tokio::test]
    async fn a_lone_response_waits_to_share_the_sync_of_the_next_request() {
        let (_dir, outbox, sink) = open(OutboxLimits::default());
        // Nobody waits on a Response: alone, it is synced once the wait for
        // company is over.
        record_then(&sink, response("s", 0)).await.unwrap().unwrap();
        assert_eq!(outbox.store.syncs(), 1);
        // A Response and the Request after it: one sync for both, however
        // the writer's wake-up falls between them.
        let answered = record_then(&sink, response("s", 1));
        let awaited = record_then(&sink, request("s", 2));
        awaited.await.unwrap().unwrap();
        answered.await.unwrap().unwrap();
        assert_eq!(outbox.store.syncs(), 2);
        assert_eq!(*outbox.shared.head.borrow(), 3);
    }

    #[tokio::test]
    async fn a_full_outbox_refuses_and_counts_only_what_it_took() {
        let (_dir, outbox, sink) = open(OutboxLimits {
            max_events: 3,
            max_bytes: 1 << 20,
        });
        for seq in 0..3 {
            sink.record(request("s", seq)).await.unwrap();
        }
        let refused = sink.record(request("s", 3)).await.unwrap_err();
        assert!(refused.to_string().contains("outbox is full"), "{refused}");
        assert_eq!(outbox.status().waiting_events, 3);
        assert_eq!(*outbox.shared.head.borrow(), 3);
    }
}
