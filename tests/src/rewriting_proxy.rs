//! An HTTP proxy in front of the ledger's API that rewrites its answers: the
//! auditor's adversary (an operator, or whoever sits between the auditor
//! and the ledger) played for real. The auditor's tools talk to it as they
//! would to the ledger.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// What the proxy does with one answer: `None` passes the ledger's bytes
/// through; `Some(bytes)` serves those instead (status 200).
pub type Rewrite = dyn Fn(&str, &[u8]) -> Option<Vec<u8>> + Send + Sync;

pub struct RewritingProxy {
    pub url: String,
}

impl RewritingProxy {
    /// Listens on a free loopback port and forwards GETs to `upstream`
    /// (e.g. `http://127.0.0.1:6580`), passing each answer through `rewrite`
    /// (given the request's path and query, and the ledger's body).
    pub fn start(upstream: &str, rewrite: Arc<Rewrite>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the rewriting proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_end_matches('/').to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (upstream, rewrite) = (upstream.clone(), rewrite.clone());
                std::thread::spawn(move || serve(stream, &upstream, &*rewrite));
            }
        });
        Self { url }
    }
}

fn serve(mut stream: TcpStream, upstream: &str, rewrite: &Rewrite) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let mut req = ureq::get(&format!("{upstream}{path}"));
    if let Some(a) = &authorization {
        req = req.set("Authorization", a);
    }
    let (status, body) = match req.call() {
        Ok(r) => (r.status(), read_all(r)),
        Err(ureq::Error::Status(code, r)) => (code, read_all(r)),
        Err(_) => (502, b"upstream unreachable".to_vec()),
    };
    let (status, body) = match rewrite(&path, &body) {
        Some(new) => (200, new),
        None => (status, body),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

fn read_all(r: ureq::Response) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = r.into_reader().take(64 << 20).read_to_end(&mut out);
    out
}
