//! A real OpenID provider for the identity tests: npm's `oidc-provider`
//! (tests/clients/oidc_provider.mjs) on a loopback port, issuing
//! client_credentials access tokens (RFC 9068, resource indicators), plus its
//! test-only endpoints to rotate keys and to sign hand-made tokens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

/// The provider's default client (tests/clients/oidc_provider.mjs).
pub const CLIENT: &str = "agent-ehr";
pub const CLIENT_SECRET: &str = "agent-ehr-secret";
/// The provider's default resource (a token's audience).
pub const RESOURCE: &str = "urn:vigil:ehr";

/// A running provider; killed when dropped.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    _config: Option<tempfile::NamedTempFile>,
}

impl OidcProvider {
    /// Starts the provider with its default client and resource.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts the provider with a JSON config (`clients`, `resources`).
    /// A provider that exits before it is ready (its free port taken by
    /// another test in the meantime) is started again on another port.
    pub fn start_with(config: Option<Value>) -> Self {
        let file = config.map(|c| {
            let f = tempfile::NamedTempFile::new().expect("temp config");
            std::fs::write(f.path(), c.to_string()).expect("write provider config");
            f
        });
        let mut last = String::new();
        for _ in 0..3 {
            match Self::spawn(file.as_ref()) {
                Ok((child, issuer)) => {
                    return Self {
                        child,
                        issuer,
                        _config: file,
                    }
                }
                Err(output) => last = output,
            }
        }
        panic!("the OpenID provider did not start; it last printed {last:?}")
    }

    fn spawn(file: Option<&tempfile::NamedTempFile>) -> Result<(Child, String), String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/oidc_provider.mjs");
        let port = crate::free_port();
        let mut cmd = Command::new("node");
        cmd.arg(script).arg("--port").arg(port.to_string());
        if let Some(f) = file {
            cmd.arg("--config").arg(f.path());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node tests/clients/oidc_provider.mjs (run deploy/install-deps.sh)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the OpenID provider did not start within 30 s");
        match line.trim().strip_prefix("ready ") {
            Some(issuer) => Ok((child, issuer.to_string())),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(line)
            }
        }
    }

    /// A client_credentials access token for `resource` with `scope`.
    pub fn token(&self, client: &str, secret: &str, resource: &str, scope: &str) -> String {
        let basic = B64.encode(format!("{client}:{secret}"));
        let response: Value = ureq::post(&format!("{}/token", self.issuer))
            .set("Authorization", &format!("Basic {basic}"))
            .send_form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .unwrap_or_else(|e| panic!("token request failed: {e}"))
            .into_json()
            .expect("token response JSON");
        response["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// The default client's token for the default resource with `scope`.
    pub fn agent_token(&self, scope: &str) -> String {
        self.token(CLIENT, CLIENT_SECRET, RESOURCE, scope)
    }

    /// A token with exactly `header` and `claims`, signed with `key`:
    /// "current" (the provider's key for the header's alg), "foreign" (a key
    /// not in its JWKS), "hs256-public-pem" (HMAC keyed with the RSA public
    /// key's PEM) or "none" (unsigned).
    pub fn sign(&self, header: Value, claims: Value, key: &str) -> String {
        let body = serde_json::json!({ "header": header, "claims": claims, "key": key });
        let response: Value = ureq::post(&format!("{}/_test/sign", self.issuer))
            .send_json(body)
            .unwrap_or_else(|e| panic!("/_test/sign failed: {e}"))
            .into_json()
            .expect("sign response JSON");
        response["token"].as_str().expect("token").to_string()
    }

    /// New signing keys (new key ids); the old ones leave the JWKS.
    pub fn rotate(&self) {
        ureq::post(&format!("{}/_test/rotate", self.issuer))
            .send_json(serde_json::json!({ "keep_old": false }))
            .unwrap_or_else(|e| panic!("/_test/rotate failed: {e}"));
    }

    /// The `[[oidc.issuers]]` table trusting this provider for `audiences`
    /// (key refreshes allowed every second), with `extra` keys and tables.
    pub fn issuer_toml(&self, audiences: &[&str], extra: &str) -> String {
        let audiences: Vec<String> = audiences.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "[[oidc.issuers]]\nissuer = \"{}\"\naudiences = [{}]\njwks_min_refresh_secs = 1\n{extra}\n",
            self.issuer,
            audiences.join(", ")
        )
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes a token's claims (unverified; for assertions).
pub fn claims_of(token: &str) -> Value {
    json_part(token, 1)
}

/// Decodes a token's protected header (unverified; for assertions).
pub fn header_of(token: &str) -> Value {
    json_part(token, 0)
}

fn json_part(token: &str, index: usize) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let part = token.split('.').nth(index).expect("token part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}
