//! Text helpers: byte ↔ code-point offsets.

/// Converts byte offsets of one text into Unicode code-point offsets (the CLI contract): O(1)
/// for ASCII text, O(log n) otherwise.
pub struct CharIndex {
    /// For every non-ASCII char: the byte offset just past it and the code-point count up to
    /// there. Empty for ASCII text.
    wide: Vec<(usize, usize)>,
}

impl CharIndex {
    /// Indexes `text`.
    pub fn new(text: &str) -> CharIndex {
        let mut wide = Vec::new();
        if !text.is_ascii() {
            for (ci, (bi, ch)) in text.char_indices().enumerate() {
                if !ch.is_ascii() {
                    wide.push((bi + ch.len_utf8(), ci + 1));
                }
            }
        }
        CharIndex { wide }
    }

    /// The code-point offset of byte offset `byte`, which must be a char boundary.
    pub fn char_offset(&self, byte: usize) -> usize {
        let n = self.wide.partition_point(|&(after, _)| after <= byte);
        if n == 0 {
            return byte;
        }
        let (after, chars) = self.wide[n - 1];
        chars + (byte - after)
    }
}

/// The byte offset of code-point offset `ch` in `text` (or `text.len()` past the end).
pub fn byte_offset(text: &str, ch: usize) -> usize {
    if text.is_ascii() {
        return ch.min(text.len());
    }
    text.char_indices().nth(ch).map_or(text.len(), |(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_char_indices() {
        for text in ["plain ascii", "Zoë Müller at Köln — 12/3", "日本語 text 😀 x", ""] {
            let idx = CharIndex::new(text);
            for (ci, (b, _)) in text.char_indices().enumerate() {
                assert_eq!(idx.char_offset(b), ci, "{text:?} byte {b}");
                assert_eq!(byte_offset(text, ci), b);
            }
            assert_eq!(idx.char_offset(text.len()), text.chars().count());
        }
    }
}
