//! What a config runs, in words: `vigil check-config` and the start banner.

use super::Config;

impl Config {
    /// What this config runs, for `vigil check-config` and the start banner.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "data directory: {}\nledger: origin {}, HTTP (tlog-tiles) on {}, gRPC on {} ({})\n",
            self.data_dir.display(),
            self.ledger.origin,
            self.ledger.http_listen,
            self.ledger.grpc_listen,
            if self.ledger.grpc_tls.is_some() {
                "TLS, client certificates required"
            } else {
                "plaintext, loopback only"
            }
        );
        let keys = self.body_keys_secret().describe();
        out.push_str(&format!(
            "event bodies encrypted at rest, keyring from {keys}\n"
        ));
        let r = &self.ledger.retention;
        if r.enabled {
            out.push_str(&format!(
                "retention: bodies older than {} deleted, checked every {} (minimum period {})\n",
                r.older_than, r.every, r.minimum
            ));
        } else {
            out.push_str("retention: disabled (bodies are kept forever)\n");
        }
        for pg in &self.postgres {
            out.push_str(&format!(
                "postgres \"{}\": clients on {} -> {}:{} as {}, policy {}\n",
                pg.name, pg.listen, pg.upstream.host, pg.upstream.port, pg.upstream.user, pg.policy
            ));
        }
        for m in &self.mcp {
            out.push_str(&format!(
                "mcp \"{}\": agents on {}{} -> {}, policy {}\n",
                m.name,
                m.listen,
                m.path,
                m.upstream_label(),
                m.policy
            ));
        }
        if let Some(a) = &self.approvals {
            out.push_str(&format!(
                "approvals: gRPC API on {} ({}), book in {}, {} webhook(s){}\n",
                a.grpc_listen,
                if a.grpc_tls.is_some() {
                    "TLS"
                } else {
                    "plaintext, loopback only"
                },
                a.dir(&self.data_dir).display(),
                a.webhooks.len(),
                a.callback
                    .as_ref()
                    .map(|c| format!(", signed callbacks on {}", c.listen))
                    .unwrap_or_default()
            ));
        } else {
            out.push_str("approvals: none (statements held for review are refused)\n");
        }
        for issuer in &self.oidc.issuers {
            out.push_str(&format!(
                "OIDC issuer {}: audiences {}, algorithms {}\n",
                issuer.issuer,
                issuer.audiences.join(", "),
                issuer.algorithms.join(", ")
            ));
        }
        if let Some(k) = self.kafka() {
            let (dir, limits) = self.outbox();
            out.push_str(&format!(
                "bus: Kafka {} topic {} (group {}); proxy outbox {} (up to {} events, {} bytes)\n",
                k.bootstrap,
                k.topic,
                k.consumer_group,
                dir.display(),
                limits.max_events,
                limits.max_bytes
            ));
        } else {
            out.push_str("bus: embedded (one process)\n");
        }
        if self.allow_static_identities {
            out.push_str(&format!("static identities: {}", self.identities.len()));
        } else {
            out.push_str("static identities: off");
        }
        out
    }
}
