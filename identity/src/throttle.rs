//! Failed logins, limited per client address and per user name.
//!
//! Each key (an address, a name) has a budget of failures that refills at a
//! steady rate: the generic cell rate algorithm, which keeps one instant
//! per key (its "theoretical arrival time") instead of a list of
//! failures. Once a key's budget is spent, attempts under it are refused
//! *before* any password is hashed or token verified, so a flood of wrong
//! passwords costs the gateway neither Argon2 memory nor ledger events:
//! only the first refusal of each throttled spell is worth recording.
//!
//! Pure and synchronous (time is passed in), so the proxies and the
//! approval service share one table and tests need no clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits, from `[logins]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures from one address (an IPv6 address counts by its /64) before
    /// its attempts are refused.
    pub failures_per_address: u32,
    /// Failures for one user name, from anywhere, before its attempts are
    /// refused. Larger than the address budget: it is the one an attacker
    /// spends to lock a real user out.
    pub failures_per_name: u32,
    /// One failure is forgiven every this long (for both kinds of key).
    pub forgive_every: Duration,
    /// Most keys remembered; past it the key nearest to being forgiven
    /// entirely is forgotten first.
    pub max_tracked: usize,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            failures_per_address: 10,
            failures_per_name: 20,
            forgive_every: Duration::from_secs(6),
            max_tracked: 100_000,
        }
    }
}

/// What a failure counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Name(String),
}

/// One key's state.
#[derive(Clone, Copy, Debug)]
struct Cell {
    /// When the key's budget is whole again if nothing else fails.
    theoretical_arrival: Instant,
    /// Whether a refusal of the current throttled spell was already reported.
    reported: bool,
}

/// An attempt refused before it was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// When the caller may try again.
    pub retry_after: Duration,
    /// Whether the throttled key is the address (else the user name).
    pub by_address: bool,
    /// The first refusal of this throttled spell for this key: record it;
    /// the rest of the spell only counts.
    pub first: bool,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many failed logins {}; try again in {} s",
            if self.by_address {
                "from this address"
            } else {
                "for this user"
            },
            self.retry_after.as_secs().max(1)
        )
    }
}

/// The failure table of every entry point that lets a caller in.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    cells: Mutex<HashMap<Key, Cell>>,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            cells: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    /// Takes an attempt from `address` as `name` at `now` out of both
    /// budgets *before* it is checked, or refuses it. Charging first, under
    /// one lock, is what keeps a burst of concurrent attempts inside the
    /// budget (checking first and counting after let 60 concurrent wrong
    /// passwords through a budget of 10). A success, or an attempt that
    /// was never checked, gets its charge back with [`Self::refund`].
    pub fn charge(&self, address: IpAddr, name: &str, now: Instant) -> Result<(), Throttled> {
        let mut cells = self.lock();
        self.check_locked(&mut cells, address, name, now)?;
        self.failed_locked(&mut cells, address, name, now);
        Ok(())
    }

    /// Gives back what [`Self::charge`] took: the attempt succeeded or was
    /// not checked.
    pub fn refund(&self, address: IpAddr, name: &str) {
        let mut cells = self.lock();
        for (key, _) in self.keys(address, name) {
            if let Some(cell) = cells.get_mut(&key) {
                cell.theoretical_arrival -= self.settings.forgive_every;
            }
        }
    }

    /// Whether an attempt from `address` as `name` may be checked at `now`.
    pub fn check(&self, address: IpAddr, name: &str, now: Instant) -> Result<(), Throttled> {
        let mut cells = self.lock();
        self.check_locked(&mut cells, address, name, now)
    }

    fn check_locked(
        &self,
        cells: &mut HashMap<Key, Cell>,
        address: IpAddr,
        name: &str,
        now: Instant,
    ) -> Result<(), Throttled> {
        for (key, budget) in self.keys(address, name) {
            let by_address = matches!(key, Key::Address(_));
            if let Some(cell) = cells.get_mut(&key) {
                if let Some(retry_after) = self.over_budget(cell, budget, now) {
                    let first = !cell.reported;
                    cell.reported = true;
                    return Err(Throttled {
                        retry_after,
                        by_address,
                        first,
                    });
                }
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against the address and the name.
    pub fn failed(&self, address: IpAddr, name: &str, now: Instant) {
        let mut cells = self.lock();
        self.failed_locked(&mut cells, address, name, now);
    }

    fn failed_locked(
        &self,
        cells: &mut HashMap<Key, Cell>,
        address: IpAddr,
        name: &str,
        now: Instant,
    ) {
        for (key, _) in self.keys(address, name) {
            if !cells.contains_key(&key) && cells.len() >= self.settings.max_tracked {
                make_room(cells, now);
            }
            let cell = cells.entry(key).or_insert(Cell {
                theoretical_arrival: now,
                reported: false,
            });
            cell.theoretical_arrival =
                cell.theoretical_arrival.max(now) + self.settings.forgive_every;
            cell.reported = false;
        }
    }

    /// How many keys are remembered.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn keys(&self, address: IpAddr, name: &str) -> [(Key, u32); 2] {
        [
            (
                Key::Address(counted_address(address)),
                self.settings.failures_per_address,
            ),
            (Key::Name(name.to_string()), self.settings.failures_per_name),
        ]
    }

    /// `Some(wait)` when the key has spent its budget of `budget` failures.
    fn over_budget(&self, cell: &Cell, budget: u32, now: Instant) -> Option<Duration> {
        let allowance = self.settings.forgive_every * budget;
        let owed = cell.theoretical_arrival.saturating_duration_since(now);
        // Each failure adds one interval; `budget` of them in a row still
        // pass, the next is refused.
        (owed + self.settings.forgive_every > allowance)
            .then(|| owed + self.settings.forgive_every - allowance)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Cell>> {
        // A panic while holding the lock left counters, not invariants.
        self.cells.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every loopback address (127/8, ::1) is one client: a local process can
/// send from any of 16 million of them. Others count by [`client_network`].
fn counted_address(address: IpAddr) -> IpAddr {
    if address.is_loopback()
        || matches!(address, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
    {
        return IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    }
    client_network(address)
}

/// Who one client is, for counting it: an IPv4 address (an IPv4-mapped
/// IPv6 address as its IPv4 one), or the /64 of an IPv6 address (one host
/// commonly holds a whole /64: counting its full addresses would give it
/// 2^64 budgets).
pub fn client_network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

/// Forgets every key whose budget is whole again; if none is, the one
/// nearest to it.
fn make_room(cells: &mut HashMap<Key, Cell>, now: Instant) {
    let before = cells.len();
    cells.retain(|_, c| c.theoretical_arrival > now);
    if cells.len() == before {
        if let Some(key) = cells
            .iter()
            .min_by_key(|(_, c)| c.theoretical_arrival)
            .map(|(k, _)| k.clone())
        {
            cells.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleSettings {
            failures_per_address: 3,
            failures_per_name: 5,
            forgive_every: Duration::from_secs(10),
            max_tracked: 100,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_gets_its_budget_then_waits_for_forgiveness() {
        let t = throttle();
        let now = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..3 {
            assert!(t.check(a, &format!("u{i}"), now).is_ok(), "failure {i}");
            t.failed(a, &format!("u{i}"), now);
        }
        let refused = t.check(a, "u9", now).unwrap_err();
        assert!(refused.by_address && refused.first);
        assert_eq!(refused.retry_after, Duration::from_secs(10));
        assert!(refused.to_string().contains("from this address"));
        // The rest of the spell is not reported again.
        assert!(!t.check(a, "u9", now).unwrap_err().first);
        // Another address is unaffected.
        assert!(t.check(ip("10.0.0.2"), "u9", now).is_ok());
        // One failure is forgiven after the interval: one more attempt.
        let later = now + Duration::from_secs(10);
        assert!(t.check(a, "u9", later).is_ok());
        t.failed(a, "u9", later);
        let again = t.check(a, "u9", later).unwrap_err();
        assert!(again.first, "a new spell is reported again");
    }

    #[test]
    fn a_name_is_limited_across_addresses() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..5 {
            let a = ip(&format!("10.0.1.{i}"));
            assert!(t.check(a, "alice", now).is_ok());
            t.failed(a, "alice", now);
        }
        let refused = t.check(ip("10.0.2.1"), "alice", now).unwrap_err();
        assert!(!refused.by_address);
        assert!(refused.to_string().contains("for this user"));
        assert!(t.check(ip("10.0.2.1"), "bob", now).is_ok());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_v4_as_v4() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..3 {
            t.failed(ip(&format!("2001:db8::{i}")), &format!("n{i}"), now);
        }
        assert!(t.check(ip("2001:db8::ffff:1"), "x", now).is_err());
        assert!(t.check(ip("2001:db8:0:1::1"), "x", now).is_ok());
        for i in 0..3 {
            t.failed(ip("::ffff:10.9.9.9"), &format!("m{i}"), now);
        }
        assert!(t.check(ip("10.9.9.9"), "x", now).is_err());
    }

    #[test]
    fn a_burst_is_charged_before_it_is_checked_and_successes_are_refunded() {
        let t = throttle();
        let now = Instant::now();
        let a = ip("10.0.3.1");
        // Three attempts in flight at once use up the budget of three.
        for i in 0..3 {
            assert!(t.charge(a, &format!("b{i}"), now).is_ok());
        }
        assert!(t.charge(a, "b9", now).is_err(), "a fourth waits");
        // One of them succeeded: its charge comes back.
        t.refund(a, "b0");
        assert!(t.charge(a, "b8", now).is_ok());
    }

    #[test]
    fn every_loopback_address_is_one_client() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..3 {
            t.failed(ip(&format!("127.1.{i}.1")), &format!("l{i}"), now);
        }
        assert!(t.check(ip("127.0.0.1"), "x", now).is_err());
        assert!(t.check(ip("::1"), "x", now).is_err());
        assert!(t.check(ip("::ffff:127.0.0.9"), "x", now).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..1000u32 {
            let a = IpAddr::V4(i.to_be_bytes().into());
            t.failed(
                a,
                &format!("name{i}"),
                now + Duration::from_millis(i.into()),
            );
        }
        assert!(t.tracked() <= 100, "{}", t.tracked());
    }
}
