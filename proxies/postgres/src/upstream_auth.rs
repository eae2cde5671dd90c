//! The client side of PostgreSQL authentication, used by the proxy to log in
//! to the upstream server with the gateway's own credential (clients never see
//! it). Pure: the relay feeds server messages in and writes the answers out.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why upstream authentication failed. Safe to log: it never holds the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamAuthError {
    #[error("the upstream server asked for a password but none is configured")]
    PasswordRequired,
    #[error("the upstream server offers no supported SASL mechanism ({0})")]
    NoSupportedMechanism(String),
    #[error("malformed SCRAM message from the upstream server: {0}")]
    MalformedScram(&'static str),
    #[error("the upstream server's SCRAM signature does not verify (possible impostor)")]
    BadServerSignature,
    #[error("the upstream server asked for unsupported authentication method {0}")]
    Unsupported(i32),
}

/// PostgreSQL's MD5 password answer: "md5" + md5hex(md5hex(password + user) + salt).
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex_lower(&Md5::digest(
        [password.as_bytes(), user.as_bytes()].concat(),
    ));
    let outer = Md5::digest([inner.as_bytes(), &salt[..]].concat());
    format!("md5{}", hex_lower(&outer))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SCRAM-SHA-256 exchange (RFC 5802 / RFC 7677), without channel binding.
pub struct ScramClient {
    password: String,
    client_nonce: String,
    client_first_bare: String,
    server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    pub const MECHANISM: &'static str = "SCRAM-SHA-256";

    /// PostgreSQL ignores the SCRAM user name (it uses the startup user), so it is empty.
    pub fn new(password: &str) -> Self {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        Self::with_nonce("", password, &B64.encode(raw))
    }

    /// With a given user name and nonce: for the RFC 7677 test vector.
    pub fn with_nonce(user: &str, password: &str, nonce: &str) -> Self {
        Self {
            password: password.to_string(),
            client_nonce: nonce.to_string(),
            client_first_bare: format!("n={user},r={nonce}"),
            server_signature: None,
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers the server-first message with the client-final message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, UpstreamAuthError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| UpstreamAuthError::MalformedScram("server-first is not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(v),
                Some(("i=", v)) => iterations = Some(v),
                _ => {}
            }
        }
        let nonce = nonce.ok_or(UpstreamAuthError::MalformedScram("no nonce"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(UpstreamAuthError::MalformedScram(
                "server nonce does not extend ours",
            ));
        }
        let salt = B64
            .decode(salt.ok_or(UpstreamAuthError::MalformedScram("no salt"))?)
            .map_err(|_| UpstreamAuthError::MalformedScram("salt is not base64"))?;
        let iterations: u32 = iterations
            .ok_or(UpstreamAuthError::MalformedScram("no iteration count"))?
            .parse()
            .map_err(|_| UpstreamAuthError::MalformedScram("bad iteration count"))?;
        if iterations == 0 || iterations > 10_000_000 {
            return Err(UpstreamAuthError::MalformedScram(
                "unreasonable iteration count",
            ));
        }

        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(self.password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, server_first, without_proof
        );
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: proves the server knew the password too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), UpstreamAuthError> {
        let expected = self
            .server_signature
            .ok_or(UpstreamAuthError::MalformedScram(
                "server-final before server-first",
            ))?;
        let text = std::str::from_utf8(server_final)
            .map_err(|_| UpstreamAuthError::MalformedScram("server-final is not UTF-8"))?;
        let v = text.split(',').find_map(|p| p.strip_prefix("v=")).ok_or(
            UpstreamAuthError::MalformedScram("no verifier in server-final"),
        )?;
        let got = B64
            .decode(v)
            .map_err(|_| UpstreamAuthError::MalformedScram("verifier is not base64"))?;
        if got.as_slice() == expected.as_slice() {
            Ok(())
        } else {
            Err(UpstreamAuthError::BadServerSignature)
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector() {
        let mut c = ScramClient::with_nonce("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let final_msg = c.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(final_msg).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(())
        );
        assert_eq!(
            c.verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(UpstreamAuthError::BadServerSignature)
        );
    }

    #[test]
    fn malformed_server_first_is_refused() {
        for bad in [
            &b"s=abc,i=4096"[..],
            b"r=other,s=W22Z,i=4096",
            b"r=nonce,s=W22Z,i=4096",
            b"r=noncex,s=!!!,i=4096",
            b"r=noncex,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
            b"r=noncex,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x",
            b"\xff",
        ] {
            let mut c = ScramClient::with_nonce("", "pw", "nonce");
            assert!(
                c.client_final(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn md5_matches_postgres() {
        // Expected value computed by PostgreSQL itself:
        // SELECT 'md5' || md5(convert_to(md5('postgrespostgres'), 'UTF8') || '\x01020304'::bytea)
        assert_eq!(
            md5_password("postgres", "postgres", [1, 2, 3, 4]),
            "md568be9ed08db75f318087ab337aaea044"
        );
    }
}
