//! Bad input gets a clear error and never takes the gateway down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use vigil_tests::{show, vigil_bin, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

/// Sends raw bytes to the proxy and returns what it answers before closing.
fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn error_message(reply: &[u8]) -> String {
    assert_eq!(reply.first(), Some(&b'E'), "an ErrorResponse: {reply:?}");
    String::from_utf8_lossy(reply).to_string()
}

#[test]
fn malformed_startup_packets_get_an_error_response_and_the_proxy_lives_on() {
    let gw = Gateway::start(GatewaySpec::new());
    let port = gw.spec.pg_port;
    let cases: &[(&str, &[u8])] = &[
        ("protocol 2", &[0, 0, 0, 8, 0, 2, 0, 0]),
        ("absurd length", &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
        (
            "unterminated parameters",
            &[0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r'],
        ),
        ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (name, bytes) in cases {
        let reply = raw_exchange(port, bytes);
        let msg = error_message(&reply);
        assert!(msg.contains("invalid startup"), "{name}: {msg}");
    }
    // A startup without a user name.
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend_from_slice(b"database\0test\0\0");
    let len = startup.len() as u32;
    startup[..4].copy_from_slice(&len.to_be_bytes());
    let msg = error_message(&raw_exchange(port, &startup));
    assert!(msg.contains("no PostgreSQL user name"), "{msg}");

    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(out.status.success(), "still serving: {}", show(&out));
}

#[test]
fn garbage_after_login_ends_only_that_session() {
    let gw = Gateway::start(GatewaySpec::new());
    // A client that logs in with psql's protocol, then sends a frame with a bad length.
    let mut s = TcpStream::connect(("127.0.0.1", gw.spec.pg_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend_from_slice(format!("user\0{AGENT}\0database\0test\0\0").as_bytes());
    let len = startup.len() as u32;
    startup[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&startup).unwrap();
    let mut auth = [0u8; 9];
    s.read_exact(&mut auth).unwrap();
    assert_eq!(auth[0], b'R', "asked for a password");
    let mut pw = vec![b'p', 0, 0, 0, 0];
    pw.extend_from_slice(AGENT_PASSWORD.as_bytes());
    pw.push(0);
    let len = (pw.len() - 1) as u32;
    pw[1..5].copy_from_slice(&len.to_be_bytes());
    s.write_all(&pw).unwrap();
    // Read until ReadyForQuery, then send a frame whose length is below 4.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "login did not complete");
        seen.extend_from_slice(&buf[..n]);
    }
    s.write_all(&[b'Q', 0, 0, 0, 1]).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let msg = error_message(&rest);
    assert!(msg.contains("invalid frontend message"), "{msg}");

    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(out.status.success(), "still serving: {}", show(&out));
}

#[test]
fn unreachable_upstream_is_a_clear_error_to_the_client() {
    let mut spec = GatewaySpec::new();
    spec.upstream_port = vigil_tests::free_port(); // nobody listens there
    let gw = Gateway::start(spec);
    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Vigil could not reach the upstream database \"e2e-pg\""),
        "{stderr}"
    );
    // Still alive: the next attempt gets the same clear answer, not a refused connection.
    let again = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("could not reach the upstream"));
}

#[test]
fn broken_configs_stop_vigil_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("missing.toml", None, "cannot read config file"),
        ("syntax.toml", Some("data_dir = \n"), "invalid config file"),
        (
            "unknown.toml",
            Some("data_dir = \"x\"\nfrobnicate = true\n"),
            "unknown field `frobnicate`",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.path().join(name);
        if let Some(text) = text {
            std::fs::write(&path, text).unwrap();
        }
        let out = std::process::Command::new(vigil_bin())
            .args(["up", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[test]
fn a_missing_or_broken_body_keyring_stops_vigil_up_without_echoing_keys() {
    let spec = GatewaySpec::new();
    let dir = tempfile::tempdir().unwrap();
    let config = spec.write_config(dir.path());
    let keys = dir.path().join("body.keys");
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
    let cases = [
        (None, "ledger.body_keys: cannot read"),
        (Some(format!("k1 {secret}\n")), "key must be 32 bytes"),
        (Some("# nothing\n".to_string()), "holds no key"),
    ];
    for (content, expected) in cases {
        match &content {
            Some(text) => std::fs::write(&keys, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&keys);
            }
        }
        let out = std::process::Command::new(vigil_bin())
            .args(["up", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{content:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{content:?}: {stderr}");
        assert!(!stderr.contains(secret), "key material echoed: {stderr}");
    }
}

#[test]
fn a_taken_port_stops_vigil_up_with_a_clear_message() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut spec = GatewaySpec::new();
    spec.pg_port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = spec.write_config(dir.path());
    let out = std::process::Command::new(vigil_bin())
        .args(["up", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{} for postgres \"e2e-pg\"",
            spec.pg_port
        )),
        "{stderr}"
    );
}

#[test]
fn malformed_ledger_api_requests_get_clear_errors_and_the_ledger_lives_on() {
    let gw = Gateway::start(GatewaySpec::new());
    let base = gw.ledger_url();
    // Two statements, so that the log has entries to be out of range of.
    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(out.status.success(), "{}", show(&out));
    while gw.checkpoint_size() < 3 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let cases: &[(&str, u16, &str)] = &[
        ("vigil/v1/proof/consistency?from=0&to=2", 400, "empty"),
        ("tile/0/x001", 400, ""),
        ("tile/0/000.p/0", 400, ""),
        ("tile/0/000.p/257", 400, ""),
        ("tile/9/000", 400, ""),
        ("tile/0/x999/999", 404, "out of range"),
        ("tile/entries/abc", 400, ""),
        ("vigil/v1/bodies?start=-1&count=1", 400, ""),
        ("vigil/v1/bodies?start=0", 400, ""),
        ("vigil/v1/find", 400, "exactly one of"),
        ("vigil/v1/find?session=a&subject=b", 400, "exactly one of"),
        ("vigil/v1/find?from=5", 400, "exactly one of"),
        ("vigil/v1/find?session=a&page=zz", 400, "not hex"),
        ("vigil/v1/lookup?event_id=not-a-uuid", 400, "not a UUID"),
        (
            "vigil/v1/lookup?event_id=0190a0a0-0000-7000-8000-000000000000",
            404,
            "no such event",
        ),
        (
            "vigil/v1/proof/inclusion?index=5&size=2",
            404,
            "out of range",
        ),
        (
            "vigil/v1/proof/inclusion?index=0&size=999999",
            404,
            "out of range",
        ),
        ("vigil/v1/proof/inclusion?index=x&size=1", 400, ""),
        ("vigil/v1/proof/consistency?from=3&to=1", 400, ""),
    ];
    for (path, want, text) in cases {
        match ureq::get(&format!("{base}/{path}")).call() {
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                assert_eq!(code, *want, "{path}: {body}");
                assert!(body.contains(text), "{path}: {body}");
            }
            other => panic!("{path}: expected HTTP {want}, got {other:?}"),
        }
    }
    // Still serving.
    let cp = ureq::get(&format!("{base}/checkpoint")).call().unwrap();
    assert_eq!(cp.status(), 200);
}
