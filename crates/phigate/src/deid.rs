//! `phigate deid`: rewrites JSONL fields, CSV columns or plain text with PHI replaced.

use std::io::Write;

use phi::transform::{Context, Transformer};
use phi::Scanner;
use rayon::prelude::*;
use serde_json::Value;

use crate::input::{self, DataError, Record};
use crate::run::{Processor, Stats};

/// De-identifies each record.
pub struct DeidProcessor<'a> {
    /// The engine.
    pub scanner: &'a Scanner,
    /// The transformation.
    pub transformer: &'a Transformer,
    /// JSONL fields to rewrite (the first is the record's text).
    pub fields: &'a [String],
}

impl DeidProcessor<'_> {
    /// De-identifies one text with a fresh per-document context.
    pub fn deid(
        &self,
        text: &str,
        ctx: &mut Context,
        stats: &mut Stats,
    ) -> Result<String, phi::Error> {
        let findings = self.scanner.scan(text);
        stats.add(text.len(), &findings);
        self.transformer.apply(text, &findings, ctx)
    }
}

fn phi_err(file: &str, line: usize, e: phi::Error) -> DataError {
    DataError { file: file.into(), line, problem: e.to_string() }
}

impl Processor for DeidProcessor<'_> {
    fn process(&self, file: &str, rec: &Record, stats: &mut Stats) -> Result<Vec<u8>, DataError> {
        let mut ctx = Context::new();
        let Some(obj) = &rec.object else {
            // Plain text: the whole document.
            let mut out = self
                .deid(&rec.text, &mut ctx, stats)
                .map_err(|e| phi_err(file, 0, e))?
                .into_bytes();
            if !out.ends_with(b"\n") && rec.text.ends_with('\n') {
                out.push(b'\n');
            }
            return Ok(out);
        };
        let mut obj = obj.clone();
        for field in self.fields {
            match obj.get_mut(field) {
                Some(Value::String(s)) => {
                    let new =
                        self.deid(s, &mut ctx, stats).map_err(|e| phi_err(file, rec.line, e))?;
                    *s = new;
                }
                Some(Value::Null) => {}
                Some(_) => {
                    return Err(DataError {
                        file: file.into(),
                        line: rec.line,
                        problem: format!("field {field:?} is not a string"),
                    })
                }
                None => {
                    return Err(DataError {
                        file: file.into(),
                        line: rec.line,
                        problem: format!("field {field:?} is missing"),
                    })
                }
            }
        }
        for (k, v) in &obj {
            let empty = match v {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Bool(_) | Value::Number(_) => false,
            };
            if !empty && !self.fields.contains(k) {
                stats.keep(k, 1);
            }
        }
        let written = match rec.raw.as_deref().and_then(|raw| spliced(raw, &obj, self.fields)) {
            Some(out) => Ok(out),
            None => serde_json::to_vec(&Value::Object(obj)),
        };
        let mut out = written.map_err(|e| DataError {
            file: file.into(),
            line: rec.line,
            problem: e.to_string(),
        })?;
        out.push(b'\n');
        Ok(out)
    }
}

/// The object of the JSONL line `raw` with the values of `fields` taken from `obj` (their
/// rewrites) and every other value copied from `raw` as written, byte for byte: a number
/// parsed and written again may change (`1.50` as `1.5`, an integer past 64 bits as a float).
/// `None` when `raw` holds a key twice (then the parsed object, which keeps the last, is
/// written, as before).
fn spliced(raw: &str, obj: &serde_json::Map<String, Value>, fields: &[String]) -> Option<Vec<u8>> {
    let Pairs(pairs) = serde_json::from_str(raw).ok()?;
    if pairs.len() != obj.len() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len() + 16);
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, k.as_ref()).ok()?;
        out.push(b':');
        if fields.iter().any(|f| f == k) {
            serde_json::to_writer(&mut out, obj.get(k.as_ref())?).ok()?;
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
    }
    out.push(b'}');
    Some(out)
}

/// An object's keys and values as written, in order.
struct Pairs<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for Pairs<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    pairs.push((k, m.next_value::<&'de serde_json::value::RawValue>()?));
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

/// CSV options.
pub struct CsvOptions<'a> {
    /// Columns to de-identify (by header name).
    pub columns: &'a [String],
    /// Field delimiter.
    pub delimiter: u8,
    /// Report and count bad rows instead of stopping.
    pub skip_invalid: bool,
}

/// De-identifies the chosen columns of a CSV file, keeping the others and the header.
pub fn run_csv(
    path: &str,
    p: &DeidProcessor<'_>,
    opts: &CsvOptions<'_>,
    out: &mut dyn Write,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<Stats> {
    let name = input::display_name(path);
    let reader = input::open(path).map_err(|e| DataError {
        file: name.clone(),
        line: 0,
        problem: format!("cannot open: {e}"),
    })?;
    let mut rdr =
        csv::ReaderBuilder::new().delimiter(opts.delimiter).flexible(false).from_reader(reader);
    let headers = rdr
        .byte_headers()
        .map_err(|e| DataError {
            file: name.clone(),
            line: 1,
            problem: format!("unreadable header ({})", csv_kind(&e)),
        })?
        .clone();
    let header_names: Vec<String> =
        headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
    // A file without a header row starts with a record: its values are never printed as names.
    let why_hidden = if reads_as_phi(p.scanner, &header_names) {
        Some("holds what reads as PHI")
    } else if reads_as_record(&header_names) {
        Some("holds a number")
    } else {
        None
    };
    let header_is_phi = why_hidden.is_some();
    let header = || {
        if let Some(why) = why_hidden {
            let n = header_names.len();
            format!(
                "the first line {why}, so it may not be a header row ({n} column{}); give the \
                 file a header row that names its columns",
                if n == 1 { "" } else { "s" }
            )
        } else {
            format!("the header has: {}", header_names.join(", "))
        }
    };
    if opts.columns.is_empty() {
        anyhow::bail!(DataError {
            file: name,
            line: 1,
            problem: format!("--columns is required for CSV; {}", header())
        });
    }
    let mut cols = Vec::new();
    for c in opts.columns {
        match header_names.iter().position(|h| h == c) {
            Some(i) => cols.push(i),
            None => anyhow::bail!(DataError {
                file: name,
                line: 1,
                problem: format!("unknown column {c:?}; {}", header())
            }),
        }
    }
    // How errors name a column: by its header, or by its 1-based position when the header
    // reads as PHI.
    let column = |i: usize| {
        if header_is_phi {
            format!("column {}", i + 1)
        } else {
            format!("column {:?}", header_names[i])
        }
    };
    let mut wtr = csv::WriterBuilder::new().delimiter(opts.delimiter).from_writer(out);
    wtr.write_byte_record(&headers)?;
    let mut stats = Stats::default();
    let mut rows = 0u64;
    let mut records = rdr.into_byte_records();
    loop {
        let mut batch = Vec::new();
        for r in records.by_ref().take(2048) {
            batch.push(r);
        }
        if batch.is_empty() {
            break;
        }
        let results: Vec<(Result<csv::ByteRecord, DataError>, Stats)> = batch
            .into_par_iter()
            .map(|r| {
                let mut st = Stats::default();
                let res = (|| {
                    let rec = r.map_err(|e| DataError {
                        file: name.clone(),
                        line: e.position().map_or(0, |p| p.line() as usize),
                        problem: format!("malformed CSV row ({})", csv_kind(&e)),
                    })?;
                    let line = rec.position().map_or(0, |p| p.line() as usize);
                    let mut ctx = Context::new();
                    let mut outrec = csv::ByteRecord::new();
                    for (i, field) in rec.iter().enumerate() {
                        if cols.contains(&i) {
                            let text = std::str::from_utf8(field).map_err(|e| DataError {
                                file: name.clone(),
                                line,
                                problem: format!(
                                    "invalid UTF-8 in {} at byte {}",
                                    column(i),
                                    e.valid_up_to()
                                ),
                            })?;
                            let new = p
                                .deid(text, &mut ctx, &mut st)
                                .map_err(|e| phi_err(&name, line, e))?;
                            outrec.push_field(new.as_bytes());
                        } else {
                            outrec.push_field(field);
                        }
                    }
                    Ok(outrec)
                })();
                (res, st)
            })
            .collect();
        for (res, st) in results {
            match res {
                Ok(rec) => {
                    pb.inc(rec.as_slice().len() as u64 + rec.len() as u64);
                    wtr.write_byte_record(&rec)?;
                    rows += 1;
                    stats.records += st.records.min(1);
                    stats.bytes += st.bytes;
                    for (a, b) in stats.per_category.iter_mut().zip(st.per_category) {
                        *a += b;
                    }
                }
                Err(e) if opts.skip_invalid => {
                    pb.suspend(|| eprintln!("phigate: skipped {e}"));
                    stats.skipped += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    wtr.flush()?;
    // The other columns, copied as they are (by position when the header reads as PHI).
    for (i, h) in header_names.iter().enumerate().filter(|(i, _)| !cols.contains(i)) {
        let name = if header_is_phi { format!("column {}", i + 1) } else { h.clone() };
        if rows > 0 {
            stats.keep_checked(&name, rows);
        }
    }
    Ok(stats)
}

/// Whether a CSV file's first line reads as a record rather than as column names, though the
/// scanner finds nothing in it: a cell is a number (digits with `.`, `,`, `-`, `/`, `:` or
/// spaces: `12`, `3.5`, `2021-03-14`), other than one that could name a year's column (`2021`).
/// A record's other cells (`Smith`) may be what nothing marks as PHI alone.
pub fn reads_as_record(cells: &[String]) -> bool {
    cells.iter().any(|c| {
        let c = c.trim();
        let number = c.bytes().any(|b| b.is_ascii_digit())
            && c.bytes().all(|b| b.is_ascii_digit() || b" .,-/:".contains(&b));
        let year = c.len() == 4
            && c.bytes().all(|b| b.is_ascii_digit())
            && (1900..=2100).contains(&c.parse::<u32>().unwrap_or(0));
        number && !year
    })
}

/// Whether a CSV file's first line holds what reads as PHI, in a cell or across cells (a name
/// cue in one, the name in the next): then it is likely a record, not a header row.
pub fn reads_as_phi(scanner: &Scanner, cells: &[String]) -> bool {
    // A key or a header is also read with `_`, `-` and `.` as spaces and its words capitalised
    // (`jane_doe` as `Jane Doe`).
    let spaced = |c: &String| {
        let mut out = String::with_capacity(c.len());
        let mut word_start = true;
        for ch in c.chars() {
            let sep = matches!(ch, '_' | '-' | '.' | ' ');
            out.push(if sep {
                ' '
            } else if word_start {
                ch.to_ascii_uppercase()
            } else {
                ch
            });
            word_start = sep;
        }
        out
    };
    cells.iter().any(|c| !scanner.scan(c).is_empty() || !scanner.scan(&spaced(c)).is_empty())
        || !scanner.scan(&cells.join(", ")).is_empty()
}

/// A content-free description of a CSV error.
fn csv_kind(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".into(),
        csv::ErrorKind::Io(_) => "read error".into(),
        _ => "parse error".into(),
    }
}
