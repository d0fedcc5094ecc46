//! A reading of a text with look-alike characters folded to ASCII, for the recognizers, whose
//! rules are written in ASCII: fullwidth forms (`２１９`, `＠`), the decimal digits of other
//! scripts (`٢١٩`, `२१९`, mathematical digits), Unicode spaces (no-break, thin, ideographic),
//! dashes and minus signs (`‑`, `–`, `−`), and invisible format characters (zero-width space,
//! word joiner, soft hyphen, byte-order mark, direction marks), which are dropped. Text pasted
//! from a word processor, a web page or an EHR screen has them, and a model reads
//! `617 555 0199` (no-break spaces) or `219-09-99​99` (a zero-width space) as the number.
//! HTML character references read as the characters they stand for (`&#50;&#49;&#57;`,
//! `617&nbsp;555&ndash;0199`), as text from a web page or an HTML export has them.
//!
//! An underscore between words reads as a space (`SSN_219-09-9999`, `Garcia_Maria_1962-03-14.pdf`,
//! `call_617-555-0199`): file names, identifiers and keys join words with it, and a client reads
//! the parts. Not inside a placeholder this crate writes (`[NAME_1]`), nor in an e-mail address
//! or URL, which their patterns read whole (`john_smith@example.org`). So do the dots of a word
//! made of names and initials (`maria.garcia`, `alan.b.okafor`, `Dr.Smith`), as a user name or
//! handle is written, but not of a domain (`mercy.org`) or an abbreviation (`e.g.`, `b.i.d.`).
//! An e-mail address written to dodge a reader reads as written plainly (`jdoe(at)gmail(dot)com`,
//! `jdoe [at] gmail.com`, `jdoe at gmail dot com`, `jdoe @ gmail.com`). Control characters other
//! than tab, line feed and carriage return read as spaces (`Adaeze\u{0}Okonkwo`).
//!
//! Findings made on the reading are mapped back to the original's bytes: a finding covers
//! every original character whose folded form it covers, and the dropped characters between.

/// The folded reading of a text, and where each of its bytes came from.
pub(crate) struct Folded {
    pub text: String,
    /// For each byte of `text`, and one past its end: the original byte offset where the
    /// character it belongs to (or the next one, past the end) starts.
    from: Vec<u32>,
    /// The original text's length.
    len: usize,
}

/// What one character reads as.
enum Fold {
    Keep,
    Drop,
    To(char),
}

/// Zeros of the decimal digit runs (Unicode category Nd) beyond ASCII, each followed by its
/// nine other digits (Unicode 14; checked against Python's `unicodedata` when written).
const DIGIT_ZEROS: &[u32] = &[
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

fn fold_char(c: char) -> Fold {
    let u = c as u32;
    match u {
        0..=0x08 | 0x0B | 0x0C | 0x0E..=0x1F | 0x7F..=0x9F => Fold::To(' '),
        0x09..=0x7E => Fold::Keep,
        // Soft hyphen, zero-width space and joiners, direction marks and embeddings, word
        // joiner and invisible operators, isolates, Mongolian vowel separator, byte-order mark.
        0xAD
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x2069
        | 0x180E
        | 0xFEFF => Fold::Drop,
        0xA0 | 0x1680 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => Fold::To(' '),
        0x2010..=0x2015 | 0x2212 | 0xFE58 | 0xFE63 | 0xFF0D => Fold::To('-'),
        0x2044 | 0x2215 => Fold::To('/'),
        // Fullwidth ASCII.
        0xFF01..=0xFF5E => char::from_u32(u - 0xFEE0).map_or(Fold::Keep, Fold::To),
        _ => {
            let i = DIGIT_ZEROS.partition_point(|&z| z <= u);
            match i.checked_sub(1).map(|k| u - DIGIT_ZEROS[k]) {
                Some(d @ 0..=9) => Fold::To(char::from(b'0' + d as u8)),
                _ => Fold::Keep,
            }
        }
    }
}

/// Named HTML character references that text pasted from a web page or an HTML export holds
/// inside identifiers (`617&nbsp;555&ndash;0199`), and the few signs of addresses and e-mails.
const NAMED: &[(&str, char)] = &[
    ("nbsp", ' '),
    ("ensp", ' '),
    ("emsp", ' '),
    ("thinsp", ' '),
    ("ndash", '-'),
    ("mdash", '-'),
    ("minus", '-'),
    ("hyphen", '-'),
    ("shy", '\u{ad}'),
    ("amp", '&'),
    ("commat", '@'),
    ("period", '.'),
    ("sol", '/'),
    ("num", '#'),
    ("lpar", '('),
    ("rpar", ')'),
    ("plus", '+'),
];

/// The character an HTML character reference at the start of `b` stands for (`&#50;`,
/// `&#x32;`, `&nbsp;`), and its length.
fn reference(b: &[u8]) -> Option<(char, usize)> {
    if b.first() != Some(&b'&') {
        return None;
    }
    let end = b.iter().take(10).position(|&c| c == b';')?;
    let body = std::str::from_utf8(&b[1..end]).ok()?;
    let c = if let Some(num) = body.strip_prefix('#') {
        let n = match num.strip_prefix(['x', 'X']) {
            Some(hex) if !hex.is_empty() && hex.len() <= 6 => u32::from_str_radix(hex, 16).ok()?,
            None if !num.is_empty()
                && num.len() <= 7
                && num.bytes().all(|d| d.is_ascii_digit()) =>
            {
                num.parse().ok()?
            }
            _ => return None,
        };
        char::from_u32(n).filter(|c| *c != '\0')?
    } else {
        NAMED.iter().find(|(name, _)| *name == body)?.1
    };
    Some((c, end + 1))
}

/// What a first look at `b` found: whether something in it folds (a byte that is not ASCII,
/// `&`, `_`, a control character other than tab, line feed and carriage return, or a dot that
/// joins the words of a name, [`dots_join_words`]), and whether it
/// may hold a spelled-out address ([`spelled_out_emails`]). Searched byte by byte only for
/// the rare bytes; the frequent ones (dots, `d`, brackets) with `memchr`.
fn first_look(b: &[u8]) -> (bool, bool) {
    let folds = !b.is_ascii()
        || memchr::memchr2(b'&', b'_', b).is_some()
        || b.iter().fold(false, |acc, &c| acc | ((c < 0x20) & (c != 9) & (c != 10) & (c != 13)))
        || {
            // Each token read once, whatever the number of dots in it.
            let mut read_to = 0;
            memchr::memchr_iter(b'.', b).any(|i| {
                i >= read_to
                    && i > 0
                    && b[i - 1].is_ascii_alphabetic()
                    && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
                    && {
                        let (s, e) = token_around(b, i);
                        read_to = e;
                        dots_join_words(&b[s..e])
                    }
            })
        };
    let next_is =
        |i: usize, w: &[u8]| b.get(i + 1..i + 3).is_some_and(|x| x.eq_ignore_ascii_case(w));
    let emails = memchr::memchr_iter(b'@', b)
        .any(|i| b.get(i + 1) == Some(&b' ') || (i > 0 && b[i - 1] == b' '))
        || [&b"dot"[..], b"DOT", b"Dot"].iter().any(|w| memchr::memmem::find(b, w).is_some())
        || memchr::memchr3_iter(b'(', b'[', b'{', b)
            .chain(memchr::memchr_iter(b'<', b))
            .any(|i| next_is(i, b"at"));
    (folds, emails)
}

/// Where a token (a run of bytes up to a space, quote, bracket or comma) that holds `i` starts
/// and ends.
fn token_around(b: &[u8], i: usize) -> (usize, usize) {
    let apart = |c: &u8| {
        c.is_ascii_whitespace()
            || matches!(c, b'"' | b'\'' | b'<' | b'>' | b'(' | b')' | b'{' | b'}' | b',' | b'|')
    };
    let s = b[..i].iter().rposition(apart).map_or(0, |p| p + 1);
    let e = b[i..].iter().position(apart).map_or(b.len(), |p| i + p);
    (s, e)
}

/// Whether the dots of the token `t` read as spaces: letters and dots only (a sentence's
/// punctuation after them aside), two parts or more, the first and last of two letters or more,
/// none empty, and no part after a dot a top-level domain (`mercy.org`).
fn dots_join_words(t: &[u8]) -> bool {
    let end = t.iter().rposition(|c| !matches!(c, b'.' | b',' | b';' | b':' | b'!' | b'?'));
    let t = &t[..end.map_or(0, |e| e + 1)];
    if !t.iter().all(|c| c.is_ascii_alphabetic() || *c == b'.') || !t.contains(&b'.') {
        return false;
    }
    let mut parts = t.split(|c| *c == b'.');
    let (first, last) = (parts.next().unwrap_or_default(), t.rsplit(|c| *c == b'.').next());
    first.len() >= 2
        && last.is_some_and(|l| {
            l.len() >= 2 && !FILE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(l))
        })
        && parts.all(|p| !p.is_empty())
        && !crate::recognize::patterns::has_tld(t)
}

/// File name extensions: `labs.csv`, `notes.md` are files, not names.
const FILE_EXTENSIONS: &[&[u8]] = &[
    b"csv", b"tsv", b"txt", b"pdf", b"doc", b"docx", b"xls", b"xlsx", b"json", b"jsonl", b"xml",
    b"md", b"py", b"rs", b"js", b"ts", b"html", b"htm", b"jpg", b"jpeg", b"png", b"gif", b"dcm",
    b"zip", b"log", b"sql", b"yaml", b"yml", b"ini", b"cfg", b"rtf", b"ppt", b"pptx", b"sh",
    b"dat", b"hl7", b"ccd", b"ccda", b"tif", b"tiff", b"bmp", b"svg", b"ipynb", b"parquet",
];

/// Opening and closing brackets around a spelled-out `at` or `dot`.
fn opens(c: u8) -> bool {
    matches!(c, b'(' | b'[' | b'{' | b'<')
}

fn closes(c: u8) -> bool {
    matches!(c, b')' | b']' | b'}' | b'>')
}

/// The end of the whitespace from `i`.
fn spaces_from(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
        i += 1;
    }
    i
}

/// A spelled-out `word` (`at`, `dot`) at `i`, bracketed (`(at)`, `[dot]`, spaces around
/// allowed) or as a word between spaces (`plain`): its end, and whether it was bracketed.
fn spelled(b: &[u8], i: usize, word: &[u8], plain: bool) -> Option<(usize, bool)> {
    let k = spaces_from(b, i);
    let n = word.len();
    if b.get(k).copied().is_some_and(opens)
        && b.get(k + 1..k + 1 + n).is_some_and(|w| w.eq_ignore_ascii_case(word))
        && b.get(k + 1 + n).copied().is_some_and(closes)
    {
        return Some((spaces_from(b, k + 2 + n), true));
    }
    if plain
        && k > i
        && b.get(k..k + n).is_some_and(|w| w.eq_ignore_ascii_case(word))
        && b.get(k + n).is_some_and(|c| *c == b' ' || *c == b'\t')
    {
        return Some((spaces_from(b, k + n), false));
    }
    None
}

/// The pieces of `b` that stand for an e-mail address's `@` and dots where it is written to
/// dodge a reader (see the module's documentation): `(start, end, character, where the address
/// starts)`, sorted (the address's own underscores are kept, `bob_t1962 (at) aol.com`). The
/// user part is one run of the characters an address's user part has; the domain is labels
/// joined by dots (plain or spelled out) and ends in a top-level domain the domain pattern
/// knows. `at` as a plain word counts only with a spelled-out dot (`records at mercy.org` is
/// not an address).
fn spelled_out_emails(b: &[u8]) -> Vec<(usize, usize, u8, usize)> {
    let mut out = Vec::new();
    let user = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let label = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-';
    let mut i = 0;
    while i < b.len() {
        // A user part ends at `i`: what follows may be a spelled-out or spaced `@`.
        if i == 0 || !user(&b[i - 1]) || user(&b[i]) {
            i += 1;
            continue;
        }
        let (at_end, strong) = if let Some(r) = spelled(b, i, b"at", true) {
            r
        } else {
            let k = spaces_from(b, i);
            if k > i && b.get(k) == Some(&b'@') {
                (spaces_from(b, k + 1), true)
            } else if b[i] == b'@' && spaces_from(b, i + 1) > i + 1 {
                (spaces_from(b, i + 1), true)
            } else {
                i += 1;
                continue;
            }
        };
        // The domain: labels joined by dots, the last a top-level domain.
        let mut dots = Vec::new();
        let mut j = at_end;
        let mut spelled_dot = false;
        let mut last = (j, j);
        loop {
            let s = j;
            while b.get(j).is_some_and(label) {
                j += 1;
            }
            if j == s {
                break;
            }
            last = (s, j);
            let next = if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(label) {
                Some((j + 1, None))
            } else {
                spelled(b, j, b"dot", true).map(|(e, _)| (e, Some((j, e))))
            };
            match next {
                Some((e, piece)) if b.get(e).is_some_and(label) => {
                    if let Some(p) = piece {
                        dots.push(p);
                        spelled_dot = true;
                    }
                    j = e;
                }
                _ => break,
            }
        }
        let mut tld = Vec::with_capacity(1 + last.1 - last.0);
        tld.push(b'.');
        tld.extend_from_slice(&b[last.0..last.1]);
        if last.0 > at_end
            && (strong || spelled_dot)
            && crate::recognize::patterns::has_tld(&tld)
            && (!dots.is_empty() || b[at_end..last.0].contains(&b'.'))
        {
            let start = b[..i].iter().rposition(|c| !user(c)).map_or(0, |p| p + 1);
            out.push((i, at_end, b'@', start));
            out.extend(dots.into_iter().map(|(s, e)| (s, e, b'.', s)));
            i = last.1;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether the underscores of the token `t` read as spaces: not in an e-mail address or a URL,
/// nor in a function's name in code (`cockcroft_gault(age, wt)`).
fn underscores_join_words(t: &[u8], next: Option<&u8>) -> bool {
    !(next == Some(&b'(')
        || t.contains(&b'@')
        || (t.contains(&b'/') && crate::recognize::patterns::has_tld(t))
        || t.windows(3).any(|w| w == b"://")
        || t.get(..4).is_some_and(|w| w.eq_ignore_ascii_case(b"www.")))
}

impl Folded {
    /// The folded reading of `text`, or None when nothing in it folds (an ASCII text without
    /// an HTML character reference, underscore or control character: most texts).
    pub(crate) fn of(text: &str) -> Option<Folded> {
        let b = text.as_bytes();
        if text.len() >= u32::MAX as usize {
            return None;
        }
        let (folds, may_spell) = first_look(b);
        let emails = if may_spell { spelled_out_emails(b) } else { Vec::new() };
        if emails.is_empty() && !folds {
            return None;
        }
        let first = text
            .char_indices()
            .find(|&(i, c)| {
                (c == '&' && reference(&b[i..]).is_some())
                    || c == '_'
                    || c == '.'
                    || !matches!(fold_char(c), Fold::Keep)
            })
            .map_or(text.len(), |(i, _)| i)
            .min(emails.first().map_or(usize::MAX, |e| e.3));
        if first == text.len() {
            return None;
        }
        let mut emails = emails.into_iter().peekable();
        // The token the last underscore or dot was in, and whether its underscores and its
        // dots are spaces.
        let mut token = (0, 0, false, false);
        let mut out = String::with_capacity(text.len());
        let mut from: Vec<u32> = Vec::with_capacity(text.len() + 1);
        out.push_str(&text[..first]);
        from.extend(0..first as u32);
        let mut i = first;
        while i < text.len() {
            if let Some((_, end, c, _)) = emails.next_if(|e| e.0 == i) {
                out.push(char::from(c));
                from.push(i as u32);
                i = end;
                continue;
            }
            if b[i] == b'[' {
                if let Some(len) = crate::recognize::tokens::placeholder_len(&b[i..]) {
                    out.push_str(&text[i..i + len]);
                    from.extend(i as u32..(i + len) as u32);
                    i += len;
                    continue;
                }
            }
            if b[i] == b'_' || b[i] == b'.' {
                if i >= token.1 {
                    let (s, e) = token_around(b, i);
                    let t = &b[s..e];
                    token = (s, e, underscores_join_words(t, b.get(e)), dots_join_words(t));
                }
                let space = if b[i] == b'_' {
                    token.2 && emails.peek().is_none_or(|e| i < e.3)
                } else {
                    token.3
                        && b[i - 1].is_ascii_alphabetic()
                        && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
                };
                // An initial keeps its dot, as a name is written ("alan.b.okafor" reads as
                // "alan b. okafor").
                let initial = space
                    && b[i] == b'.'
                    && (i < 2 || i - 1 == token.0 || !b[i - 2].is_ascii_alphabetic());
                if initial {
                    out.push('.');
                    from.push(i as u32);
                }
                out.push(if space { ' ' } else { char::from(b[i]) });
                from.push(i as u32);
                i += 1;
                continue;
            }
            let (c, len) = match reference(&b[i..]) {
                Some(r) if b[i] == b'&' => r,
                _ => {
                    let c = text[i..].chars().next().unwrap_or(' ');
                    (c, c.len_utf8())
                }
            };
            let at = i as u32;
            i += len;
            let c = match fold_char(c) {
                Fold::Keep => c,
                Fold::Drop => continue,
                Fold::To(t) => t,
            };
            out.push(c);
            from.extend(std::iter::repeat_n(at, c.len_utf8()));
        }
        from.push(text.len() as u32);
        Some(Folded { text: out, from, len: text.len() })
    }

    /// The original byte range of the folded range `start..end` (both char boundaries of the
    /// reading).
    pub(crate) fn back(&self, start: usize, end: usize) -> (usize, usize) {
        (self.from[start] as usize, self.from[end] as usize)
    }

    /// `found` (findings in the original, sorted and apart) in the reading's offsets.
    pub(crate) fn findings_forth(&self, found: &[crate::Finding]) -> Vec<crate::Finding> {
        found
            .iter()
            .map(|f| crate::Finding { start: self.forth(f.start), end: self.forth(f.end), ..*f })
            .filter(|f| f.start < f.end)
            .collect()
    }

    /// The folded offset of an original char boundary `at` (the first folded byte that comes
    /// from there or later).
    pub(crate) fn forth(&self, at: usize) -> usize {
        if at >= self.len {
            return self.text.len();
        }
        self.from.partition_point(|&o| (o as usize) < at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_fold_and_map_back() {
        let t = "SSN ２１９-０٩-99\u{200b}99, tel 617\u{a0}555\u{2011}0199.";
        let f = Folded::of(t).unwrap();
        assert_eq!(f.text, "SSN 219-09-9999, tel 617 555-0199.");
        let s = f.text.find("219").unwrap();
        let (a, b) = f.back(s, s + "219-09-9999".len());
        assert_eq!(&t[a..b], "２１９-０٩-99\u{200b}99");
        let s = f.text.find("617").unwrap();
        let (a, b) = f.back(s, s + "617 555-0199".len());
        assert_eq!(&t[a..b], "617\u{a0}555\u{2011}0199");
        assert_eq!(f.forth(a), s);
        assert_eq!(f.forth(t.len()), f.text.len());
    }

    #[test]
    fn html_character_references_read_as_their_characters() {
        let t = "SSN &#50;&#49;&#57;-09-9999, tel 617&nbsp;555&#x2D;0199, AT&T &amp co";
        let f = Folded::of(t).unwrap();
        assert_eq!(f.text, "SSN 219-09-9999, tel 617 555-0199, AT&T &amp co");
        let s = f.text.find("219").unwrap();
        let (a, b) = f.back(s, s + "219-09-9999".len());
        assert_eq!(&t[a..b], "&#50;&#49;&#57;-09-9999");
        assert!(Folded::of("AT&T and R&D; Q&A").is_none());
    }

    #[test]
    fn underscores_between_words_read_as_spaces() {
        let t = "scan SSN_219-09-9999.pdf for [NAME_1], mail jo_ann@example.org, \
                 https://x.example/a_b www.x_y.org Adaeze\u{0}Okonkwo\tok";
        let f = Folded::of(t).unwrap();
        assert_eq!(
            f.text,
            "scan SSN 219-09-9999.pdf for [NAME_1], mail jo_ann@example.org, \
             https://x.example/a_b www.x_y.org Adaeze Okonkwo\tok"
        );
        let s = f.text.find("219").unwrap();
        let (a, b) = f.back(s - 4, s + 11);
        assert_eq!(&t[a..b], "SSN_219-09-9999");
        assert!(Folded::of("[NAME_1] and [DATE_12]").is_none_or(|f| f.text.contains("[DATE_12]")));
        let t = "login maria.garcia, alan.b.okafor. Dr.Smith at mercy.org e.g. b.i.d. 2.5 mg";
        assert_eq!(
            Folded::of(t).unwrap().text,
            "login maria garcia, alan b. okafor. Dr Smith at mercy.org e.g. b.i.d. 2.5 mg"
        );
        assert!(Folded::of("Seen today. Next visit in 2.5 weeks.").is_none());
    }

    #[test]
    fn spelled_out_email_addresses_read_as_written_plainly() {
        for (t, want) in [
            ("mail jdoe(at)gmail(dot)com now", "mail jdoe@gmail.com now"),
            ("mail jdoe [at] gmail.com now", "mail jdoe@gmail.com now"),
            ("mail JDOE AT GMAIL DOT COM now", "mail JDOE@GMAIL.COM now"),
            ("mail j.doe[at]yahoo[dot]com", "mail j.doe@yahoo.com"),
            (
                "mail jdoe @ gmail.com or bob_t1962 (at) aol.com",
                "mail jdoe@gmail.com or bob_t1962@aol.com",
            ),
        ] {
            assert_eq!(Folded::of(t).unwrap().text, want, "{t}");
        }
        let f = Folded::of("mail jdoe at gmail dot com now").unwrap();
        let (a, b) = f.back(5, 5 + "jdoe@gmail.com".len());
        assert_eq!(&"mail jdoe at gmail dot com now"[a..b], "jdoe at gmail dot com");
        // Not an address: `at` as a word with plain dots, no top-level domain, DOT therapy.
        for t in
            ["records at mercy.org", "seen at clinic dot visit", "on DOT at home", "meet @ 5pm"]
        {
            assert!(Folded::of(t).is_none_or(|f| f.text == t), "{t}");
        }
    }

    #[test]
    fn text_with_nothing_to_fold_is_read_as_it_is() {
        assert!(Folded::of("plain ASCII").is_none());
        assert!(Folded::of("José Müller, 5 µg at 37 °C").is_none());
    }

    #[test]
    fn every_digit_run_folds_to_its_values() {
        for z in DIGIT_ZEROS {
            for d in 0..10u32 {
                let c = char::from_u32(z + d).unwrap();
                assert!(
                    matches!(fold_char(c), Fold::To(x) if x == char::from(b'0' + d as u8)),
                    "U+{:X}",
                    z + d
                );
            }
        }
        // Just past a run: no digit.
        assert!(matches!(fold_char('\u{66A}'), Fold::Keep));
    }
}
