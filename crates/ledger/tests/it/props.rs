//! Property tests: proofs of random trees verify and corrupted ones do not; no single changed
//! byte anywhere in an export goes unnoticed.

use ledger::merkle::{self, leaf_hash, Hash};
use ledger::tree::MemoryTree;
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_proofs_verify_and_corruptions_fail(n in 1usize..3000, i in any::<prop::sample::Index>(), m in any::<prop::sample::Index>(), bit in 0usize..256) {
        let hs = leaves(n);
        let mut t = MemoryTree::new();
        for h in &hs { t.push(*h); }
        let root = t.root_at(n as u64);
        prop_assert_eq!(root, merkle::root(&hs));
        let i = i.index(n) as u64;
        let p = t.inclusion_proof(i, n as u64);
        prop_assert!(merkle::verify_inclusion(&hs[i as usize], i, n as u64, &p, &root).is_ok());
        if !p.is_empty() {
            let mut bad = p.clone();
            let k = bit % bad.len();
            bad[k][bit / 8 % 32] ^= 1 << (bit % 8);
            prop_assert!(merkle::verify_inclusion(&hs[i as usize], i, n as u64, &bad, &root).is_err());
        }
        let m = m.index(n + 1) as u64;
        let c = t.consistency_proof(m, n as u64);
        let old = t.root_at(m);
        prop_assert!(merkle::verify_consistency(m, n as u64, &c, &old, &root).is_ok());
        if !c.is_empty() {
            let mut bad = c.clone();
            let k = bit % bad.len();
            bad[k][bit / 8 % 32] ^= 1 << (bit % 8);
            prop_assert!(merkle::verify_consistency(m, n as u64, &bad, &old, &root).is_err());
        }
    }
}

/// A small export with three checkpoints, made once.
fn export() -> &'static [u8] {
    static E: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let l = crate::common::ledger(crate::common::sqlite(&dir).await).await;
            let key = ledger::HmacKey::from_bytes(&[5u8; 32]).unwrap();
            for i in 0..12u64 {
                l.append(crate::common::record(i, &key)).await.unwrap();
                if i == 3 || i == 8 || i == 11 {
                    l.checkpoint().await.unwrap();
                }
            }
            let mut out = Vec::new();
            l.export(&mut out).await.unwrap();
            out
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn no_changed_byte_goes_unnoticed(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let good = export();
        let v = crate::common::signer().verifier();
        prop_assert!(ledger::verify_export(good, &v).is_ok());
        let mut bad = good.to_vec();
        let p = pos.index(bad.len());
        bad[p] ^= flip;
        prop_assert!(ledger::verify_export(bad.as_slice(), &v).is_err(), "byte {} changed and still verifies", p);
    }
}
