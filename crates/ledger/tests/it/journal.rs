//! The write-ahead journal of a SQLite ledger: records acknowledged from the journal reach the
//! store, after a stop too; other appenders share the store; one journal per database.

use std::path::Path;
use std::time::Duration;

use ledger::record::HmacKey;
use ledger::{Ledger, LedgerConfig};

use crate::common::{self, record, signer, ORIGIN};

fn key() -> HmacKey {
    HmacKey::from_bytes(&[7u8; 32]).unwrap()
}

async fn journaled(store: store::Store, journal: &Path) -> Result<Ledger, ledger::Error> {
    Ledger::open(store, LedgerConfig::new(ORIGIN).signer(signer()).journal(journal)).await
}

/// Opens the journaled ledger once the previous holder has let go of the file (its tasks stop
/// shortly after the last handle is dropped).
async fn reopen(db: &Path, journal: &Path) -> Ledger {
    for _ in 0..100 {
        let s = store::Store::open(db.to_str().unwrap()).await.unwrap();
        match journaled(s.clone(), journal).await {
            Ok(l) => return l,
            Err(e) if e.to_string().contains("locked by another process") => {
                s.close().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the journal stayed locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_sqlite_concurrent_appends_checkpoints_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let l = journaled(common::sqlite(&dir).await, &dir.path().join("j")).await.unwrap();
    crate::log::exercise(&l).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_only_in_the_journal_reach_the_store_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (db, j) = (dir.path().join("phigate.db"), dir.path().join("j"));
    let s = common::sqlite(&dir).await;
    let l = journaled(s.clone(), &j).await.unwrap();
    l.record_all(&[record(0, &key()), record(1, &key())]).await.unwrap();
    l.flush().await.unwrap();
    assert!(l.health().is_ok());
    // The store goes away: what is recorded now is durable in the journal only.
    s.close().await;
    let later = [record(2, &key()), record(3, &key()), record(4, &key())];
    l.record_all(&later).await.unwrap();
    let e = l.flush().await.unwrap_err();
    assert!(e.to_string().contains("cannot be written"), "{e}");
    // While the store cannot be written, appends are refused (fail closed).
    let mut refused = false;
    for _ in 0..100 {
        if l.record(record(99, &key())).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "appends went on while the store could not be written");
    // A readiness probe sees it.
    let why = l.health().expect_err("healthy while every append is refused");
    assert!(why.contains("cannot be written"), "{why}");
    drop(l);

    let l = reopen(&db, &j).await;
    let got: Vec<_> = l.read(0, l.len().await.unwrap()).await.unwrap();
    let want: Vec<_> = (0..5).map(|i| record(i, &key()).canonical_bytes()).collect();
    let got_records: Vec<_> = got.iter().map(|(_, r)| r.canonical_bytes()).collect();
    // Records 0 to 4, once each; record 99 may be there too (its frame was flushed when the
    // filler had not yet reported the store's failure), after them.
    assert_eq!(&got_records[..5], &want[..]);
    let r99 = record(99, &key()).canonical_bytes();
    assert!(got_records[5..].iter().all(|r| *r == r99), "more than records 0-4 and 99");
    let n = got.len() as u64;
    l.checkpoint().await.unwrap();
    assert_eq!(l.verify_store(Some(&signer().verifier())).await.unwrap().records, n);
    drop(l);
    // Opening again replays nothing twice.
    let l = reopen(&db, &j).await;
    assert_eq!(l.len().await.unwrap(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_appender_on_the_same_database_shares_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let (db, j) = (dir.path().join("phigate.db"), dir.path().join("j"));
    let journal_side = journaled(common::sqlite(&dir).await, &j).await.unwrap();
    // Another process (phigate vault shred, audit append) appends to the store directly.
    let direct = common::ledger(common::sqlite(&dir).await).await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let (a, b) = (journal_side.clone(), direct.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                a.record(record(i, &key())).await.unwrap();
            } else {
                b.append(record(i, &key())).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    journal_side.flush().await.unwrap();
    assert_eq!(direct.len().await.unwrap(), 200);
    let mut seen: Vec<_> = direct.read(0, 200).await.unwrap().into_iter().map(|(_, r)| r).collect();
    seen.sort_by_key(|r| r.ts_ms());
    let seen: Vec<_> = seen.iter().map(|r| r.canonical_bytes()).collect();
    assert_eq!(seen, (0..200).map(|i| record(i, &key()).canonical_bytes()).collect::<Vec<_>>());
    journal_side.checkpoint().await.unwrap();
    journal_side.verify_store(Some(&signer().verifier())).await.unwrap();
    drop(journal_side);
    let l = reopen(&db, &j).await;
    assert_eq!(l.len().await.unwrap(), 200, "a reopen copied a record twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_journal_per_database() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let _first = journaled(common::sqlite(&dir).await, &j).await.unwrap();
    let e = journaled(common::sqlite(&dir).await, &j).await.unwrap_err();
    assert!(e.to_string().contains("locked by another process"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_wraps_and_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let (db, j) = (dir.path().join("phigate.db"), dir.path().join("j"));
    let l = journaled(common::sqlite(&dir).await, &j).await.unwrap();
    let size = std::fs::metadata(&j).unwrap().len();
    // 60,000 records, about 18 MB: several times the journal's size.
    let n = 60_000u64;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while i < n {
                let batch: Vec<_> =
                    (i..(i + 8 * 50).min(n)).step_by(8).map(|k| record(k, &key())).collect();
                l.record_all(&batch).await.unwrap();
                i += 8 * 50;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(l.len().await.unwrap(), n);
    let written: u64 =
        l.read(0, n).await.unwrap().iter().map(|(_, r)| r.canonical_bytes().len() as u64).sum();
    let after = std::fs::metadata(&j).unwrap().len();
    assert!(written > 3 * size, "the test wrote {written} bytes, the journal is {size}");
    assert!(after < size + (1 << 20), "the journal grew from {size} to {after} bytes");
    drop(l);
    let l = reopen(&db, &j).await;
    assert_eq!(l.len().await.unwrap(), n, "a reopen after wraps copied records twice");
}

/// Whether the journal's run is empty: no frame at offset 0 (its magic number zeroed).
fn journal_is_empty(j: &Path) -> bool {
    let bytes = std::fs::read(j).unwrap();
    bytes[..4] == [0, 0, 0, 0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_empties_the_journal_and_the_ledger_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (db, j) = (dir.path().join("phigate.db"), dir.path().join("j"));
    let l = journaled(common::sqlite(&dir).await, &j).await.unwrap();
    l.record_all(&[record(0, &key()), record(1, &key())]).await.unwrap();
    assert!(!journal_is_empty(&j));
    l.close().await.unwrap();
    assert!(journal_is_empty(&j), "a clean close left frames to read back");
    assert_eq!(l.len().await.unwrap(), 2);
    // Written after the close: from offset 0 again, and read back at the next open.
    l.record(record(2, &key())).await.unwrap();
    assert!(!journal_is_empty(&j));
    drop(l);
    let l = reopen(&db, &j).await;
    assert_eq!(l.len().await.unwrap(), 3);
    let got: Vec<_> = l.read(0, 3).await.unwrap().into_iter().map(|(_, r)| r).collect();
    assert_eq!(got.last().unwrap().canonical_bytes(), record(2, &key()).canonical_bytes());
    l.close().await.unwrap();
    drop(l);
    let l = reopen(&db, &j).await;
    assert_eq!(l.len().await.unwrap(), 3, "a reopen after a close copied records twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_after_a_crash_replays_the_journal_once_and_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, j) = (dir.path().join("phigate.db"), dir.path().join("phigate.db-ledger-journal"));
    let s = common::sqlite(&dir).await;
    assert_eq!(ledger::journal_path(&s).unwrap(), j);
    let l = journaled(s.clone(), &j).await.unwrap();
    l.record(record(0, &key())).await.unwrap();
    l.flush().await.unwrap();
    // The store goes (as in a crash): records 1 and 2 are in the journal only.
    s.close().await;
    l.record_all(&[record(1, &key()), record(2, &key())]).await.unwrap();
    drop(l);
    // What a CLI command does at open (nothing while the dropped ledger still holds the file).
    let s = store::Store::open(db.to_str().unwrap()).await.unwrap();
    let mut replayed = 0;
    for _ in 0..100 {
        replayed = ledger::replay_journal(&s).await.unwrap().0;
        if replayed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replayed, 2);
    assert_eq!(s.ledger_len().await.unwrap(), 3);
    assert!(journal_is_empty(&j), "the replayed journal was left to read back again");
    assert_eq!(ledger::replay_journal(&s).await.unwrap(), (0, None));
    assert_eq!(s.ledger_len().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_acknowledged_from_concurrent_appends_survives_the_store_going() {
    // Callers append one record at a time from 16 tasks, so that batches of several callers
    // form while a flush is under way. Midway the store goes (as in a crash): every record
    // acknowledged, before or after, must come back at the next open, once each.
    let dir = tempfile::tempdir().unwrap();
    let (db, j) = (dir.path().join("phigate.db"), dir.path().join("j"));
    let s = common::sqlite(&dir).await;
    let l = journaled(s.clone(), &j).await.unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (l, acked) = (l.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..150u64 {
                let i = k * 16 + t;
                if l.record(record(i, &key())).await.is_err() {
                    return;
                }
                acked.lock().unwrap().push(i);
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 800 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "800 records were not acknowledged in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    s.close().await;
    for t in tasks {
        t.await.unwrap();
    }
    drop(l);

    let l = reopen(&db, &j).await;
    let n = l.len().await.unwrap();
    let mut got: Vec<_> =
        l.read(0, n).await.unwrap().into_iter().map(|(_, r)| r.canonical_bytes()).collect();
    got.sort();
    let before = got.len();
    got.dedup();
    assert_eq!(got.len(), before, "a record came back twice");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 800);
    for i in acked {
        let want = record(i, &key()).canonical_bytes();
        assert!(got.binary_search(&want).is_ok(), "acknowledged record {i} is lost");
    }
    l.checkpoint().await.unwrap();
    assert_eq!(l.verify_store(Some(&signer().verifier())).await.unwrap().records, n);
}
