//! The log's side of C2SP tlog-witness: every new checkpoint goes to the
//! configured witnesses with a consistency proof from the size each last
//! cosigned; their cosignatures are added to the checkpoint the ledger
//! serves. A witness that is down or refuses costs its cosignature, never
//! the checkpoint (auditors decide how many they require).

use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use vigil_ledger::cosignature::CosignatureVerifier;
use vigil_ledger::{Checkpoint, Store};

/// One configured witness.
pub struct WitnessClient {
    /// Its submission prefix, e.g. `http://witness.example:7800`.
    pub url: String,
    pub key: CosignatureVerifier,
    /// The size it last cosigned for us, as far as we know (0 at start: a
    /// 409 tells us the real one).
    last_size: Mutex<u64>,
    agent: ureq::Agent,
}

impl WitnessClient {
    pub fn new(url: &str, key: CosignatureVerifier) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            key,
            last_size: Mutex::new(0),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }

    /// Submits `note` (a signed checkpoint of `store`); returns the
    /// witness's verified cosignature line.
    pub fn cosign(&self, store: &Store, note: &str) -> Result<String, String> {
        let split = note.rfind("\n\n").ok_or("not a signed note")?;
        let checkpoint = Checkpoint::parse_with_extensions(&note[..=split])
            .map_err(|e| e.to_string())?
            .0;
        let mut old = *self.last_size.lock().unwrap_or_else(|e| e.into_inner());
        // At most one retry: after a 409 we know the witness's size.
        for _ in 0..2 {
            if old > checkpoint.size {
                return Err(format!(
                    "the witness has cosigned size {old}, larger than this log's {}: the log was rolled back, or forked",
                    checkpoint.size
                ));
            }
            let mut body = format!("old {old}\n");
            if old > 0 && old < checkpoint.size {
                for h in store
                    .consistency_proof(old, checkpoint.size)
                    .map_err(|e| e.to_string())?
                {
                    body.push_str(&B64.encode(h));
                    body.push('\n');
                }
            }
            body.push('\n');
            body.push_str(note);
            match self
                .agent
                .post(&format!("{}/add-checkpoint", self.url))
                .send_string(&body)
            {
                Ok(resp) => {
                    let lines = resp.into_string().map_err(|e| e.to_string())?;
                    let cosigned = format!("{note}{lines}");
                    return match self.key.verify(&cosigned) {
                        Ok(Some(_)) => {
                            *self.last_size.lock().unwrap_or_else(|e| e.into_inner()) =
                                checkpoint.size;
                            let line = lines
                                .lines()
                                .find(|l| {
                                    self.key
                                        .verify(&format!("{note}{l}\n"))
                                        .is_ok_and(|t| t.is_some())
                                })
                                .ok_or("no cosignature line by the witness's key")?;
                            Ok(format!("{line}\n"))
                        }
                        Ok(None) => Err("the witness answered without its cosignature".into()),
                        Err(e) => Err(format!("the witness's cosignature does not verify: {e}")),
                    };
                }
                Err(ureq::Error::Status(409, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    old = text
                        .trim()
                        .parse()
                        .map_err(|_| format!("the witness answered 409 with {text:?}"))?;
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    return Err(format!("the witness refused ({code}): {}", text.trim()));
                }
                Err(e) => return Err(format!("the witness is unreachable: {e}")),
            }
        }
        Err("the witness kept answering 409".into())
    }
}

/// `note` with the cosignature of every witness that gave one.
pub fn cosign_all(store: &Store, note: &str, witnesses: &[WitnessClient]) -> String {
    let mut out = note.to_string();
    for w in witnesses {
        match w.cosign(store, note) {
            Ok(line) => out.push_str(&line),
            Err(e) => tracing::warn!(witness = %w.url, error = %e, "no cosignature"),
        }
    }
    out
}
