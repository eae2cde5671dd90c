//! A thin HTTP client for the ledger's read API, and the checks every audit
//! command starts with: the signed checkpoint, and leaves fetched from
//! C2SP tlog-tiles entry bundles.

use std::collections::HashMap;
use std::io::Read as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use vigil_ledger::cosignature::CosignatureVerifier;
use vigil_ledger::rotation::{follow_chain, open_with_epochs, KeyEpoch, Rotation};
use vigil_ledger::tile::{decode_entry_bundle, entries_path};
use vigil_ledger::{Checkpoint, NoteVerifier, TILE_WIDTH};
use vigil_ledger_service::http::{
    BodiesResponse, BodyRecord, FindResponse, ProofResponse, RotationsResponse,
};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Talks to one ledger's HTTP address.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<ureq::Response> {
        let mut req = self.agent.get(&format!("{}/{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                bail!("GET /{path}: HTTP {code}: {}", body.trim())
            }
            Err(e) => bail!("GET /{path}: {e}"),
        }
    }

    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get(path)?
            .into_reader()
            .take(64 << 20)
            .read_to_end(&mut out)?;
        Ok(out)
    }

    /// The signed checkpoint note as served.
    pub fn checkpoint_note(&self) -> anyhow::Result<String> {
        String::from_utf8(self.get_bytes("checkpoint")?)
            .map_err(|_| anyhow!("the checkpoint is not UTF-8"))
    }

    /// Every signing-key rotation note the ledger serves, oldest first.
    pub fn key_rotations(&self) -> anyhow::Result<Vec<String>> {
        let r: RotationsResponse = self
            .get("vigil/v1/key-rotations")?
            .into_json()
            .context("key rotations response is not the expected JSON")?;
        Ok(r.rotations)
    }

    /// Bodies `[start, start + count)` (at most 1024 per call).
    pub fn bodies(&self, start: u64, count: u64) -> anyhow::Result<Vec<BodyRecord>> {
        let page: BodiesResponse = self
            .get(&format!("vigil/v1/bodies?start={start}&count={count}"))?
            .into_json()
            .context("bodies response is not the expected JSON")?;
        Ok(page.entries)
    }

    /// Every leaf index matching `query` (`session=..`, `from=..&to=..`).
    pub fn find_all(&self, query: &str) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut path = format!("vigil/v1/find?{query}&limit=10000");
            if let Some(p) = &page {
                path.push_str(&format!("&page={p}"));
            }
            let resp: FindResponse = self.get(&path)?.into_json()?;
            out.extend(resp.indexes);
            match resp.next {
                Some(n) => page = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// The leaf index of an event id.
    pub fn lookup(&self, event_id: &str) -> anyhow::Result<u64> {
        #[derive(serde::Deserialize)]
        struct Lookup {
            index: u64,
        }
        let l: Lookup = self
            .get(&format!("vigil/v1/lookup?event_id={event_id}"))?
            .into_json()?;
        Ok(l.index)
    }

    /// An inclusion proof of `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> anyhow::Result<Vec<[u8; 32]>> {
        let p: ProofResponse = self
            .get(&format!(
                "vigil/v1/proof/inclusion?index={index}&size={size}"
            ))?
            .into_json()?;
        decode_hashes(&p.proof)
    }

    /// A consistency proof between two sizes.
    pub fn consistency_proof(&self, from: u64, to: u64) -> anyhow::Result<Vec<[u8; 32]>> {
        let p: ProofResponse = self
            .get(&format!("vigil/v1/proof/consistency?from={from}&to={to}"))?
            .into_json()?;
        decode_hashes(&p.proof)
    }
}

pub fn decode_hashes(b64: &[String]) -> anyhow::Result<Vec<[u8; 32]>> {
    b64.iter()
        .enumerate()
        .map(|(i, h)| {
            B64.decode(h)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| anyhow!("proof hash {i} is not 32 bytes of base64"))
        })
        .collect()
}

/// Parses a verifier key given on the command line.
pub fn verifier(vkey: &str) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::from_vkey_text(vkey.trim())
        .map_err(|e| anyhow!("the verifier key is not valid: {e}"))
}

/// The witnesses an auditor requires: a checkpoint counts only with at
/// least `min` valid cosignatures by these keys.
#[derive(Default)]
pub struct WitnessPolicy {
    pub keys: Vec<CosignatureVerifier>,
    pub min: usize,
}

impl WitnessPolicy {
    /// Parses `--witness` keys; `min` defaults to all of them.
    pub fn parse(keys: &[String], min: Option<usize>) -> anyhow::Result<Self> {
        let keys = keys
            .iter()
            .map(|k| {
                CosignatureVerifier::from_vkey_text(k).map_err(|e| anyhow!("--witness {k:?}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // One witness counts once: the same public key given twice (under
        // one name or two; the name is not signed) would count twice.
        let mut seen = std::collections::HashSet::new();
        for k in &keys {
            if !seen.insert(k.public_key()) {
                bail!(
                    "--witness {}: the same witness key is given twice",
                    k.name()
                );
            }
        }
        let min = min.unwrap_or(keys.len());
        if min > keys.len() {
            bail!(
                "--min-witnesses {min} is more than the {} --witness keys given",
                keys.len()
            );
        }
        Ok(Self { keys, min })
    }

    /// Checks the cosignatures on `note` (a signed checkpoint) into `report`.
    pub fn check(&self, note: &str, report: &mut super::report::Report) {
        if self.keys.is_empty() {
            return;
        }
        let mut valid = 0;
        for k in &self.keys {
            match k.verify(note) {
                Ok(Some(t)) => {
                    valid += 1;
                    report.ok(format!(
                        "checkpoint cosigned by witness {} (key id {:08x}) at {}",
                        k.name(),
                        k.key_id(),
                        crate::timefmt::rfc3339((t as i64).saturating_mul(1_000_000_000))
                    ));
                }
                Ok(None) => report.note(format!("no cosignature by witness {}", k.name())),
                Err(e) => report.problem(format!("witness {}: {e}", k.name())),
            }
        }
        if valid < self.min {
            report.problem(format!(
                "the checkpoint has {valid} valid witness cosignature(s), {} required: nothing shows that other parties saw this same log",
                self.min
            ));
        }
    }
}

/// The keys an auditor trusts: the one given, and those it handed over to
/// through rotations signed by both keys.
pub struct KeyChain {
    pub epochs: Vec<KeyEpoch>,
    pub rotations: Vec<Rotation>,
}

impl KeyChain {
    /// Follows `notes` from the key given as `vkey`.
    pub fn follow(vkey: &str, notes: &[String]) -> Result<Self, String> {
        let trusted = verifier(vkey).map_err(|e| e.to_string())?;
        let (epochs, rotations) =
            follow_chain(notes, &trusted).map_err(|e| format!("key rotations: {e}"))?;
        Ok(Self { epochs, rotations })
    }

    /// Opens a checkpoint signed by the key of its time.
    pub fn open(&self, note: &str) -> Result<Checkpoint, String> {
        open_with_epochs(note, &self.epochs).map(|(c, _)| c)
    }

    /// What an auditor reads about each rotation followed.
    pub fn describe(&self) -> Vec<String> {
        self.rotations
            .iter()
            .map(|r| {
                format!(
                    "signing key rotated at size {}: key id {:08x} -> {:08x}, signed by both",
                    r.checkpoint.size,
                    r.from.key_id(),
                    r.to.key_id()
                )
            })
            .collect()
    }
}

/// Fetches leaves by index from entry bundles of the tree of `size`
/// leaves, fetching each bundle once.
pub struct LeafFetcher<'a> {
    client: &'a Client,
    size: u64,
    bundles: HashMap<u64, Vec<Vec<u8>>>,
}

impl<'a> LeafFetcher<'a> {
    pub fn new(client: &'a Client, size: u64) -> Self {
        Self {
            client,
            size,
            bundles: HashMap::new(),
        }
    }

    /// The leaf data at `index < size`.
    pub fn leaf(&mut self, index: u64) -> anyhow::Result<Vec<u8>> {
        if index >= self.size {
            bail!(
                "entry {index} is beyond the checkpoint's size {}",
                self.size
            );
        }
        let n = index / TILE_WIDTH;
        if !self.bundles.contains_key(&n) {
            let width = (self.size - n * TILE_WIDTH).min(TILE_WIDTH);
            let bundle = decode_entry_bundle(&self.client.get_bytes(&entries_path(n, width))?)
                .map_err(|e| anyhow!("entry bundle {n}: {e}"))?;
            if bundle.len() as u64 != width {
                bail!("entry bundle {n} has {} entries, not {width}", bundle.len());
            }
            self.bundles.insert(n, bundle);
        }
        Ok(self.bundles[&n][(index % TILE_WIDTH) as usize].clone())
    }

    /// Forgets a fetched bundle (a full scan keeps memory flat this way).
    pub fn take_bundle(&mut self, n: u64) -> Option<Vec<Vec<u8>>> {
        self.bundles.remove(&n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_witness_counts_once_whatever_it_is_called() {
        let key = vigil_ledger::cosignature::CosignerKey::generate("w.test/one").unwrap();
        let text = key.verifier_key_text();
        let err = WitnessPolicy::parse(&[text.clone(), text.clone()], None)
            .err()
            .expect("the same key twice is refused")
            .to_string();
        assert!(err.contains("given twice"), "{err}");
        let other = vigil_ledger::cosignature::CosignerKey::generate("w.test/two").unwrap();
        let policy = WitnessPolicy::parse(&[text, other.verifier_key_text()], Some(1)).unwrap();
        assert_eq!((policy.keys.len(), policy.min), (2, 1));
        assert!(WitnessPolicy::parse(&[], Some(1)).is_err());
    }
}
