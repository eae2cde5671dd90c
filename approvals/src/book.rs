//! The approval service's durable book: every operation and grant, and the
//! events their transitions owe the ledger.
//!
//! Each change is one synced RocksDB write batch holding the new state *and*
//! the events that record it (an outbox). Only then is the change visible and
//! answered. The events leave the outbox when the bus has acknowledged them,
//! so a crash between the write and the publish loses nothing: on restart
//! [`Book::unpublished`] hands them out again, with the same event ids, and
//! the ledger's deduplication makes a second copy a no-op.
//!
//! Keys: `op/<id>` and `grant/<id>` hold JSON records (small, readable with
//! `ldb` when someone must look); `out/<u64 big-endian>` holds an event's
//! protobuf bytes, in the order they were made; `meta/id` the book's own
//! id and `meta/notices` the next number of its notice stream
//! ([`NOTICE_STREAM_PREFIX`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use vigil_proto::events::{self, event::Kind, Event};
use vigil_proto::Message;

use crate::grant::{Grant, GrantError, GrantRequest, GrantRule};
use crate::operation::{
    Approver, DecideError, Decided, Hold, HoldError, Operation, Principal, State, Verdict,
};

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Hold(#[from] HoldError),
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("there is no operation {0}")]
    UnknownOperation(String),
    #[error("there is no grant {0}")]
    UnknownGrant(String),
    #[error("there is already a grant {0}")]
    DuplicateGrant(String),
    #[error("the approvals store failed: {0}")]
    Store(#[from] rocksdb::Error),
    #[error("the approvals store holds a record it cannot read ({key}): {reason}")]
    Corrupt { key: String, reason: String },
}

/// An operation with the position of its next event in its own stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct OperationRecord {
    operation: Operation,
    next_seq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct GrantRecord {
    grant: Grant,
    next_seq: u64,
}

/// An event waiting in the outbox, with the key that removes it.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub key: u64,
    pub event: Event,
}

pub struct Book {
    db: DB,
    operations: BTreeMap<String, OperationRecord>,
    /// The pending operations by when they expire (then id): what the
    /// sweeper, the pending gauge and the approvers' queue ask for each
    /// second, without a walk over every operation ever held.
    pending: BTreeSet<(i64, String)>,
    grants: BTreeMap<String, GrantRecord>,
    next_out: u64,
    /// The book's notice stream, and the next number in it.
    notice_stream: String,
    next_notice: u64,
}

/// The streams of the service's own records (webhook notifications that
/// failed), one per book: `vigil-approvals/notices/<book id>`. Not the
/// operation's stream: that ends with its OperationClosed, and a failed
/// notice of the closing comes after it. Per book: a book lost and begun
/// anew starts a new stream rather than numbering over an old one.
pub const NOTICE_STREAM_PREFIX: &str = "vigil-approvals/notices/";

const OP: &str = "op/";
const META: &[u8] = b"meta/";
const NEXT_NOTICE: &[u8] = b"meta/notices";
const BOOK_ID: &[u8] = b"meta/id";
const GRANT: &str = "grant/";
const OUT: &[u8] = b"out/";

fn out_key(n: u64) -> Vec<u8> {
    let mut k = OUT.to_vec();
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl Book {
    /// Opens (or creates) the book in `dir` and reads every record back.
    pub fn open(dir: &Path) -> Result<Self, BookError> {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, dir)?;
        let mut book = Book {
            db,
            operations: BTreeMap::new(),
            pending: BTreeSet::new(),
            grants: BTreeMap::new(),
            next_out: 0,
            notice_stream: String::new(),
            next_notice: 0,
        };
        let mut book_id = None;
        for item in book.db.iterator(rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            let corrupt = |reason: String| BookError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason,
            };
            if let Some(n) = key.strip_prefix(OUT) {
                let n: [u8; 8] = n.try_into().map_err(|_| corrupt("bad outbox key".into()))?;
                book.next_out = book.next_out.max(u64::from_be_bytes(n) + 1);
            } else if *key == *NEXT_NOTICE {
                let n: [u8; 8] = (*value)
                    .try_into()
                    .map_err(|_| corrupt("bad notice counter".into()))?;
                book.next_notice = u64::from_be_bytes(n);
            } else if *key == *BOOK_ID {
                book_id = Some(String::from_utf8_lossy(&value).into_owned());
            } else if let Some(id) = key.strip_prefix(OP.as_bytes()) {
                let record: OperationRecord =
                    serde_json::from_slice(&value).map_err(|e| corrupt(e.to_string()))?;
                book.operations
                    .insert(String::from_utf8_lossy(id).into_owned(), record);
            } else if let Some(id) = key.strip_prefix(GRANT.as_bytes()) {
                let record: GrantRecord =
                    serde_json::from_slice(&value).map_err(|e| corrupt(e.to_string()))?;
                book.grants
                    .insert(String::from_utf8_lossy(id).into_owned(), record);
            } else if key.starts_with(META) {
                // A later release's bookkeeping: ignored, so that a book
                // written by it still opens here (this release is the
                // first to write meta/ keys; older ones refuse the book).
            } else {
                return Err(corrupt("unknown key".into()));
            }
        }
        let book_id = match book_id {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                book.db.put_opt(BOOK_ID, &id, &synced())?;
                id
            }
        };
        book.notice_stream = format!("{NOTICE_STREAM_PREFIX}{book_id}");
        book.pending = book
            .operations
            .iter()
            .filter(|(_, r)| r.operation.state == State::Pending)
            .map(|(id, r)| (r.operation.hold.expires_unix_nanos, id.clone()))
            .collect();
        Ok(book)
    }

    // ---- reading ----

    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.operations.get(id).map(|r| &r.operation)
    }

    /// Operations in `state` (all when `None`), oldest first.
    pub fn operations(&self, state: Option<State>) -> Vec<&Operation> {
        let mut ops: Vec<&Operation> = if state == Some(State::Pending) {
            self.pending
                .iter()
                .filter_map(|(_, id)| self.operation(id))
                .collect()
        } else {
            self.operations
                .values()
                .map(|r| &r.operation)
                .filter(|op| state.is_none_or(|s| op.state == s))
                .collect()
        };
        ops.sort_by_key(|op| (op.hold.opened_unix_nanos, op.hold.operation_id.clone()));
        ops
    }

    /// How many operations are pending.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn grant(&self, id: &str) -> Option<&Grant> {
        self.grants.get(id).map(|r| &r.grant)
    }

    pub fn grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants.values().map(|r| &r.grant)
    }

    /// An active grant that lets `who` run what `rule` holds on `connection`.
    pub fn covering_grant(
        &self,
        who: &Principal,
        connection: &str,
        rule: &str,
        now: i64,
    ) -> Option<&Grant> {
        self.grants().find(|g| g.covers(who, connection, rule, now))
    }

    /// Events written but not yet acknowledged by the bus, in order.
    pub fn unpublished(&self) -> Result<Vec<Outgoing>, BookError> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(OUT) {
            let (key, value) = item?;
            let Some(n) = key.strip_prefix(OUT) else {
                break;
            };
            let n: [u8; 8] = n.try_into().map_err(|_| BookError::Corrupt {
                key: "out/?".into(),
                reason: "bad outbox key".into(),
            })?;
            let event = vigil_proto::events::decode(&value).map_err(|e| BookError::Corrupt {
                key: format!("out/{}", u64::from_be_bytes(n)),
                reason: e.to_string(),
            })?;
            out.push(Outgoing {
                key: u64::from_be_bytes(n),
                event,
            });
        }
        Ok(out)
    }

    /// The bus acknowledged these events: they leave the outbox.
    pub fn published(&self, keys: &[u64]) -> Result<(), BookError> {
        let mut batch = WriteBatch::default();
        for &k in keys {
            batch.delete(out_key(k));
        }
        self.db.write(batch)?;
        Ok(())
    }

    // ---- changing ----

    /// Records a proxy's hold. A hold seen before (a replayed
    /// PendingOperation) changes nothing and returns the operation as it is.
    /// The PendingOperation event itself is the proxy's, so none is made here.
    pub fn hold(&mut self, hold: Hold) -> Result<&Operation, BookError> {
        let id = hold.operation_id.clone();
        if !self.operations.contains_key(&id) {
            let record = OperationRecord {
                operation: Operation::open(hold)?,
                next_seq: 0,
            };
            let mut batch = WriteBatch::default();
            put_json(&mut batch, OP, &id, &record)?;
            self.db.write_opt(batch, &synced())?;
            self.keep_operation(id.clone(), record);
        }
        Ok(&self.operations[&id].operation)
    }

    /// One approver's vote. Records an ApprovalDecision, and an
    /// OperationClosed when the vote ends the operation.
    pub fn decide(
        &mut self,
        id: &str,
        approver: &Approver,
        verdict: Verdict,
        reason: &str,
        now: i64,
    ) -> Result<(Decided, Vec<Outgoing>), BookError> {
        let mut record = self.operation_record(id)?;
        let decided = match record.operation.decide(approver, verdict, reason, now) {
            Err(DecideError::Expired { .. }) => {
                // Too late: the operation expires now, and the approver is told.
                self.expire(id, now)?;
                return Err(DecideError::Expired { id: id.into() }.into());
            }
            other => other?,
        };
        let vote = record.operation.votes.last().expect("a vote was recorded");
        let mut kinds = vec![(
            Some(identity_of(approver)),
            Kind::ApprovalDecision(events::ApprovalDecision {
                operation_id: id.into(),
                approver: Some(identity_of(approver)),
                verdict: verdict.to_event() as i32,
                reason: vote.reason.clone(),
            }),
        )];
        if let Decided::Closed(_) = decided {
            kinds.push((Some(identity_of(approver)), closed_kind(&record.operation)));
        }
        let out = self.commit_operation(&mut record, kinds, now)?;
        Ok((decided, out))
    }

    /// The client cancelled or left. Returns `None` when the operation was
    /// no longer pending (it stays as decided).
    pub fn withdraw(
        &mut self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<Vec<Outgoing>>, BookError> {
        let mut record = self.operation_record(id)?;
        if !record.operation.withdraw(reason, now) {
            return Ok(None);
        }
        let kinds = vec![(None, closed_kind(&record.operation))];
        self.commit_operation(&mut record, kinds, now).map(Some)
    }

    /// Expires every pending operation whose time to live is over.
    pub fn expire_due(&mut self, now: i64) -> Result<Vec<Outgoing>, BookError> {
        let due: Vec<String> = self
            .pending
            .iter()
            .take_while(|(expires, _)| *expires <= now)
            .map(|(_, id)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in due {
            out.extend(self.expire(&id, now)?);
        }
        Ok(out)
    }

    /// When the next pending operation expires, if any is pending.
    pub fn next_expiry(&self) -> Option<i64> {
        self.pending.first().map(|(expires, _)| *expires)
    }

    fn expire(&mut self, id: &str, now: i64) -> Result<Vec<Outgoing>, BookError> {
        let mut record = self.operation_record(id)?;
        if !record.operation.expire_if_due(now) {
            return Ok(Vec::new());
        }
        let kinds = vec![(None, closed_kind(&record.operation))];
        self.commit_operation(&mut record, kinds, now)
    }

    pub fn issue_grant(
        &mut self,
        request: GrantRequest,
        approver: &Approver,
        rule: &GrantRule,
        now: i64,
    ) -> Result<(Grant, Vec<Outgoing>), BookError> {
        if self.grants.contains_key(&request.grant_id) {
            return Err(BookError::DuplicateGrant(request.grant_id));
        }
        let grant = Grant::issue(request, approver, rule, now)?;
        let mut record = GrantRecord {
            grant: grant.clone(),
            next_seq: 0,
        };
        let kind = Kind::AccessGranted(events::AccessGranted {
            grant_id: grant.id.clone(),
            grantee: Some(events::Identity {
                subject: grant.grantee.subject.clone(),
                issuer: grant.grantee.issuer.clone(),
                ..Default::default()
            }),
            connection: grant.connection.clone(),
            rule: grant.rule.clone(),
            expires_unix_nanos: grant.expires_unix_nanos,
            reason: grant.reason.clone(),
        });
        let out = self.commit_grant(&mut record, identity_of(approver), kind, now)?;
        Ok((grant, out))
    }

    pub fn revoke_grant(
        &mut self,
        id: &str,
        by: &Approver,
        rule: &GrantRule,
        reason: &str,
        now: i64,
    ) -> Result<Vec<Outgoing>, BookError> {
        let mut record = self
            .grants
            .get(id)
            .cloned()
            .ok_or_else(|| BookError::UnknownGrant(id.into()))?;
        record.grant.revoke(by, rule, reason, now)?;
        let kind = Kind::GrantRevoked(events::GrantRevoked {
            grant_id: id.into(),
            reason: reason.trim().into(),
        });
        self.commit_grant(&mut record, identity_of(by), kind, now)
    }

    /// Records that a webhook was not told of a change of an operation: an
    /// event of the book's notice stream, durable in the outbox like every
    /// other, so the ledger gets it even if the service dies now.
    pub fn notification_failed(
        &mut self,
        failure: events::NotificationFailed,
        now: i64,
    ) -> Result<Vec<Outgoing>, BookError> {
        let connection = self
            .operations
            .get(&failure.operation_id)
            .map(|r| r.operation.hold.connection.clone())
            .unwrap_or_default();
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            time_unix_nanos: now,
            session_id: self.notice_stream.clone(),
            seq: self.next_notice,
            identity: Some(events::Identity {
                subject: "vigil-approvals".into(),
                issuer: "vigil:internal".into(),
                auth_method: "internal".into(),
                ..Default::default()
            }),
            connection,
            protocol: events::Protocol::Unspecified as i32,
            kind: Some(Kind::NotificationFailed(failure)),
        };
        let mut batch = WriteBatch::default();
        batch.put(out_key(self.next_out), event.encode_to_vec());
        batch.put(NEXT_NOTICE, (self.next_notice + 1).to_be_bytes());
        self.db.write_opt(batch, &synced())?;
        let out = vec![Outgoing {
            key: self.next_out,
            event,
        }];
        self.next_out += 1;
        self.next_notice += 1;
        Ok(out)
    }

    // ---- internals ----

    fn operation_record(&self, id: &str) -> Result<OperationRecord, BookError> {
        self.operations
            .get(id)
            .cloned()
            .ok_or_else(|| BookError::UnknownOperation(id.into()))
    }

    /// Writes the operation's new state and its events in one synced batch,
    /// then makes the new state visible.
    fn commit_operation(
        &mut self,
        record: &mut OperationRecord,
        kinds: Vec<(Option<events::Identity>, Kind)>,
        now: i64,
    ) -> Result<Vec<Outgoing>, BookError> {
        let op = &record.operation;
        let id = op.hold.operation_id.clone();
        let mut batch = WriteBatch::default();
        let mut out = Vec::new();
        let mut seq = record.next_seq;
        let mut next_out = self.next_out;
        for (identity, kind) in kinds {
            let event = Event {
                event_id: uuid::Uuid::now_v7().to_string(),
                time_unix_nanos: now,
                session_id: id.clone(),
                seq,
                identity,
                connection: op.hold.connection.clone(),
                // Approval streams belong to no protocol session.
                protocol: events::Protocol::Unspecified as i32,
                kind: Some(kind),
            };
            seq += 1;
            batch.put(out_key(next_out), event.encode_to_vec());
            out.push(Outgoing {
                key: next_out,
                event,
            });
            next_out += 1;
        }
        record.next_seq = seq;
        put_json(&mut batch, OP, &id, record)?;
        self.db.write_opt(batch, &synced())?;
        self.next_out = next_out;
        self.keep_operation(id, record.clone());
        Ok(out)
    }

    /// The one place an operation's in-memory state changes: the pending
    /// index follows it.
    fn keep_operation(&mut self, id: String, record: OperationRecord) {
        let entry = |r: &OperationRecord| (r.operation.hold.expires_unix_nanos, id.clone());
        if let Some(old) = self.operations.get(&id) {
            if old.operation.state == State::Pending {
                self.pending.remove(&entry(old));
            }
        }
        if record.operation.state == State::Pending {
            self.pending.insert(entry(&record));
        }
        self.operations.insert(id, record);
    }

    fn commit_grant(
        &mut self,
        record: &mut GrantRecord,
        identity: events::Identity,
        kind: Kind,
        now: i64,
    ) -> Result<Vec<Outgoing>, BookError> {
        let id = record.grant.id.clone();
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            time_unix_nanos: now,
            session_id: id.clone(),
            seq: record.next_seq,
            identity: Some(identity),
            connection: record.grant.connection.clone(),
            protocol: events::Protocol::Unspecified as i32,
            kind: Some(kind),
        };
        record.next_seq += 1;
        let mut batch = WriteBatch::default();
        batch.put(out_key(self.next_out), event.encode_to_vec());
        put_json(&mut batch, GRANT, &id, record)?;
        self.db.write_opt(batch, &synced())?;
        let out = vec![Outgoing {
            key: self.next_out,
            event,
        }];
        self.next_out += 1;
        self.grants.insert(id, record.clone());
        Ok(out)
    }
}

fn put_json(
    batch: &mut WriteBatch,
    prefix: &str,
    id: &str,
    value: &impl Serialize,
) -> Result<(), BookError> {
    let bytes = serde_json::to_vec(value).map_err(|e| BookError::Corrupt {
        key: format!("{prefix}{id}"),
        reason: e.to_string(),
    })?;
    batch.put(format!("{prefix}{id}"), bytes);
    Ok(())
}

/// The identity recorded for an approver: what was verified, nothing more.
fn identity_of(approver: &Approver) -> events::Identity {
    events::Identity {
        subject: approver.principal.subject.clone(),
        issuer: approver.principal.issuer.clone(),
        groups: approver.groups.clone(),
        ..Default::default()
    }
}

fn closed_kind(op: &Operation) -> Kind {
    let approvers = if op.state == State::Approved {
        op.votes
            .iter()
            .filter(|v| v.verdict == Verdict::Approve)
            .map(|v| identity_of(&v.approver))
            .collect()
    } else {
        Vec::new()
    };
    Kind::OperationClosed(events::OperationClosed {
        operation_id: op.hold.operation_id.clone(),
        state: op.state.to_event() as i32,
        reason: op
            .closure
            .as_ref()
            .map(|c| c.reason.clone())
            .unwrap_or_default(),
        approvers,
        rule: op.hold.rule.clone(),
    })
}
