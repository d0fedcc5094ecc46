//! Opening the whole stack from a configuration, and serving the app on a socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

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
    let mut warned_at: Option<std::time::Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // At the cap: say so (at most once a minute), and wait for a slot.
                if warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    warned_at = Some(std::time::Instant::now());
                    tracing::warn!(
                        max_connections,
                        "server.max_connections reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
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
                        tokio::select! {
                            biased;
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    continue;
                }
            },
        };
        // Answers are written whole; there is nothing to gain by holding small writes back.
        let _ = tcp.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(WriteDeadline::new(tcp, read_timeout));
        let conn = http.serve_connection(io, service.clone());
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

/// A client connection whose writes must make progress: a write or flush that stays pending
/// (the client stopped reading, its window is full) for `limit` fails, and hyper closes the
/// connection. Without it, a client that sends requests and never reads their answers would
/// hold its connection slot for ever: the header deadline runs only while a request is awaited.
/// No timer exists while writes complete, which is nearly always.
struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(io: T, limit: Duration) -> Self {
        WriteDeadline { io, limit, timer: None }
    }

    /// The outcome of a write or flush: a pending one starts the timer (if not running) and
    /// fails once `limit` has passed; any other stops it.
    fn check<R>(
        &mut self,
        r: Poll<std::io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<R>> {
        if r.is_ready() {
            self.timer = None;
            return r;
        }
        let limit = self.limit;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer = None;
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client took no bytes of the answer within server.read_timeout_secs",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.check(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Loads and validates `path` and swaps it in atomically; an invalid file is refused (its
/// problems logged) and the policy in force is kept. Sections read only at start (store,
/// audit, vault, redis, server.listen, max_connections, shutdown_grace_secs, and
/// read_timeout_secs except for bodies) take effect on the next restart.
pub fn reload(state: &AppState, path: &std::path::Path) -> Result<String, policy::ConfigErrors> {
    let p = policy::Config::load(path).and_then(policy::Policy::new)?;
    let version = p.version().to_string();
    state.reload(p);
    Ok(version)
}
