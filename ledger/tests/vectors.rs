//! Conformance against the transparency-dev Merkle proof vectors.
//!
//! The typed API takes `&[u8; 32]`, but some vectors carry hashes of other
//! lengths. Like the Go reference verifier, a leaf hash of the wrong length is
//! rejected before verification. Roots and proof elements are only ever
//! hashed or compared for equality, so a wrong-length value is mapped
//! injectively (with a domain tag) to a 32-byte value that can never equal a
//! real hash, and the verifier itself must reject the result.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vigil_ledger::proof::{verify_consistency, verify_inclusion};
use vigil_ledger::Hash;

fn testdata() -> PathBuf {
    match std::env::var_os("VIGIL_TESTDATA") {
        Some(p) => PathBuf::from(p),
        // The checkout's own directory at run time (cargo and nextest set it),
        // not the one baked in at build time: a build cache shared by clones
        // in different places may hand this binary to another checkout.
        None => std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
            .join("tests/vectors/tlog"),
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn load(kind: &str) -> Vec<(PathBuf, Value)> {
    let dir = testdata().join(kind);
    let mut files = Vec::new();
    json_files(&dir, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no {kind} vectors under {} (set VIGIL_TESTDATA)",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let v = serde_json::from_slice(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

fn bytes(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

fn num(v: &Value) -> u64 {
    v.as_u64().expect("u64")
}

fn tagged(b: &[u8]) -> Hash {
    b.try_into().unwrap_or_else(|_| {
        Sha256::new()
            .chain_update(b"not-a-hash")
            .chain_update(b)
            .finalize()
            .into()
    })
}

fn proof(v: &Value) -> Vec<Hash> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().map(|x| tagged(&bytes(x))).collect(),
        other => panic!("bad proof {other}"),
    }
}

#[test]
fn inclusion_vectors() {
    let vectors = load("inclusion");
    for (path, v) in &vectors {
        let want_err = v["wantErr"].as_bool().unwrap();
        let leaf = bytes(&v["leafHash"]);
        let got_err = match <Hash>::try_from(leaf.as_slice()) {
            Err(_) => true, // wrong-length leaf hash: rejected at the type boundary
            Ok(leaf) => verify_inclusion(
                &leaf,
                num(&v["leafIdx"]),
                num(&v["treeSize"]),
                &proof(&v["proof"]),
                &tagged(&bytes(&v["root"])),
            )
            .is_err(),
        };
        assert_eq!(got_err, want_err, "{}", path.display());
    }
    eprintln!("{} inclusion vectors ok", vectors.len());
}

#[test]
fn consistency_vectors() {
    let vectors = load("consistency");
    for (path, v) in &vectors {
        let want_err = v["wantErr"].as_bool().unwrap();
        let res = verify_consistency(
            num(&v["size1"]),
            num(&v["size2"]),
            &proof(&v["proof"]),
            &tagged(&bytes(&v["root1"])),
            &tagged(&bytes(&v["root2"])),
        );
        assert_eq!(res.is_err(), want_err, "{}: {res:?}", path.display());
    }
    eprintln!("{} consistency vectors ok", vectors.len());
}
