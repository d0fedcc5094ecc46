//! Storage for phigate: one API ([`Store`]) over two backends, each with its own migration set.
//!
//! # Backends and URLs
//! - **SQLite**, the embedded default: one file. `sqlite:///abs/path.db`, `sqlite://rel/path.db`,
//!   `sqlite:rel/path.db` or a plain file path. The file (and its directory) is created when
//!   missing. Every connection runs with `journal_mode=WAL`, `synchronous=FULL` (a write is on disk
//!   when the call returns), `foreign_keys=ON`, `secure_delete=ON` (freed space is zeroed, so a
//!   shredded key does not linger in free pages) and a 5 s busy timeout. Writes go through one
//!   dedicated connection (its page cache stays valid between transactions), queued FIFO in the
//!   process, and take the write lock up front (`BEGIN IMMEDIATE`), so several processes may
//!   share the file too, at SQLite's pace. Reads use a small pool of other connections.
//! - **PostgreSQL**, for several gateway replicas: `postgres://…` or `postgresql://…`.
//!   Appends to the ledger from any number of processes keep one gapless total order: each append
//!   takes a transaction-scoped advisory lock before it reads the next index, so commit order is
//!   index order. Connecting and acquiring a pooled connection time out after 5 s
//!   ([`Error::Unavailable`]), so an unreachable server never hangs a caller.
//!
//! Each backend has its own migrations (`migrations/sqlite`, `migrations/postgres`, embedded in
//! the binary) and [`Store::open`] applies them. A database whose schema is newer than this build
//! is refused with [`Error::SchemaTooNew`]; a file that is not a SQLite database, is damaged, or
//! holds somebody else's tables is refused with [`Error::Corrupt`].
//!
//! # Shredding, and where bytes may linger
//! [`Store::data_key_shred`] clears the wrapped key and deletes the vault rows under it in one
//! transaction. On SQLite, `secure_delete` zeroes the freed space and the WAL is checkpointed and
//! truncated right after, so the bytes leave the files (tests search the files for them, also
//! with writes and background checkpoints running beside the shred). That checkpoint takes its
//! turn with this process's background ones (SQLite fails a second concurrent checkpoint at once)
//! and retries for up to 10 s while another process's checkpoint or an old read holds it up
//! (each try gives up at once rather than wait inside SQLite, where it would hold up every
//! writer); past that it warns and the background checkpointer retries until it finishes. On
//! PostgreSQL the old row versions stay in dead tuples until `VACUUM` (autovacuum) reclaims them,
//! and in WAL segments and base backups until those age out: the wrapped key is still useless
//! without the key-encryption key, but operators who need prompt physical erasure should run
//! `VACUUM data_keys, vault_entries` after shredding.
//!
//! # What the store holds
//! Bytes, ids and numbers only: ledger entries (their canonical bytes plus indexed copies of a few
//! fields for search), signed checkpoints, wrapped data keys, encrypted vault rows and API keys
//! (the SHA-256 of each secret, never the secret). It knows
//! nothing of Merkle trees or cryptography and never receives raw PHI.
//!
//! # What this crate must never do
//! - Leak backend types: nothing of `sqlx` appears in the public API.
//! - Put bound values, row contents or passwords into errors, logs or `Debug` output: errors carry
//!   a kind and a constraint, table or SQLSTATE name; types that hold keys or ciphertexts print
//!   only lengths.
//! - Renumber, rewrite or delete ledger entries; leave a hole in the ledger's indexes.
//! - Store a checkpoint of a tree size below a stored one's, or signed before a stored one
//!   (exports would fail verification from then on), whatever runs beside it.
//! - Return a wrapped data key after it was shredded, or keep the vault rows encrypted under it.
//! - Write anything during a restore before the backup's checksum and counts have been verified,
//!   or restore into a store that already holds data.

#![deny(missing_docs)]

use std::fmt;
use std::path::Path;
use std::sync::Arc;

mod backup;
mod error;
mod postgres;
mod sqlite;

pub use error::Error;

/// Which backend a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One SQLite file (the embedded default).
    Sqlite,
    /// A PostgreSQL database, possibly shared by several gateway replicas.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// A ledger entry to append. The store keeps `body` as the truth and the other fields as indexed
/// copies for [`Store::ledger_search`].
#[derive(Clone, PartialEq, Eq)]
pub struct NewLedgerEntry {
    /// RFC 9162 leaf hash of `body`, computed by the ledger.
    pub leaf_hash: [u8; 32],
    /// The canonical record bytes (the ledger's encoding).
    pub body: Vec<u8>,
    /// Time of the event, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Who acted (an organization identity, never a patient).
    pub actor: String,
    /// What was done (e.g. `chat`, `policy.change`).
    pub action: String,
    /// The use case the request ran under.
    pub use_case: String,
    /// The policy decision (e.g. `allow`, `redact`, `block`).
    pub decision: String,
    /// PHI categories found (e.g. `["NAME", "DATE"]`); stored sorted and without duplicates.
    pub categories: Vec<String>,
}

impl fmt::Debug for NewLedgerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewLedgerEntry")
            .field("leaf_hash", &hex::encode(self.leaf_hash))
            .field("body_len", &self.body.len())
            .field("ts_ms", &self.ts_ms)
            .field("action", &self.action)
            .field("decision", &self.decision)
            .field("categories", &self.categories)
            .finish_non_exhaustive()
    }
}

/// A stored ledger entry.
#[derive(Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Position in the log, from 0, without gaps.
    pub index: u64,
    /// RFC 9162 leaf hash of `body`.
    pub leaf_hash: [u8; 32],
    /// The canonical record bytes.
    pub body: Vec<u8>,
    /// Time of the event, milliseconds since the Unix epoch.
    pub ts_ms: i64,
}

impl fmt::Debug for LedgerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerEntry")
            .field("index", &self.index)
            .field("leaf_hash", &hex::encode(self.leaf_hash))
            .field("body_len", &self.body.len())
            .field("ts_ms", &self.ts_ms)
            .finish()
    }
}

/// Filters for [`Store::ledger_search`]; every given filter must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerQuery {
    /// Entries with `ts_ms >= from_ms`.
    pub from_ms: Option<i64>,
    /// Entries with `ts_ms < to_ms`.
    pub to_ms: Option<i64>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact use case.
    pub use_case: Option<String>,
    /// Exact decision.
    pub decision: Option<String>,
    /// Exact action.
    pub action: Option<String>,
    /// Entries whose categories include this one.
    pub category: Option<String>,
    /// Entries with `index > after_index` (paging: pass the last index of the previous page).
    pub after_index: Option<u64>,
    /// At most this many entries (0 returns none).
    pub limit: u64,
}

/// A signed checkpoint of the ledger, stored verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Number of entries the checkpoint covers; at most one checkpoint per size.
    pub tree_size: u64,
    /// Merkle root over the first `tree_size` entries.
    pub root_hash: [u8; 32],
    /// When it was signed, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The signed note, verbatim.
    pub note: String,
}

/// What [`Store::checkpoint_put`] did with a checkpoint.
///
/// Stored checkpoints are kept in one order: by tree size and, at the same time, by timestamp
/// (a checkpoint of more entries is never signed earlier than one of fewer). A checkpoint
/// that would break it is not stored, whoever else stores checkpoints at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointPut {
    /// Stored.
    Stored,
    /// This very checkpoint was stored already; nothing changed.
    Exists,
    /// Not stored: a checkpoint of a larger tree size is stored (the largest, here). The log's
    /// history below the latest checkpoint is closed: use that one.
    Behind(StoredCheckpoint),
    /// Not stored: its timestamp is earlier than a stored checkpoint's. Sign it again with a
    /// timestamp of at least `not_before_ms`.
    TooEarly {
        /// The latest timestamp of the stored checkpoints.
        not_before_ms: i64,
    },
}

impl CheckpointPut {
    /// Whether `c` may be stored, given what is stored (read in the transaction that would
    /// store it): the checkpoint of its size, the latest (largest) one, and the latest
    /// timestamp. `Ok(None)`: store it. A different checkpoint of its size is a conflict.
    pub(crate) fn order(
        c: &StoredCheckpoint,
        same_size: Option<StoredCheckpoint>,
        latest: Option<StoredCheckpoint>,
        max_ts: Option<i64>,
    ) -> Result<Option<CheckpointPut>, Error> {
        if let Some(s) = same_size {
            return if s == *c {
                Ok(Some(CheckpointPut::Exists))
            } else {
                Err(Error::Conflict("another checkpoint is stored for this tree size".into()))
            };
        }
        if let Some(l) = latest.filter(|l| l.tree_size > c.tree_size) {
            return Ok(Some(CheckpointPut::Behind(l)));
        }
        Ok(max_ts.filter(|t| *t > c.ts_ms).map(|t| CheckpointPut::TooEarly { not_before_ms: t }))
    }
}

/// A stored ledger entry with its search copies, as [`Store::ledger_read_rows`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// Position in the log.
    pub index: u64,
    /// The entry: its leaf hash and body, and the copies of its fields that searches filter
    /// on, as stored (categories sorted).
    pub entry: NewLedgerEntry,
}

/// Sets a ledger entry's search copies (`ts_ms`, `actor`, `action`, `use_case`, `decision`,
/// `categories`) from its body, for [`Store::restore_with`]. It must change nothing else. An
/// error (which must not quote the body) refuses the backup file.
pub type Reindex = dyn Fn(&mut NewLedgerEntry) -> Result<(), String> + Send + Sync;

/// An API key as stored: the SHA-256 of its secret, never the secret (the `policy` crate's).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// The key id (the `<id>` of `pg_<id>_<secret>`).
    pub id: String,
    /// SHA-256 of the secret.
    pub secret_sha256: [u8; 32],
    /// The organization identity it is bound to (`user:...`, `svc:...`).
    pub identity: String,
    /// Roles, sorted.
    pub roles: Vec<String>,
    /// Default use case.
    pub use_case: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When the key stops working, if ever.
    pub expires_ms: Option<i64>,
    /// When the key was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

impl fmt::Debug for ApiKeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRow")
            .field("id", &self.id)
            .field("identity", &self.identity)
            .field("roles", &self.roles)
            .field("use_case", &self.use_case)
            .field("created_ms", &self.created_ms)
            .field("expires_ms", &self.expires_ms)
            .field("revoked_ms", &self.revoked_ms)
            .finish_non_exhaustive()
    }
}

/// A data key of the vault, wrapped by a key-encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyRow {
    /// Unique id of the key.
    pub key_id: String,
    /// The scope the key encrypts.
    pub scope: String,
    /// Which key-encryption key wrapped it.
    pub kek_id: String,
    /// The wrapped key bytes (empty once shredded).
    pub wrapped: Vec<u8>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When the key's retention ends, if ever.
    pub expires_at_ms: Option<i64>,
    /// When the key was shredded, if it was.
    pub shredded_ms: Option<i64>,
}

impl fmt::Debug for DataKeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeyRow")
            .field("key_id", &self.key_id)
            .field("scope", &self.scope)
            .field("kek_id", &self.kek_id)
            .field("wrapped_len", &self.wrapped.len())
            .field("created_ms", &self.created_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("shredded_ms", &self.shredded_ms)
            .finish()
    }
}

/// One token of the vault and its encrypted value.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultRow {
    /// The scope (conversation, tenant…) the token lives in.
    pub scope: String,
    /// The token (e.g. `[NAME_1]`).
    pub token: String,
    /// The data key the value is encrypted under; must exist in the data keys.
    pub key_id: String,
    /// Keyed fingerprint of the value, so the same value gets the same token in a scope.
    pub fingerprint: Vec<u8>,
    /// Nonce of the encryption.
    pub nonce: Vec<u8>,
    /// The encrypted value.
    pub ciphertext: Vec<u8>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

impl fmt::Debug for VaultRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultRow")
            .field("scope", &self.scope)
            .field("token", &self.token)
            .field("key_id", &self.key_id)
            .field("fingerprint_len", &self.fingerprint.len())
            .field("nonce_len", &self.nonce.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

/// A scope made at one stroke: its first data key and the values stored under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScope {
    /// The scope's first data key.
    pub key: DataKeyRow,
    /// Its values: every row names `key`'s scope and id, and no two share a token.
    pub rows: Vec<VaultRow>,
}

/// What a backup or a restore moved, and the SHA-256 of the backup file's content (hex).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// Ledger entries.
    pub ledger_entries: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// Data keys (shredded ones included, with their wrapped bytes empty).
    pub data_keys: u64,
    /// Vault rows.
    pub vault_rows: u64,
    /// API keys (revoked and expired ones included). Always 0 for a version 1 backup file,
    /// which predates API keys in backups.
    pub api_keys: u64,
    /// SHA-256 (hex) over every byte of the file before its trailer line.
    pub sha256: String,
}

enum Inner {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// The store: opened once, cloned cheaply (an `Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// When a SQLite commit counts as done. (PostgreSQL's is the server's `synchronous_commit`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqliteSync {
    /// Every commit is flushed to the disk (`fsync`) before it is acknowledged: an acknowledged
    /// ledger record survives a power cut. The default.
    #[default]
    Full,
    /// Commits reach the operating system before they are acknowledged, and the disk at each
    /// WAL checkpoint (every 16 MiB of WAL): an acknowledged record survives the process being
    /// killed, but the commits since the last checkpoint can be lost in a power cut or kernel
    /// crash (the database stays consistent either way). Saves a disk flush on every commit.
    Normal,
}

/// How a store is opened. [`Options::default`] is what [`Store::open`] uses.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// SQLite durability (ignored for PostgreSQL).
    pub sqlite_sync: SqliteSync,
}

impl Options {
    /// With this SQLite durability.
    pub fn sqlite_sync(mut self, s: SqliteSync) -> Options {
        self.sqlite_sync = s;
        self
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match &*$self.inner {
            Inner::Sqlite($b) => $e,
            Inner::Postgres($b) => $e,
        }
    };
}

impl Store {
    /// Opens (and migrates) a store.
    ///
    /// `sqlite:///abs/path.db`, `sqlite://rel/path.db`, a plain file path (SQLite), or
    /// `postgres://...` / `postgresql://...`. Creates the SQLite file (and its directory) when
    /// missing, runs the backend's own migrations, refuses a file that is not a phigate store or is
    /// corrupted ([`Error::Corrupt`]), and refuses a schema newer than this build
    /// ([`Error::SchemaTooNew`]). An unreachable PostgreSQL gives [`Error::Unavailable`] within a
    /// few seconds.
    pub async fn open(url: &str) -> Result<Store, Error> {
        Store::open_with(url, &Options::default()).await
    }

    /// [`Store::open`] with options.
    pub async fn open_with(url: &str, options: &Options) -> Result<Store, Error> {
        let inner = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Inner::Postgres(postgres::PgStore::open(url).await?)
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            if path.is_empty() || path.contains('?') || path == ":memory:" {
                return Err(Error::Backend(
                    "a SQLite store needs a file path (no query string, no :memory:)".into(),
                ));
            }
            Inner::Sqlite(sqlite::SqliteStore::open(Path::new(path), options).await?)
        };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        match &*self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// A SQLite database's identity (a random number drawn when it was made, kept in the file:
    /// a copy has the same, a new database another); None on PostgreSQL.
    pub fn sqlite_id(&self) -> Option<u32> {
        match &*self.inner {
            Inner::Sqlite(s) => Some(s.id()),
            Inner::Postgres(_) => None,
        }
    }

    /// The SQLite database file, as opened; None on PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &*self.inner {
            Inner::Sqlite(s) => Some(s.path()),
            Inner::Postgres(_) => None,
        }
    }

    /// Readiness: one round trip to the database.
    pub async fn ping(&self) -> Result<(), Error> {
        dispatch!(self, b => b.ping().await)
    }

    /// Closes the connections (on SQLite the last one folds the WAL into the main file). Calls
    /// after this fail with [`Error::Unavailable`]; other clones of this store are closed too.
    pub async fn close(&self) {
        dispatch!(self, b => b.close().await)
    }

    /// Full consistency check of the database (SQLite `PRAGMA integrity_check`; on PostgreSQL,
    /// that the ledger's indexes are gapless). Slow on big stores: for operators, not hot paths.
    /// [`Error::Corrupt`] when it fails.
    pub async fn check(&self) -> Result<(), Error> {
        dispatch!(self, b => b.check().await)
    }

    // ---- ledger ----------------------------------------------------------------------------

    /// Appends in one transaction and returns the index of the first entry; entries get
    /// consecutive indexes in slice order (an empty slice appends nothing and returns the
    /// length). Several processes on one PostgreSQL append in one total order without gaps.
    /// Durable when it returns.
    pub async fn ledger_append(&self, entries: &[NewLedgerEntry]) -> Result<u64, Error> {
        dispatch!(self, b => b.ledger_append(entries).await)
    }

    /// [`Store::ledger_append`] for records that are durable elsewhere already (the ledger's
    /// journal): on SQLite with `sqlite_sync: full` the commit is not flushed to the disk (it
    /// survives the process, not yet a crash of the machine) until [`Store::sync`] or a later
    /// flushed commit. The same as `ledger_append` otherwise.
    pub async fn ledger_append_deferred(&self, entries: &[NewLedgerEntry]) -> Result<u64, Error> {
        match &*self.inner {
            Inner::Sqlite(s) => s.ledger_append_deferred(entries).await,
            Inner::Postgres(p) => p.ledger_append(entries).await,
        }
    }

    /// Makes every write committed so far durable on the disk, deferred ones included. On
    /// SQLite, flushes the WAL and the database file; on PostgreSQL, nothing to do (its commits
    /// follow the server's `synchronous_commit`).
    pub async fn sync(&self) -> Result<(), Error> {
        match &*self.inner {
            Inner::Sqlite(s) => s.sync().await,
            Inner::Postgres(_) => Ok(()),
        }
    }

    /// Number of entries (the next index).
    pub async fn ledger_len(&self) -> Result<u64, Error> {
        dispatch!(self, b => b.ledger_len().await)
    }

    /// Entries with `start <= index < end`, in index order.
    pub async fn ledger_read(&self, start: u64, end: u64) -> Result<Vec<LedgerEntry>, Error> {
        dispatch!(self, b => b.ledger_read(start, end).await)
    }

    /// Entries with `start <= index < end`, in index order, with the search copies of their
    /// fields as stored (to check them against the bodies).
    pub async fn ledger_read_rows(&self, start: u64, end: u64) -> Result<Vec<LedgerRow>, Error> {
        dispatch!(self, b => b.ledger_read_rows(start, end).await)
    }

    /// Only the leaf hashes of `start <= index < end`, in index order (one streamed query).
    pub async fn ledger_leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<[u8; 32]>, Error> {
        dispatch!(self, b => b.ledger_leaf_hashes(start, end).await)
    }

    /// Entries matching every given filter, in index order, at most `limit`. The filters apply
    /// to the search copies, which nothing ties to the bodies: a caller that trusts an answer
    /// checks each body against its query (the ledger does).
    pub async fn ledger_search(&self, q: &LedgerQuery) -> Result<Vec<LedgerEntry>, Error> {
        dispatch!(self, b => b.ledger_search(q).await)
    }

    /// Stores a checkpoint, atomically against every other writer (a transaction under the
    /// write lock on SQLite, under an advisory lock on PostgreSQL): only one of a larger tree
    /// size than every stored checkpoint and not signed earlier than any of them is stored
    /// ([`CheckpointPut`] says which and why not). Storing the same checkpoint again is
    /// [`CheckpointPut::Exists`]; a different checkpoint for a tree size already stored is
    /// [`Error::Conflict`].
    pub async fn checkpoint_put(&self, c: &StoredCheckpoint) -> Result<CheckpointPut, Error> {
        dispatch!(self, b => b.checkpoint_put(c).await)
    }

    /// The checkpoint with the largest tree size, if any.
    pub async fn checkpoint_latest(&self) -> Result<Option<StoredCheckpoint>, Error> {
        dispatch!(self, b => b.checkpoint_latest().await)
    }

    /// Every checkpoint, by tree size.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, Error> {
        dispatch!(self, b => b.checkpoints().await)
    }

    // ---- vault -----------------------------------------------------------------------------

    /// Stores a new data key ([`Error::Conflict`] if the key id exists).
    pub async fn data_key_put(&self, k: &DataKeyRow) -> Result<(), Error> {
        dispatch!(self, b => b.data_key_put(k).await)
    }

    /// Stores new data keys in one transaction: for each, whether it was stored (`false`: its
    /// key id existed already, or came earlier in `keys`).
    pub async fn data_keys_put_new(&self, keys: &[DataKeyRow]) -> Result<Vec<bool>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let stored: std::collections::HashSet<String> =
            dispatch!(self, b => b.data_keys_put_new(keys).await)?.into_iter().collect();
        let mut seen = std::collections::HashSet::new();
        Ok(keys.iter().map(|k| stored.contains(&k.key_id) && seen.insert(&k.key_id)).collect())
    }

    /// Stores new scopes, each its first data key with its rows, all in one transaction (one
    /// commit). For each: `true` when its key and every one of its rows were stored; `false`
    /// when its key id existed already, or came earlier in `scopes` (another writer made that
    /// scope first): nothing of it is stored then. A row that does not name its scope's key,
    /// or two rows of a scope with one token, are [`Error::Conflict`], and nothing of the call
    /// is kept.
    pub async fn vault_put_new_scopes(&self, scopes: &[NewScope]) -> Result<Vec<bool>, Error> {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        for s in scopes {
            let mut tokens = std::collections::HashSet::new();
            if s.rows.iter().any(|r| {
                r.scope != s.key.scope || r.key_id != s.key.key_id || !tokens.insert(&r.token)
            }) {
                return Err(Error::Conflict(
                    "a new scope's rows must name its key and hold each token once".into(),
                ));
            }
        }
        let stored: std::collections::HashSet<String> =
            dispatch!(self, b => b.new_scopes_put(scopes).await)?.into_iter().collect();
        let mut seen = std::collections::HashSet::new();
        Ok(scopes
            .iter()
            .map(|s| stored.contains(&s.key.key_id) && seen.insert(&s.key.key_id))
            .collect())
    }

    /// The newest (by `created_ms`, then `key_id`) unshredded key of a scope, if any.
    pub async fn data_key_active(&self, scope: &str) -> Result<Option<DataKeyRow>, Error> {
        dispatch!(self, b => b.data_key_active(scope).await)
    }

    /// What a scope's keys say in one look: its active key ([`Store::data_key_active`]) if it
    /// has one; else, if every key it had is shredded, one of them; else (the scope never had a
    /// key) `None`.
    pub async fn data_key_latest(&self, scope: &str) -> Result<Option<DataKeyRow>, Error> {
        dispatch!(self, b => b.data_key_latest(scope).await)
    }

    /// A key by id, shredded or not.
    pub async fn data_key_get(&self, key_id: &str) -> Result<Option<DataKeyRow>, Error> {
        dispatch!(self, b => b.data_key_get(key_id).await)
    }

    /// Every unshredded key (for KEK rotation), in key_id order.
    pub async fn data_keys_live(&self) -> Result<Vec<DataKeyRow>, Error> {
        dispatch!(self, b => b.data_keys_live().await)
    }

    /// Unshredded keys whose `expires_at_ms` is <= `now_ms`, in key_id order.
    pub async fn data_keys_expired(&self, now_ms: i64) -> Result<Vec<DataKeyRow>, Error> {
        dispatch!(self, b => b.data_keys_expired(now_ms).await)
    }

    /// Replaces the wrapped bytes after a KEK rotation (compare-and-set on the old kek_id;
    /// a shredded key is never rewrapped). Returns whether the key was updated.
    pub async fn data_key_rewrap(
        &self,
        key_id: &str,
        old_kek: &str,
        new_kek: &str,
        wrapped: &[u8],
    ) -> Result<bool, Error> {
        dispatch!(self, b => b.data_key_rewrap(key_id, old_kek, new_kek, wrapped).await)
    }

    /// Crypto-shred: clears the wrapped key, sets `shredded_ms`, deletes the vault rows encrypted
    /// under it, in one transaction. Idempotent; returns whether the key was live.
    pub async fn data_key_shred(&self, key_id: &str, now_ms: i64) -> Result<bool, Error> {
        dispatch!(self, b => b.data_key_shred(key_id, now_ms).await)
    }

    /// Insert or keep: an existing (scope, token) row is left as it is. Every row's `key_id`
    /// must name a stored, unshredded data key ([`Error::Conflict`] otherwise, and nothing of
    /// the call is kept).
    pub async fn vault_put(&self, rows: &[VaultRow]) -> Result<(), Error> {
        dispatch!(self, b => b.vault_put(rows).await)
    }

    /// The rows of `scope` for the tokens found, in token order (missing tokens are absent).
    pub async fn vault_get(&self, scope: &str, tokens: &[String]) -> Result<Vec<VaultRow>, Error> {
        dispatch!(self, b => b.vault_get(scope, tokens).await)
    }

    /// The tokens `scope` holds, in no given order (tokens are placeholders, never values).
    pub async fn vault_tokens(&self, scope: &str) -> Result<Vec<String>, Error> {
        dispatch!(self, b => b.vault_tokens(scope).await)
    }

    /// [`Store::vault_find`] for several fingerprints at once: one answer per fingerprint, in
    /// order (the oldest match, or `None`).
    pub async fn vault_find_many(
        &self,
        scope: &str,
        fingerprints: &[Vec<u8>],
    ) -> Result<Vec<Option<VaultRow>>, Error> {
        let mut found: std::collections::HashMap<Vec<u8>, VaultRow> =
            std::collections::HashMap::new();
        for chunk in fingerprints.chunks(CHUNK) {
            // Oldest first (then lowest token): the first row seen for a fingerprint is its match.
            let rows = dispatch!(self, b => b.vault_find_rows(scope, chunk).await)?;
            for r in rows {
                found.entry(r.fingerprint.clone()).or_insert(r);
            }
        }
        Ok(fingerprints.iter().map(|f| found.get(f).cloned()).collect())
    }

    /// Looks a value up by its keyed fingerprint (so the same value gets the same token in a
    /// scope). With several matches, the oldest.
    pub async fn vault_find(
        &self,
        scope: &str,
        fingerprint: &[u8],
    ) -> Result<Option<VaultRow>, Error> {
        dispatch!(self, b => b.vault_find(scope, fingerprint).await)
    }

    // ---- API keys ---------------------------------------------------------------------------

    /// Stores a new API key; an existing id is `Error::Conflict`.
    pub async fn api_key_put(&self, k: &ApiKeyRow) -> Result<(), Error> {
        dispatch!(self, b => b.api_key_put(k).await)
    }

    /// The key with this id, revoked or not.
    pub async fn api_key_get(&self, id: &str) -> Result<Option<ApiKeyRow>, Error> {
        dispatch!(self, b => b.api_key_get(id).await)
    }

    /// Every key, by (created_ms, id).
    pub async fn api_keys_list(&self) -> Result<Vec<ApiKeyRow>, Error> {
        dispatch!(self, b => b.api_keys_list().await)
    }

    /// Revokes a key at `now_ms`; `true` when it existed and was not revoked already (a second
    /// revocation keeps the first time).
    pub async fn api_key_revoke(&self, id: &str, now_ms: i64) -> Result<bool, Error> {
        dispatch!(self, b => b.api_key_revoke(id, now_ms).await)
    }

    // ---- backup ----------------------------------------------------------------------------

    /// A consistent snapshot of every table (one read transaction): the ledger, checkpoints,
    /// data keys, vault rows and API keys, in that order, written as one portable file (JSON
    /// lines, format version 2, bytes in base64) ending in a trailer with the counts and a
    /// SHA-256 over everything before it. Written to a temporary file beside `path`, synced,
    /// then renamed.
    pub async fn backup(&self, path: &Path) -> Result<BackupSummary, Error> {
        let mut w = backup::Writer::create(path, self.backend()).await?;
        let res = dispatch!(self, b => b.backup(&mut w).await);
        match res {
            Ok(()) => w.finish().await,
            Err(e) => {
                w.abandon().await;
                Err(e)
            }
        }
    }

    /// Verifies a backup file (checksum, counts, structure) before writing anything, then loads
    /// it into this store in one transaction. Refuses a store that holds any data, an API key
    /// alone included ([`Error::NotEmpty`]), and a damaged file or an unknown format version
    /// ([`Error::Corrupt`]). Either backend can restore a backup of either backend. Version 1
    /// files (written before API keys were backed up) still restore, without API keys.
    ///
    /// The search copies of each ledger entry are taken from the file as they are: its trailer
    /// is a plain SHA-256, which whoever edits the file can recompute. [`Store::restore_with`]
    /// rebuilds them from the bodies instead.
    pub async fn restore(&self, path: &Path) -> Result<BackupSummary, Error> {
        let summary = backup::verify(path).await?;
        let mut r = backup::Reader::open(path).await?;
        dispatch!(self, b => b.restore(&mut r, &summary).await)?;
        Ok(summary)
    }

    /// [`Store::restore`], with each ledger entry's search copies set by `reindex` from its body
    /// rather than taken from the file (the ledger's `restore_backup` passes its decoder). A
    /// body that `reindex` refuses refuses the file ([`Error::Corrupt`], nothing restored).
    /// Entries whose copies in the file differ from the rebuilt ones are counted in a warning.
    pub async fn restore_with(
        &self,
        path: &Path,
        reindex: &Reindex,
    ) -> Result<BackupSummary, Error> {
        let summary = backup::verify(path).await?;
        let mut r = backup::Reader::open(path).await?.reindex(reindex);
        dispatch!(self, b => b.restore(&mut r, &summary).await)?;
        if let Some((n, first)) = r.rebuilt() {
            tracing::warn!(
                entries = n,
                first_index = first,
                "the backup file's search columns of some ledger entries did not match their \
                 records (edited?): they were rebuilt from the records"
            );
        }
        Ok(summary)
    }
}

/// Sorted, deduplicated categories (the canonical form both backends store).
pub(crate) fn canonical_categories(c: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = c.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A `u64` index as the databases' signed 64-bit integer.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored index back to `u64` (negative values cannot pass the schema's CHECK).
pub(crate) fn to_u64(v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Corrupt("negative index in the database".into()))
}

/// A 32-byte hash from a column.
pub(crate) fn hash32(v: &[u8]) -> Result<[u8; 32], Error> {
    <[u8; 32]>::try_from(v).map_err(|_| Error::Corrupt("stored hash is not 32 bytes".into()))
}

/// The rows of the scopes whose key ids are in `stored`, each key id's first scope only (a
/// later scope with the same id lost to it).
pub(crate) fn rows_of_stored(scopes: &[NewScope], stored: &[String]) -> Vec<VaultRow> {
    let mut left: std::collections::HashSet<&str> = stored.iter().map(String::as_str).collect();
    scopes
        .iter()
        .filter(|s| left.remove(s.key.key_id.as_str()))
        .flat_map(|s| s.rows.iter().cloned())
        .collect()
}

/// Rows per multi-row statement: well under both backends' bind-parameter limits.
pub(crate) const CHUNK: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_sync() {
        fn ok<T: Send + Sync>() {}
        ok::<Store>();
        ok::<Error>();
        ok::<NewLedgerEntry>();
        ok::<VaultRow>();
    }

    #[test]
    fn debug_redacts_secrets() {
        let k = DataKeyRow {
            key_id: "k1".into(),
            scope: "s".into(),
            kek_id: "kek".into(),
            wrapped: b"SECRETWRAP".to_vec(),
            created_ms: 1,
            expires_at_ms: None,
            shredded_ms: None,
        };
        assert!(!format!("{k:?}").contains("SECRETWRAP"));
        let v = VaultRow {
            scope: "s".into(),
            token: "[NAME_1]".into(),
            key_id: "k1".into(),
            fingerprint: b"FPFPFP".to_vec(),
            nonce: vec![1],
            ciphertext: b"CIPHER".to_vec(),
            created_ms: 1,
        };
        let d = format!("{v:?}");
        assert!(!d.contains("CIPHER") && !d.contains("70, 80"));
    }
}
