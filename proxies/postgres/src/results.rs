//! The messages that describe and carry results, and the few frontend
//! messages the proxy itself writes when policy steps in. Pure: no I/O.
//!
//! `RowDescription` tells where each result column really comes from (the
//! table OID and column number behind it, whatever the query called it),
//! which is what column masking rules follow. `DataRow` is read as ranges
//! into the message, so that a row nothing needs to change in is forwarded as
//! the very bytes that arrived.

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes};

use crate::codec::CodecError;
use crate::codec::{malformed, message, put_cstr, read_count, read_cstr, read_i16, read_i32};

/// One column of a `RowDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The table the column comes from (0 when it is computed).
    pub table_oid: u32,
    /// The column's number in that table (0 when computed).
    pub column: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// `RowDescription` ('T').
pub fn parse_row_description(body: Bytes) -> Result<Vec<Field>, CodecError> {
    const WHAT: &str = "RowDescription";
    let mut body = body;
    let n = read_count(&mut body, WHAT)?;
    let mut fields = Vec::with_capacity(n.min(1664));
    for _ in 0..n {
        let name = read_cstr(&mut body, WHAT)?;
        let table_oid = read_i32(&mut body, WHAT)? as u32;
        let column = read_i16(&mut body, WHAT)?;
        let type_oid = read_i32(&mut body, WHAT)? as u32;
        let type_len = read_i16(&mut body, WHAT)?;
        let type_modifier = read_i32(&mut body, WHAT)?;
        let format = read_i16(&mut body, WHAT)?;
        fields.push(Field {
            name,
            table_oid,
            column,
            type_oid,
            type_len,
            type_modifier,
            format,
        });
    }
    if body.has_remaining() {
        return Err(malformed(WHAT, "trailing bytes"));
    }
    Ok(fields)
}

/// The values of a `DataRow` ('D') as ranges into its body; `None` is NULL.
pub fn data_row_values(body: &[u8]) -> Result<Vec<Option<Range<usize>>>, CodecError> {
    const WHAT: &str = "DataRow";
    if body.len() < 2 {
        return Err(malformed(WHAT, "truncated"));
    }
    let n = i16::from_be_bytes([body[0], body[1]]);
    let n = usize::try_from(n).map_err(|_| malformed(WHAT, "negative count"))?;
    let mut values = Vec::with_capacity(n);
    let mut at = 2usize;
    for _ in 0..n {
        let len_bytes = body
            .get(at..at + 4)
            .ok_or_else(|| malformed(WHAT, "truncated"))?;
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        at += 4;
        if len == -1 {
            values.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| malformed(WHAT, "negative length"))?;
        let end = at
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| malformed(WHAT, "truncated value"))?;
        values.push(Some(at..end));
        at = end;
    }
    if at != body.len() {
        return Err(malformed(WHAT, "trailing bytes"));
    }
    Ok(values)
}

/// A `DataRow` from values (`None` = NULL).
pub fn data_row<'a>(values: impl ExactSizeIterator<Item = Option<&'a [u8]>>) -> Bytes {
    message(b'D', |b| {
        b.put_i16(values.len() as i16);
        for v in values {
            match v {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
            }
        }
    })
}

/// `CopyOutResponse` ('H'): the overall format (0 textual, 1 binary).
pub fn parse_copy_out_format(body: &[u8]) -> Result<i8, CodecError> {
    let first = body
        .first()
        .ok_or_else(|| malformed("CopyOutResponse", "truncated"))?;
    Ok(*first as i8)
}

/// `CopyData` ('d') with the given payload.
pub fn copy_data(payload: &[u8]) -> Bytes {
    message(b'd', |b| b.put_slice(payload))
}

/// `ParameterStatus` ('S' from the backend): `(name, value)`.
pub fn parse_parameter_status(body: Bytes) -> Result<(String, String), CodecError> {
    let mut body = body;
    let name = read_cstr(&mut body, "ParameterStatus")?;
    let value = read_cstr(&mut body, "ParameterStatus")?;
    Ok((name, value))
}

/// Whether a `client_encoding` value is UTF-8. The statement classifier
/// reads statements as UTF-8; under another client encoding (SJIS, BIG5,
/// GBK, ...) a byte the classifier takes for part of a character can be a
/// quote or backslash to PostgreSQL, and hide a second statement.
pub fn is_utf8_encoding(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().replace(['-', '_'], "").as_str(),
        "utf8" | "unicode"
    )
}

/// The refusal when a session's client encoding is not UTF-8.
pub fn encoding_refusal(value: &str) -> String {
    format!(
        "Vigil requires client_encoding UTF8 (statements are inspected as UTF-8), not {value:?}"
    )
}

/// `Describe` ('D' from the frontend): `(b'S' | b'P', name)`.
pub fn parse_describe(body: Bytes) -> Result<(u8, String), CodecError> {
    let mut body = body;
    if !body.has_remaining() {
        return Err(malformed("Describe", "truncated"));
    }
    let kind = body.get_u8();
    if kind != b'S' && kind != b'P' {
        return Err(malformed("Describe", "unknown target"));
    }
    let name = read_cstr(&mut body, "Describe")?;
    Ok((kind, name))
}

/// `Describe` of a portal, which the proxy adds before an `Execute` when it
/// needs to know the result's columns and formats.
pub fn describe_portal(portal: &str) -> Bytes {
    message(b'D', |b| {
        b.put_u8(b'P');
        put_cstr(b, portal);
    })
}

/// A `Parse` message.
pub fn parse_message(statement: &str, query: &str) -> Bytes {
    message(b'P', |b| {
        put_cstr(b, statement);
        put_cstr(b, query);
        b.put_i16(0);
    })
}

/// An `ErrorResponse` with a detail and a hint as well.
pub fn error_response_full(code: &str, text: &str, detail: &str, hint: &str) -> Bytes {
    message(b'E', |b| {
        for (tag, value) in [
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', code),
            (b'M', text),
            (b'D', detail),
            (b'H', hint),
        ] {
            if !value.is_empty() {
                b.put_u8(tag);
                put_cstr(b, value);
            }
        }
        b.put_u8(0);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(msg: &Bytes) -> Bytes {
        msg.slice(5..)
    }

    #[test]
    fn data_rows_round_trip_with_nulls_and_empty_values() {
        let row = data_row([Some(&b"abc"[..]), None, Some(&b""[..])].into_iter());
        let b = body(&row);
        let values = data_row_values(&b).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(&b[values[0].clone().unwrap()], b"abc");
        assert!(values[1].is_none());
        assert_eq!(values[2].clone().unwrap().len(), 0);
    }

    #[test]
    fn malformed_data_rows_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[0][..],
            &[0, 1][..],
            &[0, 1, 0, 0, 0, 5, b'a'][..],
            &[0, 1, 0x80, 0, 0, 0][..],
            &[0xff, 0xff][..],
            &[0, 0, 1][..],
            &[0, 1, 0x7f, 0xff, 0xff, 0xff][..],
        ] {
            assert!(data_row_values(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn row_description_parses_and_rejects_truncation() {
        let msg = message(b'T', |b| {
            b.put_i16(1);
            put_cstr(b, "ssn");
            b.put_i32(16_384);
            b.put_i16(3);
            b.put_i32(25);
            b.put_i16(-1);
            b.put_i32(-1);
            b.put_i16(0);
        });
        let fields = parse_row_description(body(&msg)).unwrap();
        assert_eq!(fields[0].name, "ssn");
        assert_eq!((fields[0].table_oid, fields[0].column), (16_384, 3));
        for cut in 0..msg.len() - 5 {
            assert!(parse_row_description(msg.slice(5..5 + cut)).is_err());
        }
    }

    #[test]
    fn only_utf8_client_encodings_pass() {
        for ok in ["UTF8", "utf8", "UTF-8", "unicode", "Utf_8"] {
            assert!(is_utf8_encoding(ok), "{ok}");
        }
        for bad in ["SJIS", "BIG5", "GBK", "LATIN1", "SQL_ASCII", "", "utf16"] {
            assert!(!is_utf8_encoding(bad), "{bad}");
        }
    }

    #[test]
    fn describe_parses() {
        let msg = describe_portal("p1");
        assert_eq!(parse_describe(body(&msg)).unwrap(), (b'P', "p1".into()));
        assert!(parse_describe(Bytes::from_static(b"X\0")).is_err());
    }
}
