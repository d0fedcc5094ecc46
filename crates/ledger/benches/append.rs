//! Append throughput through `Ledger::append` with many concurrent callers (group commit).
//!
//! Each measured unit is a burst of `BURST` records appended by `BURST` concurrent tasks; the
//! figure is records per second. SQLite always runs; PostgreSQL runs when the machine's server
//! at postgres://postgres@127.0.0.1:5432/test answers (a fresh database, dropped afterwards),
//! and is skipped with a note otherwise.
//!
//! cargo bench -p ledger --bench append

#![allow(missing_docs)] // criterion_group! generates undocumented functions

mod common;

use std::time::{Duration, Instant};

use common::record;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger::record::HmacKey;
use ledger::{Ledger, LedgerConfig};

const BURST: u64 = 2000;

fn run(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, l: &Ledger) {
    let key = HmacKey::generate();
    let mut g = c.benchmark_group("ledger_append");
    g.throughput(Throughput::Elements(BURST));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut tasks = Vec::with_capacity(BURST as usize);
                    for i in 0..BURST {
                        let l = l.clone();
                        let r = record(i, &key);
                        tasks.push(tokio::spawn(async move { l.append(r).await }));
                    }
                    for t in tasks {
                        t.await.expect("task").expect("append");
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let l = rt.block_on(async {
        let s = store::Store::open(path.to_str().expect("utf-8")).await.expect("sqlite");
        Ledger::open(s, LedgerConfig::new("bench")).await.expect("ledger")
    });
    run(c, "sqlite", &rt, &l);
    drop(l);

    let admin = "postgres://postgres@127.0.0.1:5432/test";
    let name = format!("ledger_bench_{}", hex::encode(rand::random::<[u8; 6]>()));
    let created = rt.block_on(async {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(admin).await.ok()?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.ok()?;
        Some(())
    });
    if created.is_none() {
        println!("note: PostgreSQL at {admin} is unreachable; skipping the PostgreSQL benchmark");
        return;
    }
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let l = rt.block_on(async {
        let s = store::Store::open(&url).await.expect("postgres");
        Ledger::open(s, LedgerConfig::new("bench")).await.expect("ledger")
    });
    run(c, "postgres", &rt, &l);
    drop(l);
    rt.block_on(async {
        use sqlx::Connection as _;
        if let Ok(mut c) = sqlx::PgConnection::connect(admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await;
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
