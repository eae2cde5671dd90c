//! Reading event bytes of either schema version.
//!
//! Bodies written before schema v2 stay in ledgers for six years, and a proxy
//! of the previous release may still publish v1 during a rolling upgrade.
//! [`decode`] reads both and hands out v2 only: a v1 event is upgraded in
//! memory, field by field, without changing what a transcript shows: v1's
//! words become enums whose labels are the same words (except two stages,
//! `statement` now `request` and `row_size` now `result_size`, which no
//! transcript prints), and an end reason text is split into reason and
//! detail only where they join back word for word. So two v1 texts stay
//! whole as an unspecified reason's detail: "error: audit ledger
//! unavailable" reads as reason `error` (v2 writes `audit_unavailable`),
//! and "client_disconnected (while a statement was held for review)" as
//! unspecified (v2 writes `client_left_while_held`); a query over the
//! structured reason must allow for both. The stored bytes, which the
//! leaves commit to, are never rewritten (the ledger stores what it
//! receives, see `vigil_bus::Delivery::received`).
//!
//! The versions are told apart by the field number of the kind (10-22 in
//! v1, 30 and up in v2): decoding with the other version's schema leaves
//! the kind empty, since protobuf skips unknown fields.

use prost::Message;

use crate::events::{self as v2, event::Kind};
use crate::events_v1::{self as v1, event::Kind as KindV1};

/// Why event bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a protobuf message of either schema.
    #[error("not an event: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A well-formed message with no kind of either version: written by a
    /// newer schema, or not an event at all.
    #[error("event {0:?} has no kind this release knows (a newer schema, or not an event)")]
    UnknownKind(String),
    /// More than one kind field (of either version, or one a later
    /// schema may define): no writer makes that (a oneof has one value,
    /// v2 reserves v1's numbers), and a reader that knows every one of
    /// them would take the last, so it could read another event than the
    /// one the leaf committed to.
    #[error("event {0:?} carries more than one kind")]
    Ambiguous(String),
}

/// Decodes event bytes of schema v2 or v1 into a v2 event.
pub fn decode(bytes: &[u8]) -> Result<v2::Event, DecodeError> {
    let event = v2::Event::decode(bytes)?;
    if kind_fields(bytes)? > 1 {
        return Err(DecodeError::Ambiguous(event.event_id));
    }
    if event.kind.is_some() {
        return Ok(event);
    }
    match v1::Event::decode(bytes)? {
        old if old.kind.is_some() => Ok(upgrade(old)),
        _ => Err(DecodeError::UnknownKind(event.event_id)),
    }
}

/// Field numbers where a kind is, was, or may one day be: v1's kinds
/// (10-22) and v2's kinds with room for more (30-99).
fn is_kind_field(tag: u32) -> bool {
    (10..=22).contains(&tag) || (30..=99).contains(&tag)
}

/// How many top-level fields of `bytes` are kinds.
fn kind_fields(mut bytes: &[u8]) -> Result<usize, prost::DecodeError> {
    use prost::encoding::{decode_key, skip_field, DecodeContext};
    let mut kinds = 0;
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes)?;
        if is_kind_field(tag) {
            kinds += 1;
        }
        skip_field(wire_type, tag, &mut bytes, DecodeContext::default())?;
    }
    Ok(kinds)
}

/// A v1 event as v2. v1 knew one protocol, PostgreSQL: every event of a
/// client session is of the SQL family.
fn upgrade(old: v1::Event) -> v2::Event {
    let in_session = matches!(
        old.kind,
        Some(
            KindV1::SessionOpened(_)
                | KindV1::LoginRefused(_)
                | KindV1::Request(_)
                | KindV1::Decision(_)
                | KindV1::Response(_)
                | KindV1::SessionClosed(_)
                | KindV1::CancelRequested(_)
                | KindV1::PendingOperation(_)
        )
    );
    let protocol = match &old.kind {
        Some(KindV1::SessionOpened(o)) => v2::Protocol::from_label(&o.protocol),
        Some(KindV1::LoginRefused(l)) => v2::Protocol::from_label(&l.protocol),
        _ if in_session => v2::Protocol::Postgres,
        _ => v2::Protocol::Unspecified,
    };
    v2::Event {
        event_id: old.event_id,
        time_unix_nanos: old.time_unix_nanos,
        session_id: old.session_id,
        seq: old.seq,
        identity: old.identity.map(identity),
        connection: old.connection,
        protocol: protocol as i32,
        kind: old.kind.map(kind),
    }
}

fn identity(i: v1::Identity) -> v2::Identity {
    v2::Identity {
        subject: i.subject,
        issuer: i.issuer,
        groups: i.groups,
        client_id: i.client_id,
        token_id: i.token_id,
        auth_method: i.auth_method,
        roles: i.roles,
        scopes: i.scopes,
        expires_unix_secs: i.expires_unix_secs,
    }
}

fn kind(k: KindV1) -> Kind {
    match k {
        KindV1::SessionOpened(o) => Kind::SessionOpened(v2::SessionOpened {
            client_addr: o.client_addr,
            tls: o.tls,
            upstream_tls: o.upstream_tls,
            // v1 did not record it.
            upstream_addr: String::new(),
            detail: Some(v2::session_opened::Detail::Sql(v2::SqlSession {
                database: o.database,
                client_user: o.client_user,
                upstream_user: o.upstream_user,
                application_name: o.application_name,
            })),
        }),
        KindV1::LoginRefused(l) => Kind::LoginRefused(v2::LoginRefused {
            client_addr: l.client_addr,
            tls: l.tls,
            reason_code: l.reason_code,
            reason: l.reason,
            detail: Some(v2::login_refused::Detail::Sql(v2::SqlSession {
                database: l.database,
                client_user: l.client_user,
                upstream_user: String::new(),
                application_name: l.application_name,
            })),
        }),
        KindV1::Request(r) => Kind::Request(v2::Request::new_sql(
            r.statement_seq,
            v2::SqlStatement {
                text: r.statement,
                path: v2::SqlProtocolPath::from_label(&r.protocol_path) as i32,
                statement_name: r.statement_name,
                portal_name: r.portal_name,
                parameters: r.parameters.into_iter().map(parameter).collect(),
            },
        )),
        KindV1::Decision(d) => Kind::Decision(v2::Decision {
            request_seq: d.statement_seq,
            outcome: v2::Outcome::from_label(&d.outcome) as i32,
            rule: d.rule,
            reason: d.reason,
            policy: d.policy,
            stage: v2::Stage::from_label(&d.stage) as i32,
        }),
        KindV1::Response(r) => Kind::Response(v2::Response {
            request_seq: r.statement_seq,
            duration_micros: r.duration_micros,
            not_executed: r.not_executed,
            error_code: r.error_code,
            error_message: r.error_message,
            masked: r.masked_columns.into_iter().map(masked).collect(),
            detail: Some(v2::response::Detail::Sql(v2::SqlResult {
                command_tags: r.command_tags,
                rows: r.rows,
                stopped_after_rows: r.stopped_after_rows,
            })),
        }),
        KindV1::SessionClosed(c) => {
            let (reason, detail) = v2::SessionClosed::split_reason_text(&c.reason);
            Kind::SessionClosed(v2::SessionClosed {
                reason: reason as i32,
                detail,
                requests: c.statements,
                duration_micros: c.duration_micros,
            })
        }
        KindV1::PendingOperation(p) => Kind::PendingOperation(v2::PendingOperation {
            operation_id: p.operation_id,
            request_seq: p.statement_seq,
            text: p.statement,
            rule: p.rule,
            approver_groups: p.approver_groups,
            quorum: p.quorum,
            expires_unix_nanos: p.expires_unix_nanos,
        }),
        KindV1::ApprovalDecision(a) => Kind::ApprovalDecision(v2::ApprovalDecision {
            operation_id: a.operation_id,
            approver: a.approver.map(identity),
            verdict: v2::Verdict::from_label(&a.verdict) as i32,
            reason: a.reason,
        }),
        KindV1::OperationClosed(c) => Kind::OperationClosed(v2::OperationClosed {
            operation_id: c.operation_id,
            state: v2::OperationState::from_label(&c.state) as i32,
            reason: c.reason,
            approvers: c.approvers.into_iter().map(identity).collect(),
            rule: c.rule,
        }),
        KindV1::RetentionPruned(r) => Kind::RetentionPruned(v2::RetentionPruned {
            first_index: r.first_index,
            end_index: r.end_index,
            cutoff_unix_nanos: r.cutoff_unix_nanos,
            policy: r.policy,
            entries_pruned: r.entries_pruned,
            period_nanos: r.period_nanos,
            minimum_period_nanos: r.minimum_period_nanos,
            forced: r.forced,
        }),
        KindV1::CancelRequested(c) => Kind::CancelRequested(v2::CancelRequested {
            client_addr: c.client_addr,
            forwarded: c.forwarded,
        }),
        KindV1::AccessGranted(g) => Kind::AccessGranted(v2::AccessGranted {
            grant_id: g.grant_id,
            grantee: g.grantee.map(identity),
            connection: g.connection,
            rule: g.rule,
            expires_unix_nanos: g.expires_unix_nanos,
            reason: g.reason,
        }),
        KindV1::GrantRevoked(r) => Kind::GrantRevoked(v2::GrantRevoked {
            grant_id: r.grant_id,
            reason: r.reason,
        }),
    }
}

fn parameter(p: v1::Parameter) -> v2::Parameter {
    v2::Parameter {
        is_null: p.is_null,
        binary: p.binary,
        value: p.value,
        length: p.length,
        sha256: p.sha256,
    }
}

fn masked(m: v1::MaskedColumn) -> v2::MaskedField {
    v2::MaskedField {
        field: m.column,
        source: m.source,
        method: m.method,
        values_masked: m.values_masked,
        detector_hits: m.detector_hits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_request() -> v1::Event {
        v1::Event {
            event_id: "0193a1b2-0000-7000-8000-000000000001".into(),
            time_unix_nanos: 1_700_000_000_000_000_000,
            session_id: "0193a1b2-0000-7000-8000-000000000000".into(),
            seq: 1,
            identity: Some(v1::Identity {
                subject: "agent".into(),
                ..Default::default()
            }),
            connection: "ehr".into(),
            kind: Some(KindV1::Request(v1::Request {
                statement_seq: 0,
                statement: "SELECT 1".into(),
                protocol_path: "extended".into(),
                statement_name: "s1".into(),
                portal_name: String::new(),
                parameters: vec![v1::Parameter {
                    value: b"42".to_vec(),
                    ..Default::default()
                }],
            })),
        }
    }

    #[test]
    fn a_v1_body_reads_as_the_same_facts_in_v2() {
        let bytes = v1_request().encode_to_vec();
        let event = decode(&bytes).unwrap();
        assert_eq!(event.seq, 1);
        assert_eq!(event.connection, "ehr");
        assert_eq!(event.protocol(), v2::Protocol::Postgres);
        assert_eq!(event.identity.unwrap().subject, "agent");
        let Some(Kind::Request(r)) = event.kind else {
            panic!("not a request")
        };
        let sql = r.sql().unwrap();
        assert_eq!(sql.text, "SELECT 1");
        assert_eq!(sql.path(), v2::SqlProtocolPath::Extended);
        assert_eq!(sql.statement_name, "s1");
        assert_eq!(sql.parameters[0].value, b"42");
    }

    #[test]
    fn a_decision_reads_the_same_from_its_request_or_its_own_event() {
        let decision = v2::Decision {
            request_seq: 99, // overwritten by the request's own number
            outcome: v2::Outcome::Deny as i32,
            rule: "no-drop".into(),
            stage: v2::Stage::Request as i32,
            ..Default::default()
        };
        let request = v2::Request::new_sql(7, Default::default()).decided(decision.clone());
        let carried = v2::Event {
            kind: Some(Kind::Request(request)),
            ..Default::default()
        };
        // Through the bytes: an old reader sees an unknown field 2 and
        // skips it; this one keeps it.
        let carried = decode(&carried.encode_to_vec()).unwrap();
        let d = carried.decision().expect("the request carries it");
        assert_eq!((d.request_seq, d.rule.as_str()), (7, "no-drop"));

        let separate = v2::Event {
            kind: Some(Kind::Decision(decision)),
            ..Default::default()
        };
        assert_eq!(separate.decision().unwrap().rule, "no-drop");
        let undecided = v2::Event {
            kind: Some(Kind::Request(v2::Request::new_sql(7, Default::default()))),
            ..Default::default()
        };
        assert!(undecided.decision().is_none());
        assert!(decode(&v1_request().encode_to_vec())
            .unwrap()
            .decision()
            .is_none());
    }

    #[test]
    fn a_v2_body_reads_as_itself() {
        let event = v2::Event {
            event_id: "e".into(),
            protocol: v2::Protocol::Mcp as i32,
            kind: Some(Kind::Decision(v2::Decision {
                request_seq: 3,
                outcome: v2::Outcome::Review as i32,
                stage: v2::Stage::Request as i32,
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(decode(&event.encode_to_vec()).unwrap(), event);
    }

    #[test]
    fn v1_words_become_enums() {
        let mut old = v1_request();
        old.kind = Some(KindV1::Decision(v1::Decision {
            statement_seq: 4,
            outcome: "deny".into(),
            stage: "statement".into(),
            ..Default::default()
        }));
        let Some(Kind::Decision(d)) = decode(&old.encode_to_vec()).unwrap().kind else {
            panic!("not a decision")
        };
        assert_eq!(
            (d.request_seq, d.outcome(), d.stage()),
            (4, v2::Outcome::Deny, v2::Stage::Request)
        );

        old.kind = Some(KindV1::OperationClosed(v1::OperationClosed {
            state: "expired".into(),
            ..Default::default()
        }));
        let Some(Kind::OperationClosed(c)) = decode(&old.encode_to_vec()).unwrap().kind else {
            panic!("not an operation end")
        };
        assert_eq!(c.state(), v2::OperationState::Expired);
    }

    /// Every v1 kind keeps every fact it carried.
    #[test]
    fn every_v1_kind_upgrades_with_all_its_fields() {
        let who = || v1::Identity {
            subject: "alice".into(),
            issuer: "https://idp".into(),
            ..Default::default()
        };
        let upgraded = |kind: KindV1| -> Kind {
            let mut e = v1_request();
            e.kind = Some(kind);
            decode(&e.encode_to_vec()).unwrap().kind.unwrap()
        };
        let Kind::SessionOpened(o) = upgraded(KindV1::SessionOpened(v1::SessionOpened {
            client_addr: "10.0.0.9:5000".into(),
            protocol: "postgres".into(),
            database: "ehr".into(),
            client_user: "agent".into(),
            upstream_user: "svc".into(),
            application_name: "psql".into(),
            tls: true,
            upstream_tls: true,
        })) else {
            panic!()
        };
        let sql = o.sql().unwrap();
        assert_eq!(
            (o.client_addr.as_str(), o.tls, o.upstream_tls),
            ("10.0.0.9:5000", true, true)
        );
        assert_eq!(
            (
                &*sql.database,
                &*sql.client_user,
                &*sql.upstream_user,
                &*sql.application_name
            ),
            ("ehr", "agent", "svc", "psql")
        );
        let Kind::LoginRefused(l) = upgraded(KindV1::LoginRefused(v1::LoginRefused {
            client_addr: "a".into(),
            database: "d".into(),
            client_user: "u".into(),
            application_name: "p".into(),
            tls: true,
            reason_code: "expired".into(),
            reason: "token expired".into(),
            ..Default::default()
        })) else {
            panic!()
        };
        assert_eq!(
            (&*l.reason_code, &*l.reason, l.tls),
            ("expired", "token expired", true)
        );
        assert_eq!(l.sql().unwrap().client_user, "u");
        let Kind::Response(r) = upgraded(KindV1::Response(v1::Response {
            statement_seq: 7,
            command_tags: vec!["SELECT 2".into()],
            rows: 2,
            error_code: "42501".into(),
            error_message: "no".into(),
            duration_micros: 9,
            not_executed: true,
            masked_columns: vec![v1::MaskedColumn {
                column: "ssn".into(),
                source: "public.p.ssn".into(),
                method: "redact".into(),
                values_masked: 2,
                detector_hits: [("ssn".to_string(), 2)].into(),
            }],
            stopped_after_rows: 1000,
        })) else {
            panic!()
        };
        let result = r.sql().unwrap();
        assert_eq!(
            (r.request_seq, r.duration_micros, r.not_executed),
            (7, 9, true)
        );
        assert_eq!((&*r.error_code, &*r.error_message), ("42501", "no"));
        assert_eq!(
            (
                result.command_tags.clone(),
                result.rows,
                result.stopped_after_rows
            ),
            (vec!["SELECT 2".to_string()], 2, 1000)
        );
        assert_eq!(r.masked[0].field, "ssn");
        assert_eq!(r.masked[0].detector_hits["ssn"], 2);
        let Kind::SessionClosed(c) = upgraded(KindV1::SessionClosed(v1::SessionClosed {
            reason: "upstream_closed: reset".into(),
            statements: 4,
            duration_micros: 5,
        })) else {
            panic!()
        };
        assert_eq!(
            (c.reason(), &*c.detail, c.requests, c.duration_micros),
            (v2::EndReason::UpstreamClosed, "reset", 4, 5)
        );
        let Kind::PendingOperation(p) = upgraded(KindV1::PendingOperation(v1::PendingOperation {
            operation_id: "op".into(),
            statement_seq: 3,
            statement: "DELETE ...".into(),
            rule: "r".into(),
            approver_groups: vec!["g".into()],
            quorum: 2,
            expires_unix_nanos: 11,
        })) else {
            panic!()
        };
        assert_eq!(
            (
                &*p.operation_id,
                p.request_seq,
                &*p.text,
                &*p.rule,
                p.quorum,
                p.expires_unix_nanos
            ),
            ("op", 3, "DELETE ...", "r", 2, 11)
        );
        assert_eq!(p.approver_groups, ["g"]);
        let Kind::ApprovalDecision(a) = upgraded(KindV1::ApprovalDecision(v1::ApprovalDecision {
            operation_id: "op".into(),
            approver: Some(who()),
            verdict: "approve".into(),
            reason: "ok".into(),
        })) else {
            panic!()
        };
        assert_eq!((a.verdict(), &*a.reason), (v2::Verdict::Approve, "ok"));
        assert_eq!(a.approver.unwrap().issuer, "https://idp");
        let Kind::OperationClosed(c) = upgraded(KindV1::OperationClosed(v1::OperationClosed {
            operation_id: "op".into(),
            state: "approved".into(),
            reason: "by alice".into(),
            approvers: vec![who()],
            rule: "r".into(),
        })) else {
            panic!()
        };
        assert_eq!(
            (c.state(), &*c.reason, &*c.rule, c.approvers.len()),
            (v2::OperationState::Approved, "by alice", "r", 1)
        );
        let Kind::AccessGranted(g) = upgraded(KindV1::AccessGranted(v1::AccessGranted {
            grant_id: "g1".into(),
            grantee: Some(who()),
            connection: "ehr".into(),
            rule: "r".into(),
            expires_unix_nanos: 12,
            reason: "on call".into(),
        })) else {
            panic!()
        };
        assert_eq!(
            (
                &*g.grant_id,
                &*g.connection,
                &*g.rule,
                g.expires_unix_nanos,
                &*g.reason
            ),
            ("g1", "ehr", "r", 12, "on call")
        );
        assert_eq!(g.grantee.unwrap().subject, "alice");
        let Kind::GrantRevoked(r) = upgraded(KindV1::GrantRevoked(v1::GrantRevoked {
            grant_id: "g1".into(),
            reason: "done".into(),
        })) else {
            panic!()
        };
        assert_eq!((&*r.grant_id, &*r.reason), ("g1", "done"));
        let Kind::CancelRequested(c) = upgraded(KindV1::CancelRequested(v1::CancelRequested {
            client_addr: "x".into(),
            forwarded: true,
        })) else {
            panic!()
        };
        assert_eq!((&*c.client_addr, c.forwarded), ("x", true));
        let Kind::RetentionPruned(r) = upgraded(KindV1::RetentionPruned(v1::RetentionPruned {
            first_index: 1,
            end_index: 2,
            cutoff_unix_nanos: 3,
            policy: "older than 6y".into(),
            entries_pruned: 1,
            period_nanos: 4,
            minimum_period_nanos: 5,
            forced: true,
        })) else {
            panic!()
        };
        assert_eq!(
            (
                r.first_index,
                r.end_index,
                r.cutoff_unix_nanos,
                &*r.policy,
                r.entries_pruned,
                r.period_nanos,
                r.minimum_period_nanos,
                r.forced
            ),
            (1, 2, 3, "older than 6y", 1, 4, 5, true)
        );
        // Decisions and requests: see the tests above.
    }

    #[test]
    fn bytes_of_no_known_kind_are_refused_with_a_reason() {
        // Not protobuf at all.
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff]),
            Err(DecodeError::Malformed(_))
        ));
        // A well-formed message whose kind is of neither version: field 99.
        let mut bytes = v2::Event {
            event_id: "x".into(),
            ..Default::default()
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[0x9a, 0x06, 0x00]); // field 99, length 0
        assert!(matches!(decode(&bytes), Err(DecodeError::UnknownKind(id)) if id == "x"));
        // Empty input is an event of no kind.
        assert!(matches!(decode(&[]), Err(DecodeError::UnknownKind(_))));
        // A v1 kind and a v2 kind in one body.
        let mut both = v1_request().encode_to_vec();
        both.extend(
            v2::Event {
                kind: Some(Kind::GrantRevoked(v2::GrantRevoked::default())),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert!(matches!(decode(&both), Err(DecodeError::Ambiguous(_))));
        // A v2 kind and one a later schema may define (field 50).
        let mut later = v2::Event {
            kind: Some(Kind::GrantRevoked(v2::GrantRevoked::default())),
            ..Default::default()
        }
        .encode_to_vec();
        later.extend_from_slice(&[0x92, 0x03, 0x00]); // field 50, length 0
        assert!(matches!(decode(&later), Err(DecodeError::Ambiguous(_))));
        // Two values of the same v2 kind field: still one kind field each,
        // but two of them.
        let one = v2::Event {
            kind: Some(Kind::GrantRevoked(v2::GrantRevoked::default())),
            ..Default::default()
        }
        .encode_to_vec();
        let twice = [one.clone(), one].concat();
        assert!(matches!(decode(&twice), Err(DecodeError::Ambiguous(_))));
    }
}
