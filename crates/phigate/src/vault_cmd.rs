//! `phigate vault …`: the operator's side of the token vault — make a key-encryption key
//! (KEK), check that every live data key unwraps, shred scopes past their retention now (the
//! gateway also runs this on a schedule), shred one scope, and rotate the KEK without downtime.
//!
//! The KEK comes from `--kek` (`file:/path`, `env:VAR`, `base64:…`), else the environment
//! variable `PHIGATE_VAULT_KEK`, else the file `vault.kek` in the data directory. Every shred
//! and rotation is a ledger record written before the key changes; no value is ever printed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use vault::{Actor, Keyring, Kms, LocalKek, ShredReason, Vault, VaultConfig};

use crate::audit::DEFAULT_ORIGIN;
use crate::audit_store::StoreArgs;

/// `phigate vault`.
#[derive(clap::Args)]
pub struct VaultArgs {
    #[command(subcommand)]
    command: VaultCommand,
    /// The key-encryption key: file:/path, env:VAR (or ${VAR}) or base64:…
    /// [env: PHIGATE_VAULT_KEK; default: the configuration's vault.kek when its store is used,
    /// else file:vault.kek in the data directory].
    #[arg(long, value_name = "SPEC", global = true)]
    kek: Option<String>,
    /// Older KEKs still wrapping some data keys (during a rotation); repeat as needed
    /// [default: the configuration's vault.previous_keks when its store is used].
    #[arg(long, value_name = "SPEC", global = true)]
    previous_kek: Vec<String>,
    /// Who acts, for the ledger: an organization identity slug.
    #[arg(long, value_name = "ID", global = true, default_value = "admin:cli")]
    actor: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Subcommand)]
enum VaultCommand {
    /// Write a new KEK (base64 of 32 random bytes) to a file readable by its owner only.
    Keygen {
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace the file if it exists (data keys wrapped by the old KEK become unreadable
        /// unless it is kept as --previous-kek).
        #[arg(long)]
        force: bool,
    },
    /// Check that every live data key's KEK is available and unwraps (run before serving).
    Check,
    /// Shred now every scope whose retention has ended.
    Sweep,
    /// Crypto-shred one scope: its data keys are destroyed, its values can never be read again.
    Shred {
        /// The scope: a gateway conversation's, as `phigate vault scope` prints it.
        #[arg(long)]
        scope: String,
        /// Why, as a code: retention_expired, scope_closed, patient_request,
        /// administrator_request, key_compromise, incident_response.
        #[arg(long)]
        reason: String,
    },
    /// Print the vault scope of one conversation of one identity (to shred it).
    ///
    /// The gateway keeps a conversation's values under a scope named by a keyed hash of the
    /// caller's identity and its X-Phigate-Conversation header; this works it out with the
    /// gateway's audit HMAC key. (A conversation sent without that header is scoped by the
    /// API key and its first message instead, which this cannot rebuild.)
    #[command(after_help = "\
Examples:
  phigate vault scope --identity user:jdoe --conversation visit-42 \\
      --hmac-key-file phigate-data/audit.hmac
  phigate vault shred --reason patient_request --scope \"$(phigate vault scope \\
      --identity user:jdoe --conversation visit-42 --hmac-key-file phigate-data/audit.hmac)\"")]
    Scope {
        /// The caller's organization identity (user:… or svc:…).
        #[arg(long)]
        identity: String,
        /// The conversation id the caller sent as X-Phigate-Conversation.
        #[arg(long)]
        conversation: String,
        /// A file holding the base64 audit HMAC key (the gateway's audit.hmac_key).
        #[arg(long, value_name = "FILE")]
        hmac_key_file: PathBuf,
    },
    /// Re-wrap every live data key under a new KEK, while the vault keeps serving.
    RotateKek {
        /// The new KEK (file:/path, env:VAR or base64:…); make one with `phigate vault keygen`.
        #[arg(long, value_name = "SPEC")]
        new_kek: String,
    },
}

fn kek_spec(args: &VaultArgs) -> String {
    if let Some(k) = &args.kek {
        return k.clone();
    }
    if std::env::var(vault::KEK_ENV).is_ok_and(|v| !v.is_empty()) {
        return format!("env:{}", vault::KEK_ENV);
    }
    if let Some(k) = args.store.peeked().and_then(|p| p.kek.clone()) {
        return k;
    }
    format!("file:{}", args.store.data_dir().join("vault.kek").display())
}

/// `--previous-kek`, else the configuration's `vault.previous_keks` when its store is used.
fn previous_specs(args: &VaultArgs) -> Vec<String> {
    if !args.previous_kek.is_empty() {
        return args.previous_kek.clone();
    }
    args.store.peeked().map(|p| p.previous_keks.clone()).unwrap_or_default()
}

fn load_kek(spec: &str, what: &str) -> anyhow::Result<Arc<dyn Kms>> {
    Ok(Arc::new(LocalKek::from_spec(spec).with_context(|| format!("{what}: cannot load the KEK"))?))
}

async fn open_vault(args: &VaultArgs) -> anyhow::Result<Vault> {
    let mut keyring = Keyring::new(load_kek(&kek_spec(args), "--kek")?);
    for p in &previous_specs(args) {
        keyring = keyring.with_previous(load_kek(p, "--previous-kek")?);
    }
    let store = args.store.open().await?;
    let origin = std::env::var("PHIGATE_LEDGER_ORIGIN")
        .ok()
        .filter(|o| !o.is_empty())
        .or_else(|| args.store.peeked().and_then(|p| p.origin.clone()))
        .unwrap_or_else(|| DEFAULT_ORIGIN.to_string());
    let ledger = ledger::Ledger::open(store.clone(), ledger::LedgerConfig::new(&origin)).await?;
    Ok(Vault::new(store, ledger, keyring, VaultConfig::default()))
}

/// Runs `phigate vault …`.
pub fn run(args: VaultArgs) -> anyhow::Result<()> {
    if let VaultCommand::Keygen { out, force } = &args.command {
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(raw.as_mut()).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let text = zeroize::Zeroizing::new(format!(
            "{}\n",
            base64::engine::general_purpose::STANDARD.encode(raw.as_ref())
        ));
        crate::write_private(out, text.as_bytes(), *force)?;
        let id = LocalKek::from_file(out)?.id().to_string();
        println!("{id}");
        eprintln!("wrote a new KEK to {} (mode 0600); its id is on stdout", out.display());
        return Ok(());
    }
    if let VaultCommand::Scope { identity, conversation, hmac_key_file } = &args.command {
        let text =
            zeroize::Zeroizing::new(std::fs::read_to_string(hmac_key_file).with_context(|| {
                format!("cannot read the HMAC key file {}", hmac_key_file.display())
            })?);
        let key = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .with_context(|| format!("{}: not base64", hmac_key_file.display()))?,
        );
        println!("{}", gateway::app::conversation_scope(&key, identity, conversation));
        return Ok(());
    }
    let actor = Actor::new(&args.actor).context("--actor")?;
    let mut args = args;
    args.store = args.store.with_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let v = open_vault(&args).await?;
        match &args.command {
            VaultCommand::Keygen { .. } | VaultCommand::Scope { .. } => {
                unreachable!("handled above")
            }
            VaultCommand::Check => {
                let per_kek = v.check_keyring().await.context("the vault does not open")?;
                let total: usize = per_kek.values().sum();
                println!("OK: {total} live data keys unwrap");
                for (kek, n) in per_kek {
                    println!("  {kek:<40} {n}");
                }
            }
            VaultCommand::Sweep => {
                let n = v.sweep_expired().await.context("sweep failed; nothing more was shredded")?;
                println!("shredded {n} expired data keys (each recorded in the ledger)");
            }
            VaultCommand::Shred { scope, reason } => {
                let reason: ShredReason = reason.parse().context("--reason")?;
                let r = v.shred_scope(scope, &actor, reason).await.context("not shredded")?;
                if r.key_ids.is_empty() {
                    bail!("the scope has no live data key: nothing to shred");
                }
                println!(
                    "shredded {} data keys of the scope (each recorded in the ledger)",
                    r.key_ids.len()
                );
            }
            VaultCommand::RotateKek { new_kek } => {
                let new = load_kek(new_kek, "--new-kek")?;
                let r = v.rotate_kek(new, &actor).await.context("rotation incomplete")?;
                println!(
                    "re-wrapped {} data keys under {}; keep the old KEK as --previous-kek until `phigate vault check` shows none under it",
                    r.rewrapped, r.kek_id
                );
            }
        }
        Ok(())
    })
}
