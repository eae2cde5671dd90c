//! Work that may hold its thread for long, run so that it holds up no
//! other session.
//!
//! The async workers carry every session of every gateway in the process;
//! with one worker per core less one (the default, `up`), a task that
//! blocks its worker for a millisecond stalls every session queued behind
//! it for that millisecond. What may block: a synced write, a file read,
//! a RocksDB read that misses its caches, parsing or masking a body of
//! megabytes, classifying a statement of megabytes, a password key
//! derivation whose cost the upstream server picks.
//!
//! [`may_block`] runs such work in place (it may borrow from the task,
//! unlike `spawn_blocking`) after telling tokio to hand this worker's
//! queue to another thread for the duration (`block_in_place`). The
//! hand-over costs a few microseconds, so [`may_block_if_large`] keeps
//! small inputs inline.
//!
//! Large inputs also take memory while they are worked on (classifying
//! 256 KiB of SQL may take tens of MB). When that work ran on the async
//! workers, there were never more of them at once than workers; off the
//! workers, an agent with many sessions could start one per session. So
//! [`may_block_if_large`] admits as many at once as the machine has cores
//! and makes the rest wait their turn, off the workers.

use std::sync::{Condvar, Mutex, OnceLock};

use tokio::runtime::{Handle, RuntimeFlavor};

/// Input size from which parsing, masking or classifying it may hold the
/// thread for about a millisecond or more (a masker handles some tens of
/// MB a second).
pub const LARGE_INPUT_BYTES: usize = 64 * 1024;

/// Runs `work`, which may block its thread, without holding up the other
/// tasks of this worker. On a current-thread runtime (tests) or outside
/// any runtime there is no other worker to hand over to: it runs inline.
pub fn may_block<R>(work: impl FnOnce() -> R) -> R {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// [`may_block`] for work over an input of `bytes` bytes: inline below
/// [`LARGE_INPUT_BYTES`], where the hand-over would cost more than the
/// work; above it, at most one such piece of work a core at once.
pub fn may_block_if_large<R>(bytes: usize, work: impl FnOnce() -> R) -> R {
    if bytes < LARGE_INPUT_BYTES {
        return work();
    }
    may_block(|| {
        let _turn = large_work().take();
        work()
    })
}

/// Work a task does inline between awaits that really wait. Small pieces
/// (rows, statements, stream events under [`LARGE_INPUT_BYTES`]) stay
/// inline, but an agent or a server can send thousands of them in one
/// read: after each [`LARGE_INPUT_BYTES`] of them the task yields, so the
/// other sessions on its worker get their turn.
#[derive(Debug, Default)]
pub struct InlineBudget {
    spent: usize,
}

impl InlineBudget {
    /// Counts `bytes` of input handled inline; yields once they add up.
    pub async fn spend(&mut self, bytes: usize) {
        self.spent += bytes;
        if self.spent >= LARGE_INPUT_BYTES {
            self.spent = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// The turns for large inputs: one for each core the async workers leave
/// free (`up` runs one worker fewer than cores), at least one.
fn large_work() -> &'static Turns {
    static TURNS: OnceLock<Turns> = OnceLock::new();
    TURNS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Turns::new(cores.saturating_sub(1))
    })
}

/// A first-come-first-served counting semaphore for threads that may
/// block (the waiters are never async workers: they wait inside
/// `may_block`). First come, first served, so that one agent's flood of
/// large statements cannot starve another session's one: each waiter
/// holds a ticket and runs once every earlier ticket has run or is
/// running and a turn is free.
struct Turns {
    count: u64,
    state: Mutex<Tickets>,
    freed: Condvar,
}

#[derive(Default)]
struct Tickets {
    /// Tickets handed out.
    issued: u64,
    /// Turns given back.
    returned: u64,
}

struct Turn<'a>(&'a Turns);

impl Turns {
    fn new(count: usize) -> Self {
        Self {
            count: count.max(1) as u64,
            state: Mutex::new(Tickets::default()),
            freed: Condvar::new(),
        }
    }

    fn take(&self) -> Turn<'_> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = state.issued;
        state.issued += 1;
        // Ticket t may run once t - returned turns are running ahead of
        // it, fewer than `count`.
        while ticket >= state.returned + self.count {
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .returned += 1;
        self.0.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// With one worker, a task blocked in `may_block` leaves the worker's
    /// other tasks running: a timer task completes while it blocks.
    #[test]
    fn one_worker_keeps_serving_while_a_task_blocks() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let other_ran = Arc::new(AtomicBool::new(false));
        rt.block_on(async {
            let flag = other_ran.clone();
            let other = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                flag.store(true, Ordering::SeqCst);
            });
            let blocker = tokio::spawn({
                let flag = other_ran.clone();
                async move {
                    // Blocks its thread until the other task has run, or
                    // gives up after 5 s: without the hand-over that task
                    // could never run while this one blocks.
                    may_block(|| {
                        let deadline = std::time::Instant::now() + Duration::from_secs(5);
                        while !flag.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        flag.load(Ordering::SeqCst)
                    })
                }
            });
            assert!(blocker.await.unwrap(), "the other task was held up");
            other.await.unwrap();
        });
    }

    /// Four threads asking for turns from two: never more than two hold
    /// one at once, and every thread gets its turn.
    #[test]
    fn turns_admit_no_more_than_their_count() {
        use std::sync::atomic::AtomicUsize;
        let turns = Turns::new(2);
        let (now, most, done) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        let _turn = turns.take();
                        let holding = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(holding, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        now.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 80);
        assert!(most.load(Ordering::SeqCst) <= 2, "more than two at once");
    }

    #[tokio::test]
    async fn a_current_thread_runtime_runs_the_work_inline() {
        let local = String::from("borrowed");
        assert_eq!(may_block(|| local.len()), 8);
        assert_eq!(may_block_if_large(LARGE_INPUT_BYTES, || local.len()), 8);
    }
}
