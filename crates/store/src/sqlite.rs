//! The SQLite backend: one file, WAL, synchronous=FULL, foreign keys, secure_delete, busy timeout.
//! Writers in this process are serialised by a mutex and take the write lock up front
//! (`BEGIN IMMEDIATE`), so a transaction never has to upgrade from reader to writer.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite};
use tokio::sync::Mutex;

use crate::backup::{self, Record};
use crate::error::{from_migrate, from_sqlx_common};
use crate::{
    canonical_categories, hash32, to_i64, to_u64, BackupSummary, CheckpointPut, DataKeyRow, Error,
    LedgerEntry, LedgerQuery, LedgerRow, NewLedgerEntry, StoredCheckpoint, VaultRow, CHUNK,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

pub(crate) struct SqliteStore {
    /// Readers (several connections).
    pool: SqlitePool,
    /// The one writer connection. Keeping writes on one connection keeps its page cache valid
    /// from one transaction to the next (another connection's write would flush it).
    writer: SqlitePool,
    /// Orders this process's writers fairly (FIFO) in front of the writer connection, and
    /// holds what the writer last learnt of the ledger's end.
    write: Arc<Mutex<Writer>>,
    /// Two per write transaction of this process, one as it takes the write lock and one as it
    /// lets go (odd: one is under way). The checkpointer rests while it has not moved since the
    /// WAL was last found wholly copied.
    writes: Arc<Writes>,
    /// See [`SqliteStore::identify`].
    id: u32,
    /// The database file.
    path: std::path::PathBuf,
    /// The `synchronous` setting every connection runs with: `FULL` unless `sqlite_sync: normal`
    /// was chosen. A deferred append ([`SqliteStore::ledger_append_deferred`]) steps down to
    /// `NORMAL` for its one transaction and back.
    sync_full: bool,
    /// The background WAL checkpointer (stopped when the store goes).
    checkpointer: tokio::task::AbortHandle,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// This process's write transactions, counted for the checkpointer (see `SqliteStore::writes`).
#[derive(Default)]
struct Writes {
    count: AtomicU64,
    /// Signalled as each write lets go: wakes a checkpointer that rests.
    done: tokio::sync::Notify,
    /// SQLite runs one checkpoint at a time and fails a second at once, without waiting (its
    /// busy handler is not called for the checkpoint lock). This process's checkpoints take
    /// turns here, so a shred's purge never loses to a background pass.
    checkpoint: Mutex<()>,
    /// Set when a shred's purge of the WAL could not finish (another process's checkpoint or
    /// a reader held it up past [`PURGE_WITHIN`]): the checkpointer retries until it does.
    purge: std::sync::atomic::AtomicBool,
}

impl Writes {
    /// Leaves an unfinished purge of the WAL to the checkpointer, waking it if it rests.
    fn hand_over_purge(&self) {
        self.purge.store(true, Ordering::Release);
        self.done.notify_one();
    }
}

/// How often the background task copies the WAL's new pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// Passes beside the writer before the last one: each copies what came in during the one before.
const CHECKPOINT_PASSES: usize = 4;
/// A pass that found fewer new WAL frames than this is close enough to take the last one.
const CHECKPOINT_SMALL: i64 = 64;
/// The WAL size, in frames (pages), above which the last pass runs so that the WAL restarts.
const CHECKPOINT_RESTART: i64 = 2000;

/// Copies committed WAL pages into the database file, so that no commit waits for a large copy.
///
/// SQLite's own automatic checkpoint runs inside the commit that crosses `wal_autocheckpoint`,
/// and every request waiting on that commit waits for it: it syncs the WAL (with
/// `synchronous=NORMAL`, megabytes no commit synced), copies, and syncs the database file. At
/// 1,000 requests/s, 0.3% of commits took 50 to 100 ms.
///
/// Here, PASSIVE checkpoints on a reader connection do the bulk beside the writer (they block
/// neither it nor readers), pass after pass while each finds many new frames. Then, when the
/// WAL is large, one last pass runs between two of the writer's transactions (under the write
/// lock): it has only the last few frames to copy, leaves the WAL wholly copied, and the
/// writer's next commit starts the WAL over. Without that last step a writer that commits all
/// the time is never caught up with, and the WAL grows without end. The writer keeps its own
/// automatic checkpoint as a backstop.
///
/// While this process writes nothing the task sleeps until its next write ends: with the WAL
/// wholly copied and no write since, there is nothing to do (another process's writes are its
/// own to checkpoint, as it does when it closes; SQLite's automatic checkpoint remains behind
/// both).
async fn checkpointer(
    pool: SqlitePool,
    writer: SqlitePool,
    write: Arc<Mutex<Writer>>,
    writes: Arc<Writes>,
) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The count of writes when the WAL was last found wholly copied (none yet).
    let mut copied_at = u64::MAX;
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        if writes.purge.load(Ordering::Acquire) {
            match purge_wal(&writer, &writes).await {
                Ok(true) => {
                    writes.purge.store(false, Ordering::Release);
                    tracing::info!("a shredded key's old pages have now left the WAL");
                }
                Ok(false) => {}
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => tracing::warn!(error = %map_err(e), "purging the WAL failed"),
            }
            continue;
        }
        let seen = writes.count.load(Ordering::Acquire);
        if seen == copied_at {
            // Rest until a write ends (a write that ended since the load left a permit).
            writes.done.notified().await;
            continue;
        }
        // With a write under way, its frames may land after a pass: not "wholly copied" then.
        let idle = seen.is_multiple_of(2);
        let mut last = None;
        for _ in 0..CHECKPOINT_PASSES {
            let pass = {
                let _turn = writes.checkpoint.lock().await;
                wal_checkpoint(&pool).await
            };
            match pass {
                Ok((log, copied)) => {
                    if log == copied && idle {
                        copied_at = seen;
                    }
                    let small = last.is_some_and(|l| log - l < CHECKPOINT_SMALL) || log == 0;
                    last = Some(log);
                    if small {
                        break;
                    }
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %map_err(e), "background WAL checkpoint failed");
                    break;
                }
            }
        }
        if last.is_none_or(|l| l < CHECKPOINT_RESTART) {
            continue;
        }
        let _guard = write.lock().await;
        let _turn = writes.checkpoint.lock().await;
        let seen = writes.count.load(Ordering::Acquire);
        let started = std::time::Instant::now();
        let result = wal_checkpoint(&writer).await;
        let held = started.elapsed();
        match result {
            Ok((log, copied)) => {
                if log == copied {
                    copied_at = seen;
                }
                // Writers wait this long: it is mostly the disk's flush of the database file.
                if held >= SLOW_FINAL_PASS {
                    tracing::warn!(
                        held_ms = held.as_millis() as u64,
                        wal_frames = log,
                        "the WAL checkpoint's last pass held up writes (the disk was slow to flush)"
                    );
                } else {
                    tracing::debug!(
                        held_us = held.as_micros() as u64,
                        wal_frames = log,
                        "WAL wholly copied under the write lock (the next write starts it over)"
                    );
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => tracing::warn!(error = %map_err(e), "WAL checkpoint failed"),
        }
    }
}

/// A last checkpoint pass (under the write lock) slower than this is logged as a warning.
const SLOW_FINAL_PASS: Duration = Duration::from_millis(50);

/// One PASSIVE checkpoint: the WAL's size in frames, and how many of them are now copied into
/// the database file.
async fn wal_checkpoint(pool: &SqlitePool) -> Result<(i64, i64), sqlx::Error> {
    let (_busy, log, copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await?;
    Ok((log, copied))
}

/// How long a shred's purge of the WAL keeps trying before the checkpointer takes it over.
const PURGE_WITHIN: Duration = Duration::from_secs(10);
/// The writer connection's busy timeout (see `SqliteStore::open`), put back after a purge try.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Copies the whole WAL into the database file and truncates the WAL to nothing, so no old page
/// image (a shredded key's, with `secure_delete` zeroing the current one) stays in either file.
/// Whether it finished.
///
/// Each try runs in this process's checkpoint turn (so never against a background pass) and
/// without a busy timeout: a TRUNCATE checkpoint holds SQLite's write lock while it waits for
/// readers, so waiting in SQLite would stall every writer behind a long read in another
/// process. Instead a try that finds a reader on the WAL, another process's checkpoint or
/// another process's write ends at once, and the next comes 5 ms later, up to
/// [`PURGE_WITHIN`].
async fn purge_wal(writer: &SqlitePool, writes: &Writes) -> Result<bool, sqlx::Error> {
    let _turn = writes.checkpoint.lock().await;
    let started = std::time::Instant::now();
    loop {
        let busy = {
            let mut conn = writer.acquire().await?;
            sqlx::query("PRAGMA busy_timeout = 0").execute(&mut *conn).await?;
            let tried: Result<(i64, i64, i64), sqlx::Error> =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await;
            let restore = format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
            if sqlx::query(&restore).execute(&mut *conn).await.is_err() {
                // Never hand a writer a connection that gives up at once: a new one replaces it.
                conn.close_on_drop();
            }
            tried?.0
        };
        if busy == 0 {
            return Ok(true);
        }
        if started.elapsed() >= PURGE_WITHIN {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The write lock, held through a write transaction; letting go counts the write as done.
struct WriteGuard<'a> {
    guard: tokio::sync::MutexGuard<'a, Writer>,
    writes: &'a Writes,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.writes.count.fetch_add(1, Ordering::Release);
        self.writes.done.notify_one();
    }
}

impl std::ops::Deref for WriteGuard<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        &self.guard
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.guard
    }
}

/// State kept under the write lock.
#[derive(Default)]
struct Writer {
    /// The ledger index after the last append this process committed, when known. Another
    /// process's append since then makes the next insert at this index fail on the primary key
    /// (nothing ever deletes ledger rows), and the append then reads the end from the table.
    next_idx: Option<i64>,
}

/// Maps a `sqlx` error from SQLite to an [`Error`] kind.
pub(crate) fn map_err(e: sqlx::Error) -> Error {
    let sqlx::Error::Database(db) = &e else {
        return from_sqlx_common(e);
    };
    let code: i32 = db.code().and_then(|c| c.parse().ok()).unwrap_or(1);
    match code & 0xff {
        11 => Error::Corrupt("the SQLite database is malformed".into()),
        26 => Error::Corrupt("the file is not a SQLite database".into()),
        5 | 6 => Error::Unavailable("the SQLite database is busy".into()),
        14 => Error::Unavailable("cannot open the SQLite database file".into()),
        13 => Error::Backend("the disk is full".into()),
        8 => Error::Backend("the SQLite database is read-only".into()),
        10 => Error::Backend(format!("SQLite I/O error (code {code})")),
        // SQLite's constraint messages name columns, never values.
        19 => Error::Conflict(db.message().to_string()),
        _ => Error::Backend(format!("SQLite error (code {code})")),
    }
}

fn ledger_entry(r: &SqliteRow) -> Result<LedgerEntry, Error> {
    Ok(LedgerEntry {
        index: to_u64(r.try_get("idx").map_err(map_err)?)?,
        leaf_hash: hash32(r.try_get::<&[u8], _>("leaf_hash").map_err(map_err)?)?,
        body: r.try_get("body").map_err(map_err)?,
        ts_ms: r.try_get("ts_ms").map_err(map_err)?,
    })
}

fn checkpoint(r: &SqliteRow) -> Result<StoredCheckpoint, Error> {
    Ok(StoredCheckpoint {
        tree_size: to_u64(r.try_get("tree_size").map_err(map_err)?)?,
        root_hash: hash32(r.try_get::<&[u8], _>("root_hash").map_err(map_err)?)?,
        ts_ms: r.try_get("ts_ms").map_err(map_err)?,
        note: r.try_get("note").map_err(map_err)?,
    })
}

const API_KEY_COLS: &str =
    "id, secret_sha256, identity, roles, use_case, created_ms, expires_ms, revoked_ms";

fn api_key(r: &SqliteRow) -> Result<crate::ApiKeyRow, Error> {
    let hash: Vec<u8> = r.try_get("secret_sha256").map_err(map_err)?;
    let roles: String = r.try_get("roles").map_err(map_err)?;
    Ok(crate::ApiKeyRow {
        id: r.try_get("id").map_err(map_err)?,
        secret_sha256: hash
            .try_into()
            .map_err(|_| Error::Corrupt("an API key hash is not 32 bytes".into()))?,
        identity: r.try_get("identity").map_err(map_err)?,
        roles: serde_json::from_str(&roles)
            .map_err(|_| Error::Corrupt("an API key's roles are not a JSON array".into()))?,
        use_case: r.try_get("use_case").map_err(map_err)?,
        created_ms: r.try_get("created_ms").map_err(map_err)?,
        expires_ms: r.try_get("expires_ms").map_err(map_err)?,
        revoked_ms: r.try_get("revoked_ms").map_err(map_err)?,
    })
}

fn data_key(r: &SqliteRow) -> Result<DataKeyRow, Error> {
    Ok(DataKeyRow {
        key_id: r.try_get("key_id").map_err(map_err)?,
        scope: r.try_get("scope").map_err(map_err)?,
        kek_id: r.try_get("kek_id").map_err(map_err)?,
        wrapped: r.try_get("wrapped").map_err(map_err)?,
        created_ms: r.try_get("created_ms").map_err(map_err)?,
        expires_at_ms: r.try_get("expires_at_ms").map_err(map_err)?,
        shredded_ms: r.try_get("shredded_ms").map_err(map_err)?,
    })
}

fn vault_row(r: &SqliteRow) -> Result<VaultRow, Error> {
    Ok(VaultRow {
        scope: r.try_get("scope").map_err(map_err)?,
        token: r.try_get("token").map_err(map_err)?,
        key_id: r.try_get("key_id").map_err(map_err)?,
        fingerprint: r.try_get("fingerprint").map_err(map_err)?,
        nonce: r.try_get("nonce").map_err(map_err)?,
        ciphertext: r.try_get("ciphertext").map_err(map_err)?,
        created_ms: r.try_get("created_ms").map_err(map_err)?,
    })
}

const KEY_COLS: &str = "key_id, scope, kek_id, wrapped, created_ms, expires_at_ms, shredded_ms";
const VAULT_COLS: &str = "scope, token, key_id, fingerprint, nonce, ciphertext, created_ms";

type Tx = sqlx::Transaction<'static, Sqlite>;

/// Inserts ledger entries with explicit indexes `start..` (multi-row INSERTs).
const LEDGER_INSERT: &str =
    "INSERT INTO ledger_entries (idx, leaf_hash, body, ts_ms, actor, action, use_case, decision) ";
const CATEGORY_INSERT: &str = "INSERT INTO ledger_categories (category, idx) ";

/// `(index, category)` for each category of each entry, entries numbered from `start`.
fn category_pairs<'a>(start: i64, categories: &[Vec<&'a str>]) -> Vec<(i64, &'a str)> {
    categories
        .iter()
        .enumerate()
        .flat_map(|(i, cs)| cs.iter().map(move |c| (start + i as i64, *c)))
        .collect()
}

/// `INSERT INTO ledger_entries ... VALUES ...` for `chunk`, indexes from `base`.
fn push_ledger_rows<'a>(qb: &mut QueryBuilder<'a, Sqlite>, base: i64, chunk: &'a [NewLedgerEntry]) {
    qb.push(LEDGER_INSERT);
    qb.push_values(chunk.iter().enumerate(), |mut b, (i, e)| {
        b.push_bind(base + i as i64)
            .push_bind(&e.leaf_hash[..])
            .push_bind(&e.body[..])
            .push_bind(e.ts_ms)
            .push_bind(e.actor.as_str())
            .push_bind(e.action.as_str())
            .push_bind(e.use_case.as_str())
            .push_bind(e.decision.as_str());
    });
}

/// `INSERT INTO ledger_categories ... VALUES ...` for `chunk` of `(index, category)`.
fn push_category_rows<'a>(qb: &mut QueryBuilder<'a, Sqlite>, chunk: &'a [(i64, &'a str)]) {
    qb.push(CATEGORY_INSERT);
    qb.push_values(chunk, |mut b, (i, c)| {
        b.push_bind(*c).push_bind(*i);
    });
}

async fn insert_ledger(
    tx: &mut Tx,
    start: i64,
    entries: &[NewLedgerEntry],
    categories: &[Vec<&str>],
) -> Result<(), Error> {
    for (c, chunk) in entries.chunks(CHUNK).enumerate() {
        let base = start + (c * CHUNK) as i64;
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("");
        push_ledger_rows(&mut qb, base, chunk);
        qb.build().execute(&mut **tx).await.map_err(map_err)?;
    }
    let pairs = category_pairs(start, categories);
    for chunk in pairs.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("");
        push_category_rows(&mut qb, chunk);
        qb.build().execute(&mut **tx).await.map_err(map_err)?;
    }
    Ok(())
}

async fn insert_checkpoints(tx: &mut Tx, rows: &[StoredCheckpoint]) -> Result<(), Error> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO checkpoints (tree_size, root_hash, ts_ms, note) ");
        qb.push_values(chunk, |mut b, c| {
            b.push_bind(to_i64(c.tree_size))
                .push_bind(&c.root_hash[..])
                .push_bind(c.ts_ms)
                .push_bind(c.note.as_str());
        });
        qb.build().execute(&mut **tx).await.map_err(map_err)?;
    }
    Ok(())
}

/// `INSERT INTO data_keys ... VALUES ...` of these rows.
fn insert_data_keys_query<'a>(
    chunk: impl IntoIterator<Item = &'a DataKeyRow>,
) -> QueryBuilder<'a, Sqlite> {
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("INSERT INTO data_keys ({KEY_COLS}) "));
    qb.push_values(chunk, |mut b, k| {
        b.push_bind(k.key_id.as_str())
            .push_bind(k.scope.as_str())
            .push_bind(k.kek_id.as_str())
            .push_bind(&k.wrapped[..])
            .push_bind(k.created_ms)
            .push_bind(k.expires_at_ms)
            .push_bind(k.shredded_ms);
    });
    qb
}

async fn insert_data_keys(tx: &mut Tx, rows: &[DataKeyRow]) -> Result<(), Error> {
    for chunk in rows.chunks(CHUNK) {
        insert_data_keys_query(chunk).build().execute(&mut **tx).await.map_err(map_err)?;
    }
    Ok(())
}

/// Inserts the keys whose ids are not stored yet (nor earlier in `keys`): the ids inserted.
async fn insert_new_data_keys(tx: &mut Tx, keys: &[&DataKeyRow]) -> Result<Vec<String>, Error> {
    let mut stored = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut qb = insert_data_keys_query(chunk.iter().copied());
        qb.push(" ON CONFLICT DO NOTHING RETURNING key_id");
        let ids: Vec<String> =
            qb.build_query_scalar().fetch_all(&mut **tx).await.map_err(map_err)?;
        stored.extend(ids);
    }
    Ok(stored)
}

async fn insert_api_keys(tx: &mut Tx, rows: &[crate::ApiKeyRow]) -> Result<(), Error> {
    let roles = rows
        .iter()
        .map(|k| serde_json::to_string(&k.roles))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|_| Error::Backend("cannot encode roles".into()))?;
    for (chunk, roles) in rows.chunks(CHUNK).zip(roles.chunks(CHUNK)) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("INSERT INTO api_keys ({API_KEY_COLS}) "));
        qb.push_values(chunk.iter().zip(roles), |mut b, (k, roles)| {
            b.push_bind(k.id.as_str())
                .push_bind(&k.secret_sha256[..])
                .push_bind(k.identity.as_str())
                .push_bind(roles.as_str())
                .push_bind(k.use_case.as_deref())
                .push_bind(k.created_ms)
                .push_bind(k.expires_ms)
                .push_bind(k.revoked_ms);
        });
        qb.build().execute(&mut **tx).await.map_err(map_err)?;
    }
    Ok(())
}

async fn insert_vault(tx: &mut Tx, rows: &[VaultRow], keep_existing: bool) -> Result<(), Error> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("INSERT INTO vault_entries ({VAULT_COLS}) "));
        qb.push_values(chunk, |mut b, v| {
            b.push_bind(v.scope.as_str())
                .push_bind(v.token.as_str())
                .push_bind(v.key_id.as_str())
                .push_bind(&v.fingerprint[..])
                .push_bind(&v.nonce[..])
                .push_bind(&v.ciphertext[..])
                .push_bind(v.created_ms);
        });
        if keep_existing {
            qb.push(" ON CONFLICT (scope, token) DO NOTHING");
        }
        qb.build().execute(&mut **tx).await.map_err(map_err)?;
    }
    Ok(())
}

/// Creates the database file readable by its owner only (SQLite gives its `-wal` and `-shm`
/// files the same mode), before SQLite would create it with the process's umask (often 0644).
/// An existing file that others can read is left as it is, with a warning.
fn private_file(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the SQLite database can be read by other users of this machine (chmod 600 \
                     it and its -wal and -shm files)"
                );
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path, options: &crate::Options) -> Result<SqliteStore, Error> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                tokio::fs::create_dir_all(dir).await?;
            }
        }
        private_file(path)?;
        let opts = SqliteConnectOptions::new()
            // Each statement at trace, not debug: the background checkpointer runs one every
            // 50 ms, which would otherwise fill a debug log (slow statements still warn).
            .log_statements(log::LevelFilter::Trace)
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sqlite_sync {
                crate::SqliteSync::Normal => SqliteSynchronous::Normal,
                _ => SqliteSynchronous::Full,
            })
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("secure_delete", "ON")
            // Statement journals of multi-row inserts in memory, not in temporary files.
            .pragma("temp_store", "MEMORY")
            // 8 MiB of page cache for the writer (readers get less below). Not more: SQLite
            // walks the cache's hash table at the end of every write transaction, so a larger
            // cache makes every commit slower (32 MiB cost a tenth of the CPU under load).
            .pragma("cache_size", "-8192")
            // The background checkpointer keeps the WAL under CHECKPOINT_RESTART frames; the
            // writer's own checkpoint, inside a commit, is only a backstop (40 MiB of WAL).
            .pragma("wal_autocheckpoint", "10000");
        let writer = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(map_err)?;
        // Readers: 2 MiB of page cache each. Every write by the writer connection empties a
        // reader's cache at its next read (SQLite walks the whole cache to do it), so under a
        // steady write load a large reader cache costs time and holds nothing for long; the
        // gateway keeps what it reads often in memory anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.pragma("cache_size", "-2048"))
            .await
            .map_err(map_err)?;
        let write = Arc::new(Mutex::new(Writer::default()));
        let writes = Arc::new(Writes::default());
        let checkpointer =
            tokio::spawn(checkpointer(pool.clone(), writer.clone(), write.clone(), writes.clone()))
                .abort_handle();
        let mut store = SqliteStore {
            pool,
            writer,
            write,
            writes,
            checkpointer,
            id: 0,
            path: path.to_path_buf(),
            sync_full: !matches!(options.sqlite_sync, crate::SqliteSync::Normal),
        };
        store.check_schema().await?;
        MIGRATOR.run(&store.writer).await.map_err(|e| from_migrate(e, map_err))?;
        store.id = store.identify().await?;
        Ok(store)
    }

    /// The database's identity: a random non-zero number kept in SQLite's `user_version`
    /// header field, drawn by the first open. A copy of the file keeps it; a new database (a
    /// restore through `phigate backup`, a file deleted and made again) gets another.
    async fn identify(&self) -> Result<u32, Error> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let found: i64 =
            sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await.map_err(map_err)?;
        let id = if found == 0 {
            let id = (rand::random::<u32>() & 0x7fff_ffff).max(1);
            // PRAGMA takes no bound parameter; the value is a number this code made.
            sqlx::query(&format!("PRAGMA user_version = {id}"))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            id
        } else {
            found as u32
        };
        tx.commit().await.map_err(map_err)?;
        Ok(id)
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses somebody else's database and a schema newer than this build.
    async fn check_schema(&self) -> Result<(), Error> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        if tables.is_empty() {
            return Ok(());
        }
        if !tables.iter().any(|t| t == "_sqlx_migrations") {
            return Err(Error::Corrupt(
                "the SQLite file holds tables but is not a phigate store".into(),
            ));
        }
        let found: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
        let supported = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        match found {
            Some(found) if found > supported => Err(Error::SchemaTooNew { found, supported }),
            _ => Ok(()),
        }
    }

    pub(crate) async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.checkpointer.abort();
        // Fold the WAL into the main file so the file stands alone; best effort.
        self.pool.close().await;
        match purge_wal(&self.writer, &self.writes).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the WAL was not wholly copied on close (busy)"),
            Err(e) => tracing::warn!(error = %map_err(e), "WAL checkpoint on close failed"),
        }
        self.writer.close().await;
    }

    pub(crate) async fn check(&self) -> Result<(), Error> {
        let res: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        if res.len() == 1 && res[0] == "ok" {
            Ok(())
        } else {
            Err(Error::Corrupt(format!("integrity check found {} problem(s)", res.len())))
        }
    }

    /// Takes the write lock, counting the write for the checkpointer.
    async fn lock_write(&self) -> WriteGuard<'_> {
        let guard = self.write.lock().await;
        self.writes.count.fetch_add(1, Ordering::Release);
        WriteGuard { guard, writes: &self.writes }
    }

    async fn begin_write(&self) -> Result<(WriteGuard<'_>, Tx), Error> {
        let guard = self.lock_write().await;
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        Ok((guard, tx))
    }

    // ---- ledger ----------------------------------------------------------------------------

    pub(crate) async fn ledger_append(&self, entries: &[NewLedgerEntry]) -> Result<u64, Error> {
        self.append_ledger(entries, false).await
    }

    /// [`SqliteStore::ledger_append`] whose commit is not flushed to the disk (`synchronous=
    /// NORMAL` for this transaction: durable against a crash of the process, not yet of the
    /// machine) until [`SqliteStore::sync`] or any later flushed commit. For records that are
    /// durable elsewhere already (the ledger's journal).
    pub(crate) async fn ledger_append_deferred(
        &self,
        entries: &[NewLedgerEntry],
    ) -> Result<u64, Error> {
        self.append_ledger(entries, self.sync_full).await
    }

    /// Makes every transaction committed so far durable: flushes the WAL and the database file
    /// (`fsync`), under the write lock. A deferred commit's frames are in the WAL, or, once a
    /// checkpoint has copied them, in the database file (a checkpoint flushes the WAL before it
    /// copies and the database file once it has copied everything, before the WAL starts over).
    pub(crate) async fn sync(&self) -> Result<(), Error> {
        let _guard = self.lock_write().await;
        let db = self.path.clone();
        let mut wal = db.as_os_str().to_os_string();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for p in [&wal, &db] {
                match std::fs::File::open(p) {
                    Ok(f) => f.sync_all()?,
                    // No WAL (nothing written since it was truncated): nothing to flush there.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && p == &wal => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| Error::Backend("flushing the SQLite files panicked".into()))?
        .map_err(|e| Error::Backend(format!("cannot flush the SQLite files: {e}")))
    }

    async fn append_ledger(
        &self,
        entries: &[NewLedgerEntry],
        deferred: bool,
    ) -> Result<u64, Error> {
        if entries.is_empty() {
            return self.ledger_len().await;
        }
        let cats: Vec<Vec<&str>> =
            entries.iter().map(|e| canonical_categories(&e.categories)).collect();
        let mut guard = self.lock_write().await;
        let n = entries.len() as i64;
        if let Some(start) = guard.next_idx.take() {
            match self.append_at(start, entries, &cats, deferred).await {
                Ok(()) => {
                    guard.next_idx = Some(start + n);
                    return to_u64(start);
                }
                // Another process appended: read the end below.
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Here (the first append, or another process appended) the commit is flushed even when
        // deferred was asked for: stronger, and rare.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let start: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_ledger(&mut tx, start, entries, &cats).await?;
        tx.commit().await.map_err(map_err)?;
        guard.next_idx = Some(start + n);
        to_u64(start)
    }

    /// Appends `entries` at `start` in one statement list (`BEGIN IMMEDIATE`, the inserts,
    /// `COMMIT`) sent to the writer connection at once: one hand-off to its thread instead of one
    /// per statement. A failure rolls back; a connection whose state is then unknown is closed.
    /// `unsynced`: the commit runs with `synchronous=NORMAL` and the connection goes back to
    /// `FULL` after it (closed instead, when that cannot be made sure of).
    async fn append_at(
        &self,
        start: i64,
        entries: &[NewLedgerEntry],
        cats: &[Vec<&str>],
        unsynced: bool,
    ) -> Result<(), Error> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(if unsynced {
            "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE; "
        } else {
            "BEGIN IMMEDIATE; "
        });
        for (c, chunk) in entries.chunks(CHUNK).enumerate() {
            let base = start + (c * CHUNK) as i64;
            push_ledger_rows(&mut qb, base, chunk);
            qb.push("; ");
        }
        let pairs = category_pairs(start, cats);
        for chunk in pairs.chunks(CHUNK) {
            push_category_rows(&mut qb, chunk);
            qb.push("; ");
        }
        qb.push(if unsynced { "COMMIT; PRAGMA synchronous = FULL" } else { "COMMIT" });
        let mut conn = self.writer.acquire().await.map_err(map_err)?;
        let Err(e) = qb.build().execute(&mut *conn).await else { return Ok(()) };
        if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
            // "no transaction is active" is the expected answer when BEGIN failed; either way
            // this connection is not trusted again.
            conn.close_on_drop();
        } else if unsynced
            && sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await.is_err()
        {
            // Every other write on this connection must be flushed: never keep it at NORMAL.
            conn.close_on_drop();
        }
        Err(map_err(e))
    }

    pub(crate) async fn ledger_len(&self) -> Result<u64, Error> {
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        to_u64(n)
    }

    pub(crate) async fn ledger_read(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<LedgerEntry>, Error> {
        if start >= end {
            return Ok(Vec::new());
        }
        sqlx::query(
            "SELECT idx, leaf_hash, body, ts_ms FROM ledger_entries \
             WHERE idx >= ? AND idx < ? ORDER BY idx",
        )
        .bind(to_i64(start))
        .bind(to_i64(end))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?
        .iter()
        .map(ledger_entry)
        .collect()
    }

    pub(crate) async fn ledger_read_rows(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<LedgerRow>, Error> {
        if start >= end {
            return Ok(Vec::new());
        }
        let (s, e) = (to_i64(start), to_i64(end));
        // One read transaction: the categories are those of the entries read.
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let mut rows = sqlx::query(
            "SELECT idx, leaf_hash, body, ts_ms, actor, action, use_case, decision \
             FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
        )
        .bind(s)
        .bind(e)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| {
            Ok(LedgerRow {
                index: to_u64(r.try_get("idx").map_err(map_err)?)?,
                entry: NewLedgerEntry {
                    leaf_hash: hash32(r.try_get::<&[u8], _>("leaf_hash").map_err(map_err)?)?,
                    body: r.try_get("body").map_err(map_err)?,
                    ts_ms: r.try_get("ts_ms").map_err(map_err)?,
                    actor: r.try_get("actor").map_err(map_err)?,
                    action: r.try_get("action").map_err(map_err)?,
                    use_case: r.try_get("use_case").map_err(map_err)?,
                    decision: r.try_get("decision").map_err(map_err)?,
                    categories: Vec::new(),
                },
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
        // By primary key (idx, category): in index order, each entry's sorted.
        let cats: Vec<(i64, String)> = sqlx::query_as(
            "SELECT idx, category FROM ledger_categories \
             WHERE idx >= ? AND idx < ? ORDER BY idx, category",
        )
        .bind(s)
        .bind(e)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.rollback().await.map_err(map_err)?;
        let mut at = 0;
        for (idx, category) in cats {
            let idx = to_u64(idx)?;
            while at < rows.len() && rows[at].index < idx {
                at += 1;
            }
            match rows.get_mut(at) {
                Some(r) if r.index == idx => r.entry.categories.push(category),
                _ => {}
            }
        }
        Ok(rows)
    }

    pub(crate) async fn ledger_leaf_hashes(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<[u8; 32]>, Error> {
        if start >= end {
            return Ok(Vec::new());
        }
        let (s, e) = (to_i64(start), to_i64(end));
        let len = self.ledger_len().await?;
        let expect = usize::try_from(end.min(len).saturating_sub(start)).unwrap_or(0);
        let mut out = Vec::with_capacity(expect);
        let mut rows = sqlx::query(
            "SELECT leaf_hash FROM ledger_entries INDEXED BY ledger_entries_leaf \
             WHERE idx >= ? AND idx < ? ORDER BY idx",
        )
        .bind(s)
        .bind(e)
        .fetch(&self.pool);
        while let Some(r) = rows.try_next().await.map_err(map_err)? {
            out.push(hash32(r.try_get::<&[u8], _>(0).map_err(map_err)?)?);
        }
        Ok(out)
    }

    pub(crate) async fn ledger_search(&self, q: &LedgerQuery) -> Result<Vec<LedgerEntry>, Error> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT idx, leaf_hash, body, ts_ms FROM ledger_entries WHERE 1 = 1");
        if let Some(v) = q.from_ms {
            qb.push(" AND ts_ms >= ").push_bind(v);
        }
        if let Some(v) = q.to_ms {
            qb.push(" AND ts_ms < ").push_bind(v);
        }
        if let Some(v) = &q.actor {
            qb.push(" AND actor = ").push_bind(v.as_str());
        }
        if let Some(v) = &q.use_case {
            qb.push(" AND use_case = ").push_bind(v.as_str());
        }
        if let Some(v) = &q.decision {
            qb.push(" AND decision = ").push_bind(v.as_str());
        }
        if let Some(v) = &q.action {
            qb.push(" AND action = ").push_bind(v.as_str());
        }
        if let Some(v) = q.after_index {
            qb.push(" AND idx > ").push_bind(to_i64(v));
        }
        if let Some(v) = &q.category {
            // By primary key (idx, category), entry by entry in index order.
            qb.push(
                " AND EXISTS (SELECT 1 FROM ledger_categories c \
                 WHERE c.idx = ledger_entries.idx AND c.category = ",
            )
            .push_bind(v.as_str())
            .push(")");
        }
        qb.push(" ORDER BY idx LIMIT ").push_bind(to_i64(q.limit));
        qb.build().fetch_all(&self.pool).await.map_err(map_err)?.iter().map(ledger_entry).collect()
    }

    pub(crate) async fn checkpoint_put(
        &self,
        c: &StoredCheckpoint,
    ) -> Result<CheckpointPut, Error> {
        // Under the write lock (BEGIN IMMEDIATE holds it against other processes too): nothing
        // is stored between the checks and the insert.
        let (_guard, mut tx) = self.begin_write().await?;
        let same_size = sqlx::query(
            "SELECT tree_size, root_hash, ts_ms, note FROM checkpoints WHERE tree_size = ?",
        )
        .bind(to_i64(c.tree_size))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        .as_ref()
        .map(checkpoint)
        .transpose()?;
        let latest = sqlx::query(
            "SELECT tree_size, root_hash, ts_ms, note FROM checkpoints \
             ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        .as_ref()
        .map(checkpoint)
        .transpose()?;
        let max_ts: Option<i64> = sqlx::query_scalar("SELECT MAX(ts_ms) FROM checkpoints")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        if let Some(not_stored) = CheckpointPut::order(c, same_size, latest, max_ts)? {
            return Ok(not_stored);
        }
        insert_checkpoints(&mut tx, std::slice::from_ref(c)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(CheckpointPut::Stored)
    }

    pub(crate) async fn checkpoint_latest(&self) -> Result<Option<StoredCheckpoint>, Error> {
        sqlx::query(
            "SELECT tree_size, root_hash, ts_ms, note FROM checkpoints \
             ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .as_ref()
        .map(checkpoint)
        .transpose()
    }

    pub(crate) async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, Error> {
        sqlx::query("SELECT tree_size, root_hash, ts_ms, note FROM checkpoints ORDER BY tree_size")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(checkpoint)
            .collect()
    }

    // ---- vault -----------------------------------------------------------------------------

    /// The key ids stored (those that did not exist).
    pub(crate) async fn data_keys_put_new(
        &self,
        keys: &[DataKeyRow],
    ) -> Result<Vec<String>, Error> {
        let (_guard, mut tx) = self.begin_write().await?;
        let stored = insert_new_data_keys(&mut tx, &keys.iter().collect::<Vec<_>>()).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(stored)
    }

    /// The key ids stored, with the rows of each (the first of a key id in `scopes` only).
    pub(crate) async fn new_scopes_put(
        &self,
        scopes: &[crate::NewScope],
    ) -> Result<Vec<String>, Error> {
        let (_guard, mut tx) = self.begin_write().await?;
        let keys: Vec<&DataKeyRow> = scopes.iter().map(|s| &s.key).collect();
        let stored = insert_new_data_keys(&mut tx, &keys).await?;
        let rows = crate::rows_of_stored(scopes, &stored);
        // Plain inserts: no row can exist under a key made in this transaction.
        insert_vault(&mut tx, &rows, false).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(stored)
    }

    pub(crate) async fn data_key_put(&self, k: &DataKeyRow) -> Result<(), Error> {
        let (_guard, mut tx) = self.begin_write().await?;
        insert_data_keys(&mut tx, std::slice::from_ref(k)).await?;
        tx.commit().await.map_err(map_err)
    }

    /// The first row of `SELECT <a data key's columns> FROM data_keys WHERE <rest>`, with `arg`
    /// bound to the one parameter of `rest`.
    async fn data_key_where(&self, rest: &str, arg: &str) -> Result<Option<DataKeyRow>, Error> {
        sqlx::query(&format!("SELECT {KEY_COLS} FROM data_keys WHERE {rest}"))
            .bind(arg)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(data_key)
            .transpose()
    }

    pub(crate) async fn data_key_active(&self, scope: &str) -> Result<Option<DataKeyRow>, Error> {
        self.data_key_where(
            "scope = ? AND shredded_ms IS NULL ORDER BY created_ms DESC, key_id DESC LIMIT 1",
            scope,
        )
        .await
    }

    pub(crate) async fn data_key_latest(&self, scope: &str) -> Result<Option<DataKeyRow>, Error> {
        self.data_key_where(
            "scope = ? ORDER BY shredded_ms IS NULL DESC, created_ms DESC, key_id DESC LIMIT 1",
            scope,
        )
        .await
    }

    pub(crate) async fn api_key_put(&self, k: &crate::ApiKeyRow) -> Result<(), Error> {
        let roles = serde_json::to_string(&k.roles)
            .map_err(|_| Error::Backend("cannot encode roles".into()))?;
        sqlx::query(&format!(
            "INSERT INTO api_keys ({API_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&k.id)
        .bind(&k.secret_sha256[..])
        .bind(&k.identity)
        .bind(roles)
        .bind(&k.use_case)
        .bind(k.created_ms)
        .bind(k.expires_ms)
        .bind(k.revoked_ms)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(crate) async fn api_key_get(&self, id: &str) -> Result<Option<crate::ApiKeyRow>, Error> {
        sqlx::query(&format!("SELECT {API_KEY_COLS} FROM api_keys WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(api_key)
            .transpose()
    }

    pub(crate) async fn api_keys_list(&self) -> Result<Vec<crate::ApiKeyRow>, Error> {
        sqlx::query(&format!("SELECT {API_KEY_COLS} FROM api_keys ORDER BY created_ms, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(api_key)
            .collect()
    }

    pub(crate) async fn api_key_revoke(&self, id: &str, now_ms: i64) -> Result<bool, Error> {
        let r =
            sqlx::query("UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn data_key_get(&self, key_id: &str) -> Result<Option<DataKeyRow>, Error> {
        self.data_key_where("key_id = ?", key_id).await
    }

    pub(crate) async fn data_keys_live(&self) -> Result<Vec<DataKeyRow>, Error> {
        sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM data_keys WHERE shredded_ms IS NULL ORDER BY key_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?
        .iter()
        .map(data_key)
        .collect()
    }

    pub(crate) async fn data_keys_expired(&self, now_ms: i64) -> Result<Vec<DataKeyRow>, Error> {
        sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM data_keys WHERE shredded_ms IS NULL \
             AND expires_at_ms IS NOT NULL AND expires_at_ms <= ? ORDER BY key_id"
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?
        .iter()
        .map(data_key)
        .collect()
    }

    pub(crate) async fn data_key_rewrap(
        &self,
        key_id: &str,
        old_kek: &str,
        new_kek: &str,
        wrapped: &[u8],
    ) -> Result<bool, Error> {
        let (_guard, mut tx) = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE data_keys SET kek_id = ?, wrapped = ? \
             WHERE key_id = ? AND kek_id = ? AND shredded_ms IS NULL",
        )
        .bind(new_kek)
        .bind(wrapped)
        .bind(key_id)
        .bind(old_kek)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        tx.commit().await.map_err(map_err)?;
        Ok(n == 1)
    }

    pub(crate) async fn data_key_shred(&self, key_id: &str, now_ms: i64) -> Result<bool, Error> {
        let was_live = {
            let (_guard, mut tx) = self.begin_write().await?;
            let shredded: Option<Option<i64>> =
                sqlx::query_scalar("SELECT shredded_ms FROM data_keys WHERE key_id = ?")
                    .bind(key_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
            let Some(shredded) = shredded else {
                return Ok(false);
            };
            // Overwrite in place first, then clear: with secure_delete the old bytes are zeroed.
            sqlx::query(
                "UPDATE data_keys SET wrapped = zeroblob(length(wrapped)) WHERE key_id = ?",
            )
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            sqlx::query(
                "UPDATE data_keys SET wrapped = X'', shredded_ms = COALESCE(shredded_ms, ?) \
                 WHERE key_id = ?",
            )
            .bind(now_ms)
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            sqlx::query("DELETE FROM vault_entries WHERE key_id = ?")
                .bind(key_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            shredded.is_none()
        };
        // Copy the WAL into the main file and truncate it, so the old page images holding the
        // wrapped key leave the WAL too. The key is shredded either way (committed above); if
        // the purge cannot finish now, the checkpointer keeps at it.
        match purge_wal(&self.writer, &self.writes).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "a shredded key's old pages are still in the WAL (another process's \
                     checkpoint or a long read held it up); the checkpointer keeps trying"
                );
                self.writes.hand_over_purge();
            }
            Err(e) => {
                tracing::warn!(error = %map_err(e), "WAL checkpoint after shredding failed");
                self.writes.hand_over_purge();
            }
        }
        Ok(was_live)
    }

    pub(crate) async fn vault_put(&self, rows: &[VaultRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<&str> = rows.iter().map(|r| r.key_id.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let (_guard, mut tx) = self.begin_write().await?;
        // Never store a value under a shredded (or unknown) key; writers are serialised, so no
        // shred can slip in between this check and the commit.
        for chunk in keys.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT COUNT(*) FROM data_keys WHERE shredded_ms IS NULL AND key_id IN (",
            );
            let mut sep = qb.separated(", ");
            for k in chunk {
                sep.push_bind(*k);
            }
            qb.push(")");
            let live: i64 = qb.build_query_scalar().fetch_one(&mut *tx).await.map_err(map_err)?;
            if live != chunk.len() as i64 {
                return Err(Error::Conflict(
                    "vault rows name a shredded or unknown data key".into(),
                ));
            }
        }
        insert_vault(&mut tx, rows, true).await?;
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn vault_tokens(&self, scope: &str) -> Result<Vec<String>, Error> {
        sqlx::query_scalar("SELECT token FROM vault_entries WHERE scope = ?")
            .bind(scope)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    pub(crate) async fn vault_get(
        &self,
        scope: &str,
        tokens: &[String],
    ) -> Result<Vec<VaultRow>, Error> {
        let mut out = Vec::new();
        for chunk in tokens.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("SELECT {VAULT_COLS} FROM vault_entries WHERE scope = "));
            qb.push_bind(scope).push(" AND token IN (");
            let mut sep = qb.separated(", ");
            for t in chunk {
                sep.push_bind(t.as_str());
            }
            qb.push(")");
            for r in qb.build().fetch_all(&self.pool).await.map_err(map_err)? {
                out.push(vault_row(&r)?);
            }
        }
        out.sort_by(|a, b| a.token.cmp(&b.token));
        out.dedup_by(|a, b| a.token == b.token);
        Ok(out)
    }

    /// Every row of these fingerprints, oldest first (then lowest token).
    pub(crate) async fn vault_find_rows(
        &self,
        scope: &str,
        fingerprints: &[Vec<u8>],
    ) -> Result<Vec<VaultRow>, Error> {
        if fingerprints.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {VAULT_COLS} FROM vault_entries WHERE scope = "));
        qb.push_bind(scope).push(" AND fingerprint IN (");
        let mut sep = qb.separated(", ");
        for f in fingerprints {
            sep.push_bind(&f[..]);
        }
        qb.push(") ORDER BY created_ms, token");
        qb.build().fetch_all(&self.pool).await.map_err(map_err)?.iter().map(vault_row).collect()
    }

    pub(crate) async fn vault_find(
        &self,
        scope: &str,
        fingerprint: &[u8],
    ) -> Result<Option<VaultRow>, Error> {
        sqlx::query(&format!(
            "SELECT {VAULT_COLS} FROM vault_entries WHERE scope = ? AND fingerprint = ? \
             ORDER BY created_ms, token LIMIT 1"
        ))
        .bind(scope)
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .as_ref()
        .map(vault_row)
        .transpose()
    }

    // ---- backup ----------------------------------------------------------------------------

    pub(crate) async fn backup(&self, w: &mut backup::Writer) -> Result<(), Error> {
        // One read transaction: in WAL mode every SELECT below sees the same snapshot.
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        {
            let mut rows = sqlx::query(
                "SELECT e.idx, e.leaf_hash, e.body, e.ts_ms, e.actor, e.action, e.use_case, \
                 e.decision, (SELECT json_group_array(category) FROM \
                 (SELECT category FROM ledger_categories c WHERE c.idx = e.idx ORDER BY category)) \
                 AS cats FROM ledger_entries e ORDER BY e.idx",
            )
            .fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(map_err)? {
                let cats: String = r.try_get("cats").map_err(map_err)?;
                let categories: Vec<String> = serde_json::from_str(&cats)
                    .map_err(|_| Error::Corrupt("stored categories are not readable".into()))?;
                let entry = NewLedgerEntry {
                    leaf_hash: hash32(r.try_get::<&[u8], _>("leaf_hash").map_err(map_err)?)?,
                    body: r.try_get("body").map_err(map_err)?,
                    ts_ms: r.try_get("ts_ms").map_err(map_err)?,
                    actor: r.try_get("actor").map_err(map_err)?,
                    action: r.try_get("action").map_err(map_err)?,
                    use_case: r.try_get("use_case").map_err(map_err)?,
                    decision: r.try_get("decision").map_err(map_err)?,
                    categories,
                };
                let index = to_u64(r.try_get("idx").map_err(map_err)?)?;
                w.write(&Record::Ledger { index, entry }).await?;
            }
        }
        {
            let mut rows = sqlx::query(
                "SELECT tree_size, root_hash, ts_ms, note FROM checkpoints ORDER BY tree_size",
            )
            .fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(map_err)? {
                w.write(&Record::Checkpoint(checkpoint(&r)?)).await?;
            }
        }
        {
            let sql = format!("SELECT {KEY_COLS} FROM data_keys ORDER BY key_id");
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(map_err)? {
                w.write(&Record::DataKey(data_key(&r)?)).await?;
            }
        }
        {
            let sql = format!("SELECT {VAULT_COLS} FROM vault_entries ORDER BY scope, token");
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(map_err)? {
                w.write(&Record::Vault(vault_row(&r)?)).await?;
            }
        }
        {
            let sql = format!("SELECT {API_KEY_COLS} FROM api_keys ORDER BY id");
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(map_err)? {
                w.write(&Record::ApiKey(api_key(&r)?)).await?;
            }
        }
        tx.rollback().await.map_err(map_err)
    }

    pub(crate) async fn restore(
        &self,
        r: &mut backup::Reader<'_>,
        expect: &BackupSummary,
    ) -> Result<(), Error> {
        let (mut guard, mut tx) = self.begin_write().await?;
        // The ledger's end changes below.
        guard.next_idx = None;
        let any: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM ledger_entries LIMIT 1)) + \
             (SELECT COUNT(*) FROM (SELECT 1 FROM checkpoints LIMIT 1)) + \
             (SELECT COUNT(*) FROM (SELECT 1 FROM data_keys LIMIT 1)) + \
             (SELECT COUNT(*) FROM (SELECT 1 FROM vault_entries LIMIT 1)) + \
             (SELECT COUNT(*) FROM (SELECT 1 FROM api_keys LIMIT 1))",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        if any != 0 {
            return Err(Error::NotEmpty);
        }
        let mut batch = backup::Batch::default();
        while let Some(rec) = r.next().await? {
            if let Some(full) = batch.push(rec, CHUNK) {
                self.load(&mut tx, full).await?;
            }
        }
        self.load(&mut tx, batch).await?;
        r.finish(expect)?;
        tx.commit().await.map_err(map_err)
    }

    async fn load(&self, tx: &mut Tx, b: backup::Batch) -> Result<(), Error> {
        if let Some(start) = b.ledger_start {
            let entries: Vec<NewLedgerEntry> = b.ledger;
            let cats: Vec<Vec<&str>> =
                entries.iter().map(|e| canonical_categories(&e.categories)).collect();
            insert_ledger(tx, to_i64(start), &entries, &cats).await?;
        }
        insert_checkpoints(tx, &b.checkpoints).await?;
        insert_data_keys(tx, &b.data_keys).await?;
        insert_vault(tx, &b.vault, false).await?;
        insert_api_keys(tx, &b.api_keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> NewLedgerEntry {
        let mut leaf_hash = [0u8; 32];
        leaf_hash[..8].copy_from_slice(&i.to_be_bytes());
        NewLedgerEntry {
            leaf_hash,
            body: format!("{{\"seq\":{i}}}").into_bytes(),
            ts_ms: 1_700_000_000_000 + i as i64,
            actor: "svc:test".into(),
            action: "chat".into(),
            use_case: "uc".into(),
            decision: "allow".into(),
            categories: vec![],
        }
    }

    async fn synchronous(s: &SqliteStore) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous").fetch_one(&s.writer).await.unwrap()
    }

    /// A deferred append runs at `NORMAL` for its own commit only: the writer is back at the
    /// configured level after it, after one that failed and was retried too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deferred_append_leaves_the_writer_at_the_configured_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let full = crate::Options::default();
        let s = SqliteStore::open(&path, &full).await.unwrap();
        assert_eq!(synchronous(&s).await, 2);
        assert_eq!(s.ledger_append(&[entry(0)]).await.unwrap(), 0);
        assert_eq!(s.ledger_append_deferred(&[entry(1), entry(2)]).await.unwrap(), 1);
        assert_eq!(synchronous(&s).await, 2, "FULL again after a deferred commit");
        // Another process appends: the deferred append's insert at the index it knew fails,
        // rolls back, and the append goes through the path that reads the end.
        let other = SqliteStore::open(&path, &full).await.unwrap();
        assert_eq!(other.ledger_append(&[entry(3)]).await.unwrap(), 3);
        assert_eq!(s.ledger_append_deferred(&[entry(4)]).await.unwrap(), 4);
        assert_eq!(synchronous(&s).await, 2, "FULL again after a failed deferred commit");
        s.sync().await.unwrap();
        assert_eq!(s.ledger_len().await.unwrap(), 5);
        other.close().await;
        s.close().await;
        // With `sqlite_sync: normal` every commit is NORMAL already.
        let normal = crate::Options::default().sqlite_sync(crate::SqliteSync::Normal);
        let s = SqliteStore::open(&path, &normal).await.unwrap();
        assert_eq!(s.ledger_append_deferred(&[entry(5)]).await.unwrap(), 5);
        assert_eq!(synchronous(&s).await, 1);
        s.sync().await.unwrap();
        s.close().await;
        // After a close the WAL is gone (truncated, then removed): sync has the database only.
        let s = SqliteStore::open(&path, &full).await.unwrap();
        s.sync().await.unwrap();
        assert_eq!(s.ledger_len().await.unwrap(), 6);
    }

    /// A new database, its WAL and its shared-memory file are for the owner only, whatever
    /// the umask.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/p.db");
        let s = SqliteStore::open(&path, &crate::Options::default()).await.unwrap();
        s.ledger_append(&[entry(0)]).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let f = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}: {mode:o}");
        }
        s.close().await;
        // An existing database opens as before.
        let s = SqliteStore::open(&path, &crate::Options::default()).await.unwrap();
        assert_eq!(s.ledger_len().await.unwrap(), 1);
    }
}
