//! A whole protocol adapter in a page, to show what the runtime asks of
//! one: a line protocol over TCP ("LOGIN <name>", then one request per
//! line, "QUIT"). The runtime gives it the listener (accept loop,
//! connection cap, drain), the recorder (SessionOpened first, durable
//! requests, background responses, SessionClosed with a typed reason).
//! The adapter only speaks its protocol.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use vigil_proto::events::{
    event::Kind, Decision, EndReason as Recorded, Event, Outcome, Protocol, Request, Response,
    SessionOpened, SqlStatement, Stage,
};
use vigil_proxy_core::sink::RecordFuture;
use vigil_proxy_core::{EventSink, SessionContext, SinkError, VerifiedIdentity};
use vigil_runtime::drain::Drain;
use vigil_runtime::listener::{self, Adapter};
use vigil_runtime::recorder::{EndReason, SessionRecorder};

/// Keeps every event, in the order recorded.
#[derive(Default)]
struct Collecting(Mutex<Vec<Event>>);

impl EventSink for Collecting {
    fn record(&self, event: Event) -> RecordFuture {
        self.0.lock().unwrap().push(event);
        Box::pin(async { Ok::<(), SinkError>(()) })
    }
}

struct LineAdapter {
    sink: Arc<Collecting>,
}

impl LineAdapter {
    async fn session(self: Arc<Self>, conn: TcpStream, peer: SocketAddr, drain: Arc<Drain>) {
        let (rd, mut wr) = conn.into_split();
        let mut lines = BufReader::new(rd).lines();
        // 1. Who is asking (a real adapter verifies a token here).
        let Ok(Some(login)) = lines.next_line().await else {
            return;
        };
        let Some(name) = login.strip_prefix("LOGIN ").filter(|n| !n.is_empty()) else {
            let _ = wr.write_all(b"ERR login first\n").await;
            return;
        };
        let identity = VerifiedIdentity {
            subject: name.to_string(),
            issuer: "line:test".into(),
            auth_method: "password".into(),
            ..VerifiedIdentity::default()
        };
        // 2. SessionOpened, durably, before anything else happens.
        // A test protocol of no family: its lines are recorded as the SQL
        // family's statement text, the nearest shape.
        let context = Arc::new(SessionContext::new(
            "line",
            &identity,
            Protocol::Unspecified,
        ));
        let opened = SessionOpened {
            client_addr: peer.to_string(),
            ..Default::default()
        };
        let Ok(recorder) = SessionRecorder::open(context, self.sink.clone(), opened).await else {
            let _ = wr.write_all(b"ERR cannot audit\n").await;
            return;
        };
        let _ = wr.write_all(b"OK\n").await;
        // 3. One request per line, recorded before it is answered.
        let reason = loop {
            let line = tokio::select! {
                line = lines.next_line() => line,
                _ = drain.deadline() => {
                    let _ = wr.write_all(b"BYE shutting down\n").await;
                    break EndReason::Shutdown;
                }
                _ = recorder.audit_failed() => break EndReason::AuditUnavailable,
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => break EndReason::ClientDisconnected(None),
                Err(e) => break EndReason::ClientDisconnected(Some(e.to_string())),
            };
            if line == "QUIT" {
                break EndReason::ClientTerminated;
            }
            let seq = recorder.session().next_statement_seq();
            let denied = line.starts_with("DENY");
            let decision = Decision {
                request_seq: seq,
                outcome: if denied {
                    Outcome::Deny
                } else {
                    Outcome::Allow
                } as i32,
                stage: Stage::Request as i32,
                ..Default::default()
            };
            let request = Request::new_sql(
                seq,
                SqlStatement {
                    text: line.clone(),
                    ..Default::default()
                },
            );
            if recorder
                .record_durably(vec![Kind::Request(request.decided(decision))])
                .await
                .is_err()
            {
                break EndReason::AuditUnavailable;
            }
            let answer = if denied {
                "ERR denied\n".to_string()
            } else {
                recorder.record_in_background(Kind::Response(Response {
                    request_seq: seq,
                    ..Default::default()
                }));
                format!("= {line}\n")
            };
            if let Err(e) = wr.write_all(answer.as_bytes()).await {
                break EndReason::ClientDisconnected(Some(e.to_string()));
            }
        };
        // 4. SessionClosed with the reason.
        recorder.close(&reason).await;
    }
}

impl Adapter for LineAdapter {
    fn name(&self) -> &str {
        "line"
    }

    fn serve(
        self: Arc<Self>,
        conn: TcpStream,
        peer: SocketAddr,
        drain: Arc<Drain>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.session(conn, peer, drain))
    }

    fn refuse_busy(&self, mut conn: TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _ = conn.write_all(b"ERR busy\n").await;
        })
    }
}

struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let (rd, wr) = TcpStream::connect(addr).await.unwrap().into_split();
        Self {
            lines: BufReader::new(rd).lines(),
            wr,
        }
    }

    async fn ask(&mut self, line: &str) -> Option<String> {
        self.wr
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.read().await
    }

    async fn read(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
            .await
            .expect("an answer in time")
            .unwrap()
    }
}

fn kinds_and_reasons(events: &[Event], session: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.session_id == session)
        .map(|e| match e.kind.as_ref().unwrap() {
            Kind::SessionOpened(_) => "opened".to_string(),
            Kind::Request(r) => format!(
                "request {} decision {}",
                r.sql().unwrap().text,
                r.decision.as_ref().unwrap().outcome().label()
            ),
            Kind::Decision(d) => format!("decision {}", d.outcome().label()),
            Kind::Response(_) => "response".to_string(),
            Kind::SessionClosed(c) => format!("closed {}", c.reason_text()),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_protocol_adapter_gets_sessions_recording_caps_and_drain_from_the_runtime() {
    let sink = Arc::new(Collecting::default());
    let adapter = Arc::new(LineAdapter { sink: sink.clone() });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let drain = Drain::new();
    let server = tokio::spawn(listener::serve(adapter, listener, drain.clone(), 2));

    // A whole session, recorded in order with its end.
    let mut c = Client::connect(addr).await;
    assert_eq!(c.ask("LOGIN agent-7").await.as_deref(), Some("OK"));
    assert_eq!(c.ask("read 1").await.as_deref(), Some("= read 1"));
    assert_eq!(c.ask("DENY drop").await.as_deref(), Some("ERR denied"));
    c.wr.write_all(b"QUIT\n").await.unwrap();
    assert_eq!(c.read().await, None, "closed after QUIT");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let events = sink.0.lock().unwrap().clone();
    let session = events[0].session_id.clone();
    assert_eq!(
        kinds_and_reasons(&events, &session),
        [
            "opened",
            "request read 1 decision allow",
            "response",
            "request DENY drop decision deny",
            "closed client_terminated"
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..5).collect::<Vec<_>>());

    // The cap: two open sessions, the third connection is refused.
    let mut a = Client::connect(addr).await;
    assert_eq!(a.ask("LOGIN a").await.as_deref(), Some("OK"));
    let mut b = Client::connect(addr).await;
    assert_eq!(b.ask("LOGIN b").await.as_deref(), Some("OK"));
    let mut over = Client::connect(addr).await;
    assert_eq!(over.read().await.as_deref(), Some("ERR busy"));

    // The drain: no new connections, open sessions end at the deadline
    // with reason "shutdown".
    drain.begin(Duration::from_millis(300));
    server.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
    assert_eq!(a.read().await.as_deref(), Some("BYE shutting down"));
    assert_eq!(b.read().await.as_deref(), Some("BYE shutting down"));
    assert_eq!(drain.wait_for_sessions(Duration::from_secs(5)).await, 0);
    let events = sink.0.lock().unwrap().clone();
    let shutdowns = events
        .iter()
        .filter(
            |e| matches!(&e.kind, Some(Kind::SessionClosed(c)) if c.reason() == Recorded::Shutdown),
        )
        .count();
    assert_eq!(shutdowns, 2);
}
