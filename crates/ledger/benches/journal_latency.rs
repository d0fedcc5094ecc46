//! How long a durable append waits in a SQLite ledger with its journal, at a steady rate: the
//! `ledger` stage of a gateway request, alone.
//!
//! Records arrive open-loop at `RATE` a second (default 1,000, as in the gateway benchmark), each
//! from its own task; each one's time from `Ledger::record` to its acknowledgement is kept. The
//! filler copies them into the store and the WAL checkpointer runs behind, as under the gateway.
//! Each round runs on a fresh database and journal. Printed: each round's p50, p90, p99, p99.9
//! and maximum, then the median p99. Compare with `python3 scripts/flush_bench.py DIR` (a write
//! and a flush alone, paced likewise). Nothing here asserts a time.
//!
//! cargo bench -p ledger --bench journal_latency
//!
//! Environment: `RATE`, `SECONDS` (measured per round, default 10, after 1 s of warm-up),
//! `ROUNDS` (default 3), `BENCH_DIR` (where the journals go; default the temp dir, which must be
//! on the disk being measured, not a tmpfs), `STORE_DIR` (where the SQLite databases go; default
//! `BENCH_DIR`: a tmpfs here takes the store's own I/O off the disk the journal flushes to).

#![allow(missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::record;
use ledger::record::HmacKey;
use ledger::{Ledger, LedgerConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Milliseconds at quantile `q` of sorted `lat`.
fn at(lat: &[Duration], q: f64) -> f64 {
    let i = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
    lat[i].as_secs_f64() * 1e3
}

/// One round: a fresh journaled ledger, `rate` records a second; returns the sorted latencies of
/// the measured part.
async fn round(
    base: &std::path::Path,
    store_base: &std::path::Path,
    rate: u64,
    seconds: u64,
) -> Vec<Duration> {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let store_dir = tempfile::tempdir_in(store_base).expect("tempdir");
    let db = store_dir.path().join("bench.db");
    let store = store::Store::open(db.to_str().expect("utf-8")).await.expect("sqlite");
    let cfg = LedgerConfig::new("bench").journal(dir.path().join("bench.db-ledger-journal"));
    let l = Ledger::open(store.clone(), cfg).await.expect("ledger");
    let key = HmacKey::generate();
    let lat = Arc::new(Mutex::new(Vec::with_capacity((rate * seconds) as usize)));
    let warmup = rate;
    let total = warmup + rate * seconds;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let (l, lat, r) = (l.clone(), lat.clone(), record(i, &key));
        tasks.spawn(async move {
            let t = Instant::now();
            l.record(r).await.expect("record");
            if i >= warmup {
                lat.lock().expect("lock").push(t.elapsed());
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    l.close().await.expect("close");
    drop(l);
    store.close().await;
    let mut lat = std::mem::take(&mut *lat.lock().expect("lock"));
    lat.sort();
    lat
}

fn main() {
    // `cargo bench` passes `--bench`; this harness has no options of its own.
    let rate = env("RATE", 1000).clamp(1, 1_000_000);
    let (seconds, rounds) = (env("SECONDS", 10).max(1), env("ROUNDS", 3).max(1));
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let store_base = std::env::var_os("STORE_DIR").map_or_else(|| base.clone(), Into::into);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "journal latency: {rate} records/s, {seconds} s a round, {rounds} rounds, journal in {}, \
         store in {}",
        base.display(),
        store_base.display()
    );
    let mut p99 = Vec::new();
    for _ in 0..rounds {
        let lat = rt.block_on(round(&base, &store_base, rate, seconds));
        println!(
            "  n {:>6}  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
            lat.len(),
            at(&lat, 0.5),
            at(&lat, 0.9),
            at(&lat, 0.99),
            at(&lat, 0.999),
            at(&lat, 1.0)
        );
        p99.push(at(&lat, 0.99));
    }
    p99.sort_by(f64::total_cmp);
    println!("median p99 of {rounds} rounds: {:.3} ms", p99[p99.len() / 2]);
}
