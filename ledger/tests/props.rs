//! Property tests (proptest) of the ledger's core invariants: proofs verify
//! and every tampering is caught, the frontier agrees with the recursive
//! definition, and the text formats round-trip.

use std::collections::HashMap;

use proptest::prelude::*;
use vigil_ledger::checkpoint::Checkpoint;
use vigil_ledger::hash::{leaf_hash, Hash};
use vigil_ledger::leaf::{LeafRecord, MAX_KIND_LEN};
use vigil_ledger::note::{open_note, sign_note, NoteError, NoteSigner, NoteVerifier};
use vigil_ledger::proof::{verify_consistency, verify_inclusion, ProofError};
use vigil_ledger::tile::{decode_entry_bundle, encode_entry_bundle};
use vigil_ledger::tree::{
    consistency_proof, inclusion_proof, root_from_leaf_hashes, Frontier, MemoryTree,
};

/// A tree of `n` distinct leaves and its root at every size.
fn build(n: u64) -> (MemoryTree, Vec<Hash>, Vec<Hash>) {
    let mut t = MemoryTree::new();
    let mut leaves = Vec::new();
    let mut roots = vec![vigil_ledger::empty_root()];
    for i in 0..n {
        let h = leaf_hash(&i.to_le_bytes());
        t.push(h);
        leaves.push(h);
        roots.push(t.root());
    }
    (t, leaves, roots)
}

fn flipped(h: &Hash, bit: usize) -> Hash {
    let mut h = *h;
    h[bit / 8] ^= 1 << (bit % 8);
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// An inclusion proof verifies; flipping any single bit of any proof
    /// hash, of the leaf or of the root, using it for another index, or for
    /// another size (with that size's real root) fails.
    #[test]
    fn inclusion_proofs_and_every_tampering(size in 1u64..3000, a in any::<u64>(), b in any::<u64>()) {
        let (t, leaves, roots) = build(size);
        let index = a % size;
        let leaf = leaves[index as usize];
        let root = roots[size as usize];
        let proof = inclusion_proof(&t, index, size).unwrap();
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
        for i in 0..proof.len() {
            for bit in 0..256 {
                let mut p = proof.clone();
                p[i] = flipped(&p[i], bit);
                prop_assert_eq!(
                    verify_inclusion(&leaf, index, size, &p, &root),
                    Err(ProofError::RootMismatch)
                );
            }
        }
        for bit in 0..256 {
            prop_assert!(verify_inclusion(&flipped(&leaf, bit), index, size, &proof, &root).is_err());
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &flipped(&root, bit)).is_err());
        }
        // Every other index (sampled above 64 leaves).
        let step = (size / 64).max(1);
        for other in (b % step..size).step_by(step as usize) {
            if other != index {
                prop_assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err(), "index {}", other);
                prop_assert!(verify_inclusion(&leaves[other as usize], index, size, &proof, &root).is_err());
            }
        }
        // Other sizes that still contain the leaf, with their real roots.
        for other in [index + 1, size - 1, size / 2 + 1, (b % size) + 1, size + 1] {
            if other != size && other > index && other <= size {
                prop_assert!(
                    verify_inclusion(&leaf, index, other, &proof, &roots[other as usize]).is_err(),
                    "size {}", other
                );
            }
        }
        prop_assert_eq!(
            verify_inclusion(&leaf, size, size, &proof, &root),
            Err(ProofError::IndexOutOfRange { index: size, size })
        );
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert_eq!(
            verify_inclusion(&leaf, index, size, &longer, &root),
            Err(ProofError::WrongProofLength { got: proof.len() + 1, want: proof.len() })
        );
        if !proof.is_empty() {
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, &proof[1..], &root),
                Err(ProofError::WrongProofLength { got: proof.len() - 1, want: proof.len() })
            );
        }
    }

    /// Consistency proofs verify for every 0 < m <= n; flipping any bit of
    /// any proof hash (for one m) or of either root fails, as do other size
    /// pairs with their real roots.
    #[test]
    fn consistency_proofs_and_every_tampering(n in 1u64..700, a in any::<u64>()) {
        let (t, _, roots) = build(n);
        let root2 = roots[n as usize];
        for m in 1..=n {
            let p = consistency_proof(&t, m, n).unwrap();
            prop_assert_eq!(verify_consistency(m, n, &p, &roots[m as usize], &root2), Ok(()), "{}->{}", m, n);
            if m == n {
                prop_assert!(p.is_empty());
            }
        }
        let m = a % n + 1;
        let root1 = roots[m as usize];
        let proof = consistency_proof(&t, m, n).unwrap();
        for i in 0..proof.len() {
            for bit in 0..256 {
                let mut p = proof.clone();
                p[i] = flipped(&p[i], bit);
                prop_assert!(verify_consistency(m, n, &p, &root1, &root2).is_err(), "{}->{} [{}] bit {}", m, n, i, bit);
            }
        }
        for bit in (0..256).step_by(7) {
            prop_assert!(verify_consistency(m, n, &proof, &flipped(&root1, bit), &root2).is_err());
            prop_assert!(verify_consistency(m, n, &proof, &root1, &flipped(&root2, bit)).is_err());
        }
        for (m2, n2) in [(m - 1, n), (m + 1, n), (m, n - 1), (m / 2, n), (1, n), (m, m + 1)] {
            if (m2, n2) != (m, n) && 0 < m2 && m2 < n2 && n2 <= n {
                prop_assert!(
                    verify_consistency(m2, n2, &proof, &roots[m2 as usize], &roots[n2 as usize]).is_err(),
                    "{}->{} proof used for {}->{}", m, n, m2, n2
                );
            }
        }
        if m < n {
            let mut longer = proof.clone();
            longer.push(root1);
            prop_assert!(matches!(
                verify_consistency(m, n, &longer, &root1, &root2),
                Err(ProofError::WrongProofLength { .. })
            ), "longer proof");
            prop_assert!(matches!(
                verify_consistency(m, n, &proof[1..], &root1, &root2),
                Err(ProofError::WrongProofLength { .. })
            ), "shorter proof");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Pushing leaves one by one gives the RFC's recursive MTH at every
    /// size; every completed subtree reported by `push` is the MTH of the
    /// leaves it covers; rebuilding from those nodes gives the same root.
    #[test]
    fn frontier_matches_recursive_definition(leaves in prop::collection::vec(any::<[u8; 32]>(), 0..260)) {
        let mut f = Frontier::new();
        let mut nodes = HashMap::new();
        prop_assert_eq!(f.root(), root_from_leaf_hashes(&[]));
        for (i, leaf) in leaves.iter().enumerate() {
            let out = f.push(*leaf);
            prop_assert_eq!(out.len() as u32, (i as u64).trailing_ones() + 1);
            for (level, index, h) in out {
                let lo = (index << level) as usize;
                let hi = ((index + 1) << level) as usize;
                prop_assert!(hi == i + 1);
                prop_assert_eq!(h, root_from_leaf_hashes(&leaves[lo..hi]));
                prop_assert!(nodes.insert((level, index), h).is_none());
            }
            prop_assert_eq!(f.size(), i as u64 + 1);
            prop_assert_eq!(f.root(), root_from_leaf_hashes(&leaves[..=i]));
        }
        let size = leaves.len() as u64;
        let rebuilt = Frontier::from_nodes(size, |l, i| nodes.get(&(l, i)).copied().ok_or(())).unwrap();
        prop_assert_eq!(rebuilt.root(), f.root());
        prop_assert_eq!(rebuilt.size(), size);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn checkpoint_round_trip(
        origin in "[^\n]{1,40}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        ext in prop::collection::vec("[^\n]{1,20}", 0..4),
    ) {
        let c = Checkpoint { origin, size, root };
        let text = c.to_text();
        prop_assert_eq!(Checkpoint::parse(&text), Ok(c.clone()));
        let with_ext = format!("{text}{}", ext.iter().map(|e| format!("{e}\n")).collect::<String>());
        prop_assert_eq!(Checkpoint::parse_with_extensions(&with_ext), Ok((c.clone(), ext)));
        prop_assert_eq!(Checkpoint::parse(&with_ext), Ok(c));
    }

    #[test]
    fn leaf_record_round_trip(
        event_id in any::<[u8; 16]>(),
        time_unix_nanos in any::<i64>(),
        kind in "\\PC{0,24}",
        commitment in any::<[u8; 32]>(),
        position in proptest::option::of(any::<[u8; 32]>()),
    ) {
        let r = LeafRecord { event_id, time_unix_nanos, kind, commitment, position };
        match r.try_encode() {
            Ok(b) => prop_assert_eq!(LeafRecord::decode(&b), Ok(r)),
            Err(_) => prop_assert!(r.kind.len() > MAX_KIND_LEN),
        }
    }

    #[test]
    fn entry_bundle_round_trip(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..8)) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let b = encode_entry_bundle(&refs);
        prop_assert_eq!(b.len(), entries.iter().map(|e| e.len() + 2).sum::<usize>());
        prop_assert_eq!(decode_entry_bundle(&b).unwrap(), entries.clone());
        // Cutting the bundle anywhere inside an entry is detected.
        if !b.is_empty() {
            let mut boundaries = vec![0];
            for e in &refs {
                boundaries.push(boundaries.last().unwrap() + 2 + e.len());
            }
            for cut in 1..b.len() {
                let ok = decode_entry_bundle(&b[..cut]).is_ok();
                prop_assert_eq!(ok, boundaries.contains(&cut), "cut at {}", cut);
            }
        }
    }
}

fn signer(name: &str, seed: u64) -> NoteSigner {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    NoteSigner::new(name, ed25519_dalek::SigningKey::generate(&mut rng)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any valid text signs and opens to itself; keys round-trip through
    /// their text forms; any single-byte change of the signed note (that
    /// still is UTF-8) makes it fail to open.
    #[test]
    fn note_sign_open_and_single_byte_changes(
        name in "[a-zA-Z0-9./:_\u{e9}\u{1f512}-]{1,20}",
        seed in any::<u64>(),
        text in "([^\\x00-\\x1f\\x7f-\\x9f]{0,30}\n){1,4}",
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let s = signer(&name, seed);
        let v = NoteVerifier::from_vkey_text(&s.verifier_key_text()).unwrap();
        prop_assert_eq!((v.name(), v.key_id()), (s.name(), s.key_id()));
        let again = NoteSigner::from_skey_text(&s.to_skey_text()).unwrap();
        prop_assert_eq!(again.verifier_key_text(), s.verifier_key_text());

        let note = sign_note(&text, &s).unwrap();
        prop_assert_eq!(open_note(&note, &v).unwrap(), text.clone());
        prop_assert!(matches!(
            open_note(&note, &signer(&name, seed.wrapping_add(1)).verifier()),
            Err(NoteError::NoSignatureByKey { .. })
        ), "opened with another key");

        let mut bytes = note.clone().into_bytes();
        let i = pos.index(bytes.len());
        let b = if byte == bytes[i] { byte.wrapping_add(1) } else { byte };
        bytes[i] = b;
        if let Ok(m) = String::from_utf8(bytes) {
            prop_assert!(open_note(&m, &v).is_err(), "byte {} -> {:#04x} accepted: {:?}", i, b, m);
        }
    }
}

/// Exhaustive version of the above for one note: every position, every
/// ASCII replacement byte.
#[test]
fn every_single_ascii_byte_change_is_rejected() {
    let s = signer("vigil.example/audit", 1);
    let v = s.verifier();
    let text = Checkpoint {
        origin: "vigil.example/audit".into(),
        size: 12345,
        root: leaf_hash(b"r"),
    }
    .to_text();
    let note = sign_note(&text, &s).unwrap();
    assert_eq!(open_note(&note, &v).unwrap(), text);
    let bytes = note.as_bytes();
    let mut tried = 0;
    for i in 0..bytes.len() {
        for b in 0u8..0x80 {
            if b == bytes[i] {
                continue;
            }
            let mut m = bytes.to_vec();
            m[i] = b;
            if let Ok(m) = String::from_utf8(m) {
                tried += 1;
                assert!(open_note(&m, &v).is_err(), "{i}: {b:#04x}: {m:?}");
            }
        }
    }
    assert!(tried > bytes.len() * 100, "{tried}");
}
