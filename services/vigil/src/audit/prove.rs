//! `vigil audit prove`: the inclusion proof of one event, as JSON, checked
//! against the signed checkpoint before it is printed.

use anyhow::{anyhow, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use vigil_ledger::{leaf_hash, verify_inclusion, LeafRecord};

use super::client::{Client, KeyChain, LeafFetcher};
use crate::timefmt::rfc3339;

/// The proof document. Everything needed to re-check it with any RFC 9162
/// implementation: leaf data, index, tree size, root, proof hashes, and the
/// signed checkpoint that vouches for the root.
#[derive(Serialize)]
pub struct InclusionProofDoc {
    pub event_id: String,
    pub index: u64,
    pub leaf: LeafDoc,
    /// Base64 of the leaf data; its RFC 6962 leaf hash is `leaf_hash`.
    pub leaf_data: String,
    pub leaf_hash: String,
    pub tree_size: u64,
    pub root: String,
    /// Base64 hashes, from the leaf upwards.
    pub inclusion_proof: Vec<String>,
    /// The C2SP signed checkpoint (signed note) whose root this proof reaches.
    pub checkpoint: String,
    pub verifier_key: String,
    pub verified: bool,
}

#[derive(Serialize)]
pub struct LeafDoc {
    pub kind: String,
    pub time: String,
    pub time_unix_nanos: i64,
    /// SHA-256(salt || event bytes), base64.
    pub body_commitment: String,
}

pub fn prove(client: &Client, vkey: &str, event_id: &str) -> anyhow::Result<InclusionProofDoc> {
    let id = uuid::Uuid::parse_str(event_id).context("--event-id is not a UUID")?;
    let note = client.checkpoint_note()?;
    let checkpoint = KeyChain::follow(vkey, &client.key_rotations()?)
        .and_then(|chain| chain.open(&note))
        .map_err(|e| anyhow!("the ledger's {e}"))?;
    let index = client.lookup(&id.to_string())?;
    if index >= checkpoint.size {
        anyhow::bail!(
            "event {id} is at index {index}, not yet covered by the signed checkpoint (size {}); retry in a second",
            checkpoint.size
        );
    }
    let data = LeafFetcher::new(client, checkpoint.size).leaf(index)?;
    let leaf = LeafRecord::decode(&data).map_err(|e| anyhow!("leaf {index}: {e}"))?;
    if leaf.event_id != *id.as_bytes() {
        anyhow::bail!(
            "the ledger says {id} is at index {index}, but that leaf holds another event"
        );
    }
    let proof = client.inclusion_proof(index, checkpoint.size)?;
    let lh = leaf_hash(&data);
    verify_inclusion(&lh, index, checkpoint.size, &proof, &checkpoint.root)
        .map_err(|e| anyhow!("the ledger's inclusion proof does not verify: {e}"))?;
    Ok(InclusionProofDoc {
        event_id: id.to_string(),
        index,
        leaf: LeafDoc {
            kind: leaf.kind.clone(),
            time: rfc3339(leaf.time_unix_nanos),
            time_unix_nanos: leaf.time_unix_nanos,
            body_commitment: B64.encode(leaf.commitment),
        },
        leaf_data: B64.encode(&data),
        leaf_hash: B64.encode(lh),
        tree_size: checkpoint.size,
        root: B64.encode(checkpoint.root),
        inclusion_proof: proof.iter().map(|h| B64.encode(h)).collect(),
        checkpoint: note,
        verifier_key: vkey.trim().to_string(),
        verified: true,
    })
}
