//! MCP `tools/call` load for `tests/bench/mcp-bench.sh`: N agents at once,
//! each with its own session (initialize, then calls one after another),
//! every call timed. Prints one JSON line: calls, seconds, calls/s, p50
//! and p99 latency in microseconds.
//!
//!   vigil-mcp-bench URL TOKEN AGENTS SECONDS
//!
//! Blocking HTTP/1.1 with keep-alive (ureq), JSON answers (the server runs
//! with `--json`), so the client itself adds little and the same for both
//! targets.

use std::time::{Duration, Instant};

use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, token, agents, secs] = args.as_slice() else {
        eprintln!("usage: vigil-mcp-bench URL TOKEN AGENTS SECONDS");
        std::process::exit(2);
    };
    let agents: usize = agents.parse().expect("AGENTS");
    let secs: u64 = secs.parse().expect("SECONDS");
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let threads: Vec<_> = (0..agents)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || run_agent(&url, &token, until))
        })
        .collect();
    let mut latencies: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("agent"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{}",
        json!({
            "agents": agents,
            "calls": latencies.len(),
            "seconds": elapsed,
            "calls_per_second": latencies.len() as f64 / elapsed,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
        })
    );
}

fn run_agent(url: &str, token: &str, until: Instant) -> Vec<u64> {
    let http = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let auth = format!("Bearer {token}");
    let post = |session: Option<&str>, body: serde_json::Value| {
        let mut r = http
            .post(url)
            .set("authorization", &auth)
            .set("content-type", "application/json")
            .set("accept", "application/json, text/event-stream");
        if let Some(s) = session {
            r = r
                .set("mcp-session-id", s)
                .set("mcp-protocol-version", "2025-11-25");
        }
        r.send_string(&body.to_string()).expect("POST")
    };
    let init = post(
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "vigil-mcp-bench", "version": "1"}}}),
    );
    let session = init.header("mcp-session-id").map(str::to_string);
    let _ = init.into_string();
    let _ = post(
        session.as_deref(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .into_string();
    let mut latencies = Vec::new();
    let mut id = 1u64;
    while Instant::now() < until {
        let t = Instant::now();
        let answer = post(
            session.as_deref(),
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "ward 7 rounds"}}}),
        )
        .into_string()
        .expect("answer");
        latencies.push(t.elapsed().as_micros() as u64);
        assert!(answer.contains("ward 7 rounds"), "{answer}");
        id += 1;
    }
    latencies
}
