//! Differential tests of the RFC 6962 / RFC 9162 tree against two
//! independent implementations: `ct-merkle` (a memory-backed RFC 6962 tree)
//! and `tlog_tiles` (Cloudflare's port of Go's `sumdb/tlog`).
//!
//! For every tree size checked, the three implementations must compute the
//! same root and byte-identical inclusion and consistency proofs (RFC 6962
//! `PATH` and `PROOF` are canonical), every implementation's proofs must
//! verify with every verifier, and the three verifiers must reach the same
//! verdict on tampered proofs.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2_v011::Sha256 as CtSha256;
use tlog_tiles::{
    check_record, check_tree, prove_record, prove_tree, record_hash, stored_hashes, tree_hash,
    HashReader,
};
use vigil_ledger::hash::{leaf_hash, Hash};
use vigil_ledger::proof::{verify_consistency, verify_inclusion};
use vigil_ledger::tree::{
    consistency_proof, inclusion_proof, root_from_leaf_hashes, root_of, MemoryTree,
};

type CtTree = MemoryBackedTree<CtSha256, Vec<u8>>;

/// Leaf `i`: distinct, of varying length (0..=40 bytes), so leaf hashing of
/// the empty string and of multi-block inputs is covered too.
fn leaf_data(i: u64) -> Vec<u8> {
    let len = (i % 41) as usize;
    let mut d = i.to_le_bytes().repeat(len / 8 + 1);
    d.truncate(len);
    if len < 8 {
        // Short leaves: make them distinct anyway with a length-tagged prefix
        // that cannot collide with the long form.
        d = format!("short:{i}").into_bytes();
    }
    d
}

/// Go-style hash storage for `tlog_tiles`, filled by its own
/// `stored_hashes` (independent of vigil's `Frontier`).
#[derive(Default)]
struct TlogStorage(Vec<tlog_tiles::Hash>);

impl HashReader for TlogStorage {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl TlogStorage {
    fn push(&mut self, n: u64, data: &[u8]) {
        let new = stored_hashes(n, data, self).expect("tlog_tiles stored_hashes");
        self.0.extend(new);
    }
}

/// The three trees grown in lock step, plus vigil's root at every size.
struct Trees {
    vigil: MemoryTree,
    ct: CtTree,
    tlog: TlogStorage,
    leaves: Vec<Hash>,
    roots: Vec<Hash>,
}

impl Trees {
    fn new() -> Self {
        Self {
            vigil: MemoryTree::new(),
            ct: CtTree::new(),
            tlog: TlogStorage::default(),
            leaves: Vec::new(),
            roots: vec![vigil_ledger::empty_root()],
        }
    }

    fn size(&self) -> u64 {
        self.vigil.size()
    }

    /// Appends one leaf to all three and checks the new roots agree.
    fn push(&mut self) {
        let n = self.size();
        let data = leaf_data(n);
        let h = leaf_hash(&data);
        assert_eq!(h, record_hash(&data).0, "leaf hash of leaf {n}");
        self.vigil.push_data(&data);
        self.ct.push(data.clone());
        self.tlog.push(n, &data);
        self.leaves.push(h);
        let size = n + 1;
        let root = self.vigil.root();
        assert_eq!(
            to_hash(self.ct.root().as_bytes()),
            root,
            "ct-merkle root {size}"
        );
        assert_eq!(self.ct.root().num_leaves(), size);
        assert_eq!(
            tree_hash(size, &self.tlog).unwrap().0,
            root,
            "tlog root {size}"
        );
        assert_eq!(root_of(&self.vigil, size).unwrap(), root, "root_of {size}");
        self.roots.push(root);
    }

    fn grow_to(&mut self, size: u64) {
        while self.size() < size {
            self.push();
        }
    }

    /// Inclusion of `index` in the current tree: all three generators give
    /// the same proof, every verifier accepts it, and every verifier rejects
    /// the same tampered variants.
    fn check_inclusion(&self, index: u64, tamper: bool, rng: &mut StdRng) {
        let size = self.size();
        let root = self.roots[size as usize];
        let ours = inclusion_proof(&self.vigil, index, size).unwrap();
        let ct = split(self.ct.prove_inclusion(index as usize).as_bytes());
        let tlog = from_tlog(&prove_record(size, index, &self.tlog).unwrap());
        assert_eq!(ours, ct, "inclusion {index}/{size}: vigil vs ct-merkle");
        assert_eq!(ours, tlog, "inclusion {index}/{size}: vigil vs tlog_tiles");
        // The proofs are byte-identical, so vigil's verifier accepting its
        // own proof covers theirs; their verifiers must accept vigil's.
        assert_eq!(
            inclusion_verdicts(self, index, size, index, &ours, &root),
            [true, true, true]
        );
        if !tamper {
            return;
        }
        // Tampered variants: the verdicts agree (and here they are all "no").
        for bad in tampered(&ours, rng) {
            assert_eq!(
                inclusion_verdicts(self, index, size, index, &bad, &root),
                [false, false, false],
                "tampered inclusion {index}/{size}"
            );
        }
        if size > 1 {
            let other = (index + 1 + rng.gen_range(0..size - 1)) % size;
            assert_ne!(other, index);
            let v = inclusion_verdicts(self, other, size, index, &ours, &root);
            assert_eq!(
                v, [false; 3],
                "proof for {index} used for {other} in {size}"
            );
        }
        // A neighbouring size with its own (correct) root: the verdicts must
        // agree between implementations.
        for other_size in [size.saturating_sub(1), size + 1] {
            if other_size > index && (other_size as usize) < self.roots.len() {
                let r = self.roots[other_size as usize];
                let v = inclusion_verdicts(self, index, other_size, index, &ours, &r);
                assert!(
                    v == [false; 3],
                    "{index}/{size} as size {other_size}: {v:?}"
                );
            }
        }
    }

    /// Consistency from `size1` to the current size, same checks.
    fn check_consistency(&self, size1: u64, tamper: bool, rng: &mut StdRng) {
        let size2 = self.size();
        let (r1, r2) = (self.roots[size1 as usize], self.roots[size2 as usize]);
        let ours = consistency_proof(&self.vigil, size1, size2).unwrap();
        let ct = split(
            self.ct
                .prove_consistency((size2 - size1) as usize)
                .as_bytes(),
        );
        let tlog = from_tlog(&prove_tree(size2, size1, &self.tlog).unwrap());
        assert_eq!(ours, ct, "consistency {size1}->{size2}: vigil vs ct-merkle");
        assert_eq!(
            ours, tlog,
            "consistency {size1}->{size2}: vigil vs tlog_tiles"
        );
        assert_eq!(
            consistency_verdicts(size1, size2, &ours, &r1, &r2),
            [true, true, true]
        );
        if size1 == size2 || !tamper {
            return;
        }
        for bad in tampered(&ours, rng) {
            assert_eq!(
                consistency_verdicts(size1, size2, &bad, &r1, &r2),
                [false, false, false],
                "tampered consistency {size1}->{size2}"
            );
        }
        let wrong = leaf_hash(b"not a root");
        assert_eq!(
            consistency_verdicts(size1, size2, &ours, &wrong, &r2),
            [false; 3]
        );
        assert_eq!(
            consistency_verdicts(size1, size2, &ours, &r1, &wrong),
            [false; 3]
        );
        // Other sizes with their own correct roots: the three verifiers
        // agree, and none accepts.
        for (m, n) in [
            (size1 - 1, size2),
            (size1 + 1, size2),
            (size1, size2 - 1),
            (size1, size2 + 1),
        ] {
            if 0 < m && m < n && (n as usize) < self.roots.len() {
                let (a, b) = (self.roots[m as usize], self.roots[n as usize]);
                let v = consistency_verdicts(m, n, &ours, &a, &b);
                assert_eq!(v, [false; 3], "{size1}->{size2} used as {m}->{n}");
            }
        }
    }
}

/// `[vigil, ct-merkle, tlog_tiles]` verdicts on one inclusion proof of
/// leaf number `leaf` claimed to be at `index` (ct-merkle verifies leaf data,
/// the others the leaf hash).
fn inclusion_verdicts(
    t: &Trees,
    index: u64,
    size: u64,
    leaf: u64,
    proof: &[Hash],
    root: &Hash,
) -> [bool; 3] {
    let data = leaf_data(leaf);
    let leaf = &t.leaves[leaf as usize];
    let ours = verify_inclusion(leaf, index, size, proof, root).is_ok();
    let ct_proof = InclusionProof::<CtSha256>::try_from_bytes(proof.concat()).unwrap();
    let ct = RootHash::<CtSha256>::new((*root).into(), size)
        .verify_inclusion(&data, index, &ct_proof)
        .is_ok();
    let tlog = check_record(
        &to_tlog(proof),
        size,
        tlog_tiles::Hash(*root),
        index,
        tlog_tiles::Hash(*leaf),
    )
    .is_ok();
    [ours, ct, tlog]
}

/// `[vigil, ct-merkle, tlog_tiles]` verdicts on one consistency proof.
fn consistency_verdicts(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> [bool; 3] {
    let ours = verify_consistency(size1, size2, proof, root1, root2).is_ok();
    let ct_proof = ConsistencyProof::<CtSha256>::try_from_bytes(proof.concat()).unwrap();
    let ct = RootHash::<CtSha256>::new((*root2).into(), size2)
        .verify_consistency(&RootHash::new((*root1).into(), size1), &ct_proof)
        .is_ok();
    let tlog = check_tree(
        &to_tlog(proof),
        size2,
        tlog_tiles::Hash(*root2),
        size1,
        tlog_tiles::Hash(*root1),
    )
    .is_ok();
    [ours, ct, tlog]
}

/// Variants of a valid proof that must not verify: one flipped bit in each
/// element, a dropped first/last element, an extra element, and (when long
/// enough) two swapped elements.
fn tampered(proof: &[Hash], rng: &mut StdRng) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8);
        out.push(p);
    }
    if !proof.is_empty() {
        out.push(proof[1..].to_vec());
        out.push(proof[..proof.len() - 1].to_vec());
    }
    let mut longer = proof.to_vec();
    longer.push(leaf_hash(b"extra"));
    out.push(longer);
    if proof.len() >= 2 {
        let mut p = proof.to_vec();
        let i = rng.gen_range(0..proof.len() - 1);
        p.swap(i, i + 1);
        if p[i] != p[i + 1] {
            out.push(p);
        }
    }
    out
}

fn to_hash(b: &[u8]) -> Hash {
    b.try_into().expect("32-byte digest")
}

fn split(bytes: &[u8]) -> Vec<Hash> {
    assert_eq!(bytes.len() % 32, 0);
    bytes.chunks(32).map(to_hash).collect()
}

fn from_tlog(p: &[tlog_tiles::Hash]) -> Vec<Hash> {
    p.iter().map(|h| h.0).collect()
}

fn to_tlog(p: &[Hash]) -> Vec<tlog_tiles::Hash> {
    p.iter().map(|h| tlog_tiles::Hash(*h)).collect()
}

/// Every size 1..=300; at each, every leaf index and every older size.
#[test]
fn exhaustive_sizes_up_to_300() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut t = Trees::new();
    for size in 1..=300u64 {
        t.push();
        assert_eq!(
            t.roots[size as usize],
            root_from_leaf_hashes(&t.leaves),
            "size {size}"
        );
        // Every index and old size up to 64 leaves; above, the edges plus
        // a random sample. Tampering costs ~3 verifications per proof hash:
        // every proof up to 16 leaves, one of each kind per size above.
        let all = size <= 64;
        let sample = |rng: &mut StdRng, lo: u64| -> Vec<u64> {
            if all {
                return (lo..=size).collect();
            }
            let mut v = vec![lo, lo + 1, size / 2, size - 1, size];
            v.extend((0..4).map(|_| rng.gen_range(lo..=size)));
            v
        };
        for (k, index) in sample(&mut rng, 0).into_iter().enumerate() {
            if index < size {
                t.check_inclusion(index, size <= 16 || k == 2, &mut rng);
            }
        }
        for (k, size1) in sample(&mut rng, 1).into_iter().enumerate() {
            t.check_consistency(size1, size <= 16 || k == 2, &mut rng);
        }
    }
}

/// Sizes of interest above 300: powers of two and their neighbours, plus
/// random sizes up to 5000; at each, edge and random indices and old sizes.
#[test]
fn random_and_power_of_two_sizes() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut sizes: Vec<u64> = (9..=12)
        .flat_map(|k| [(1u64 << k) - 1, 1 << k, (1 << k) + 1])
        .chain([5000, 8191, 8192, 8193])
        .collect();
    sizes.extend((0..16).map(|_| rng.gen_range(301..5000)));
    sizes.sort_unstable();
    sizes.dedup();
    let mut t = Trees::new();
    for &size in &sizes {
        t.grow_to(size);
        assert_eq!(t.roots[size as usize], root_from_leaf_hashes(&t.leaves));
        let mut interesting = vec![0, 1, size / 2, size - 2, size - 1];
        for k in (0..14).step_by(3) {
            let p = 1u64 << k;
            interesting.extend([p - 1, p, p + 1]);
        }
        let mut indices = interesting.clone();
        indices.extend((0..6).map(|_| rng.gen_range(0..size)));
        indices.retain(|&i| i < size);
        indices.sort_unstable();
        indices.dedup();
        for i in indices {
            t.check_inclusion(i, true, &mut rng);
        }
        let mut olds = interesting;
        olds.push(size);
        olds.extend((0..6).map(|_| rng.gen_range(1..=size)));
        olds.retain(|&m| 0 < m && m <= size);
        olds.sort_unstable();
        olds.dedup();
        for m in olds {
            t.check_consistency(m, true, &mut rng);
        }
    }
}

/// Random proof-shaped garbage: the three verifiers agree on every input
/// (and, as a sanity check, essentially never accept).
#[test]
fn verdicts_agree_on_garbage() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut t = Trees::new();
    t.grow_to(64);
    let mut accepted = 0;
    for _ in 0..3000 {
        let size = rng.gen_range(1..=64u64);
        let index = rng.gen_range(0..size);
        let len = rng.gen_range(0..10);
        // Mix real node hashes and leaves into the garbage so partially right
        // proofs are common.
        let pool: Vec<Hash> = t.leaves.iter().chain(t.roots.iter()).copied().collect();
        let proof: Vec<Hash> = (0..len)
            .map(|_| pool[rng.gen_range(0..pool.len())])
            .collect();
        let root = t.roots[size as usize];
        let v = inclusion_verdicts(&t, index, size, index, &proof, &root);
        assert!(v == [v[0]; 3], "inclusion {index}/{size} {v:?}");
        accepted += usize::from(v[0]);
        let size1 = rng.gen_range(1..=size);
        let v = consistency_verdicts(size1, size, &proof, &t.roots[size1 as usize], &root);
        assert!(v == [v[0]; 3], "consistency {size1}->{size} {v:?}");
        accepted += usize::from(v[0]);
    }
    // Only the trivial cases (size 1 / size1 == size with an empty proof) can
    // be accepted by chance.
    assert!(accepted < 100, "{accepted}");
}
