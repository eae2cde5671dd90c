//! One held operation and the rules that decide it: a pure state machine.
//!
//! A statement that policy sends to review becomes an [`Operation`] in the
//! `pending` state. From there exactly one transition ends it:
//!
//! ```text
//!            +-- enough distinct approvals ---> approved
//! pending ---+-- one eligible denial ---------> denied
//!            +-- its time to live ran out ----> expired
//!            +-- the client cancelled or left -> withdrawn
//! ```
//!
//! A closed operation never changes again. Time is passed in (Unix
//! nanoseconds), never read here, so every rule is table-tested.

use serde::{Deserialize, Serialize};

/// Who someone is, as the identity layer verified it: a subject is only
/// unique within its issuer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    pub subject: String,
    pub issuer: String,
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.subject, self.issuer)
    }
}

/// Someone asking to decide: who they are and every group or role the
/// identity layer verified for them (OIDC groups and the Vigil roles they
/// map to; a static identity's groups).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub principal: Principal,
    pub groups: Vec<String>,
}

impl Approver {
    /// Whether any of this approver's groups is one of `allowed`.
    pub fn in_any(&self, allowed: &[String]) -> bool {
        self.groups.iter().any(|g| allowed.iter().any(|a| a == g))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Approved,
    Denied,
    Expired,
    Withdrawn,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Withdrawn => "withdrawn",
        }
    }

    /// Whether the proxy may run the statement.
    pub fn releases(self) -> bool {
        self == State::Approved
    }

    /// The state as OperationClosed records it (pending is never recorded).
    pub fn to_event(self) -> vigil_proto::events::OperationState {
        use vigil_proto::events::OperationState as Recorded;
        match self {
            State::Pending => Recorded::Unspecified,
            State::Approved => Recorded::Approved,
            State::Denied => Recorded::Denied,
            State::Expired => Recorded::Expired,
            State::Withdrawn => Recorded::Withdrawn,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }

    /// The verdict as ApprovalDecision records it.
    pub fn to_event(self) -> vigil_proto::events::Verdict {
        match self {
            Verdict::Approve => vigil_proto::events::Verdict::Approve,
            Verdict::Deny => vigil_proto::events::Verdict::Deny,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Verdict::Approve),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

/// One approver's recorded vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub approver: Approver,
    pub verdict: Verdict,
    /// Required for a denial; optional for an approval.
    pub reason: String,
    pub at_unix_nanos: i64,
}

/// How and when an operation left `pending`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    pub at_unix_nanos: i64,
    pub reason: String,
}

/// What a proxy asks to be reviewed (from its PendingOperation event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub operation_id: String,
    pub session_id: String,
    pub connection: String,
    pub requester: Principal,
    /// The statement with its literals masked: this text reaches approvers,
    /// webhooks and chat, so it must not carry PHI. The exact text stays in
    /// the ledger's sealed body of the Request.
    pub statement: String,
    pub rule: String,
    pub approver_groups: Vec<String>,
    pub quorum: u32,
    pub opened_unix_nanos: i64,
    pub expires_unix_nanos: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub hold: Hold,
    pub state: State,
    pub votes: Vec<Vote>,
    pub closure: Option<Closure>,
}

/// Why a hold cannot become an operation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    #[error("the operation has no id")]
    NoId,
    #[error("operation {0}: a quorum of 0 would approve without anyone deciding")]
    ZeroQuorum(String),
    #[error("operation {0}: no approver group is named, so nobody could decide it")]
    NoApprovers(String),
    #[error("operation {0}: it expires before it was opened")]
    ExpiresBeforeOpened(String),
    #[error("operation {0}: the requester has no subject")]
    NoRequester(String),
}

/// Why a vote was not recorded. Each says what the approver can do about it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("operation {id} is already {state}; nothing more can be decided")]
    NotPending { id: String, state: State },
    #[error("operation {id} expired before this decision arrived")]
    Expired { id: String },
    #[error("{approver} is in none of the approver groups of operation {id} ({groups})")]
    NotAnApprover {
        id: String,
        approver: Principal,
        groups: String,
    },
    #[error("{approver} asked for operation {id} and cannot decide it (no self-approval)")]
    SelfApproval { id: String, approver: Principal },
    #[error("{approver} has already decided operation {id}; another approver is needed")]
    AlreadyVoted { id: String, approver: Principal },
    #[error("a denial needs a reason (operation {id})")]
    ReasonRequired { id: String },
}

/// What a recorded vote did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decided {
    /// Counted; more approvals are needed.
    Counted { approvals: u32, quorum: u32 },
    /// This vote closed the operation (approved or denied).
    Closed(State),
}

impl Operation {
    /// A new pending operation, after checking that it can ever be decided.
    pub fn open(hold: Hold) -> Result<Self, HoldError> {
        let id = hold.operation_id.clone();
        if id.trim().is_empty() {
            return Err(HoldError::NoId);
        }
        if hold.quorum == 0 {
            return Err(HoldError::ZeroQuorum(id));
        }
        if hold.approver_groups.iter().all(|g| g.trim().is_empty()) {
            return Err(HoldError::NoApprovers(id));
        }
        if hold.expires_unix_nanos <= hold.opened_unix_nanos {
            return Err(HoldError::ExpiresBeforeOpened(id));
        }
        if hold.requester.subject.is_empty() {
            return Err(HoldError::NoRequester(id));
        }
        Ok(Self {
            hold,
            state: State::Pending,
            votes: Vec::new(),
            closure: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.hold.operation_id
    }

    /// Distinct approvers who approved so far.
    pub fn approvals(&self) -> u32 {
        self.votes
            .iter()
            .filter(|v| v.verdict == Verdict::Approve)
            .count() as u32
    }

    /// Records one approver's vote. A single eligible denial denies (any
    /// approver may veto); `quorum` distinct approvals approve. Nothing
    /// changes when the vote is refused.
    pub fn decide(
        &mut self,
        approver: &Approver,
        verdict: Verdict,
        reason: &str,
        now_unix_nanos: i64,
    ) -> Result<Decided, DecideError> {
        let id = self.id().to_string();
        if self.state != State::Pending {
            return Err(DecideError::NotPending {
                id,
                state: self.state,
            });
        }
        if now_unix_nanos >= self.hold.expires_unix_nanos {
            return Err(DecideError::Expired { id });
        }
        if !approver.in_any(&self.hold.approver_groups) {
            return Err(DecideError::NotAnApprover {
                id,
                approver: approver.principal.clone(),
                groups: self.hold.approver_groups.join(", "),
            });
        }
        if approver.principal == self.hold.requester {
            return Err(DecideError::SelfApproval {
                id,
                approver: approver.principal.clone(),
            });
        }
        if self
            .votes
            .iter()
            .any(|v| v.approver.principal == approver.principal)
        {
            return Err(DecideError::AlreadyVoted {
                id,
                approver: approver.principal.clone(),
            });
        }
        let reason = reason.trim();
        if verdict == Verdict::Deny && reason.is_empty() {
            return Err(DecideError::ReasonRequired { id });
        }
        self.votes.push(Vote {
            approver: approver.clone(),
            verdict,
            reason: reason.to_string(),
            at_unix_nanos: now_unix_nanos,
        });
        match verdict {
            Verdict::Deny => {
                self.close(
                    State::Denied,
                    format!("denied by {}: {reason}", approver.principal),
                    now_unix_nanos,
                );
                Ok(Decided::Closed(State::Denied))
            }
            Verdict::Approve if self.approvals() >= self.hold.quorum => {
                let by: Vec<String> = self
                    .votes
                    .iter()
                    .map(|v| v.approver.principal.to_string())
                    .collect();
                self.close(
                    State::Approved,
                    format!("approved by {}", by.join(", ")),
                    now_unix_nanos,
                );
                Ok(Decided::Closed(State::Approved))
            }
            Verdict::Approve => Ok(Decided::Counted {
                approvals: self.approvals(),
                quorum: self.hold.quorum,
            }),
        }
    }

    /// Expires a pending operation whose time to live is over. Returns
    /// whether it did.
    pub fn expire_if_due(&mut self, now_unix_nanos: i64) -> bool {
        if self.state != State::Pending || now_unix_nanos < self.hold.expires_unix_nanos {
            return false;
        }
        let reason = if self.votes.is_empty() {
            "no approver decided within the time to live".to_string()
        } else {
            format!(
                "only {} of {} approvals within the time to live",
                self.approvals(),
                self.hold.quorum
            )
        };
        self.close(State::Expired, reason, now_unix_nanos);
        true
    }

    /// The client cancelled the statement or went away. Returns whether the
    /// operation was still pending (a decided one stays decided).
    pub fn withdraw(&mut self, reason: &str, now_unix_nanos: i64) -> bool {
        if self.state != State::Pending {
            return false;
        }
        self.close(State::Withdrawn, reason.to_string(), now_unix_nanos);
        true
    }

    fn close(&mut self, state: State, reason: String, at_unix_nanos: i64) {
        self.state = state;
        self.closure = Some(Closure {
            at_unix_nanos,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::{approver, principal, SEC};

    fn hold(quorum: u32) -> Hold {
        Hold {
            operation_id: "op-1".into(),
            session_id: "s-1".into(),
            connection: "ehr".into(),
            requester: principal("agent-7"),
            statement: "DELETE FROM patients WHERE id = ?".into(),
            rule: "deletes-need-review".into(),
            approver_groups: vec!["dba".into(), "privacy-office".into()],
            quorum,
            opened_unix_nanos: 100 * SEC,
            expires_unix_nanos: 400 * SEC,
        }
    }

    #[test]
    fn one_approval_from_an_eligible_approver_approves_a_quorum_of_one() {
        let mut op = Operation::open(hold(1)).unwrap();
        let d = op
            .decide(
                &approver("alice", &["dba"]),
                Verdict::Approve,
                "",
                110 * SEC,
            )
            .unwrap();
        assert_eq!(d, Decided::Closed(State::Approved));
        assert!(op.state.releases());
        assert!(op.closure.unwrap().reason.contains("alice"));
    }

    #[test]
    fn a_quorum_of_two_needs_two_distinct_approvers() {
        let mut op = Operation::open(hold(2)).unwrap();
        let alice = approver("alice", &["dba"]);
        assert_eq!(
            op.decide(&alice, Verdict::Approve, "", 110 * SEC).unwrap(),
            Decided::Counted {
                approvals: 1,
                quorum: 2
            }
        );
        // Alice again does not count twice.
        assert!(matches!(
            op.decide(&alice, Verdict::Approve, "", 111 * SEC),
            Err(DecideError::AlreadyVoted { .. })
        ));
        assert_eq!(op.state, State::Pending);
        // Same subject from another issuer is another person.
        let other_issuer = Approver {
            principal: Principal {
                subject: "alice".into(),
                issuer: "https://other.example".into(),
            },
            groups: vec!["privacy-office".into()],
        };
        assert_eq!(
            op.decide(&other_issuer, Verdict::Approve, "ok", 112 * SEC)
                .unwrap(),
            Decided::Closed(State::Approved)
        );
        assert_eq!(op.votes.len(), 2);
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table of (input, expected-error check)
    fn refused_votes_change_nothing() {
        let base = Operation::open(hold(1)).unwrap();
        let cases: Vec<(Approver, Verdict, &str, i64, fn(&DecideError) -> bool)> = vec![
            // not in any approver group
            (
                approver("bob", &["nurses"]),
                Verdict::Approve,
                "",
                110 * SEC,
                |e| matches!(e, DecideError::NotAnApprover { .. }),
            ),
            // the requester, even if in an approver group
            (
                approver("agent-7", &["dba"]),
                Verdict::Approve,
                "",
                110 * SEC,
                |e| matches!(e, DecideError::SelfApproval { .. }),
            ),
            // a denial without a reason (blank counts as none)
            (
                approver("alice", &["dba"]),
                Verdict::Deny,
                "   ",
                110 * SEC,
                |e| matches!(e, DecideError::ReasonRequired { .. }),
            ),
            // at or after the expiry instant
            (
                approver("alice", &["dba"]),
                Verdict::Approve,
                "",
                400 * SEC,
                |e| matches!(e, DecideError::Expired { .. }),
            ),
        ];
        for (who, verdict, reason, now, expected) in cases {
            let mut op = base.clone();
            let err = op.decide(&who, verdict, reason, now).unwrap_err();
            assert!(expected(&err), "{who:?} {verdict:?}: got {err}");
            assert_eq!(
                op, base,
                "a refused vote must leave the operation as it was"
            );
        }
    }

    #[test]
    fn one_denial_with_a_reason_denies_even_after_approvals() {
        let mut op = Operation::open(hold(2)).unwrap();
        op.decide(
            &approver("alice", &["dba"]),
            Verdict::Approve,
            "",
            110 * SEC,
        )
        .unwrap();
        let d = op
            .decide(
                &approver("carol", &["privacy-office"]),
                Verdict::Deny,
                "no ticket for this deletion",
                120 * SEC,
            )
            .unwrap();
        assert_eq!(d, Decided::Closed(State::Denied));
        let closure = op.closure.clone().unwrap();
        assert!(closure.reason.contains("no ticket for this deletion"));
        assert_eq!(closure.at_unix_nanos, 120 * SEC);
    }

    #[test]
    fn a_closed_operation_never_changes() {
        let mut op = Operation::open(hold(1)).unwrap();
        op.decide(
            &approver("alice", &["dba"]),
            Verdict::Approve,
            "",
            110 * SEC,
        )
        .unwrap();
        let decided = op.clone();
        assert!(matches!(
            op.decide(
                &approver("carol", &["dba"]),
                Verdict::Deny,
                "late",
                120 * SEC
            ),
            Err(DecideError::NotPending {
                state: State::Approved,
                ..
            })
        ));
        assert!(!op.expire_if_due(500 * SEC));
        assert!(!op.withdraw("client left", 130 * SEC));
        assert_eq!(op, decided);
    }

    #[test]
    fn expiry_happens_at_the_time_to_live_and_says_how_far_votes_got() {
        let mut op = Operation::open(hold(2)).unwrap();
        assert!(!op.expire_if_due(399 * SEC));
        op.decide(
            &approver("alice", &["dba"]),
            Verdict::Approve,
            "",
            110 * SEC,
        )
        .unwrap();
        assert!(op.expire_if_due(400 * SEC));
        assert_eq!(op.state, State::Expired);
        assert!(op.closure.unwrap().reason.contains("only 1 of 2"));
    }

    #[test]
    fn withdrawal_closes_only_a_pending_operation() {
        let mut op = Operation::open(hold(1)).unwrap();
        assert!(op.withdraw("the client cancelled the statement", 105 * SEC));
        assert_eq!(op.state, State::Withdrawn);
        assert!(!op.state.releases());
    }

    #[test]
    fn holds_that_could_never_be_decided_are_refused() {
        let mut h = hold(0);
        assert!(matches!(
            Operation::open(h.clone()),
            Err(HoldError::ZeroQuorum(_))
        ));
        h.quorum = 1;
        h.approver_groups = vec![" ".into()];
        assert!(matches!(
            Operation::open(h.clone()),
            Err(HoldError::NoApprovers(_))
        ));
        h.approver_groups = vec!["dba".into()];
        h.expires_unix_nanos = h.opened_unix_nanos;
        assert!(matches!(
            Operation::open(h.clone()),
            Err(HoldError::ExpiresBeforeOpened(_))
        ));
        h.expires_unix_nanos += SEC;
        h.operation_id = String::new();
        assert_eq!(Operation::open(h.clone()), Err(HoldError::NoId));
        h.operation_id = "op".into();
        h.requester.subject = String::new();
        assert!(matches!(Operation::open(h), Err(HoldError::NoRequester(_))));
    }
}
