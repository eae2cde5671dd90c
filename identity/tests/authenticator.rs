//! The Authenticator: which path a password takes (token or static), bearer
//! tokens for HTTP callers (the approval service's approvers), and several
//! issuers side by side.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use vigil_identity::{
    hash_password, AuthError, Authenticator, IssuerSettings, LoginThrottle, StaticIdentities,
    StaticIdentity, ThrottleSettings, TokenVerifier,
};

const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn statics() -> StaticIdentities {
    StaticIdentities::new(vec![StaticIdentity {
        name: "break-glass".into(),
        password_hash: hash_password(b"s3cret"),
        groups: vec!["dba".into()],
        loopback_only: false,
    }])
    .unwrap()
}

fn tokens() -> Arc<TokenVerifier> {
    Arc::new(verifier(IssuerSettings::new(ISSUER, AUDIENCE)))
}

#[test]
fn a_jwt_password_is_a_token_and_anything_else_a_static_secret() {
    let s = signers();
    let auth = Authenticator::new(statics(), Some(tokens()));
    let token = s.sign(Signers::header("RS256"), good_claims());
    let now = SystemTime::now();

    let id = auth
        .authenticate(
            "ignored",
            token.as_bytes(),
            REMOTE,
            &["db:read".into()],
            now,
        )
        .unwrap();
    assert_eq!(
        (id.subject.as_str(), id.auth_method.as_str()),
        ("agent-ehr", "oidc")
    );
    assert_eq!(id.token_id, "tok-1");
    assert!(id.expires_at.is_some());

    // A listener that requires scopes is for tokens only.
    let err = auth
        .authenticate("break-glass", b"s3cret", REMOTE, &["db:read".into()], now)
        .unwrap_err();
    assert_eq!(err.code(), "static_on_scoped_listener");
    assert!(
        err.to_string().contains("requires the scope(s) db:read"),
        "{err}"
    );
    let id = auth
        .authenticate("break-glass", b"s3cret", REMOTE, &[], now)
        .unwrap();
    assert_eq!(
        (id.subject.as_str(), id.auth_method.as_str()),
        ("break-glass", "password")
    );
    assert_eq!(id.roles, vec!["dba"]);
    assert_eq!(id.expires_at, None);

    // A broken token is reported as a token problem, not a wrong password.
    let err = auth
        .authenticate("break-glass", &token.as_bytes()[..40], REMOTE, &[], now)
        .unwrap_err();
    assert_eq!(err.code(), "malformed");
    let err = auth
        .authenticate("break-glass", b"wrong", REMOTE, &[], now)
        .unwrap_err();
    assert_eq!(err, AuthError::BadCredentials("break-glass".into()));
}

#[test]
fn without_static_identities_every_password_must_be_a_token() {
    let auth = Authenticator::new(StaticIdentities::default(), Some(tokens()));
    let err = auth
        .authenticate("dev", b"dev", LOOPBACK, &[], SystemTime::now())
        .unwrap_err();
    assert_eq!(err.code(), "malformed");
    assert!(err
        .to_string()
        .starts_with("Vigil refused the access token: "));
}

#[test]
fn bearer_tokens_go_through_the_same_checks() {
    let s = signers();
    let auth = Authenticator::new(statics(), Some(tokens()));
    let now = SystemTime::now();
    let token = s.sign(Signers::header("ES256"), good_claims());
    let id = auth
        .authenticate_bearer(&token, &["db:read".into()], now)
        .unwrap();
    assert_eq!(id.subject, "agent-ehr");
    let err = auth
        .authenticate_bearer(&token, &["approvals:decide".into()], now)
        .unwrap_err();
    assert_eq!(err.code(), "missing_scope");
    // A static secret is never a bearer token.
    let err = auth.authenticate_bearer("s3cret", &[], now).unwrap_err();
    assert_eq!(err.code(), "malformed");
    // No issuers configured: no bearer token can pass.
    let no_tokens = Authenticator::new(statics(), None);
    assert_eq!(
        no_tokens
            .authenticate_bearer(&token, &[], now)
            .unwrap_err()
            .code(),
        "unknown_issuer"
    );
}

#[test]
fn several_issuers_each_verify_with_their_own_keys() {
    let s = signers();
    let other_issuer = "https://login.partner.example";
    // The partner publishes only the EdDSA key; our issuer only the RSA key.
    let jwks = s.jwks();
    let pick = |kid: &str| {
        openidconnect::core::CoreJsonWebKeySet::new(
            jwks.keys()
                .iter()
                .filter(|k| {
                    openidconnect::JsonWebKey::key_id(*k).is_some_and(|id| id.as_str() == kid)
                })
                .cloned()
                .collect(),
        )
    };
    let v = TokenVerifier::with_sources(vec![
        (
            IssuerSettings::new(ISSUER, AUDIENCE),
            Box::new(Fixed(pick("rsa-1"))),
        ),
        (
            IssuerSettings::new(other_issuer, AUDIENCE),
            Box::new(Fixed(pick("ed-1"))),
        ),
    ])
    .unwrap();
    for (_, r) in v.refresh_all() {
        r.unwrap();
    }
    let now = SystemTime::now();
    let ours = s.sign(Signers::header("RS256"), good_claims());
    assert_eq!(v.verify(&ours, now).unwrap().issuer, ISSUER);
    let mut partner_claims = good_claims();
    partner_claims["iss"] = json!(other_issuer);
    let theirs = s.sign(Signers::header("EdDSA"), partner_claims.clone());
    assert_eq!(v.verify(&theirs, now).unwrap().issuer, other_issuer);
    // The partner cannot use our issuer's key, nor we theirs.
    let crossed = s.sign(Signers::header("RS256"), partner_claims);
    assert_eq!(v.verify(&crossed, now).unwrap_err().code(), "unknown_key");
}

#[test]
fn failed_logins_are_throttled_before_any_password_is_hashed() {
    let auth =
        Authenticator::new(statics(), None).with_throttle(LoginThrottle::new(ThrottleSettings {
            failures_per_address: 3,
            failures_per_name: 100,
            forgive_every: Duration::from_secs(3600),
            max_tracked: 100,
        }));
    let now = SystemTime::now();
    for _ in 0..3 {
        let err = auth
            .authenticate("break-glass", b"wrong", REMOTE, &[], now)
            .unwrap_err();
        assert_eq!(err.code(), "bad_credentials");
        assert!(err.worth_recording() && !err.is_overload());
    }
    // Now even the right password is refused from that address, and only
    // the first refusal of the spell is worth an event.
    let err = auth
        .authenticate("break-glass", b"s3cret", REMOTE, &[], now)
        .unwrap_err();
    assert_eq!(err.code(), "throttled");
    assert!(err.is_overload() && err.worth_recording());
    assert!(err
        .to_string()
        .contains("too many failed logins from this address"));
    let err = auth
        .authenticate("break-glass", b"s3cret", REMOTE, &[], now)
        .unwrap_err();
    assert!(!err.worth_recording());
    // Another address is unaffected.
    assert!(auth
        .authenticate("break-glass", b"s3cret", LOOPBACK, &[], now)
        .is_ok());
}
