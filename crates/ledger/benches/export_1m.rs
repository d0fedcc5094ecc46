//! Builds an export of N records (default 1,000,000) with a signed checkpoint every 100,000,
//! then verifies it offline from the file, and prints the seconds each took.
//!
//! cargo bench -p ledger --bench export_1m            # 1,000,000 records
//! LEDGER_EXPORT_N=200000 cargo bench -p ledger --bench export_1m

use std::io::{BufReader, BufWriter};
use std::time::Instant;

use ledger::checkpoint::{Checkpoint, NoteSigner};
use ledger::merkle::{leaf_hash, Frontier};
use ledger::record::{Action, Decision, Hmac256, HmacKey, Record};
use ledger::{verify_export, ExportWriter};

fn main() {
    // `cargo bench` passes --bench; a filter argument that is not ours is ignored.
    let n: u64 =
        std::env::var("LEDGER_EXPORT_N").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.export");
    let signer = NoteSigner::from_seed("bench.example/ledger", &[7u8; 32]).expect("signer");
    let key = HmacKey::generate();

    let t = Instant::now();
    let f = std::fs::File::create(&path).expect("create");
    let mut w = ExportWriter::new(BufWriter::with_capacity(1 << 20, f), "bench.example/ledger")
        .expect("writer");
    let mut frontier = Frontier::new();
    for i in 0..n {
        let r =
            Record::builder(&format!("svc-{}", i % 50), Action::ChatCompletion, Decision::Redact)
                .ts_ms(1_700_000_000_000 + i as i64)
                .use_case("triage")
                .model("gpt-4o")
                .provider("private-vllm")
                .category(phi::Category::Name, 1 + (i % 3) as u32)
                .request_hmac(Hmac256::compute(&key, &i.to_le_bytes()))
                .build()
                .expect("valid");
        let body = r.canonical_bytes();
        let leaf = leaf_hash(&body);
        w.record(i, &leaf, &body).expect("record");
        frontier.push(leaf);
        if (i + 1) % 100_000 == 0 || i + 1 == n {
            let c = Checkpoint {
                origin: "bench.example/ledger".into(),
                tree_size: i + 1,
                root: frontier.root(),
                ts_ms: 1_700_000_000_000 + i as i64,
            };
            w.checkpoint(&c.sign(&signer).expect("sign")).expect("checkpoint");
        }
    }
    let (_, s) = w.finish().expect("finish");
    let build = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).expect("size").len();

    let t = Instant::now();
    let f = std::fs::File::open(&path).expect("open");
    let v =
        verify_export(BufReader::with_capacity(1 << 20, f), &signer.verifier()).expect("verifies");
    let verify = t.elapsed().as_secs_f64();
    assert_eq!(v.records, n);
    println!(
        "export of {} records, {} checkpoints, {:.0} MB: built in {build:.2} s, verified in {verify:.2} s ({:.0} records/s)",
        s.records,
        s.checkpoints,
        size as f64 / 1e6,
        n as f64 / verify
    );
}
