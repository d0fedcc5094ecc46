//! Stored checkpoints stay in one order: a checkpoint of a larger tree size is never signed
//! earlier than one of a smaller size, whoever stores them and however they race.

use store::{CheckpointPut, Store, StoredCheckpoint};

use crate::common::{both_backends, PgDb};

fn cp(size: u64, ts: i64) -> StoredCheckpoint {
    StoredCheckpoint {
        tree_size: size,
        root_hash: [size as u8; 32],
        ts_ms: ts,
        note: format!("phigate.example/log\n{size}\nroot\n\n— sig{size}@{ts}\n"),
    }
}

/// By tree size, the timestamps never go back.
fn assert_in_order(cps: &[StoredCheckpoint]) {
    for w in cps.windows(2) {
        assert!(w[0].tree_size < w[1].tree_size, "by size");
        assert!(
            w[0].ts_ms <= w[1].ts_ms,
            "size {} (ts {}) is signed later than the larger size {} (ts {})",
            w[0].tree_size,
            w[0].ts_ms,
            w[1].tree_size,
            w[1].ts_ms
        );
    }
}

both_backends!(a_checkpoint_out_of_order_is_not_stored);

async fn a_checkpoint_out_of_order_is_not_stored(s: Store) {
    assert_eq!(s.checkpoint_put(&cp(30, 300)).await.unwrap(), CheckpointPut::Stored);
    // Smaller than the latest, signed later (a slow issuer that read the log before the latest
    // was stored): not stored, and the caller learns of the latest.
    let r = s.checkpoint_put(&cp(20, 400)).await.unwrap();
    assert_eq!(r, CheckpointPut::Behind(cp(30, 300)));
    // Smaller than the latest, even in time order: the log's history below the latest is
    // closed.
    let r = s.checkpoint_put(&cp(25, 250)).await.unwrap();
    assert_eq!(r, CheckpointPut::Behind(cp(30, 300)));
    // Larger, but signed before the latest (a clock behind): not stored; the caller learns how
    // late it must sign.
    let r = s.checkpoint_put(&cp(40, 299)).await.unwrap();
    assert_eq!(r, CheckpointPut::TooEarly { not_before_ms: 300 });
    // At the same millisecond as the latest: in order.
    assert_eq!(s.checkpoint_put(&cp(40, 300)).await.unwrap(), CheckpointPut::Stored);
    assert_eq!(s.checkpoint_put(&cp(40, 300)).await.unwrap(), CheckpointPut::Exists);
    let all = s.checkpoints().await.unwrap();
    assert_in_order(&all);
    assert_eq!(all, vec![cp(30, 300), cp(40, 300)]);
    assert_eq!(s.checkpoint_latest().await.unwrap(), Some(cp(40, 300)));
}

/// Issuers on separate connections (a CLI beside a server, PostgreSQL replicas) store
/// checkpoints at once, each larger one signed earlier than the smaller ones: whatever the
/// interleaving, what is stored is in order.
async fn racing_issuers(url: String) {
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Store::open(&url).await.unwrap());
    }
    let mut tasks = Vec::new();
    for (k, s) in stores.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..25u64 {
                let size = 1 + round * 4 + k as u64;
                // Larger sizes, earlier times: every pair is in the wrong order. Each put
                // either stores or says why not; none fails.
                match s.checkpoint_put(&cp(size, 1_000_000 - size as i64)).await.unwrap() {
                    CheckpointPut::Stored
                    | CheckpointPut::Behind(_)
                    | CheckpointPut::TooEarly { .. } => {}
                    CheckpointPut::Exists => panic!("size {size} was stored twice"),
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = stores[0].checkpoints().await.unwrap();
    assert!(!all.is_empty());
    assert_in_order(&all);
    for s in stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_issuers_keep_checkpoints_in_order() {
    PgDb::with(racing_issuers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_issuers_keep_checkpoints_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shared.db");
    racing_issuers(p.to_str().unwrap().to_string()).await;
}
