//! Data in error and notice text.
//!
//! PostgreSQL writes values into its messages: `invalid input syntax for
//! type integer: "123-45-6789"` after a cast of a masked column, `Key
//! (ssn)=(123-45-6789) already exists.`, and, unquoted, `cross-database
//! references are not implemented: MRN-00417-X.s.t` (a `::regtype` cast of
//! a value the agent shaped), libxml's echo of its input in a detail,
//! computed integers (`date field value out of range: 0-29362-01`, a day
//! count) and the position of a syntax error inside a value. An agent that
//! makes a statement fail on a masked value reads it from the error.
//!
//! In a session whose policy masks anything, an ErrorResponse or
//! NoticeResponse keeps only what comes from the server's code or catalog
//! and cannot be steered by a row: severity, the SQLSTATE when PostgreSQL
//! itself uses that code (else its class's general code, else `XX000`),
//! and the schema, table, column, data type and constraint names unless
//! server-side code raised it (it has a context then; PL/pgSQL's `RAISE
//! ... USING COLUMN = ...` fills them from anything). Its message becomes
//! what the SQLSTATE is called (`undefined column: <redacted by Vigil>`), a
//! fixed hint says why, and everything else (detail, context, internal
//! query, positions, source locations, fields a later server adds) is left
//! out. A NotificationResponse keeps its channel and sender and loses its
//! payload: any session or trigger may have sent it a row.
//!
//! Why not keep the parts that look safe: two earlier rules did, and
//! reviews broke both. Keeping a quoted stretch the client had itself sent
//! made the decision depend on the row and on the client, an oracle (send
//! every date of birth of a century, cast the column, read which came
//! back). Redacting every quoted stretch left the hundreds of messages
//! that print their arguments unquoted, and a position field is an integer
//! channel of its own. A message's form cannot be checked; its SQLSTATE
//! can. What is still told: *whether* a statement fails and which SQLSTATE
//! (a CASE over a masked value that fails in one of k ways gives log2(k)
//! bits a statement), as predicates and row counts tell which rows match
//! unless a `filters_masked` rule refuses them.
//!
//! The original goes only into the ledger's sealed Response event. Pure: no
//! I/O.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{malformed, CodecError};
use crate::sqlstate;

/// Marks what Vigil took out of a message.
pub const REDACTED: &str = "<redacted by Vigil>";

/// The hint every scrubbed message carries in place of the server's.
pub const WHY: &str = "Vigil withholds the database's own words from sessions whose policy \
                       masks PHI; the audit ledger keeps them.";

/// Scrubs an ErrorResponse or NoticeResponse body. `None` when nothing had
/// to change (the message is forwarded as it came).
pub fn scrub_body(body: &[u8]) -> Result<Option<Bytes>, CodecError> {
    let fields = fields(body)?;
    // Server-side code (a trigger, a check constraint's function, a
    // row-security policy) can fill every field from a row: PL/pgSQL's
    // `RAISE ... USING COLUMN = ssn, ERRCODE = ...`. Such an error carries
    // the code's context; then the names go too.
    let from_code = fields.iter().any(|(kind, _)| *kind == b'W');
    let mut out = BytesMut::with_capacity(64);
    let mut changed = false;
    let mut code = "";
    for &(kind, value) in &fields {
        match kind {
            b'S' | b'V' => put_field(&mut out, kind, value),
            b'C' => {
                code = std::str::from_utf8(value).unwrap_or("");
                let known = sqlstate::known(code);
                changed |= known != code;
                code = known;
                put_field(&mut out, kind, known.as_bytes());
            }
            b's' | b't' | b'c' | b'd' | b'n' if !from_code => put_field(&mut out, kind, value),
            _ => changed = true,
        }
    }
    if changed {
        put_field(&mut out, b'M', message(code).as_bytes());
        put_field(&mut out, b'H', WHY.as_bytes());
    }
    out.put_u8(0);
    Ok(changed.then(|| out.freeze()))
}

/// The fields of an ErrorResponse or NoticeResponse body, in order.
fn fields(body: &[u8]) -> Result<Vec<(u8, &[u8])>, CodecError> {
    let mut fields = Vec::with_capacity(16);
    let mut rest = body;
    loop {
        let (&kind, after) = rest
            .split_first()
            .ok_or_else(|| malformed("ErrorResponse", "missing terminator"))?;
        if kind == 0 {
            return Ok(fields);
        }
        let end = after
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| malformed("ErrorResponse", "unterminated field"))?;
        fields.push((kind, &after[..end]));
        rest = &after[end + 1..];
    }
}

fn put_field(out: &mut BytesMut, kind: u8, value: &[u8]) {
    out.put_u8(kind);
    out.put_slice(value);
    out.put_u8(0);
}

/// A NotificationResponse body (sender's process id, channel, payload)
/// with its payload withheld. `None` when the payload is empty.
pub fn scrub_notification(body: &[u8]) -> Result<Option<Bytes>, CodecError> {
    let bad = |what| malformed("NotificationResponse", what);
    let (pid, rest) = body.split_at_checked(4).ok_or_else(|| bad("truncated"))?;
    let channel_end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| bad("unterminated channel"))?;
    let (channel, payload) = (&rest[..channel_end], &rest[channel_end + 1..]);
    match payload {
        [0] => Ok(None),
        [.., 0] if !payload[..payload.len() - 1].contains(&0) => {
            let mut out = BytesMut::with_capacity(body.len());
            out.put_slice(pid);
            out.put_slice(channel);
            out.put_u8(0);
            out.put_slice(REDACTED.as_bytes());
            out.put_u8(0);
            Ok(Some(out.freeze()))
        }
        _ => Err(bad("payload not one terminated string")),
    }
}

/// What a client reads in place of the server's message: the SQLSTATE's
/// condition name, or its class's, and the mark.
fn message(code: &str) -> String {
    let what = match sqlstate::describe(code) {
        // Class 00 is a notice's "successful completion": no help.
        Some(name) if !code.starts_with("00") => name,
        _ => "message",
    };
    format!("{what}: {REDACTED}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn body(fields: &[(u8, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, v) in fields {
            body.push(*kind);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        body
    }

    #[test]
    fn only_the_code_and_the_catalog_names_stay() {
        let original = body(&[
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "22P02"),
            (
                b'M',
                "invalid input syntax for type integer: \"MRN-00417-X\"",
            ),
            (b'D', "Token \"MRN\" is invalid."),
            (b'H', "cross-database references: MRN-00417-X.s.t"),
            (b'q', "SELECT 'MRN-00417-X'"),
            (b'P', "19795"),
            (b'p', "3"),
            (b'F', "numutils.c"),
            (b'L', "232"),
            (b'R', "pg_strtoint32"),
            (b's', "public"),
            (b't', "patients"),
            (b'c', "mrn"),
            (b'd', "mrn_domain"),
            (b'n', "patients_mrn_key"),
            // A field a later server might add is not trusted.
            (b'Z', "MRN-00417-X"),
        ]);
        let out = scrub_body(&original).unwrap().expect("changed");
        assert_eq!(
            fields(&out).unwrap(),
            vec![
                (b'S', &b"ERROR"[..]),
                (b'V', &b"ERROR"[..]),
                (b'C', &b"22P02"[..]),
                (b's', &b"public"[..]),
                (b't', &b"patients"[..]),
                (b'c', &b"mrn"[..]),
                (b'd', &b"mrn_domain"[..]),
                (b'n', &b"patients_mrn_key"[..]),
                (
                    b'M',
                    &b"invalid text representation: <redacted by Vigil>"[..]
                ),
                (b'H', WHY.as_bytes()),
            ]
        );
        let parsed = codec::parse_error_fields(out).unwrap();
        assert_eq!(parsed.code, "22P02");
        assert!(!format!("{parsed:?}").contains("MRN"));
    }

    #[test]
    fn an_error_raised_by_server_side_code_keeps_no_names_and_no_code_of_its_own() {
        // PL/pgSQL: RAISE EXCEPTION USING ERRCODE = 'AB123', COLUMN = ssn.
        let original = body(&[
            (b'S', "ERROR"),
            (b'C', "AB123"),
            (b'M', "x"),
            (b'c', "123-45-6789"),
            (b'W', "PL/pgSQL function audit() line 3 at RAISE"),
        ]);
        let out = scrub_body(&original).unwrap().expect("changed");
        assert_eq!(
            fields(&out).unwrap(),
            vec![
                (b'S', &b"ERROR"[..]),
                (b'C', &b"XX000"[..]),
                (b'M', &b"internal error: <redacted by Vigil>"[..]),
                (b'H', WHY.as_bytes()),
            ]
        );
    }

    #[test]
    fn the_message_names_the_condition_its_class_or_nothing() {
        for (code, want) in [
            ("42703", "undefined column: <redacted by Vigil>"),
            ("22ZZZ", "data exception: <redacted by Vigil>"),
            // A notice's 00000 says nothing worth repeating.
            ("00000", "message: <redacted by Vigil>"),
            // A code PostgreSQL does not use goes as XX000, and says so.
            ("ZZZZZ", "internal error: <redacted by Vigil>"),
            ("", "internal error: <redacted by Vigil>"),
        ] {
            let b = body(&[(b'S', "NOTICE"), (b'C', code), (b'M', "x")]);
            let out = scrub_body(&b).unwrap().expect("changed");
            let fields = fields(&out).unwrap();
            assert!(
                fields.contains(&(b'M', want.as_bytes())),
                "{code}: {fields:?}"
            );
        }
    }

    #[test]
    fn a_body_with_nothing_to_take_is_forwarded_as_it_is() {
        let plain = body(&[(b'S', "ERROR"), (b'C', "57014")]);
        assert_eq!(scrub_body(&plain).unwrap(), None);
    }

    #[test]
    fn a_notification_keeps_its_sender_and_channel_but_not_its_payload() {
        let body = b"\0\0\x01\x02chan\0{\"ssn\": \"123-45-6789\"}\0";
        let out = scrub_notification(body).unwrap().expect("changed");
        assert_eq!(&out[..], b"\0\0\x01\x02chan\0<redacted by Vigil>\0");
        assert_eq!(scrub_notification(b"\0\0\0\x01c\0\0").unwrap(), None);
        for bad in [
            &b"\0\0\0"[..],
            b"\0\0\0\x01chan",
            b"\0\0\0\x01chan\0x",
            b"\0\0\0\x01chan\0x\0y\0",
            b"\0\0\0\x01chan\0",
        ] {
            assert!(scrub_notification(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let b = body(&[(b'S', "ERROR"), (b'M', "x")]);
        assert!(scrub_body(&b[..b.len() - 1]).is_err());
        assert!(scrub_body(&b[..b.len() - 2]).is_err());
        assert!(scrub_body(b"").is_err());
    }
}
