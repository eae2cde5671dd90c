//! The context of one client session: it stamps every event with the session
//! id, the next sequence number, the verified identity, the connection name
//! and the protocol (the envelope of event schema v2), so that no event can
//! be published without them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use vigil_proto::events::{event::Kind, Event, Identity, Protocol};

use vigil_identity::VerifiedIdentity;

#[derive(Debug)]
pub struct SessionContext {
    session_id: Uuid,
    connection: String,
    identity: Identity,
    protocol: Protocol,
    next_seq: AtomicU64,
    next_statement: AtomicU64,
}

impl SessionContext {
    pub fn new(connection: &str, identity: &VerifiedIdentity, protocol: Protocol) -> Self {
        Self {
            session_id: Uuid::now_v7(),
            connection: connection.to_string(),
            identity: identity.to_event_identity(),
            protocol,
            next_seq: AtomicU64::new(0),
            next_statement: AtomicU64::new(0),
        }
    }

    pub fn session_id(&self) -> Uuid {
        self.session_id
    }

    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// The verified subject every event of the session carries.
    pub fn subject(&self) -> &str {
        &self.identity.subject
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Number the next request of this session (0, 1, 2, ...).
    pub fn next_statement_seq(&self) -> u64 {
        self.next_statement.fetch_add(1, Ordering::Relaxed)
    }

    /// How many requests were numbered so far.
    pub fn statements(&self) -> u64 {
        self.next_statement.load(Ordering::Relaxed)
    }

    /// A new event of this session with a fresh UUIDv7 and the next sequence number.
    pub fn event(&self, kind: Kind) -> Event {
        Event {
            event_id: Uuid::now_v7().to_string(),
            time_unix_nanos: unix_nanos_now(),
            session_id: self.session_id.to_string(),
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            identity: Some(self.identity.clone()),
            connection: self.connection.clone(),
            protocol: self.protocol as i32,
            kind: Some(kind),
        }
    }
}

/// Wall-clock time as nanoseconds since the Unix epoch.
pub fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::events::SessionClosed;

    #[test]
    fn events_are_numbered_in_order_and_carry_identity() {
        let id = VerifiedIdentity {
            subject: "agent".into(),
            issuer: "vigil:static".into(),
            groups: vec!["g".into()],
            auth_method: "password".into(),
            ..VerifiedIdentity::default()
        };
        let ctx = SessionContext::new("ehr", &id, Protocol::Postgres);
        let a = ctx.event(Kind::SessionClosed(SessionClosed::default()));
        let b = ctx.event(Kind::SessionClosed(SessionClosed::default()));
        assert_eq!((a.seq, b.seq), (0, 1));
        assert_ne!(a.event_id, b.event_id);
        assert_eq!(a.session_id, ctx.session_id().to_string());
        assert_eq!(a.identity.as_ref().unwrap().subject, "agent");
        assert_eq!(a.connection, "ehr");
        assert_eq!(a.protocol(), Protocol::Postgres);
        assert_eq!(Uuid::parse_str(&a.event_id).unwrap().get_version_num(), 7);
    }
}
