//! A one-pass tokenizer: words and numbers with their shape, dictionary flags and whether they
//! open a sentence. Dictionary recognizers work on these tokens instead of on bytes.

use super::dict::{flag, Dict};

/// The case shape of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `word`
    Lower,
    /// `Word`, `McDonald`, `O'Neil`
    Cap,
    /// `WORD` (two letters or more)
    Upper,
    /// A single upper-case letter: `J`
    Initial,
    /// Letters and digits, or odd casing: `HbA1c`, `SJH123`
    Mixed,
    /// Digits only.
    Num,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Tok {
    pub start: usize,
    pub end: usize,
    /// End without a possessive `'s`.
    pub base_end: usize,
    pub shape: Shape,
    /// Dictionary flags of the lower-cased token (and of its base, for possessives).
    pub flags: u32,
    /// The first token of a sentence (capitalisation there says nothing).
    pub sent_start: bool,
    /// The token lies on a line written mostly in capitals.
    pub caps_line: bool,
    /// Range of the lower-cased token in [`Tokens::lower`].
    pub lo: (u32, u32),
}

impl Tok {
    #[inline]
    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }
    /// Capitalised as a proper noun would be: `Cap`, or `Upper` on a capitals line.
    #[inline]
    pub fn is_capitalized(&self) -> bool {
        matches!(self.shape, Shape::Cap) || (self.shape == Shape::Upper && self.caps_line)
    }
}

/// Tokens of one text.
#[derive(Default)]
pub(crate) struct Tokens {
    pub toks: Vec<Tok>,
    /// Lower-cased token texts, concatenated.
    pub lower: String,
    /// Recent word lookups.
    cache: super::dict::WordCache,
}

impl Tokens {
    pub fn lower_of(&self, t: &Tok) -> &str {
        &self.lower[t.lo.0 as usize..t.lo.1 as usize]
    }

    /// Tokenizes `text`, reusing allocations.
    ///
    /// `opaque` are sorted byte ranges already found by format recognizers: no token starts or
    /// runs inside them, so words read the same before and after those spans are replaced.
    pub fn fill(&mut self, text: &str, dict: &Dict, opaque: &[(usize, usize)]) {
        let mut next_opaque = 0;
        self.toks.clear();
        self.lower.clear();
        let b = text.as_bytes();
        let n = b.len();
        let mut i = 0;
        let mut prev_end = 0usize;
        // A sentence break seen before a skipped span or placeholder.
        let mut carried_break = false;
        let mut line_first_tok = 0usize;
        let (mut line_alpha, mut line_upper) = (0u32, 0u32);
        let (mut doc_alpha, mut doc_upper) = (0u32, 0u32);
        let mut line_marks: Vec<(usize, usize, bool)> = Vec::new();
        // Words that hold a capital where no sentence starts, per line and in all; and words
        // of letters. A text typed all in lower case (a clinician's chat) reads as if in
        // capitals: names and places are told by the word lists, not by case.
        let (mut line_cased, mut line_words, mut doc_cased, mut doc_words) =
            (0u32, 0u32, 0u32, 0u32);
        let mut uncapitalised = false;
        let mut lower_lines: Vec<(usize, usize, bool)> = Vec::new();
        while i < n {
            while next_opaque < opaque.len() && opaque[next_opaque].1 <= i {
                next_opaque += 1;
            }
            let stop_at = match opaque.get(next_opaque) {
                Some(&(s, e)) if s <= i => {
                    // Context reads across a found span as it will across its replacement.
                    carried_break |= self.toks.is_empty()
                        || gap_ends_sentence(&b[prev_end.min(s)..s], self.toks.last(), b);
                    i = e.max(i);
                    prev_end = i;
                    continue;
                }
                Some(&(s, _)) => s,
                None => n,
            };
            let c = b[i];
            if c == b'\n' {
                line_marks.push((line_first_tok, self.toks.len(), is_caps(line_alpha, line_upper)));
                lower_lines.push((
                    line_first_tok,
                    self.toks.len(),
                    is_lower(line_cased, line_words),
                ));
                line_first_tok = self.toks.len();
                line_alpha = 0;
                line_upper = 0;
                line_cased = 0;
                line_words = 0;
                i += 1;
                continue;
            }
            if c == b'[' {
                if let Some(len) = placeholder_len(&b[i..]) {
                    // "[NAME_1]", "[DATE]": our own replacements are neither PHI nor context.
                    carried_break |= self.toks.is_empty()
                        || gap_ends_sentence(&b[prev_end..i], self.toks.last(), b);
                    i += len;
                    prev_end = i;
                    continue;
                }
            }
            if c.is_ascii_alphanumeric() || (c >= 0x80 && starts_alnum(text, i)) {
                let start = i;
                let (mut n_upper, mut n_lower, mut n_digit, mut first_upper) =
                    (0u32, 0u32, 0u32, false);
                let lo_start = self.lower.len();
                loop {
                    if i >= stop_at {
                        break;
                    }
                    let c = b[i];
                    if c.is_ascii() {
                        if c.is_ascii_uppercase() {
                            if i == start {
                                first_upper = true;
                            }
                            n_upper += 1;
                            self.lower.push(c.to_ascii_lowercase() as char);
                            i += 1;
                        } else if c.is_ascii_lowercase() {
                            n_lower += 1;
                            self.lower.push(c as char);
                            i += 1;
                        } else if c.is_ascii_digit() {
                            n_digit += 1;
                            self.lower.push(c as char);
                            i += 1;
                        } else if (c == b'-'
                            || (c == b'\''
                                && (i - start <= 2
                                    || b.get(i + 1).is_some_and(u8::is_ascii_lowercase)
                                    // "MARY'S" in capitals
                                    || (b.get(i + 1) == Some(&b'S')
                                        && !b.get(i + 2).is_some_and(u8::is_ascii_alphanumeric)))))
                            && i > start
                            && is_letter_at(text, i + 1)
                            && is_letter_before(text, i)
                        {
                            self.lower.push(c as char);
                            i += 1;
                        } else {
                            break;
                        }
                    } else {
                        let ch = text[i..].chars().next().unwrap_or(' ');
                        if ch.is_alphanumeric() {
                            if ch.is_uppercase() {
                                if i == start {
                                    first_upper = true;
                                }
                                n_upper += 1;
                            } else if ch.is_numeric() {
                                n_digit += 1;
                            } else {
                                n_lower += 1;
                            }
                            self.lower.extend(ch.to_lowercase());
                            i += ch.len_utf8();
                        } else if ch == '\u{2019}' && i + 3 < n && is_alnum_at(text, i + 3) {
                            self.lower.push('\'');
                            i += 3;
                        } else {
                            break;
                        }
                    }
                }
                let end = i;
                let shape = if n_digit > 0 {
                    if n_upper + n_lower == 0 {
                        Shape::Num
                    } else {
                        Shape::Mixed
                    }
                } else if n_lower == 0 {
                    if n_upper == 1 {
                        Shape::Initial
                    } else {
                        Shape::Upper
                    }
                } else if first_upper && n_upper <= 2 {
                    Shape::Cap
                } else if n_upper == 0 {
                    Shape::Lower
                } else {
                    Shape::Mixed
                };
                let lo_end = self.lower.len();
                let lower = &self.lower[lo_start..lo_end];
                let mut flags =
                    if shape == Shape::Num { 0 } else { dict.flags_cached(lower, &mut self.cache) };
                let mut base_end = end;
                if let Some(base) = lower.strip_suffix("'s") {
                    flags |= dict.flags(base);
                    base_end = end - if text[..end].ends_with("\u{2019}s") { 4 } else { 2 };
                }
                // Only words of three letters or more say whether a line is in capitals, and
                // only vocabulary, never a possible name, so that the verdict is the same once
                // names have been replaced.
                if !matches!(shape, Shape::Num | Shape::Mixed)
                    && n_upper + n_lower >= 3
                    && vocabulary(flags)
                {
                    line_alpha += 1;
                    doc_alpha += 1;
                    if matches!(shape, Shape::Upper) {
                        line_upper += 1;
                        doc_upper += 1;
                    }
                }
                let gap = &b[prev_end..start];
                let sent_start = std::mem::take(&mut carried_break)
                    || self.toks.is_empty()
                    || gap_ends_sentence(gap, self.toks.last(), b);
                if n_upper + n_lower >= 2 && n_digit == 0 {
                    line_words += 1;
                    doc_words += 1;
                    // Only vocabulary counts, as for capitals: a name may be replaced, and the
                    // verdict must not change then. Short words in capitals ("BP", "CT") are
                    // abbreviations, which writers who type in lower case still capitalise.
                    if n_upper > 0
                        && !sent_start
                        && !(n_lower == 0 && n_upper <= 3)
                        && vocabulary(flags)
                    {
                        line_cased += 1;
                        doc_cased += 1;
                    }
                }
                // Evidence that the writer does not capitalise: the text, or a sentence after a
                // full stop, a question or an exclamation mark, starting in lower case, or "i"
                // for "I". A note in sentence case ("Called pharmacy to clarify the dose.",
                // "Disposition: will likely go home", "- continue home meds") has none, however
                // few capitals its lines hold.
                if n_upper == 0
                    && n_digit == 0
                    && n_lower > 0
                    && (self.toks.is_empty()
                        || (sent_start && gap.iter().any(|c| matches!(c, b'.' | b'?' | b'!')))
                        || (n_lower == 1 && b[start] == b'i'))
                {
                    uncapitalised = true;
                }
                self.toks.push(Tok {
                    start,
                    end,
                    base_end,
                    shape,
                    flags,
                    sent_start,
                    caps_line: false,
                    lo: (lo_start as u32, lo_end as u32),
                });
                prev_end = end;
                continue;
            }
            i += 1;
        }
        line_marks.push((line_first_tok, self.toks.len(), is_caps(line_alpha, line_upper)));
        lower_lines.push((line_first_tok, self.toks.len(), is_lower(line_cased, line_words)));
        let doc_caps = is_caps(doc_alpha, doc_upper);
        for (a, z, caps) in line_marks {
            let caps = if z - a < 4 { doc_caps || caps } else { caps };
            if caps {
                for t in &mut self.toks[a..z] {
                    t.caps_line = true;
                }
            }
        }
        // A line with no capital but where sentences start reads as if written in capitals
        // (a short line as the whole text does).
        let doc_lower = is_lower(doc_cased, doc_words);
        for (a, z, lower) in lower_lines.into_iter().filter(|_| uncapitalised) {
            let lower = if z - a < 4 { doc_lower && z > a } else { lower };
            if lower {
                // Its capitalised words (sentence starts, a label's value) stay as they are.
                for t in self.toks[a..z].iter_mut().filter(|t| t.shape == Shape::Lower) {
                    let letters = self.lower[t.lo.0 as usize..t.lo.1 as usize]
                        .chars()
                        .filter(|c| c.is_alphabetic())
                        .count();
                    t.shape = if letters == 1 { Shape::Initial } else { Shape::Upper };
                    t.caps_line = true;
                }
            }
        }
    }
}

/// The length of a placeholder this crate writes (`[NAME]`, `[NAME_12]`, `[NAME:3fa9…]`) at the
/// start of `b`, if there is one.
pub(crate) fn placeholder_len(b: &[u8]) -> Option<usize> {
    let close = b.iter().take(48).position(|&c| c == b']')?;
    let inner = &b[1..close];
    let head_len = inner.iter().take_while(|c| c.is_ascii_uppercase() || **c == b'_').count();
    if head_len < 2 {
        return None;
    }
    let rest = &inner[head_len..];
    let ok = rest.is_empty()
        || (rest[0] == b':' && rest[1..].iter().all(u8::is_ascii_hexdigit))
        || (inner[head_len - 1] == b'_' && rest.iter().all(u8::is_ascii_digit));
    ok.then_some(close + 1)
}

fn vocabulary(flags: u32) -> bool {
    flags
        & (flag::ENGLISH
            | flag::MEDICAL
            | flag::STOP
            | flag::ABBREV
            | flag::DRUG
            | flag::MONTH
            | flag::WEEKDAY)
        != 0
        && flags & (flag::GIVEN | flag::SURNAME | flag::PROPER) == 0
}

fn is_caps(alpha: u32, upper: u32) -> bool {
    alpha >= 2 && upper * 10 >= alpha * 6
}

/// A line of `words` words of letters, none with a capital where no sentence starts.
fn is_lower(cased: u32, words: u32) -> bool {
    cased == 0 && words >= 3
}

fn starts_alnum(text: &str, i: usize) -> bool {
    text.is_char_boundary(i) && text[i..].chars().next().is_some_and(char::is_alphanumeric)
}

fn is_letter_at(text: &str, i: usize) -> bool {
    text.get(i..).and_then(|r| r.chars().next()).is_some_and(char::is_alphabetic)
}

fn is_letter_before(text: &str, i: usize) -> bool {
    text.get(..i).and_then(|r| r.chars().next_back()).is_some_and(char::is_alphabetic)
}

fn is_alnum_at(text: &str, i: usize) -> bool {
    let b = text.as_bytes();
    if i >= b.len() {
        return false;
    }
    if b[i].is_ascii() {
        b[i].is_ascii_alphanumeric()
    } else {
        starts_alnum(text, i)
    }
}

/// Whether the text between two tokens ends a sentence. A dot after a title, an initial or a
/// short abbreviation ("Dr.", "J.", "St.") does not.
fn gap_ends_sentence(gap: &[u8], prev: Option<&Tok>, text: &[u8]) -> bool {
    if gap.iter().any(|&c| matches!(c, b'!' | b'?' | b'\n' | b';' | b':' | b'*' | b'|' | b'>')) {
        return true;
    }
    if !gap.contains(&b'.') {
        return false;
    }
    match prev {
        Some(p) => {
            let len = p.end - p.start;
            let abbr = matches!(p.shape, Shape::Initial)
                || p.has(flag::TITLE)
                || (len <= 3
                    && matches!(p.shape, Shape::Cap)
                    && text[p.start].is_ascii_uppercase()
                    && {
                        let w = &text[p.start..p.end];
                        w.eq_ignore_ascii_case(b"st")
                            || w.eq_ignore_ascii_case(b"mt")
                            || w.eq_ignore_ascii_case(b"ste")
                    });
            !abbr
        }
        None => true,
    }
}
