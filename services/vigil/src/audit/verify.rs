//! `vigil audit verify`: the whole log, end to end, trusting only the
//! verifier key (and, with `--state`, the last checkpoint this auditor
//! already verified).
//!
//! Checks, in order: the checkpoint's signature; that it does not roll back
//! or fork the trusted one (the recomputed tree at the trusted size has the
//! trusted root, and the ledger's consistency proof verifies); the whole
//! tree recomputed from every entry bundle equals the checkpoint's root;
//! every level-0 hash tile agrees with the entries; every body still
//! present matches its leaf's commitment and the event decoded from it
//! matches the leaf's id, time and kind; bodies are missing only where a
//! retention run recorded in the log pruned them (see [`super::pruning`]),
//! and the minimum index is the one those runs prove. Every problem names
//! the entry it concerns.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use vigil_ledger::tile::tile_path;
use vigil_ledger::{
    body_commitment, leaf_hash, stream_position, verify_consistency, Checkpoint, Frontier, Hash,
    LeafRecord, TILE_WIDTH,
};
use vigil_ledger_service::http::BodyRecord;
use vigil_proto::events::Event;

use vigil_ledger_service::retention::RetentionPeriod;

use super::bundle::END_KINDS;
use super::client::{verifier, Client, KeyChain, LeafFetcher, WitnessPolicy};
use super::pruning::{self, ProvenRun, ProvenRuns};
pub use super::report::Report;
use crate::timefmt::rfc3339;

/// The checkpoint an auditor verified last, kept between runs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TrustedState {
    pub origin: String,
    pub size: u64,
    /// Base64 root hash.
    pub root: String,
    /// The signed note itself, as evidence.
    pub checkpoint: String,
    pub verified_at: String,
}

impl TrustedState {
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("the state file {} is not valid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn root(&self) -> anyhow::Result<Hash> {
        B64.decode(&self.root)
            .ok()
            .and_then(|v| v.try_into().ok())
            .context("the state file's root is not 32 bytes of base64")
    }

    /// Written to a temporary file and renamed, so a crash never leaves half a state.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
    }
}

/// Runs every check; with `state`, also against (and then updating) the
/// trusted state file. The state is only advanced when every check passed.
/// `expected_retention`: the period the auditor expects evidence to be
/// kept; runs that pruned younger entries are warned about.
pub fn verify(
    client: &Client,
    vkey: &str,
    state: Option<&Path>,
    expected_retention: &RetentionPeriod,
    witnesses: &WitnessPolicy,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let verifier = verifier(vkey)?;
    let trusted = match state {
        Some(p) => TrustedState::load(p)?,
        None => None,
    };

    let note = client.checkpoint_note()?;
    let chain = match KeyChain::follow(vkey, &client.key_rotations()?) {
        Ok(c) => c,
        Err(e) => {
            report.problem(e);
            return Ok(report);
        }
    };
    for line in chain.describe() {
        report.ok(line);
    }
    let checkpoint = match chain.open(&note) {
        Ok(c) => c,
        Err(e) => {
            report.problem(e);
            return Ok(report);
        }
    };
    report.ok(format!(
        "checkpoint signed by {} (trusted key id {:08x}{}): origin {}, size {}, root {}",
        verifier.name(),
        verifier.key_id(),
        if chain.rotations.is_empty() {
            String::new()
        } else {
            format!(
                ", rotated to {:08x}",
                chain.epochs.last().expect("trusted key").key.key_id()
            )
        },
        checkpoint.origin,
        checkpoint.size,
        B64.encode(checkpoint.root)
    ));
    witnesses.check(&note, &mut report);
    let trusted_root = match &trusted {
        Some(t) => Some((t.size, t.root()?)),
        None => None,
    };
    if let Some(t) = &trusted {
        if t.origin != checkpoint.origin {
            report.problem(format!(
                "checkpoint origin {:?} is not the trusted log's origin {:?}",
                checkpoint.origin, t.origin
            ));
            return Ok(report);
        }
        if checkpoint.size < t.size {
            report.problem(format!(
                "checkpoint size {} is smaller than the trusted size {}: the log was rolled back or truncated",
                checkpoint.size, t.size
            ));
            return Ok(report);
        }
    }

    // Every rotation pins the log at its size: the recomputed tree must
    // have that root there.
    let mut pins: Vec<(u64, Hash, String)> = chain
        .rotations
        .iter()
        .map(|r| {
            (
                r.checkpoint.size,
                r.checkpoint.root,
                format!("the key rotation at size {}", r.checkpoint.size),
            )
        })
        .collect();
    if let Some((size, root)) = trusted_root {
        pins.push((size, root, "the trusted".into()));
    }
    let leaves = recompute_tree(client, &checkpoint, &pins, &mut report)?;
    if let Some((size, root)) = trusted_root {
        check_consistency_proof(client, size, &root, &checkpoint, &mut report);
    }
    check_bodies(client, &leaves, expected_retention, &mut report)?;

    if let (Some(path), true) = (state, report.is_clean()) {
        TrustedState {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: B64.encode(checkpoint.root),
            checkpoint: note,
            verified_at: rfc3339(crate::timefmt::now_unix_nanos()),
        }
        .save(path)?;
        report.ok(format!(
            "trusted state advanced to size {} in {}",
            checkpoint.size,
            path.display()
        ));
    }
    Ok(report)
}

/// Recomputes the tree from every entry bundle and compares it with the
/// checkpoint, the trusted root and the level-0 tiles.
fn recompute_tree(
    client: &Client,
    checkpoint: &Checkpoint,
    pins: &[(u64, Hash, String)],
    report: &mut Report,
) -> anyhow::Result<Vec<Option<LeafRecord>>> {
    let size = checkpoint.size;
    let mut fetcher = LeafFetcher::new(client, size);
    let mut frontier = Frontier::new();
    let mut leaves: Vec<Option<LeafRecord>> = Vec::with_capacity(size as usize);
    let mut first_seen: HashMap<[u8; 16], u64> = HashMap::new();
    let mut tile_mismatches = 0u64;
    let mut previous_time = i64::MIN;
    let mut out_of_order = 0u64;
    for n in 0..size.div_ceil(TILE_WIDTH) {
        let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
        let tile = client.get_bytes(&tile_path(0, n, width))?;
        for i in 0..width {
            let index = n * TILE_WIDTH + i;
            let data = fetcher.leaf(index)?;
            let hash = leaf_hash(&data);
            frontier.push(hash);
            for (tsize, troot, what) in pins {
                if frontier.size() == *tsize {
                    if frontier.root() == *troot {
                        report.ok(format!(
                            "the first {tsize} entries still have {what} root (no entry before it changed, moved or vanished)"
                        ));
                    } else {
                        report.problem(format!(
                            "the first {tsize} entries no longer have {what} root: an entry at or below index {} was altered, removed or reordered since {what} checkpoint",
                            tsize - 1
                        ));
                    }
                }
            }
            let at = (i * 32) as usize;
            if tile.get(at..at + 32) != Some(&hash[..]) {
                tile_mismatches += 1;
                report.problem(format!(
                    "entry {index}: the level-0 tile hash differs from the entry's leaf hash (leaf or tile altered)"
                ));
            }
            match LeafRecord::decode(&data) {
                Ok(r) => {
                    if let Some(first) = first_seen.insert(r.event_id, index) {
                        report.problem(format!(
                            "entry {index}: event id {} already appears at entry {first}",
                            uuid::Uuid::from_bytes(r.event_id)
                        ));
                    }
                    if r.time_unix_nanos < previous_time {
                        out_of_order += 1;
                    }
                    previous_time = previous_time.max(r.time_unix_nanos);
                    leaves.push(Some(r));
                }
                Err(e) => {
                    report.problem(format!("entry {index}: leaf does not decode: {e}"));
                    leaves.push(None);
                }
            }
        }
        drop(fetcher.take_bundle(n));
    }
    let root: Hash = frontier.root();
    if root == checkpoint.root {
        report.ok(format!(
            "tree recomputed from all {size} entries: root matches the signed checkpoint"
        ));
    } else {
        report.problem(format!(
            "tree recomputed from the {size} entries has root {}, the signed checkpoint says {}: entries were altered, removed or reordered",
            B64.encode(root),
            B64.encode(checkpoint.root)
        ));
    }
    if tile_mismatches == 0 {
        report.ok(format!("level-0 hash tiles agree with all {size} entries"));
    }
    if out_of_order > 0 {
        // Concurrent sessions may append a little out of time order; worth
        // knowing, not a failure.
        report.ok(format!(
            "{out_of_order} entries are older than an entry before them (concurrent appends)"
        ));
    }
    Ok(leaves)
}

fn check_consistency_proof(
    client: &Client,
    trusted_size: u64,
    trusted_root: &Hash,
    checkpoint: &Checkpoint,
    report: &mut Report,
) {
    if trusted_size == 0 || trusted_size == checkpoint.size {
        return;
    }
    match client.consistency_proof(trusted_size, checkpoint.size) {
        Ok(proof) => match verify_consistency(
            trusted_size,
            checkpoint.size,
            &proof,
            trusted_root,
            &checkpoint.root,
        ) {
            Ok(()) => report.ok(format!(
                "the ledger's consistency proof from trusted size {trusted_size} to {} verifies",
                checkpoint.size
            )),
            Err(e) => report.problem(format!(
                "consistency proof from trusted size {trusted_size} to {}: {e}",
                checkpoint.size
            )),
        },
        Err(e) => report.problem(format!("cannot get a consistency proof: {e:#}")),
    }
}

/// The retention runs the log proves: every `RetentionPruned` entry's body
/// (never pruned) checked against its leaf. The API's word on what was
/// pruned is not used.
fn proven_runs(
    client: &Client,
    leaves: &[Option<LeafRecord>],
    report: &mut Report,
) -> anyhow::Result<ProvenRuns> {
    let mut runs = Vec::new();
    for (index, leaf) in leaves.iter().enumerate() {
        let Some(leaf) = leaf.as_ref().filter(|l| l.kind == pruning::RECORD_KIND) else {
            continue;
        };
        let index = index as u64;
        let record = client
            .bodies(index, 1)?
            .into_iter()
            .find(|b| b.index == index);
        let event = match record.as_ref().map(classify) {
            Some(Served::Body { salt, body }) => check_body(Some(leaf), &salt, &body),
            Some(Served::Pruned) => Err(
                "the record of a retention run has lost its body: which bodies may be missing cannot be checked".into(),
            ),
            Some(Served::Error(e)) => Err(e),
            None => Err("the ledger served no body for this retention record".into()),
        };
        match event.map(|e| ProvenRun::from_event(index, &e)) {
            Ok(Some(run)) => runs.push(run),
            Ok(None) => report.problem(format!(
                "entry {index}: a {} leaf whose event is of another kind",
                pruning::RECORD_KIND
            )),
            Err(why) => report.problem(format!("entry {index}: {why}")),
        }
    }
    let (runs, problems) = ProvenRuns::new(runs, true, crate::timefmt::now_unix_nanos());
    for p in problems
        .into_iter()
        .chain(runs.dated_after_later_entries(leaves))
    {
        report.problem(p);
    }
    for run in runs.runs() {
        report.ok(run.describe());
    }
    Ok(runs)
}

/// Checks every body the ledger serves against its leaf's commitment, and the
/// decoded event against the leaf's id, time and kind; a missing body only
/// where a proven retention run deleted it.
fn check_bodies(
    client: &Client,
    leaves: &[Option<LeafRecord>],
    expected_retention: &RetentionPeriod,
    report: &mut Report,
) -> anyhow::Result<()> {
    let size = leaves.len() as u64;
    let runs = proven_runs(client, leaves, report)?;
    let proven_min = runs.min_index();
    let served_min: u64 = String::from_utf8(client.get_bytes("vigil/v1/minimum-index")?)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .context("the minimum index is not a number")?;
    if served_min > size {
        report.problem(format!(
            "the ledger says its minimum index is {served_min}, beyond the {size} entries of the log"
        ));
    } else if served_min != proven_min {
        report.problem(format!(
            "the ledger says its minimum index is {served_min}, but the retention runs recorded in the log end at {proven_min}"
        ));
    }
    let (mut present, mut pruned) = (0u64, 0u64);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    // Decisions recorded inside their Requests (since issue 25): without
    // them, fewer `decision` leaves than `request` leaves would read as
    // decisions missing.
    let mut carried_decisions = 0u64;
    let mut streams: Streams = HashMap::new();
    let mut ends: HashMap<String, u64> = HashMap::new();
    let mut noticed = NoticedGaps::default();
    let mut start = 0u64;
    while start < size {
        // Ask only for what the checkpoint covers: the log may have grown since.
        let count = 1024.min(size - start);
        let page = client.bodies(start, count)?;
        let next = start + count;
        let mut seen = vec![false; count as usize];
        for record in page {
            let index = record.index;
            if index < start || index >= next {
                report.problem(format!("body for entry {index} was not asked for"));
                continue;
            }
            seen[(index - start) as usize] = true;
            let leaf = leaves[index as usize].as_ref();
            match classify(&record) {
                Served::Pruned => match runs.pruned_by(index, leaf) {
                    Ok(_) => pruned += 1,
                    Err(why) => report.problem(format!("entry {index}: {why}")),
                },
                Served::Error(e) => report.problem(format!("entry {index}: {e}")),
                Served::Body { salt, body } => {
                    present += 1;
                    if index < proven_min && leaf.is_some_and(|l| l.kind != pruning::RECORD_KIND) {
                        report.note(format!(
                            "entry {index}: its body is still served although a retention run deleted the bodies of its range"
                        ));
                    }
                    match check_body(leaf, &salt, &body) {
                        Ok(event) => {
                            if let Some(l) = leaf {
                                *kinds.entry(l.kind.clone()).or_default() += 1;
                            }
                            if let Some(vigil_proto::events::event::Kind::Request(r)) = &event.kind
                            {
                                carried_decisions += u64::from(r.decision.is_some());
                            }
                            noticed.read(index, &event);
                            if !event.session_id.is_empty() {
                                if END_KINDS.contains(&event.kind_name()) {
                                    // The earliest end counts: anything after it is out of place.
                                    let end =
                                        ends.entry(event.session_id.clone()).or_insert(event.seq);
                                    *end = (*end).min(event.seq);
                                }
                                streams
                                    .entry(event.session_id)
                                    .or_default()
                                    .push((event.seq, index));
                            }
                        }
                        Err(why) => report.problem(format!("entry {index}: {why}")),
                    }
                }
            }
        }
        for (i, s) in seen.iter().enumerate() {
            if !s {
                report.problem(format!(
                    "entry {}: body missing, and not recorded as pruned",
                    start + i as u64
                ));
            }
        }
        start = next;
    }
    report.ok(format!(
        "{present} event bodies match their leaves; {pruned} pruned by {} retention run(s) recorded in the log (minimum index {proven_min})",
        runs.runs().len()
    ));
    for w in runs.young_prunes(
        leaves,
        expected_retention.nanos(),
        expected_retention.as_str(),
    ) {
        report.warn(w);
    }
    let by_kind: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
    let carried = if carried_decisions > 0 {
        format!(" (and {carried_decisions} decisions carried by requests)")
    } else {
        String::new()
    };
    report.ok(format!("events by kind: {}{carried}", by_kind.join(" ")));
    check_positions(leaves, report);
    for (stream, end) in &ends {
        if let Some(after) = streams[stream]
            .iter()
            .map(|&(seq, _)| seq)
            .filter(|&s| s > *end)
            .min()
        {
            report.problem(format!(
                "{stream}: event {after} comes after the stream's end (event {end}): forged or misplaced"
            ));
        }
    }
    check_continuity(streams, &noticed, report);
    Ok(())
}

/// Each stream's events as (number, entry), in log order.
type Streams = HashMap<String, Vec<(u64, u64)>>;

/// The ledger's own records of gaps it noticed as they happened
/// (`SequenceGap` events of its stream `vigil-ledger/gaps`), by session:
/// (first missing, how many, the record's entry).
#[derive(Default)]
struct NoticedGaps(HashMap<String, Vec<(u64, u64, u64)>>);

impl NoticedGaps {
    fn read(&mut self, index: u64, event: &vigil_proto::events::Event) {
        use vigil_proto::events::event::Kind;
        // Only the ledger writes its stream (the appender refuses it from
        // the bus), so a record elsewhere is not the ledger's.
        if event.session_id != vigil_ledger_service::gap_log::GAP_STREAM {
            return;
        }
        if let Some(Kind::SequenceGap(g)) = &event.kind {
            self.0.entry(g.session_id.clone()).or_default().push((
                g.first_missing,
                g.missing,
                index,
            ));
        }
    }

    /// The entry of the ledger's record of a hole that covers `a..=b` of
    /// `stream`, if it made one after `after` (the entry of the event that
    /// follows the hole: the ledger cannot notice a hole before it has
    /// appended what comes after it, so an earlier record is not of this
    /// hole).
    fn record_of(&self, stream: &str, a: u64, b: u64, after: u64) -> Option<u64> {
        self.0
            .get(stream)?
            .iter()
            .find_map(|&(first, missing, index)| {
                (first <= a && b < first.saturating_add(missing) && index > after).then_some(index)
            })
    }

    /// Events in the log that a record made before them declared lost:
    /// (stream, number, entry, the record's entry). A late delivery, or a
    /// forged fill-in of a hole.
    fn arrived_after_their_record(&self, streams: &Streams) -> Vec<(String, u64, u64, u64)> {
        let mut late = Vec::new();
        for (stream, records) in &self.0 {
            let Some(events) = streams.get(stream) else {
                continue;
            };
            for &(seq, entry) in events {
                if let Some(&(_, _, record)) = records.iter().find(|&&(first, missing, record)| {
                    first <= seq && seq < first.saturating_add(missing) && entry > record
                }) {
                    late.push((stream.clone(), seq, entry, record));
                }
            }
        }
        late.sort();
        late
    }
}

/// No two leaves may claim the same place in the same stream: with dedup
/// by event id, that is two different events numbered alike, one forged
/// (e.g. a second, early "session closed" that would hide a session's
/// tail from a bundle). Leaves prove it even where bodies are pruned.
fn check_positions(leaves: &[Option<LeafRecord>], report: &mut Report) {
    let no_stream = stream_position("", 0);
    let mut seen: HashMap<Hash, u64> = HashMap::new();
    let mut duplicates = 0u64;
    for (i, leaf) in leaves.iter().enumerate() {
        let Some(position) = leaf.as_ref().and_then(|l| l.position) else {
            continue;
        };
        if position == no_stream {
            continue;
        }
        if let Some(first) = seen.insert(position, i as u64) {
            duplicates += 1;
            report.problem(format!(
                "entries {first} and {i} claim the same place in the same session: one of them is forged"
            ));
        }
    }
    if duplicates == 0 {
        report.ok(format!(
            "no two of the {} entries claim the same place in a session",
            leaves.len()
        ));
    }
}

/// Every session (and approval operation or grant) numbers its events 0, 1,
/// 2, ...: a number missing between two that are in the log is an event
/// that was made and never recorded (refused by a full outbox, say), or
/// that was lost on its way to the ledger (a broker that skipped a record).
/// Neither makes the log invalid, so these are notes, not failures; the
/// start of a stream may be pruned and its end is not knowable, so only
/// gaps between recorded events count.
fn check_continuity(streams: Streams, noticed: &NoticedGaps, report: &mut Report) {
    let total = streams.len();
    for (stream, seq, entry, record) in noticed.arrived_after_their_record(&streams) {
        report.note(format!(
            "{stream}: event {seq} (entry {entry}) arrived after the ledger recorded it lost (record at entry {record}): delivered late, or filled in by someone else"
        ));
    }
    // Where each stream's events are, by number (the first copy).
    let mut gaps: Vec<(String, u64, u64, u64)> = Vec::new();
    for (stream, events) in &streams {
        let seqs: Vec<u64> = events.iter().map(|&(seq, _)| seq).collect();
        for (a, b) in sequence_gaps(seqs) {
            let after = events
                .iter()
                .filter(|&&(seq, _)| seq == b + 1)
                .map(|&(_, entry)| entry)
                .min()
                .unwrap_or(u64::MAX);
            gaps.push((stream.clone(), a, b, after));
        }
    }
    if gaps.is_empty() {
        report.ok(format!(
            "{total} sessions, operations and grants: no event missing between recorded ones"
        ));
        return;
    }
    gaps.sort();
    let missing: u64 = gaps.iter().map(|(_, a, b, _)| b - a + 1).sum();
    report.note(format!(
        "{missing} event(s) missing between recorded ones, in {} gap(s) among {total} sessions, operations and grants (made but never recorded, or lost between proxy and ledger)",
        gaps.len()
    ));
    for (stream, a, b, after) in gaps {
        let which = if a == b {
            format!("event {a}")
        } else {
            format!("events {a} to {b}")
        };
        // Whether the ledger raised the alarm when it happened: a hole it
        // has no record of was missed live (the ledger was restarted while
        // the hole was open, or the hole is older than gap records).
        let alarm = match noticed.record_of(&stream, a, b, after) {
            Some(entry) => format!("; the ledger noticed it live (record at entry {entry})"),
            None => "; the ledger has no record of noticing it".to_string(),
        };
        report.note(format!("{stream}: {which} not in the log{alarm}"));
    }
}

/// The runs of numbers missing between the smallest and the largest of
/// `seqs` (inclusive ranges); duplicates are harmless.
fn sequence_gaps(mut seqs: Vec<u64>) -> Vec<(u64, u64)> {
    seqs.sort_unstable();
    seqs.dedup();
    seqs.windows(2)
        .filter(|w| w[1] > w[0] + 1)
        .map(|w| (w[0] + 1, w[1] - 1))
        .collect()
}

enum Served {
    Body {
        salt: String,
        body: String,
    },
    /// The ledger says retention deleted it (only believed where a proven
    /// run did).
    Pruned,
    Error(String),
}

fn classify(r: &BodyRecord) -> Served {
    if r.pruned.is_some() {
        Served::Pruned
    } else if let Some(e) = &r.error {
        Served::Error(format!("the ledger cannot read this body: {e}"))
    } else {
        Served::Body {
            salt: r.salt.clone(),
            body: r.body.clone(),
        }
    }
}

/// A body (base64 salt and event bytes) against its leaf.
pub fn check_body(
    leaf: Option<&LeafRecord>,
    salt_b64: &str,
    body_b64: &str,
) -> Result<Event, String> {
    let leaf = leaf.ok_or("no valid leaf to check the body against")?;
    let salt: [u8; 32] = B64
        .decode(salt_b64)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or("salt is not 32 bytes of base64")?;
    let body = B64.decode(body_b64).map_err(|_| "body is not base64")?;
    check_body_bytes(leaf, &salt, &body)
}

/// A body against its leaf: commitment, then the event's id, time and kind,
/// and (version 2 leaves) its session and number.
pub fn check_body_bytes(leaf: &LeafRecord, salt: &[u8; 32], body: &[u8]) -> Result<Event, String> {
    if body_commitment(salt, body) != leaf.commitment {
        return Err("body does not match the leaf's commitment (altered body)".into());
    }
    let event =
        vigil_proto::events::decode(body).map_err(|e| format!("body is not an event: {e}"))?;
    let id = uuid::Uuid::parse_str(&event.event_id).map_err(|_| "event id is not a UUID")?;
    if id.as_bytes() != &leaf.event_id
        || event.time_unix_nanos != leaf.time_unix_nanos
        || event.kind_name() != leaf.kind
    {
        return Err("event's id, time or kind differ from its leaf".into());
    }
    if leaf
        .position
        .is_some_and(|p| p != stream_position(&event.session_id, event.seq))
    {
        return Err("event's session or number differ from its leaf's stream position".into());
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_gaps_names_only_what_is_missing_between_recorded_events() {
        // (sequence numbers in the log, the gaps expected)
        type Case<'a> = (&'a [u64], &'a [(u64, u64)]);
        let cases: &[Case] = &[
            (&[], &[]),
            (&[0], &[]),
            (&[0, 1, 2, 3], &[]),
            (&[3, 1, 2, 0], &[]), // order does not matter
            (&[0, 1, 1, 2], &[]), // a duplicate is not a gap
            (&[5, 6, 7], &[]),    // a pruned start is not a gap
            (&[0, 2], &[(1, 1)]),
            (&[0, 1, 5, 6, 9], &[(2, 4), (7, 8)]),
        ];
        for (seqs, want) in cases {
            assert_eq!(sequence_gaps(seqs.to_vec()), want.to_vec(), "{seqs:?}");
        }
    }

    #[test]
    fn gaps_are_notes_that_leave_the_verdict_alone() {
        let mut report = Report::default();
        // (number, entry) of each stream's events.
        let streams = HashMap::from([
            ("s-whole".to_string(), vec![(0, 0), (1, 1), (2, 2)]),
            ("s-gap".to_string(), vec![(0, 3), (1, 4), (4, 5)]),
            ("s-seen".to_string(), vec![(0, 6), (3, 7)]),
            // A record older than the event after the hole is not of it.
            ("s-early".to_string(), vec![(0, 11), (2, 12)]),
            // 1 arrives after the ledger recorded 1..=2 lost.
            ("s-late".to_string(), vec![(0, 20), (3, 21), (1, 23)]),
        ]);
        // The ledger recorded the hole of s-seen (1 and 2) at entry 9.
        let mut noticed = NoticedGaps::default();
        noticed.read(
            9,
            &vigil_proto::events::Event {
                session_id: vigil_ledger_service::gap_log::GAP_STREAM.into(),
                kind: Some(vigil_proto::events::event::Kind::SequenceGap(
                    vigil_proto::events::SequenceGap {
                        session_id: "s-seen".into(),
                        first_missing: 1,
                        missing: 2,
                        open_for_nanos: 5_000_000_000,
                    },
                )),
                ..Default::default()
            },
        );
        let record = |session: &str, first: u64, missing: u64| vigil_proto::events::Event {
            session_id: vigil_ledger_service::gap_log::GAP_STREAM.into(),
            kind: Some(vigil_proto::events::event::Kind::SequenceGap(
                vigil_proto::events::SequenceGap {
                    session_id: session.into(),
                    first_missing: first,
                    missing,
                    open_for_nanos: 0,
                },
            )),
            ..Default::default()
        };
        noticed.read(10, &record("s-early", 1, 1));
        noticed.read(22, &record("s-late", 1, 2));
        // A record anyone else wrote is no record of the ledger's.
        noticed.read(
            10,
            &vigil_proto::events::Event {
                session_id: "someone".into(),
                kind: Some(vigil_proto::events::event::Kind::SequenceGap(
                    vigil_proto::events::SequenceGap {
                        session_id: "s-gap".into(),
                        first_missing: 2,
                        missing: 2,
                        open_for_nanos: 0,
                    },
                )),
                ..Default::default()
            },
        );
        check_continuity(streams, &noticed, &mut report);
        assert!(report.is_clean());
        let text = report.render("");
        assert!(
            text.contains("note  6 event(s) missing between recorded ones, in 4 gap(s) among 5"),
            "{text}"
        );
        assert!(
            text.contains(
                "note  s-early: event 1 not in the log; the ledger has no record of noticing it"
            ),
            "{text}"
        );
        assert!(
            text.contains("note  s-late: event 2 not in the log; the ledger noticed it live (record at entry 22)"),
            "{text}"
        );
        assert!(
            text.contains("note  s-late: event 1 (entry 23) arrived after the ledger recorded it lost (record at entry 22)"),
            "{text}"
        );
        assert!(
            text.contains("note  s-gap: events 2 to 3 not in the log; the ledger has no record of noticing it"),
            "{text}"
        );
        assert!(
            text.contains("note  s-seen: events 1 to 2 not in the log; the ledger noticed it live (record at entry 9)"),
            "{text}"
        );
        assert!(text.contains("verified: every check passed"), "{text}");

        let mut clean = Report::default();
        check_continuity(
            HashMap::from([("s".to_string(), vec![(0, 0), (1, 1)])]),
            &NoticedGaps::default(),
            &mut clean,
        );
        assert!(clean
            .render("")
            .contains("ok    1 sessions, operations and grants: no event missing"));
    }
}
