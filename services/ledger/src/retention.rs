//! Retention: after the retention period (HIPAA: six years), delete event
//! bodies and their salts, keep the leaves, and record that it happened.
//!
//! Each run prunes the longest prefix of entries older than the cutoff (see
//! [`vigil_ledger::Store::prune_before`]) and appends a `RetentionPruned`
//! event in the same atomic batch, so the log itself says what was pruned,
//! when, and under which policy. Those events keep their bodies through
//! later runs: an auditor checks every run against them.
//!
//! A period shorter than the configured minimum (default six years) is
//! refused unless the operator forces it; a forced run says so in its
//! event, so the auditor sees it.

use std::sync::Arc;
use std::time::Duration;

use vigil_ledger::{NewEntry, PruneRecord, StoreError};
use vigil_proto::events::{event, RetentionPruned};

use crate::own_records;
use crate::Ledger;

/// Nanoseconds in one day.
const DAY_NANOS: i64 = 86_400 * 1_000_000_000;
/// Entries pruned per atomic batch; a backlog is worked off in several.
pub const PRUNE_CHUNK: u64 = 100_000;

/// How old an entry must be before its body may be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPeriod {
    nanos: i64,
    text: String,
}

impl RetentionPeriod {
    /// Parses `<n><unit>` with unit `y` (366 days: a year never ends early),
    /// `d`, `h`, `m` or `s`, e.g. `6y`, `2190d`, `90s`. Zero is refused: that
    /// would delete every body at once, which is never what retention means.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("retention period {t:?} has no unit (y, d, h, m or s)"))?;
        let (digits, unit) = t.split_at(split);
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("retention period {t:?} must start with a number"))?;
        let unit_nanos = match unit {
            "y" => 366 * DAY_NANOS,
            "d" => DAY_NANOS,
            "h" => 3_600 * 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "s" => 1_000_000_000,
            _ => {
                return Err(format!(
                    "retention period {t:?}: unit must be y, d, h, m or s"
                ))
            }
        };
        if n == 0 {
            return Err("a retention period of zero would delete every body".into());
        }
        let nanos = n
            .checked_mul(unit_nanos)
            .ok_or_else(|| format!("retention period {t:?} is too long"))?;
        Ok(Self {
            nanos,
            text: t.to_string(),
        })
    }

    /// The period as configured, e.g. "6y".
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The period as a duration (for schedules).
    pub fn as_duration(&self) -> Duration {
        Duration::from_nanos(self.nanos as u64)
    }

    /// The period in nanoseconds.
    pub fn nanos(&self) -> i64 {
        self.nanos
    }

    /// The cutoff for a run at `now`: entries older than it are eligible.
    pub fn cutoff(&self, now_unix_nanos: i64) -> i64 {
        now_unix_nanos.saturating_sub(self.nanos)
    }
}

/// One retention job's settings: the period, the configured minimum it
/// must not undercut, and whether the operator forced it below that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub period: RetentionPeriod,
    pub minimum: RetentionPeriod,
    pub forced: bool,
}

/// Why a retention job was refused before it touched anything.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(
        "a retention period of {period} is shorter than the configured minimum {minimum}; \
         pruning it would delete evidence early (force it only if you mean it: the run \
         is then recorded as forced)"
    )]
    BelowMinimum { period: String, minimum: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RetentionPolicy {
    /// The period must not be shorter than the minimum unless `forced`.
    pub fn new(
        period: RetentionPeriod,
        minimum: RetentionPeriod,
        forced: bool,
    ) -> Result<Self, PruneError> {
        if period.nanos < minimum.nanos && !forced {
            return Err(PruneError::BelowMinimum {
                period: period.text,
                minimum: minimum.text,
            });
        }
        Ok(Self {
            period,
            minimum,
            forced,
        })
    }

    /// Below the minimum (and so forced).
    pub fn is_below_minimum(&self) -> bool {
        self.period.nanos < self.minimum.nanos
    }
}

/// What one call of [`prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneSummary {
    /// One record per atomic batch, in order.
    pub runs: Vec<PruneRecord>,
}

impl PruneSummary {
    /// Total entries whose bodies were deleted.
    pub fn entries_pruned(&self) -> u64 {
        self.runs.iter().map(|r| r.end_index - r.from_index).sum()
    }
}

/// The event that records one pruning batch.
/// The stream the retention runs' records form: run `n` is event `n` of it,
/// so an auditor sees every run in order, and none can be added from the
/// bus (the appender refuses this stream and this kind).
pub const RETENTION_STREAM: &str = "vigil-ledger/retention";

fn record_event(r: &PruneRecord, policy: &RetentionPolicy, run: u64) -> NewEntry {
    let period = &policy.period;
    let record = RetentionPruned {
        first_index: r.from_index,
        end_index: r.end_index,
        cutoff_unix_nanos: r.cutoff_unix_nanos,
        policy: format!(
            "older than {}{}",
            period.as_str(),
            if policy.is_below_minimum() {
                format!(" (forced below the minimum {})", policy.minimum.as_str())
            } else {
                String::new()
            }
        ),
        entries_pruned: r.end_index - r.from_index,
        period_nanos: period.nanos,
        minimum_period_nanos: policy.minimum.nanos,
        forced: policy.is_below_minimum(),
    };
    own_records::entry(
        RETENTION_STREAM,
        run,
        r.pruned_at_unix_nanos,
        event::Kind::RetentionPruned(record),
    )
}

/// The leaf kind of the events [`record_event`] makes.
pub const RECORD_KIND: &str = "retention_pruned";

/// Prunes everything eligible now, in batches of [`PRUNE_CHUNK`]. Blocking.
pub fn prune(ledger: &Ledger, policy: &RetentionPolicy) -> Result<PruneSummary, StoreError> {
    prune_at(ledger, policy, own_records::now_unix_nanos())
}

/// [`prune`] as if the time were `now_unix_nanos` (for tests).
pub fn prune_at(
    ledger: &Ledger,
    policy: &RetentionPolicy,
    now_unix_nanos: i64,
) -> Result<PruneSummary, StoreError> {
    let cutoff = policy.period.cutoff(now_unix_nanos);
    let mut summary = PruneSummary::default();
    loop {
        let run = ledger.store.prune_records()?.len() as u64;
        let Some((record, _)) =
            ledger
                .store
                .prune_before(cutoff, now_unix_nanos, PRUNE_CHUNK, RECORD_KIND, |r| {
                    record_event(r, policy, run)
                })?
        else {
            break;
        };
        tracing::info!(
            from = record.from_index,
            to = record.end_index,
            policy = policy.period.as_str(),
            forced = policy.is_below_minimum(),
            "retention pruned event bodies"
        );
        summary.runs.push(record);
    }
    Ok(summary)
}

/// Runs [`prune`] every `every`, starting now.
pub async fn run(ledger: Arc<Ledger>, policy: RetentionPolicy, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (l, p) = (ledger.clone(), policy.clone());
        match tokio::task::spawn_blocking(move || prune(&l, &p)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention run failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_bad_ones_are_refused() {
        assert_eq!(
            RetentionPeriod::parse("6y")
                .unwrap()
                .cutoff(6 * 366 * DAY_NANOS),
            0
        );
        assert_eq!(
            RetentionPeriod::parse("90s")
                .unwrap()
                .cutoff(100_000_000_000),
            10_000_000_000
        );
        for bad in ["", "6", "y", "6w", "-1d", "0y", "99999999999999y", "6 y"] {
            assert!(RetentionPeriod::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_period_below_the_minimum_needs_force_and_says_so() {
        let p = |t: &str| RetentionPeriod::parse(t).unwrap();
        let err = RetentionPolicy::new(p("1s"), p("6y"), false).unwrap_err();
        assert!(err
            .to_string()
            .contains("shorter than the configured minimum 6y"));
        assert!(!RetentionPolicy::new(p("6y"), p("6y"), false)
            .unwrap()
            .is_below_minimum());
        let forced = RetentionPolicy::new(p("1s"), p("6y"), true).unwrap();
        assert!(forced.is_below_minimum());
        let entry = record_event(
            &PruneRecord {
                from_index: 0,
                end_index: 3,
                cutoff_unix_nanos: 5,
                pruned_at_unix_nanos: 1_000_000_005,
            },
            &forced,
            4,
        );
        assert_eq!(entry.kind, RECORD_KIND);
        assert_eq!(
            (entry.session_id.as_str(), entry.seq),
            (RETENTION_STREAM, 4)
        );
        let event = vigil_proto::events::decode(entry.body.as_slice()).unwrap();
        let Some(event::Kind::RetentionPruned(r)) = event.kind else {
            panic!("not a RetentionPruned event")
        };
        assert!(r.forced);
        assert_eq!(r.period_nanos, 1_000_000_000);
        assert_eq!(r.minimum_period_nanos, p("6y").nanos());
        assert_eq!(r.policy, "older than 1s (forced below the minimum 6y)");
    }
}
