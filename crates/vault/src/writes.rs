//! Group commit of the vault's writes: new data keys, new scopes (a first key with its values)
//! and new value rows from every caller
//! waiting at the same moment go to the store in one transaction each, instead of one
//! transaction (and one disk flush) per caller. Each caller is answered only once its own
//! writes are durable; a batch that fails is retried caller by caller, so that one caller's
//! refused write (a row under a key shredded meanwhile) is that caller's error alone.

use std::sync::OnceLock;

use store::{DataKeyRow, NewScope, Store, VaultRow};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// The most callers in one batch.
const MAX_BATCH: usize = 256;

enum Job {
    /// A new data key: `Ok(true)` stored, `Ok(false)` its id existed (another writer made it).
    Key(DataKeyRow, oneshot::Sender<Result<bool>>),
    /// A new scope: `Ok(true)` stored, `Ok(false)` its first key existed (another writer made
    /// the scope), and nothing of it was stored.
    Scope(NewScope, oneshot::Sender<Result<bool>>),
    /// New value rows (insert or keep, as [`Store::vault_put`]).
    Rows(Vec<VaultRow>, oneshot::Sender<Result<()>>),
}

/// The queue in front of the store's vault writes. The task that drains it starts with the
/// first write (inside the caller's runtime) and ends when the vault is dropped.
pub(crate) struct Writes {
    store: Store,
    tx: OnceLock<mpsc::Sender<Job>>,
}

impl Writes {
    pub(crate) fn new(store: Store) -> Writes {
        Writes { store, tx: OnceLock::new() }
    }

    fn sender(&self) -> &mpsc::Sender<Job> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(4096);
            tokio::spawn(run(self.store.clone(), rx));
            tx
        })
    }

    async fn submit<T>(&self, job: Job, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.sender().send(job).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Stores a new data key: `false` when its id exists already.
    pub(crate) async fn put_key(&self, key: DataKeyRow) -> Result<bool> {
        let (ack, rx) = oneshot::channel();
        self.submit(Job::Key(key, ack), rx).await
    }

    /// Stores a new scope's first key with its rows: `false` when the key exists already.
    pub(crate) async fn put_scope(&self, scope: NewScope) -> Result<bool> {
        let (ack, rx) = oneshot::channel();
        self.submit(Job::Scope(scope, ack), rx).await
    }

    /// Stores value rows (an existing `(scope, token)` row is kept).
    pub(crate) async fn put_rows(&self, rows: Vec<VaultRow>) -> Result<()> {
        let (ack, rx) = oneshot::channel();
        self.submit(Job::Rows(rows, ack), rx).await
    }
}

fn closed() -> Error {
    Error::Store(store::Error::Unavailable("the vault's writer has stopped".into()))
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut keys = Vec::new();
        let mut scopes = Vec::new();
        let mut rows = Vec::new();
        for j in jobs.drain(..) {
            match j {
                Job::Key(k, ack) if !ack.is_closed() => keys.push((k, ack)),
                Job::Scope(s, ack) if !ack.is_closed() => scopes.push((s, ack)),
                Job::Rows(r, ack) if !ack.is_closed() => rows.push((r, ack)),
                // The caller gave up: nothing of it is written.
                _ => {}
            }
        }
        // Keys first: rows never name a key of the same batch (a caller sends its rows only
        // once its key is stored), but this keeps the store's order the callers' order.
        write_keys(&store, keys).await;
        write_scopes(&store, scopes).await;
        write_rows(&store, rows).await;
    }
}

async fn put_one_key(store: &Store, k: &DataKeyRow) -> Result<bool> {
    match store.data_key_put(k).await {
        Ok(()) => Ok(true),
        Err(store::Error::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn write_keys(store: &Store, keys: Vec<(DataKeyRow, oneshot::Sender<Result<bool>>)>) {
    match keys.len() {
        0 => {}
        1 => {
            for (k, ack) in keys {
                let _ = ack.send(put_one_key(store, &k).await);
            }
        }
        _ => {
            let list: Vec<DataKeyRow> = keys.iter().map(|(k, _)| k.clone()).collect();
            match store.data_keys_put_new(&list).await {
                Ok(stored) => {
                    for ((_, ack), s) in keys.into_iter().zip(stored) {
                        let _ = ack.send(Ok(s));
                    }
                }
                Err(_) => {
                    for (k, ack) in keys {
                        let _ = ack.send(put_one_key(store, &k).await);
                    }
                }
            }
        }
    }
}

async fn write_scopes(store: &Store, scopes: Vec<(NewScope, oneshot::Sender<Result<bool>>)>) {
    if scopes.len() > 1 {
        let all: Vec<NewScope> = scopes.iter().map(|(s, _)| s.clone()).collect();
        if let Ok(stored) = store.vault_put_new_scopes(&all).await {
            for ((_, ack), s) in scopes.into_iter().zip(stored) {
                let _ = ack.send(Ok(s));
            }
            return;
        }
        // Nothing of the batch was stored (one transaction): each caller on its own.
    }
    for (s, ack) in scopes {
        let r = store.vault_put_new_scopes(std::slice::from_ref(&s)).await;
        let _ = ack.send(r.map(|v| v.first().copied().unwrap_or(false)).map_err(Error::from));
    }
}

async fn write_rows(store: &Store, rows: Vec<(Vec<VaultRow>, oneshot::Sender<Result<()>>)>) {
    if rows.len() > 1 {
        let all: Vec<VaultRow> = rows.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
        if store.vault_put(&all).await.is_ok() {
            for (_, ack) in rows {
                let _ = ack.send(Ok(()));
            }
            return;
        }
        // Nothing of the batch was stored (one transaction): each caller on its own, so that
        // each gets its own answer.
    }
    for (r, ack) in rows {
        let _ = ack.send(store.vault_put(&r).await.map_err(Error::from));
    }
}
