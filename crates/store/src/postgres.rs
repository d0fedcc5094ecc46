//! The PostgreSQL backend. Several gateway replicas may share one database: ledger appends take a
//! transaction-scoped advisory lock before reading the next index, so indexes are gapless and
//! commit order is index order. Connect and acquire time out after [`CONNECT_TIMEOUT`].

use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use crate::backup::{self, Record};
use crate::error::{from_migrate, from_sqlx_common};
use crate::{
    canonical_categories, hash32, to_i64, to_u64, BackupSummary, CheckpointPut, DataKeyRow, Error,
    LedgerEntry, LedgerQuery, LedgerRow, NewLedgerEntry, StoredCheckpoint, VaultRow, CHUNK,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long connecting (or waiting for a pooled connection) may take before `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Key of the advisory lock that serialises ledger index assignment ("phigate" + 1).
const LEDGER_LOCK: i64 = 0x7068_6967_6174_6501;

/// Key of the advisory lock that serialises checkpoint writers ("phigate" + 2), so that the
/// stored checkpoints stay in order by size and time.
const CHECKPOINT_LOCK: i64 = 0x7068_6967_6174_6502;

pub(crate) struct PgStore {
    pool: PgPool,
}

/// Maps a `sqlx` error from PostgreSQL to an [`Error`] kind. PostgreSQL messages may quote
/// values, so only the SQLSTATE and the constraint or table name are kept.
pub(crate) fn map_err(e: sqlx::Error) -> Error {
    let sqlx::Error::Database(db) = &e else {
        return from_sqlx_common(e);
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let name =
        db.constraint().or_else(|| db.table()).map(|n| format!(" ({n})")).unwrap_or_default();
    match code.as_str() {
        c if c.starts_with("23") => {
            Error::Conflict(format!("constraint violated, SQLSTATE {c}{name}"))
        }
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
            Error::Unavailable(format!("PostgreSQL unavailable, SQLSTATE {c}"))
        }
        c if c.starts_with("28") => Error::Unavailable("PostgreSQL refused the credentials".into()),
        "3D000" => Error::Unavailable("the PostgreSQL database does not exist".into()),
        "XX001" | "XX002" => {
            Error::Corrupt(format!("PostgreSQL reports corruption, SQLSTATE {code}"))
        }
        "40001" | "40P01" | "55P03" | "57014" => {
            Error::Unavailable(format!("transaction aborted or timed out, SQLSTATE {code}"))
        }
        c => Error::Backend(format!("PostgreSQL error, SQLSTATE {c}{name}")),
    }
}

fn ledger_entry(r: &PgRow) -> Result<LedgerEntry, Error> {
    Ok(LedgerEntry {
        index: to_u64(r.try_get("idx").map_err(map_err)?)?,
        leaf_hash: hash32(r.try_get::<&[u8], _>("leaf_hash").map_err(map_err)?)?,
        body: r.try_get("body").map_err(map_err)?,
        ts_ms: r.try_get("ts_ms").map_err(map_err)?,
    })
}

fn checkpoint(r: &PgRow) -> Result<StoredCheckpoint, Error> {
    Ok(StoredCheckpoint {
        tree_size: to_u64(r.try_get("tree_size").map_err(map_err)?)?,
        root_hash: hash32(r.try_get::<&[u8], _>("root_hash").map_err(map_err)?)?,
        ts_ms: r.try_get("ts_ms").map_err(map_err)?,
        note: r.try_get("note").map_err(map_err)?,
    })
}

const API_KEY_COLS: &str =
    "id, secret_sha256, identity, roles, use_case, created_ms, expires_ms, revoked_ms";

fn api_key(r: &PgRow) -> Result<crate::ApiKeyRow, Error> {
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

fn data_key(r: &PgRow) -> Result<DataKeyRow, Error> {
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

fn vault_row(r: &PgRow) -> Result<VaultRow, Error> {
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

type Tx = sqlx::Transaction<'static, Postgres>;

/// Inserts ledger entries with indexes `start..` in one statement per chunk (UNNEST of arrays).
async fn insert_ledger(tx: &mut Tx, start: i64, entries: &[NewLedgerEntry]) -> Result<(), Error> {
    for (c, chunk) in entries.chunks(CHUNK * 8).enumerate() {
        let base = start + (c * CHUNK * 8) as i64;
        let mut leaf: Vec<&[u8]> = Vec::with_capacity(chunk.len());
        let mut body: Vec<&[u8]> = Vec::with_capacity(chunk.len());
        let mut ts: Vec<i64> = Vec::with_capacity(chunk.len());
        let mut actor: Vec<&str> = Vec::with_capacity(chunk.len());
        let mut action: Vec<&str> = Vec::with_capacity(chunk.len());
        let mut use_case: Vec<&str> = Vec::with_capacity(chunk.len());
        let mut decision: Vec<&str> = Vec::with_capacity(chunk.len());
        let mut cats: Vec<String> = Vec::with_capacity(chunk.len());
        for e in chunk {
            leaf.push(&e.leaf_hash[..]);
            body.push(&e.body[..]);
            ts.push(e.ts_ms);
            actor.push(&e.actor);
            action.push(&e.action);
            use_case.push(&e.use_case);
            decision.push(&e.decision);
            cats.push(
                serde_json::to_string(&canonical_categories(&e.categories))
                    .map_err(|_| Error::Backend("cannot encode categories".into()))?,
            );
        }
        sqlx::query(
            "INSERT INTO ledger_entries \
             (idx, leaf_hash, body, ts_ms, actor, action, use_case, decision, categories) \
             SELECT $1 + t.ord - 1, t.leaf_hash, t.body, t.ts_ms, t.actor, t.action, t.use_case, \
                    t.decision, ARRAY(SELECT jsonb_array_elements_text(t.cats::jsonb)) \
             FROM UNNEST($2::bytea[], $3::bytea[], $4::int8[], $5::text[], $6::text[], \
                         $7::text[], $8::text[], $9::text[]) \
                  WITH ORDINALITY AS t(leaf_hash, body, ts_ms, actor, action, use_case, \
                                       decision, cats, ord)",
        )
        .bind(base)
        .bind(&leaf)
        .bind(&body)
        .bind(&ts)
        .bind(&actor)
        .bind(&action)
        .bind(&use_case)
        .bind(&decision)
        .bind(&cats)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

async fn insert_checkpoints(tx: &mut Tx, rows: &[StoredCheckpoint]) -> Result<(), Error> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Postgres> =
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
) -> QueryBuilder<'a, Postgres> {
    let mut qb: QueryBuilder<Postgres> =
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
        let mut qb: QueryBuilder<Postgres> =
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
        let mut qb: QueryBuilder<Postgres> =
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

impl PgStore {
    pub(crate) async fn open(url: &str) -> Result<PgStore, Error> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|_| Error::Backend("invalid PostgreSQL URL".into()))?
            .application_name("phigate")
            // A writer never waits forever behind a stuck one, and a session that hangs inside a
            // transaction (holding the ledger lock) is ended by the server.
            .options([("lock_timeout", "30s"), ("idle_in_transaction_session_timeout", "60s")]);
        let connect = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(opts);
        let pool = tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connect)
            .await
            .map_err(|_| Error::Unavailable("timed out connecting to PostgreSQL".into()))?
            .map_err(map_err)?;
        let store = PgStore { pool };
        store.check_schema().await?;
        MIGRATOR.run(&store.pool).await.map_err(|e| from_migrate(e, map_err))?;
        Ok(store)
    }

    /// Refuses a schema newer than this build.
    async fn check_schema(&self) -> Result<(), Error> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        if !exists {
            return Ok(());
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
        self.pool.close().await;
    }

    pub(crate) async fn check(&self) -> Result<(), Error> {
        let (n, max): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MAX(idx) FROM ledger_entries")
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
        if max.map_or(0, |m| m + 1) != n {
            return Err(Error::Corrupt("the ledger's indexes have gaps".into()));
        }
        Ok(())
    }

    /// A write transaction holding the ledger lock (released at commit or rollback).
    async fn begin_locked(&self) -> Result<Tx, Error> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LEDGER_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        Ok(tx)
    }

    // ---- ledger ----------------------------------------------------------------------------

    pub(crate) async fn ledger_append(&self, entries: &[NewLedgerEntry]) -> Result<u64, Error> {
        if entries.is_empty() {
            return self.ledger_len().await;
        }
        let mut tx = self.begin_locked().await?;
        let start: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_ledger(&mut tx, start, entries).await?;
        tx.commit().await.map_err(map_err)?;
        to_u64(start)
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
             WHERE idx >= $1 AND idx < $2 ORDER BY idx",
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
        sqlx::query(
            "SELECT idx, leaf_hash, body, ts_ms, actor, action, use_case, decision, categories \
             FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(to_i64(start))
        .bind(to_i64(end))
        .fetch_all(&self.pool)
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
                    categories: r.try_get("categories").map_err(map_err)?,
                },
            })
        })
        .collect()
    }

    pub(crate) async fn ledger_leaf_hashes(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<[u8; 32]>, Error> {
        if start >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut rows = sqlx::query(
            "SELECT leaf_hash FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(to_i64(start))
        .bind(to_i64(end))
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
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT idx, leaf_hash, body, ts_ms FROM ledger_entries WHERE TRUE");
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
            qb.push(" AND categories @> ARRAY[").push_bind(v.as_str()).push("]::text[]");
        }
        qb.push(" ORDER BY idx LIMIT ").push_bind(to_i64(q.limit));
        qb.build().fetch_all(&self.pool).await.map_err(map_err)?.iter().map(ledger_entry).collect()
    }

    pub(crate) async fn checkpoint_put(
        &self,
        c: &StoredCheckpoint,
    ) -> Result<CheckpointPut, Error> {
        // Writers of checkpoints take turns (an advisory lock until commit): nothing is stored
        // between the checks and the insert, by this process or another replica.
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHECKPOINT_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let same_size = sqlx::query(
            "SELECT tree_size, root_hash, ts_ms, note FROM checkpoints WHERE tree_size = $1",
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let stored = insert_new_data_keys(&mut tx, &keys.iter().collect::<Vec<_>>()).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(stored)
    }

    /// The key ids stored, with the rows of each (the first of a key id in `scopes` only).
    pub(crate) async fn new_scopes_put(
        &self,
        scopes: &[crate::NewScope],
    ) -> Result<Vec<String>, Error> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let keys: Vec<&DataKeyRow> = scopes.iter().map(|s| &s.key).collect();
        let stored = insert_new_data_keys(&mut tx, &keys).await?;
        let rows = crate::rows_of_stored(scopes, &stored);
        // Plain inserts: no row can exist under a key made in this transaction, and a shred
        // of it waits for the commit (the key's row is locked by the insert).
        insert_vault(&mut tx, &rows, false).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(stored)
    }

    pub(crate) async fn data_key_put(&self, k: &DataKeyRow) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
            "scope = $1 AND shredded_ms IS NULL ORDER BY created_ms DESC, key_id DESC LIMIT 1",
            scope,
        )
        .await
    }

    pub(crate) async fn data_key_latest(&self, scope: &str) -> Result<Option<DataKeyRow>, Error> {
        self.data_key_where(
            "scope = $1 ORDER BY (shredded_ms IS NULL) DESC, created_ms DESC, key_id DESC LIMIT 1",
            scope,
        )
        .await
    }

    pub(crate) async fn api_key_put(&self, k: &crate::ApiKeyRow) -> Result<(), Error> {
        let roles = serde_json::to_string(&k.roles)
            .map_err(|_| Error::Backend("cannot encode roles".into()))?;
        sqlx::query(&format!(
            "INSERT INTO api_keys ({API_KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
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
        sqlx::query(&format!("SELECT {API_KEY_COLS} FROM api_keys WHERE id = $1"))
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
            sqlx::query("UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn data_key_get(&self, key_id: &str) -> Result<Option<DataKeyRow>, Error> {
        self.data_key_where("key_id = $1", key_id).await
    }

    pub(crate) async fn data_keys_live(&self) -> Result<Vec<DataKeyRow>, Error> {
        sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM data_keys WHERE shredded_ms IS NULL ORDER BY key_id COLLATE \"C\""
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
             AND expires_at_ms IS NOT NULL AND expires_at_ms <= $1 ORDER BY key_id COLLATE \"C\""
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
        let n = sqlx::query(
            "UPDATE data_keys SET kek_id = $1, wrapped = $2 \
             WHERE key_id = $3 AND kek_id = $4 AND shredded_ms IS NULL",
        )
        .bind(new_kek)
        .bind(wrapped)
        .bind(key_id)
        .bind(old_kek)
        .execute(&self.pool)
        .await
        .map_err(map_err)?
        .rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn data_key_shred(&self, key_id: &str, now_ms: i64) -> Result<bool, Error> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Lock the row so two shredders agree on which one found the key live.
        let shredded: Option<Option<i64>> =
            sqlx::query_scalar("SELECT shredded_ms FROM data_keys WHERE key_id = $1 FOR UPDATE")
                .bind(key_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        let Some(shredded) = shredded else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE data_keys SET wrapped = '\\x'::bytea, \
             shredded_ms = COALESCE(shredded_ms, $1) WHERE key_id = $2",
        )
        .bind(now_ms)
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("DELETE FROM vault_entries WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(shredded.is_none())
    }

    pub(crate) async fn vault_put(&self, rows: &[VaultRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<&str> = rows.iter().map(|r| r.key_id.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Never store a value under a shredded (or unknown) key. FOR SHARE holds the live keys
        // until commit, so a concurrent shred waits and then deletes these rows too.
        let live: Vec<String> = sqlx::query_scalar(
            "SELECT key_id FROM data_keys WHERE key_id = ANY($1) AND shredded_ms IS NULL \
             ORDER BY key_id COLLATE \"C\" FOR SHARE",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        if live.len() != keys.len() {
            return Err(Error::Conflict("vault rows name a shredded or unknown data key".into()));
        }
        insert_vault(&mut tx, rows, true).await?;
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn vault_tokens(&self, scope: &str) -> Result<Vec<String>, Error> {
        sqlx::query_scalar("SELECT token FROM vault_entries WHERE scope = $1")
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
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<VaultRow> = sqlx::query(&format!(
            "SELECT {VAULT_COLS} FROM vault_entries WHERE scope = $1 AND token = ANY($2)"
        ))
        .bind(scope)
        .bind(tokens)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?
        .iter()
        .map(vault_row)
        .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.token.cmp(&b.token));
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
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {VAULT_COLS} FROM vault_entries WHERE scope = "));
        qb.push_bind(scope).push(" AND fingerprint IN (");
        let mut sep = qb.separated(", ");
        for f in fingerprints {
            sep.push_bind(&f[..]);
        }
        qb.push(") ORDER BY created_ms, token COLLATE \"C\"");
        qb.build().fetch_all(&self.pool).await.map_err(map_err)?.iter().map(vault_row).collect()
    }

    pub(crate) async fn vault_find(
        &self,
        scope: &str,
        fingerprint: &[u8],
    ) -> Result<Option<VaultRow>, Error> {
        sqlx::query(&format!(
            "SELECT {VAULT_COLS} FROM vault_entries WHERE scope = $1 AND fingerprint = $2 \
             ORDER BY created_ms, token COLLATE \"C\" LIMIT 1"
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
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(map_err)?;
        {
            let mut rows = sqlx::query(
                "SELECT idx, leaf_hash, body, ts_ms, actor, action, use_case, decision, categories \
                 FROM ledger_entries ORDER BY idx",
            )
            .fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(map_err)? {
                let entry = NewLedgerEntry {
                    leaf_hash: hash32(r.try_get::<&[u8], _>("leaf_hash").map_err(map_err)?)?,
                    body: r.try_get("body").map_err(map_err)?,
                    ts_ms: r.try_get("ts_ms").map_err(map_err)?,
                    actor: r.try_get("actor").map_err(map_err)?,
                    action: r.try_get("action").map_err(map_err)?,
                    use_case: r.try_get("use_case").map_err(map_err)?,
                    decision: r.try_get("decision").map_err(map_err)?,
                    categories: r.try_get("categories").map_err(map_err)?,
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
            let sql = format!("SELECT {KEY_COLS} FROM data_keys ORDER BY key_id COLLATE \"C\"");
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(map_err)? {
                w.write(&Record::DataKey(data_key(&r)?)).await?;
            }
        }
        {
            let sql = format!(
                "SELECT {VAULT_COLS} FROM vault_entries \
                 ORDER BY scope COLLATE \"C\", token COLLATE \"C\""
            );
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(map_err)? {
                w.write(&Record::Vault(vault_row(&r)?)).await?;
            }
        }
        {
            let sql = format!("SELECT {API_KEY_COLS} FROM api_keys ORDER BY id COLLATE \"C\"");
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
        let mut tx = self.begin_locked().await?;
        // Keep concurrent writers of the other tables out until this transaction ends.
        sqlx::query(
            "LOCK TABLE ledger_entries, checkpoints, data_keys, vault_entries, api_keys \
             IN SHARE ROW EXCLUSIVE MODE",
        )
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM ledger_entries) OR EXISTS (SELECT 1 FROM checkpoints) \
             OR EXISTS (SELECT 1 FROM data_keys) OR EXISTS (SELECT 1 FROM vault_entries) \
             OR EXISTS (SELECT 1 FROM api_keys)",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        if any {
            return Err(Error::NotEmpty);
        }
        let mut batch = backup::Batch::default();
        while let Some(rec) = r.next().await? {
            if let Some(full) = batch.push(rec, CHUNK) {
                load(&mut tx, full).await?;
            }
        }
        load(&mut tx, batch).await?;
        r.finish(expect)?;
        tx.commit().await.map_err(map_err)
    }
}

async fn load(tx: &mut Tx, b: backup::Batch) -> Result<(), Error> {
    if let Some(start) = b.ledger_start {
        insert_ledger(tx, to_i64(start), &b.ledger).await?;
    }
    insert_checkpoints(tx, &b.checkpoints).await?;
    insert_data_keys(tx, &b.data_keys).await?;
    insert_vault(tx, &b.vault, false).await?;
    insert_api_keys(tx, &b.api_keys).await
}
