//! Reading records from JSONL, CSV and plain-text files or stdin, with errors that name the file
//! and line but never the content (it may hold PHI).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde_json::{Map, Value};

/// How a file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// The whole file is one document.
    Text,
    /// Comma-separated values with a header row.
    Csv,
}

impl Format {
    /// The format a path's extension implies: CSV for .csv, .tsv and .tab (which only `deid`
    /// reads as CSV; the record pipeline of `scan` reads it as text, see
    /// [`crate::run::run_records`]).
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Format::Jsonl
        } else if lower.ends_with(".csv") || lower.ends_with(".tsv") || lower.ends_with(".tab") {
            Format::Csv
        } else {
            Format::Text
        }
    }
}

/// A problem with one input record, reported as `file:line: problem`.
#[derive(Debug)]
pub struct DataError {
    /// The file (or `<stdin>`).
    pub file: String,
    /// The 1-based line, 0 when the problem concerns the whole file.
    pub line: usize,
    /// What is wrong, never the content.
    pub problem: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.problem)
        }
    }
}

impl std::error::Error for DataError {}

/// One JSONL record: its id, its text and, for rewriting, the whole object.
pub struct Record {
    /// Line number (1-based) in its file.
    pub line: usize,
    /// The id as given (string or number), or the file name for plain text.
    pub id: Value,
    /// The text to scan.
    pub text: String,
    /// The parsed object (JSONL only).
    pub object: Option<Map<String, Value>>,
    /// The line as read (JSONL with its object only): what is not rewritten is copied from it
    /// byte for byte (a number parsed and written again may change: `1.50`, an integer past 64
    /// bits).
    pub raw: Option<String>,
}

/// Opens a path, `-` meaning stdin.
pub fn open(path: &str) -> io::Result<Box<dyn BufRead + Send>> {
    if path == "-" {
        Ok(Box::new(BufReader::with_capacity(1 << 16, io::stdin())))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, File::open(Path::new(path))?)))
    }
}

/// The display name of a path.
pub fn display_name(path: &str) -> String {
    if path == "-" {
        "<stdin>".to_string()
    } else {
        path.to_string()
    }
}

/// Reads the next line as raw bytes; `Ok(None)` at the end.
pub fn next_line(r: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    buf.clear();
    if r.read_until(b'\n', buf)? == 0 {
        return Ok(None);
    }
    while buf.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        buf.pop();
    }
    Ok(Some(()))
}

/// What is wrong with a line that is no JSON; on standard input's first line, how to read
/// plain text instead (stdin has no extension to guess its format by).
fn malformed(file: &str, line: usize, e: &serde_json::Error) -> String {
    let hint = if file == "<stdin>" && line == 1 {
        "; standard input is read as JSONL: --format text reads it as one document"
    } else {
        ""
    };
    format!("malformed JSON at column {} ({}){hint}", e.column(), e.classify_name())
}

/// Parses one JSONL line into a record, taking the text from `field` and the id from `id_field`.
pub fn parse_jsonl(
    file: &str,
    line: usize,
    bytes: &[u8],
    field: &str,
    id_field: &str,
) -> Result<Record, DataError> {
    let err = |problem: String| DataError { file: file.to_string(), line, problem };
    let s = std::str::from_utf8(bytes)
        .map_err(|e| err(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let v: Value = serde_json::from_str(s).map_err(|e| err(malformed(file, line, &e)))?;
    let Value::Object(obj) = v else {
        return Err(err("expected a JSON object".into()));
    };
    let text = match obj.get(field) {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(err(format!("field {field:?} is not a string"))),
        None => return Err(err(format!("field {field:?} is missing"))),
    };
    let id = obj.get(id_field).cloned().unwrap_or(Value::Null);
    Ok(Record { line, id, text, object: Some(obj), raw: Some(s.to_string()) })
}

/// Like [`parse_jsonl`], but reads only the text and id fields, skipping the rest without
/// building it (the record's `object` is `None`): for commands that print findings only.
pub fn parse_jsonl_fields(
    file: &str,
    line: usize,
    bytes: &[u8],
    field: &str,
    id_field: &str,
) -> Result<Record, DataError> {
    let err = |problem: String| DataError { file: file.to_string(), line, problem };
    let s = std::str::from_utf8(bytes)
        .map_err(|e| err(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let mut de = serde_json::Deserializer::from_str(s);
    let picked = serde::de::DeserializeSeed::deserialize(Pick { field, id_field }, &mut de)
        .and_then(|p| de.end().map(|()| p));
    let (text, id) = match picked {
        Ok(p) => p,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return Err(err("expected a JSON object".into()))
        }
        Err(e) => return Err(err(malformed(file, line, &e))),
    };
    let text = match text {
        Some(Some(t)) => t,
        Some(None) => return Err(err(format!("field {field:?} is not a string"))),
        None => return Err(err(format!("field {field:?} is missing"))),
    };
    Ok(Record { line, id: id.unwrap_or(Value::Null), text, object: None, raw: None })
}

/// Picks two fields out of a JSON object: the text (`Some(None)` when it is not a string)
/// and the id.
struct Pick<'a> {
    field: &'a str,
    id_field: &'a str,
}

impl<'de> serde::de::DeserializeSeed<'de> for Pick<'_> {
    type Value = (Option<Option<String>>, Option<Value>);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Pick<'_> {
    type Value = (Option<Option<String>>, Option<Value>);
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let (mut text, mut id) = (None, None);
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            if k == self.field {
                text = Some(match m.next_value::<Value>()? {
                    Value::String(t) => Some(t),
                    _ => None,
                });
            } else if k == self.id_field {
                id = Some(m.next_value::<Value>()?);
            } else {
                m.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok((text, id))
    }
}

/// Reads a whole plain-text input as one document.
pub fn read_text(file: &str, r: &mut dyn BufRead) -> Result<String, anyhow::Error> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|e| {
        DataError {
            file: file.to_string(),
            line: 0,
            problem: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        }
        .into()
    })
}

/// A name for `serde_json`'s error kinds, content-free.
trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end of line",
        }
    }
}
