//! `phigate keys create|list|revoke`: API keys for the gateway (the `policy` crate does the
//! work). A key (`pg_<id>_<secret>`) is printed once, on stdout, and stored only as the SHA-256
//! of its secret. The store is chosen as every other command chooses it (`--store`,
//! `PHIGATE_STORE`, the data directory); with `--config` (or `PHIGATE_CONFIG`), roles and the
//! use case are checked against the configuration, and its store is used when no store is
//! given.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit_store::StoreArgs;

/// `phigate keys`.
#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    /// The configuration to check roles and use cases against (and whose store to use when
    /// --store is not given) [env: PHIGATE_CONFIG; default: ./phigate.yaml, else
    /// ./phigate-data/phigate.yaml, if there is one].
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Make a key bound to an organization identity; the key is printed once, on stdout.
    Create {
        /// The organization identity: user:NAME or svc:NAME.
        #[arg(long)]
        identity: String,
        /// Roles, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// The default use case of requests made with this key.
        #[arg(long)]
        use_case: String,
        /// When the key stops working: YYYY-MM-DD (00:00 UTC) or RFC 3339.
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by its id (the part after `pg_`, before the next `_`).
    Revoke {
        /// The key id.
        id: String,
    },
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_else(|_| "?".into())
}

/// Runs `phigate keys ...`.
pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let config_path = crate::config_cmd::find_config(args.config.clone());
    let policy = match &config_path {
        Some(p) => Some(
            policy::Config::load(p)
                .and_then(policy::Policy::new)
                .map_err(|e| anyhow::anyhow!("{}", e.render(&p.display().to_string()).trim_end()))
                .with_context(|| format!("the configuration {} is not valid", p.display()))?,
        ),
        None => None,
    };
    let mut store_args = args.store.clone();
    let explicit_store = store_args.store.is_some()
        || std::env::var_os("PHIGATE_STORE").is_some_and(|v| !v.is_empty());
    if let (Some(p), false, None) = (&policy, explicit_store, &store_args.data_dir) {
        store_args.store = Some(p.config().store_url());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = store_args.open().await?;
        let res = match args.command {
            KeysCommand::Create { identity, roles, use_case, expires } => {
                let expires = match expires.as_deref() {
                    Some(e) => Some(policy::parse_instant(e).with_context(|| {
                        format!("--expires {e:?}: expected YYYY-MM-DD or RFC 3339")
                    })?),
                    None => None,
                };
                if let Some(p) = &policy {
                    p.check_grant(&roles, Some(&use_case))?;
                }
                let (info, key) =
                    policy::create_key(&store, &identity, &roles, Some(&use_case), expires).await?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{key}")?;
                out.flush()?;
                eprintln!(
                    "phigate: key {} for {} (roles {}, use case {}{}) created; it is shown only \
                     once: store it now, it cannot be recovered",
                    info.id,
                    info.identity,
                    info.roles.join(","),
                    use_case,
                    info.expires.map(|e| format!(", expires {}", fmt_time(e))).unwrap_or_default()
                );
                Ok(())
            }
            KeysCommand::List => {
                let keys = policy::list_keys(&store).await?;
                let now = OffsetDateTime::now_utc();
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{:<16}  {:<24}  {:<20}  {:<20}  {:<20}  {:<20}  STATUS",
                    "ID", "IDENTITY", "ROLES", "USE CASE", "CREATED", "EXPIRES"
                )?;
                for k in keys {
                    let status = if k.revoked.is_some() {
                        "revoked"
                    } else if !k.is_live(now) {
                        "expired"
                    } else {
                        "live"
                    };
                    writeln!(
                        out,
                        "{:<16}  {:<24}  {:<20}  {:<20}  {:<20}  {:<20}  {status}",
                        k.id,
                        k.identity,
                        k.roles.join(","),
                        k.use_case.as_deref().unwrap_or("-"),
                        fmt_time(k.created),
                        k.expires.map(fmt_time).unwrap_or_else(|| "-".into()),
                    )?;
                }
                out.flush()?;
                Ok(())
            }
            KeysCommand::Revoke { id } => {
                // A whole key given by mistake: use its id, never echo the secret.
                // Ids are kept in lowercase: `0123ABCD..` is the same id.
                let id = match policy::parse_key(&id) {
                    Some((i, _)) => i.to_string(),
                    None => id.to_ascii_lowercase(),
                };
                if id.len() != policy::KEY_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("not a key id (16 hex digits, as `phigate keys list` shows)");
                }
                if policy::revoke_key(&store, &id).await? {
                    println!("revoked {id}");
                    Ok(())
                } else {
                    bail!("no live key with id {id:?}")
                }
            }
        };
        store.close().await;
        res
    })
}
