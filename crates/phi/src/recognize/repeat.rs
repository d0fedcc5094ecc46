//! Names said again. Once a name is found ("Patient Alan Smith"), its words are PHI wherever
//! the text repeats them without a cue ("What dose for Smith?", "SMITH denied pain"):
//! clinicians name a patient in full once, then by surname. A repeat has its source's
//! confidence (at most 0.75); a name found on weak evidence alone ([`SOURCE_MIN`]: a product's
//! name can read as one) has its words looked for only capitalised.
//!
//! The words of a found name that are looked for again ([`NamePart`]) are its words of two
//! letters or more, but titles ("Dr"), words never in a name (stop words, months, weekdays)
//! and initials. Where one reappears outside every finding it becomes a name:
//! - as written (`Smith`) or in capitals (`SMITH`);
//! - in lower case (`smith`) only when no word list knows it as anything else (`okafor`) and
//!   its name was found on good evidence;
//! - when it is also a common word or a clinical term (`Young`, `Bell`, `Parkinson`), only
//!   capitalised (`Young asked about meds`, `SMITH denied pain`), never in lower case (`young
//!   adults`) nor on a line written in capitals (`NO HOPE OF RECOVERY`). At a sentence's start
//!   the capital says nothing, but "Smith reports chest pain" is the common case: there the
//!   word counts, and a sentence that opens with the word ("Young patients ...") loses it only
//!   when the conversation names someone so.

use super::dict::{flag, Dict};
use super::tokens::{Shape, Tokens};
use crate::{Category, Finding};

/// Never looked for again, whatever the name held (stop words, months, weekdays, titles).
const NEVER: u32 = flag::STOP | flag::MONTH | flag::WEEKDAY | flag::TITLE;

/// What else a word may be than a name: then it is looked for only capitalised inside a
/// sentence.
const OTHER_WORD: u32 = flag::ENGLISH
    | flag::MEDICAL
    | flag::DRUG
    | flag::ABBREV
    | flag::FACILITY_WORD
    | flag::STATE_NAME
    | flag::EPONYM_HEAD
    | flag::STREET_SUFFIX
    | flag::PROPER;

/// Most confidence of a name found as a repeat: a repeat has its source's, up to this.
pub(crate) const SCORE: f32 = 0.75;

/// One word of a found name, to look for again. Its `Debug` leaves the word out (it is PHI).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamePart {
    /// The word in lower case (a possessive's `'s` left off).
    pub lower: String,
    /// Looked for only capitalised: a word list knows it as a common word or a term too, or
    /// its name was found on weak evidence alone ([`SOURCE_MIN`]).
    pub capitalised_only: bool,
    /// The confidence a repeat gets, in hundredths: its source's, at most [`SCORE`]'s.
    pub score: u8,
}

impl std::fmt::Debug for NamePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamePart")
            .field("len", &self.lower.len())
            .field("capitalised_only", &self.capitalised_only)
            .field("score", &self.score)
            .finish_non_exhaustive()
    }
}

/// Least confidence of a name found on good evidence (a title, a cue, a given name with a
/// surname, an initial). A lone given name (0.65) or a run of unknown capitalised words (0.6),
/// which a product's name can be, is weak: its words are looked for only capitalised
/// ("Zorblax was fast", not "zorblax logs"), with its own confidence.
pub(crate) const SOURCE_MIN: f32 = 0.7;

/// The words of the names among `found` (findings in `text`), added to `parts`, sorted and
/// distinct by word (of one word's parts, the least strict and most confident is kept).
pub(crate) fn parts_of(dict: &Dict, text: &str, found: &[Finding], parts: &mut Vec<NamePart>) {
    let before = parts.len();
    for f in found.iter().filter(|f| f.category == Category::Name) {
        let Some(value) = text.get(f.start..f.end) else { continue };
        let weak = f.score < SOURCE_MIN;
        let score = (f.score.min(SCORE) * 100.0).round() as u8;
        for word in NamePart::words(value) {
            let lower = word.to_lowercase();
            let flags = dict.flags(&lower);
            if flags & NEVER != 0 {
                continue;
            }
            parts.push(NamePart {
                lower,
                capitalised_only: weak || flags & OTHER_WORD != 0,
                score,
            });
        }
    }
    if parts.len() > before {
        NamePart::dedup(parts);
    }
}

impl NamePart {
    /// The words of `text` as names are split into parts: runs of letters, `'` and `-`, those
    /// ends trimmed, a possessive's `'s` left off, of two letters or more.
    pub fn words(text: &str) -> impl Iterator<Item = &str> {
        text.split(|c: char| !(c.is_alphabetic() || c == '\'' || c == '-'))
            .map(|w| w.trim_matches(|c| c == '\'' || c == '-'))
            .map(|w| w.strip_suffix("'s").unwrap_or(w))
            .filter(|w| w.chars().nth(1).is_some())
    }

    /// Sorts `parts` by word and keeps one a word: the least strict, then the most confident
    /// (as [`crate::Scanner::repeats`] expects parts gathered from several texts).
    pub fn dedup(parts: &mut Vec<NamePart>) {
        parts.sort_by(|a, b| {
            a.lower
                .cmp(&b.lower)
                .then(a.capitalised_only.cmp(&b.capitalised_only))
                .then(b.score.cmp(&a.score))
        });
        parts.dedup_by(|b, a| a.lower == b.lower);
    }
}

/// Adds to `out` (sorted, apart: [`super::merge`]d) a name finding for each word of `tk`'s
/// text that repeats one of `parts` outside every finding, by the rules of this module. Returns
/// whether it added any; `out` is then still sorted and apart.
pub(crate) fn find(tk: &Tokens, parts: &[NamePart], out: &mut Vec<Finding>) -> bool {
    if parts.is_empty() {
        return false;
    }
    let mut added = Vec::new();
    let mut covered = out.iter().peekable();
    for t in &tk.toks {
        while covered.next_if(|f| f.end <= t.start).is_some() {}
        if covered.peek().is_some_and(|f| f.start < t.end) {
            continue;
        }
        let lower = tk.lower_of(t);
        let lower = lower.strip_suffix("'s").unwrap_or(lower);
        let Ok(i) = parts.binary_search_by(|p| p.lower.as_str().cmp(lower)) else { continue };
        let p = &parts[i];
        let ok = if p.capitalised_only {
            !t.caps_line && matches!(t.shape, Shape::Upper | Shape::Cap)
        } else {
            matches!(t.shape, Shape::Cap | Shape::Upper | Shape::Mixed | Shape::Lower)
        };
        if ok {
            let score = f32::from(p.score) / 100.0;
            added.push(Finding::new(t.start, t.base_end, Category::Name, score, "name.repeat"));
        }
    }
    if added.is_empty() {
        return false;
    }
    out.extend(added);
    out.sort_by_key(|f| f.start);
    true
}
