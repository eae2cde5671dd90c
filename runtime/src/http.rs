//! Serving an HTTP router on a port others can reach, with the limits such
//! a port needs (`axum::serve` has none): a cap on connections open at
//! once, a time limit for a request's headers, and one for the whole
//! connection, so that a client trickling a body or never reading the
//! answer cannot hold a connection, and many such clients cannot hold
//! them all; one client address cannot hold more than its share either.
//! The witness, the ledger's HTTP API, `/metrics` and the
//! approval service's callbacks are served this way.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use vigil_identity::throttle::client_network;

/// How much one server lets its clients hold.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address may hold at once; more are closed
    /// at once, so that one client cannot take every slot.
    pub per_peer: usize,
    /// Whether a connection may carry more than one request. Off where
    /// requests are small and rare: an idle kept-alive connection holds a
    /// slot for nothing.
    pub keep_alive: bool,
    /// A request's line and headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection is closed after this, whatever it is doing.
    pub connection_timeout: Duration,
}

impl ServeLimits {
    /// For small requests answered at once: the witness (a checkpoint),
    /// `/metrics`, the approval service's signed callbacks.
    pub const SMALL_REQUESTS: ServeLimits = ServeLimits {
        max_connections: 256,
        per_peer: 16,
        keep_alive: false,
        header_timeout: Duration::from_secs(10),
        connection_timeout: Duration::from_secs(60),
    };

    /// For the ledger's HTTP API: auditors download tiles and bundles,
    /// which can take a while over a slow link.
    pub const LEDGER_API: ServeLimits = ServeLimits {
        max_connections: 512,
        per_peer: 64,
        keep_alive: true,
        header_timeout: Duration::from_secs(10),
        connection_timeout: Duration::from_secs(15 * 60),
    };
}

/// Serves `router` for as long as the task runs: an accept error is
/// logged and retried after a pause, never the end of the server (a
/// returned error would end the process that runs it). Each request can
/// extract `ConnectInfo<SocketAddr>`, as with
/// `into_make_service_with_connect_info`.
pub async fn serve(listener: TcpListener, router: Router, limits: ServeLimits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let peers = Arc::new(PeerCounts::default());
    let mut pause = ACCEPT_PAUSE;
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                pause = ACCEPT_PAUSE;
                accepted
            }
            Err(e) => {
                // Out of file descriptors, a reset before accept, ...:
                // logged, and retried less often while it lasts.
                tracing::warn!(error = %e, retry_in = ?pause, "accept failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
                continue;
            }
        };
        let Some(slot) = peers
            .clone()
            .take(client_network(peer.ip()), limits.per_peer)
        else {
            tracing::debug!(%peer, "too many connections from one address; closed");
            continue;
        };
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(ConnectInfo::<SocketAddr>(peer))),
        );
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(limits.keep_alive)
                .serve_connection(TokioIo::new(stream), service);
            // Dropping the connection closes it.
            let _ = tokio::time::timeout(limits.connection_timeout, connection).await;
            // The address's count first: a connection the freed permit
            // lets in must not find this one still counted.
            drop(slot);
            drop(permit);
        });
    }
}

const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(5);

/// Connections open per client: an IPv4 address, or the /64 of an IPv6
/// address ([`client_network`]).
#[derive(Default)]
struct PeerCounts(Mutex<HashMap<IpAddr, usize>>);

/// One connection of an address; counted down when dropped.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: IpAddr,
}

impl PeerCounts {
    fn take(self: Arc<Self>, ip: IpAddr, limit: usize) -> Option<PeerSlot> {
        let mut counts = self.0.lock().expect("peer counts lock");
        let open = counts.entry(ip).or_default();
        if *open >= limit.max(1) {
            return None;
        }
        *open += 1;
        drop(counts);
        Some(PeerSlot { counts: self, ip })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().expect("peer counts lock");
        if let Some(open) = counts.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Serves one gateway connection (an MCP or model-API listener's) with
/// `router` over HTTP/1.1 with keep-alive: TLS first when the listener
/// has it, and each request's headers (the TLS handshake too) within
/// `header_timeout`. Returns when the connection ends.
pub async fn serve_gateway_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<&crate::tls::TlsSettings>,
    router: Router,
    header_timeout: Duration,
) {
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    match tls {
        Some(settings) => {
            match tokio::time::timeout(header_timeout, settings.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                }
                _ => tracing::debug!(%peer, "TLS handshake failed"),
            }
        }
        None => {
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    }
}

/// The token of `Authorization: Bearer <token>`; `None` when absent or in
/// another scheme (the scheme's name has no case; the token is as sent).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn start(limits: ServeLimits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        tokio::spawn(serve(listener, router, limits));
        addr
    }

    async fn get_peer(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    const SHORT: ServeLimits = ServeLimits {
        max_connections: 1,
        per_peer: 1,
        keep_alive: false,
        header_timeout: Duration::from_millis(300),
        connection_timeout: Duration::from_secs(30),
    };

    #[tokio::test]
    async fn requests_are_answered_with_the_peer_address() {
        let addr = start(SHORT).await;
        let answer = get_peer(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("127.0.0.1:"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let addr = start(SHORT).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        // The server closes (after a 408, or silently) instead of waiting
        // for the connection's time limit.
        let closed =
            tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection was held open");
        // And the only connection slot is free again.
        assert!(get_peer(addr).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_for_a_free_slot() {
        let addr = start(SHORT).await;
        // A slow client takes the only slot.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /peer HTTP/1.1\r\n").await.unwrap();
        let waiting = tokio::spawn(get_peer(addr));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiting.is_finished(), "served past the cap");
        // The idle one is cut off by the header timeout; then it is served.
        let answer = waiting.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(idle);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            client_network(mapped),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn one_address_cannot_take_more_than_its_share() {
        let addr = start(ServeLimits {
            max_connections: 8,
            ..SHORT
        })
        .await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"GET /peer HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The second connection of the same address is closed unanswered.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let _ = second
            .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = second.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
        drop(first);
    }
}
