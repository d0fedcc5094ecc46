//! `phigate backup` and `phigate restore` end to end, on real SQLite files.

use std::process::Output;

use crate::run::{fails, ok};

fn phigate(args: &[&str], data_dir: &std::path::Path) -> Output {
    crate::run::at(data_dir, args)
}

#[test]
fn backup_restores_into_an_empty_store_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let key = dir.path().join("ledger.key");
    let key_s = key.to_str().unwrap();
    let pubkey = ok(&phigate(&["audit", "keygen", "--out", key_s], &src));
    ok(&phigate(&["audit", "append", "--synthetic", "300"], &src));
    ok(&phigate(&["audit", "checkpoint", "--key-file", key_s], &src));
    ok(&phigate(&["audit", "append", "--synthetic", "50"], &src));
    ok(&phigate(&["audit", "checkpoint", "--key-file", key_s], &src));
    let api_key = ok(&phigate(
        &[
            "keys",
            "create",
            "--identity",
            "svc:triage-bot",
            "--roles",
            "service",
            "--use-case",
            "triage",
        ],
        &src,
    ));
    assert!(api_key.trim().starts_with("pg_"), "{api_key}");

    let file = dir.path().join("store.backup");
    let f = file.to_str().unwrap();
    let out = ok(&phigate(&["backup", "--out", f], &src));
    assert!(
        out.contains("350 ledger records, 2 checkpoints") && out.contains("1 API keys"),
        "{out}"
    );
    // No overwrite without --force.
    assert!(fails(&phigate(&["backup", "--out", f], &src)).contains("--force"));

    let out = ok(&phigate(&["restore", f, "--pubkey", pubkey.trim()], &dst));
    assert!(
        out.contains("350 ledger records (350 re-hashed, 2 checkpoints verified with signatures)"),
        "{out}"
    );
    assert!(out.contains("1 API keys"), "{out}");
    // The API key came along.
    let listed = ok(&phigate(&["keys", "list"], &dst));
    assert!(listed.contains("svc:triage-bot"), "{listed}");
    // The restored log is the same log: the same root at the same size.
    let root =
        |d: &std::path::Path| ok(&phigate(&["audit", "verify", "--pubkey", pubkey.trim()], d));
    assert_eq!(root(&src), root(&dst));

    // Never into a store that holds data.
    let e = fails(&phigate(&["restore", f], &src));
    assert!(e.contains("is not empty") && e.contains("nothing was written"), "{e}");
}

#[test]
fn a_damaged_backup_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    ok(&phigate(&["audit", "append", "--synthetic", "40"], &src));
    let file = dir.path().join("store.backup");
    ok(&phigate(&["backup", "--out", file.to_str().unwrap()], &src));

    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let bad = dir.path().join("bad.backup");
    std::fs::write(&bad, &bytes).unwrap();
    let dst = dir.path().join("dst");
    let e = fails(&phigate(&["restore", bad.to_str().unwrap()], &dst));
    assert!(e.contains("not restored (nothing was written)"), "{e}");
    // The target is still empty: a good restore into it works.
    ok(&phigate(&["restore", file.to_str().unwrap()], &dst));

    let truncated = dir.path().join("short.backup");
    std::fs::write(&truncated, &std::fs::read(&file).unwrap()[..mid]).unwrap();
    fails(&phigate(&["restore", truncated.to_str().unwrap()], &dir.path().join("dst2")));
}

/// `backup --force` never replaces the store it backs up.
#[test]
fn backup_never_writes_over_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&phigate(&["audit", "append", "--synthetic", "20"], &data));
    let db = data.join("phigate.db");
    let e = fails(&phigate(&["backup", "--force", "--out", db.to_str().unwrap()], &data));
    assert!(e.contains("is the store"), "{e}");
    let rows = ok(&phigate(&["audit", "search", "--format", "jsonl"], &data));
    assert_eq!(rows.lines().count(), 20);
}
