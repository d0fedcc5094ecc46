//! The log over a real store: concurrent appends, checkpoints, proofs, verification.

use std::collections::BTreeSet;

use ledger::record::HmacKey;
use ledger::{merkle, Checkpoint, Ledger, LedgerConfig, Query};

use crate::common::{self, record, signer, ORIGIN};

pub async fn exercise(l: &Ledger) {
    let key = HmacKey::from_bytes(&[1u8; 32]).unwrap();
    // 600 concurrent appends: every index 0..600 handed out exactly once.
    let mut tasks = Vec::new();
    for i in 0..600u64 {
        let l = l.clone();
        let r = record(i, &key);
        tasks.push(tokio::spawn(async move { l.append(r).await.unwrap() }));
    }
    let mut got = BTreeSet::new();
    for t in tasks {
        assert!(got.insert(t.await.unwrap()));
    }
    assert_eq!(got, (0..600).collect());
    assert_eq!(l.len().await.unwrap(), 600);

    let c1 = l.checkpoint().await.unwrap();
    assert_eq!(c1.checkpoint.tree_size, 600);
    let v = signer().verifier();
    assert_eq!(Checkpoint::open(&c1.note, &v).unwrap(), c1.checkpoint);
    for i in 600..777u64 {
        l.append(record(i, &key)).await.unwrap();
    }
    assert!(l.checkpoint_if_grown().await.unwrap().is_some());
    assert!(l.checkpoint_if_grown().await.unwrap().is_none());
    let c2 = l.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(c2.checkpoint.tree_size, 777);

    // Roots from the store agree with an in-memory tree of the leaf hashes.
    let leaves: Vec<[u8; 32]> = l.store().ledger_leaf_hashes(0, 777).await.unwrap();
    assert_eq!(merkle::root(&leaves), c2.checkpoint.root);
    assert_eq!(l.root(600).await.unwrap(), c1.checkpoint.root);

    for idx in [0u64, 1, 299, 599, 600, 776] {
        let p = l.inclusion_proof(idx, 777).await.unwrap();
        p.verify(&c2.checkpoint.root).unwrap();
        assert_eq!(p.hashes, merkle::inclusion_proof(&leaves, idx));
        if idx < 600 {
            l.inclusion_proof(idx, 600).await.unwrap().verify(&c1.checkpoint.root).unwrap();
        }
    }
    let cp = l.consistency_proof(600, 777).await.unwrap();
    cp.verify(&c1.checkpoint.root, &c2.checkpoint.root).unwrap();
    assert!(cp.verify(&c2.checkpoint.root, &c1.checkpoint.root).is_err());
    assert!(l.inclusion_proof(777, 777).await.is_err());
    assert!(l.consistency_proof(1, 778).await.is_err());

    let rep = l.verify_store(Some(&v)).await.unwrap();
    assert_eq!((rep.records, rep.checkpoints, rep.root), (777, 2, c2.checkpoint.root));

    // Search by the indexed fields.
    let q = Query { actor: Some("svc-3".parse().unwrap()), limit: 10_000, ..Query::default() };
    let hits = l.search(&q).await.unwrap();
    assert_eq!(hits.len(), (0..777).filter(|i| i % 7 == 3).count());
    assert!(hits.iter().all(|(_, r)| r.actor().as_str() == "svc-3"));
    assert!(hits.windows(2).all(|w| w[0].0 < w[1].0), "in index order");
    let q = Query {
        category: Some(phi::Category::Date),
        decision: Some(ledger::Decision::Allow),
        limit: 10_000,
        ..Query::default()
    };
    let hits = l.search(&q).await.unwrap();
    assert_eq!(hits.len(), (0..777).filter(|i| i % 5 == 0 && i % 3 == 0).count());
    let q = Query {
        from_ms: Some(1_700_000_000_000 + 10_000),
        to_ms: Some(1_700_000_000_000 + 20_000),
        limit: 10_000,
        ..Query::default()
    };
    let mut ts: Vec<i64> =
        l.search(&q).await.unwrap().into_iter().map(|(_, r)| r.ts_ms()).collect();
    ts.sort();
    assert_eq!(ts, (10..20).map(|i| 1_700_000_000_000 + i * 1000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_appends_checkpoints_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let l = common::ledger(common::sqlite(&dir).await).await;
    exercise(&l).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_appends_checkpoints_and_proofs() {
    let Some(db) = common::PgDb::create().await else { return };
    {
        let s = store::Store::open(&db.url).await.unwrap();
        let l = common::ledger(s).await;
        exercise(&l).await;
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_issues_checkpoints_when_the_log_grows() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::sqlite(&dir).await;
    let cfg = LedgerConfig::new(ORIGIN)
        .signer(signer())
        .checkpoint_every(std::time::Duration::from_millis(50));
    let l = Ledger::open(s, cfg).await.unwrap();
    let key = HmacKey::generate();
    for i in 0..5 {
        l.append(record(i, &key)).await.unwrap();
    }
    // Wait (bounded) for the schedule to catch up; this asserts that it happens, not how fast.
    let mut seen = None;
    for _ in 0..400 {
        if let Some(c) = l.latest_checkpoint().await.unwrap() {
            if c.checkpoint.tree_size == 5 {
                seen = Some(c);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let c = seen.expect("a scheduled checkpoint of size 5");
    Checkpoint::open(&c.note, &signer().verifier()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_no_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(common::sqlite(&dir).await, LedgerConfig::new(ORIGIN)).await.unwrap();
    assert!(matches!(l.checkpoint().await, Err(ledger::Error::NoSigningKey)));
}

#[test]
fn public_types_are_send_sync() {
    fn ok<T: Send + Sync + Clone>() {}
    ok::<Ledger>();
    fn ok2<T: Send + Sync>() {}
    ok2::<ledger::Record>();
    ok2::<ledger::Error>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_an_empty_and_an_unchanged_log() {
    let dir = tempfile::tempdir().unwrap();
    let l = common::ledger(common::sqlite(&dir).await).await;
    let c0 = l.checkpoint().await.unwrap();
    assert_eq!((c0.checkpoint.tree_size, c0.checkpoint.root), (0, merkle::EMPTY_ROOT));
    // Asked again with nothing new: the same checkpoint, not a second one.
    assert_eq!(l.checkpoint().await.unwrap(), c0);
    assert!(l.checkpoint_if_grown().await.unwrap().is_none());
    let key = HmacKey::generate();
    for i in 0..3 {
        l.append(record(i, &key)).await.unwrap();
    }
    let c3 = l.checkpoint().await.unwrap();
    assert_eq!(c3.checkpoint.tree_size, 3);
    assert_eq!(l.checkpoints().await.unwrap().len(), 2);
    let mut out = Vec::new();
    let s = l.export(&mut out).await.unwrap();
    assert_eq!((s.records, s.checkpoints), (3, 2));
    let v = ledger::verify_export(out.as_slice(), &signer().verifier()).unwrap();
    assert_eq!(v.last_checkpoint, Some((3, c3.checkpoint.root)));
    l.verify_store(Some(&signer().verifier())).await.unwrap();
}

/// Someone with write access to the database edits it behind the ledger's back: the store
/// check names the first bad record, or the checkpoint whose root no longer matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_store_names_what_was_edited_in_the_database() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let key = HmacKey::generate();
    {
        let l = common::ledger(common::sqlite(&dir).await).await;
        for i in 0..30 {
            l.append(record(i, &key)).await.unwrap();
        }
        l.checkpoint().await.unwrap();
    }
    let path = dir.path().join("phigate.db");
    let url = format!("sqlite://{}", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // A body edited in place.
    let body: Vec<u8> = sqlx::query_scalar("SELECT body FROM ledger_entries WHERE idx = 12")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let edited = String::from_utf8(body.clone()).unwrap().replacen("treatment", "treatmenz", 1);
    sqlx::query("UPDATE ledger_entries SET body = ? WHERE idx = 12")
        .bind(edited.as_bytes())
        .execute(&mut c)
        .await
        .unwrap();
    let l = common::ledger(store::Store::open(path.to_str().unwrap()).await.unwrap()).await;
    match l.verify_store(None).await {
        Err(ledger::Error::BadRecord { index: 12, .. }) => {}
        other => panic!("expected record 12, got {other:?}"),
    }
    // The body and its leaf hash both rewritten: the checkpoint over it no longer matches.
    let leaf = merkle::leaf_hash(edited.as_bytes());
    sqlx::query("UPDATE ledger_entries SET leaf_hash = ? WHERE idx = 12")
        .bind(&leaf[..])
        .execute(&mut c)
        .await
        .unwrap();
    match l.verify_store(Some(&signer().verifier())).await {
        Err(ledger::Error::BadCheckpoint { tree_size: 30, .. }) => {}
        other => panic!("expected the checkpoint of size 30, got {other:?}"),
    }
    // And a new checkpoint is refused rather than signing over the edit.
    l.append(record(99, &key)).await.unwrap();
    assert!(matches!(l.checkpoint().await, Err(ledger::Error::BadCheckpoint { .. })));
}

/// `append_all`: each group lands at consecutive indexes in its order, in one transaction, even
/// when groups and single appends race and the batch limit splits the queue between them; an
/// empty group and one over the batch limit are refused without writing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_all_keeps_each_group_together() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::sqlite(&dir).await;
    let mut cfg = LedgerConfig::new(ORIGIN);
    cfg.max_batch = 4;
    let l = Ledger::open(s, cfg).await.unwrap();
    let key = HmacKey::from_bytes(&[2u8; 32]).unwrap();
    let mut tasks = Vec::new();
    for g in 0..60u64 {
        let l = l.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            if g % 3 == 0 {
                let i = g * 10;
                vec![(i, l.append(record(i, &key)).await.unwrap())]
            } else {
                let n = 2 + g % 3; // groups of 3 and 4 (4 fills a whole batch)
                let recs: Vec<_> = (0..n).map(|k| record(g * 10 + k, &key)).collect();
                let first = l.append_all(&recs).await.unwrap();
                (0..n).map(|k| (g * 10 + k, first + k)).collect()
            }
        }));
    }
    let mut placed = Vec::new();
    for t in tasks {
        placed.extend(t.await.unwrap());
    }
    let total = l.len().await.unwrap();
    assert_eq!(total as usize, placed.len());
    let stored = l.read(0, total).await.unwrap();
    for (i, index) in placed {
        let (at, r) = &stored[index as usize];
        assert_eq!(*at, index);
        assert_eq!(r.canonical_bytes(), record(i, &key).canonical_bytes(), "record {i}");
    }
    assert!(l.append_all(&[]).await.is_err());
    let five: Vec<_> = (0..5).map(|k| record(9_000 + k, &key)).collect();
    assert!(matches!(l.append_all(&five).await, Err(ledger::Error::InvalidField { .. })));
    assert_eq!(l.len().await.unwrap(), total);
    l.verify_store(None).await.unwrap();
}

#[tokio::test]
async fn a_signing_ledger_refuses_a_log_checkpointed_under_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = HmacKey::generate();
    let l = common::ledger(common::sqlite(&dir).await).await;
    l.append(record(0, &key)).await.unwrap();
    l.checkpoint().await.unwrap();
    l.close().await.unwrap();
    let store = common::sqlite(&dir).await;
    let other = ledger::NoteSigner::from_seed("another.name/ledger", &[42u8; 32]).unwrap();
    let e = Ledger::open(store.clone(), LedgerConfig::new("another.name/ledger").signer(other))
        .await
        .expect_err("a second name for one log was accepted");
    assert!(e.to_string().contains(ORIGIN), "{e}");
    // Reading needs no name; the log's own name still signs.
    Ledger::open(store.clone(), LedgerConfig::new("another.name/ledger")).await.unwrap();
    let l = Ledger::open(store, LedgerConfig::new(ORIGIN).signer(signer())).await.unwrap();
    l.append(record(1, &key)).await.unwrap();
    l.checkpoint().await.unwrap();
}
