//! `phigate audit …` end to end: durability under kill -9, the whole command flow, errors.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};

use crate::run::{command, ok};

fn audit(
    dir: &tempfile::TempDir,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let data = dir.path().join("data");
    let mut all = vec![("PHIGATE_DATA_DIR", data.to_str().expect("a UTF-8 temp path"))];
    all.extend_from_slice(env);
    let args: Vec<&str> = std::iter::once("audit").chain(args.iter().copied()).collect();
    crate::run::run(&args, &all, stdin)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Every index the process acknowledged before it was killed with SIGKILL is in the store,
/// and the reopened log verifies.
#[test]
fn acknowledged_appends_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.db");
    let mut child = command(&[])
        .args(["audit", "append", "--synthetic", "10000000", "--concurrency", "512", "--store"])
        .arg(&db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acked = BTreeSet::new();
    let mut line = String::new();
    while acked.len() < 3000 {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the process ended early");
        acked.insert(line.trim().parse::<u64>().unwrap());
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Whatever it printed before dying was acknowledged too.
    for l in out.lines() {
        let l = l.unwrap();
        if let Ok(i) = l.trim().parse::<u64>() {
            acked.insert(i);
        }
    }
    rt().block_on(async {
        let s = store::Store::open(db.to_str().unwrap()).await.unwrap();
        let l = ledger::Ledger::open(s, ledger::LedgerConfig::new("phigate.local/ledger"))
            .await
            .unwrap();
        let n = l.len().await.unwrap();
        let max = *acked.iter().next_back().unwrap();
        assert!(n > max, "acknowledged index {max} is missing: the log holds {n}");
        // Indexes are dense, so every acknowledged one is there; read a sample back.
        for &i in acked.iter().step_by(97) {
            let r = l.read(i, i + 1).await.unwrap();
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].0, i);
        }
        let rep = l.verify_store(None).await.unwrap();
        assert_eq!(rep.records, n);
    });
}

const CANARIES: &[&str] =
    &["Jane Doe", "123-45-6789", "03/14/1962", "(555) 867-5309", "chest pain since tuesday"];

#[test]
fn keygen_append_checkpoint_prove_export_verify_search() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ledger.key");
    let k = key.to_str().unwrap();
    let pubkey = ok(&audit(&dir, &["keygen", "--out", k], None, &[]));
    let pubkey = pubkey.trim();
    assert!(pubkey.starts_with("phigate.local/ledger+"), "{pubkey}");
    assert_eq!(ok(&audit(&dir, &["pubkey", "--key-file", k], None, &[])).trim(), pubkey);
    // keygen never overwrites a key by accident.
    assert!(!audit(&dir, &["keygen", "--out", k], None, &[]).status.success());

    // Records from stdin; the canaries go through the HMAC path only.
    let hmac = ("PHIGATE_LEDGER_HMAC_KEY", "c2VjcmV0LWhtYWMta2V5LWZvci10ZXN0cw==");
    let mut input = String::new();
    for i in 0..40 {
        let canary = CANARIES[i % CANARIES.len()];
        input.push_str(
            &serde_json::json!({
                "actor": format!("svc-{}", i % 3),
                "action": if i % 2 == 0 { "chat_completion" } else { "embedding" },
                "decision": if i % 5 == 0 { "deny" } else { "redact" },
                "ts": format!("2026-11-{:02}T10:00:00Z", 1 + i % 20),
                "use_case": "triage",
                "categories": {"NAME": 1, "SSN": i % 2},
                "request_body": format!("Patient {canary} reports chest pain"),
                "identifiers": [canary],
            })
            .to_string(),
        );
        input.push('\n');
    }
    let acks = ok(&audit(&dir, &["append"], Some(&input), &[hmac]));
    let idx: BTreeSet<u64> = acks.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(idx, (0..40).collect());

    let note = ok(&audit(&dir, &["checkpoint", "--key-file", k], None, &[]));
    assert!(note.starts_with("phigate.local/ledger\n40\n"), "{note}");
    let held = dir.path().join("held.checkpoint");
    std::fs::write(&held, &note).unwrap();
    let more: String = input.lines().take(10).map(|l| format!("{l}\n")).collect();
    ok(&audit(&dir, &["append"], Some(&more), &[hmac]));

    let p: serde_json::Value =
        serde_json::from_str(&ok(&audit(&dir, &["prove", "--index", "7"], None, &[]))).unwrap();
    assert_eq!(p["tree_size"], 40, "anchored to the latest checkpoint");
    assert!(p["checkpoint"].as_str().unwrap().starts_with("phigate.local/ledger\n40\n"));
    let p: serde_json::Value = serde_json::from_str(&ok(&audit(
        &dir,
        &["prove", "--index", "45", "--size", "50"],
        None,
        &[],
    )))
    .unwrap();
    assert_eq!(p["proof"].as_array().unwrap().len(), 6);
    let c: serde_json::Value = serde_json::from_str(&ok(&audit(
        &dir,
        &["consistency", "--from", "40", "--to", "50"],
        None,
        &[],
    )))
    .unwrap();
    assert!(!c["proof"].as_array().unwrap().is_empty());

    let export = dir.path().join("audit.export");
    let e = export.to_str().unwrap();
    ok(&audit(
        &dir,
        &["export", "--out", e],
        None,
        &[("PHIGATE_LEDGER_KEY", std::fs::read_to_string(&key).unwrap().trim())],
    ));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&export).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the export is made readable by its owner only");
    }
    let v = ok(&audit(
        &dir,
        &["verify", e, "--pubkey", pubkey, "--known", held.to_str().unwrap()],
        None,
        &[],
    ));
    assert!(v.starts_with("OK: 50 records, 2 checkpoints"), "{v}");
    // The store itself verifies too.
    ok(&audit(&dir, &["verify", "--key-file", k], None, &[]));

    // One changed byte in record 12: named, with the file and line, exit non-zero.
    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = text.replacen(
        "\"svc-0\",\"action\":\"chat_completion\"",
        "\"svc-0\",\"action\":\"embedding\"",
        5,
    );
    assert_ne!(tampered, text);
    let first =
        text.lines().position(|l| l.contains("\"svc-0\",\"action\":\"chat_completion\"")).unwrap();
    let bad_index: u64 =
        text.lines().nth(first).unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let bad = dir.path().join("bad.export");
    std::fs::write(&bad, tampered).unwrap();
    let o = audit(&dir, &["verify", bad.to_str().unwrap(), "--pubkey", pubkey], None, &[]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("bad.export:{}: record {bad_index}:", first + 1)), "{err}");
    // The wrong key.
    let other = ok(&audit(
        &dir,
        &["keygen", "--out", dir.path().join("other.key").to_str().unwrap()],
        None,
        &[],
    ));
    let o = audit(&dir, &["verify", e, "--pubkey", other.trim()], None, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("checkpoint #1"));

    // Search.
    let rows = ok(&audit(
        &dir,
        &[
            "search",
            "--actor",
            "svc-1",
            "--decision",
            "deny",
            "--from",
            "2026-11-01T00:00:00Z",
            "--format",
            "jsonl",
        ],
        None,
        &[],
    ));
    let hits: Vec<serde_json::Value> =
        rows.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h["actor"] == "svc-1" && h["decision"] == "deny"));
    let table = ok(&audit(
        &dir,
        &["search", "--category", "SSN", "--format", "table", "--limit", "3"],
        None,
        &[],
    ));
    assert!(table.starts_with("INDEX"), "{table}");
    assert_eq!(table.lines().count(), 4);
    let early = ok(&audit(
        &dir,
        &["search", "--to", "2026-11-02T00:00:00Z", "--format", "jsonl"],
        None,
        &[],
    ));
    assert!(
        early.lines().count() >= 2 && early.lines().all(|l| l.contains("\"ts_ms\":1793527200000")),
        "{early}"
    );

    // No canary anywhere on disk.
    let mut files = vec![export.clone()];
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else { continue };
        for c in CANARIES {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "a canary is in {}",
                f.display()
            );
        }
    }
}

#[test]
fn errors_name_the_line_and_never_echo_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let input = "{\"actor\":\"svc-a\",\"action\":\"chat_completion\",\"decision\":\"allow\"}\n\
                 {\"actor\":\"Jane Doe\",\"action\":\"chat_completion\",\"decision\":\"allow\"}\n";
    let o = audit(&dir, &["append"], Some(input), &[]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("<stdin>:2: invalid actor"), "{err}");
    assert!(!err.contains("Jane"), "{err}");
    let o = audit(&dir, &["append"], Some("{\"actor\":\"svc-a\",\"action\":\"chat_completion\",\"decision\":\"allow\",\"request_body\":\"x\"}\n"), &[]);
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("<stdin>:1: request_body and identifiers need an HMAC key"));
    let o = audit(&dir, &["append"], Some("{\"actor\":\"svc-a\",\"action\":\"chat_completion\",\"decision\":\"allow\",\"latency_ms\":\"123-45-6789\"}\n"), &[]);
    assert_eq!(o.status.code(), Some(65));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("123-45-6789"));
    // Commands that need the key say how to get one.
    let o = audit(&dir, &["checkpoint"], None, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("phigate audit keygen"));
    let o = audit(&dir, &["verify", "/nonexistent/x.export", "--pubkey", "nope"], None, &[]);
    assert!(!o.status.success());
    let o = audit(&dir, &["search", "--from", "yesterday"], None, &[]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--from"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = audit(&dir, &["prove", "--index", "5"], None, &[]);
    assert!(!o.status.success());
}

#[test]
fn every_audit_command_has_examples_in_its_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "append",
        "checkpoint",
        "keygen",
        "pubkey",
        "prove",
        "consistency",
        "export",
        "verify",
        "search",
        "actor",
    ] {
        let out = ok(&audit(&dir, &[cmd, "--help"], None, &[]));
        assert!(
            out.contains("Examples:") && out.contains(&format!("phigate audit {cmd}")),
            "{cmd}: {out}"
        );
    }
    let out = ok(&audit(&dir, &["--help"], None, &[]));
    assert!(out.contains("Examples:"));
}

#[test]
fn actor_prints_the_name_the_ledger_records() {
    let dir = tempfile::tempdir().unwrap();
    let b64 = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let key = ledger::HmacKey::from_base64(b64).unwrap();
    let file = dir.path().join("audit.hmac");
    std::fs::write(&file, b64).unwrap();
    let f = file.to_str().unwrap();
    for id in ["user:1234567", "user:jdoe", "svc:intake@example.org"] {
        let out = ok(&audit(&dir, &["actor", id, "--hmac-key-file", f], None, &[]));
        assert_eq!(out.trim(), ledger::actor_name(&key, id), "{id}");
    }
    let missing = audit(&dir, &["actor", "user:1234567"], None, &[]);
    assert!(!missing.status.success());
}

/// `audit append` keeps the input's order: the ledger holds the records in line order, and the
/// indexes are printed in that order too (one line per record, its index).
#[test]
fn append_keeps_the_order_of_the_input_lines() {
    let dir = tempfile::tempdir().unwrap();
    let n = 500u64;
    let input: String = (0..n)
        .map(|i| {
            let line = serde_json::json!({
                "actor": format!("svc-{}", i % 7),
                "action": "chat_completion",
                "decision": "allow",
                "latency_ms": i,
            });
            format!("{line}\n")
        })
        .collect();
    let acks = ok(&audit(&dir, &["append", "--concurrency", "256"], Some(&input), &[]));
    let printed: Vec<u64> = acks.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(printed, (0..n).collect::<Vec<_>>(), "indexes not printed in input order");
    let rows = ok(&audit(&dir, &["search", "--format", "jsonl", "--limit", "1000"], None, &[]));
    let stored: Vec<(u64, u64)> = rows
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["index"].as_u64().unwrap(), v["latency_ms"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(stored.len() as u64, n);
    for (index, line) in stored {
        assert_eq!(index, line, "record {index} holds input line {line}");
    }
}

/// `audit export` refuses to write over the store it exports (the SQLite file or one beside
/// it that SQLite owns): the store is untouched.
#[test]
fn export_never_writes_over_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ledger.key");
    let k = key.to_str().unwrap();
    ok(&audit(&dir, &["keygen", "--out", k], None, &[]));
    ok(&audit(&dir, &["append", "--synthetic", "20"], None, &[]));
    let db = dir.path().join("data").join("phigate.db");
    for out in [db.clone(), dir.path().join("data").join("phigate.db-wal")] {
        let o =
            audit(&dir, &["export", "--key-file", k, "--out", out.to_str().unwrap()], None, &[]);
        let err = crate::run::fails(&o);
        assert!(err.contains("is the store"), "{err}");
    }
    let rows = ok(&audit(&dir, &["search", "--format", "jsonl"], None, &[]));
    assert_eq!(rows.lines().count(), 20);
}
