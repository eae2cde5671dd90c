//! A bounded queue from publishers to a writer's thread whose reader is not
//! woken by records nobody waits for.
//!
//! Behind the embedded bus and the outbox's writer. A statement at one
//! client makes two records: its Request, which the session waits for, and
//! its Response, which it does not. With a plain channel each woke the
//! writer: the Response to wait for company ([`crate::group_commit`]), the
//! next Request to end that wait. Here, for [`LAZY_WAIT`] after it last took
//! a batch, the reader is woken only by an awaited record (or by the time
//! running out), so the Response is taken along with the Request that
//! follows it, for one wake-up a statement instead of two.
//!
//! The queue also says whether an awaited record is waiting
//! ([`QuietReceiver::awaited_waiting`]): a writer hands its sync to a
//! second thread only then. A Response that arrived while the writer was
//! writing will wait for company anyway, so it is no reason for a hand-over.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::group_commit::LAZY_WAIT;

pub use tokio::sync::mpsc::error::{SendError, TrySendError};

/// The publishing side. Cheap to clone.
#[derive(Debug)]
pub struct QuietSender<T> {
    tx: mpsc::Sender<(T, bool)>,
    awaited: Arc<Awaited>,
}

/// What the awaited records signal: the wake-up of a quietly waiting
/// reader, and how many of them are queued (or on their way in).
#[derive(Debug, Default)]
struct Awaited {
    wake: Notify,
    /// Counted before a record enters the channel and uncounted after the
    /// reader took it, so it is never below what the channel holds.
    queued: AtomicUsize,
}

impl Awaited {
    fn enter(&self, awaited: bool) {
        if awaited {
            self.queued.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A record counted by [`Awaited::enter`] did not get in (or was taken).
    fn leave(&self, awaited: bool) {
        if awaited {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl<T> Clone for QuietSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            awaited: self.awaited.clone(),
        }
    }
}

/// The reading side, owned by the writer.
#[derive(Debug)]
pub struct QuietReceiver<T> {
    rx: mpsc::Receiver<(T, bool)>,
    awaited: Arc<Awaited>,
}

/// A queue of at most `capacity` records.
pub fn quiet<T>(capacity: usize) -> (QuietSender<T>, QuietReceiver<T>) {
    let (tx, rx) = mpsc::channel(capacity);
    let awaited = Arc::new(Awaited::default());
    (
        QuietSender {
            tx,
            awaited: awaited.clone(),
        },
        QuietReceiver { rx, awaited },
    )
}

impl<T> QuietSender<T> {
    /// Enqueues now if there is room. Only an `awaited` record (its
    /// publisher waits for it) wakes a reader that is waiting quietly.
    pub fn try_send(&self, item: T, awaited: bool) -> Result<(), TrySendError<T>> {
        let counted = Counted::enter(&self.awaited, awaited);
        if let Err(e) = self.tx.try_send((item, awaited)) {
            return Err(match e {
                TrySendError::Full((item, _)) => TrySendError::Full(item),
                TrySendError::Closed((item, _)) => TrySendError::Closed(item),
            });
        }
        counted.got_in();
        if awaited {
            self.awaited.wake.notify_one();
        }
        Ok(())
    }

    /// Enqueues once there is room.
    pub fn send(&self, item: T, awaited: bool) -> impl Future<Output = Result<(), SendError<T>>> {
        let (tx, signal) = (self.tx.clone(), self.awaited.clone());
        async move {
            // Counted while it waits for room too (the reader has a full
            // queue to take meanwhile), and uncounted if this future is
            // dropped before the record got in.
            let counted = Counted::enter(&signal, awaited);
            if let Err(mpsc::error::SendError((item, _))) = tx.send((item, awaited)).await {
                return Err(SendError(item));
            }
            counted.got_in();
            if awaited {
                signal.wake.notify_one();
            }
            Ok(())
        }
    }
}

/// An awaited record counted on its way into the queue: uncounted again
/// when dropped before [`Counted::got_in`] (refused, or abandoned while it
/// waited for room).
struct Counted<'a> {
    awaited: &'a Awaited,
    counted: bool,
}

impl<'a> Counted<'a> {
    fn enter(awaited: &'a Awaited, is_awaited: bool) -> Self {
        awaited.enter(is_awaited);
        Self {
            awaited,
            counted: is_awaited,
        }
    }

    /// In the queue: the reader uncounts it when it takes it.
    fn got_in(mut self) {
        self.counted = false;
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.awaited.leave(self.counted);
    }
}

impl<T> QuietReceiver<T> {
    /// Waits for at least one record, then takes up to `max` that are
    /// ready, awaited or not. `None` once every sender is gone and nothing
    /// is left.
    pub async fn recv_many(&mut self, max: usize) -> Option<Vec<T>> {
        let mut batch = Vec::with_capacity(max.min(1024));
        self.recv_into(&mut batch, max).await.then_some(batch)
    }

    /// Whether an awaited record waits to be taken now (or is on its way
    /// into a full queue). Records nobody waits for do not count.
    pub fn awaited_waiting(&self) -> bool {
        self.awaited.queued.load(Ordering::SeqCst) > 0
    }

    /// The next batch to commit, up to `max` records: at once when one of
    /// them is awaited; otherwise what arrived by [`LAZY_WAIT`] from now
    /// (or, when nothing at all was waiting, from the first arrival).
    /// `None` once every sender is gone and nothing is left.
    pub async fn next_batch(&mut self, max: usize) -> Option<Vec<T>> {
        let mut batch = Vec::new();
        let mut has_awaited = false;
        // Until then only an awaited record wakes this reader.
        let mut quiet_until = Instant::now() + LAZY_WAIT;
        loop {
            let open = self.take_ready(&mut batch, max, &mut has_awaited);
            if batch.len() >= max || has_awaited {
                return Some(batch);
            }
            if !open {
                return (!batch.is_empty()).then_some(batch);
            }
            if Instant::now() < quiet_until {
                // A permit left by an awaited record that arrived since the
                // last wait ends this at once; a stale one only loops.
                let _ = tokio::time::timeout_at(quiet_until, self.awaited.wake.notified()).await;
                continue;
            }
            if !batch.is_empty() {
                // Records nobody waits for, held long enough.
                return Some(batch);
            }
            // Idle: any record wakes the reader, and what it brings waits
            // quietly for company from now (unless it is awaited: the
            // loop's first check returns it).
            let (item, awaited) = self.rx.recv().await?;
            self.take(item, awaited, &mut batch, &mut has_awaited);
            quiet_until = Instant::now() + LAZY_WAIT;
        }
    }

    /// Waits for at least one record, then moves what is queued into
    /// `batch`, up to `max`; `false` once every sender is gone and the
    /// queue is empty.
    async fn recv_into(&mut self, batch: &mut Vec<T>, max: usize) -> bool {
        let Some((item, awaited)) = self.rx.recv().await else {
            return false;
        };
        let mut has_awaited = false;
        self.take(item, awaited, batch, &mut has_awaited);
        self.take_ready(batch, max, &mut has_awaited);
        true
    }

    /// Moves what is queued into `batch`, up to `max`, noting in
    /// `has_awaited` whether an awaited record was among them; `false` once
    /// every sender is gone and the queue is empty.
    fn take_ready(&mut self, batch: &mut Vec<T>, max: usize, has_awaited: &mut bool) -> bool {
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok((item, awaited)) => self.take(item, awaited, batch, has_awaited),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    fn take(&self, item: T, awaited: bool, batch: &mut Vec<T>, has_awaited: &mut bool) {
        self.awaited.leave(awaited);
        *has_awaited |= awaited;
        batch.push(item);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn an_awaited_record_is_taken_at_once_with_what_waited_before_it() {
        let (tx, mut rx) = quiet::<u32>(16);
        tx.try_send(1, false).unwrap();
        tx.try_send(3, false).unwrap();
        tx.try_send(4, true).unwrap();
        assert_eq!(rx.next_batch(16).await, Some(vec![1, 3, 4]));
    }

    /// On a paused clock: on the real one a loaded machine (CI runs tests
    /// side by side on two cores) once slept the publisher past the whole
    /// wait, and the reader rightly took the Response alone.
    #[tokio::test(start_paused = true)]
    async fn a_record_nobody_waits_for_waits_for_the_next_awaited_one() {
        let (tx, mut rx) = quiet::<u32>(16);
        let publisher = tokio::spawn(async move {
            tx.try_send(1, false).unwrap();
            tokio::time::sleep(LAZY_WAIT / 4).await;
            tx.try_send(2, true).unwrap();
            tx
        });
        assert_eq!(rx.next_batch(16).await, Some(vec![1, 2]));
        drop(publisher.await.unwrap());
        assert_eq!(rx.next_batch(16).await, None);
    }

    // The paused-clock tests sleep a quarter of the wait, which the timer
    // wheel rounds up to its next 1 ms tick: still short of a 2 ms wait.
    const _: () = assert!(LAZY_WAIT.as_millis() >= 2);

    /// On a paused clock (time moves only when every task waits): the
    /// awaited record's wake-up ends the quiet wait when it arrives, early
    /// in the wait, not when the wait runs out.
    #[tokio::test(start_paused = true)]
    async fn an_awaited_record_wakes_a_quietly_waiting_reader_at_once() {
        let (tx, mut rx) = quiet::<u32>(16);
        tx.try_send(1, false).unwrap();
        let publisher = tokio::spawn(async move {
            tokio::time::sleep(LAZY_WAIT / 4).await;
            tx.try_send(2, true).unwrap();
            tx
        });
        let started = Instant::now();
        assert_eq!(rx.next_batch(16).await, Some(vec![1, 2]));
        // The timer wheel rounds the publisher's sleep up to its next
        // millisecond tick, still short of the wait's end.
        assert!(started.elapsed() < LAZY_WAIT, "{:?}", started.elapsed());
        drop(publisher.await.unwrap());
    }

    /// On a paused clock: a record nobody waits for does not end the quiet
    /// wait; it is taken with what waited when the wait runs out.
    #[tokio::test(start_paused = true)]
    async fn a_record_nobody_waits_for_does_not_wake_a_quietly_waiting_reader() {
        let (tx, mut rx) = quiet::<u32>(16);
        tx.try_send(1, false).unwrap();
        // It left no wake-up behind either.
        let woken = tokio::time::timeout(Duration::ZERO, rx.awaited.wake.notified()).await;
        assert!(woken.is_err(), "a background record signalled the reader");
        let publisher = tokio::spawn(async move {
            tokio::time::sleep(LAZY_WAIT / 4).await;
            tx.try_send(3, false).unwrap();
            tx
        });
        let started = Instant::now();
        assert_eq!(rx.next_batch(16).await, Some(vec![1, 3]));
        assert!(started.elapsed() >= LAZY_WAIT, "{:?}", started.elapsed());
        drop(publisher.await.unwrap());
    }

    #[tokio::test]
    async fn records_nobody_waits_for_are_taken_after_the_wait_without_company() {
        let (tx, mut rx) = quiet::<u32>(16);
        tx.try_send(1, false).unwrap();
        let started = Instant::now();
        assert_eq!(rx.next_batch(16).await, Some(vec![1]));
        // Held back (a lower bound only: never taken early).
        assert!(started.elapsed() >= LAZY_WAIT);
        // Idle, then a lazy record: it waits from its arrival, and is not lost.
        let later = tokio::spawn(async move {
            tokio::time::sleep(LAZY_WAIT * 2).await;
            tx.try_send(3, false).unwrap();
            tx
        });
        assert_eq!(rx.next_batch(16).await, Some(vec![3]));
        drop(later.await.unwrap());
        assert_eq!(rx.next_batch(16).await, None);
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_maximum_and_the_rest_follows_in_order() {
        let (tx, mut rx) = quiet::<u32>(16);
        for n in [1, 3, 5, 7, 9] {
            tx.try_send(n, false).unwrap();
        }
        assert_eq!(rx.next_batch(3).await, Some(vec![1, 3, 5]));
        drop(tx);
        assert_eq!(rx.next_batch(3).await, Some(vec![7, 9]));
        assert_eq!(rx.next_batch(3).await, None);
    }

    /// What a writer asks before handing a sync to another thread: only an
    /// awaited record waiting counts, from before it is in the queue until
    /// the reader took it.
    #[tokio::test]
    async fn only_an_awaited_record_counts_as_waiting() {
        let (tx, mut rx) = quiet::<u32>(2);
        tx.try_send(1, false).unwrap();
        assert!(!rx.awaited_waiting(), "a background record counted");
        tx.try_send(2, true).unwrap();
        assert!(rx.awaited_waiting());
        // A record refused by a full queue is not counted.
        assert!(matches!(tx.try_send(4, true), Err(TrySendError::Full(4))));
        // Nor one abandoned while it waited for room.
        let abandoned = tx.send(4, true);
        assert!(tokio::time::timeout(Duration::from_millis(5), abandoned)
            .await
            .is_err());
        assert_eq!(rx.awaited.queued.load(Ordering::SeqCst), 1);
        assert_eq!(rx.next_batch(8).await, Some(vec![1, 2]));
        assert!(!rx.awaited_waiting(), "a taken record still counted");
        // One waiting for room counts: the writer has a full queue to take.
        tx.try_send(3, false).unwrap();
        tx.try_send(5, false).unwrap();
        let waiting = tokio::spawn(tx.send(6, true));
        for _ in 0..1000 {
            if rx.awaited_waiting() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(rx.awaited_waiting(), "a send waiting for room not counted");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.extend(rx.recv_many(8).await.unwrap());
        }
        assert_eq!(seen, vec![3, 5, 6]);
        waiting.await.unwrap().unwrap();
        assert!(!rx.awaited_waiting());
    }

    #[tokio::test]
    async fn a_full_queue_takes_a_record_once_there_is_room() {
        let (tx, mut rx) = quiet::<u32>(1);
        tx.try_send(1, false).unwrap();
        assert!(matches!(tx.try_send(2, true), Err(TrySendError::Full(2))));
        let waiting = tokio::spawn(tx.send(2, true));
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.extend(rx.next_batch(8).await.unwrap());
        }
        assert_eq!(seen, vec![1, 2]);
        waiting.await.unwrap().unwrap();
    }
}
