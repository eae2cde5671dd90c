//! Splitting a compact JWS (RFC 7515) into what the verifier needs, without
//! trusting any of it yet. Pure: no keys, no clock, no I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use crate::TokenError;

/// A token longer than this is refused before any decoding work (real access
/// tokens are a few KiB at most; a huge one is an attack on the parser).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The protected header fields Vigil looks at.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    /// Critical extensions: Vigil understands none, so any makes the token
    /// unacceptable (RFC 7515 §4.1.11).
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// A parsed, not yet verified, token.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    pub header: Header,
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

/// Whether a password is meant as a JWT: it starts like base64url of `{"`
/// (`eyJ`). Truncated and garbled tokens still do, so they are reported as
/// bad tokens, not as a wrong static password.
pub fn looks_like_jwt(text: &[u8]) -> bool {
    text.starts_with(b"eyJ")
}

/// Parses `token` into header, claims and signature. Every failure is a
/// [`TokenError::Malformed`] naming the part that is wrong.
pub fn parse(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "not three dot-separated parts (header.payload.signature)".into(),
        ));
    };
    let header_json = decode_part(header_b64, "header")?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| {
        TokenError::Malformed("header is not a JWS header (JSON with an alg)".into())
    })?;
    let payload = decode_part(payload_b64, "payload")?;
    let claims = match serde_json::from_slice::<serde_json::Value>(&payload) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => {
            return Err(TokenError::Malformed(
                "payload is not a JSON object of claims".into(),
            ))
        }
        Err(e) => return Err(TokenError::Malformed(format!("payload is not JSON: {e}"))),
    };
    let signature = decode_part(signature_b64, "signature")?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    Ok(UnverifiedToken {
        header,
        claims,
        signing_input,
        signature,
    })
}

fn decode_part(part: &str, name: &str) -> Result<Vec<u8>, TokenError> {
    // No detail from the decoder: it quotes the offending byte, and the
    // "token" may be someone's mistyped password.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("{name} is not base64url")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn a_well_formed_token_splits() {
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#),
            b64(r#"{"sub":"a"}"#),
            b64("sig")
        );
        let t = parse(&token).unwrap();
        assert_eq!(t.header.alg, "RS256");
        assert_eq!(t.header.kid.as_deref(), Some("k1"));
        assert_eq!(t.claims["sub"], "a");
        assert_eq!(t.signature, b"sig");
        assert_eq!(
            t.signing_input,
            token.rsplit_once('.').unwrap().0.as_bytes()
        );
        assert!(looks_like_jwt(token.as_bytes()));
    }

    #[test]
    fn malformed_tokens_say_which_part_is_wrong() {
        let h = b64(r#"{"alg":"RS256"}"#);
        let p = b64(r#"{"sub":"a"}"#);
        let cases = [
            ("".to_string(), "three dot-separated parts"),
            ("abc".to_string(), "three dot-separated parts"),
            (format!("{h}.{p}"), "three dot-separated parts"),
            (format!("{h}.{p}.x.y"), "three dot-separated parts"),
            (format!("!!.{p}.AA"), "header is not base64url"),
            (
                format!("{}.{p}.AA", b64("[1]")),
                "header is not a JWS header",
            ),
            (
                format!("{}.{p}.AA", b64("{}")),
                "header is not a JWS header",
            ),
            (
                format!("{h}.{}.AA", b64("[1]")),
                "payload is not a JSON object",
            ),
            (format!("{h}.{}.AA", b64("{")), "payload is not JSON"),
            (format!("{h}.{p}.A=A"), "signature is not base64url"),
            ("a".repeat(MAX_TOKEN_LEN + 1), "longer than"),
        ];
        for (token, want) in cases {
            let err = parse(&token).unwrap_err().to_string();
            assert!(err.contains(want), "{token:.40}: {err}");
        }
    }

    #[test]
    fn static_passwords_do_not_look_like_tokens() {
        assert!(!looks_like_jwt(b"dev"));
        assert!(!looks_like_jwt(b"correct.horse.battery"));
        assert!(looks_like_jwt(b"eyJhbGciOiJSUzI1NiJ9.eyJzdW"));
    }
}
