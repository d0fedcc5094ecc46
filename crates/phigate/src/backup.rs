//! `phigate backup` and `phigate restore`: the whole store (ledger, checkpoints, vault keys and
//! values, API keys) as one portable, checksummed file, restorable into an empty store of either backend.
//!
//! The snapshot is consistent (one read transaction). Restore checks the file's checksum and
//! counts before it writes anything, loads it in one transaction, then re-reads the restored
//! ledger: every record against its leaf hash and every checkpoint's root (and signature, given
//! `--pubkey`), so a restored store is known good before anything serves from it.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use crate::audit::DEFAULT_ORIGIN;
use crate::audit_store::StoreArgs;

/// `phigate backup`.
#[derive(clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (written to a temporary file, synced, then renamed).
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `phigate restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup file, as `phigate backup` wrote it.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The ledger's verifier key (`phigate audit pubkey`): checkpoint signatures are checked too.
    #[arg(long, value_name = "KEY_OR_FILE")]
    pub pubkey: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Writes a backup of the whole store.
pub fn backup(mut args: BackupArgs) -> anyhow::Result<()> {
    args.store = args.store.with_config()?;
    if args.out.exists() && !args.force {
        bail!("{} exists; give --force to replace it", args.out.display());
    }
    runtime()?.block_on(async {
        let store = args.store.open().await?;
        crate::outpath::check_not_store(&args.out, &store)?;
        let s = store
            .backup(&args.out)
            .await
            .with_context(|| format!("backup of {} failed", args.store.display_url()))?;
        store.close().await;
        println!(
            "backed up {} to {}: {} ledger records, {} checkpoints, {} data keys, {} vault values, {} API keys; sha256 {}",
            args.store.display_url(),
            args.out.display(),
            s.ledger_entries,
            s.checkpoints,
            s.data_keys,
            s.vault_rows,
            s.api_keys,
            s.sha256
        );
        Ok(())
    })
}

/// Restores a backup into an empty store and verifies the restored ledger.
pub fn restore(mut args: RestoreArgs) -> anyhow::Result<()> {
    args.store = args.store.with_config()?;
    let verifier = match &args.pubkey {
        Some(k) => Some(ledger::NoteVerifier::parse(&read_key(k)?).context("--pubkey")?),
        None => None,
    };
    runtime()?.block_on(async {
        let store = args.store.open().await?;
        let s = ledger::restore_backup(&store, &args.file).await.map_err(|e| match e {
            store::Error::NotEmpty => anyhow::anyhow!(
                "{} is not empty: restore only into a new, empty store (nothing was written)",
                args.store.display_url()
            ),
            e => anyhow::Error::new(e).context(format!(
                "{}: not restored (nothing was written)",
                args.file.display()
            )),
        })?;
        let origin = std::env::var("PHIGATE_LEDGER_ORIGIN")
            .ok()
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| DEFAULT_ORIGIN.to_string());
        let ledger = ledger::Ledger::open(store.clone(), ledger::LedgerConfig::new(&origin))
            .await
            .context("cannot open the restored ledger")?;
        let report = ledger.verify_store(verifier.as_ref()).await.with_context(|| {
            format!(
                "the restored ledger does not verify: do not serve from {}",
                args.store.display_url()
            )
        })?;
        store.close().await;
        println!(
            "restored {} into {}: {} ledger records ({} re-hashed, {} checkpoints verified{}), {} data keys, {} vault values, {} API keys; sha256 {}",
            args.file.display(),
            args.store.display_url(),
            s.ledger_entries,
            report.records,
            report.checkpoints,
            if verifier.is_some() { " with signatures" } else { "" },
            s.data_keys,
            s.vault_rows,
            s.api_keys,
            s.sha256
        );
        Ok(())
    })
}

/// A verifier key given inline or as a file holding it.
fn read_key(k: &str) -> anyhow::Result<String> {
    let p = std::path::Path::new(k);
    if p.exists() {
        let s =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        Ok(s.trim().to_string())
    } else {
        Ok(k.trim().to_string())
    }
}
