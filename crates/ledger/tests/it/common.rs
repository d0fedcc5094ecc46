//! Helpers: a real SQLite store in a temporary directory, a real PostgreSQL database when the
//! machine's server answers, records and keys.

use ledger::record::{Action, Decision, Hmac256, HmacKey, Record};
use ledger::{Ledger, LedgerConfig, NoteSigner};

pub const ORIGIN: &str = "phigate.test/ledger";

pub fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[42u8; 32]).unwrap()
}

pub async fn sqlite(dir: &tempfile::TempDir) -> store::Store {
    let path = dir.path().join("phigate.db");
    store::Store::open(path.to_str().unwrap()).await.unwrap()
}

pub async fn ledger(store: store::Store) -> Ledger {
    Ledger::open(store, LedgerConfig::new(ORIGIN).signer(signer())).await.unwrap()
}

/// A synthetic record number `i`.
pub fn record(i: u64, key: &HmacKey) -> Record {
    let actions = [Action::ChatCompletion, Action::Embedding, Action::Deidentify];
    let decisions = [Decision::Allow, Decision::Redact, Decision::Deny];
    let mut b = Record::builder(
        &format!("svc-{}", i % 7),
        actions[(i % 3) as usize],
        decisions[(i % 3) as usize],
    )
    .ts_ms(1_700_000_000_000 + i as i64 * 1000)
    .use_case(if i.is_multiple_of(2) { "triage" } else { "coding" })
    .purpose("treatment")
    .model("gpt-4o")
    .provider("azure-east")
    .policy_version("p3")
    .latency_ms((i % 900) as u32)
    .request_hmac(Hmac256::compute(key, format!("request body {i}").as_bytes()));
    if i.is_multiple_of(4) {
        b = b.category(phi::Category::Name, 1 + (i % 3) as u32).reason("phi_redacted");
    }
    if i.is_multiple_of(5) {
        b = b.category(phi::Category::Date, 2);
    }
    b.build().unwrap()
}

/// A fresh PostgreSQL database (dropped by the guard), or None with a printed note when the
/// server does not answer.
pub struct PgDb {
    pub url: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> Option<PgDb> {
        use sqlx::Connection as _;
        let admin = "postgres://postgres@127.0.0.1:5432/test";
        let mut c = match sqlx::PgConnection::connect(admin).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("note: PostgreSQL unreachable ({e}); skipping the PostgreSQL part");
                return None;
            }
        };
        let name = format!("ledger_test_{}", hex::encode(rand::random::<[u8; 6]>()));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
        Some(PgDb { url: format!("postgres://postgres@127.0.0.1:5432/{name}"), name })
    }

    pub async fn drop_db(self) {
        use sqlx::Connection as _;
        let mut c =
            sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test").await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut c)
            .await
            .unwrap();
    }
}
