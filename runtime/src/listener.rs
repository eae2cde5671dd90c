//! The listener every protocol shares: the accept loop, the drain on
//! shutdown, and a cap on connections open at once. A protocol plugs in
//! as an [`Adapter`]: it gets each accepted connection and serves it as a
//! session (login, [`crate::recorder::SessionRecorder`], its own wire
//! protocol), watching [`Drain::deadline`] next to its own work.
//!
//! Writing an adapter (see `tests/line_adapter.rs` for a whole one):
//! 1. authenticate the client the protocol's way; a refusal is recorded
//!    by the adapter as LoginRefused;
//! 2. [`crate::recorder::SessionRecorder::open`] before connecting
//!    upstream (SessionOpened is durable first);
//! 3. for each request: decode it once into a type, judge it, record the
//!    Request (carrying its decision) durably, then forward; record
//!    responses in the background;
//! 4. end on the client leaving, an upstream failure,
//!    [`crate::recorder::SessionRecorder::audit_failed`] or the drain
//!    deadline, and [`crate::recorder::SessionRecorder::close`] with the
//!    [`crate::recorder::EndReason`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::drain::Drain;

/// A protocol's half of a listener.
pub trait Adapter: Send + Sync + 'static {
    /// The listener's name in logs.
    fn name(&self) -> &str;

    /// Serves one connection until its session ends. Runs in a task of
    /// its own; nothing one connection does can stop the others.
    fn serve(
        self: Arc<Self>,
        conn: TcpStream,
        peer: SocketAddr,
        drain: Arc<Drain>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// A connection over the cap: tell the client, the protocol's way,
    /// then drop it (default: just drop it).
    fn refuse_busy(&self, conn: TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        drop(conn);
        Box::pin(async {})
    }
}

/// Accepts connections for `adapter` until the shutdown begins; at most
/// `max_connections` are served at once (the rest are refused).
pub async fn serve<A: Adapter>(
    adapter: Arc<A>,
    listener: TcpListener,
    drain: Arc<Drain>,
    max_connections: usize,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = drain.stopping() => {
                tracing::info!(listener = %adapter.name(), "no longer accepting connections (shutting down)");
                return Ok(());
            }
        };
        let (conn, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(listener = %adapter.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(listener = %adapter.name(), %peer, "refused connection: too many open");
            let refused = adapter.refuse_busy(conn);
            tokio::spawn(refused);
            continue;
        };
        let guard = drain.session();
        // One span per connection, its fields filled as the session goes
        // (the recorder adds the session id and subject once known), so
        // every log line of the session says whose it is.
        let span = tracing::info_span!(
            "session",
            listener = %adapter.name(),
            %peer,
            session = tracing::field::Empty,
            subject = tracing::field::Empty,
        );
        let session = adapter
            .clone()
            .serve(conn, peer, drain.clone())
            .instrument(span);
        tokio::spawn(async move {
            session.await;
            drop(guard);
            drop(slot);
        });
    }
}
