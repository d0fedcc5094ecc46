//! The shared record pipeline of `scan` and `deid`: read in batches, process in parallel over
//! cores, write in input order, count, report bad records.

use std::io::Write;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::input::{self, DataError, Format, Record};

/// Lines per parallel batch.
const BATCH_LINES: usize = 2048;
/// Bytes per parallel batch.
const BATCH_BYTES: usize = 8 << 20;

/// Per-run counters, printed as the summary.
#[derive(Default)]
pub struct Stats {
    /// Records processed.
    pub records: u64,
    /// Records skipped for being invalid.
    pub skipped: u64,
    /// Bytes of text scanned.
    pub bytes: u64,
    /// Findings per category (index = `Category::index`).
    pub per_category: [u64; phi::Category::ALL.len()],
    /// `deid`: fields or columns copied as they are, not de-identified, with the number of
    /// records that had one (see [`Stats::keep`]).
    pub kept: std::collections::BTreeMap<String, u64>,
}

impl Stats {
    /// Adds a record's findings.
    pub fn add(&mut self, text_len: usize, findings: &[phi::Finding]) {
        self.records += 1;
        self.bytes += text_len as u64;
        for f in findings {
            self.per_category[f.category.index()] += 1;
        }
    }

    /// Adds the counts of `o`.
    pub fn merge(&mut self, o: &Stats) {
        self.records += o.records;
        self.skipped += o.skipped;
        self.bytes += o.bytes;
        for (a, b) in self.per_category.iter_mut().zip(o.per_category) {
            *a += b;
        }
        for (k, n) in &o.kept {
            *self.kept.entry(k.clone()).or_default() += n;
        }
    }

    /// Counts a record's field or column `name` as copied as it is. A name that is not a
    /// plain word (ASCII letters, digits, `_`, `-`, `.`, `$`, at most 64) is never printed: a
    /// key could be anything.
    pub fn keep(&mut self, name: &str, records: u64) {
        let plain = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.$".contains(&b));
        self.keep_checked(if plain { name } else { "(fields of other names)" }, records);
    }

    /// [`Stats::keep`] for a name known to read as no PHI (a CSV header that was checked, a
    /// column's position).
    pub fn keep_checked(&mut self, name: &str, records: u64) {
        *self.kept.entry(name.to_string()).or_default() += records;
    }

    /// Warns, on stderr, of what `deid` copied without de-identifying it: names and counts
    /// only, a name that `reads_as_phi` counted with the others of other names.
    pub fn warn_kept(&self, how: &str, reads_as_phi: &dyn Fn(&str) -> bool) {
        if self.kept.is_empty() {
            return;
        }
        let mut shown = std::collections::BTreeMap::new();
        for (k, n) in &self.kept {
            let k = if reads_as_phi(k) { "(fields of other names)" } else { k.as_str() };
            *shown.entry(k).or_insert(0u64) += n;
        }
        let list: Vec<String> = shown.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        eprintln!(
            "phigate: warning: copied as they are, not de-identified (records): {}; {how}",
            list.join(", ")
        );
    }

    /// Prints the summary on stderr: counts only, never values.
    pub fn print(&self, started: Instant) {
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let total: u64 = self.per_category.iter().sum();
        eprintln!(
            "phigate: {} records, {:.1} MB in {:.2} s ({:.1} MB/s), {} findings{}",
            self.records,
            self.bytes as f64 / 1e6,
            secs,
            self.bytes as f64 / 1e6 / secs,
            total,
            if self.skipped > 0 {
                format!(", {} invalid records skipped", self.skipped)
            } else {
                String::new()
            }
        );
        for c in phi::Category::ALL {
            let n = self.per_category[c.index()];
            if n > 0 {
                eprintln!("  {:<12} {n}", c.as_str());
            }
        }
    }
}

/// What to do with each record: returns the output bytes for it.
pub trait Processor: Sync {
    /// Processes one record of `file` (its display name, for errors); `stats` receives its
    /// counts.
    fn process(&self, file: &str, rec: &Record, stats: &mut Stats) -> Result<Vec<u8>, DataError>;
    /// Whether it needs the whole JSONL object (`Record::object`), not only text and id.
    fn needs_object(&self) -> bool {
        true
    }
}

/// Options of the record pipeline.
pub struct Options<'a> {
    /// Force a format instead of guessing from the extension.
    pub format: Option<Format>,
    /// The text field of JSONL records.
    pub field: &'a str,
    /// The id field of JSONL records.
    pub id_field: &'a str,
    /// Report and count bad records instead of stopping.
    pub skip_invalid: bool,
}

/// A progress bar on stderr, only when stderr is a terminal.
pub fn progress(paths: &[String]) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total: u64 = paths.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// Runs JSONL or plain-text inputs through `proc`, writing outputs in order to `out`.
pub fn run_records(
    paths: &[String],
    opts: &Options<'_>,
    proc: &dyn Processor,
    out: &mut dyn Write,
    pb: &ProgressBar,
) -> anyhow::Result<Stats> {
    let mut stats = Stats::default();
    for path in paths {
        let name = input::display_name(path);
        let mut r = input::open(path).map_err(|e| DataError {
            file: name.clone(),
            line: 0,
            problem: format!("cannot open: {e}"),
        })?;
        // A file guessed to be CSV is one plain-text document here (`scan`: the engine reads
        // CSV and TSV cells as they are); `deid` reads it as CSV itself, not through here.
        let format = opts.format.unwrap_or_else(|| {
            if path == "-" {
                Format::Jsonl
            } else {
                match Format::from_path(path) {
                    Format::Csv => Format::Text,
                    f => f,
                }
            }
        });
        match format {
            Format::Text => {
                let text = input::read_text(&name, &mut r)?;
                pb.inc(text.len() as u64);
                let rec = Record {
                    line: 0,
                    id: serde_json::Value::String(name.clone()),
                    text,
                    object: None,
                    raw: None,
                };
                let bytes = proc.process(&name, &rec, &mut stats)?;
                out.write_all(&bytes)?;
            }
            Format::Jsonl => run_jsonl(&name, &mut r, opts, proc, out, pb, &mut stats)?,
            Format::Csv => anyhow::bail!(DataError {
                file: name,
                line: 0,
                problem: "--format csv is only for `phigate deid` (without --format, scan \
                          reads a CSV file as plain text)"
                    .into()
            }),
        }
    }
    Ok(stats)
}

fn run_jsonl(
    name: &str,
    r: &mut dyn std::io::BufRead,
    opts: &Options<'_>,
    proc: &dyn Processor,
    out: &mut dyn Write,
    pb: &ProgressBar,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let mut line_no = 0usize;
    let mut buf = Vec::new();
    loop {
        // Read one batch.
        let mut batch: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
            if input::next_line(r, &mut buf)?.is_none() {
                break;
            }
            line_no += 1;
            pb.inc(buf.len() as u64 + 1);
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            bytes += buf.len();
            batch.push((line_no, std::mem::take(&mut buf)));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let results: Vec<(Result<Vec<u8>, DataError>, Stats)> = batch
            .par_iter()
            .map(|(line, bytes)| {
                let mut st = Stats::default();
                let parse = if proc.needs_object() {
                    input::parse_jsonl
                } else {
                    input::parse_jsonl_fields
                };
                let res = parse(name, *line, bytes, opts.field, opts.id_field)
                    .and_then(|rec| proc.process(name, &rec, &mut st));
                (res, st)
            })
            .collect();
        for (res, st) in results {
            match res {
                Ok(bytes) => {
                    out.write_all(&bytes)?;
                    stats.merge(&st);
                }
                Err(e) if opts.skip_invalid => {
                    pb.suspend(|| eprintln!("phigate: skipped {e}"));
                    stats.skipped += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
