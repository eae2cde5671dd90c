//! Crash-test load generator for the ledger store (used by `tests/e2e/crash.rs`).
//!
//! Opens the `Store` in `--dir` with the body keyring in `--keys`, then appends
//! batches until it is killed (or `--events` fresh events were appended):
//!
//! - fresh events of this run get deterministic ids `(run, seq)` (see
//!   [`event_id`]) and deterministic ~1 KiB bodies ([`event_body`]), so the
//!   test can recompute what every acknowledged event must look like;
//! - every batch also carries ids acknowledged earlier in this run, ids of
//!   earlier runs (below their durable prefix, found on start), ids of the
//!   previous run just past its durable prefix (possibly never acknowledged,
//!   lost in the kill) and sometimes the same fresh id twice, so dedup is
//!   exercised within a batch and across crashes.
//!
//! Every result of `append_batch` is checked against an oracle (an id known
//! to the log keeps its index and is reported as a duplicate; a new id gets
//! the next index). After a batch returned `Ok` and passed the check, one line
//! goes to stdout and is flushed:
//!
//! ```text
//! ACK <run>:<first>-<last> [<run>:<first>-<last> ...]   ids (run, seq) now durable
//! CKPT <size> <root hex>                                 a signed checkpoint was stored
//! ```
//!
//! plus `SIGNER <verifier key>` and `READY <size>` at start. A broken
//! invariant prints `FAIL <reason>` and exits with status 3.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use vigil_ledger::{sign_note, Checkpoint, Keyring, NewEntry, Store};
use vigil_tests::crash_load::{event_body, event_id};

/// Name of the checkpoint signer (and of the log's origin).
const ORIGIN: &str = "crash.vigil.test/ledger";

struct Args {
    dir: PathBuf,
    keys: PathBuf,
    run: u64,
    seed: Option<u64>,
    max_batch: u64,
    events: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: vigil-ledger-load --dir DIR --keys FILE --run N \
         [--seed S] [--max-batch 500] [--events N]"
    );
    exit(2)
}

fn parse_args() -> Args {
    let mut dir = None;
    let mut keys = None;
    let mut run = None;
    let mut seed = None;
    let mut max_batch = 500;
    let mut events = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { usage() };
        let num = || value.parse::<u64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(&value)),
            "--keys" => keys = Some(PathBuf::from(&value)),
            "--run" => run = Some(num()),
            "--seed" => seed = Some(num()),
            "--max-batch" => max_batch = num().max(1),
            "--events" => events = Some(num()),
            _ => usage(),
        }
    }
    let (Some(dir), Some(keys), Some(run)) = (dir, keys, run) else {
        usage()
    };
    if run == 0 {
        eprintln!("--run starts at 1");
        exit(2);
    }
    Args {
        dir,
        keys,
        run,
        seed,
        max_batch,
        events,
    }
}

/// Writes one line to stdout and flushes it: the line is the acknowledgement.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        // Nobody is listening any more.
        exit(0);
    }
}

fn fail(msg: &str) -> ! {
    say(&format!("FAIL {msg}"));
    exit(3)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn id_name(id: &[u8; 16]) -> String {
    let run = u64::from_be_bytes(id[..8].try_into().expect("8 bytes"));
    let seq = u64::from_be_bytes(id[8..].try_into().expect("8 bytes"));
    format!("{run}:{seq}")
}

/// Length of the durable prefix of run `run`'s fresh ids: the least `seq`
/// that is not in the log, assuming (true before this run appends anything)
/// that run `run` appended its fresh ids in order, in all-or-nothing batches,
/// so what survived of them is a prefix. Later runs may have appended a few
/// ids past it; callers look every id up before relying on it.
fn durable_prefix(store: &Store, run: u64) -> u64 {
    let present = |seq: u64| match store.index_of(&event_id(run, seq)) {
        Ok(found) => found.is_some(),
        Err(e) => fail(&format!("index_of: {e}")),
    };
    if !present(0) {
        return 0;
    }
    // Invariant: present(lo), !present(hi).
    let mut lo = 0u64;
    let mut hi = 1u64;
    while present(hi) {
        lo = hi;
        hi *= 2;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if present(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Collapses a sorted list of (run, seq) into `run:first-last` ranges.
fn ranges(mut ids: Vec<(u64, u64)>) -> String {
    ids.sort_unstable();
    ids.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let (run, first) = ids[i];
        let mut last = first;
        while i + 1 < ids.len() && ids[i + 1] == (run, last + 1) {
            i += 1;
            last += 1;
        }
        out.push_str(&format!(" {run}:{first}-{last}"));
        i += 1;
    }
    out
}

fn checkpointer(store: Arc<Store>, seed: u64, stop: Arc<AtomicBool>) {
    let signer = store
        .get_or_create_signer(ORIGIN)
        .unwrap_or_else(|e| fail(&format!("signer: {e}")));
    say(&format!("SIGNER {}", signer.verifier_key_text()));
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC4EC_4B01);
    let mut signed = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..=50)));
        let (size, root) = store.head();
        if signed == Some(size) {
            continue;
        }
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size,
            root,
        };
        let note = sign_note(&checkpoint.to_text(), &signer)
            .unwrap_or_else(|e| fail(&format!("sign: {e}")));
        match store.put_checkpoint(&note) {
            Ok(()) => {
                signed = Some(size);
                say(&format!("CKPT {size} {}", hex(&root)));
            }
            Err(e) => fail(&format!("put_checkpoint at size {size}: {e}")),
        }
    }
}

fn main() {
    let args = parse_args();
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let key_text = std::fs::read_to_string(&args.keys)
        .unwrap_or_else(|e| fail(&format!("read {}: {e}", args.keys.display())));
    let keyring = Keyring::parse(&key_text).unwrap_or_else(|e| fail(&format!("keyring: {e}")));
    let store =
        Arc::new(Store::open(&args.dir, keyring).unwrap_or_else(|e| fail(&format!("open: {e}"))));
    let run = args.run;
    // Durable prefixes of every earlier run (before this run appends anything).
    let prefixes: Vec<u64> = (1..run).map(|r| durable_prefix(&store, r)).collect();
    say(&format!("READY {} seed={seed}", store.size()));

    let stop = Arc::new(AtomicBool::new(false));
    let ckpt = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || checkpointer(store, seed, stop))
    };

    // Indexes of every id this run has seen in the log (the oracle).
    let mut known: HashMap<[u8; 16], u64> = HashMap::new();
    let mut next_seq = 0u64;
    let mut batch_no = 0u64;
    loop {
        if args.events.is_some_and(|n| next_seq >= n) {
            break;
        }
        batch_no += 1;
        let fresh = rng.gen_range(1..=args.max_batch);
        let mut ids: Vec<(u64, u64)> = (next_seq..next_seq + fresh).map(|s| (run, s)).collect();
        // Ids acknowledged earlier in this run.
        if next_seq > 0 {
            for _ in 0..rng.gen_range(0..=8) {
                ids.push((run, rng.gen_range(0..next_seq)));
            }
        }
        // Ids of earlier runs that were durable when this run started.
        for _ in 0..rng.gen_range(0..=4) {
            if prefixes.is_empty() {
                break;
            }
            let r = rng.gen_range(0..prefixes.len());
            if prefixes[r] > 0 {
                ids.push((r as u64 + 1, rng.gen_range(0..prefixes[r])));
            }
        }
        // The previous run's tail: acknowledged or not, maybe lost in the kill.
        if let Some(&p) = prefixes.last() {
            if batch_no <= 30 {
                for _ in 0..rng.gen_range(1..=16) {
                    let lo = p.saturating_sub(50);
                    ids.push((run - 1, rng.gen_range(lo..p + 600)));
                }
            }
        }
        // The same fresh id twice in one batch.
        if rng.gen_bool(0.2) {
            ids.push((run, rng.gen_range(next_seq..next_seq + fresh)));
        }
        // Mix the order (fresh ids too), so duplicates sit anywhere.
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.gen_range(0..=i));
        }

        // Oracle: the index each id has now, if any.
        let mut before: Vec<Option<u64>> = Vec::with_capacity(ids.len());
        for &(r, s) in &ids {
            let id = event_id(r, s);
            let idx = match known.get(&id) {
                Some(&i) => Some(i),
                None => store
                    .index_of(&id)
                    .unwrap_or_else(|e| fail(&format!("index_of: {e}"))),
            };
            before.push(idx);
        }
        let size_before = store.size();
        let entries: Vec<NewEntry> = ids
            .iter()
            .map(|&(r, s)| NewEntry {
                event_id: event_id(r, s),
                time_unix_nanos: now_nanos(),
                kind: "crash.load".to_owned(),
                body: event_body(r, s),
                session_id: format!("run-{run}"),
                seq: s,
                subject: "load".to_owned(),
            })
            .collect();
        let appended = store
            .append_batch(entries)
            .unwrap_or_else(|e| fail(&format!("append_batch (batch {batch_no}): {e}")));
        if appended.len() != ids.len() {
            fail(&format!(
                "append_batch returned {} results for {} entries",
                appended.len(),
                ids.len()
            ));
        }
        let mut next_index = size_before;
        for ((&(r, s), known_before), got) in ids.iter().zip(&before).zip(&appended) {
            let id = event_id(r, s);
            let expect = match (known_before, known.get(&id)) {
                (Some(i), _) => Some(*i),
                // First seen earlier in this batch.
                (None, Some(&i)) if i >= size_before => Some(i),
                _ => None,
            };
            match expect {
                Some(i) if got.duplicate && got.index == i => {}
                Some(i) => fail(&format!(
                    "event {} at index {i} came back as {got:?}",
                    id_name(&id)
                )),
                None if !got.duplicate && got.index == next_index => next_index += 1,
                None => fail(&format!(
                    "new event {} should get index {next_index}, got {got:?}",
                    id_name(&id)
                )),
            }
            known.insert(id, got.index);
        }
        let size_after = store.size();
        if size_after != next_index {
            fail(&format!(
                "size after the batch is {size_after}, expected {next_index}"
            ));
        }
        next_seq += fresh;
        say(&format!("ACK{}", ranges(ids)));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = ckpt.join();
}
