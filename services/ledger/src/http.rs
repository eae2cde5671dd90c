//! The ledger's HTTP API: C2SP tlog-tiles at the root, so that generic tile
//! clients can mirror and audit the log, plus event bodies for auditors.
//!
//! - `GET /checkpoint`: the latest signed checkpoint (text/plain);
//! - `GET /tile/<L>/<N>[.p/<W>]`, `GET /tile/entries/<N>[.p/<W>]`: tiles;
//! - `GET /vigil/v1/bodies?start=S&count=C`: salts and bodies (restricted, see [`crate::access`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use vigil_ledger::tile::{parse_tile_path, TilePath};
use vigil_ledger::StoreError;

use crate::access::{bearer, BodyAccess};
use crate::Ledger;

/// Most bodies one request returns.
pub const MAX_BODIES_PER_REQUEST: u64 = 1024;

#[derive(Clone)]
struct AppState {
    ledger: Arc<Ledger>,
    access: BodyAccess,
}

pub fn router(ledger: Arc<Ledger>, access: BodyAccess) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/*path", get(tile))
        .route("/vigil/v1/bodies", get(bodies))
        .with_state(AppState { ledger, access })
}

/// Serves the router until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ledger: Arc<Ledger>,
    access: BodyAccess,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(ledger, access).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
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
        StoreError::InvalidArgument(_) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        other => {
            tracing::error!(error = %other, "ledger read failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into())
        }
    }
}

async fn checkpoint(State(s): State<AppState>) -> Response {
    match s.ledger.store.checkpoint() {
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
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BodyRecord {
    pub index: u64,
    /// Base64 of the 32-byte salt.
    pub salt: String,
    /// Base64 of the event's protobuf bytes.
    pub body: String,
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
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !s.access.allows(Some(peer), bearer(auth)) {
        return text(
            StatusCode::FORBIDDEN,
            "event bodies may hold PHI: an auditor token is required\n".into(),
        );
    }
    let count = q.count.min(MAX_BODIES_PER_REQUEST);
    let store = s.ledger.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let size = store.size();
        let end = q.start.saturating_add(count).min(size);
        let mut entries = Vec::new();
        for index in q.start..end {
            if let Some((salt, body)) = store.body(index)? {
                entries.push(BodyRecord {
                    index,
                    salt: B64.encode(salt),
                    body: B64.encode(body),
                });
            }
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
