//! Issue 20: evidence an auditor can trust against the operator. The
//! adversary is played for real: edited bundle files, an HTTP proxy in
//! front of the ledger's API that rewrites its answers, retention run with
//! a period far below the configured minimum. Each test names the finding
//! it closes; before the fix, each of these passed as "verified".

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use serde_json::Value;
use vigil_proto::events::event::Kind;
use vigil_tests::rewriting_proxy::RewritingProxy;
use vigil_tests::{show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs one psql session; returns its id once its SessionClosed is in the
/// log and covered by a checkpoint.
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
    let sid = events
        .into_iter()
        .find(|e| !before.contains(&e.session_id))
        .unwrap()
        .session_id;
    let size = gw.events().len() as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gw.checkpoint_size() < size {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sid
}

fn export(gw: &Gateway, sid: &str, out: &Path, state: Option<&Path>) -> Value {
    let path = out.display().to_string();
    let mut args = vec!["export", "--session", sid, "--out", &path];
    let state_s = state.map(|s| s.display().to_string());
    if let Some(s) = &state_s {
        args.extend(["--state", s]);
    }
    let result = gw.audit(&args);
    assert!(result.status.success(), "{}", show(&result));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// `vigil audit check-bundle FILE --key KEY [extra...]`, on `bundle` written to disk.
fn check(gw: &Gateway, bundle: &Value, extra: &[&str]) -> Output {
    let path = gw
        .dir
        .path()
        .join(format!("checked-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&path, bundle.to_string()).unwrap();
    let (path_s, key) = (path.display().to_string(), gw.verifier_key());
    let mut args = vec!["audit", "check-bundle", &path_s, "--key", &key];
    args.extend_from_slice(extra);
    gw.vigil(&args)
}

fn failed_with(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", show(out));
    assert!(
        stdout(out).contains(needle),
        "wanted {needle:?}\n{}",
        show(out)
    );
}

fn verify_state(gw: &Gateway, state: &Path) -> Output {
    gw.audit(&["verify", "--state", &state.display().to_string()])
}

/// Finding 1: a bundle must prove the whole session, up to its end; an
/// empty one proves nothing; a stale one is refused by an auditor who
/// trusts a newer checkpoint.
#[test]
fn a_bundle_proves_a_whole_session_or_is_refused() {
    let gw = Gateway::start(GatewaySpec::new());
    let sid = session(&gw, &["SELECT 1", "SELECT 2", "SELECT 3"]);
    let bundle = export(&gw, &sid, &gw.dir.path().join("b.json"), None);
    let out = check(&gw, &bundle, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("none missing, ends with session_closed"),
        "{}",
        show(&out)
    );
    let entries = bundle["entries"].as_array().unwrap().clone();
    assert!(entries.len() > 5);

    // SessionClosed dropped: refused, unless the auditor accepts an open
    // session explicitly (and is told what that means).
    let mut no_end = bundle.clone();
    no_end["entries"] = Value::Array(entries[..entries.len() - 1].to_vec());
    failed_with(&check(&gw, &no_end, &[]), "its end is not in the bundle");
    let out = check(&gw, &no_end, &["--allow-open"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("accepted with --allow-open"));

    // Only the first four events.
    let mut first_four = bundle.clone();
    first_four["entries"] = Value::Array(entries[..4].to_vec());
    failed_with(
        &check(&gw, &first_four, &[]),
        "its end is not in the bundle",
    );

    // No entries at all: nothing proven, with or without --allow-open.
    let mut empty = bundle.clone();
    empty["entries"] = Value::Array(vec![]);
    failed_with(&check(&gw, &empty, &[]), "holds no entries");
    failed_with(&check(&gw, &empty, &["--allow-open"]), "holds no entries");

    // A middle event dropped is a failure too.
    let mut gap = bundle.clone();
    gap["entries"].as_array_mut().unwrap().remove(2);
    failed_with(&check(&gw, &gap, &[]), "are missing from the bundle");

    // The auditor trusts a newer checkpoint: the old bundle is refused.
    let state = gw.dir.path().join("state.json");
    let state_s = state.display().to_string();
    session(&gw, &["SELECT 'later'"]);
    assert!(verify_state(&gw, &state).status.success());
    failed_with(
        &check(&gw, &bundle, &["--state", &state_s]),
        "is older than the newest you trust",
    );
    // Exported with the state after the log grew: it carries a consistency
    // proof from the trusted checkpoint, and passes.
    session(&gw, &["SELECT 'even later'"]);
    let fresh = export(&gw, &sid, &gw.dir.path().join("fresh.json"), Some(&state));
    assert!(fresh["consistency"]["from_size"].as_u64().is_some());
    let out = check(&gw, &fresh, &["--state", &state_s]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("extends the one you trust"));
    // Without that proof, nothing shows it extends the trusted one.
    let mut unproven = fresh.clone();
    unproven.as_object_mut().unwrap().remove("consistency");
    failed_with(
        &check(&gw, &unproven, &["--state", &state_s]),
        "nothing shows the bundle's checkpoint",
    );
}

/// Finding 1, through the API: replay through a server that serves an older
/// valid checkpoint, or leaves the tail out of `/find`, is refused.
#[test]
fn replay_through_a_lying_api_is_refused() {
    let gw = Gateway::start(GatewaySpec::new());
    session(&gw, &["SELECT 'before'"]);
    let old_checkpoint = ureq::get(&format!("{}/checkpoint", gw.ledger_url()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let sid = session(&gw, &["SELECT 'the session'", "SELECT 2"]);
    let state = gw.dir.path().join("state.json");
    assert!(verify_state(&gw, &state).status.success());
    let key = gw.verifier_key();
    let replay = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "audit",
            "replay",
            "--ledger",
            url,
            "--key",
            &key,
            "--session",
            &sid,
        ];
        args.extend_from_slice(extra);
        gw.vigil(&args)
    };
    let honest = replay(&gw.ledger_url(), &[]);
    assert!(honest.status.success(), "{}", show(&honest));
    assert!(stdout(&honest).contains("SELECT 'the session'"));

    // An older, validly signed checkpoint: the session is not in it.
    let stale = old_checkpoint.clone();
    let proxy = RewritingProxy::start(
        &gw.ledger_url(),
        Arc::new(move |path: &str, _: &[u8]| {
            (path == "/checkpoint").then(|| stale.clone().into_bytes())
        }),
    );
    let out = replay(&proxy.url, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("holds no entries"), "{}", show(&out));
    let out = replay(&proxy.url, &["--state", &state.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("older than the newest you trust"),
        "{}",
        show(&out)
    );

    // `/find` leaves the session's last two events out.
    let proxy = RewritingProxy::start(
        &gw.ledger_url(),
        Arc::new(|path: &str, body: &[u8]| {
            if !path.starts_with("/vigil/v1/find?session=") {
                return None;
            }
            let mut v: Value = serde_json::from_slice(body).ok()?;
            let indexes = v["indexes"].as_array_mut()?;
            let keep = indexes.len().saturating_sub(2);
            indexes.truncate(keep);
            Some(v.to_string().into_bytes())
        }),
    );
    let out = replay(&proxy.url, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("its end is not in the bundle"),
        "{}",
        show(&out)
    );
}

/// Finding 3: `verify` believes no "pruned" the log does not prove, and
/// checks the minimum index against the proven runs and the log's size.
#[test]
fn verify_believes_pruning_only_where_the_log_proves_it() {
    let gw = Gateway::start(GatewaySpec::new());
    session(&gw, &["SELECT 'kept'"]);
    let proxy = RewritingProxy::start(
        &gw.ledger_url(),
        Arc::new(|path: &str, body: &[u8]| {
            if path == "/vigil/v1/minimum-index" {
                return Some(b"1000000\n".to_vec());
            }
            if !path.starts_with("/vigil/v1/bodies?") {
                return None;
            }
            let mut v: Value = serde_json::from_slice(body).ok()?;
            for e in v["entries"].as_array_mut()? {
                e["salt"] = "".into();
                e["body"] = "".into();
                e["pruned"] =
                    serde_json::json!({"pruned_at_unix_nanos": 1, "cutoff_unix_nanos": 2});
            }
            Some(v.to_string().into_bytes())
        }),
    );
    let key = gw.verifier_key();
    let out = gw.vigil(&["audit", "verify", "--ledger", &proxy.url, "--key", &key]);
    failed_with(
        &out,
        "body said pruned, but no retention run recorded in the log pruned this entry",
    );
    assert!(
        stdout(&out).contains("minimum index is 1000000, beyond the"),
        "{}",
        show(&out)
    );
    // The honest ledger verifies.
    let out = gw.audit(&["verify"]);
    assert!(out.status.success(), "{}", show(&out));
}

/// Findings 2 and 4: retention below the configured minimum needs
/// `--force`, is recorded as forced and warned about; a bundle's pruned
/// entries count only where a proven run pruned them, and only for the
/// session their leaves belong to.
#[test]
fn pruning_is_proven_and_fresh_evidence_pruning_is_flagged() {
    let gw = Gateway::start(GatewaySpec::new());
    let old = session(&gw, &["SELECT 'old'", "SELECT 'older'"]);
    let other = session(&gw, &["SELECT 'other'"]);
    // Before any pruning: a fabricated "pruned" entry is refused.
    let bundle = export(&gw, &old, &gw.dir.path().join("old.json"), None);
    let mut faked = bundle.clone();
    {
        let entries = faked["entries"].as_array_mut().unwrap();
        entries.truncate(3);
        let e = entries[2].as_object_mut().unwrap();
        e.remove("salt");
        e.remove("body");
        e.insert("pruned_at_unix_nanos".into(), 1.into());
        e.insert("seq".into(), 2.into());
    }
    failed_with(
        &check(&gw, &faked, &["--allow-open"]),
        "no retention run recorded in the log pruned this entry",
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    let recent = session(&gw, &["SELECT 'recent'"]);
    let (spec, dir) = gw.stop();

    // Far below the configured minimum (6y): refused without --force.
    let config = dir.path().join("vigil.toml").display().to_string();
    let prune = |extra: &[&str]| {
        let mut args = vec![
            "retention",
            "prune",
            "--older-than",
            "3s",
            "--config",
            &config,
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(vigil_tests::vigil_bin())
            .args(&args)
            .output()
            .unwrap()
    };
    let out = prune(&[]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("shorter than the configured minimum 6y"),
        "{}",
        show(&out)
    );
    let out = prune(&["--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("FORCED below the minimum 6y"),
        "{}",
        show(&out)
    );

    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    // verify names the run, says it was forced, and warns: evidence seconds
    // old is far younger than the six years an auditor expects.
    let out = gw.audit(&["verify"]);
    assert!(out.status.success(), "{}", show(&out));
    let report = stdout(&out);
    for needle in [
        "FORCED below the configured minimum",
        "WARN  the retention run at entry",
        "younger than the 6y you expect",
        "with 1 warning(s) to read",
    ] {
        assert!(report.contains(needle), "wanted {needle:?}\n{report}");
    }
    let out = gw.audit(&["verify", "--retention-period", "3s"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stdout(&out).contains("WARN"), "{}", show(&out));

    // The pruned session's bundle proves every event, pruned or not, by
    // the leaves' stream positions and the retention run's own record.
    let pruned = export(&gw, &old, &gw.dir.path().join("pruned.json"), None);
    assert!(!pruned["retention"].as_array().unwrap().is_empty());
    assert!(pruned["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e.get("body").is_none() && e["seq"].is_u64()));
    let out = check(&gw, &pruned, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("none missing, ends with session_closed"));

    // A pruned leaf of another session, claimed as one of this session's:
    // its stream position says otherwise.
    let theirs = export(&gw, &other, &gw.dir.path().join("other.json"), None);
    let mut borrowed = pruned.clone();
    {
        let entries = borrowed["entries"].as_array_mut().unwrap();
        let stolen_seq = entries[1]["seq"].clone();
        entries.remove(1);
        let mut foreign = theirs["entries"][1].clone();
        foreign["seq"] = stolen_seq;
        entries.push(foreign);
    }
    failed_with(
        &check(&gw, &borrowed, &[]),
        "does not prove it is event 1 of this session",
    );
    // Without the retention run's record, nothing proves the pruning.
    let mut unrecorded = pruned.clone();
    unrecorded.as_object_mut().unwrap().remove("retention");
    failed_with(
        &check(&gw, &unrecorded, &[]),
        "no retention run recorded in the log pruned this entry",
    );
    // The recent session was not touched.
    let out = gw.audit(&["replay", "--session", &recent]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("SELECT 'recent'"));
}

/// Finding 5: a lost key is not silently replaced; a rotation is signed by
/// both keys and an auditor who trusts the old key follows it; a key that
/// replaced the old one without a rotation is not trusted.
#[test]
fn a_signing_key_is_never_replaced_silently_and_a_rotation_is_followed() {
    let gw = Gateway::start(GatewaySpec::new());
    let old_key = gw.verifier_key();
    let sid = session(&gw, &["SELECT 'before the rotation'"]);
    let (spec, dir) = gw.stop();
    let data = dir.path().join("data");
    let key_file = data.join("ledger-signing.key");
    let verifier_file = data.join("ledger-verifier.key");
    let vigil = |args: &[&str]| {
        std::process::Command::new(vigil_tests::vigil_bin())
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };

    // The key file moved away: the gateway refuses to start, and neither a
    // new key nor a new verifier key file appears.
    let moved = dir.path().join("signing.key.moved");
    std::fs::rename(&key_file, &moved).unwrap();
    let verifier_before = std::fs::read_to_string(&verifier_file).unwrap();
    let out = vigil(&["up", "--config", "vigil.toml"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("is missing, but the log already has"),
        "{}",
        show(&out)
    );
    assert!(!key_file.exists());
    assert_eq!(
        std::fs::read_to_string(&verifier_file).unwrap(),
        verifier_before
    );
    std::fs::rename(&moved, &key_file).unwrap();

    // A rotation: both keys sign it.
    let out = vigil(&["ledger", "rotate-key", "--config", "vigil.toml"]);
    assert!(out.status.success(), "{}", show(&out));
    let new_key = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("new verifier key: "))
        .expect("the new key is printed")
        .to_string();
    assert_ne!(new_key, old_key);
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    assert_eq!(gw.verifier_key(), new_key);
    let after = session(&gw, &["SELECT 'after the rotation'"]);
    let verify_with = |key: &str| {
        gw.vigil(&[
            "audit",
            "verify",
            "--ledger",
            &gw.ledger_url(),
            "--key",
            key,
        ])
    };
    for key in [&old_key, &new_key] {
        let out = verify_with(key);
        assert!(out.status.success(), "{}", show(&out));
    }
    let report = stdout(&verify_with(&old_key));
    assert!(report.contains("signing key rotated at size"), "{report}");
    assert!(report.contains("the key rotation at size"), "{report}");
    // A bundle checked with the old key follows the rotation too.
    let bundle = export(&gw, &after, &gw.dir.path().join("after.json"), None);
    assert!(!bundle["key_rotations"].as_array().unwrap().is_empty());
    let path = gw.dir.path().join("after-check.json");
    std::fs::write(&path, bundle.to_string()).unwrap();
    let out = gw.vigil(&[
        "audit",
        "check-bundle",
        &path.display().to_string(),
        "--key",
        &old_key,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    // Without the rotation in the bundle, the old key does not vouch for it.
    let mut stripped = bundle.clone();
    stripped.as_object_mut().unwrap().remove("key_rotations");
    std::fs::write(&path, stripped.to_string()).unwrap();
    let out = gw.vigil(&[
        "audit",
        "check-bundle",
        &path.display().to_string(),
        "--key",
        &old_key,
    ]);
    failed_with(&out, "checkpoint signature");
    let _ = sid;

    // A key file replaced by another key of the same name (the wrong
    // backup restored, or a takeover): the gateway refuses to start, as
    // the key did not sign the log's checkpoint.
    let (_spec, dir) = gw.stop();
    let stranger = Gateway::start(GatewaySpec::new());
    let stranger_key =
        std::fs::read_to_string(stranger.dir.path().join("data").join("ledger-signing.key"))
            .unwrap();
    drop(stranger);
    std::fs::write(
        dir.path().join("data").join("ledger-signing.key"),
        stranger_key,
    )
    .unwrap();
    let out = std::process::Command::new(vigil_tests::vigil_bin())
        .args(["up", "--config", "vigil.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("did not sign this log's latest checkpoint"),
        "{}",
        show(&out)
    );
}

/// Review of issue 20: an event forged into the log (by whoever can write
/// to it) as a second, early "session closed" would let a bundle end the
/// session before its real tail. `verify` sees two leaves claiming the
/// same place in the session, and events after a session's end.
#[test]
fn a_forged_early_end_of_a_session_is_caught_by_verify() {
    use vigil_proto::Message as _;
    let gw = Gateway::start(GatewaySpec::new());
    let sid = session(&gw, &["SELECT 1", "SELECT 2", "SELECT 3"]);
    let state = gw.dir.path().join("state.json");
    assert!(verify_state(&gw, &state).status.success());
    let before = gw.checkpoint_size();
    let (spec, dir) = gw.stop();
    {
        let keys = std::fs::read_to_string(dir.path().join("body.keys")).unwrap();
        let store = vigil_ledger::Store::open(
            &dir.path().join("data").join("ledger"),
            vigil_ledger::Keyring::parse(&keys).unwrap(),
        )
        .unwrap();
        let id = uuid::Uuid::now_v7();
        let forged = vigil_proto::events::Event {
            event_id: id.to_string(),
            time_unix_nanos: 1,
            session_id: sid.clone(),
            seq: 4,
            kind: Some(Kind::SessionClosed(Default::default())),
            ..Default::default()
        };
        store
            .append_batch(vec![vigil_ledger::NewEntry {
                event_id: *id.as_bytes(),
                time_unix_nanos: 1,
                kind: "session_closed".into(),
                body: forged.encode_to_vec(),
                session_id: sid.clone(),
                seq: 4,
                subject: String::new(),
            }])
            .unwrap();
    }
    // The gateway signs the grown log with its real key.
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gw.checkpoint_size() <= before {
        assert!(std::time::Instant::now() < deadline, "no new checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = verify_state(&gw, &state);
    failed_with(&out, "claim the same place in the same session");
    assert!(
        stdout(&out).contains("comes after the stream's end"),
        "{}",
        show(&out)
    );
}

/// A `vigil witness` process; killed when dropped.
struct WitnessProcess {
    started: vigil_tests::Started,
    url: String,
    key: String,
    _dir: tempfile::TempDir,
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.started.child.kill();
        let _ = self.started.child.wait();
    }
}

fn start_witness(name: &str, log_key: &str) -> WitnessProcess {
    let dir = tempfile::tempdir().unwrap();
    let port = vigil_tests::free_port();
    let args: Vec<String> = [
        "witness",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.path().join("w").display().to_string(),
        "--name",
        name,
        "--log-key",
        log_key,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = vigil_tests::spawn_vigil(
        dir.path(),
        &args,
        "witness.stderr",
        "vigil witness is ready",
    );
    let key = started
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("witness verifier key: "))
        .expect("the witness prints its key")
        .to_string();
    WitnessProcess {
        started,
        url: format!("http://127.0.0.1:{port}"),
        key,
        _dir: dir,
    }
}

/// Witnesses: each new checkpoint is cosigned by two witnesses run apart
/// from the log; an auditor requires their cosignatures; a copy of the
/// data directory that diverges (a fork shown to another auditor) gets no
/// cosignature, so the auditor who requires witnesses refuses it.
#[test]
fn witnesses_cosign_the_log_and_refuse_a_fork() {
    let gw = Gateway::start(GatewaySpec::new());
    let log_key = gw.verifier_key();
    let (spec, dir) = gw.stop();
    let w1 = start_witness("witness-one.test/w", &log_key);
    let w2 = start_witness("witness-two.test/w", &log_key);
    let config = dir.path().join("vigil.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let tables = format!(
        "[[ledger.witnesses]]\nurl = \"{}\"\nkey = \"{}\"\n[[ledger.witnesses]]\nurl = \"{}\"\nkey = \"{}\"\n[[postgres]]",
        w1.url, w1.key, w2.url, w2.key
    );
    std::fs::write(&config, text.replacen("[[postgres]]", &tables, 1)).unwrap();
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    session(&gw, &["SELECT 'witnessed'"]);
    let cosigned = |gw: &Gateway| {
        let note = ureq::get(&format!("{}/checkpoint", gw.ledger_url()))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        note.contains("witness-one.test/w") && note.contains("witness-two.test/w")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !cosigned(&gw) {
        assert!(std::time::Instant::now() < deadline, "never cosigned");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let verify = |gw: &Gateway, extra: &[&str]| {
        let mut args = vec!["verify"];
        args.extend_from_slice(extra);
        gw.audit(&args)
    };
    let out = verify(&gw, &["--witness", &w1.key, "--witness", &w2.key]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("checkpoint cosigned by witness witness-two.test/w"),
        "{}",
        show(&out)
    );
    // A witness the checkpoint lacks: one of two required is not enough.
    let absent = vigil_ledger::cosignature::CosignerKey::generate("absent.test/w")
        .unwrap()
        .verifier_key_text();
    failed_with(
        &verify(&gw, &["--witness", &w1.key, "--witness", &absent]),
        "1 valid witness cosignature(s), 2 required",
    );
    let out = verify(
        &gw,
        &[
            "--witness",
            &w1.key,
            "--witness",
            &absent,
            "--min-witnesses",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));

    // Copy the data directory, let the original grow (cosigned), then run
    // the copy on its own history: a fork.
    let (spec, dir) = gw.stop();
    let fork = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", dir.path().display()),
            &fork.path().display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // The copy's config names the copy's own data directory and keys.
    let fork_config = fork.path().join("vigil.toml");
    let text = std::fs::read_to_string(&fork_config).unwrap();
    std::fs::write(
        &fork_config,
        text.replace(
            &dir.path().display().to_string(),
            &fork.path().display().to_string(),
        ),
    )
    .unwrap();
    let gw = Gateway::spawn(spec.clone(), dir, Gateway::config_args_for(&spec));
    session(&gw, &["SELECT 'the history the witnesses saw'"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !(cosigned(&gw)
        && verify(&gw, &["--witness", &w1.key, "--witness", &w2.key])
            .status
            .success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the grown log was never cosigned"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(gw);
    let forked = Gateway::spawn(spec.clone(), fork, Gateway::config_args_for(&spec));
    session(
        &forked,
        &["SELECT 'another history'", "SELECT 'shown to someone else'"],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    // The fork's own key still signs it (the operator holds it), but no
    // witness cosigns a tree inconsistent with what it cosigned.
    let out = verify(&forked, &[]);
    assert!(out.status.success(), "{}", show(&out));
    failed_with(
        &verify(&forked, &["--witness", &w1.key, "--witness", &w2.key]),
        "0 valid witness cosignature(s), 2 required",
    );
}
