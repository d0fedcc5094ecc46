//! Several independently opened stores (separate pools, as separate gateway replicas would have)
//! appending concurrently to one database: one gapless order, each writer's entries in its order.

use store::{NewLedgerEntry, Store};

use crate::common::{entry, PgDb};

const STORES: u64 = 4;
const TASKS: u64 = 4;
const BATCHES: u64 = 15;

fn tagged(writer: u64, seq: u64) -> NewLedgerEntry {
    let mut e = entry(seq);
    e.actor = format!("writer{writer}");
    e.body = format!("{writer}:{seq}:").into_bytes();
    e.body.resize(300, b'.');
    e
}

async fn many_writers(url: String) {
    let mut stores = Vec::new();
    for _ in 0..STORES {
        stores.push(Store::open(&url).await.unwrap());
    }
    let mut handles = Vec::new();
    for (si, s) in stores.iter().enumerate() {
        for t in 0..TASKS {
            let s = s.clone();
            let writer = si as u64 * TASKS + t;
            handles.push(tokio::spawn(async move {
                let mut seq = 0;
                for b in 0..BATCHES {
                    let batch: Vec<_> = (0..(b % 5 + 1))
                        .map(|_| {
                            seq += 1;
                            tagged(writer, seq)
                        })
                        .collect();
                    s.ledger_append(&batch).await.unwrap();
                }
                seq
            }));
        }
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    let s = &stores[0];
    let n = s.ledger_len().await.unwrap();
    assert_eq!(n, total);
    let all = s.ledger_read(0, n).await.unwrap();
    assert_eq!(all.iter().map(|e| e.index).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
    let mut last = vec![0u64; (STORES * TASKS) as usize];
    for e in &all {
        let text = String::from_utf8_lossy(&e.body);
        let mut parts = text.split(':');
        let w: usize = parts.next().unwrap().parse().unwrap();
        let seq: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(seq, last[w] + 1, "writer {w}: entries in the order appended, none lost");
        last[w] = seq;
    }
    // Every other store sees the same log.
    for other in &stores[1..] {
        assert_eq!(
            other.ledger_leaf_hashes(0, n).await.unwrap(),
            s.ledger_leaf_hashes(0, n).await.unwrap()
        );
    }
    for s in stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_append_one_gapless_order() {
    PgDb::with(many_writers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_several_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shared.db");
    many_writers(p.to_str().unwrap().to_string()).await;
}

/// Appends wait for whoever holds the ledger's advisory lock (here a foreign session) and land
/// after it: the lock, not luck, orders the writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_append_waits_for_the_ledger_lock() {
    use sqlx::Connection;
    PgDb::with(|url| async move {
        let s = Store::open(&url).await.unwrap();
        s.ledger_append(&[entry(0)]).await.unwrap();
        let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut tx = other.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(x'7068696761746501'::bigint)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let s2 = s.clone();
        let pending = tokio::spawn(async move { s2.ledger_append(&[entry(1)]).await });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!pending.is_finished(), "an append ran while another session held the lock");
        tx.commit().await.unwrap();
        assert_eq!(pending.await.unwrap().unwrap(), 1);
        s.close().await;
    })
    .await;
}

/// A store that appended before remembers where the ledger ended; another store's append since
/// then makes its next insert collide, and the append lands after the other's (no gap, no error,
/// no transaction left open on its writer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_append_after_another_stores_append() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shared.db");
    let url = p.to_str().unwrap().to_string();
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    assert_eq!(a.ledger_append(&[tagged(0, 1), tagged(0, 2)]).await.unwrap(), 0);
    assert_eq!(b.ledger_append(&[tagged(1, 1)]).await.unwrap(), 2);
    assert_eq!(a.ledger_append(&[tagged(0, 3)]).await.unwrap(), 3, "after b's entry");
    // a's writer is not left inside the failed transaction.
    assert_eq!(a.ledger_append(&[tagged(0, 4)]).await.unwrap(), 4);
    assert_eq!(b.ledger_append(&[tagged(1, 2)]).await.unwrap(), 5);
    let all = a.ledger_read(0, 6).await.unwrap();
    let bodies: Vec<String> = all
        .iter()
        .map(|e| String::from_utf8_lossy(&e.body).split(':').take(2).collect::<Vec<_>>().join(":"))
        .collect();
    assert_eq!(bodies, ["0:1", "0:2", "1:1", "0:3", "0:4", "1:2"]);
    a.close().await;
    b.close().await;
}
