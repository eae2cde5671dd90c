//! The verifier against tokens signed with fixture keys: every algorithm on
//! the allow-list verifies; every way a token can be wrong is refused with
//! its own reason. (The end-to-end tests repeat the table against a real
//! OpenID provider, through psql.)

mod common;

use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use vigil_identity::{IssuerSettings, TokenError};

fn settings() -> IssuerSettings {
    IssuerSettings::new(ISSUER, AUDIENCE)
}

#[test]
fn every_allowed_algorithm_verifies_and_yields_the_identity() {
    let s = signers();
    let v = verifier(settings());
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        let token = s.sign(Signers::header(alg), good_claims());
        let id = v
            .verify(&token, SystemTime::now())
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(id.subject, "agent-ehr");
        assert_eq!(id.issuer, ISSUER);
        assert_eq!(id.client_id, "agent-ehr");
        assert_eq!(id.token_id, "tok-1");
        assert_eq!(id.groups, vec!["ehr-analysts", "staff"]);
        assert_eq!(id.roles, id.groups, "no role table: groups pass through");
        assert_eq!(id.scopes, vec!["db:read", "db:write"]);
        assert!(id.expires_at > SystemTime::now());
    }
}

fn with(claims: Value, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims;
    change(claims.as_object_mut().unwrap());
    claims
}

/// Flips one bit in the middle of the signature part.
fn tamper_signature(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Swaps in different claims but keeps the original signature.
fn tamper_claims(token: &str, claims: Value) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    parts[1] = &payload;
    parts.join(".")
}

#[test]
fn bad_tokens_are_refused_each_with_its_own_reason() {
    let s = signers();
    let v = verifier(settings());
    let rs = Signers::header("RS256");
    let now = now_secs();
    let good = s.sign(rs.clone(), good_claims());
    let hs_header = json!({"alg": "HS256", "kid": "rsa-1", "typ": "at+jwt"});
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string()),
        URL_SAFE_NO_PAD.encode(good_claims().to_string())
    );
    let hs256 = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(hs_header.to_string()),
        URL_SAFE_NO_PAD.encode(good_claims().to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "expired",
            s.sign(
                rs.clone(),
                with(good_claims(), |c| {
                    c.insert("exp".into(), json!(now - 120));
                }),
            ),
            "expired",
            "token expired at ",
        ),
        (
            "not yet valid",
            s.sign(
                rs.clone(),
                with(good_claims(), |c| {
                    c.insert("nbf".into(), json!(now + 3600));
                }),
            ),
            "not_yet_valid",
            "not valid before",
        ),
        (
            "issued in the future",
            s.sign(
                rs.clone(),
                with(good_claims(), |c| {
                    c.insert("iat".into(), json!(now + 3600));
                }),
            ),
            "issued_in_future",
            "issued in the future",
        ),
        (
            "wrong issuer",
            s.sign(
                rs.clone(),
                with(good_claims(), |c| {
                    c.insert("iss".into(), json!("https://evil.example.org"));
                }),
            ),
            "unknown_issuer",
            "\"https://evil.example.org\" is not a trusted issuer",
        ),
        (
            "wrong audience",
            s.sign(
                rs.clone(),
                with(good_claims(), |c| {
                    c.insert("aud".into(), json!(["urn:other"]));
                }),
            ),
            "wrong_audience",
            "expected one of: urn:vigil:ehr",
        ),
        (
            "no audience",
            s.sign(
                rs.clone(),
                with(good_claims(), |c| {
                    c.remove("aud");
                }),
            ),
            "missing_claim",
            "no aud claim",
        ),
        (
            "no expiry",
            s.sign(
                rs.clone(),
                with(good_claims(), |c| {
                    c.remove("exp");
                }),
            ),
            "missing_claim",
            "no exp claim",
        ),
        (
            "unknown key id",
            s.sign(
                json!({"alg": "RS256", "kid": "rotated-away", "typ": "at+jwt"}),
                good_claims(),
            ),
            "unknown_key",
            "\"rotated-away\" is not among the signing keys",
        ),
        (
            "tampered signature",
            tamper_signature(&good),
            "bad_signature",
            "signature is invalid",
        ),
        (
            "tampered claims",
            tamper_claims(
                &good,
                with(good_claims(), |c| {
                    c.insert("sub".into(), json!("admin"));
                }),
            ),
            "bad_signature",
            "signature is invalid",
        ),
        (
            "alg none",
            unsigned,
            "algorithm_not_allowed",
            "\"none\" is not allowed",
        ),
        (
            "HS256",
            hs256,
            "algorithm_not_allowed",
            "\"HS256\" is not allowed",
        ),
        (
            "ID-token type",
            s.sign(
                json!({"alg": "RS256", "kid": "rsa-1", "typ": "id_token+jwt"}),
                good_claims(),
            ),
            "not_an_access_token",
            "not an access token",
        ),
        (
            "EC key named for an RSA algorithm",
            s.sign(
                json!({"alg": "ES256", "kid": "rsa-1", "typ": "at+jwt"}),
                good_claims(),
            ),
            "bad_signature",
            "signature is invalid",
        ),
        (
            "truncated",
            good[..good.len() / 2].to_string(),
            "malformed",
            "not a well-formed JWT",
        ),
        (
            "garbled",
            "eyJ!!!.???.###".to_string(),
            "malformed",
            "not base64url",
        ),
        (
            "empty",
            String::new(),
            "malformed",
            "three dot-separated parts",
        ),
    ];
    for (name, token, code, text) in cases {
        let err = v.verify(&token, SystemTime::now()).expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err}");
        let shown = err.to_string();
        assert!(shown.contains(text), "{name}: {shown}");
        assert!(
            !shown.contains(&token[..token.len().min(40)]) || token.len() < 10,
            "{name}: the error quotes the token"
        );
    }
}

#[test]
fn scopes_are_required_per_connection() {
    let s = signers();
    let v = verifier(settings());
    let id = v
        .verify(
            &s.sign(Signers::header("RS256"), good_claims()),
            SystemTime::now(),
        )
        .unwrap();
    id.require_scopes(&["db:read".into()]).unwrap();
    let err = id
        .require_scopes(&["db:read".into(), "db:admin".into()])
        .unwrap_err();
    assert_eq!(err.code(), "missing_scope");
    assert_eq!(
        err.to_string(),
        "token lacks the scope(s) db:admin this connection requires (granted: db:read db:write)"
    );
}

#[test]
fn clock_skew_is_honoured_both_ways() {
    let s = signers();
    let mut settings = settings();
    settings.clock_skew_secs = 30;
    let v = verifier(settings);
    let now = now_secs();
    let just_expired = s.sign(
        Signers::header("EdDSA"),
        with(good_claims(), |c| {
            c.insert("exp".into(), json!(now - 10));
        }),
    );
    assert!(v.verify(&just_expired, SystemTime::now()).is_ok());
    let long_expired = s.sign(
        Signers::header("EdDSA"),
        with(good_claims(), |c| {
            c.insert("exp".into(), json!(now - 40));
        }),
    );
    assert!(matches!(
        v.verify(&long_expired, SystemTime::now()),
        Err(TokenError::Expired(_))
    ));
    let nbf_soon = s.sign(
        Signers::header("EdDSA"),
        with(good_claims(), |c| {
            c.insert("nbf".into(), json!(now + 10));
        }),
    );
    assert!(v.verify(&nbf_soon, SystemTime::now()).is_ok());
}

#[test]
fn an_algorithm_off_the_issuers_list_is_refused() {
    let s = signers();
    let mut settings = settings();
    settings.algorithms = vec!["ES256".into()];
    let v = verifier(settings);
    let err = v
        .verify(
            &s.sign(Signers::header("RS256"), good_claims()),
            SystemTime::now(),
        )
        .unwrap_err();
    assert_eq!(err.code(), "algorithm_not_allowed");
    assert!(v
        .verify(
            &s.sign(Signers::header("ES256"), good_claims()),
            SystemTime::now()
        )
        .is_ok());
}

#[test]
fn require_at_jwt_refuses_plain_jwts() {
    let s = signers();
    let plain = s.sign(
        json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
        good_claims(),
    );
    assert!(verifier(settings())
        .verify(&plain, SystemTime::now())
        .is_ok());
    let mut strict = settings();
    strict.require_at_jwt = true;
    let err = verifier(strict)
        .verify(&plain, SystemTime::now())
        .unwrap_err();
    assert_eq!(err.code(), "not_an_access_token");
}

#[test]
fn groups_from_a_nested_claim_map_to_roles() {
    let s = signers();
    let mut settings = settings();
    settings.groups_claim = "realm_access.roles".into();
    settings.roles = [
        ("phi-readers".to_string(), vec!["ehr-analysts".to_string()]),
        ("dba".to_string(), vec!["platform-dba".to_string()]),
    ]
    .into_iter()
    .collect();
    let v = verifier(settings);
    let claims = with(good_claims(), |c| {
        c.remove("groups");
        c.insert(
            "realm_access".into(),
            json!({"roles": ["ehr-analysts", "other"]}),
        );
        c.remove("client_id");
        c.insert("azp".into(), json!("keycloak-client"));
        c.remove("scope");
        c.insert("scp".into(), json!(["db:read"]));
    });
    let id = v
        .verify(&s.sign(Signers::header("ES256"), claims), SystemTime::now())
        .unwrap();
    assert_eq!(id.groups, vec!["ehr-analysts", "other"]);
    assert_eq!(id.roles, vec!["phi-readers"]);
    assert_eq!(id.client_id, "keycloak-client");
    assert_eq!(id.scopes, vec!["db:read"]);
}

#[test]
fn a_groups_claim_of_the_wrong_shape_is_refused() {
    let s = signers();
    let v = verifier(settings());
    let claims = with(good_claims(), |c| {
        c.insert("groups".into(), json!([1, 2]));
    });
    let err = v
        .verify(&s.sign(Signers::header("RS256"), claims), SystemTime::now())
        .unwrap_err();
    assert_eq!(err, TokenError::InvalidClaim("groups"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary text never verifies and never panics.
    #[test]
    fn arbitrary_text_is_refused(text in "\\PC{0,300}") {
        let v = verifier(settings());
        prop_assert!(v.verify(&text, SystemTime::now()).is_err());
    }

    /// A valid token with any one byte changed never verifies.
    #[test]
    fn any_single_byte_change_is_refused(pos in 0usize..4096, byte in any::<u8>()) {
        let s = signers();
        let v = verifier(settings());
        let token = s.sign(Signers::header("EdDSA"), good_claims());
        let mut bytes = token.clone().into_bytes();
        let pos = pos % bytes.len();
        prop_assume!(bytes[pos] != byte);
        bytes[pos] = byte;
        if let Ok(changed) = String::from_utf8(bytes) {
            // Base64 has slack bits: a change there decodes to the same bytes.
            let same = changed.split('.').map(|p| URL_SAFE_NO_PAD.decode(p).ok()).collect::<Vec<_>>()
                == token.split('.').map(|p| URL_SAFE_NO_PAD.decode(p).ok()).collect::<Vec<_>>();
            prop_assume!(!same);
            prop_assert!(v.verify(&changed, SystemTime::now()).is_err());
        }
    }
}

/// A key source whose set the test replaces (a rotation at the issuer).
struct Switchable(std::sync::Arc<std::sync::Mutex<openidconnect::core::CoreJsonWebKeySet>>);

impl vigil_identity::KeySource for Switchable {
    fn fetch(&self) -> Result<openidconnect::core::CoreJsonWebKeySet, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

#[test]
fn a_remembered_token_is_still_checked_for_expiry_and_key_changes() {
    let s = signers();
    let set = std::sync::Arc::new(std::sync::Mutex::new(s.jwks()));
    let v = vigil_identity::TokenVerifier::with_sources(vec![(
        settings(),
        Box::new(Switchable(set.clone())),
    )])
    .unwrap();
    v.refresh_all();
    let token = s.sign(Signers::header("ES256"), good_claims());
    let now = SystemTime::now();
    assert!(v.verify(&token, now).is_ok());
    assert!(v.verify(&token, now).is_ok(), "the same token again");
    // Its validity window is checked every time.
    let later = now + std::time::Duration::from_secs(3600);
    assert_eq!(v.verify(&token, later).unwrap_err().code(), "expired");
    // The issuer withdraws the key: the remembered result is not reused.
    *set.lock().unwrap() = openidconnect::core::CoreJsonWebKeySet::new(
        s.jwks()
            .keys()
            .iter()
            .filter(|k| {
                openidconnect::JsonWebKey::key_id(*k).is_some_and(|id| id.as_str() != "ec-1")
            })
            .cloned()
            .collect(),
    );
    v.refresh_all();
    assert_eq!(v.verify(&token, now).unwrap_err().code(), "unknown_key");
}

#[test]
fn a_mistyped_password_is_not_quoted_back() {
    // With no static identities every password is taken for a token; the
    // error must not echo any of it (base64 decoders quote the bad byte).
    let v = verifier(settings());
    for secret in ["my.Secr3t!.pw", "eyJzecret.pa$$.word"] {
        let err = v.verify(secret, SystemTime::now()).unwrap_err().to_string();
        assert!(!err.contains("symbol") && !err.contains("offset"), "{err}");
        assert!(!err.contains("Secr3t") && !err.contains("zecret"), "{err}");
    }
}
