//! CancelRequest forwarding.
//!
//! Clients only ever see the proxy's own BackendKeyData (the upstream's key
//! would let them cancel queries behind the gateway's back, and names a
//! backend on a server they should not address). A CancelRequest arrives on a
//! fresh connection with that key; the registry maps it to the session's
//! upstream key, and the proxy sends the real CancelRequest to the upstream.
//! A key that matches nothing is dropped silently, as PostgreSQL does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use vigil_runtime::recorder::SessionRecorder;

/// The upstream key behind one proxy key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamKey {
    pub process_id: i32,
    pub secret_key: i32,
}

struct Entry {
    secret: i32,
    upstream: UpstreamKey,
    /// The recorder of the session the key belongs to: a cancel is
    /// recorded in that session's stream, through its hand-over, so it
    /// never overtakes what the session handed over before it.
    recorder: Option<Arc<SessionRecorder>>,
    /// Woken by a cancel: a statement the session holds for review is
    /// withdrawn.
    hold_cancel: Arc<Notify>,
}

/// What a client's cancel key reaches.
pub struct Found {
    pub upstream: UpstreamKey,
    pub recorder: Option<Arc<SessionRecorder>>,
    pub hold_cancel: Arc<Notify>,
}

#[derive(Default)]
struct Entries {
    by_pid: HashMap<i32, Entry>,
}

/// Live sessions' keys, shared by a proxy's connections.
#[derive(Clone, Default)]
pub struct CancelRegistry {
    inner: Arc<Mutex<Entries>>,
}

/// Keeps a session's key registered; dropping it (session end) unregisters.
pub struct Registration {
    registry: CancelRegistry,
    process_id: i32,
}

impl Registration {
    /// The proxy key to hand to the client.
    pub fn client_key(&self) -> (i32, i32) {
        let entries = self.registry.lock();
        (self.process_id, entries.by_pid[&self.process_id].secret)
    }

    /// The upstream key behind it (for the proxy's own cancels, e.g. when a
    /// result is stopped at its row limit).
    pub fn upstream_key(&self) -> UpstreamKey {
        self.registry.lock().by_pid[&self.process_id].upstream
    }

    /// What a cancel with this key wakes while a statement is held.
    pub fn hold_cancel(&self) -> Arc<Notify> {
        self.registry.lock().by_pid[&self.process_id]
            .hold_cancel
            .clone()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().by_pid.remove(&self.process_id);
    }
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session's upstream key under a fresh random proxy key.
    pub fn register(
        &self,
        upstream: UpstreamKey,
        recorder: Option<Arc<SessionRecorder>>,
    ) -> Registration {
        let mut entries = self.lock();
        let process_id = loop {
            // Positive, like real backend pids; unique among live sessions.
            let pid = (rand::random::<u32>() >> 1) as i32;
            if pid != 0 && !entries.by_pid.contains_key(&pid) {
                break pid;
            }
        };
        entries.by_pid.insert(
            process_id,
            Entry {
                secret: rand::random::<i32>(),
                upstream,
                recorder,
                hold_cancel: Arc::new(Notify::new()),
            },
        );
        Registration {
            registry: self.clone(),
            process_id,
        }
    }

    /// The upstream key for a client's CancelRequest, if its key is live and
    /// its secret matches.
    pub fn lookup(&self, process_id: i32, secret_key: i32) -> Option<Found> {
        let entries = self.lock();
        let entry = entries.by_pid.get(&process_id)?;
        // Both are fixed-size integers: the comparison's time does not depend
        // on how many bits match.
        (entry.secret ^ secret_key == 0).then(|| Found {
            upstream: entry.upstream,
            recorder: entry.recorder.clone(),
            hold_cancel: entry.hold_cancel.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_upstream_only_with_the_right_secret_and_only_while_live() {
        let registry = CancelRegistry::default();
        let up = UpstreamKey {
            process_id: 4242,
            secret_key: -7,
        };
        let reg = registry.register(up, None);
        let (pid, secret) = reg.client_key();
        assert!(pid > 0);
        assert_ne!((pid, secret), (up.process_id, up.secret_key));
        assert_eq!(registry.lookup(pid, secret).map(|f| f.upstream), Some(up));
        assert!(registry.lookup(pid, secret.wrapping_add(1)).is_none());
        assert!(registry.lookup(pid.wrapping_add(1), secret).is_none());
        drop(reg);
        assert!(registry.lookup(pid, secret).is_none(), "session ended");
    }

    #[test]
    fn concurrent_sessions_get_distinct_keys() {
        let registry = CancelRegistry::default();
        let regs: Vec<_> = (0..1000)
            .map(|i| {
                registry.register(
                    UpstreamKey {
                        process_id: i,
                        secret_key: i,
                    },
                    None,
                )
            })
            .collect();
        let pids: std::collections::HashSet<_> = regs.iter().map(|r| r.client_key().0).collect();
        assert_eq!(pids.len(), 1000);
        for (i, r) in regs.iter().enumerate() {
            let (pid, secret) = r.client_key();
            assert_eq!(
                registry.lookup(pid, secret).unwrap().upstream.process_id,
                i as i32
            );
        }
    }
}
