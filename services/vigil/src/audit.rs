//! `vigil audit ...`: tools for auditors, who should trust nothing but the
//! verifier key they were given.
//!
//! `verify` fetches the signed checkpoint, checks its signature, recomputes
//! the Merkle tree from every entry (C2SP tlog-tiles entry bundles), checks
//! the level-0 hash tiles against the entries, and checks every event body
//! it may read against the commitment in its leaf.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::Subcommand;
use vigil_ledger::tile::{decode_entry_bundle, entries_path, tile_path};
use vigil_ledger::{
    body_commitment, leaf_hash, open_note, Checkpoint, Frontier, Hash, LeafRecord, NoteVerifier,
    TILE_WIDTH,
};
use vigil_ledger_service::http::BodiesResponse;
use vigil_proto::events::Event;
use vigil_proto::Message;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the ledger end to end against its verifier key; exit 0 only if all holds.
    Verify {
        /// The ledger's HTTP address, e.g. http://127.0.0.1:6580
        #[arg(long)]
        ledger: String,
        /// The verifier key (name+keyid+base64), as printed at the ledger's first start.
        #[arg(long)]
        key: String,
        /// Auditor bearer token, to check event bodies on a ledger that requires one.
        #[arg(long, env = "VIGIL_AUDITOR_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

pub fn run(cmd: AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Verify { ledger, key, token } => {
            let client = Client::new(&ledger, token);
            match verify(&client, &key) {
                Ok(report) => {
                    print!("{}", report.render());
                    if report.problems.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("vigil audit verify: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// A thin HTTP client for the ledger's read API.
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

    fn get(&self, path: &str) -> anyhow::Result<ureq::Response> {
        let mut req = self.agent.get(&format!("{}/{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                anyhow::bail!("GET /{path}: HTTP {code}: {}", body.trim())
            }
            Err(e) => anyhow::bail!("GET /{path}: {e}"),
        }
    }

    fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get(path)?.into_reader().read_to_end(&mut out)?;
        Ok(out)
    }
}

use std::io::Read as _;

/// What `verify` found. Problems name the entry they concern.
#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub problems: Vec<String>,
}

impl Report {
    fn ok(&mut self, line: String) {
        self.lines.push(line);
    }

    fn problem(&mut self, line: String) {
        self.problems.push(line);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(&format!("ok    {l}\n"));
        }
        for p in &self.problems {
            out.push_str(&format!("FAIL  {p}\n"));
        }
        if self.problems.is_empty() {
            out.push_str("verified: every check passed\n");
        } else {
            out.push_str(&format!(
                "NOT VERIFIED: {} problem(s)\n",
                self.problems.len()
            ));
        }
        out
    }
}

pub fn verify(client: &Client, vkey: &str) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let verifier = NoteVerifier::from_vkey_text(vkey)
        .map_err(|e| anyhow::anyhow!("the verifier key is not valid: {e}"))?;

    let note = String::from_utf8(client.get_bytes("checkpoint")?)
        .map_err(|_| anyhow::anyhow!("the checkpoint is not UTF-8"))?;
    let text = match open_note(&note, &verifier) {
        Ok(text) => text,
        Err(e) => {
            report.problem(format!("checkpoint signature: {e}"));
            return Ok(report);
        }
    };
    let checkpoint = match Checkpoint::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            report.problem(format!("checkpoint body: {e}"));
            return Ok(report);
        }
    };
    report.ok(format!(
        "checkpoint signed by {} (key id {:08x}): origin {}, size {}, root {}",
        verifier.name(),
        verifier.key_id(),
        checkpoint.origin,
        checkpoint.size,
        B64.encode(checkpoint.root)
    ));

    // Recompute the tree from every entry, and compare the level-0 tiles.
    let size = checkpoint.size;
    let mut frontier = Frontier::new();
    let mut leaves: Vec<Option<LeafRecord>> = Vec::with_capacity(size as usize);
    let mut tile_mismatches = 0u64;
    let bundles = size.div_ceil(TILE_WIDTH);
    for n in 0..bundles {
        let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
        let bundle = decode_entry_bundle(&client.get_bytes(&entries_path(n, width))?)
            .map_err(|e| anyhow::anyhow!("entry bundle {n}: {e}"))?;
        if bundle.len() as u64 != width {
            report.problem(format!(
                "entry bundle {n}: {} entries where the checkpoint needs {width}",
                bundle.len()
            ));
            return Ok(report);
        }
        let tile = client.get_bytes(&tile_path(0, n, width))?;
        for (i, data) in bundle.iter().enumerate() {
            let index = n * TILE_WIDTH + i as u64;
            let hash = leaf_hash(data);
            frontier.push(hash);
            if tile.get(i * 32..i * 32 + 32) != Some(&hash[..]) {
                tile_mismatches += 1;
                report.problem(format!(
                    "entry {index}: level-0 tile hash differs from the entry's leaf hash"
                ));
            }
            match LeafRecord::decode(data) {
                Ok(r) => leaves.push(Some(r)),
                Err(e) => {
                    report.problem(format!("entry {index}: leaf does not decode: {e}"));
                    leaves.push(None);
                }
            }
        }
    }
    let root: Hash = frontier.root();
    if root == checkpoint.root {
        report.ok(format!(
            "tree recomputed from {size} entries in {bundles} entry bundle(s): root matches the checkpoint"
        ));
    } else {
        report.problem(format!(
            "tree recomputed from {size} entries has root {}, the checkpoint says {}",
            B64.encode(root),
            B64.encode(checkpoint.root)
        ));
    }
    if tile_mismatches == 0 {
        report.ok(format!("level-0 hash tiles agree with all {size} entries"));
    }

    check_bodies(client, &leaves, &mut report)?;
    Ok(report)
}

/// Checks every body the ledger serves against its leaf's commitment, and the
/// decoded event against the leaf's id, time and kind.
fn check_bodies(
    client: &Client,
    leaves: &[Option<LeafRecord>],
    report: &mut Report,
) -> anyhow::Result<()> {
    let size = leaves.len() as u64;
    let mut present = 0u64;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut start = 0u64;
    while start < size {
        // Ask only for what the checkpoint covers: the log may have grown since.
        let count = 1024.min(size - start);
        let page: BodiesResponse = client
            .get(&format!("vigil/v1/bodies?start={start}&count={count}"))?
            .into_json()?;
        let next = start + count;
        for body in page.entries {
            if body.index < start || body.index >= next {
                report.problem(format!("body for entry {} was not asked for", body.index));
                continue;
            }
            present += 1;
            if let Err(why) =
                check_body(leaves[body.index as usize].as_ref(), &body.salt, &body.body)
            {
                report.problem(format!("entry {}: {why}", body.index));
            } else if let Some(leaf) = &leaves[body.index as usize] {
                *kinds.entry(leaf.kind.clone()).or_default() += 1;
            }
        }
        start = next;
    }
    if present == size {
        report.ok(format!("all {size} event bodies match their leaves"));
    } else {
        report.ok(format!(
            "{present} of {size} event bodies present and checked ({} absent: pruned or not served)",
            size - present
        ));
    }
    let by_kind: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
    report.ok(format!("events by kind: {}", by_kind.join(" ")));
    Ok(())
}

fn check_body(leaf: Option<&LeafRecord>, salt_b64: &str, body_b64: &str) -> Result<(), String> {
    let leaf = leaf.ok_or("no valid leaf to check the body against")?;
    let salt: [u8; 32] = B64
        .decode(salt_b64)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or("salt is not 32 bytes of base64")?;
    let body = B64.decode(body_b64).map_err(|_| "body is not base64")?;
    if body_commitment(&salt, &body) != leaf.commitment {
        return Err("body does not match the leaf's commitment (altered body)".into());
    }
    let event = Event::decode(body.as_slice()).map_err(|e| format!("body is not an event: {e}"))?;
    let id = uuid::Uuid::parse_str(&event.event_id).map_err(|_| "event id is not a UUID")?;
    if id.as_bytes() != &leaf.event_id
        || event.time_unix_nanos != leaf.time_unix_nanos
        || event.kind_name() != leaf.kind
    {
        return Err("event's id, time or kind differ from its leaf".into());
    }
    Ok(())
}
