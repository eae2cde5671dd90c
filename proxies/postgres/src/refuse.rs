//! Refusing a statement so that the client sees exactly what PostgreSQL
//! itself would show for a refused statement.
//!
//! A refused statement must never reach the database, but simply answering
//! the client ourselves gets transactions wrong: PostgreSQL aborts the open
//! transaction on an error (`25P02` afterwards), rolls back an implicit
//! transaction of a pipeline at its Sync, and skips the rest of an extended
//! cycle. So instead of the statement, the proxy forwards a *probe* that is
//! certain to fail at parse analysis without touching any data — a
//! reference to a column named by a per-session random token — and rewrites
//! the probe's error into the refusal (SQLSTATE 42501, the rule, the reason).
//! The database then does all the transaction bookkeeping itself, in order
//! with everything else the client pipelined.
//!
//! Pure: the relay asks for probes and hands every upstream ErrorResponse to
//! [`Refusals::rewrite`].

use std::collections::HashMap;

use bytes::Bytes;

use crate::codec::ErrorFields;
use crate::results::error_response_full;

/// What the client is told about one refused statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub detail: String,
    pub hint: String,
}

/// The refusals of one session that are still waiting for their probe's error.
#[derive(Debug)]
pub struct Refusals {
    /// Random per session, so that no client-chosen identifier can collide
    /// with a probe and have its error rewritten.
    token: String,
    next: u64,
    waiting: HashMap<u64, Refusal>,
}

/// Probes still waiting past this many are dropped oldest-first: a client
/// that pipelines refusals forever must not grow the proxy's memory.
const MAX_WAITING: usize = 4096;

impl Refusals {
    pub fn new(random: u64) -> Self {
        Self {
            token: format!("vigil_refused_{random:016x}"),
            next: 0,
            waiting: HashMap::new(),
        }
    }

    /// The SQL text to forward instead of a refused statement.
    pub fn probe(&mut self, refusal: Refusal) -> String {
        let id = self.next;
        self.next += 1;
        if self.waiting.len() >= MAX_WAITING {
            if let Some(&oldest) = self.waiting.keys().min() {
                self.waiting.remove(&oldest);
            }
        }
        self.waiting.insert(id, refusal);
        format!("SELECT \"{}_{id}\"", self.token)
    }

    /// If `error` is a probe's failure, the refusal to send instead (and the
    /// fields the tracker should record). A probe skipped by the server
    /// (an earlier error in the same cycle) never comes back: its entry is
    /// simply overwritten in time by the bounded map.
    pub fn rewrite(&mut self, error: &ErrorFields) -> Option<(Bytes, ErrorFields)> {
        let at = error.message.find(&self.token)?;
        let rest = &error.message[at + self.token.len()..];
        let id: u64 = rest
            .strip_prefix('_')?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()?;
        let refusal = self.waiting.remove(&id)?;
        let bytes = error_response_full(
            refusal.code,
            &refusal.message,
            &refusal.detail,
            &refusal.hint,
        );
        let fields = ErrorFields {
            severity: "ERROR".into(),
            code: refusal.code.into(),
            message: refusal.message,
        };
        Some((bytes, fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(msg: &str) -> Refusal {
        Refusal {
            code: "42501",
            message: msg.into(),
            detail: String::new(),
            hint: String::new(),
        }
    }

    fn upstream_error(message: String) -> ErrorFields {
        ErrorFields {
            severity: "ERROR".into(),
            code: "42703".into(),
            message,
        }
    }

    #[test]
    fn a_probe_error_becomes_the_refusal_once() {
        let mut r = Refusals::new(7);
        let probe = r.probe(refusal("denied by rule \"no-drop\""));
        let column = probe.trim_start_matches("SELECT ").trim_matches('"');
        let err = upstream_error(format!("column \"{column}\" does not exist"));
        let (_, fields) = r.rewrite(&err).unwrap();
        assert_eq!(fields.code, "42501");
        assert_eq!(fields.message, "denied by rule \"no-drop\"");
        assert!(r.rewrite(&err).is_none(), "a refusal is used once");
    }

    #[test]
    fn other_errors_and_other_sessions_tokens_pass_through() {
        let mut a = Refusals::new(1);
        let mut b = Refusals::new(2);
        let probe = a.probe(refusal("x"));
        let column = probe.trim_start_matches("SELECT ").trim_matches('"');
        let err = upstream_error(format!("column \"{column}\" does not exist"));
        assert!(b.rewrite(&err).is_none());
        assert!(a
            .rewrite(&upstream_error("relation \"t\" does not exist".into()))
            .is_none());
        assert!(a
            .rewrite(&upstream_error(
                "column \"vigil_refused_0000000000000001_x\"".into()
            ))
            .is_none());
    }

    #[test]
    fn waiting_refusals_are_bounded() {
        let mut r = Refusals::new(3);
        for _ in 0..MAX_WAITING + 10 {
            r.probe(refusal("x"));
        }
        assert!(r.waiting.len() <= MAX_WAITING);
    }
}
