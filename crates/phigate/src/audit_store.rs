//! Where the store is: one place for every command that opens it.
//!
//! Resolution order: `--store URL`, then the environment variable `PHIGATE_STORE`, then the
//! SQLite file `phigate.db` in the data directory (`--data-dir`, then `PHIGATE_DATA_DIR`, then
//! `./phigate-data`). A URL is anything `store::Store::open` takes: `sqlite://…`, a file path,
//! `postgres://…`.

use std::path::PathBuf;

use anyhow::Context as _;

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./phigate-data";

/// The store options shared by every command that opens the store.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct StoreArgs {
    /// The store: sqlite:///abs/path.db, a file path, or postgres://user@host/db
    /// [env: PHIGATE_STORE; default: phigate.db in the data directory].
    #[arg(long, value_name = "URL", global = true)]
    pub store: Option<String>,
    /// The data directory [env: PHIGATE_DATA_DIR; default: ./phigate-data].
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .or_else(|| {
                std::env::var_os("PHIGATE_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The store URL to open.
    pub fn url(&self) -> String {
        if let Some(s) = &self.store {
            return s.clone();
        }
        if let Ok(s) = std::env::var("PHIGATE_STORE") {
            if !s.is_empty() {
                return s;
            }
        }
        self.data_dir().join("phigate.db").to_string_lossy().into_owned()
    }

    /// The URL as safe to print (a PostgreSQL password is masked).
    pub fn display_url(&self) -> String {
        redact_url(&self.url())
    }

    /// Opens the store (creating a SQLite file and its directory when missing). On SQLite, when
    /// no server runs on it, first puts in the ledger records that only the server's journal
    /// holds (a server that stopped without copying them), so that the command sees them.
    pub async fn open(&self) -> anyhow::Result<store::Store> {
        let store = store::Store::open(&self.url())
            .await
            .with_context(|| format!("cannot open the store {}", self.display_url()))?;
        let n = ledger::replay_journal(&store).await.with_context(|| {
            format!("cannot put the ledger journal's records in the store {}", self.display_url())
        })?;
        if n > 0 {
            eprintln!(
                "phigate: {n} ledger records found only in the ledger journal (the server stopped \
                 before copying them) were put in the store"
            );
        }
        Ok(store)
    }
}

/// Masks the password of `scheme://user:password@host…`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_store_wins_and_passwords_are_masked() {
        let a = StoreArgs { store: Some("postgres://u:secret@h/db".into()), data_dir: None };
        assert_eq!(a.url(), "postgres://u:secret@h/db");
        assert_eq!(a.display_url(), "postgres://u:***@h/db");
        let b = StoreArgs { store: None, data_dir: Some("/tmp/pg-data".into()) };
        if std::env::var_os("PHIGATE_STORE").is_none() {
            assert_eq!(b.url(), "/tmp/pg-data/phigate.db");
        }
    }
}
