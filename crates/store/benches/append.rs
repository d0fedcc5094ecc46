//! Ledger throughput: appended entries/s for batches of 1, 64 and 256 entries with ~300-byte
//! bodies, on SQLite (a temporary file, WAL, synchronous=FULL) and PostgreSQL (a fresh database
//! on `postgres://postgres@127.0.0.1:5432`, dropped afterwards; skipped with a note when
//! unreachable); and `ledger_leaf_hashes` over 1M entries.
//!
//! `cargo bench -p store --bench append` (criterion prints `thrpt` in elements/s = entries/s).
//! `STORE_BENCH_PG=postgres://…/admin_db` picks another server.
//! `STORE_BENCH_SKIP_1M=1` skips the 1M-entry leaf-hash groups (filling them takes ~1 min).
//!
//! Measured 2026-11-23 on the shared 2-core build VM (load average ~4 from other builds), median
//! entries/s: SQLite 2.7k (batch 1), 25k (64), 27k (256); PostgreSQL 15 1.6k, 38k, 58k;
//! `ledger_leaf_hashes(0, 1_000_000)` 1.15 s on either backend.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sqlx::Connection;
use store::{NewLedgerEntry, Store};
use tokio::runtime::Runtime;

const BATCHES: [usize; 3] = [1, 64, 256];
const LEAVES: u64 = 1_000_000;

fn entry(i: u64) -> NewLedgerEntry {
    let mut body = format!("{{\"seq\":{i},\"kind\":\"chat\",\"pad\":\"").into_bytes();
    body.resize(300, b'x');
    let mut leaf_hash = [0u8; 32];
    leaf_hash[..8].copy_from_slice(&i.to_be_bytes());
    NewLedgerEntry {
        leaf_hash,
        body,
        ts_ms: 1_700_000_000_000 + i as i64,
        actor: format!("svc-{}", i % 17),
        action: "chat".into(),
        use_case: format!("uc-{}", i % 5),
        decision: ["allow", "redact", "block"][(i % 3) as usize].into(),
        categories: vec!["NAME".into(), "DATE".into()],
    }
}

fn pg_admin() -> String {
    std::env::var("STORE_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh PostgreSQL database, or `None` (with a note) when the server is unreachable.
async fn pg_create() -> Option<(String, String)> {
    let admin = pg_admin();
    let mut c =
        match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin))
            .await
        {
            Ok(Ok(c)) => c,
            _ => {
                println!("note: PostgreSQL is unreachable; skipping the PostgreSQL benchmarks");
                return None;
            }
        };
    let name = format!("phigate_store_bench_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.ok()?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some((name.clone(), format!("{base}/{name}")))
}

async fn pg_drop(name: &str) {
    if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}

fn bench_backend(c: &mut Criterion, rt: &Runtime, label: &str, store: &Store) {
    let mut g = c.benchmark_group(format!("append/{label}"));
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for n in BATCHES {
        let batch: Vec<NewLedgerEntry> = (0..n as u64).map(entry).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &batch, |b, batch| {
            b.to_async(rt).iter(|| async { store.ledger_append(batch).await.expect("append") });
        });
    }
    g.finish();
}

fn bench_leaf_hashes(c: &mut Criterion, rt: &Runtime, label: &str, store: &Store) {
    rt.block_on(async {
        let have = store.ledger_len().await.expect("len");
        let mut i = have;
        while i < LEAVES {
            let batch: Vec<_> = (i..(i + 1000).min(LEAVES)).map(entry).collect();
            store.ledger_append(&batch).await.expect("fill");
            i += batch.len() as u64;
        }
    });
    let mut g = c.benchmark_group(format!("leaf_hashes_1m/{label}"));
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(LEAVES));
    g.bench_function("all", |b| {
        b.to_async(rt).iter(|| async {
            let h = store.ledger_leaf_hashes(0, LEAVES).await.expect("hashes");
            assert_eq!(h.len() as u64, LEAVES);
            h
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let sqlite =
        rt.block_on(Store::open(path.to_str().expect("utf-8 path"))).expect("open SQLite store");
    bench_backend(c, &rt, "sqlite", &sqlite);

    if let Some((name, url)) = rt.block_on(pg_create()) {
        match rt.block_on(Store::open(&url)) {
            Ok(pg) => {
                bench_backend(c, &rt, "postgres", &pg);
                if std::env::var_os("STORE_BENCH_SKIP_1M").is_none() {
                    bench_leaf_hashes(c, &rt, "postgres", &pg);
                }
                rt.block_on(pg.close());
            }
            Err(e) => println!("note: cannot open the PostgreSQL store ({e}); skipping"),
        }
        rt.block_on(pg_drop(&name));
    }

    if std::env::var_os("STORE_BENCH_SKIP_1M").is_none() {
        bench_leaf_hashes(c, &rt, "sqlite", &sqlite);
    }
    rt.block_on(sqlite.close());
}

/// criterion's macro generates an undocumented function.
#[allow(missing_docs)]
mod group {
    super::criterion_group!(append, super::benches);
}
criterion_main!(group::append);
