//! Where the store is: one place for every command that opens it.
//!
//! Resolution order: `--store URL`, then the environment variable `PHIGATE_STORE`, then the
//! SQLite file `phigate.db` in the data directory when one is named (`--data-dir`, then
//! `PHIGATE_DATA_DIR`), then the gateway's configuration when one is found (`PHIGATE_CONFIG`,
//! `./phigate.yaml`, `./phigate-data/phigate.yaml`: its `store.url`, read without loading the
//! rest, see [`policy::peek`]), then `./phigate-data/phigate.db`. A URL is anything
//! `store::Store::open` takes: `sqlite://…`, a file path, `postgres://…`.

use std::path::PathBuf;

use anyhow::Context as _;

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./phigate-data";

/// The store options shared by every command that opens the store.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct StoreArgs {
    /// The store: sqlite:///abs/path.db, a file path, or postgres://user@host/db
    /// [env: PHIGATE_STORE; default: phigate.db in --data-dir, else the store of the gateway's
    /// configuration (PHIGATE_CONFIG, ./phigate.yaml or ./phigate-data/phigate.yaml), else
    /// ./phigate-data/phigate.db].
    #[arg(long, value_name = "URL", global = true)]
    pub store: Option<String>,
    /// The data directory [env: PHIGATE_DATA_DIR; default: ./phigate-data].
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The gateway's configuration the store was taken from (see [`StoreArgs::with_config`]).
    #[arg(skip)]
    pub config: Option<(PathBuf, policy::Peek)>,
}

impl StoreArgs {
    /// When neither a store nor a data directory is given (flags or environment), takes the
    /// store from the gateway's configuration, if one is found, and keeps what else it says
    /// for the caller (the ledger's name, the vault's KEKs). A command run beside a gateway
    /// thus acts on the gateway's store, never on an empty one it made itself. A configuration
    /// found but unreadable is an error.
    pub fn with_config(mut self) -> anyhow::Result<StoreArgs> {
        let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
        if self.store.is_some()
            || self.data_dir.is_some()
            || set("PHIGATE_STORE")
            || set("PHIGATE_DATA_DIR")
        {
            return Ok(self);
        }
        let Some(path) = crate::config_cmd::find_config(None) else { return Ok(self) };
        let peek = policy::peek(&path).map_err(anyhow::Error::msg)?;
        self.store = Some(peek.store_url.clone());
        self.config = Some((path, peek));
        Ok(self)
    }

    /// What the gateway's configuration says, when the store was taken from it.
    pub fn peeked(&self) -> Option<&policy::Peek> {
        self.config.as_ref().map(|(_, p)| p)
    }

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
        let (n, aside) = ledger::replay_journal(&store).await.with_context(|| {
            format!("cannot put the ledger journal's records in the store {}", self.display_url())
        })?;
        if let Some(aside) = aside {
            eprintln!(
                "phigate: warning: the ledger journal belongs to another database (this one was \
                 made anew beside it); it was set aside as {}, not replayed: it may hold records \
                 of the old database",
                aside.display()
            );
        }
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
        let a = StoreArgs {
            store: Some("postgres://u:secret@h/db".into()),
            data_dir: None,
            config: None,
        };
        assert_eq!(a.url(), "postgres://u:secret@h/db");
        assert_eq!(a.display_url(), "postgres://u:***@h/db");
        let b = StoreArgs { store: None, data_dir: Some("/tmp/pg-data".into()), config: None };
        if std::env::var_os("PHIGATE_STORE").is_none() {
            assert_eq!(b.url(), "/tmp/pg-data/phigate.db");
        }
    }
}
