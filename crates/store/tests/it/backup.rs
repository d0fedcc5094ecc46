//! Backup and restore across backends; damaged files are refused before anything is written.

use std::path::Path;

use store::{ApiKeyRow, DataKeyRow, Error, LedgerQuery, Store, StoredCheckpoint, VaultRow};

use crate::common::{entry, on_postgres, on_sqlite};
use crate::suite::{key, vrow};

/// The API keys `fill` stores: a live one (roles in a non-sorted stored order, a non-ASCII
/// identity), one revoked after it was stored, one that expires. Hashes use every byte value
/// range.
fn api_keys() -> Vec<ApiKeyRow> {
    let hash = |seed: u8| -> [u8; 32] {
        std::array::from_fn(|i| seed.wrapping_add((i as u8).wrapping_mul(37)))
    };
    vec![
        ApiKeyRow {
            id: "k_live".into(),
            secret_sha256: hash(0xF0),
            identity: "user:zoë@example.org".into(),
            roles: vec!["reader".into(), "admin".into()],
            use_case: Some("clinical-notes".into()),
            created_ms: 1_700_000_000_000,
            expires_ms: None,
            revoked_ms: None,
        },
        ApiKeyRow {
            id: "k_revoked".into(),
            secret_sha256: hash(0x01),
            identity: "svc:batch".into(),
            roles: vec![],
            use_case: None,
            created_ms: 1_700_000_000_500,
            expires_ms: None,
            revoked_ms: None,
        },
        ApiKeyRow {
            id: "K_expiring".into(),
            secret_sha256: hash(0x80),
            identity: "svc:intake".into(),
            roles: vec!["service".into()],
            use_case: Some("intake".into()),
            created_ms: 1_700_000_000_000,
            expires_ms: Some(1_800_000_000_000),
            revoked_ms: None,
        },
    ]
}

/// Fills a store with some of everything (a shredded key and a revoked API key included).
async fn fill(s: &Store) {
    for k in api_keys() {
        s.api_key_put(&k).await.unwrap();
    }
    assert!(s.api_key_revoke("k_revoked", 1_700_000_009_000).await.unwrap());
    // More records than one restore batch (512), so restores load in several statements.
    for b in 0..5u64 {
        let batch: Vec<_> = (b * 200..(b + 1) * 200).map(entry).collect();
        s.ledger_append(&batch).await.unwrap();
    }
    for size in [60u64, 180, 300] {
        s.checkpoint_put(&StoredCheckpoint {
            tree_size: size,
            root_hash: [size as u8; 32],
            ts_ms: size as i64,
            note: format!("log\n{size}\n"),
        })
        .await
        .unwrap();
    }
    for i in 0..6 {
        s.data_key_put(&key(&format!("key{i}"), &format!("scope{}", i % 2), i, Some(100 + i)))
            .await
            .unwrap();
        let rows: Vec<_> = (0..20)
            .map(|t| {
                vrow(
                    &format!("scope{}", i % 2),
                    &format!("[NAME_{i}_{t}]"),
                    &format!("key{i}"),
                    format!("fp{i}-{t}").as_bytes(),
                    t,
                )
            })
            .collect();
        s.vault_put(&rows).await.unwrap();
    }
    assert!(s.data_key_shred("key3", 500).await.unwrap());
}

#[derive(Debug, PartialEq)]
struct Contents {
    ledger: Vec<store::LedgerEntry>,
    by_category: Vec<Vec<u64>>,
    by_actor: Vec<u64>,
    checkpoints: Vec<StoredCheckpoint>,
    keys: Vec<Option<DataKeyRow>>,
    vault: Vec<VaultRow>,
    api_keys: Vec<ApiKeyRow>,
}

/// Everything in a store, through the API.
async fn contents(s: &Store) -> Contents {
    let n = s.ledger_len().await.unwrap();
    let mut by_category = Vec::new();
    for c in ["NAME", "DATE", "MRN"] {
        let r = s
            .ledger_search(&LedgerQuery {
                category: Some(c.into()),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        by_category.push(r.iter().map(|e| e.index).collect());
    }
    let by_actor = s
        .ledger_search(&LedgerQuery {
            actor: Some("user1".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.index)
        .collect();
    let mut keys = Vec::new();
    let mut vault = Vec::new();
    for i in 0..6 {
        keys.push(s.data_key_get(&format!("key{i}")).await.unwrap());
        let tokens: Vec<String> = (0..20).map(|t| format!("[NAME_{i}_{t}]")).collect();
        vault.extend(s.vault_get(&format!("scope{}", i % 2), &tokens).await.unwrap());
    }
    Contents {
        ledger: s.ledger_read(0, n).await.unwrap(),
        by_category,
        by_actor,
        checkpoints: s.checkpoints().await.unwrap(),
        keys,
        vault,
        api_keys: s.api_keys_list().await.unwrap(),
    }
}

/// The record lines of a backup file (without the header and the trailer, which name the
/// backend and hold the digest).
fn records(p: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(p).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines[0].contains("phigate-store-backup"));
    assert!(lines[lines.len() - 1].starts_with("{\"t\":\"end\""));
    lines[1..lines.len() - 1].to_vec()
}

async fn round_trip(from: Store, to: Store) {
    fill(&from).await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.backup");
    let sum = from.backup(&a).await.unwrap();
    assert_eq!(
        (sum.ledger_entries, sum.checkpoints, sum.data_keys, sum.vault_rows, sum.api_keys),
        (1000, 3, 6, 100, 3),
        "the shredded key's 20 rows are gone"
    );
    assert_eq!(sum.sha256.len(), 64);
    // For the owner only, whatever the umask: it holds sealed values and wrapped keys.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o600);
    let restored = to.restore(&a).await.unwrap();
    assert_eq!(restored, sum);
    let want = contents(&from).await;
    assert_eq!(want.ledger.len(), 1000);
    assert_eq!(contents(&to).await, want);
    // The API keys arrived identically: hash bytes, revocation, expiry, roles in stored order.
    let mut expect = api_keys();
    expect[1].revoked_ms = Some(1_700_000_009_000);
    for k in &expect {
        assert_eq!(to.api_key_get(&k.id).await.unwrap().as_ref(), Some(k), "{}", k.id);
    }
    assert_eq!(want.api_keys.len(), 3);
    // Backing up the copy gives the same records, whatever the backend.
    let b = dir.path().join("b.backup");
    to.backup(&b).await.unwrap();
    let (ra, rb) = (records(&a), records(&b));
    assert_eq!(ra.len(), 1000 + 3 + 6 + 100 + 3);
    // API keys come last, by id (byte order on both backends).
    let ids: Vec<&str> = ra[ra.len() - 3..]
        .iter()
        .map(|l| {
            assert!(l.starts_with("{\"t\":\"api_key\""), "{l}");
            l.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap()
        })
        .collect();
    assert_eq!(ids, ["K_expiring", "k_live", "k_revoked"]);
    assert!(ra == rb, "the copy's backup holds other records");
    // The copy keeps working: appends continue at the right index.
    assert_eq!(to.ledger_append(&[entry(1000)]).await.unwrap(), 1000);
    // A non-empty store is refused.
    let err = to.restore(&a).await.unwrap_err();
    assert!(matches!(err, Error::NotEmpty), "{err:?}");
    assert_eq!(to.ledger_len().await.unwrap(), 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres() {
    on_sqlite(|src| async move {
        on_postgres(move |dst| round_trip(src, dst)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_sqlite() {
    on_postgres(|src| async move {
        on_sqlite(move |dst| round_trip(src, dst)).await;
    })
    .await;
}

async fn assert_empty(s: &Store) {
    assert_eq!(s.ledger_len().await.unwrap(), 0);
    assert!(s.checkpoints().await.unwrap().is_empty());
    assert!(s.data_keys_live().await.unwrap().is_empty());
    assert!(s.api_keys_list().await.unwrap().is_empty());
}

/// A flipped byte anywhere, a truncated file or trailing data: refused, nothing written.
async fn damaged(dst: Store) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.backup");
    {
        let d2 = tempfile::tempdir().unwrap();
        let src = Store::open(d2.path().join("src.db").to_str().unwrap()).await.unwrap();
        fill(&src).await;
        src.backup(&good).await.unwrap();
        src.close().await;
    }
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad.backup");
    let len = bytes.len();
    // Header, a ledger record, a vault record, the trailer's digest, the final newline.
    let positions = [5, len / 3, len / 2, (len * 9) / 10, len - 20, len - 1];
    for pos in positions {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut b = bytes.clone();
            b[pos] ^= flip;
            std::fs::write(&bad, &b).unwrap();
            let err = dst.restore(&bad).await.unwrap_err();
            assert!(matches!(err, Error::Corrupt(_)), "byte {pos} ^ {flip:#x}: {err:?}");
        }
    }
    for cut in [0, 10, len / 2, len - 200, len - 1] {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        let err = dst.restore(&bad).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "cut at {cut}: {err:?}");
    }
    // Without the trailer line at all.
    let last_line = bytes[..len - 1].iter().rposition(|c| *c == b'\n').unwrap();
    std::fs::write(&bad, &bytes[..=last_line]).unwrap();
    assert!(matches!(dst.restore(&bad).await, Err(Error::Corrupt(_))));
    // Data after the trailer.
    let mut b = bytes.clone();
    b.extend_from_slice(b"{}\n");
    std::fs::write(&bad, &b).unwrap();
    assert!(matches!(dst.restore(&bad).await, Err(Error::Corrupt(_))));
    assert_empty(&dst).await;
    // The intact file still restores.
    assert_eq!(dst.restore(&good).await.unwrap().ledger_entries, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backup_is_refused_sqlite() {
    on_sqlite(damaged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backup_is_refused_postgres() {
    on_postgres(damaged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_store_round_trip() {
    on_sqlite(|a| async move {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.backup");
        let sum = a.backup(&p).await.unwrap();
        assert_eq!((sum.ledger_entries, sum.vault_rows), (0, 0));
        on_postgres(move |b| async move {
            assert_eq!(b.restore(&p).await.unwrap(), sum);
            assert_empty(&b).await;
        })
        .await;
    })
    .await;
}

/// A file with a valid checksum whose content the database refuses (a vault row under an unknown
/// key): the restore fails inside its one transaction and leaves nothing behind.
async fn failed_restore_leaves_nothing(dst: Store) {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.backup");
    {
        let d2 = tempfile::tempdir().unwrap();
        let src = Store::open(d2.path().join("src.db").to_str().unwrap()).await.unwrap();
        fill(&src).await;
        src.backup(&good).await.unwrap();
        src.close().await;
    }
    let text = std::fs::read_to_string(&good).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let trailer: serde_json::Value = serde_json::from_str(lines.pop().unwrap()).unwrap();
    let orphan = r#"{"t":"vault","scope":"scope0","token":"[ORPHAN]","key_id":"no-such-key","fingerprint":"AA==","nonce":"AA==","ciphertext":"AA==","created_ms":1}"#;
    // Last of the vault section, before the API keys (tables keep their order).
    let at = lines.iter().position(|l| l.starts_with("{\"t\":\"api_key\"")).unwrap();
    lines.insert(at, orphan);
    let mut body = String::new();
    for l in &lines {
        body.push_str(l);
        body.push('\n');
    }
    let sha = hex::encode(Sha256::digest(body.as_bytes()));
    let end = serde_json::json!({
        "t": "end",
        "ledger_entries": trailer["ledger_entries"],
        "checkpoints": trailer["checkpoints"],
        "data_keys": trailer["data_keys"],
        "vault_rows": trailer["vault_rows"].as_u64().unwrap() + 1,
        "api_keys": trailer["api_keys"],
        "sha256": sha,
    });
    body.push_str(&format!("{end}\n"));
    let bad = dir.path().join("orphan.backup");
    std::fs::write(&bad, body).unwrap();
    let err = dst.restore(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_empty(&dst).await;
    assert_eq!(dst.restore(&good).await.unwrap().vault_rows, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_restore_leaves_nothing_sqlite() {
    on_sqlite(failed_restore_leaves_nothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_restore_leaves_nothing_postgres() {
    on_postgres(failed_restore_leaves_nothing).await;
}

/// A store holding nothing but one API key is not empty: restore refuses it and writes nothing.
async fn api_key_alone_is_not_empty(dst: Store) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.backup");
    let src = Store::open(dir.path().join("src.db").to_str().unwrap()).await.unwrap();
    fill(&src).await;
    src.backup(&good).await.unwrap();
    src.close().await;
    let only = ApiKeyRow { id: "only".into(), ..api_keys()[0].clone() };
    dst.api_key_put(&only).await.unwrap();
    let err = dst.restore(&good).await.unwrap_err();
    assert!(matches!(err, Error::NotEmpty), "{err:?}");
    assert_eq!(dst.api_keys_list().await.unwrap(), vec![only]);
    assert_eq!(dst.ledger_len().await.unwrap(), 0);
    assert!(dst.checkpoints().await.unwrap().is_empty());
    assert!(dst.data_keys_live().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_alone_is_not_empty_sqlite() {
    on_sqlite(api_key_alone_is_not_empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_alone_is_not_empty_postgres() {
    on_postgres(api_key_alone_is_not_empty).await;
}

/// Rewrites a backup's lines with a new header version and trailer, and a correct digest.
fn reseal(lines: &[&str], version: u64, mut end: serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    header["version"] = version.into();
    let mut body = format!("{header}\n");
    for l in &lines[1..] {
        body.push_str(l);
        body.push('\n');
    }
    end["sha256"] = hex::encode(Sha256::digest(body.as_bytes())).into();
    body.push_str(&format!("{end}\n"));
    body
}

/// Version 1 files (no API keys, no `api_keys` count) still restore; an API key record or count
/// in a version 1 file, a version 2 trailer without the count and unknown versions are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_versions() {
    let dir = tempfile::tempdir().unwrap();
    let src = Store::open(dir.path().join("src.db").to_str().unwrap()).await.unwrap();
    fill(&src).await;
    let good = dir.path().join("good.backup");
    src.backup(&good).await.unwrap();
    src.close().await;
    let text = std::fs::read_to_string(&good).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("\"version\":2"), "{}", lines[0]);
    let end: serde_json::Value = serde_json::from_str(lines.pop().unwrap()).unwrap();
    let mut v1_end = end.clone();
    v1_end.as_object_mut().unwrap().remove("api_keys");
    let no_keys: Vec<&str> =
        lines.iter().copied().filter(|l| !l.starts_with("{\"t\":\"api_key\"")).collect();
    let bad = dir.path().join("bad.backup");
    let cases = [
        ("v1 with an API key record", reseal(&lines, 1, v1_end.clone())),
        (
            "v1 with an api_keys count",
            reseal(&no_keys, 1, {
                let mut e = end.clone();
                e["api_keys"] = 0.into();
                e
            }),
        ),
        ("v2 without an api_keys count", reseal(&no_keys, 2, v1_end.clone())),
        ("unknown version 3", reseal(&lines, 3, end.clone())),
        ("unknown version 0", reseal(&lines, 0, end.clone())),
    ];
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Store::open(dst_dir.path().join("dst.db").to_str().unwrap()).await.unwrap();
    for (what, body) in cases {
        std::fs::write(&bad, body).unwrap();
        let err = dst.restore(&bad).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{what}: {err:?}");
        if what.starts_with("unknown") {
            assert!(err.to_string().contains("unsupported format version"), "{what}: {err}");
        }
    }
    assert_empty(&dst).await;
    // A genuine version 1 file: everything but API keys.
    let v1 = dir.path().join("v1.backup");
    std::fs::write(&v1, reseal(&no_keys, 1, v1_end)).unwrap();
    let sum = dst.restore(&v1).await.unwrap();
    assert_eq!((sum.ledger_entries, sum.vault_rows, sum.api_keys), (1000, 100, 0));
    assert_eq!(dst.ledger_len().await.unwrap(), 1000);
    assert!(dst.api_keys_list().await.unwrap().is_empty());
}

/// `restore_with` sets each ledger entry's search copies from its body (here the test entries'
/// `seq`), whatever the file says; a body the reindexer refuses refuses the file, nothing
/// written.
async fn restore_rebuilds_search_copies(dst: Store) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.backup");
    {
        let d2 = tempfile::tempdir().unwrap();
        let src = Store::open(d2.path().join("src.db").to_str().unwrap()).await.unwrap();
        fill(&src).await;
        src.backup(&file).await.unwrap();
        src.close().await;
    }
    fn seq(body: &[u8]) -> Option<u64> {
        let text = std::str::from_utf8(body).ok()?;
        text.strip_prefix("{\"seq\":")?.split(',').next()?.parse().ok()
    }
    /// The copies of entry(i), with another actor and one category more.
    fn rebuild(e: &mut store::NewLedgerEntry) -> Result<(), String> {
        let i = seq(&e.body).ok_or("does not decode")?;
        let want = entry(i);
        e.ts_ms = want.ts_ms;
        e.actor = format!("rebuilt{}", i % 2);
        e.action = want.action;
        e.use_case = want.use_case;
        e.decision = want.decision;
        e.categories = want.categories;
        e.categories.push("REBUILT".into());
        Ok(())
    }
    let refuse_999 = |e: &mut store::NewLedgerEntry| -> Result<(), String> {
        match seq(&e.body) {
            Some(999) => Err("does not decode".into()),
            _ => rebuild(e),
        }
    };
    let err = dst.restore_with(&file, &refuse_999).await.unwrap_err();
    match &err {
        Error::Corrupt(m) => assert!(m.contains("ledger entry 999 does not decode"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_empty(&dst).await;
    assert_eq!(dst.restore_with(&file, &rebuild).await.unwrap().ledger_entries, 1000);
    let by = |q: LedgerQuery| {
        let dst = dst.clone();
        async move {
            let q = LedgerQuery { limit: 10_000, ..q };
            dst.ledger_search(&q).await.unwrap().iter().map(|e| e.index).collect::<Vec<_>>()
        }
    };
    assert!(by(LedgerQuery { actor: Some("user1".into()), ..Default::default() }).await.is_empty());
    let odd: Vec<u64> = (0..1000).filter(|i| i % 2 == 1).collect();
    assert_eq!(by(LedgerQuery { actor: Some("rebuilt1".into()), ..Default::default() }).await, odd);
    let all: Vec<u64> = (0..1000).collect();
    assert_eq!(
        by(LedgerQuery { category: Some("REBUILT".into()), ..Default::default() }).await,
        all
    );
    let rows = dst.ledger_read_rows(0, 1000).await.unwrap();
    assert_eq!(rows.len(), 1000);
    for r in &rows {
        let mut want = entry(r.index).categories;
        want.push("REBUILT".into());
        want.sort();
        want.dedup();
        assert_eq!(r.entry.categories, want);
        assert_eq!(r.entry.body, entry(r.index).body, "bodies as they were");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_rebuilds_search_copies_sqlite() {
    on_sqlite(restore_rebuilds_search_copies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_rebuilds_search_copies_postgres() {
    on_postgres(restore_rebuilds_search_copies).await;
}
