//! Fixtures: a SQLite store in a temporary directory, a PostgreSQL store in a fresh database.

use std::future::Future;

use sqlx::Connection;
use store::{NewLedgerEntry, Store};

/// The maintenance URL of the machine's PostgreSQL (trust auth, superuser).
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The server part, to which a database name is appended.
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A fresh PostgreSQL database that is dropped by [`PgDb::drop_db`].
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let name = format!("phigate_store_test_{:016x}", rand::random::<u64>());
        let mut c = sqlx::PgConnection::connect(PG_ADMIN)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 must be running for the store tests");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("create test database");
        let url = format!("{PG_SERVER}/{name}");
        PgDb { name, url }
    }

    pub async fn drop_db(&self) {
        let mut c = sqlx::PgConnection::connect(PG_ADMIN).await.expect("connect");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut c)
            .await
            .expect("drop test database");
    }

    /// Runs `f` and drops the database afterwards, even when `f` panics.
    pub async fn with<F, Fut>(f: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let db = PgDb::create().await;
        let res = tokio::spawn(f(db.url.clone())).await;
        db.drop_db().await;
        if let Err(e) = res {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Runs `test` on a store over a fresh SQLite file.
pub async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub").join("store.db");
    let store = Store::open(path.to_str().expect("utf-8 path")).await.expect("open sqlite store");
    test(store).await;
}

/// Runs `test` on a store over a fresh PostgreSQL database.
pub async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    PgDb::with(|url| async move {
        let store = Store::open(&url).await.expect("open postgres store");
        test(store).await;
    })
    .await;
}

/// Writes each test once (an `async fn(Store)`) and runs it on both backends.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::common::on_sqlite(super::$name).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    crate::common::on_postgres(super::$name).await;
                }
            }
        )*
    };
}
pub(crate) use both_backends;

/// A ledger entry with a ~300-byte body; fields derived from `i`.
pub fn entry(i: u64) -> NewLedgerEntry {
    let mut body = format!("{{\"seq\":{i},\"pad\":\"").into_bytes();
    body.resize(300, b'x');
    let mut leaf_hash = [0u8; 32];
    leaf_hash[..8].copy_from_slice(&i.to_be_bytes());
    leaf_hash[31] = 0xAB;
    NewLedgerEntry {
        leaf_hash,
        body,
        ts_ms: 1_700_000_000_000 + i as i64 * 1000,
        actor: format!("user{}", i % 3),
        action: ["chat", "embeddings"][(i % 2) as usize].into(),
        use_case: format!("uc{}", i % 4),
        decision: ["allow", "redact", "block"][(i % 3) as usize].into(),
        categories: match i % 4 {
            0 => vec![],
            1 => vec!["NAME".into()],
            2 => vec!["NAME".into(), "DATE".into()],
            _ => vec!["MRN".into(), "MRN".into()],
        },
    }
}
