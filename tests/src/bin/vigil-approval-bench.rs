//! Approval latency benchmark (tests/bench/approval-bench.sh): the time from
//! an approver's Approve call to the client's first result row.
//!
//! One PostgreSQL session (tokio-postgres, simple protocol) sends a
//! statement that a review rule holds; a `Watch` stream on the approval
//! service's gRPC API tells the bench the operation id as soon as it is
//! pending; the clock starts just before `Approve` is sent and stops when
//! the first row reaches the client. Repeated `--iterations` times; prints
//! p50, p99 and max.
//!
//!   vigil-approval-bench --pg "host=... port=... user=agent password=..."
//!       --approvals http://127.0.0.1:PORT --approver-token-file FILE
//!       --sql "SELECT id FROM bench_held" [--iterations 200]
//!
//! The approver presents an OIDC access token, as in production (a static
//! identity's password would add an Argon2 verification to every call).

// tonic's `Status` is the error type of its interceptors.
#![allow(clippy::result_large_err)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::SimpleQueryMessage;
use vigil_proto::approvals as pb;
use vigil_proto::approvals::approvals_client::ApprovalsClient;

struct Args {
    pg: String,
    approvals: String,
    approver: String,
    sql: String,
    iterations: usize,
}

fn args() -> Args {
    let mut a = Args {
        pg: String::new(),
        approvals: String::new(),
        approver: String::new(),
        sql: String::new(),
        iterations: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--pg" => a.pg = value,
            "--approvals" => a.approvals = value,
            "--approver-token-file" => {
                a.approver = std::fs::read_to_string(&value)
                    .expect("read --approver-token-file")
                    .trim()
                    .to_string()
            }
            "--sql" => a.sql = value,
            "--iterations" => a.iterations = value.parse().expect("--iterations N"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !a.pg.is_empty() && !a.approvals.is_empty() && !a.approver.is_empty() && !a.sql.is_empty()
    );
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let a = args();
    let (pg, conn) = tokio_postgres::connect(&a.pg, tokio_postgres::NoTls)
        .await
        .expect("connect to the gateway");
    tokio::spawn(conn);
    let pg = std::sync::Arc::new(pg);

    let auth: tonic::metadata::AsciiMetadataValue =
        format!("Bearer {}", a.approver).parse().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(a.approvals.clone())
        .unwrap()
        .connect()
        .await
        .expect("connect to the approval service");
    let mut client = ApprovalsClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", auth.clone());
        Ok(r)
    });
    let mut watch = client
        .clone()
        .watch(pb::WatchRequest {})
        .await
        .expect("watch")
        .into_inner();

    let mut samples = Vec::with_capacity(a.iterations);
    for _ in 0..a.iterations {
        let pg = pg.clone();
        let sql = a.sql.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<Instant>();
        let query = tokio::spawn(async move {
            let stream = pg.simple_query_raw(&sql).await.expect("query");
            futures_util::pin_mut!(stream);
            let mut first = None;
            while let Some(m) = stream.next().await {
                if let (None, SimpleQueryMessage::Row(_)) = (&first, m.expect("row")) {
                    first = Some(Instant::now());
                }
            }
            let _ = tx.send(first.expect("the approved statement returned a row"));
        });
        let id = loop {
            let op = watch
                .message()
                .await
                .expect("watch stream")
                .expect("watch ended");
            if op.state == "pending" && op.approvals == 0 {
                break op.operation_id;
            }
        };
        let started = Instant::now();
        client
            .approve(pb::DecideRequest {
                operation_id: id,
                reason: "bench".into(),
            })
            .await
            .expect("approve");
        let first_row = rx.await.expect("query task");
        query.await.unwrap();
        samples.push(first_row.duration_since(started));
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "approval -> first row over {} statements: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
}
