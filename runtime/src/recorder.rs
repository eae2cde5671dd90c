//! The session recorder: how every protocol adapter puts a session's
//! events on the bus, with the two disciplines the gateway's fail-closed
//! promise rests on.
//!
//! - **Durable before forwarding** ([`SessionRecorder::record_durably`]):
//!   SessionOpened before the upstream connection, a Request and its
//!   Decision before the request goes upstream. An error means the adapter
//!   must not forward (and ends the session).
//! - **Durable before disclosure** ([`SessionRecorder::record_overlapped`]):
//!   for a request that changes nothing (a PostgreSQL read the classifier
//!   proves free of side effects), the events are handed to the bus at
//!   once, the request goes upstream at the same time, and the adapter
//!   waits ([`SessionRecorder::durable_through`]) before any byte of its
//!   answer reaches the client. A failure ends the session; the answer
//!   is never shown. The sink reports each outcome by a call
//!   ([`EventSink::record_then`]), which moves the session's mark at once:
//!   no task sits between a durable record and the adapter it releases.
//! - **In the background** ([`SessionRecorder::record_in_background`]):
//!   Responses, which must not stall the results they describe. The event
//!   is handed to the bus at once (so events keep their order); only the
//!   wait for durability runs in the background, and if it fails the
//!   watchdog ([`SessionRecorder::audit_failed`]) ends the session.
//!
//! Whichever of a session's tasks records (PostgreSQL's two directions, an
//! HTTP gateway's concurrent calls, a cancel arriving on another
//! connection), an event takes its sequence number as it is handed to the
//! bus, under one lock: the bus gets each session's stream in order.
//!
//! Also here: the session's [`EndReason`], typed, and the SessionOpened /
//! SessionClosed bracket ([`SessionRecorder::open`], [`SessionRecorder::close`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use vigil_metrics::LATENCY_SECONDS;

use tokio::sync::{watch, Notify};
use vigil_proto::events::{
    event::Kind, EndReason as Recorded, Event, SessionClosed, SessionOpened,
};
use vigil_proxy_core::sink::{Handover, HandoverFuture, OnRecorded};
use vigil_proxy_core::{EventSink, SessionContext, SinkError};

/// Why a session ended, with what the protocol adds (the I/O error, the
/// text told to the client). Recorded as SessionClosed's `reason` (an enum
/// of the event schema) and `detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The client said goodbye (PostgreSQL Terminate).
    ClientTerminated,
    /// The client's connection ended; the I/O error, if any.
    ClientDisconnected(Option<String>),
    /// The client left while a request was held for review.
    ClientLeftWhileHeld,
    /// The upstream connection closed; the I/O error, if any.
    UpstreamClosed(Option<String>),
    /// The upstream could not be reached or refused the login.
    UpstreamUnavailable(String),
    /// A background record failed: the session cannot be audited.
    AuditUnavailable,
    /// The gateway's shutdown ended it after the drain period.
    Shutdown,
    /// Anything the gateway ended the session for: a malformed message,
    /// an expired token, a refusal that ends the session. The text was
    /// told to the client too.
    Error(String),
}

impl EndReason {
    /// The reason and detail SessionClosed records.
    pub fn to_event(&self) -> (Recorded, String) {
        let detail = |e: &Option<String>| e.clone().unwrap_or_default();
        match self {
            Self::ClientTerminated => (Recorded::ClientTerminated, String::new()),
            Self::ClientDisconnected(e) => (Recorded::ClientDisconnected, detail(e)),
            Self::ClientLeftWhileHeld => (Recorded::ClientLeftWhileHeld, String::new()),
            Self::UpstreamClosed(e) => (Recorded::UpstreamClosed, detail(e)),
            Self::UpstreamUnavailable(e) => (Recorded::UpstreamUnavailable, e.clone()),
            Self::AuditUnavailable => (Recorded::AuditUnavailable, String::new()),
            Self::Shutdown => (Recorded::Shutdown, String::new()),
            Self::Error(e) => (Recorded::Error, e.clone()),
        }
    }

    /// One line for logs: "upstream_closed: connection reset".
    pub fn to_reason_text(&self) -> String {
        let (reason, detail) = self.to_event();
        SessionClosed {
            reason: reason as i32,
            detail,
            ..Default::default()
        }
        .reason_text()
    }
}

/// Events waiting behind one the bus had no room for, with their callbacks;
/// `None` when nothing waits.
type Backlog = Arc<Mutex<Option<VecDeque<(Event, OnRecorded)>>>>;

/// One session's recorder: its context (which stamps every event) and the
/// bus, shared by the session's tasks.
pub struct SessionRecorder {
    session: Arc<SessionContext>,
    sink: Arc<dyn EventSink>,
    backlog: Backlog,
    audit_failed: Arc<Notify>,
    started: Instant,
    overlapped: Overlapped,
    decisions: DecisionCounters,
}

/// How far the records handed over by
/// [`SessionRecorder::record_overlapped`] are durable. Tickets count from
/// 1; a ticket counts as durable once it and every ticket before it are, so
/// one number says it all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DurableMark {
    Through(u64),
    /// A record failed: nothing after it is taken as durable.
    Failed,
}

struct Overlapped {
    /// Taken under the hand-over's lock, so tickets follow bus order.
    issued: AtomicU64,
    durability: Arc<Durability>,
}

/// The session's mark, moved by the sinks' callbacks as outcomes arrive
/// (in any order).
struct Durability {
    mark: watch::Sender<DurableMark>,
    outstanding: Mutex<Outstanding>,
    audit_failed: Arc<Notify>,
}

/// Tickets not yet durable, from `first` on: how many of each ticket's
/// records are still awaited, and when it was handed over.
struct Outstanding {
    first: u64,
    waiting: VecDeque<(usize, Instant)>,
}

impl Durability {
    fn new(audit_failed: Arc<Notify>) -> Self {
        Self {
            mark: watch::channel(DurableMark::Through(0)).0,
            outstanding: Mutex::new(Outstanding {
                first: 1,
                waiting: VecDeque::new(),
            }),
            audit_failed,
        }
    }

    /// One record of `ticket` has its outcome.
    fn settle(&self, ticket: u64, result: Result<(), SinkError>) {
        if let Err(e) = result {
            tracing::error!(error = %e, "an overlapped record failed; its answer is withheld");
            self.mark.send_replace(DurableMark::Failed);
            self.audit_failed.notify_one();
            return;
        }
        let mut outstanding = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        let slot = ticket.wrapping_sub(outstanding.first);
        if let Some((left, _)) = usize::try_from(slot)
            .ok()
            .and_then(|slot| outstanding.waiting.get_mut(slot))
        {
            *left = left.saturating_sub(1);
        }
        self.advance(&mut outstanding);
    }

    /// Moves the mark past every leading ticket with nothing awaited.
    /// Called with the lock held, so two callbacks never move it backwards.
    fn advance(&self, outstanding: &mut Outstanding) {
        let mut through = None;
        while let Some(&(0, started)) = outstanding.waiting.front() {
            outstanding.waiting.pop_front();
            record_latency(RecordMode::Overlapped).observe(started.elapsed().as_secs_f64());
            through = Some(outstanding.first);
            outstanding.first += 1;
        }
        if let Some(t) = through {
            self.mark.send_if_modified(|mark| match mark {
                DurableMark::Failed => false,
                DurableMark::Through(_) => {
                    *mark = DurableMark::Through(t);
                    true
                }
            });
        }
    }
}

impl SessionRecorder {
    /// Records SessionOpened durably; only then may the adapter connect
    /// upstream. An error: the session must be refused.
    pub async fn open(
        session: Arc<SessionContext>,
        sink: Arc<dyn EventSink>,
        opened: SessionOpened,
    ) -> Result<Arc<Self>, SinkError> {
        sink.record(session.event(Kind::SessionOpened(opened)))
            .await?;
        let span = tracing::Span::current();
        span.record("session", tracing::field::display(session.session_id()));
        span.record("subject", session.subject());
        let protocol = session.protocol().label();
        vigil_metrics::counter(
            "vigil_sessions_opened_total",
            "Sessions whose SessionOpened was recorded, by protocol.",
            &[("protocol", protocol)],
        )
        .inc();
        open_sessions(protocol).inc();
        let audit_failed = Arc::new(Notify::new());
        let decisions = DecisionCounters::new(session.protocol());
        Ok(Arc::new(Self {
            session,
            sink,
            backlog: Backlog::default(),
            audit_failed: audit_failed.clone(),
            started: Instant::now(),
            overlapped: Overlapped {
                issued: AtomicU64::new(0),
                durability: Arc::new(Durability::new(audit_failed)),
            },
            decisions,
        }))
    }

    pub fn session(&self) -> &Arc<SessionContext> {
        &self.session
    }

    /// Records `kinds` in order and waits until all are durable; they are
    /// handed to the bus together, so they share one group commit.
    pub async fn record_durably(&self, kinds: Vec<Kind>) -> Result<(), SinkError> {
        self.record_durably_then_copy(kinds, false).await.map(drop)
    }

    /// As [`SessionRecorder::record_durably`], and gives back a copy of the
    /// events as recorded (with their sequence numbers), for a caller that
    /// hands one on (the hold coordinator's PendingOperation).
    pub async fn record_durably_copied(&self, kinds: Vec<Kind>) -> Result<Vec<Event>, SinkError> {
        self.record_durably_then_copy(kinds, true).await
    }

    async fn record_durably_then_copy(
        &self,
        kinds: Vec<Kind>,
        copy: bool,
    ) -> Result<Vec<Event>, SinkError> {
        let started = Instant::now();
        let copies = self.hand_over_and_wait(kinds, copy).await?;
        record_latency(RecordMode::Durable).observe(started.elapsed().as_secs_f64());
        Ok(copies)
    }

    /// Hands events over in the session's order (behind whatever waits in
    /// the backlog of a full bus, never past it) and waits until all are
    /// durable. A record whose callback is dropped unanswered counts as
    /// failed. With `copy`, gives back a copy of the stamped events.
    async fn hand_over_and_wait(
        &self,
        kinds: Vec<Kind>,
        copy: bool,
    ) -> Result<Vec<Event>, SinkError> {
        let mut outcomes = Vec::with_capacity(kinds.len());
        let mut copies = Vec::new();
        self.hand_over(kinds, |events| {
            if copy {
                copies = events.to_vec();
            }
            events
                .iter()
                .map(|_| {
                    let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), SinkError>>();
                    outcomes.push(rx);
                    Box::new(move |result| {
                        let _ = tx.send(result);
                    }) as OnRecorded
                })
                .collect()
        });
        for outcome in outcomes {
            outcome.await.map_err(|_| {
                SinkError::Unavailable("the record was dropped before it was durable".into())
            })??;
        }
        Ok(copies)
    }

    /// Hands `kinds` to the bus now, in order (when the bus has room; a
    /// full bus takes them as they are awaited, in order still), and
    /// returns their ticket without waiting: the request they describe may
    /// go upstream at once, but nothing of its answer may reach the client
    /// before [`SessionRecorder::durable_through`] that ticket says so. A
    /// failure also wakes [`SessionRecorder::audit_failed`].
    pub fn record_overlapped(&self, kinds: Vec<Kind>) -> u64 {
        let durability = &self.overlapped.durability;
        let mut ticket = 0;
        self.hand_over(kinds, |events| {
            ticket = self.overlapped.issued.fetch_add(1, Ordering::SeqCst) + 1;
            {
                // Listed before any record is handed over: a callback may
                // come at once, from another thread.
                let mut outstanding = durability
                    .outstanding
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                outstanding
                    .waiting
                    .push_back((events.len(), Instant::now()));
                durability.advance(&mut outstanding);
            }
            let ticket = ticket;
            events
                .iter()
                .map(|_| {
                    let durability = durability.clone();
                    Box::new(move |result| durability.settle(ticket, result)) as OnRecorded
                })
                .collect()
        });
        ticket
    }

    /// Stamps `kinds` with the session's next sequence numbers and hands
    /// them to the sink in that order, all under one lock: the session's
    /// tasks (PostgreSQL's two directions, a gateway's concurrent calls, a
    /// cancel on another connection) never hand over n+1 before n, so the
    /// ledger sees each stream in order. `callbacks` gives each stamped
    /// event its callback; it runs under the same lock, so what it numbers
    /// (an overlapped ticket) follows bus order too.
    ///
    /// When the sink leaves an enqueueing to its caller (a full bus), that
    /// event and every later one of the session wait in the backlog, which
    /// one task hands over in order: no event overtakes an earlier one.
    fn hand_over(&self, kinds: Vec<Kind>, callbacks: impl FnOnce(&[Event]) -> Vec<OnRecorded>) {
        kinds.iter().for_each(|kind| self.decisions.count(kind));
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let events: Vec<Event> = kinds.into_iter().map(|k| self.session.event(k)).collect();
        let done = callbacks(&events);
        // Not only in debug builds: a callback short would drop an event
        // unrecorded while its waiter was told it is durable.
        assert_eq!(done.len(), events.len(), "one callback per event");
        let mut records = events.into_iter().zip(done);
        if let Some(waiting) = backlog.as_mut() {
            waiting.extend(records);
            return;
        }
        while let Some((event, done)) = records.next() {
            match self.sink.record_then(event, done) {
                Handover::Done => {}
                Handover::Outcome(future) => {
                    tokio::spawn(future);
                }
                Handover::Pending(future) => {
                    // Not `records.collect()`: collecting a consumed
                    // `vec::IntoIter` into a VecDeque reuses its buffer
                    // with `head == capacity`, and on Rust 1.95 a later
                    // push and pop then read past the buffer and call a
                    // garbage callback (rust-lang/rust#162452, unsound;
                    // `a_durable_record_waits_behind_what_a_full_bus_holds_back`
                    // crashed on it). A deque of our own has `head == 0`.
                    let mut rest = VecDeque::with_capacity(records.len());
                    rest.extend(records);
                    *backlog = Some(rest);
                    // Unlocked first: a task dropped at once (a runtime
                    // shutting down) runs the guard, which takes the lock.
                    drop(backlog);
                    let guard = DrainGuard {
                        backlog: self.backlog.clone(),
                        finished: false,
                    };
                    tokio::spawn(drain_backlog(future, self.sink.clone(), guard));
                    return;
                }
            }
        }
    }

    /// Whether an overlapped record failed: nothing more of the session may
    /// be forwarded.
    pub fn overlapped_failed(&self) -> bool {
        *self.overlapped.durability.mark.borrow() == DurableMark::Failed
    }

    /// The latest ticket [`SessionRecorder::record_overlapped`] gave.
    pub fn overlapped_issued(&self) -> u64 {
        self.overlapped.issued.load(Ordering::SeqCst)
    }

    /// Waits until every overlapped record up to `ticket` is durable; an
    /// error if one of them (or any before) failed.
    pub async fn durable_through(&self, ticket: u64) -> Result<(), SinkError> {
        if ticket == 0 {
            return Ok(());
        }
        let mut rx = self.overlapped.durability.mark.subscribe();
        loop {
            match *rx.borrow_and_update() {
                DurableMark::Failed => {
                    return Err(SinkError::Unavailable(
                        "an event of this session could not be recorded".into(),
                    ))
                }
                DurableMark::Through(t) if t >= ticket => return Ok(()),
                DurableMark::Through(_) => {}
            }
            if rx.changed().await.is_err() {
                return Err(SinkError::Unavailable("the recorder is gone".into()));
            }
        }
    }

    /// Hands the event to the bus now and waits for durability in the
    /// background; a failure wakes [`SessionRecorder::audit_failed`].
    pub fn record_in_background(self: &Arc<Self>, kind: Kind) {
        let started = Instant::now();
        let recorder = self.clone();
        let done: OnRecorded = Box::new(move |result| {
            record_latency(RecordMode::Background).observe(started.elapsed().as_secs_f64());
            if let Err(e) = result {
                tracing::error!(session = %recorder.session.session_id(), error = %e, "event not recorded");
                recorder.audit_failed.notify_one();
            }
        });
        self.hand_over(vec![kind], |_| vec![done]);
    }

    /// Resolves once a background record has failed: the adapter ends the
    /// session with [`EndReason::AuditUnavailable`].
    pub async fn audit_failed(&self) {
        self.audit_failed.notified().await;
    }

    /// Records SessionClosed (durably; a failure is logged, the session is
    /// over either way).
    pub async fn close(&self, reason: &EndReason) {
        let (reason, detail) = reason.to_event();
        let protocol = self.session.protocol().label();
        open_sessions(protocol).dec();
        vigil_metrics::counter(
            "vigil_sessions_closed_total",
            "Sessions ended, by protocol and end reason.",
            &[("protocol", protocol), ("reason", reason.label())],
        )
        .inc();
        let closed = Kind::SessionClosed(SessionClosed {
            reason: reason as i32,
            detail,
            requests: self.session.statements(),
            duration_micros: self.started.elapsed().as_micros() as u64,
        });
        if let Err(e) = self.hand_over_and_wait(vec![closed], false).await {
            tracing::error!(session = %self.session.session_id(), error = %e, "cannot record session end");
        }
    }
}

/// Finishes the hand-over the bus had no room for, then hands over the
/// backlog behind it, one by one; ends when the backlog is empty.
async fn drain_backlog(first: HandoverFuture, sink: Arc<dyn EventSink>, mut guard: DrainGuard) {
    first.await;
    loop {
        let next = {
            let mut backlog = guard.backlog.lock().unwrap_or_else(|e| e.into_inner());
            match backlog.as_mut().and_then(VecDeque::pop_front) {
                Some(next) => next,
                None => {
                    *backlog = None;
                    // Under the lock: a backlog started after this one
                    // is not this drain's to fail.
                    guard.finished = true;
                    return;
                }
            }
        };
        match sink.record_then(next.0, next.1) {
            Handover::Done => {}
            Handover::Outcome(future) => {
                tokio::spawn(future);
            }
            Handover::Pending(future) => future.await,
        }
    }
}

/// Owned by a drain task: if the task ends before the backlog is empty
/// (dropped by a runtime shutting down, or a panic), every record still
/// waiting fails, so nobody waits forever for a record nothing will hand
/// over (a durable one ends its session; fail closed), and the session's
/// next records go to the bus directly again.
struct DrainGuard {
    backlog: Backlog,
    finished: bool,
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let abandoned = self
            .backlog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Called unlocked: a callback may hand over again.
        for (_, done) in abandoned.into_iter().flatten() {
            done(Err(SinkError::Unavailable(
                "the hand-over to the bus was abandoned".into(),
            )));
        }
    }
}

fn open_sessions(protocol: &str) -> vigil_metrics::Gauge {
    vigil_metrics::gauge(
        "vigil_sessions_open",
        "Sessions open now, by protocol.",
        &[("protocol", protocol)],
    )
}

/// How long records took to become durable, by how the session waited.
#[derive(Clone, Copy)]
enum RecordMode {
    /// Before the request was forwarded.
    Durable,
    /// While a read that changes nothing ran.
    Overlapped,
    /// Nobody waited (a Response).
    Background,
}

/// The histogram of `mode`, looked up in the registry once per process:
/// the lookup takes the registry's lock and renders the labels, which
/// every statement would otherwise pay on its way to the ledger.
fn record_latency(mode: RecordMode) -> &'static vigil_metrics::Histogram {
    static BY_MODE: [OnceLock<vigil_metrics::Histogram>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (slot, label) = match mode {
        RecordMode::Durable => (0, "durable"),
        RecordMode::Overlapped => (1, "overlapped"),
        RecordMode::Background => (2, "background"),
    };
    BY_MODE[slot].get_or_init(|| {
        vigil_metrics::histogram(
            "vigil_record_seconds",
            "Time from handing events to the bus until they are durable: `durable` before a request is forwarded, `overlapped` while a read that changes nothing runs, `background` for responses.",
            &[("mode", label)],
            LATENCY_SECONDS,
        )
    })
}

/// Counts decisions (a Decision event's, or the one a Request carries) by
/// outcome and stage for one session's protocol, keeping the counters it
/// has used: a session makes few kinds of decision, so after its first
/// statements counting one is a short scan under an uncontended lock
/// instead of a registry lookup.
struct DecisionCounters {
    protocol: vigil_proto::events::Protocol,
    used: Mutex<Vec<((i32, i32), vigil_metrics::Counter)>>,
}

impl DecisionCounters {
    fn new(protocol: vigil_proto::events::Protocol) -> Self {
        Self {
            protocol,
            used: Mutex::new(Vec::new()),
        }
    }

    fn count(&self, kind: &Kind) {
        let Some(d) = kind.decision() else {
            return;
        };
        let key = (d.outcome, d.stage);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counter)) = used.iter().find(|(k, _)| *k == key) {
            counter.inc();
            return;
        }
        let counter = vigil_metrics::counter(
            "vigil_decisions_total",
            "Policy decisions recorded, by protocol, outcome and stage.",
            &[
                ("protocol", self.protocol.label()),
                ("outcome", d.outcome().label()),
                ("stage", d.stage().label()),
            ],
        );
        counter.inc();
        used.push((key, counter));
    }
}

/// Records a refused login (nothing was let in, so nothing waits for it to
/// be durable) and counts it by protocol and reason code.
pub fn record_login_refused(sink: &Arc<dyn EventSink>, event: Event) {
    if let Some(Kind::LoginRefused(l)) = &event.kind {
        vigil_metrics::counter(
            "vigil_logins_refused_total",
            "Logins refused, by protocol and reason code.",
            &[
                ("protocol", event.protocol().label()),
                ("reason", &l.reason_code),
            ],
        )
        .inc();
    }
    let done: OnRecorded = Box::new(|result| {
        if let Err(e) = result {
            tracing::error!(error = %e, "refused login not recorded");
        }
    });
    match sink.record_then(event, done) {
        Handover::Done => {}
        Handover::Outcome(future) | Handover::Pending(future) => {
            tokio::spawn(future);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use vigil_proxy_core::sink::RecordFuture;
    use vigil_proxy_core::VerifiedIdentity;

    use super::*;

    /// Keeps what it is given; fails every record once `fail` is set.
    #[derive(Default)]
    struct Collecting {
        events: Mutex<Vec<Event>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl EventSink for Collecting {
        fn record(&self, event: Event) -> RecordFuture {
            self.events.lock().unwrap().push(event);
            let fail = self.fail.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if fail {
                    Err(SinkError::Unavailable("test".into()))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn identity() -> VerifiedIdentity {
        VerifiedIdentity {
            subject: "agent-7".into(),
            issuer: "vigil:static".into(),
            auth_method: "password".into(),
            ..VerifiedIdentity::default()
        }
    }

    /// A PostgreSQL session's context for the tests' recorders.
    fn session() -> Arc<SessionContext> {
        Arc::new(SessionContext::new(
            "ehr",
            &identity(),
            vigil_proto::events::Protocol::Postgres,
        ))
    }

    /// A recorder on `sink`, its SessionOpened recorded.
    async fn opened(sink: Arc<dyn EventSink>) -> Arc<SessionRecorder> {
        SessionRecorder::open(session(), sink, SessionOpened::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_session_is_bracketed_and_a_failed_background_record_trips_the_watchdog() {
        let sink = Arc::new(Collecting::default());
        let recorder = opened(sink.clone()).await;
        recorder
            .record_durably(vec![Kind::Request(Default::default())])
            .await
            .unwrap();
        sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        recorder.record_in_background(Kind::Response(Default::default()));
        tokio::time::timeout(std::time::Duration::from_secs(5), recorder.audit_failed())
            .await
            .expect("the watchdog fires");
        assert!(recorder
            .record_durably(vec![Kind::Request(Default::default())])
            .await
            .is_err());
        recorder.close(&EndReason::AuditUnavailable).await;
        let events = sink.events.lock().unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        match &events[4].kind {
            Some(Kind::SessionClosed(c)) => {
                assert_eq!(c.reason(), Recorded::AuditUnavailable)
            }
            other => panic!("{other:?}"),
        }
    }

    /// Holds each record until released, to show the order of durability.
    #[derive(Default)]
    struct Gated {
        gates: Mutex<Vec<tokio::sync::oneshot::Sender<Result<(), SinkError>>>>,
    }

    impl EventSink for Gated {
        fn record(&self, _event: Event) -> RecordFuture {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.gates.lock().unwrap().push(tx);
            Box::pin(async move { rx.await.unwrap_or(Ok(())) })
        }
    }

    #[tokio::test]
    async fn an_overlapped_record_is_waited_for_in_order_and_a_failure_withholds_for_good() {
        let sink = Arc::new(Gated::default());
        let opening = SessionRecorder::open(session(), sink.clone(), SessionOpened::default());
        let opened = tokio::spawn(opening);
        while sink.gates.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let _ = sink.gates.lock().unwrap().remove(0).send(Ok(()));
        let recorder = opened.await.unwrap().unwrap();
        assert_eq!(recorder.overlapped_issued(), 0);
        recorder.durable_through(0).await.unwrap();
        let first = recorder.record_overlapped(vec![Kind::Request(Default::default())]);
        let second = recorder.record_overlapped(vec![Kind::Request(Default::default())]);
        assert_eq!((first, second), (1, 2));
        let wait = |t| {
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                recorder.durable_through(t),
            )
        };
        assert!(wait(1).await.is_err(), "nothing is durable yet");
        // The second becomes durable first: the first still is not.
        let _ = sink.gates.lock().unwrap().remove(1).send(Ok(()));
        assert!(wait(1).await.is_err());
        let _ = sink.gates.lock().unwrap().remove(0).send(Ok(()));
        wait(2).await.expect("in time").expect("durable");
        let third = recorder.record_overlapped(vec![Kind::Request(Default::default())]);
        let _ = sink
            .gates
            .lock()
            .unwrap()
            .remove(0)
            .send(Err(SinkError::Unavailable("disk".into())));
        assert!(wait(third).await.expect("in time").is_err());
        assert!(wait(1).await.expect("in time").is_err(), "failed for good");
        tokio::time::timeout(std::time::Duration::from_secs(5), recorder.audit_failed())
            .await
            .expect("the watchdog fires");
    }

    /// A bus that is full until `room` is notified: the first hand-over
    /// while full is left to the caller; `handed` is the order the bus
    /// took events in.
    #[derive(Default)]
    struct FullOnce {
        handed: Arc<Mutex<Vec<Event>>>,
        full: Arc<std::sync::atomic::AtomicBool>,
        room: Arc<tokio::sync::Notify>,
    }

    impl EventSink for FullOnce {
        fn record(&self, event: Event) -> RecordFuture {
            self.handed.lock().unwrap().push(event);
            Box::pin(async { Ok(()) })
        }

        fn record_then(&self, event: Event, done: OnRecorded) -> Handover {
            if !self.full.load(std::sync::atomic::Ordering::SeqCst) {
                self.handed.lock().unwrap().push(event);
                done(Ok(()));
                return Handover::Done;
            }
            let (handed, full, room) = (self.handed.clone(), self.full.clone(), self.room.clone());
            Handover::Pending(Box::pin(async move {
                room.notified().await;
                full.store(false, std::sync::atomic::Ordering::SeqCst);
                handed.lock().unwrap().push(event);
                done(Ok(()));
            }))
        }
    }

    #[tokio::test]
    async fn a_durable_record_waits_behind_what_a_full_bus_holds_back() {
        let sink = Arc::new(FullOnce::default());
        let recorder = opened(sink.clone()).await;
        sink.full.store(true, std::sync::atomic::Ordering::SeqCst);
        // A Response the bus has no room for, then the next Request, which
        // must wait to be durable before its statement is forwarded.
        recorder.record_in_background(Kind::Response(Default::default()));
        let next = {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                recorder
                    .record_durably(vec![Kind::Request(Default::default())])
                    .await
            })
        };
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            sink.handed.lock().unwrap().len(),
            1,
            "the Request does not overtake the Response held back"
        );
        assert!(!next.is_finished(), "nor is it durable before it");
        sink.room.notify_one();
        tokio::time::timeout(std::time::Duration::from_secs(5), next)
            .await
            .expect("in time")
            .unwrap()
            .expect("durable");
        recorder.close(&EndReason::ClientTerminated).await;
        let handed = sink.handed.lock().unwrap();
        let kinds: Vec<&str> = handed.iter().map(|e| e.kind_name()).collect();
        assert_eq!(
            kinds,
            ["session_opened", "response", "request", "session_closed"]
        );
        let seqs: Vec<u64> = handed.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3], "the bus takes the stream in order");
    }

    /// Keeps the sequence numbers in the order the bus took them.
    #[derive(Default)]
    struct Numbered {
        seqs: Mutex<Vec<u64>>,
    }

    impl EventSink for Numbered {
        fn record(&self, event: Event) -> RecordFuture {
            self.seqs.lock().unwrap().push(event.seq);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_tasks_of_a_session_reach_the_bus_in_numbering_order() {
        let sink = Arc::new(Numbered::default());
        let recorder = opened(sink.clone()).await;
        // Every way a session's tasks record, at once from four threads:
        // a number taken outside the hand-over would let n+1 reach the
        // bus before n.
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    for _ in 0..500 {
                        match task % 3 {
                            0 => recorder
                                .record_durably(vec![Kind::Request(Default::default())])
                                .await
                                .unwrap(),
                            1 => {
                                let ticket = recorder
                                    .record_overlapped(vec![Kind::Request(Default::default())]);
                                recorder.durable_through(ticket).await.unwrap();
                            }
                            _ => {
                                recorder.record_in_background(Kind::Response(Default::default()));
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        recorder.close(&EndReason::ClientTerminated).await;
        let seqs = sink.seqs.lock().unwrap();
        assert_eq!(seqs.len(), 1 + 8 * 500 + 1);
        let out_of_order = seqs.windows(2).filter(|w| w[1] != w[0] + 1).count();
        assert_eq!(
            out_of_order, 0,
            "every event follows the one numbered before it"
        );
    }

    /// Full for good: the hand-over it leaves to its caller panics.
    struct Broken;

    impl EventSink for Broken {
        fn record(&self, _event: Event) -> RecordFuture {
            Box::pin(async { Ok(()) })
        }

        fn record_then(&self, _event: Event, _done: OnRecorded) -> Handover {
            Handover::Pending(Box::pin(async { panic!("the bus broke") }))
        }
    }

    #[tokio::test]
    async fn records_behind_an_abandoned_hand_over_fail_instead_of_waiting_forever() {
        // `record` answers the SessionOpened; every later record is left
        // pending, and its drain task panics.
        let recorder = opened(Arc::new(Broken)).await;
        recorder.record_in_background(Kind::Response(Default::default()));
        let durable = recorder.record_durably(vec![Kind::Request(Default::default())]);
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), durable)
            .await
            .expect("an answer, not a hang");
        assert!(result.is_err(), "not durable: {result:?}");
    }

    #[test]
    fn end_reasons_read_as_one_line() {
        for (reason, text) in [
            (EndReason::ClientTerminated, "client_terminated"),
            (EndReason::ClientDisconnected(None), "client_disconnected"),
            (
                EndReason::ClientDisconnected(Some("reset".into())),
                "client_disconnected: reset",
            ),
            (EndReason::Shutdown, "shutdown"),
            (EndReason::AuditUnavailable, "audit_unavailable"),
            (EndReason::ClientLeftWhileHeld, "client_left_while_held"),
            (EndReason::Error("bad".into()), "error: bad"),
            (
                EndReason::UpstreamUnavailable("refused".into()),
                "upstream_unavailable: refused",
            ),
        ] {
            assert_eq!(reason.to_reason_text(), text);
        }
    }
}
