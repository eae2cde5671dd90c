//! Group commit, shared by the two writers that make records durable: the
//! ledger's appender and the proxy's outbox writer.
//!
//! Both take what waits on their queue as one batch, write it without a
//! sync, and make it durable with one sync of the write-ahead log that
//! covers every batch written before that sync began. Two things here keep
//! the number of syncs per statement low:
//!
//! - A batch holding only events nobody waits on (a Response,
//!   SessionClosed, ...) waits up to [`LAZY_WAIT`] for an event somebody
//!   does wait on, and is synced with it ([`crate::quiet`] for the embedded
//!   bus and the outbox, [`crate::Subscriber::next_batch`] for the others).
//!   Without it a lone session pays two syncs a statement: its Response is
//!   synced on its own, and the next statement's Request queues behind that
//!   sync.
//! - [`Committer`]: for the appender, when a record somebody waits for is
//!   already queued, a written batch's sync runs on a second thread (the
//!   syncer) while the writer takes and writes the next batch; when none
//!   is (one client: at most the Response of the statement just sent
//!   waits, and it waits for company anyway), the writer syncs itself, so
//!   a lone statement pays no extra hand-over. The outbox, whose write is light, always syncs itself
//!   (`Committer::inline`).
//!
//! What holds either way: no publisher is answered before a sync that began
//! after its batch was written, and batches are answered in the order they
//! were written (the writer never syncs on its own thread while the syncer
//! still holds a batch).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use vigil_proto::events::{event::Kind, Event};

/// How long a batch holding only events nobody waits on may wait for
/// company before it is synced.
pub const LAZY_WAIT: Duration = Duration::from_millis(2);

/// Whether a publisher waits for this event's durability before going on
/// (SessionOpened, Request, Decision, ...): such an event is synced at
/// once. The others are recorded in the background (a Response, the end
/// of a session, a cancel, a refused login) and may wait for company.
pub fn awaited_inline(event: &Event) -> bool {
    !matches!(
        event.kind,
        Some(Kind::Response(_))
            | Some(Kind::SessionClosed(_))
            | Some(Kind::CancelRequested(_))
            | Some(Kind::LoginRefused(_))
    )
}

/// How written batches become durable. Implemented by the ledger's
/// appender and the outbox's writer.
pub trait Durability: Send + Sync + 'static {
    /// A batch written and not yet durable, with whoever waits for it.
    type Written: Send + 'static;

    /// One sync that covers every batch written so far (`written` among
    /// them), then every publisher of `written` is answered with its
    /// outcome, in order.
    fn sync_and_ack(&self, written: Vec<Self::Written>);

    /// Answers every publisher of `written` with a refusal: the syncer
    /// stopped (a panic) before it could sync them. Called on such a stop
    /// even when `written` is empty; whatever the writer writes next is
    /// then synced on its own thread.
    fn refuse(&self, written: Vec<Self::Written>, why: &str);
}

/// Makes written batches durable, on the writer's thread or the syncer's.
/// Dropping it syncs and answers what the syncer holds, then joins it.
pub struct Committer<D: Durability> {
    durable: Arc<D>,
    syncer: Option<Syncer<D>>,
}

impl<D: Durability> Committer<D> {
    /// Starts the syncer's thread, named `syncer_name`. If it cannot start,
    /// every batch is synced on the writer's thread.
    pub fn start(syncer_name: &str, durable: Arc<D>) -> Self {
        let syncer = match Syncer::start(syncer_name, durable.clone()) {
            Ok(syncer) => Some(syncer),
            Err(e) => {
                tracing::warn!(error = %e, thread = syncer_name, "cannot start a syncer thread; every batch is synced on its writer's");
                None
            }
        };
        Self { durable, syncer }
    }

    /// Syncs every batch on the writer's thread: for a writer whose write
    /// is light, where a syncer's hand-overs would cost more than the
    /// overlap gains (the outbox's, measured).
    pub fn inline(durable: Arc<D>) -> Self {
        Self {
            durable,
            syncer: None,
        }
    }

    /// Makes `written` durable and answers it: on the syncer's thread when
    /// `more_waiting` (the writer has the next batch to take meanwhile) or
    /// while the syncer still holds earlier batches; on this thread
    /// otherwise, which blocks until the sync is done.
    pub fn commit(&self, written: D::Written, more_waiting: bool) {
        let inline = match &self.syncer {
            Some(syncer) if more_waiting || syncer.is_busy() => syncer.hand(written),
            _ => Some(written),
        };
        // Nothing else waits, or there is no syncer (it never started, or
        // it died and gave the batch back): this thread syncs.
        if let Some(written) = inline {
            self.durable.sync_and_ack(vec![written]);
        }
    }
}

/// The thread that syncs written batches while the writer takes the next
/// ones.
struct Syncer<D: Durability> {
    shared: Arc<SyncerShared<D::Written>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct SyncerShared<W> {
    queue: Mutex<SyncQueue<W>>,
    wake: Condvar,
}

struct SyncQueue<W> {
    waiting: Vec<W>,
    /// Batches handed over and not yet answered: the writer must not sync
    /// on its own thread meanwhile (its batch would be answered while
    /// earlier ones are still waiting).
    busy: bool,
    closed: bool,
    /// The syncer's thread has ended (a panic): it takes nothing more.
    dead: bool,
}

impl<W> SyncerShared<W> {
    fn lock(&self) -> MutexGuard<'_, SyncQueue<W>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs when the syncer's loop ends, by return or by panic: marks it dead
/// under the lock and refuses whatever it was handed, so no publisher
/// waits for an answer that will never come.
struct RefuseOnExit<'a, D: Durability> {
    shared: &'a SyncerShared<D::Written>,
    durable: &'a D,
}

impl<D: Durability> Drop for RefuseOnExit<'_, D> {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        let abandoned = std::mem::take(&mut queue.waiting);
        // A panic may have dropped the batches it was syncing unanswered
        // (their publishers learn it from the dropped acknowledgement):
        // the writer is told even when nothing else was waiting. Under the
        // lock, so that the writer cannot sync a later batch on its own
        // thread before the refusal has taken effect.
        if !abandoned.is_empty() || std::thread::panicking() {
            self.durable.refuse(abandoned, "the syncer stopped");
        }
        queue.dead = true;
        queue.busy = false;
    }
}

impl<D: Durability> Syncer<D> {
    fn start(name: &str, durable: Arc<D>) -> std::io::Result<Self> {
        let shared = Arc::new(SyncerShared {
            queue: Mutex::new(SyncQueue {
                waiting: Vec::new(),
                busy: false,
                closed: false,
                dead: false,
            }),
            wake: Condvar::new(),
        });
        let on_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || Self::run(&on_thread, &*durable))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn is_busy(&self) -> bool {
        self.shared.lock().busy
    }

    /// Hands a written batch over; gives it back if the syncer has died.
    fn hand(&self, written: D::Written) -> Option<D::Written> {
        let mut queue = self.shared.lock();
        if queue.dead {
            return Some(written);
        }
        queue.waiting.push(written);
        queue.busy = true;
        self.shared.wake.notify_one();
        None
    }

    fn run(shared: &SyncerShared<D::Written>, durable: &D) {
        let _on_exit = RefuseOnExit::<D> { shared, durable };
        let mut queue = shared.lock();
        loop {
            if queue.waiting.is_empty() {
                queue.busy = false;
                if queue.closed {
                    return;
                }
                queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let taken = std::mem::take(&mut queue.waiting);
            drop(queue);
            durable.sync_and_ack(taken);
            queue = shared.lock();
        }
    }
}

impl<D: Durability> Drop for Syncer<D> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("a syncer thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use vigil_proto::events::{Request, Response};

    /// Records which batches each sync answered, and in which order.
    #[derive(Default)]
    struct Recording {
        syncs: Mutex<Vec<Vec<u32>>>,
        refused: AtomicUsize,
        slow: Option<Duration>,
    }

    impl Durability for Recording {
        type Written = u32;
        fn sync_and_ack(&self, written: Vec<u32>) {
            if let Some(d) = self.slow {
                std::thread::sleep(d);
            }
            self.syncs.lock().unwrap().push(written);
        }
        fn refuse(&self, written: Vec<u32>, _why: &str) {
            self.refused.fetch_add(written.len(), Ordering::SeqCst);
        }
    }

    #[test]
    fn a_lone_batch_is_synced_on_the_writers_thread_and_answered_at_once() {
        let durable = Arc::new(Recording::default());
        let committer = Committer::start("test-syncer", durable.clone());
        committer.commit(1, false);
        // Answered before commit returned: no other thread was involved.
        assert_eq!(*durable.syncs.lock().unwrap(), vec![vec![1]]);
    }

    #[test]
    fn batches_handed_over_are_answered_in_order_and_none_is_lost_at_drop() {
        let durable = Arc::new(Recording {
            slow: Some(Duration::from_millis(5)),
            ..Default::default()
        });
        let committer = Committer::start("test-syncer", durable.clone());
        for i in 0..20 {
            // Alternate: handed over while more waits, or inline, which must
            // then go to the busy syncer too so that order holds.
            committer.commit(i, i % 2 == 0);
        }
        drop(committer);
        let answered: Vec<u32> = durable.syncs.lock().unwrap().concat();
        assert_eq!(answered, (0..20).collect::<Vec<_>>());
        assert_eq!(durable.refused.load(Ordering::SeqCst), 0);
        // Handed-over batches shared syncs: fewer syncs than batches.
        assert!(durable.syncs.lock().unwrap().len() < 20);
    }

    fn event(kind: Kind) -> Event {
        Event {
            kind: Some(kind),
            ..Default::default()
        }
    }

    #[test]
    fn only_background_records_wait_for_company() {
        assert!(awaited_inline(&event(Kind::Request(Request::default()))));
        assert!(!awaited_inline(&event(Kind::Response(Response::default()))));
    }
}
