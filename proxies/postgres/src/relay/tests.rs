//! The frontend's plan, message by message, without a database: what goes
//! upstream in a message's place, what is recorded before it, when it is
//! held, and when the registry of statements takes a change (only once
//! the server confirms it).

use std::sync::Mutex as StdMutex;

use bytes::BufMut;
use vigil_proto::events::{Event, Protocol};
use vigil_proxy_core::approval::{GrantFuture, GrantQuery, HoldFuture};
use vigil_proxy_core::sink::RecordFuture;
use vigil_proxy_core::{EventSink, VerifiedIdentity};

use vigil_proxy_core::mask::DetectorConfig;
use vigil_sql::policy::Policy;

use super::backend::{Backend, Effects, Lookups, Masking};
use super::*;
use crate::catalog::TableInfo;
use crate::messages::BackendMessage;
use crate::UpstreamConfig;

const POLICY: &str = r#"
name = "plan"
default = "allow"
[limits]
max_rows = 2
over_limit = "deny"
[review]
approver_groups = ["privacy"]
[[masking.columns]]
table = "patients"
columns = ["ssn"]
format = "redact"
[[rules]]
name = "no-drop"
action = "deny"
kinds = ["drop"]
[[rules]]
name = "exports"
action = "review"
kinds = ["copy_out"]
[[rules]]
name = "phi-masked"
action = "mask"
reads_phi = true
"#;

#[derive(Default)]
struct Collecting(StdMutex<Vec<Event>>);

impl EventSink for Collecting {
    fn record(&self, event: Event) -> RecordFuture {
        self.0.lock().unwrap().push(event);
        Box::pin(async { Ok(()) })
    }
}

/// An approval service that never answers: a plan only decides to hold.
#[derive(Debug)]
struct Silent;

impl Approvals for Silent {
    fn covering_grant(&self, _: GrantQuery) -> GrantFuture {
        Box::pin(std::future::pending())
    }
    fn hold(&self, _: Event) -> HoldFuture {
        Box::pin(std::future::pending())
    }
    fn withdraw(&self, _: &str, _: &str) {}
}

async fn frontend(approvals: Option<Arc<dyn Approvals>>) -> Frontend {
    frontend_with(POLICY, approvals).await
}

async fn frontend_with(policy: &str, approvals: Option<Arc<dyn Approvals>>) -> Frontend {
    let policy = Arc::new(Policy::parse(policy).unwrap());
    let identity = VerifiedIdentity {
        subject: "agent".into(),
        issuer: "test".into(),
        ..VerifiedIdentity::default()
    };
    let session = Arc::new(SessionContext::new("ehr", &identity, Protocol::Postgres));
    let sink = Arc::new(Collecting::default());
    let recorder = SessionRecorder::open(session, sink, Default::default())
        .await
        .unwrap();
    let gate = Gate::new(policy, "agent", &[], "ehr");
    // Never connected: the plan does no I/O.
    let catalog = Arc::new(Catalog::new(UpstreamConfig {
        host: "127.0.0.1".into(),
        port: 1,
        user: "nobody".into(),
        password: None,
        database: None,
        connect_timeout_ms: 1,
        tls: None,
    }));
    Frontend {
        shared: Arc::new(Shared::new(recorder, &gate)),
        gate,
        catalog,
        database: "test".into(),
        deadline: TokenDeadline::of(&identity),
        identity,
        approvals,
        hold_cancel: None,
    }
}

fn frame(raw: Bytes) -> Frame {
    Frame { tag: raw[0], raw }
}

fn bind(portal: &str, statement: &str) -> Frame {
    frame(codec::message(b'B', |b| {
        b.put_slice(portal.as_bytes());
        b.put_u8(0);
        b.put_slice(statement.as_bytes());
        b.put_u8(0);
        b.put_i16(0); // parameter formats
        b.put_i16(0); // parameters
        b.put_i16(0); // result formats
    }))
}

fn execute(portal: &str) -> Frame {
    frame(codec::message(b'E', |b| {
        b.put_slice(portal.as_bytes());
        b.put_u8(0);
        b.put_i32(0);
    }))
}

/// Plans one frame; returns the step and what would go upstream.
fn plan(front: &mut Frontend, frame: &Frame) -> (Step, Bytes) {
    let message = ClientMessage::decode(frame).unwrap();
    let mut out = BytesMut::new();
    let step = front.plan(frame, message, &mut out);
    (step, out.freeze())
}

fn recorded(step: Step) -> Vec<Kind> {
    match step {
        Step::Record(events) | Step::RecordOverlapped(events) => events,
        Step::Hold(_) => panic!("held, not recorded"),
        Step::Terminate => panic!("terminated"),
    }
}

#[tokio::test]
async fn only_a_read_that_changes_nothing_goes_upstream_before_its_record_is_durable() {
    let mut front = frontend(None).await;
    // Never read from the catalog: no read is free.
    let (step, _) = plan(&mut front, &frame(codec::query("SELECT 1")));
    assert!(matches!(step, Step::Record(_)));
    // A database without code of its users.
    front
        .gate
        .set_shadows(Arc::new(vigil_sql::classify::Shadows::new([], [], [])));
    for (sql, overlapped) in [
        ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", true),
        ("SELECT count(*) FROM patients", true),
        ("SELECT nextval('s')", false),
        ("SELECT * FROM patients FOR UPDATE", false),
        ("INSERT INTO t VALUES (1)", false),
        ("NOTIFY c", false),
        ("SELECT 1; SELECT pg_advisory_lock(1)", false),
        ("SELECT * FROM (SELECT * FROM patients FOR UPDATE) p", false),
        ("not sql", false),
    ] {
        let (step, _) = plan(&mut front, &frame(codec::query(sql)));
        assert_eq!(
            matches!(step, Step::RecordOverlapped(_)),
            overlapped,
            "{sql}"
        );
    }
    // The extended protocol: an Execute inherits what its Parse was.
    for (sql, overlapped) in [("SELECT $1::int", true), ("SELECT nextval($1)", false)] {
        let (step, _) = plan(&mut front, &frame(results::parse_message("", sql)));
        assert!(matches!(step, Step::Record(ref e) if e.is_empty()));
        plan(&mut front, &bind("", ""));
        let (step, _) = plan(&mut front, &execute(""));
        assert_eq!(
            matches!(step, Step::RecordOverlapped(_)),
            overlapped,
            "{sql}"
        );
    }
    // A session that changed the schema: nothing of it is free from then
    // on (a prepared CREATE VIEW may run again by Execute).
    let mut ddl = frontend(None).await;
    ddl.gate
        .set_shadows(Arc::new(vigil_sql::classify::Shadows::new([], [], [])));
    let (step, _) = plan(&mut ddl, &frame(codec::query("SELECT 1")));
    assert!(matches!(step, Step::RecordOverlapped(_)));
    plan(
        &mut ddl,
        &frame(results::parse_message("v", "CREATE VIEW v AS SELECT 1")),
    );
    let (step, _) = plan(&mut ddl, &frame(codec::query("SELECT 1")));
    assert!(matches!(step, Step::Record(_)));
    // A database that holds code of its users: nothing is free.
    front.gate.set_shadows(Arc::new(
        vigil_sql::classify::Shadows::new([], [], []).with_user_code(true),
    ));
    let (step, _) = plan(&mut front, &frame(codec::query("SELECT 1")));
    assert!(matches!(step, Step::Record(_)));
}

/// The decision on a statement: its one event, a Request carrying it.
fn decision(events: &[Kind]) -> &vigil_proto::events::Decision {
    match events {
        [Kind::Request(r)] => r
            .decision
            .as_ref()
            .expect("the Request carries its Decision"),
        other => panic!("one Request, not {other:?}"),
    }
}

/// The messages `bytes` holds, as (type, decoded text of a Query or Parse).
fn upstream_messages(bytes: &Bytes) -> Vec<ClientMessage> {
    let mut buf = BytesMut::from(&bytes[..]);
    let mut messages = Vec::new();
    while let Some(f) = codec::decode_frame(&mut buf).unwrap() {
        messages.push(ClientMessage::decode(&f).unwrap());
    }
    assert!(buf.is_empty(), "a partial message went upstream");
    messages
}

#[tokio::test]
async fn an_allowed_query_goes_upstream_as_sent_after_its_request_and_decision() {
    let mut front = frontend(None).await;
    let q = frame(codec::query("SELECT 1"));
    let (step, out) = plan(&mut front, &q);
    let events = recorded(step);
    assert!(matches!(&events[0], Kind::Request(r) if r.sql().unwrap().text == "SELECT 1"));
    assert_eq!(decision(&events).outcome, Outcome::Allow.to_event() as i32);
    assert_eq!(out, q.raw);
    assert_eq!(front.tracker().outstanding_runs(), 1);
}

#[tokio::test]
async fn a_function_call_by_oid_is_refused_where_its_answer_would_have_to_be_masked() {
    // Every rule masks: the strictest outcome for what cannot be
    // classified is mask, and a fast-path answer cannot be masked.
    let masking = r#"
name = "all-masked"
default = "mask"
[[masking.columns]]
table = "patients"
columns = ["ssn"]
format = "redact"
"#;
    let call = frame(codec::message(b'F', |b| {
        b.put_i32(2925); // query_to_xml(text, bool, bool, text)
        b.put_i16(0); // argument formats
        b.put_i16(0); // arguments
        b.put_i16(0); // result format
    }));
    let mut front = frontend_with(masking, None).await;
    let (step, out) = plan(&mut front, &call);
    let events = recorded(step);
    let d = decision(&events);
    assert_eq!(d.outcome, Outcome::Deny.to_event() as i32);
    assert!(d.reason.contains("cannot be masked"), "{}", d.reason);
    assert!(
        !out.windows(call.raw.len()).any(|w| w == &call.raw[..]),
        "the call went upstream"
    );
    // Where nothing is masked, the same call is the policy's to decide.
    let mut front = frontend_with("name = \"open\"\ndefault = \"mask\"\n", None).await;
    let (step, out) = plan(&mut front, &call);
    assert_eq!(
        decision(&recorded(step)).outcome,
        Outcome::Mask.to_event() as i32
    );
    assert_eq!(out, call.raw);
}

#[tokio::test]
async fn a_denied_query_never_goes_upstream_a_failing_probe_takes_its_place() {
    let mut front = frontend(None).await;
    let (step, out) = plan(&mut front, &frame(codec::query("DROP TABLE patients")));
    let events = recorded(step);
    let d = decision(&events);
    assert_eq!(d.rule, "no-drop");
    assert_eq!(d.outcome, Outcome::Deny.to_event() as i32);
    match upstream_messages(&out).as_slice() {
        [ClientMessage::Query { sql }] => assert!(!sql.contains("DROP"), "{sql}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_review_is_held_before_anything_goes_upstream_and_refused_without_a_service() {
    let copy = frame(codec::query("COPY patients TO STDOUT"));
    let mut held = frontend(Some(Arc::new(Silent))).await;
    let (step, out) = plan(&mut held, &copy);
    match step {
        Step::Hold(plan) => {
            assert_eq!(plan.verdict.rule, "exports");
            assert_eq!(plan.request.sql().unwrap().text, "COPY patients TO STDOUT");
        }
        _ => panic!("not held"),
    }
    assert!(out.is_empty(), "nothing goes upstream while held");

    let mut alone = frontend(None).await;
    let (step, out) = plan(&mut alone, &copy);
    let events = recorded(step);
    assert_eq!(decision(&events).rule, "exports");
    assert!(
        matches!(upstream_messages(&out).as_slice(), [ClientMessage::Query { sql }] if !sql.contains("COPY"))
    );
}

#[tokio::test]
async fn a_refused_parse_becomes_a_failing_parse_of_the_same_name_and_registers_nothing() {
    let mut front = frontend(None).await;
    let parse = frame(results::parse_message("s1", "DROP TABLE patients"));
    let (step, out) = plan(&mut front, &parse);
    let events = recorded(step);
    assert!(matches!(&events[0], Kind::Request(r) if r.sql().unwrap().statement_name == "s1"));
    assert_eq!(decision(&events).rule, "no-drop");
    match upstream_messages(&out).as_slice() {
        [ClientMessage::Parse(p)] => {
            assert_eq!(p.statement, "s1");
            assert!(!p.query.contains("DROP"));
        }
        other => panic!("{other:?}"),
    }
    // The server answers the probe with an error: nothing is registered.
    front.tracker().on_error(codec::ErrorFields::default());
    assert!(front.tracker().statement("s1").is_none());
}

#[tokio::test]
async fn a_parse_takes_its_verdict_into_the_registry_only_when_the_server_confirms() {
    let parse = frame(results::parse_message("s1", "SELECT ssn FROM patients"));
    // Confirmed: ParseComplete.
    let mut front = frontend(None).await;
    let (step, out) = plan(&mut front, &parse);
    assert!(
        recorded(step).is_empty(),
        "a Parse is recorded at its Execute"
    );
    assert_eq!(out, parse.raw);
    front.tracker().on_step_complete().unwrap();
    let verdict = front.tracker().statement("s1").unwrap().verdict.clone();
    assert_eq!(verdict.outcome, Outcome::Mask);
    assert_eq!(verdict.rule, "phi-masked");
    // Skipped: an error before it makes the server skip to the Sync, and
    // the name keeps nothing of this Parse.
    let mut front = frontend(None).await;
    plan(&mut front, &parse);
    front.tracker().on_error(codec::ErrorFields {
        severity: "ERROR".into(),
        code: "42601".into(),
        message: "syntax error".into(),
    });
    assert!(front.tracker().statement("s1").is_none());
}

#[tokio::test]
async fn an_execute_of_a_masked_portal_describes_it_first_and_is_recorded_under_its_verdict() {
    let mut front = frontend(None).await;
    plan(
        &mut front,
        &frame(results::parse_message("s1", "SELECT ssn FROM patients")),
    );
    front.tracker().on_step_complete().unwrap(); // ParseComplete
    let (step, out) = plan(&mut front, &bind("p1", "s1"));
    assert!(recorded(step).is_empty());
    assert!(
        matches!(upstream_messages(&out).as_slice(), [ClientMessage::Bind(b)] if b.portal == "p1")
    );
    front.tracker().on_step_complete().unwrap(); // BindComplete

    let (step, out) = plan(&mut front, &execute("p1"));
    let events = recorded(step);
    match &events[0] {
        Kind::Request(r) => {
            let sql = r.sql().unwrap();
            assert_eq!(sql.text, "SELECT ssn FROM patients");
            assert_eq!(
                (sql.statement_name.as_str(), sql.portal_name.as_str()),
                ("s1", "p1")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decision(&events).outcome, Outcome::Mask.to_event() as i32);
    // The proxy's own Describe goes first: masking needs the columns.
    assert!(matches!(
        upstream_messages(&out).as_slice(),
        [ClientMessage::Describe { target: b'P', name }, ClientMessage::Execute { portal, .. }]
            if name == "p1" && portal == "p1"
    ));
}

#[tokio::test]
async fn an_execute_of_a_portal_the_proxy_never_saw_fails_closed() {
    let mut front = frontend(None).await;
    let (step, _) = plan(&mut front, &execute("ghost"));
    let d = recorded(step);
    let d = decision(&d);
    assert_eq!(d.rule, vigil_sql::policy::FAIL_CLOSED_RULE);
    // The strictest outcome a rule could give this caller.
    assert_eq!(d.outcome, Outcome::Deny.to_event() as i32);
}

#[tokio::test]
async fn terminate_ends_the_session_and_sends_nothing_of_its_own() {
    let mut front = frontend(None).await;
    let (step, out) = plan(&mut front, &frame(codec::terminate()));
    assert!(matches!(step, Step::Terminate));
    assert!(out.is_empty());
}

// ---- the backend's plan ----

/// The backend of `front`'s session (the same registry), with a cancel key
/// so that stopping a result asks for a cancel.
fn backend_of(front: &Frontend) -> Backend {
    let policy = front.gate.policy_arc();
    let masker = Masker::new([7; 32], &DetectorConfig::default()).unwrap();
    Backend::new(
        front.shared.clone(),
        Masking {
            policy,
            masker: Arc::new(masker),
            catalog: front.catalog.clone(),
            database: "test".into(),
            cancel: Some(UpstreamCancel {
                addr: "127.0.0.1:1".into(),
                process_id: 1,
                secret_key: 2,
            }),
        },
    )
}

/// A RowDescription of text columns: (name, table OID, column number).
fn row_description(columns: &[(&str, u32, i16)]) -> Frame {
    frame(codec::message(b'T', |b| {
        b.put_i16(columns.len() as i16);
        for (name, table, column) in columns {
            b.put_slice(name.as_bytes());
            b.put_u8(0);
            b.put_u32(*table);
            b.put_i16(*column);
            b.put_u32(25); // text
            b.put_i16(-1);
            b.put_i32(-1);
            b.put_i16(0);
        }
    }))
}

fn data_row(value: &str) -> Frame {
    frame(results::data_row([Some(value.as_bytes())].into_iter()))
}

fn command_complete(tag: &str) -> Frame {
    frame(codec::message(b'C', |b| {
        b.put_slice(tag.as_bytes());
        b.put_u8(0);
    }))
}

/// Plans one upstream frame (a RowDescription with `lookups`, if given).
fn answer(
    back: &mut Backend,
    frame: &Frame,
    lookups: Option<Lookups>,
    completed: &mut Vec<Completed>,
) -> Effects {
    let message = BackendMessage::decode(frame).unwrap();
    let described = match (&message, lookups) {
        (BackendMessage::RowDescription(_), Some(lookups)) => {
            Some((back.on_row_description(), lookups))
        }
        _ => None,
    };
    back.plan(frame, message, described, completed).unwrap()
}

#[tokio::test]
async fn a_result_past_its_row_limit_is_stopped_cancelled_and_ends_in_a_refusal() {
    let mut front = frontend(None).await;
    plan(&mut front, &frame(codec::query("SELECT note FROM visits")));
    let mut back = backend_of(&front);
    let mut done = Vec::new();
    let description = row_description(&[("note", 0, 0)]);
    let e = answer(&mut back, &description, None, &mut done);
    assert_eq!(e.to_client.as_ref(), Some(&description.raw));
    for n in 1..=2 {
        let row = data_row(&format!("row {n}"));
        let e = answer(&mut back, &row, None, &mut done);
        assert_eq!(
            e.to_client.as_ref(),
            Some(&row.raw),
            "row {n} is within the limit"
        );
        assert!(!e.cancel_upstream);
    }
    let e = answer(&mut back, &data_row("row 3"), None, &mut done);
    assert!(e.to_client.is_none(), "no row past the limit goes out");
    assert!(e.cancel_upstream, "the server is asked to stop");
    let e = answer(&mut back, &data_row("row 4"), None, &mut done);
    assert!(e.to_client.is_none() && !e.cancel_upstream, "asked once");
    // The result's end becomes the refusal.
    let e = answer(&mut back, &command_complete("SELECT 4"), None, &mut done);
    let refusal = frame(e.to_client.unwrap());
    match BackendMessage::decode(&refusal).unwrap() {
        BackendMessage::Error(fields) => assert!(fields.message.contains("2 rows"), "{fields:?}"),
        other => panic!("{other:?}"),
    }
    answer(
        &mut back,
        &frame(codec::ready_for_query(b'I')),
        None,
        &mut done,
    );
    let response = done.last().expect("the run completed");
    assert_eq!(response.stopped_after_rows, 2);
}

#[tokio::test]
async fn a_masked_column_goes_out_masked_by_its_rule() {
    let mut front = frontend(None).await;
    plan(&mut front, &frame(codec::query("SELECT ssn FROM patients")));
    let mut back = backend_of(&front);
    let mut done = Vec::new();
    let patients = TableInfo {
        schema: "public".into(),
        table: "patients".into(),
        columns: [(1, "ssn".to_string())].into(),
        types: [(1, 25)].into(),
        is_view: false,
    };
    let lookups = Lookups {
        tables: [(16400, Arc::new(patients))].into(),
        lineage: vigil_sql::lineage::Outputs::Unknown,
    };
    answer(
        &mut back,
        &row_description(&[("ssn", 16400, 1)]),
        Some(lookups),
        &mut done,
    );
    let e = answer(&mut back, &data_row("123-45-6789"), None, &mut done);
    let sent = e.to_client.unwrap();
    assert!(
        !String::from_utf8_lossy(&sent).contains("123-45-6789"),
        "the SSN went out"
    );
}

#[tokio::test]
async fn rows_to_mask_with_no_description_to_mask_them_by_are_stopped() {
    let mut front = frontend(None).await;
    plan(&mut front, &frame(codec::query("SELECT ssn FROM patients")));
    let mut back = backend_of(&front);
    let mut done = Vec::new();
    // The server sends rows without a RowDescription the proxy read.
    let e = answer(&mut back, &data_row("123-45-6789"), None, &mut done);
    assert!(e.to_client.is_none(), "an unmasked row went out");
    assert!(e.cancel_upstream);
}

#[tokio::test]
async fn a_parameter_status_and_a_notice_pass_and_ready_for_query_settles_schema_changes() {
    let mut front = frontend(None).await;
    plan(&mut front, &frame(codec::query("CREATE TABLE t (a int)")));
    let mut back = backend_of(&front);
    let mut done = Vec::new();
    let status = frame(codec::message(b'S', |b| {
        b.put_slice(b"TimeZone\0UTC\0");
    }));
    let e = answer(&mut back, &status, None, &mut done);
    assert_eq!(e.to_client.as_ref(), Some(&status.raw));
    answer(
        &mut back,
        &command_complete("CREATE TABLE"),
        None,
        &mut done,
    );
    let e = answer(
        &mut back,
        &frame(codec::ready_for_query(b'I')),
        None,
        &mut done,
    );
    assert!(e.forget_names, "the DDL is settled: cached names are stale");
    assert_eq!(done.len(), 1);
}

#[tokio::test]
async fn binary_copy_output_of_a_masked_result_is_stopped_with_nothing_sent() {
    let mut front = frontend(None).await;
    plan(&mut front, &frame(codec::query("SELECT ssn FROM patients")));
    let mut back = backend_of(&front);
    let mut done = Vec::new();
    let copy_out = frame(codec::message(b'H', |b| {
        b.put_i8(1); // binary
        b.put_i16(1);
        b.put_i16(1);
    }));
    let e = answer(&mut back, &copy_out, None, &mut done);
    assert!(e.cancel_upstream, "the server is asked to stop");
    let data = frame(results::copy_data(b"PGCOPY\n\xff\r\n\0 123-45-6789"));
    let e = answer(&mut back, &data, None, &mut done);
    assert!(e.to_client.is_none(), "binary COPY data went out");
    let e = answer(&mut back, &command_complete("COPY 1"), None, &mut done);
    match BackendMessage::decode(&frame(e.to_client.unwrap())).unwrap() {
        BackendMessage::Error(fields) => {
            assert!(fields.message.contains("binary COPY"), "{fields:?}")
        }
        other => panic!("{other:?}"),
    }
}
