//! Opening the whole stack from a configuration, and serving the app on a socket.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::{app, AppState, Error};

/// What [`open`] started besides the state (keep it alive while serving).
pub struct Running {
    /// The application state.
    pub state: AppState,
    /// The vault's retention sweeper (stops when dropped).
    pub sweeper: vault::Sweeper,
}

impl Running {
    /// Stops cleanly: waits until the store holds every ledger record (the SQLite ledger's
    /// journal copies them into it behind the requests), then closes the store. Whatever is
    /// left in the journal is put in the store at the next start.
    pub async fn close(self) {
        let inner = &self.state.inner;
        if let Err(e) = inner.ledger.close().await {
            tracing::error!(error = %e, "the ledger's journal could not be emptied into the store; the next start will");
        }
        inner.store.close().await;
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("state", &self.state).finish_non_exhaustive()
    }
}

/// Opens the store, the ledger (signing checkpoints on the configured schedule) and the vault
/// (its keyring checked against every live data key) named by `policy`'s configuration, and
/// builds the state. Must run inside a tokio runtime.
pub async fn open(policy: policy::Policy) -> Result<Running, Error> {
    let cfg = policy.config().clone();
    let options = store::Options::default().sqlite_sync(cfg.store.sqlite_sync.to_store());
    let store = store::Store::open_with(&cfg.store_url(), &options).await?;
    let origin = cfg.audit.origin.as_str();
    let signer = ledger::NoteSigner::from_base64_seed(origin, cfg.audit.signing_key.expose())?;
    let lcfg = ledger::LedgerConfig::new(origin)
        .signer(signer)
        .checkpoint_every(Duration::from_secs(cfg.audit.checkpoint_interval_secs.max(1)));
    // On SQLite a record is made durable in a journal beside the database (one small flush)
    // and copied into the database behind the request; on PostgreSQL, where several replicas
    // share one ledger, each commit goes to the server.
    let lcfg = match ledger::journal_path(&store) {
        Some(path) => lcfg.journal(path),
        None => lcfg,
    };
    let ledger = ledger::Ledger::open(store.clone(), lcfg).await?;
    let kek = Arc::new(vault::LocalKek::from_base64(cfg.vault.kek.expose())?);
    let mut vcfg = vault::VaultConfig::default();
    vcfg.retention = Some(Duration::from_secs(cfg.vault.retention_secs));
    vcfg.row_cache = cfg.vault.row_cache;
    vcfg.key_row_ttl = Duration::from_millis(cfg.vault.key_state_ms);
    let mut keyring = vault::Keyring::new(kek);
    for old in &cfg.vault.previous_keks {
        keyring = keyring.with_previous(Arc::new(vault::LocalKek::from_base64(old.expose())?));
    }
    let vault = vault::Vault::new(store.clone(), ledger.clone(), keyring, vcfg);
    vault.check_keyring().await?;
    let hmac = base64::engine::general_purpose::STANDARD
        .decode(cfg.audit.hmac_key.expose().trim())
        .map_err(|_| Error::Config("audit.hmac_key is not base64".into()))?;
    let sweeper = vault.spawn_sweeper(Duration::from_secs(300));
    let state = AppState::new(policy, store, ledger, vault, &hmac)?;
    Ok(Running { state, sweeper })
}

/// Serves the app on `listener` until `shutdown` completes, under the configuration's
/// `server` limits: `read_timeout_secs` for each request's headers (and for a kept-alive
/// connection's next request), at most `max_connections` at once, and at most
/// `shutdown_grace_secs` for the requests in flight to finish once `shutdown` has completed;
/// connections still open then are closed.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let policy = state.policy();
    let server = &policy.config().server;
    let read_timeout = Duration::from_secs(server.read_timeout_secs.max(1));
    let max_connections = server.max_connections.max(1);
    let grace = Duration::from_secs(server.shutdown_grace_secs);
    let service = hyper_util::service::TowerToHyperService::new(app(state));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(read_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Set once the grace period is over: every connection still open drops what it serves.
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full = false;
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        if slots.available_permits() == 0 && !warned_full {
            warned_full = true;
            tracing::warn!(
                max_connections,
                "server.max_connections reached: new connections wait until one closes"
            );
        }
        let (tcp, _) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // A connection that failed between the kernel and us costs nothing; anything
                    // else (no file descriptors left) is waited out rather than spun on.
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accept failed; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
        };
        if slots.available_permits() > 0 {
            warned_full = false;
        }
        // Answers are written whole; there is nothing to gain by holding small writes back.
        let _ = tcp.set_nodelay(true);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service.clone());
        let conn = graceful.watch(conn);
        let mut cut = cut_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = cut.wait_for(|c| *c) => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    let open = max_connections - slots.available_permits();
    if open > 0 {
        tracing::info!(
            connections = open,
            grace_secs = grace.as_secs(),
            "waiting for requests in flight"
        );
    }
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        let open = max_connections - slots.available_permits();
        tracing::warn!(
            connections = open,
            "server.shutdown_grace_secs passed: closing the connections still open"
        );
        let _ = cut_tx.send(true);
        // Each task drops its connection at once; wait for them, briefly.
        let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
    }
    Ok(())
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Loads and validates `path` and swaps it in atomically; an invalid file is refused (its
/// problems logged) and the policy in force is kept. Sections read only at start (store,
/// audit, vault, redis, server.listen) take effect on the next restart.
pub fn reload(state: &AppState, path: &std::path::Path) -> Result<String, policy::ConfigErrors> {
    let p = policy::Config::load(path).and_then(policy::Policy::new)?;
    let version = p.version().to_string();
    state.reload(p);
    Ok(version)
}
