//! What someone with write access to the database (or a race between two issuers) can do to the
//! parts of the store that the leaf hashes do not cover: the search columns copied from each
//! record, and the order of the stored checkpoints. Each test runs on SQLite and, when the
//! machine's server answers, on PostgreSQL.

use ledger::record::HmacKey;
use ledger::{verify_export, Action, Checkpoint, Decision, Error, Ledger, LedgerConfig, Query};

use crate::common::{self, record, signer, ORIGIN};

/// A database to test on, with raw SQL access behind the store's back.
struct Db {
    url: String,
    pg: Option<common::PgDb>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("phigate.db").to_str().unwrap().to_string();
        Db { url, pg: None, _dir: Some(dir) }
    }

    async fn postgres() -> Option<Db> {
        let pg = common::PgDb::create().await?;
        Some(Db { url: pg.url.clone(), pg: Some(pg), _dir: None })
    }

    fn is_pg(&self) -> bool {
        self.pg.is_some()
    }

    async fn store(&self) -> store::Store {
        store::Store::open(&self.url).await.unwrap()
    }

    async fn ledger(&self) -> Ledger {
        common::ledger(self.store().await).await
    }

    /// Runs one statement: `sqlite` on SQLite, `pg` on PostgreSQL.
    async fn exec(&self, sqlite: &str, pg: &str) {
        use sqlx::Connection as _;
        if self.is_pg() {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(pg).execute(&mut c).await.unwrap();
        } else {
            let mut c =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.url)).await.unwrap();
            sqlx::query(sqlite).execute(&mut c).await.unwrap();
        }
    }

    /// The same statement on both.
    async fn sql(&self, sql: &str) {
        self.exec(sql, sql).await;
    }

    /// Stores a checkpoint row as it is, past the store's own checks (as an older build, or a
    /// race the store did not order, left it).
    async fn insert_checkpoint(&self, size: u64, root: &[u8; 32], ts_ms: i64, note: &str) {
        assert!(!note.contains('\''));
        let r = hex::encode(root);
        self.exec(
            &format!(
                "INSERT INTO checkpoints (tree_size, root_hash, ts_ms, note) \
                 VALUES ({size}, X'{r}', {ts_ms}, '{note}')"
            ),
            &format!(
                "INSERT INTO checkpoints (tree_size, root_hash, ts_ms, note) \
                 VALUES ({size}, decode('{r}', 'hex'), {ts_ms}, '{note}')"
            ),
        )
        .await;
    }

    async fn done(self) {
        if let Some(pg) = self.pg {
            pg.drop_db().await;
        }
    }
}

/// Runs `test` on a SQLite database, then on a PostgreSQL one when the server answers.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let db = super::Db::sqlite();
                    super::$name(&db).await;
                    db.done().await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(db) = super::Db::postgres().await else { return };
                    super::$name(&db).await;
                    db.done().await;
                }
            }
        )*
    };
}

on_both!(
    a_changed_search_column_fails_verification,
    search_returns_only_records_whose_body_matches,
    checkpoints_stored_out_of_time_order_are_named_and_left_out_of_exports,
    a_slow_issuer_racing_a_fast_one_leaves_exports_verifiable,
);

fn key() -> HmacKey {
    HmacKey::from_bytes(&[9u8; 32]).unwrap()
}

async fn filled(db: &Db, n: u64) -> Ledger {
    let l = db.ledger().await;
    let key = key();
    let recs: Vec<_> = (0..n).map(|i| record(i, &key)).collect();
    for chunk in recs.chunks(256) {
        l.append_all(chunk).await.unwrap();
    }
    l
}

/// The record at `index` is refused by the store check for `column`, without the values.
fn names_column(r: Result<ledger::StoreReport, Error>, index: u64, column: &str, values: &[&str]) {
    match r {
        Err(Error::BadRecord { index: i, problem, .. }) if i == index => {
            assert!(problem.contains(column), "{problem}");
            for v in values {
                assert!(!problem.contains(v), "the problem quotes a value: {problem}");
            }
        }
        other => panic!("expected record {index}'s {column} to be named, got {other:?}"),
    }
}

/// Someone edits a search column in place (e.g. `UPDATE ledger_entries SET action = 'admin'
/// WHERE action = 'vault_shred'` to hide shreds from `audit search`): the store check names
/// the record and the column, never the values, for every copied column.
async fn a_changed_search_column_fails_verification(db: &Db) {
    let l = filled(db, 40).await;
    l.checkpoint().await.unwrap();
    let v = signer().verifier();
    l.verify_store(Some(&v)).await.unwrap();
    // Record 7: svc-0, embedding, redact, coding, ts 1_700_000_007_000, no category.
    let edits: [(&str, &str, &str, &[&str]); 5] = [
        (
            "action",
            "UPDATE ledger_entries SET action = 'vault_shred' WHERE idx = 7",
            "action = 'embedding'",
            &["vault_shred", "embedding"],
        ),
        (
            "actor",
            "UPDATE ledger_entries SET actor = 'svc-9' WHERE idx = 7",
            "actor = 'svc-0'",
            &["svc-9", "svc-0"],
        ),
        (
            "use_case",
            "UPDATE ledger_entries SET use_case = 'triage' WHERE idx = 7",
            "use_case = 'coding'",
            &["triage", "coding"],
        ),
        (
            "decision",
            "UPDATE ledger_entries SET decision = 'allow' WHERE idx = 7",
            "decision = 'redact'",
            &["allow", "redact"],
        ),
        (
            "ts_ms",
            "UPDATE ledger_entries SET ts_ms = 1600000000000 WHERE idx = 7",
            "ts_ms = 1700000007000",
            &["1600000000000", "1700000007000"],
        ),
    ];
    for (column, edit, back, values) in edits {
        db.sql(edit).await;
        names_column(l.verify_store(Some(&v)).await, 7, column, values);
        db.sql(&format!("UPDATE ledger_entries SET {back} WHERE idx = 7")).await;
        l.verify_store(Some(&v)).await.unwrap();
    }
    // A category added to record 3 (which has none), then one taken from record 4 (NAME).
    db.exec(
        "INSERT INTO ledger_categories (idx, category) VALUES (3, 'SSN')",
        "UPDATE ledger_entries SET categories = ARRAY['SSN'] WHERE idx = 3",
    )
    .await;
    names_column(l.verify_store(Some(&v)).await, 3, "categories", &["SSN"]);
    db.exec(
        "DELETE FROM ledger_categories WHERE idx = 3",
        "UPDATE ledger_entries SET categories = '{}' WHERE idx = 3",
    )
    .await;
    l.verify_store(Some(&v)).await.unwrap();
    db.exec(
        "DELETE FROM ledger_categories WHERE idx = 4",
        "UPDATE ledger_entries SET categories = '{}' WHERE idx = 4",
    )
    .await;
    names_column(l.verify_store(Some(&v)).await, 4, "categories", &["NAME"]);
}

fn indexes(hits: &[(u64, ledger::Record)]) -> Vec<u64> {
    hits.iter().map(|(i, _)| *i).collect()
}

/// A search column edited to match a query does not make the record answer it; a page keeps
/// its length past the records left out.
async fn search_returns_only_records_whose_body_matches(db: &Db) {
    let l = filled(db, 40).await;
    // Record 7 (an embedding) made to look like a shred, 10 like another actor's, 11 like a
    // SSN finding, 13 like another time; records 0 and 3 (chat completions) like embeddings.
    db.sql("UPDATE ledger_entries SET action = 'vault_shred' WHERE idx = 7").await;
    db.sql("UPDATE ledger_entries SET actor = 'svc-9' WHERE idx = 10").await;
    db.exec(
        "INSERT INTO ledger_categories (idx, category) VALUES (11, 'SSN')",
        "UPDATE ledger_entries SET categories = ARRAY['SSN'] WHERE idx = 11",
    )
    .await;
    db.sql("UPDATE ledger_entries SET ts_ms = 1600000000000 WHERE idx = 13").await;
    db.sql("UPDATE ledger_entries SET action = 'embedding' WHERE idx IN (0, 3)").await;
    let hits = |q: Query| {
        let l = l.clone();
        async move { indexes(&l.search(&Query { limit: 10_000, ..q }).await.unwrap()) }
    };
    let none: Vec<u64> = Vec::new();
    assert_eq!(hits(Query { action: Some(Action::VaultShred), ..Query::default() }).await, none);
    assert_eq!(
        hits(Query { actor: Some("svc-9".parse().unwrap()), ..Query::default() }).await,
        none
    );
    assert_eq!(hits(Query { category: Some(phi::Category::Ssn), ..Query::default() }).await, none);
    assert_eq!(hits(Query { to_ms: Some(1_650_000_000_000), ..Query::default() }).await, none);
    // Embeddings are records 1, 4, 7, 10, …; 0 and 3 only claim to be. A page of three is
    // filled past them (7 is an embedding whose column now says otherwise: hidden from this
    // query, which only the store check shows).
    let page = l
        .search(&Query { action: Some(Action::Embedding), limit: 3, ..Query::default() })
        .await
        .unwrap();
    assert_eq!(indexes(&page), vec![1, 4, 10]);
    let all = Query { action: Some(Action::Embedding), limit: 10_000, ..Query::default() };
    let all = l.search(&all).await.unwrap();
    assert!(all.iter().all(|(_, r)| r.action() == Action::Embedding));
    assert_eq!(all.len(), (0..40).filter(|i| i % 3 == 1 && *i != 7).count());
    // Filters that the edits do not touch answer as before.
    let deny = hits(Query { decision: Some(Decision::Deny), ..Query::default() }).await;
    assert_eq!(deny, (0..40).filter(|i| i % 3 == 2).collect::<Vec<_>>());
}

/// A log whose store holds a checkpoint signed later than a larger one (two issuers raced
/// before the store kept them in order): the store check names it, and an export leaves it
/// out and verifies.
async fn checkpoints_stored_out_of_time_order_are_named_and_left_out_of_exports(db: &Db) {
    let l = filled(db, 10).await;
    let c10 = l.checkpoint().await.unwrap();
    let key = key();
    for i in 10..20 {
        l.append(record(i, &key)).await.unwrap();
    }
    let c20 = l.checkpoint().await.unwrap();
    // A checkpoint of 15 records, signed after the one of 20.
    let late = Checkpoint {
        origin: ORIGIN.into(),
        tree_size: 15,
        root: l.root(15).await.unwrap(),
        ts_ms: c20.checkpoint.ts_ms + 5_000,
    };
    db.insert_checkpoint(15, &late.root, late.ts_ms, &late.sign(&signer()).unwrap()).await;
    assert_eq!(l.checkpoints().await.unwrap().len(), 3);
    let v = signer().verifier();
    match l.verify_store(Some(&v)).await {
        Err(Error::BadCheckpoint { number: 2, tree_size: 15, problem, .. }) => {
            assert!(problem.contains("20"), "{problem}");
        }
        other => panic!("expected the checkpoint of size 15 to be named, got {other:?}"),
    }
    let mut out = Vec::new();
    let s = l.export(&mut out).await.unwrap();
    assert_eq!((s.records, s.checkpoints), (20, 2));
    let got = verify_export(out.as_slice(), &v).unwrap();
    assert_eq!(got.last_checkpoint, Some((20, c20.checkpoint.root)));
    // The log goes on: the next checkpoint is stored and exports verify.
    for i in 20..25 {
        l.append(record(i, &key)).await.unwrap();
    }
    let c25 = l.checkpoint().await.unwrap();
    assert!(c25.checkpoint.ts_ms >= late.ts_ms, "not signed before any stored checkpoint");
    let mut out = Vec::new();
    assert_eq!(l.export(&mut out).await.unwrap().checkpoints, 3);
    verify_export(out.as_slice(), &v).unwrap();
    assert!(c10.checkpoint.ts_ms <= c20.checkpoint.ts_ms);
    // The time column that the store orders by is the signed one.
    db.sql("UPDATE checkpoints SET ts_ms = ts_ms - 1 WHERE tree_size = 10").await;
    for verifier in [Some(&v), None] {
        match l.verify_store(verifier).await {
            Err(Error::BadCheckpoint { tree_size: 10, problem, .. }) => {
                assert!(problem.contains("time"), "{problem}");
            }
            other => panic!("expected the checkpoint of size 10 to be named, got {other:?}"),
        }
    }
}

/// `phigate audit checkpoint` (a cold process: it hashes every leaf first) racing the server's
/// ticker (which has the log's compact range in memory): the ticker stores a larger checkpoint
/// while the CLI still hashes; the CLI's smaller one, signed after it, is not stored, and the
/// CLI gets the larger one. Exports verify.
async fn a_slow_issuer_racing_a_fast_one_leaves_exports_verifiable(db: &Db) {
    let n = 60_000u64;
    let mut cfg = LedgerConfig::new(ORIGIN).signer(signer());
    cfg.max_batch = 4096;
    let fast = Ledger::open(db.store().await, cfg).await.unwrap();
    let key = key();
    let recs: Vec<_> = (0..n).map(|i| record(i, &key)).collect();
    for chunk in recs.chunks(4096) {
        fast.append_all(chunk).await.unwrap();
    }
    fast.checkpoint().await.unwrap();
    for i in n..n + 5 {
        fast.append(record(i, &key)).await.unwrap();
    }
    let slow = db.ledger().await;
    let started = std::time::Instant::now();
    let slow_cp = tokio::spawn(async move { slow.checkpoint().await });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for i in n + 5..n + 10 {
        fast.append(record(i, &key)).await.unwrap();
    }
    let fast_cp = fast.checkpoint().await.unwrap();
    let fast_done = started.elapsed();
    let slow_cp = slow_cp.await.unwrap().unwrap();
    eprintln!(
        "fast issuer done after {fast_done:?}, slow after {:?} (size {})",
        started.elapsed(),
        slow_cp.checkpoint.tree_size
    );
    assert!(slow_cp.checkpoint.tree_size >= n + 5);
    assert_eq!(fast_cp.checkpoint.tree_size, n + 10);
    let v = signer().verifier();
    let mut out = Vec::new();
    fast.export(&mut out).await.unwrap();
    verify_export(out.as_slice(), &v).unwrap();
    fast.verify_store(Some(&v)).await.unwrap();
}

/// Rewrites one ledger line of a backup file with `edit` and the trailer's digest to match (the
/// digest is a plain SHA-256: anyone who can edit the file can recompute it).
fn edit_backup(path: &std::path::Path, index: u64, edit: impl Fn(&mut serde_json::Value)) {
    use sha2::Digest as _;
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut digest = sha2::Sha256::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["t"] == "end" {
            v["sha256"] = hex::encode(digest.clone().finalize()).into();
            out.push_str(&format!("{v}\n"));
            continue;
        }
        let line = if v["t"] == "ledger" && v["index"] == index {
            edit(&mut v);
            v.to_string()
        } else {
            line.to_string()
        };
        digest.update(format!("{line}\n").as_bytes());
        out.push_str(&format!("{line}\n"));
    }
    std::fs::write(path, out).unwrap();
}

on_both!(a_restore_does_not_take_search_columns_from_the_file);

/// A backup file whose search column was edited (its trailer recomputed): what is restored
/// does not answer searches by the edited copy, and the store check of the restored ledger
/// does not pass over it.
async fn a_restore_does_not_take_search_columns_from_the_file(db: &Db) {
    let l = filled(db, 30).await;
    l.checkpoint().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.jsonl");
    l.store().backup(&file).await.unwrap();
    // Record 7 (an embedding) made to look like a shred.
    edit_backup(&file, 7, |v| v["action"] = "vault_shred".into());
    let target = if db.is_pg() { Db::postgres().await.unwrap() } else { Db::sqlite() };
    let s = target.store().await;
    s.restore(&file).await.unwrap();
    let restored = Ledger::open(s, LedgerConfig::new(ORIGIN)).await.unwrap();
    let shreds = restored
        .search(&Query { action: Some(Action::VaultShred), limit: 100, ..Query::default() })
        .await
        .unwrap();
    assert_eq!(indexes(&shreds), Vec::<u64>::new());
    names_column(
        restored.verify_store(Some(&signer().verifier())).await,
        7,
        "action",
        &["vault_shred", "embedding"],
    );
    target.done().await;
    // Restored through the ledger, the columns are the records' again.
    let target = if db.is_pg() { Db::postgres().await.unwrap() } else { Db::sqlite() };
    let s = target.store().await;
    let sum = ledger::restore_backup(&s, &file).await.unwrap();
    assert_eq!(sum.ledger_entries, 30);
    let restored = Ledger::open(s, LedgerConfig::new(ORIGIN)).await.unwrap();
    restored.verify_store(Some(&signer().verifier())).await.unwrap();
    let q = Query { action: Some(Action::Embedding), limit: 100, ..Query::default() };
    let embeddings = indexes(&restored.search(&q).await.unwrap());
    assert_eq!(embeddings, (0..30).filter(|i| i % 3 == 1).collect::<Vec<_>>());
    target.done().await;
    // A body that is not a record (its leaf hash and the trailer made to match): the file is
    // refused, nothing restored, and the error does not quote it.
    edit_backup(&file, 4, |v| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = b"{\"v\":1,\"note\":\"Jane Doe 1962-03-04\"}";
        v["body"] = b64.encode(body).into();
        v["leaf_hash"] = b64.encode(ledger::merkle::leaf_hash(body)).into();
    });
    let target = if db.is_pg() { Db::postgres().await.unwrap() } else { Db::sqlite() };
    let s = target.store().await;
    match ledger::restore_backup(&s, &file).await {
        Err(store::Error::Corrupt(m)) => {
            assert!(m.contains("ledger entry 4") && !m.contains("Jane"), "{m}");
        }
        other => panic!("expected the file to be refused, got {other:?}"),
    }
    assert_eq!(s.ledger_len().await.unwrap(), 0);
    assert!(s.checkpoints().await.unwrap().is_empty());
    target.done().await;
}
