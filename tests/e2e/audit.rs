//! The auditor's tools against a real gateway, real psql and the real
//! PostgreSQL: verify with a trusted state file, prove, export and
//! check-bundle, replay; tampering with the stored log, a bundle or the
//! checkpoint is caught and named; retention prunes bodies while every proof
//! keeps verifying.

use std::path::Path;
use std::process::Output;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use vigil_ledger::{leaf_hash, verify_inclusion};
use vigil_proto::events::{event::Kind, Event};
use vigil_tests::SqlRequestView;
use vigil_tests::{show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A JSON array of base64 hashes, as the CLI and the HTTP API print proofs.
fn b64_hashes(v: &serde_json::Value) -> Vec<[u8; 32]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

/// `vigil audit export --session SID --out PATH`.
fn export_session(gw: &Gateway, sid: &str, out: &Path) -> Output {
    audit(
        gw,
        &[
            "export",
            "--session",
            sid,
            "--out",
            &out.display().to_string(),
        ],
    )
}

fn audit(gw: &Gateway, args: &[&str]) -> Output {
    gw.audit(args)
}

/// Runs one psql session and returns its session id, once it is closed and
/// covered by a checkpoint.
fn session(gw: &Gateway, sql: &[&str]) -> String {
    let mut args = vec!["-X", "-q", "-v", "ON_ERROR_STOP=0"];
    for s in sql {
        args.push("-c");
        args.push(s);
    }
    let before: std::collections::HashSet<String> =
        gw.events().into_iter().map(|e| e.session_id).collect();
    let out = gw.psql(AGENT, AGENT_PASSWORD, &args);
    assert!(out.status.code().is_some(), "{}", show(&out));
    let events = gw.wait_for_events(|ev| {
        ev.iter().any(|e| {
            !before.contains(&e.session_id) && matches!(e.kind, Some(Kind::SessionClosed(_)))
        })
    });
    events
        .into_iter()
        .find(|e| !before.contains(&e.session_id))
        .unwrap()
        .session_id
}

#[test]
fn verify_prove_export_check_and_replay_a_session() {
    let gw = Gateway::start(GatewaySpec::new());
    let sid = session(
        &gw,
        &[
            "CREATE TEMP TABLE t(ssn text)",
            "INSERT INTO t VALUES ('123-45-6789')",
            "SELECT * FROM t",
            "SELECT 1/0",
        ],
    );
    let state = gw.dir.path().join("auditor-state.json");
    let state_s = state.display().to_string();

    // verify, with a trusted state created on first use.
    let out = audit(&gw, &["verify", "--state", &state_s]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("trusted state advanced to size"),
        "{}",
        show(&out)
    );
    // Each statement's decision is in its Request, and the count says so.
    assert!(
        stdout(&out).contains("(and 4 decisions carried by requests)"),
        "{}",
        show(&out)
    );
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();

    // More activity, then verify again: consistency with the trusted checkpoint.
    session(&gw, &["SELECT 2"]);
    let out = audit(&gw, &["verify", "--state", &state_s]);
    assert!(out.status.success(), "{}", show(&out));
    let report = stdout(&out);
    assert!(report.contains("still have the trusted root"), "{report}");
    assert!(
        report.contains("consistency proof from trusted size"),
        "{report}"
    );
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(second["size"].as_u64() > first["size"].as_u64());

    // prove: JSON that any RFC 9162 verifier can check; we check it here.
    let events = gw.events();
    let insert = events
        .iter()
        .find(|e| matches!(&e.kind, Some(Kind::Request(r)) if r.statement().starts_with("INSERT")))
        .unwrap();
    let out = audit(&gw, &["prove", "--event-id", &insert.event_id]);
    assert!(out.status.success(), "{}", show(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["event_id"], insert.event_id.as_str());
    assert_eq!(doc["leaf"]["kind"], "request");
    let hashes = b64_hashes(&doc["inclusion_proof"]);
    let root: [u8; 32] = B64
        .decode(doc["root"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let leaf = B64.decode(doc["leaf_data"].as_str().unwrap()).unwrap();
    verify_inclusion(
        &leaf_hash(&leaf),
        doc["index"].as_u64().unwrap(),
        doc["tree_size"].as_u64().unwrap(),
        &hashes,
        &root,
    )
    .expect("the printed proof verifies");
    let out = audit(
        &gw,
        &[
            "prove",
            "--event-id",
            "0190a0a0-0000-7000-8000-000000000000",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such event"));

    // export a session bundle, check it offline.
    let bundle = gw.dir.path().join("bundle.json");
    let out = export_session(&gw, &sid, &bundle);
    assert!(out.status.success(), "{}", show(&out));
    let check = |path: &Path, key: Option<&str>| {
        let mut args = vec![
            "audit".to_string(),
            "check-bundle".into(),
            path.display().to_string(),
        ];
        if let Some(k) = key {
            args.push("--key".into());
            args.push(k.into());
        }
        gw.vigil(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let key = gw.verifier_key();
    let out = check(&bundle, Some(&key));
    assert!(out.status.success(), "{}", show(&out));
    let report = stdout(&out);
    assert!(
        report.contains("all proven, none missing, ends with session_closed"),
        "{report}"
    );
    // Without --key, it still checks, and says whose key it used.
    let out = check(&bundle, None);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("using the verifier key inside the bundle"));

    // Tampered bundles: a dropped event, an altered body, another key.
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    let tampered = gw.dir.path().join("tampered.json");
    let write = |v: &serde_json::Value| std::fs::write(&tampered, v.to_string()).unwrap();

    let mut dropped = original.clone();
    dropped["entries"].as_array_mut().unwrap().remove(2);
    write(&dropped);
    let out = check(&tampered, Some(&key));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("are missing from the bundle"),
        "{}",
        show(&out)
    );

    let mut altered = original.clone();
    let body = altered["entries"][2]["body"].as_str().unwrap().to_string();
    let mut bytes = B64.decode(body).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    altered["entries"][2]["body"] = B64.encode(bytes).into();
    let index = altered["entries"][2]["index"].as_u64().unwrap();
    write(&altered);
    let out = check(&tampered, Some(&key));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!(
            "entry {index}: body does not match the leaf's commitment"
        )),
        "{}",
        show(&out)
    );

    let other = vigil_ledger::NoteSigner::generate("test.vigil/e2e")
        .unwrap()
        .verifier_key_text();
    let out = check(&bundle, Some(&other));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("checkpoint signature"),
        "{}",
        show(&out)
    );

    // A checkpoint whose size was edited (to hide later entries): the
    // signature no longer holds.
    let mut resized = original.clone();
    let note = resized["checkpoint"].as_str().unwrap().to_string();
    let mut lines: Vec<String> = note.split('\n').map(str::to_string).collect();
    lines[1] = (lines[1].parse::<u64>().unwrap() - 1).to_string();
    resized["checkpoint"] = lines.join("\n").into();
    write(&resized);
    let out = check(&tampered, Some(&key));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("checkpoint signature"),
        "{}",
        show(&out)
    );

    std::fs::write(&tampered, "{not json").unwrap();
    let out = check(&tampered, None);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an evidence bundle"));

    // replay: the statements, in order, with their outcomes.
    let out = audit(&gw, &["replay", "--session", &sid]);
    assert!(out.status.success(), "{}", show(&out));
    let t = stdout(&out);
    let pos = |needle: &str| {
        t.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{t}"))
    };
    assert!(pos("session opened") < pos("INSERT INTO t VALUES ('123-45-6789')"));
    assert!(pos("INSERT INTO t VALUES") < pos("INSERT 0 1"));
    assert!(pos("SELECT * FROM t") < pos("SELECT 1 — 1 row(s)"));
    assert!(pos("INSERT INTO t VALUES") < pos("└ decision on #1: "));
    assert!(pos("ERROR 22012") > pos("SELECT 1/0"));
    assert!(t.contains(&format!("session {sid}")) && t.contains(AGENT));
    assert!(pos("session closed") > pos("ERROR 22012"));

    // A time-range bundle holds exactly the events of that range.
    let from = events.first().unwrap().time_unix_nanos;
    let to = events.last().unwrap().time_unix_nanos + 1;
    let range = gw.dir.path().join("range.json");
    let out = audit(
        &gw,
        &[
            "export",
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--out",
            &range.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&range).unwrap()).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), events.len());
}

/// Opens the stopped gateway's RocksDB directly, as an insider with disk
/// access would, and applies `change` to it.
fn tamper(data: &Path, change: impl FnOnce(&rocksdb::DB)) {
    let path = data.join("ledger");
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, cfs).unwrap();
    change(&db);
    db.flush().unwrap();
}

fn verify_state(gw: &Gateway, state: &Path) -> Output {
    audit(gw, &["verify", "--state", &state.display().to_string()])
}

#[test]
fn tampering_with_the_stored_log_is_caught_and_names_the_entry() {
    let gw = Gateway::start(GatewaySpec::new());
    session(&gw, &["SELECT 1", "SELECT 2", "SELECT 3"]);
    let state = gw.dir.path().join("state.json");
    assert!(verify_state(&gw, &state).status.success());
    let (spec, dir) = gw.stop();
    let data = dir.path().join("data");

    // 1. One byte of leaf 3 (its body commitment) changed on disk.
    let mut saved = Vec::new();
    tamper(&data, |db| {
        let cf = db.cf_handle("leaves").unwrap();
        let mut leaf = db.get_cf(cf, 3u64.to_be_bytes()).unwrap().unwrap();
        saved = leaf.clone();
        // A version 2 leaf ends with the commitment, then the position.
        let in_commitment = leaf.len() - 33;
        leaf[in_commitment] ^= 0x80;
        db.put_cf(cf, 3u64.to_be_bytes(), leaf).unwrap();
    });
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    let out = verify_state(&gw, &state);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = stdout(&out);
    // The log's 11 entries lie in the bottom tile still filling, which the
    // ledger rebuilds from the stored leaves on open: its level-0 hashes
    // follow the altered leaf, so the tile comparison cannot see it (a
    // complete tile's stored hashes would differ). The trusted root and
    // the body's commitment catch it, and the latter names the entry.
    assert!(
        report.contains("no longer have the trusted root"),
        "{report}"
    );
    assert!(report.contains("entry 3: body does not match"), "{report}");
    let unchanged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();

    // 2. Restore it, then swap two leaves (reorder).
    let (spec, dir) = gw.stop();
    tamper(&dir.path().join("data"), |db| {
        let cf = db.cf_handle("leaves").unwrap();
        db.put_cf(cf, 3u64.to_be_bytes(), &saved).unwrap();
        let a = db.get_cf(cf, 1u64.to_be_bytes()).unwrap().unwrap();
        let b = db.get_cf(cf, 2u64.to_be_bytes()).unwrap().unwrap();
        db.put_cf(cf, 1u64.to_be_bytes(), b).unwrap();
        db.put_cf(cf, 2u64.to_be_bytes(), a).unwrap();
    });
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    let out = verify_state(&gw, &state);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = stdout(&out);
    // As above, the tile still filling follows the leaves; each swapped
    // leaf now commits to the other's body.
    assert!(
        report.contains("no longer have the trusted root"),
        "{report}"
    );
    assert!(report.contains("entry 1: body does not match"), "{report}");
    assert!(report.contains("entry 2: body does not match"), "{report}");
    // A failed run never advances the trusted state.
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(after, unchanged);

    // 3. Put the leaves back: verify passes again.
    let (spec, dir) = gw.stop();
    tamper(&dir.path().join("data"), |db| {
        let cf = db.cf_handle("leaves").unwrap();
        let a = db.get_cf(cf, 1u64.to_be_bytes()).unwrap().unwrap();
        let b = db.get_cf(cf, 2u64.to_be_bytes()).unwrap().unwrap();
        db.put_cf(cf, 1u64.to_be_bytes(), b).unwrap();
        db.put_cf(cf, 2u64.to_be_bytes(), a).unwrap();
    });
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    let out = verify_state(&gw, &state);
    assert!(out.status.success(), "{}", show(&out));

    // 4. A body deleted without retention.
    let (spec, dir) = gw.stop();
    tamper(&dir.path().join("data"), |db| {
        db.delete_cf(db.cf_handle("bodies").unwrap(), 2u64.to_be_bytes())
            .unwrap();
    });
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    let out = verify_state(&gw, &state);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("entry 2: the ledger cannot read this body"),
        "{}",
        show(&out)
    );

    // 5. An insider with the body key rewrites a statement and re-seals it.
    let (spec, dir) = gw.stop();
    let ring = vigil_ledger::Keyring::parse(
        &std::fs::read_to_string(dir.path().join("body.keys")).unwrap(),
    )
    .unwrap();
    tamper(&dir.path().join("data"), |db| {
        let cf = db.cf_handle("bodies").unwrap();
        let sealed = db.get_cf(cf, 1u64.to_be_bytes()).unwrap().unwrap();
        let mut plain = ring.open(1, &sealed).unwrap();
        let at = plain.len() - 3;
        plain[at] ^= 0x01;
        db.put_cf(cf, 1u64.to_be_bytes(), ring.seal(1, &plain))
            .unwrap();
    });
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    let out = verify_state(&gw, &state);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("entry 1: body does not match the leaf's commitment"),
        "{}",
        show(&out)
    );

    // 6. A rolled-back log: the trusted state is ahead of what is served.
    let mut ahead: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    ahead["size"] = (ahead["size"].as_u64().unwrap() + 1000).into();
    std::fs::write(&state, ahead.to_string()).unwrap();
    let out = verify_state(&gw, &state);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("rolled back or truncated"),
        "{}",
        show(&out)
    );
}

#[test]
fn retention_prunes_old_bodies_and_every_proof_still_verifies() {
    let gw = Gateway::start(GatewaySpec::new());
    let old = session(&gw, &["SELECT 'old patient data'"]);
    let old_events: Vec<Event> = gw
        .events()
        .into_iter()
        .filter(|e| e.session_id == old)
        .collect();
    let state = gw.dir.path().join("state.json");
    assert!(verify_state(&gw, &state).status.success());
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let recent = session(&gw, &["SELECT 'recent'"]);
    let (spec, dir) = gw.stop();

    // Offline, by hand: everything older than 2 s goes.
    let config = dir.path().join("vigil.toml").display().to_string();
    let out = std::process::Command::new(vigil_tests::vigil_bin())
        .args([
            "retention",
            "prune",
            "--older-than",
            "2s",
            "--force",
            "--config",
            &config,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("entries pruned; minimum index now"),
        "{}",
        show(&out)
    );

    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    let min: u64 = ureq::get(&format!("{}/vigil/v1/minimum-index", gw.ledger_url()))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(min as usize >= old_events.len(), "minimum index {min}");
    // Pruned bodies say so, and when.
    let page: serde_json::Value = ureq::get(&format!(
        "{}/vigil/v1/bodies?start=0&count=1",
        gw.ledger_url()
    ))
    .call()
    .unwrap()
    .into_json()
    .unwrap();
    assert!(
        page["entries"][0]["pruned"]["pruned_at_unix_nanos"]
            .as_i64()
            .unwrap()
            > 0
    );
    // The run is in the log itself.
    let events = gw.events();
    let pruned = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(Kind::RetentionPruned(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("a retention_pruned event");
    assert_eq!(pruned.end_index, min);
    assert_eq!(pruned.policy, "older than 2s (forced below the minimum 6y)");
    assert!(pruned.forced);
    assert!(
        events.iter().any(|e| e.session_id == recent),
        "recent bodies stay"
    );
    assert!(
        events.iter().all(|e| e.session_id != old),
        "old bodies are gone"
    );

    // Every check still passes, consistent with the pre-pruning checkpoint.
    let out = verify_state(&gw, &state);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("pruned by 1 retention run(s) recorded in the log"),
        "{}",
        show(&out)
    );
    // A pruned event can still be proven; its bundle says it was pruned.
    let out = audit(&gw, &["prove", "--event-id", &old_events[1].event_id]);
    assert!(out.status.success(), "{}", show(&out));
    let bundle = gw.dir.path().join("old.json");
    let out = export_session(&gw, &old, &bundle);
    assert!(out.status.success(), "{}", show(&out));
    let out = gw.vigil(&[
        "audit",
        "check-bundle",
        &bundle.display().to_string(),
        "--key",
        &gw.verifier_key(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let report = stdout(&out);
    assert!(
        report.contains("pruned by a retention run recorded in the log"),
        "{}",
        show(&out)
    );
    // Pruned or not, every event of the session is accounted for: the
    // pruned leaves prove their place in it.
    assert!(
        report.contains("none missing, ends with session_closed"),
        "{}",
        show(&out)
    );
}

/// The size and root of a checkpoint note's body (no signature check: the
/// notes were fetched from our own gateway and are compared by proofs).
fn size_and_root(note: &str) -> (u64, [u8; 32]) {
    let mut lines = note.lines().skip(1);
    let size = lines.next().unwrap().parse().unwrap();
    let root = B64
        .decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    (size, root)
}

#[test]
fn a_gateway_killed_mid_load_restarts_consistent_with_every_checkpoint_it_published() {
    let mut gw = Gateway::start(GatewaySpec::new());
    let state = gw.dir.path().join("state.json");
    assert!(verify_state(&gw, &state).status.success());
    let script: String = (0..20_000).map(|n| format!("SELECT {n};\n")).collect();
    let mut published: Vec<String> = Vec::new();
    for round in 0..3 {
        // Load: a psql session streaming statements, while we collect every
        // checkpoint the ledger publishes.
        let mut load = std::process::Command::new("psql")
            .env("PGPASSWORD", AGENT_PASSWORD)
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &gw_pg_port(&gw),
                "-U",
                AGENT,
                "-d",
                "postgres",
                "-f",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = load.stdin.take().unwrap();
        let s = script.clone();
        let writer = std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = stdin.write_all(s.as_bytes());
        });
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(700 + 300 * round);
        while std::time::Instant::now() < deadline {
            if let Ok(r) = ureq::get(&format!("{}/checkpoint", gw.ledger_url())).call() {
                published.push(r.into_string().unwrap());
            }
            std::thread::sleep(std::time::Duration::from_millis(40));
        }
        let (spec, dir) = gw.stop(); // SIGKILL, mid-load
        let _ = load.kill();
        let _ = load.wait();
        let _ = writer.join();
        gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));

        // Every checkpoint ever served is a prefix of the recovered log.
        let now = ureq::get(&format!("{}/checkpoint", gw.ledger_url()))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let (size, root) = size_and_root(&now);
        for note in &published {
            let (m, old_root) = size_and_root(note);
            assert!(
                m <= size,
                "round {round}: checkpoint {m} lost after restart (now {size})"
            );
            if m == 0 || m == size {
                continue;
            }
            let proof: serde_json::Value = ureq::get(&format!(
                "{}/vigil/v1/proof/consistency?from={m}&to={size}",
                gw.ledger_url()
            ))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
            let hashes = b64_hashes(&proof["proof"]);
            vigil_ledger::verify_consistency(m, size, &hashes, &old_root, &root)
                .unwrap_or_else(|e| panic!("round {round}: checkpoint {m} -> {size}: {e}"));
        }
        let out = verify_state(&gw, &state);
        assert!(out.status.success(), "round {round}: {}", show(&out));
    }
    assert!(published.len() > 10, "the load produced checkpoints");
}

fn gw_pg_port(gw: &Gateway) -> String {
    gw.spec.pg_port.to_string()
}

#[test]
fn the_retention_schedule_in_vigil_up_prunes_on_its_own() {
    let mut spec = GatewaySpec::new();
    spec.ledger_extra =
        "[ledger.retention]\nolder_than = \"2s\"\nevery = \"1s\"\nminimum = \"1s\"\n".into();
    let gw = Gateway::start(spec);
    let old = session(&gw, &["SELECT 'to be pruned'"]);
    let state = gw.dir.path().join("state.json");
    assert!(verify_state(&gw, &state).status.success());

    // The store is single-process: pruning by hand while vigil runs is
    // refused with a clear message.
    let config = gw.dir.path().join("vigil.toml").display().to_string();
    let out = gw.vigil(&[
        "retention",
        "prune",
        "--older-than",
        "1s",
        "--config",
        &config,
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop it first"),
        "{}",
        show(&out)
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let min_index = loop {
        let min: u64 = ureq::get(&format!("{}/vigil/v1/minimum-index", gw.ledger_url()))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if min > 0 {
            break min;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the schedule never pruned"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let events = gw.wait_for_events(|ev| {
        ev.iter()
            .any(|e| matches!(e.kind, Some(Kind::RetentionPruned(_))))
    });
    assert!(
        events.iter().all(|e| e.session_id != old),
        "old bodies are gone"
    );
    assert!(
        min_index >= 4,
        "the whole old session was eligible: {min_index}"
    );
    let out = verify_state(&gw, &state);
    assert!(out.status.success(), "{}", show(&out));
}
