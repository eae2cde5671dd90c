//! Evidence bundles: a self-contained JSON file with the events of a session
//! or a time range, each with its leaf and an inclusion proof against one
//! signed checkpoint, plus the checkpoint and its verifier key. An auditor
//! checks it offline with `vigil audit check-bundle`, with no access to the
//! gateway.
//!
//! What a bundle proves: each event it holds is in the log the checkpoint
//! commits to, unaltered. For a session it also proves completeness: every
//! event of a session carries its number (`seq`, from 0) and every leaf
//! commits to its session and number (its stream position), so the
//! bundle must account for every number up to the session's end
//! (`SessionClosed`), each by an event or by a leaf whose body retention
//! deleted. A pruned entry counts only where a retention run recorded in
//! the log (its event, never pruned, is in the bundle too) pruned it, and
//! its leaf is older than that run's cutoff. A session without its end is
//! accepted only when the auditor says so (`--allow-open`). For a time
//! range, completeness rests on the ledger's index (the leaves of the whole
//! range are not included).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use vigil_ledger::{
    leaf_hash, stream_position, verify_consistency, verify_inclusion, Checkpoint, Hash, LeafRecord,
};
use vigil_ledger_service::retention::RetentionPeriod;
use vigil_proto::events::Event;

use super::client::{decode_hashes, verifier, Client, KeyChain, LeafFetcher, WitnessPolicy};
use super::pruning::{self, ProvenRun, ProvenRuns};
use super::report::Report;
use super::verify::{check_body, TrustedState};

/// The format tag bundles are written with.
pub const FORMAT: &str = "vigil-evidence-bundle/v2";
/// Bundles written before stream positions and retention proofs; still read
/// (their pruned entries cannot be tied to a session).
pub const FORMAT_V1: &str = "vigil-evidence-bundle/v1";
/// Largest bundle file `check-bundle` reads.
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;
/// Leaf kinds that end a stream: nothing of it comes after one.
pub const END_KINDS: [&str; 4] = [
    "session_closed",
    "login_refused",
    "operation_closed",
    "grant_revoked",
];

/// Which events a bundle claims to hold.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Selection {
    Session {
        session_id: String,
    },
    TimeRange {
        from_unix_nanos: i64,
        to_unix_nanos: i64,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub selection: Selection,
    pub verifier_key: String,
    /// The C2SP signed checkpoint every proof is against.
    pub checkpoint: String,
    pub entries: Vec<BundleEntry>,
    /// The `RetentionPruned` entries (bodies included) of the runs that
    /// pruned any entry of `entries`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<BundleEntry>,
    /// A consistency proof from a smaller checkpoint the exporter trusted
    /// to this one, so an auditor who trusts that one can accept this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyFrom>,
    /// The log's signing-key rotations, so an auditor who trusts an older
    /// key follows them to the key that signed `checkpoint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyFrom {
    pub from_size: u64,
    /// Base64 hashes of the RFC 9162 consistency proof.
    pub proof: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    pub index: u64,
    /// Base64 leaf data (the LeafRecord encoding).
    pub leaf: String,
    /// Base64 hashes of the RFC 9162 inclusion proof.
    pub inclusion_proof: Vec<String>,
    /// Base64 salt and event bytes; absent when pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// When retention deleted the body, if it did (as the ledger said; the
    /// checker relies on the retention entries instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_at_unix_nanos: Option<i64>,
    /// For a pruned entry of a session bundle: its number in the session,
    /// which the leaf's stream position proves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// What the exporter trusts: a checkpoint to prove this one extends.
#[derive(Default)]
pub struct ExportOptions {
    pub trusted: Option<TrustedState>,
}

/// Builds a bundle from a live ledger. The checkpoint is verified first, so
/// an export never packages a log the key does not vouch for.
pub fn export(
    client: &Client,
    vkey: &str,
    selection: Selection,
    options: &ExportOptions,
) -> anyhow::Result<Bundle> {
    let note = client.checkpoint_note()?;
    let key_rotations = client.key_rotations()?;
    let checkpoint = KeyChain::follow(vkey, &key_rotations)
        .and_then(|chain| chain.open(&note))
        .map_err(|e| anyhow!("the ledger's {e}"))?;
    let query = match &selection {
        Selection::Session { session_id } => format!("session={}", url_escape(session_id)),
        Selection::TimeRange {
            from_unix_nanos,
            to_unix_nanos,
        } => format!("from={from_unix_nanos}&to={to_unix_nanos}"),
    };
    let mut indexes: Vec<u64> = client
        .find_all(&query)?
        .into_iter()
        .filter(|&i| i < checkpoint.size)
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    let mut fetcher = LeafFetcher::new(client, checkpoint.size);
    let mut entries = Vec::with_capacity(indexes.len());
    for &index in &indexes {
        entries.push(export_entry(client, &mut fetcher, index, checkpoint.size)?);
    }
    if let Selection::Session { session_id } = &selection {
        name_pruned_positions(session_id, &mut entries, indexes.len());
    }
    let retention = if entries.iter().any(|e| e.body.is_none()) {
        retention_entries(client, &mut fetcher, checkpoint.size)?
    } else {
        Vec::new()
    };
    let consistency = match &options.trusted {
        Some(t) if t.size > 0 && t.size < checkpoint.size => Some(ConsistencyFrom {
            from_size: t.size,
            proof: client
                .consistency_proof(t.size, checkpoint.size)?
                .iter()
                .map(|h| B64.encode(h))
                .collect(),
        }),
        _ => None,
    };
    Ok(Bundle {
        format: FORMAT.into(),
        selection,
        verifier_key: vkey.trim().to_string(),
        checkpoint: note,
        entries,
        retention,
        consistency,
        key_rotations,
    })
}

/// One entry with its leaf, inclusion proof and body (or pruned time).
fn export_entry(
    client: &Client,
    fetcher: &mut LeafFetcher,
    index: u64,
    size: u64,
) -> anyhow::Result<BundleEntry> {
    let leaf = fetcher.leaf(index)?;
    let proof = client.inclusion_proof(index, size)?;
    let body = client
        .bodies(index, 1)?
        .into_iter()
        .find(|b| b.index == index);
    let (salt, body, pruned) = match body {
        Some(b) if b.error.is_some() => bail!(
            "entry {index}: the ledger cannot read its body: {}",
            b.error.unwrap_or_default()
        ),
        Some(b) if b.pruned.is_some() => (None, None, b.pruned.map(|p| p.pruned_at_unix_nanos)),
        Some(b) => (Some(b.salt), Some(b.body), None),
        None => bail!("entry {index}: the ledger served no body"),
    };
    Ok(BundleEntry {
        index,
        leaf: B64.encode(&leaf),
        inclusion_proof: proof.iter().map(|h| B64.encode(h)).collect(),
        salt,
        body,
        pruned_at_unix_nanos: pruned,
        seq: None,
    })
}

/// A pruned entry's number in its session is gone with its body; its leaf
/// still commits to it. Finds it by trying the numbers the session can
/// have (it has `found` entries; a few more for entries the index missed).
fn name_pruned_positions(session_id: &str, entries: &mut [BundleEntry], found: usize) {
    let candidates = found as u64 + 1024;
    let mut by_position: Option<HashMap<Hash, u64>> = None;
    for e in entries.iter_mut().filter(|e| e.body.is_none()) {
        let Some(position) = B64
            .decode(&e.leaf)
            .ok()
            .and_then(|l| LeafRecord::decode(&l).ok())
            .and_then(|l| l.position)
        else {
            continue;
        };
        let map = by_position.get_or_insert_with(|| {
            (0..candidates)
                .map(|s| (stream_position(session_id, s), s))
                .collect()
        });
        e.seq = map.get(&position).copied();
    }
}

/// Every retention record the ledger lists (they are the ledger's own
/// events, subject `vigil-ledger`), with bodies and proofs.
fn retention_entries(
    client: &Client,
    fetcher: &mut LeafFetcher,
    size: u64,
) -> anyhow::Result<Vec<BundleEntry>> {
    let mut out = Vec::new();
    for index in client.find_all("subject=vigil-ledger")? {
        if index >= size {
            continue;
        }
        let leaf =
            LeafRecord::decode(&fetcher.leaf(index)?).map_err(|e| anyhow!("leaf {index}: {e}"))?;
        if leaf.kind == pruning::RECORD_KIND {
            out.push(export_entry(client, fetcher, index, size)?);
        }
    }
    Ok(out)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What checking a bundle found.
#[derive(Default)]
pub struct BundleReport {
    pub checks: Report,
    /// Events that passed every check, in log order.
    pub events: Vec<(u64, Event)>,
}

/// What the auditor brings to a check besides the key.
#[derive(Default)]
pub struct CheckOptions {
    /// The newest checkpoint the auditor trusts: the bundle's must not be
    /// older, and must be shown to extend it.
    pub trusted: Option<TrustedState>,
    /// Accept a session whose end is not in the bundle (it was open at the
    /// checkpoint), knowing that nothing proves there were no more events.
    pub allow_open: bool,
    /// How long the auditor expects evidence to be kept: pruning of the
    /// bundle's entries younger than that is warned about.
    pub expected_retention: Option<RetentionPeriod>,
    /// The witnesses whose cosignatures the checkpoint must carry.
    pub witnesses: WitnessPolicy,
}

/// Parses bundle JSON; malformed input is an error, never a panic.
pub fn parse(text: &str) -> anyhow::Result<Bundle> {
    let bundle: Bundle = serde_json::from_str(text).context("not an evidence bundle")?;
    if bundle.format != FORMAT && bundle.format != FORMAT_V1 {
        bail!(
            "unsupported bundle format {:?} (expected {FORMAT})",
            bundle.format
        );
    }
    Ok(bundle)
}

/// One entry whose leaf is proven in the checkpoint's tree.
struct ProvenEntry {
    index: u64,
    leaf: LeafRecord,
    /// The event, if the body is there and matches the leaf.
    event: Option<Event>,
    /// The claimed number of a pruned entry.
    seq: Option<u64>,
}

/// Checks a bundle offline. `trusted_key`, when given, must be the key the
/// bundle names; without it the bundle's own key is used and the report
/// says so (the auditor must compare its key id with the one they trust).
pub fn check(
    bundle: &Bundle,
    trusted_key: Option<&str>,
    options: &CheckOptions,
) -> anyhow::Result<BundleReport> {
    let mut report = BundleReport::default();
    let vkey = trusted_key.unwrap_or(&bundle.verifier_key).trim();
    let verifier = verifier(vkey)?;
    if trusted_key.is_none() {
        report.checks.warn(format!(
            "using the verifier key inside the bundle ({} key id {:08x}): whoever made the bundle chose it; compare it with the key you were given, or pass --key",
            verifier.name(),
            verifier.key_id()
        ));
    }
    let chain = KeyChain::follow(vkey, &bundle.key_rotations);
    let checkpoint: Checkpoint = match chain
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|c| c.open(&bundle.checkpoint))
    {
        Ok(c) => c,
        Err(e) => {
            report.checks.problem(e);
            return Ok(report);
        }
    };
    for line in chain.map(|c| c.describe()).unwrap_or_default() {
        report.checks.ok(line);
    }
    report.checks.ok(format!(
        "checkpoint signed by {}: origin {}, size {}",
        verifier.name(),
        checkpoint.origin,
        checkpoint.size
    ));
    options
        .witnesses
        .check(&bundle.checkpoint, &mut report.checks);
    if let Some(t) = &options.trusted {
        check_against_trusted(bundle, &checkpoint, t, &mut report.checks);
    }
    if bundle.entries.is_empty() {
        report.checks.problem(
            "the bundle holds no entries: it proves nothing (a session always has at least one event; an empty answer may be a ledger hiding it)".into(),
        );
        return Ok(report);
    }

    let runs = bundle_runs(bundle, &checkpoint, &mut report.checks);
    let mut seen = BTreeSet::new();
    let mut proven = Vec::with_capacity(bundle.entries.len());
    for e in &bundle.entries {
        if !seen.insert(e.index) {
            report
                .checks
                .problem(format!("entry {}: listed twice", e.index));
            continue;
        }
        match check_entry(e, &checkpoint, &bundle.selection) {
            Ok(p) => proven.push(p),
            Err(why) => report.checks.problem(format!("entry {}: {why}", e.index)),
        }
    }
    let mut pruned = 0u64;
    // The youngest entry each run pruned, by its age at the run.
    let mut youngest: BTreeMap<u64, (i64, bool)> = BTreeMap::new();
    for p in &proven {
        match &p.event {
            Some(event) => report.events.push((p.index, event.clone())),
            None => match runs.pruned_by(p.index, Some(&p.leaf)) {
                Ok(run) => {
                    pruned += 1;
                    let age = run
                        .pruned_at_unix_nanos
                        .saturating_sub(p.leaf.time_unix_nanos);
                    let e = youngest
                        .entry(run.record_index)
                        .or_insert((age, run.record.forced));
                    e.0 = e.0.min(age);
                }
                Err(why) => report.checks.problem(format!("entry {}: {why}", p.index)),
            },
        }
    }
    if let Some(expected) = &options.expected_retention {
        for (at, (age, forced)) in youngest {
            if age < expected.nanos() {
                report.checks.warn(format!(
                    "the retention run at entry {at} deleted bodies of this bundle only {} s old, younger than the {} you expect{}",
                    age / 1_000_000_000,
                    expected.as_str(),
                    if forced { " (forced below the configured minimum)" } else { "" }
                ));
            }
        }
    }
    report.events.sort_by_key(|(i, _)| *i);
    report.checks.ok(format!(
        "{} entries: {} events proven included and unaltered, {pruned} pruned by a retention run recorded in the log (leaf proven, body gone)",
        bundle.entries.len(),
        report.events.len()
    ));
    match &bundle.selection {
        Selection::Session { session_id } => {
            check_session_complete(session_id, &proven, options.allow_open, &mut report.checks)
        }
        Selection::TimeRange { .. } => report.checks.warn(
            "a time-range bundle proves each event it holds, not that it holds every event of the range (for that, check sessions, or verify the whole log)".into(),
        ),
    }
    Ok(report)
}

/// The bundle's checkpoint against the newest one the auditor trusts: not
/// older, the same root at the same size, and proven to extend it.
fn check_against_trusted(
    bundle: &Bundle,
    checkpoint: &Checkpoint,
    trusted: &TrustedState,
    report: &mut Report,
) {
    let Ok(trusted_root) = trusted.root() else {
        report.problem("the state file's root is not 32 bytes of base64".into());
        return;
    };
    if trusted.origin != checkpoint.origin {
        report.problem(format!(
            "the bundle's log {:?} is not the trusted log {:?}",
            checkpoint.origin, trusted.origin
        ));
    } else if checkpoint.size < trusted.size {
        report.problem(format!(
            "the bundle's checkpoint (size {}) is older than the newest you trust (size {}): it can leave out what came later; export the bundle again",
            checkpoint.size, trusted.size
        ));
    } else if checkpoint.size == trusted.size {
        if checkpoint.root == trusted_root {
            report.ok(format!(
                "the bundle's checkpoint is the one you trust (size {})",
                trusted.size
            ));
        } else {
            report.problem(format!(
                "the bundle's checkpoint has another root than the one you trust at size {}: the log was forked or rewritten",
                trusted.size
            ));
        }
    } else if trusted.size == 0 {
        report.ok("every log extends the empty one you trust".into());
    } else {
        let proof = bundle
            .consistency
            .as_ref()
            .filter(|c| c.from_size == trusted.size)
            .map(|c| decode_hashes(&c.proof));
        match proof {
            Some(Ok(proof)) => match verify_consistency(
                trusted.size,
                checkpoint.size,
                &proof,
                &trusted_root,
                &checkpoint.root,
            ) {
                Ok(()) => report.ok(format!(
                    "the bundle's checkpoint extends the one you trust (consistency from size {})",
                    trusted.size
                )),
                Err(e) => report.problem(format!(
                    "the bundle's consistency proof from your trusted size {}: {e}",
                    trusted.size
                )),
            },
            Some(Err(e)) => report.problem(format!("the bundle's consistency proof: {e}")),
            None => report.problem(format!(
                "nothing shows the bundle's checkpoint (size {}) extends the one you trust (size {}): export it with --state",
                checkpoint.size, trusted.size
            )),
        }
    }
}

/// The retention runs the bundle proves: each `RetentionPruned` entry's
/// leaf in the checkpoint's tree and its body against the leaf.
fn bundle_runs(bundle: &Bundle, checkpoint: &Checkpoint, report: &mut Report) -> ProvenRuns {
    let mut runs = Vec::new();
    for e in &bundle.retention {
        let any_session = Selection::TimeRange {
            from_unix_nanos: i64::MIN,
            to_unix_nanos: i64::MAX,
        };
        let run = check_entry(e, checkpoint, &any_session).and_then(|p| {
            p.event
                .as_ref()
                .and_then(|ev| ProvenRun::from_event(e.index, ev))
                .ok_or_else(|| "not a retention run with its body".to_string())
        });
        match run {
            Ok(run) => runs.push(run),
            Err(why) => report.problem(format!("retention entry {}: {why}", e.index)),
        }
    }
    let (runs, problems) = ProvenRuns::new(runs, false, crate::timefmt::now_unix_nanos());
    for p in problems {
        report.problem(p);
    }
    for run in runs.runs() {
        report.ok(run.describe());
    }
    runs
}

/// One entry: leaf in the tree, body against leaf, event in the selection.
fn check_entry(
    e: &BundleEntry,
    checkpoint: &Checkpoint,
    selection: &Selection,
) -> Result<ProvenEntry, String> {
    let leaf_data = B64.decode(&e.leaf).map_err(|_| "leaf is not base64")?;
    let proof = decode_hashes(&e.inclusion_proof).map_err(|e| e.to_string())?;
    verify_inclusion(
        &leaf_hash(&leaf_data),
        e.index,
        checkpoint.size,
        &proof,
        &checkpoint.root,
    )
    .map_err(|err| format!("inclusion proof does not verify: {err}"))?;
    let leaf = LeafRecord::decode(&leaf_data).map_err(|err| format!("leaf: {err}"))?;
    let (salt, body) = match (&e.salt, &e.body) {
        (Some(s), Some(b)) => (s, b),
        (None, None) => {
            if let Selection::TimeRange {
                from_unix_nanos,
                to_unix_nanos,
            } = selection
            {
                if leaf.time_unix_nanos < *from_unix_nanos || leaf.time_unix_nanos >= *to_unix_nanos
                {
                    return Err("leaf time is outside the bundle's range".into());
                }
            }
            return Ok(ProvenEntry {
                index: e.index,
                leaf,
                event: None,
                seq: e.seq,
            });
        }
        _ => return Err("needs both salt and body, or neither (pruned)".into()),
    };
    let event = check_body(Some(&leaf), salt, body)?;
    match selection {
        Selection::Session { session_id } if &event.session_id != session_id => {
            return Err(format!(
                "event belongs to session {:?}, not the bundle's",
                event.session_id
            ))
        }
        Selection::TimeRange {
            from_unix_nanos,
            to_unix_nanos,
        } if event.time_unix_nanos < *from_unix_nanos
            || event.time_unix_nanos >= *to_unix_nanos =>
        {
            return Err("event time is outside the bundle's range".into())
        }
        _ => {}
    }
    Ok(ProvenEntry {
        index: e.index,
        leaf,
        seq: Some(event.seq),
        event: Some(event),
    })
}

/// Every number of the session up to its end must be accounted for: by an
/// event, or by a pruned leaf whose stream position proves it is that
/// number of this session. Without its end, the session is only accepted
/// as open when the auditor allows it.
fn check_session_complete(
    session_id: &str,
    entries: &[ProvenEntry],
    allow_open: bool,
    report: &mut Report,
) {
    // seq -> (entry index, leaf kind)
    let mut numbers: BTreeMap<u64, (u64, &str)> = BTreeMap::new();
    for p in entries {
        let seq = match (&p.event, p.seq) {
            (Some(e), _) => e.seq,
            (None, Some(seq)) => {
                if p.leaf.position != Some(stream_position(session_id, seq)) {
                    report.problem(format!(
                        "entry {}: pruned, and its leaf does not prove it is event {seq} of this session",
                        p.index
                    ));
                    continue;
                }
                seq
            }
            (None, None) => {
                report.problem(format!(
                    "entry {}: pruned, and nothing ties its leaf to this session",
                    p.index
                ));
                continue;
            }
        };
        if let Some((other, _)) = numbers.insert(seq, (p.index, p.leaf.kind.as_str())) {
            report.problem(format!(
                "entries {other} and {} both claim to be event {seq} of the session",
                p.index
            ));
        }
    }
    let end = numbers
        .iter()
        .find(|(_, (_, kind))| END_KINDS.contains(kind))
        .map(|(&seq, &(_, kind))| (seq, kind));
    let last = numbers.keys().next_back().copied();
    let upto = match (end, last) {
        (Some((seq, _)), _) => seq,
        (None, Some(last)) => last,
        (None, None) => {
            report.problem(format!("session {session_id}: no event of it is proven"));
            return;
        }
    };
    // Gaps between the numbers present (never materialised one by one: a
    // forged number in the billions must not exhaust memory).
    let mut missing: Vec<(u64, u64)> = Vec::new();
    let mut expect = 0u64;
    for &seq in numbers.keys().take_while(|&&s| s <= upto) {
        if seq > expect {
            missing.push((expect, seq - 1));
        }
        expect = seq.saturating_add(1);
    }
    if !missing.is_empty() {
        report.problem(format!(
            "session {session_id}: event(s) with seq {} are missing from the bundle",
            compact_ranges(&missing)
        ));
    }
    if let Some((seq, kind)) = end {
        if let Some(&after) = numbers.keys().find(|&&s| s > seq) {
            report.problem(format!(
                "session {session_id}: event {after} comes after its end ({kind}, event {seq})"
            ));
        }
        if missing.is_empty() {
            report.ok(format!(
                "session {session_id}: events 0..={seq} all proven, none missing, ends with {kind}"
            ));
        }
    } else if allow_open {
        if missing.is_empty() {
            report.ok(format!(
                "session {session_id}: events 0..={upto} all proven; no end: open at the checkpoint (accepted with --allow-open: nothing proves there were no more events)"
            ));
        }
    } else {
        report.problem(format!(
            "session {session_id}: its end is not in the bundle (events 0..={upto} proven): it was open at the checkpoint, or its end and later events were left out; pass --allow-open to accept an open session"
        ));
    }
}

/// `[(1, 3), (7, 7)]` -> `1..=3, 7`.
fn compact_ranges(ranges: &[(u64, u64)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..={b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bundles_are_clear_errors() {
        for (text, want) in [
            ("", "not an evidence bundle"),
            ("{}", "not an evidence bundle"),
            ("[1,2]", "not an evidence bundle"),
            (
                r#"{"format":"other/v9","selection":{"session":{"session_id":"s"}},"verifier_key":"k","checkpoint":"c","entries":[]}"#,
                "unsupported bundle format",
            ),
            (
                r#"{"format":"vigil-evidence-bundle/v1","selection":{"session":{"session_id":"s"}},"verifier_key":"k","checkpoint":"c","entries":[],"extra":1}"#,
                "not an evidence bundle",
            ),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser_or_checker() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let valid = r#"{"format":"vigil-evidence-bundle/v1","selection":{"time_range":{"from_unix_nanos":0,"to_unix_nanos":9}},"verifier_key":"a+00000000+AQ==","checkpoint":"x\n1\nAAAA\n\n— a AAAA\n","entries":[{"index":0,"leaf":"AQ==","inclusion_proof":["AA=="],"salt":"AA==","body":"AA=="}]}"#;
        for _ in 0..2000 {
            let mut bytes = valid.as_bytes().to_vec();
            for _ in 0..rng.gen_range(1..6) {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = rng.gen();
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                if let Ok(b) = parse(text) {
                    let _ = check(&b, None, &CheckOptions::default());
                }
            }
        }
    }
}
