//! Realistic fake values that keep the shape of the original: names from small invented pools,
//! digits and letters replaced one for one, dates shifted by one offset per context.

use super::dates;
use crate::Category;

const GIVEN: &[&str] = &[
    "Alex", "Jordan", "Casey", "Morgan", "Riley", "Avery", "Quinn", "Rowan", "Elena", "Marcus",
    "Nadia", "Tobias", "Ingrid", "Felix", "Priya", "Mateo", "Lena", "Omar", "Sofia", "Victor",
    "Hana", "Caleb", "Irene", "Dmitri",
];
const SURNAMES: &[&str] = &[
    "Ashford",
    "Bramley",
    "Castell",
    "Dunmore",
    "Ellery",
    "Fairbank",
    "Garrow",
    "Hollins",
    "Ivers",
    "Jessop",
    "Kendal",
    "Lowther",
    "Marlow",
    "Norbury",
    "Oakes",
    "Pemberton",
    "Quarry",
    "Radley",
    "Selwyn",
    "Thorne",
    "Upton",
    "Varley",
];
const TITLES: &[&str] = &["dr", "mr", "mrs", "ms", "miss", "mx", "prof", "doctor"];
const CITIES: &[&str] = &[
    "Springfield",
    "Riverton",
    "Fairview",
    "Georgetown",
    "Lakewood",
    "Maplewood",
    "Cedar Falls",
    "Oak Ridge",
];
const CITY_WORDS: &[&str] =
    &["Springfield", "Riverton", "Fairview", "Georgetown", "Lakewood", "Maplewood", "Ashbury"];
const STATES: &[&str] = &["OH", "PA", "MN", "OR", "KY", "IA", "NM", "VT"];
/// Words of an address that say what it is, not where, besides the street suffixes: kept as
/// they are.
const ADDRESS_WORDS: &[&str] = &[
    "apt",
    "apartment",
    "suite",
    "ste",
    "unit",
    "bldg",
    "building",
    "floor",
    "fl",
    "room",
    "rm",
    "po",
    "box",
    "p",
    "o",
    "n",
    "s",
    "e",
    "w",
    "ne",
    "nw",
    "se",
    "sw",
    "north",
    "south",
    "east",
    "west",
    "county",
    "parish",
    "of",
    "the",
    "and",
];
const STREETS: &[&str] =
    &["Maple", "Oak", "Cedar", "Elm", "Willow", "Birch", "Lakeview", "Hillcrest"];
const FACILITIES: &[&str] = &[
    "Riverside General Hospital",
    "Lakeview Medical Center",
    "Fairview Clinic",
    "Hillcrest Community Hospital",
];

/// A surrogate for `value`, drawing pseudo-random choices from `prf` (a keyed stream).
pub(crate) fn surrogate(
    cat: Category,
    subtype: Option<&str>,
    value: &str,
    shift_days: i64,
    prf: &mut dyn FnMut() -> u64,
    seq: usize,
) -> String {
    match cat {
        Category::Name => name(value, prf),
        Category::Date => dates::shift(value, shift_days).unwrap_or_else(|| "[DATE]".to_string()),
        Category::Age => "90+".to_string(),
        Category::Email => format!("person{seq}@example.org"),
        Category::Url => format!("https://example.org/r/{seq}"),
        Category::Ip if value.contains(':') => format!("2001:db8::{:x}", seq),
        Category::Ip => format!("192.0.2.{}", seq % 254 + 1),
        Category::Location => match subtype {
            Some("facility") => pick(FACILITIES, prf).to_string(),
            Some("street") | Some("zip") => place(value, STREETS, prf),
            // A city or county alone: a whole city name, whatever its word count.
            _ if !value.contains(|c: char| c.is_ascii_digit() || c == ',')
                && !value.to_lowercase().contains("county")
                && !value.to_lowercase().contains("parish") =>
            {
                case_like(value, pick(CITIES, prf))
            }
            _ => place(value, CITY_WORDS, prf),
        },
        Category::Ssn => {
            // The 9xx area is never issued.
            let mut s = shape(value, prf);
            if let Some(i) = s.find(|c: char| c.is_ascii_digit()) {
                s.replace_range(i..i + 1, "9");
            }
            s
        }
        _ => shape(value, prf),
    }
}

fn pick<'a>(pool: &[&'a str], prf: &mut dyn FnMut() -> u64) -> &'a str {
    pool[(prf() % pool.len() as u64) as usize]
}

/// Every digit to a random digit, every letter to a random letter of the same case.
fn shape(value: &str, prf: &mut dyn FnMut() -> u64) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from(b'0' + (prf() % 10) as u8)
            } else if c.is_ascii_uppercase() {
                char::from(b'A' + (prf() % 26) as u8)
            } else if c.is_ascii_lowercase() {
                char::from(b'a' + (prf() % 26) as u8)
            } else {
                c
            }
        })
        .collect()
}

/// An address or place of the same form: numbers reshaped digit by digit, state abbreviations
/// and place words replaced, street suffixes and unit words ("Ave", "Apt") kept.
fn place(value: &str, pool: &[&str], prf: &mut dyn FnMut() -> u64) -> String {
    let mut out = String::with_capacity(value.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, prf: &mut dyn FnMut() -> u64| {
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        if word.chars().any(|c| c.is_ascii_digit()) {
            out.push_str(&shape(word, prf));
        } else if ADDRESS_WORDS.contains(&lower.as_str())
            || crate::recognize::STREET_SUFFIXES.contains(&lower.as_str())
        {
            out.push_str(word);
        } else if word.len() == 2 && word.chars().all(|c| c.is_ascii_uppercase()) {
            out.push_str(pick(STATES, prf));
        } else {
            out.push_str(&case_like(word, pick(pool, prf)));
        }
        word.clear();
    };
    for c in value.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out, prf);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, prf);
    out
}

/// A fake name of the same shape: titles kept, initials stay initials, capitals stay capitals.
fn name(value: &str, prf: &mut dyn FnMut() -> u64) -> String {
    let words: Vec<&str> = value.split(' ').collect();
    let n = words.len();
    let mut out = Vec::with_capacity(n);
    let mut given_done = false;
    for (i, w) in words.iter().enumerate() {
        let core = w.trim_end_matches(['.', ',']);
        let tail = &w[core.len()..];
        let lower = core.to_ascii_lowercase();
        if TITLES.contains(&lower.as_str()) {
            out.push(w.to_string());
            continue;
        }
        if core.chars().count() == 1 {
            let c = char::from(b'A' + (prf() % 26) as u8);
            out.push(format!("{c}{tail}"));
            continue;
        }
        // The surname is the last word, or the word before a final initial after a comma
        // ("Smith, J."); "Anna S." is a given name and an initial.
        let last = i + 1 == n
            || (i + 2 == n
                && w.ends_with(',')
                && words[n - 1].trim_end_matches('.').chars().count() == 1);
        let pool = if !given_done && !last { GIVEN } else { SURNAMES };
        given_done = true;
        out.push(format!("{}{tail}", case_like(core, pick(pool, prf))));
    }
    out.join(" ")
}

fn case_like(original: &str, new: &str) -> String {
    if original.chars().filter(|c| c.is_alphabetic()).all(char::is_uppercase)
        && original.chars().count() > 1
    {
        new.to_uppercase()
    } else {
        new.to_string()
    }
}
