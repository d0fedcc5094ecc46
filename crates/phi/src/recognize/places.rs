//! Places: cities, counties, facilities and health systems (listed or not), saint/mount names.
//! Street addresses and ZIP codes are format recognizers in `patterns`.

use super::dict::{flag, Dict};
use super::tokens::{Shape, Tok, Tokens};
use crate::{Category, Finding};

/// Facility words that say nothing on their own ("Medical Center" alone is no place).
const GENERIC: &[&str] = &[
    "hospital",
    "hospitals",
    "clinic",
    "clinics",
    "medical",
    "center",
    "centre",
    "health",
    "healthcare",
    "care",
    "emergency",
    "department",
    "general",
    "community",
    "regional",
    "urgent",
    "nursing",
    "home",
    "unit",
    "services",
    "system",
    "group",
    "the",
    "of",
    "and",
    "for",
    "er",
    "ed",
    "icu",
    "university",
    "county",
    "rehab",
    "rehabilitation",
    "facility",
    "institute",
    "medicine",
    "surgery",
    "surgical",
    "pharmacy",
    "laboratory",
    "imaging",
    "radiology",
    "our",
    "a",
    "cardiology",
    "oncology",
    "orthopedics",
    "pediatrics",
    "dialysis",
    "physicians",
    "associates",
    "practice",
    "labs",
    "outpatient",
    "inpatient",
    "primary",
    "specialty",
    "behavioral",
    "mental",
    "veterans",
];
const PREFIXES: &[&str] = &["st", "saint", "mt", "mount", "ste"];
const CONNECTORS: &[&str] = &["of", "the", "and", "for", "at", "on"];

pub(crate) fn find(text: &str, tk: &Tokens, dict: &Dict, out: &mut Vec<Finding>) {
    let toks = &tk.toks;
    let b = text.as_bytes();
    let mut key = String::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        // Saint / Mount names: "St. Vincent's", "Mt. Sinai", "Saint Francis Medical Center".
        if t.is_capitalized()
            && PREFIXES.contains(&tk.lower_of(t))
            && !prev_is_street_word(tk, i, b)
        {
            if let Some(n) = toks.get(i + 1) {
                let gap = &text[t.end..n.start];
                if (gap == ". " || gap == " " || gap == ".")
                    && n.is_capitalized()
                    && !n.has(flag::STOP | flag::MONTH)
                {
                    let last = extend_caps(tk, i + 1, b, true);
                    let last = extend_facility(tk, last, b);
                    out.push(
                        Finding::new(
                            t.start,
                            toks[last].end,
                            Category::Location,
                            0.85,
                            "location.saint",
                        )
                        .with_subtype("facility"),
                    );
                    i = last + 1;
                    continue;
                }
            }
        }
        // Listed phrases: cities, facilities, counties.
        if t.has(flag::PHRASE_START) {
            if let Some((last, found)) = phrase_at(text, tk, i, dict, &mut key) {
                out.push(found);
                i = last + 1;
                continue;
            }
        }
        // "X County"
        if t.is_capitalized() && !t.has(flag::STOP) {
            if let Some(n) = toks.get(i + 1) {
                let nl = tk.lower_of(n);
                if (nl == "county" || nl == "parish")
                    && n.is_capitalized()
                    && &text[t.end..n.start] == " "
                {
                    out.push(
                        Finding::new(t.start, n.end, Category::Location, 0.85, "location.county")
                            .with_subtype("county"),
                    );
                    i += 2;
                    continue;
                }
            }
        }
        // Facility runs around a head word: "Elm Clinic", "Springfield General Hospital".
        if t.has(flag::FACILITY_WORD) && (t.is_capitalized() || t.shape == Shape::Upper) {
            if let Some((s, e)) = facility_run(text, tk, i, dict) {
                let end = state_after_end(text, tk, e, dict).unwrap_or(toks[e].end);
                out.push(
                    Finding::new(toks[s].start, end, Category::Location, 0.85, "location.facility")
                        .with_subtype("facility"),
                );
                i = e + 1;
                continue;
            }
        }
        i += 1;
    }
    addresses(text, tk, out);
    address_blocks(text, dict, out);
}

/// Street words written before the street's name in other countries' addresses ("Rue de la
/// Paix 12", "12 rue de la Paix", "ul. Północna 73", "Rua do Arenque 1634").
const STREET_BEFORE: &[&str] = &[
    "rue", "rua", "avenida", "avda", "calle", "carrer", "ulica", "ul", "piazza", "praça", "praca",
    "largo", "travessa", "corso", "chemin", "strada", "calea", "aleja", "rambla", "paseo",
    "camino",
];
/// Street words that end a street's name, joined to it ("Søndergade 52", "Loorenstrasse 149",
/// "Kiannonkatu 98") or after it ("Augsburger Strasse 12").
const STREET_AFTER: &[&str] = &[
    "strasse", "straße", "str.", "gasse", "weg", "gade", "vej", "gatan", "vägen", "väg", "gata",
    "katu", "tie", "veien", "vegen", "gate", "straat", "allee", "platz", "utca",
];
/// Words that end so and are no street ("Fire Brigade 5").
const NOT_STREETS: &[&str] =
    &["brigade", "renegade", "necktie", "tailgate", "delegate", "aggregate"];
/// Small words inside a street's name ("Rua do Arenque", "Rue de la Paix").
const STREET_JOINS: &[&str] = &[
    "de", "da", "do", "das", "dos", "del", "della", "di", "la", "le", "les", "des", "du", "van",
    "von", "der", "den", "el", "dei", "delle", "degli",
];

/// Words the English, medical or drug word lists know: no foreign street's name.
const VOCABULARY: u32 = flag::ENGLISH | flag::MEDICAL | flag::ABBREV | flag::DRUG | flag::STOP;

/// A house number: digits, maybe one letter ("52", "12B").
fn house_number(tk: &Tokens, t: &Tok) -> bool {
    if t.shape == Shape::Num {
        return t.end - t.start <= 6;
    }
    let w = tk.lower_of(t).as_bytes();
    (1..=6).contains(&w.len())
        && w[0].is_ascii_digit()
        && w.iter().filter(|c| c.is_ascii_alphabetic()).count() <= 1
        && (t.shape == Shape::Num
            || (t.shape == Shape::Mixed && w[w.len() - 1].is_ascii_alphabetic()))
}

/// Address parts that are not street-suffix addresses: streets of other countries, unit
/// lines ("Apt. 409", "Suite 824") and US military addresses ("PSC 6293, Box 8158",
/// "APO AP 04336", "USCGC Healy FPO AE 44941").
fn addresses(text: &str, tk: &Tokens, out: &mut Vec<Finding>) {
    let toks = &tk.toks;
    let gap = |a: &Tok, b: &Tok| &text[a.end..b.start];
    let push = |out: &mut Vec<Finding>, s: usize, e: usize, score: f32, how: &'static str| {
        out.push(Finding::new(s, e, Category::Location, score, how).with_subtype("street"));
    };
    let digits = |t: &Tok| matches!(t.shape, Shape::Num | Shape::Mixed);
    let len = |t: &Tok| (t.lo.1 - t.lo.0) as usize;
    // The first word after the current one that holds a digit (moved on as the walk needs).
    let mut next_digits = 0;
    for (i, t) in toks.iter().enumerate() {
        let next = toks.get(i + 1);
        // Every rule here needs a number just after, or is "APO AE", or is a street word
        // written before a name (two to eight letters, a known first letter) with a number
        // before it or within the next few words. Most words are none of these and are passed
        // over on their shape and length alone (clinical notes have a number near most words).
        // "ZIP: 394 13", "my zip code is 610", "postcode 7412 SL"
        if matches!(len(t), 3..=8) && matches!(tk.lower.as_bytes()[t.lo.0 as usize], b'z' | b'p') {
            if let Some((s, e)) = postal_after_cue(text, tk, i) {
                out.push(
                    Finding::new(s, e, Category::Location, 0.9, "address.postal_cue")
                        .with_subtype("zip"),
                );
                continue;
            }
        }
        let prev_number = i > 0 && digits(&toks[i - 1]);
        let military = len(t) == 3 && next.is_some_and(|n| len(n) == 2);
        let before_word = (2..=8).contains(&len(t))
            && b"racuplts".contains(&tk.lower.as_bytes()[t.lo.0 as usize]);
        if !(next.is_some_and(digits) || military || before_word) {
            continue;
        }
        if next_digits <= i {
            next_digits = i + 1;
            while next_digits < toks.len() && !digits(&toks[next_digits]) {
                next_digits += 1;
            }
        }
        let number_soon = next_digits < toks.len() && next_digits <= i + 6;
        let number_next = next.is_some_and(|n| {
            digits(n)
                && house_number(tk, n)
                && matches!(gap(t, n), " " | ". " | "." | " #" | ". #" | "#")
        });
        let w = tk.lower_of(t);
        if number_next {
            let n = &toks[i + 1];
            match w {
                "apt" | "apartment" | "suite" | "ste" => {
                    // A suite in an address: at a line's or a part's start, or after a house
                    // number or a street word; not a clinical room ("Endoscopy Suite 3", "IR
                    // Suite 2"). Never an appointment ("apt 3 weeks").
                    // (Read on the text before it, so that a placeholder there, `[NAME] Suite
                    // 12`, reads as the name it replaced did.)
                    let before = text[..t.start].trim_end_matches([' ', '\t']);
                    let after =
                        i.checked_sub(1).map(|p| &toks[p]).filter(|p| p.end == before.len());
                    let placed = matches!(w, "apt" | "apartment")
                        || before.is_empty()
                        || before.ends_with([',', '\n', ';', '>', '|'])
                        || after.is_some_and(|p| digits(p) || p.has(flag::STREET_SUFFIX));
                    let rest = text[n.end..].trim_start();
                    let when =
                        ["week", "wk", "day", "month", "mo", "year", "yr", "hour", "hr", "min"]
                            .iter()
                            .any(|u| {
                                rest.get(..u.len()).is_some_and(|r| r.eq_ignore_ascii_case(u))
                            });
                    if placed && !when {
                        push(out, t.start, n.end, 0.8, "address.unit");
                    }
                    continue;
                }
                "psc" | "cmr" | "unit" if t.shape == Shape::Upper || t.is_capitalized() => {
                    // "PSC 6293, Box 8158"
                    let (b, m) = (toks.get(i + 2), toks.get(i + 3));
                    if let (Some(b), Some(m)) = (b, m) {
                        if tk.lower_of(b) == "box"
                            && matches!(gap(n, b), " " | ", " | ",")
                            && gap(b, m) == " "
                            && house_number(tk, m)
                        {
                            push(out, t.start, m.end, 0.85, "address.military");
                        }
                    }
                    continue;
                }
                _ => {}
            }
            // "Søndergade 52", "Augsburger Strasse 12": never a word the English or medical
            // word lists know ("Temp 98.6", "Dose 2").
            if (t.is_capitalized() || t.shape == Shape::Upper || t.shape == Shape::Lower)
                && !t.has(VOCABULARY)
            {
                let joined =
                    STREET_AFTER.iter().find(|s| w.len() >= s.len() + 3 && w.ends_with(*s));
                if joined.is_some()
                    && t.is_capitalized()
                    && !NOT_STREETS.contains(&w)
                    && gap(t, n) == " "
                {
                    push(out, t.start, n.end, 0.8, "address.street_intl");
                    continue;
                }
                if STREET_AFTER.contains(&w) && gap(t, n) == " " && i > 0 {
                    let p = &toks[i - 1];
                    if p.is_capitalized() && gap(p, t) == " " && !p.has(flag::STOP) {
                        push(out, p.start, n.end, 0.8, "address.street_intl");
                        continue;
                    }
                }
            }
        }
        // "Rua do Arenque 1634", "ul. Północna 73", "106 Rue Ettatawer"
        // Capitalised, or after a house number ("12 rue de la Paix"), or "ul." as Polish has it.
        let maybe = before_word && (prev_number || number_soon);
        let numbered = prev_number && house_number(tk, &toks[i - 1]) && gap(&toks[i - 1], t) == " ";
        // "ul." as Polish writes it, never microlitres ("cells/uL", "500 uL IV").
        let ul = w == "ul" && text[t.end..].starts_with('.') && !text[..t.start].ends_with('/');
        if maybe
            && STREET_BEFORE.contains(&w)
            && (w != "ul" || ul)
            && (t.is_capitalized() || t.shape == Shape::Upper || ul || numbered)
        {
            let mut k = i;
            let mut last_name = None;
            while k + 1 < toks.len() && k < i + 4 {
                let n = &toks[k + 1];
                let g = gap(&toks[k], n);
                if !(g == " " || (k == i && g == ". ")) {
                    break;
                }
                if n.is_capitalized() || n.shape == Shape::Upper {
                    last_name = Some(k + 1);
                } else if !STREET_JOINS.contains(&tk.lower_of(n)) {
                    break;
                }
                k += 1;
            }
            let Some(last) = last_name else { continue };
            let before = i
                .checked_sub(1)
                .map(|p| &toks[p])
                .filter(|p| house_number(tk, p) && gap(p, t) == " ");
            let after = toks
                .get(last + 1)
                .filter(|n| house_number(tk, n) && matches!(gap(&toks[last], n), " " | ", "));
            match (before, after) {
                (_, Some(n)) => push(
                    out,
                    before.map_or(t.start, |p| p.start),
                    n.end,
                    0.8,
                    "address.street_intl",
                ),
                (Some(p), None) => push(out, p.start, toks[last].end, 0.8, "address.street_intl"),
                (None, None) => {}
            }
            continue;
        }
        // "APO AP 04336", "FPO AE", and the ship's name before it ("USCGC Healy")
        if matches!(w, "apo" | "fpo" | "dpo") {
            let Some(n) =
                next.filter(|n| matches!(tk.lower_of(n), "aa" | "ae" | "ap") && gap(t, n) == " ")
            else {
                continue;
            };
            let mut end = n.end;
            let rest = &text.as_bytes()[end..];
            let sp = rest.iter().take_while(|c| matches!(c, b' ' | b'\t')).count();
            let zip = rest[sp..].iter().take_while(|c| c.is_ascii_digit()).count();
            if sp > 0 && zip == 5 && rest.get(sp + zip).is_none_or(|c| !c.is_ascii_alphanumeric()) {
                end += sp + zip;
            }
            let mut start = t.start;
            for back in 1..=3 {
                let Some(p) = i.checked_sub(back).map(|p| &toks[p]) else { break };
                if matches!(tk.lower_of(p), "uss" | "usns" | "usnv" | "uscgc") {
                    let between = &text[p.end..t.start];
                    if between.bytes().filter(|&c| c == b'\n').count() <= 1 {
                        start = p.start;
                    }
                    break;
                }
            }
            push(out, start, end, 0.85, "address.military");
        }
    }
}

/// The postal code after a word that names one at token `i` ("ZIP: 394 13", "my zip code is
/// 610", "postal code 53-320").
fn postal_after_cue(text: &str, tk: &Tokens, i: usize) -> Option<(usize, usize)> {
    let toks = &tk.toks;
    let t = &toks[i];
    let code_next = toks
        .get(i + 1)
        .filter(|n| tk.lower_of(n) == "code" && matches!(&text[t.end..n.start], " " | "-" | "_"));
    let end = match tk.lower_of(t) {
        "zipcode" | "postcode" => t.end,
        "zip" => code_next.map_or(t.end, |n| n.end),
        "postal" | "post" => code_next?.end,
        _ => return None,
    };
    let mut rest = text[end..].trim_start_matches([' ', '\t']);
    rest = rest.strip_prefix([':', '=', '#']).unwrap_or(rest).trim_start_matches([' ', '\t']);
    for w in ["is ", "was ", "IS "] {
        rest = rest.strip_prefix(w).unwrap_or(rest);
    }
    let s = text.len() - rest.len();
    let n = postal_len(rest)?;
    Some((s, s + n))
}

fn prev_is_street_word(tk: &Tokens, i: usize, b: &[u8]) -> bool {
    // "Elm St." — "St" after a capitalised word on the same line is a street suffix.
    i > 0 && {
        let p = &tk.toks[i - 1];
        (p.is_capitalized() || p.shape == Shape::Num)
            && !p.has(flag::STOP | flag::LOC_CUE)
            && b[p.end..tk.toks[i].start].iter().all(|&c| c == b' ')
            // "VISITED ST. JOSEPH'S CLINIC": a possessive saint's name follows.
            && tk.toks.get(i + 1).is_none_or(|n| n.base_end == n.end)
    }
}

/// Extends a run of capitalised tokens from `j` (inclusive); returns the last index.
fn extend_caps(tk: &Tokens, j: usize, b: &[u8], allow_possessive: bool) -> usize {
    let toks = &tk.toks;
    let mut last = j;
    let mut k = j + 1;
    while k < toks.len() {
        let n = &toks[k];
        let gap = &b[toks[k - 1].end..n.start];
        if !(gap == b" " || gap == b"-")
            || toks[k - 1].base_end != toks[k - 1].end && !allow_possessive
        {
            break;
        }
        if !(n.is_capitalized() || n.shape == Shape::Upper)
            || n.has(flag::STOP | flag::MONTH | flag::WEEKDAY)
            // "St. Mary's Hospital BP 120/80": an abbreviation in capitals ends a mixed-case name.
            || (n.shape == Shape::Upper && toks[j].shape != Shape::Upper && !n.caps_line)
            || (n.has(flag::ABBREV) && !n.has(flag::FACILITY_WORD))
            // "ST. BRENDAN'S HOSPITAL OVERNIGHT": past the facility word, only more of them.
            || (toks[k - 1].has(flag::FACILITY_WORD) && !n.has(flag::FACILITY_WORD))
        {
            break;
        }
        last = k;
        k += 1;
    }
    last
}

/// Extends over following facility words ("... Hospital", "... Medical Center").
fn extend_facility(tk: &Tokens, last: usize, b: &[u8]) -> usize {
    let toks = &tk.toks;
    let mut last = last;
    while let Some(n) = toks.get(last + 1) {
        if b[toks[last].end..n.start] == *b" "
            && n.has(flag::FACILITY_WORD)
            && (n.is_capitalized() || n.shape == Shape::Upper)
        {
            last += 1;
        } else {
            break;
        }
    }
    last
}

/// The longest listed phrase at token `i`, if it should count here.
fn phrase_at(
    text: &str,
    tk: &Tokens,
    i: usize,
    dict: &Dict,
    key: &mut String,
) -> Option<(usize, Finding)> {
    let toks = &tk.toks;
    let b = text.as_bytes();
    let mut best: Option<(usize, super::dict::Phrase)> = None;
    key.clear();
    for k in i..(i + dict.max_phrase_tokens).min(toks.len()) {
        if k > i {
            if !toks[k].has(flag::PHRASE_CONT) {
                break;
            }
            let gap = &b[toks[k - 1].end..toks[k].start];
            if !(gap == b" " || gap == b". " || (gap == b"." && toks[k - 1].shape == Shape::Cap)) {
                break;
            }
            key.push(' ');
        }
        key.push_str(tk.lower_of(&toks[k]));
        if let Some(p) = dict.phrase(key) {
            if p.city_pop > 0 || p.facility || p.county {
                best = Some((k, p));
            }
        }
    }
    let (last, p) = best?;
    let t = &toks[i];
    let multi = last > i;
    let all_caps_shape = toks[i..=last].iter().all(|x| {
        x.is_capitalized() || matches!(x.shape, Shape::Upper | Shape::Initial | Shape::Mixed)
    });
    if !all_caps_shape {
        return None;
    }
    let single_ambiguous = !multi
        && (t.has(
            flag::ENGLISH
                | flag::MEDICAL
                | flag::DRUG
                | flag::ABBREV
                | flag::STOP
                | flag::MONTH
                | flag::WEEKDAY
                | flag::TITLE
                | flag::STATE_NAME,
        ));
    let cue = i > 0
        && toks[i - 1].has(flag::LOC_CUE)
        && b[toks[i - 1].end..t.start].iter().all(|&c| c == b' ');
    let state_after = state_follows(text, tk, last, dict);
    if p.facility
        && (!single_ambiguous || multi)
        && (t.shape != Shape::Upper || t.caps_line || t.end - t.start >= 3)
    {
        let last = extend_facility(tk, last, b);
        let end = state_after_end(text, tk, last, dict).unwrap_or(toks[last].end);
        return Some((
            last,
            Finding::new(t.start, end, Category::Location, 0.85, "location.facility_list")
                .with_subtype("facility"),
        ));
    }
    if p.city_pop > 0 {
        // "MS", "ICU" in mixed text are no places; "NYC" is.
        let upper_word =
            t.shape == Shape::Upper && !t.caps_line && (p.city_pop < 1_000_000 || single_ambiguous);
        let ok = if multi {
            !upper_word || state_after
        } else if single_ambiguous || upper_word {
            state_after
                || (cue
                    && !t.has(flag::STOP | flag::MONTH | flag::ABBREV | flag::TITLE)
                    && !upper_word
                    && p.city_pop >= 5000)
        } else if t.caps_line {
            p.city_pop >= 50_000 && !t.has(flag::GIVEN) || state_after || cue
        } else {
            p.city_pop >= 20_000 || state_after || (cue && p.city_pop >= 1000)
        };
        if ok && !followed_by_eponym(tk, last) {
            let mut end = toks[last].end;
            if let Some(se) = state_after_end(text, tk, last, dict) {
                end = se;
            }
            return Some((
                last,
                Finding::new(
                    t.start,
                    end,
                    Category::Location,
                    if multi || state_after { 0.85 } else { 0.7 },
                    "location.city",
                )
                .with_subtype("city"),
            ));
        }
    }
    None
}

/// "Framingham score", "Framingham Heart Study": a place name that names a study or a score.
fn followed_by_eponym(tk: &Tokens, i: usize) -> bool {
    let next = |k: usize| tk.toks.get(k);
    next(i + 1).is_some_and(|n| n.has(flag::EPONYM_HEAD))
        || (next(i + 1).is_some_and(|n| n.is_capitalized())
            && next(i + 2).is_some_and(|n| n.has(flag::EPONYM_HEAD) && n.is_capitalized()))
}

fn state_follows(text: &str, tk: &Tokens, last: usize, dict: &Dict) -> bool {
    state_after_end(text, tk, last, dict).is_some()
}

/// "Atlanta, GA" / "Rochester, Minnesota": the end of the state after a city.
fn state_after_end(text: &str, tk: &Tokens, last: usize, dict: &Dict) -> Option<usize> {
    let toks = &tk.toks;
    let n = toks.get(last + 1)?;
    let gap = &text[toks[last].end..n.start];
    if gap != ", " && gap != " " && gap != "," {
        return None;
    }
    let w = &text[n.start..n.end];
    if dict.is_state_abbr(w) {
        let after = text.as_bytes().get(n.end).copied();
        // "Detroit, MI" — but not "Paris, MD" in "seen by Paris, MD" (rare; accept).
        if after.is_none_or(|c| !c.is_ascii_alphanumeric()) {
            return Some(n.end);
        }
    }
    if n.has(flag::STATE_NAME) && n.is_capitalized() {
        return Some(n.end);
    }
    // Two-word states: "New York", "North Carolina".
    if let Some(m) = toks.get(last + 2) {
        let two = format!("{} {}", tk.lower_of(n), tk.lower_of(m));
        if matches!(
            two.as_str(),
            "new york"
                | "new jersey"
                | "new mexico"
                | "new hampshire"
                | "north carolina"
                | "south carolina"
                | "north dakota"
                | "south dakota"
                | "west virginia"
                | "rhode island"
        ) && n.is_capitalized()
        {
            return Some(m.end);
        }
    }
    None
}

/// Words that make a run of capitalised words a publication's or guideline's title, not a
/// facility ("ADA Standards of Care", "KDIGO Clinical Practice Guideline", "AHA Scientific
/// Statement").
const DOCUMENT_WORDS: &[&str] = &[
    "standards",
    "standard",
    "guideline",
    "guidelines",
    "statement",
    "recommendations",
    "consensus",
    "journal",
    "handbook",
    "manual",
    "textbook",
];

/// Facility heads that are first of all ordinary words of a note: weak in a text typed in
/// lower case.
const CASELESS_WEAK_HEADS: &[&str] = &[
    "lab",
    "labs",
    "care",
    "imaging",
    "rehab",
    "pharmacy",
    "therapy",
    "services",
    "practice",
    "associates",
    "partners",
    "group",
];

/// A run of capitalised tokens around the facility word at `h` that names a facility.
fn facility_run(text: &str, tk: &Tokens, h: usize, dict: &Dict) -> Option<(usize, usize)> {
    let toks = &tk.toks;
    let b = text.as_bytes();
    let caps_ok = |t: &Tok| {
        t.is_capitalized()
            || t.shape == Shape::Upper
            || (t.shape == Shape::Mixed && t.has(flag::PHRASE_START))
    };
    // Left.
    let mut s = h;
    while s > 0 {
        let p = &toks[s - 1];
        let gap = &b[p.end..toks[s].start];
        let pl = tk.lower_of(p);
        let gap_fine =
            gap == b" " || gap == b"-" || (gap == b". " && PREFIXES.contains(&pl)) || gap == b"'s ";
        if !gap_fine {
            break;
        }
        if caps_ok(p) && !p.has(flag::STOP | flag::MONTH | flag::WEEKDAY | flag::TITLE)
            || (p.shape == Shape::Upper && !p.has(flag::STOP))
        {
            s -= 1;
            if p.sent_start {
                break;
            }
        } else if CONNECTORS.contains(&pl)
            && s >= 2
            && caps_ok(&toks[s - 2])
            && p.shape == Shape::Lower
            && (pl == "of" || pl == "and" || pl == "the")
        {
            s -= 1;
        } else {
            break;
        }
    }
    // Don't start on a connector.
    while s < h && CONNECTORS.contains(&tk.lower_of(&toks[s])) {
        s += 1;
    }
    // Right: more facility words, "of X", places.
    let mut e = h;
    while e + 1 < toks.len() {
        let n = &toks[e + 1];
        let gap = &b[toks[e].end..n.start];
        if !(gap == b" " || gap == b"-") {
            break;
        }
        let nl = tk.lower_of(n);
        if caps_ok(n)
            && (n.has(flag::FACILITY_WORD | flag::PHRASE_START)
                || !n.has(flag::ENGLISH | flag::STOP | flag::MONTH | flag::WEEKDAY))
            && !n.has(flag::STOP)
        {
            e += 1;
        } else if (nl == "of" || nl == "for")
            && toks.get(e + 2).is_some_and(|x| caps_ok(x) && !x.has(flag::STOP))
        {
            e += 2;
        } else {
            break;
        }
    }
    if (s..=e).any(|k| DOCUMENT_WORDS.contains(&tk.lower_of(&toks[k]))) {
        return None;
    }
    // Must hold a strong head and something that is no generic word.
    let mut strong = false;
    let mut distinct = false;
    let mut key = String::new();
    for k in s..=e {
        let l = tk.lower_of(&toks[k]);
        let l = l.strip_suffix("'s").unwrap_or(l);
        if dict.phrase(l).is_some_and(|p| p.facility_head) {
            strong = true;
        }
        if k < e {
            key.clear();
            key.push_str(l);
            key.push(' ');
            key.push_str(tk.lower_of(&toks[k + 1]));
            if dict.phrase(&key).is_some_and(|p| p.facility_head) {
                strong = true;
            }
        }
        if !GENERIC.contains(&l) && !toks[k].has(flag::STOP) {
            distinct = true;
        }
    }
    // Weak heads ("Memorial", "Presbyterian", "Health") need two capitalised words.
    // In capitals, where case says nothing, one of them must be no common word either:
    // "WOUND CARE", "HOME HEALTH" are services, "GREENWOOD CARE" is a place.
    // So too in a text typed in lower case and read as capitalised, where a head that is
    // first of all an ordinary clinical word is only a weak one ("pt in bed 4 needs labs";
    // "coastal health clinic" keeps its strong head).
    let caseless = b[toks[h].start].is_ascii_lowercase();
    if caseless && CASELESS_WEAK_HEADS.contains(&tk.lower_of(&toks[h])) {
        strong = false;
    }
    let upper = toks[h].shape == Shape::Upper || caseless;
    // Typed in lower case, a surname that is also a word is no evidence ("needs").
    let named = if caseless {
        flag::GIVEN | flag::PROPER | flag::PHRASE_START
    } else {
        flag::GIVEN | flag::SURNAME | flag::PROPER | flag::PHRASE_START
    };
    let weak_ok = e > s
        && toks[h].is_capitalized()
        && (s..=e).any(|k| {
            let t = &toks[k];
            let common =
                t.has(flag::ENGLISH | flag::MEDICAL | flag::ABBREV | flag::DRUG) && !t.has(named);
            !(GENERIC.contains(&tk.lower_of(t)) || (upper && common))
        });
    if distinct && (strong || weak_ok) && e > s {
        Some((s, e))
    } else {
        None
    }
}

/// Countries as an address's last line names them: never PHI themselves, but what follows
/// ("Finland 80896") is the postal code and what comes before is the city.
const COUNTRIES: &[&str] = &[
    "argentina",
    "australia",
    "austria",
    "belgium",
    "brazil",
    "bulgaria",
    "canada",
    "chile",
    "china",
    "colombia",
    "croatia",
    "cyprus",
    "czech republic",
    "czechia",
    "denmark",
    "egypt",
    "england",
    "estonia",
    "finland",
    "france",
    "germany",
    "greece",
    "greenland",
    "hungary",
    "iceland",
    "india",
    "ireland",
    "israel",
    "italy",
    "japan",
    "latvia",
    "lithuania",
    "luxembourg",
    "mexico",
    "morocco",
    "netherlands",
    "new zealand",
    "norway",
    "peru",
    "philippines",
    "poland",
    "portugal",
    "romania",
    "scotland",
    "serbia",
    "slovakia",
    "slovenia",
    "south africa",
    "spain",
    "sweden",
    "switzerland",
    "tunisia",
    "turkey",
    "ukraine",
    "united kingdom",
    "united states",
    "uruguay",
    "usa",
    "uk",
    "wales",
];

/// Unit words that open an address's unit line ("Apt. 297", "Suite 464").
const UNIT_WORDS: &[&str] = &["apt", "apartment", "suite", "ste", "unit", "flat"];

/// Small words inside a city's name ("Torroella de Montgrí", "Črni Vrh nad Idrijo").
const CITY_JOINS: &[&str] = &[
    "de", "del", "la", "le", "les", "do", "da", "dos", "das", "di", "nad", "na", "pod", "am", "an",
    "im", "sur", "en", "aan", "op", "upon", "on",
];

/// The parts of an address block after a street or a unit line: further unit lines, the city,
/// and the postal code (after a country's name, or standing alone), when each stands as its
/// own part, after a line break, a comma, a `>` or a run of spaces ("Kiannonkatu 98  Suite
/// 464  OULU   Finland 80896"). The building number written before a street ("41086
/// Kiannonkatu 98") is part of it too. Countries and two-letter regions are passed over, never
/// found.
fn address_blocks(text: &str, dict: &Dict, out: &mut Vec<Finding>) {
    let is_anchor = |f: &Finding| {
        f.category == Category::Location
            && matches!(
                f.recognizer,
                "address.street"
                    | "address.street_intl"
                    | "address.street_name"
                    | "address.unit"
                    | "address.po_box"
            )
    };
    if !out.iter().any(is_anchor) {
        return;
    }
    let mut anchors: Vec<(usize, usize, bool)> = out
        .iter()
        .filter(|f| is_anchor(f))
        .map(|f| (f.start, f.end, f.recognizer != "address.unit"))
        .collect();
    anchors.sort_unstable();
    let b = text.as_bytes();
    // How far the blocks read so far reach: a later anchor inside one is not read again.
    let mut reached = 0;
    for &(start, end, street) in &anchors {
        // "41086 Kiannonkatu 98": the building's number before the street.
        if street {
            let before = &b[..start];
            if before.last() == Some(&b' ') {
                let digits =
                    before[..before.len() - 1].iter().rev().take_while(|c| c.is_ascii_digit());
                let n = digits.count();
                let s = start - 1 - n;
                if (1..=6).contains(&n) && (s == 0 || matches!(b[s - 1], b' ' | b'\n' | b'\t')) {
                    out.push(
                        Finding::new(s, start - 1, Category::Location, 0.75, "address.block")
                            .with_subtype("street"),
                    );
                }
            }
        }
        if end < reached {
            continue;
        }
        reached = block_after(text, dict, end, out);
    }
}

/// Reads the parts after an address's street or unit line at `pos`; returns where it stopped.
fn block_after(text: &str, dict: &Dict, mut pos: usize, out: &mut Vec<Finding>) -> usize {
    let b = text.as_bytes();
    let mut limit = (pos + 160).min(b.len());
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    let mut city_seen = false;
    // A city, a country or a region was just passed: a short number after it is its postal
    // code.
    let mut coded = false;
    let mut newlines = 0;
    let push = |out: &mut Vec<Finding>, s: usize, e: usize, sub: &'static str| {
        out.push(Finding::new(s, e, Category::Location, 0.75, "address.block").with_subtype(sub));
    };
    for _ in 0..6 {
        // The separator: a line break, a comma, `>`, `|`, a tab or spaces.
        let sep_start = pos;
        pos = skip_separators(b, pos, limit, &mut newlines);
        if pos == sep_start || pos >= limit || newlines > 4 {
            break;
        }
        let rest = &text[pos..limit];
        // A unit line: "Apt. 297", "Suite 464".
        if let Some(n) = unit_len(rest) {
            push(out, pos, pos + n, "street");
            pos += n;
            coded = false;
            continue;
        }
        // A postal code standing alone, where its part ends ("Riisa  62488", not "2, 120 mg");
        // one of three or four digits only after a country or a region ("Aalborg NO 9100"; not
        // "Salem,01970,110").
        if let Some(n) = postal_len(rest)
            .filter(|&n| part_ends(&rest[n..]) && (coded || !short_number(&rest[..n])))
        {
            push(out, pos, pos + n, "zip");
            pos += n;
            coded = false;
            continue;
        }
        // A country, maybe with its postal code: "Finland 80896".
        if let Some(n) = country_len(rest) {
            pos += n;
            coded = true;
            continue;
        }
        // A region's code or a blank ("SK", "ON", "nan"), before more of the block.
        if let Some(n) = region_len(rest) {
            if !city_seen {
                break;
            }
            pos += n;
            coded = true;
            continue;
        }
        if city_seen {
            break;
        }
        // The city: capitalised words, up to the part's end, that a postal code, a country or
        // a region follows ("OULU   Finland", "Newton  02458", "Tujetsch 7188").
        let Some(n) = city_len(rest) else { break };
        let after = &rest[n..];
        if !part_ends(after) && !after.starts_with(' ') {
            break;
        }
        let mut k = 0;
        let then = &after[skip_separators(after.as_bytes(), 0, after.len(), &mut k)..];
        let code = postal_len(then).filter(|&c| part_ends(&then[c..]));
        let strong_code = code.is_some_and(|c| !short_number(&then[..c]))
            || country_len(then).is_some()
            || region_len(then).is_some();
        // Three or four digits: not a year ("COVID 2021").
        let short_code = code.is_some_and(|c| {
            let d = &then.as_bytes()[..c];
            !(d.len() == 4 && (d.starts_with(b"19") || d.starts_with(b"20")))
        });
        // A word the vocabulary knows ("History", "Sodium 138") is a city only where a long
        // postal code, a country or a region follows; a clinical word, a drug or an
        // abbreviation never is ("Metformin 50000", "MRN\n123456").
        let city = &rest[..n];
        let mut known = true;
        let mut clinical = false;
        for w in city.split(' ') {
            let lw = w.to_lowercase();
            let f = dict.flags(&lw);
            clinical |= f & (flag::MEDICAL | flag::ABBREV | flag::DRUG) != 0;
            known &= f & (flag::ENGLISH | flag::STOP) != 0 || CITY_JOINS.contains(&lw.as_str());
        }
        if clinical || !(strong_code || (short_code && !known)) {
            break;
        }
        push(out, pos, pos + n, "city");
        city_seen = true;
        coded = true;
        pos += n;
    }
    pos
}

/// Past the separators of an address's parts from `pos` (not past `limit`), counting line
/// breaks in `newlines`.
fn skip_separators(b: &[u8], mut pos: usize, limit: usize, newlines: &mut usize) -> usize {
    while pos < limit && matches!(b[pos], b' ' | b'\t' | b'\n' | b'\r' | b',' | b'>' | b'|') {
        *newlines += usize::from(b[pos] == b'\n');
        pos += 1;
    }
    pos
}

/// Whether a postal code is a plain number of three or four digits, which a count or a dose
/// can be as well.
fn short_number(code: &str) -> bool {
    code.len() <= 4 && code.bytes().all(|c| c.is_ascii_digit())
}

/// The length of a region's code or a blank at the start of `s` ("SK", "ON", "nan").
fn region_len(s: &str) -> Option<usize> {
    let r = s.as_bytes();
    let word = r.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let region = (word == 2 && r[..2].iter().all(u8::is_ascii_uppercase))
        || (word == 3 && &r[..3] == b"nan");
    (region && r.get(word).is_none_or(|c| !c.is_ascii_alphanumeric())).then_some(word)
}

/// Whether an address's part ends at the start of `s`: the text's end, a separator, or one
/// space before a capital or a digit.
fn part_ends(s: &str) -> bool {
    let r = s.as_bytes();
    match r.first() {
        None => true,
        Some(b',' | b'\n' | b'\r' | b'\t' | b'>' | b'|' | b'.' | b'?' | b';' | b')') => true,
        Some(b' ') => r.get(1).is_none_or(|c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b' ' || *c >= 0x80
        }),
        _ => false,
    }
}

/// The length of a unit line at the start of `s` ("Apt. 297", "Suite 464").
fn unit_len(s: &str) -> Option<usize> {
    let w = s.bytes().take_while(u8::is_ascii_alphabetic).count();
    if !(3..=9).contains(&w) || !s.as_bytes()[0].is_ascii_uppercase() {
        return None;
    }
    if !UNIT_WORDS.iter().any(|u| u.eq_ignore_ascii_case(&s[..w])) {
        return None;
    }
    let mut k = w;
    let r = s.as_bytes();
    if r.get(k) == Some(&b'.') {
        k += 1;
    }
    if r.get(k) != Some(&b' ') {
        return None;
    }
    k += 1;
    let d = r[k..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
    if d == 0 || d > 6 || !r[k].is_ascii_digit() {
        return None;
    }
    Some(k + d)
}

/// The length of a postal code at the start of `s`: three to six digits, maybe with a second
/// group ("394 13", "53-320", "7412 SL"), or a British or Canadian code ("SW1A 1AA", "K1A
/// 0B1"); the code must end where its word does.
pub(crate) fn postal_len(s: &str) -> Option<usize> {
    let r = s.as_bytes();
    let ends = |k: usize| r.get(k).is_none_or(|c| !c.is_ascii_alphanumeric());
    let d = r.iter().take_while(|c| c.is_ascii_digit()).count();
    if d > 0 {
        if !(2..=6).contains(&d) {
            return None;
        }
        // "53-320", "12345-6789"
        if r.get(d) == Some(&b'-') {
            let e = r[d + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if (d == 2 && e == 3) || (d == 5 && e == 4) {
                return ends(d + 1 + e).then_some(d + 1 + e);
            }
            return None;
        }
        if d == 2 || !ends(d) {
            return None;
        }
        if r.get(d) == Some(&b' ') {
            let tail = &r[d + 1..];
            let e = tail.iter().take_while(|c| c.is_ascii_digit()).count();
            // "394 13"
            if d == 3 && e == 2 && ends(d + 1 + e) {
                return Some(d + 3);
            }
            // "7412 SL"
            let l = tail.iter().take_while(|c| c.is_ascii_uppercase()).count();
            if d == 4 && l == 2 && ends(d + 3) {
                return Some(d + 3);
            }
        }
        return Some(d);
    }
    // "SW1A 1AA", "K1A 0B1": letters and digits mixed, in two groups of capitals.
    let first = r.iter().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit()).count();
    if !(2..=4).contains(&first) || r.get(first) != Some(&b' ') {
        return None;
    }
    let second =
        r[first + 1..].iter().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit()).count();
    let both = &r[..first + 1 + second];
    let digits = both.iter().filter(|c| c.is_ascii_digit()).count();
    (second == 3
        && r[first + 1].is_ascii_digit()
        && r[0].is_ascii_uppercase()
        && r[..first].iter().any(u8::is_ascii_digit)
        && digits <= 4
        && ends(first + 1 + second))
    .then_some(first + 1 + second)
}

/// The length of a country's name at the start of `s`, with what qualifies it ("Cyprus
/// (Greek)").
fn country_len(s: &str) -> Option<usize> {
    let r = s.as_bytes();
    if !r.first().is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    COUNTRIES.iter().find_map(|c| {
        let n = c.len();
        let hit = r.len() >= n
            && r[..n].eq_ignore_ascii_case(c.as_bytes())
            && r.get(n).is_none_or(|x| !x.is_ascii_alphanumeric())
            // "UK", "USA" only in capitals.
            && (n > 3 || r[..n].iter().all(u8::is_ascii_uppercase));
        hit.then(|| {
            let q = &s[n..];
            match q.strip_prefix(" (").and_then(|q| q.find(')').filter(|&e| e <= 12)) {
                Some(e) => n + 2 + e + 1,
                None => n,
            }
        })
    })
}

/// The length of a city's name at the start of `s`: one to four capitalised words (letters,
/// `-`, `'`), small joining words between them ("Torroella de Montgrí").
fn city_len(s: &str) -> Option<usize> {
    let mut end = 0;
    let mut k = 0;
    let mut words = 0;
    while words < 5 {
        let w: usize = s[k..]
            .char_indices()
            .find(|&(_, c)| !(c.is_alphabetic() || c == '-' || c == '\''))
            .map_or(s.len() - k, |(i, _)| i);
        if w == 0 {
            break;
        }
        let word = &s[k..k + w];
        let cap = word.chars().next().is_some_and(char::is_uppercase);
        if cap {
            end = k + w;
        } else if words == 0 || !CITY_JOINS.contains(&word) {
            break;
        }
        words += 1;
        k += w;
        if !s[k..].starts_with(' ') || s[k..].starts_with("  ") {
            break;
        }
        k += 1;
    }
    (end > 0 && words <= 4).then_some(end)
}
