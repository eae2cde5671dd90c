//! Bounded concurrency for password hashing.
//!
//! Argon2id is slow and large on purpose (about 19 MiB and tens of
//! milliseconds a check with the default parameters). Unbounded, 200
//! concurrent wrong passwords took the gateway from 166 MB to 4 GB on the
//! runtime's blocking pool. The gate lets a few checks run at once, queues
//! a bounded number behind them, and refuses the rest at once ("busy"):
//! memory stays at `running x 19 MiB` whatever the clients do. The hashing
//! memory itself is the gate's ([`Turn::memory`]), reused turn after turn:
//! left to the allocator, each blocking thread's arena kept its own freed
//! 19 MiB, and a flood of logins spread over many threads still grew the
//! process to 600 MB.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The gate's size, from `[logins]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateSettings {
    /// Checks that may run at once.
    pub max_running: usize,
    /// Checks that may wait for a turn; more are refused at once.
    pub max_waiting: usize,
    /// How long a waiting check waits before it gives up.
    pub max_wait: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            max_running: cores.clamp(1, 8),
            max_waiting: 64,
            max_wait: Duration::from_secs(10),
        }
    }
}

/// Too many checks are running and waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many logins are being checked at once; try again shortly")]
pub struct Busy;

#[derive(Debug, Default)]
struct Counts {
    running: usize,
    waiting: usize,
}

#[derive(Debug)]
pub struct HashingGate {
    settings: GateSettings,
    counts: Mutex<Counts>,
    turn: Condvar,
    /// Hashing memory of finished turns, at most `max_running` of them.
    memory: Mutex<Vec<Vec<argon2::Block>>>,
}

impl Default for HashingGate {
    fn default() -> Self {
        Self::new(GateSettings::default())
    }
}

/// A turn to hash; the next waiting check runs when it is dropped.
#[must_use]
pub struct Turn<'a> {
    gate: &'a HashingGate,
    memory: Vec<argon2::Block>,
}

impl Turn<'_> {
    /// Memory for the hash of this turn: `blocks` Argon2 blocks (1 KiB
    /// each), reused from an earlier turn where it can be.
    pub fn memory(&mut self, blocks: usize) -> &mut [argon2::Block] {
        if self.memory.len() < blocks {
            self.memory.resize(blocks, argon2::Block::default());
        }
        &mut self.memory[..blocks]
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut memory = std::mem::take(&mut self.memory);
        if memory.capacity() > 0 {
            // Nothing derived from this turn's password waits in the pool
            // for the next (a few ms against the hash's tens).
            memory.fill(argon2::Block::default());
            let mut pool = self.gate.memory.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < self.gate.settings.max_running {
                pool.push(memory);
            }
        }
        self.gate.lock().running -= 1;
        self.gate.turn.notify_one();
    }
}

impl HashingGate {
    pub fn new(settings: GateSettings) -> Self {
        Self {
            settings: GateSettings {
                max_running: settings.max_running.max(1),
                ..settings
            },
            counts: Mutex::new(Counts::default()),
            turn: Condvar::new(),
            memory: Mutex::new(Vec::new()),
        }
    }

    /// Waits for a turn (blocking), or refuses when the queue is full or the
    /// wait runs out.
    pub fn enter(&self) -> Result<Turn<'_>, Busy> {
        let mut counts = self.lock();
        if counts.running < self.settings.max_running {
            counts.running += 1;
            return Ok(self.turn_now());
        }
        if counts.waiting >= self.settings.max_waiting {
            return Err(Busy);
        }
        counts.waiting += 1;
        let (mut counts, timeout) = self
            .turn
            .wait_timeout_while(counts, self.settings.max_wait, |c| {
                c.running >= self.settings.max_running
            })
            .unwrap_or_else(|p| p.into_inner());
        counts.waiting -= 1;
        if timeout.timed_out() && counts.running >= self.settings.max_running {
            return Err(Busy);
        }
        counts.running += 1;
        drop(counts);
        Ok(self.turn_now())
    }

    fn turn_now(&self) -> Turn<'_> {
        let memory = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        Turn { gate: self, memory }
    }

    /// (running, waiting) now.
    pub fn load(&self) -> (usize, usize) {
        let c = self.lock();
        (c.running, c.waiting)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn at_most_max_running_at_once_and_the_rest_refused() {
        let gate = Arc::new(HashingGate::new(GateSettings {
            max_running: 2,
            max_waiting: 3,
            max_wait: Duration::from_secs(5),
        }));
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let (gate, peak, now, refused) =
                    (gate.clone(), peak.clone(), now.clone(), refused.clone());
                std::thread::spawn(move || match gate.enter() {
                    Ok(_turn) => {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(Busy) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
        // 20 at once: at most 2 running and 3 waiting get a turn.
        assert!(refused.load(Ordering::SeqCst) >= 15 - 5, "{refused:?}");
        assert_eq!(gate.load(), (0, 0));
    }

    #[test]
    fn a_wait_that_runs_out_is_refused() {
        let gate = HashingGate::new(GateSettings {
            max_running: 1,
            max_waiting: 1,
            max_wait: Duration::from_millis(20),
        });
        let held = gate.enter().unwrap();
        assert_eq!(gate.enter().err(), Some(Busy));
        drop(held);
        assert!(gate.enter().is_ok());
    }
}
