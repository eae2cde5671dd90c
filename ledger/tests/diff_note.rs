//! Differential tests of signed notes and checkpoints against independent
//! implementations: `signed_note` (Cloudflare's port of Go's `sumdb/note`,
//! C2SP signed-note) and `tlog_tiles::Checkpoint` (C2SP tlog-checkpoint).
//!
//! Keys travel in both directions in the `name+keyid+base64` (and
//! `PRIVATE+KEY+...`) text forms, notes signed by either side open on the
//! other, and on mutated notes and checkpoints both parsers reach the same
//! verdict, with the few documented places where vigil is deliberately
//! stricter.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use signed_note::{Note, Signer as _, StandardSigner, StandardVerifier, VerifierList};
use vigil_ledger::checkpoint::Checkpoint;
use vigil_ledger::hash::leaf_hash;
use vigil_ledger::note::{open_note, sign_note, NoteError, NoteSigner, NoteVerifier};

/// The signed-note test key of Go's `sumdb/note` documentation (also used by
/// the `signed_note` crate's docs), with the note it produces.
const PN_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PN_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PN_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const PN_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

/// Key names exercising the allowed alphabet: URLs, non-ASCII, punctuation.
const NAMES: &[&str] = &[
    "vigil.example/audit",
    "PeterNeumann",
    "h\u{e9}llo.example/\u{fc}\u{3b1}",
    "a",
    "x-y_z.example.com:8443/log/2025",
    "\u{1f512}/log",
];

/// Note texts: a checkpoint, multi-line, with empty lines, non-ASCII.
fn texts() -> Vec<String> {
    vec![
        Checkpoint {
            origin: "vigil.example/audit".into(),
            size: 20852163,
            root: leaf_hash(b"root"),
        }
        .to_text(),
        PN_TEXT.to_owned(),
        "one\n\ntwo with an empty line above\n".to_owned(),
        "\n".to_owned(),
        "tr\u{e8}s \u{1f4dc} unicode \u{2014} text\n".to_owned(),
        format!("{}\n", "long line ".repeat(200)),
    ]
}

fn seeded_signer(name: &str, seed: u64) -> NoteSigner {
    let mut rng = StdRng::seed_from_u64(seed);
    NoteSigner::new(name, ed25519_dalek::SigningKey::generate(&mut rng)).unwrap()
}

/// `signed_note`: parse and verify against one key; the verified text.
fn sn_open(note: &[u8], vkey: &str) -> Result<Vec<u8>, String> {
    let v = StandardVerifier::new(vkey).map_err(|e| format!("key: {e}"))?;
    let n = Note::from_bytes(note).map_err(|e| format!("parse: {e}"))?;
    let (verified, _) = n
        .verify(&VerifierList::new(vec![Box::new(v)]))
        .map_err(|e| format!("verify: {e}"))?;
    assert!(!verified.is_empty());
    Ok(n.text().to_vec())
}

/// `signed_note`: sign `text` with every given signer key.
fn sn_sign(text: &str, skeys: &[&str]) -> String {
    let signers: Vec<StandardSigner> = skeys
        .iter()
        .map(|k| StandardSigner::new(k).unwrap())
        .collect();
    let refs: Vec<&dyn signed_note::Signer> = signers
        .iter()
        .map(|s| s as &dyn signed_note::Signer)
        .collect();
    let mut n = Note::new(text.as_bytes(), &[]).unwrap();
    n.add_sigs(&refs).unwrap();
    String::from_utf8(n.to_bytes()).unwrap()
}

#[test]
fn reference_key_and_note_agree_byte_for_byte() {
    let signer = NoteSigner::from_skey_text(PN_SKEY).unwrap();
    assert_eq!(signer.to_skey_text(), PN_SKEY);
    assert_eq!(signer.verifier_key_text(), PN_VKEY);
    assert_eq!(signer.key_id(), 0xc74f20a3);
    let ours = sign_note(PN_TEXT, &signer).unwrap();
    assert_eq!(ours, format!("{PN_TEXT}\n{PN_SIG}"));
    assert_eq!(ours, sn_sign(PN_TEXT, &[PN_SKEY]));
    let sn_signer = StandardSigner::new(PN_SKEY).unwrap();
    assert_eq!(sn_signer.key_id(), signer.key_id());
    assert_eq!(
        sn_open(ours.as_bytes(), PN_VKEY).unwrap(),
        PN_TEXT.as_bytes()
    );
}

#[test]
fn vigil_signs_signed_note_verifies() {
    for (i, name) in NAMES.iter().enumerate() {
        let signer = seeded_signer(name, i as u64);
        let vkey = signer.verifier_key_text();
        // Key format: signed_note parses vigil's verifier and signer keys and
        // derives the same key id.
        let sv = StandardVerifier::new(&vkey).unwrap();
        assert_eq!(signed_note::Verifier::key_id(&sv), signer.key_id());
        assert_eq!(signed_note::Verifier::name(&sv), *name);
        let ss = StandardSigner::new(&signer.to_skey_text()).unwrap();
        assert_eq!(ss.key_id(), signer.key_id());
        for text in texts() {
            let note = sign_note(&text, &signer).unwrap();
            assert_eq!(
                sn_open(note.as_bytes(), &vkey).unwrap(),
                text.as_bytes(),
                "{name}"
            );
            // signed_note re-encodes it byte for byte, and signs identically
            // (Ed25519 is deterministic).
            assert_eq!(
                Note::from_bytes(note.as_bytes()).unwrap().to_bytes(),
                note.as_bytes()
            );
            assert_eq!(sn_sign(&text, &[&signer.to_skey_text()]), note);
        }
    }
}

#[test]
fn signed_note_signs_vigil_verifies() {
    let mut rng = StdRng::seed_from_u64(7);
    for name in NAMES {
        let (skey, vkey) = signed_note::generate_key(&mut rng, name);
        let verifier = NoteVerifier::from_vkey_text(&vkey).unwrap();
        assert_eq!(verifier.name(), *name);
        let signer = NoteSigner::from_skey_text(&skey).unwrap();
        assert_eq!(signer.verifier_key_text(), vkey);
        assert_eq!(signer.to_skey_text(), skey);
        assert_eq!(verifier.key_id(), signer.key_id());
        for text in texts() {
            let note = sn_sign(&text, &[&skey]);
            assert_eq!(open_note(&note, &verifier).unwrap(), text, "{name}");
            assert_eq!(sign_note(&text, &signer).unwrap(), note);
            // A different key under the same name is an unknown key.
            let other = seeded_signer(name, 99).verifier();
            assert!(matches!(
                open_note(&note, &other),
                Err(NoteError::NoSignatureByKey { .. })
            ));
        }
    }
}

#[test]
fn cosigned_notes_interoperate() {
    let log = seeded_signer("vigil.example/audit", 1);
    let mut rng = StdRng::seed_from_u64(8);
    let (w_skey, w_vkey) = signed_note::generate_key(&mut rng, "witness.example/w1");
    let text = &texts()[0];
    // vigil's note, cosigned by signed_note.
    let ours = sign_note(text, &log).unwrap();
    let mut n = Note::from_bytes(ours.as_bytes()).unwrap();
    let w = StandardSigner::new(&w_skey).unwrap();
    n.add_sigs(&[&w]).unwrap();
    let both = String::from_utf8(n.to_bytes()).unwrap();
    assert!(both.starts_with(&ours));
    let log_v = NoteVerifier::from_vkey_text(&log.verifier_key_text()).unwrap();
    let w_v = NoteVerifier::from_vkey_text(&w_vkey).unwrap();
    assert_eq!(open_note(&both, &log_v).unwrap(), *text);
    assert_eq!(open_note(&both, &w_v).unwrap(), *text);
    let list = VerifierList::new(vec![
        Box::new(StandardVerifier::new(&log.verifier_key_text()).unwrap()),
        Box::new(StandardVerifier::new(&w_vkey).unwrap()),
    ]);
    let (verified, unverified) = Note::from_bytes(both.as_bytes())
        .unwrap()
        .verify(&list)
        .unwrap();
    assert_eq!((verified.len(), unverified.len()), (2, 0));
    // The witness signs first, vigil's line appended after: still fine.
    let theirs = sn_sign(text, &[&w_skey]);
    let sig_line = &ours[text.len() + 1..];
    let both = format!("{theirs}{sig_line}");
    assert_eq!(open_note(&both, &log_v).unwrap(), *text);
    assert_eq!(sn_open(both.as_bytes(), &w_vkey).unwrap(), text.as_bytes());
    assert_eq!(
        sn_open(both.as_bytes(), &log.verifier_key_text()).unwrap(),
        text.as_bytes()
    );
}

fn tlog_fields(c: &tlog_tiles::Checkpoint) -> (String, u64, [u8; 32], String) {
    (
        c.origin().to_owned(),
        c.size(),
        c.hash().0,
        c.extension().to_owned(),
    )
}

fn vigil_fields(c: &Checkpoint, ext: &[String]) -> (String, u64, [u8; 32], String) {
    (
        c.origin.clone(),
        c.size,
        c.root,
        ext.iter().map(|e| format!("{e}\n")).collect(),
    )
}

#[test]
fn checkpoint_text_matches_tlog_tiles() {
    let cases = [
        (
            "example.com/behind-the-sofa",
            20852163u64,
            b"a".as_slice(),
            "",
        ),
        ("o", 0, b"", ""),
        ("vigil.example/audit", u64::MAX, b"max", ""),
        ("has spaces and + signs", 1, b"x", "ext one\next two\n"),
        (
            "\u{fc}nicode/\u{1f4dc}",
            256,
            b"y",
            "\u{2014} not a signature\n",
        ),
    ];
    for (origin, size, seed, ext) in cases {
        let root = leaf_hash(seed);
        let ours = Checkpoint {
            origin: origin.into(),
            size,
            root,
        };
        let theirs =
            tlog_tiles::Checkpoint::new(origin, size, tlog_tiles::Hash(root), ext).unwrap();
        let text = String::from_utf8(theirs.to_bytes()).unwrap();
        assert_eq!(text, format!("{}{ext}", ours.to_text()));
        let (parsed, parsed_ext) = Checkpoint::parse_with_extensions(&text).unwrap();
        assert_eq!(parsed, ours);
        assert_eq!(vigil_fields(&parsed, &parsed_ext), tlog_fields(&theirs));
        let back = tlog_tiles::Checkpoint::from_bytes(ours.to_text().as_bytes()).unwrap();
        assert_eq!(tlog_fields(&back), vigil_fields(&ours, &[]));
        // Signed by vigil, opened by signed_note, parsed by tlog_tiles.
        let signer = seeded_signer("vigil.example/audit", 3);
        let note = sign_note(&text, &signer).unwrap();
        let opened = sn_open(note.as_bytes(), &signer.verifier_key_text()).unwrap();
        let c = tlog_tiles::Checkpoint::from_bytes(&opened).unwrap();
        assert_eq!(c, theirs);
    }
}

/// Single-character edits, chosen to hit the separators and the alphabet
/// of each field.
const EDIT_CHARS: &[char] = &[
    '\n', ' ', '+', '-', '=', '/', '0', '1', '9', 'A', 'x', '\r', '\t', '\u{1}', '\u{1f}',
    '\u{7f}', '\u{85}', '\u{a0}', '\u{2014}', '\u{e9}',
];

/// Applies one edit at char position `at` (modulo the length).
fn edit(s: &str, kind: u8, at: usize, c: char) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return c.to_string();
    }
    let at = at % chars.len();
    let mut out = chars.clone();
    match kind % 5 {
        0 => out[at] = c,
        1 => out.insert(at, c),
        2 => {
            out.remove(at);
        }
        3 => {
            // Duplicate the line containing `at`.
            let lines: Vec<&str> = s.split_inclusive('\n').collect();
            let mut pos = 0;
            let mut res = String::new();
            for l in &lines {
                let n = l.chars().count();
                res.push_str(l);
                if (pos..pos + n).contains(&at) {
                    res.push_str(l);
                }
                pos += n;
            }
            return res;
        }
        _ => out.truncate(at),
    }
    out.into_iter().collect()
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, char)>> {
    prop::collection::vec(
        (
            any::<u8>(),
            any::<usize>(),
            prop_oneof![prop::sample::select(EDIT_CHARS), any::<char>()],
        ),
        1..4,
    )
}

/// Where vigil is stricter than signed_note, by design: a second signature
/// line by the same key (signed_note skips it, vigil refuses the note), and
/// DEL / C1 control characters in the text (vigil refuses all of Unicode's
/// control characters; the spec only forbids those below U+0020).
fn vigil_stricter(note: &str, verifier: &NoteVerifier) -> bool {
    let prefix = format!("\u{2014} {} ", verifier.name());
    let by_key = note.lines().filter(|l| l.starts_with(&prefix)).count();
    by_key > 1 || note.chars().any(|c| c.is_control() && c >= '\u{7f}')
}

fn compare_note_verdicts(note: &str, original_text: &str, verifier: &NoteVerifier, vkey: &str) {
    let ours = open_note(note, verifier);
    let theirs = sn_open(note.as_bytes(), vkey);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.as_bytes(), b.as_slice(), "{note:?}");
            // Nothing but the signed text can ever be returned.
            assert_eq!(a, original_text, "{note:?}");
        }
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) if vigil_stricter(note, verifier) => {
            assert!(matches!(e, NoteError::MalformedNote(_)), "{e}");
        }
        _ => panic!("verdicts differ on {note:?}: vigil {ours:?}, signed_note {theirs:?}"),
    }
}

/// A note signed by the log and cosigned by a key the verifier does not
/// know, so that edits of an ignored signature line are covered too.
fn cosigned() -> (String, String, NoteVerifier, String) {
    let log = seeded_signer("vigil.example/audit", 11);
    let witness = seeded_signer("witness.example/w", 12);
    let text = texts()[0].clone();
    let note = sign_note(&text, &log).unwrap();
    let w = sign_note(&text, &witness).unwrap();
    let note = format!("{note}{}", &w[text.len() + 1..]);
    let vkey = log.verifier_key_text();
    (note, text, log.verifier(), vkey)
}

#[test]
fn every_single_byte_substitution_same_verdict() {
    let (note, text, verifier, vkey) = cosigned();
    let bytes = note.as_bytes();
    let mut valid_utf8 = 0;
    for i in 0..bytes.len() {
        for b in [
            0x00,
            0x01,
            0x0a,
            0x20,
            0x2b,
            0x2d,
            0x41,
            0x7f,
            0x80,
            bytes[i] ^ 0x01,
        ] {
            if b == bytes[i] {
                continue;
            }
            let mut m = bytes.to_vec();
            m[i] = b;
            match String::from_utf8(m) {
                Ok(s) => {
                    valid_utf8 += 1;
                    compare_note_verdicts(&s, &text, &verifier, &vkey);
                }
                Err(e) => assert!(sn_open(e.as_bytes(), &vkey).is_err()),
            }
        }
    }
    assert!(valid_utf8 > bytes.len() * 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn edited_notes_same_verdict(edits in edits()) {
        let (mut note, text, verifier, vkey) = cosigned();
        for (kind, at, c) in edits {
            note = edit(&note, kind, at, c);
        }
        compare_note_verdicts(&note, &text, &verifier, &vkey);
    }

    #[test]
    fn edited_checkpoints_same_verdict(
        origin in "[a-z./]{1,12}",
        size in prop_oneof![0u64..1000, any::<u64>()],
        root in any::<[u8; 32]>(),
        ext in prop::collection::vec("[ -~]{1,8}", 0..3),
        edits in prop::collection::vec(
            (any::<u8>(), any::<usize>(), prop::sample::select(EDIT_CHARS)),
            0..3,
        ),
    ) {
        let c = Checkpoint { origin, size, root };
        let mut text = c.to_text();
        for e in &ext {
            text.push_str(e);
            text.push('\n');
        }
        for (kind, at, ch) in edits {
            text = edit(&text, kind, at, ch);
        }
        let ours = Checkpoint::parse_with_extensions(&text);
        let theirs = tlog_tiles::Checkpoint::from_bytes(text.as_bytes());
        match (&ours, &theirs) {
            (Ok((c, ext)), Ok(t)) => prop_assert_eq!(vigil_fields(c, ext), tlog_fields(t)),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "verdicts differ on {:?}: vigil {:?}, tlog_tiles {:?}", text, ours, theirs),
        }
    }

    #[test]
    fn edited_verifier_keys_same_verdict(
        seed in any::<u64>(),
        name in "[a-z./]{1,10}",
        edits in prop::collection::vec(
            (any::<u8>(), any::<usize>(), prop::sample::select(EDIT_CHARS)),
            0..2,
        ),
    ) {
        let mut vkey = seeded_signer(&name, seed).verifier_key_text();
        for (kind, at, ch) in edits {
            vkey = edit(&vkey, kind, at, ch);
        }
        let ours = NoteVerifier::from_vkey_text(&vkey);
        let theirs = StandardVerifier::new(&vkey);
        match (&ours, &theirs) {
            (Ok(v), Ok(s)) => {
                prop_assert_eq!(v.name(), signed_note::Verifier::name(s));
                prop_assert_eq!(v.key_id(), signed_note::Verifier::key_id(s));
            }
            (Err(_), Err(_)) => {}
            // vigil trims trailing newlines of a key read from a file.
            (Ok(_), Err(_)) if vkey.ends_with('\n') => {}
            // vigil insists on lowercase hex key ids, as it writes them;
            // signed_note (like Go's note package) also takes uppercase.
            (Err(NoteError::MalformedKey(_)), Ok(_))
                if vkey.split('+').nth(1).is_some_and(|id| id.chars().any(|c| c.is_ascii_uppercase())) => {}
            _ => prop_assert!(false, "verdicts differ on {:?}: vigil {:?}, signed_note {:?}", vkey, ours.map(|v| v.key_id()), theirs.map(|s| signed_note::Verifier::key_id(&s))),
        }
    }
}
