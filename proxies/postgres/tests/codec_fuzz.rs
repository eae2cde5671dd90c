//! Fuzzing the wire codec with proptest: every parser the proxy runs on bytes
//! from a client or from the upstream must return a value or a clear error
//! for any input, never panic, and never read past what it was given.
//! Inputs are both random bytes and valid messages with one mutation, which
//! reach deeper into each parser than random bytes do.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use vigil_proxy_postgres::messages::{BackendMessage, ClientMessage};
use vigil_proxy_postgres::{codec, results, scrub};

/// Valid messages of every kind the proxy parses (type byte + length + body).
fn valid_messages() -> Vec<Bytes> {
    vec![
        codec::query("SELECT 1; SELECT 'x'"),
        results::parse_message("s1", "SELECT $1::int"),
        results::describe_portal("p1"),
        results::data_row([Some(&b"123-45-6789"[..]), None, Some(&b""[..])].into_iter()),
        results::error_response_full("42501", "denied", "detail", "hint"),
        codec::error_response("ERROR", "42P01", "relation does not exist"),
        codec::backend_key_data(7, 42),
        codec::ready_for_query(b'T'),
        codec::password_message(b"secret"),
        codec::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc"),
        results::copy_data(b"1\tJane\t555-123-4567\n"),
    ]
}

/// Runs every body parser on `body`: none may panic.
fn parse_everything(body: &[u8]) {
    let b = Bytes::copy_from_slice(body);
    let _ = codec::parse_query(b.clone());
    let _ = codec::parse_parse(b.clone());
    let _ = codec::parse_bind(b.clone());
    let _ = codec::parse_execute(b.clone());
    let _ = codec::parse_close(b.clone());
    let _ = codec::parse_function_call(b.clone());
    let _ = codec::parse_password(b.clone());
    let _ = codec::parse_error_fields(b.clone());
    let _ = codec::parse_command_complete(b.clone());
    let _ = codec::parse_auth_request(b.clone());
    let _ = codec::parse_backend_key_data(body);
    let _ = results::parse_row_description(b.clone());
    let _ = results::data_row_values(body);
    let _ = results::parse_describe(b.clone());
    let _ = results::parse_parameter_status(b.clone());
    let _ = results::parse_copy_out_format(body);
    let _ = scrub::scrub_notification(body);
    // Error and notice scrubbing: what it writes from a body that parses
    // is a body that parses.
    if let Ok(Some(scrubbed)) = scrub::scrub_body(body) {
        if codec::parse_error_fields(b.clone()).is_ok() {
            assert!(codec::parse_error_fields(scrubbed).is_ok());
        }
    }
}

/// Decodes frames from `bytes` until the codec wants more or errors; every
/// frame is exactly as long as its length field says, and its body is parsed
/// by every parser.
fn decode_all(bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    let before = buf.len();
    let mut consumed = 0;
    while let Ok(Some(frame)) = codec::decode_frame(&mut buf) {
        consumed += frame.raw.len();
        let len = i32::from_be_bytes([frame.raw[1], frame.raw[2], frame.raw[3], frame.raw[4]]);
        assert_eq!(frame.raw.len(), len as usize + 1);
        parse_everything(&frame.body());
        // The session's decoder, under every type byte a client could send.
        for tag in [
            b'Q', b'P', b'B', b'E', b'D', b'C', b'S', b'X', b'c', b'f', b'F', b'H',
        ] {
            let mut raw = frame.raw.to_vec();
            raw[0] = tag;
            let _ = ClientMessage::decode(&codec::Frame {
                tag,
                raw: Bytes::from(raw),
            });
        }
        // And under every type byte a server could send.
        for tag in *b"TnDHdcG123VCsIENSZA" {
            let mut raw = frame.raw.to_vec();
            raw[0] = tag;
            let _ = BackendMessage::decode(&codec::Frame {
                tag,
                raw: Bytes::from(raw),
            });
        }
    }
    assert_eq!(consumed + buf.len(), before, "no byte lost or invented");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
        parse_everything(&bytes);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = codec::decode_startup(&mut buf);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        which in 0usize..11,
        at in any::<usize>(),
        byte in any::<u8>(),
        cut in any::<usize>(),
    ) {
        let msgs = valid_messages();
        let mut m = msgs[which % msgs.len()].to_vec();
        let i = at % m.len();
        m[i] = byte;
        decode_all(&m);
        parse_everything(&m[5.min(m.len())..]);
        // Truncated anywhere: the frame is incomplete or an error.
        let cut = cut % (m.len() + 1);
        decode_all(&m[..cut]);
        parse_everything(&m[5.min(cut)..cut]);
    }

    #[test]
    fn valid_messages_split_anywhere_decode_the_same(which in 0usize..11, split in any::<usize>()) {
        let msgs = valid_messages();
        let m = &msgs[which % msgs.len()];
        let split = split % (m.len() + 1);
        let mut buf = BytesMut::from(&m[..split]);
        let first = codec::decode_frame(&mut buf).unwrap();
        if split < m.len() {
            prop_assert!(first.is_none());
            buf.extend_from_slice(&m[split..]);
            let frame = codec::decode_frame(&mut buf).unwrap().unwrap();
            prop_assert_eq!(&frame.raw, m);
        } else {
            prop_assert_eq!(&first.unwrap().raw, m);
        }
    }
}

#[test]
fn oversized_and_negative_lengths_are_errors() {
    for len in [i32::MIN, -1, 0, 3] {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"Q");
        buf.extend_from_slice(&len.to_be_bytes());
        assert!(codec::decode_frame(&mut buf).is_err(), "{len}");
    }
    let mut buf = BytesMut::new();
    buf.extend_from_slice(b"Q");
    buf.extend_from_slice(&(codec::MAX_MESSAGE_LEN as i32).to_be_bytes());
    assert!(matches!(
        codec::decode_frame(&mut buf),
        Err(codec::CodecError::TooLong(_))
    ));
}
