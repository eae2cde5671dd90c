//! TLS to clients with real psql: a listener with a certificate answers
//! SSLRequest with 'S', verifies as the certificate says, records the session
//! as TLS, and (when TLS is required) refuses plaintext clients. And TLS
//! from the gateway to the real PostgreSQL (ssl = on with its own
//! certificate): require and verify-full, and a wrong CA refused.

use std::io::{Read as _, Write as _};
use std::path::Path;

use vigil_proto::events::event::Kind;
use vigil_tests::{show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

/// A self-signed certificate for localhost / 127.0.0.1, made with openssl.
fn self_signed(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", show(&out));
    (cert.display().to_string(), key.display().to_string())
}

fn psql(gw: &Gateway, conninfo: &str, sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .env("PGPASSWORD", AGENT_PASSWORD)
        .arg("-X")
        .arg(format!(
            "{conninfo} port={} user={AGENT} dbname=test connect_timeout=10",
            gw.spec.pg_port
        ))
        .args(["-c", sql])
        .output()
        .expect("run psql")
}

#[test]
fn psql_over_tls_is_verified_recorded_and_plaintext_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let mut spec = GatewaySpec::new();
    spec.pg_extra = format!("tls = {{ cert_file = \"{cert}\", key_file = \"{key}\" }}");
    let gw = Gateway::start(spec);

    // sslmode=verify-full: psql checks the chain and the host name.
    let out = psql(
        &gw,
        &format!("host=localhost sslmode=verify-full sslrootcert={cert}"),
        "SELECT 'over tls'",
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("over tls"));

    // \conninfo reports the TLS session as psql sees it.
    let out = psql(&gw, "host=127.0.0.1 sslmode=require", "\\conninfo");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SSL connection (protocol: TLSv1.3"),
        "{}",
        show(&out)
    );

    // Plaintext is refused with a reason.
    let out = psql(&gw, "host=127.0.0.1 sslmode=disable", "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Vigil requires TLS on this listener"),
        "{}",
        show(&out)
    );

    // Bytes sent right after the SSLRequest, before the handshake, are
    // refused (CVE-2021-23214), in plaintext, without an 'S'.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", gw.spec.pg_port)).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut stuffed = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    stuffed.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
    raw.write_all(&stuffed).unwrap();
    let mut reply = Vec::new();
    let _ = raw.read_to_end(&mut reply);
    assert_eq!(
        reply.first(),
        Some(&b'E'),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(String::from_utf8_lossy(&reply).contains("before the TLS handshake"));

    // The ledger knows which sessions were encrypted.
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
            .count()
            == 2
    });
    let tls: Vec<bool> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::SessionOpened(o)) => Some(o.tls),
            _ => None,
        })
        .collect();
    assert_eq!(tls, vec![true, true]);
}

/// PostgreSQL's own certificate on this machine (Debian's snakeoil, CN and
/// SAN `localhost`), with which the local server runs `ssl = on`.
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn upstream_ssl_in_use(gw: &Gateway) -> std::process::Output {
    gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ],
    )
}

#[test]
fn the_gateway_reaches_the_upstream_over_tls_and_verifies_it() {
    let direct = vigil_tests::direct_psql("SHOW ssl");
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout).trim(),
        "on",
        "the local PostgreSQL must run with ssl = on for this test"
    );
    // verify-full against the server's own certificate.
    let mut spec = GatewaySpec::new();
    spec.upstream_extra = format!(
        r#", tls = {{ mode = "verify-full", ca_file = "{SNAKEOIL}", server_name = "localhost" }}"#
    );
    let gw = Gateway::start(spec);
    let out = upstream_ssl_in_use(&gw);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "t",
        "the database sees a TLS connection"
    );
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .any(|e| matches!(&e.kind, Some(Kind::SessionOpened(o)) if o.upstream_tls))
    });
    assert!(!events.is_empty());
    drop(gw);

    // require: encrypted without checking the certificate.
    let mut spec = GatewaySpec::new();
    spec.upstream_extra = r#", tls = { mode = "require" }"#.into();
    let gw = Gateway::start(spec);
    let out = upstream_ssl_in_use(&gw);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "t",
        "{}",
        show(&out)
    );
    drop(gw);

    // verify-full against a CA that did not sign the server's certificate:
    // the session is refused, and says why.
    let dir = tempfile::tempdir().unwrap();
    let (other_ca, _) = self_signed(dir.path());
    let mut spec = GatewaySpec::new();
    spec.upstream_extra = format!(
        r#", tls = {{ mode = "verify-full", ca_file = "{other_ca}", server_name = "localhost" }}"#
    );
    let gw = Gateway::start(spec);
    let out = upstream_ssl_in_use(&gw);
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS to the upstream failed") && err.contains("certificate"),
        "{err}"
    );
}
