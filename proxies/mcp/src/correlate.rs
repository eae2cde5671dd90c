//! Which answer belongs to which request, decided by the gateway alone.
//!
//! An agent's request ids are its own; upstream, the gateway sends each
//! request under an id it assigns (a number, counted up), and maps the
//! answer back. So the server never sees two requests of different agents,
//! or of one agent, under ids it would confuse (the TypeScript SDK matches
//! answers by `Number(id)`: `"7"` and `7` are one id to it), and an answer
//! is delivered only if its id is exactly one the gateway sent and has not
//! been answered yet; each carries what the gateway decided about its
//! request (the verdict that masks its result).
//!
//! The other direction, for the revisions where a server may ask the
//! client (sampling, elicitation, roots): a client's answer is forwarded
//! only if it answers a server request the gateway forwarded, and goes
//! upstream under the server's id exactly as the server wrote it.

use std::collections::{HashMap, HashSet};

use crate::jsonrpc::{Id, MAX_SAFE_ID};

/// Requests in flight per session, at most: past it a request is refused
/// (a client that never reads answers cannot grow the map).
pub const MAX_IN_FLIGHT: usize = 1024;

/// Why a request cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorrelateError {
    #[error("more than {MAX_IN_FLIGHT} requests are waiting for an answer")]
    TooManyInFlight,
    #[error("the client already has a request with this id waiting")]
    DuplicateId,
}

/// One session's correlation; `T` is what the gateway keeps per request.
#[derive(Debug)]
pub struct Correlator<T> {
    next: u64,
    /// Upstream id -> the client's id and the request's state.
    waiting: HashMap<u64, (Id, T)>,
    /// Server requests forwarded to the client, by the id as the server
    /// wrote it.
    asked: HashSet<Id>,
}

impl<T> Default for Correlator<T> {
    fn default() -> Self {
        Correlator {
            next: 1,
            waiting: HashMap::new(),
            asked: HashSet::new(),
        }
    }
}

impl<T> Correlator<T> {
    /// A client request is about to go upstream: the id to send it under.
    pub fn send(&mut self, client_id: Id, state: T) -> Result<Id, CorrelateError> {
        if self.waiting.len() >= MAX_IN_FLIGHT {
            return Err(CorrelateError::TooManyInFlight);
        }
        // JSON-RPC lets a client reuse an id only once its answer came; two
        // waiting under one id could not be told apart by the client.
        if self.waiting.values().any(|(id, _)| *id == client_id) {
            return Err(CorrelateError::DuplicateId);
        }
        let upstream = self.next;
        // Wraps within what JavaScript holds exactly (never reached in
        // practice: 2^53 requests).
        self.next = if self.next >= MAX_SAFE_ID {
            1
        } else {
            self.next + 1
        };
        self.waiting.insert(upstream, (client_id, state));
        Ok(Id::Number(upstream as i64))
    }

    /// The server answered `id` (a final answer: result or error): the
    /// client's id and the request's state, or `None` if the gateway sent
    /// no such request or it was answered already (the answer is dropped).
    pub fn answered(&mut self, id: &Id) -> Option<(Id, T)> {
        match id {
            Id::Number(n) => u64::try_from(*n).ok().and_then(|n| self.waiting.remove(&n)),
            Id::String(_) => None,
        }
    }

    /// The request's state while it waits (a progress notification names
    /// its request by a token, which the caller maps to the upstream id).
    pub fn waiting(&self, id: &Id) -> Option<&(Id, T)> {
        match id {
            Id::Number(n) => u64::try_from(*n).ok().and_then(|n| self.waiting.get(&n)),
            Id::String(_) => None,
        }
    }

    /// The upstream id of the client's request `client_id` while it
    /// waits: a client's `notifications/cancelled` names its own id, and
    /// the server knows the request by the gateway's.
    pub fn upstream_of(&self, client_id: &Id) -> Option<Id> {
        self.waiting
            .iter()
            .find(|(_, (id, _))| id == client_id)
            .map(|(n, _)| Id::Number(*n as i64))
    }

    /// The request was abandoned (the client went away, the gateway
    /// refused it after all): a late answer is dropped.
    pub fn forget(&mut self, upstream: &Id) {
        let _ = self.answered(upstream);
    }

    /// The states of the requests waiting now.
    pub fn waiting_states(&self) -> impl Iterator<Item = &T> {
        self.waiting.values().map(|(_, state)| state)
    }

    /// Requests waiting now.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// The server asks the client something; the gateway forwards it.
    pub fn server_asked(&mut self, id: Id) -> Result<(), CorrelateError> {
        if self.asked.len() >= MAX_IN_FLIGHT {
            return Err(CorrelateError::TooManyInFlight);
        }
        self.asked.insert(id);
        Ok(())
    }

    /// The client answers a server request: forwarded (under this exact
    /// id) only if the server asked it and it is not answered yet.
    pub fn client_answered(&mut self, id: &Id) -> bool {
        self.asked.remove(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_reach_the_request_they_answer_once_and_only_by_the_gateways_id() {
        let mut c: Correlator<&str> = Correlator::default();
        let a = c.send(Id::String("a".into()), "masked").unwrap();
        let b = c.send(Id::Number(7), "clear").unwrap();
        assert_ne!(a, b);
        assert_eq!(c.in_flight(), 2);
        // The client's id is not the upstream id: a server echoing "7"
        // (or 7 when the gateway sent 2) answers nothing.
        assert_eq!(c.answered(&Id::String("2".into())), None);
        assert_eq!(c.answered(&b), Some((Id::Number(7), "clear")));
        assert_eq!(c.answered(&b), None, "answered once");
        assert_eq!(c.answered(&Id::Number(999)), None);
        assert_eq!(c.answered(&Id::Number(-1)), None);
        c.forget(&a);
        assert_eq!(c.answered(&a), None, "a late answer to a forgotten request");
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn a_client_cannot_wait_twice_under_one_id_or_without_bound() {
        let mut c: Correlator<()> = Correlator::default();
        c.send(Id::Number(1), ()).unwrap();
        assert_eq!(c.send(Id::Number(1), ()), Err(CorrelateError::DuplicateId));
        for i in 2..=MAX_IN_FLIGHT as i64 {
            c.send(Id::Number(i), ()).unwrap();
        }
        assert_eq!(
            c.send(Id::Number(0), ()),
            Err(CorrelateError::TooManyInFlight)
        );
    }

    #[test]
    fn a_client_answers_only_what_the_server_asked() {
        let mut c: Correlator<()> = Correlator::default();
        c.server_asked(Id::Number(7)).unwrap();
        // "7" is 7 to a Node server, but not what it asked here.
        assert!(!c.client_answered(&Id::String("7".into())));
        assert!(c.client_answered(&Id::Number(7)));
        assert!(!c.client_answered(&Id::Number(7)), "once");
        assert!(!c.client_answered(&Id::Number(8)));
    }
}
