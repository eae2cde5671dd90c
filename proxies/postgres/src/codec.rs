//! PostgreSQL protocol 3.0 framing and the few message bodies the proxy reads.
//!
//! Pure: functions take bytes and return values. A buffer that does not yet
//! hold a whole message is `Ok(None)` (read more), never an error; an error
//! means the peer sent something that is not PostgreSQL protocol, and the
//! connection should end with a clear message.
//!
//! The proxy forwards frames as the raw bytes it received (`Frame::raw`), so
//! anything it does not need to understand passes through unchanged.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest message the proxy accepts from either side. PostgreSQL's own limit
/// for most messages is 1 GiB; a smaller cap bounds the proxy's memory per
/// connection while leaving room for large COPY chunks and bulk binds.
pub const MAX_MESSAGE_LEN: usize = 256 * 1024 * 1024;
/// Largest Query or Parse a client may send. The classifier reads at most
/// `vigil_sql::classify::MAX_CLASSIFIED_BYTES` of a statement (a
/// longer one gets the policy's strictest outcome), so a statement message
/// this large can only be refused or forwarded unread; the bound keeps what
/// one statement can make the proxy hold (the text, its Request event) small.
pub const MAX_STATEMENT_MESSAGE_LEN: usize = 16 * 1024 * 1024;
/// Largest Bind or CopyData a client may send. Bound parameters are
/// recorded (up to [`MAX_RECORDED_PARAMETER_LEN`] each, with the length and
/// SHA-256 of the whole), and a session holds a whole message before it
/// forwards it: a 200 MB Bind once cost 1 GB of gateway memory.
pub const MAX_BIND_MESSAGE_LEN: usize = 64 * 1024 * 1024;
/// A bound value longer than this is recorded as its first this-many
/// bytes, its full length and its SHA-256 (the one bound every protocol
/// records by).
pub const MAX_RECORDED_PARAMETER_LEN: usize = vigil_proxy_core::recorded::MAX_RECORDED_LEN;
/// At most this much room is reserved ahead of the bytes a peer has really
/// sent: a header announcing 256 MiB must not make the proxy allocate
/// 256 MiB before any of it arrives.
const MAX_RESERVE_AHEAD: usize = 1024 * 1024;
/// Largest startup packet (PostgreSQL's own limit is 10000 bytes).
pub const MAX_STARTUP_LEN: usize = 10_000;

pub const PROTOCOL_3_0: u32 = 196_608;
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// What went wrong while decoding. The text is safe to show the peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("invalid message length {0}")]
    BadLength(i64),
    #[error("message of {0} bytes exceeds the proxy's limit")]
    TooLong(usize),
    #[error("unsupported frontend protocol {}.{}", .0 >> 16, .0 & 0xffff)]
    UnsupportedProtocol(u32),
    #[error("malformed {what} message: {detail}")]
    Malformed {
        what: &'static str,
        detail: &'static str,
    },
}

pub(crate) fn malformed(what: &'static str, detail: &'static str) -> CodecError {
    CodecError::Malformed { what, detail }
}

/// The first packet a client sends (it has no type byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel { process_id: i32, secret_key: i32 },
    Startup { params: Vec<(String, String)> },
}

impl StartupPacket {
    /// Looks up a startup parameter (`user`, `database`, `application_name`, ...).
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            StartupPacket::Startup { params } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Decodes a startup packet from the front of `buf`, consuming it when whole.
pub fn decode_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(CodecError::BadLength(len.into()));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let mut body = buf.split_to(len).freeze();
    body.advance(4);
    let code = body.get_u32();
    let packet = match code {
        SSL_REQUEST_CODE => StartupPacket::SslRequest,
        GSSENC_REQUEST_CODE => StartupPacket::GssEncRequest,
        CANCEL_REQUEST_CODE => {
            if body.remaining() != 8 {
                return Err(malformed("CancelRequest", "wrong length"));
            }
            StartupPacket::Cancel {
                process_id: body.get_i32(),
                secret_key: body.get_i32(),
            }
        }
        PROTOCOL_3_0 => StartupPacket::Startup {
            params: decode_startup_params(&mut body)?,
        },
        other => return Err(CodecError::UnsupportedProtocol(other)),
    };
    Ok(Some(packet))
}

fn decode_startup_params(body: &mut Bytes) -> Result<Vec<(String, String)>, CodecError> {
    let mut params = Vec::new();
    loop {
        let key = read_cstr(body, "StartupMessage")?;
        if key.is_empty() {
            break;
        }
        let value = read_cstr(body, "StartupMessage")?;
        params.push((key, value));
    }
    if body.has_remaining() {
        return Err(malformed("StartupMessage", "bytes after the terminator"));
    }
    Ok(params)
}

/// One typed protocol message: a type byte, then a length that counts itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    /// The whole message as received (type byte and length included), forwarded as is.
    pub raw: Bytes,
}

impl Frame {
    /// The message body after the type byte and length.
    pub fn body(&self) -> Bytes {
        self.raw.slice(5..)
    }
}

/// Decodes one typed message from the front of `buf`, consuming it when whole.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
    decode_frame_limited(buf, MAX_MESSAGE_LEN)
}

/// Like [`decode_frame`], for messages a client sends: statements (Query,
/// Parse) have the smaller [`MAX_STATEMENT_MESSAGE_LEN`], bound values
/// (Bind, CopyData, FunctionCall) [`MAX_BIND_MESSAGE_LEN`].
pub fn decode_client_frame(buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
    let limit = match buf.first() {
        Some(b'Q' | b'P') => MAX_STATEMENT_MESSAGE_LEN,
        Some(b'B' | b'd' | b'F') => MAX_BIND_MESSAGE_LEN,
        _ => MAX_MESSAGE_LEN,
    };
    decode_frame_limited(buf, limit)
}

fn decode_frame_limited(buf: &mut BytesMut, limit: usize) -> Result<Option<Frame>, CodecError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(CodecError::BadLength(len.into()));
    }
    let total = len as usize + 1;
    if total > limit {
        return Err(CodecError::TooLong(total));
    }
    if buf.len() < total {
        buf.reserve((total - buf.len()).min(MAX_RESERVE_AHEAD));
        return Ok(None);
    }
    let raw = buf.split_to(total).freeze();
    Ok(Some(Frame { tag: raw[0], raw }))
}

pub(crate) fn read_cstr(body: &mut Bytes, what: &'static str) -> Result<String, CodecError> {
    let end = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| malformed(what, "unterminated string"))?;
    let s = std::str::from_utf8(&body[..end])
        .map_err(|_| malformed(what, "string is not UTF-8"))?
        .to_string();
    body.advance(end + 1);
    Ok(s)
}

pub(crate) fn read_i16(body: &mut Bytes, what: &'static str) -> Result<i16, CodecError> {
    if body.remaining() < 2 {
        return Err(malformed(what, "truncated"));
    }
    Ok(body.get_i16())
}

pub(crate) fn read_i32(body: &mut Bytes, what: &'static str) -> Result<i32, CodecError> {
    if body.remaining() < 4 {
        return Err(malformed(what, "truncated"));
    }
    Ok(body.get_i32())
}

pub(crate) fn read_count(body: &mut Bytes, what: &'static str) -> Result<usize, CodecError> {
    let n = read_i16(body, what)?;
    usize::try_from(n).map_err(|_| malformed(what, "negative count"))
}

// ---- frontend messages the proxy reads ----

/// `Query` ('Q'): the SQL text of a simple-protocol query.
pub fn parse_query(body: Bytes) -> Result<String, CodecError> {
    let mut body = body;
    let sql = read_cstr(&mut body, "Query")?;
    Ok(sql)
}

/// `Parse` ('P').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    pub statement: String,
    pub query: String,
    pub param_types: Vec<u32>,
}

pub fn parse_parse(body: Bytes) -> Result<Parse, CodecError> {
    let mut body = body;
    let statement = read_cstr(&mut body, "Parse")?;
    let query = read_cstr(&mut body, "Parse")?;
    let n = read_count(&mut body, "Parse")?;
    let mut param_types = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        param_types.push(read_i32(&mut body, "Parse")? as u32);
    }
    Ok(Parse {
        statement,
        query,
        param_types,
    })
}

/// One bound parameter value of a `Bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindParam {
    pub binary: bool,
    /// `None` is SQL NULL.
    pub value: Option<Bytes>,
}

/// `Bind` ('B').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub portal: String,
    pub statement: String,
    pub params: Vec<BindParam>,
    pub result_formats: Vec<i16>,
}

/// Parameter format codes then values: the shared middle of `Bind` and
/// `FunctionCall`.
fn read_params(body: &mut Bytes, what: &'static str) -> Result<Vec<BindParam>, CodecError> {
    let nfmt = read_count(body, what)?;
    let mut formats = Vec::with_capacity(nfmt.min(1024));
    for _ in 0..nfmt {
        formats.push(read_i16(body, what)?);
    }
    let nparams = read_count(body, what)?;
    if nfmt > 1 && nfmt != nparams {
        return Err(malformed(
            what,
            "format count does not match parameter count",
        ));
    }
    let mut params = Vec::with_capacity(nparams.min(1024));
    for i in 0..nparams {
        let binary = match nfmt {
            0 => false,
            1 => formats[0] == 1,
            _ => formats[i] == 1,
        };
        let len = read_i32(body, what)?;
        let value = if len == -1 {
            None
        } else {
            let len = usize::try_from(len).map_err(|_| malformed(what, "negative length"))?;
            if body.remaining() < len {
                return Err(malformed(what, "truncated parameter"));
            }
            Some(body.split_to(len))
        };
        params.push(BindParam { binary, value });
    }
    Ok(params)
}

/// `FunctionCall` ('F'): a server function run by OID (libpq's fast path,
/// used e.g. by large-object calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    pub function_oid: u32,
    pub args: Vec<BindParam>,
    pub result_binary: bool,
}

pub fn parse_function_call(body: Bytes) -> Result<FunctionCall, CodecError> {
    const WHAT: &str = "FunctionCall";
    let mut body = body;
    let function_oid = read_i32(&mut body, WHAT)? as u32;
    let args = read_params(&mut body, WHAT)?;
    let result_binary = read_i16(&mut body, WHAT)? == 1;
    if body.has_remaining() {
        return Err(malformed(WHAT, "trailing bytes"));
    }
    Ok(FunctionCall {
        function_oid,
        args,
        result_binary,
    })
}

pub fn parse_bind(body: Bytes) -> Result<Bind, CodecError> {
    const WHAT: &str = "Bind";
    let mut body = body;
    let portal = read_cstr(&mut body, WHAT)?;
    let statement = read_cstr(&mut body, WHAT)?;
    let params = read_params(&mut body, WHAT)?;
    let nres = read_count(&mut body, WHAT)?;
    let mut result_formats = Vec::with_capacity(nres.min(1024));
    for _ in 0..nres {
        result_formats.push(read_i16(&mut body, WHAT)?);
    }
    Ok(Bind {
        portal,
        statement,
        params,
        result_formats,
    })
}

/// `Execute` ('E'): the portal to run.
pub fn parse_execute(body: Bytes) -> Result<(String, i32), CodecError> {
    let mut body = body;
    let portal = read_cstr(&mut body, "Execute")?;
    let max_rows = read_i32(&mut body, "Execute")?;
    Ok((portal, max_rows))
}

/// `Close` ('C'): `(is_portal, name)`.
pub fn parse_close(body: Bytes) -> Result<(bool, String), CodecError> {
    let mut body = body;
    if !body.has_remaining() {
        return Err(malformed("Close", "truncated"));
    }
    let kind = body.get_u8();
    let name = read_cstr(&mut body, "Close")?;
    match kind {
        b'P' => Ok((true, name)),
        b'S' => Ok((false, name)),
        _ => Err(malformed("Close", "unknown target")),
    }
}

/// `PasswordMessage` ('p') holding a cleartext password.
pub fn parse_password(body: Bytes) -> Result<Bytes, CodecError> {
    let end = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| malformed("PasswordMessage", "unterminated password"))?;
    if end + 1 != body.len() {
        return Err(malformed("PasswordMessage", "bytes after the password"));
    }
    Ok(body.slice(..end))
}

// ---- backend messages the proxy reads ----

/// The fields of an `ErrorResponse` or `NoticeResponse` the proxy cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

pub fn parse_error_fields(body: Bytes) -> Result<ErrorFields, CodecError> {
    let mut body = body;
    let mut fields = ErrorFields::default();
    loop {
        if !body.has_remaining() {
            return Err(malformed("ErrorResponse", "missing terminator"));
        }
        let kind = body.get_u8();
        if kind == 0 {
            break;
        }
        let value = read_cstr(&mut body, "ErrorResponse")?;
        match kind {
            b'V' => fields.severity = value,
            b'S' if fields.severity.is_empty() => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
    }
    Ok(fields)
}

/// `CommandComplete` ('C'): the command tag.
pub fn parse_command_complete(body: Bytes) -> Result<String, CodecError> {
    let mut body = body;
    read_cstr(&mut body, "CommandComplete")
}

/// The rows a command tag reports ("SELECT 3" -> 3, "INSERT 0 5" -> 5).
pub fn rows_in_tag(tag: &str) -> Option<u64> {
    tag.rsplit(' ').next()?.parse().ok()
}

/// `Authentication*` ('R') requests from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    Ok,
    CleartextPassword,
    Md5Password { salt: [u8; 4] },
    Sasl { mechanisms: Vec<String> },
    SaslContinue { data: Bytes },
    SaslFinal { data: Bytes },
    Other(i32),
}

pub fn parse_auth_request(body: Bytes) -> Result<AuthRequest, CodecError> {
    const WHAT: &str = "Authentication";
    let mut body = body;
    let code = read_i32(&mut body, WHAT)?;
    Ok(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::CleartextPassword,
        5 => {
            if body.remaining() != 4 {
                return Err(malformed(WHAT, "MD5 salt is not 4 bytes"));
            }
            let mut salt = [0u8; 4];
            body.copy_to_slice(&mut salt);
            AuthRequest::Md5Password { salt }
        }
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = read_cstr(&mut body, WHAT)?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            AuthRequest::Sasl { mechanisms }
        }
        11 => AuthRequest::SaslContinue { data: body },
        12 => AuthRequest::SaslFinal { data: body },
        other => AuthRequest::Other(other),
    })
}

// ---- encoders ----

pub(crate) fn message(tag: u8, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u8(tag);
    buf.put_i32(0);
    body(&mut buf);
    let len = (buf.len() - 1) as i32;
    buf[1..5].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

pub(crate) fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// An `ErrorResponse` with severity, SQLSTATE and message.
pub fn error_response(severity: &str, code: &str, text: &str) -> Bytes {
    message(b'E', |b| {
        b.put_u8(b'S');
        put_cstr(b, severity);
        b.put_u8(b'V');
        put_cstr(b, severity);
        b.put_u8(b'C');
        put_cstr(b, code);
        b.put_u8(b'M');
        put_cstr(b, text);
        b.put_u8(0);
    })
}

pub fn auth_ok() -> Bytes {
    message(b'R', |b| b.put_i32(0))
}

pub fn auth_cleartext_request() -> Bytes {
    message(b'R', |b| b.put_i32(3))
}

pub fn backend_key_data(process_id: i32, secret_key: i32) -> Bytes {
    message(b'K', |b| {
        b.put_i32(process_id);
        b.put_i32(secret_key);
    })
}

/// `(process id, secret key)` of a BackendKeyData body (protocol 3.0: 8 bytes).
pub fn parse_backend_key_data(body: &[u8]) -> Result<(i32, i32), CodecError> {
    let arr: [u8; 8] = body
        .try_into()
        .map_err(|_| malformed("BackendKeyData", "not 8 bytes"))?;
    Ok((
        i32::from_be_bytes(arr[..4].try_into().expect("4 bytes")),
        i32::from_be_bytes(arr[4..].try_into().expect("4 bytes")),
    ))
}

/// A CancelRequest packet (sent on its own connection, no tag).
pub fn cancel_request(process_id: i32, secret_key: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(16);
    b.put_u32(16);
    b.put_u32(CANCEL_REQUEST_CODE);
    b.put_i32(process_id);
    b.put_i32(secret_key);
    b.freeze()
}

pub fn ready_for_query(status: u8) -> Bytes {
    message(b'Z', |b| b.put_u8(status))
}

/// A `StartupMessage` (protocol 3.0) with the given parameters.
pub fn startup_message(params: &[(String, String)]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf.put_u32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(&mut buf, k);
        put_cstr(&mut buf, v);
    }
    buf.put_u8(0);
    let len = buf.len() as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// A `PasswordMessage` with a NUL-terminated password (cleartext or MD5 form).
pub fn password_message(password: &[u8]) -> Bytes {
    message(b'p', |b| {
        b.put_slice(password);
        b.put_u8(0);
    })
}

pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Bytes {
    message(b'p', |b| {
        put_cstr(b, mechanism);
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    })
}

pub fn sasl_response(data: &[u8]) -> Bytes {
    message(b'p', |b| b.put_slice(data))
}

pub fn terminate() -> Bytes {
    message(b'X', |_| {})
}

/// An `SSLRequest`: asks a server to switch the connection to TLS.
pub fn ssl_request() -> Bytes {
    let mut buf = BytesMut::with_capacity(8);
    buf.put_i32(8);
    buf.put_u32(SSL_REQUEST_CODE);
    buf.freeze()
}

/// `Query` ('Q'), used by tests and tools.
pub fn query(sql: &str) -> Bytes {
    message(b'Q', |b| put_cstr(b, sql))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(bytes: &[u8]) -> BytesMut {
        BytesMut::from(bytes)
    }

    #[test]
    fn startup_roundtrip_and_partial_reads() {
        let params = vec![
            ("user".to_string(), "dev".to_string()),
            ("database".to_string(), "test".to_string()),
        ];
        let encoded = startup_message(&params);
        for cut in 0..encoded.len() {
            let mut b = buf(&encoded[..cut]);
            assert_eq!(decode_startup(&mut b), Ok(None), "cut at {cut}");
        }
        let mut b = buf(&encoded);
        let packet = decode_startup(&mut b).unwrap().unwrap();
        assert_eq!(packet.param("user"), Some("dev"));
        assert_eq!(packet.param("database"), Some("test"));
        assert!(b.is_empty());
    }

    #[test]
    fn special_startup_codes() {
        let mut b = buf(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        assert_eq!(decode_startup(&mut b), Ok(Some(StartupPacket::SslRequest)));
        let mut b = buf(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
        assert_eq!(
            decode_startup(&mut b),
            Ok(Some(StartupPacket::GssEncRequest))
        );
        let mut b = buf(&[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(
            decode_startup(&mut b),
            Ok(Some(StartupPacket::Cancel {
                process_id: 7,
                secret_key: 9
            }))
        );
    }

    #[test]
    fn malformed_startup_packets_are_errors() {
        let cases: &[(&str, &[u8])] = &[
            ("length below minimum", &[0, 0, 0, 4, 0, 3, 0, 0]),
            ("negative length", &[0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
            ("huge length", &[0x7f, 0, 0, 0, 0, 3, 0, 0]),
            ("protocol 2", &[0, 0, 0, 9, 0, 2, 0, 0, 0]),
            (
                "unterminated param",
                &[0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r'],
            ),
            (
                "cancel too short",
                &[0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7],
            ),
            ("trailing bytes", &[0, 0, 0, 11, 0, 3, 0, 0, 0, b'x', 0]),
        ];
        for (name, bytes) in cases {
            let mut b = buf(bytes);
            assert!(decode_startup(&mut b).is_err(), "{name} should be an error");
        }
    }

    #[test]
    fn frames_split_on_length_and_wait_for_more() {
        let q = query("select 1");
        let mut joined = BytesMut::new();
        joined.extend_from_slice(&q);
        joined.extend_from_slice(&q[..3]);
        let f = decode_frame(&mut joined).unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(parse_query(f.body()).unwrap(), "select 1");
        assert_eq!(decode_frame(&mut joined), Ok(None));
        joined.extend_from_slice(&q[3..]);
        assert!(decode_frame(&mut joined).unwrap().is_some());
        assert!(joined.is_empty());
    }

    #[test]
    fn a_statement_message_has_a_smaller_limit_than_data() {
        let header = |tag: u8, len: usize| {
            let mut b = BytesMut::new();
            b.put_u8(tag);
            b.put_i32(len as i32);
            b
        };
        let over = MAX_STATEMENT_MESSAGE_LEN + 1;
        for tag in [b'Q', b'P'] {
            assert_eq!(
                decode_client_frame(&mut header(tag, over)),
                Err(CodecError::TooLong(over + 1)),
                "{}",
                tag as char
            );
        }
        // A bulk Bind or COPY chunk of the same size is fine (and waits for
        // its bytes); the server's messages keep the general limit.
        assert_eq!(decode_client_frame(&mut header(b'B', over)), Ok(None));
        assert_eq!(decode_client_frame(&mut header(b'd', over)), Ok(None));
        assert_eq!(decode_frame(&mut header(b'P', over)), Ok(None));
        // Bound values have their own, larger cap.
        let over = MAX_BIND_MESSAGE_LEN + 1;
        for tag in [b'B', b'd', b'F'] {
            assert_eq!(
                decode_client_frame(&mut header(tag, over)),
                Err(CodecError::TooLong(over + 1)),
                "{}",
                tag as char
            );
        }
        assert_eq!(decode_frame(&mut header(b'd', over)), Ok(None));
    }

    #[test]
    fn an_announced_length_does_not_reserve_memory_that_never_arrives() {
        let mut b = BytesMut::new();
        b.put_u8(b'D');
        b.put_i32((MAX_MESSAGE_LEN - 1) as i32);
        assert_eq!(decode_client_frame(&mut b), Ok(None));
        assert!(
            b.capacity() <= 2 * MAX_RESERVE_AHEAD,
            "reserved {} bytes for a header alone",
            b.capacity()
        );
    }

    #[test]
    fn bad_frame_lengths_are_errors() {
        let mut b = buf(&[b'Q', 0, 0, 0, 3]);
        assert_eq!(decode_frame(&mut b), Err(CodecError::BadLength(3)));
        let mut b = buf(&[b'Q', 0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(decode_frame(&mut b), Err(CodecError::TooLong(_))));
    }

    #[test]
    fn bind_parses_params_and_formats() {
        let body = message(b'B', |b| {
            put_cstr(b, "portal");
            put_cstr(b, "stmt");
            b.put_i16(1);
            b.put_i16(1);
            b.put_i16(2);
            b.put_i32(3);
            b.put_slice(b"abc");
            b.put_i32(-1);
            b.put_i16(0);
        });
        let bind = parse_bind(body.slice(5..)).unwrap();
        assert_eq!(bind.portal, "portal");
        assert_eq!(bind.statement, "stmt");
        assert_eq!(bind.params.len(), 2);
        assert!(bind.params[0].binary);
        assert_eq!(bind.params[0].value.as_deref(), Some(&b"abc"[..]));
        assert_eq!(bind.params[1].value, None);
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        let bind = message(b'B', |b| {
            put_cstr(b, "");
            put_cstr(b, "");
            b.put_i16(0);
            b.put_i16(1);
            b.put_i32(100);
            b.put_slice(b"short");
        });
        for cut in 5..bind.len() {
            assert!(parse_bind(bind.slice(5..cut)).is_err(), "cut {cut}");
        }
        assert!(parse_bind(bind.slice(5..)).is_err());
        assert!(parse_query(Bytes::from_static(b"no terminator")).is_err());
        assert!(parse_parse(Bytes::from_static(b"a\0b\0\xff\xff")).is_err());
        assert!(parse_execute(Bytes::from_static(b"p\0\0")).is_err());
        assert!(parse_close(Bytes::from_static(b"Xname\0")).is_err());
        assert!(parse_auth_request(Bytes::from_static(b"\0\0")).is_err());
        assert!(parse_error_fields(Bytes::from_static(b"Cx")).is_err());
        assert!(parse_password(Bytes::from_static(b"pw\0extra")).is_err());
    }

    #[test]
    fn error_response_roundtrip() {
        let e = error_response("FATAL", "28P01", "password authentication failed");
        let mut b = BytesMut::from(&e[..]);
        let f = decode_frame(&mut b).unwrap().unwrap();
        assert_eq!(f.tag, b'E');
        let fields = parse_error_fields(f.body()).unwrap();
        assert_eq!(fields.severity, "FATAL");
        assert_eq!(fields.code, "28P01");
        assert_eq!(fields.message, "password authentication failed");
    }

    #[test]
    fn rows_from_command_tags() {
        assert_eq!(rows_in_tag("SELECT 3"), Some(3));
        assert_eq!(rows_in_tag("INSERT 0 5"), Some(5));
        assert_eq!(rows_in_tag("CREATE TABLE"), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: every prefix and single-byte corruption of
        // valid messages must decode to a value or an error, never a panic.
        let samples = [
            startup_message(&[("user".into(), "u".into())]),
            query("select 1"),
            error_response("ERROR", "42501", "denied"),
            password_message(b"pw"),
        ];
        for s in samples {
            for i in 0..s.len() {
                for flip in [0x00u8, 0xff, 0x80, 0x01] {
                    let mut v = s.to_vec();
                    v[i] ^= flip;
                    let _ = decode_startup(&mut BytesMut::from(&v[..]));
                    if let Ok(Some(f)) = decode_frame(&mut BytesMut::from(&v[..])) {
                        let _ = parse_query(f.body());
                        let _ = parse_bind(f.body());
                        let _ = parse_parse(f.body());
                        let _ = parse_error_fields(f.body());
                        let _ = parse_auth_request(f.body());
                    }
                }
            }
        }
    }

    #[test]
    fn cancel_request_and_backend_key_data_round_trip() {
        let mut buf = BytesMut::from(&cancel_request(1234, -99)[..]);
        assert_eq!(
            decode_startup(&mut buf).unwrap(),
            Some(StartupPacket::Cancel {
                process_id: 1234,
                secret_key: -99
            })
        );
        let k = backend_key_data(77, -5);
        assert_eq!(parse_backend_key_data(&k[5..]).unwrap(), (77, -5));
        assert!(parse_backend_key_data(&k[5..12]).is_err());
        assert!(parse_backend_key_data(&[0; 9]).is_err());
    }

    #[test]
    fn function_calls_parse_and_malformed_ones_are_errors() {
        // lo_open(16384, 0x20000): oid 952, two binary int4 args, binary result.
        let mut body = BytesMut::new();
        body.put_i32(952);
        body.put_i16(1);
        body.put_i16(1);
        body.put_i16(2);
        body.put_i32(4);
        body.put_i32(16384);
        body.put_i32(4);
        body.put_i32(0x20000);
        body.put_i16(1);
        let call = parse_function_call(body.clone().freeze()).unwrap();
        assert_eq!(call.function_oid, 952);
        assert_eq!(call.args.len(), 2);
        assert!(call.args.iter().all(|a| a.binary));
        assert_eq!(
            call.args[0].value.as_deref(),
            Some(&16384i32.to_be_bytes()[..])
        );
        assert!(call.result_binary);
        for cut in 0..body.len() {
            assert!(
                parse_function_call(body.clone().freeze().slice(..cut)).is_err(),
                "{cut}"
            );
        }
        let mut trailing = body.clone();
        trailing.put_u8(0);
        assert!(parse_function_call(trailing.freeze()).is_err());
    }
}
