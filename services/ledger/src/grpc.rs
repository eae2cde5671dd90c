//! The `vigil.ledger.v1.Ledger` gRPC API.

// tonic's `Status` is the error type of every handler; boxing it in the
// helpers would only be unboxed again at the boundary.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vigil_ledger::{BodyLookup, EntryFilter, StoreError};
use vigil_proto::ledger::ledger_server::{Ledger as LedgerApi, LedgerServer};
use vigil_proto::ledger::{
    find_entries_request::Filter, get_inclusion_proof_request::Leaf, Entry, FindEntriesRequest,
    FindEntriesResponse, GetCheckpointRequest, GetCheckpointResponse, GetConsistencyProofRequest,
    GetConsistencyProofResponse, GetEntriesRequest, GetEntriesResponse, GetInclusionProofRequest,
    GetInclusionProofResponse,
};

use vigil_runtime::blocking::may_block;

use crate::access::{bearer, BodyAccess};
use crate::Ledger;

/// Most entries one GetEntries call returns.
pub const MAX_ENTRIES_PER_CALL: u32 = 1024;
/// Most indexes one FindEntries page returns.
pub const MAX_FIND_PER_CALL: u32 = 10_000;

pub struct LedgerGrpc {
    ledger: Arc<Ledger>,
    access: BodyAccess,
}

impl LedgerGrpc {
    pub fn server(ledger: Arc<Ledger>, access: BodyAccess) -> LedgerServer<Self> {
        LedgerServer::new(Self { ledger, access })
    }

    /// Whether the caller may read bodies and the indexes over them.
    fn is_auditor<T>(&self, req: &Request<T>) -> bool {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.access.allows(req.remote_addr(), bearer(auth))
    }

    /// The latest signed checkpoint and its parsed body. Proofs are served
    /// against what auditors can verify, not against unsigned state.
    fn latest(&self) -> Result<(String, vigil_ledger::Checkpoint), Status> {
        let note = self
            .ledger
            .store
            .checkpoint()
            .map_err(status)?
            .ok_or_else(|| Status::unavailable("no checkpoint signed yet"))?;
        let body = &note[..note.find("\n\n").map_or(note.len(), |i| i + 1)];
        let checkpoint = vigil_ledger::Checkpoint::parse(body)
            .map_err(|e| Status::internal(format!("stored checkpoint unreadable: {e}")))?;
        Ok((note, checkpoint))
    }
}

fn status(e: StoreError) -> Status {
    match e {
        StoreError::OutOfRange { .. } | StoreError::NotFound(_) => Status::not_found(e.to_string()),
        StoreError::InvalidArgument(_) | StoreError::Proof(_) => {
            Status::invalid_argument(e.to_string())
        }
        // Names the entry and the key id only; never body bytes.
        StoreError::Body { .. } => {
            tracing::error!(error = %e, "stored body does not open");
            Status::data_loss(e.to_string())
        }
        other => {
            tracing::error!(error = %other, "ledger read failed");
            Status::internal("internal error")
        }
    }
}

/// The handlers' work: RocksDB reads, which may wait on the disk.
impl LedgerGrpc {
    fn checkpoint_now(&self) -> Result<GetCheckpointResponse, Status> {
        let (note, cp) = self.latest()?;
        Ok(GetCheckpointResponse {
            signed_note: note,
            size: cp.size,
            root: cp.root.to_vec(),
            min_index: self.ledger.store.min_index().map_err(status)?,
        })
    }

    fn inclusion_proof_now(
        &self,
        req: GetInclusionProofRequest,
    ) -> Result<GetInclusionProofResponse, Status> {
        let store = &self.ledger.store;
        let index = match req.leaf {
            Some(Leaf::Index(i)) => i,
            Some(Leaf::EventId(id)) => {
                let id = uuid::Uuid::parse_str(&id)
                    .map_err(|_| Status::invalid_argument("event_id is not a UUID"))?;
                store
                    .index_of(id.as_bytes())
                    .map_err(status)?
                    .ok_or_else(|| Status::not_found("no entry with that event id"))?
            }
            None => return Err(Status::invalid_argument("give an index or an event_id")),
        };
        let size = if req.tree_size == 0 {
            self.latest()?.1.size
        } else {
            req.tree_size
        };
        if index >= size {
            return Err(Status::failed_precondition(format!(
                "entry {index} is not yet covered by a checkpoint of size {size}"
            )));
        }
        let proof = store.inclusion_proof(index, size).map_err(status)?;
        let leaf_data = store
            .leaf(index)
            .map_err(status)?
            .ok_or_else(|| Status::not_found("leaf missing"))?;
        Ok(GetInclusionProofResponse {
            index,
            tree_size: size,
            proof: proof.iter().map(|h| h.to_vec()).collect(),
            leaf_data,
        })
    }

    fn consistency_proof_now(
        &self,
        req: GetConsistencyProofRequest,
    ) -> Result<GetConsistencyProofResponse, Status> {
        if req.size1 == 0 || req.size1 > req.size2 {
            return Err(Status::invalid_argument("need 0 < size1 <= size2"));
        }
        let proof = self
            .ledger
            .store
            .consistency_proof(req.size1, req.size2)
            .map_err(status)?;
        Ok(GetConsistencyProofResponse {
            proof: proof.iter().map(|h| h.to_vec()).collect(),
        })
    }

    fn entries_now(
        &self,
        req: GetEntriesRequest,
        auditor: bool,
    ) -> Result<GetEntriesResponse, Status> {
        if req.include_bodies && !auditor {
            return Err(Status::permission_denied(
                "event bodies may hold PHI: an auditor token is required",
            ));
        }
        let store = &self.ledger.store;
        let end = req
            .start
            .saturating_add(u64::from(req.count.min(MAX_ENTRIES_PER_CALL)))
            .min(store.size());
        let mut entries = Vec::new();
        for index in req.start..end {
            let leaf_data = store
                .leaf(index)
                .map_err(status)?
                .ok_or_else(|| Status::internal("leaf missing below size"))?;
            let (salt, body, pruned_at_unix_nanos) = if req.include_bodies {
                match store.body(index).map_err(status)? {
                    BodyLookup::Present { salt, body } => (salt.to_vec(), body, 0),
                    BodyLookup::Pruned(r) => (Vec::new(), Vec::new(), r.pruned_at_unix_nanos),
                    BodyLookup::Absent => (Vec::new(), Vec::new(), 0),
                }
            } else {
                (Vec::new(), Vec::new(), 0)
            };
            entries.push(Entry {
                index,
                leaf_data,
                salt,
                body,
                pruned_at_unix_nanos,
            });
        }
        Ok(GetEntriesResponse { entries })
    }

    fn find_now(&self, req: FindEntriesRequest) -> Result<FindEntriesResponse, Status> {
        let filter = match req.filter {
            Some(Filter::SessionId(s)) => EntryFilter::Session(s),
            Some(Filter::Subject(s)) => EntryFilter::Subject(s),
            Some(Filter::TimeRange(t)) => EntryFilter::TimeRange {
                from_unix_nanos: t.from_unix_nanos,
                to_unix_nanos: t.to_unix_nanos,
            },
            None => return Err(Status::invalid_argument("a filter is required")),
        };
        let limit = req.limit.clamp(1, MAX_FIND_PER_CALL) as usize;
        let resume = (!req.page_token.is_empty()).then_some(req.page_token.as_slice());
        let found = self
            .ledger
            .store
            .find(&filter, resume, limit)
            .map_err(status)?;
        Ok(FindEntriesResponse {
            indexes: found.indexes,
            next_page_token: found.next.unwrap_or_default(),
        })
    }
}

/// Each handler checks who asks, then does its reads in `may_block`: the
/// async workers carry every proxied session of the process.
#[tonic::async_trait]
impl LedgerApi for LedgerGrpc {
    async fn get_checkpoint(
        &self,
        _req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        may_block(|| self.checkpoint_now()).map(Response::new)
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        may_block(|| self.inclusion_proof_now(req.into_inner())).map(Response::new)
    }

    async fn get_consistency_proof(
        &self,
        req: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        may_block(|| self.consistency_proof_now(req.into_inner())).map(Response::new)
    }

    async fn get_entries(
        &self,
        req: Request<GetEntriesRequest>,
    ) -> Result<Response<GetEntriesResponse>, Status> {
        let auditor = self.is_auditor(&req);
        may_block(|| self.entries_now(req.into_inner(), auditor)).map(Response::new)
    }

    async fn find_entries(
        &self,
        req: Request<FindEntriesRequest>,
    ) -> Result<Response<FindEntriesResponse>, Status> {
        // Who was active when is itself sensitive: the bodies' rule.
        if !self.is_auditor(&req) {
            return Err(Status::permission_denied(
                "the indexes over event bodies say who did what: an auditor token is required",
            ));
        }
        may_block(|| self.find_now(req.into_inner())).map(Response::new)
    }
}
