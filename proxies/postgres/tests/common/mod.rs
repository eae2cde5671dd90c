//! What the proxy's integration tests share: a proxy in this process in
//! front of the local PostgreSQL, with one static identity (`agent`,
//! password `pw`), allow-all policy and the sink a test gives it.

use std::sync::Arc;

use tokio::net::TcpListener;
use vigil_proxy_core::identity::hash_password;
use vigil_proxy_core::sink::EventSink;
use vigil_proxy_core::{Authenticator, StaticIdentities, StaticIdentity};
use vigil_proxy_postgres::{PostgresProxy, ProxyConfig, UpstreamConfig};

/// Starts the proxy on a free loopback port; returns the port.
pub async fn start_proxy(name: &str, sink: Arc<dyn EventSink>) -> u16 {
    let identities = StaticIdentities::new(vec![StaticIdentity {
        name: "agent".into(),
        password_hash: hash_password(b"pw"),
        groups: vec![],
        loopback_only: true,
    }])
    .unwrap();
    let proxy = PostgresProxy::new(
        ProxyConfig {
            name: name.into(),
            upstream: UpstreamConfig {
                host: "127.0.0.1".into(),
                port: 5432,
                user: "postgres".into(),
                password: None,
                database: None,
                connect_timeout_ms: 2000,
                tls: None,
            },
            required_scopes: Vec::new(),
            tls: None,
            policy: Arc::new(
                vigil_sql::policy::Policy::parse("name = \"allow-all\"\ndefault = \"allow\"")
                    .unwrap(),
            ),
            masker: Arc::new(
                vigil_proxy_core::mask::Masker::new([0; 32], &Default::default()).unwrap(),
            ),
            approvals: None,
            limits: Default::default(),
        },
        Authenticator::new(identities, None),
        sink,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(proxy.serve(listener, vigil_runtime::drain::Drain::new()));
    port
}
