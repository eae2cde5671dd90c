//! The token deadline: a session lives only as long as the access token
//! that proved who is asking (its `exp` plus the issuer's skew). At the
//! deadline the session ends; a request that arrives after it is refused
//! and recorded (its Request with a deny Decision of rule `token-expired`,
//! stage `session`), then the session ends, whatever the protocol: a
//! PostgreSQL session cannot log in again, an HTTP caller gets a 401 and
//! comes back with a new token.
//!
//! Static identities never expire: their deadline never comes.

use std::time::SystemTime;

use vigil_proto::events::{event::Kind, Request, Stage};
use vigil_proxy_core::identity::{rfc3339, VerifiedIdentity};
use vigil_proxy_core::policy::{Outcome, Verdict};
use vigil_proxy_core::SinkError;

use crate::recorder::SessionRecorder;

/// The rule named in a refusal for an expired token.
pub const RULE: &str = "token-expired";

/// When the session's identity stops being honoured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenDeadline {
    /// The token's own expiry (what the client is told).
    expires_at: Option<SystemTime>,
    /// The expiry plus the issuer's skew (when the session ends).
    deadline: Option<SystemTime>,
}

impl TokenDeadline {
    pub fn of(identity: &VerifiedIdentity) -> Self {
        Self {
            expires_at: identity.expires_at,
            deadline: identity.deadline(),
        }
    }

    /// Resolves at the deadline; never, for an identity that does not
    /// expire.
    pub async fn reached(&self) {
        match self.deadline {
            Some(at) => {
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                tokio::time::sleep(left).await
            }
            None => std::future::pending().await,
        }
    }

    /// The token's expiry, if the deadline has passed by `now`.
    pub fn expired_at(&self, now: SystemTime) -> Option<SystemTime> {
        self.expires_at
            .filter(|_| self.deadline.is_some_and(|deadline| now >= deadline))
    }

    /// What the client is told when the session ends for it.
    pub fn message(&self) -> String {
        match self.expires_at {
            Some(at) => format!(
                "Vigil: the access token of this session expired at {}; reconnect with a new token",
                rfc3339(at)
            ),
            None => String::new(),
        }
    }

    /// Records a request that arrived after the deadline, with the
    /// refusing Decision, durably (the adapter then ends the session).
    pub async fn record_refusal(
        &self,
        recorder: &SessionRecorder,
        request: Request,
        policy_name: &str,
    ) -> Result<(), SinkError> {
        let when = self.expires_at.map(rfc3339).unwrap_or_default();
        let refused = Verdict {
            outcome: Outcome::Deny,
            rule: RULE.into(),
            reason: format!("the session's access token expired at {when}"),
            max_rows: None,
            over_limit: Outcome::Deny,
            shapes: (),
        };
        let decision = refused.to_decision(request.request_seq, policy_name, Stage::Session);
        recorder
            .record_durably(vec![Kind::Request(request.decided(decision))])
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn expiring(in_secs: i64, leeway: u64) -> VerifiedIdentity {
        let now = SystemTime::now();
        let at = if in_secs >= 0 {
            now + Duration::from_secs(in_secs as u64)
        } else {
            now - Duration::from_secs((-in_secs) as u64)
        };
        VerifiedIdentity {
            expires_at: Some(at),
            expiry_leeway: Duration::from_secs(leeway),
            ..VerifiedIdentity::default()
        }
    }

    #[test]
    fn the_deadline_is_the_expiry_plus_the_leeway() {
        let now = SystemTime::now();
        // Expired 10 s ago, with 30 s of leeway: not yet.
        assert_eq!(TokenDeadline::of(&expiring(-10, 30)).expired_at(now), None);
        // Expired 10 s ago, 5 s of leeway: passed.
        assert!(TokenDeadline::of(&expiring(-10, 5))
            .expired_at(now)
            .is_some());
        // A static identity never expires.
        let never = TokenDeadline::of(&VerifiedIdentity::default());
        assert_eq!(never.expired_at(now + Duration::from_secs(1 << 30)), None);
        assert!(never.message().is_empty());
        assert!(TokenDeadline::of(&expiring(-10, 5))
            .message()
            .contains("expired at"));
    }

    #[tokio::test(start_paused = true)]
    async fn reached_waits_for_the_deadline_and_never_without_one() {
        let soon = TokenDeadline::of(&expiring(2, 1));
        let never = TokenDeadline::of(&VerifiedIdentity::default());
        tokio::select! {
            _ = soon.reached() => {}
            _ = never.reached() => panic!("a static identity's deadline came"),
        }
    }
}
