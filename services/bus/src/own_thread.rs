//! Runs a writer loop on a thread of its own.
//!
//! The ledger's appender and the outbox's writer each wait for a synced
//! write once per batch. Run as tasks of the shared runtime, they would hand
//! every batch to a blocking thread and wait for it back: two more wake-ups
//! on the path of every statement's record. On a thread of their own they
//! block on the write itself, and the path is the publisher's hand-over to
//! this thread and the callback from it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A loop running on its own thread. As a future it resolves when the loop
/// has finished; dropped, it stops the loop at its next await (so a
/// subscriber it owns is dropped, and can say goodbye), unless detached.
pub struct Running {
    finished: oneshot::Receiver<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl Running {
    /// Lets the loop run until it ends by itself, whatever becomes of this
    /// handle.
    pub fn detach(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Future for Running {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.finished).poll(cx).map(|_| ())
    }
}

/// Starts `make()`'s future on a new thread named `name`, with a
/// single-threaded runtime of its own (timers only: a future that waits on
/// a socket cannot run here). An error if the thread or its runtime cannot
/// start.
pub fn spawn<F>(name: &str, make: impl FnOnce() -> F + Send + 'static) -> std::io::Result<Running>
where
    F: Future<Output = ()> + 'static,
{
    let (finished, on_finish) = oneshot::channel::<()>();
    let (stop, on_stop) = oneshot::channel::<()>();
    let (started, on_start) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                // Timers only, no I/O driver: nothing on these threads
                // waits on a socket, and without one the runtime parks on
                // a futex, so a publisher's hand-over wakes it with a
                // futex wake instead of an eventfd write and an epoll
                // return.
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let _ = started.send(Ok(()));
            runtime.block_on(async move {
                let run = make();
                tokio::pin!(run);
                tokio::select! {
                    () = &mut run => {}
                    signal = on_stop => {
                        // Detached: run to the loop's own end. Otherwise the
                        // handle was dropped: stop here.
                        if signal.is_ok() {
                            run.await;
                        }
                    }
                }
            });
            let _ = finished.send(());
        })?;
    STARTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(thread);
    on_start.recv().map_err(|_| {
        std::io::Error::other(format!(
            "the thread {name} ended before its runtime started"
        ))
    })??;
    Ok(Running {
        finished: on_finish,
        stop: Some(stop),
    })
}

/// Every thread [`spawn`] started, until [`wait_for_all`] sees it end.
static STARTED: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Waits up to `limit` for every thread [`spawn`] started to end, and
/// returns how many still run. For a process about to exit: these threads
/// hold RocksDB stores (the ledger's, the outbox's), and one that is still
/// closing its store while the process exits runs into RocksDB's mutexes
/// already torn down (an abort: "pthread lock: Invalid argument"). Call it
/// after the runtime that held their handles and publishers is gone, so
/// that their loops have been told to end.
pub fn wait_for_all(limit: Duration) -> usize {
    let until = Instant::now() + limit;
    loop {
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        let (ended, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *started)
            .into_iter()
            .partition(|t| t.is_finished());
        *started = running;
        let left = started.len();
        drop(started);
        for thread in ended {
            // A panic there was already reported by the thread itself.
            let _ = thread.join();
        }
        if left == 0 || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_future_runs_on_its_own_thread_and_its_end_is_seen() {
        let (tx, rx) = std::sync::mpsc::channel();
        let finished = super::spawn("vigil-test-writer", move || async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let _ = tx.send(std::thread::current().name().map(str::to_string));
        })
        .unwrap();
        finished.await;
        assert_eq!(rx.recv().unwrap().as_deref(), Some("vigil-test-writer"));
    }

    /// A thread still running is counted; once its loop has ended, waiting
    /// for it returns (what `vigil up` does before it exits).
    #[tokio::test]
    async fn the_process_can_wait_for_its_threads_to_end() {
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let running = super::spawn("vigil-test-wait", move || async move {
            let _ = gate.await;
        })
        .unwrap();
        running.detach();
        let zero = std::time::Duration::ZERO;
        assert!(
            super::wait_for_all(zero) >= 1,
            "a running thread not counted"
        );
        go.send(()).unwrap();
        let waited = std::time::Duration::from_secs(10);
        assert_eq!(super::wait_for_all(waited), 0);
    }

    /// Dropping the handle stops the loop (and drops what it owns);
    /// detaching it does not.
    #[tokio::test]
    async fn a_dropped_handle_stops_the_loop_and_a_detached_one_does_not() {
        struct Flag(std::sync::mpsc::Sender<&'static str>);
        impl Drop for Flag {
            fn drop(&mut self) {
                let _ = self.0.send("dropped");
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = Flag(tx.clone());
        let running = super::spawn("vigil-test-stop", move || async move {
            let _owned = owned;
            std::future::pending::<()>().await;
        })
        .unwrap();
        drop(running);
        let waited = std::time::Duration::from_secs(5);
        assert_eq!(rx.recv_timeout(waited), Ok("dropped"));

        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let running = super::spawn("vigil-test-detach", move || async move {
            let _ = gate.await;
            let _ = tx.send("ran to its end");
        })
        .unwrap();
        running.detach();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(rx.try_recv().is_err(), "still running");
        go.send(()).unwrap();
        assert_eq!(rx.recv_timeout(waited), Ok("ran to its end"));
    }
}
