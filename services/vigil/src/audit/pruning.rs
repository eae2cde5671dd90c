//! Which bodies may be missing, as the log itself proves it.
//!
//! Retention deletes bodies of a prefix of the log and records each run as
//! a `RetentionPruned` event whose body is never pruned. An auditor takes
//! the runs from those events (each body checked against its leaf), not
//! from what the ledger's API says: a body is accepted as pruned only when
//! a proven run covers its index and its leaf is older than that run's
//! cutoff. The runs must chain: the first starts at 0, each starts where
//! the one before ended, and each is recorded after the range it pruned.

use vigil_ledger::LeafRecord;
use vigil_ledger_service::retention::RETENTION_STREAM;
use vigil_proto::events::{event::Kind, Event, RetentionPruned};

use crate::timefmt::rfc3339;

/// The leaf kind of the events that record retention runs.
pub const RECORD_KIND: &str = "retention_pruned";

/// One retention run, proven by its event in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenRun {
    /// Where the run's event is in the log.
    pub record_index: u64,
    /// The event's time: when the run happened.
    pub pruned_at_unix_nanos: i64,
    /// The event's stream and number (the leaf proves them).
    pub stream: String,
    pub seq: u64,
    pub record: RetentionPruned,
}

/// How far a run's time may be ahead of the auditor's clock, or of entries
/// appended after it (clocks of different machines differ a little).
pub const CLOCK_SKEW_NANOS: i64 = 5 * 60 * 1_000_000_000;

impl ProvenRun {
    /// From a `RetentionPruned` event whose body was checked against its
    /// leaf at `record_index`.
    pub fn from_event(record_index: u64, event: &Event) -> Option<Self> {
        match &event.kind {
            Some(Kind::RetentionPruned(r)) => Some(Self {
                record_index,
                pruned_at_unix_nanos: event.time_unix_nanos,
                stream: event.session_id.clone(),
                seq: event.seq,
                record: r.clone(),
            }),
            _ => None,
        }
    }

    pub fn covers(&self, index: u64) -> bool {
        self.record.first_index <= index && index < self.record.end_index
    }

    /// What an auditor reads about the run.
    pub fn describe(&self) -> String {
        format!(
            "retention run at {} (entry {}): bodies of entries {}..{} older than {} ({}){}",
            rfc3339(self.pruned_at_unix_nanos),
            self.record_index,
            self.record.first_index,
            self.record.end_index,
            rfc3339(self.record.cutoff_unix_nanos),
            self.record.policy,
            if self.record.forced {
                ", FORCED below the configured minimum"
            } else {
                ""
            }
        )
    }
}

/// The proven runs of one log (or of one bundle), in log order.
#[derive(Debug, Default, Clone)]
pub struct ProvenRuns {
    runs: Vec<ProvenRun>,
}

impl ProvenRuns {
    /// Checks that `runs` chain as retention makes them; every way they do
    /// not is a problem (an invented, reordered or overlapping run).
    /// `whole_log`: the runs are all the log has (else a bundle's subset,
    /// which need not start at 0 or be contiguous). `now`: the auditor's
    /// clock; a run dated after it is refused.
    pub fn new(mut runs: Vec<ProvenRun>, whole_log: bool, now: i64) -> (Self, Vec<String>) {
        runs.sort_by_key(|r| r.record_index);
        let mut problems = Vec::new();
        let mut expected_first = 0u64;
        for (n, r) in runs.iter().enumerate() {
            let rec = &r.record;
            let at = r.record_index;
            // Only the ledger writes its retention stream (the appender
            // refuses it from the bus); run n is its event n.
            if r.stream != RETENTION_STREAM {
                problems.push(format!(
                    "retention run at entry {at} is not in the ledger's retention stream: not a record the ledger made"
                ));
            } else if whole_log && r.seq != n as u64 {
                problems.push(format!(
                    "retention run at entry {at} is run {} of the ledger's retention stream, but run {n} was expected",
                    r.seq
                ));
            }
            if rec.period_nanos <= 0 {
                problems.push(format!(
                    "retention run at entry {at} records no retention period"
                ));
            } else if rec.period_nanos < rec.minimum_period_nanos && !rec.forced {
                problems.push(format!(
                    "retention run at entry {at} used a period below its configured minimum without being marked forced"
                ));
            }
            if r.pruned_at_unix_nanos > now.saturating_add(CLOCK_SKEW_NANOS) {
                problems.push(format!(
                    "retention run at entry {at} is dated {}, in the future: its cutoff cannot be trusted",
                    rfc3339(r.pruned_at_unix_nanos)
                ));
            }
            if rec.first_index >= rec.end_index {
                problems.push(format!(
                    "retention run at entry {at}: empty or inverted range {}..{}",
                    rec.first_index, rec.end_index
                ));
            }
            if rec.end_index > at {
                problems.push(format!(
                    "retention run at entry {at} claims to have pruned entries up to {}, past its own record",
                    rec.end_index
                ));
            }
            if rec.cutoff_unix_nanos > r.pruned_at_unix_nanos {
                problems.push(format!(
                    "retention run at entry {at}: its cutoff {} is after the run itself",
                    rfc3339(rec.cutoff_unix_nanos)
                ));
            }
            if rec.period_nanos > 0
                && r.pruned_at_unix_nanos.saturating_sub(rec.period_nanos) != rec.cutoff_unix_nanos
            {
                problems.push(format!(
                    "retention run at entry {at}: its cutoff is not its time minus its period"
                ));
            }
            if whole_log && rec.first_index != expected_first {
                problems.push(format!(
                    "retention run at entry {at} starts at entry {}, but the run before it ended at {expected_first}",
                    rec.first_index
                ));
            }
            expected_first = rec.end_index;
        }
        (Self { runs }, problems)
    }

    pub fn runs(&self) -> &[ProvenRun] {
        &self.runs
    }

    /// The minimum index the runs prove: the end of the last one.
    pub fn min_index(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.record.end_index)
    }

    /// The run that pruned entry `index`, if a proven one did; checks that
    /// the entry was older than that run's cutoff.
    pub fn pruned_by(&self, index: u64, leaf: Option<&LeafRecord>) -> Result<&ProvenRun, String> {
        let run = self.runs.iter().find(|r| r.covers(index)).ok_or_else(|| {
            "body said pruned, but no retention run recorded in the log pruned this entry"
                .to_string()
        })?;
        match leaf {
            Some(l) if l.time_unix_nanos >= run.record.cutoff_unix_nanos => Err(format!(
                "pruned by the run at entry {} although its time {} is not older than that run's cutoff {}",
                run.record_index,
                rfc3339(l.time_unix_nanos),
                rfc3339(run.record.cutoff_unix_nanos)
            )),
            Some(_) => Ok(run),
            None => Err("pruned, with no valid leaf to check its age".into()),
        }
    }

    /// Problems for runs dated after entries appended after them (beyond
    /// clock skew): a run's time sets its cutoff, so a run dated ahead
    /// would prune young entries as if they were old.
    pub fn dated_after_later_entries(&self, leaves: &[Option<LeafRecord>]) -> Vec<String> {
        let mut out = Vec::new();
        // The earliest time among the leaves after each index, from the end.
        let mut earliest_after = vec![i64::MAX; leaves.len() + 1];
        for i in (0..leaves.len()).rev() {
            let t = leaves[i].as_ref().map_or(i64::MAX, |l| l.time_unix_nanos);
            earliest_after[i] = earliest_after[i + 1].min(t);
        }
        for run in &self.runs {
            let next = (run.record_index as usize + 1).min(leaves.len());
            let later = earliest_after[next];
            if later != i64::MAX
                && run.pruned_at_unix_nanos > later.saturating_add(CLOCK_SKEW_NANOS)
            {
                out.push(format!(
                    "retention run at entry {} is dated {}, after entries appended later ({}): its cutoff cannot be trusted",
                    run.record_index,
                    rfc3339(run.pruned_at_unix_nanos),
                    rfc3339(later)
                ));
            }
        }
        out
    }

    /// Warnings for runs that deleted entries younger than `expected_nanos`
    /// (the retention period the auditor expects, e.g. six years): the
    /// youngest entry each such run pruned, by its age at the run.
    pub fn young_prunes(
        &self,
        leaves: &[Option<LeafRecord>],
        expected_nanos: i64,
        expected_text: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for run in &self.runs {
            let rec = &run.record;
            let youngest = (rec.first_index..rec.end_index.min(leaves.len() as u64))
                .filter_map(|i| leaves[i as usize].as_ref())
                .map(|l| run.pruned_at_unix_nanos.saturating_sub(l.time_unix_nanos))
                .min();
            if let Some(age) = youngest {
                if age < expected_nanos {
                    out.push(format!(
                        "the retention run at entry {} deleted bodies only {} old, younger than the {expected_text} you expect{}",
                        run.record_index,
                        human_age(age),
                        if rec.forced { " (the run was forced below the configured minimum)" } else { "" }
                    ));
                }
            }
        }
        out
    }
}

/// An age as the largest whole unit: `3 s`, `5 min`, `2 h`, `40 d`.
fn human_age(nanos: i64) -> String {
    let s = nanos / 1_000_000_000;
    match s {
        ..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000_000_000;

    fn run(at: u64, first: u64, end: u64, cutoff: i64, time: i64) -> ProvenRun {
        ProvenRun {
            record_index: at,
            pruned_at_unix_nanos: time,
            stream: RETENTION_STREAM.into(),
            seq: 0,
            record: RetentionPruned {
                first_index: first,
                end_index: end,
                cutoff_unix_nanos: cutoff,
                policy: "older than 1s".into(),
                entries_pruned: end - first,
                period_nanos: time - cutoff,
                minimum_period_nanos: 0,
                forced: false,
            },
        }
    }

    fn leaf(time: i64) -> Option<LeafRecord> {
        Some(LeafRecord {
            event_id: [0; 16],
            time_unix_nanos: time,
            kind: "request".into(),
            commitment: [0; 32],
            position: None,
        })
    }

    #[test]
    fn runs_must_chain_from_zero_and_be_recorded_after_their_range() {
        let mut second = run(20, 5, 12, 300, 400);
        second.seq = 1;
        let (runs, problems) =
            ProvenRuns::new(vec![run(10, 0, 5, 100, 200), second.clone()], true, NOW);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(runs.min_index(), 12);

        // (runs, the problem each must name)
        let cases: Vec<(Vec<ProvenRun>, &str)> = vec![
            (
                vec![run(10, 3, 5, 100, 200)],
                "starts at entry 3, but the run before it ended at 0",
            ),
            (
                vec![run(10, 0, 5, 100, 200), run(20, 6, 9, 300, 400)],
                "starts at entry 6",
            ),
            (vec![run(4, 0, 5, 100, 200)], "past its own record"),
            (vec![run(10, 0, 5, 300, 200)], "cutoff"),
            (vec![run(10, 5, 5, 100, 200)], "empty or inverted range"),
        ];
        for (runs, want) in cases {
            let (_, problems) = ProvenRuns::new(runs.clone(), true, NOW);
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{runs:?}: {problems:?}"
            );
        }
        // A bundle holds only the runs it needs: they need not start at 0.
        let (_, problems) = ProvenRuns::new(vec![second], false, NOW);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_body_is_pruned_only_inside_a_proven_run_and_older_than_its_cutoff() {
        let (runs, _) = ProvenRuns::new(vec![run(10, 0, 5, 100, 200)], true, NOW);
        assert_eq!(
            runs.pruned_by(3, leaf(99).as_ref()).unwrap().record_index,
            10
        );
        assert!(runs
            .pruned_by(3, leaf(100).as_ref())
            .unwrap_err()
            .contains("not older than"));
        assert!(runs
            .pruned_by(5, leaf(1).as_ref())
            .unwrap_err()
            .contains("no retention run"));
        assert!(ProvenRuns::default()
            .pruned_by(0, leaf(1).as_ref())
            .is_err());
    }

    #[test]
    fn runs_that_deleted_young_entries_are_named() {
        let second = 1_000_000_000;
        let (runs, _) = ProvenRuns::new(vec![run(3, 0, 2, 5 * second, 10 * second)], true, NOW);
        let leaves = vec![leaf(0), leaf(4 * second), leaf(9 * second)];
        let warnings = runs.young_prunes(&leaves, 8 * second, "8s");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("only 6 s old, younger than the 8s you expect"),
            "{warnings:?}"
        );
        assert!(runs.young_prunes(&leaves, 6 * second, "6s").is_empty());
    }

    #[test]
    fn a_run_dated_after_later_entries_is_refused() {
        let minute = 60 * 1_000_000_000;
        let (runs, _) = ProvenRuns::new(vec![run(1, 0, 1, 100 * minute, 200 * minute)], true, NOW);
        // The entry after the run is 100 minutes older than the run.
        let leaves = vec![leaf(0), leaf(200 * minute), leaf(100 * minute)];
        let problems = runs.dated_after_later_entries(&leaves);
        assert!(
            problems[0].contains("after entries appended later"),
            "{problems:?}"
        );
        let fine = vec![leaf(0), leaf(200 * minute), leaf(199 * minute)];
        assert!(runs.dated_after_later_entries(&fine).is_empty());
    }
}
