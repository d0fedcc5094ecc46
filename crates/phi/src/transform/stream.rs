//! Re-identification of a stream: placeholders put back into text that arrives in chunks (an
//! SSE answer), where a placeholder may be split across chunks (`"[NA"`, `"ME_1]"`).
//!
//! [`StreamRestorer`] emits everything it can at once and holds back only a tail that may still
//! become a placeholder: at most the longest placeholder's length less one byte. It never shows
//! a value in `Debug`.

use std::collections::HashMap;
use std::fmt;

use crate::Error;

/// Puts values back in place of placeholders in a stream of text chunks.
///
/// ```
/// use phi::transform::StreamRestorer;
/// let mut r = StreamRestorer::new([("[NAME_1]", "Ada Byron")]).unwrap();
/// let mut out = String::new();
/// for chunk in ["Ask [NA", "ME_1] about", " it."] {
///     out += &r.push(chunk);
/// }
/// out += &r.finish();
/// assert_eq!(out, "Ask Ada Byron about it.");
/// ```
pub struct StreamRestorer {
    /// Each placeholder, whole (`[NAME_1]`), to its value.
    values: HashMap<String, String>,
    /// The longest placeholder, in bytes.
    max_len: usize,
    /// Text received but not yet emitted: a possible start of a placeholder.
    pending: String,
}

impl fmt::Debug for StreamRestorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRestorer")
            .field("placeholders", &self.values.len())
            .field("pending_bytes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl StreamRestorer {
    /// A restorer for these `(placeholder, value)` pairs. Placeholders must start with `[` and
    /// end with `]` with neither inside (as this crate writes them: `[NAME_1]`, `[DATE:3fa9…]`).
    pub fn new<P: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (P, V)>,
    ) -> Result<StreamRestorer, Error> {
        let mut values = HashMap::new();
        let mut max_len = 0;
        for (p, v) in pairs {
            let p = p.as_ref();
            let inner = p.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
            if inner.is_none_or(|i| i.is_empty() || i.contains(['[', ']'])) {
                // The message names the shape, never the value.
                return Err(Error::Config(format!(
                    "a placeholder of {} bytes is not of the form [TEXT]",
                    p.len()
                )));
            }
            max_len = max_len.max(p.len());
            // The first pair wins when a placeholder is given twice.
            values.entry(p.to_string()).or_insert_with(|| v.as_ref().to_string());
        }
        Ok(StreamRestorer { values, max_len, pending: String::new() })
    }

    /// The most bytes this restorer ever holds back.
    pub fn max_hold_back(&self) -> usize {
        self.max_len.saturating_sub(1)
    }

    /// Takes the next chunk and returns the text that can be emitted now, restored.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let cut = self.safe_prefix_len();
        let ready: String = self.pending.drain(..cut).collect();
        self.restore(&ready)
    }

    /// Ends the stream: everything still held back, restored where it is whole.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.restore(&rest)
    }

    /// How much of `pending` cannot be (or be part of) an unfinished placeholder.
    fn safe_prefix_len(&self) -> usize {
        let b = self.pending.as_bytes();
        if self.values.is_empty() {
            return b.len();
        }
        // Only the last `[` with no `]` after it can open an unfinished placeholder, and only
        // if what follows it is the start of one we know.
        let from = b.len().saturating_sub(self.max_hold_back());
        match b[from..].iter().rposition(|&c| c == b'[') {
            Some(p) => {
                let p = from + p;
                let tail = &self.pending[p..];
                let open = !tail.contains(']')
                    && self.values.keys().any(|ph| ph.len() > tail.len() && ph.starts_with(tail));
                if open {
                    p
                } else {
                    b.len()
                }
            }
            None => b.len(),
        }
    }

    /// Replaces every whole placeholder in `text`. A placeholder has no bracket inside, so one
    /// that starts at a `[` ends at the first `]` after it: scanning from left to right, each
    /// `[` either opens a known placeholder (replaced, and the scan goes on after it) or is
    /// plain text. No automaton to build for each answer.
    fn restore(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..open]);
            let from = &rest[open..];
            let found = from
                .find(']')
                .and_then(|close| self.values.get(&from[..=close]).map(|v| (close, v)));
            match found {
                Some((close, value)) => {
                    out.push_str(value);
                    rest = &from[close + 1..];
                }
                None => {
                    out.push('[');
                    rest = &from[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(r: &mut StreamRestorer, chunks: &[&str]) -> String {
        let mut out = String::new();
        for c in chunks {
            out += &r.push(c);
            assert!(r.pending.len() <= r.max_hold_back(), "held back too much");
        }
        out + &r.finish()
    }

    #[test]
    fn every_split_gives_the_whole_restore() {
        let pairs = [("[NAME_1]", "Ada Byron"), ("[NAME_12]", "Zoë Núñez"), ("[DATE_1]", "3/14")];
        let text = "[NAME_1] and [NAME_12] met on [DATE_1]; see [note] and [NAME_ and [[NAME_1]]é.";
        let want = "Ada Byron and Zoë Núñez met on 3/14; see [note] and [NAME_ and [Ada Byron]é.";
        let bounds: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        for &i in &bounds {
            for &j in bounds.iter().filter(|&&j| j >= i) {
                let mut r = StreamRestorer::new(pairs).unwrap();
                assert_eq!(run(&mut r, &[&text[..i], &text[i..j], &text[j..]]), want, "{i} {j}");
            }
        }
        // One byte at a time.
        let mut r = StreamRestorer::new(pairs).unwrap();
        let singles: Vec<&str> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
        assert_eq!(run(&mut r, &singles), want);
    }

    proptest::proptest! {
        /// The bracket scan restores what a leftmost-longest automaton over the placeholders
        /// does (the way it was done before), on any mix of placeholders, near-placeholders
        /// and brackets, in any chunks.
        #[test]
        fn restores_as_a_leftmost_longest_automaton_does(
            parts in proptest::collection::vec(0usize..9, 0..40),
            cuts in proptest::collection::vec(0usize..200, 0..4),
        ) {
            const PARTS: [&str; 9] =
                ["[NAME_1]", "[NAME_12]", "[DATE_1]", "[", "]", "[NAME_", "x ", "é", "[[NAME_1]]"];
            let pairs = [("[NAME_1]", "Ada"), ("[NAME_12]", "Zoë [x]"), ("[DATE_1]", "3/14"),
                         ("[NAME_1]", "not this one")];
            let text: String = parts.iter().map(|&i| PARTS[i]).collect();
            let ac = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(pairs.iter().map(|p| p.0))
                .unwrap();
            let want = ac.replace_all(&text, &pairs.map(|p| p.1));
            let mut bounds: Vec<usize> = cuts
                .iter()
                .map(|&c| c.min(text.len()))
                .filter(|&c| text.is_char_boundary(c))
                .collect();
            bounds.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for b in bounds {
                chunks.push(&text[from..b]);
                from = b;
            }
            chunks.push(&text[from..]);
            let mut r = StreamRestorer::new(pairs).unwrap();
            proptest::prop_assert_eq!(run(&mut r, &chunks), want);
        }
    }

    #[test]
    fn plain_brackets_are_not_held() {
        let mut r = StreamRestorer::new([("[NAME_1]", "Ada")]).unwrap();
        assert_eq!(r.push("see [ref"), "see [ref");
        assert_eq!(r.push("x [NAM"), "x ");
        assert_eq!(r.finish(), "[NAM");
    }

    #[test]
    fn refuses_malformed_placeholders_without_showing_them() {
        let e = StreamRestorer::new([("NAME_1", "Ada")]).unwrap_err().to_string();
        assert!(!e.contains("NAME_1") && !e.contains("Ada"));
        assert!(StreamRestorer::new([("[A]B]", "x")]).is_err());
        let r = StreamRestorer::new([("[NAME_1]", "Ada Byron")]).unwrap();
        assert!(!format!("{r:?}").contains("Ada"));
    }
}
