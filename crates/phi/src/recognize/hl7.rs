//! HL7 v2 segments (`PID|1||4471902^^^HOSP^MR||JOHNSON^MARY^A||19700101|F`): the fields that
//! hold a patient's, a relative's, a guarantor's or an insured person's identifiers, read by
//! their place in the segment (HL7 v2.5 numbering), so that names in capitals, bare numbers and
//! `YYYYMMDD` dates are found where no cue or case says what they are. Integration engineers
//! paste such messages into an assistant to ask why an interface fails.
//!
//! Fields are split on `|`, repetitions on `~`, components on `^` (the standard encoding
//! characters); each identifying component becomes its own finding, so a replacement keeps
//! the message's structure (`[NAME]^[NAME]^[NAME]`).

use crate::{Category, Finding};

/// What a field holds (its data type, as far as identifiers go).
#[derive(Clone, Copy)]
enum Kind {
    /// XPN: family name, given name, middle names or initial.
    Person,
    /// XCN: a provider (ID, family name, given name, middle).
    Provider,
    /// CX and the like: the identifier is the first component.
    Ident(Category),
    /// The whole field (an SSN, ST).
    Whole(Category),
    /// TS/DT: a date (and time) when it has a day (`YYYYMMDD`); a year alone is no PHI.
    Date,
    /// XAD: street, other designation, city, ZIP, county (state and country are kept).
    Address,
    /// XTN: a number as written, an e-mail, or area code and local number.
    Phone,
}

use Category::{Account, HealthPlan, Id, License, Mrn, Ssn};
use Kind::*;

/// The segments read, and for each, its fields that identify someone (1-based, as HL7 counts).
const SEGMENTS: &[(&str, &[(usize, Kind)])] = &[
    (
        "PID",
        &[
            (2, Ident(Mrn)),
            (3, Ident(Mrn)),
            (4, Ident(Mrn)),
            (5, Person),
            (6, Person),
            (7, Date),
            (9, Person),
            (11, Address),
            (13, Phone),
            (14, Phone),
            (18, Ident(Account)),
            (19, Whole(Ssn)),
            (20, Ident(License)),
            (21, Ident(Id)),
            (29, Date),
        ],
    ),
    (
        "NK1",
        &[
            (2, Person),
            (4, Address),
            (5, Phone),
            (6, Phone),
            (16, Date),
            (30, Person),
            (31, Phone),
            (32, Address),
            (37, Whole(Ssn)),
        ],
    ),
    (
        "GT1",
        &[
            (2, Ident(Account)),
            (3, Person),
            (4, Person),
            (5, Address),
            (6, Phone),
            (7, Phone),
            (8, Date),
            (12, Whole(Ssn)),
            (16, Person),
            (17, Address),
            (18, Phone),
        ],
    ),
    (
        "IN1",
        &[
            (16, Person),
            (18, Date),
            (19, Address),
            (36, Ident(HealthPlan)),
            (49, Ident(HealthPlan)),
        ],
    ),
    ("MRG", &[(1, Ident(Mrn)), (3, Ident(Account)), (7, Person)]),
    ("PV1", &[(7, Provider), (8, Provider), (9, Provider), (17, Provider), (19, Ident(Id))]),
    ("PD1", &[(4, Provider)]),
    ("ORC", &[(10, Provider), (11, Provider), (12, Provider)]),
    ("OBR", &[(16, Provider), (28, Provider)]),
];

/// Adds the findings of every HL7 v2 segment of [`SEGMENTS`] in `text`.
pub(crate) fn find(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    if !b.contains(&b'|') {
        return;
    }
    // Segments end at a line break, or at `\r` or `\n` written out (a message copied from a
    // log or a JSON string keeps its separators as two characters).
    let mut line_start = 0;
    while line_start < b.len() {
        let mut at = line_start;
        let (line_end, next) = loop {
            match b.get(at) {
                None => break (b.len(), b.len()),
                Some(b'\r' | b'\n') => break (at, at + 1),
                Some(b'\\') if matches!(b.get(at + 1), Some(b'r' | b'n')) => break (at, at + 2),
                Some(_) => at += 1,
            }
        };
        segment(text, line_start, line_end, out);
        line_start = next;
    }
}

/// The findings of the segment that starts a line (after spaces or a quote), if it is one.
fn segment(text: &str, start: usize, end: usize, out: &mut Vec<Finding>) {
    let line = &text[start..end];
    let lead = line.len() - line.trim_start_matches([' ', '\t', '"', '\'', '`']).len();
    let line = &line[lead..];
    let Some((_, fields)) = SEGMENTS.iter().find(|(id, _)| {
        line.len() > 4 && line.as_bytes()[3] == b'|' && line[..3].eq_ignore_ascii_case(id)
    }) else {
        return;
    };
    let base = start + lead;
    // Field n starts after the n-th `|`.
    let mut at = 4;
    for (n, field) in line[4..].split('|').enumerate() {
        let n = n + 1;
        if let Some((_, kind)) = fields.iter().find(|(k, _)| *k == n) {
            let mut rep_at = at;
            for rep in field.split('~') {
                components(text, base + rep_at, rep, *kind, out);
                rep_at += rep.len() + 1;
            }
        }
        at += field.len() + 1;
    }
}

/// The findings of one repetition of a field, `value`, at byte `at` of `text`.
fn components(text: &str, at: usize, value: &str, kind: Kind, out: &mut Vec<Finding>) {
    let mut parts: Vec<(usize, &str)> = Vec::new();
    let mut p = at;
    for c in value.split('^') {
        parts.push((p, c));
        p += c.len() + 1;
    }
    let push = |out: &mut Vec<Finding>, part: Option<&(usize, &str)>, cat: Category| {
        let Some(&(s, c)) = part else { return };
        // The component without its sub-components' tails (`ID&authority`).
        let c = c.split('&').next().unwrap_or("");
        let trimmed = c.trim();
        if trimmed.is_empty() || trimmed == "\"\"" {
            return;
        }
        let s = s + (c.len() - c.trim_start().len());
        let e = s + trimmed.len();
        if text.is_char_boundary(s) && text.is_char_boundary(e) {
            out.push(Finding::new(s, e, cat, 0.9, "hl7").with_subtype("hl7"));
        }
    };
    let has_digit =
        |i: usize| parts.get(i).is_some_and(|(_, c)| c.bytes().any(|d| d.is_ascii_digit()));
    match kind {
        Person => (0..3).for_each(|i| push(out, parts.get(i), Category::Name)),
        Provider => (1..4).for_each(|i| push(out, parts.get(i), Category::Name)),
        Ident(cat) => push(out, parts.first(), cat),
        Whole(cat) => push(out, Some(&(at, value)), cat),
        Date => {
            // A day (`YYYYMMDD`); a year or a month alone is no PHI.
            if value.bytes().take_while(u8::is_ascii_digit).count() >= 8 {
                push(out, parts.first(), Category::Date);
            }
        }
        Address => {
            [0, 1, 2, 4, 8].into_iter().for_each(|i| push(out, parts.get(i), Category::Location))
        }
        Phone => {
            if has_digit(0) {
                push(out, parts.first(), Category::Phone);
            }
            if parts.get(3).is_some_and(|(_, c)| c.contains('@')) {
                push(out, parts.get(3), Category::Email);
            }
            for i in [5, 6] {
                if has_digit(i) {
                    push(out, parts.get(i), Category::Phone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Category, &str)> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter().map(|f| (f.category, &text[f.start..f.end])).collect()
    }

    #[test]
    fn a_pid_segment_by_its_fields() {
        let t = "MSH|^~\\&|LAB|HOSP|||202401011200||ADT^A01|1|P|2.5\r\
                 PID|1||4471902^^^HOSP^MR~88123^^^SSA^SS||JOHNSON^MARY^A||19700101|F|||\
                 12 ELM ST^^SPRINGFIELD^IL^62704||(217)555-0199^PRN^PH^mary@example.com|||||\
                 A99123|219-09-9999|D1234567";
        let f = found(t);
        for want in [
            (Mrn, "4471902"),
            (Mrn, "88123"),
            (Category::Name, "JOHNSON"),
            (Category::Name, "MARY"),
            (Category::Name, "A"),
            (Category::Date, "19700101"),
            (Category::Location, "12 ELM ST"),
            (Category::Location, "SPRINGFIELD"),
            (Category::Location, "62704"),
            (Category::Phone, "(217)555-0199"),
            (Category::Email, "mary@example.com"),
            (Account, "A99123"),
            (Ssn, "219-09-9999"),
            (License, "D1234567"),
        ] {
            assert!(f.contains(&want), "{want:?} not in {f:?}");
        }
        // The state, the sex and the MSH segment are kept.
        assert!(!f.iter().any(|(_, v)| *v == "IL" || *v == "F" || *v == "LAB"), "{f:?}");
    }

    #[test]
    fn next_of_kin_and_a_pasted_line() {
        let f = found("see this:\n  NK1|1|JOHNSON^ROBERT|SPO|12 ELM ST^^SPRINGFIELD^IL|2175550123");
        assert!(
            f.contains(&(Category::Name, "ROBERT")) && f.contains(&(Category::Phone, "2175550123")),
            "{f:?}"
        );
        // Separators written out, as a log or a JSON string keeps them.
        let f =
            found("MSH|^~\\&|LAB|H|||2024||ADT^A01|1|P|2.5\\rPID|1||4471902^^^H^MR||JOHNSON^MARY");
        assert!(f.contains(&(Category::Name, "MARY")) && f.contains(&(Mrn, "4471902")), "{f:?}");
        let f = found("ORC|RE|1|2|||||||||1234^SMITH^JOHN");
        assert!(f.contains(&(Category::Name, "SMITH")), "{f:?}");
        // A year alone is no date; text without a segment has none.
        assert!(found("PID|1||||DOE^JANE||1970").iter().all(|(c, _)| *c != Category::Date));
        assert!(found("a | b | c").is_empty());
    }
}
