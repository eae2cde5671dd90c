//! Findings 5 and 8 of the hostile-agent issue: failed logins are limited
//! per address and per user name, Argon2 runs a few checks at a time, and a
//! listener caps its sessions in all and per identity. Against the real
//! binary, the real PostgreSQL and real clients (raw protocol logins for
//! floods, tokio-postgres for sessions held open).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use vigil_proto::events::{event::Kind, Event, LoginRefused};
use vigil_tests::{Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

/// Logs in with the cleartext password exchange the gateway asks for and
/// returns the server's answer: `Ok(())` for AuthenticationOk, else the
/// error's SQLSTATE and message.
fn login(port: u16, user: &str, password: &str) -> Result<(), (String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut params = Vec::new();
    for (k, v) in [("user", user), ("database", "test")] {
        params.extend_from_slice(k.as_bytes());
        params.push(0);
        params.extend_from_slice(v.as_bytes());
        params.push(0);
    }
    params.push(0);
    let mut startup = ((params.len() + 8) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196608u32.to_be_bytes());
    startup.extend_from_slice(&params);
    s.write_all(&startup).unwrap();
    let (tag, body) = read_message(&mut s);
    assert_eq!(
        (tag, &body[..4]),
        (b'R', &3u32.to_be_bytes()[..]),
        "cleartext asked"
    );
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((password.len() + 5) as u32).to_be_bytes());
    msg.extend_from_slice(password.as_bytes());
    msg.push(0);
    s.write_all(&msg).unwrap();
    let (tag, body) = read_message(&mut s);
    match tag {
        b'R' => Ok(()),
        b'E' => Err(error_fields(&body)),
        other => panic!("unexpected message {:?}", other as char),
    }
}

fn read_message(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("a message");
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).unwrap();
    (head[0], body)
}

fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    (code, message)
}

fn refusals(events: &[Event]) -> Vec<&LoginRefused> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::LoginRefused(r)) => Some(r),
            _ => None,
        })
        .collect()
}

fn gateway(logins: &str) -> Gateway {
    let mut spec = GatewaySpec::new();
    spec.tables_extra = format!(
        "[[identities]]\nname = \"other\"\npassword_hash = \"{}\"\n[logins]\n{logins}\n",
        vigil_tests::AGENT_HASH
    );
    Gateway::start(spec)
}

#[test]
fn failed_logins_are_throttled_and_a_spell_is_recorded_once() {
    let gw = gateway("max_failures_per_address = 4\nmax_failures_per_user = 100\nforgive_failure_every_secs = 3600");
    let port = gw.spec.pg_port;
    for i in 0..4 {
        let (code, message) = login(port, AGENT, "wrong").unwrap_err();
        assert_eq!(code, "28P01", "attempt {i}: {message}");
    }
    // The budget is spent: even the right password waits, told when.
    for _ in 0..20 {
        let (code, message) = login(port, AGENT, AGENT_PASSWORD).unwrap_err();
        assert_eq!(code, "53300", "{message}");
        assert!(
            message.starts_with("too many failed logins from this address; try again in"),
            "{message}"
        );
    }
    let events = gw.wait_for_events(|ev| refusals(ev).iter().any(|r| r.reason_code == "throttled"));
    // Another gateway: a burst of concurrent wrong passwords is charged
    // before any is checked, so no more than the budget is checked.
    let burst = gateway("max_failures_per_address = 10\nforgive_failure_every_secs = 3600");
    let port = burst.spec.pg_port;
    let threads: Vec<_> = (0..60)
        .map(|i| {
            std::thread::spawn(move || login(port, &format!("burst{i}"), "wrong").unwrap_err().0)
        })
        .collect();
    let codes: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let checked = codes.iter().filter(|c| *c == "28P01").count();
    assert!(
        checked <= 10,
        "{checked} of a budget of 10 were checked: {codes:?}"
    );
    assert_eq!(codes.iter().filter(|c| *c == "53300").count(), 60 - checked);
    let mut codes: Vec<&str> = refusals(&events)
        .iter()
        .map(|r| r.reason_code.as_str())
        .collect();
    codes.sort();
    // Four checked failures and one throttled spell: 24 refusals, 5 events.
    assert_eq!(
        codes,
        [
            "bad_credentials",
            "bad_credentials",
            "bad_credentials",
            "bad_credentials",
            "throttled"
        ],
    );
}

#[test]
fn a_flood_of_wrong_passwords_cannot_exhaust_the_gateway_memory() {
    // No address throttle here: this is about the Argon2 gate alone.
    let gw = gateway(
        "max_failures_per_address = 100000\nmax_failures_per_user = 100000\n\
         max_concurrent_password_checks = 2\nmax_waiting_password_checks = 16",
    );
    let port = gw.spec.pg_port;
    let threads: Vec<_> = (0..200)
        .map(|_| std::thread::spawn(move || login(port, AGENT, "wrong").unwrap_err().0))
        .collect();
    let codes: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let busy = codes.iter().filter(|c| *c == "53300").count();
    let checked = codes.iter().filter(|c| *c == "28P01").count();
    assert_eq!(busy + checked, 200, "{codes:?}");
    assert!(
        checked >= 18,
        "at least the running and waiting ones were checked: {checked}"
    );
    // Unbounded, 200 concurrent checks took the process to about 4 GB.
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    // Shown with --no-capture: the figure the closing notes quote.
    eprintln!(
        "peak resident memory after 200 concurrent wrong passwords: {} MiB",
        peak_kib / 1024
    );
    assert!(
        peak_kib / 1024 < 250,
        "peak resident memory {} MiB after 200 concurrent wrong passwords",
        peak_kib / 1024
    );
    // And the right password still gets in.
    assert_eq!(login(port, AGENT, AGENT_PASSWORD), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_per_identity_and_per_listener() {
    let gw = gateway("max_sessions = 4\nmax_sessions_per_identity = 3");
    let port = gw.spec.pg_port;
    let connect = |user: &'static str| async move {
        let config = format!(
            "host=127.0.0.1 port={port} user={user} password='{AGENT_PASSWORD}' dbname=test"
        );
        match tokio_postgres::connect(&config, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                let task = tokio::spawn(connection);
                client
                    .simple_query("SELECT 1")
                    .await
                    .expect("a session works");
                Ok((client, task))
            }
            Err(e) => Err(e
                .as_db_error()
                .map(|d| (d.code().code().to_string(), d.message().to_string()))),
        }
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(AGENT).await.expect("within the caps"));
    }
    let (code, message) = connect(AGENT).await.err().flatten().expect("a refusal");
    assert_eq!(code, "53300");
    assert!(
        message.contains("agent already holds its maximum of 3 sessions")
            && message.contains("max_sessions_per_identity"),
        "{message}"
    );
    // Another identity still gets in, until the listener is full.
    held.push(connect("other").await.expect("another identity"));
    let (code, message) = connect("other").await.err().flatten().expect("a refusal");
    assert_eq!(code, "53300");
    assert!(
        message.contains("maximum of 4 sessions (logins.max_sessions)"),
        "{message}"
    );
    // A session that ends gives its place back.
    let (client, task) = held.remove(0);
    drop(client);
    let _ = task.await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = connect(AGENT).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a freed place is taken again");
    // Refused logins are recorded in the background: wait for both.
    let too_many = |ev: &[Event]| {
        refusals(ev)
            .into_iter()
            .filter(|r| r.reason_code == "too_many_sessions")
            .count()
    };
    let events = gw.wait_for_events(|ev| too_many(ev) >= 2);
    assert_eq!(too_many(&events), 2, "{:#?}", refusals(&events));
}
