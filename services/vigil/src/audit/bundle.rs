//! Evidence bundles: a self-contained JSON file with the events of a session
//! or a time range, each with its leaf and an inclusion proof against one
//! signed checkpoint, plus the checkpoint and its verifier key. An auditor
//! checks it offline with `vigil audit check-bundle`, with no access to the
//! gateway.
//!
//! What a bundle proves: each event it holds is in the log the checkpoint
//! commits to, unaltered. For a session it also shows completeness, because
//! every event of a session carries its position (`seq`, from 0): a missing
//! event is a gap. For a time range, completeness rests on the ledger's
//! index (the leaves of the whole range are not included).

use std::collections::BTreeSet;

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use vigil_ledger::{leaf_hash, verify_inclusion, Checkpoint, LeafRecord};
use vigil_proto::events::{event, Event};

use super::client::{decode_hashes, open_checkpoint, verifier, Client, LeafFetcher};
use super::report::Report;
use super::verify::check_body;

/// The format tag every bundle starts with.
pub const FORMAT: &str = "vigil-evidence-bundle/v1";
/// Largest bundle file `check-bundle` reads.
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

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
    /// When retention deleted the body, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_at_unix_nanos: Option<i64>,
}

/// Builds a bundle from a live ledger. The checkpoint is verified first, so
/// an export never packages a log the key does not vouch for.
pub fn export(client: &Client, vkey: &str, selection: Selection) -> anyhow::Result<Bundle> {
    let verifier = verifier(vkey)?;
    let note = client.checkpoint_note()?;
    let checkpoint = open_checkpoint(&note, &verifier).map_err(|e| anyhow!("the ledger's {e}"))?;
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
    for index in indexes {
        let leaf = fetcher.leaf(index)?;
        let proof = client.inclusion_proof(index, checkpoint.size)?;
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
        entries.push(BundleEntry {
            index,
            leaf: B64.encode(&leaf),
            inclusion_proof: proof.iter().map(|h| B64.encode(h)).collect(),
            salt,
            body,
            pruned_at_unix_nanos: pruned,
        });
    }
    Ok(Bundle {
        format: FORMAT.into(),
        selection,
        verifier_key: vkey.trim().to_string(),
        checkpoint: note,
        entries,
    })
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

/// Parses bundle JSON; malformed input is an error, never a panic.
pub fn parse(text: &str) -> anyhow::Result<Bundle> {
    let bundle: Bundle = serde_json::from_str(text).context("not an evidence bundle")?;
    if bundle.format != FORMAT {
        bail!(
            "unsupported bundle format {:?} (expected {FORMAT})",
            bundle.format
        );
    }
    Ok(bundle)
}

/// Checks a bundle offline. `trusted_key`, when given, must be the key the
/// bundle names; without it the bundle's own key is used and the report
/// says so (the auditor must compare its key id with the one they trust).
pub fn check(bundle: &Bundle, trusted_key: Option<&str>) -> anyhow::Result<BundleReport> {
    let mut report = BundleReport::default();
    let vkey = match trusted_key {
        Some(k) if k.trim() != bundle.verifier_key.trim() => {
            report.checks.problem(format!(
                "the bundle names verifier key {:?}, not the trusted one",
                bundle.verifier_key
            ));
            k.trim()
        }
        Some(k) => k.trim(),
        None => bundle.verifier_key.trim(),
    };
    let verifier = verifier(vkey)?;
    if trusted_key.is_none() {
        report.checks.ok(format!(
            "using the verifier key inside the bundle ({} key id {:08x}): compare it with the key you were given, or pass --key",
            verifier.name(),
            verifier.key_id()
        ));
    }
    let checkpoint: Checkpoint = match open_checkpoint(&bundle.checkpoint, &verifier) {
        Ok(c) => c,
        Err(e) => {
            report.checks.problem(e);
            return Ok(report);
        }
    };
    report.checks.ok(format!(
        "checkpoint signed by {}: origin {}, size {}",
        verifier.name(),
        checkpoint.origin,
        checkpoint.size
    ));

    let mut seen = BTreeSet::new();
    let mut pruned = 0u64;
    for e in &bundle.entries {
        match check_entry(e, &checkpoint, &bundle.selection) {
            Ok(Some(event)) => report.events.push((e.index, event)),
            Ok(None) => pruned += 1,
            Err(why) => report.checks.problem(format!("entry {}: {why}", e.index)),
        }
        if !seen.insert(e.index) {
            report
                .checks
                .problem(format!("entry {}: listed twice", e.index));
        }
    }
    report.events.sort_by_key(|(i, _)| *i);
    report.checks.ok(format!(
        "{} entries: {} events proven included and unaltered, {pruned} pruned by retention (leaf proven, body gone)",
        bundle.entries.len(),
        report.events.len()
    ));
    if let Selection::Session { session_id } = &bundle.selection {
        check_session_complete(session_id, &report.events.clone(), pruned, &mut report);
    }
    Ok(report)
}

/// One entry: leaf in the tree, body against leaf, event in the selection.
/// `Ok(None)` for a pruned entry whose leaf is proven.
fn check_entry(
    e: &BundleEntry,
    checkpoint: &Checkpoint,
    selection: &Selection,
) -> Result<Option<Event>, String> {
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
    let (salt, body) = match (&e.salt, &e.body, e.pruned_at_unix_nanos) {
        (Some(s), Some(b), None) => (s, b),
        (None, None, Some(_)) => return Ok(None),
        _ => return Err("needs both salt and body, or a pruned time".into()),
    };
    let event = check_body(Some(&leaf), salt, body)?;
    match selection {
        Selection::Session { session_id } if &event.session_id != session_id => Err(format!(
            "event belongs to session {:?}, not the bundle's",
            event.session_id
        )),
        Selection::TimeRange {
            from_unix_nanos,
            to_unix_nanos,
        } if event.time_unix_nanos < *from_unix_nanos
            || event.time_unix_nanos >= *to_unix_nanos =>
        {
            Err("event time is outside the bundle's range".into())
        }
        _ => Ok(Some(event)),
    }
}

/// Sessions number their events from 0: any gap is a missing event.
fn check_session_complete(
    session_id: &str,
    events: &[(u64, Event)],
    pruned: u64,
    report: &mut BundleReport,
) {
    let mut seqs: Vec<u64> = events.iter().map(|(_, e)| e.seq).collect();
    seqs.sort_unstable();
    let expected_len = seqs.last().map_or(0, |&last| last + 1);
    let missing: Vec<u64> = (0..expected_len)
        .filter(|s| seqs.binary_search(s).is_err())
        .collect();
    let closed = events
        .iter()
        .any(|(_, e)| matches!(e.kind, Some(event::Kind::SessionClosed(_))));
    if missing.is_empty() && pruned == 0 {
        report.checks.ok(format!(
            "session {session_id}: events 0..{expected_len} all present, none missing{}",
            if closed {
                ", ends with SessionClosed"
            } else {
                " (no SessionClosed: the session was open at the checkpoint)"
            }
        ));
    } else if pruned == 0 {
        report.checks.problem(format!(
            "session {session_id}: event(s) with seq {missing:?} are missing from the bundle"
        ));
    } else {
        report.checks.ok(format!(
            "session {session_id}: {pruned} event(s) pruned by retention, so completeness cannot be shown for those"
        ));
    }
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
                    let _ = check(&b, None);
                }
            }
        }
    }
}
