//! What validating an access token costs once the issuer's keys are cached:
//! parse, key lookup, signature, claims. Target: under 50 µs per token.
//!
//!     cargo bench -p vigil-identity --bench token

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::SystemTime;

use common::*;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use vigil_identity::signature::{Algorithm, PreparedKey};
use vigil_identity::IssuerSettings;

fn validate(c: &mut Criterion) {
    let s = signers();
    let v = verifier(IssuerSettings::new(ISSUER, AUDIENCE));
    let mut group = c.benchmark_group("validate cached-key token");
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        let token = s.sign(Signers::header(alg), good_claims());
        v.verify(&token, SystemTime::now())
            .expect("the bench token verifies");
        // Every check in full: the memory of verified tokens is emptied
        // before each one (that costs a lock and a clear of one entry).
        group.bench_function(format!("{alg}, first time"), |b| {
            b.iter(|| {
                v.forget_verified();
                v.verify(black_box(&token), SystemTime::now()).unwrap()
            })
        });
        group.bench_function(format!("{alg}, the same token again"), |b| {
            b.iter(|| v.verify(black_box(&token), SystemTime::now()).unwrap())
        });
    }
    group.finish();
}

/// The signature check alone (ring), to show how much of the above it is.
fn signature_only(c: &mut Criterion) {
    let s = signers();
    let keys: Vec<PreparedKey> = s
        .jwks()
        .keys()
        .iter()
        .cloned()
        .map(PreparedKey::new)
        .collect();
    let mut group = c.benchmark_group("signature check alone");
    for (name, alg) in [
        ("RS256", Algorithm::Rs256),
        ("PS256", Algorithm::Ps256),
        ("ES256", Algorithm::Es256),
        ("EdDSA", Algorithm::EdDsa),
    ] {
        let token = s.sign(Signers::header(name), good_claims());
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        let key = keys.iter().find(|k| k.fits(alg)).unwrap();
        assert!(key.verify(alg, input.as_bytes(), &sig));
        group.bench_function(name, |b| {
            b.iter(|| key.verify(alg, black_box(input.as_bytes()), black_box(&sig)))
        });
    }
    group.finish();
}

criterion_group!(benches, validate, signature_only);
criterion_main!(benches);
