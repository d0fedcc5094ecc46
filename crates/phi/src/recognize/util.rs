//! Small byte-level helpers shared by the recognizers.

/// Whether the `window` bytes before `pos` contain any of `words` as a whole word, ignoring
/// ASCII case. `words` must be lower-case ASCII.
pub(crate) fn cue_before(text: &str, pos: usize, window: usize, words: &[&str]) -> bool {
    let b = text.as_bytes();
    let mut lo = pos.saturating_sub(window);
    // A cue on an earlier line does not count, unless that line is a label for the value that
    // opens this one ("Phone:\n555-1234", "ZIP:\t\n02139").
    if let Some(nl) = b[lo..pos].iter().rposition(|&c| c == b'\n') {
        let prev = &b[lo..lo + nl];
        let label = b[lo + nl + 1..pos].iter().all(|&c| matches!(c, b' ' | b'\t' | b'"' | b'\''))
            && prev.iter().rev().find(|c| !c.is_ascii_whitespace()) == Some(&b':');
        lo += if label {
            prev.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1)
        } else {
            nl + 1
        };
    }
    let hay = &b[lo..pos];
    // One walk over the window's words for the cues that are one plain word; a search per
    // cue only for those with spaces or signs ("blood pressure", "ss#").
    let mut i = 0;
    while i < hay.len() {
        if !hay[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let s = i;
        while i < hay.len() && hay[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let w = &hay[s..i];
        if (s == 0 || hay[s - 1] != b'[')
            && hay.get(i).is_none_or(|c| !matches!(c, b']' | b'_'))
            && words.iter().any(|n| n.len() == w.len() && w.eq_ignore_ascii_case(n.as_bytes()))
        {
            return true;
        }
    }
    words
        .iter()
        .filter(|n| !n.bytes().all(|c| c.is_ascii_alphanumeric()))
        .any(|w| find_word_ci(hay, w.as_bytes()).is_some())
}

/// Whether the `window` bytes after `pos` start (after spaces) with one of `words`.
pub(crate) fn word_after(text: &str, pos: usize, words: &[&str]) -> bool {
    let b = text.as_bytes();
    let mut i = pos;
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    words.iter().any(|w| {
        let w = w.as_bytes();
        b.len() >= i + w.len()
            && b[i..i + w.len()].eq_ignore_ascii_case(w)
            && b.get(i + w.len()).is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// Finds `needle` (lower-case ASCII) in `hay` as a whole word, ignoring ASCII case.
pub(crate) fn find_word_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    for i in 0..=hay.len() - needle.len() {
        if hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
            && (i == 0 || !(hay[i - 1].is_ascii_alphanumeric() || hay[i - 1] == b'['))
            && hay
                .get(i + needle.len())
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, b']' | b'_')))
        {
            return Some(i);
        }
    }
    None
}

/// Counts ASCII digits.
pub(crate) fn digits(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

/// The byte just before `pos`, if any.
pub(crate) fn byte_before(text: &str, pos: usize) -> Option<u8> {
    pos.checked_sub(1).map(|p| text.as_bytes()[p])
}

/// The length of a quote at the start of `b`: `"`, `'`, or `\"` in JSON quoted twice (a key's
/// closing quote or a value's opening one).
pub(crate) fn quote_len(b: &[u8]) -> usize {
    match b {
        [b'"' | b'\'', ..] => 1,
        [b'\\', b'"', ..] => 2,
        _ => 0,
    }
}
