//! The config file's checks, table-tested: every broken config names its
//! problem; the shipped examples and deployments parse.

use super::ledger::GrpcTlsSection;
use super::*;

const GOOD: &str = r#"
data_dir = "/tmp/x"
[ledger]
origin = "vigil.example.org/ehr"
http_listen = "127.0.0.1:7580"
grpc_listen = "127.0.0.1:7581"
body_keys_env = "VIGIL_TEST_BODY_KEYS"
[[postgres]]
name = "ehr"
listen = "127.0.0.1:7543"
policy = "builtin:allow-all"
upstream = { host = "127.0.0.1", user = "postgres" }
[[oidc.issuers]]
issuer = "https://idp.example.org/realms/hospital"
audiences = ["urn:vigil:ehr"]
"#;

/// The TOML blocks (`name: |` then indented lines) of a ConfigMap.
fn configmap_blocks(yaml: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(name) = line.trim().strip_suffix(": |") {
            let mut body = String::new();
            while let Some(next) = lines.next_if(|l| l.starts_with("    ") || l.is_empty()) {
                body.push_str(next.trim_start_matches("    "));
                body.push('\n');
            }
            blocks.push((name.to_string(), body));
        }
    }
    blocks
}

#[test]
fn grpc_tls_files_that_are_missing_or_not_pem_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ok.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let key = dir.path().join("ok.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            (&missing, &key, &pem),
            "ledger.grpc_tls.cert_file: cannot read",
        ),
        (
            (&pem, &missing, &pem),
            "ledger.grpc_tls.key_file: cannot read",
        ),
        (
            (&pem, &key, &missing),
            "ledger.grpc_tls.client_ca_file: cannot read",
        ),
        ((&junk, &key, &pem), "cert_file: no PEM CERTIFICATE"),
        ((&pem, &junk, &pem), "key_file: no PEM PRIVATE KEY"),
        ((&pem, &key, &junk), "client_ca_file: no PEM CERTIFICATE"),
    ];
    for ((cert, key, ca), want) in cases {
        let section = GrpcTlsSection {
            cert_file: cert.clone(),
            key_file: key.clone(),
            client_ca_file: ca.clone(),
        };
        let err = format!("{:#}", section.server_config().unwrap_err());
        assert!(err.contains(want), "want {want:?}, got {err:?}");
    }
}

#[test]
fn a_grpc_listener_off_loopback_needs_tls() {
    let open = GOOD.replace(
        "grpc_listen = \"127.0.0.1:7581\"",
        "grpc_listen = \"0.0.0.0:7581\"",
    );
    let err = format!("{:#}", Config::parse(&open).unwrap_err());
    assert!(err.contains("[ledger.grpc_tls]"), "{err}");
    let with_tls = format!(
        "{open}\n[ledger.grpc_tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nclient_ca_file = \"/ca.pem\"\n"
    );
    // Appended at the end, the table still belongs to [ledger].
    let parsed = Config::parse(&with_tls);
    assert!(parsed.is_ok(), "{:#}", parsed.unwrap_err());
}

#[test]
fn the_kubernetes_configs_are_valid_for_their_roles() {
    let blocks = configmap_blocks(include_str!("../../../../deploy/k8s/config.yaml"));
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    for (name, text) in blocks {
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let role = match name.as_str() {
            "ledger.toml" => crate::up::Roles::Ledger,
            "proxy.toml" => crate::up::Roles::Proxy,
            "approvals.toml" => crate::up::Roles::Approvals,
            other => panic!("unexpected block {other}"),
        };
        config
            .check_role(role)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[test]
fn the_shipped_example_parses() {
    let text = include_str!("../../../../deploy/vigil.example.toml");
    let config = Config::parse(text).expect("deploy/vigil.example.toml must stay valid");
    assert!(!config.postgres.is_empty());
}

#[test]
fn durations_take_units_and_the_older_keys_still_work() {
    let with_units = GOOD
        .replace(
            "body_keys_env",
            "checkpoint_interval = \"100ms\"\nbody_keys_env",
        )
        .replace(
            "user = \"postgres\" }",
            "user = \"postgres\", connect_timeout = \"3s\" }",
        )
        .replace(
            "audiences = [\"urn:vigil:ehr\"]",
            "audiences = [\"urn:vigil:ehr\"]\nclock_skew = \"2m\"\njwks_refresh = \"1h\"\nhttp_timeout = \"2s\"",
        )
        + "[bus]\nsession_timeout = \"15s\"\n[logins]\nforgive_failure_every = \"10s\"\n";
    let c = Config::parse(&with_units).unwrap();
    assert_eq!(c.ledger.checkpoint_interval_ms, 100);
    assert_eq!(c.postgres[0].upstream.connect_timeout_ms, 3000);
    assert_eq!(c.bus.session_timeout_ms, 15_000);
    let issuer = &c.oidc.issuers[0];
    assert_eq!(
        (
            issuer.clock_skew_secs,
            issuer.jwks_refresh_secs,
            issuer.http_timeout_ms
        ),
        (120, 3600, 2000)
    );
    let older = GOOD.replace(
        "body_keys_env",
        "checkpoint_interval_ms = 100\nbody_keys_env",
    );
    assert_eq!(
        Config::parse(&older).unwrap().ledger.checkpoint_interval_ms,
        100
    );
    let both = GOOD.replace(
        "body_keys_env",
        "checkpoint_interval = \"1s\"\ncheckpoint_interval_ms = 100\nbody_keys_env",
    );
    let err = format!("{:#}", Config::parse(&both).unwrap_err());
    assert!(
        err.contains("ledger.checkpoint_interval or the older ledger.checkpoint_interval_ms"),
        "{err}"
    );
    let unitless = GOOD.replace(
        "body_keys_env",
        "checkpoint_interval = \"100\"\nbody_keys_env",
    );
    let err = format!("{:#}", Config::parse(&unitless).unwrap_err());
    assert!(err.contains("has no unit"), "{err}");
}

#[test]
fn a_minimal_config_parses() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.postgres[0].upstream.port, 5432);
    assert_eq!(c.ledger.checkpoint_interval_ms, 250);
    assert_eq!(
        c.ledger.tile_cache_mib, 1024,
        "proof tiles cached by default"
    );
    let none = GOOD.replace("body_keys_env", "tile_cache_mib = 0\nbody_keys_env");
    assert_eq!(Config::parse(&none).unwrap().ledger.tile_cache_mib, 0);
}

#[test]
fn a_proxy_config_needs_no_ledger_table_but_a_ledger_does() {
    use crate::up::Roles;
    let proxy = r#"
data_dir = "/tmp/p"
allow_static_identities = true
[[identities]]
name = "agent"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$iqsy4O4Ol4VAH/VXv6VdpA$1SwGaLpokOXrpFNH2hvPVwbl941eoFPEYyCxTF0kZnc"
[[postgres]]
name = "ehr"
listen = "127.0.0.1:7543"
policy = "builtin:allow-all"
upstream = { host = "127.0.0.1", user = "postgres" }
[bus]
kind = "kafka"
bootstrap = "127.0.0.1:9092"
"#;
    let c = Config::parse(proxy).unwrap();
    c.check_role(Roles::Proxy).unwrap();
    let err = format!("{:#}", c.check_role(Roles::Ledger).unwrap_err());
    assert!(err.contains("ledger.origin is required"), "{err}");
    let err = format!("{:#}", c.check_role(Roles::All).unwrap_err());
    assert!(err.contains("ledger.origin is required"), "{err}");
    // Without Kafka, a proxy-only process has nowhere to send events.
    let embedded = proxy.split("[bus]").next().unwrap();
    let err = format!(
        "{:#}",
        Config::parse(embedded)
            .unwrap()
            .check_role(Roles::Proxy)
            .unwrap_err()
    );
    assert!(err.contains("need [bus] kind = \"kafka\""), "{err}");
}

#[test]
fn broken_configs_are_refused_with_a_reason() {
    let cases = [
        (
            "unknown key",
            GOOD.replace("name = \"ehr\"", "name = \"ehr\"\nbogus = 1"),
            "unknown field",
        ),
        (
            "bad address",
            GOOD.replace("127.0.0.1:7543", "nowhere"),
            "invalid socket address",
        ),
        (
            "no listeners",
            GOOD.split("[[postgres]]").next().unwrap().to_string(),
            "no [[postgres]]",
        ),
        (
            "no origin",
            GOOD.replace("origin = \"vigil.example.org/ehr\"", ""),
            "ledger.origin is required",
        ),
        (
            "origin with space",
            GOOD.replace("vigil.example.org/ehr", "a b"),
            "ledger.origin",
        ),
        (
            "same port twice",
            GOOD.replace("7543", "7580"),
            "used twice",
        ),
        ("not toml", "data_dir = ".to_string(), "TOML parse error"),
        (
            "kafka without brokers",
            format!("{GOOD}\n[bus]\nkind = \"kafka\"\n"),
            "needs bus.bootstrap",
        ),
        (
            "brokers without kafka",
            format!("{GOOD}\n[bus]\nbootstrap = \"127.0.0.1:9092\"\n"),
            "bus.kind is not",
        ),
        (
            "unknown bus kind",
            format!("{GOOD}\n[bus]\nkind = \"rabbit\"\n"),
            "unknown variant `rabbit`",
        ),
        (
            "empty outbox",
            format!("{GOOD}\n[bus]\nkind = \"kafka\"\nbootstrap = \"b:9092\"\n[bus.outbox]\nmax_events = 0\n"),
            "bus.outbox.max_events",
        ),
        (
            "silly session timeout",
            format!("{GOOD}\n[bus]\nkind = \"kafka\"\nbootstrap = \"b:9092\"\nsession_timeout_ms = 5\n"),
            "bus.session_timeout_ms",
        ),
        (
            "no body keys",
            GOOD.replace("body_keys_env = \"VIGIL_TEST_BODY_KEYS\"", ""),
            "body_keys_file or ledger.body_keys_env is required",
        ),
        (
            "bad retention",
            GOOD.replace(
                "body_keys_env = \"VIGIL_TEST_BODY_KEYS\"",
                "body_keys_env = \"K\"\n[ledger.retention]\nolder_than = \"6 years\"",
            ),
            "ledger.retention.older_than",
        ),
        (
            "retention below its minimum",
            GOOD.replace(
                "body_keys_env = \"VIGIL_TEST_BODY_KEYS\"",
                "body_keys_env = \"K\"\n[ledger.retention]\nolder_than = \"30d\"",
            ),
            "shorter than the configured minimum 6y",
        ),
        (
            "bad retention minimum",
            GOOD.replace(
                "body_keys_env = \"VIGIL_TEST_BODY_KEYS\"",
                "body_keys_env = \"K\"\n[ledger.retention]\nminimum = \"0d\"",
            ),
            "ledger.retention.minimum",
        ),
        (
            "plaintext hash",
            format!("{GOOD}\n[[identities]]\nname = \"a\"\npassword_hash = \"secret\"\n"),
            "not an Argon2",
        ),
        (
            "static identities not allowed",
            format!(
                "{GOOD}\n[[identities]]\nname = \"a\"\npassword_hash = \"{}\"\n",
                vigil_proxy_core::identity::hash_password(b"a")
            ),
            "allow_static_identities is false",
        ),
        (
            "nobody can log in",
            GOOD.split("[[oidc.issuers]]").next().unwrap().to_string(),
            "nobody can log in",
        ),
        (
            "plain-http issuer",
            GOOD.replace("https://idp.example.org", "http://idp.example.org"),
            "must use https",
        ),
        (
            "symmetric algorithm",
            format!("{GOOD}algorithms = [\"RS256\", \"HS256\"]\n"),
            "\"HS256\" is not accepted",
        ),
        (
            "unknown issuer key",
            format!("{GOOD}audience = \"x\"\n"),
            "unknown field `audience`",
        ),
        (
            "scopes without issuers",
            format!(
                "allow_static_identities = true\n{}[[identities]]\nname = \"a\"\npassword_hash = \"{}\"\n",
                GOOD.split("[[oidc.issuers]]")
                    .next()
                    .unwrap()
                    .replace("policy = ", "required_scopes = [\"db:read\"]\npolicy = "),
                vigil_proxy_core::identity::hash_password(b"a")
            ),
            "required_scopes needs [[oidc.issuers]]",
        ),
        (
            "bad token hash",
            GOOD.replace(
                "grpc_listen = \"127.0.0.1:7581\"",
                "grpc_listen = \"127.0.0.1:7581\"\nauditor_tokens_sha256 = [\"zz\"]",
            ),
            "64 hex",
        ),
    ];
    for (name, text, expected) in cases {
        let parsed =
            Config::parse(&text).and_then(|c| c.check_role(crate::up::Roles::All).map(|()| c));
        let err = format!("{:#}", parsed.expect_err(name));
        assert!(err.contains(expected), "{name}: {err}");
    }
}

#[test]
fn dev_config_is_valid_and_loopback_only() {
    let c = Config::dev(PathBuf::from("vigil-data"));
    c.validate().unwrap();
    assert!(c.identities.iter().all(|i| i.loopback_only));
    assert!(c.allow_static_identities);
    assert!(c.postgres.iter().all(|p| p.listen.ip().is_loopback()));
}

#[test]
fn unusable_tls_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    for (cert, want) in [
        (
            "/nonexistent/cert.pem".to_string(),
            "cannot read /nonexistent/cert.pem",
        ),
        (
            junk.display().to_string(),
            "unusable TLS certificate or key",
        ),
    ] {
        let text = GOOD.replace(
            "listen = \"127.0.0.1:7543\"",
            &format!(
                "listen = \"127.0.0.1:7543\"\ntls = {{ cert_file = \"{cert}\", key_file = \"{}\" }}",
                junk.display()
            ),
        );
        let err = format!("{:#}", Config::parse(&text).unwrap().proxies().unwrap_err());
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn a_masking_policy_needs_a_masking_key_and_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let phi = GOOD.replace("builtin:allow-all", "builtin:phi-default");
    let err = format!("{:#}", Config::parse(&phi).unwrap().proxies().unwrap_err());
    assert!(
        err.contains("masking.hash_key_file or masking.hash_key_env is required"),
        "{err}"
    );

    let key = dir.path().join("masking.key");
    std::fs::write(&key, crate::policy_setup::new_masking_key_line()).unwrap();
    let with_key = format!("{phi}\n[masking]\nhash_key_file = \"{}\"\n", key.display());
    let proxies = Config::parse(&with_key).unwrap().proxies().unwrap();
    assert_eq!(proxies[0].1.policy.name(), "phi-default");

    let bad = dir.path().join("bad-policy.toml");
    for (text, want) in [
        ("name = \"x\"\ndefault = \"maybe\"", "unknown variant"),
        ("name = \"x\"\ndefault = \"deny\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\nkinds = [\"drop\"]\ncolour = \"red\"", "unknown field"),
        ("name = \"x\"\ndefault = \"deny\"\n[limits]\nmax_rows = 0", "max_rows must be at least 1"),
        ("name = \"x\"\ndefault = \"deny\"\n[masking.detectors]\npatterns = { mrn = [\"\"] }", "mrn"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let cfg = with_key.replace("builtin:phi-default", &bad.display().to_string());
        let err = format!("{:#}", Config::parse(&cfg).unwrap().proxies().unwrap_err());
        assert!(err.contains(want) && err.contains("postgres \"ehr\""), "{text}: {err}");
    }
    let missing = with_key.replace("builtin:phi-default", "/nonexistent/policy.toml");
    let err = format!(
        "{:#}",
        Config::parse(&missing).unwrap().proxies().unwrap_err()
    );
    assert!(
        err.contains("cannot read policy file /nonexistent/policy.toml"),
        "{err}"
    );
}

#[test]
fn upstream_tls_settings_are_checked() {
    for (tls, want) in [
        (
            r#"{ mode = "verify-full" }"#,
            "verify-full needs a CA certificate file",
        ),
        (
            r#"{ mode = "verify-full", ca_file = "/nonexistent/ca.pem" }"#,
            "cannot read /nonexistent/ca.pem",
        ),
        (r#"{ mode = "sometimes" }"#, "unknown variant"),
    ] {
        let text = GOOD.replace(
            "user = \"postgres\" }",
            &format!("user = \"postgres\", tls = {tls} }}"),
        );
        let err = match Config::parse(&text) {
            Ok(c) => format!("{:#}", c.proxies().unwrap_err()),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(want), "{tls}: {err}");
    }
    let ok = GOOD.replace(
        "user = \"postgres\" }",
        "user = \"postgres\", tls = { mode = \"require\" } }",
    );
    assert!(Config::parse(&ok).unwrap().proxies().unwrap()[0]
        .1
        .upstream
        .tls
        .is_some());
}

#[test]
fn missing_password_env_is_a_clear_error() {
    let text = GOOD.replace(
        "user = \"postgres\" }",
        "user = \"postgres\", password_env = \"VIGIL_TEST_SURELY_UNSET\" }",
    );
    let err = format!("{:#}", Config::parse(&text).unwrap().proxies().unwrap_err());
    assert!(err.contains("VIGIL_TEST_SURELY_UNSET"), "{err}");
}
