//! `[logins]` in the config: how failed logins are limited, how many
//! passwords are hashed at once, and how many sessions a listener holds.
//! Every key has a default; the section may be left out.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;
use vigil_proxy_core::admission::SessionLimits;
use vigil_proxy_core::identity::{GateSettings, ThrottleSettings};

#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LoginsSection {
    /// Failed logins from one address (an IPv6 /64) before its attempts are
    /// refused with 53300 until one is forgiven.
    pub max_failures_per_address: u32,
    /// Failed logins for one user name, from anywhere, before its attempts
    /// are refused.
    pub max_failures_per_user: u32,
    /// One failure is forgiven every this many seconds.
    pub forgive_failure_every_secs: u64,
    /// Argon2 checks of static identities' passwords at once (each ~19 MiB).
    pub max_concurrent_password_checks: usize,
    /// Checks that may wait for a turn; more are refused at once.
    pub max_waiting_password_checks: usize,
    /// Sessions one listener holds at once (0: no cap).
    pub max_sessions: usize,
    /// Sessions one identity holds on one listener at once (0: no cap).
    pub max_sessions_per_identity: usize,
}

impl Default for LoginsSection {
    fn default() -> Self {
        let throttle = ThrottleSettings::default();
        let gate = GateSettings::default();
        let sessions = SessionLimits::default();
        Self {
            max_failures_per_address: throttle.failures_per_address,
            max_failures_per_user: throttle.failures_per_name,
            forgive_failure_every_secs: throttle.forgive_every.as_secs(),
            max_concurrent_password_checks: gate.max_running,
            max_waiting_password_checks: gate.max_waiting,
            max_sessions: sessions.max_sessions,
            max_sessions_per_identity: sessions.max_sessions_per_identity,
        }
    }
}

impl LoginsSection {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_failures_per_address == 0 || self.max_failures_per_user == 0 {
            bail!("logins.max_failures_per_address and max_failures_per_user must be at least 1");
        }
        if self.forgive_failure_every_secs == 0 {
            bail!("logins.forgive_failure_every_secs must be at least 1");
        }
        if self.max_concurrent_password_checks == 0 {
            bail!("logins.max_concurrent_password_checks must be at least 1");
        }
        Ok(())
    }

    pub fn throttle(&self) -> ThrottleSettings {
        ThrottleSettings {
            failures_per_address: self.max_failures_per_address,
            failures_per_name: self.max_failures_per_user,
            forgive_every: Duration::from_secs(self.forgive_failure_every_secs),
            ..ThrottleSettings::default()
        }
    }

    pub fn gate(&self) -> GateSettings {
        GateSettings {
            max_running: self.max_concurrent_password_checks,
            max_waiting: self.max_waiting_password_checks,
            ..GateSettings::default()
        }
    }

    pub fn sessions(&self) -> SessionLimits {
        SessionLimits {
            max_sessions: self.max_sessions,
            max_sessions_per_identity: self.max_sessions_per_identity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<LoginsSection> {
        let s: LoginsSection = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn defaults_and_bad_values() {
        let d = parse("").unwrap();
        assert_eq!(d.max_sessions, 80);
        assert_eq!(d.max_sessions_per_identity, 20);
        assert_eq!(d.throttle().failures_per_address, 10);
        let set = parse("max_sessions = 5\nmax_failures_per_user = 3").unwrap();
        assert_eq!(set.sessions().max_sessions, 5);
        assert_eq!(set.throttle().failures_per_name, 3);
        for (text, expected) in [
            ("max_failures_per_address = 0", "at least 1"),
            ("forgive_failure_every_secs = 0", "at least 1"),
            ("max_concurrent_password_checks = 0", "at least 1"),
            ("max_sesions = 3", "unknown field"),
            ("max_sessions = -1", "invalid value"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
