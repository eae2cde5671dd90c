//! Fail closed: a statement whose Request event cannot be recorded never
//! reaches the database. A ledger that refuses writes is a fault the real
//! ledger cannot easily be made to show, so the sink here is a stand-in;
//! the client (psql) and the database (the local PostgreSQL) are real.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use vigil_proto::events::Event;
use vigil_proxy_core::sink::{EventSink, RecordFuture, SinkError};

/// Accepts every event except those of the kinds it is told to refuse.
struct RefusingSink {
    refuse: &'static [&'static str],
    seen: Mutex<Vec<String>>,
}

impl EventSink for RefusingSink {
    fn record(&self, event: Event) -> RecordFuture {
        let kind = event.kind_name();
        self.seen.lock().unwrap().push(kind.to_string());
        let refused = self.refuse.contains(&kind);
        Box::pin(async move {
            if refused {
                Err(SinkError::Unavailable("disk full".into()))
            } else {
                Ok(())
            }
        })
    }
}

fn psql(port: u16, sql: &str) -> std::process::Output {
    Command::new("psql")
        .env("PGPASSWORD", "pw")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "agent",
            "-d",
            "test",
            "-X",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql")
}

fn table_exists(name: &str) -> bool {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-X",
            "-A",
            "-t",
            "-c",
        ])
        .arg(format!(
            "SELECT count(*) FROM pg_class WHERE relname = '{name}'"
        ))
        .output()
        .expect("run psql");
    String::from_utf8_lossy(&out.stdout).trim() == "1"
}

async fn start(refuse: &'static [&'static str]) -> (u16, Arc<RefusingSink>) {
    let sink = Arc::new(RefusingSink {
        refuse,
        seen: Mutex::new(Vec::new()),
    });
    let port = common::start_proxy("failclosed", sink.clone()).await;
    (port, sink)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unrecordable_statement_never_reaches_the_database() {
    let (port, sink) = start(&["request"]).await;
    let table = format!("vigil_failclosed_{}", std::process::id());
    let sql = format!("CREATE TABLE {table} (id int)");
    let out = tokio::task::spawn_blocking(move || psql(port, &sql))
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Vigil refused the statement because it cannot be audited"),
        "{stderr}"
    );
    let t = table.clone();
    assert!(
        !tokio::task::spawn_blocking(move || table_exists(&t))
            .await
            .unwrap(),
        "the statement must not have run"
    );
    assert!(sink.seen.lock().unwrap().contains(&"request".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unrecordable_session_start_is_refused_before_any_upstream_login() {
    let (port, _sink) = start(&["session_opened"]).await;
    let out = tokio::task::spawn_blocking(move || psql(port, "SELECT 1"))
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Vigil cannot record this session"),
        "{stderr}"
    );
}
