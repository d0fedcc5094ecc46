//! `phigate serve`: runs the gateway. The work is in the `gateway` crate; this file resolves the
//! configuration (creating a working default on a first start), opens the stack, binds, reloads
//! the configuration on SIGHUP and stops on Ctrl-C / SIGTERM.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;

use crate::config_cmd::EXIT_CONFIG;

/// The data directory of a first start.
pub const DATA_DIR: &str = "phigate-data";

/// `phigate serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The configuration file [env: PHIGATE_CONFIG; default: ./phigate.yaml, else
    /// ./phigate-data/phigate.yaml, else a default is created under ./phigate-data].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this address instead of `server.listen` (`127.0.0.1:0` picks a free port).
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<std::net::SocketAddr>,
}

/// The example configuration of a first start (paths relative to its own directory).
const DEFAULT_CONFIG: &str = r#"# phigate: created on first start. Edit, then `phigate config check --config phigate-data/phigate.yaml`
# and reload a running server with SIGHUP (kill -HUP <pid>).
server:
  listen: 127.0.0.1:8080
  max_body_bytes: 1048576
  data_dir: .
audit:
  hmac_key: file:audit.hmac        # generated, 0600
  signing_key: file:ledger.key     # generated, 0600 (Ed25519 seed that signs ledger checkpoints)
  checkpoint_interval_secs: 300
  origin: phigate.local/ledger     # the log's name in its checkpoints; phigate audit's default
vault:
  kek: file:vault.kek              # generated, 0600 (wraps the vault's data keys)
  retention_secs: 2592000
organization:
  blocked_categories: [SSN]
providers:
  - name: local
    kind: openai                   # any OpenAI-compatible server: vLLM, Ollama, llama.cpp
    base_url: http://127.0.0.1:8000/v1
    hosting: private
    timeout_ms: 60000
    retries: 1
models:
  - name: local-chat
    deployments:
      - { provider: local, model: default, weight: 1 }
roles: [clinician, researcher, service, admin]
use_cases:
  - name: general
    purpose: operations
    roles: [admin, clinician, researcher, service]
    models: [local-chat]
    phi:
      default: tokenize            # names, dates, MRNs... leave as [NAME_1], [DATE_1], ...
    output:
      reidentify_roles: [admin, clinician]   # these roles get the values back in the answer
      new_phi: redact
      stream_scan: holdback
    prompt_injection: flag
limits:
  - { role: service, requests_per_minute: 600 }
"#;

/// Where the configuration is, creating the default on a first start. Returns the path and
/// whether it was just created.
fn resolve(flag: Option<PathBuf>) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(p) = flag
        .or_else(|| std::env::var_os("PHIGATE_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
    {
        return Ok((p, false));
    }
    let here = PathBuf::from(crate::config_cmd::DEFAULT_CONFIG);
    if here.exists() {
        return Ok((here, false));
    }
    let data = PathBuf::from(DATA_DIR);
    let cfg = data.join("phigate.yaml");
    if cfg.exists() {
        return Ok((cfg, false));
    }
    let keys_made = ["audit.hmac", "ledger.key", "vault.kek"].iter().any(|f| data.join(f).exists());
    if data.exists() && keys_made {
        anyhow::bail!(
            "{} exists but holds no phigate.yaml: give --config FILE (or move the directory away to start afresh)",
            data.display()
        );
    }
    bootstrap(&data)?;
    Ok((cfg, true))
}

fn random_b64(n: usize) -> anyhow::Result<String> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(&*buf))
}

/// Creates the data directory (0700), the three keys (0600) and the example configuration.
fn bootstrap(data: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.recursive(true).create(data).with_context(|| format!("cannot create {}", data.display()))?;
    // The directory may be there already, holding only a store that a command (`keys list`,
    // `audit search`, ...) made before the first start: it becomes the server's, private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (0700)", data.display()))?;
    }
    crate::write_private(&data.join("audit.hmac"), random_b64(32)?.as_bytes(), false)?;
    crate::write_private(&data.join("ledger.key"), random_b64(32)?.as_bytes(), false)?;
    crate::write_private(&data.join("vault.kek"), random_b64(32)?.as_bytes(), false)?;
    crate::write_private(&data.join("phigate.yaml"), DEFAULT_CONFIG.as_bytes(), false)?;
    Ok(())
}

fn log_warnings(cfg: &policy::Config) {
    for w in crate::config_cmd::warnings(cfg, time::OffsetDateTime::now_utc()) {
        tracing::warn!(problem = %w, "configuration");
    }
}

fn log_problems(errors: &policy::ConfigErrors, path: &Path) {
    for p in &errors.0 {
        tracing::error!(file = %path.display(), line = p.line, path = %p.path, problem = %p.message, "configuration problem");
    }
}

/// Runs `phigate serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    use tracing_subscriber::filter::{filter_fn, FilterExt as _};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    // Logs: events only (spans are for traces), filtered by RUST_LOG (default info). The HTTP
    // client libraries' debug and trace events are never logged, whatever RUST_LOG says: they
    // print connection authorities, `user:password@` included (an OTLP collector's URL may
    // carry one; a provider's base_url cannot, config check refuses it).
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(crate::logbuf::Batched::new())
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
                .and(filter_fn(|m| !m.is_span()))
                .and(filter_fn(|m| {
                    *m.level() <= tracing::Level::INFO || !is_http_internals(m.target())
                })),
        );
    // Traces: the gateway's request and stage spans only, when OTEL_* asks for them. Made
    // here, outside the async runtime: the exporter's blocking HTTP client must not be.
    let traces = crate::traces::provider()?;
    let otel = traces.as_ref().map(|(p, _)| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("phigate"))
            .with_filter(filter_fn(|m| m.is_span() && m.target().starts_with("gateway")))
    });
    let _ = tracing_subscriber::registry().with(logs).with(otel).try_init();
    no_transparent_huge_pages();
    if let Some((p, endpoint)) = &traces {
        opentelemetry::global::set_tracer_provider(p.clone());
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        gateway::telemetry::enable();
        eprintln!(
            "phigate: request traces go to {} (OTLP/HTTP)",
            crate::traces::without_userinfo(endpoint)
        );
    }
    let result = run_inner(args);
    crate::logbuf::flush();
    // Sends the spans still buffered (outside the runtime, as above).
    if let Some((p, _)) = traces {
        if let Err(e) = p.shutdown() {
            // Not the SDK's text: it may hold the collector's URL (with credentials) and reply.
            eprintln!(
                "phigate: the last request traces could not be sent: {}",
                crate::traces::reason(&e)
            );
        }
    }
    result
}

/// Targets of the HTTP client and server libraries, whose verbose events name connections.
fn is_http_internals(target: &str) -> bool {
    ["hyper", "hyper_util", "h2", "reqwest", "rustls", "tower", "opentelemetry"]
        .iter()
        .any(|t| target == *t || target.strip_prefix(t).is_some_and(|r| r.starts_with("::")))
}

fn run_inner(args: ServeArgs) -> anyhow::Result<()> {
    let (path, created) = resolve(args.config)?;
    if created {
        eprintln!("phigate: first start: created {} with new keys (0600)", path.display());
    }
    let shown = path.display().to_string();
    let pol = match policy::Config::load(&path).and_then(policy::Policy::new) {
        Ok(p) => p,
        Err(errors) => {
            print!("{}", errors.render(&shown));
            eprintln!("phigate: {shown}: {} problem(s); nothing was started", errors.0.len());
            crate::logbuf::flush();
            std::process::exit(EXIT_CONFIG);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    log_warnings(pol.config());
    rt.block_on(serve(pol, path, created, args.listen))
}

async fn serve(
    pol: policy::Policy,
    path: PathBuf,
    created: bool,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let listen = listen.map_or_else(|| pol.config().server.listen.clone(), |a| a.to_string());
    let version = pol.version().to_string();
    // The admin key's default use case: the first one the admin role may use.
    let use_case = pol
        .config()
        .use_cases
        .iter()
        .find(|u| u.roles.iter().any(|r| r == "admin"))
        .map(|u| u.name.clone());
    // The port first: a start that cannot listen makes no admin key and touches no store.
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let running = gateway::open(pol).await.context("cannot open the store, ledger or vault")?;
    let state = running.state.clone();
    let store = store::Store::open(&state.policy().config().store_url()).await?;
    // An admin key on the first start, and on any start that finds no key at all in the store
    // (a first start that stopped before making one would otherwise leave nobody a key).
    let no_key_yet = store.api_keys_list().await?.is_empty();
    let has_admin = state.policy().config().roles.iter().any(|r| r == "admin");
    if no_key_yet && !has_admin {
        eprintln!(
            "phigate: the store holds no API key yet: make one with `phigate keys create --config {} --identity user:NAME --roles ROLE --use-case USE_CASE`",
            path.display()
        );
    }
    if created || (no_key_yet && has_admin) {
        let (info, key) = policy::create_key(
            &store,
            "user:admin",
            &["admin".to_string()],
            use_case.as_deref(),
            None,
        )
        .await
        .context("cannot create the admin API key")?;
        println!("phigate: admin API key (shown once; store it now): {key}");
        eprintln!("phigate: key id {} for identity user:admin, role admin", info.id);
    }
    let addr = listener.local_addr()?;

    // The signal handlers go in before the listening line: a SIGHUP (or SIGTERM) sent as soon
    // as that line shows must reach them, not the default action, which ends the process.
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    {
        let state = state.clone();
        let path = path.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match gateway::reload(&state, &path) {
                    Ok(v) => {
                        tracing::info!(policy_version = %v, "configuration reloaded (store, audit, vault, redis, listen and the connection limits take effect on restart)");
                        log_warnings(state.policy().config());
                    }
                    Err(e) => {
                        log_problems(&e, &path);
                        tracing::error!(
                            problems = e.0.len(),
                            "configuration refused; the one in force is kept"
                        );
                    }
                }
            }
        });
    }
    eprintln!("phigate: listening on http://{addr}/v1 (policy version {version})");
    tracing::info!(%addr, policy_version = %version, "serving");
    let shutdown = async {
        #[cfg(unix)]
        {
            match term {
                Ok(mut t) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = t.recv() => {},
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    };
    gateway::serve(state, listener, shutdown).await?;
    running.close().await;
    Ok(())
}

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing to do). `main`
/// calls it first thing for every command; `serve` calls it again once logging is up, so that a
/// failure is reported.
///
/// mimalloc asks for huge pages (`madvise(MADV_HUGEPAGE)`) on the regions it takes from the
/// kernel, and on a kernel whose THP mode is `madvise` or `always` (every major distribution
/// ships one of the two) `khugepaged` then collapses every 2 MiB region of them that has a
/// page in use into a whole huge page, filling the rest. It scans 4,096 pages each 10 s, so it
/// reaches a gateway's heap some ten minutes after the start, and the resident heap then rises
/// in 10 s steps by 10-26 MiB before it levels off. Without huge pages the heap stays where the work
/// put it (40 MiB smaller at 10,000 req/s), and throughput was the same within the runs' noise
/// (docs/GATEWAY.md, seventh session). A batch run (`deid`, `scan`) peaks at about 40 MiB
/// instead of 64-68 MiB, in the same time (docs/ENGINE.md). A failure (a kernel without the
/// prctl) costs nothing but the memory, so it is logged, not fatal.
pub(crate) fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "could not turn transparent huge pages off for this process");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_internals_are_named_by_crate() {
        for t in ["hyper", "hyper_util::client::legacy::pool", "h2::codec", "reqwest::connect"] {
            assert!(super::is_http_internals(t), "{t}");
        }
        for t in ["hyperscan", "gateway::app", "phigate::traces", "store::sqlite"] {
            assert!(!super::is_http_internals(t), "{t}");
        }
    }
}
