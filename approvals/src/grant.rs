//! Time-boxed grants (just-in-time access): an approver lets one agent run
//! the statements one review rule would hold, on one connection, until a
//! deadline, without a vote per statement. A grant can be revoked early.
//!
//! A grant is a standing exception, so it is narrower than a vote: it needs
//! a reason, it cannot outlive the rule's longest grant, and it is refused
//! for rules that need more than one approver per statement (one person
//! must not be able to skip a quorum that the policy asks for).

use serde::{Deserialize, Serialize};

use crate::operation::{Approver, Principal};

/// What the policy says about granting one review rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRule {
    pub rule: String,
    pub approver_groups: Vec<String>,
    pub quorum: u32,
    /// The longest grant an approver may issue for this rule.
    pub max_grant_nanos: i64,
}

/// What an approver asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRequest {
    pub grant_id: String,
    pub grantee: Principal,
    pub connection: String,
    pub rule: String,
    pub duration_nanos: i64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub by: Principal,
    pub reason: String,
    pub at_unix_nanos: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub grantee: Principal,
    pub connection: String,
    pub rule: String,
    pub issued_by: Principal,
    pub reason: String,
    pub issued_unix_nanos: i64,
    pub expires_unix_nanos: i64,
    pub revocation: Option<Revocation>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("{approver} is in none of the approver groups of rule {rule:?} ({groups})")]
    NotAnApprover {
        approver: Principal,
        rule: String,
        groups: String,
    },
    #[error("{approver} cannot grant access to themselves (no self-approval)")]
    SelfGrant { approver: Principal },
    #[error("rule {rule:?} needs {quorum} approvers per statement; a grant from one approver would bypass that, so it has no grants")]
    QuorumRule { rule: String, quorum: u32 },
    #[error("a grant for rule {rule:?} may last at most {max_secs} s (asked for {asked_secs} s)")]
    TooLong {
        rule: String,
        max_secs: i64,
        asked_secs: i64,
    },
    #[error("a grant must last a positive time")]
    NotPositive,
    #[error("a grant needs a reason (it is a standing exception to review)")]
    ReasonRequired,
    #[error("a grant needs an id, a grantee and a connection")]
    Incomplete,
    #[error("grant {id} is not active (revoked or expired); there is nothing to revoke")]
    NotActive { id: String },
    #[error("{by} may not revoke grant {id}: only its issuer or an approver of rule {rule:?} may")]
    MayNotRevoke {
        id: String,
        by: Principal,
        rule: String,
    },
}

impl Grant {
    /// Issues a grant after checking the approver and the rule's limits.
    pub fn issue(
        request: GrantRequest,
        approver: &Approver,
        rule: &GrantRule,
        now_unix_nanos: i64,
    ) -> Result<Grant, GrantError> {
        if request.grant_id.is_empty()
            || request.grantee.subject.is_empty()
            || request.connection.is_empty()
        {
            return Err(GrantError::Incomplete);
        }
        if !approver.in_any(&rule.approver_groups) {
            return Err(GrantError::NotAnApprover {
                approver: approver.principal.clone(),
                rule: rule.rule.clone(),
                groups: rule.approver_groups.join(", "),
            });
        }
        if approver.principal == request.grantee {
            return Err(GrantError::SelfGrant {
                approver: approver.principal.clone(),
            });
        }
        if rule.quorum > 1 {
            return Err(GrantError::QuorumRule {
                rule: rule.rule.clone(),
                quorum: rule.quorum,
            });
        }
        if request.duration_nanos <= 0 {
            return Err(GrantError::NotPositive);
        }
        if request.duration_nanos > rule.max_grant_nanos {
            return Err(GrantError::TooLong {
                rule: rule.rule.clone(),
                max_secs: rule.max_grant_nanos / 1_000_000_000,
                asked_secs: request.duration_nanos / 1_000_000_000,
            });
        }
        let reason = request.reason.trim().to_string();
        if reason.is_empty() {
            return Err(GrantError::ReasonRequired);
        }
        Ok(Grant {
            id: request.grant_id,
            grantee: request.grantee,
            connection: request.connection,
            rule: request.rule,
            issued_by: approver.principal.clone(),
            reason,
            issued_unix_nanos: now_unix_nanos,
            expires_unix_nanos: now_unix_nanos.saturating_add(request.duration_nanos),
            revocation: None,
        })
    }

    pub fn is_active(&self, now_unix_nanos: i64) -> bool {
        self.revocation.is_none()
            && now_unix_nanos >= self.issued_unix_nanos
            && now_unix_nanos < self.expires_unix_nanos
    }

    /// Whether this grant lets `who` run a statement that `rule` holds, on
    /// `connection`, now.
    pub fn covers(&self, who: &Principal, connection: &str, rule: &str, now: i64) -> bool {
        self.is_active(now)
            && &self.grantee == who
            && self.connection == connection
            && self.rule == rule
    }

    /// Ends the grant early. Its issuer or any approver of its rule may.
    pub fn revoke(
        &mut self,
        by: &Approver,
        rule: &GrantRule,
        reason: &str,
        now_unix_nanos: i64,
    ) -> Result<(), GrantError> {
        if !self.is_active(now_unix_nanos) {
            return Err(GrantError::NotActive {
                id: self.id.clone(),
            });
        }
        if by.principal != self.issued_by && !by.in_any(&rule.approver_groups) {
            return Err(GrantError::MayNotRevoke {
                id: self.id.clone(),
                by: by.principal.clone(),
                rule: self.rule.clone(),
            });
        }
        self.revocation = Some(Revocation {
            by: by.principal.clone(),
            reason: reason.trim().to_string(),
            at_unix_nanos: now_unix_nanos,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::{approver, principal, SEC};

    fn rule(quorum: u32) -> GrantRule {
        GrantRule {
            rule: "bulk-export".into(),
            approver_groups: vec!["dba".into()],
            quorum,
            max_grant_nanos: 3600 * SEC,
        }
    }

    fn request(duration_secs: i64) -> GrantRequest {
        GrantRequest {
            grant_id: "g-1".into(),
            grantee: principal("agent-7"),
            connection: "ehr".into(),
            rule: "bulk-export".into(),
            duration_nanos: duration_secs * SEC,
            reason: "INC-4411 nightly reconciliation".into(),
        }
    }

    #[test]
    fn a_grant_covers_exactly_its_agent_connection_rule_and_time() {
        let g = Grant::issue(
            request(600),
            &approver("alice", &["dba"]),
            &rule(1),
            1000 * SEC,
        )
        .unwrap();
        let agent = principal("agent-7");
        assert!(g.covers(&agent, "ehr", "bulk-export", 1000 * SEC));
        assert!(g.covers(&agent, "ehr", "bulk-export", 1599 * SEC));
        assert!(
            !g.covers(&agent, "ehr", "bulk-export", 1600 * SEC),
            "expired"
        );
        assert!(!g.covers(&agent, "billing", "bulk-export", 1100 * SEC));
        assert!(!g.covers(&agent, "ehr", "deletes", 1100 * SEC));
        assert!(!g.covers(&principal("agent-8"), "ehr", "bulk-export", 1100 * SEC));
        assert!(
            !g.covers(&agent, "ehr", "bulk-export", 999 * SEC),
            "before issue"
        );
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table of (input, expected-error check)
    fn grants_outside_the_rules_are_refused() {
        let alice = approver("alice", &["dba"]);
        let cases: Vec<(GrantRequest, Approver, GrantRule, fn(&GrantError) -> bool)> = vec![
            (request(600), approver("bob", &["nurses"]), rule(1), |e| {
                matches!(e, GrantError::NotAnApprover { .. })
            }),
            (request(600), approver("agent-7", &["dba"]), rule(1), |e| {
                matches!(e, GrantError::SelfGrant { .. })
            }),
            (request(600), alice.clone(), rule(2), |e| {
                matches!(e, GrantError::QuorumRule { quorum: 2, .. })
            }),
            (request(3601), alice.clone(), rule(1), |e| {
                matches!(e, GrantError::TooLong { max_secs: 3600, .. })
            }),
            (request(0), alice.clone(), rule(1), |e| {
                matches!(e, GrantError::NotPositive)
            }),
            (
                GrantRequest {
                    reason: " ".into(),
                    ..request(600)
                },
                alice.clone(),
                rule(1),
                |e| matches!(e, GrantError::ReasonRequired),
            ),
            (
                GrantRequest {
                    connection: String::new(),
                    ..request(600)
                },
                alice.clone(),
                rule(1),
                |e| matches!(e, GrantError::Incomplete),
            ),
        ];
        for (req, who, rule, expected) in cases {
            let err = Grant::issue(req.clone(), &who, &rule, 1000 * SEC).unwrap_err();
            assert!(expected(&err), "{req:?} by {who:?}: got {err}");
        }
    }

    #[test]
    fn revocation_ends_a_grant_and_only_issuer_or_approvers_may_revoke() {
        let mut g = Grant::issue(
            request(600),
            &approver("alice", &["dba"]),
            &rule(1),
            1000 * SEC,
        )
        .unwrap();
        assert!(matches!(
            g.revoke(&approver("agent-7", &["agents"]), &rule(1), "", 1100 * SEC),
            Err(GrantError::MayNotRevoke { .. })
        ));
        g.revoke(
            &approver("dave", &["dba"]),
            &rule(1),
            "done early",
            1100 * SEC,
        )
        .unwrap();
        assert!(!g.covers(&principal("agent-7"), "ehr", "bulk-export", 1101 * SEC));
        assert_eq!(g.revocation.as_ref().unwrap().by, principal("dave"));
        assert!(matches!(
            g.revoke(&approver("alice", &["dba"]), &rule(1), "", 1200 * SEC),
            Err(GrantError::NotActive { .. })
        ));
    }
}
