//! `phigate audit …`: the audit ledger from the command line. The work is done by the `ledger`
//! library; this module parses arguments, loads keys, opens the store and prints.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use ledger::record::{Action, Decision, Hmac256, HmacKey, Record};
use ledger::{Ledger, LedgerConfig, NoteSigner, NoteVerifier};
use serde::Deserialize;

use crate::audit_store::StoreArgs;
use crate::input::DataError;

/// The default log name (origin line of checkpoints, and key name).
pub const DEFAULT_ORIGIN: &str = policy::DEFAULT_LEDGER_ORIGIN;

/// `phigate audit`.
#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    keys: KeyArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Args)]
struct KeyArgs {
    /// A file holding the base64 of the 32-byte Ed25519 seed that signs checkpoints
    /// [env: PHIGATE_LEDGER_KEY holds the same base64; default: the configuration's
    /// audit.signing_key file when its store is used].
    #[arg(long, value_name = "FILE", global = true)]
    key_file: Option<PathBuf>,
    /// The log's name: the first line of every checkpoint and the signing key's name
    /// [env: PHIGATE_LEDGER_ORIGIN; default: the configuration's audit.origin when its store is
    /// used, else phigate.local/ledger].
    #[arg(long, value_name = "NAME", global = true)]
    origin: Option<String>,
    /// The variable holding the signing key, when the configuration names it as `${VAR}`.
    #[arg(skip)]
    key_env: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutFormat {
    Table,
    Jsonl,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Append records (JSON lines on stdin, or synthetic ones) and print each index as soon as
    /// it is durable.
    #[command(after_help = "\
Input: one JSON object per line:
  {\"actor\":\"svc-intake\",\"action\":\"chat_completion\",\"decision\":\"redact\",
   \"ts\":\"2026-11-23T10:00:00Z\",\"use_case\":\"triage\",\"purpose\":\"treatment\",
   \"reason\":\"phi_redacted\",\"model\":\"gpt-4o\",\"model_version\":\"v2024-08\",
   \"provider\":\"azure-east\",\"policy_version\":\"p3\",\"resource\":\"chat\",
   \"categories\":{\"NAME\":2,\"DATE\":1},\"latency_ms\":412,
   \"request_body\":\"…\",\"identifiers\":[\"…\"]}
Only actor, action and decision are required. request_body and identifiers are never stored:
they are replaced by their HMAC-SHA256 under the key of --hmac-key-file or
PHIGATE_LEDGER_HMAC_KEY (base64 of at least 16 bytes). Identifiers (actor, use_case, …) must be
slugs: a-z, 0-9, '.', '_', ':', '-', starting with a letter, at most 64 bytes.

Output: one line per record, its index, printed once the record is durable.

Examples:
  phigate audit append < events.jsonl
  phigate audit append --synthetic 100000 --concurrency 512 --store /tmp/t.db")]
    Append {
        /// Append N generated records instead of reading stdin.
        #[arg(long, value_name = "N")]
        synthetic: Option<u64>,
        /// How many appends may be in flight at once (1 to 4096).
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// A file holding the base64 HMAC key for request_body and identifiers.
        #[arg(long, value_name = "FILE")]
        hmac_key_file: Option<PathBuf>,
    },
    /// Print the name under which the ledger records an identity, for `search --actor`.
    ///
    /// An identity that is a slug already (lowercase letters, digits, '.', '_', ':', '-', no
    /// run of 7 digits) is its own name; any other (a numeric staff id, an e-mail address, a
    /// UUID) is recorded as its kind and a keyed hash, e.g. user:h.kdjfhgkeldkfjghtyrbnmalqpz,
    /// which needs the gateway's audit HMAC key (audit.hmac_key) to work out.
    #[command(after_help = "\
Examples:
  phigate audit actor user:1234567 --hmac-key-file phigate-data/audit.hmac
  phigate audit search --actor \"$(phigate audit actor user:1234567 \\
      --hmac-key-file phigate-data/audit.hmac)\"")]
    Actor {
        /// The organization identity, e.g. user:1234567 or svc:intake.
        identity: String,
        /// A file holding the base64 audit HMAC key (the gateway's audit.hmac_key)
        /// [env: PHIGATE_LEDGER_HMAC_KEY].
        #[arg(long, value_name = "FILE")]
        hmac_key_file: Option<PathBuf>,
    },
    /// Issue a signed checkpoint of the whole log now and print it.
    #[command(after_help = "\
Examples:
  PHIGATE_LEDGER_KEY=$(cat ledger.key) phigate audit checkpoint
  phigate audit checkpoint --key-file ledger.key --origin hospital.example/phigate")]
    Checkpoint,
    /// Generate a checkpoint signing key: the seed goes to FILE, the verifier key to stdout.
    #[command(after_help = "\
Examples:
  phigate audit keygen --out ledger.key > ledger.pub
  phigate audit keygen --out ledger.key --origin hospital.example/phigate")]
    Keygen {
        /// Where to write the secret seed (created with mode 0600; never overwritten unless --force).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite FILE.
        #[arg(long)]
        force: bool,
    },
    /// Print the verifier key (NAME+KEYHASH+BASE64) of the signing key.
    #[command(after_help = "\
Examples:
  phigate audit pubkey --key-file ledger.key
  PHIGATE_LEDGER_KEY=… phigate audit pubkey > ledger.pub")]
    Pubkey,
    /// Print (and check) the inclusion proof of record INDEX in the tree of SIZE records.
    #[command(after_help = "\
Output: one JSON object {index, tree_size, leaf_hash, root, proof[], checkpoint?} (hex hashes);
the signed checkpoint of that size is included when one exists.

Examples:
  phigate audit prove --index 41
  phigate audit prove --index 41 --size 1000")]
    Prove {
        /// The record's index.
        #[arg(long)]
        index: u64,
        /// The tree size (default: the latest checkpoint's size if it covers INDEX, else the
        /// whole log).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print (and check) the consistency proof between two tree sizes.
    #[command(after_help = "\
Examples:
  phigate audit consistency --from 1000 --to 2000
  phigate audit consistency --from 1000          # to the whole log")]
    Consistency {
        /// The older size.
        #[arg(long)]
        from: u64,
        /// The newer size (default: the whole log).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Write records, checkpoints and consistency proofs to one self-contained file.
    #[command(after_help = "\
A checkpoint of the whole log is issued first when a signing key is available and the log grew;
the export covers the records up to the latest checkpoint.

Examples:
  phigate audit export --out audit-2026-11.export
  phigate audit verify audit-2026-11.export --pubkey \"$(cat ledger.pub)\"")]
    Export {
        /// The file to write (made readable by its owner only, 0600; an auditor's copy is
        /// shared on purpose).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Do not issue a checkpoint first.
        #[arg(long)]
        no_checkpoint: bool,
    },
    /// Check an export offline (or, without FILE, the store): every record, checkpoint
    /// signature, root and consistency proof. Names the first bad record or checkpoint.
    #[command(after_help = "\
Exit status: 0 when everything verifies; 65 with file:line: record N: … or checkpoint #K … when
something does not.

Examples:
  phigate audit verify audit.export --pubkey 'phigate.local/ledger+1a2b3c4d+AX…'
  phigate audit verify audit.export --pubkey ledger.pub
  phigate audit verify audit.export --pubkey ledger.pub --known last-month.checkpoint
  phigate audit verify --key-file ledger.key          # the store itself")]
    Verify {
        /// The export file (none: verify the store).
        file: Option<PathBuf>,
        /// The verifier key, or a file holding it (default: derived from the signing key).
        #[arg(long, value_name = "KEY")]
        pubkey: Option<String>,
        /// A signed checkpoint you kept from before (a file holding the note; repeatable): the
        /// export must reach its size and reproduce its root, so a log cut back and re-signed
        /// is caught.
        #[arg(long, value_name = "NOTE_FILE")]
        known: Vec<PathBuf>,
    },
    /// Find records by time, actor, use case, decision, action and category.
    #[command(after_help = "\
Examples:
  phigate audit search --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z --actor svc-intake
  phigate audit search --decision deny --category SSN --format jsonl
  phigate audit search --use-case triage --action chat_completion --limit 50")]
    Search {
        /// From this time, RFC 3339, inclusive.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Until this time, RFC 3339, exclusive.
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// The acting identity.
        #[arg(long)]
        actor: Option<String>,
        /// The use case.
        #[arg(long)]
        use_case: Option<String>,
        /// allow, redact, tokenize, deny or error.
        #[arg(long)]
        decision: Option<String>,
        /// chat_completion, embedding, deidentify, vault_shred, … .
        #[arg(long)]
        action: Option<String>,
        /// A PHI category (NAME, SSN, DATE, …).
        #[arg(long)]
        category: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
        /// Only records after this index (paging).
        #[arg(long, value_name = "INDEX")]
        after: Option<u64>,
        /// table (default on a terminal) or jsonl (default otherwise).
        #[arg(long, value_enum)]
        format: Option<OutFormat>,
    },
}

impl KeyArgs {
    fn origin(&self) -> anyhow::Result<String> {
        let o = self
            .origin
            .clone()
            .or_else(|| std::env::var("PHIGATE_LEDGER_ORIGIN").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_ORIGIN.to_string());
        if o.chars().any(|c| c.is_whitespace() || c == '+') {
            bail!("--origin: the log name may not hold spaces or '+'");
        }
        Ok(o)
    }

    /// The signing key, if one is configured.
    fn signer(&self) -> anyhow::Result<Option<NoteSigner>> {
        if let Some(var) = &self.key_env {
            let b64 = zeroize::Zeroizing::new(std::env::var(var).unwrap_or_default());
            if b64.trim().is_empty() {
                bail!("the configuration's audit.signing_key names ${{{var}}}, which is not set");
            }
            return Ok(Some(
                NoteSigner::from_base64_seed(&self.origin()?, &b64)
                    .with_context(|| format!("the signing key in ${{{var}}}"))?,
            ));
        }
        Ok(NoteSigner::load(&self.origin()?, self.key_file.as_deref())?)
    }

    fn need_signer(&self) -> anyhow::Result<NoteSigner> {
        self.signer()?.context(
            "no signing key: give --key-file FILE or set PHIGATE_LEDGER_KEY (make one with `phigate audit keygen --out FILE`)",
        )
    }
}

/// Runs `phigate audit …` on its own tokio runtime.
pub fn run(mut args: AuditArgs) -> anyhow::Result<()> {
    args.store = args.store.with_config()?;
    // The gateway's ledger name and signing key file, when its store is the one used.
    if let Some(peek) = args.store.peeked() {
        let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
        if args.keys.origin.is_none() && !set("PHIGATE_LEDGER_ORIGIN") {
            args.keys.origin.clone_from(&peek.origin);
        }
        if args.keys.key_file.is_none() && !set("PHIGATE_LEDGER_KEY") {
            let key = peek.signing_key.as_deref();
            args.keys.key_file = key.and_then(|k| k.strip_prefix("file:")).map(PathBuf::from);
            args.keys.key_env = key.and_then(|k| k.strip_prefix("env:")).map(str::to_string);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args))
}

async fn open_ledger(args: &AuditArgs) -> anyhow::Result<Ledger> {
    let store = args.store.open().await?;
    let mut cfg = LedgerConfig::new(&args.keys.origin()?);
    if let Some(s) = args.keys.signer()? {
        cfg = cfg.signer(s);
    }
    Ok(Ledger::open(store, cfg).await?)
}

async fn run_async(args: AuditArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    match &args.command {
        AuditCommand::Keygen { out, force } => {
            let origin = args.keys.origin()?;
            let (signer, seed) = NoteSigner::generate(&origin)?;
            crate::write_private(out, format!("{seed}\n").as_bytes(), *force)?;
            writeln!(stdout.lock(), "{}", signer.verifier())?;
            eprintln!("wrote the signing key to {}; the verifier key is on stdout", out.display());
            Ok(())
        }
        AuditCommand::Actor { identity, hmac_key_file } => {
            let Some(key) = hmac_key(hmac_key_file.as_deref())? else {
                bail!(
                    "the audit HMAC key is needed: --hmac-key-file FILE or PHIGATE_LEDGER_HMAC_KEY"
                );
            };
            writeln!(stdout.lock(), "{}", ledger::actor_name(&key, identity))?;
            Ok(())
        }
        AuditCommand::Pubkey => {
            let s = args.keys.need_signer()?;
            writeln!(stdout.lock(), "{}", s.verifier())?;
            Ok(())
        }
        AuditCommand::Verify { file: Some(file), pubkey, known } => {
            let v = verifier(pubkey.as_deref(), &args.keys)?;
            let mut held = Vec::new();
            for p in known {
                let note = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the checkpoint {}", p.display()))?;
                held.push(ledger::Checkpoint::open(&note, &v).with_context(|| {
                    format!("{}: not a checkpoint signed by this key", p.display())
                })?);
            }
            verify_file(file, &v, &held)
        }
        AuditCommand::Verify { file: None, pubkey, known } => {
            if !known.is_empty() {
                bail!("--known applies to an export FILE");
            }
            let v = verifier(pubkey.as_deref(), &args.keys)?;
            let l = open_ledger(&args).await?;
            let started = Instant::now();
            let rep = l.verify_store(Some(&v)).await.map_err(|e| DataError {
                file: args.store.display_url(),
                line: 0,
                problem: e.to_string(),
            })?;
            writeln!(
                stdout.lock(),
                "OK: {} records, {} checkpoints verified; root {}",
                rep.records,
                rep.checkpoints,
                hex::encode(rep.root)
            )?;
            eprintln!("verified in {:.2} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        AuditCommand::Checkpoint => {
            args.keys.need_signer()?;
            let l = open_ledger(&args).await?;
            let c = l.checkpoint().await?;
            stdout.lock().write_all(c.note.as_bytes())?;
            Ok(())
        }
        AuditCommand::Append { synthetic, concurrency, hmac_key_file } => {
            let l = open_ledger(&args).await?;
            let key = hmac_key(hmac_key_file.as_deref())?;
            append(l, *synthetic, (*concurrency).clamp(1, MAX_IN_FLIGHT), key).await
        }
        AuditCommand::Prove { index, size } => {
            let l = open_ledger(&args).await?;
            let len = l.len().await?;
            let latest = l.latest_checkpoint().await?;
            let size = match size {
                Some(s) => *s,
                None => match &latest {
                    Some(c) if c.checkpoint.tree_size > *index => c.checkpoint.tree_size,
                    _ => len,
                },
            };
            if *index >= size || size > len {
                bail!("--index {index} --size {size}: the index must be below the size, and the size at most the log's {len} records");
            }
            let p = l.inclusion_proof(*index, size).await?;
            let root = l.root(size).await?;
            p.verify(&root).context("the proof does not verify against the store's root")?;
            let note = l
                .checkpoints()
                .await?
                .into_iter()
                .rev()
                .find(|c| c.checkpoint.tree_size == size && c.checkpoint.root == root)
                .map(|c| c.note);
            let mut o = serde_json::Map::new();
            o.insert("index".into(), p.index.into());
            o.insert("tree_size".into(), p.tree_size.into());
            o.insert("leaf_hash".into(), hex::encode(p.leaf_hash).into());
            o.insert("root".into(), hex::encode(root).into());
            o.insert("proof".into(), p.hashes.iter().map(hex::encode).collect::<Vec<_>>().into());
            if let Some(n) = note {
                o.insert("checkpoint".into(), n.into());
            }
            writeln!(stdout.lock(), "{}", serde_json::Value::Object(o))?;
            Ok(())
        }
        AuditCommand::Consistency { from, to } => {
            let l = open_ledger(&args).await?;
            let len = l.len().await?;
            let to = to.unwrap_or(len);
            if *from > to || to > len {
                bail!("--from {from} --to {to}: need from <= to <= the log's {len} records");
            }
            let p = l.consistency_proof(*from, to).await?;
            let (r1, r2) = (l.root(*from).await?, l.root(to).await?);
            p.verify(&r1, &r2).context("the proof does not verify against the store's roots")?;
            let v = serde_json::json!({
                "from": from,
                "to": to,
                "from_root": hex::encode(r1),
                "to_root": hex::encode(r2),
                "proof": p.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
            });
            writeln!(stdout.lock(), "{v}")?;
            Ok(())
        }
        AuditCommand::Export { out, no_checkpoint } => {
            let l = open_ledger(&args).await?;
            let tmp = tmp_path(out);
            crate::outpath::check_not_store(out, l.store())?;
            crate::outpath::check_not_store(&tmp, l.store())?;
            if !no_checkpoint && l.verifier().is_some() {
                l.checkpoint_if_grown().await?;
            }
            let f = crate::create_private(&tmp, true)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let started = Instant::now();
            let res = l.export(std::io::BufWriter::with_capacity(1 << 20, f)).await;
            let summary = match res {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e).with_context(|| format!("cannot export to {}", out.display()));
                }
            };
            std::fs::rename(&tmp, out)
                .with_context(|| format!("cannot move the export into {}", out.display()))?;
            eprintln!(
                "exported {} records and {} checkpoints to {} in {:.2} s",
                summary.records,
                summary.checkpoints,
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        AuditCommand::Search {
            from,
            to,
            actor,
            use_case,
            decision,
            action,
            category,
            limit,
            after,
            format,
        } => {
            let q = ledger::Query {
                from_ms: from.as_deref().map(|s| parse_time("--from", s)).transpose()?,
                to_ms: to.as_deref().map(|s| parse_time("--to", s)).transpose()?,
                actor: actor.as_deref().map(|s| slug("--actor", s)).transpose()?,
                use_case: use_case.as_deref().map(|s| slug("--use-case", s)).transpose()?,
                decision: decision
                    .as_deref()
                    .map(|s| {
                        s.parse::<Decision>().map_err(|_| {
                            anyhow::anyhow!("--decision: expected one of {}", names(Decision::ALL))
                        })
                    })
                    .transpose()?,
                action: action
                    .as_deref()
                    .map(|s| {
                        s.parse::<Action>().map_err(|_| {
                            anyhow::anyhow!("--action: expected one of {}", names(Action::ALL))
                        })
                    })
                    .transpose()?,
                category: category
                    .as_deref()
                    .map(|s| {
                        s.parse::<phi::Category>().map_err(|_| {
                            anyhow::anyhow!("--category: not a PHI category (NAME, DATE, SSN, …)")
                        })
                    })
                    .transpose()?,
                after_index: *after,
                limit: *limit,
            };
            let l = open_ledger(&args).await?;
            let hits = l.search(&q).await?;
            let format = format.unwrap_or_else(|| {
                use std::io::IsTerminal;
                if std::io::stdout().is_terminal() {
                    OutFormat::Table
                } else {
                    OutFormat::Jsonl
                }
            });
            let mut out = std::io::BufWriter::new(stdout.lock());
            match format {
                OutFormat::Jsonl => {
                    for (i, r) in &hits {
                        let body: serde_json::Map<String, serde_json::Value> =
                            serde_json::from_slice(&r.canonical_bytes())?;
                        let mut o = serde_json::Map::new();
                        o.insert("index".into(), (*i).into());
                        o.extend(body);
                        writeln!(out, "{}", serde_json::Value::Object(o))?;
                    }
                }
                OutFormat::Table => print_table(&mut out, &hits)?,
            }
            out.flush()?;
            Ok(())
        }
    }
}

fn names<T: std::fmt::Display>(all: &[T]) -> String {
    all.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn slug(opt: &str, s: &str) -> anyhow::Result<ledger::Slug> {
    ledger::Slug::check(s).map_err(|p| anyhow::anyhow!("{opt}: {}", p.as_str()))?;
    Ok(s.parse()?)
}

fn parse_time(opt: &str, s: &str) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        anyhow::anyhow!("{opt} {s:?}: not an RFC 3339 time (like 2026-11-23T10:00:00Z)")
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).context("time out of range")
}

fn fmt_time(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn print_table(out: &mut impl Write, hits: &[(u64, Record)]) -> anyhow::Result<()> {
    let opt = |s: Option<&ledger::Slug>| s.map_or_else(|| "-".to_string(), |s| s.to_string());
    let mut rows: Vec<[String; 9]> = vec![[
        "INDEX".into(),
        "TIME".into(),
        "ACTOR".into(),
        "ACTION".into(),
        "USE CASE".into(),
        "DECISION".into(),
        "REASON".into(),
        "MODEL".into(),
        "PHI".into(),
    ]];
    for (i, r) in hits {
        let cats =
            r.categories().iter().map(|(c, n)| format!("{c}:{n}")).collect::<Vec<_>>().join(",");
        rows.push([
            i.to_string(),
            fmt_time(r.ts_ms()),
            r.actor().to_string(),
            r.action().to_string(),
            opt(r.use_case()),
            r.decision().to_string(),
            opt(r.reason()),
            opt(r.model()),
            if cats.is_empty() { "-".into() } else { cats },
        ]);
    }
    let mut w = [0usize; 9];
    for r in &rows {
        for (k, c) in r.iter().enumerate() {
            w[k] = w[k].max(c.len());
        }
    }
    for r in &rows {
        let line = r
            .iter()
            .enumerate()
            .map(|(k, c)| format!("{c:<width$}", width = w[k]))
            .collect::<Vec<_>>()
            .join("  ");
        writeln!(out, "{}", line.trim_end())?;
    }
    if hits.is_empty() {
        writeln!(out, "(no records match)")?;
    }
    Ok(())
}

fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    out.with_file_name(name)
}

fn verifier(pubkey: Option<&str>, keys: &KeyArgs) -> anyhow::Result<NoteVerifier> {
    match pubkey {
        Some(k) => {
            if let Ok(v) = NoteVerifier::parse(k) {
                return Ok(v);
            }
            let p = Path::new(k);
            if p.is_file() {
                let s = std::fs::read_to_string(p).with_context(|| {
                    format!("cannot read the verifier key file {}", p.display())
                })?;
                return NoteVerifier::parse(&s)
                    .with_context(|| format!("{}: not a verifier key", p.display()));
            }
            Err(NoteVerifier::parse(k).err().map_or_else(
                || anyhow::anyhow!("--pubkey: not a verifier key"),
                |e| anyhow::anyhow!("--pubkey: {e} (and no such file)"),
            ))
        }
        None => Ok(keys
            .signer()?
            .context("--pubkey KEY is needed (the verifier key from `phigate audit pubkey`)")?
            .verifier()),
    }
}

fn verify_file(file: &Path, v: &NoteVerifier, known: &[ledger::Checkpoint]) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let started = Instant::now();
    let res = ledger::verify_export_with(std::io::BufReader::with_capacity(1 << 20, f), v, known);
    let name = file.display().to_string();
    let s = match res {
        Ok(s) => s,
        Err(e) => {
            let (line, problem) = match &e {
                ledger::Error::BadRecord { index, line, problem } => {
                    (*line, format!("record {index}: {problem}"))
                }
                ledger::Error::BadCheckpoint { number, tree_size, line, problem } => {
                    (*line, format!("checkpoint #{number} (tree size {tree_size}): {problem}"))
                }
                ledger::Error::Truncated { line, problem } => {
                    (*line, format!("truncated: {problem}"))
                }
                ledger::Error::Export { line, problem } => (*line, problem.clone()),
                ledger::Error::Io(io) => return Err(anyhow::anyhow!("cannot read {name}: {io}")),
                other => (0, other.to_string()),
            };
            return Err(DataError { file: name, line: line as usize, problem }.into());
        }
    };
    let (size, root) = s.last_checkpoint.unwrap_or((0, ledger::merkle::EMPTY_ROOT));
    writeln!(
        std::io::stdout().lock(),
        "OK: {} records, {} checkpoints; the last checkpoint covers {} records, root {}",
        s.records,
        s.checkpoints,
        size,
        hex::encode(root)
    )?;
    eprintln!("verified in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn hmac_key(file: Option<&Path>) -> anyhow::Result<Option<HmacKey>> {
    let (raw, from) = match file {
        Some(p) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the HMAC key file {}", p.display()))?,
            p.display().to_string(),
        ),
        None => match std::env::var("PHIGATE_LEDGER_HMAC_KEY") {
            Ok(s) if !s.trim().is_empty() => (s, "PHIGATE_LEDGER_HMAC_KEY".to_string()),
            _ => return Ok(None),
        },
    };
    Ok(Some(HmacKey::from_base64(&raw).with_context(|| from.clone())?))
}

/// One input line of `audit append`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendLine {
    actor: String,
    action: String,
    decision: String,
    ts: Option<String>,
    ts_ms: Option<i64>,
    resource: Option<String>,
    use_case: Option<String>,
    purpose: Option<String>,
    reason: Option<String>,
    model: Option<String>,
    model_version: Option<String>,
    provider: Option<String>,
    policy_version: Option<String>,
    #[serde(default)]
    categories: BTreeMap<String, u32>,
    latency_ms: Option<u32>,
    request_body: Option<String>,
    #[serde(default)]
    identifiers: Vec<String>,
}

fn parse_line(text: &str, key: Option<&HmacKey>) -> Result<Record, String> {
    // serde_json's messages can quote the input: report only what kind of problem it is.
    let l: AppendLine = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            "not valid JSON".to_string()
        }
        _ => "not a record object (a field is missing, unknown or of the wrong type)".to_string(),
    })?;
    let action: Action = l.action.parse().map_err(|e: ledger::Error| e.to_string())?;
    let decision: Decision = l.decision.parse().map_err(|e: ledger::Error| e.to_string())?;
    let mut b = Record::builder(&l.actor, action, decision);
    let ts = match (&l.ts, l.ts_ms) {
        (Some(t), _) => {
            Some(parse_time("ts", t).map_err(|_| "ts: not an RFC 3339 time".to_string())?)
        }
        (None, t) => t,
    };
    if let Some(t) = ts {
        b = b.ts_ms(t);
    }
    macro_rules! opt {
        ($($f:ident),*) => {$( if let Some(v) = &l.$f { b = b.$f(v); } )*};
    }
    opt!(resource, use_case, purpose, reason, model, model_version, provider, policy_version);
    for (c, n) in &l.categories {
        let cat: phi::Category =
            c.parse().map_err(|_| "categories: unknown PHI category".to_string())?;
        b = b.category(cat, *n);
    }
    if let Some(ms) = l.latency_ms {
        b = b.latency_ms(ms);
    }
    if l.request_body.is_some() || !l.identifiers.is_empty() {
        let key = key.ok_or_else(|| {
            "request_body and identifiers need an HMAC key: --hmac-key-file FILE or PHIGATE_LEDGER_HMAC_KEY"
                .to_string()
        })?;
        if let Some(body) = &l.request_body {
            b = b.request_hmac(Hmac256::compute(key, body.as_bytes()));
        }
        for id in &l.identifiers {
            b = b.identifier_hmac(Hmac256::compute(key, id.as_bytes()));
        }
    }
    b.build().map_err(|e| e.to_string())
}

fn synthetic(i: u64, key: &HmacKey) -> Record {
    const ACTIONS: [Action; 3] = [Action::ChatCompletion, Action::Embedding, Action::Deidentify];
    const DECISIONS: [Decision; 4] =
        [Decision::Allow, Decision::Redact, Decision::Tokenize, Decision::Deny];
    const USE_CASES: [&str; 3] = ["triage", "coding", "discharge-summary"];
    let mut b = Record::builder(
        &format!("svc-{}", i % 13),
        ACTIONS[(i % 3) as usize],
        DECISIONS[(i % 4) as usize],
    )
    .use_case(USE_CASES[(i % 3) as usize])
    .purpose("treatment")
    .model("gpt-4o")
    .provider("private-vllm")
    .policy_version("p1")
    .latency_ms((i % 997) as u32)
    .request_hmac(Hmac256::compute(key, &i.to_le_bytes()));
    if i % 4 == 1 {
        b = b.category(phi::Category::Name, 1 + (i % 3) as u32).reason("phi_redacted");
    }
    if i % 4 == 3 {
        b = b.category(phi::Category::Ssn, 1).reason("ssn_blocked");
    }
    // Every field is a fixed valid slug: build cannot fail.
    b.build().unwrap_or_else(|_| unreachable!("synthetic records are valid"))
}

/// The most appends in flight: fewer than the ledger's queue holds (8192, see
/// `LedgerConfig::queue`), so that submitting one never waits for room.
const MAX_IN_FLIGHT: usize = 4096;

/// An append submitted to the ledger: its result, or the task that waits for it.
enum Submitted {
    Done(Result<u64, ledger::Error>),
    Waiting(tokio::task::JoinHandle<Result<u64, ledger::Error>>),
}

async fn append(
    l: Ledger,
    synth: Option<u64>,
    concurrency: usize,
    key: Option<HmacKey>,
) -> anyhow::Result<()> {
    use std::future::Future as _;
    use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
    let (rec_tx, mut rec_rx) = mpsc::channel::<Result<Record, DataError>>(4096);
    // Records are made (read and parsed, or generated) on a thread of their own.
    let reader = std::thread::spawn(move || match synth {
        Some(n) => {
            let key = HmacKey::generate();
            for i in 0..n {
                if rec_tx.blocking_send(Ok(synthetic(i, &key))).is_err() {
                    return;
                }
            }
        }
        None => {
            let stdin = std::io::stdin();
            let mut line = String::new();
            let mut no = 0usize;
            let mut input = stdin.lock();
            loop {
                line.clear();
                let r = input.read_line(&mut line);
                no += 1;
                let item = match r {
                    Ok(0) => return,
                    Ok(_) if line.trim().is_empty() => continue,
                    Ok(_) => parse_line(line.trim_end(), key.as_ref())
                        .map_err(|problem| DataError { file: "<stdin>".into(), line: no, problem }),
                    Err(e) => Err(DataError {
                        file: "<stdin>".into(),
                        line: no,
                        problem: format!("cannot read: {e}"),
                    }),
                };
                let stop = item.is_err();
                if rec_tx.blocking_send(item).is_err() || stop {
                    return;
                }
            }
        }
    });

    // The ledger gives indexes in the order its appends are submitted, and `Ledger::append`
    // submits (puts the record in the ledger's queue) when it is first polled: each append is
    // polled once here, in input order, before the next record is taken, then left to finish
    // on a task of its own. The printer waits for them in that same order. `unconstrained`:
    // tokio's cooperative budget could otherwise leave that first poll short of submitting.
    let (sub_tx, mut sub_rx) = mpsc::unbounded_channel::<(OwnedSemaphorePermit, Submitted)>();
    let sem = Arc::new(Semaphore::new(concurrency));
    let producer = async move {
        let mut bad: Option<DataError> = None;
        while let Some(item) = rec_rx.recv().await {
            match item {
                Ok(rec) => {
                    let Ok(permit) = sem.clone().acquire_owned().await else { break };
                    let l = l.clone();
                    let mut fut =
                        Box::pin(tokio::task::unconstrained(async move { l.append(rec).await }));
                    let first =
                        std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx)))
                            .await;
                    let sub = match first {
                        std::task::Poll::Ready(r) => Submitted::Done(r),
                        std::task::Poll::Pending => Submitted::Waiting(tokio::spawn(fut)),
                    };
                    if sub_tx.send((permit, sub)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        bad
    };
    let printer = async move {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        // Stays false once stdout fails (a closed pipe): the appends go on, unprinted.
        let mut printing = true;
        let mut first_err: Option<ledger::Error> = None;
        let mut n = 0u64;
        while let Some((permit, sub)) = sub_rx.recv().await {
            let r = match sub {
                Submitted::Done(r) => r,
                Submitted::Waiting(h) => {
                    // Flush before waiting, so every printed index is out of the process as
                    // soon as possible.
                    if printing && !h.is_finished() && out.flush().is_err() {
                        printing = false;
                    }
                    h.await.unwrap_or(Err(ledger::Error::Closed))
                }
            };
            drop(permit);
            match r {
                Ok(i) => {
                    n += 1;
                    if printing && writeln!(out, "{i}").is_err() {
                        printing = false;
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let _ = out.flush();
        (n, first_err)
    };
    let started = Instant::now();
    let (bad, (n, err)) = tokio::join!(producer, printer);
    let _ = reader.join();
    eprintln!(
        "appended {n} records in {:.2} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64().max(1e-9)
    );
    if let Some(e) = bad {
        return Err(e.into());
    }
    if let Some(e) = err {
        return Err(anyhow::Error::new(e).context("an append failed"));
    }
    Ok(())
}
