//! Every API method, written once, run on both backends.

use store::{Backend, LedgerQuery, Store};

use crate::common::{both_backends, entry};

both_backends!(ledger_append_read_len);

async fn ledger_append_read_len(s: Store) {
    assert!(matches!(s.backend(), Backend::Sqlite | Backend::Postgres));
    s.ping().await.unwrap();
    assert_eq!(s.ledger_len().await.unwrap(), 0);
    assert_eq!(s.ledger_append(&[]).await.unwrap(), 0);
    let first: Vec<_> = (0..3).map(entry).collect();
    assert_eq!(s.ledger_append(&first).await.unwrap(), 0);
    let more: Vec<_> = (3..10).map(entry).collect();
    assert_eq!(s.ledger_append(&more).await.unwrap(), 3);
    assert_eq!(s.ledger_len().await.unwrap(), 10);
    let got = s.ledger_read(2, 5).await.unwrap();
    assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3, 4]);
    for e in &got {
        let want = entry(e.index);
        assert_eq!(e.body, want.body);
        assert_eq!(e.leaf_hash, want.leaf_hash);
        assert_eq!(e.ts_ms, want.ts_ms);
    }
    assert!(s.ledger_read(5, 5).await.unwrap().is_empty());
    assert_eq!(s.ledger_read(8, 100).await.unwrap().len(), 2);
    let hashes = s.ledger_leaf_hashes(0, 10).await.unwrap();
    assert_eq!(hashes, (0..10).map(|i| entry(i).leaf_hash).collect::<Vec<_>>());
    assert_eq!(s.ledger_leaf_hashes(7, u64::MAX).await.unwrap().len(), 3);
    let all = s.ledger_search(&LedgerQuery { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 10);
}
