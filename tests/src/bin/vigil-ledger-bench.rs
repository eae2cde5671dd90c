//! Ledger benchmark; not part of the test suite. Run it through
//! `tests/bench/ledger-bench.sh` (release build).
//!
//! ```text
//! vigil-ledger-bench [append] [latency] [proofs] [--quick] [--entries N]
//!                    [--append-events N] [--latency-secs S] [--pairs N] [--dir DIR]
//!                    [--batch N] [--only store|raw] [--busy]
//! ```
//!
//! - `append`: sustained durable appends of 1 KiB events through
//!   `Store::append_batch` at batch sizes 4096 and 1024 and, in the same
//!   run, raw RocksDB `WriteBatch` puts of the same bytes (16-byte keys,
//!   1 KiB values) with `sync = true` at the same batch sizes; events/s and
//!   ratio. Then both again pipelined as the appender runs under load
//!   (batch N+1 written while a second thread syncs, unsynced writes and
//!   `flush_wal(true)` for the raw run), and their ratio.
//! - `latency`: ack -> inclusion in a stored signed checkpoint, with a
//!   checkpointer thread signing every 250 ms like the service, under
//!   sustained appends (batches of 4096); p50/p99/max per event.
//! - `proofs`: builds a log of `--entries` (default 10M, 64-byte bodies),
//!   reports RSS every 1M entries, reopens it, then times inclusion and
//!   consistency proof generation and verification for `--pairs` random
//!   (index, size) / (size1, size2) pairs; p50/p99/max in µs, and node
//!   lookups per proof. It waits for RocksDB's flushes and compactions
//!   after the reopen to finish first (`--busy`: not). It times one pass
//!   with the store's tile cache off (RocksDB and the page cache alone),
//!   then fills the cache as a reopened ledger does
//!   (`Store::warm_tile_cache`) and times the measured pass, and says what
//!   the slowest proofs cost when generated again. Then it reads every stored
//!   node tile once and times generation again: the figures of a host whose
//!   page cache keeps the tiles (this VM's kernel pages out what nobody
//!   touched for about a minute, and says so in the output).
//!
//! With no phase named, all three run (in this process: run them as separate
//! processes for clean RSS figures, as the script does). Everything lives in
//! a temporary directory under `--dir` (default: /tmp), deleted at the end.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng as _, RngCore as _, SeedableRng as _};
use vigil_ledger::{
    leaf_hash, sign_note, tree, verify_consistency, verify_inclusion, Checkpoint, Hash, Keyring,
    NewEntry, NodeSource, NoteSigner, Store, StoreError,
};

const ORIGIN: &str = "bench.vigil/ledger";
const TARGET_STORE_EPS: f64 = 50_000.0;
const TARGET_RATIO: f64 = 0.5;
const TARGET_CKPT_P99_MS: f64 = 1000.0;
const TARGET_GEN_P99_US: f64 = 100.0;
const TARGET_VERIFY_US: f64 = 10.0;

struct Args {
    phases: Vec<String>,
    entries: u64,
    append_events: u64,
    latency_secs: u64,
    pairs: usize,
    dir: PathBuf,
    quick: bool,
    /// `append` phase: only "store" or only "raw" (for profiling).
    only: Option<String>,
    /// `append` phase: batch sizes.
    batches: Vec<usize>,
    /// `proofs` phase: measure at once after the reopen, while RocksDB may
    /// still be compacting.
    busy: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: vigil-ledger-bench [append] [latency] [proofs] [--quick] [--entries N] \
         [--append-events N] [--latency-secs S] [--pairs N] [--dir DIR] [--batch N] \
         [--only store|raw] [--busy]"
    );
    exit(2)
}

fn parse_args() -> Args {
    let mut phases = Vec::new();
    let mut quick = false;
    let (mut entries, mut append_events, mut latency_secs, mut pairs) = (None, None, None, None);
    let mut dir = PathBuf::from("/tmp");
    let mut only = None;
    let mut batches = vec![4096, 1024];
    let mut busy = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = || -> u64 {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "append" | "latency" | "proofs" => phases.push(a),
            "--quick" => quick = true,
            "--entries" => entries = Some(num()),
            "--append-events" => append_events = Some(num()),
            "--latency-secs" => latency_secs = Some(num()),
            "--pairs" => pairs = Some(num() as usize),
            "--dir" => dir = it.next().map(PathBuf::from).unwrap_or_else(|| usage()),
            "--only" => only = Some(it.next().unwrap_or_else(|| usage())),
            "--batch" => batches = vec![num() as usize],
            "--busy" => busy = true,
            _ => usage(),
        }
    }
    if phases.is_empty() {
        phases = vec!["append".into(), "latency".into(), "proofs".into()];
    }
    Args {
        phases,
        entries: entries.unwrap_or(if quick { 1_000_000 } else { 10_000_000 }),
        append_events: append_events.unwrap_or(if quick { 100_000 } else { 400_000 }),
        latency_secs: latency_secs.unwrap_or(if quick { 5 } else { 20 }),
        pairs: pairs.unwrap_or(10_000),
        dir,
        quick,
        only,
        batches,
        busy,
    }
}

// ---------------------------------------------------------------------------
// helpers

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// VmRSS / VmHWM of this process, in MiB.
fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Bytes this process has caused to be read from a block device.
fn io_read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("read_bytes: ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Bytes in RocksDB write-ahead log files (`*.log`) directly in `path`.
fn wal_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn fresh_dir(parent: &Path, name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("vigil-ledger-bench-{name}-"))
        .tempdir_in(parent)
        .unwrap_or_else(|e| {
            eprintln!("cannot create a directory in {}: {e}", parent.display());
            exit(1)
        })
}

/// Event ids like UUIDv7: time-ordered prefix (a counter), random tail.
fn bench_id(seq: u64, rng: &mut StdRng) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&seq.to_be_bytes());
    rng.fill_bytes(&mut id[8..]);
    id
}

fn entry(id: [u8; 16], body: Vec<u8>, seq: u64) -> NewEntry {
    NewEntry {
        event_id: id,
        time_unix_nanos: now_nanos(),
        kind: "Request".to_owned(),
        body,
        session_id: format!("0190a1b2-c3d4-7e5f-8a9b-{:012x}", seq / 64),
        seq: seq % 64,
        subject: "agent".to_owned(),
    }
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.total_cmp(b));
    Stats {
        p50: pct(&v, 50.0),
        p99: pct(&v, 99.0),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// Lines of the final summary.
type Summary = Vec<String>;

// ---------------------------------------------------------------------------
// a) sustained durable appends

fn open_raw(path: &Path) -> rocksdb::DB {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    // Same as the store: the crate is built without compression libraries.
    o.set_compression_type(rocksdb::DBCompressionType::None);
    rocksdb::DB::open(&o, path).expect("open raw rocksdb")
}

struct AppendRun {
    eps: f64,
    /// Per batch, write to durable; empty when pipelined (a batch's
    /// durability is then another thread's sync).
    batch_ms: Stats,
    disk_mib: f64,
    /// Syncs, when a second thread made the batches durable.
    syncs: Option<u64>,
}

fn raw_run(
    parent: &Path,
    ids: &[[u8; 16]],
    bodies: &[Vec<u8>],
    batch: usize,
    durability: Durability,
) -> AppendRun {
    let dir = fresh_dir(parent, "raw");
    let db = Arc::new(open_raw(dir.path()));
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut pipeline = (durability == Durability::Pipelined).then(|| {
        let db = db.clone();
        Pipeline::start(move || db.flush_wal(true).expect("raw sync"))
    });
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(pipeline.is_none());
    for (chunk_ids, chunk_bodies) in ids.chunks(batch).zip(bodies.chunks(batch)) {
        let t = Instant::now();
        let mut wb = rocksdb::WriteBatch::default();
        for (k, v) in chunk_ids.iter().zip(chunk_bodies) {
            wb.put(k, v);
        }
        db.write_opt(wb, &w).expect("raw write");
        match pipeline.as_mut() {
            Some(p) => p.written(),
            None => lat.push(t.elapsed().as_secs_f64() * 1e3),
        }
    }
    let syncs = pipeline.map(Pipeline::finish);
    let secs = start.elapsed().as_secs_f64();
    let disk_mib = dir_bytes(dir.path()) as f64 / 1048576.0;
    drop(db);
    AppendRun {
        eps: ids.len() as f64 / secs,
        batch_ms: stats(lat),
        disk_mib,
        syncs,
    }
}

/// A second thread that syncs what the writer has written, as the
/// appender's syncer does: the writer goes on with the next batch, at most
/// one written batch waits, and one sync covers every batch written
/// before it began.
struct Pipeline {
    written: Option<std::sync::mpsc::SyncSender<()>>,
    syncer: std::thread::JoinHandle<u64>,
}

impl Pipeline {
    fn start(sync: impl Fn() + Send + 'static) -> Self {
        let (written, to_sync) = std::sync::mpsc::sync_channel::<()>(1);
        let syncer = std::thread::spawn(move || {
            let mut syncs = 0;
            while to_sync.recv().is_ok() {
                while to_sync.try_recv().is_ok() {}
                sync();
                syncs += 1;
            }
            syncs
        });
        Self {
            written: Some(written),
            syncer,
        }
    }

    fn written(&mut self) {
        if let Some(w) = &self.written {
            w.send(()).expect("syncer alive");
        }
    }

    /// Waits for the last sync; how many syncs there were.
    fn finish(mut self) -> u64 {
        drop(self.written.take());
        self.syncer.join().expect("syncer")
    }
}

/// How the Store's batches are made durable.
#[derive(Clone, Copy, PartialEq)]
enum Durability {
    /// `append_batch`: each batch written, then synced, one after another.
    Serial,
    /// As the ledger's appender does under load: batch N+1 is written
    /// (`write_batch`) while a second thread syncs batch N (`sync`).
    Pipelined,
}

fn store_batches(ids: &[[u8; 16]], bodies: &[Vec<u8>], batch: usize) -> Vec<Vec<NewEntry>> {
    ids.chunks(batch)
        .zip(bodies.chunks(batch))
        .enumerate()
        .map(|(b, (ci, cb))| {
            ci.iter()
                .zip(cb)
                .enumerate()
                .map(|(k, (id, body))| entry(*id, body.clone(), (b * batch + k) as u64))
                .collect()
        })
        .collect()
}

fn store_run(
    parent: &Path,
    ids: &[[u8; 16]],
    bodies: &[Vec<u8>],
    batch: usize,
    durability: Durability,
) -> AppendRun {
    let dir = fresh_dir(parent, "store");
    let store = Arc::new(Store::open(dir.path(), Keyring::random("bench")).expect("open store"));
    // Built before the clock starts, like events waiting on the bus.
    let batches = store_batches(ids, bodies, batch);
    let mut lat = Vec::new();
    let mut syncs = None;
    let start = Instant::now();
    match durability {
        Durability::Serial => {
            for b in batches {
                let t = Instant::now();
                let out = store.append_batch(b).expect("append_batch");
                debug_assert!(out.iter().all(|a| !a.duplicate));
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        Durability::Pipelined => {
            let syncing = store.clone();
            let mut pipeline = Pipeline::start(move || syncing.sync().expect("sync"));
            for b in batches {
                store.write_batch(b).expect("write_batch");
                pipeline.written();
            }
            syncs = Some(pipeline.finish());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(store.size(), ids.len() as u64);
    let disk_mib = dir_bytes(dir.path()) as f64 / 1048576.0;
    drop(store);
    AppendRun {
        eps: ids.len() as f64 / secs,
        batch_ms: stats(lat),
        disk_mib,
        syncs,
    }
}

fn bench_append(args: &Args, summary: &mut Summary) {
    let n = args.append_events as usize;
    println!("== a) sustained durable appends: {n} events of 1 KiB, synced WAL per batch");
    let mut rng = StdRng::seed_from_u64(1);
    let ids: Vec<[u8; 16]> = (0..n as u64).map(|s| bench_id(s, &mut rng)).collect();
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let mut b = vec![0u8; 1024];
            rng.fill_bytes(&mut b);
            b
        })
        .collect();
    for &batch in &args.batches {
        let skip = |what: &str| args.only.as_deref().is_some_and(|o| o != what);
        let none = || AppendRun {
            eps: f64::NAN,
            batch_ms: stats(Vec::new()),
            disk_mib: f64::NAN,
            syncs: None,
        };
        let [raw, raw_pipelined] = [Durability::Serial, Durability::Pipelined].map(|d| {
            if skip("raw") {
                none()
            } else {
                raw_run(&args.dir, &ids, &bodies, batch, d)
            }
        });
        let [store, pipelined] = [Durability::Serial, Durability::Pipelined].map(|d| {
            if skip("store") {
                none()
            } else {
                store_run(&args.dir, &ids, &bodies, batch, d)
            }
        });
        let ratio = store.eps / raw.eps;
        let pipelined_ratio = pipelined.eps / raw_pipelined.eps;
        for (what, r) in [
            ("raw RocksDB", &raw),
            ("Store", &store),
            ("raw, pipelined", &raw_pipelined),
            ("Store, pipelined", &pipelined),
        ] {
            let per_batch = match r.syncs {
                Some(syncs) => format!("{syncs} syncs for {} batches", n.div_ceil(batch)),
                None => format!(
                    "per batch p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
                    r.batch_ms.p50, r.batch_ms.p99, r.batch_ms.max
                ),
            };
            println!(
                "  batch {batch:>5}  {what:<16} {:>9.0} events/s   {per_batch}   on disk {:>6.0} MiB",
                r.eps, r.disk_mib
            );
        }
        println!(
            "  batch {batch:>5}  ratio Store/raw = {ratio:.3}; both pipelined = {pipelined_ratio:.3}"
        );
        summary.push(format!(
            "append, batch {batch}: Store {:.0} events/s, raw RocksDB {:.0} events/s, ratio {ratio:.3} \
             (target >= {TARGET_STORE_EPS:.0}/s: {}; ratio >= {TARGET_RATIO}: {}); both pipelined: \
             Store {:.0}/s, raw {:.0}/s, ratio {pipelined_ratio:.3}",
            store.eps,
            raw.eps,
            verdict(store.eps >= TARGET_STORE_EPS),
            verdict(ratio >= TARGET_RATIO),
            pipelined.eps,
            raw_pipelined.eps,
        ));
    }
}

// ---------------------------------------------------------------------------
// b) ack -> signed checkpoint

fn bench_latency(args: &Args, summary: &mut Summary) {
    let secs = args.latency_secs;
    let batch = 4096usize;
    println!(
        "== b) ack -> stored signed checkpoint: {secs} s of sustained appends (batches of {batch}, \
         1 KiB), checkpointer every 250 ms"
    );
    let dir = fresh_dir(&args.dir, "latency");
    let store = Arc::new(Store::open(dir.path(), Keyring::random("bench")).expect("open store"));
    let signer = NoteSigner::generate(ORIGIN).expect("signer");
    let stop = Arc::new(AtomicBool::new(false));
    // (size, when stored) of every stored checkpoint, in order.
    let stored: Arc<Mutex<Vec<(u64, Instant, Duration)>>> = Arc::new(Mutex::new(Vec::new()));
    let ckpt = {
        let (store, stop, stored) = (store.clone(), stop.clone(), stored.clone());
        std::thread::spawn(move || {
            // Like services/ledger/src/checkpointer.rs: a 250 ms interval,
            // missed ticks delayed, sign only if the tree grew.
            let interval = Duration::from_millis(250);
            let mut next = Instant::now() + interval;
            let mut signed = None;
            loop {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                next = Instant::now().max(next) + interval;
                let done = stop.load(Ordering::Relaxed);
                let t = Instant::now();
                let (size, root) = store.head();
                if signed != Some(size) {
                    let cp = Checkpoint {
                        origin: ORIGIN.to_owned(),
                        size,
                        root,
                    };
                    let note = sign_note(&cp.to_text(), &signer).expect("sign");
                    store.put_checkpoint(&note).expect("put_checkpoint");
                    signed = Some(size);
                    stored
                        .lock()
                        .unwrap()
                        .push((size, Instant::now(), t.elapsed()));
                }
                if done {
                    break;
                }
            }
        })
    };
    let mut rng = StdRng::seed_from_u64(2);
    let pool: Vec<Vec<u8>> = (0..batch)
        .map(|_| {
            let mut b = vec![0u8; 1024];
            rng.fill_bytes(&mut b);
            b
        })
        .collect();
    // (end of batch = size after it, ack time, events)
    let mut acks: Vec<(u64, Instant, u64)> = Vec::new();
    let mut seq = 0u64;
    let start = Instant::now();
    let mut next_batch: Vec<NewEntry> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        if next_batch.is_empty() {
            next_batch = (0..batch)
                .map(|k| {
                    let s = seq + k as u64;
                    entry(bench_id(s, &mut rng), pool[k].clone(), s)
                })
                .collect();
        }
        let b = std::mem::take(&mut next_batch);
        let n = b.len() as u64;
        let out = store.append_batch(b).expect("append_batch");
        let acked = Instant::now();
        let end = out.last().map(|a| a.index + 1).unwrap_or(0);
        acks.push((end, acked, n));
        seq += n;
        // Prepare the next batch while "the bus fills up".
        next_batch = (0..batch)
            .map(|k| {
                let s = seq + k as u64;
                entry(bench_id(s, &mut rng), pool[k].clone(), s)
            })
            .collect();
    }
    let appended_secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    ckpt.join().expect("checkpointer");
    let stored = stored.lock().unwrap().clone();
    let mut per_event: Vec<(f64, u64)> = Vec::new();
    let mut j = 0;
    for &(end, t_ack, n) in &acks {
        while j < stored.len() && stored[j].0 < end {
            j += 1;
        }
        let Some(&(_, t_ck, _)) = stored.get(j) else {
            eprintln!("batch ending at {end} never got into a checkpoint");
            exit(1);
        };
        let ms = t_ck.saturating_duration_since(t_ack).as_secs_f64() * 1e3;
        per_event.push((ms, n));
    }
    per_event.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = per_event.iter().map(|x| x.1).sum();
    let weighted = |p: f64| {
        let want = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for &(ms, n) in &per_event {
            acc += n;
            if acc >= want {
                return ms;
            }
        }
        f64::NAN
    };
    let (p50, p99) = (weighted(50.0), weighted(99.0));
    let max = per_event.last().map(|x| x.0).unwrap_or(f64::NAN);
    let sign_store = stats(stored.iter().map(|s| s.2.as_secs_f64() * 1e3).collect());
    println!(
        "  {} events in {} batches ({:.0} events/s), {} checkpoints stored",
        total,
        acks.len(),
        total as f64 / appended_secs,
        stored.len()
    );
    println!(
        "  ack -> stored checkpoint, per event: p50 {p50:.1} ms  p99 {p99:.1} ms  max {max:.1} ms"
    );
    println!(
        "  checkpointer (head, sign, put_checkpoint incl. waiting for the writer lock): \
         p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        sign_store.p50, sign_store.p99, sign_store.max
    );
    summary.push(format!(
        "ack -> signed checkpoint: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms \
         (target p99 < {TARGET_CKPT_P99_MS:.0} ms: {})",
        verdict(p99 < TARGET_CKPT_P99_MS)
    ));
}

// ---------------------------------------------------------------------------
// c) proofs at scale

fn bench_proofs(args: &Args, summary: &mut Summary) {
    let n = args.entries;
    let batch = 4096u64;
    println!("== c) proofs at {n} entries (64-byte bodies, batches of {batch})");
    let dir = fresh_dir(&args.dir, "proofs");
    let mut rng = StdRng::seed_from_u64(3);
    let pool: Vec<Vec<u8>> = (0..batch)
        .map(|_| {
            let mut b = vec![0u8; 64];
            rng.fill_bytes(&mut b);
            b
        })
        .collect();
    let rss_start = rss_mib("VmRSS:");
    let mut rss_marks: Vec<(u64, f64)> = Vec::new();
    // (Not `if n >= M { M } else { n.max(1) }`: rustc 1.95.0 at opt-level >= 1
    // compiles that to `n.max(1)`.)
    let mark_every: u64 = 1_000_000;
    let build = Instant::now();
    {
        let store = Store::open(dir.path(), Keyring::random("bench")).expect("open store");
        let mut seq = 0u64;
        let mut last_report = Instant::now();
        while seq < n {
            let k = batch.min(n - seq);
            let b: Vec<NewEntry> = (0..k)
                .map(|i| {
                    let s = seq + i;
                    entry(bench_id(s, &mut rng), pool[i as usize].clone(), s)
                })
                .collect();
            store.append_batch(b).expect("append_batch");
            let before = seq;
            seq += k;
            if seq / mark_every > before / mark_every || seq == n {
                rss_marks.push((seq, rss_mib("VmRSS:")));
            }
            if last_report.elapsed() > Duration::from_secs(30) {
                last_report = Instant::now();
                println!(
                    "  .. {seq} entries, {:.0} s, RSS {:.0} MiB",
                    build.elapsed().as_secs_f64(),
                    rss_mib("VmRSS:")
                );
            }
        }
    }
    let build_secs = build.elapsed().as_secs_f64();
    let disk = dir_bytes(dir.path()) as f64 / 1048576.0;
    let wal = wal_bytes(dir.path()) as f64 / 1048576.0;
    println!(
        "  built in {build_secs:.0} s ({:.0} events/s), {disk:.0} MiB on disk, of which \
         {wal:.0} MiB write-ahead log",
        n as f64 / build_secs
    );
    println!("  RSS at start {rss_start:.0} MiB");
    for (size, rss) in &rss_marks {
        println!("  RSS at {size:>10} entries: {rss:>6.0} MiB");
    }
    let rss_at = |size: u64| {
        rss_marks
            .iter()
            .find(|m| m.0 >= size)
            .map(|m| m.1)
            .unwrap_or(f64::NAN)
    };
    let (rss_1m, rss_end) = (rss_at(1_000_000.min(n)), rss_at(n));

    // Reopen, as a restarted service would.
    let t = Instant::now();
    let store = Store::open(dir.path(), Keyring::random("bench")).expect("reopen store");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(store.size(), n);
    println!(
        "  reopened in {open_ms:.0} ms, RSS after reopen {:.0} MiB",
        rss_mib("VmRSS:")
    );
    // A reopen flushes what it replayed from the WAL, which can start
    // compactions; measured while they run, the proofs' tail is theirs
    // (one of two cores and the disk). `--busy` measures without waiting.
    if !args.busy {
        let t = Instant::now();
        while store.background_work().expect("store properties") > 0
            && t.elapsed() < Duration::from_secs(300)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "  waited {:.1} s for RocksDB's flushes and compactions to finish",
            t.elapsed().as_secs_f64()
        );
    }
    if let Some(reclaim) = proactive_reclaim() {
        println!("  note: {reclaim}");
    }
    let pairs = args.pairs;
    // The same kind of pairs through RocksDB alone (no tile cache): each
    // proof's tile from the page cache, or from the disk where the host
    // reclaimed it. Other pairs than below, so this pass warms nothing the
    // measured one uses.
    let no_cache = {
        store.set_tile_cache_limit(0);
        let mut rng = StdRng::seed_from_u64(6);
        // Warm-up as for the measured pass below (not measured): the
        // first lookups after open load index blocks.
        time_random_inclusions(&store, &mut rng, n, 1000);
        let read_before = io_read_bytes();
        let times = time_random_inclusions(&store, &mut rng, n, pairs);
        let read = (io_read_bytes() - read_before) as f64 / 1048576.0;
        store.set_tile_cache_limit(vigil_ledger::tile_cache::DEFAULT_LIMIT_BYTES);
        (stats(times), read)
    };
    let t = Instant::now();
    let warmed = store.warm_tile_cache().expect("warm the tile cache");
    println!(
        "  read {warmed} node tiles into the store's tile cache in {:.1} s (what a reopened \
         ledger does in the background); RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        rss_mib("VmRSS:")
    );
    let read_before = io_read_bytes();

    let mut rng = StdRng::seed_from_u64(4);
    let incl: Vec<(u64, u64)> = (0..pairs)
        .map(|_| {
            let size = rng.gen_range(1..=n);
            (rng.gen_range(0..size), size)
        })
        .collect();
    let cons: Vec<(u64, u64)> = (0..pairs)
        .map(|_| {
            let a = rng.gen_range(1..=n);
            let b = rng.gen_range(1..=n);
            (a.min(b), a.max(b))
        })
        .collect();
    // Warm-up (not measured): the first lookups after open load index blocks.
    for &(i, s) in incl.iter().take(1000) {
        store.inclusion_proof(i, s).expect("inclusion proof");
    }

    let (mut ig, mut iv, mut cg, mut cv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut proof_len = 0usize;
    for &(i, s) in &incl {
        let t = Instant::now();
        let proof = store.inclusion_proof(i, s).expect("inclusion proof");
        ig.push(t.elapsed().as_secs_f64() * 1e6);
        proof_len += proof.len();
        let leaf = leaf_hash(&store.leaf(i).expect("leaf").expect("leaf present"));
        let root = store.root_at(s).expect("root_at");
        let t = Instant::now();
        let ok = verify_inclusion(&leaf, i, s, &proof, &root);
        iv.push(t.elapsed().as_secs_f64() * 1e6);
        ok.expect("inclusion proof verifies");
    }
    let incl_avg_len = proof_len as f64 / pairs as f64;
    println!(
        "  read from the disk (not the page cache) during the inclusion proofs: {:.1} MiB",
        (io_read_bytes() - read_before) as f64 / 1048576.0
    );
    explain_tail(&store, &incl, &ig);
    proof_len = 0;
    for &(a, b) in &cons {
        let t = Instant::now();
        let proof = store.consistency_proof(a, b).expect("consistency proof");
        cg.push(t.elapsed().as_secs_f64() * 1e6);
        proof_len += proof.len();
        let (ra, rb) = (
            store.root_at(a).expect("root_at"),
            store.root_at(b).expect("root_at"),
        );
        let t = Instant::now();
        let ok = verify_consistency(a, b, &proof, &ra, &rb);
        cv.push(t.elapsed().as_secs_f64() * 1e6);
        ok.expect("consistency proof verifies");
    }
    let cons_avg_len = proof_len as f64 / pairs as f64;
    // root_at alone (what a checkpoint check or a tile server pays).
    let mut ra = Vec::new();
    for &(_, s) in incl.iter().take(pairs.min(2000)) {
        let t = Instant::now();
        store.root_at(s).expect("root_at");
        ra.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // Why generation costs what it does: node lookups per proof (tree
    // levels >= 8 come from memory, the bottom eight from one stored tile
    // value or the edge tile in memory).
    let counting = Counting {
        store: &store,
        gets: Cell::new(0),
    };
    let sample = pairs.min(2000);
    for &(i, s) in incl.iter().take(sample) {
        tree::inclusion_proof(&counting, i, s).expect("inclusion proof");
    }
    let incl_gets = counting.gets.replace(0) as f64 / sample as f64;
    for &(a, b) in cons.iter().take(sample) {
        tree::consistency_proof(&counting, a, b).expect("consistency proof");
    }
    let cons_gets = counting.gets.replace(0) as f64 / sample as f64;
    let rss_after = rss_mib("VmRSS:");
    let hwm = rss_mib("VmHWM:");
    // The page cache's best case is RocksDB's alone: no tile cache.
    store.set_tile_cache_limit(0);
    let (warm_ig, warm_cg) = generate_warm(&store, n, pairs);
    let (ig, iv, cg, cv, ra) = (stats(ig), stats(iv), stats(cg), stats(cv), stats(ra));
    println!("  {pairs} random pairs at size {n} (µs):");
    for (what, s, len) in [
        ("inclusion   generate", &ig, incl_avg_len),
        ("inclusion   verify  ", &iv, incl_avg_len),
        ("consistency generate", &cg, cons_avg_len),
        ("consistency verify  ", &cv, cons_avg_len),
    ] {
        println!(
            "    {what}  p50 {:>7.1}  p99 {:>7.1}  max {:>8.1}   (avg {len:.1} hashes)",
            s.p50, s.p99, s.max
        );
    }
    println!(
        "    root_at             p50 {:>7.1}  p99 {:>7.1}  max {:>8.1}",
        ra.p50, ra.p99, ra.max
    );
    println!(
        "  node lookups per proof: inclusion {incl_gets:.1}, consistency {cons_gets:.1} \
         (=> {:.1} / {:.1} µs per lookup at p50)",
        ig.p50 / incl_gets,
        cg.p50 / cons_gets
    );
    println!(
        "  again, tile cache off, with every stored tile read in the last seconds (what a host whose page \
         cache keeps the log's {:.0} MiB of node tiles sees), {pairs} other pairs (µs):",
        (n / 256) as f64 * 510.0 * 32.0 / 1048576.0
    );
    for (what, s) in [
        ("inclusion   generate", &warm_ig),
        ("consistency generate", &warm_cg),
    ] {
        println!(
            "    {what}  p50 {:>7.1}  p99 {:>7.1}  max {:>8.1}",
            s.p50, s.p99, s.max
        );
    }
    println!(
        "  without the tile cache (RocksDB and the page cache alone, before the warm-up), \
         {pairs} other pairs: inclusion generate p50 {:.1} p99 {:.1} max {:.1} µs, \
         {:.1} MiB read from the disk",
        no_cache.0.p50, no_cache.0.p99, no_cache.0.max, no_cache.1
    );
    println!("  RSS after the proofs {rss_after:.0} MiB, peak (VmHWM) {hwm:.0} MiB");
    drop(store);
    summary.push(format!(
        "proofs at {n}: inclusion gen p50/p99 {:.1}/{:.1} µs, verify {:.1}/{:.1} µs; \
         consistency gen {:.1}/{:.1} µs, verify {:.1}/{:.1} µs \
         (gen p99 < {TARGET_GEN_P99_US:.0} µs: {}; verify p99 < {TARGET_VERIFY_US:.0} µs: {})",
        ig.p50,
        ig.p99,
        iv.p50,
        iv.p99,
        cg.p50,
        cg.p99,
        cv.p50,
        cv.p99,
        verdict(ig.p99 < TARGET_GEN_P99_US && cg.p99 < TARGET_GEN_P99_US),
        verdict(iv.p99 < TARGET_VERIFY_US && cv.p99 < TARGET_VERIFY_US),
    ));
    summary.push(format!(
        "proofs at {n} without the tile cache (informational: a host that reclaims idle \
         page cache): inclusion gen p50/p99 {:.1}/{:.1} µs, {:.1} MiB read from the disk",
        no_cache.0.p50, no_cache.0.p99, no_cache.1
    ));
    summary.push(format!(
        "proofs at {n}, every node tile read just before (informational: the page cache's \
         best case): inclusion gen p50/p99 {:.1}/{:.1} µs; consistency gen {:.1}/{:.1} µs \
         (under {TARGET_GEN_P99_US:.0} µs: {})",
        warm_ig.p50,
        warm_ig.p99,
        warm_cg.p50,
        warm_cg.p99,
        verdict(warm_ig.p99 < TARGET_GEN_P99_US && warm_cg.p99 < TARGET_GEN_P99_US),
    ));
    summary.push(format!(
        "memory (the tile cache included: 64 bytes an entry up to its limit): RSS {rss_1m:.0} MiB \
         at {} entries, {rss_end:.0} MiB at {n}, {rss_after:.0} MiB after reopen + proofs; build {:.0} events/s (64-byte bodies), {disk:.0} MiB on disk ({wal:.0} MiB WAL), reopen {open_ms:.0} ms",
        1_000_000.min(n),
        n as f64 / build_secs
    ));
    let t = Instant::now();
    drop(dir);
    println!("  removed the log in {:.1} s", t.elapsed().as_secs_f64());
}

/// Generates `count` inclusion proofs for random (index, size) pairs of a
/// log of `n` entries; each one's time in µs.
fn time_random_inclusions(store: &Store, rng: &mut StdRng, n: u64, count: usize) -> Vec<f64> {
    (0..count)
        .map(|_| {
            let size = rng.gen_range(1..=n);
            let index = rng.gen_range(0..size);
            let t = Instant::now();
            store.inclusion_proof(index, size).expect("inclusion proof");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// Reads every stored bottom tile of the log once (about a second at 10M
/// entries), then times proof generation for `pairs` fresh random pairs:
/// the figures of a log whose node tiles are all in the page cache. (A
/// kernel that pages out what was not touched for a while, as this VM's
/// DAMON reclaim does, makes the first pass's tail disk reads.)
fn generate_warm(store: &Store, n: u64, pairs: usize) -> (Stats, Stats) {
    let t = Instant::now();
    for tile in 0..n / 256 {
        store.tile(0, tile, 256).expect("bottom tile");
    }
    println!(
        "  read all {} bottom tiles in {:.1} s",
        n / 256,
        t.elapsed().as_secs_f64()
    );
    let mut rng = StdRng::seed_from_u64(5);
    let (mut ig, mut cg) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        ig.extend(time_random_inclusions(store, &mut rng, n, 1));
        let (a, b) = (rng.gen_range(1..=n), rng.gen_range(1..=n));
        let t = Instant::now();
        store
            .consistency_proof(a.min(b), a.max(b))
            .expect("consistency proof");
        cg.push(t.elapsed().as_secs_f64() * 1e6);
    }
    (stats(ig), stats(cg))
}

/// What this machine's kernel does with page cache nobody touches: a DAMON
/// `pageout` scheme (a VM handing memory back to its host) evicts pages
/// idle for `aggr_us` × `age/min`. `None` when there is no such scheme.
fn proactive_reclaim() -> Option<String> {
    let ctx = Path::new("/sys/kernel/mm/damon/admin/kdamonds/0");
    let read = |p: &str| std::fs::read_to_string(ctx.join(p)).ok();
    if read("state")?.trim() != "on" {
        return None;
    }
    let scheme = "contexts/0/schemes/0";
    if read(&format!("{scheme}/action"))?.trim() != "pageout" {
        return None;
    }
    // A filter could spare the page cache (anonymous memory only).
    let filters = read(&format!("{scheme}/filters/nr_filters")).unwrap_or_default();
    if !matches!(filters.trim(), "" | "0") {
        return None;
    }
    let aggr_us: f64 = read("contexts/0/monitoring_attrs/intervals/aggr_us")?
        .trim()
        .parse()
        .ok()?;
    let age: f64 = read(&format!("{scheme}/access_pattern/age/min"))?
        .trim()
        .parse()
        .ok()?;
    Some(format!(
        "this kernel pages out memory, page cache included, left untouched for about {:.0} s \
         (DAMON pageout scheme)",
        aggr_us * age / 1e6
    ))
}

/// Why the slowest inclusion proofs are slow: the slowest 1% of `pairs`
/// (by `took`, µs) and as many from the middle are generated again, once
/// plain (is the same pair slow twice?) and once under RocksDB's perf
/// context (how many blocks each read, how many bytes, how long).
fn explain_tail(store: &Store, pairs: &[(u64, u64)], took: &[f64]) {
    use rocksdb::perf::{set_perf_stats, PerfContext, PerfMetric, PerfStatsLevel};
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| took[a].total_cmp(&took[b]));
    let k = (pairs.len() / 100).max(1);
    let mid = order.len() / 2;
    let groups = [
        ("slowest 1%", &order[order.len() - k..]),
        (
            "median   ",
            &order[mid.saturating_sub(k / 2)..(mid + k - k / 2).min(order.len())],
        ),
    ];
    let mut ctx = PerfContext::default();
    println!("  the tail, generated again ({k} pairs each; per proof):");
    for (name, group) in groups {
        let first: f64 = group.iter().map(|&i| took[i]).sum::<f64>() / k as f64;
        let again: f64 = group
            .iter()
            .map(|&i| {
                let t = Instant::now();
                store
                    .inclusion_proof(pairs[i].0, pairs[i].1)
                    .expect("inclusion proof");
                t.elapsed().as_secs_f64() * 1e6
            })
            .sum::<f64>()
            / k as f64;
        set_perf_stats(PerfStatsLevel::EnableTime);
        ctx.reset();
        for &i in group {
            store
                .inclusion_proof(pairs[i].0, pairs[i].1)
                .expect("inclusion proof");
        }
        set_perf_stats(PerfStatsLevel::Disable);
        let per = |m: PerfMetric| ctx.metric(m) as f64 / k as f64;
        println!(
            "    {name}  first {first:>6.1} µs, again {again:>6.1} µs; blocks read {:.2} ({:.0} bytes, {:.1} µs), \
             cache hits {:.2}, index reads {:.1} µs, from files {:.1} µs",
            per(PerfMetric::BlockReadCount),
            per(PerfMetric::BlockReadByte),
            per(PerfMetric::BlockReadTime) / 1e3,
            per(PerfMetric::BlockCacheHitCount),
            per(PerfMetric::ReadIndexBlockNanos) / 1e3,
            per(PerfMetric::GetFromOutputFilesTime) / 1e3,
        );
    }
}

/// Counts the node reads of proof generation.
struct Counting<'a> {
    store: &'a Store,
    gets: Cell<u64>,
}

impl NodeSource for Counting<'_> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        self.gets.set(self.gets.get() + 1);
        self.store.node(level, index)
    }
}

fn main() {
    let args = parse_args();
    println!(
        "vigil-ledger-bench{}: {} cpus, phases {:?}, work dir {}",
        if args.quick { " --quick" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.phases,
        args.dir.display()
    );
    let mut summary = Summary::new();
    for phase in args.phases.clone() {
        match phase.as_str() {
            "append" => bench_append(&args, &mut summary),
            "latency" => bench_latency(&args, &mut summary),
            "proofs" => bench_proofs(&args, &mut summary),
            _ => unreachable!(),
        }
    }
    println!("== summary");
    for line in summary {
        println!("RESULT {line}");
    }
}
