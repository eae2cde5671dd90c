//! The approval service as its own process in a Kafka deployment: `vigil
//! proxy` holds a statement and records its PendingOperation into its
//! outbox; the broker (tansu) carries it to `vigil approvals serve` (its own
//! consumer group) and to `vigil ledger`; the proxy waits on the service's
//! gRPC API. The service and the broker are killed with SIGKILL while an
//! operation is pending, a second statement is held while both are down,
//! and both come back: the first operation is still there, the second
//! reaches the service, an approver approves both, and each client gets its
//! row. The settings are the defaults a user gets.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vigil_proto::events::event::Kind;
use vigil_tests::kafka::Broker;
use vigil_tests::{
    direct_psql_setup, free_port, show, vigil_bin, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD,
};

const POLICY: &str = r#"
name = "review-kafka"
default = "allow"
[review]
approver_groups = ["approvers"]
ttl_secs = 120
[[rules]]
name = "review-held"
action = "review"
tables = ["apprk_held"]
"#;

const APPROVER_PASSWORD: &str = "approver password for the kafka test";

/// The bus with its default settings (6 partitions, a 10 s session).
fn bus_table(broker: &Broker) -> String {
    format!(
        "[bus]\nkind = \"kafka\"\nbootstrap = \"{}\"\n",
        broker.bootstrap()
    )
}

fn hash_password(secret: &str) -> String {
    let mut child = Command::new(vigil_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn start(spec: GatewaySpec, args: &[&str]) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    spec.write_config(dir.path());
    Gateway::spawn(spec, dir, args.iter().map(|a| a.to_string()).collect())
}

fn approvals(port: u16, args: &[&str]) -> Output {
    Command::new(vigil_bin())
        .args([
            "approvals",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--user",
            "approver",
        ])
        .args(args)
        .env("VIGIL_PASSWORD", APPROVER_PASSWORD)
        .output()
        .unwrap()
}

/// The pending operations of the review rule, once there are `n` of them
/// (the service's log is shown if they never are).
fn pending_ids(service: &Gateway, port: u16, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = approvals(port, &["list", "--state", "pending"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let ids: Vec<String> = text
            .lines()
            .filter(|l| l.contains("rule=review-held"))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
        if ids.len() >= n {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} pending: {}\nthe service's log:\n{}",
            ids.len(),
            show(&out),
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// psql through `proxy`, running `sql`, in the background.
fn psql_bg(proxy: &Gateway, sql: &str) -> std::process::Child {
    proxy
        .psql_command(AGENT, AGENT_PASSWORD, &["-tA", "-c", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `vigil approvals proxy-token`: a token and its SHA-256.
fn new_proxy_token() -> (String, String) {
    let out = Command::new(vigil_bin())
        .args(["approvals", "proxy-token"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {text:?}"))
    };
    (field("token"), field("sha256"))
}

#[test]
fn a_held_statement_survives_a_restart_of_the_approval_service_and_runs_on_approval() {
    let out = direct_psql_setup(
        "CREATE TABLE IF NOT EXISTS apprk_held (id int); \
         INSERT INTO apprk_held SELECT 7 WHERE NOT EXISTS (SELECT 1 FROM apprk_held);",
    );
    assert!(out.status.success(), "{}", show(&out));
    let broker = Broker::start();
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("review.toml");
    std::fs::write(&policy, POLICY).unwrap();

    let mut spec = GatewaySpec::new();
    spec.tables_extra = bus_table(&broker);
    let ledger = start(spec, &["ledger", "--config", "vigil.toml"]);

    // The proxy proves itself to the service with a token, as in production.
    let (proxy_token, proxy_token_sha256) = new_proxy_token();
    let token_file = policy_dir.path().join("proxy.token");
    std::fs::write(&token_file, &proxy_token).unwrap();

    let approvals_port = free_port();
    let mut spec = GatewaySpec::new();
    spec.tables_extra = format!(
        "{bus}\n[[identities]]\nname = \"approver\"\npassword_hash = \"{hash}\"\ngroups = [\"approvers\"]\n\
         [approvals]\ngrpc_listen = \"127.0.0.1:{approvals_port}\"\npolicies = [\"{policy}\"]\n\
         proxy_tokens_sha256 = [\"{proxy_token_sha256}\"]\n",
        bus = bus_table(&broker),
        hash = hash_password(APPROVER_PASSWORD),
        policy = policy.display(),
    );
    let service = start(spec, &["approvals", "serve", "--config", "vigil.toml"]);

    let mut spec = GatewaySpec::new();
    spec.policy = policy.display().to_string();
    spec.tables_extra = format!(
        "{}\n[approval_service]\nurl = \"http://127.0.0.1:{approvals_port}\"\ntoken_file = \"{}\"\n",
        bus_table(&broker),
        token_file.display()
    );
    let proxy = start(spec, &["proxy", "--config", "vigil.toml"]);

    let mut first = psql_bg(&proxy, "SELECT id FROM apprk_held WHERE 'first' <> ''");
    let id = pending_ids(&service, approvals_port, 1).remove(0);

    // SIGKILL of the service and the broker while the operation is
    // pending; a second statement is held while both are down (its
    // PendingOperation waits in the proxy's outbox, then in the broker).
    let args: Vec<String> = ["approvals", "serve", "--config", "vigil.toml"]
        .map(String::from)
        .into();
    let (service_spec, service_dir) = service.stop();
    let mut broker = broker;
    broker.kill();
    let mut second = psql_bg(&proxy, "SELECT id FROM apprk_held WHERE 'second' <> ''");
    std::thread::sleep(Duration::from_secs(1));
    broker.start_again();
    let restarted = Instant::now();
    let service = Gateway::spawn(service_spec, service_dir, args);
    let ids = pending_ids(&service, approvals_port, 2);
    eprintln!(
        "approvals: the operation held while the service was down was pending again {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    assert!(ids.contains(&id), "the operation outlived the restart");
    let id2 = ids.into_iter().find(|i| *i != id).unwrap();
    assert!(
        first.try_wait().unwrap().is_none(),
        "the client still waits"
    );
    assert!(
        second.try_wait().unwrap().is_none(),
        "the client still waits"
    );

    for (op, child) in [(&id, first), (&id2, second)] {
        let out = approvals(approvals_port, &["approve", op]);
        assert!(out.status.success(), "{}", show(&out));
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    }

    // The ledger has the whole story, each event once.
    let events = ledger.wait_for_events_within(Duration::from_secs(60), |evs| {
        [&id, &id2].iter().all(|op| {
            evs.iter().any(
                |e| matches!(&e.kind, Some(Kind::OperationClosed(c)) if &&c.operation_id == op),
            )
        }) && evs
            .iter()
            .filter(|e| matches!(&e.kind, Some(Kind::Response(_))))
            .count()
            >= 2
    });
    let count = |f: &dyn Fn(&Kind) -> bool| {
        events
            .iter()
            .filter(|e| e.kind.as_ref().is_some_and(f))
            .count()
    };
    for op in [&id, &id2] {
        assert_eq!(
            count(&|k| matches!(k, Kind::PendingOperation(p) if &p.operation_id == op)),
            1
        );
        assert_eq!(
            count(&|k| matches!(k, Kind::ApprovalDecision(d) if &d.operation_id == op)),
            1
        );
        assert_eq!(
            count(
                &|k| matches!(k, Kind::OperationClosed(c) if &c.operation_id == op && c.state() == vigil_proto::events::OperationState::Approved)
            ),
            1
        );
    }
    let out = ledger.audit(&["verify"]);
    assert!(out.status.success(), "{}", show(&out));
    drop(service);
}
