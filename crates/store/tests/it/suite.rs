//! Every API method, written once, run on both backends.

use store::{
    Backend, CheckpointPut, DataKeyRow, Error, LedgerQuery, NewScope, Store, StoredCheckpoint,
    VaultRow,
};

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

both_backends!(
    ledger_read_rows_holds_the_search_copies,
    ledger_search_filters,
    ledger_concurrent_tasks,
    checkpoints_put_latest_list,
    data_keys_lifecycle,
    data_key_shred_deletes_rows,
    vault_put_get_find,
    new_scopes_store_key_and_rows_at_once,
    errors_hold_no_values,
    ledger_append_large_batch,
    shred_racing_vault_puts,
);

/// Each entry with the copies of its fields as stored: categories sorted, without duplicates.
async fn ledger_read_rows_holds_the_search_copies(s: Store) {
    let entries: Vec<_> = (0..12).map(entry).collect();
    s.ledger_append(&entries).await.unwrap();
    assert!(s.ledger_read_rows(5, 5).await.unwrap().is_empty());
    let rows = s.ledger_read_rows(2, 100).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.index).collect::<Vec<_>>(), (2..12).collect::<Vec<_>>());
    for r in rows {
        let mut want = entry(r.index);
        want.categories.sort();
        want.categories.dedup();
        assert_eq!(r.entry, want, "entry {}", r.index);
    }
}

fn q() -> LedgerQuery {
    LedgerQuery { limit: 1000, ..Default::default() }
}

fn idx(v: &[store::LedgerEntry]) -> Vec<u64> {
    v.iter().map(|e| e.index).collect()
}

async fn ledger_search_filters(s: Store) {
    let n = 40u64;
    let entries: Vec<_> = (0..n).map(entry).collect();
    s.ledger_append(&entries[..17]).await.unwrap();
    s.ledger_append(&entries[17..]).await.unwrap();
    let want = |f: &dyn Fn(&store::NewLedgerEntry) -> bool| -> Vec<u64> {
        (0..n).filter(|i| f(&entry(*i))).collect()
    };

    assert_eq!(idx(&s.ledger_search(&q()).await.unwrap()), want(&|_| true));
    let t0 = entry(5).ts_ms;
    let t1 = entry(12).ts_ms;
    let r =
        s.ledger_search(&LedgerQuery { from_ms: Some(t0), to_ms: Some(t1), ..q() }).await.unwrap();
    assert_eq!(idx(&r), (5..12).collect::<Vec<_>>(), "from inclusive, to exclusive");
    let r = s.ledger_search(&LedgerQuery { actor: Some("user1".into()), ..q() }).await.unwrap();
    assert_eq!(idx(&r), want(&|e| e.actor == "user1"));
    let r = s.ledger_search(&LedgerQuery { use_case: Some("uc2".into()), ..q() }).await.unwrap();
    assert_eq!(idx(&r), want(&|e| e.use_case == "uc2"));
    let r = s.ledger_search(&LedgerQuery { decision: Some("block".into()), ..q() }).await.unwrap();
    assert_eq!(idx(&r), want(&|e| e.decision == "block"));
    let r =
        s.ledger_search(&LedgerQuery { action: Some("embeddings".into()), ..q() }).await.unwrap();
    assert_eq!(idx(&r), want(&|e| e.action == "embeddings"));
    let r = s.ledger_search(&LedgerQuery { category: Some("NAME".into()), ..q() }).await.unwrap();
    assert_eq!(idx(&r), want(&|e| e.categories.iter().any(|c| c == "NAME")));
    let r = s.ledger_search(&LedgerQuery { category: Some("MRN".into()), ..q() }).await.unwrap();
    assert_eq!(idx(&r), want(&|e| e.categories.iter().any(|c| c == "MRN")));
    let r = s.ledger_search(&LedgerQuery { category: Some("SSN".into()), ..q() }).await.unwrap();
    assert!(r.is_empty());
    // Filters combine.
    let r = s
        .ledger_search(&LedgerQuery {
            actor: Some("user2".into()),
            category: Some("NAME".into()),
            from_ms: Some(entry(10).ts_ms),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(
        idx(&r),
        want(&|e| e.actor == "user2"
            && e.categories.iter().any(|c| c == "NAME")
            && e.ts_ms >= entry(10).ts_ms)
    );
    assert!(!r.is_empty());
    // Paging with after_index + limit walks every match exactly once, in order.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .ledger_search(&LedgerQuery {
                decision: Some("allow".into()),
                after_index: after,
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.index);
        pages.extend(idx(&page));
    }
    assert_eq!(pages, want(&|e| e.decision == "allow"));
    // Entries come back whole.
    let r = s.ledger_search(&LedgerQuery { after_index: Some(38), ..q() }).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].body, entry(39).body);
    assert_eq!(r[0].leaf_hash, entry(39).leaf_hash);
    assert_eq!(r[0].ts_ms, entry(39).ts_ms);
    assert!(s.ledger_search(&LedgerQuery::default()).await.unwrap().is_empty(), "limit 0");
}

/// Many tasks appending through one store: gapless, each task's entries in its own order.
async fn ledger_concurrent_tasks(s: Store) {
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..10u64 {
                let batch: Vec<_> = (0..(b % 4 + 1))
                    .map(|k| {
                        let mut e = entry(t * 1000 + b * 10 + k);
                        e.actor = format!("task{t}");
                        e
                    })
                    .collect();
                s.ledger_append(&batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = s.ledger_len().await.unwrap();
    assert_eq!(n, 8 * (1 + 2 + 3 + 4 + 1 + 2 + 3 + 4 + 1 + 2));
    let all = s.ledger_read(0, n).await.unwrap();
    assert_eq!(idx(&all), (0..n).collect::<Vec<_>>());
    for t in 0..8u64 {
        let mine: Vec<_> = all
            .iter()
            .filter(|e| u64::from_be_bytes(e.leaf_hash[..8].try_into().unwrap()) / 1000 == t)
            .map(|e| u64::from_be_bytes(e.leaf_hash[..8].try_into().unwrap()))
            .collect();
        let mut sorted = mine.clone();
        sorted.sort_unstable();
        assert_eq!(mine, sorted, "task {t}'s entries keep their order");
        assert_eq!(mine.len(), 1 + 2 + 3 + 4 + 1 + 2 + 3 + 4 + 1 + 2);
    }
}

fn cp(size: u64, ts: i64) -> StoredCheckpoint {
    StoredCheckpoint {
        tree_size: size,
        root_hash: [size as u8; 32],
        ts_ms: ts,
        note: format!("phigate.example/log\n{size}\nroot\n\n— sig{size}\n"),
    }
}

async fn checkpoints_put_latest_list(s: Store) {
    assert_eq!(s.checkpoint_latest().await.unwrap(), None);
    assert!(s.checkpoints().await.unwrap().is_empty());
    assert_eq!(s.checkpoint_put(&cp(10, 100)).await.unwrap(), CheckpointPut::Stored);
    assert_eq!(s.checkpoint_put(&cp(20, 200)).await.unwrap(), CheckpointPut::Stored);
    assert_eq!(s.checkpoint_put(&cp(30, 300)).await.unwrap(), CheckpointPut::Stored);
    // The same checkpoint again is a no-op; a different one for the same size is a conflict.
    assert_eq!(s.checkpoint_put(&cp(20, 200)).await.unwrap(), CheckpointPut::Exists);
    let err = s.checkpoint_put(&cp(20, 999)).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(s.checkpoint_latest().await.unwrap(), Some(cp(30, 300)));
    assert_eq!(s.checkpoints().await.unwrap(), vec![cp(10, 100), cp(20, 200), cp(30, 300)]);
}

pub fn key(id: &str, scope: &str, created: i64, expires: Option<i64>) -> DataKeyRow {
    DataKeyRow {
        key_id: id.into(),
        scope: scope.into(),
        kek_id: "kek-1".into(),
        wrapped: format!("wrapped-{id}-{scope}").into_bytes(),
        created_ms: created,
        expires_at_ms: expires,
        shredded_ms: None,
    }
}

pub fn vrow(scope: &str, token: &str, key_id: &str, fp: &[u8], created: i64) -> VaultRow {
    VaultRow {
        scope: scope.into(),
        token: token.into(),
        key_id: key_id.into(),
        fingerprint: fp.to_vec(),
        nonce: vec![7; 12],
        ciphertext: format!("ct:{token}").into_bytes(),
        created_ms: created,
    }
}

async fn data_keys_lifecycle(s: Store) {
    assert_eq!(s.data_key_active("a").await.unwrap(), None);
    assert_eq!(s.data_key_latest("a").await.unwrap(), None, "never had a key");
    assert_eq!(s.data_key_get("k1").await.unwrap(), None);
    s.data_key_put(&key("k1", "a", 100, Some(1_000))).await.unwrap();
    s.data_key_put(&key("k2", "a", 200, Some(5_000))).await.unwrap();
    s.data_key_put(&key("k0", "b", 150, None)).await.unwrap();
    let dup = s.data_key_put(&key("k1", "z", 1, None)).await.unwrap_err();
    assert!(matches!(dup, Error::Conflict(_)), "{dup:?}");

    assert_eq!(s.data_key_get("k1").await.unwrap(), Some(key("k1", "a", 100, Some(1_000))));
    assert_eq!(s.data_key_active("a").await.unwrap().unwrap().key_id, "k2", "newest");
    assert_eq!(s.data_key_active("b").await.unwrap().unwrap().key_id, "k0");
    assert_eq!(s.data_key_latest("a").await.unwrap().unwrap().key_id, "k2", "the active key");
    let live: Vec<_> = s.data_keys_live().await.unwrap().into_iter().map(|k| k.key_id).collect();
    assert_eq!(live, ["k0", "k1", "k2"]);

    let ids = |v: Vec<DataKeyRow>| v.into_iter().map(|k| k.key_id).collect::<Vec<_>>();
    assert!(s.data_keys_expired(999).await.unwrap().is_empty());
    assert_eq!(ids(s.data_keys_expired(1_000).await.unwrap()), ["k1"], "<= now");
    assert_eq!(ids(s.data_keys_expired(10_000).await.unwrap()), ["k1", "k2"]);

    // Rewrap is a compare-and-set on the old KEK id.
    assert!(!s.data_key_rewrap("k1", "kek-other", "kek-2", b"new").await.unwrap());
    assert!(!s.data_key_rewrap("nope", "kek-1", "kek-2", b"new").await.unwrap());
    assert!(s.data_key_rewrap("k1", "kek-1", "kek-2", b"rewrapped").await.unwrap());
    let k1 = s.data_key_get("k1").await.unwrap().unwrap();
    assert_eq!((k1.kek_id.as_str(), k1.wrapped.as_slice()), ("kek-2", &b"rewrapped"[..]));
    assert!(!s.data_key_rewrap("k1", "kek-1", "kek-3", b"again").await.unwrap());

    // Shred: idempotent, the key leaves active/live/expired, its bytes are gone.
    assert!(s.data_key_shred("k2", 7_000).await.unwrap());
    assert!(!s.data_key_shred("k2", 8_000).await.unwrap());
    assert!(!s.data_key_shred("unknown", 8_000).await.unwrap());
    let k2 = s.data_key_get("k2").await.unwrap().unwrap();
    assert!(k2.wrapped.is_empty());
    assert_eq!(k2.shredded_ms, Some(7_000), "the first shred's time stays");
    assert_eq!(s.data_key_active("a").await.unwrap().unwrap().key_id, "k1");
    assert_eq!(ids(s.data_keys_expired(10_000).await.unwrap()), ["k1"]);
    assert_eq!(ids(s.data_keys_live().await.unwrap()), ["k0", "k1"]);
    assert!(!s.data_key_rewrap("k2", "kek-1", "kek-2", b"back").await.unwrap(), "shredded");
    assert!(s.data_key_get("k2").await.unwrap().unwrap().wrapped.is_empty());
    assert_eq!(s.data_key_latest("a").await.unwrap().unwrap().key_id, "k1", "live before shredded");
    assert!(s.data_key_shred("k1", 9_000).await.unwrap());
    assert_eq!(s.data_key_active("a").await.unwrap(), None);
    let gone = s.data_key_latest("a").await.unwrap().expect("a shredded key");
    assert!(gone.shredded_ms.is_some(), "every key shredded: one of them, shredded");

    // Several at once: existing ids and repeats within the call are not stored (and say so).
    let many = [key("n1", "c", 300, None), key("k1", "z", 1, None), key("n1", "d", 1, None)];
    assert_eq!(s.data_keys_put_new(&many).await.unwrap(), [true, false, false]);
    assert_eq!(s.data_key_get("n1").await.unwrap(), Some(key("n1", "c", 300, None)));
    assert_eq!(s.data_key_get("k1").await.unwrap().unwrap().scope, "a", "the existing key stays");
    assert!(s.data_keys_put_new(&[]).await.unwrap().is_empty());
    let bulk: Vec<_> = (0..700).map(|i| key(&format!("bulk{i}"), "bulk", i, None)).collect();
    assert!(s.data_keys_put_new(&bulk).await.unwrap().iter().all(|b| *b));
    assert!(s.data_keys_put_new(&bulk).await.unwrap().iter().all(|b| !*b));
}

async fn data_key_shred_deletes_rows(s: Store) {
    s.data_key_put(&key("old", "conv", 1, None)).await.unwrap();
    s.data_key_put(&key("new", "conv", 2, None)).await.unwrap();
    s.data_key_put(&key("other", "conv2", 1, None)).await.unwrap();
    s.vault_put(&[
        vrow("conv", "[NAME_1]", "old", b"fp1", 1),
        vrow("conv", "[NAME_2]", "old", b"fp2", 1),
        vrow("conv", "[DATE_1]", "new", b"fp3", 2),
        vrow("conv2", "[NAME_1]", "other", b"fp1", 1),
    ])
    .await
    .unwrap();
    assert!(s.data_key_shred("old", 10).await.unwrap());
    let toks = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let left = s.vault_get("conv", &toks(&["[NAME_1]", "[NAME_2]", "[DATE_1]"])).await.unwrap();
    assert_eq!(left.iter().map(|r| r.token.as_str()).collect::<Vec<_>>(), ["[DATE_1]"]);
    assert_eq!(s.vault_find("conv", b"fp1").await.unwrap(), None);
    assert!(s.vault_find("conv2", b"fp1").await.unwrap().is_some(), "other scopes untouched");
    // Idempotent: a second shred changes nothing and reports the key was not live.
    assert!(!s.data_key_shred("old", 11).await.unwrap());
    assert_eq!(s.vault_get("conv", &toks(&["[DATE_1]"])).await.unwrap().len(), 1);
}

async fn new_scopes_store_key_and_rows_at_once(s: Store) {
    let scope = |id: &str, name: &str, tokens: &[&str]| NewScope {
        key: key(id, name, 5, None),
        rows: tokens.iter().map(|t| vrow(name, t, id, t.as_bytes(), 5)).collect(),
    };
    assert!(s.vault_put_new_scopes(&[]).await.unwrap().is_empty());
    s.data_key_put(&key("old-1", "old", 1, None)).await.unwrap();
    let batch = [
        scope("c1-1", "c1", &["[NAME_1]", "[DATE_1]"]),
        // Its key exists: nothing of it is stored.
        scope("old-1", "old", &["[NAME_1]"]),
        // A second maker of c1 in the same call loses to the first.
        scope("c1-1", "c1", &["[NAME_9]"]),
        scope("c2-1", "c2", &[]),
    ];
    assert_eq!(s.vault_put_new_scopes(&batch).await.unwrap(), [true, false, false, true]);
    assert_eq!(s.data_key_latest("c1").await.unwrap(), Some(key("c1-1", "c1", 5, None)));
    assert_eq!(s.data_key_active("c2").await.unwrap().unwrap().key_id, "c2-1");
    let toks = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let got = s.vault_get("c1", &toks(&["[NAME_1]", "[DATE_1]", "[NAME_9]"])).await.unwrap();
    assert_eq!(got, [batch[0].rows[1].clone(), batch[0].rows[0].clone()]);
    assert!(s.vault_get("old", &toks(&["[NAME_1]"])).await.unwrap().is_empty());

    // Rows that do not name their scope's key, or repeat a token, are refused: nothing kept.
    let mut foreign = scope("c3-1", "c3", &["[NAME_1]"]);
    foreign.rows[0].key_id = "old-1".into();
    let repeated = scope("c4-1", "c4", &["[NAME_1]", "[NAME_1]"]);
    for bad in [foreign, repeated] {
        let e = s.vault_put_new_scopes(&[scope("c5-1", "c5", &["[ID_1]"]), bad]).await;
        assert!(matches!(e, Err(Error::Conflict(_))), "{e:?}");
    }
    assert_eq!(s.data_key_latest("c5").await.unwrap(), None, "nothing of a refused call");
    // Many scopes, past one statement's rows.
    let bulk: Vec<NewScope> =
        (0..600).map(|i| scope(&format!("b{i}-1"), &format!("b{i}"), &["[NAME_1]"])).collect();
    assert!(s.vault_put_new_scopes(&bulk).await.unwrap().iter().all(|b| *b));
    assert_eq!(s.vault_get("b599", &toks(&["[NAME_1]"])).await.unwrap().len(), 1);
}

async fn vault_put_get_find(s: Store) {
    s.data_key_put(&key("k", "s1", 1, None)).await.unwrap();
    s.data_key_put(&key("k2", "s2", 1, None)).await.unwrap();
    s.vault_put(&[]).await.unwrap();
    let a = vrow("s1", "[NAME_1]", "k", b"fp-a", 10);
    let b = vrow("s1", "[NAME_2]", "k", b"fp-b", 11);
    s.vault_put(&[a.clone(), b.clone()]).await.unwrap();
    // Insert or keep: a second row for an existing (scope, token) is ignored.
    let mut a2 = a.clone();
    a2.ciphertext = b"other".to_vec();
    a2.fingerprint = b"fp-other".to_vec();
    let c = vrow("s1", "[MRN_1]", "k", b"fp-c", 12);
    s.vault_put(&[a2, c.clone()]).await.unwrap();

    let tokens: Vec<String> =
        ["[NAME_2]", "[NAME_1]", "[MISSING]", "[MRN_1]"].iter().map(|t| t.to_string()).collect();
    let got = s.vault_get("s1", &tokens).await.unwrap();
    assert_eq!(got, vec![c.clone(), a.clone(), b.clone()], "found rows, token order");
    assert!(s.vault_get("s2", &tokens).await.unwrap().is_empty(), "scoped");
    assert!(s.vault_get("s1", &[]).await.unwrap().is_empty());

    assert_eq!(s.vault_find("s1", b"fp-a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.vault_find("s1", b"fp-other").await.unwrap(), None);
    assert_eq!(s.vault_find("s2", b"fp-a").await.unwrap(), None);
    // The same value in another scope gets its own row.
    let other = vrow("s2", "[NAME_1]", "k2", b"fp-a", 13);
    s.vault_put(std::slice::from_ref(&other)).await.unwrap();
    assert_eq!(s.vault_find("s2", b"fp-a").await.unwrap(), Some(other));
    assert_eq!(s.vault_find("s1", b"fp-a").await.unwrap(), Some(a.clone()));
    // Several at once: one answer per fingerprint, in order, the oldest of two rows.
    let a_later = vrow("s1", "[NAME_7]", "k", b"fp-a", 20);
    s.vault_put(std::slice::from_ref(&a_later)).await.unwrap();
    let fps: Vec<Vec<u8>> =
        [&b"fp-c"[..], b"fp-none", b"fp-a", b"fp-b"].iter().map(|f| f.to_vec()).collect();
    assert_eq!(
        s.vault_find_many("s1", &fps).await.unwrap(),
        vec![Some(c.clone()), None, Some(a.clone()), Some(b.clone())]
    );
    assert!(s.vault_find_many("s1", &[]).await.unwrap().is_empty());

    // Many rows in one call (more than one multi-row statement).
    let many: Vec<_> = (0..1200)
        .map(|i| vrow("bulk", &format!("[ID_{i}]"), "k", format!("fp{i}").as_bytes(), i))
        .collect();
    s.vault_put(&many).await.unwrap();
    let toks: Vec<String> = many.iter().map(|r| r.token.clone()).collect();
    assert_eq!(s.vault_get("bulk", &toks).await.unwrap().len(), 1200);
    let fps: Vec<Vec<u8>> = many.iter().map(|r| r.fingerprint.clone()).collect();
    let found = s.vault_find_many("bulk", &fps).await.unwrap();
    assert_eq!(found, many.iter().cloned().map(Some).collect::<Vec<_>>());

    // A row under an unknown data key is refused, and nothing of its call is kept.
    let err = s
        .vault_put(&[vrow("s1", "[X_1]", "k", b"x", 1), vrow("s1", "[X_2]", "nope", b"y", 1)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(s.vault_get("s1", &["[X_1]".to_string()]).await.unwrap().is_empty());
    // So is a row under a shredded key.
    s.data_key_put(&key("gone", "s1", 1, None)).await.unwrap();
    assert!(s.data_key_shred("gone", 5).await.unwrap());
    let err = s.vault_put(&[vrow("s1", "[X_3]", "gone", b"z", 1)]).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(s.vault_get("s1", &["[X_3]".to_string()]).await.unwrap().is_empty());
}

async fn errors_hold_no_values(s: Store) {
    let secret = "KEYID-Jane-Doe-1962-04-05";
    s.data_key_put(&key(secret, "scope-MRN-123456", 1, None)).await.unwrap();
    let err = s.data_key_put(&key(secret, "scope-MRN-123456", 1, None)).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(!text.contains("Jane") && !text.contains("123456"), "{text}");
}

/// One call with more entries than one multi-row statement holds (SQLite 512, PostgreSQL 4096).
async fn ledger_append_large_batch(s: Store) {
    s.ledger_append(&[entry(0)]).await.unwrap();
    let big: Vec<_> = (1..4501).map(entry).collect();
    assert_eq!(s.ledger_append(&big).await.unwrap(), 1);
    assert_eq!(s.ledger_len().await.unwrap(), 4501);
    let hashes = s.ledger_leaf_hashes(0, 4501).await.unwrap();
    assert_eq!(hashes, (0..4501).map(|i| entry(i).leaf_hash).collect::<Vec<_>>());
    let r = s.ledger_read(4499, 4501).await.unwrap();
    assert_eq!(r[1].body, entry(4500).body);
    let cats = s
        .ledger_search(&LedgerQuery { category: Some("DATE".into()), limit: 10_000, ..q() })
        .await
        .unwrap();
    assert_eq!(cats.len(), (0..4501).filter(|i| i % 4 == 2).count());
}

/// Vault puts racing a shred of their key: whatever the interleaving, no row survives under the
/// shredded key (a put either lands before the shred and is deleted by it, or is refused).
async fn shred_racing_vault_puts(s: Store) {
    s.data_key_put(&key("racy", "conv", 1, None)).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for i in 0..20 {
                let tok = format!("[NAME_{t}_{i}]");
                match s.vault_put(&[vrow("conv", &tok, "racy", tok.as_bytes(), i)]).await {
                    Ok(()) => {}
                    Err(Error::Conflict(_)) => refused += 1,
                    Err(e) => panic!("{e:?}"),
                }
            }
            refused
        }));
    }
    tokio::task::yield_now().await;
    assert!(s.data_key_shred("racy", 99).await.unwrap());
    for t in tasks {
        t.await.unwrap();
    }
    let tokens: Vec<String> =
        (0..6).flat_map(|t| (0..20).map(move |i| format!("[NAME_{t}_{i}]"))).collect();
    assert!(s.vault_get("conv", &tokens).await.unwrap().is_empty());
}

both_backends!(api_keys_put_get_list_revoke);

fn api_key(id: &str, created_ms: i64) -> store::ApiKeyRow {
    store::ApiKeyRow {
        id: id.into(),
        secret_sha256: [id.as_bytes()[0]; 32],
        identity: format!("svc:{id}"),
        roles: vec!["clinician".into(), "service".into()],
        use_case: Some("clinical-notes".into()),
        created_ms,
        expires_ms: Some(created_ms + 1000),
        revoked_ms: None,
    }
}

async fn api_keys_put_get_list_revoke(s: Store) {
    assert!(s.api_keys_list().await.unwrap().is_empty());
    assert_eq!(s.api_key_get("a1").await.unwrap(), None);
    let a = api_key("a1", 20);
    let b =
        store::ApiKeyRow { use_case: None, expires_ms: None, roles: vec![], ..api_key("b2", 10) };
    s.api_key_put(&a).await.unwrap();
    s.api_key_put(&b).await.unwrap();
    assert_eq!(s.api_key_get("a1").await.unwrap(), Some(a.clone()));
    assert_eq!(s.api_key_get("b2").await.unwrap(), Some(b.clone()));
    // By creation time.
    assert_eq!(s.api_keys_list().await.unwrap(), vec![b.clone(), a.clone()]);
    // Same id again: refused, the first kept.
    let again = store::ApiKeyRow { identity: "user:other".into(), ..a.clone() };
    assert!(matches!(s.api_key_put(&again).await, Err(Error::Conflict(_))));
    assert_eq!(s.api_key_get("a1").await.unwrap(), Some(a.clone()));
    // Revocation: once; a second keeps the first time; unknown ids are false.
    assert!(s.api_key_revoke("a1", 500).await.unwrap());
    assert!(!s.api_key_revoke("a1", 900).await.unwrap());
    assert!(!s.api_key_revoke("zz", 900).await.unwrap());
    assert_eq!(s.api_key_get("a1").await.unwrap().unwrap().revoked_ms, Some(500));
    assert_eq!(s.api_key_get("b2").await.unwrap().unwrap().revoked_ms, None);
    // Debug never shows the hash.
    let dbg = format!("{a:?}");
    assert!(dbg.contains("svc:a1") && !dbg.contains("secret_sha256"), "{dbg}");
}
