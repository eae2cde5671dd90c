//! Generated proofs must verify, and the three ways of computing a root
//! (frontier, stored nodes, recursive definition) must agree.

use proptest::prelude::*;
use vigil_ledger::hash::{leaf_hash, Hash};
use vigil_ledger::proof::{verify_consistency, verify_inclusion, ProofError};
use vigil_ledger::tree::{
    consistency_proof, inclusion_proof, root_from_leaf_hashes, root_of, Frontier, MemoryTree,
    TreeError,
};

fn build(n: u64) -> (MemoryTree, Vec<Hash>, Vec<Hash>) {
    let mut t = MemoryTree::new();
    let mut leaves = Vec::new();
    let mut roots = vec![root_from_leaf_hashes(&[])];
    for i in 0..n {
        let h = leaf_hash(&i.to_be_bytes());
        t.push(h);
        leaves.push(h);
        roots.push(t.root());
    }
    (t, leaves, roots)
}

fn check_size(t: &MemoryTree, leaves: &[Hash], roots: &[Hash], size: u64, step: usize) {
    let root = roots[size as usize];
    assert_eq!(
        root,
        root_from_leaf_hashes(&leaves[..size as usize]),
        "size {size}"
    );
    assert_eq!(root_of(t, size).unwrap(), root, "root_of size {size}");
    for index in (0..size).step_by(step) {
        let p = inclusion_proof(t, index, size).unwrap();
        verify_inclusion(&leaves[index as usize], index, size, &p, &root)
            .unwrap_or_else(|e| panic!("inclusion {index}/{size}: {e}"));
        // A proof for a neighbour leaf must not verify this one.
        if size > 1 {
            let other = (index + 1) % size;
            assert!(verify_inclusion(&leaves[other as usize], index, size, &p, &root).is_err());
        }
    }
    for size1 in (1..=size).step_by(step) {
        let p = consistency_proof(t, size1, size).unwrap();
        verify_consistency(size1, size, &p, &roots[size1 as usize], &root)
            .unwrap_or_else(|e| panic!("consistency {size1}->{size}: {e}"));
        if size1 < size {
            let wrong = leaf_hash(b"wrong");
            assert!(verify_consistency(size1, size, &p, &wrong, &root).is_err());
            assert!(verify_consistency(size1, size, &p, &roots[size1 as usize], &wrong).is_err());
        }
    }
}

#[test]
fn exhaustive_small_trees() {
    let (t, leaves, roots) = build(300);
    for size in 0..=300 {
        let step = if size <= 70 { 1 } else { 7 };
        check_size(&t, &leaves, &roots, size, step);
    }
}

#[test]
fn frontier_rebuild_matches() {
    let (t, _, roots) = build(300);
    for size in 0..=300u64 {
        let f = Frontier::from_nodes(size, |l, i| {
            use vigil_ledger::tree::NodeSource;
            t.node(l, i)
        })
        .unwrap();
        assert_eq!(f.size(), size);
        assert_eq!(f.root(), roots[size as usize]);
    }
}

#[test]
fn push_reports_completed_subtrees() {
    let mut f = Frontier::new();
    let h = |i: u64| leaf_hash(&i.to_be_bytes());
    assert_eq!(f.push(h(0)).len(), 1);
    let out = f.push(h(1));
    assert_eq!(
        out.iter().map(|(l, i, _)| (*l, *i)).collect::<Vec<_>>(),
        [(0, 1), (1, 0)]
    );
    assert_eq!(out[1].2, root_from_leaf_hashes(&[h(0), h(1)]));
    f.push(h(2));
    let out = f.push(h(3));
    assert_eq!(
        out.iter().map(|(l, i, _)| (*l, *i)).collect::<Vec<_>>(),
        [(0, 3), (1, 1), (2, 0)]
    );
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let (t, _, _) = build(10);
    assert_eq!(
        inclusion_proof(&t, 10, 10),
        Err(TreeError::Proof(ProofError::IndexOutOfRange {
            index: 10,
            size: 10
        }))
    );
    assert_eq!(
        consistency_proof(&t, 0, 5),
        Err(TreeError::Proof(ProofError::EmptyOldTree))
    );
    assert!(consistency_proof(&t, 6, 5).is_err());
    assert!(matches!(
        inclusion_proof(&t, 3, 11),
        Err(TreeError::MissingNode { .. })
    ));
    assert_eq!(consistency_proof(&t, 4, 4), Ok(vec![]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_sizes(size in 1u64..4000, a in any::<u64>(), b in any::<u64>()) {
        let (t, leaves, roots) = build(size);
        prop_assert_eq!(root_of(&t, size).unwrap(), root_from_leaf_hashes(&leaves));
        let index = a % size;
        let p = inclusion_proof(&t, index, size).unwrap();
        prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &p, &roots[size as usize]).is_ok());
        let size1 = b % size + 1;
        let p = consistency_proof(&t, size1, size).unwrap();
        prop_assert!(verify_consistency(size1, size, &p, &roots[size1 as usize], &roots[size as usize]).is_ok());
        // Truncated or extended proofs never verify.
        if !p.is_empty() {
            prop_assert!(verify_consistency(size1, size, &p[1..], &roots[size1 as usize], &roots[size as usize]).is_err());
        }
        let mut longer = p.clone();
        longer.push([0; 32]);
        prop_assert!(verify_consistency(size1, size, &longer, &roots[size1 as usize], &roots[size as usize]).is_err());
    }
}
