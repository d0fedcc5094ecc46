//! What a recognizer reports: a span of the input, never the text itself.

use crate::Category;

/// One detected identifier. Offsets are **byte** offsets into the scanned `&str`, on char
/// boundaries, end-exclusive; [`crate::text::CharIndex`] converts them to the code-point offsets
/// of the CLI contract. A finding never carries the matched text, so it is safe to log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finding {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// The Safe Harbor category.
    pub category: Category,
    /// A finer kind (`"zip"`, `"facility"`, `"ipv6"`, …), when the recognizer knows one.
    pub subtype: Option<&'static str>,
    /// Confidence in `0.0..=1.0`.
    pub score: f32,
    /// The name of the recognizer that fired (`"ssn"`, `"name.cue"`, …).
    pub recognizer: &'static str,
}

impl Finding {
    /// A finding with no subtype.
    pub fn new(
        start: usize,
        end: usize,
        category: Category,
        score: f32,
        recognizer: &'static str,
    ) -> Finding {
        Finding { start, end, category, subtype: None, score, recognizer }
    }

    /// The same finding with a subtype.
    pub fn with_subtype(mut self, subtype: &'static str) -> Finding {
        self.subtype = Some(subtype);
        self
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty (never true for a finding the scanner returns).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether two findings share at least one byte.
    pub fn overlaps(&self, other: &Finding) -> bool {
        self.start < other.end && other.start < self.end
    }
}
