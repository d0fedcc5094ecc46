//! Refusals with clear errors: not a database, corrupted, somebody else's file, a schema newer
//! than this build, an unreachable server; and shredded bytes gone from the SQLite files.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use store::{DataKeyRow, Error, Store};

use crate::common::{entry, PgDb};
use crate::suite::{key, vrow};

fn url(p: &Path) -> String {
    format!("sqlite://{}", p.display())
}

#[tokio::test]
async fn sqlite_garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("garbage.db");
    let junk: Vec<u8> = (0..8192).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&p, &junk).unwrap();
    let err = Store::open(&url(&p)).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    // A short text file too.
    std::fs::write(&p, b"hello, I am not a database\n").unwrap();
    let err = Store::open(p.to_str().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    // And the file was left as it was.
    assert_eq!(std::fs::read(&p).unwrap(), b"hello, I am not a database\n");
}

#[tokio::test]
async fn sqlite_damaged_schema_page_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store.db");
    let s = Store::open(&url(&p)).await.unwrap();
    s.ledger_append(&(0..50).map(entry).collect::<Vec<_>>()).await.unwrap();
    s.close().await;
    let mut bytes = std::fs::read(&p).unwrap();
    assert!(bytes.len() > 8192);
    // Keep the 100-byte file header, scribble over the rest of page 1 (the schema table).
    for b in &mut bytes[100..4096] {
        *b = 0xA5;
    }
    std::fs::write(&p, &bytes).unwrap();
    let err = Store::open(&url(&p)).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_damaged_data_page_fails_check() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store.db");
    let s = Store::open(&url(&p)).await.unwrap();
    s.ledger_append(&(0..500).map(entry).collect::<Vec<_>>()).await.unwrap();
    s.check().await.unwrap();
    s.close().await;
    let mut bytes = std::fs::read(&p).unwrap();
    let pages = bytes.len() / 4096;
    assert!(pages > 20);
    // Scribble over a page in the middle (b-tree pages of the ledger).
    let at = (pages / 2) * 4096;
    for b in &mut bytes[at..at + 4096] {
        *b = 0x5A;
    }
    std::fs::write(&p, &bytes).unwrap();
    let res = match Store::open(&url(&p)).await {
        Ok(s) => s.check().await,
        Err(e) => Err(e),
    };
    assert!(matches!(res, Err(Error::Corrupt(_))), "{res:?}");
}

#[tokio::test]
async fn sqlite_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("other.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&p).create_if_missing(true);
    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    sqlx::query("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let err = Store::open(&url(&p)).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
}

const FUTURE_MIGRATION: &str = "INSERT INTO _sqlx_migrations \
    (version, description, success, checksum, execution_time) VALUES (99999, 'future', TRUE, ";

#[tokio::test]
async fn sqlite_schema_too_new_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store.db");
    Store::open(&url(&p)).await.unwrap().close().await;
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&p);
    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    sqlx::query(&format!("{FUTURE_MIGRATION} X'00', 0)")).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    let err = Store::open(&url(&p)).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found: 99999, supported } if supported < 99999),
        "{err:?}"
    );
}

#[tokio::test]
async fn postgres_schema_too_new_is_refused() {
    PgDb::with(|u| async move {
        Store::open(&u).await.unwrap().close().await;
        let mut c = sqlx::PgConnection::connect(&u).await.unwrap();
        sqlx::query(&format!("{FUTURE_MIGRATION} '\\x00'::bytea, 0)"))
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        let err = Store::open(&u).await.unwrap_err();
        assert!(matches!(err, Error::SchemaTooNew { found: 99999, .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn postgres_unreachable_is_unavailable_and_never_hangs() {
    let url = "postgres://phigate:SuperSecretPw@127.0.0.1:1/phigate";
    // The guard only keeps a broken build from hanging the suite; the store's own timeout is 5 s.
    let res = tokio::time::timeout(Duration::from_secs(60), Store::open(url))
        .await
        .expect("Store::open must give up on its own");
    let err = res.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SuperSecretPw"), "{text}");
}

#[tokio::test]
async fn postgres_missing_database_is_unavailable() {
    let err = Store::open("postgres://postgres@127.0.0.1:5432/phigate_no_such_database_x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn file_bytes(p: &Path) -> Vec<u8> {
    let mut all = std::fs::read(p).unwrap();
    for ext in ["-wal", "-journal"] {
        let mut side = p.as_os_str().to_owned();
        side.push(ext);
        if let Ok(b) = std::fs::read(&side) {
            all.extend(b);
        }
    }
    all
}

/// A data key row whose wrapped bytes are random: found in the files only if they are its own.
fn random_key(id: &str, scope: &str) -> DataKeyRow {
    let mut k = key(id, scope, 1, None);
    k.wrapped = (0..48).map(|_| rand::random::<u8>()).collect();
    k
}

#[tokio::test]
async fn sqlite_shred_leaves_no_key_bytes_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store.db");
    let s = Store::open(&url(&p)).await.unwrap();
    let k = random_key("k-shred", "conv");
    s.data_key_put(&k).await.unwrap();
    let mut row = vrow("conv", "[NAME_1]", "k-shred", b"fingerprint", 1);
    row.ciphertext = (0..64).map(|_| rand::random::<u8>()).collect();
    s.vault_put(&[row.clone()]).await.unwrap();
    let before = file_bytes(&p);
    assert!(contains(&before, &k.wrapped) && contains(&before, &row.ciphertext));

    assert!(s.data_key_shred("k-shred", 2).await.unwrap());
    let after = file_bytes(&p);
    assert!(!contains(&after, &k.wrapped), "wrapped key bytes still in the files");
    assert!(!contains(&after, &row.ciphertext), "ciphertext still in the files");
    s.close().await;
    let after = file_bytes(&p);
    assert!(!contains(&after, &k.wrapped) && !contains(&after, &row.ciphertext));
}

#[tokio::test]
async fn sqlite_url_forms_and_directory_creation() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b").join("store.db");
    let s = Store::open(&format!("sqlite://{}", nested.display())).await.unwrap();
    s.ledger_append(&[entry(0)]).await.unwrap();
    s.close().await;
    assert!(nested.exists());
    // The same file through a plain path and a `sqlite:` URL.
    let s = Store::open(nested.to_str().unwrap()).await.unwrap();
    assert_eq!(s.ledger_len().await.unwrap(), 1);
    s.close().await;
    let s = Store::open(&format!("sqlite:{}", nested.display())).await.unwrap();
    assert_eq!(s.ledger_len().await.unwrap(), 1);
    // Reopening runs no migration twice.
    s.close().await;
    assert!(matches!(Store::open("sqlite::memory:").await, Err(Error::Backend(_))));
}

/// Shredding while other writes keep the background checkpointer busy: its passes hold SQLite's
/// checkpoint lock, which the shred's own checkpoint does not wait for by itself. Every shred
/// must still leave no wrapped key bytes in the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shred_beside_steady_writes_leaves_no_key_bytes() {
    shred_beside_steady_writes(false).await;
}

/// The same with the shreds made through a second store on the file (as `phigate vault shred`
/// does beside a running server): the busy checkpointer is another store's, whose turns the
/// shredder cannot take, so its purge retries until it finds a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shred_from_a_second_store_beside_a_busy_one_leaves_no_key_bytes() {
    shred_beside_steady_writes(true).await;
}

async fn shred_beside_steady_writes(second_store: bool) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store.db");
    let s = Store::open(&url(&p)).await.unwrap();
    let shredder = if second_store { Store::open(&url(&p)).await.unwrap() } else { s.clone() };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.ledger_append(&[entry(i)]).await.unwrap();
                i += 1;
            }
            i
        })
    };
    for round in 0..40 {
        let id = format!("k-{round}");
        let k = random_key(&id, &format!("conv-{round}"));
        shredder.data_key_put(&k).await.unwrap();
        // Let the checkpointer run a pass or two over the new frames.
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 60)).await;
        assert!(shredder.data_key_shred(&id, 2).await.unwrap());
        let after = file_bytes(&p);
        assert!(
            !contains(&after, &k.wrapped),
            "round {round}: wrapped key bytes still in the files"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = writer.await.unwrap();
    assert!(appended > 100, "only {appended} appends beside the shreds");
    shredder.close().await;
    s.close().await;
}

/// A read in another connection that began before the shred holds the old pages in place (the
/// purge cannot finish while it lasts); once it ends, the background checkpointer finishes the
/// purge without another shred or write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shred_held_up_by_a_long_read_is_purged_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store.db");
    let s = Store::open(&url(&p)).await.unwrap();
    let k = random_key("k-held", "conv");
    s.data_key_put(&k).await.unwrap();

    let mut reader = sqlx::SqliteConnection::connect(&url(&p)).await.unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM data_keys").fetch_one(&mut reader).await.unwrap();
    assert_eq!(n, 1);
    // The shred commits, then tries to purge for its whole allowance and hands over. Writes go
    // on meanwhile: a purge try never waits in SQLite (holding its write lock) for the reader.
    let shred = {
        let s = s.clone();
        tokio::spawn(async move { s.data_key_shred("k-held", 2).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        let started = std::time::Instant::now();
        s.ledger_append(&[entry(i)]).await.unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(2_500), "a write waited {took:?} behind the purge");
    }
    assert!(!shred.is_finished(), "the purge should still be trying (else this shows nothing)");
    assert!(shred.await.unwrap().unwrap());
    assert!(
        contains(&file_bytes(&p), &k.wrapped),
        "the open read should have kept the old page (else this test shows nothing)"
    );
    sqlx::query("ROLLBACK").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while contains(&file_bytes(&p), &k.wrapped) {
        assert!(std::time::Instant::now() < deadline, "the wrapped key stayed in the files");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.close().await;
}
