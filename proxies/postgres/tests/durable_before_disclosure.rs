//! Durable before disclosure (issue 25): a read the classifier proves
//! changes nothing goes to PostgreSQL while its record becomes durable,
//! but no byte of its result reaches the client before the record is
//! durable; a write still waits for its record before it runs. A ledger
//! whose durability is slow, or that fails, is a fault the real ledger
//! cannot be made to show on demand, so the sink is a stand-in; the client
//! (tokio-postgres) and the database (the local PostgreSQL, whose own clock
//! says when a statement ran) are real.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use vigil_proto::events::{event::Kind, Event};
use vigil_proxy_core::sink::{EventSink, RecordFuture, SinkError};

const DELAY: Duration = Duration::from_millis(400);

/// Makes every Request durable `DELAY` after it is handed over (or fails
/// those whose text contains `fail_on`), and notes when each became
/// durable, by its statement text.
struct SlowSink {
    fail_on: Option<&'static str>,
    durable_at: Arc<Mutex<HashMap<String, (Instant, SystemTime)>>>,
}

impl EventSink for SlowSink {
    fn record(&self, event: Event) -> RecordFuture {
        let text = match &event.kind {
            Some(Kind::Request(r)) => r.sql().map(|s| s.text.clone()),
            _ => None,
        };
        let Some(text) = text else {
            return Box::pin(async { Ok(()) });
        };
        let fails = self.fail_on.is_some_and(|f| text.contains(f));
        let durable_at = self.durable_at.clone();
        Box::pin(async move {
            tokio::time::sleep(DELAY).await;
            if fails {
                return Err(SinkError::Unavailable("disk full".into()));
            }
            durable_at
                .lock()
                .unwrap()
                .insert(text, (Instant::now(), SystemTime::now()));
            Ok(())
        })
    }
}

async fn start(fail_on: Option<&'static str>) -> (u16, Arc<SlowSink>) {
    let sink = Arc::new(SlowSink {
        fail_on,
        durable_at: Arc::default(),
    });
    let port = common::start_proxy("durable", sink.clone()).await;
    (port, sink)
}

/// A database of this test's own, made with `setup` run in it: a fresh
/// one holds no code of its users, which free reads need.
async fn fresh_database(name: &str, setup: &[&str]) -> String {
    let db = format!("vigil_durable_{name}_{}", std::process::id());
    let admin = connect_direct("test").await;
    admin
        .simple_query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .simple_query(&format!("CREATE DATABASE {db} TEMPLATE template0"))
        .await
        .unwrap();
    let inside = connect_direct(&db).await;
    for sql in setup {
        inside.simple_query(sql).await.unwrap();
    }
    db
}

async fn drop_database(db: &str) {
    let admin = connect_direct("test").await;
    let _ = admin
        .simple_query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await;
}

async fn connect(port: u16, db: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=agent password=pw dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    client
}

fn durable(sink: &SlowSink, text: &str) -> (Instant, SystemTime) {
    *sink
        .durable_at
        .lock()
        .unwrap()
        .get(text)
        .unwrap_or_else(|| panic!("no durable record of {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_runs_at_once_but_its_result_waits_for_its_record_and_a_write_waits_to_run() {
    let (port, sink) = start(None).await;
    let db = fresh_database("reads", &[]).await;
    let client = connect(port, &db).await;

    // A read, simple protocol: the server's clock says it ran long before
    // its record was durable; the client had nothing before then.
    let read = "SELECT clock_timestamp()::text";
    let rows = client.simple_query(read).await.unwrap();
    let received = Instant::now();
    let ran_at = first_value(&rows);
    let (durable_instant, durable_time) = durable(&sink, read);
    assert!(
        received >= durable_instant,
        "a result byte came before its record was durable"
    );
    let ran_at = server_time(&ran_at);
    assert!(
        durable_time.duration_since(ran_at).unwrap_or_default() >= DELAY / 2,
        "the read did not run while its record became durable (ran {ran_at:?}, durable {durable_time:?})"
    );

    // The same through the extended protocol (Parse, Bind, Execute).
    let prepared = "SELECT clock_timestamp()::text AS at, $1::int AS n";
    let row = client.query_one(prepared, &[&7i32]).await.unwrap();
    let received = Instant::now();
    let (durable_instant, durable_time) = durable(&sink, prepared);
    assert!(received >= durable_instant);
    assert!(
        durable_time
            .duration_since(server_time(row.get(0)))
            .unwrap_or_default()
            >= DELAY / 2
    );

    // A write runs only once its record is durable: the row's timestamp,
    // taken by the server as it ran, is later.
    let table = format!("vigil_durable_{}", std::process::id());
    client
        .simple_query(&format!("CREATE TABLE {table} (at timestamptz)"))
        .await
        .unwrap();
    let write = format!("INSERT INTO {table} VALUES (clock_timestamp())");
    client.simple_query(&write).await.unwrap();
    let (_, durable_time) = durable(&sink, &write);
    let at = client
        .query_one(&format!("SELECT at::text FROM {table}"), &[])
        .await
        .unwrap();
    let ran_at = server_time(at.get(0));
    assert!(
        ran_at >= durable_time,
        "the write ran before its record was durable"
    );
    // A read that calls code that changes something waits too.
    let nextval = "SELECT clock_timestamp()::text, txid_current()";
    let rows = client.simple_query(nextval).await.unwrap();
    let ran_at = server_time(&first_value(&rows));
    assert!(ran_at >= durable(&sink, nextval).1);
    drop(client);

    // In a database that holds code of its users, a read may run it
    // without naming it (a domain's CHECK, a cast, a view): every read
    // waits for its record, as the catalog says.
    let coded = fresh_database(
        "coded",
        &["CREATE FUNCTION noted() RETURNS int LANGUAGE sql AS 'SELECT 1'"],
    )
    .await;
    let client = connect(port, &coded).await;
    let read = "SELECT clock_timestamp()::text AS in_coded";
    let rows = client.simple_query(read).await.unwrap();
    assert!(server_time(&first_value(&rows)) >= durable(&sink, read).1);
    drop(client);
    drop_database(&db).await;
    drop_database(&coded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_whose_record_fails_gets_57p03_and_no_row_and_a_write_never_runs() {
    let (port, _sink) = start(Some("vigil_withheld")).await;
    let db = fresh_database("failing", &[]).await;
    let client = connect(port, &db).await;
    // Message by message: not a row, not even its description, comes
    // before the error.
    let stream = client
        .simple_query_raw("SELECT 'vigil_withheld', clock_timestamp()")
        .await
        .unwrap();
    let mut stream = std::pin::pin!(stream);
    let first = tokio_stream::StreamExt::next(&mut stream)
        .await
        .expect("an answer");
    let err = match first {
        Err(e) => e,
        Ok(message) => panic!("the client got {message:?} before the error"),
    };
    let error = err.as_db_error().expect("an error from the server side");
    assert_eq!(error.code().code(), "57P03", "{error:?}");
    assert!(client.is_closed() || client.simple_query("SELECT 1").await.is_err());

    // A write whose record fails never reaches the database.
    let table = format!("vigil_never_{}", std::process::id());
    let client = connect(port, &db).await;
    let err = client
        .simple_query(&format!(
            "CREATE TABLE {table} (note text DEFAULT 'vigil_withheld')"
        ))
        .await
        .expect_err("refused");
    assert_eq!(err.as_db_error().unwrap().code().code(), "57P03");
    let direct = connect_direct(&db).await;
    let n: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the write reached the database");
    drop(direct);
    drop(client);
    drop_database(&db).await;
}

/// The first column of the first row of a simple query's answer.
fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> String {
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

async fn connect_direct(db: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port=5432 user=postgres dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    client
}

/// A `timestamptz` as text (`2026-12-06 18:20:44.123456+00`) read as a
/// `SystemTime`.
fn server_time(text: &str) -> SystemTime {
    let parsed = chrono_free_parse(text).unwrap_or_else(|| panic!("not a timestamp: {text}"));
    SystemTime::UNIX_EPOCH + parsed
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]+HH` (PostgreSQL's text form in
/// the server's zone) into time since the epoch, without a date crate.
fn chrono_free_parse(text: &str) -> Option<Duration> {
    let (date, rest) = text.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let sign_at = rest.rfind(['+', '-'])?;
    let (clock, zone) = rest.split_at(sign_at);
    let zone_hours: i64 = zone[1..].split(':').next()?.parse().ok()?;
    let zone_secs = if zone.starts_with('-') {
        -zone_hours
    } else {
        zone_hours
    } * 3600;
    let mut c = clock.split(':');
    let (h, min) = (
        c.next()?.parse::<i64>().ok()?,
        c.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = c.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let whole = days * 86_400 + h * 3600 + min * 60 - zone_secs;
    Some(Duration::from_secs(whole as u64) + Duration::from_secs_f64(secs))
}
