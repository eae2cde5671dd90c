//! Holding statements for review, end to end, in one `vigil up` process:
//! real psql sessions whose statements a review rule holds, approvers with
//! real OIDC tokens from a real provider (npm's oidc-provider) deciding
//! through `vigil approvals` (the gRPC API), a webhook receiver that checks
//! the signatures of what Vigil sends, and signed callbacks that decide.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use vigil_proto::events::{event::Kind, Event};
use vigil_tests::oidc::{OidcProvider, CLIENT, CLIENT_SECRET, RESOURCE};
use vigil_tests::SqlRequestView;
use vigil_tests::{direct_psql_setup, free_port, show, vigil_bin, Gateway, GatewaySpec};

const POLICY: &str = r#"
name = "review-test"
default = "allow"
[review]
approver_groups = ["approvers"]
ttl_secs = 60
max_grant_secs = 600
[[rules]]
name = "review-held"
action = "review"
tables = ["appr_held"]
[[rules]]
name = "review-two"
action = "review"
tables = ["appr_two"]
quorum = 2
[[rules]]
name = "review-short"
action = "review"
tables = ["appr_short"]
ttl_secs = 2
"#;

const CALLBACK_SECRET: &str = "callback-secret-0123456789";
const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";
/// The path of the webhook nobody answers: a Slack webhook's path is its
/// secret, so it must never reach a log or an event.
const DEAD_HOOK_PATH: &str = "services/T000/B000/secret-path-token";

fn provider() -> OidcProvider {
    OidcProvider::start_with(Some(json!({
        "clients": [
            { "client_id": CLIENT, "client_secret": CLIENT_SECRET, "groups": ["ehr-analysts"] },
            { "client_id": "alice", "client_secret": "alice-secret", "groups": ["approvers"] },
            { "client_id": "bob", "client_secret": "bob-secret", "groups": ["approvers"] },
            { "client_id": "carol", "client_secret": "carol-secret", "groups": ["staff"] },
            // An agent that is also an approver: it may not approve itself.
            { "client_id": "dual", "client_secret": "dual-secret", "groups": ["approvers"] },
        ],
        "resources": { RESOURCE: { "scope": "db:read", "ttl": 600, "alg": "RS256" } }
    })))
}

struct Setup {
    provider: OidcProvider,
    gw: Gateway,
    approvals_port: u16,
    callback_port: u16,
    hooks: mpsc::Receiver<Hook>,
}

/// One webhook request as the receiver got it.
struct Hook {
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Setup {
    fn start() -> Self {
        create_tables();
        let provider = provider();
        let (hook_port, hooks) = webhook_receiver();
        let approvals_port = free_port();
        let callback_port = free_port();
        // A second webhook nobody answers: its failures become events.
        let dead_port = free_port();
        let policy_dir = tempfile::tempdir().unwrap().keep();
        let policy = policy_dir.join("review.toml");
        std::fs::write(&policy, POLICY).unwrap();
        std::fs::write(policy_dir.join("callback.secret"), CALLBACK_SECRET).unwrap();
        std::fs::write(policy_dir.join("webhook.secret"), WEBHOOK_SECRET).unwrap();
        let mut spec = GatewaySpec::new();
        spec.policy = policy.display().to_string();
        spec.static_identities = false;
        spec.tables_extra = format!(
            "{issuer}\n[approvals]\ngrpc_listen = \"127.0.0.1:{approvals_port}\"\n\
             [[approvals.webhooks]]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret_file = \"{dir}/webhook.secret\"\n\
             [[approvals.webhooks]]\nurl = \"http://127.0.0.1:{dead_port}/{DEAD_HOOK_PATH}\"\nsecret_file = \"{dir}/webhook.secret\"\ntries = 1\n\
             [approvals.callback]\nlisten = \"127.0.0.1:{callback_port}\"\nname = \"chat\"\n\
             secret_file = \"{dir}/callback.secret\"\napprover_groups = [\"approvers\"]\n",
            issuer = provider.issuer_toml(&[RESOURCE], ""),
            dir = policy_dir.display(),
        );
        let gw = Gateway::start(spec);
        Setup {
            provider,
            gw,
            approvals_port,
            callback_port,
            hooks,
        }
    }

    fn token(&self, client: &str) -> String {
        let secret = if client == CLIENT {
            CLIENT_SECRET.to_string()
        } else {
            format!("{client}-secret")
        };
        self.provider.token(client, &secret, RESOURCE, "db:read")
    }

    /// psql as `client`, running `sql`, in the background.
    fn psql_bg(&self, client: &str, sql: &str) -> Child {
        Command::new("psql")
            .env("PGPASSWORD", self.token(client))
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-h", "127.0.0.1", "-p", &self.gw.spec.pg_port.to_string()])
            .args([
                "-U",
                client,
                "-d",
                "test",
                "-X",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql")
    }

    /// `vigil approvals <args>` as approver `client`.
    fn approvals(&self, client: &str, args: &[&str]) -> Output {
        Command::new(vigil_bin())
            .arg("approvals")
            .args([
                "--server",
                &format!("http://127.0.0.1:{}", self.approvals_port),
            ])
            .args(args)
            .env("VIGIL_TOKEN", self.token(client))
            .output()
            .expect("run vigil approvals")
    }

    /// `vigil approvals grant` by `approver` for `subject` under `rule`.
    fn grant(
        &self,
        approver: &str,
        subject: &str,
        rule: &str,
        duration: &str,
        reason: &str,
    ) -> Output {
        self.approvals(
            approver,
            &[
                "grant",
                "--subject",
                subject,
                "--connection",
                "e2e-pg",
                "--rule",
                rule,
                "--for",
                duration,
                "--reason",
                reason,
            ],
        )
    }

    /// Waits for the pending operation of `rule` whose statement contains
    /// `marker`; returns its id and its line.
    fn pending(&self, rule: &str, marker: &str) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.approvals("alice", &["list", "--state", "pending"]);
            assert!(out.status.success(), "{}", show(&out));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if let Some(line) = text
                .lines()
                .find(|l| l.contains(&format!("rule={rule} ")) && l.contains(marker))
            {
                let id = line.split_whitespace().next().unwrap().to_string();
                return (id, line.to_string());
            }
            assert!(
                Instant::now() < deadline,
                "no pending operation of {rule}: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every event in `pred` holds in the ledger.
    fn events_until(&self, pred: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        self.gw.wait_for_events(pred)
    }
}

fn create_tables() {
    // Once per process; other processes are kept out by the lock of
    // direct_psql_setup.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(create_tables_now);
}

fn create_tables_now() {
    let out = direct_psql_setup(
        "CREATE TABLE IF NOT EXISTS appr_held (id int, note text); \
         CREATE TABLE IF NOT EXISTS appr_two (id int); \
         CREATE TABLE IF NOT EXISTS appr_short (id int); \
         INSERT INTO appr_held SELECT 1, 'first' WHERE NOT EXISTS (SELECT 1 FROM appr_held); \
         INSERT INTO appr_two SELECT 2 WHERE NOT EXISTS (SELECT 1 FROM appr_two);",
    );
    assert!(out.status.success(), "{}", show(&out));
}

/// A minimal HTTP server that answers 200 to every POST and hands each
/// request's signature headers and body to the test.
fn webhook_receiver() -> (u16, mpsc::Receiver<Hook>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut ts, mut sig, mut len) = (String::new(), String::new(), 0usize);
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let lower = l.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                } else if lower.starts_with("x-vigil-timestamp:") {
                    ts = l["x-vigil-timestamp:".len()..].trim().to_string();
                } else if lower.starts_with("x-vigil-signature:") {
                    sig = l["x-vigil-signature:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = tx.send(Hook {
                timestamp: ts,
                signature: sig,
                body,
            });
        }
    });
    (port, rx)
}

fn hmac_hex(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait for psql")
}

fn still_waiting(child: &mut Child) -> bool {
    child.try_wait().expect("psql status").is_none()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The Decisions of the session statement whose Request holds `marker`.
fn decisions_for<'a>(events: &'a [Event], marker: &str) -> Vec<&'a vigil_proto::events::Decision> {
    let Some(req) = events
        .iter()
        .find(|e| matches!(&e.kind, Some(Kind::Request(r)) if r.statement().contains(marker)))
    else {
        return Vec::new();
    };
    let Some(Kind::Request(r)) = &req.kind else {
        unreachable!()
    };
    events
        .iter()
        .filter(|e| e.session_id == req.session_id)
        .filter_map(|e| e.decision().filter(|d| d.request_seq == r.request_seq))
        .collect()
}

fn closed_state(events: &[Event], operation_id: &str) -> Option<String> {
    events.iter().find_map(|e| match &e.kind {
        Some(Kind::OperationClosed(c)) if c.operation_id == operation_id => {
            Some(c.state().label().to_string())
        }
        _ => None,
    })
}

#[test]
fn a_held_statement_waits_runs_on_approval_and_every_step_is_recorded() {
    let s = Setup::start();
    let mut psql = s.psql_bg(
        CLIENT,
        "SELECT note FROM appr_held WHERE note = 'first' AND 'marker-a1' <> ''",
    );
    let (id, line) = s.pending("review-held", "appr_held");
    // Approvers see the statement with its literals masked.
    assert!(
        !line.contains("marker-a1") && !line.contains("'first'"),
        "{line}"
    );
    assert!(line.contains(&format!("by={CLIENT}")), "{line}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        still_waiting(&mut psql),
        "the client waits while the statement is held"
    );

    // The webhook was told, with a valid signature and a Slack-style text.
    let hook = s
        .hooks
        .recv_timeout(Duration::from_secs(10))
        .expect("a webhook for the pending operation");
    assert_eq!(
        hook.signature,
        format!(
            "v1={}",
            hmac_hex(WEBHOOK_SECRET, &hook.timestamp, &hook.body)
        ),
        "the webhook's signature checks out with the shared secret"
    );
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["vigil"]["operation_id"], id.as_str());
    assert_eq!(body["vigil"]["state"], "pending");
    assert!(body["text"].as_str().unwrap().contains(&id));
    assert!(
        !String::from_utf8_lossy(&hook.body).contains("marker-a1"),
        "no literal in webhooks"
    );

    let out = s.approvals(
        "alice",
        &["approve", &id, "--reason", "checked with the ward"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("approved"), "{}", show(&out));
    let out = finish(psql);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out), "first");

    let shown = s.approvals("bob", &["show", &id]);
    let shown_text = stdout(&shown);
    assert!(shown_text.contains("state      approved"), "{shown_text}");
    assert!(
        shown_text.contains("vote       approve by alice"),
        "{shown_text}"
    );

    let events = s.events_until(|evs| {
        closed_state(evs, &id).is_some()
            && decisions_for(evs, "marker-a1").len() >= 2
            && evs
                .iter()
                .any(|e| matches!(&e.kind, Some(Kind::Response(_))))
    });
    let decisions = decisions_for(&events, "marker-a1");
    assert_eq!(decisions[0].outcome().label(), "review");
    assert_eq!(decisions[1].stage().label(), "approval");
    assert_eq!(decisions[1].outcome().label(), "mask");
    assert!(decisions[1].reason.contains(&id), "{:?}", decisions[1]);
    assert_eq!(closed_state(&events, &id).as_deref(), Some("approved"));
    let vote = events.iter().find_map(|e| match &e.kind {
        Some(Kind::ApprovalDecision(d)) if d.operation_id == id => Some(d.clone()),
        _ => None,
    });
    let vote = vote.expect("the approver's decision is in the ledger");
    // The webhook nobody answers: each notification it missed is an event
    // of the service's own stream, naming the webhook without its path.
    let events = s.events_until(|evs| {
        evs.iter().any(|e| {
            matches!(&e.kind, Some(Kind::NotificationFailed(n)) if n.operation_id == id && n.state == "approved")
        })
    });
    let missed: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::NotificationFailed(n)) if n.operation_id == id => Some((e, n)),
            _ => None,
        })
        .collect();
    assert!(
        missed.iter().any(|(_, n)| n.state == "pending"),
        "{missed:?}"
    );
    for (e, n) in &missed {
        assert!(
            e.session_id.starts_with("vigil-approvals/notices/"),
            "{e:?}"
        );
        assert!(n.target.starts_with("http://127.0.0.1:"), "{n:?}");
        assert!(!n.target.contains("secret-path"), "{n:?}");
        assert_eq!(n.attempts, 1);
        assert!(!n.error.is_empty(), "{n:?}");
    }
    assert!(
        !s.gw.stderr().contains("secret-path-token"),
        "the webhook's path is not logged"
    );
    assert_eq!(vote.approver.unwrap().subject, "alice");
    assert_eq!(vote.reason, "checked with the ward");
    let pending = events.iter().find_map(|e| match &e.kind {
        Some(Kind::PendingOperation(p)) if p.operation_id == id => Some(p.clone()),
        _ => None,
    });
    assert!(!pending
        .expect("PendingOperation recorded")
        .text
        .contains("marker-a1"));

    // The auditor's tools verify the log with all of this in it.
    let out = s.gw.audit(&["verify"]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn a_denial_needs_a_reason_and_the_client_gets_the_operation_and_the_reason() {
    let s = Setup::start();
    let psql = s.psql_bg(CLIENT, "SELECT id FROM appr_held WHERE 'marker-d1' <> ''");
    let (id, _) = s.pending("review-held", "appr_held");
    let out = s.approvals("alice", &["deny", &id, "--reason", "   "]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a denial needs a reason"),
        "{}",
        show(&out)
    );
    let out = s.approvals(
        "alice",
        &["deny", &id, "--reason", "not during the audit window"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = finish(psql);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&id) && err.contains("denied") && err.contains("not during the audit window"),
        "{err}"
    );
    // A closed operation stays closed.
    let out = s.approvals("bob", &["approve", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already denied"), "{}", show(&out));
    let events = s.events_until(|evs| {
        closed_state(evs, &id).is_some() && decisions_for(evs, "marker-d1").len() >= 2
    });
    assert_eq!(closed_state(&events, &id).as_deref(), Some("denied"));
    assert_eq!(
        decisions_for(&events, "marker-d1")[1].outcome().label(),
        "deny"
    );
}

#[test]
fn an_unanswered_statement_expires_with_its_time_to_live() {
    let s = Setup::start();
    let started = Instant::now();
    let out = finish(s.psql_bg(CLIENT, "SELECT id FROM appr_short"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("expired") && err.contains("time to live"),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before its ttl"
    );
    let out = s.approvals("alice", &["list", "--state", "expired"]);
    assert!(stdout(&out).contains("rule=review-short"), "{}", show(&out));
}

#[test]
fn approvers_must_be_in_an_approver_group_and_never_approve_themselves() {
    let s = Setup::start();
    let psql = s.psql_bg("dual", "SELECT id FROM appr_held WHERE 'marker-s1' <> ''");
    let (id, _) = s.pending("review-held", "appr_held");
    let out = s.approvals("dual", &["approve", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no self-approval"), "{}", show(&out));
    // Someone outside the approver groups is told what they would be told
    // for an id that does not exist: not that it exists, nor who approves it.
    let out = s.approvals("carol", &["approve", &id]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        format!("vigil: error: there is no operation {id}"),
        "{}",
        show(&out)
    );
    let made_up = "0190f0f0-0000-7000-8000-000000000000";
    let out = s.approvals("carol", &["deny", made_up, "--reason", "x"]);
    assert_eq!(
        stderr(&out).trim(),
        format!("vigil: error: there is no operation {made_up}")
    );
    // The proxies' methods need a proxy token, from loopback too: neither
    // no credential nor an approver's token withdraws a live hold or reads
    // it through AwaitClosed.
    for credential in [None, Some(format!("Bearer {}", s.token("alice")))] {
        let refusals = proxy_calls_without_a_proxy_token(s.approvals_port, &id, credential);
        for (method, status) in refusals {
            assert_eq!(
                status.code(),
                tonic::Code::PermissionDenied,
                "{method}: {status:?}"
            );
            assert!(
                status.message().contains("accepts no proxies"),
                "{method}: {status:?}"
            );
        }
    }
    // Someone outside the approver groups does not see the operation at all.
    let out = s.approvals("carol", &["list", "--state", "all"]);
    assert_eq!(stdout(&out), "no operations", "{}", show(&out));
    let out = s.approvals("carol", &["show", &id]);
    assert!(
        stderr(&out).contains("there is no operation"),
        "{}",
        show(&out)
    );
    // The agent who asked sees its own.
    let out = s.approvals("dual", &["show", &id]);
    assert!(
        stdout(&out).contains("state      pending"),
        "{}",
        show(&out)
    );
    // No token at all: refused before anything is looked at.
    let out = Command::new(vigil_bin())
        .args([
            "approvals",
            "--server",
            &format!("http://127.0.0.1:{}", s.approvals_port),
        ])
        .args(["approve", &id])
        .env("VIGIL_TOKEN", "not-a-token")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token"), "{}", show(&out));
    let out = s.approvals("alice", &["approve", &id]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(finish(psql).status.success());
}

/// Calls WithdrawOperation and AwaitClosed as a local process that holds no
/// proxy token; returns each call's refusal.
// tonic's interceptors return `Status` as their error.
#[allow(clippy::result_large_err)]
fn proxy_calls_without_a_proxy_token(
    port: u16,
    operation_id: &str,
    authorization: Option<String>,
) -> Vec<(&'static str, tonic::Status)> {
    use vigil_proto::approvals as pb;
    use vigil_proto::approvals::approvals_client::ApprovalsClient;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client =
            ApprovalsClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                if let Some(a) = &authorization {
                    req.metadata_mut()
                        .insert("authorization", a.parse().unwrap());
                }
                Ok(req)
            });
        let withdraw = client
            .withdraw(pb::WithdrawRequest {
                operation_id: operation_id.to_string(),
                reason: "a local process".into(),
            })
            .await
            .expect_err("a withdrawal without a proxy token");
        let await_closed = client
            .await_closed(pb::AwaitRequest {
                operation_id: operation_id.to_string(),
                expires_unix_nanos: 0,
            })
            .await
            .expect_err("AwaitClosed without a proxy token");
        vec![("withdraw", withdraw), ("await_closed", await_closed)]
    })
}

#[test]
fn a_quorum_of_two_needs_two_distinct_approvers() {
    let s = Setup::start();
    let mut psql = s.psql_bg(CLIENT, "SELECT id FROM appr_two");
    let (id, _) = s.pending("review-two", "appr_two");
    let out = s.approvals("alice", &["approve", &id]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("1 of 2 approvals"), "{}", show(&out));
    let out = s.approvals("alice", &["approve", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already decided"), "{}", show(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        still_waiting(&mut psql),
        "one approval of two does not release it"
    );
    let out = s.approvals("bob", &["approve", &id]);
    assert!(out.status.success(), "{}", show(&out));
    let out = finish(psql);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out), "2");
    // A grant for a two-person rule is refused: one approver cannot skip it.
    let out = s.grant("alice", CLIENT, "review-two", "5m", "x");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bypass"), "{}", show(&out));
}

#[test]
fn a_grant_lets_statements_through_until_it_is_revoked() {
    let s = Setup::start();
    let out = s.grant(
        "alice",
        CLIENT,
        "review-held",
        "10m",
        "incident 4711 clean-up",
    );
    assert!(out.status.success(), "{}", show(&out));
    let grant_id = stdout(&out).split_whitespace().nth(1).unwrap().to_string();
    for i in 0..3 {
        let started = Instant::now();
        let out = finish(s.psql_bg(
            CLIENT,
            &format!("SELECT count(*) FROM appr_held WHERE {i} >= 0"),
        ));
        assert!(out.status.success(), "{}", show(&out));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // Too long a grant is refused with the limit.
    let out = s.grant("alice", "other", "review-held", "2h", "x");
    assert!(stderr(&out).contains("at most 600 s"), "{}", show(&out));
    let out = s.approvals("bob", &["revoke", &grant_id, "--reason", "incident closed"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("ended"), "{}", show(&out));
    let psql = s.psql_bg(
        CLIENT,
        "SELECT count(*) FROM appr_held WHERE 'marker-g2' <> ''",
    );
    let (id, _) = s.pending("review-held", "appr_held");
    let out = s.approvals("bob", &["deny", &id, "--reason", "grant is over"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!finish(psql).status.success());
    let events = s.events_until(|evs| {
        evs.iter()
            .any(|e| matches!(&e.kind, Some(Kind::GrantRevoked(_))))
    });
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, Some(Kind::AccessGranted(g)) if g.grant_id == grant_id)));
    let granted: Vec<_> = events
        .iter()
        .filter_map(|e| e.decision().filter(|d| d.stage().label() == "grant"))
        .collect();
    assert_eq!(granted.len(), 3, "each statement under the grant says so");
    assert!(granted.iter().all(|d| d.reason.contains(&grant_id)));
}

#[test]
fn a_cancel_or_a_disconnect_withdraws_the_operation() {
    let s = Setup::start();
    // psql sends a CancelRequest on SIGINT.
    let psql = s.psql_bg(CLIENT, "SELECT id FROM appr_held WHERE 'marker-c1' <> ''");
    let (id, _) = s.pending("review-held", "appr_held");
    let kill = Command::new("kill")
        .args(["-INT", &psql.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = finish(psql);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("canceling statement due to user request"),
        "{}",
        show(&out)
    );
    let events = s.events_until(|evs| closed_state(evs, &id).is_some());
    assert_eq!(closed_state(&events, &id).as_deref(), Some("withdrawn"));

    let mut psql = s.psql_bg(CLIENT, "SELECT id FROM appr_held WHERE 'marker-c2' <> ''");
    // The first one is closed, so the only pending one is the second.
    let (id2, _) = s.pending("review-held", "appr_held");
    assert_ne!(id2, id);
    psql.kill().unwrap();
    let _ = psql.wait();
    let events = s.events_until(|evs| closed_state(evs, &id2).is_some());
    assert_eq!(closed_state(&events, &id2).as_deref(), Some("withdrawn"));
    let out = s.approvals("alice", &["approve", &id2]);
    assert!(stderr(&out).contains("already withdrawn"), "{}", show(&out));
}

#[test]
fn a_signed_callback_decides_and_a_forged_or_replayed_one_does_not() {
    let s = Setup::start();
    let psql = s.psql_bg(CLIENT, "SELECT note FROM appr_held WHERE 'marker-w1' <> ''");
    let (id, _) = s.pending("review-held", "appr_held");
    let url = format!("http://127.0.0.1:{}/v1/decisions", s.callback_port);
    let body = serde_json::to_vec(&json!({
        "operation_id": id, "verdict": "approve", "reason": "approved in chat", "approver": "U024BE7LH"
    }))
    .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let post = |ts: &str, sig: &str| match ureq::post(&url)
        .set("X-Vigil-Timestamp", ts)
        .set("X-Vigil-Signature", sig)
        .send_bytes(&body)
    {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("callback request failed: {e}"),
    };
    let forged = format!("v1={}", hmac_hex("wrong-secret-0123456789", &now, &body));
    assert_eq!(post(&now, &forged).0, 401);
    let stale = (now.parse::<i64>().unwrap() - 3600).to_string();
    assert_eq!(
        post(
            &stale,
            &format!("v1={}", hmac_hex(CALLBACK_SECRET, &stale, &body))
        )
        .0,
        401
    );
    // Correctly signed but malformed: a clear 400, nothing decided.
    for (bad, expected) in [
        (&b"{not json"[..], "bad body"),
        (
            &br#"{"operation_id":"x","verdict":"maybe","approver":"U1"}"#[..],
            "verdict must be",
        ),
        (
            &br#"{"operation_id":"x","verdict":"approve","approver":" "}"#[..],
            "approver is empty",
        ),
        (
            &br#"{"operation_id":"x","verdict":"approve","approver":"U1","extra":1}"#[..],
            "unknown field",
        ),
    ] {
        let sig = format!("v1={}", hmac_hex(CALLBACK_SECRET, &now, bad));
        let reply = ureq::post(&url)
            .set("X-Vigil-Timestamp", &now)
            .set("X-Vigil-Signature", &sig)
            .send_bytes(bad);
        match reply {
            Err(ureq::Error::Status(400, r)) => {
                let text = r.into_string().unwrap_or_default();
                assert!(text.contains(expected), "{text}");
            }
            other => panic!(
                "expected 400 for {:?}: {other:?}",
                String::from_utf8_lossy(bad)
            ),
        }
    }
    let good = format!("v1={}", hmac_hex(CALLBACK_SECRET, &now, &body));
    let (status, text) = post(&now, &good);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("approved"), "{text}");
    assert_eq!(post(&now, &good).0, 409, "a replayed callback is refused");
    let out = finish(psql);
    assert!(out.status.success(), "{}", show(&out));
    let events = s.events_until(|evs| closed_state(evs, &id).is_some());
    let vote = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(Kind::ApprovalDecision(d)) if d.operation_id == id => d.approver.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(vote.subject, "U024BE7LH");
    assert_eq!(vote.issuer, "webhook:chat");
}

#[test]
fn a_driver_using_the_extended_protocol_is_held_and_released_too() {
    let s = Setup::start();
    // psycopg 3 sends parameters with Parse/Bind/Execute: the hold is at
    // the Execute, after the Parse and Bind went upstream.
    let script = r#"
import sys, psycopg
conn = psycopg.connect(host="127.0.0.1", port=int(sys.argv[1]), user="agent",
                       password=sys.argv[2], dbname="test", sslmode="disable", autocommit=True)
rows = conn.execute("SELECT note FROM appr_held WHERE note = %s AND %s <> ''", ("first", "marker-x1")).fetchall()
print(rows[0][0])
try:
    conn.execute("SELECT note FROM appr_held WHERE id = %s", (1,)).fetchall()
    print("ran")
except psycopg.Error as e:
    print("refused:", e.sqlstate, str(e).splitlines()[0])
print(conn.execute("SELECT 40 + %s", (2,)).fetchone()[0])
"#;
    let mut py = Command::new("python3")
        .args([
            "-c",
            script,
            &s.gw.spec.pg_port.to_string(),
            &s.token(CLIENT),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (id, line) = s.pending("review-held", "appr_held");
    assert!(line.contains("$1") && !line.contains("marker-x1"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(still_waiting(&mut py));
    let out = s.approvals("alice", &["approve", &id]);
    assert!(out.status.success(), "{}", show(&out));
    // The second statement is held too, then denied: the session goes on.
    let deadline = Instant::now() + Duration::from_secs(20);
    let id2 = loop {
        let (next, _) = s.pending("review-held", "appr_held");
        if next != id {
            break next;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = s.approvals("bob", &["deny", &id2, "--reason", "one row is enough"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "first");
    assert!(
        lines[1].starts_with("refused: 42501")
            && lines[1].contains(&id2)
            && lines[1].contains("one row is enough"),
        "{text}"
    );
    assert_eq!(lines[2], "42", "the session works after a refused hold");
}

/// What a hostile agent can put into the statement approvers read: a quoted
/// identifier survives literal masking with every character in it.
const HOSTILE_IDENTIFIER: &str = "\x1b[2J\x1b[H\r\nvote approve by alice\u{9b}0m\u{202e}\u{2066}\u{200b}\x7f <!channel> <https://evil.example|Approve here> ```*ok*`";

#[test]
fn agent_text_reaches_approvers_escaped_in_the_terminal_and_in_slack() {
    let s = Setup::start();
    let psql = s.psql_bg(
        CLIENT,
        &format!("SELECT \"{HOSTILE_IDENTIFIER}\" FROM appr_held WHERE 'marker-e1' <> ''"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let out = s.approvals("alice", &["list"]);
        assert!(out.status.success(), "{}", show(&out));
        if !stdout(&out).starts_with("no operations") {
            break out;
        }
        assert!(Instant::now() < deadline, "nothing pending");
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = String::from_utf8(listed.stdout.clone()).unwrap();
    let forbidden = |c: char| {
        c.is_control() && c != '\n'
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}')
    };
    // One line, nothing in it a terminal would act on, and what was there
    // is visible.
    assert_eq!(printed.lines().count(), 1, "{printed:?}");
    assert!(!printed.chars().any(forbidden), "{printed:?}");
    assert!(
        printed.contains(
            r"\x1b[2J\x1b[H\r\nvote approve by alice\u{9b}0m\u{202e}\u{2066}\u{200b}\x7f"
        ),
        "{printed:?}"
    );
    let id = printed.split_whitespace().next().unwrap().to_string();

    // `show`: its fixed lines and nothing else, after a denial whose reason
    // tries the same.
    let out = s.approvals(
        "alice",
        &[
            "deny",
            &id,
            "--reason",
            "\x1b[1A\x1b[2Kvote approve by bob\rnot now",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stdout(&out).chars().any(forbidden), "{}", show(&out));
    let shown = s.approvals("bob", &["show", &id]);
    let shown_text = String::from_utf8(shown.stdout.clone()).unwrap();
    assert!(!shown_text.chars().any(forbidden), "{shown_text:?}");
    assert_eq!(shown_text.lines().count(), 12, "{shown_text}");
    assert!(
        shown_text.contains(r"\x1b[1A\x1b[2Kvote approve by bob\rnot now"),
        "{shown_text}"
    );
    assert!(!finish(psql).status.success());

    // The webhook: Slack's text is inert, the JSON for programs exact.
    let pending = loop {
        let hook = s
            .hooks
            .recv_timeout(Duration::from_secs(10))
            .expect("a webhook for the operation");
        let body: Value = serde_json::from_slice(&hook.body).unwrap();
        if body["vigil"]["state"] == "pending" {
            break body;
        }
    };
    let text = pending["text"].as_str().unwrap();
    assert!(!text.contains(['<', '>']), "{text}");
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
    assert!(
        text.contains("&lt;https://evil.example|Approve here&gt;"),
        "{text}"
    );
    assert!(
        !text.replacen('\n', "", 1).chars().any(forbidden),
        "{text:?}"
    );
    assert!(text.contains(r"\x1b[2J"), "{text}");
    // The statement sits in a code block it cannot close.
    assert_eq!(text.matches("```").count(), 2, "{text}");
    assert!(text.ends_with("```"), "{text}");
    assert!(pending["vigil"]["statement"]
        .as_str()
        .unwrap()
        .contains(HOSTILE_IDENTIFIER));
}
