//! An in-memory Merkle tree that keeps every perfect subtree's hash (2n hashes for n leaves), so
//! the root at any earlier size and any proof cost O(log n) hashes. Used where many proofs are
//! needed at once (an export with many checkpoints); the ledger itself reads leaves from the
//! store instead.

use std::ops::Range;

use crate::merkle::{self, node_hash, Hash, EMPTY_ROOT};

/// Leaf hashes and every complete interior level above them.
#[derive(Clone, Default)]
pub struct MemoryTree {
    /// `levels[h][i]` is the hash of the perfect subtree of height `h` covering leaves
    /// `i << h .. (i + 1) << h`.
    levels: Vec<Vec<Hash>>,
}

impl std::fmt::Debug for MemoryTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryTree({} leaves)", self.size())
    }
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = 0;
        let mut node = leaf;
        loop {
            if self.levels.len() == h {
                self.levels.push(Vec::new());
            }
            self.levels[h].push(node);
            let n = self.levels[h].len();
            if n % 2 == 1 {
                break;
            }
            node = node_hash(&self.levels[h][n - 2], &self.levels[h][n - 1]);
            h += 1;
        }
    }

    /// MTH of leaves `r.start..r.end`, where `r.start` is a multiple of the largest power of two
    /// below `r.len()` (true of every range in a proof, and of `0..n`).
    pub fn range_root(&self, r: Range<u64>) -> Hash {
        let (mut lo, hi) = (r.start, r.end.min(self.size()));
        if lo >= hi {
            return EMPTY_ROOT;
        }
        // Split into aligned perfect subtrees, largest first, then fold from the right.
        let mut parts: Vec<Hash> = Vec::new();
        while lo < hi {
            let mut h = 0u32;
            while lo % (1u64 << (h + 1)) == 0 && lo + (1u64 << (h + 1)) <= hi {
                h += 1;
            }
            parts.push(self.levels[h as usize][(lo >> h) as usize]);
            lo += 1u64 << h;
        }
        let mut acc = parts.pop().unwrap_or(EMPTY_ROOT);
        while let Some(left) = parts.pop() {
            acc = node_hash(&left, &acc);
        }
        acc
    }

    /// MTH of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Hash {
        self.range_root(0..size)
    }

    /// `PATH(index, D[0:size])`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Vec<Hash> {
        merkle::inclusion_ranges(index, size).into_iter().map(|r| self.range_root(r)).collect()
    }

    /// `PROOF(old, D[0:new])`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Vec<Hash> {
        merkle::consistency_ranges(old, new).into_iter().map(|r| self.range_root(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, leaf_hash, root};

    #[test]
    fn agrees_with_the_slice_functions() {
        let hs: Vec<Hash> = (0u32..100).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut t = MemoryTree::new();
        for h in &hs {
            t.push(*h);
        }
        for n in 0..=hs.len() {
            assert_eq!(t.root_at(n as u64), root(&hs[..n]), "root {n}");
            for i in 0..n {
                assert_eq!(
                    t.inclusion_proof(i as u64, n as u64),
                    inclusion_proof(&hs[..n], i as u64)
                );
            }
            for m in 0..=n {
                assert_eq!(
                    t.consistency_proof(m as u64, n as u64),
                    consistency_proof(&hs[..n], m as u64)
                );
            }
        }
    }
}
