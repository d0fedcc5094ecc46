//! SQLite's write-ahead log under steady commits: the background checkpointer keeps it small and
//! makes it start over, though the writer never pauses. (Without the checkpointer's last pass
//! between two transactions, a log that is always being written is never caught up with; the
//! writer's own checkpoint, a backstop, lets it grow to 40 MiB first.)

use store::Store;

use crate::common::entry;

const TASKS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_small_under_steady_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wal.db");
    let wal = dir.path().join("wal.db-wal");
    let store = Store::open(db.to_str().unwrap()).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(8);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while tokio::time::Instant::now() < deadline {
                store.ledger_append(&[entry(i)]).await.unwrap();
                i += TASKS;
            }
        }));
    }
    let mut largest = 0;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = store.ledger_len().await.unwrap();
    // Each commit here writes about eight pages; the log must have outgrown the restart
    // threshold many times over for the test to mean anything.
    assert!(n > 2_000, "only {n} commits in 8 s");
    // 2,000 frames of 4 KiB at the restart, plus what comes in before the next pass.
    assert!(largest < 16 << 20, "the WAL reached {largest} bytes over {n} commits");
    store.close().await;
}

/// The checkpointer rests while the process writes nothing, but only once the WAL is wholly
/// copied: the last write before a pause reaches the database file within a few passes, even
/// when it was under way as a pass ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_last_write_before_a_pause_reaches_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pause.db");
    let store = Store::open(db.to_str().unwrap()).await.unwrap();
    for round in 0..5u64 {
        // A burst, then a pause longer than several checkpoint intervals.
        for i in 0..20 {
            store.ledger_append(&[entry(round * 1000 + i)]).await.unwrap();
        }
        let last = format!("{{\"seq\":{},", round * 1000 + 19).into_bytes();
        let t0 = std::time::Instant::now();
        loop {
            let file = std::fs::read(&db).unwrap();
            if file.windows(last.len()).any(|w| w == last.as_slice()) {
                break;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(5),
                "round {round}: the last entry is still only in the WAL after 5 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    store.close().await;
}
