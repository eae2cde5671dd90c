//! `vigil witness`: the witness side of C2SP tlog-witness
//! (<https://c2sp.org/tlog-witness>). A party other than the log's operator
//! runs it with its own key and state; it cosigns a checkpoint only if it
//! is signed by a key it trusts for the log and is consistent with the
//! largest checkpoint it cosigned before. Two auditors who each see a
//! checkpoint cosigned by the same witness see the same history: a fork
//! needs the witness to sign two inconsistent trees, which it refuses.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use vigil_ledger::cosignature::CosignerKey;
use vigil_ledger::{open_note, verify_consistency, Checkpoint, Hash, NoteVerifier};

/// Most consistency proof lines a request may carry (the spec's bound).
const MAX_PROOF_LINES: usize = 63;
/// Largest request body read.
pub const MAX_BODY_BYTES: usize = 64 << 10;

/// The largest checkpoint cosigned for one log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Seen {
    size: u64,
    /// Base64 root.
    root: String,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct WitnessState {
    logs: BTreeMap<String, Seen>,
}

/// A running witness: its key, the logs it witnesses, and what it cosigned.
pub struct Witness {
    key: CosignerKey,
    logs: HashMap<String, Vec<NoteVerifier>>,
    state_path: PathBuf,
    state: Mutex<WitnessState>,
}

/// What a refused request gets.
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl Witness {
    /// Opens (or starts) the witness in `dir`: its key in `witness.key`
    /// (created on first start, 0600), its state in `witness-state.json`.
    /// `logs`: each log's origin and the verifier keys it may sign with.
    pub fn open(dir: &Path, name: &str, logs: Vec<NoteVerifier>) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let key_path = dir.join("witness.key");
        let key = match std::fs::read_to_string(&key_path) {
            Ok(text) => CosignerKey::from_skey_text(text.trim())
                .map_err(|e| format!("{}: {e}", key_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = CosignerKey::generate(name).map_err(|e| e.to_string())?;
                write_private(&key_path, key.to_skey_text().as_bytes())
                    .map_err(|e| format!("{}: {e}", key_path.display()))?;
                key
            }
            Err(e) => return Err(format!("{}: {e}", key_path.display())),
        };
        let state_path = dir.join("witness-state.json");
        let state = match std::fs::read_to_string(&state_path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", state_path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => WitnessState::default(),
            Err(e) => return Err(format!("{}: {e}", state_path.display())),
        };
        let mut by_origin: HashMap<String, Vec<NoteVerifier>> = HashMap::new();
        for v in logs {
            by_origin.entry(v.name().to_string()).or_default().push(v);
        }
        Ok(Self {
            key,
            logs: by_origin,
            state_path,
            state: Mutex::new(state),
        })
    }

    /// The key auditors configure (`--witness`) and ledgers submit to.
    pub fn verifier_key(&self) -> String {
        self.key.verifier_key_text()
    }

    /// One `add-checkpoint` request: the cosignature line, or the refusal.
    fn add_checkpoint(&self, body: &str) -> Result<String, Refusal> {
        let bad = |why: &str| Refusal(StatusCode::BAD_REQUEST, format!("{why}\n"));
        let (head, note) = body.split_once("\n\n").ok_or_else(|| {
            bad("expected the old size, proof lines, an empty line, then the checkpoint")
        })?;
        let mut lines = head.split('\n');
        let old_text = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line must be `old <size>`"))?;
        if old_text.is_empty()
            || !old_text.bytes().all(|c| c.is_ascii_digit())
            || (old_text.len() > 1 && old_text.starts_with('0'))
        {
            return Err(bad("the old size is not a canonical decimal"));
        }
        let old: u64 = old_text
            .parse()
            .map_err(|_| bad("the old size is not a canonical decimal"))?;
        let proof: Vec<Hash> = lines
            .map(|l| {
                B64.decode(l)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| bad("a proof line is not 32 bytes of base64"))
            })
            .collect::<Result<_, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("too many proof lines"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("the checkpoint is not a signed note"))?;
        let (checkpoint, _) = Checkpoint::parse_with_extensions(&note[..=split])
            .map_err(|e| bad(&format!("checkpoint: {e}")))?;
        let Some(keys) = self.logs.get(&checkpoint.origin) else {
            return Err(Refusal(StatusCode::NOT_FOUND, "unknown log\n".into()));
        };
        if !keys.iter().any(|k| open_note(note, k).is_ok()) {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "no signature by a key this witness trusts for the log\n".into(),
            ));
        }
        if old > checkpoint.size {
            return Err(bad("the old size is larger than the checkpoint's"));
        }
        // Check and persist under one lock: two requests must not both
        // pass against the same old size (the spec's rollback race).
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seen = state.logs.get(&checkpoint.origin).cloned();
        let (seen_size, seen_root) = match &seen {
            Some(s) => (
                s.size,
                B64.decode(&s.root)
                    .ok()
                    .and_then(|v| <Hash>::try_from(v).ok())
                    .ok_or_else(|| {
                        Refusal(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "corrupt witness state\n".into(),
                        )
                    })?,
            ),
            None => (0, [0u8; 32]),
        };
        if old != seen_size {
            return Err(Refusal(StatusCode::CONFLICT, format!("{seen_size}\n")));
        }
        if old == checkpoint.size {
            if seen.is_some() && checkpoint.root != seen_root {
                return Err(Refusal(StatusCode::CONFLICT, format!("{seen_size}\n")));
            }
        } else if old == 0 {
            if !proof.is_empty() {
                return Err(bad("a proof from size 0 must be empty"));
            }
        } else if verify_consistency(old, checkpoint.size, &proof, &seen_root, &checkpoint.root)
            .is_err()
        {
            tracing::warn!(
                origin = %checkpoint.origin,
                old,
                size = checkpoint.size,
                "a checkpoint inconsistent with the one this witness cosigned was refused"
            );
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the consistency proof does not verify\n".into(),
            ));
        }
        let now_seen = Seen {
            size: checkpoint.size,
            root: B64.encode(checkpoint.root),
        };
        // A checkpoint it already cosigned (anyone may replay a public one)
        // changes nothing: no write, so replays cannot slow it down.
        if seen.as_ref() != Some(&now_seen) {
            state.logs.insert(checkpoint.origin.clone(), now_seen);
            persist(&self.state_path, &state).map_err(|e| {
                Refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot persist the witness state: {e}\n"),
                )
            })?;
        }
        drop(state);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.key
            .cosign(note, now)
            .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Written to a temporary file, synced, then renamed: a crash never
/// leaves a state older than a cosignature already handed out.
fn persist(path: &Path, state: &WitnessState) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `POST /add-checkpoint`.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(witness)
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: String) -> Response {
    match tokio::task::spawn_blocking(move || w.add_checkpoint(&body)).await {
        Ok(Ok(line)) => (StatusCode::OK, line).into_response(),
        Ok(Err(Refusal(status, text))) => {
            let content_type = if status == StatusCode::CONFLICT {
                "text/x.tlog.size"
            } else {
                "text/plain; charset=utf-8"
            };
            (status, [(header::CONTENT_TYPE, content_type)], text).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_ledger::tree::{consistency_proof, MemoryTree};
    use vigil_ledger::{sign_note, NoteSigner};

    fn request(old: u64, proof: &[Hash], note: &str) -> String {
        let mut s = format!("old {old}\n");
        for h in proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        format!("{s}\n{note}")
    }

    #[test]
    fn cosigns_only_consistent_growth_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = NoteSigner::generate("example.org/log").unwrap();
        let w = Witness::open(dir.path(), "witness.example/w1", vec![log.verifier()]).unwrap();
        let mut tree = MemoryTree::new();
        let checkpoint_at = |tree: &MemoryTree| {
            let c = Checkpoint {
                origin: "example.org/log".into(),
                size: tree.size(),
                root: tree.root(),
            };
            sign_note(&c.to_text(), &log).unwrap()
        };
        for i in 0..5u8 {
            tree.push_data(&[i]);
        }
        let five = checkpoint_at(&tree);
        assert!(w
            .add_checkpoint(&request(0, &[], &five))
            .unwrap()
            .starts_with("\u{2014} witness.example/w1 "));
        for i in 5..9u8 {
            tree.push_data(&[i]);
        }
        let nine = checkpoint_at(&tree);
        // Wrong old size: 409 with the size it knows.
        let Err(Refusal(status, text)) = w.add_checkpoint(&request(0, &[], &nine)) else {
            panic!("accepted a stale old size");
        };
        assert_eq!((status, text.as_str()), (StatusCode::CONFLICT, "5\n"));
        let proof = consistency_proof(&tree, 5, 9).unwrap();
        assert!(w.add_checkpoint(&request(5, &proof, &nine)).is_ok());

        // A fork: another tree of 12 from the same first 5 leaves does not
        // extend the 9 the witness cosigned.
        let mut fork = MemoryTree::new();
        for i in [0u8, 1, 2, 3, 4, 50, 51, 52, 53, 54, 55, 56] {
            fork.push_data(&[i]);
        }
        let forked = checkpoint_at(&fork);
        let bogus = consistency_proof(&fork, 9, 12).unwrap();
        let Err(Refusal(status, _)) = w.add_checkpoint(&request(9, &bogus, &forked)) else {
            panic!("cosigned a fork");
        };
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        // State survives a restart; unknown logs and keys are refused.
        drop(w);
        let other = NoteSigner::generate("example.org/log").unwrap();
        let w = Witness::open(dir.path(), "witness.example/w1", vec![log.verifier()]).unwrap();
        let Err(Refusal(status, text)) = w.add_checkpoint(&request(5, &proof, &nine)) else {
            panic!("forgot its state");
        };
        assert_eq!((status, text.as_str()), (StatusCode::CONFLICT, "9\n"));
        let by_other = sign_note(
            &Checkpoint {
                origin: "example.org/log".into(),
                size: 9,
                root: tree.root(),
            }
            .to_text(),
            &other,
        )
        .unwrap();
        let Err(Refusal(status, _)) = w.add_checkpoint(&request(9, &[], &by_other)) else {
            panic!("trusted an unknown key");
        };
        assert_eq!(status, StatusCode::FORBIDDEN);
        for bad in ["", "old 01\n\nx", "old x\n\nx", "old 1\nnotbase64\n\nx"] {
            assert!(w.add_checkpoint(bad).is_err(), "{bad:?}");
        }
    }
}
