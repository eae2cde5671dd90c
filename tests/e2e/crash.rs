//! Crash safety of the ledger store, tested with real `kill -9`s.
//!
//! Round after round on the same directory: start `vigil-ledger-load`
//! (sustained batched appends with dedup traffic, plus a checkpointer
//! thread), SIGKILL it a random 100..600 ms into its appends (one round
//! instead kills it while it is still opening the store), then open the
//! store in this process and check that
//!
//! - it opens, and the size never went backwards;
//! - every event the load acknowledged (an `ACK` line: printed only after
//!   `append_batch` returned `Ok`) is in the log below the size, at the same
//!   index in every later round, with its leaf naming it;
//! - no event id appears twice among the leaves, and every leaf's id maps
//!   back to its index (`index_of`); no leaf exists at `size`;
//! - bodies are present, open, match their leaf's commitment and are the
//!   bytes the load generated for that id (each round: every leaf new since
//!   the last round and a sample of the older ones; the last round: all);
//! - the stored node hashes agree with the leaves: the root of every prefix
//!   recomputed from the leaf hashes alone equals the root of every
//!   checkpoint ever published (`CKPT`, printed only after `put_checkpoint`
//!   returned `Ok`), of the stored checkpoint and of the current tree;
//! - every published checkpoint, the stored one and every earlier round's
//!   final head has `root_at(size) == root` and a consistency proof to the
//!   current tree that verifies;
//! - the stored checkpoint is signed by the load's key and is not older than
//!   any checkpoint published before it.
//!
//! The load itself checks every `append_batch` result against an oracle
//! (known ids keep their index and come back as duplicates, new ones get
//! the next index) and prints `FAIL` otherwise, which fails the test.
//!
//! `kill -9` kills the process, not the machine: data written to the OS but
//! not yet fsynced survives it. This test covers atomicity and recovery of
//! the store across process crashes; losing power is another test.
//!
//! Set `VIGIL_CRASH_SEED` to reuse a run's kill times and load seeds (the
//! timing of the appends still varies, so a replay is not exact).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use vigil_ledger::{
    body_commitment, empty_root, leaf_hash, open_note, verify_consistency, BodyLookup, Checkpoint,
    Frontier, Hash, Keyring, LeafRecord, NoteVerifier, Store,
};
use vigil_tests::crash_load::{event_body, event_id};

const ROUNDS: u64 = 8;
/// The round killed while the store is still opening.
const RECOVERY_ROUND: u64 = 5;

fn split_id(id: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_be_bytes(id[..8].try_into().unwrap()),
        u64::from_be_bytes(id[8..].try_into().unwrap()),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What one run of the load printed before it was killed.
#[derive(Default)]
struct RunOutput {
    acked: Vec<(u64, u64)>,
    ack_lines: usize,
    checkpoints: Vec<(u64, Hash)>,
    verifier: Option<String>,
}

/// Parses the complete lines the load printed.
fn parse_output(round: u64, lines: &[String], stderr: &str) -> RunOutput {
    let mut r = RunOutput::default();
    for line in lines {
        let mut words = line.split(' ');
        match words.next() {
            Some("READY") => {}
            Some("SIGNER") => r.verifier = words.next().map(str::to_owned),
            Some("ACK") => {
                r.ack_lines += 1;
                for range in words {
                    let parsed = range.split_once(':').and_then(|(run, span)| {
                        let (a, b) = span.split_once('-')?;
                        Some((run.parse().ok()?, a.parse().ok()?, b.parse().ok()?))
                    });
                    let Some((run, first, last)) = parsed else {
                        panic!("round {round}: bad ACK range {range:?} in {line:?}");
                    };
                    r.acked.extend((first..=last).map(|s: u64| (run, s)));
                }
            }
            Some("CKPT") => {
                let parsed = (|| {
                    let size = words.next()?.parse().ok()?;
                    let root = parse_hash(words.next()?)?;
                    Some((size, root))
                })();
                let Some(cp) = parsed else {
                    panic!("round {round}: bad CKPT line {line:?}");
                };
                r.checkpoints.push(cp);
            }
            Some("FAIL") => panic!("round {round}: the load found a broken invariant: {line}"),
            _ => panic!("round {round}: unexpected output {line:?}\nstderr:\n{stderr}"),
        }
    }
    r
}

/// Everything learnt from earlier rounds, checked again in every later one.
#[derive(Default)]
struct History {
    /// Acknowledged (run, seq) -> index it had when first verified.
    acked: HashMap<(u64, u64), Option<u64>>,
    /// Published checkpoints: (size, root, round that published it).
    checkpoints: Vec<(u64, Hash, u64)>,
    /// Head verified at the end of each round: (size, root, round).
    heads: Vec<(u64, Hash, u64)>,
    verifiers: Vec<String>,
    /// Largest checkpoint size published so far.
    max_published: u64,
}

/// Checks the store after a crash; returns its size. Bodies are opened for
/// every leaf that is new since the last round, for a sample of the older
/// ones, and for all of them when `all_bodies`.
fn verify_store(
    dir: &Path,
    keys: &str,
    round: u64,
    all_bodies: bool,
    hist: &mut History,
) -> (u64, usize) {
    let store = Store::open(dir, Keyring::parse(keys).unwrap())
        .unwrap_or_else(|e| panic!("round {round}: the store does not open after kill -9: {e}"));
    let (size, root) = store.head();
    if let Some(&(prev, _, r)) = hist.heads.last() {
        assert!(
            size >= prev,
            "round {round}: size went back from {prev} (verified after round {r}) to {size}"
        );
    }

    // Every leaf: unique id, id -> index, body present and matching.
    let verified = hist.heads.last().map_or(0, |h| h.0);
    let stride = (verified / 256).max(1);
    let mut bodies_checked = 0;
    let mut ids: HashMap<[u8; 16], u64> = HashMap::with_capacity(size as usize);
    let mut leaf_hashes: Vec<Hash> = Vec::with_capacity(size as usize);
    for i in 0..size {
        let data = store
            .leaf(i)
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: leaf {i} missing below size {size}"));
        let leaf = LeafRecord::decode(&data)
            .unwrap_or_else(|e| panic!("round {round}: leaf {i} does not decode: {e}"));
        let (run, seq) = split_id(&leaf.event_id);
        if let Some(first) = ids.insert(leaf.event_id, i) {
            panic!("round {round}: event {run}:{seq} appears twice, at leaves {first} and {i}");
        }
        let mapped = store.index_of(&leaf.event_id).unwrap();
        assert_eq!(
            mapped,
            Some(i),
            "round {round}: leaf {i} holds event {run}:{seq}, but index_of says {mapped:?}"
        );
        if !(all_bodies || i >= verified || i % stride == round % stride) {
            leaf_hashes.push(leaf_hash(&data));
            continue;
        }
        bodies_checked += 1;
        match store.body(i) {
            Ok(BodyLookup::Present { salt, body }) => {
                assert!(
                    body_commitment(&salt, &body) == leaf.commitment,
                    "round {round}: body of leaf {i} (event {run}:{seq}) does not match its commitment"
                );
                assert!(
                    body == event_body(run, seq),
                    "round {round}: body of leaf {i} (event {run}:{seq}) is not the body the load sent"
                );
            }
            other => panic!("round {round}: body of leaf {i} (event {run}:{seq}): {other:?}"),
        }
        leaf_hashes.push(leaf_hash(&data));
    }
    assert_eq!(
        store.leaf(size).unwrap(),
        None,
        "round {round}: a leaf exists at index {size} == size"
    );

    // Every acknowledged event is there, at the index it always had.
    for (&(run, seq), first_index) in hist.acked.iter_mut() {
        let id = event_id(run, seq);
        let index = store.index_of(&id).unwrap();
        let Some(index) = index else {
            panic!("round {round}: acknowledged event {run}:{seq} is missing (size {size})");
        };
        assert!(
            index < size,
            "round {round}: acknowledged event {run}:{seq} at index {index} >= size {size}"
        );
        assert_eq!(
            ids.get(&id),
            Some(&index),
            "round {round}: acknowledged event {run}:{seq}: index_of says {index}, the leaves disagree"
        );
        match first_index {
            Some(was) => assert_eq!(
                *was, index,
                "round {round}: acknowledged event {run}:{seq} moved from index {was} to {index}"
            ),
            None => *first_index = Some(index),
        }
    }

    // The stored checkpoint: signed by one of the load's keys, not older than
    // anything published.
    let stored = store.checkpoint().unwrap().map(|note| {
        let text = hist
            .verifiers
            .iter()
            .find_map(|v| open_note(&note, &NoteVerifier::from_vkey_text(v).unwrap()).ok())
            .unwrap_or_else(|| {
                panic!("round {round}: the stored checkpoint is not signed by the load's key")
            });
        let cp = Checkpoint::parse(&text).unwrap();
        assert!(
            cp.size >= hist.max_published,
            "round {round}: stored checkpoint (size {}) is older than a published one (size {})",
            cp.size,
            hist.max_published
        );
        (cp.size, cp.root)
    });

    // The tree: every head anyone was shown must be a prefix of this one.
    let mut claims: Vec<(u64, Hash, String)> = Vec::new();
    for &(s, r, from) in &hist.checkpoints {
        claims.push((s, r, format!("checkpoint published in round {from}")));
    }
    for &(s, r, from) in &hist.heads {
        claims.push((s, r, format!("head verified after round {from}")));
    }
    if let Some((s, r)) = stored {
        claims.push((s, r, "stored checkpoint".into()));
    }
    claims.push((size, root, "current head".into()));
    for (s, r, what) in &claims {
        assert!(
            *s <= size,
            "round {round}: {what} has size {s}, beyond the tree ({size})"
        );
        let at = store.root_at(*s).unwrap();
        assert!(
            at == *r,
            "round {round}: {what}: root_at({s}) = {} but it said {}",
            hex(&at),
            hex(r)
        );
        if *s == 0 {
            assert!(
                *r == empty_root(),
                "round {round}: {what}: size 0, wrong root"
            );
            continue;
        }
        let proof = store.consistency_proof(*s, size).unwrap();
        verify_consistency(*s, size, &proof, r, &root).unwrap_or_else(|e| {
            panic!("round {round}: {what} (size {s}) is not consistent with size {size}: {e}")
        });
    }
    // And independently of the stored node hashes: recompute every prefix
    // root from the leaves.
    let mut by_size: HashMap<u64, Vec<(Hash, String)>> = HashMap::new();
    for (s, r, what) in claims {
        by_size.entry(s).or_default().push((r, what));
    }
    let mut frontier = Frontier::new();
    let check_prefix = |frontier: &Frontier| {
        for (r, what) in by_size.get(&frontier.size()).into_iter().flatten() {
            assert!(
                frontier.root() == *r,
                "round {round}: {what}: the leaves' root at size {} is {}, not {}",
                frontier.size(),
                hex(&frontier.root()),
                hex(r)
            );
        }
    };
    check_prefix(&frontier);
    for h in leaf_hashes {
        frontier.push(h);
        check_prefix(&frontier);
    }

    hist.heads.push((size, root, round));
    (size, bodies_checked)
}

#[test]
fn kill_9_during_sustained_appends_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let seed = std::env::var("VIGIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("VIGIL_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ledger");
    let keys_path = work.path().join("body.keys");
    let keys = Keyring::generate_line("crash-k1");
    std::fs::write(&keys_path, &keys).unwrap();
    let load = env!("CARGO_BIN_EXE_vigil-ledger-load");

    let mut hist = History::default();
    let (mut total_acks, mut total_ack_lines, mut total_ckpts) = (0usize, 0usize, 0usize);
    let mut size = 0;
    // How long the last start took until READY.
    let mut open_time = Duration::from_millis(50);
    for round in 1..=ROUNDS {
        let run_for = Duration::from_millis(rng.gen_range(100..=600));
        let load_seed: u64 = rng.gen();
        let mut child = Command::new(load)
            .arg("--dir")
            .arg(&dir)
            .arg("--keys")
            .arg(&keys_path)
            .args([
                "--run",
                &round.to_string(),
                "--seed",
                &load_seed.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vigil-ledger-load");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        // Complete lines only: a line cut short by the kill was never
        // delivered, so it acknowledges nothing.
        let (tx, rx) = mpsc::channel::<String>();
        let out_reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                if !line.ends_with('\n') || tx.send(line.trim_end().to_owned()).is_err() {
                    break;
                }
                line.clear();
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            text
        });

        // When to kill: a random 100..600 ms into sustained appends (counted
        // from READY, since opening a store is slow in a debug build on a
        // loaded machine), but not before one batch was acknowledged in this
        // round; in the recovery round, at a random time within how long the
        // last open took, while RocksDB is still opening and replaying its WAL.
        let spawned = Instant::now();
        let recovery = round == RECOVERY_ROUND;
        let mut kill_at = recovery.then(|| spawned + rng.gen_range(Duration::ZERO..=open_time));
        let mut ready_after = None;
        let mut lines: Vec<String> = Vec::new();
        let mut acked_this_round = false;
        let mut exited_early = false;
        loop {
            let now = Instant::now();
            if let Some(at) = kill_at {
                if now >= at {
                    if acked_this_round || recovery {
                        break;
                    }
                    // Nothing acknowledged yet: kill just after the first ACK.
                    kill_at = None;
                }
            }
            assert!(
                now < spawned + Duration::from_secs(60),
                "round {round}: no progress in 60 s; output so far:\n{}",
                lines.join("\n")
            );
            let wait = kill_at.map_or(Duration::from_millis(100), |at| at - now);
            match rx.recv_timeout(wait) {
                Ok(line) => {
                    if line.starts_with("READY") {
                        ready_after = Some(spawned.elapsed());
                        if !recovery {
                            open_time = spawned.elapsed();
                            kill_at = Some(Instant::now() + run_for);
                        }
                    }
                    if line.starts_with("ACK") && !acked_this_round {
                        acked_this_round = true;
                        if kill_at.is_none() {
                            kill_at =
                                Some(Instant::now() + Duration::from_millis(rng.gen_range(0..100)));
                        }
                    }
                    lines.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    exited_early = true;
                    break;
                }
            }
        }
        let ran_for = spawned.elapsed();
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        out_reader.join().unwrap();
        lines.extend(rx.try_iter());
        let err = err_reader.join().unwrap();
        let output = parse_output(round, &lines, &err);
        assert!(
            !exited_early,
            "round {round}: the load exited by itself ({status}):\n{}\n{err}",
            lines.join("\n")
        );

        for &id in &output.acked {
            hist.acked.entry(id).or_insert(None);
        }
        for &(s, r) in &output.checkpoints {
            hist.checkpoints.push((s, r, round));
            hist.max_published = hist.max_published.max(s);
        }
        if let Some(v) = output.verifier {
            if !hist.verifiers.contains(&v) {
                hist.verifiers.push(v);
            }
        }
        total_acks += output.acked.len();
        total_ack_lines += output.ack_lines;
        total_ckpts += output.checkpoints.len();

        let check = Instant::now();
        let bodies;
        (size, bodies) = verify_store(&dir, &keys, round, round == ROUNDS, &mut hist);
        println!(
            "round {round}: killed {} ms after start{}, {}; {} batches acked ({} events), \
             {} checkpoints published; log size {size}, verified ({bodies} bodies) in {} ms",
            ran_for.as_millis(),
            if recovery {
                " (in the recovery round)"
            } else {
                ""
            },
            match ready_after {
                Some(t) => format!("READY after {} ms", t.as_millis()),
                None => "before READY".to_owned(),
            },
            output.ack_lines,
            output.acked.len(),
            output.checkpoints.len(),
            check.elapsed().as_millis()
        );
    }
    let distinct: HashSet<_> = hist.acked.keys().collect();
    println!(
        "crash test: {ROUNDS} rounds of kill -9, {total_ack_lines} acknowledged batches, \
         {total_acks} acknowledged events ({} distinct), {total_ckpts} published checkpoints, \
         {size} leaves, all checked in {:.1} s",
        distinct.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        total_ack_lines as u64 >= ROUNDS - 1,
        "too little load to mean anything: {total_ack_lines} acknowledged batches in {ROUNDS} rounds"
    );
    assert!(total_ckpts > 0, "no checkpoint was ever published");
}
