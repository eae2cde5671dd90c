//! The ledger's HTTP API: C2SP tlog-tiles at the root, so that generic tile
//! clients can mirror and audit the log, plus event bodies for auditors.
//!
//! - `GET /checkpoint`: the latest signed checkpoint (text/plain);
//! - `GET /tile/<L>/<N>[.p/<W>]`, `GET /tile/entries/<N>[.p/<W>]`: tiles;
//! - `GET /vigil/v1/bodies?start=S&count=C`: salts and bodies (restricted, see [`crate::access`]);
//!   pruned entries answer with when they were pruned;
//! - `GET /vigil/v1/minimum-index`: the tlog-tiles minimum index (bodies below were pruned);
//! - `GET /vigil/v1/key-rotations`: every signing-key rotation note, oldest first (public);
//! - `GET /vigil/v1/find?session=..|subject=..|from=..&to=..[&limit=&page=]`: leaf indexes
//!   (restricted like bodies: who was active when is itself sensitive);
//! - `GET /vigil/v1/lookup?event_id=UUID`: the leaf index of an event (restricted too);
//! - `GET /vigil/v1/proof/inclusion?index=I&size=S`, `/vigil/v1/proof/consistency?from=A&to=B`:
//!   RFC 9162 proofs as JSON (public data: hashes only).
//!
//! Every store read runs off the async workers (`spawn_blocking`, or
//! `may_block` for a short one): they carry the proxied sessions too.
//! And every request but `/metrics` waits for one of a few turns (one
//! fewer than the machine has cores, at least one) before it reads: the
//! public routes answer anyone, and 512 connections of proof and tile
//! requests running at once would leave the appender's thread, which every
//! proxied statement waits on, one share of CPU in hundreds. Waiting costs
//! a queued future, not a thread; the connection limits bound the queue.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use vigil_ledger::tile::{parse_tile_path, TilePath};
use vigil_ledger::{BodyLookup, EntryFilter, StoreError};
use vigil_runtime::blocking::may_block;

use crate::access::{bearer, BodyAccess};
use crate::Ledger;

/// Most bodies one request returns.
pub const MAX_BODIES_PER_REQUEST: u64 = 1024;

#[derive(Clone)]
struct AppState {
    ledger: Arc<Ledger>,
    access: BodyAccess,
    /// Requests that may read the store at once.
    turns: Arc<tokio::sync::Semaphore>,
}

/// How many requests read the store at once by default.
fn default_turns() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).max(1)
}

pub fn router(ledger: Arc<Ledger>, access: BodyAccess) -> Router {
    let turns = Arc::new(tokio::sync::Semaphore::new(default_turns()));
    router_with_state(AppState {
        ledger,
        access,
        turns,
    })
}

fn router_with_state(state: AppState) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/*path", get(tile))
        .route("/vigil/v1/bodies", get(bodies))
        .route("/vigil/v1/minimum-index", get(minimum_index))
        .route("/vigil/v1/key-rotations", get(key_rotations))
        .route("/vigil/v1/find", get(find))
        .route("/vigil/v1/lookup", get(lookup))
        .route("/vigil/v1/proof/inclusion", get(inclusion_proof))
        .route("/vigil/v1/proof/consistency", get(consistency_proof))
        .route_layer(from_fn_with_state(state.clone(), one_turn))
        // Not in turn: a scrape must not wait behind a flood it would show.
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Runs the request once one of the store's turns is free, and keeps the
/// turn until the handler is done even if the client goes away: hyper drops
/// an abandoned request's future, but a read already handed to
/// `spawn_blocking` runs on, and a client that opened and closed
/// connections would otherwise run reads without turns.
async fn one_turn(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(turn) = s.turns.clone().acquire_owned().await else {
        // Never closed; if it were, refusing is the safe answer.
        return text(StatusCode::SERVICE_UNAVAILABLE, "ledger closing\n".into());
    };
    let handled = tokio::spawn(async move {
        let response = next.run(request).await;
        drop(turn);
        response
    });
    handled.await.unwrap_or_else(|_| {
        tracing::error!("a ledger HTTP handler panicked");
        text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into())
    })
}

/// The process's metrics (Prometheus text format): the ledger's, and those
/// of every other role running in the same process.
async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        vigil_metrics::global().render(),
    )
}

/// Serves the router until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ledger: Arc<Ledger>,
    access: BodyAccess,
) -> std::io::Result<()> {
    vigil_runtime::http::serve(
        listener,
        router(ledger, access),
        vigil_runtime::http::ServeLimits::LEDGER_API,
    )
    .await;
    Ok(())
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::OutOfRange { .. } | StoreError::NotFound(_) => {
            text(StatusCode::NOT_FOUND, format!("{e}\n"))
        }
        StoreError::InvalidArgument(_) | StoreError::Proof(_) => {
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
        other => {
            tracing::error!(error = %other, "ledger read failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into())
        }
    }
}

async fn checkpoint(State(s): State<AppState>) -> Response {
    match may_block(|| s.ledger.store.checkpoint()) {
        Ok(Some(note)) => text(StatusCode::OK, note),
        Ok(None) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no checkpoint signed yet\n".into(),
        ),
        Err(e) => store_error(e),
    }
}

async fn tile(State(s): State<AppState>, Path(path): Path<String>) -> Response {
    let parsed = match parse_tile_path(&format!("tile/{path}")) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let store = s.ledger.store.clone();
    let result = tokio::task::spawn_blocking(move || match parsed {
        TilePath::Hashes {
            level,
            index,
            width,
        } => store.tile(level, index, width),
        TilePath::Entries { index, width } => store.entry_bundle(index, width),
    })
    .await;
    match result {
        Ok(Ok(bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                // Tiles never change once served (a partial tile has its own path).
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => store_error(e),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into()),
    }
}

#[derive(Deserialize)]
struct BodiesQuery {
    start: u64,
    count: u64,
}

/// One entry's body as served to auditors.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct BodyRecord {
    pub index: u64,
    /// Base64 of the 32-byte salt ("" if pruned or unreadable).
    pub salt: String,
    /// Base64 of the event's protobuf bytes ("" if pruned or unreadable).
    pub body: String,
    /// Set when retention deleted this body: when, and under which cutoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<PrunedInfo>,
    /// Set when the stored body does not open (altered, or its key is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// When and why a body was pruned.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunedInfo {
    pub pruned_at_unix_nanos: i64,
    pub cutoff_unix_nanos: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BodiesResponse {
    pub entries: Vec<BodyRecord>,
}

async fn bodies(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<BodiesQuery>,
) -> Response {
    if let Some(refusal) = refuse_unless_auditor(&s, peer, &headers) {
        return refusal;
    }
    let count = q.count.min(MAX_BODIES_PER_REQUEST);
    let store = s.ledger.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let size = store.size();
        let end = q.start.saturating_add(count).min(size);
        let mut entries = Vec::new();
        for index in q.start..end {
            let record = match store.body(index) {
                Ok(BodyLookup::Present { salt, body }) => BodyRecord {
                    index,
                    salt: B64.encode(salt),
                    body: B64.encode(body),
                    ..Default::default()
                },
                Ok(BodyLookup::Pruned(r)) => BodyRecord {
                    index,
                    pruned: Some(PrunedInfo {
                        pruned_at_unix_nanos: r.pruned_at_unix_nanos,
                        cutoff_unix_nanos: r.cutoff_unix_nanos,
                    }),
                    ..Default::default()
                },
                Ok(BodyLookup::Absent) => continue,
                // Per entry, so an auditor learns which entry is damaged.
                Err(e @ (StoreError::Body { .. } | StoreError::Corrupt(_))) => BodyRecord {
                    index,
                    error: Some(e.to_string()),
                    ..Default::default()
                },
                Err(e) => return Err(e),
            };
            entries.push(record);
        }
        Ok::<_, StoreError>(entries)
    })
    .await;
    match result {
        Ok(Ok(entries)) => Json(BodiesResponse { entries }).into_response(),
        Ok(Err(e)) => store_error(e),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into()),
    }
}

async fn minimum_index(State(s): State<AppState>) -> Response {
    match may_block(|| s.ledger.store.min_index()) {
        Ok(n) => text(StatusCode::OK, format!("{n}\n")),
        Err(e) => store_error(e),
    }
}

/// The signing-key rotations (see `vigil_ledger::rotation`).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct RotationsResponse {
    pub rotations: Vec<String>,
}

async fn key_rotations(State(s): State<AppState>) -> Response {
    match may_block(|| s.ledger.store.key_rotations()) {
        Ok(rotations) => Json(RotationsResponse { rotations }).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
struct FindQuery {
    session: Option<String>,
    subject: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
    /// Hex of the previous page's `next`.
    page: Option<String>,
}

/// A page of leaf indexes.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct FindResponse {
    pub indexes: Vec<u64>,
    /// Pass as `page` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Most indexes one find request returns.
pub const MAX_FIND_PER_REQUEST: usize = 10_000;

/// The refusal of a restricted endpoint, or `None` when the caller may read it.
fn refuse_unless_auditor(s: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Option<Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    (!s.access.allows(Some(peer), bearer(auth))).then(|| {
        text(
            StatusCode::FORBIDDEN,
            "event bodies and the indexes over them may hold PHI or say who did what: an auditor token is required\n".into(),
        )
    })
}

async fn find(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<FindQuery>,
) -> Response {
    // The subject and session indexes tell who was active when: the same
    // rule as the bodies they point at.
    if let Some(refusal) = refuse_unless_auditor(&s, peer, &headers) {
        return refusal;
    }
    let filter = match (q.session, q.subject, q.from, q.to) {
        (Some(session), None, None, None) => EntryFilter::Session(session),
        (None, Some(subject), None, None) => EntryFilter::Subject(subject),
        (None, None, Some(from), Some(to)) => EntryFilter::TimeRange {
            from_unix_nanos: from,
            to_unix_nanos: to,
        },
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "give exactly one of: session=ID, subject=NAME, or from=NS&to=NS\n".into(),
            )
        }
    };
    let resume = match q.page.as_deref().map(hex::decode).transpose() {
        Ok(r) => r,
        Err(_) => return text(StatusCode::BAD_REQUEST, "page is not hex\n".into()),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_FIND_PER_REQUEST);
    let store = s.ledger.store.clone();
    let result =
        tokio::task::spawn_blocking(move || store.find(&filter, resume.as_deref(), limit)).await;
    match result {
        Ok(Ok(found)) => Json(FindResponse {
            indexes: found.indexes,
            next: found.next.map(hex::encode),
        })
        .into_response(),
        Ok(Err(e)) => store_error(e),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into()),
    }
}

#[derive(Deserialize)]
struct LookupQuery {
    event_id: String,
}

/// Where an event is in the log.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct LookupResponse {
    pub index: u64,
}

async fn lookup(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
) -> Response {
    if let Some(refusal) = refuse_unless_auditor(&s, peer, &headers) {
        return refusal;
    }
    let Ok(id) = uuid::Uuid::parse_str(&q.event_id) else {
        return text(StatusCode::BAD_REQUEST, "event_id is not a UUID\n".into());
    };
    match may_block(|| s.ledger.store.index_of(id.as_bytes())) {
        Ok(Some(index)) if index < s.ledger.store.size() => {
            Json(LookupResponse { index }).into_response()
        }
        Ok(_) => text(StatusCode::NOT_FOUND, "no such event in the log\n".into()),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// An RFC 9162 proof: base64 hashes, from the leaf (or the old root) upwards.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ProofResponse {
    pub proof: Vec<String>,
}

fn proof_response(result: Result<Vec<vigil_ledger::Hash>, StoreError>) -> Response {
    match result {
        Ok(hashes) => Json(ProofResponse {
            proof: hashes.iter().map(|h| B64.encode(h)).collect(),
        })
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn inclusion_proof(State(s): State<AppState>, Query(q): Query<InclusionQuery>) -> Response {
    proof_response(may_block(|| {
        s.ledger.store.inclusion_proof(q.index, q.size)
    }))
}

async fn consistency_proof(
    State(s): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Response {
    proof_response(may_block(|| s.ledger.store.consistency_proof(q.from, q.to)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Semaphore;
    use vigil_ledger::Keyring;

    use super::*;

    /// A ledger in a fresh directory, with `turns`.
    fn state(turns: Arc<Semaphore>) -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ledger =
            Arc::new(Ledger::open(dir.path(), "vigil.test/log", Keyring::random("k1")).unwrap());
        let access = BodyAccess::new(&[]).unwrap();
        (
            AppState {
                ledger,
                access,
                turns,
            },
            dir,
        )
    }

    /// Serves `app` on a loopback port.
    async fn serve(app: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(vigil_runtime::http::serve(
            listener,
            app,
            vigil_runtime::http::ServeLimits::LEDGER_API,
        ));
        addr
    }

    /// One GET on a connection of its own; the status line.
    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.lines().next().unwrap_or_default().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waits_for_a_turn_and_metrics_do_not() {
        let turns = Arc::new(Semaphore::new(1));
        let (state, _dir) = state(turns.clone());
        let addr = serve(router_with_state(state)).await;
        assert_eq!(
            get(addr, "/vigil/v1/minimum-index").await,
            "HTTP/1.1 200 OK"
        );
        // Every turn taken (as by a flood of readers): a read waits ...
        let held = turns.clone().acquire_owned().await.unwrap();
        let waiting = tokio::spawn(get(addr, "/vigil/v1/minimum-index"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "a read ran without a turn");
        // ... a metrics scrape does not ...
        let metrics = tokio::time::timeout(Duration::from_secs(5), get(addr, "/metrics"));
        assert_eq!(metrics.await.unwrap(), "HTTP/1.1 200 OK");
        // ... and the read runs once a turn is free.
        drop(held);
        let status = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(status.unwrap().unwrap(), "HTTP/1.1 200 OK");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_goes_away_does_not_take_its_turn_back_early() {
        /// A read that takes a while on the blocking pool, as a cold
        /// tile or a long `find` does.
        async fn slow() -> &'static str {
            let read = || std::thread::sleep(Duration::from_millis(1500));
            tokio::task::spawn_blocking(read).await.unwrap();
            "done"
        }
        let turns = Arc::new(Semaphore::new(1));
        let (state, _dir) = state(turns.clone());
        let app = Router::new()
            .route("/slow", axum::routing::get(slow))
            .route_layer(from_fn_with_state(state.clone(), one_turn))
            .with_state(state);
        let addr = serve(app).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: ledger\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The client leaves while its read runs: the turn stays taken.
        drop(stream);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            turns.try_acquire().is_err(),
            "the turn came back while the read still ran"
        );
        // It comes back when the read is done.
        let turn = tokio::time::timeout(Duration::from_secs(5), turns.acquire()).await;
        assert!(turn.is_ok(), "the turn never came back");
    }
}
