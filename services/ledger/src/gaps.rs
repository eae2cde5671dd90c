//! Noticing lost events as they happen: every session numbers its events
//! (`seq`, from 0 without holes), so a number that jumps means events of
//! that session never reached the log (skipped by the broker, lost between
//! proxy and ledger). An auditor's `verify` finds that later; the ledger
//! says so within seconds: a log line, the counter
//! `vigil_ledger_sequence_gaps_total`, and a `SequenceGap` event in the log
//! itself ([`crate::gap_log`]).
//!
//! Events of one session can arrive slightly out of order (a Response
//! recorded in the background can come after the next Request), so a hole
//! counts as a gap only once it has stayed open for [`GRACE`]. Pure: the
//! appender calls [`SequenceWatch::observe`] for every appended event and
//! [`SequenceWatch::overdue`] on a timer.
//!
//! What it cannot see: the first events of a session it never saw begin
//! (a ledger started after the session opened takes the first number it
//! sees as the start), and events lost at the end of a session (nothing
//! comes after them). `vigil audit verify` checks both.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How long a hole may stay open before it is reported.
pub const GRACE: Duration = Duration::from_secs(5);

/// Sessions watched at once; past it, the oldest-seen sessions without an
/// open hole are forgotten (their later holes go unnoticed here, never
/// falsely reported); a session forgotten with a hole open has it reported
/// at once, so flooding the watch with sessions cannot hide a hole.
pub const MAX_SESSIONS: usize = 100_000;

/// A number this far past what a session has reached is not a hole but a
/// number nobody could have made (a proxy numbers events one by one): it is
/// reported by the caller and left out of the watch, so that one forged
/// event cannot make every later real one look like a replay.
pub const MAX_JUMP: u64 = 1_000_000;

/// What [`SequenceWatch::observe`] made of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// In order, early, or a replay: watched.
    Watched,
    /// Past [`MAX_JUMP`] (or the last number there is): not watched.
    Implausible { next: u64 },
}

/// Events of one session that never arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub session: String,
    /// The first missing number, and how many are missing from it.
    pub first_missing: u64,
    pub missing: u64,
    /// How long the hole had been open when it was reported.
    pub open_for: Duration,
}

#[derive(Debug)]
struct Session {
    /// Every number below this has arrived.
    next: u64,
    /// Numbers above `next` that arrived early.
    ahead: BTreeSet<u64>,
    /// Since when `next` has been missing while later numbers arrived.
    hole_since: Option<Instant>,
    /// When the session was last seen, for forgetting the oldest.
    seen: Instant,
    /// Its SessionClosed arrived: forgotten once no hole is open.
    ended: bool,
}

/// Per-session sequence numbers of the events appended lately.
#[derive(Debug, Default)]
pub struct SequenceWatch {
    sessions: HashMap<String, Session>,
    /// Holes of sessions forgotten to stay within [`MAX_SESSIONS`], for
    /// the next [`SequenceWatch::overdue`] to report.
    evicted: Vec<Gap>,
}

impl SequenceWatch {
    /// One appended event of `session` numbered `seq`, at `now`; `ends`:
    /// it closes the session (SessionClosed), which is then forgotten
    /// unless a hole is still open.
    pub fn observe(&mut self, session: &str, seq: u64, ends: bool, now: Instant) -> Observed {
        if session.is_empty() {
            return Observed::Watched;
        }
        if let Some(s) = self.sessions.get(session) {
            if seq == u64::MAX || seq - s.next.min(seq) > MAX_JUMP {
                return Observed::Implausible { next: s.next };
            }
        } else if seq == u64::MAX {
            return Observed::Implausible { next: 0 };
        }
        if !self.sessions.contains_key(session) && self.sessions.len() >= MAX_SESSIONS {
            self.forget_oldest(now);
        }
        let s = self
            .sessions
            .entry(session.to_string())
            .or_insert_with(|| Session {
                // The first number seen starts the session as far as this
                // ledger knows.
                next: seq,
                ahead: BTreeSet::new(),
                hole_since: None,
                seen: now,
                ended: false,
            });
        s.seen = now;
        s.ended |= ends;
        if seq == s.next {
            s.next += 1;
            while s.ahead.remove(&s.next) {
                s.next += 1;
            }
            s.hole_since = if s.ahead.is_empty() { None } else { Some(now) };
        } else if seq > s.next {
            s.ahead.insert(seq);
            s.hole_since.get_or_insert(now);
        }
        // Below `next`: a replay after a restart; the log keeps one copy.
        if s.ended && s.ahead.is_empty() {
            self.sessions.remove(session);
        }
        Observed::Watched
    }

    /// The holes open for longer than [`GRACE`] at `now`, each reported
    /// once: the watch then takes the missing numbers as lost and goes on
    /// from the first number that did arrive.
    pub fn overdue(&mut self, now: Instant) -> Vec<Gap> {
        let mut gaps = std::mem::take(&mut self.evicted);
        for (session, s) in &mut self.sessions {
            let Some(since) = s.hole_since else { continue };
            if now.duration_since(since) < GRACE {
                continue;
            }
            let Some(&arrived) = s.ahead.first() else {
                s.hole_since = None;
                continue;
            };
            gaps.push(Gap {
                session: session.clone(),
                first_missing: s.next,
                missing: arrived - s.next,
                open_for: now.duration_since(since),
            });
            s.ahead.remove(&arrived);
            s.next = arrived + 1;
            while s.ahead.remove(&s.next) {
                s.next += 1;
            }
            s.hole_since = if s.ahead.is_empty() { None } else { Some(now) };
        }
        self.sessions
            .retain(|_, s| !(s.ended && s.ahead.is_empty()));
        gaps.sort_by(|a, b| a.session.cmp(&b.session));
        gaps
    }

    /// Forgets a tenth of the sessions, oldest-seen first, those without
    /// an open hole before any with one; a hole forgotten is reported.
    fn forget_oldest(&mut self, now: Instant) {
        // Rare (a hundred thousand sessions at once): a linear pass is fine.
        let mut by_age: Vec<(bool, Instant, String)> = self
            .sessions
            .iter()
            .map(|(k, s)| (!s.ahead.is_empty(), s.seen, k.clone()))
            .collect();
        by_age.sort();
        for (open_hole, _, k) in by_age.into_iter().take(MAX_SESSIONS / 10) {
            let Some(s) = self.sessions.remove(&k) else {
                continue;
            };
            if let (true, Some(&arrived)) = (open_hole, s.ahead.first()) {
                self.evicted.push(Gap {
                    session: k,
                    first_missing: s.next,
                    missing: arrived - s.next,
                    open_for: s
                        .hole_since
                        .map_or(Duration::ZERO, |t| now.duration_since(t)),
                });
            }
        }
    }

    /// Sessions watched now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_numbered_without_holes_raises_nothing_and_is_forgotten_at_its_end() {
        let mut w = SequenceWatch::default();
        let t = Instant::now();
        for seq in 0..5 {
            w.observe("s1", seq, seq == 4, t);
        }
        assert!(w.overdue(t + GRACE * 2).is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn late_events_within_the_grace_are_not_gaps() {
        let mut w = SequenceWatch::default();
        let t = Instant::now();
        w.observe("s1", 0, false, t);
        w.observe("s1", 2, false, t); // 1 (a background Response) is late
        assert!(w.overdue(t + GRACE / 2).is_empty());
        w.observe("s1", 1, false, t + GRACE / 2);
        assert!(w.overdue(t + GRACE * 3).is_empty());
        // Replays of what arrived are no gaps either.
        w.observe("s1", 1, false, t + GRACE * 3);
        w.observe("s1", 3, false, t + GRACE * 3);
        assert!(w.overdue(t + GRACE * 5).is_empty());
    }

    #[test]
    fn a_hole_that_stays_open_is_reported_once_with_what_is_missing() {
        let mut w = SequenceWatch::default();
        let t = Instant::now();
        w.observe("s1", 0, false, t);
        w.observe("s1", 1, false, t);
        w.observe("s1", 4, false, t); // 2 and 3 lost
        w.observe("s1", 5, false, t);
        w.observe("s2", 7, false, t); // first seen at 7: the ledger's start
        assert!(w.overdue(t + GRACE - Duration::from_millis(1)).is_empty());
        let gaps = w.overdue(t + GRACE);
        assert_eq!(
            gaps,
            vec![Gap {
                session: "s1".into(),
                first_missing: 2,
                missing: 2,
                open_for: GRACE,
            }]
        );
        assert!(w.overdue(t + GRACE * 4).is_empty(), "reported once");
        // The session goes on from 6.
        w.observe("s1", 6, true, t + GRACE * 4);
        assert!(w.overdue(t + GRACE * 8).is_empty());
        assert_eq!(w.len(), 1, "s1 ended, s2 goes on");
        // A session that ends with a hole open is reported, then forgotten.
        w.observe("s3", 0, false, t);
        w.observe("s3", 2, true, t);
        assert_eq!(w.overdue(t + GRACE).len(), 1);
        assert_eq!(w.len(), 1, "s3 forgotten after its report");
    }

    #[test]
    fn a_number_nobody_could_have_made_is_not_watched() {
        let mut w = SequenceWatch::default();
        let t = Instant::now();
        w.observe("s1", 0, false, t);
        // One forged event far ahead must not make later real ones replays.
        assert_eq!(
            w.observe("s1", 1 << 62, false, t),
            Observed::Implausible { next: 1 }
        );
        assert_eq!(
            w.observe("s2", u64::MAX, false, t),
            Observed::Implausible { next: 0 }
        );
        w.observe("s1", 3, false, t); // 1 and 2 are really lost
        let gaps = w.overdue(t + GRACE);
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].first_missing, gaps[0].missing), (1, 2));
        // A jump within the bound is a hole like any other.
        assert_eq!(w.observe("s1", 4 + MAX_JUMP, false, t), Observed::Watched);
    }

    #[test]
    fn a_flood_of_sessions_cannot_hide_an_open_hole() {
        let mut w = SequenceWatch::default();
        let t = Instant::now();
        w.observe("victim", 0, false, t);
        w.observe("victim", 2, false, t); // 1 missing
        for i in 0..MAX_SESSIONS + 10 {
            w.observe(&format!("s{i}"), 0, false, t + Duration::from_millis(1));
        }
        assert!(w.len() <= MAX_SESSIONS);
        assert!(
            w.sessions.contains_key("victim"),
            "sessions without a hole go first"
        );
        // With every watched session holding a hole, one forgotten is
        // reported at once, before its grace.
        let mut w = SequenceWatch::default();
        for i in 0..MAX_SESSIONS {
            let k = format!("h{i}");
            w.observe(&k, 0, false, t);
            w.observe(&k, 2, false, t);
        }
        w.observe("new", 0, false, t);
        let gaps = w.overdue(t);
        assert_eq!(gaps.len(), MAX_SESSIONS / 10, "reported, not dropped");
        assert!(gaps.iter().all(|g| g.first_missing == 1 && g.missing == 1));
    }

    #[test]
    fn the_watch_is_bounded() {
        let mut w = SequenceWatch::default();
        let t = Instant::now();
        for i in 0..MAX_SESSIONS + 10 {
            w.observe(
                &format!("s{i}"),
                0,
                false,
                t + Duration::from_nanos(i as u64),
            );
        }
        assert!(w.len() <= MAX_SESSIONS);
        assert!(w.overdue(t + GRACE * 2).is_empty());
    }
}
