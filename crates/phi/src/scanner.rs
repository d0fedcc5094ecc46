//! The scanner: runs every recognizer over a text and merges their findings.

use std::cell::RefCell;

use crate::fold::Folded;
pub use crate::recognize::repeat::NamePart;
use crate::recognize::{tokens::Tokens, Engine};
use crate::{Category, Error, Finding};

/// Builds a [`Scanner`] with chosen categories and threshold.
#[derive(Clone, Debug)]
pub struct ScannerBuilder {
    enabled: [bool; Category::ALL.len()],
    min_score: f32,
}

impl Default for ScannerBuilder {
    fn default() -> Self {
        ScannerBuilder { enabled: [true; Category::ALL.len()], min_score: 0.0 }
    }
}

impl ScannerBuilder {
    /// Report only these categories (all by default).
    pub fn categories(mut self, cats: &[Category]) -> Self {
        self.enabled = [false; Category::ALL.len()];
        for c in cats {
            self.enabled[c.index()] = true;
        }
        self
    }

    /// Drop findings whose score is below `min` (0.0 by default: keep everything; recall first).
    pub fn min_score(mut self, min: f32) -> Self {
        self.min_score = min;
        self
    }

    /// Compiles the recognizers and loads the dictionaries.
    pub fn build(self) -> Result<Scanner, Error> {
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(Error::Config(format!("min_score {} is outside 0..=1", self.min_score)));
        }
        Ok(Scanner { engine: Engine::new()?, enabled: self.enabled, min_score: self.min_score })
    }
}

/// A compiled set of recognizers. Build it once and share it across threads.
pub struct Scanner {
    engine: Engine,
    enabled: [bool; Category::ALL.len()],
    min_score: f32,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner").field("min_score", &self.min_score).finish_non_exhaustive()
    }
}

impl Scanner {
    /// A scanner with every recognizer on.
    pub fn new() -> Result<Scanner, Error> {
        ScannerBuilder::default().build()
    }

    /// A builder to choose categories and threshold.
    pub fn builder() -> ScannerBuilder {
        ScannerBuilder::default()
    }

    /// Finds PHI in `text`. The findings are sorted by start, do not overlap, and lie on char
    /// boundaries.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        self.scan_into(text, &mut out);
        out
    }

    /// Like [`Scanner::scan`], reusing `out`'s allocation (it is cleared first).
    ///
    /// Look-alike characters are read as their ASCII forms (fullwidth and other scripts'
    /// digits, Unicode spaces and dashes; zero-width and other invisible characters are
    /// skipped): `２１９-０９-９９９９` is the SSN 219-09-9999, and its finding covers the
    /// original characters.
    pub fn scan_into(&self, text: &str, out: &mut Vec<Finding>) {
        match Folded::of(text) {
            None => self.scan_read(text, out),
            Some(folded) => {
                self.scan_read(&folded.text, out);
                for f in out.iter_mut() {
                    (f.start, f.end) = folded.back(f.start, f.end);
                }
            }
        }
    }

    /// [`Scanner::scan_into`] of a text as it is read.
    fn scan_read(&self, text: &str, out: &mut Vec<Finding>) {
        SCRATCH.with(|t| {
            let mut t = t.borrow_mut();
            self.engine.scan(text, &mut t, out);
            out.retain(|f| self.enabled[f.category.index()] && f.score >= self.min_score);
            // Names said again: only from names kept, with their sources' confidence.
            if self.enabled[Category::Name.index()] {
                self.engine.repeat_names(text, &t, self.min_score, out);
            }
        });
    }

    /// The words of the names among `found` (this scanner's findings in `text`) that mark a
    /// name wherever they are said again: [`Scanner::scan`] looks for them in the rest of the
    /// same text, and [`Scanner::repeats`] in another text (another message of the same
    /// conversation). Sorted and distinct; empty when no name was found.
    pub fn name_parts(&self, text: &str, found: &[Finding]) -> Vec<NamePart> {
        let mut parts = Vec::new();
        if self.enabled[Category::Name.index()] {
            match Folded::of(text) {
                None => {
                    crate::recognize::repeat::parts_of(self.engine.dict, text, found, &mut parts)
                }
                Some(folded) => {
                    let found = folded.findings_forth(found);
                    crate::recognize::repeat::parts_of(
                        self.engine.dict,
                        &folded.text,
                        &found,
                        &mut parts,
                    );
                }
            }
            // A repeat below the threshold would not be kept.
            parts.retain(|p| f32::from(p.score) / 100.0 >= self.min_score);
        }
        parts
    }

    /// Adds to `found` (findings in `text`, sorted and apart) a name finding for each word of
    /// `text` that repeats one of `parts` ([`Scanner::name_parts`] of other texts) outside
    /// them: as written or in capitals; in lower case only when no word list knows the word
    /// as anything else; a word that is also a common word or a term (`Bell`) only capitalised
    /// inside a sentence. Returns whether it added any; `found` stays sorted and apart.
    pub fn repeats(&self, text: &str, parts: &[NamePart], found: &mut Vec<Finding>) -> bool {
        if !self.enabled[Category::Name.index()] {
            return false;
        }
        let Some(folded) = Folded::of(text) else {
            return SCRATCH.with(|t| self.engine.repeats(text, &mut t.borrow_mut(), parts, found));
        };
        let mut read = folded.findings_forth(found);
        let had: Vec<(usize, usize)> = read.iter().map(|f| (f.start, f.end)).collect();
        if !SCRATCH
            .with(|t| self.engine.repeats(&folded.text, &mut t.borrow_mut(), parts, &mut read))
        {
            return false;
        }
        // Only what was added is mapped back: the findings given stay exactly as they were.
        for f in read {
            if had.binary_search(&(f.start, f.end)).is_err() {
                let (start, end) = folded.back(f.start, f.end);
                found.push(Finding { start, end, ..f });
            }
        }
        found.sort_by_key(|f| f.start);
        true
    }
}

thread_local! {
    /// Per-thread scratch space, so that scanning allocates little (like regex's `Cache`).
    static SCRATCH: RefCell<Tokens> = RefCell::new(Tokens::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Scanner>();
        assert_send_sync::<Finding>();
    }
}
