//! Person names: after titles and cues, given names with surnames or initials, initials with
//! surnames, "Surname, Given", in mixed-case and in ALL-CAPS notes.

use super::dict::{flag, Dict};
use super::tokens::{Shape, Tok, Tokens};
use super::util::quote_len;
use crate::{Category, Finding};

/// Strong titles accept any capitalised word after them ("Dr. White").
const STRONG_TITLES: &[&str] =
    &["dr", "mr", "mrs", "ms", "miss", "mx", "doctor", "prof", "professor"];
/// Place prefixes: "St. Mary's", "Mt. Sinai", "San Diego" hold given names that are no person.
const PLACE_PREFIX: &[&str] =
    &["st", "saint", "mt", "mount", "ste", "san", "santa", "fort", "ft", "lake", "port", "new"];

/// Never part of a name, whatever the case.
const NEVER: u32 = flag::STOP | flag::MONTH | flag::WEEKDAY;

pub(crate) fn find(text: &str, tk: &Tokens, dict: &Dict, out: &mut Vec<Finding>) {
    let toks = &tk.toks;
    let b = text.as_bytes();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let lower = tk.lower_of(t);
        // 1. Titles.
        if t.has(flag::TITLE)
            && matches!(t.shape, Shape::Cap | Shape::Upper)
            && (t.shape == Shape::Cap || t.caps_line || lower.len() == 2)
        {
            let strong = STRONG_TITLES.contains(&lower);
            let lead = toks.get(i + 1).is_some_and(|n| gap_ok(b, t.end, n.start, true));
            let run = if lead { name_run(text, tk, i + 1, strong, dict) } else { None };
            if let Some(last) = run {
                if t.shape != Shape::Upper
                    || t.caps_line
                    || lower != "ms"
                    || strong_next(toks, i + 1)
                {
                    out.push(span(t.start, toks, last, b, 0.95, "name.title"));
                    i = last + 1;
                    continue;
                }
            }
        }
        // 2. Cue phrases ("daughter", "spoke with", "pt"), and field names as labels or keys
        // ("Last name:\tDoe", `"family": "Hargreaves"`).
        if t.has(flag::PHRASE_START | flag::NAME_KEY) {
            if let Some((cue_end, strong, key)) = cue_at(tk, i, dict) {
                let j = cue_end + 1;
                // "What's your name? Sölvi Salómonsson": a question and its answer.
                let asked = j < toks.len()
                    && &b[toks[cue_end].end..toks[j].start] == b"? "
                    && tk.lower_of(&toks[cue_end]) == "name";
                // A greeting's name follows it with one space ("Hi Freddy,"), not after a
                // stop ("Hi. Re: the labs").
                let greeting = matches!(tk.lower_of(&toks[cue_end]), "hi" | "hello" | "dear");
                if j < toks.len()
                    && (!greeting || &b[toks[cue_end].end..toks[j].start] == b" ")
                    && (asked || cue_gap_ok(b, toks[cue_end].end, toks[j].start, key))
                    && !toks[j].has(flag::TITLE)
                {
                    // After a field's cue in capitals ("NAME: OKONKWO, ADAEZE"), a word in
                    // capitals may start a name even on a line too short to read as capitals.
                    let upper = strong && toks[j].shape == Shape::Upper;
                    if let Some(last) = name_run(text, tk, j, upper, dict) {
                        let first = &toks[j];
                        // "PT SEEN BY", "PT STABLE": in capitals, a word that is first of all an
                        // English word is no evidence of a name.
                        let caps_word = (first.caps_line || first.shape == Shape::Upper)
                            && first.has(flag::ENGLISH)
                            && !first.has(flag::GIVEN_TOP);
                        // "SMITH, JOHN": a surname and a given name after a comma, as records
                        // write them, is evidence even for a surname that is an English word.
                        let last_first = strong
                            && first.has(flag::SURNAME)
                            && toks.get(last + 1).is_some_and(|g| g.has(flag::GIVEN))
                            && comma_given(text, tk, last) > last;
                        // "PATIENT: SMITH JOHN", "Patient: MARY BROWN": in capitals after a
                        // field's cue, a given name and a surname, in either order; an English
                        // word must be a frequent name in its role ("LONG STANDING HTN" is none).
                        let given = |t: &Tok| {
                            t.has(flag::GIVEN) && (!t.has(flag::ENGLISH) || t.has(flag::GIVEN_TOP))
                        };
                        let surname = |t: &Tok| {
                            t.has(flag::SURNAME)
                                && (!t.has(flag::ENGLISH) || t.has(flag::SURNAME_COMMON))
                        };
                        let second = toks.get(j + 1).filter(|_| last > j);
                        let given_and_surname = upper
                            && second.is_some_and(|n| {
                                (given(first) && surname(n)) || (surname(first) && given(n))
                            });
                        let evidence = (first.has(flag::GIVEN | flag::SURNAME) && !caps_word)
                            || last_first
                            || given_and_surname
                            || (!first
                                .has(flag::ENGLISH | flag::MEDICAL | flag::DRUG | flag::ABBREV)
                                && first.shape != Shape::Initial);
                        // A field name that is an ordinary word ("First: Check labs"), or a
                        // JSON key (`"name": "Blood Pressure"`), names a person only when the
                        // name fills the field.
                        let json = quote_len(&b[toks[cue_end].end..]) > 0;
                        let fills = !(key || json) || field_ends(b, toks[last].end);
                        // A key that is only `"name"` names tools, tests and drugs as often as
                        // people: an English word there (`"name": "Search"`) needs to be a
                        // frequent name as well.
                        let bare_name_key = json
                            && cue_end == i
                            && lower == "name"
                            && t.start > 0
                            && quote_len(&b[t.start - 1..]) == 1;
                        let evidence = evidence
                            && !(bare_name_key
                                && first.has(flag::ENGLISH)
                                && !first.has(flag::GIVEN_TOP | flag::SURNAME_COMMON));
                        if fills
                            && ((strong && evidence)
                                || (!strong
                                    && first.has(flag::GIVEN | flag::SURNAME)
                                    && !first.has(flag::ENGLISH)
                                    && first.is_capitalized()))
                        {
                            let last = if strong { comma_given(text, tk, last) } else { last };
                            out.push(span(first.start, toks, last, b, 0.85, "name.cue"));
                            i = last + 1;
                            continue;
                        }
                    }
                }
            }
        }
        // 2b. Reported speech: the name after "says" or "said" that follows the words quoted
        // ('…in that direction," says Bergqvist.', "I'm so jealous! said Maslin to Antonio").
        if matches!(lower, "says" | "said" | "asks" | "asked" | "replies" | "replied")
            && after_quote(b, t.start)
        {
            if let Some(n) = toks.get(i + 1) {
                // Not a word of the note ('"Better," said Patient').
                let plain = unknown_proper(n)
                    || (n.has(flag::GIVEN | flag::SURNAME)
                        && !n.has(flag::ENGLISH | flag::MEDICAL | NEVER | flag::TITLE));
                if n.shape == Shape::Cap && &text[t.end..n.start] == " " && plain {
                    if let Some(last) = name_run(text, tk, i + 1, false, dict) {
                        out.push(span(n.start, toks, last, b, 0.8, "name.speech"));
                        i = last + 1;
                        continue;
                    }
                }
            }
        }
        // 3. A given name leading a name.
        if t.has(flag::GIVEN)
            && (t.is_capitalized() || (t.shape == Shape::Upper && t.end - t.start >= 3))
            && !t.has(NEVER)
            && !after_place_prefix(tk, i)
            && !(t.has(flag::ABBREV) && t.shape == Shape::Upper)
        {
            if let Some((last, score)) = given_lead(text, tk, i, dict) {
                out.push(span(t.start, toks, last, b, score, "name.dict"));
                i = csv_cells(b, toks, i, last, out) + 1;
                continue;
            }
        }
        // 4. An initial and a surname: "J. Smith".
        if t.shape == Shape::Initial && b.get(t.end) == Some(&b'.') && i + 1 < toks.len() {
            let n = &toks[i + 1];
            if (n.shape == Shape::Cap
                || (n.shape == Shape::Upper
                    && n.caps_line
                    && (!n.has(flag::ENGLISH) || n.has(flag::SURNAME_COMMON))))
                && gap_ok(b, t.end, n.start, true)
                && surnameish(n)
                && !followed_by_eponym_head(text, tk, i + 1)
            {
                out.push(span(t.start, toks, i + 1, b, 0.85, "name.initial"));
                i += 2;
                continue;
            }
        }
        // 4b. An unlisted capitalised word with an initial: "Priya R.", "Xochitl M.".
        if t.is_capitalized()
            && t.shape == Shape::Cap
            && !t.has(
                flag::ENGLISH
                    | flag::MEDICAL
                    | flag::DRUG
                    | flag::ABBREV
                    | NEVER
                    | flag::FACILITY_WORD
                    | flag::TITLE
                    | flag::STATE_NAME,
            )
            && i + 1 < toks.len()
        {
            let n = &toks[i + 1];
            if n.shape == Shape::Initial
                && &text[t.end..n.start] == " "
                && !after_place_prefix(tk, i)
            {
                let dot = b.get(n.end) == Some(&b'.');
                // "Alvir D. Pušaver", "Juliusz A Kwiatkowski": a surname after the initial.
                let surname = middle_initial_surname(text, tk, i + 1);
                if dot || surname.is_some() {
                    let last = surname.unwrap_or(i + 1);
                    out.push(span(t.start, toks, last, b, 0.75, "name.initial"));
                    i = last + 1;
                    continue;
                }
            }
        }
        // 4c. Two or three unlisted capitalised words mid-sentence: "Perpetua Delacroix"; at a
        // sentence's start too when one of them is spelled with a Latin letter English never
        // uses ("Esat Jeknić", "Julcsa Kárpáthy", "Wisława Szczepańska's killers").
        if t.shape == Shape::Cap && unknown_proper(t) && !after_place_prefix(tk, i) {
            // (A possessive ends the run: "Wisława Szczepańska's killers".)
            let last = run_of_three(text, toks, i, |p, n| {
                n.shape == Shape::Cap && unknown_proper(n) && p.base_end == p.end
            });
            if last > i
                && (!t.sent_start || toks[i..=last].iter().any(|w| foreign_letters(text, w)))
                && !followed_by_eponym_head(text, tk, last)
                && !toks
                    .get(last + 1)
                    .is_some_and(|n| n.has(flag::FACILITY_WORD | flag::STREET_SUFFIX))
            {
                out.push(span(t.start, toks, last, b, 0.6, "name.proper"));
                i = last + 1;
                continue;
            }
        }
        // 4d. A sentence's subject that lives somewhere is a person: "Timotea lives on Via dei
        // Fiori", "Tomomi Nishiyama lives at 86036 Rua…". Not "Patient lives at home".
        if t.shape == Shape::Cap && t.sent_start && namelike(t) && !after_place_prefix(tk, i) {
            let last = run_of_three(text, toks, i, |_, n| {
                n.shape == Shape::Cap && namelike(n) || n.shape == Shape::Initial
            });
            let lives = toks.get(last + 1).is_some_and(|v| {
                &text[toks[last].end..v.start] == " " && matches!(tk.lower_of(v), "lives" | "lived")
            });
            if lives && toks[last].shape != Shape::Initial {
                out.push(span(t.start, toks, last, b, 0.7, "name.subject"));
                i = last + 1;
                continue;
            }
        }
        // 5. "Surname, Given".
        if t.has(flag::SURNAME)
            && t.is_capitalized()
            && !t.has(flag::ENGLISH | NEVER | flag::MEDICAL)
            && i + 1 < toks.len()
        {
            let n = &toks[i + 1];
            if &text[t.end..n.start] == ", "
                && n.has(flag::GIVEN)
                && n.is_capitalized()
                && !n.has(flag::ENGLISH | NEVER)
            {
                let last = extend_initial(text, toks, i + 1);
                out.push(span(t.start, toks, last, b, 0.85, "name.surname_first"));
                i = last + 1;
                continue;
            }
        }
        // 6. A name in apposition with an age: "NEXT STEP FOR IMOGEN HARGREAVES, A 93 YO WOMAN",
        // "Ottilie V., 45-year-old".
        if (t.shape == Shape::Cap || t.shape == Shape::Upper) && namelike(t) {
            let mut last = i;
            while last + 1 < toks.len() && last < i + 2 {
                let n = &toks[last + 1];
                let ok_shape = n.shape == t.shape || n.shape == Shape::Initial;
                if ok_shape
                    && (namelike(n) || n.shape == Shape::Initial)
                    && matches!(&text[toks[last].end..n.start], " " | ". " | "-")
                {
                    last += 1;
                } else {
                    break;
                }
            }
            let l = &toks[last];
            let end = if l.shape == Shape::Initial && b.get(l.end) == Some(&b'.') {
                l.end + 1
            } else {
                l.end
            };
            if (last > i || t.has(flag::GIVEN | flag::SURNAME)) && age_follows(text, end) {
                out.push(span(t.start, toks, last, b, 0.8, "name.appositive"));
                i = last + 1;
                continue;
            }
        }
        // 7. A speaker's label at a line's start spelled with a Latin letter English never uses
        // ("Koppány: \"Who are you?\"", "Halldór: What a wife."); field names of clinical notes
        // are English or abbreviations ("Plan:", "Neuro:").
        if t.shape == Shape::Cap
            && unknown_proper(t)
            && t.base_end == t.end
            && b.get(t.end) == Some(&b':')
            && matches!(b.get(t.end + 1), Some(b' ' | b'"'))
            && b[..t.start].iter().rev().take_while(|&&c| c != b'\n').all(|&c| c == b' ')
            && foreign_letters(text, t)
        {
            out.push(span(t.start, toks, i, b, 0.7, "name.speaker"));
        }
        i += 1;
    }
}

/// The last token of a run of up to three from `i`, one space apart, each next one `n` after
/// `p` accepted by `ok(p, n)`.
fn run_of_three(text: &str, toks: &[Tok], i: usize, ok: impl Fn(&Tok, &Tok) -> bool) -> usize {
    let mut last = i;
    while last + 1 < toks.len() && last < i + 2 {
        let (p, n) = (&toks[last], &toks[last + 1]);
        if &text[p.end..n.start] != " " || !ok(p, n) {
            break;
        }
        last += 1;
    }
    last
}

/// Whether a word holds a Latin letter outside ASCII: one with a diacritic ("ć", "á", "ễ") or
/// one English lacks ("ł", "ø", "ð").
fn foreign_letters(text: &str, t: &Tok) -> bool {
    let w = &text[t.start..t.end];
    !w.is_ascii()
        && w.chars().any(|c| {
            (('\u{c0}'..='\u{24f}').contains(&c) && c != '\u{d7}' && c != '\u{f7}')
                || ('\u{1e00}'..='\u{1eff}').contains(&c)
        })
}

/// Whether the text before `pos` closes a quotation: a closing quote after the quotation's
/// last stop ('…direction," says'), or a `!` or `?` ("So jealous! said").
fn after_quote(b: &[u8], pos: usize) -> bool {
    let head = &b[..pos];
    let head = head.strip_suffix(b" ").unwrap_or(head);
    let quoted = head.strip_suffix(b"\"").or_else(|| head.strip_suffix("\u{201d}".as_bytes()));
    match quoted {
        Some(q) => matches!(q.last(), Some(b',' | b'.' | b'!' | b'?')),
        None => matches!(head.last(), Some(b'!' | b'?')),
    }
}

/// A word that may be part of a name: listed as a name, or no known word at all.
fn namelike(t: &Tok) -> bool {
    t.end - t.start >= 2
        && (unknown_proper(t)
            || (t.has(flag::GIVEN | flag::SURNAME)
                && !t.has(flag::ENGLISH | flag::MEDICAL | flag::ABBREV | NEVER | flag::TITLE)))
}

/// Whether an age follows at `pos`: ", a 93 yo", ", 45-year-old", ", an 81 y/o".
fn age_follows(text: &str, pos: usize) -> bool {
    let Some(rest) = text.get(pos..).and_then(|r| r.strip_prefix(", ")) else {
        return false;
    };
    let b = rest.as_bytes();
    let mut k = 0;
    if b.len() > 2 && b[0].eq_ignore_ascii_case(&b'a') {
        if b[1] == b' ' {
            k = 2;
        } else if b[1].eq_ignore_ascii_case(&b'n') && b[2] == b' ' {
            k = 3;
        }
    }
    let digits = b[k..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) {
        return false;
    }
    k += digits;
    while k < b.len() && matches!(b[k], b' ' | b'-') {
        k += 1;
    }
    let tail = &b[k..];
    [&b"yo"[..], b"y/o", b"y.o", b"year", b"yr", b"y "]
        .iter()
        .any(|p| tail.len() >= p.len() && tail[..p.len()].eq_ignore_ascii_case(p))
}

/// "Patient: Hargreaves, Emeka": after a strong cue, a surname, a comma and one more
/// capitalised word that ends the name.
fn comma_given(text: &str, tk: &Tokens, last: usize) -> usize {
    let toks = &tk.toks;
    let (Some(l), Some(n)) = (toks.get(last), toks.get(last + 1)) else { return last };
    let plain = !n.has(
        flag::ENGLISH | flag::MEDICAL | flag::ABBREV | NEVER | flag::FACILITY_WORD | flag::TITLE,
    ) || n.has(flag::GIVEN);
    // The name ends there: what follows is not another capitalised word on the same phrase.
    // In capitals every word is capitalised: there a word the vocabularies know ends it too
    // ("SMITH, JOHN SEEN TODAY").
    let caps = l.shape == Shape::Upper && n.shape == Shape::Upper;
    let ends = toks.get(last + 2).is_none_or(|m| {
        !m.is_capitalized()
            || text[n.end..m.start].len() > 1
            || (caps
                && (m.has(flag::ENGLISH | flag::MEDICAL) || !m.has(flag::GIVEN | flag::SURNAME)))
    });
    if &text[l.end..n.start] == ", "
        && (n.is_capitalized() || caps)
        && n.shape != Shape::Initial
        && plain
        && ends
    {
        extend_initial(text, toks, last + 1)
    } else {
        last
    }
}

fn strong_next(toks: &[Tok], j: usize) -> bool {
    toks.get(j).is_some_and(|n| n.has(flag::GIVEN | flag::SURNAME))
}

/// Whether the cue phrase starting at token `i` matches; returns its last token, its strength
/// and whether it is a cue only as a label or key ([`Phrase::name_key`](super::dict::Phrase)).
fn cue_at(tk: &Tokens, i: usize, dict: &Dict) -> Option<(usize, bool, bool)> {
    let toks = &tk.toks;
    let mut key = String::new();
    let mut best = None;
    for (k, t) in toks.iter().enumerate().take((i + 3).min(toks.len())).skip(i) {
        if k > i {
            if !t.has(flag::PHRASE_CONT) {
                break;
            }
            key.push(' ');
        }
        key.push_str(tk.lower_of(t));
        if let Some(p) = dict.phrase(&key) {
            if let Some(strong) = p.name_cue {
                best = Some((k, strong, p.name_key));
            }
        }
    }
    best
}

/// The last token of a run of name tokens starting at `j`, if `j` starts one.
fn name_run(
    text: &str,
    tk: &Tokens,
    j: usize,
    after_strong_title: bool,
    _dict: &Dict,
) -> Option<usize> {
    let toks = &tk.toks;
    let b = text.as_bytes();
    let first = toks.get(j)?;
    if !(first.is_capitalized()
        || first.shape == Shape::Initial
        || (after_strong_title && first.shape == Shape::Upper))
    {
        return None;
    }
    if first.has(NEVER | flag::TITLE)
        || (first.has(flag::ABBREV)
            && first.shape == Shape::Upper
            && !first.has(flag::GIVEN | flag::SURNAME))
    {
        return None;
    }
    if !after_strong_title
        && first.has(flag::FACILITY_WORD | flag::EPONYM_HEAD)
        && !first.has(flag::GIVEN | flag::SURNAME)
    {
        return None;
    }
    let mut last = j;
    let mut k = j + 1;
    while k < toks.len() && k < j + 4 {
        let n = &toks[k];
        let prev = &toks[k - 1];
        if !gap_ok(b, prev.end, n.start, prev.shape == Shape::Initial)
            || b[prev.end..n.start].contains(&b',')
        {
            break;
        }
        let capsish = n.is_capitalized()
            || n.shape == Shape::Initial
            || (first.shape == Shape::Upper && n.shape == Shape::Upper);
        if !capsish
            || (n.shape != Shape::Initial
                && n.has(NEVER | flag::FACILITY_WORD | flag::STREET_SUFFIX | flag::EPONYM_HEAD))
        {
            break;
        }
        if n.shape != Shape::Initial
            && n.has(flag::ENGLISH | flag::MEDICAL | flag::ABBREV)
            && !n.has(flag::SURNAME | flag::GIVEN)
        {
            break;
        }
        if prev.base_end != prev.end {
            break; // a possessive ends the name
        }
        last = k;
        k += 1;
    }
    if followed_by_eponym_head(text, tk, last) && !after_strong_title {
        return None;
    }
    Some(last)
}

/// A given name at `i`: returns the last token of the name and a score.
fn given_lead(text: &str, tk: &Tokens, i: usize, _dict: &Dict) -> Option<(usize, f32)> {
    let toks = &tk.toks;
    let b = text.as_bytes();
    let t = &toks[i];
    let ambiguous = (t.has(
        flag::ENGLISH
            | flag::MEDICAL
            | flag::DRUG
            | flag::FACILITY_WORD
            | flag::STREET_SUFFIX
            | flag::STATE_NAME,
    ) && !t.has(flag::GIVEN_TOP))
        || (t.has(flag::ABBREV) && t.caps_line);
    if let Some(n) = toks.get(i + 1) {
        let gap = &text[t.end..n.start];
        // "Kate M Begum": a given name, an initial without its dot and a surname.
        if n.shape == Shape::Initial && gap == " " && b.get(n.end) != Some(&b'.') {
            if let Some(last) = middle_initial_surname(text, tk, i + 1) {
                if !ambiguous || t.has(flag::GIVEN_COMMON) {
                    return Some((last, 0.9));
                }
            }
        }
        // "Anna S." — a given name and an initial with its dot.
        if n.shape == Shape::Initial && gap == " " && b.get(n.end) == Some(&b'.') {
            let last = match toks.get(i + 2) {
                Some(s)
                    if s.is_capitalized()
                        && surnameish(s)
                        && gap_ok(b, n.end, s.start, true)
                        && !followed_by_eponym_head(text, tk, i + 2) =>
                {
                    i + 2
                }
                _ => i + 1,
            };
            if !ambiguous || last == i + 2 || t.has(flag::GIVEN_COMMON) {
                return Some((last, 0.9));
            }
        }
        // "Mary Johnson", "MARY JOHNSON", "Mary Ann Smith-Jones".
        if (gap == " " || gap == "-")
            && (n.is_capitalized() || (n.shape == Shape::Upper && t.shape == Shape::Upper))
            && (t.shape == n.shape || t.shape == Shape::Cap)
            && !n.has(NEVER | flag::FACILITY_WORD | flag::STREET_SUFFIX | flag::EPONYM_HEAD)
            && t.base_end == t.end
        {
            let n_name = n.has(flag::SURNAME | flag::GIVEN);
            let n_plain = !n.has(flag::ENGLISH | flag::MEDICAL | flag::DRUG | flag::ABBREV);
            let ok = if ambiguous {
                n.has(flag::SURNAME) && (n_plain || n.has(flag::SURNAME_COMMON))
            } else {
                (n_name && !n.has(flag::ABBREV)) || n_plain
            };
            let caps_ok =
                !(t.caps_line || t.shape == Shape::Upper) || (n_name && !n.has(flag::ABBREV));
            if ok && caps_ok && !followed_by_eponym_head(text, tk, i + 1) {
                let mut last = i + 1;
                // A third part: "Mary Ann Smith", "John A. Smith"
                if let Some(m) = toks.get(i + 2) {
                    if (gap_ok(b, toks[i + 1].end, m.start, toks[i + 1].shape == Shape::Initial))
                        && m.is_capitalized()
                        && m.has(flag::SURNAME)
                        && !m.has(flag::ENGLISH | NEVER | flag::FACILITY_WORD | flag::MEDICAL)
                        && toks[i + 1].base_end == toks[i + 1].end
                    {
                        last = i + 2;
                    }
                }
                return Some((extend_initial(text, toks, last), 0.9));
            }
        }
    }
    // A given name alone: only when it is no ordinary word.
    if t.is_capitalized()
        && !ambiguous
        && !t.has(flag::ABBREV)
        && !followed_by_eponym_head(text, tk, i)
        && (t.end - t.start) >= 3
    {
        let score = if t.caps_line { 0.55 } else { 0.65 };
        if t.caps_line && !t.has(flag::GIVEN_COMMON) {
            return None;
        }
        return Some((i, score));
    }
    None
}

/// The surname after a middle initial at `k` ("Juliusz A Kwiatkowski", "Alvir D. Pušaver"): a
/// capitalised word that is a surname or no other word, on the same phrase, that no eponym's
/// head follows. Without its dot the initial must not be the pronoun `I`.
fn middle_initial_surname(text: &str, tk: &Tokens, k: usize) -> Option<usize> {
    let toks = &tk.toks;
    let b = text.as_bytes();
    let n = toks.get(k)?;
    let s = toks.get(k + 1)?;
    let dot = b.get(n.end) == Some(&b'.');
    if n.shape != Shape::Initial || (!dot && &text[n.start..n.end] == "I") {
        return None;
    }
    let gap = &text[n.end..s.start];
    let plain =
        (s.has(flag::SURNAME) && !s.has(flag::ENGLISH | flag::MEDICAL)) || unknown_proper(s);
    (s.shape == Shape::Cap
        && (gap == " " || (dot && gap == ". "))
        && plain
        && surnameish(s)
        && !followed_by_eponym_head(text, tk, k + 1))
    .then_some(k + 1)
}

/// Extends past a trailing initial with its dot ("Smith, John A.").
fn extend_initial(text: &str, toks: &[Tok], last: usize) -> usize {
    let b = text.as_bytes();
    if let Some(n) = toks.get(last + 1) {
        if n.shape == Shape::Initial
            && &text[toks[last].end..n.start] == " "
            && b.get(n.end) == Some(&b'.')
        {
            return last + 1;
        }
    }
    last
}

/// A capitalised word no list knows as anything but possibly a name.
fn unknown_proper(t: &Tok) -> bool {
    !t.has(
        flag::ENGLISH
            | flag::MEDICAL
            | flag::DRUG
            | flag::ABBREV
            | NEVER
            | flag::FACILITY_WORD
            | flag::TITLE
            | flag::STATE_NAME
            | flag::PHRASE_START
            | flag::EPONYM_HEAD
            | flag::STREET_SUFFIX,
    )
}

fn surnameish(t: &Tok) -> bool {
    !t.has(NEVER | flag::MEDICAL | flag::FACILITY_WORD | flag::ABBREV)
        && (t.has(flag::SURNAME) || !t.has(flag::ENGLISH | flag::DRUG))
}

fn after_place_prefix(tk: &Tokens, i: usize) -> bool {
    i > 0 && {
        let p = &tk.toks[i - 1];
        p.is_capitalized() && PLACE_PREFIX.contains(&tk.lower_of(p))
    }
}

fn followed_by_eponym_head(text: &str, tk: &Tokens, i: usize) -> bool {
    let t = &tk.toks[i];
    // Right after it, in the same phrase: "Gleason score", "Foley catheter", "Parkinson's
    // disease"; not "Smith; pupil 4 mm" nor "John Smith\nPupil: 3 mm".
    let joined = |n: &Tok| {
        let gap = &text.as_bytes()[t.end..n.start];
        !gap.is_empty() && gap.len() <= 2 && gap.iter().all(|c| matches!(c, b' ' | b'-'))
    };
    match tk.toks.get(i + 1) {
        Some(n) => {
            n.has(flag::EPONYM_HEAD) && joined(n)
                || (t.base_end != t.end && n.has(flag::MEDICAL | flag::EPONYM_HEAD) && joined(n))
        }
        None => false,
    }
}

/// The text between two tokens is something a name may span: a space, or a dot and space
/// after an initial; never a line break or other punctuation.
fn gap_ok(b: &[u8], from: usize, to: usize, allow_punct: bool) -> bool {
    let g = &b[from..to];
    if g.is_empty() || g.len() > 3 {
        return false;
    }
    g.iter().all(|&c| c == b' ' || (allow_punct && matches!(c, b'.' | b',' | b':')))
}

/// The text between a cue and the name after it: what [`gap_ok`] allows, or the layout of a
/// labelled field: a `:` or `=` followed by spaces or tabs and at most one line break
/// ("Last name:\n  Doe", "Name:     Doe"), a tab or one line break alone ("Name\tDoe"), or a
/// JSON key's separator, the key being the cue (`"last_name": "Doe"`, `"given":["Emeka"]`,
/// `'family': 'Doe'`, and `\"family\":\"Doe\"` in JSON quoted once more). A `key` cue (a
/// field name that is an ordinary word elsewhere) needs the `:` or `=`.
fn cue_gap_ok(b: &[u8], from: usize, to: usize, key: bool) -> bool {
    let g = &b[from..to];
    if g.len() > 16 {
        return false;
    }
    if !key && gap_ok(b, from, to, true) {
        return true;
    }
    let blanks = |g: &[u8], mut k: usize| {
        while g.get(k).is_some_and(|&c| c == b' ' || c == b'\t') {
            k += 1;
        }
        k
    };
    // The key's closing quote, then the `:` ("Name :" has a space before it).
    let quote = quote_len(g);
    let mut k = blanks(g, quote);
    let colon = matches!(g.get(k), Some(b':' | b'='));
    if colon {
        k += 1;
    } else if quote > 0 || key {
        return false;
    } else {
        k = 0;
    }
    let ws = k;
    let mut breaks = 0;
    while let Some(&c) = g.get(k).filter(|&&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')) {
        breaks += usize::from(c == b'\n');
        k += 1;
    }
    // Without a `:`, only a tab or a line break marks a field ("Name\tDoe"); spaces alone were
    // judged by `gap_ok`.
    if breaks > 1 || (!colon && !g[ws..k].iter().any(|&c| c == b'\t' || c == b'\n')) {
        return false;
    }
    // The value's opening quote (after a JSON key, or a quoted value after a label).
    if quote > 0 || k < g.len() {
        if g.get(k) == Some(&b'[') {
            k = blanks(g, k + 1);
        }
        let q = quote_len(&g[k.min(g.len())..]);
        if q == 0 {
            return false;
        }
        k += q;
    }
    k == g.len()
}

/// Whether a field's value ends at `pos`: a closing quote, a separator of fields (`,` `;` `}`
/// `]`, a tab, a line break) or the end of the text.
fn field_ends(b: &[u8], pos: usize) -> bool {
    let pos = if b.get(pos) == Some(&b'.') { pos + 1 } else { pos };
    b.get(pos..).is_none_or(|r| {
        quote_len(r) > 0
            || matches!(r.first(), None | Some(b',' | b';' | b'}' | b']' | b'\t' | b'\r' | b'\n'))
    })
}

/// A given name that fills a cell of a CSV or TSV row ("Jane,Doe,92", "Doe\tJane\t92"): a cell
/// beside it that holds one capitalised surname is a name too, each its own finding so that
/// the row keeps its columns. Returns the last token taken.
fn csv_cells(b: &[u8], toks: &[Tok], i: usize, last: usize, out: &mut Vec<Finding>) -> usize {
    // The cell separator, read around a quoted or bare cell.
    let sep_after = |pos: usize| {
        let p = pos + quote_len(&b[pos.min(b.len())..]);
        match b.get(p) {
            Some(&c @ (b',' | b'\t')) => Some(Some((c, p))),
            None | Some(b'\r' | b'\n') => Some(None),
            _ => None,
        }
    };
    let sep_before = |pos: usize| {
        let p = if pos > 0 && matches!(b[pos - 1], b'"' | b'\'') { pos - 1 } else { pos };
        match p.checked_sub(1).map(|q| (b[q], q)) {
            Some((c @ (b',' | b'\t'), q)) => Some(Some((c, q))),
            None | Some((b'\n', _)) => Some(None),
            _ => None,
        }
    };
    // A common surname that is also an eponym ("Smith") still counts beside a given name.
    let surname_cell = |t: &Tok| {
        t.shape == Shape::Cap
            && t.end - t.start >= 2
            && t.has(flag::SURNAME)
            && !t.has(NEVER | flag::ABBREV | flag::FACILITY_WORD | flag::TITLE | flag::STATE_NAME)
            && (t.has(flag::SURNAME_COMMON) || !t.has(flag::MEDICAL | flag::DRUG))
    };
    let (Some(before), Some(after)) = (sep_before(toks[i].start), sep_after(toks[last].end)) else {
        return last;
    };
    let sep = match (before, after) {
        (Some((a, _)), Some((z, _))) if a != z => return last,
        (Some((c, _)), _) | (_, Some((c, _))) => c,
        (None, None) => return last,
    };
    let mut taken = last;
    // The cell before: "Doe,Jane".
    if let (Some((_, q)), Some(p)) = (before, i.checked_sub(1).map(|k| &toks[k])) {
        let end_ok = p.end == q || (p.end + 1 == q && quote_len(&b[p.end..]) == 1);
        if end_ok
            && surname_cell(p)
            && sep_before(p.start).is_some_and(|s| s.is_none_or(|(c, _)| c == sep))
        {
            out.push(Finding::new(p.start, p.end, Category::Name, 0.7, "name.csv"));
        }
    }
    // The cell after: "Jane,Doe".
    if let (Some((_, q)), Some(n)) = (after, toks.get(last + 1)) {
        let start_ok = n.start == q + 1 || (n.start == q + 2 && quote_len(&b[q + 1..]) == 1);
        if start_ok
            && surname_cell(n)
            && sep_after(n.end).is_some_and(|s| s.is_none_or(|(c, _)| c == sep))
        {
            out.push(Finding::new(n.start, n.end, Category::Name, 0.7, "name.csv"));
            taken = last + 1;
        }
    }
    taken
}

/// A finding from token `start_byte` to the end of token `last` (with an initial's dot, without
/// a possessive).
fn span(
    start_byte: usize,
    toks: &[Tok],
    last: usize,
    b: &[u8],
    score: f32,
    rec: &'static str,
) -> Finding {
    let l = &toks[last];
    let mut end = l.base_end;
    if l.shape == Shape::Initial && b.get(l.end) == Some(&b'.') {
        end = l.end + 1;
    }
    Finding::new(start_byte, end, Category::Name, score, rec)
}
