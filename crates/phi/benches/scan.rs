//! Scanner throughput over the committed synthetic clinical corpus (`benches/data`, made by
//! `scripts/make_corpus.py`), start-up cost, and one 2 KB note.
//!
//!     cargo bench -p phi --bench scan

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn corpus() -> Vec<String> {
    include_str!("data/clinical_notes.jsonl")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("corpus line is JSON")["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn scan(c: &mut Criterion) {
    let notes = corpus();
    let bytes: usize = notes.iter().map(String::len).sum();
    let scanner = phi::Scanner::new().expect("scanner builds");
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(20);
    g.bench_function("corpus_1.2MB", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            let mut n = 0;
            for t in &notes {
                scanner.scan_into(t, &mut out);
                n += out.len();
            }
            n
        })
    });
    g.finish();

    let note: String = notes.iter().find(|n| n.len() >= 1500).cloned().unwrap_or_default();
    let note = &note[..note.floor_char_boundary(2048.min(note.len()))];
    let mut g = c.benchmark_group("note");
    g.throughput(Throughput::Bytes(note.len() as u64));
    g.bench_function("2KB", |b| b.iter(|| scanner.scan(note).len()));
    g.finish();

    c.bench_function("scanner_new", |b| b.iter(|| phi::Scanner::new().expect("scanner builds")));
}

criterion_group!(benches, scan);
criterion_main!(benches);
