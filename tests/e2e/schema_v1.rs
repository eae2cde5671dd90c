//! A ledger written by the last release of event schema v1
//! (tests/fixtures/ledger-v1, made by tests/fixtures/make-ledger-v1.sh)
//! still verifies, replays word for word as the v1 tools printed it, and
//! exports as a bundle that checks offline; and today's gateway appends
//! schema v2 events to it without breaking any of that. Six years of
//! evidence depend on old bodies staying readable.

use std::path::Path;

use vigil_proto::events::{event::Kind, Event, Protocol};
use vigil_tests::{show, Gateway, GatewaySpec, SqlRequestView, AGENT, AGENT_PASSWORD};

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ledger-v1"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The gateway of today, started on a copy of the v1 ledger.
fn gateway_on_the_v1_ledger() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("data"), &dir.path().join("data"));
    for key in ["body.keys", "masking.key"] {
        std::fs::copy(fixture().join(key), dir.path().join(key)).unwrap();
    }
    let mut spec = GatewaySpec::new();
    spec.policy = "builtin:phi-default".into();
    std::fs::write(
        dir.path().join("vigil.toml"),
        spec.config(&dir.path().join("data")),
    )
    .unwrap();
    let args = Gateway::config_args(dir.path());
    Gateway::spawn(spec, dir, args)
}

/// Session ids in the order of their first event in the log.
fn sessions(events: &[Event]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in events {
        if !seen.contains(&e.session_id) {
            seen.push(e.session_id.clone());
        }
    }
    seen
}

fn replay_all(gw: &Gateway, sessions: &[String]) -> String {
    let mut out = String::new();
    for s in sessions {
        let o = gw.audit(&["replay", "--session", s]);
        out.push_str(&String::from_utf8_lossy(&o.stdout));
        out.push_str(&format!("(exit {})\n", o.status.code().unwrap_or(-1)));
    }
    out
}

#[test]
fn a_v1_ledger_verifies_replays_and_exports_unchanged_and_takes_v2_events() {
    let expected_key = std::fs::read_to_string(fixture().join("verifier.key")).unwrap();
    let gw = gateway_on_the_v1_ledger();
    assert_eq!(
        gw.verifier_key(),
        expected_key.trim(),
        "the ledger's own key"
    );

    // Verify: every leaf, checkpoint and body of the v1 log.
    let verify = gw.audit(&["verify"]);
    assert!(verify.status.success(), "{}", show(&verify));

    // Replay: the same transcript, word for word, as the v1 tools printed.
    let v1_events = gw.events();
    assert!(
        v1_events.len() > 20,
        "the fixture holds {} events",
        v1_events.len()
    );
    let v1_sessions = sessions(&v1_events);
    let expected = std::fs::read_to_string(fixture().join("replay.txt")).unwrap();
    assert_eq!(replay_all(&gw, &v1_sessions), expected);

    // The v1 bodies read as v2: PostgreSQL sessions, SQL details filled.
    assert!(v1_events
        .iter()
        .filter(|e| !matches!(e.kind, Some(Kind::ApprovalDecision(_))))
        .all(|e| e.protocol() == Protocol::Postgres));
    assert!(v1_events.iter().any(|e| matches!(&e.kind,
        Some(Kind::Request(r)) if r.statement() == "SELECT $1::text || '!' AS answer"
            && r.protocol_path() == "extended"
            && r.parameters().first().is_some_and(|p| p.value == b"forty-one"))));
    // The masked SELECT's Response names the masked column (v1's
    // MaskedColumn read as MaskedField).
    assert!(
        v1_events.iter().any(|e| matches!(&e.kind,
            Some(Kind::Response(r)) if r.masked.iter().any(|m| m.field == "ssn"))),
        "a masked column on record"
    );
    assert!(v1_events.iter().any(|e| matches!(&e.kind,
        Some(Kind::SessionClosed(c)) if c.reason_text() == "shutdown")));

    // Export: a bundle of a v1 session checks offline.
    let bundle = gw.dir.path().join("v1.bundle.json");
    let made = gw.audit(&[
        "export",
        "--session",
        &v1_sessions[0],
        "--out",
        &bundle.display().to_string(),
    ]);
    assert!(made.status.success(), "{}", show(&made));
    let key = gw.verifier_key();
    let checked = gw.vigil(&[
        "audit",
        "check-bundle",
        &bundle.display().to_string(),
        "--key",
        &key,
    ]);
    assert!(checked.status.success(), "{}", show(&checked));

    // Today's gateway appends v2 events to the same log.
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-c", "SELECT 'written by v2' AS v2"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let events = gw.wait_for_events(|evs| {
        evs.iter()
            .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
            .count()
            > v1_events
                .iter()
                .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
                .count()
    });
    let verify = gw.audit(&["verify"]);
    assert!(verify.status.success(), "{}", show(&verify));
    let new_session = sessions(&events)
        .into_iter()
        .find(|s| !v1_sessions.contains(s))
        .expect("a v2 session");
    let replay = gw.audit(&["replay", "--session", &new_session]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{}", show(&replay));
    assert!(
        text.contains("statement #0 (simple): SELECT 'written by v2' AS v2"),
        "{text}"
    );
    // And the old sessions still replay exactly as before.
    assert_eq!(replay_all(&gw, &v1_sessions), expected);
}
