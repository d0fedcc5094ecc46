//! Schema migrations keep what an older store holds.

use std::path::Path;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use store::{LedgerQuery, Store};

/// A SQLite store at schema v2 (the migrations up to 0002, applied as an older build did),
/// holding entries with categories, opened by this build: migration 0003 re-keys
/// `ledger_categories` by entry, and every category is still found, for every entry.
#[tokio::test]
async fn sqlite_v2_store_migrates_and_keeps_its_categories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let all = Migrator::new(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")))
        .await
        .expect("read migrations");
    let mut v2 = Migrator::DEFAULT;
    v2.migrations = all.migrations.iter().filter(|m| m.version <= 2).cloned().collect();
    assert_eq!(v2.migrations.len(), 2);
    let cats: [&[&str]; 4] = [&["DATE", "NAME"], &[], &["MRN", "NAME", "PHONE"], &["NAME"]];
    {
        let opts = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
        v2.run(&pool).await.expect("schema v2");
        for (i, cs) in cats.iter().enumerate() {
            sqlx::query(
                "INSERT INTO ledger_entries (idx, leaf_hash, body, ts_ms, actor, action, use_case, decision) \
                 VALUES (?, ?, ?, ?, 'user1', 'chat', 'uc1', 'allow')",
            )
            .bind(i as i64)
            .bind(vec![i as u8; 32])
            .bind(format!("{{\"seq\":{i}}}").into_bytes())
            .bind(1_700_000_000_000 + i as i64)
            .execute(&pool)
            .await
            .unwrap();
            for c in *cs {
                sqlx::query("INSERT INTO ledger_categories (category, idx) VALUES (?, ?)")
                    .bind(*c)
                    .bind(i as i64)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
        pool.close().await;
    }

    let s = Store::open(&format!("sqlite://{}", path.display())).await.expect("open and migrate");
    let q = |c: &str| LedgerQuery { category: Some(c.into()), limit: 100, ..Default::default() };
    for c in ["NAME", "DATE", "MRN", "PHONE", "SSN"] {
        let got: Vec<u64> = s.ledger_search(&q(c)).await.unwrap().iter().map(|e| e.index).collect();
        let want: Vec<u64> =
            (0..cats.len() as u64).filter(|&i| cats[i as usize].contains(&c)).collect();
        assert_eq!(got, want, "category {c}");
    }
    // New appends land in the re-keyed table and are found too.
    let start = s.ledger_len().await.unwrap();
    assert_eq!(start, 4);
    let named = crate::common::entry(5);
    assert_eq!(named.categories, ["NAME"]);
    assert_eq!(s.ledger_append(&[named]).await.expect("append after migration"), 4);
    let got: Vec<u64> =
        s.ledger_search(&q("NAME")).await.unwrap().iter().map(|e| e.index).collect();
    assert_eq!(got, [0, 2, 3, 4]);
    s.close().await;

    // The table is keyed by entry first.
    let opts = SqliteConnectOptions::new().filename(&path);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
    let key: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pragma_table_info('ledger_categories') WHERE pk > 0 ORDER BY pk",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(key, ["idx", "category"]);
}
