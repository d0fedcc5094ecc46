//! Tables written as text (CSV, TSV, pipes, semicolons) read under their header row: a cell
//! says what it is only through its column's header (`MRN,DOB,Sex,ZIP` then
//! `448120,1931-02-03,F,02139`; `age,sex,dx` then `93,M,CHF`). Each column is read as
//! `header: cell` lines, one a row, with every recognizer, and what is found in a cell is a
//! finding there (the cues of the header are the evidence: "MRN: 448120", "ZIP: 02139",
//! "age: 93").
//!
//! A header row: two cells or more, joined by one separator, each a short label (letters
//! first of all; no cell a number). A table: the header and the rows right after it with as
//! many cells, joined by the same separator. Cells may be quoted (`"Doe, Jane"`).

use crate::Finding;

use super::tokens::Tokens;
use super::Engine;

/// Header words of a table of things, not people: its "name" column names a drug, a test, an
/// item.
const THING_WORDS: &[&str] = &[
    "test",
    "drug",
    "med",
    "meds",
    "medication",
    "medications",
    "item",
    "items",
    "product",
    "lab",
    "labs",
    "dose",
    "doses",
    "dosage",
    "freq",
    "frequency",
    "route",
    "strength",
    "result",
    "results",
    "value",
    "values",
    "unit",
    "units",
    "range",
    "ref",
    "qty",
    "quantity",
    "sig",
    "mg",
    "code",
    "icd10",
    "icd",
    "cpt",
    "loinc",
    "organism",
    "specimen",
    "supply",
    "supplies",
    "device",
    "class",
    "generic",
    "brand",
    "formulary",
    "score",
    "scores",
    "criteria",
    "scale",
    "rule",
    "calculator",
];

/// Header words that say a table lists people, whatever else it holds.
const PERSON_WORDS: &[&str] = &[
    "patient",
    "pt",
    "first",
    "last",
    "surname",
    "member",
    "resident",
    "client",
    "guarantor",
    "subscriber",
    "mother",
    "father",
    "contact",
    "fullname",
    "full",
];

/// Words a header cell is made of, never a name there ("Age", "Dose", "Last", "First").
const LABEL_WORDS: &[&str] = &[
    "name",
    "first",
    "last",
    "middle",
    "age",
    "sex",
    "gender",
    "dob",
    "birth",
    "date",
    "time",
    "mrn",
    "id",
    "zip",
    "phone",
    "address",
    "city",
    "state",
    "dose",
    "test",
    "result",
    "value",
    "unit",
    "units",
    "status",
    "notes",
    "note",
    "room",
    "bed",
    "dx",
    "diagnosis",
    "procedure",
    "provider",
    "type",
    "class",
    "strength",
    "route",
    "freq",
    "frequency",
    "drug",
    "item",
];

/// The separators a table's cells are joined by.
const SEPARATORS: &[u8] = b",\t|;";

/// The longest header cell read as a label.
const MAX_LABEL: usize = 40;

/// The cells of a line: their byte ranges in the text (quotes and spaces trimmed), split at
/// `sep` outside double quotes.
fn cells(text: &str, start: usize, end: usize, sep: u8, out: &mut Vec<(usize, usize)>) {
    out.clear();
    let b = text.as_bytes();
    let (mut start, mut end) = (start, end);
    if sep == b'|' {
        // A markdown table's outer pipes: `| Name | Age |`.
        while start < end && matches!(b[start], b' ' | b'\t') {
            start += 1;
        }
        while end > start && matches!(b[end - 1], b' ' | b'\t' | b'\r') {
            end -= 1;
        }
        if end > start && b[start] == b'|' {
            start += 1;
        }
        if end > start && b[end - 1] == b'|' {
            end -= 1;
        }
    }
    let mut s = start;
    let mut quoted = false;
    for i in start..=end {
        if i < end && b[i] == b'"' {
            quoted = !quoted;
        }
        if i == end || (b[i] == sep && !quoted) {
            let (mut cs, mut ce) = (s, i);
            while cs < ce && matches!(b[cs], b' ' | b'\t' | b'"') {
                cs += 1;
            }
            while ce > cs && matches!(b[ce - 1], b' ' | b'\t' | b'"' | b'\r') {
                ce -= 1;
            }
            out.push((cs, ce));
            s = i + 1;
        }
    }
}

/// Whether `cell` reads as a column's label: short (four words at most), a letter first among
/// its characters, and made of letters, digits, spaces and the signs labels have (`Member ID
/// #`, `zip_code`, `D.O.B.`, `Phone (home)`).
fn is_label(cell: &str) -> bool {
    !cell.is_empty()
        && cell.len() <= MAX_LABEL
        && cell.bytes().filter(|c| *c == b' ').count() <= 3
        && cell.bytes().find(|c| c.is_ascii_alphanumeric()).is_some_and(|c| c.is_ascii_alphabetic())
        && cell.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, b' ' | b'_' | b'#' | b'.' | b'/' | b'(' | b')' | b'-')
        })
}

/// The separator of a header row at `line`, if it is one: the separator it holds most of,
/// with every cell a label.
fn header_sep(text: &str, line: (usize, usize), scratch: &mut Vec<(usize, usize)>) -> Option<u8> {
    let l = &text.as_bytes()[line.0..line.1];
    // One pass: the separators counted, and out at the first byte no label nor separator has.
    // Prose is out at its first long cell: more than three spaces or MAX_LABEL bytes since the
    // last separator.
    let mut counts = [0usize; 4];
    let (mut spaces, mut since) = (0usize, 0usize);
    for &c in l {
        since += 1;
        match c {
            b',' | b'\t' | b'|' | b';' => {
                counts[SEPARATORS.iter().position(|s| *s == c).unwrap_or(0)] += 1;
                (spaces, since) = (0, 0);
            }
            b' ' => {
                spaces += 1;
                if spaces > 4 {
                    return None;
                }
            }
            b'"' | b'\r' => {}
            c if c.is_ascii_alphanumeric()
                || matches!(c, b'_' | b'#' | b'.' | b'/' | b'(' | b')' | b'-') => {}
            _ => return None,
        }
        if since > MAX_LABEL + 4 {
            return None;
        }
    }
    let (k, &n) = counts.iter().enumerate().max_by_key(|(_, n)| **n)?;
    if n == 0 || l.len() > (n + 1) * (MAX_LABEL + 4) {
        return None;
    }
    let sep = SEPARATORS[k];
    cells(text, line.0, line.1, sep, scratch);
    scratch.iter().all(|&(s, e)| is_label(&text[s..e])).then_some(sep)
}

/// Adds to `out` what each table of `text` holds in its cells, read under their headers (see
/// the module's documentation). `tokens`: scratch space for the column readings.
pub(crate) fn find(engine: &Engine, text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    if !SEPARATORS.iter().any(|s| b.contains(s)) || !b.contains(&b'\n') {
        return;
    }
    let mut lines = Vec::new();
    let mut s = 0;
    for i in memchr::memchr_iter(b'\n', b) {
        lines.push((s, i));
        s = i + 1;
    }
    lines.push((s, b.len()));
    let mut header = Vec::new();
    let mut row = Vec::new();
    let mut tokens = None;
    let mut l = 0;
    while l + 1 < lines.len() {
        let Some(sep) = header_sep(text, lines[l], &mut header) else {
            l += 1;
            continue;
        };
        let mut rows: Vec<Vec<(usize, usize)>> = Vec::new();
        let mut r = l + 1;
        while r < lines.len() {
            cells(text, lines[r].0, lines[r].1, sep, &mut row);
            if row.len() != header.len() {
                break;
            }
            // A markdown table's alignment row (`|---|:--:|`).
            let rule = row
                .iter()
                .all(|&(s, e)| e > s && b[s..e].iter().all(|c| matches!(c, b'-' | b':' | b' ')));
            if !rule {
                rows.push(row.clone());
            }
            r += 1;
        }
        // Rows of words only are no table of values ("Allergies, none" then "Smoking, never"),
        // unless a column names people ("Name,Dx" then "Smith,sepsis").
        let people = header.iter().any(|&(s, e)| {
            let h = text[s..e].to_ascii_lowercase();
            ["name", "patient", "surname", "first", "last"].iter().any(|w| h.contains(w))
        });
        if rows.is_empty()
            || !(people
                || rows.iter().flatten().any(|&(s, e)| b[s..e].iter().any(u8::is_ascii_digit)))
        {
            // Its rows are no table under a header of their own either: go on after them
            // (each line of a long list would otherwise read all the rest).
            l = r.max(l + 1);
            continue;
        }
        // A table of things (doses, results, codes) names no people under "name": "name,dose"
        // over "Colace,100 mg", "Test Name,Result" over "Lipase,320".
        // (A column of people says so: "Patient Name,Test,Result".)
        let has = |&(s, e): &(usize, usize), words: &[&str]| {
            text[s..e]
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| words.iter().any(|x| x.eq_ignore_ascii_case(w)))
        };
        let things = header.iter().any(|h| has(h, THING_WORDS));
        let people = header.iter().any(|h| has(h, PERSON_WORDS));
        // A header's own words are labels, not names ("Name,Dose": "Dose"; "Last,First").
        out.retain(|f| {
            !(matches!(f.category, crate::Category::Name | crate::Category::Location)
                && header.iter().any(|h| {
                    f.start < h.1
                        && h.0 < f.end
                        && (has(h, LABEL_WORDS)
                            || has(h, THING_WORDS)
                            || known_words_only(engine, &text[h.0..h.1]))
                }))
        });
        let tokens = tokens.get_or_insert_with(Tokens::default);
        for (c, h) in header.iter().enumerate() {
            let names = !has(h, THING_WORDS) && (people || !things);
            let column = rows.iter().map(|row| row[c]);
            read_column(engine, text, &text[h.0..h.1], column, names, tokens, out);
        }
        l = r;
    }
}

/// Reads one column's cells as `label: cell` lines and adds what is found in the cells.
fn read_column(
    engine: &Engine,
    text: &str,
    label: &str,
    column: impl Iterator<Item = (usize, usize)>,
    names: bool,
    tokens: &mut Tokens,
    out: &mut Vec<Finding>,
) {
    let mut reading = String::new();
    // (start in the reading, start in the text, length).
    let mut at: Vec<(usize, usize, usize)> = Vec::new();
    for (s, e) in column.filter(|(s, e)| e > s) {
        reading.push_str(label);
        reading.push_str(": ");
        at.push((reading.len(), s, e - s));
        reading.push_str(&text[s..e]);
        reading.push('\n');
    }
    if at.is_empty() {
        return;
    }
    let mut found = Vec::new();
    engine.scan_cells(&reading, tokens, &mut found);
    // Cells where the reading under the header found something.
    let mut read = vec![false; at.len()];
    let mut k = 0;
    for f in found {
        while k < at.len() && at[k].0 + at[k].2 <= f.start {
            k += 1;
        }
        let Some(&(rs, ts, len)) = at.get(k) else { break };
        read[k] = true;
        // Only what lies in the cell (the label is the reading's, not the text's).
        let (s, e) = (f.start.max(rs), f.end.min(rs + len));
        // A name's words must not all be words the vocabularies know as something else
        // ("Left eye" under "Patient"); none in a table of things.
        if f.category == crate::Category::Name
            && (!names || (s < e && known_words_only(engine, &reading[s..e])))
        {
            continue;
        }
        if s < e {
            out.push(Finding { start: s - rs + ts, end: e - rs + ts, ..f });
        }
    }
    // A bare number the text alone read as an identifier is none where its header says what
    // it is and the reading under it finds nothing ("NDC" over "0093-7146-56").
    // (The cells are in the text's order: each finding's cell is found by a binary search.)
    out.retain(|f| {
        if f.category != crate::Category::Id {
            return true;
        }
        let k = at.partition_point(|&(_, ts, _)| ts <= f.start);
        !(k > 0 && !read[k - 1] && f.end <= at[k - 1].1 + at[k - 1].2)
    });
}

/// Whether every word of `cell` is a word the drug, medical or English lists know and no list
/// of given names or surnames does.
fn known_words_only(engine: &Engine, cell: &str) -> bool {
    use super::dict::flag;
    let mut words =
        cell.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| w.len() > 1).peekable();
    words.peek().is_some()
        && words.all(|w| {
            let f = engine.dict.flags(&w.to_ascii_lowercase());
            f & (flag::DRUG | flag::MEDICAL | flag::ENGLISH | flag::ABBREV) != 0
                && f & (flag::GIVEN | flag::SURNAME) == 0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_split_outside_quotes_and_are_trimmed() {
        let t = "a, \"Doe, Jane\" ,c";
        let mut v = Vec::new();
        cells(t, 0, t.len(), b',', &mut v);
        let got: Vec<&str> = v.iter().map(|&(s, e)| &t[s..e]).collect();
        assert_eq!(got, ["a", "Doe, Jane", "c"]);
    }

    #[test]
    fn labels_are_short_words() {
        assert!(is_label("Member ID #") && is_label("zip_code") && is_label("D.O.B."));
        assert!(!is_label("448120") && !is_label("") && !is_label("Dr. Smith: seen"));
    }
}
