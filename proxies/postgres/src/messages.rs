//! Protocol messages after login, decoded once into a type the session
//! acts on.
//!
//! The codec cuts each byte stream into [`Frame`]s; this module turns one
//! frame into a [`ClientMessage`] or a [`BackendMessage`] in a single step,
//! so that no handler reads bytes again and a malformed message is refused
//! before anything acts on it (the session ends with 08P01 naming the
//! message). Only a `DataRow`'s values are left in the frame: the row plan
//! reads them when, and only when, the row is masked.

use crate::codec::{self, Bind, CodecError, ErrorFields, Frame, FunctionCall, Parse};
use crate::results::{self, Field};

/// One message a client sends after login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `Query` ('Q'): simple protocol, one or more statements.
    Query { sql: String },
    /// `Parse` ('P').
    Parse(Parse),
    /// `Bind` ('B').
    Bind(Bind),
    /// `Execute` ('E'): run a portal.
    Execute { portal: String, max_rows: i32 },
    /// `Describe` ('D') of a statement ('S') or portal ('P').
    Describe { target: u8, name: String },
    /// `Close` ('C') of a statement or portal.
    Close { is_portal: bool, name: String },
    /// `Sync` ('S'): the end of an extended-protocol cycle.
    Sync,
    /// `Terminate` ('X').
    Terminate,
    /// `CopyDone` ('c') or `CopyFail` ('f'): the end of COPY FROM STDIN.
    CopyEnd,
    /// `FunctionCall` ('F'): libpq's fast path, a function by OID.
    FunctionCall(FunctionCall),
    /// Flush, CopyData and anything else: forwarded as is (the server
    /// refuses a type it does not know).
    PassThrough,
}

impl ClientMessage {
    /// Decodes one frame; the error names the message and what is wrong.
    pub fn decode(frame: &Frame) -> Result<Self, CodecError> {
        let body = frame.body();
        Ok(match frame.tag {
            b'Q' => ClientMessage::Query {
                sql: codec::parse_query(body)?,
            },
            b'P' => ClientMessage::Parse(codec::parse_parse(body)?),
            b'B' => ClientMessage::Bind(codec::parse_bind(body)?),
            b'E' => {
                let (portal, max_rows) = codec::parse_execute(body)?;
                ClientMessage::Execute { portal, max_rows }
            }
            b'D' => {
                let (target, name) = results::parse_describe(body)?;
                ClientMessage::Describe { target, name }
            }
            b'C' => {
                let (is_portal, name) = codec::parse_close(body)?;
                ClientMessage::Close { is_portal, name }
            }
            b'S' => ClientMessage::Sync,
            b'X' => ClientMessage::Terminate,
            b'c' | b'f' => ClientMessage::CopyEnd,
            b'F' => ClientMessage::FunctionCall(codec::parse_function_call(body)?),
            _ => ClientMessage::PassThrough,
        })
    }

    /// Whether the message runs or prepares something: refused once the
    /// session's access token has expired.
    pub fn starts_work(&self) -> bool {
        matches!(
            self,
            ClientMessage::Query { .. }
                | ClientMessage::Parse(_)
                | ClientMessage::Bind(_)
                | ClientMessage::Execute { .. }
                | ClientMessage::FunctionCall(_)
        )
    }
}

/// One message the server sends after login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    /// `RowDescription` ('T'): the columns of the result that follows.
    RowDescription(Vec<Field>),
    /// `NoData` ('n'): a Describe of something that returns no rows.
    NoData,
    /// `DataRow` ('D'); its values stay in the frame.
    DataRow,
    /// `CopyOutResponse` ('H'): COPY TO STDOUT begins.
    CopyOut { binary: bool },
    /// `CopyData` ('d') of a COPY TO STDOUT.
    CopyData,
    /// `CopyDone` ('c').
    CopyDone,
    /// `CopyInResponse` ('G'): the server waits for COPY FROM STDIN data.
    CopyIn,
    /// `ParseComplete`, `BindComplete` or `CloseComplete` ('1', '2', '3'):
    /// the server made the change a Parse, Bind or Close asked for.
    StepComplete,
    /// `FunctionCallResponse` ('V').
    FunctionCallResponse,
    /// `CommandComplete` ('C') with its tag.
    CommandComplete { tag: String },
    /// `PortalSuspended` ('s'): an Execute's row limit was reached.
    PortalSuspended,
    /// `EmptyQueryResponse` ('I').
    EmptyQuery,
    /// `ErrorResponse` ('E').
    Error(ErrorFields),
    /// `NoticeResponse` ('N'): forwarded scrubbed.
    Notice,
    /// `NotificationResponse` ('A'): a NOTIFY's payload, from any session
    /// or trigger; forwarded scrubbed.
    Notification,
    /// `ParameterStatus` ('S'): a setting the client is told about.
    ParameterStatus { name: String, value: String },
    /// `ReadyForQuery` ('Z'): idle (`I`), in a transaction, or failed.
    ReadyForQuery { idle: bool },
    /// Anything else (ParameterDescription, NegotiateProtocolVersion, ...):
    /// forwarded as is.
    PassThrough,
}

impl BackendMessage {
    /// Decodes one frame; the error names the message and what is wrong.
    pub fn decode(frame: &Frame) -> Result<Self, CodecError> {
        let body = frame.body();
        Ok(match frame.tag {
            b'T' => BackendMessage::RowDescription(results::parse_row_description(body)?),
            b'n' => BackendMessage::NoData,
            b'D' => BackendMessage::DataRow,
            b'H' => BackendMessage::CopyOut {
                binary: results::parse_copy_out_format(&body)? == 1,
            },
            b'd' => BackendMessage::CopyData,
            b'c' => BackendMessage::CopyDone,
            b'G' => BackendMessage::CopyIn,
            b'1' | b'2' | b'3' => BackendMessage::StepComplete,
            b'V' => BackendMessage::FunctionCallResponse,
            b'C' => BackendMessage::CommandComplete {
                tag: codec::parse_command_complete(body)?,
            },
            b's' => BackendMessage::PortalSuspended,
            b'I' => BackendMessage::EmptyQuery,
            b'E' => BackendMessage::Error(codec::parse_error_fields(body)?),
            b'N' => BackendMessage::Notice,
            b'A' => BackendMessage::Notification,
            b'S' => {
                let (name, value) = results::parse_parameter_status(body)?;
                BackendMessage::ParameterStatus { name, value }
            }
            b'Z' => match body.first() {
                Some(status) => BackendMessage::ReadyForQuery {
                    idle: *status == b'I',
                },
                None => return Err(codec::malformed("ReadyForQuery", "truncated")),
            },
            _ => BackendMessage::PassThrough,
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Frame {
        let mut raw = BytesMut::new();
        raw.put_u8(tag);
        raw.put_i32(body.len() as i32 + 4);
        raw.put_slice(body);
        Frame {
            tag,
            raw: raw.freeze(),
        }
    }

    #[test]
    fn each_message_type_decodes_to_its_variant() {
        let cases: Vec<(Frame, ClientMessage)> = vec![
            (
                frame(b'Q', b"SELECT 1\0"),
                ClientMessage::Query {
                    sql: "SELECT 1".into(),
                },
            ),
            (
                frame(b'E', b"p1\0\0\0\0\x05"),
                ClientMessage::Execute {
                    portal: "p1".into(),
                    max_rows: 5,
                },
            ),
            (
                frame(b'D', b"Ss1\0"),
                ClientMessage::Describe {
                    target: b'S',
                    name: "s1".into(),
                },
            ),
            (
                frame(b'C', b"Pp1\0"),
                ClientMessage::Close {
                    is_portal: true,
                    name: "p1".into(),
                },
            ),
            (frame(b'S', b""), ClientMessage::Sync),
            (frame(b'X', b""), ClientMessage::Terminate),
            (frame(b'c', b""), ClientMessage::CopyEnd),
            (frame(b'f', b"no\0"), ClientMessage::CopyEnd),
            (frame(b'H', b""), ClientMessage::PassThrough),
            (frame(b'd', b"1,2\n"), ClientMessage::PassThrough),
        ];
        for (frame, want) in cases {
            assert_eq!(ClientMessage::decode(&frame).unwrap(), want, "{frame:?}");
        }
        let parse = ClientMessage::decode(&frame(b'P', b"s\0SELECT $1\0\0\x01\0\0\0\x17")).unwrap();
        assert!(
            matches!(&parse, ClientMessage::Parse(p) if p.statement == "s" && p.param_types == [23])
        );
        assert!(parse.starts_work());
        assert!(!ClientMessage::Sync.starts_work());
    }

    #[test]
    fn malformed_messages_are_errors_that_name_the_message() {
        for (tag, body, names) in [
            (b'Q', &b"SELECT 1"[..], "Query"),
            (b'P', b"s\0SELECT 1\0\0", "Parse"),
            (b'B', b"p\0s\0\0\x02", "Bind"),
            (b'E', b"p\0\0\0", "Execute"),
            (b'C', b"Zx\0", "Close"),
            (b'F', b"\0\0\0\x01\0\0\0\0", "FunctionCall"),
        ] {
            let err = ClientMessage::decode(&frame(tag, body)).unwrap_err();
            assert!(err.to_string().contains(names), "{err}");
        }
    }

    #[test]
    fn backend_messages_decode_to_their_variants() {
        let cases: Vec<(Frame, BackendMessage)> = vec![
            (
                frame(b'Z', b"I"),
                BackendMessage::ReadyForQuery { idle: true },
            ),
            (
                frame(b'Z', b"T"),
                BackendMessage::ReadyForQuery { idle: false },
            ),
            (
                frame(b'C', b"SELECT 3\0"),
                BackendMessage::CommandComplete {
                    tag: "SELECT 3".into(),
                },
            ),
            (
                frame(b'S', b"client_encoding\0SJIS\0"),
                BackendMessage::ParameterStatus {
                    name: "client_encoding".into(),
                    value: "SJIS".into(),
                },
            ),
            (
                frame(b'H', b"\x01\0\0"),
                BackendMessage::CopyOut { binary: true },
            ),
            (
                frame(b'H', b"\0\0\0"),
                BackendMessage::CopyOut { binary: false },
            ),
            (frame(b'2', b""), BackendMessage::StepComplete),
            (frame(b'D', b"\0\x01\0\0\0\x01x"), BackendMessage::DataRow),
            (
                frame(b'A', b"\0\0\0\x01c\0\0"),
                BackendMessage::Notification,
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(BackendMessage::decode(&frame).unwrap(), want, "{frame:?}");
        }
        let error = BackendMessage::decode(&frame(b'E', b"SERROR\0C42501\0Mno\0\0")).unwrap();
        assert!(
            matches!(error, BackendMessage::Error(f) if f.code == "42501" && f.message == "no")
        );
    }

    #[test]
    fn malformed_backend_messages_are_errors_that_name_the_message() {
        for (tag, body, names) in [
            (b'Z', &b""[..], "ReadyForQuery"),
            (b'C', b"SELECT 3", "CommandComplete"),
            (b'E', b"SERROR\0", "ErrorResponse"),
            (b'S', b"client_encoding\0", "ParameterStatus"),
            (b'H', b"", "CopyOutResponse"),
            (b'T', b"\0\x01x\0", "RowDescription"),
        ] {
            let err = BackendMessage::decode(&frame(tag, body)).unwrap_err();
            assert!(err.to_string().contains(names), "{err}");
        }
    }
}
