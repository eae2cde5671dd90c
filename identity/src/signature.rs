//! Signature checks. The issuer's keys arrive as openidconnect JWKs; their
//! material (RSA modulus and exponent, EC point, Ed25519 key) is taken out
//! once per fetch and checked with `ring` at verification time.
//!
//! Why not the JWK's own `verify_signature`: it parses the key and runs
//! RustCrypto's portable big-number code on every call, about 250 µs for
//! RS256 and ES256 here — five times the budget for a login. ring's
//! verifiers (the ones rustls already links) take a fraction of that, and
//! refuse RSA keys under 2048 bits.

use openidconnect::core::{
    CoreJsonCurveType, CoreJsonWebKey, CoreJsonWebKeyType, CoreJwsSigningAlgorithm,
};
use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyUse};
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};

/// The algorithms Vigil verifies (`settings::SUPPORTED_ALGORITHMS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Ps256,
    Es256,
    EdDsa,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "PS256" => Some(Self::Ps256),
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }

    fn jwa(self) -> CoreJwsSigningAlgorithm {
        match self {
            Self::Rs256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            Self::Ps256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            Self::Es256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            Self::EdDsa => CoreJwsSigningAlgorithm::EdDsa,
        }
    }

    fn key_type(self) -> CoreJsonWebKeyType {
        match self {
            Self::Rs256 | Self::Ps256 => CoreJsonWebKeyType::RSA,
            Self::Es256 => CoreJsonWebKeyType::EllipticCurve,
            Self::EdDsa => CoreJsonWebKeyType::OctetKeyPair,
        }
    }
}

/// A key of the issuer's set, ready to verify with.
#[derive(Clone, Debug)]
pub struct PreparedKey {
    pub jwk: CoreJsonWebKey,
    material: Material,
}

#[derive(Clone, Debug)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point `04 || x || y`.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
    /// A key Vigil cannot use (another curve, symmetric, incomplete).
    Unusable,
}

impl PreparedKey {
    pub fn new(jwk: CoreJsonWebKey) -> Self {
        let material = material(&jwk).unwrap_or(Material::Unusable);
        Self { jwk, material }
    }

    /// Whether two key sets hold the same keys (ids, types and material).
    pub fn same_set(a: &[PreparedKey], b: &[PreparedKey]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.jwk == y.jwk)
    }

    pub fn kid(&self) -> Option<&str> {
        self.jwk.key_id().map(|k| k.as_str())
    }

    /// Whether this key may verify `alg` signatures: its type, its `use`
    /// (signatures) and its `alg` (if it names one) all agree.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.jwk.key_use().is_some_and(|u| !u.allows_signature()) {
            return false;
        }
        if *self.jwk.key_type() != alg.key_type() {
            return false;
        }
        let alg_ok = match self.jwk.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => true,
            JsonWebKeyAlgorithm::Algorithm(a) => *a == alg.jwa(),
            JsonWebKeyAlgorithm::Unsupported => false,
        };
        alg_ok
            && matches!(
                (&self.material, alg),
                (Material::Rsa { .. }, Algorithm::Rs256 | Algorithm::Ps256)
                    | (Material::P256(_), Algorithm::Es256)
                    | (Material::Ed25519(_), Algorithm::EdDsa)
            )
    }

    /// Checks `signature` over `input`. Any mismatch of key and algorithm
    /// is a failed check, like a wrong signature.
    pub fn verify(&self, alg: Algorithm, input: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Rsa { n, e }, Algorithm::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&ring_sig::RSA_PKCS1_2048_8192_SHA256, input, signature)
                .is_ok(),
            (Material::Rsa { n, e }, Algorithm::Ps256) => RsaPublicKeyComponents { n, e }
                .verify(&ring_sig::RSA_PSS_2048_8192_SHA256, input, signature)
                .is_ok(),
            (Material::P256(point), Algorithm::Es256) => {
                UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input, signature)
                    .is_ok()
            }
            (Material::Ed25519(key), Algorithm::EdDsa) => {
                UnparsedPublicKey::new(&ring_sig::ED25519, key)
                    .verify(input, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// The key's public material, read through its JSON form (the crate keeps
/// the fields private).
fn material(jwk: &CoreJsonWebKey) -> Option<Material> {
    let json = serde_json::to_value(jwk).ok()?;
    let bytes = |name: &str| -> Option<Vec<u8>> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        URL_SAFE_NO_PAD.decode(json.get(name)?.as_str()?).ok()
    };
    match jwk.key_type() {
        CoreJsonWebKeyType::RSA => Some(Material::Rsa {
            n: strip_leading_zeros(bytes("n")?),
            e: strip_leading_zeros(bytes("e")?),
        }),
        CoreJsonWebKeyType::EllipticCurve => {
            let crv: CoreJsonCurveType = serde_json::from_value(json.get("crv")?.clone()).ok()?;
            let (x, y) = (bytes("x")?, bytes("y")?);
            if crv != CoreJsonCurveType::P256 || x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Some(Material::P256(point))
        }
        CoreJsonWebKeyType::OctetKeyPair => {
            let crv: CoreJsonCurveType = serde_json::from_value(json.get("crv")?.clone()).ok()?;
            let x = bytes("x")?;
            (crv == CoreJsonCurveType::Ed25519 && x.len() == 32).then_some(Material::Ed25519(x))
        }
        _ => None,
    }
}

/// ring wants big-endian integers without leading zero bytes (JWKs may
/// carry one, RFC 7518 §6.3.1.1 notwithstanding).
fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros.min(v.len().saturating_sub(1)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::JsonWebKeyId;

    #[test]
    fn keys_fit_only_their_algorithms() {
        let rsa = PreparedKey::new(CoreJsonWebKey::new_rsa(
            vec![0xC5; 256],
            vec![1, 0, 1],
            Some(JsonWebKeyId::new("r".into())),
        ));
        assert!(rsa.fits(Algorithm::Rs256) && rsa.fits(Algorithm::Ps256));
        assert!(!rsa.fits(Algorithm::Es256) && !rsa.fits(Algorithm::EdDsa));
        let ed = PreparedKey::new(CoreJsonWebKey::new_okp(
            vec![7; 32],
            CoreJsonCurveType::Ed25519,
            None,
        ));
        assert!(ed.fits(Algorithm::EdDsa) && !ed.fits(Algorithm::Rs256));
        // A curve Vigil does not accept is unusable for every algorithm.
        let p384 = PreparedKey::new(CoreJsonWebKey::new_ec(
            vec![1; 48],
            vec![2; 48],
            CoreJsonCurveType::P384,
            None,
        ));
        assert!(!p384.fits(Algorithm::Es256));
        assert!(!p384.verify(Algorithm::Es256, b"x", b"y"));
    }

    #[test]
    fn leading_zeros_are_stripped_but_zero_stays() {
        assert_eq!(strip_leading_zeros(vec![0, 0, 1, 2]), vec![1, 2]);
        assert_eq!(strip_leading_zeros(vec![0]), vec![0]);
        assert_eq!(strip_leading_zeros(vec![]), Vec::<u8>::new());
    }
}
