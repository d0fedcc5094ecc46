//! RFC 9162 (Certificate Transparency 2.0) §2.1 Merkle trees over SHA-256: the tree head (MTH),
//! inclusion paths (PATH), consistency proofs (PROOF) and their verification, plus a compact
//! range ([`Frontier`]) that folds leaves in O(log n) memory.
//!
//! This module is pure: no I/O, no allocation per leaf. Proof generation is split in two:
//! [`inclusion_ranges`] and [`consistency_ranges`] say which leaf ranges' subtree hashes make the
//! proof (they depend only on sizes and indexes), and the caller hashes those ranges from
//! wherever the leaves live (memory, a database, a file) with a [`Frontier`].

use std::ops::Range;

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree head.
pub type Hash = [u8; 32];

/// MTH({}) = SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// A compact range starting at leaf 0: the roots of the perfect subtrees that cover the leaves
/// pushed so far, largest first. Holds at most 64 hashes whatever the number of leaves.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (hash, height) pairs, heights strictly decreasing.
    stack: Vec<(Hash, u32)>,
}

impl std::fmt::Debug for Frontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontier")
            .field("size", &self.size)
            .field("root", &hex::encode(self.root()))
            .finish()
    }
}

impl Frontier {
    /// An empty range.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// How many leaves were pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (leaf, 0u32);
        while let Some(&(top, height)) = self.stack.last() {
            if height != node.1 {
                break;
            }
            self.stack.pop();
            node = (node_hash(&top, &node.0), height + 1);
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// MTH of the leaves pushed so far (the empty-tree hash when none).
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(mut acc, _)) = it.next() else {
            return EMPTY_ROOT;
        };
        for (h, _) in it {
            acc = node_hash(h, &acc);
        }
        acc
    }
}

/// `MTH(D[n])` of leaf hashes held in memory.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for l in leaves {
        f.push(*l);
    }
    f.root()
}

/// The leaf ranges whose subtree hashes form `PATH(index, D[0:size])`, in proof order (from the
/// leaf upwards). Empty when `index >= size`.
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<Range<u64>>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, lo, lo + k, out);
        out.push(lo + k..hi);
    } else {
        path(m - k, lo + k, hi, out);
        out.push(lo..lo + k);
    }
}

/// The leaf ranges whose subtree hashes form `PROOF(old, D[0:new])`, in proof order. Empty when
/// `old == 0`, `old >= new`.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(old, 0, new, true, &mut out);
    }
    out
}

fn subproof(m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<Range<u64>>) {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(lo..hi);
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, complete, out);
        out.push(lo + k..hi);
    } else {
        subproof(m - k, lo + k, hi, false, out);
        out.push(lo..lo + k);
    }
}

/// `PATH(index, D[0:leaves.len()])` from leaf hashes in memory.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Vec<Hash> {
    inclusion_ranges(index, leaves.len() as u64)
        .into_iter()
        .map(|r| range_root(leaves, r))
        .collect()
}

/// `PROOF(old, D[0:leaves.len()])` from leaf hashes in memory.
pub fn consistency_proof(leaves: &[Hash], old: u64) -> Vec<Hash> {
    consistency_ranges(old, leaves.len() as u64)
        .into_iter()
        .map(|r| range_root(leaves, r))
        .collect()
}

fn range_root(leaves: &[Hash], r: Range<u64>) -> Hash {
    // Ranges come from sizes <= leaves.len(), which fit in usize.
    root(&leaves[r.start as usize..r.end as usize])
}

/// Why a proof did not verify. Carries no hashes: only what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index is not below the tree size, or the sizes are in the wrong order.
    #[error("the index or sizes are out of range")]
    OutOfRange,
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has the wrong length")]
    WrongLength,
    /// The proof recomputes to a different root.
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2). Sizes `0 -> n` and
/// `n -> n` (with equal roots) are consistent with an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    if old_size == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(ProofError::WrongLength) };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof.iter());
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = *path[0];
    let mut sr = *path[0];
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    /// The RFC 6962 test leaves used by transparency-dev/merkle and certificate-transparency.
    fn leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| hex::decode(s).unwrap())
        .collect()
    }

    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn hashes() -> Vec<Hash> {
        leaves().iter().map(|l| leaf_hash(l)).collect()
    }

    #[test]
    fn empty_tree_hash() {
        assert_eq!(root(&[]), EMPTY_ROOT);
        assert_eq!(
            hex::encode(EMPTY_ROOT),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[test]
    fn roots_match_the_rfc6962_vectors() {
        let hs = hashes();
        for n in 1..=8 {
            assert_eq!(hex::encode(root(&hs[..n])), ROOTS[n - 1], "size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_vectors() {
        // (leaf index 0-based, tree size, proof)
        let cases: &[(u64, usize, &[&str])] = &[
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let hs = hashes();
        for (idx, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = inclusion_proof(&hs[..*size], *idx);
            assert_eq!(got, want, "PATH({idx}, {size})");
            let r = h(ROOTS[size - 1]);
            verify_inclusion(&hs[*idx as usize], *idx, *size as u64, &got, &r).unwrap();
            // Corruptions fail.
            assert!(verify_inclusion(&hs[*idx as usize], *idx + 1, *size as u64, &got, &r).is_err());
            assert!(verify_inclusion(&hs[*idx as usize], *idx, *size as u64 * 2, &got, &r).is_err());
            assert!(verify_inclusion(&EMPTY_ROOT, *idx, *size as u64, &got, &r).is_err());
            for i in 0..got.len() {
                let mut bad = got.clone();
                bad[i][0] ^= 8;
                assert!(verify_inclusion(&hs[*idx as usize], *idx, *size as u64, &bad, &r).is_err());
            }
            let mut longer = got.clone();
            longer.push(r);
            assert!(verify_inclusion(&hs[*idx as usize], *idx, *size as u64, &longer, &r).is_err());
            if !got.is_empty() {
                assert!(verify_inclusion(
                    &hs[*idx as usize],
                    *idx,
                    *size as u64,
                    &got[..got.len() - 1],
                    &r
                )
                .is_err());
            }
        }
    }

    #[test]
    fn consistency_proofs_match_the_vectors() {
        let cases: &[(u64, usize, &[&str])] = &[
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        let hs = hashes();
        for (old, new, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = consistency_proof(&hs[..*new], *old);
            assert_eq!(got, want, "PROOF({old}, {new})");
            let (r1, r2) = (h(ROOTS[*old as usize - 1]), h(ROOTS[new - 1]));
            verify_consistency(*old, *new as u64, &got, &r1, &r2).unwrap();
            if got.is_empty() {
                continue;
            }
            assert!(verify_consistency(*old, *new as u64, &got, &r2, &r1).is_err());
            assert!(verify_consistency(*old + 1, *new as u64, &got, &r1, &r2).is_err());
            assert!(verify_consistency(*old, *new as u64 * 2, &got, &r1, &r2).is_err());
            assert!(verify_consistency(*old, *new as u64, &[], &r1, &r2).is_err());
            assert!(verify_consistency(*old, *new as u64, &got[..got.len() - 1], &r1, &r2).is_err());
            for i in 0..got.len() {
                let mut bad = got.clone();
                bad[i][0] ^= 16;
                assert!(verify_consistency(*old, *new as u64, &bad, &r1, &r2).is_err());
            }
        }
    }

    #[test]
    fn every_proof_of_small_trees_verifies() {
        let hs: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=hs.len() {
            let r = root(&hs[..n]);
            for i in 0..n {
                let p = inclusion_proof(&hs[..n], i as u64);
                verify_inclusion(&hs[i], i as u64, n as u64, &p, &r).unwrap();
            }
            for m in 0..=n {
                let p = consistency_proof(&hs[..n], m as u64);
                verify_consistency(m as u64, n as u64, &p, &root(&hs[..m]), &r).unwrap();
            }
        }
    }

    #[test]
    fn frontier_matches_the_recursive_definition() {
        fn mth(l: &[Hash]) -> Hash {
            match l.len() {
                0 => EMPTY_ROOT,
                1 => l[0],
                n => {
                    let k = split(n as u64) as usize;
                    node_hash(&mth(&l[..k]), &mth(&l[k..]))
                }
            }
        }
        let hs: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut f = Frontier::new();
        for (i, l) in hs.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), mth(&hs[..=i]));
            assert!(f.stack.len() <= 64);
        }
    }
}
