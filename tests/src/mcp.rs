//! MCP parts for the gateway tests: our own MCP server of synthetic
//! patients (`clients/mcp_patients_server.py`, the official Python SDK),
//! the SDK's client as an agent (`clients/mcp_agent.py`), and raw HTTP
//! for what an SDK would never send.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The token our MCP server requires: the gateway's own credential.
pub const UPSTREAM_TOKEN: &str = "gateway-upstream-secret";

fn clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// A running MCP server; killed when dropped.
pub struct McpServer {
    child: Child,
    pub url: String,
}

impl McpServer {
    /// Our patients server (`--stateless` / `--json` as given in `flags`).
    pub fn patients(flags: &[&str]) -> Self {
        let port = crate::free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(clients().join("mcp_patients_server.py"))
            .args(["--port", &port.to_string(), "--token", UPSTREAM_TOKEN])
            .args(flags);
        Self::spawn(cmd, "ready", port)
    }

    /// Our patients server over https with `cert` and `key` (PEM files).
    pub fn patients_tls(cert: &Path, key: &Path) -> Self {
        let port = crate::free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(clients().join("mcp_patients_server.py"))
            .args(["--port", &port.to_string(), "--token", UPSTREAM_TOKEN])
            .arg("--certfile")
            .arg(cert)
            .arg("--keyfile")
            .arg(key);
        let mut server = Self::spawn(cmd, "ready", port);
        server.url = format!("https://127.0.0.1:{port}/mcp");
        server
    }

    /// npm's reference server `@modelcontextprotocol/server-everything`
    /// over Streamable HTTP (installed in `tests/clients` by the test
    /// command).
    pub fn everything() -> Self {
        let port = crate::free_port();
        let bin = clients().join("node_modules/.bin/mcp-server-everything");
        let mut cmd = Command::new(bin);
        cmd.arg("streamableHttp").env("PORT", port.to_string());
        Self::spawn(cmd, "listening", port)
    }

    fn spawn(mut cmd: Command, ready: &str, port: u16) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start an MCP server (run deploy/install-deps.sh)");
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.to_lowercase().contains(ready) => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("the MCP server did not start: {seen:?}");
                }
            }
        }
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        McpServer {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the SDK agent in `mode` ("legacy", "2026-07-28", "auto") through
/// `url` with `token`; returns its lines (the negotiated version first,
/// then one per step).
pub fn agent(url: &str, token: &str, mode: &str, steps: Value) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(clients().join("mcp_agent.py"))
        .arg(mode)
        .arg(steps.to_string())
        .env("VIGIL_MCP_URL", url)
        .env("VIGIL_MCP_TOKEN", token)
        .output()
        .expect("run python3 mcp_agent.py");
    assert!(
        out.status.success(),
        "the agent failed: {}",
        crate::show(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("agent line {l:?}: {e}")))
        .collect()
}

/// One raw POST: (status, headers as lower-case (name, value), body).
pub fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut request = ureq::post(url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    let response = match request.send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let status = response.status();
    let names = response.headers_names();
    let hs = names
        .iter()
        .map(|n| {
            (
                n.to_lowercase(),
                response.header(n).unwrap_or_default().to_string(),
            )
        })
        .collect();
    (status, hs, response.into_string().unwrap_or_default())
}
