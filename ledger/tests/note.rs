//! Signed-note interoperability (C2SP signed-note vector) and round trips.

use vigil_ledger::note::{open_note, sign_note, NoteError, NoteSigner, NoteVerifier};

const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn note() -> String {
    format!("{TEXT}\n{SIG}")
}

#[test]
fn reference_vector_opens() {
    let v = NoteVerifier::from_vkey_text(VKEY).unwrap();
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(v.key_id(), 0xc74f20a3);
    assert_eq!(open_note(&note(), &v).unwrap(), TEXT);
}

#[test]
fn reference_vector_rejects_tampering() {
    let v = NoteVerifier::from_vkey_text(VKEY).unwrap();
    // Modified text.
    let bad = note().replace("cryptography", "Cryptography");
    assert!(matches!(
        open_note(&bad, &v),
        Err(NoteError::InvalidSignature { .. })
    ));
    // Modified signature (last signature byte changes).
    let bad = note().replace("JnAM=", "JnAN=");
    assert!(open_note(&bad, &v).is_err());
    // Signature line for a different name.
    let bad = note().replace("\u{2014} PeterNeumann", "\u{2014} PeterNeuman");
    assert!(matches!(
        open_note(&bad, &v),
        Err(NoteError::NoSignatureByKey { .. })
    ));
    // A different key with the same name.
    let other = NoteSigner::generate("PeterNeumann").unwrap().verifier();
    assert!(matches!(
        open_note(&note(), &other),
        Err(NoteError::NoSignatureByKey { .. })
    ));
}

#[test]
fn malformed_notes_rejected() {
    let v = NoteVerifier::from_vkey_text(VKEY).unwrap();
    let cases = [
        TEXT.to_owned(),                                     // no signatures
        format!("{TEXT}\n"),                                 // blank line, no sig lines
        format!("{TEXT}\n{}", SIG.trim_end()),               // sig block missing final newline
        format!("{TEXT}\n{}", SIG.replace('\u{2014}', "-")), // wrong dash
        format!("{TEXT}\n\u{2014} PeterNeumann !!!\n"),      // bad base64
        format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),     // too short
        format!("{TEXT}\n{SIG}{SIG}"),                       // duplicate signature by the key
        format!("a\u{7}b\n\n{SIG}"),                         // control character in text
    ];
    for c in cases {
        assert!(open_note(&c, &v).is_err(), "{c:?}");
    }
}

#[test]
fn bad_keys_rejected() {
    for k in [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // wrong id
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // uppercase hex
        "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // alg 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",   // short key
        "PeterNeumann+c74f20a3",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(NoteVerifier::from_vkey_text(k).is_err(), "{k}");
    }
    assert!(NoteSigner::generate("has space").is_err());
    assert!(NoteSigner::generate("a+b").is_err());
    assert!(NoteSigner::generate("").is_err());
}

#[test]
fn sign_open_round_trip_and_key_texts() {
    let signer = NoteSigner::generate("vigil.example/log").unwrap();
    let text = "vigil.example/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let note = sign_note(text, &signer).unwrap();
    assert!(note.starts_with(text));
    assert!(note[text.len()..].starts_with("\n\u{2014} vigil.example/log "));

    let verifier = NoteVerifier::from_vkey_text(&signer.verifier_key_text()).unwrap();
    assert_eq!(verifier.key_id(), signer.key_id());
    assert_eq!(open_note(&note, &verifier).unwrap(), text);

    // The signer key text round-trips to the same key.
    let again = NoteSigner::from_skey_text(&signer.to_skey_text()).unwrap();
    assert_eq!(again.verifier_key_text(), signer.verifier_key_text());
    assert!(signer
        .to_skey_text()
        .starts_with("PRIVATE+KEY+vigil.example/log+"));

    // Extra signatures by unknown keys are fine, in any order.
    let other = NoteSigner::generate("witness").unwrap();
    let cosig = sign_note(text, &other).unwrap();
    let both = format!("{note}{}", &cosig[text.len() + 1..]);
    assert_eq!(open_note(&both, &verifier).unwrap(), text);
    let both = format!("{cosig}{}", &note[text.len() + 1..]);
    assert_eq!(open_note(&both, &verifier).unwrap(), text);

    assert!(sign_note("no newline", &signer).is_err());
    assert!(format!("{signer:?}").contains("vigil.example/log"));
}
