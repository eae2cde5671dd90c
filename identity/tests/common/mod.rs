//! Test-only token minting for the verifier's tests and bench: the fixture
//! keys in `tests/keys/`, their JWKS, and a signer for any header and claims.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreEdDsaPrivateSigningKey, CoreJsonCurveType, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};
use vigil_identity::{IssuerSettings, KeySource, TokenVerifier};

pub const ISSUER: &str = "https://idp.example.org/realms/hospital";
pub const AUDIENCE: &str = "urn:vigil:ehr";

pub struct Signers {
    pub rsa: CoreRsaPrivateSigningKey,
    pub ed: CoreEdDsaPrivateSigningKey,
    pub ec: p256::ecdsa::SigningKey,
}

pub fn signers() -> Signers {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
    let read = |name: &str| std::fs::read_to_string(format!("{dir}{name}")).unwrap();
    Signers {
        rsa: CoreRsaPrivateSigningKey::from_pem(
            &read("rsa-2048.pem"),
            Some(JsonWebKeyId::new("rsa-1".into())),
        )
        .unwrap(),
        ed: CoreEdDsaPrivateSigningKey::from_ed25519_pem(
            &read("ed25519.pem"),
            Some(JsonWebKeyId::new("ed-1".into())),
        )
        .unwrap(),
        ec: p256::ecdsa::SigningKey::from_pkcs8_pem(&read("p256.pem")).unwrap(),
    }
}

impl Signers {
    /// The public keys as the issuer would publish them.
    pub fn jwks(&self) -> CoreJsonWebKeySet {
        let point = self.ec.verifying_key().to_sec1_point(false);
        let ec = CoreJsonWebKey::new_ec(
            point.x().unwrap().to_vec(),
            point.y().unwrap().to_vec(),
            CoreJsonCurveType::P256,
            Some(JsonWebKeyId::new("ec-1".into())),
        );
        CoreJsonWebKeySet::new(vec![
            self.rsa.as_verification_key(),
            self.ed.as_verification_key(),
            ec,
        ])
    }

    /// A compact JWS of `claims` under `header` (which must name `alg`),
    /// signed with the fixture key for that algorithm.
    pub fn sign(&self, header: Value, claims: Value) -> String {
        let alg = header["alg"].as_str().unwrap().to_string();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match alg.as_str() {
            "RS256" => self
                .rsa
                .sign(
                    &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                    input.as_bytes(),
                )
                .unwrap(),
            "PS256" => self
                .rsa
                .sign(&CoreJwsSigningAlgorithm::RsaSsaPssSha256, input.as_bytes())
                .unwrap(),
            "EdDSA" => self
                .ed
                .sign(&CoreJwsSigningAlgorithm::EdDsa, input.as_bytes())
                .unwrap(),
            "ES256" => {
                let sig: p256::ecdsa::Signature = self.ec.sign(input.as_bytes());
                sig.to_bytes().to_vec()
            }
            other => panic!("no fixture key for {other}"),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A header for `alg` with the fixture key's id and `typ: at+jwt`.
    pub fn header(alg: &str) -> Value {
        let kid = match alg {
            "RS256" | "PS256" => "rsa-1",
            "EdDSA" => "ed-1",
            _ => "ec-1",
        };
        json!({ "alg": alg, "kid": kid, "typ": "at+jwt" })
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a valid RFC 9068 token for the test issuer and audience.
pub fn good_claims() -> Value {
    let now = now_secs();
    json!({
        "iss": ISSUER,
        "sub": "agent-ehr",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": "tok-1",
        "client_id": "agent-ehr",
        "scope": "db:read db:write",
        "groups": ["ehr-analysts", "staff"],
    })
}

/// A key source that always returns the same set.
pub struct Fixed(pub CoreJsonWebKeySet);

impl KeySource for Fixed {
    fn fetch(&self) -> Result<CoreJsonWebKeySet, String> {
        Ok(self.0.clone())
    }
}

/// A verifier trusting the fixture keys for `ISSUER`, keys already fetched.
pub fn verifier(settings: IssuerSettings) -> TokenVerifier {
    let v =
        TokenVerifier::with_sources(vec![(settings, Box::new(Fixed(signers().jwks())))]).unwrap();
    for (_, r) in v.refresh_all() {
        r.unwrap();
    }
    v
}
