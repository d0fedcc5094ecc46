//! The self-contained export file and its offline verifier.
//!
//! The format is line-based text, so it streams both ways:
//!
//! ```text
//! phigate-ledger-export v1
//! origin <origin>
//! R <index> <leaf hash hex> <canonical record JSON>      one per record, in index order
//! C <signed checkpoint note as a JSON string>           right after record size-1
//! P <old size> <new size> <base64 hash>,<base64 hash>   consistency from the previous checkpoint ("-" when empty)
//! END <records> <checkpoints>
//! ```
//!
//! [`verify_export`] needs only the file and the log's verifier key. It checks every record's
//! index, leaf hash and canonical form, recomputes the tree with a compact range (O(log n)
//! memory, one pass), checks every checkpoint's signature and root against the records before
//! it, and every consistency proof between consecutive checkpoints. It stops at the first
//! problem and names it: a record by index, a checkpoint by number and size, always with the
//! line number.

use std::io::{BufRead, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::checkpoint::{Checkpoint, NoteVerifier};
use crate::merkle::{leaf_hash, verify_consistency, Frontier, Hash};
use crate::record::Record;
use crate::tree::MemoryTree;
use crate::Error;

/// The first line of every export.
pub const EXPORT_MAGIC: &str = "phigate-ledger-export v1";

/// Writes an export. Records must come in index order from 0; a checkpoint of size `s` must
/// come after record `s - 1`. Keeps the leaf hashes in memory (64 bytes per record) to make
/// consistency proofs between checkpoints.
pub struct ExportWriter<W: Write> {
    out: W,
    origin: String,
    tree: MemoryTree,
    prev: Option<(u64, Hash)>,
    checkpoints: u64,
}

impl<W: Write> std::fmt::Debug for ExportWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExportWriter({} records, {} checkpoints)", self.tree.size(), self.checkpoints)
    }
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export of the log named `origin`.
    pub fn new(mut out: W, origin: &str) -> Result<ExportWriter<W>, Error> {
        if origin.is_empty() || origin.contains(['\n', '\r']) {
            return Err(Error::Checkpoint("the origin must be one non-empty line".into()));
        }
        writeln!(out, "{EXPORT_MAGIC}")?;
        writeln!(out, "origin {origin}")?;
        Ok(ExportWriter {
            out,
            origin: origin.to_string(),
            tree: MemoryTree::new(),
            prev: None,
            checkpoints: 0,
        })
    }

    /// Writes the next record (its canonical bytes, as stored).
    pub fn record(&mut self, index: u64, leaf: &Hash, body: &[u8]) -> Result<(), Error> {
        if index != self.tree.size() {
            return Err(Error::Export {
                line: 0,
                problem: format!("record {index} written out of order"),
            });
        }
        if body.contains(&b'\n') {
            return Err(Error::BadRecord { index, line: 0, problem: "holds a newline".into() });
        }
        write!(self.out, "R {index} {} ", hex::encode(leaf))?;
        self.out.write_all(body)?;
        self.out.write_all(b"\n")?;
        self.tree.push(*leaf);
        Ok(())
    }

    /// Writes a signed checkpoint note covering the records written so far, and the
    /// consistency proof from the previous checkpoint.
    pub fn checkpoint(&mut self, note: &str) -> Result<(), Error> {
        let text = note.rfind("\n\n").map_or(note, |i| &note[..=i]);
        let c = Checkpoint::parse_body(text)?;
        if c.origin != self.origin {
            return Err(Error::Checkpoint(
                "the checkpoint is of another log (origin differs)".into(),
            ));
        }
        if c.tree_size != self.tree.size() {
            return Err(Error::Checkpoint(format!(
                "a checkpoint of size {} written after {} records",
                c.tree_size,
                self.tree.size()
            )));
        }
        writeln!(self.out, "C {}", serde_json::Value::String(note.to_string()))?;
        if let Some((old, _)) = self.prev {
            let proof = self.tree.consistency_proof(old, c.tree_size);
            let list = if proof.is_empty() {
                "-".to_string()
            } else {
                proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>().join(",")
            };
            writeln!(self.out, "P {old} {} {list}", c.tree_size)?;
        }
        self.prev = Some((c.tree_size, c.root));
        self.checkpoints += 1;
        Ok(())
    }

    /// The number of records written.
    pub fn records(&self) -> u64 {
        self.tree.size()
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> Result<(W, ExportSummary), Error> {
        writeln!(self.out, "END {} {}", self.tree.size(), self.checkpoints)?;
        self.out.flush()?;
        let last = self.prev;
        Ok((
            self.out,
            ExportSummary {
                records: self.tree.size(),
                checkpoints: self.checkpoints,
                last_checkpoint: last,
            },
        ))
    }
}

/// What an export holds (or held, once verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Records.
    pub records: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// The size and root of the last checkpoint.
    pub last_checkpoint: Option<(u64, Hash)>,
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&c| c == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty()
        || b.len() > 20
        || !b.iter().all(u8::is_ascii_digit)
        || (b.len() > 1 && b[0] == b'0')
    {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Verifies an export offline, streaming. See the module documentation for what is checked.
pub fn verify_export<R: BufRead>(
    input: R,
    verifier: &NoteVerifier,
) -> Result<ExportSummary, Error> {
    verify_export_with(input, verifier, &[])
}

/// [`verify_export`], and also checks the export against checkpoints the auditor already
/// holds (verified beforehand, e.g. with [`Checkpoint::open`]): the records must reproduce each
/// one's root at its size, and the export must reach each one's size. This catches a log that
/// was cut back and re-signed, which no export alone can show.
pub fn verify_export_with<R: BufRead>(
    mut input: R,
    verifier: &NoteVerifier,
    known: &[Checkpoint],
) -> Result<ExportSummary, Error> {
    let mut known: Vec<&Checkpoint> = known.iter().collect();
    known.sort_by_key(|c| std::cmp::Reverse(c.tree_size));
    let check_known = |known: &mut Vec<&Checkpoint>,
                       f: &Frontier,
                       line: u64|
     -> Result<(), Error> {
        while let Some(c) = known.last() {
            if c.tree_size != f.size() {
                break;
            }
            if c.root != f.root() {
                return Err(Error::BadRecord {
                    index: c.tree_size.saturating_sub(1),
                    line,
                    problem: format!(
                        "the records 0..{} do not reproduce the root of the checkpoint of that size you hold: the log was rewritten",
                        c.tree_size
                    ),
                });
            }
            known.pop();
        }
        Ok(())
    };
    let mut buf = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    let mut next_line = |buf: &mut Vec<u8>, line_no: &mut u64| -> Result<bool, Error> {
        buf.clear();
        let n = input.read_until(b'\n', buf)?;
        if n == 0 {
            return Ok(false);
        }
        *line_no += 1;
        if buf.last() != Some(&b'\n') {
            return Err(Error::Truncated {
                line: *line_no,
                problem: "the last line is cut off".into(),
            });
        }
        buf.pop();
        Ok(true)
    };
    let fmt_err = |line: u64, p: &str| Error::Export { line, problem: p.to_string() };

    if !next_line(&mut buf, &mut line_no)? {
        return Err(Error::Truncated { line: 0, problem: "the file is empty".into() });
    }
    if buf != EXPORT_MAGIC.as_bytes() {
        return Err(fmt_err(line_no, "not a phigate ledger export (bad first line)"));
    }
    if !next_line(&mut buf, &mut line_no)? {
        return Err(Error::Truncated { line: line_no, problem: "no origin line".into() });
    }
    let origin = match buf.strip_prefix(b"origin ") {
        Some(o) if !o.is_empty() => String::from_utf8(o.to_vec())
            .map_err(|_| fmt_err(line_no, "the origin is not UTF-8"))?,
        _ => return Err(fmt_err(line_no, "the second line must be 'origin NAME'")),
    };

    let mut frontier = Frontier::new();
    check_known(&mut known, &frontier, line_no)?;
    let mut prev: Option<Checkpoint> = None;
    let mut before: Option<(u64, Hash)> = None;
    let mut checkpoints = 0u64;
    let mut expect_proof = false;
    loop {
        if !next_line(&mut buf, &mut line_no)? {
            return Err(Error::Truncated {
                line: line_no,
                problem: format!(
                    "the file ends after {} records and {checkpoints} checkpoints without its END line",
                    frontier.size()
                ),
            });
        }
        let (kind, rest) = split_word(&buf);
        if expect_proof && kind != b"P" {
            return Err(Error::BadCheckpoint {
                number: checkpoints,
                tree_size: prev.as_ref().map_or(0, |c| c.tree_size),
                line: line_no,
                problem: "no consistency proof follows it".into(),
            });
        }
        match kind {
            b"R" => {
                let expected = frontier.size();
                let (idx, rest) = split_word(rest);
                let index = parse_u64(idx)
                    .ok_or_else(|| fmt_err(line_no, "a record line is 'R INDEX LEAFHASH BODY'"))?;
                if index != expected {
                    let problem = if index > expected {
                        format!("record {expected} is missing here (the next line holds record {index}): deleted or reordered")
                    } else {
                        format!(
                            "record {index} appears again after record {}: inserted or reordered",
                            expected - 1
                        )
                    };
                    return Err(Error::BadRecord { index: expected, line: line_no, problem });
                }
                let (leaf_hex, body) = split_word(rest);
                let mut leaf = [0u8; 32];
                if leaf_hex.iter().any(u8::is_ascii_uppercase)
                    || hex::decode_to_slice(leaf_hex, &mut leaf).is_err()
                {
                    return Err(Error::BadRecord {
                        index,
                        line: line_no,
                        problem: "the leaf hash is not 64 lower-case hex digits".into(),
                    });
                }
                if leaf_hash(body) != leaf {
                    return Err(Error::BadRecord {
                        index,
                        line: line_no,
                        problem: "its content does not match its leaf hash: altered".into(),
                    });
                }
                if let Err(e) = Record::decode(body) {
                    return Err(Error::BadRecord { index, line: line_no, problem: e.to_string() });
                }
                frontier.push(leaf);
                check_known(&mut known, &frontier, line_no)?;
            }
            b"C" => {
                checkpoints += 1;
                let number = checkpoints;
                let bad = |tree_size: u64, problem: String| Error::BadCheckpoint {
                    number,
                    tree_size,
                    line: line_no,
                    problem,
                };
                let note: String = serde_json::from_slice(rest)
                    .map_err(|_| bad(0, "the note is not a JSON string".into()))?;
                let text = note.rfind("\n\n").map_or(note.as_str(), |i| &note[..=i]);
                let claimed = Checkpoint::parse_body(text).map_err(|e| bad(0, e.to_string()))?;
                let c = Checkpoint::open(&note, verifier)
                    .map_err(|e| bad(claimed.tree_size, e.to_string()))?;
                if c.origin != origin {
                    return Err(bad(
                        c.tree_size,
                        "it is of another log (its origin differs)".into(),
                    ));
                }
                if c.tree_size != frontier.size() {
                    return Err(bad(
                        c.tree_size,
                        format!(
                            "it covers {} records but follows record {}: records were deleted, inserted or the log truncated",
                            c.tree_size,
                            frontier.size() as i128 - 1
                        ),
                    ));
                }
                if c.root != frontier.root() {
                    return Err(bad(
                        c.tree_size,
                        format!(
                            "its root does not match records 0..{}: a record before index {} was altered or the log forked",
                            c.tree_size, c.tree_size
                        ),
                    ));
                }
                before = prev.as_ref().map(|p| (p.tree_size, p.root));
                if let Some(p) = &prev {
                    if c.ts_ms < p.ts_ms {
                        return Err(bad(
                            c.tree_size,
                            "its timestamp is earlier than the previous checkpoint's".into(),
                        ));
                    }
                    expect_proof = true;
                }
                prev = Some(c);
            }
            b"P" => {
                let Some(cur) = prev.as_ref().filter(|_| expect_proof) else {
                    return Err(fmt_err(
                        line_no,
                        "a consistency proof that follows no second checkpoint",
                    ));
                };
                expect_proof = false;
                let bad = |problem: String| Error::BadCheckpoint {
                    number: checkpoints,
                    tree_size: cur.tree_size,
                    line: line_no,
                    problem,
                };
                let (a, rest) = split_word(rest);
                let (b, list) = split_word(rest);
                let (Some(old), Some(new)) = (parse_u64(a), parse_u64(b)) else {
                    return Err(fmt_err(line_no, "a proof line is 'P OLD NEW HASH,HASH…'"));
                };
                let mut hashes = Vec::new();
                if list != b"-" {
                    for part in list.split(|&c| c == b',') {
                        let h: Hash =
                            B64.decode(part).ok().and_then(|v| v.try_into().ok()).ok_or_else(
                                || fmt_err(line_no, "a proof hash is not the base64 of 32 bytes"),
                            )?;
                        hashes.push(h);
                    }
                }
                // The previous checkpoint's root, recomputed at its size, was checked when it
                // was read; the proof must link it to this one.
                if new != cur.tree_size {
                    return Err(bad(format!(
                        "the consistency proof is for size {new}, not {}",
                        cur.tree_size
                    )));
                }
                let Some((psize, proot)) = before else {
                    return Err(fmt_err(
                        line_no,
                        "a consistency proof that follows no second checkpoint",
                    ));
                };
                if old != psize {
                    return Err(bad(format!(
                        "the consistency proof starts at size {old}, not {psize}"
                    )));
                }
                if let Err(e) = verify_consistency(old, new, &hashes, &proot, &cur.root) {
                    return Err(bad(format!(
                        "it is not consistent with the previous checkpoint: {e}"
                    )));
                }
            }
            b"END" => {
                let (a, b) = split_word(rest);
                let (Some(n), Some(k)) = (parse_u64(a), parse_u64(b)) else {
                    return Err(fmt_err(line_no, "the trailer is 'END RECORDS CHECKPOINTS'"));
                };
                if n != frontier.size() || k != checkpoints {
                    return Err(Error::Truncated {
                        line: line_no,
                        problem: format!(
                            "the trailer counts {n} records and {k} checkpoints, the file holds {} and {checkpoints}",
                            frontier.size()
                        ),
                    });
                }
                if let Some(c) = known.first() {
                    return Err(Error::Truncated {
                        line: line_no,
                        problem: format!(
                            "the export ends at {} records, before the checkpoint of size {} you hold: the log was cut back",
                            frontier.size(),
                            c.tree_size
                        ),
                    });
                }
                let Some(last) = prev else {
                    return Err(Error::Truncated {
                        line: line_no,
                        problem: "the export holds no checkpoint".into(),
                    });
                };
                if last.tree_size != frontier.size() {
                    return Err(Error::BadRecord {
                        index: last.tree_size,
                        line: line_no,
                        problem: "this record and those after it are not covered by any signed checkpoint".into(),
                    });
                }
                if next_line(&mut buf, &mut line_no)? {
                    return Err(fmt_err(line_no, "data after the END line"));
                }
                return Ok(ExportSummary {
                    records: frontier.size(),
                    checkpoints,
                    last_checkpoint: Some((last.tree_size, last.root)),
                });
            }
            _ => return Err(fmt_err(line_no, "unknown line kind (expected R, C, P or END)")),
        }
    }
}
