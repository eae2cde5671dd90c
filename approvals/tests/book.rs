//! The durable book: what survives a restart, what the ledger is told, and
//! in what order.

use vigil_approvals::{
    hold_of, Approver, Book, BookError, DecideError, Decided, GrantRequest, GrantRule, Principal,
    State, Verdict,
};
use vigil_proto::events::{event::Kind, Event, Identity, PendingOperation};

const SEC: i64 = 1_000_000_000;

fn pending(op: &str, quorum: u32, opened: i64, ttl: i64) -> Event {
    Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        time_unix_nanos: opened,
        session_id: "0190-session".into(),
        seq: 4,
        identity: Some(Identity {
            subject: "agent-7".into(),
            issuer: "https://idp.example".into(),
            groups: vec!["agents".into()],
            ..Default::default()
        }),
        connection: "ehr".into(),
        protocol: vigil_proto::events::Protocol::Postgres as i32,
        kind: Some(Kind::PendingOperation(PendingOperation {
            operation_id: op.into(),
            request_seq: 2,
            text: "DELETE FROM patients WHERE id = $1".into(),
            rule: "deletes".into(),
            approver_groups: vec!["dba".into()],
            quorum,
            expires_unix_nanos: opened + ttl,
        })),
    }
}

fn approver(subject: &str) -> Approver {
    Approver {
        principal: Principal {
            subject: subject.into(),
            issuer: "https://idp.example".into(),
        },
        groups: vec!["dba".into()],
    }
}

#[test]
fn pending_operations_votes_and_unpublished_events_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut book = Book::open(dir.path()).unwrap();
        book.hold(hold_of(&pending("op-a", 2, 100 * SEC, 300 * SEC)).unwrap())
            .unwrap();
        book.hold(hold_of(&pending("op-b", 1, 101 * SEC, 300 * SEC)).unwrap())
            .unwrap();
        let (d, out) = book
            .decide("op-a", &approver("alice"), Verdict::Approve, "", 110 * SEC)
            .unwrap();
        assert_eq!(
            d,
            Decided::Counted {
                approvals: 1,
                quorum: 2
            }
        );
        assert_eq!(out.len(), 1);
        // Not acknowledged by the bus before the "crash".
    }
    let mut book = Book::open(dir.path()).unwrap();
    let pending_ops: Vec<&str> = book
        .operations(Some(State::Pending))
        .iter()
        .map(|o| o.id())
        .collect();
    assert_eq!(pending_ops, ["op-a", "op-b"]);
    assert_eq!(book.operation("op-a").unwrap().approvals(), 1);
    let again = book.unpublished().unwrap();
    assert_eq!(
        again.len(),
        1,
        "the unacknowledged ApprovalDecision is still owed"
    );
    assert!(matches!(
        again[0].event.kind,
        Some(Kind::ApprovalDecision(_))
    ));

    // Alice's vote still counts after the restart: she cannot vote twice,
    // and a second approver completes the quorum.
    assert!(matches!(
        book.decide("op-a", &approver("alice"), Verdict::Approve, "", 120 * SEC),
        Err(BookError::Decide(DecideError::AlreadyVoted { .. }))
    ));
    let (d, out) = book
        .decide(
            "op-a",
            &approver("bob"),
            Verdict::Approve,
            "checked",
            121 * SEC,
        )
        .unwrap();
    assert_eq!(d, Decided::Closed(State::Approved));
    // The operation's events are a stream of their own: seq 0, 1, 2.
    let all: Vec<_> = book.unpublished().unwrap();
    let seqs: Vec<u64> = all.iter().map(|o| o.event.seq).collect();
    assert_eq!(seqs, [0, 1, 2]);
    assert!(all.iter().all(|o| o.event.session_id == "op-a"));
    match &out[1].event.kind {
        Some(Kind::OperationClosed(c)) => {
            assert_eq!(c.state(), vigil_proto::events::OperationState::Approved);
            let who: Vec<&str> = c.approvers.iter().map(|i| i.subject.as_str()).collect();
            assert_eq!(who, ["alice", "bob"]);
        }
        other => panic!("expected OperationClosed, got {other:?}"),
    }
    book.published(&all.iter().map(|o| o.key).collect::<Vec<_>>())
        .unwrap();
    assert!(book.unpublished().unwrap().is_empty());
    drop(book);
    let book = Book::open(dir.path()).unwrap();
    assert!(
        book.unpublished().unwrap().is_empty(),
        "acknowledged events stay gone"
    );
    assert_eq!(book.operation("op-a").unwrap().state, State::Approved);
}

#[test]
fn a_replayed_hold_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Book::open(dir.path()).unwrap();
    let event = pending("op-a", 1, 100 * SEC, 300 * SEC);
    book.hold(hold_of(&event).unwrap()).unwrap();
    book.decide(
        "op-a",
        &approver("alice"),
        Verdict::Deny,
        "no ticket",
        110 * SEC,
    )
    .unwrap();
    // The bus delivers the PendingOperation again (a consumer restart).
    let op = book.hold(hold_of(&event).unwrap()).unwrap();
    assert_eq!(op.state, State::Denied);
}

#[test]
fn late_votes_expire_the_operation_and_expiry_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Book::open(dir.path()).unwrap();
    book.hold(hold_of(&pending("op-a", 1, 100 * SEC, 10 * SEC)).unwrap())
        .unwrap();
    book.hold(hold_of(&pending("op-b", 1, 100 * SEC, 20 * SEC)).unwrap())
        .unwrap();
    assert_eq!(book.next_expiry(), Some(110 * SEC));
    assert!(matches!(
        book.decide("op-a", &approver("alice"), Verdict::Approve, "", 110 * SEC),
        Err(BookError::Decide(DecideError::Expired { .. }))
    ));
    assert_eq!(book.operation("op-a").unwrap().state, State::Expired);
    let out = book.expire_due(125 * SEC).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(book.operation("op-b").unwrap().state, State::Expired);
    assert_eq!(book.next_expiry(), None);
    let closed: Vec<String> = book
        .unpublished()
        .unwrap()
        .iter()
        .filter_map(|o| match &o.event.kind {
            Some(Kind::OperationClosed(c)) => {
                Some(format!("{} {}", c.operation_id, c.state().label()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(closed, ["op-a expired", "op-b expired"]);
}

#[test]
fn the_pending_queue_follows_every_change_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut book = Book::open(dir.path()).unwrap();
        for (i, op) in ["op-a", "op-b", "op-c", "op-d"].into_iter().enumerate() {
            let ttl = (40 - 10 * i as i64) * SEC;
            book.hold(hold_of(&pending(op, 2, 100 * SEC, ttl)).unwrap())
                .unwrap();
        }
        // op-d expires first (110 s), op-a last (140 s).
        assert_eq!(book.pending_count(), 4);
        assert_eq!(book.next_expiry(), Some(110 * SEC));
        // A vote that does not close keeps it pending; one that does, not.
        book.decide("op-d", &approver("alice"), Verdict::Approve, "", 105 * SEC)
            .unwrap();
        assert_eq!(book.pending_count(), 4);
        book.decide(
            "op-d",
            &approver("bob"),
            Verdict::Deny,
            "not this one",
            106 * SEC,
        )
        .unwrap();
        assert_eq!(book.operation("op-d").unwrap().state, State::Denied);
        assert_eq!(book.next_expiry(), Some(120 * SEC));
        assert!(book
            .withdraw("op-b", "client left", 107 * SEC)
            .unwrap()
            .is_some());
        let pending: Vec<&str> = book
            .operations(Some(State::Pending))
            .iter()
            .map(|o| o.id())
            .collect();
        assert_eq!(pending, ["op-a", "op-c"]);
    }
    let mut book = Book::open(dir.path()).unwrap();
    assert_eq!(book.pending_count(), 2);
    assert_eq!(book.next_expiry(), Some(120 * SEC));
    // Due at exactly its expiry, not a nanosecond before.
    assert!(book.expire_due(120 * SEC - 1).unwrap().is_empty());
    assert_eq!(book.expire_due(120 * SEC).unwrap().len(), 1);
    assert_eq!(book.operation("op-c").unwrap().state, State::Expired);
    assert_eq!(book.pending_count(), 1);
    assert_eq!(book.next_expiry(), Some(140 * SEC));
    assert_eq!(book.operations(None).len(), 4);
}

#[test]
fn grants_are_durable_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let rule = GrantRule {
        rule: "deletes".into(),
        approver_groups: vec!["dba".into()],
        quorum: 1,
        max_grant_nanos: 3600 * SEC,
    };
    let agent = Principal {
        subject: "agent-7".into(),
        issuer: "https://idp.example".into(),
    };
    {
        let mut book = Book::open(dir.path()).unwrap();
        let request = GrantRequest {
            grant_id: "g-1".into(),
            grantee: agent.clone(),
            connection: "ehr".into(),
            rule: "deletes".into(),
            duration_nanos: 600 * SEC,
            reason: "INC-1 cleanup".into(),
        };
        book.issue_grant(request.clone(), &approver("alice"), &rule, 1000 * SEC)
            .unwrap();
        assert!(matches!(
            book.issue_grant(request, &approver("alice"), &rule, 1000 * SEC),
            Err(BookError::DuplicateGrant(_))
        ));
    }
    let mut book = Book::open(dir.path()).unwrap();
    assert!(book
        .covering_grant(&agent, "ehr", "deletes", 1100 * SEC)
        .is_some());
    book.revoke_grant("g-1", &approver("bob"), &rule, "finished", 1200 * SEC)
        .unwrap();
    assert!(book
        .covering_grant(&agent, "ehr", "deletes", 1201 * SEC)
        .is_none());
    let kinds: Vec<&str> = book
        .unpublished()
        .unwrap()
        .iter()
        .map(|o| o.event.kind_name())
        .collect();
    assert_eq!(kinds, ["access_granted", "grant_revoked"]);
}

#[test]
fn failed_notifications_are_numbered_in_their_own_stream_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let failure = |state: &str| vigil_proto::events::NotificationFailed {
        operation_id: "op-n".into(),
        state: state.into(),
        target: "https://hooks.example".into(),
        attempts: 6,
        error: "HTTP 503".into(),
    };
    {
        let mut book = Book::open(dir.path()).unwrap();
        book.hold(hold_of(&pending("op-n", 1, 100 * SEC, 300 * SEC)).unwrap())
            .unwrap();
        let out = book
            .notification_failed(failure("pending"), 101 * SEC)
            .unwrap();
        assert!(out[0]
            .event
            .session_id
            .starts_with(vigil_approvals::book::NOTICE_STREAM_PREFIX));
        assert_eq!(out[0].event.seq, 0);
        assert_eq!(out[0].event.connection, "ehr", "the operation's connection");
    }
    let mut book = Book::open(dir.path()).unwrap();
    let out = book
        .notification_failed(failure("approved"), 102 * SEC)
        .unwrap();
    assert_eq!(out[0].event.seq, 1, "numbering goes on after a restart");
    let stream = out[0].event.session_id.clone();
    // A book begun anew has a stream of its own.
    let other = tempfile::tempdir().unwrap();
    let out = Book::open(other.path())
        .unwrap()
        .notification_failed(failure("pending"), 103 * SEC)
        .unwrap();
    assert_eq!(out[0].event.seq, 0);
    assert_ne!(out[0].event.session_id, stream);
    let unpublished: Vec<(String, u64)> = book
        .unpublished()
        .unwrap()
        .into_iter()
        .map(|o| (o.event.kind_name().to_string(), o.event.seq))
        .collect();
    assert_eq!(
        unpublished,
        [
            ("notification_failed".to_string(), 0),
            ("notification_failed".to_string(), 1)
        ],
        "both wait in the outbox until the bus has them"
    );
}

#[test]
fn an_unreadable_record_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = rocksdb::DB::open_default(dir.path()).unwrap();
        db.put(b"op/op-x", b"{not json").unwrap();
    }
    let err = Book::open(dir.path()).err().expect("a corrupt record");
    assert!(err.to_string().contains("op/op-x"), "{err}");
}
