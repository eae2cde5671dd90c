//! The three ways a value is masked: redact, partial and hash.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// What a whole value becomes under [`super::MaskFormat::Redact`].
pub const REDACTED: &[u8] = b"[REDACTED]";

/// The prefix of a hash token (`h:` and 16 lowercase hex characters).
pub const HASH_PREFIX: &[u8] = b"h:";

/// Hex characters of a hash token after the prefix: 64 bits of the HMAC.
pub const HASH_HEX_LEN: usize = 16;

/// How many trailing characters partial masking keeps.
pub const PARTIAL_KEEP: usize = 4;

/// Domain separation for [`hash_i64`]/[`hash_i32`]: an integer's HMAC input
/// is this tag followed by its 8 big-endian bytes, so it can never be
/// confused with the HMAC of some 8-byte text value.
const INT_DOMAIN: &[u8] = b"vigil-mask:int\0";

/// Partial masking: the last four characters stay; before them every letter
/// or digit becomes `*` and everything else (separators, spaces, `@`, `.`)
/// stays, so the value keeps its shape. A value of four characters or fewer
/// becomes all `*`, and a longer one with four letters and digits or fewer
/// (`::4B4B`, `(1) 2-3`) has all of them starred: in both cases "keep the
/// last four" would keep everything that identifies.
///
/// Characters are Unicode scalar values when the value is UTF-8 (one `*` per
/// character, so the output stays valid UTF-8), bytes otherwise (every
/// non-ASCII byte then counts as a letter).
pub fn partial_into(value: &[u8], out: &mut Vec<u8>) {
    match std::str::from_utf8(value) {
        Ok(s) => {
            let n = s.chars().count();
            if n <= PARTIAL_KEEP {
                out.resize(out.len() + n, b'*');
                return;
            }
            let alnum = s.chars().filter(|c| c.is_alphanumeric()).count();
            let keep_from = if alnum <= PARTIAL_KEEP {
                n
            } else {
                n - PARTIAL_KEEP
            };
            for (i, (at, ch)) in s.char_indices().enumerate() {
                if i >= keep_from {
                    out.extend_from_slice(&value[at..]);
                    return;
                }
                if ch.is_alphanumeric() {
                    out.push(b'*');
                } else {
                    out.extend_from_slice(&value[at..at + ch.len_utf8()]);
                }
            }
        }
        Err(_) => {
            let n = value.len();
            if n <= PARTIAL_KEEP {
                out.resize(out.len() + n, b'*');
                return;
            }
            let starred = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80;
            let alnum = value.iter().filter(|&&b| starred(b)).count();
            let keep_from = if alnum <= PARTIAL_KEEP {
                n
            } else {
                n - PARTIAL_KEEP
            };
            for &b in &value[..keep_from] {
                out.push(if starred(b) { b'*' } else { b });
            }
            out.extend_from_slice(&value[keep_from..]);
        }
    }
}

/// Keyed hash token: `h:` + the first 16 hex characters (64 bits) of
/// HMAC-SHA256(key, value).
///
/// Equal values give equal tokens under one key, so joins, `GROUP BY` and
/// `DISTINCT` over a masked column still work; without the key a token cannot
/// be reversed, not even by hashing all 10^9 possible SSNs (which breaks any
/// unkeyed hash of an SSN in seconds).
///
/// 64 bits: two distinct values share a token with probability 2^-64; among
/// n distinct values the chance of any shared token is about n^2 / 2^65
/// (3 * 10^-8 for a million values, 3 % for a billion).
pub(crate) fn hash_token_into(mac: &HmacSha256, value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut m = mac.clone();
    m.update(value);
    let tag = m.finalize().into_bytes();
    out.extend_from_slice(HASH_PREFIX);
    for &b in &tag[..HASH_HEX_LEN / 2] {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

fn int_tag(mac: &HmacSha256, v: i64) -> u64 {
    let mut m = mac.clone();
    m.update(INT_DOMAIN);
    m.update(&v.to_be_bytes());
    let tag = m.finalize().into_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag[..8]);
    u64::from_be_bytes(first)
}

/// Keyed hash of an integer into a non-negative `i64` (63 bits of the HMAC).
/// Non-negative because applications treat ids as positive; 63 bits means
/// about n^2 / 2^64 chance of any collision among n distinct ids.
pub(crate) fn hash_i64(mac: &HmacSha256, v: i64) -> i64 {
    (int_tag(mac, v) >> 1) as i64
}

/// Keyed hash of an integer into a non-negative `i32` (31 bits). Same input
/// encoding as [`hash_i64`], so a value hashes consistently whatever its
/// column width, but collisions come much sooner: about n^2 / 2^32 among n
/// distinct ids (50 % near 77,000 ids).
pub(crate) fn hash_i32(mac: &HmacSha256, v: i64) -> i32 {
    (int_tag(mac, v) >> 33) as i32
}

pub(crate) fn keyed(key: &[u8; 32]) -> HmacSha256 {
    // HMAC takes keys of any length; a 32-byte key cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        partial_into(v, &mut out);
        out
    }

    #[test]
    fn partial_table() {
        let cases: &[(&str, &str)] = &[
            ("123-45-6789", "***-**-6789"),
            ("jane@x.org", "****@*.org"),
            ("(555) 123-4567", "(***) ***-4567"),
            ("Jane Doe", "**** Doe"),
            ("abcd", "****"),
            ("ab", "**"),
            ("", ""),
            ("12345", "*2345"),
            ("Zoë Åberg", "*** *berg"),
            ("ÅÅÅÅÅ", "*ÅÅÅÅ"),
            ("::4B4B", "::****"),
            ("(1) 2-3", "(*) *-*"),
            ("::12345", "::*2345"),
        ];
        for (input, want) in cases {
            assert_eq!(
                String::from_utf8(partial(input.as_bytes())).unwrap(),
                *want,
                "{input}"
            );
        }
        // Not UTF-8: bytes, non-ASCII counts as a letter.
        assert_eq!(partial(b"\xff\xfe-1234"), b"**-1234");
        assert_eq!(partial(b"\xff\xfe"), b"**");
        assert_eq!(partial(b"\xff-----"), b"*-----");
    }
}
