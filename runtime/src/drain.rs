//! Graceful shutdown. On SIGTERM a gateway stops accepting connections,
//! lets open sessions run on for a drain period, then ends those still
//! open (each records its SessionClosed with reason `shutdown`), and only
//! then flushes the bus and exits. Before this, a stopped gateway left
//! every open session without a SessionClosed in the audit log.
//!
//! One [`Drain`] per process: listeners wait on [`Drain::stopping`] next to
//! their accept, each connection holds a [`SessionGuard`], and each session
//! waits on [`Drain::deadline`] next to its own work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Where the process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Accepting nothing; sessions end at the deadline.
    Draining {
        deadline: Instant,
    },
}

/// The process-wide shutdown state: shared by listeners and sessions.
#[derive(Debug)]
pub struct Drain {
    phase: watch::Sender<Phase>,
    open: AtomicUsize,
    all_ended: Notify,
}

/// Counts one open connection until dropped.
#[derive(Debug)]
pub struct SessionGuard(Arc<Drain>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.all_ended.notify_waiters();
        }
    }
}

impl Drain {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: watch::channel(Phase::Running).0,
            open: AtomicUsize::new(0),
            all_ended: Notify::new(),
        })
    }

    /// Starts the shutdown: listeners stop accepting now, and sessions
    /// still open after `drain` are ended. A second call keeps the first
    /// deadline.
    pub fn begin(&self, drain: Duration) {
        self.phase.send_if_modified(|p| match p {
            Phase::Running => {
                *p = Phase::Draining {
                    deadline: Instant::now() + drain,
                };
                true
            }
            Phase::Draining { .. } => false,
        });
    }

    /// Whether the shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.phase.borrow() != Phase::Running
    }

    /// Resolves once the shutdown has begun (a listener stops accepting).
    pub async fn stopping(&self) {
        let mut rx = self.phase.subscribe();
        // The sender lives as long as `self`: this cannot fail while we wait.
        let _ = rx.wait_for(|p| *p != Phase::Running).await;
    }

    /// Resolves at the end of the drain period (a session ends now).
    pub async fn deadline(&self) {
        let mut rx = self.phase.subscribe();
        let deadline = match rx.wait_for(|p| *p != Phase::Running).await {
            Ok(p) => match *p {
                Phase::Draining { deadline } => deadline,
                Phase::Running => return,
            },
            Err(_) => return,
        };
        tokio::time::sleep_until(deadline).await;
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn session(self: &Arc<Self>) -> SessionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    /// Connections open now.
    pub fn open_sessions(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until every connection has ended, or `within` has passed;
    /// returns how many are still open.
    pub async fn wait_for_sessions(&self, within: Duration) -> usize {
        let until = Instant::now() + within;
        loop {
            let ended = self.all_ended.notified();
            tokio::pin!(ended);
            // Registered before the check: a guard dropped in between
            // still wakes us.
            ended.as_mut().enable();
            if self.open_sessions() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(until, ended).await.is_err() {
                return self.open_sessions();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_get_the_drain_period_then_end() {
        let drain = Drain::new();
        let guard = drain.session();
        assert!(!drain.is_stopping());
        let d = drain.clone();
        let session = tokio::spawn(async move {
            d.deadline().await;
            Instant::now()
        });
        let started = Instant::now();
        drain.begin(Duration::from_secs(10));
        drain.stopping().await;
        assert!(drain.is_stopping());
        // A later begin does not move the deadline.
        drain.begin(Duration::from_secs(1));
        let ended_at = session.await.unwrap();
        assert_eq!(ended_at - started, Duration::from_secs(10));
        assert_eq!(drain.open_sessions(), 1);
        drop(guard);
        assert_eq!(drain.wait_for_sessions(Duration::from_secs(1)).await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_sessions_is_bounded() {
        let drain = Drain::new();
        let _stuck = drain.session();
        let other = drain.session();
        let d = drain.clone();
        let waiter = tokio::spawn(async move { d.wait_for_sessions(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(other);
        assert_eq!(waiter.await.unwrap(), 1, "one session never ended");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_returns_when_the_last_session_ends() {
        let drain = Drain::new();
        let guard = drain.session();
        let d = drain.clone();
        let waiter = tokio::spawn(async move {
            let left = d.wait_for_sessions(Duration::from_secs(60)).await;
            (left, Instant::now())
        });
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(guard);
        let (left, at) = waiter.await.unwrap();
        assert_eq!(left, 0);
        assert_eq!(at - start, Duration::from_secs(2));
    }
}
