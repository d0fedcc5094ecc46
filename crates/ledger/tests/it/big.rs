//! Timings on a big ledger, for comparing builds (ignored by default; a debug build's figures
//! only compare with each other):
//! `LEDGER_BIG_N=200000 cargo test -q -p ledger --test it big -- --ignored --nocapture`

use std::time::Instant;

use ledger::record::HmacKey;
use ledger::{Ledger, LedgerConfig, Query};

use crate::common::{self, record, signer, ORIGIN};

async fn timings(store: store::Store, what: &str) {
    let n: u64 = std::env::var("LEDGER_BIG_N").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let mut cfg = LedgerConfig::new(ORIGIN).signer(signer());
    cfg.max_batch = 4096;
    let l = Ledger::open(store, cfg).await.unwrap();
    let key = HmacKey::from_bytes(&[5u8; 32]).unwrap();
    let t = Instant::now();
    let mut at = 0;
    while at < n {
        let end = (at + 4096).min(n);
        let recs: Vec<_> = (at..end).map(|i| record(i, &key)).collect();
        l.append_all(&recs).await.unwrap();
        at = end;
    }
    let fill = t.elapsed();
    l.checkpoint().await.unwrap();
    let v = signer().verifier();
    let t = Instant::now();
    let rep = l.verify_store(Some(&v)).await.unwrap();
    let verify = t.elapsed();
    assert_eq!(rep.records, n);
    let t = Instant::now();
    let mut out = std::io::sink();
    l.export(&mut out).await.unwrap();
    let export = t.elapsed();
    let t = Instant::now();
    let q = Query { actor: Some("svc-3".parse().unwrap()), limit: 10_000, ..Query::default() };
    let hits = l.search(&q).await.unwrap();
    let search = t.elapsed();
    assert_eq!(hits.len(), 10_000);
    eprintln!(
        "{what}, {n} records: filled in {fill:.2?}; verify_store {verify:.2?} ({:.0} records/s); \
         export {export:.2?}; a search of 10,000 {search:.2?}",
        n as f64 / verify.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: timings for comparing builds"]
async fn big_ledger_timings_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    timings(common::sqlite(&dir).await, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: timings for comparing builds"]
async fn big_ledger_timings_postgres() {
    let Some(db) = common::PgDb::create().await else { return };
    timings(store::Store::open(&db.url).await.unwrap(), "PostgreSQL").await;
    db.drop_db().await;
}
