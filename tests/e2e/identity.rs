//! OIDC identities end to end: a real OpenID provider (npm's oidc-provider,
//! tests/clients/oidc_provider.mjs) issues client_credentials access tokens;
//! psql presents them as its password; Vigil verifies them, ties every event
//! to the verified identity, and refuses every kind of bad token with its
//! own clear error.

use std::time::Duration;

use serde_json::json;
use vigil_proto::events::event::Kind;
use vigil_tests::oidc::{claims_of, header_of, OidcProvider, CLIENT, CLIENT_SECRET, RESOURCE};
use vigil_tests::SqlRequestView;
use vigil_tests::{show, Gateway, GatewaySpec};

/// Resources the provider serves: the default one (RS256), one per other
/// algorithm, a short-lived one, and one the gateway does not accept.
fn provider_config() -> serde_json::Value {
    json!({
        "clients": [
            { "client_id": CLIENT, "client_secret": CLIENT_SECRET, "groups": ["ehr-analysts"] },
            { "client_id": "agent-staff", "client_secret": "staff-secret", "groups": ["staff"] },
        ],
        "resources": {
            RESOURCE: { "scope": "db:read db:write", "ttl": 300, "alg": "RS256" },
            "urn:vigil:ps": { "scope": "db:read", "ttl": 300, "alg": "PS256" },
            "urn:vigil:es": { "scope": "db:read", "ttl": 300, "alg": "ES256" },
            "urn:vigil:ed": { "scope": "db:read", "ttl": 300, "alg": "EdDSA" },
            "urn:vigil:short": { "scope": "db:read", "ttl": 3, "alg": "RS256" },
            "urn:other-service": { "scope": "db:read", "ttl": 300, "alg": "RS256" },
        }
    })
}

/// Only role `phi-readers` (granted by the provider's group `ehr-analysts`)
/// may read; everyone else is denied.
const ROLE_POLICY: &str = r#"
name = "by-role"
default = "deny"
[[rules]]
name = "readers"
action = "allow"
groups = ["phi-readers"]
"#;

/// A gateway trusting `provider`, with no static identities, requiring
/// scope db:read, and deciding by role.
fn gateway(provider: &OidcProvider) -> Gateway {
    let policy_dir = tempfile::tempdir().unwrap().keep();
    let policy = policy_dir.join("by-role.toml");
    std::fs::write(&policy, ROLE_POLICY).unwrap();
    let mut spec = GatewaySpec::new();
    spec.policy = policy.display().to_string();
    spec.pg_extra = "required_scopes = [\"db:read\"]".into();
    spec.static_identities = false;
    spec.tables_extra = provider.issuer_toml(
        &[
            RESOURCE,
            "urn:vigil:ps",
            "urn:vigil:es",
            "urn:vigil:ed",
            "urn:vigil:short",
        ],
        "clock_skew_secs = 0\n[oidc.issuers.roles]\nphi-readers = [\"ehr-analysts\"]",
    );
    // These tests present dozens of bad tokens from one address on
    // purpose; the failed-login throttle has its own test (logins.rs).
    spec.tables_extra
        .push_str("\n[logins]\nmax_failures_per_address = 1000\nmax_failures_per_user = 1000\n");
    Gateway::start(spec)
}

#[test]
fn provider_tokens_of_every_algorithm_log_in_and_ride_on_every_event() {
    let provider = OidcProvider::start_with(Some(provider_config()));
    let gw = gateway(&provider);
    let mut tokens = vec![provider.token(CLIENT, CLIENT_SECRET, RESOURCE, "db:read db:write")];
    for resource in ["urn:vigil:ps", "urn:vigil:es", "urn:vigil:ed"] {
        tokens.push(provider.token(CLIENT, CLIENT_SECRET, resource, "db:read"));
    }
    let mut algs = Vec::new();
    for token in &tokens {
        let header = header_of(token);
        assert_eq!(header["typ"], "at+jwt");
        algs.push(header["alg"].as_str().unwrap().to_string());
        // Any user name: the identity is the token's.
        let out = gw.psql("whoever", token, &["-tAc", "SELECT 40 + 2"]);
        assert!(out.status.success(), "{}: {}", header["alg"], show(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    }
    assert_eq!(algs, ["RS256", "PS256", "ES256", "EdDSA"]);

    let first = claims_of(&tokens[0]);
    let events = gw.wait_for_events(|evs| {
        evs.iter()
            .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
            .count()
            >= 4
    });
    let session_events: Vec<_> = events
        .iter()
        .filter(|e| {
            e.identity
                .as_ref()
                .is_some_and(|i| i.token_id == first["jti"].as_str().unwrap())
        })
        .collect();
    assert!(
        session_events.len() >= 4,
        "SessionOpened, Request (with its Decision), Response, SessionClosed of the first token"
    );
    for e in &session_events {
        let id = e.identity.as_ref().unwrap();
        assert_eq!(id.subject, CLIENT);
        assert_eq!(id.issuer, provider.issuer);
        assert_eq!(id.client_id, CLIENT);
        assert_eq!(id.groups, vec!["ehr-analysts"]);
        assert_eq!(id.roles, vec!["phi-readers"]);
        assert_eq!(id.scopes, vec!["db:read", "db:write"]);
        assert_eq!(id.auth_method, "oidc");
        assert_eq!(id.expires_unix_secs, first["exp"].as_i64().unwrap());
    }
    // The token itself is nowhere: not in any event, not in the log output.
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        for e in &events {
            let bytes = vigil_proto::Message::encode_to_vec(e);
            assert!(
                !bytes
                    .windows(signature.len())
                    .any(|w| w == signature.as_bytes()),
                "an event carries the token"
            );
        }
        assert!(
            !gw.stderr().contains(signature),
            "the log carries the token"
        );
    }
}

#[test]
fn roles_from_the_providers_groups_decide_policy() {
    let provider = OidcProvider::start_with(Some(provider_config()));
    let gw = gateway(&provider);
    let staff = provider.token("agent-staff", "staff-secret", RESOURCE, "db:read");
    let out = gw.psql("agent-staff", &staff, &["-tAc", "SELECT 1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Vigil denied this statement (rule \"default\")"),
        "{err}"
    );
}

#[test]
fn bad_tokens_are_refused_each_with_a_clear_error() {
    let provider = OidcProvider::start_with(Some(provider_config()));
    let stranger = OidcProvider::start();
    let gw = gateway(&provider);

    let good = provider.agent_token("db:read");
    let claims = claims_of(&good);
    let now = claims["iat"].as_i64().unwrap();
    let with = |change: serde_json::Value| {
        let mut c = claims.clone();
        for (k, v) in change.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let rs256 = json!({ "alg": "RS256", "typ": "at+jwt" });
    let mut tampered = good.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let stranger_refusal = format!(
        "token issuer \"{}\" is not a trusted issuer",
        stranger.issuer
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            provider.sign(rs256.clone(), with(json!({"exp": now - 60})), "current"),
            "token expired at ",
        ),
        (
            "not yet valid",
            provider.sign(rs256.clone(), with(json!({"nbf": now + 3600})), "current"),
            "token is not valid before ",
        ),
        (
            "wrong issuer",
            provider.sign(
                rs256.clone(),
                with(json!({"iss": "https://login.example.com"})),
                "current",
            ),
            "token issuer \"https://login.example.com\" is not a trusted issuer",
        ),
        (
            "wrong audience",
            provider.token(CLIENT, CLIENT_SECRET, "urn:other-service", "db:read"),
            "token audience \"urn:other-service\" is not accepted here",
        ),
        (
            "missing scope",
            provider.agent_token("db:write"),
            "token lacks the scope(s) db:read this connection requires (granted: db:write)",
        ),
        (
            "unknown key id",
            provider.sign(rs256.clone(), claims.clone(), "foreign"),
            "is not among the signing keys of",
        ),
        ("tampered signature", tampered, "token signature is invalid"),
        (
            "alg none",
            provider.sign(json!({"alg": "none"}), claims.clone(), "none"),
            "token signature algorithm \"none\" is not allowed",
        ),
        (
            "HS256 keyed with the provider's public key",
            provider.sign(json!({"alg": "HS256"}), claims.clone(), "hs256-public-pem"),
            "token signature algorithm \"HS256\" is not allowed",
        ),
        (
            "a second provider that is not configured",
            stranger.agent_token("db:read"),
            &stranger_refusal,
        ),
        (
            "truncated",
            // Cut before the signature: a cut inside it can still decode
            // (and then fails as a bad signature, depending on the length).
            good.rsplit_once('.').unwrap().0.to_string(),
            "the password is not a well-formed JWT access token",
        ),
        (
            "garbled",
            format!("eyJ{}", "%$#@!".repeat(20)),
            "the password is not a well-formed JWT access token",
        ),
        (
            "a static password where a token is expected",
            "dev".to_string(),
            "the password is not a well-formed JWT access token",
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (name, token, want) in &cases {
        let out = gw.psql(CLIENT, token, &["-tAc", "SELECT 1"]);
        assert!(!out.status.success(), "{name}: accepted");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            err.contains("FATAL:  Vigil refused the access token: ") && err.contains(want),
            "{name}: {err}"
        );
        seen.insert(err.lines().next().unwrap_or("").to_string());
    }
    // Each case has its own message (the three malformed ones say where).
    assert!(seen.len() >= cases.len() - 2, "{seen:#?}");
    // The good token still works: nothing above disturbed the gateway.
    let out = gw.psql(CLIENT, &good, &["-tAc", "SELECT 1"]);
    assert!(out.status.success(), "{}", show(&out));

    // Every refusal is on the record (HIPAA log-in monitoring), with its
    // reason and no identity (nothing was verified), and no token in it.
    let events = gw.wait_for_events(|evs| {
        evs.iter()
            .filter(|e| matches!(e.kind, Some(Kind::LoginRefused(_))))
            .count()
            >= cases.len()
    });
    let mut codes = Vec::new();
    for e in &events {
        if let Some(Kind::LoginRefused(l)) = &e.kind {
            assert_eq!(l.sql().unwrap().client_user, CLIENT);
            assert!(e.identity.as_ref().is_none_or(|i| i.subject.is_empty()));
            codes.push(l.reason_code.clone());
        }
        let bytes = vigil_proto::Message::encode_to_vec(e);
        for (name, token, _) in &cases {
            if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 20) {
                assert!(
                    !bytes.windows(sig.len()).any(|w| w == sig.as_bytes()),
                    "{name}: an event carries the token"
                );
            }
        }
    }
    for code in [
        "expired",
        "not_yet_valid",
        "unknown_issuer",
        "wrong_audience",
        "missing_scope",
        "unknown_key",
        "bad_signature",
        "algorithm_not_allowed",
        "malformed",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} not recorded: {codes:?}"
        );
    }
}

#[test]
fn key_rotation_at_the_provider_is_picked_up_without_restarting_vigil() {
    let provider = OidcProvider::start_with(Some(provider_config()));
    let gw = gateway(&provider);
    let before = provider.agent_token("db:read");
    let out = gw.psql(CLIENT, &before, &["-tAc", "SELECT 1"]);
    assert!(out.status.success(), "{}", show(&out));

    provider.rotate();
    // Unknown key ids refetch the JWKS at most once a second (test config).
    std::thread::sleep(Duration::from_millis(1_100));
    let after = provider.agent_token("db:read");
    let header = |t: &str| t.split('.').next().unwrap().to_string();
    assert_ne!(header(&before), header(&after), "rotation changes the kid");
    let out = gw.psql(CLIENT, &after, &["-tAc", "SELECT 1"]);
    assert!(out.status.success(), "new key: {}", show(&out));

    // The withdrawn key is no longer trusted.
    let out = gw.psql(CLIENT, &before, &["-tAc", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not among the signing keys of"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_session_ends_with_its_token() {
    let provider = OidcProvider::start_with(Some(provider_config()));
    let gw = gateway(&provider);
    let token = provider.token(CLIENT, CLIENT_SECRET, "urn:vigil:short", "db:read");
    let exp = claims_of(&token)["exp"].as_i64().unwrap();
    let out = gw.psql(
        CLIENT,
        &token,
        &[
            "-tA",
            "-c",
            "SELECT 'before expiry'",
            "-c",
            "\\! sleep 4",
            "-c",
            "SELECT 'after expiry'",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("before expiry"), "{}", show(&out));
    assert!(!stdout.contains("after expiry"), "{}", show(&out));
    let when = vigil_proxy_core::identity::rfc3339(
        std::time::UNIX_EPOCH + Duration::from_secs(exp as u64),
    );
    assert!(
        stderr.contains(&format!(
            "the access token of this session expired at {when}; reconnect with a new token"
        )),
        "{stderr}"
    );
    // The session's end is on the record, with why.
    let events = gw.wait_for_events(|evs| {
        evs.iter().any(
            |e| matches!(&e.kind, Some(Kind::SessionClosed(c)) if c.reason_text().contains("expired at")),
        )
    });
    assert!(events.iter().any(|e| matches!(&e.kind,
        Some(Kind::Request(r)) if r.statement() == "SELECT 'before expiry'")));
    // The gateway closed the idle session at expiry; had the statement
    // slipped in first, it would have been refused, never run.
    let after_recorded = events.iter().any(
        |e| matches!(&e.kind, Some(Kind::Request(r)) if r.statement() == "SELECT 'after expiry'"),
    );
    let refused = events
        .iter()
        .any(|e| e.decision().is_some_and(|d| d.rule == "token-expired"));
    assert!(!after_recorded || refused);
    // An expired token does not log in at all.
    let out = gw.psql(CLIENT, &token, &["-tAc", "SELECT 1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("token expired at"),
        "{}",
        show(&out)
    );
}

/// This machine's first non-loopback IPv4 address.
fn non_loopback_address() -> String {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("this test needs a non-loopback IPv4 address")
        .to_string()
}

#[test]
fn a_token_is_not_accepted_in_cleartext_from_a_remote_address() {
    let provider = OidcProvider::start_with(Some(provider_config()));
    let mut spec = GatewaySpec::new();
    spec.listen_host = "0.0.0.0".into();
    spec.static_identities = false;
    spec.tables_extra = provider.issuer_toml(&[RESOURCE], "");
    let gw = Gateway::start(spec);
    let token = provider.agent_token("db:read");
    let out = std::process::Command::new("psql")
        .env("PGPASSWORD", &token)
        .env("PGSSLMODE", "disable")
        .args([
            "-h",
            &non_loopback_address(),
            "-p",
            &gw.spec.pg_port.to_string(),
        ])
        .args(["-U", CLIENT, "-d", "test", "-X", "-tAc", "SELECT 1"])
        .output()
        .expect("psql");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "Vigil refuses passwords over an unencrypted connection from a remote address"
        ),
        "{}",
        show(&out)
    );
    // From loopback the same token is fine.
    let out = gw.psql(CLIENT, &token, &["-tAc", "SELECT 1"]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn an_idle_session_is_closed_when_its_token_expires() {
    let provider = OidcProvider::start_with(Some(provider_config()));
    let gw = gateway(&provider);
    let token = provider.token(CLIENT, CLIENT_SECRET, "urn:vigil:short", "db:read");
    // Open a transaction and go idle past the token's expiry, sending
    // nothing: the gateway ends the session by itself.
    let out = gw.psql(
        CLIENT,
        &token,
        &[
            "-tA",
            "-c",
            "BEGIN",
            "-c",
            "SELECT 'in a transaction'",
            "-c",
            "\\! sleep 5",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("in a transaction"),
        "{}",
        show(&out)
    );
    let events = gw.wait_for_events(|evs| {
        evs.iter()
            .any(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
    });
    let reason = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(Kind::SessionClosed(c)) => Some(c.reason_text()),
            _ => None,
        })
        .unwrap();
    assert!(
        reason.contains("the access token of this session expired at"),
        "{reason}"
    );
    // No statement was sent after expiry: the timer, not a refusal, ended it.
    assert!(!events
        .iter()
        .any(|e| e.decision().is_some_and(|d| d.rule == "token-expired")));
}
