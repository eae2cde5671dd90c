//! The built-in development config of `vigil up --dev`: no file needed,
//! loopback only, a static identity, the embedded bus.

use std::path::PathBuf;

use vigil_proxy_core::StaticIdentity;
use vigil_proxy_postgres::config::{
    default_connect_timeout_ms, PostgresSection, UpstreamSection, DEFAULT_POLICY,
};

use super::*;

impl Config {
    /// The `vigil up --dev` config: no file needed.
    pub fn dev(data_dir: PathBuf) -> Self {
        let body_keys_file = Some(data_dir.join(DEV_BODY_KEYS_FILE));
        let data_dir_for_key = data_dir.clone();
        Config {
            data_dir,
            // The default listeners are on loopback: 6580 (HTTP), 6581 (gRPC).
            ledger: LedgerSection {
                origin: "localhost/vigil-dev".into(),
                body_keys_file,
                ..LedgerSection::default()
            },
            // MCP needs OIDC bearer tokens, which `--dev` has no issuer for.
            mcp: Vec::new(),
            llm: Vec::new(),
            postgres: vec![PostgresSection {
                name: "dev".into(),
                listen: "127.0.0.1:6543".parse().expect("literal address"),
                required_scopes: Vec::new(),
                tls: None,
                policy: DEFAULT_POLICY.into(),
                upstream: UpstreamSection {
                    host: "127.0.0.1".into(),
                    port: 5432,
                    user: "postgres".into(),
                    password_env: None,
                    password_file: None,
                    database: None,
                    connect_timeout_ms: default_connect_timeout_ms(),
                    tls: None,
                    // Development only, and the banner says so.
                    allow_privileged_role: true,
                },
            }],
            identities: vec![StaticIdentity {
                name: DEV_IDENTITY.into(),
                password_hash: vigil_proxy_core::identity::hash_password(DEV_IDENTITY.as_bytes()),
                groups: vec!["developers".into()],
                loopback_only: true,
            }],
            allow_static_identities: true,
            oidc: OidcSection::default(),
            masking: MaskingKeySection {
                hash_key_file: Some(data_dir_for_key.join(DEV_MASKING_KEY_FILE)),
                hash_key_env: None,
            },
            bus: BusSection::default(),
            approvals: Some(vigil_approval_service::settings::ApprovalsSection::dev()),
            approval_service: None,
            logins: crate::logins::LoginsSection::default(),
            shutdown_drain: None,
            // The ledger's HTTP API (127.0.0.1:6580) serves /metrics.
            metrics: None,
        }
    }
}
