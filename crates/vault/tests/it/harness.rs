//! Test databases (a SQLite temp file or a fresh PostgreSQL database, dropped afterwards) and
//! the vault and ledger over them.

use std::path::PathBuf;
use std::sync::Arc;

use ledger::{Ledger, LedgerConfig};
use sqlx::{Connection, Executor};
use store::Store;
use vault::{Keyring, Kms, LocalKek, Vault, VaultConfig};

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One test database. Dropping it removes the file or drops the database.
pub struct Db {
    pub kind: Kind,
    pub url: String,
    pub store: Store,
    /// The SQLite file (SQLite only).
    pub path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

fn random_name() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("vault_it_{n:016x}")
}

impl Db {
    pub async fn new(kind: Kind) -> Db {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("vault.db");
                let url = format!("sqlite://{}", path.display());
                let store = Store::open(&url).await.expect("open sqlite store");
                Db { kind, url, store, path: Some(path), _dir: Some(dir), pg_name: None }
            }
            Kind::Postgres => {
                let name = random_name();
                let mut admin =
                    sqlx::PgConnection::connect(PG_ADMIN).await.expect("connect to PostgreSQL");
                admin
                    .execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create database");
                admin.close().await.ok();
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                let store = Store::open(&url).await.expect("open postgres store");
                Db { kind, url, store, path: None, _dir: None, pg_name: Some(name) }
            }
        }
    }

    /// Makes this database unreachable or unwritable for its store: PostgreSQL drops it (with
    /// FORCE, closing the store's connections); SQLite returns a guard holding an exclusive
    /// write lock, so the store's writes fail as busy.
    pub async fn make_unavailable(&mut self) -> Option<sqlx::SqliteConnection> {
        match self.kind {
            Kind::Postgres => {
                if let Some(name) = self.pg_name.take() {
                    drop_pg(&name).await;
                }
                None
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.expect("connect");
                c.execute("BEGIN EXCLUSIVE").await.expect("lock");
                Some(c)
            }
        }
    }

    /// Runs raw SQL against the database (as an attacker with database access would).
    pub async fn sql(&self, sqlite: &str, postgres: &str, blob: &[u8], scope: &str, key: &str) {
        match self.kind {
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.expect("connect");
                sqlx::query(sqlite)
                    .bind(blob)
                    .bind(scope)
                    .bind(key)
                    .execute(&mut c)
                    .await
                    .expect("sql");
                c.close().await.ok();
            }
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.expect("connect");
                sqlx::query(postgres)
                    .bind(blob)
                    .bind(scope)
                    .bind(key)
                    .execute(&mut c)
                    .await
                    .expect("sql");
                c.close().await.ok();
            }
        }
    }

    /// A ledger over this database (the same store the vault uses, as in production).
    pub async fn ledger(&self) -> Ledger {
        Ledger::open(self.store.clone(), LedgerConfig::new("phigate.test/vault"))
            .await
            .expect("open ledger")
    }

    pub fn vault_with(&self, ledger: Ledger, keyring: Keyring, config: VaultConfig) -> Vault {
        Vault::new(self.store.clone(), ledger, keyring, config)
    }

    pub async fn vault(&self, kek: Arc<dyn Kms>) -> Vault {
        self.vault_with(self.ledger().await, Keyring::new(kek), VaultConfig::default())
    }

    /// A vault that keeps nothing it read from the store (no row cache, data key state read on
    /// every use): what another replica sees at once, and how stored rows are checked.
    pub async fn vault_reading_store(&self, kek: Arc<dyn Kms>) -> Vault {
        self.vault_with(self.ledger().await, Keyring::new(kek), uncached())
    }

    /// Ledger records of one action, decoded.
    pub async fn records(&self, action: &str) -> Vec<ledger::Record> {
        let q = store::LedgerQuery {
            action: Some(action.to_owned()),
            limit: 10_000,
            ..Default::default()
        };
        self.store
            .ledger_search(&q)
            .await
            .expect("ledger search")
            .into_iter()
            .map(|e| ledger::Record::decode(&e.body).expect("decodes"))
            .collect()
    }
}

async fn drop_pg(name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(PG_ADMIN).await {
        let _ =
            admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
        let _ = admin.close().await;
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(drop_pg(&name));
                }
            })
            .join();
        }
    }
}

/// [`VaultConfig::default`] without the row cache and with no trust in remembered key state.
pub fn uncached() -> VaultConfig {
    let mut c = VaultConfig::default();
    c.row_cache = 0;
    c.key_row_ttl = std::time::Duration::ZERO;
    c
}

pub fn kek() -> Arc<dyn Kms> {
    Arc::new(LocalKek::generate())
}

/// Declares `#[tokio::test]`s `sqlite` and `postgres` for each test function `f(&mut Db)`.
#[macro_export]
macro_rules! on_both {
    ($($f:ident),* $(,)?) => {$(
        mod $f {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let mut db = $crate::harness::Db::new($crate::harness::Kind::Sqlite).await;
                super::$f(&mut db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let mut db = $crate::harness::Db::new($crate::harness::Kind::Postgres).await;
                super::$f(&mut db).await;
            }
        }
    )*};
}
