//! How many sessions a listener holds at once, in all and per identity.
//!
//! Every session holds a connection to the database. Without a cap, one
//! identity could open sessions until the server's `max_connections` is
//! used up (99 dev sessions did), starving every other client, and, while
//! the gateway logs in as a superuser, the slots reserved for
//! administrators too. A slot is taken once the caller is authenticated
//! (so the count is per proven identity) and before the upstream login,
//! and is given back when the session ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The caps of one listener, from `[logins]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions of the listener at once (0: no cap).
    pub max_sessions: usize,
    /// Sessions of one identity (issuer and subject) at once (0: no cap).
    pub max_sessions_per_identity: usize,
}

impl Default for SessionLimits {
    /// Below PostgreSQL's default `max_connections` of 100, less its
    /// reserved slots and the gateway's own catalog connection.
    fn default() -> Self {
        Self {
            max_sessions: 80,
            max_sessions_per_identity: 20,
        }
    }
}

/// Why a session was not admitted. The text goes to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this gateway listener already holds its maximum of {0} sessions (logins.max_sessions)"
    )]
    Listener(usize),
    #[error("{subject} already holds its maximum of {max} sessions on this listener (logins.max_sessions_per_identity)")]
    Identity { subject: String, max: usize },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_identity: HashMap<(String, String), usize>,
}

/// The session count of one listener.
#[derive(Debug, Default)]
pub struct Admission {
    limits: SessionLimits,
    counts: Arc<Mutex<Counts>>,
}

/// A session's place; dropping it gives the place back.
#[derive(Debug)]
pub struct Slot {
    identity: (String, String),
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total -= 1;
        if let Some(n) = counts.per_identity.get_mut(&self.identity) {
            *n -= 1;
            if *n == 0 {
                counts.per_identity.remove(&self.identity);
            }
        }
    }
}

impl Admission {
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for a session of `subject` from `issuer`, or says which
    /// cap is full.
    pub fn admit(&self, issuer: &str, subject: &str) -> Result<Slot, Refusal> {
        let mut counts = lock(&self.counts);
        let max = self.limits.max_sessions;
        if max > 0 && counts.total >= max {
            return Err(Refusal::Listener(max));
        }
        let identity = (issuer.to_string(), subject.to_string());
        let per = self.limits.max_sessions_per_identity;
        let held = counts.per_identity.get(&identity).copied().unwrap_or(0);
        if per > 0 && held >= per {
            return Err(Refusal::Identity {
                subject: subject.to_string(),
                max: per,
            });
        }
        counts.total += 1;
        *counts.per_identity.entry(identity.clone()).or_insert(0) += 1;
        Ok(Slot {
            identity,
            counts: self.counts.clone(),
        })
    }

    /// Sessions held now.
    pub fn held(&self) -> usize {
        lock(&self.counts).total
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_identity_and_per_listener_and_places_come_back() {
        let a = Admission::new(SessionLimits {
            max_sessions: 3,
            max_sessions_per_identity: 2,
        });
        let s1 = a.admit("iss", "alice").unwrap();
        let _s2 = a.admit("iss", "alice").unwrap();
        assert_eq!(
            a.admit("iss", "alice").unwrap_err(),
            Refusal::Identity {
                subject: "alice".into(),
                max: 2
            }
        );
        // The same subject from another issuer is another identity.
        let _s3 = a.admit("other", "alice").unwrap();
        assert_eq!(a.admit("iss", "bob").unwrap_err(), Refusal::Listener(3));
        drop(s1);
        assert_eq!(a.held(), 2);
        assert!(a.admit("iss", "alice").is_ok());
    }

    #[test]
    fn zero_means_no_cap() {
        let a = Admission::new(SessionLimits {
            max_sessions: 0,
            max_sessions_per_identity: 0,
        });
        let slots: Vec<_> = (0..500).map(|_| a.admit("i", "s").unwrap()).collect();
        assert_eq!(a.held(), 500);
        drop(slots);
        assert_eq!(a.held(), 0);
    }
}
