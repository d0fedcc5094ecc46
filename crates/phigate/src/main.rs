//! phigate: the command-line entry point. The work is done by the `phi` library; this file
//! parses arguments, wires inputs to outputs and maps errors to exit codes.

mod audit;
mod audit_store;
mod backup;
mod config_cmd;
mod deid;
mod eval;
mod input;
mod keys;
mod logbuf;
mod outpath;
mod panics;
mod run;
mod scan;
mod serve;
mod traces;
mod vault_cmd;

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use phi::transform::{Mode, Transformer};
use phi::{Category, Scanner};

use input::{DataError, Format};

/// Exit code for bad input data (sysexits EX_DATAERR).
const EXIT_DATA: u8 = 65;

/// phigate is the gate where PHI meets AI: an OpenAI-compatible gateway (`serve`) that lets no
/// Protected Health Information out that policy does not allow, and the engine behind it, which
/// finds the HIPAA Safe Harbor identifiers in clinical text and de-identifies it, keeping the
/// clinical meaning (ages up to 89, years, drugs, doses and lab values stay).
#[derive(Parser)]
#[command(name = "phigate", version, about, long_about = None, after_help = "\
Examples:
  phigate serve                       # first start: ./phigate-data/, an admin key, port 8080
  phigate config check                # every problem of the configuration, with its line
  phigate keys create --identity svc:intake --roles service --use-case general
  phigate scan notes.jsonl > findings.jsonl
  phigate deid notes.jsonl --mode placeholder > notes.deid.jsonl
  phigate deid visits.csv --columns note,comment --mode redact -o visits.deid.csv
  phigate eval --gold labelled.jsonl --show-leaks
  phigate audit search --actor svc-intake --from 2026-11-01T00:00:00Z
  phigate audit verify audit.export --pubkey ledger.pub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find PHI and print one JSON line per finding.
    ///
    /// Output: {"id","start","end","category","subtype","score"}, offsets in Unicode code
    /// points, end-exclusive, in input order. The matched text is never printed.
    #[command(after_help = "\
Input: FILE.jsonl (one {\"id\",\"text\"} object per line; other fields are ignored), any other
file (.csv, .tsv and .tab files included) as one plain-text document (its id is the path), or
stdin when no FILE or `-` is given (read as JSONL unless --format text).

Examples:
  phigate scan notes.jsonl
  cat note.txt | phigate scan --format text
  phigate scan notes.jsonl --categories NAME,DATE --min-score 0.7")]
    Scan {
        /// Input files (JSONL or text); none or `-` reads stdin.
        files: Vec<String>,
        #[command(flatten)]
        input: InputArgs,
        /// Report only these categories (comma-separated: NAME,LOCATION,DATE,AGE,PHONE,FAX,
        /// EMAIL,SSN,MRN,HEALTH_PLAN,ACCOUNT,LICENSE,VEHICLE,DEVICE,URL,IP,BIOMETRIC,ID).
        #[arg(long, value_delimiter = ',')]
        categories: Vec<String>,
        /// Drop findings scored below this (0 to 1; default 0 keeps everything: recall first).
        #[arg(long, default_value_t = 0.0)]
        min_score: f32,
        /// Print counts per category on stderr at the end (always on when stderr is a terminal).
        #[arg(long)]
        summary: bool,
    },
    /// Rewrite text with PHI replaced (JSONL fields, CSV columns or plain text).
    #[command(after_help = "\
Modes:
  redact       [NAME], [DATE], …
  mask         every letter and digit of the value as *, separators kept
  placeholder  [NAME_1], [DATE_2], … numbered and consistent within each record
  surrogate    realistic fake values, consistent within each record; dates shifted by one offset
  hash         [NAME:3f9a…], a keyed HMAC-SHA256 (needs --key-file or PHIGATE_DEID_KEY)

JSONL fields and CSV columns not named are copied as they are, byte for byte: a warning on
stderr lists them (names and record counts, never values), so that an `mrn` or `patient` field
is not missed.

Examples:
  phigate deid notes.jsonl --mode placeholder > out.jsonl
  phigate deid notes.jsonl --field text --also-field summary --mode redact -o out.jsonl
  phigate deid visits.csv --columns note --mode surrogate --key-file key.bin -o out.csv
  phigate deid a.txt b.txt --output-dir deid/")]
    Deid {
        /// Input files; none or `-` reads stdin.
        files: Vec<String>,
        #[command(flatten)]
        input: InputArgs,
        /// How PHI is replaced.
        #[arg(long, value_enum, default_value = "placeholder")]
        mode: ModeArg,
        /// More JSONL fields to rewrite besides --field (repeatable).
        #[arg(long = "also-field")]
        also_fields: Vec<String>,
        /// CSV columns to rewrite, by header name (comma-separated); required for CSV.
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// CSV field delimiter (one ASCII character; default: a tab for .tsv and .tab files,
        /// a comma otherwise).
        #[arg(long)]
        delimiter: Option<char>,
        /// Write here instead of stdout (a file made readable by its owner only, 0600); `-` is
        /// stdout.
        #[arg(short, long, conflicts_with = "output_dir")]
        output: Option<String>,
        /// With several inputs: one output file per input, same name, in this directory
        /// (each 0600).
        #[arg(long)]
        output_dir: Option<String>,
        /// A file holding the secret key for `hash` and `surrogate` (raw bytes or hex). The
        /// environment variable PHIGATE_DEID_KEY is used when this is not given.
        #[arg(long)]
        key_file: Option<String>,
        /// Print counts per category on stderr at the end (always on when stderr is a terminal).
        #[arg(long)]
        summary: bool,
    },
    /// Score the engine against labelled spans: recall, precision, F1, entity recall,
    /// over-redaction.
    #[command(after_help = "\
Gold: JSONL {\"id\",\"text\",\"spans\":[{\"start\",\"end\",\"category\"}]}, offsets in code points.
Categories of other tools (PERSON, GEOGRAPHIC_LOCATION, MEDICAL_RECORD_NUMBER, US_SSN, …) are
mapped to phigate's; ones that are not PHI under Safe Harbor (ORGANIZATION, TITLE, …) are ignored
and listed.

Examples:
  phigate eval --gold dev.jsonl
  phigate eval --gold dev.jsonl --show-leaks --show-false-positives
  phigate eval --gold dev.jsonl --json
  phigate eval --gold dev.jsonl --uppercase     # the same notes as if typed in capitals
  phigate eval --gold dev.jsonl --lowercase     # ... and as if typed all in lower case")]
    Eval {
        /// The labelled file.
        #[arg(long)]
        gold: String,
        /// List each missed entity with its context (a developer tool: it prints gold text).
        #[arg(long)]
        show_leaks: bool,
        /// List findings on documents that hold no PHI.
        #[arg(long)]
        show_false_positives: bool,
        /// Print the metrics as one JSON object.
        #[arg(long)]
        json: bool,
        /// Score the texts written in capitals, as many nursing notes are (offsets are kept).
        #[arg(long, conflicts_with = "lowercase")]
        uppercase: bool,
        /// Score the texts written all in lower case, as clinicians type in a chat (offsets
        /// are kept).
        #[arg(long)]
        lowercase: bool,
    },
    /// The audit ledger: append, checkpoint, prove, export, verify, search.
    #[command(after_help = "\
Examples:
  phigate audit keygen --out ledger.key > ledger.pub
  phigate audit append --synthetic 1000
  PHIGATE_LEDGER_KEY=$(cat ledger.key) phigate audit checkpoint
  phigate audit prove --index 41
  phigate audit consistency --from 100 --to 1000
  phigate audit export --key-file ledger.key --out audit.export
  phigate audit verify audit.export --pubkey ledger.pub
  phigate audit search --decision deny --format jsonl")]
    Audit(audit::AuditArgs),
    /// Write the whole store (ledger, checkpoints, vault keys and values) to one file.
    ///
    /// The snapshot is consistent (one read transaction) and carries a SHA-256 over its
    /// content; it restores into an empty store of either backend.
    #[command(after_help = "\
Examples:
  phigate backup --out phigate-2026-11-23.backup
  phigate backup --out pg.backup --store postgres://phigate@db.internal/phigate")]
    Backup(backup::BackupArgs),
    /// Load a backup into an EMPTY store, then verify the restored ledger.
    ///
    /// The file's checksum and counts are checked before anything is written; the load is one
    /// transaction; then every ledger record is re-hashed and every checkpoint's root (and,
    /// with --pubkey, its signature) checked. Exits non-zero, naming the problem, otherwise.
    #[command(after_help = "\
Examples:
  phigate restore phigate-2026-11-23.backup --data-dir ./restored
  phigate restore pg.backup --store postgres://phigate@db2.internal/phigate --pubkey ledger.pub")]
    Restore(backup::RestoreArgs),
    /// Operate the token vault: make a KEK, check it, shred, sweep, rotate.
    ///
    /// Every shred and rotation is written to the ledger before the key changes; no value is
    /// ever printed.
    #[command(after_help = "\
Examples:
  phigate vault keygen --out phigate-data/vault.kek
  phigate vault check
  phigate vault sweep                                   # shred every scope past its retention
  phigate vault shred --scope conv-7f3a --reason patient_request
  phigate vault keygen --out new.kek && phigate vault rotate-kek --new-kek file:new.kek
  phigate vault check --kek file:new.kek --previous-kek file:phigate-data/vault.kek")]
    Vault(vault_cmd::VaultArgs),
    /// Check the gateway's configuration: every problem at once, one per line.
    #[command(after_help = "\
Examples:
  phigate config check --config phigate.yaml     # exit 64 and FILE:LINE: path: message lines if bad")]
    Config(config_cmd::ConfigArgs),
    /// API keys for the gateway: create (shown once), list, revoke.
    #[command(after_help = "\
Examples:
  phigate keys create --identity svc:triage-bot --roles service --use-case clinical-notes \\
      --expires 2027-01-01
  phigate keys list
  phigate keys revoke 0123456789abcdef")]
    Keys(keys::KeysArgs),
    /// Run the OpenAI-compatible gateway (creates a working default under ./phigate-data on a
    /// first start with no configuration).
    #[command(after_help = "\
Examples:
  phigate serve                         # first start: default config, keys, an admin key
  phigate serve --config /etc/phigate/phigate.yaml
  kill -HUP <pid>                       # reload the configuration (an invalid one is refused)
  OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 phigate serve  # also send traces (OTLP/HTTP)

Logs go to stderr (RUST_LOG, default info); they never hold a value, nor do metrics or traces.")]
    Serve(serve::ServeArgs),
}

#[derive(clap::Args)]
struct InputArgs {
    /// Read inputs as this format instead of guessing from the extension (.jsonl/.ndjson →
    /// jsonl; .csv/.tsv/.tab → csv for deid, text for scan; anything else → text).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The JSONL field that holds the text.
    #[arg(long, default_value = "text")]
    field: String,
    /// The JSONL field that holds the record id.
    #[arg(long, default_value = "id")]
    id_field: String,
    /// Report bad records on stderr, count them and go on, instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Redact,
    Mask,
    Placeholder,
    Surrogate,
    Hash,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Redact => Mode::Redact,
            ModeArg::Mask => Mode::Mask,
            ModeArg::Placeholder => Mode::Placeholder,
            ModeArg::Surrogate => Mode::Surrogate,
            ModeArg::Hash => Mode::Hash,
        }
    }
}

/// mimalloc: fewer page faults and cheaper small allocations than the system allocator on the
/// scan path (per record: the text, its findings, the output line). The `mimalloc` feature, on
/// by default; without it, the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    panics::install();
    // First, before the work fills the heap (see `serve::no_transparent_huge_pages`).
    serve::no_transparent_huge_pages();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("phigate: error: {e:#}");
            if e.downcast_ref::<DataError>().is_some() {
                ExitCode::from(EXIT_DATA)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn stdin_if_empty(files: Vec<String>) -> Vec<String> {
    if files.is_empty() {
        vec!["-".to_string()]
    } else {
        files
    }
}

fn show_summary(flag: bool) -> bool {
    use std::io::IsTerminal;
    flag || io::stderr().is_terminal()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let started = Instant::now();
    match cli.command {
        Command::Scan { files, input, categories, min_score, summary } => {
            let cats =
                categories.iter().map(|c| c.parse::<Category>()).collect::<Result<Vec<_>, _>>()?;
            let mut b = Scanner::builder().min_score(min_score);
            if !cats.is_empty() {
                b = b.categories(&cats);
            }
            let scanner = b.build()?;
            let files = stdin_if_empty(files);
            outpath::Inputs::new(&files).check_stdout()?;
            let opts = run::Options {
                format: input.format,
                field: &input.field,
                id_field: &input.id_field,
                skip_invalid: input.skip_invalid,
            };
            let pb = run::progress(&files);
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            let stats = run::run_records(
                &files,
                &opts,
                &scan::ScanProcessor { scanner: &scanner },
                &mut out,
                &pb,
            )?;
            out.flush()?;
            pb.finish_and_clear();
            if show_summary(summary) || stats.skipped > 0 {
                stats.print(started);
            }
            Ok(())
        }
        Command::Deid {
            files,
            input,
            mode,
            also_fields,
            columns,
            delimiter,
            output,
            output_dir,
            key_file,
            summary,
        } => {
            // `-o -`: standard output, as `-` reads standard input.
            let output = output.filter(|o| o != "-");
            let mode: Mode = mode.into();
            let mut transformer = Transformer::new(mode);
            if let Some(key) = load_key(key_file.as_deref())? {
                transformer = transformer.with_key(&key);
            } else if mode == Mode::Hash {
                anyhow::bail!("the hash mode needs a key: --key-file PATH or the PHIGATE_DEID_KEY environment variable");
            }
            let scanner = Scanner::new()?;
            let mut fields = vec![input.field.clone()];
            fields.extend(also_fields);
            let proc = deid::DeidProcessor {
                scanner: &scanner,
                transformer: &transformer,
                fields: &fields,
            };
            let files = stdin_if_empty(files);
            let opts = run::Options {
                format: input.format,
                field: &input.field,
                id_field: &input.id_field,
                skip_invalid: input.skip_invalid,
            };
            let delimiter = delimiter
                .map(|d| {
                    u8::try_from(d)
                        .ok()
                        .filter(u8::is_ascii)
                        .context("--delimiter must be one ASCII character")
                })
                .transpose()?;
            // Every output is checked before anything is created: none may be an input, nor
            // two inputs go to one file of --output-dir.
            let inputs = outpath::Inputs::new(&files);
            let per_file: Vec<std::path::PathBuf> = match &output_dir {
                Some(dir) => files
                    .iter()
                    .map(|f| {
                        let base = std::path::Path::new(f)
                            .file_name()
                            .map_or_else(|| "stdin".into(), |n| n.to_string_lossy().into_owned());
                        std::path::Path::new(dir).join(base)
                    })
                    .collect(),
                None => Vec::new(),
            };
            match (&output_dir, &output) {
                (Some(_), _) => inputs.check_each(&files, &per_file)?,
                (None, Some(p)) => inputs.check(std::path::Path::new(p))?,
                (None, None) => inputs.check_stdout()?,
            }
            if let Some(dir) = &output_dir {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
            }
            let pb = run::progress(&files);
            let mut total = run::Stats::default();
            let mut shared: Option<Box<dyn Write>> = None;
            for (i, f) in files.iter().enumerate() {
                let mut out: Box<dyn Write> = match per_file.get(i) {
                    Some(path) => Box::new(BufWriter::new(
                        create_private(path, true)
                            .with_context(|| format!("cannot create {}", path.display()))?,
                    )),
                    None => match shared.take() {
                        Some(w) => w,
                        None => match &output {
                            Some(p) => Box::new(BufWriter::new(
                                create_private(std::path::Path::new(p), true)
                                    .with_context(|| format!("cannot create {p}"))?,
                            )),
                            None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
                        },
                    },
                };
                let format = input.format.unwrap_or_else(|| {
                    if f == "-" {
                        Format::Jsonl
                    } else {
                        Format::from_path(f)
                    }
                });
                let stats = if format == Format::Csv {
                    let csv_opts = deid::CsvOptions {
                        columns: &columns,
                        delimiter: delimiter.unwrap_or_else(|| default_delimiter(f)),
                        skip_invalid: input.skip_invalid,
                    };
                    deid::run_csv(f, &proc, &csv_opts, &mut out, &pb)?
                } else {
                    run::run_records(std::slice::from_ref(f), &opts, &proc, &mut out, &pb)?
                };
                out.flush()?;
                total.merge(&stats);
                if output_dir.is_none() {
                    shared = Some(out);
                }
            }
            pb.finish_and_clear();
            if show_summary(summary) || total.skipped > 0 {
                total.print(started);
            }
            total.warn_kept(
                "name a JSONL field with --field/--also-field, a CSV column with --columns, to \
                 rewrite it",
                &|name| deid::reads_as_phi(&scanner, &[name.to_string()]),
            );
            Ok(())
        }
        Command::Audit(args) => audit::run(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Vault(args) => vault_cmd::run(args),
        Command::Config(args) => config_cmd::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Eval { gold, show_leaks, show_false_positives, json, uppercase, lowercase } => {
            let scanner = Scanner::new()?;
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let opts = eval::Options {
                show_leaks,
                show_fps: show_false_positives,
                json,
                uppercase,
                lowercase,
            };
            eval::run(&gold, &scanner, opts, &mut out)?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Creates a file readable and writable by its owner only (0600), whatever the umask: output
/// that may hold a value the engine missed, an audit export, a secret key. With `replace`, an
/// existing file is truncated, and a regular one that others can read is narrowed (anything
/// else, `/dev/null` or a FIFO, keeps its mode); without, an existing file is an error.
pub(crate) fn create_private(path: &std::path::Path, replace: bool) -> io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if replace {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let f = o.open(path)?;
        let meta = f.metadata()?;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(f)
    }
    #[cfg(not(unix))]
    o.open(path)
}

/// Writes `bytes` to a new 0600 file at `path` (see [`create_private`]; `replace` overwrites
/// one that exists) and flushes it to the disk.
pub(crate) fn write_private(
    path: &std::path::Path,
    bytes: &[u8],
    replace: bool,
) -> anyhow::Result<()> {
    let mut f = create_private(path, replace).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AlreadyExists {
            " (it exists; use --force to overwrite)"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!("cannot create {}{hint}", path.display()))
    })?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The CSV delimiter a path's extension implies: a tab for .tsv and .tab, a comma otherwise.
fn default_delimiter(path: &str) -> u8 {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".tsv") || lower.ends_with(".tab") {
        b'\t'
    } else {
        b','
    }
}

/// The secret key from a file (raw, or hex if it is all hex digits) or the environment.
fn load_key(path: Option<&str>) -> anyhow::Result<Option<Vec<u8>>> {
    let raw = match path {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read the key file {p}"))?,
        None => match std::env::var("PHIGATE_DEID_KEY") {
            Ok(v) => v.into_bytes(),
            Err(_) => return Ok(None),
        },
    };
    let trimmed: Vec<u8> = raw.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
    let key = if !trimmed.is_empty()
        && trimmed.len().is_multiple_of(2)
        && trimmed.iter().all(u8::is_ascii_hexdigit)
    {
        hex::decode(&trimmed).context("the key is not valid hex")?
    } else {
        raw
    };
    if key.len() < 16 {
        anyhow::bail!("the key must be at least 16 bytes (32 hex digits)");
    }
    Ok(Some(key))
}
