//! Parser robustness: every parser of untrusted input (signed notes,
//! checkpoints, verifier and signer keys, tile paths, entry bundles, leaf
//! records, proofs) is fed arbitrary and mutated input and must return
//! `Ok` or `Err`, never panic; whatever it accepts must be exactly the
//! canonical encoding of what it returns. A table of specific malformed
//! inputs pins the error each one gets.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use proptest::prelude::*;
use rand::SeedableRng;
use vigil_ledger::checkpoint::{Checkpoint, CheckpointError};
use vigil_ledger::hash::{leaf_hash, Hash};
use vigil_ledger::leaf::{body_commitment, LeafError, LeafRecord};
use vigil_ledger::note::{open_note, sign_note, NoteError, NoteSigner, NoteVerifier};
use vigil_ledger::proof::{verify_consistency, verify_inclusion, ProofError};
use vigil_ledger::tile::{
    decode_entry_bundle, encode_entry_bundle, entries_path, parse_tile_path, tile_path,
    try_encode_entry_bundle, TileError, TilePath,
};
use vigil_ledger::tree::{consistency_proof, inclusion_proof, MemoryTree};

fn signer(name: &str, seed: u64) -> NoteSigner {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    NoteSigner::new(name, ed25519_dalek::SigningKey::generate(&mut rng)).unwrap()
}

const ORIGIN: &str = "vigil.example/audit";

fn checkpoint_text() -> String {
    Checkpoint {
        origin: ORIGIN.into(),
        size: 4242,
        root: leaf_hash(b"root"),
    }
    .to_text()
}

/// Re-serializes what the checkpoint parser returned.
fn checkpoint_back(c: &Checkpoint, ext: &[String]) -> String {
    let mut s = c.to_text();
    for e in ext {
        s.push_str(e);
        s.push('\n');
    }
    s
}

/// Re-serializes a parsed tile path.
fn tile_back(t: &TilePath) -> String {
    match *t {
        TilePath::Hashes {
            level,
            index,
            width,
        } => tile_path(level, index, width),
        TilePath::Entries { index, width } => entries_path(index, width),
    }
}

/// Characters that matter to the formats under test.
const EDIT_CHARS: &[char] = &[
    '\n', ' ', '+', '-', '=', '/', '.', 'p', 'x', '0', '1', '9', 'A', 'a', '\r', '\t', '\u{0}',
    '\u{1}', '\u{7f}', '\u{85}', '\u{2014}', '\u{e9}',
];

/// One random edit (replace, insert, delete, truncate) at char position `at`.
fn edit(s: &str, kind: u8, at: usize, c: char) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return c.to_string();
    }
    let at = at % chars.len();
    match kind % 4 {
        0 => chars[at] = c,
        1 => chars.insert(at, c),
        2 => {
            chars.remove(at);
        }
        _ => chars.truncate(at),
    }
    chars.into_iter().collect()
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, char)>> {
    prop::collection::vec(
        (
            any::<u8>(),
            any::<usize>(),
            prop_oneof![3 => prop::sample::select(EDIT_CHARS), 1 => any::<char>()],
        ),
        1..4,
    )
}

fn apply(s: &str, edits: &[(u8, usize, char)]) -> String {
    edits
        .iter()
        .fold(s.to_owned(), |acc, &(k, at, c)| edit(&acc, k, at, c))
}

fn byte_edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..4)
}

fn apply_bytes(b: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut v = b.to_vec();
    for &(kind, at, x) in edits {
        if v.is_empty() {
            v.push(x);
            continue;
        }
        let at = at % v.len();
        match kind % 4 {
            0 => v[at] = x,
            1 => v.insert(at, x),
            2 => {
                v.remove(at);
            }
            _ => v.truncate(at),
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // ---- signed notes ----

    #[test]
    fn note_arbitrary_input_is_an_error(s in any::<String>(), b in prop::collection::vec(any::<u8>(), 0..200)) {
        let v = signer(ORIGIN, 1).verifier();
        prop_assert!(open_note(&s, &v).is_err());
        prop_assert!(open_note(&String::from_utf8_lossy(&b), &v).is_err());
    }

    #[test]
    fn note_shaped_input_is_an_error(
        s in "([^\n]{0,12}\n){0,3}\n?(\u{2014} [a-z+. ]{0,8} [A-Za-z0-9+/=]{0,24}\n?){0,3}"
    ) {
        let v = signer(ORIGIN, 1).verifier();
        prop_assert!(open_note(&s, &v).is_err());
    }

    #[test]
    fn edited_note_never_opens_to_other_text(edits in edits()) {
        let s = signer(ORIGIN, 1);
        let w = signer("witness", 2);
        let text = checkpoint_text();
        let note = sign_note(&text, &s).unwrap();
        let cosig = sign_note(&text, &w).unwrap();
        let note = format!("{note}{}", &cosig[text.len() + 1..]);
        let m = apply(&note, &edits);
        if let Ok(t) = open_note(&m, &s.verifier()) {
            prop_assert_eq!(t, text);
        }
    }

    // ---- checkpoints ----

    #[test]
    fn checkpoint_arbitrary_input(s in any::<String>()) {
        if let Ok((c, ext)) = Checkpoint::parse_with_extensions(&s) {
            prop_assert_eq!(checkpoint_back(&c, &ext), s);
        }
    }

    #[test]
    fn checkpoint_shaped_input(
        s in "[a-z./ ]{0,6}\n[0-9+ -]{0,5}\n[A-Za-z0-9+/=]{40,46}\n([a-z ]{0,3}\n){0,2}"
    ) {
        match Checkpoint::parse_with_extensions(&s) {
            Ok((c, ext)) => prop_assert_eq!(checkpoint_back(&c, &ext), s),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn edited_checkpoint_is_canonical_or_rejected(edits in edits()) {
        let m = apply(&checkpoint_text(), &edits);
        if let Ok((c, ext)) = Checkpoint::parse_with_extensions(&m) {
            prop_assert_eq!(checkpoint_back(&c, &ext), m);
        }
    }

    // ---- keys ----

    #[test]
    fn key_arbitrary_input(s in any::<String>()) {
        let _ = NoteVerifier::from_vkey_text(&s);
        prop_assert!(NoteSigner::from_skey_text(&s).is_err() || s.starts_with("PRIVATE+KEY+"));
    }

    #[test]
    fn key_shaped_input(s in "[a-z.+]{0,6}\\+[0-9a-fA-F+]{0,9}\\+[A-Za-z0-9+/=]{0,48}") {
        if let Ok(v) = NoteVerifier::from_vkey_text(&s) {
            let prefix = format!("{}+{:08x}+", v.name(), v.key_id());
            prop_assert!(s.starts_with(&prefix));
        }
        let skey = format!("PRIVATE+KEY+{s}");
        prop_assert!(NoteSigner::from_skey_text(&skey).is_err(), "{:?}", skey);
    }

    /// Any edit of a key text either leaves the same key or is rejected.
    #[test]
    fn edited_keys_are_rejected(seed in any::<u64>(), edits in edits()) {
        let s = signer(ORIGIN, seed);
        let vkey = apply(&s.verifier_key_text(), &edits);
        if let Ok(v) = NoteVerifier::from_vkey_text(&vkey) {
            prop_assert_eq!((v.name(), v.key_id()), (s.name(), s.key_id()), "{:?}", vkey);
            prop_assert_eq!(vkey.trim_end_matches('\n'), s.verifier_key_text());
        }
        let skey = apply(&s.to_skey_text(), &edits);
        if let Ok(k) = NoteSigner::from_skey_text(&skey) {
            prop_assert_eq!(skey.trim_end_matches('\n'), s.to_skey_text());
            prop_assert_eq!(k.verifier_key_text(), s.verifier_key_text());
        }
    }

    // ---- tile paths ----

    #[test]
    fn tile_path_arbitrary_input(s in any::<String>()) {
        if let Ok(t) = parse_tile_path(&s) {
            prop_assert_eq!(tile_back(&t), s);
        }
    }

    #[test]
    fn tile_path_shaped_input(
        s in "tile/(entries|[0-9]{1,2}|[0-9x]{1,3})/(x?[0-9]{2,4}/){0,8}x?[0-9]{2,4}(\\.p/[0-9]{0,4}/?)?"
    ) {
        match parse_tile_path(&s) {
            Ok(t) => prop_assert_eq!(tile_back(&t), s),
            Err(e) => prop_assert!(
                matches!(e, TileError::BadPath { ref path, .. } if path == &s),
                "{:?}", e
            ),
        }
    }

    #[test]
    fn tile_path_round_trip(level in 0u8..8, index in any::<u64>(), width in 1u64..=256, edits in edits()) {
        let p = tile_path(level, index, width);
        prop_assert_eq!(parse_tile_path(&p), Ok(TilePath::Hashes { level, index, width }));
        let e = entries_path(index, width);
        prop_assert_eq!(parse_tile_path(&e), Ok(TilePath::Entries { index, width }));
        for m in [apply(&p, &edits), apply(&e, &edits)] {
            if let Ok(t) = parse_tile_path(&m) {
                prop_assert_eq!(tile_back(&t), m);
            }
        }
    }

    // ---- entry bundles and leaf records ----

    #[test]
    fn entry_bundle_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(entries) = decode_entry_bundle(&b) {
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(encode_entry_bundle(&refs), b);
        }
    }

    #[test]
    fn edited_entry_bundle(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), edits in byte_edits()) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let m = apply_bytes(&encode_entry_bundle(&refs), &edits);
        if let Ok(entries) = decode_entry_bundle(&m) {
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(encode_entry_bundle(&refs), m);
        }
    }

    #[test]
    fn leaf_record_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..150)) {
        if let Ok(r) = LeafRecord::decode(&b) {
            prop_assert_eq!(r.encode(), b);
        }
    }

    #[test]
    fn edited_leaf_record(kind in "[a-z.]{0,64}", edits in byte_edits()) {
        let r = LeafRecord {
            event_id: [7; 16],
            time_unix_nanos: 1_700_000_000_000_000_000,
            kind,
            commitment: body_commitment(&[3; 32], b"select 1"),
            position: None,
        };
        let m = apply_bytes(&r.encode(), &edits);
        match LeafRecord::decode(&m) {
            Ok(d) => prop_assert_eq!(d.encode(), m),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    // ---- proofs ----

    /// Verifiers and generators take arbitrary sizes and indices, including
    /// the extremes of u64, without panicking.
    #[test]
    fn proofs_with_arbitrary_sizes(
        a in prop_oneof![any::<u64>(), 0u64..20, (u64::MAX - 20)..=u64::MAX],
        b in prop_oneof![any::<u64>(), 0u64..20, (u64::MAX - 20)..=u64::MAX],
        len in 0usize..70,
    ) {
        let proof: Vec<Hash> = (0..len).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let h = leaf_hash(b"x");
        let r = verify_inclusion(&h, a, b, &proof, &h);
        // Only the one-leaf tree, whose root is its leaf, verifies.
        prop_assert!(r.is_err() || (a == 0 && b == 1 && len == 0));
        let r = verify_consistency(a, b, &proof, &h, &h);
        prop_assert!(r.is_err() || (a == b && a > 0 && len == 0));
        let mut t = MemoryTree::new();
        for i in 0..10u8 {
            t.push_data(&[i]);
        }
        let _ = inclusion_proof(&t, a, b);
        let _ = consistency_proof(&t, a, b);
        let _ = inclusion_proof(&t, a % 12, b % 12);
        let _ = consistency_proof(&t, a % 12, b % 12);
    }
}

// ---- tables of malformed inputs and the error each gets ----

#[test]
fn checkpoint_errors() {
    let root = B64.encode(leaf_hash(b"root"));
    let bad_size = |s: &str| CheckpointError::BadSize(s.to_owned());
    let bad_root = |s: &str| CheckpointError::BadRoot(s.to_owned());
    let r31 = B64.encode([1u8; 31]);
    let r33 = B64.encode([1u8; 33]);
    let unpadded = root.trim_end_matches('=').to_owned();
    let urlsafe = B64.encode([0xfb; 32]).replace('+', "-").replace('/', "_");
    // A canonical root with a non-zero padding bit (last char 'B' not 'A').
    let noncanonical = format!("{}B=", &B64.encode([0u8; 32])[..42]);
    let cases: Vec<(String, CheckpointError)> = vec![
        (
            format!("o\n1\n{root}"),
            CheckpointError::MissingTrailingNewline,
        ),
        (String::new(), CheckpointError::MissingTrailingNewline),
        ("\n".into(), CheckpointError::TooFewLines),
        ("o\n1\n".into(), CheckpointError::TooFewLines),
        (format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin),
        (format!("o\n01\n{root}\n"), bad_size("01")),
        (format!("o\n00\n{root}\n"), bad_size("00")),
        (format!("o\n+1\n{root}\n"), bad_size("+1")),
        (format!("o\n-1\n{root}\n"), bad_size("-1")),
        (format!("o\n\n{root}\n"), bad_size("")),
        (format!("o\n 1\n{root}\n"), bad_size(" 1")),
        (format!("o\n1 \n{root}\n"), bad_size("1 ")),
        (format!("o\n1\r\n{root}\n"), bad_size("1\r")),
        (format!("o\n0x10\n{root}\n"), bad_size("0x10")),
        (format!("o\n1e3\n{root}\n"), bad_size("1e3")),
        (format!("o\n\u{661}\n{root}\n"), bad_size("\u{661}")),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            bad_size("18446744073709551616"),
        ),
        ("o\n1\nAAAA\n".into(), bad_root("AAAA")),
        (format!("o\n1\n{r31}\n"), bad_root(&r31)),
        (format!("o\n1\n{r33}\n"), bad_root(&r33)),
        (format!("o\n1\n{unpadded}\n"), bad_root(&unpadded)),
        (format!("o\n1\n{urlsafe}\n"), bad_root(&urlsafe)),
        (format!("o\n1\n{noncanonical}\n"), bad_root(&noncanonical)),
        (format!("o\n1\n {root}\n"), bad_root(&format!(" {root}"))),
        (format!("o\n1\n{root}\n\n"), CheckpointError::EmptyExtension),
        (
            format!("o\n1\n{root}\next\n\n"),
            CheckpointError::EmptyExtension,
        ),
        (
            format!("o\n1\n{root}\n\next\n"),
            CheckpointError::EmptyExtension,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Checkpoint::parse(&text), Err(want), "{text:?}");
    }
    // The accepted extremes.
    for size in ["0", "1", "18446744073709551615"] {
        let t = format!("o\n{size}\n{root}\n");
        assert_eq!(Checkpoint::parse(&t).unwrap().size.to_string(), size);
    }
}

/// A note of `checkpoint_text()` by `signer(ORIGIN, 1)`, its text and
/// verifier, and its signature line.
fn sample_note() -> (String, String, NoteVerifier, String) {
    let s = signer(ORIGIN, 1);
    let text = checkpoint_text();
    let note = sign_note(&text, &s).unwrap();
    let line = note[text.len() + 1..].to_owned();
    (note, text, s.verifier(), line)
}

fn malformed(r: Result<String, NoteError>) -> &'static str {
    match r {
        Err(NoteError::MalformedNote(m)) => m,
        other => panic!("expected MalformedNote, got {other:?}"),
    }
}

#[test]
fn note_errors() {
    let (note, text, v, line) = sample_note();
    assert_eq!(open_note(&note, &v).unwrap(), text);
    let junk = |l: &str| format!("{text}\n{line}{l}");
    let cases: Vec<(String, &str)> = vec![
        (text.clone(), "no blank line before signatures"),
        (format!("{text}\n"), "signatures must end with a newline"),
        (
            note.trim_end().to_owned(),
            "signatures must end with a newline",
        ),
        (
            note.replace('\u{2014}', "-"),
            "signature line must start with '\u{2014} '",
        ),
        (junk("\u{2014}  AAAAAAAA\n"), "bad key name in signature"),
        (
            junk("\u{2014} w\n"),
            "signature line must be '\u{2014} name sig'",
        ),
        (junk("\u{2014} a+b AAAAAAAA\n"), "bad key name in signature"),
        (junk("\u{2014} w !!!!\n"), "signature is not valid base64"),
        (
            junk("\u{2014} w AAAAAAA\n"),
            "signature is not valid base64",
        ),
        (junk("\u{2014} w AAAA\n"), "signature too short"),
        (
            junk("\u{2014} w AAAAAAA=\r\n"),
            "control character in signature lines",
        ),
        (
            junk("\u{2014} w\u{1} AAAAAAAA\n"),
            "control character in signature lines",
        ),
        (
            junk("\u{2014} w\tx AAAAAAAA\n"),
            "control character in signature lines",
        ),
        (
            format!("{note}{line}"),
            "duplicate signature by the same key",
        ),
        (
            format!("{text}\n{}{line}", "\u{2014} w AAAAAAAA\n".repeat(100)),
            "too many signatures",
        ),
        (format!("a\u{1}b\n\n{line}"), "invalid text"),
    ];
    for (n, want) in cases {
        assert_eq!(malformed(open_note(&n, &v)), want, "{n:?}");
    }
    // 99 unknown signatures plus ours is still within the limit.
    let many = format!("{text}\n{}{line}", "\u{2014} w AAAAAAAA\n".repeat(99));
    assert_eq!(open_note(&many, &v).unwrap(), text);

    // Signature from an unknown key, or same name with another key id.
    let other = signer("someone.else", 5);
    let by_other = sign_note(&text, &other).unwrap();
    assert!(matches!(
        open_note(&by_other, &v),
        Err(NoteError::NoSignatureByKey { ref name }) if name == ORIGIN
    ));
    let same_name = sign_note(&text, &signer(ORIGIN, 6)).unwrap();
    assert!(matches!(
        open_note(&same_name, &v),
        Err(NoteError::NoSignatureByKey { .. })
    ));
    // Right name and key id, wrong signature: changed text, truncated or
    // overlong signature.
    let changed = note.replacen("4242", "4243", 1);
    assert!(matches!(
        open_note(&changed, &v),
        Err(NoteError::InvalidSignature { ref name }) if name == ORIGIN
    ));
    let raw = B64
        .decode(line.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    for sig in [&raw[..raw.len() - 1], &[raw.as_slice(), &[0]].concat()[..]] {
        let n = format!("{text}\n\u{2014} {ORIGIN} {}\n", B64.encode(sig));
        assert!(matches!(
            open_note(&n, &v),
            Err(NoteError::InvalidSignature { .. })
        ));
    }
}

#[test]
fn key_errors() {
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    let mk = |s: &str| NoteVerifier::from_vkey_text(s).unwrap_err().to_string();
    let malformed = |m: &str| {
        NoteError::MalformedKey(match m {
            "parts" => "expected name+keyid+key",
            "hex" => "key id must be 8 lowercase hex digits",
            "b64" => "key is not valid base64",
            "empty" => "empty key",
            "len" => "Ed25519 key must be 32 bytes",
            "point" => "not a valid Ed25519 public key",
            "prefix" => "signer key must start with PRIVATE+KEY+",
            _ => unreachable!(),
        })
        .to_string()
    };
    // A 32-byte string that is not a point on the curve.
    let not_point = (0u8..=255)
        .map(|i| [i; 32])
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .expect("some non-point");
    let with_alg = |b: &[u8]| B64.encode([&[1u8][..], b].concat());
    let cases: Vec<(String, String)> = vec![
        (String::new(), malformed("parts")),
        ("PeterNeumann+c74f20a3".into(), malformed("parts")),
        (
            VKEY.replacen("PeterNeumann", "", 1),
            NoteError::InvalidName(String::new()).to_string(),
        ),
        (
            VKEY.replacen("PeterNeumann", "Peter Neumann", 1),
            NoteError::InvalidName("Peter Neumann".into()).to_string(),
        ),
        (VKEY.replacen("c74f20a3", "C74F20A3", 1), malformed("hex")),
        (VKEY.replacen("c74f20a3", "c74f20a", 1), malformed("hex")),
        (VKEY.replacen("c74f20a3", "c74f20a30", 1), malformed("hex")),
        (VKEY.replacen("c74f20a3", "+74f20a3", 1), malformed("hex")),
        (
            VKEY.replacen("c74f20a3", "c74f20a4", 1),
            NoteError::KeyIdMismatch.to_string(),
        ),
        (
            VKEY.replacen("+ARpc", "+Ahpc", 1),
            NoteError::UnsupportedAlgorithm(2).to_string(),
        ),
        (VKEY.trim_end_matches("TW").into(), malformed("b64")),
        (format!("{VKEY}="), malformed("b64")),
        (VKEY.replacen("+ARpc", "+AR-c", 1), malformed("b64")),
        ("PeterNeumann+c74f20a3+".into(), malformed("empty")),
        (
            format!("PeterNeumann+c74f20a3+{}", with_alg(&[1; 31])),
            malformed("len"),
        ),
        (
            format!("PeterNeumann+c74f20a3+{}", with_alg(&[1; 33])),
            malformed("len"),
        ),
        (
            format!("PeterNeumann+c74f20a3+{}", with_alg(&not_point)),
            malformed("point"),
        ),
    ];
    for (k, want) in cases {
        assert_eq!(mk(&k), want, "{k:?}");
    }
    // A trailing newline (as read from a file) is accepted.
    assert!(NoteVerifier::from_vkey_text(&format!("{VKEY}\n")).is_ok());

    let sk = |s: &str| NoteSigner::from_skey_text(s).unwrap_err().to_string();
    assert_eq!(sk(VKEY), malformed("prefix"));
    assert_eq!(
        sk(&SKEY.replacen("PRIVATE+KEY+", "PRIVATE+KEY", 1)),
        malformed("prefix")
    );
    assert_eq!(
        sk(&SKEY.replacen("c74f20a3", "c74f20a4", 1)),
        NoteError::KeyIdMismatch.to_string()
    );
    assert_eq!(
        sk(&SKEY.replacen("+AYEK", "+AoEK", 1)),
        NoteError::UnsupportedAlgorithm(2).to_string()
    );
    assert_eq!(
        NoteSigner::from_skey_text(SKEY)
            .unwrap()
            .verifier_key_text(),
        VKEY
    );

    // Signing: text and names are checked.
    let s = signer(ORIGIN, 1);
    assert!(matches!(
        sign_note("no newline", &s),
        Err(NoteError::InvalidText(_))
    ));
    assert!(matches!(
        sign_note("tab\there\n", &s),
        Err(NoteError::InvalidText(_))
    ));
    assert!(matches!(sign_note("", &s), Err(NoteError::InvalidText(_))));
    for bad in ["", "a b", "a+b", "a\u{a0}b", "tab\t"] {
        assert!(
            matches!(NoteSigner::generate(bad), Err(NoteError::InvalidName(ref n)) if n == bad),
            "{bad:?}"
        );
    }
}

#[test]
fn tile_path_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "must start with tile/"),
        ("tiles/0/000", "must start with tile/"),
        ("/tile/0/000", "must start with tile/"),
        ("tile/0", "missing index"),
        ("tile/entries", "missing index"),
        ("tile/01/000", "level must be a canonical decimal number"),
        ("tile/00/000", "level must be a canonical decimal number"),
        ("tile/+1/000", "level must be a canonical decimal number"),
        ("tile/x/000", "level must be a canonical decimal number"),
        ("tile/data/000", "level must be a canonical decimal number"),
        ("tile/8/000", "level out of range"),
        ("tile/63/000", "level out of range"),
        ("tile/300/000", "level out of range"),
        ("tile/0/", "index groups must be exactly 3 digits"),
        ("tile/0/1", "index groups must be exactly 3 digits"),
        ("tile/0/01", "index groups must be exactly 3 digits"),
        ("tile/0/0001", "index groups must be exactly 3 digits"),
        ("tile/0/00a", "index groups must be exactly 3 digits"),
        ("tile/0/+01", "index groups must be exactly 3 digits"),
        ("tile/0/x01/000", "index groups must be exactly 3 digits"),
        ("tile/0/x0001/000", "index groups must be exactly 3 digits"),
        ("tile/0/xx001/000", "index groups must be exactly 3 digits"),
        (
            "tile/0/000/",
            "index groups before the last must start with x",
        ),
        (
            "tile/0//000",
            "index groups before the last must start with x",
        ),
        (
            "tile/0/001/002",
            "index groups before the last must start with x",
        ),
        ("tile/0/x001", "index groups must be exactly 3 digits"),
        ("tile/0/x001/x002", "index groups must be exactly 3 digits"),
        ("tile/0/x000/001", "index has a leading zero group"),
        (
            "tile/entries/x000/x001/002",
            "index has a leading zero group",
        ),
        (
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "index overflows u64",
        ),
        (
            "tile/0/x001/x000/x000/x000/x000/x000/x000/000",
            "index overflows u64",
        ),
        (
            "tile/0/000.p/0",
            "partial width must be a canonical decimal number",
        ),
        (
            "tile/0/000.p/00",
            "partial width must be a canonical decimal number",
        ),
        (
            "tile/0/000.p/08",
            "partial width must be a canonical decimal number",
        ),
        (
            "tile/0/000.p/+8",
            "partial width must be a canonical decimal number",
        ),
        (
            "tile/0/000.p/",
            "partial width must be a canonical decimal number",
        ),
        (
            "tile/0/000.p/8/",
            "partial width must be a canonical decimal number",
        ),
        ("tile/entries/000.p/256", "partial width must be in 1..=255"),
        ("tile/0/000.p/256", "partial width must be in 1..=255"),
        ("tile/0/000.p/999", "partial width must be in 1..=255"),
        (
            "tile/0/000.p/99999999999999999999",
            "partial width out of range",
        ),
        ("tile/0/000.p", "index groups must be exactly 3 digits"),
        (
            "tile/0/000.p/8.p/8",
            "partial width must be a canonical decimal number",
        ),
    ];
    for &(p, reason) in cases {
        assert_eq!(
            parse_tile_path(p),
            Err(TileError::BadPath {
                path: p.to_owned(),
                reason
            }),
            "{p:?}"
        );
    }
    // The accepted extremes.
    for p in [
        "tile/0/000.p/1",
        "tile/7/000.p/255",
        "tile/entries/x018/x446/x744/x073/x709/x551/615",
    ] {
        assert!(parse_tile_path(p).is_ok(), "{p}");
    }
}

#[test]
fn bundle_and_leaf_errors() {
    assert_eq!(
        decode_entry_bundle(&[0]),
        Err(TileError::BadBundle("truncated length prefix"))
    );
    assert_eq!(
        decode_entry_bundle(&[0, 0, 0]),
        Err(TileError::BadBundle("truncated length prefix"))
    );
    assert_eq!(
        decode_entry_bundle(&[0, 2, 1]),
        Err(TileError::BadBundle("truncated entry"))
    );
    assert_eq!(
        decode_entry_bundle(&[0xff, 0xff]),
        Err(TileError::BadBundle("truncated entry"))
    );
    let max = vec![9u8; 65535];
    let b = try_encode_entry_bundle(&[&max]).unwrap();
    assert_eq!(&b[..2], &[0xff, 0xff]);
    assert_eq!(decode_entry_bundle(&b).unwrap(), vec![max]);
    assert_eq!(
        try_encode_entry_bundle(&[b"ok", &vec![0u8; 65536]]),
        Err(TileError::EntryTooLong(65536))
    );

    let good = LeafRecord {
        event_id: [1; 16],
        time_unix_nanos: i64::MIN,
        kind: "k".into(),
        commitment: [2; 32],
        position: None,
    }
    .encode();
    assert_eq!(LeafRecord::decode(&good[..1]), Err(LeafError::Truncated(1)));
    assert_eq!(
        LeafRecord::decode(&[0xff; 100]),
        Err(LeafError::UnsupportedVersion(0xff))
    );
    let mut kind255 = good.clone();
    kind255[25] = 255;
    assert_eq!(
        LeafRecord::decode(&kind255),
        Err(LeafError::KindTooLong(255))
    );
}

#[test]
fn proof_errors() {
    let mut t = MemoryTree::new();
    for i in 0..11u8 {
        t.push_data(&[i]);
    }
    let root = t.root();
    let leaf = leaf_hash(&[3]);
    let p = inclusion_proof(&t, 3, 11).unwrap();
    assert_eq!(verify_inclusion(&leaf, 3, 11, &p, &root), Ok(()));
    assert_eq!(
        verify_inclusion(&leaf, 11, 11, &p, &root),
        Err(ProofError::IndexOutOfRange {
            index: 11,
            size: 11
        })
    );
    assert_eq!(
        verify_inclusion(&leaf, 0, 0, &[], &root),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        verify_inclusion(&leaf, 3, 11, &p[1..], &root),
        Err(ProofError::WrongProofLength { got: 3, want: 4 })
    );
    assert_eq!(
        verify_inclusion(&leaf_hash(&[4]), 3, 11, &p, &root),
        Err(ProofError::RootMismatch)
    );

    let mut small = MemoryTree::new();
    for i in 0..6u8 {
        small.push_data(&[i]);
    }
    let r6 = small.root();
    let mut four = MemoryTree::new();
    for i in 0..4u8 {
        four.push_data(&[i]);
    }
    let r4 = four.root();
    let c6 = consistency_proof(&t, 6, 11).unwrap();
    let c4 = consistency_proof(&t, 4, 11).unwrap();
    assert_eq!(verify_consistency(6, 11, &c6, &r6, &root), Ok(()));
    assert_eq!(
        verify_consistency(0, 11, &[], &r6, &root),
        Err(ProofError::EmptyOldTree)
    );
    assert_eq!(
        verify_consistency(12, 11, &c6, &r6, &root),
        Err(ProofError::SizesOutOfOrder {
            size1: 12,
            size2: 11
        })
    );
    assert_eq!(
        verify_consistency(11, 11, &c6, &root, &root),
        Err(ProofError::WrongProofLength {
            got: c6.len(),
            want: 0
        })
    );
    assert_eq!(
        verify_consistency(11, 11, &[], &r6, &root),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(verify_consistency(11, 11, &[], &root, &root), Ok(()));
    assert_eq!(
        verify_consistency(6, 11, &c6[1..], &r6, &root),
        Err(ProofError::WrongProofLength {
            got: c6.len() - 1,
            want: c6.len()
        })
    );
    // Wrong old root: caught on the old side when size1 is not a power of
    // two; when it is, root1 seeds the walk and the new root cannot match.
    assert_eq!(
        verify_consistency(6, 11, &c6, &r4, &root),
        Err(ProofError::Root1Mismatch)
    );
    assert_eq!(
        verify_consistency(4, 11, &c4, &r6, &root),
        Err(ProofError::Root2Mismatch)
    );
    assert_eq!(
        verify_consistency(6, 11, &c6, &r6, &r4),
        Err(ProofError::Root2Mismatch)
    );
}
