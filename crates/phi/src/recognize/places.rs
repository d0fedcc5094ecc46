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
    let upper = toks[h].shape == Shape::Upper;
    let weak_ok = e > s
        && toks[h].is_capitalized()
        && (s..=e).any(|k| {
            let t = &toks[k];
            let common = t.has(flag::ENGLISH | flag::MEDICAL | flag::ABBREV | flag::DRUG)
                && !t.has(flag::GIVEN | flag::SURNAME | flag::PROPER | flag::PHRASE_START);
            !(GENERIC.contains(&tk.lower_of(t)) || (upper && common))
        });
    if distinct && (strong || weak_ok) && e > s {
        Some((s, e))
    } else {
        None
    }
}
