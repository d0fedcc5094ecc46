//! The recognizers and how their findings are merged.
//!
//! Each recognizer pushes candidate [`Finding`]s; [`merge`] turns them into sorted,
//! non-overlapping spans. Recall comes first: overlapping candidates are united, and the
//! category of the most confident one wins.

pub(crate) mod dict;
mod hl7;
mod names;
pub(crate) mod patterns;
mod places;
pub(crate) mod repeat;
mod table;
pub(crate) mod tokens;
mod util;

use std::sync::OnceLock;

use crate::{Category, Error, Finding};
use dict::Dict;
use patterns::Patterns;
use tokens::Tokens;

/// Street suffixes, lower case: what ends a street's name ("Elm St", "Maple Avenue").
pub(crate) const STREET_SUFFIXES: &[&str] = &[
    "street",
    "st",
    "avenue",
    "ave",
    "road",
    "rd",
    "boulevard",
    "blvd",
    "lane",
    "ln",
    "drive",
    "dr",
    "court",
    "ct",
    "place",
    "pl",
    "terrace",
    "ter",
    "circle",
    "cir",
    "parkway",
    "pkwy",
    "highway",
    "hwy",
    "way",
    "trail",
    "trl",
    "pike",
    "square",
    "sq",
    "plaza",
    "alley",
    "crescent",
    "expressway",
    "freeway",
    "turnpike",
    "route",
    "rte",
];

/// Everything compiled once per process and shared by all scanners.
pub(crate) struct Engine {
    pub dict: &'static Dict,
    patterns: Patterns,
}

static DICT: OnceLock<Dict> = OnceLock::new();

impl Engine {
    pub(crate) fn new() -> Result<Engine, Error> {
        // The word tables are compiled in (`build.rs`): taking them costs nothing.
        Ok(Engine { dict: DICT.get_or_init(Dict::load), patterns: Patterns::new()? })
    }

    /// Runs every recognizer; `out` receives merged findings.
    pub(crate) fn scan(&self, text: &str, tokens: &mut Tokens, out: &mut Vec<Finding>) {
        self.scan_with(text, tokens, out, true);
    }

    /// [`Engine::scan`] of a table's column read under its header ([`table`]): no tables in it.
    pub(crate) fn scan_cells(&self, text: &str, tokens: &mut Tokens, out: &mut Vec<Finding>) {
        self.scan_with(text, tokens, out, false);
    }

    fn scan_with(&self, text: &str, tokens: &mut Tokens, out: &mut Vec<Finding>, tables: bool) {
        out.clear();
        if text.is_empty() {
            return;
        }
        self.patterns.run(text, self.dict, out);
        hl7::find(text, out);
        let mut opaque: Vec<(usize, usize)> = out.iter().map(|f| (f.start, f.end)).collect();
        opaque.sort_unstable();
        tokens.fill(text, self.dict, &opaque);
        names::find(text, tokens, self.dict, out);
        places::find(text, tokens, self.dict, out);
        if tables {
            table::find(self, text, out);
        }
        merge(text, out);
    }

    /// After [`Engine::scan`] of `text` into `tokens` and `out` (and the caller's filters on
    /// `out`): a name found is a name where the text says it again without a cue (see
    /// [`repeat`]); repeats below `min_score` are not looked for.
    pub(crate) fn repeat_names(
        &self,
        text: &str,
        tokens: &Tokens,
        min_score: f32,
        out: &mut Vec<Finding>,
    ) {
        let mut parts = Vec::new();
        repeat::parts_of(self.dict, text, out, &mut parts);
        parts.retain(|p| f32::from(p.score) / 100.0 >= min_score);
        repeat::find(tokens, &parts, out);
    }

    /// Names in `text` (whose findings are `found`, sorted and apart) that repeat a word of
    /// `parts` outside them (see [`repeat`]); `found` gains them.
    pub(crate) fn repeats(
        &self,
        text: &str,
        tokens: &mut Tokens,
        parts: &[repeat::NamePart],
        found: &mut Vec<Finding>,
    ) -> bool {
        if parts.is_empty() || text.is_empty() {
            return false;
        }
        let opaque: Vec<(usize, usize)> = found.iter().map(|f| (f.start, f.end)).collect();
        tokens.fill(text, self.dict, &opaque);
        repeat::find(tokens, parts, found)
    }
}

/// Sorts, joins adjacent places ("Johns Hopkins Hospital, Baltimore"), extends places over a
/// following lower-case facility word ("our Dallas clinic"), and unites overlaps.
pub(crate) fn merge(text: &str, v: &mut Vec<Finding>) {
    let b = text.as_bytes();
    v.retain(|f| f.start < f.end && f.end <= text.len());
    v.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out: Vec<Finding> = Vec::with_capacity(v.len());
    for mut f in v.drain(..) {
        if f.category == Category::Location {
            f.end = extend_lower_facility(text, f.end);
        }
        if let Some(last) = out.last_mut() {
            if f.start < last.end {
                // Overlap: unite, keep the more confident category.
                if f.score > last.score || (f.score == last.score && f.len() > last.len()) {
                    last.category = f.category;
                    last.subtype = f.subtype;
                    last.recognizer = f.recognizer;
                    last.score = f.score;
                }
                last.end = last.end.max(f.end);
                continue;
            }
        }
        out.push(f);
    }
    // Join places that are one address or one facility with its city.
    v.clear();
    for f in out {
        if let Some(last) = v.last_mut() {
            if last.category == Category::Location
                && f.category == Category::Location
                && joins_places(&b[last.end..f.start])
            {
                last.end = f.end;
                last.score = last.score.max(f.score);
                continue;
            }
        }
        v.push(f);
    }
}

fn joins_places(gap: &[u8]) -> bool {
    matches!(gap, b", " | b"," | b" in " | b" - " | b"-" | b" ")
}

fn extend_lower_facility(text: &str, end: usize) -> usize {
    let rest = &text[end..];
    for w in [
        " clinic",
        " hospital",
        " office",
        " er",
        " ed",
        " medical center",
        " health center",
        " urgent care",
        " campus",
    ] {
        if rest.len() >= w.len()
            && rest.as_bytes()[..w.len()].eq_ignore_ascii_case(w.as_bytes())
            && rest.as_bytes().get(w.len()).is_none_or(|c| !c.is_ascii_alphanumeric())
        {
            return end + w.len();
        }
    }
    end
}
