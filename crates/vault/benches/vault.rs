//! Tokenize (get-or-insert) and reveal throughput on a SQLite store in a temporary directory.
//!
//! `cargo bench -p vault --bench vault`. Every reveal appends a durable ledger record
//! (SQLite WAL, synchronous=FULL), so reveal throughput is bounded by the disk's fsync rate.

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledger::{Ledger, LedgerConfig};
use phi::Category;
use vault::{Actor, Keyring, LocalKek, NewValue, RevealReason, Vault, VaultConfig};

struct Fixture {
    rt: tokio::runtime::Runtime,
    vault: Vault,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let vault = rt.block_on(async {
        let store = store::Store::open(&url).await.expect("store");
        let ledger = Ledger::open(store.clone(), LedgerConfig::new("phigate.bench/vault"))
            .await
            .expect("ledger");
        Vault::new(
            store,
            ledger,
            Keyring::new(Arc::new(LocalKek::generate())),
            VaultConfig::default(),
        )
    });
    Fixture { rt, vault, _dir: dir }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let v = f.vault.clone();
    let counter = Arc::new(AtomicU64::new(0));
    // A conversation that already holds 1,000 values.
    f.rt.block_on(async {
        let values: Vec<String> = (0..1000).map(|i| format!("Patient Name {i}")).collect();
        let items: Vec<NewValue<'_>> = values
            .iter()
            .map(|s| NewValue { category: Category::Name, value: s, token: None })
            .collect();
        v.tokenize_many("conv-bench", &items).await.expect("seed");
    });

    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Elements(1));
    g.bench_function("existing_value", |b| {
        let v = v.clone();
        let n = counter.clone();
        b.to_async(&f.rt).iter(|| {
            let v = v.clone();
            let i = n.fetch_add(1, Ordering::Relaxed) % 1000;
            async move {
                v.tokenize("conv-bench", Category::Name, &format!("Patient Name {i}"), None)
                    .await
                    .expect("hit")
            }
        })
    });
    g.bench_function("new_value", |b| {
        let v = v.clone();
        let n = counter.clone();
        b.to_async(&f.rt).iter(|| {
            let v = v.clone();
            let i = n.fetch_add(1, Ordering::Relaxed);
            async move {
                v.tokenize("conv-bench-new", Category::Name, &format!("New Person {i}"), None)
                    .await
                    .expect("new")
            }
        })
    });
    // The gateway's numbered tokens ([NAME_n]) in a scope that already holds 10,000 values
    // (a key's scope without a conversation gathers a retention period's values): the numbers
    // are kept in memory, not read from the scope's every token for each new value.
    f.rt.block_on(async {
        let values: Vec<String> = (0..10_000).map(|i| format!("Held Person {i}")).collect();
        for chunk in values.chunks(1000) {
            let items: Vec<(Category, &str)> =
                chunk.iter().map(|s| (Category::Name, s.as_str())).collect();
            v.tokenize_numbered("conv-bench-large", &items).await.expect("seed large");
        }
    });
    g.bench_function("new_numbered_value_in_a_scope_of_10000", |b| {
        let v = v.clone();
        let n = counter.clone();
        b.to_async(&f.rt).iter(|| {
            let v = v.clone();
            let i = n.fetch_add(1, Ordering::Relaxed);
            async move {
                let value = format!("Numbered Person {i}");
                v.tokenize_numbered("conv-bench-large", &[(Category::Name, value.as_str())])
                    .await
                    .expect("numbered")
            }
        })
    });
    for batch in [4usize, 32] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("new_values_batch", batch), &batch, |b, &batch| {
            let v = v.clone();
            let n = counter.clone();
            b.to_async(&f.rt).iter(|| {
                let v = v.clone();
                let base = n.fetch_add(batch as u64, Ordering::Relaxed);
                async move {
                    let values: Vec<String> =
                        (0..batch as u64).map(|i| format!("Batch Person {}", base + i)).collect();
                    let items: Vec<NewValue<'_>> = values
                        .iter()
                        .map(|s| NewValue { category: Category::Name, value: s, token: None })
                        .collect();
                    v.tokenize_many("conv-bench-batch", &items).await.expect("batch")
                }
            })
        });
    }
    g.finish();

    let tokens: Vec<String> = f.rt.block_on(async {
        let values: Vec<String> = (0..16).map(|i| format!("Patient Name {i}")).collect();
        let items: Vec<NewValue<'_>> = values
            .iter()
            .map(|s| NewValue { category: Category::Name, value: s, token: None })
            .collect();
        v.tokenize_many("conv-bench", &items)
            .await
            .expect("tokens")
            .into_iter()
            .map(|t| t.token)
            .collect()
    });
    let actor = Actor::new("svc:bench").expect("actor");
    let mut g = c.benchmark_group("reveal");
    for n in [1usize, 16] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("tokens_per_call", n), &n, |b, &n| {
            let v = v.clone();
            let want: Vec<String> = tokens[..n].to_vec();
            let actor = actor.clone();
            b.to_async(&f.rt).iter(|| {
                let v = v.clone();
                let want = want.clone();
                let actor = actor.clone();
                async move {
                    let r = v
                        .reveal("conv-bench", &want, &actor, RevealReason::Treatment)
                        .await
                        .expect("reveal");
                    assert_eq!(r.len(), n);
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
