//! The ledger's own records: events it writes itself (retention runs, gaps
//! it noticed), each kind in a stream of its own under
//! [`LEDGER_STREAM_PREFIX`], which nothing on the bus can write (the
//! appender refuses those streams and those kinds).

use vigil_ledger::NewEntry;
use vigil_proto::events::{event, Event, Identity};
use vigil_proto::Message;

/// Streams only the ledger itself writes to.
pub const LEDGER_STREAM_PREFIX: &str = "vigil-ledger/";

/// Now, in nanoseconds since the Unix epoch (0 before it).
pub fn now_unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Whether an event of this kind may only come from the ledger itself.
pub fn is_own_kind(kind: &event::Kind) -> bool {
    matches!(
        kind,
        event::Kind::RetentionPruned(_) | event::Kind::SequenceGap(_)
    )
}

/// The log entry of the ledger's own event `kind`, number `seq` of
/// `stream`, made at `time_unix_nanos`.
pub fn entry(stream: &str, seq: u64, time_unix_nanos: i64, kind: event::Kind) -> NewEntry {
    debug_assert!(stream.starts_with(LEDGER_STREAM_PREFIX));
    let id = uuid::Uuid::now_v7();
    let event = Event {
        event_id: id.to_string(),
        time_unix_nanos,
        session_id: stream.into(),
        seq,
        identity: Some(Identity {
            subject: "vigil-ledger".into(),
            issuer: "vigil:internal".into(),
            auth_method: "internal".into(),
            ..Default::default()
        }),
        kind: Some(kind),
        ..Default::default()
    };
    NewEntry {
        event_id: *id.as_bytes(),
        time_unix_nanos,
        kind: event.kind_name().to_string(),
        body: event.encode_to_vec(),
        session_id: stream.into(),
        seq,
        subject: "vigil-ledger".into(),
    }
}
