//! Transformations of found PHI: redact, mask, typed placeholders, consistent surrogates with
//! date shifting, and keyed hashes.
//!
//! A [`Context`] carries what must stay consistent across one document or one conversation:
//! the same value gets the same placeholder or surrogate every time, and one date offset is
//! used for every date. Its [`Mapping`] lets a caller (the gateway, the vault) re-identify a
//! transformed text later, and [`StreamRestorer`] does it for text that arrives in chunks.
//! None of these types shows values in `Debug`.

mod dates;
mod stream;
mod surrogate;

pub use stream::StreamRestorer;

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use rustc_hash::FxHashMap;
use sha2::Sha256;

use crate::{Category, Error, Finding};

type HmacSha256 = Hmac<Sha256>;

/// How found PHI is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `[NAME]`, `[DATE]`, …
    Redact,
    /// Every character of the value replaced by the mask character (`*` by default); separators kept.
    Mask,
    /// Typed, numbered, consistent within a [`Context`]: `[NAME_1]`, `[DATE_2]`, …
    Placeholder,
    /// Realistic fake values, consistent within a [`Context`], formats kept; dates shifted by
    /// one offset per context so that intervals survive.
    Surrogate,
    /// A keyed HMAC-SHA256 of the value: `[NAME:3f9a…]`, the same value always giving the same
    /// hash under one key.
    Hash,
}

impl Mode {
    /// The stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Redact => "redact",
            Mode::Mask => "mask",
            Mode::Placeholder => "placeholder",
            Mode::Surrogate => "surrogate",
            Mode::Hash => "hash",
        }
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode, Error> {
        Ok(match s {
            "redact" => Mode::Redact,
            "mask" => Mode::Mask,
            "placeholder" => Mode::Placeholder,
            "surrogate" => Mode::Surrogate,
            "hash" => Mode::Hash,
            other => {
                return Err(Error::Config(format!(
                    "unknown mode {other:?} (expected redact, mask, placeholder, surrogate or hash)"
                )))
            }
        })
    }
}

/// Placeholder ↔ value pairs produced by transformations, for later re-identification.
/// `Debug` shows only the count.
#[derive(Default, Clone)]
pub struct Mapping {
    entries: Vec<(String, Category, String)>,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mapping({} entries, values hidden)", self.entries.len())
    }
}

impl Mapping {
    /// Number of distinct replacements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// `(replacement, category, original value)` triples, in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Category, &str)> {
        self.entries.iter().map(|(r, c, v)| (r.as_str(), *c, v.as_str()))
    }
    /// The original value behind a replacement, if known.
    pub fn value_of(&self, replacement: &str) -> Option<&str> {
        self.entries.iter().find(|(r, _, _)| r == replacement).map(|(_, _, v)| v.as_str())
    }

    /// Re-identifies `text`: every replacement this mapping knows is put back to its value;
    /// anything else is left as it is. Longest replacements win (`[NAME_12]` before `[NAME_1]`).
    pub fn restore(&self, text: &str) -> String {
        if self.entries.is_empty() {
            return text.to_string();
        }
        let ac = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(self.entries.iter().map(|(r, _, _)| r.as_str()));
        match ac {
            Ok(ac) => {
                let values: Vec<&str> = self.entries.iter().map(|(_, _, v)| v.as_str()).collect();
                ac.replace_all(text, &values)
            }
            Err(_) => text.to_string(),
        }
    }
}

/// State kept consistent across one document or conversation: the same value gets the same
/// replacement, one date offset serves every date. `Debug` hides values and keys.
pub struct Context {
    mapping: Mapping,
    by_value: FxHashMap<(Category, String), usize>,
    counters: [usize; Category::ALL.len()],
    seed: [u8; 32],
    date_shift: Option<i64>,
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("mapping", &self.mapping).finish_non_exhaustive()
    }
}

impl Context {
    /// A fresh context with a random seed (surrogates differ from one context to the next
    /// unless the transformer has a key).
    pub fn new() -> Context {
        let mut seed = [0u8; 32];
        // Without entropy, fall back to a time-derived seed: surrogates stay consistent within
        // the context either way.
        if getrandom::fill(&mut seed).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            seed[..16].copy_from_slice(&t.to_le_bytes());
        }
        Context {
            mapping: Mapping::default(),
            by_value: FxHashMap::default(),
            counters: [0; Category::ALL.len()],
            seed,
            date_shift: None,
        }
    }

    /// Sets the date offset in days used by the surrogate mode (otherwise derived from the key
    /// or the context's seed, between −365 and −30 days).
    pub fn with_date_shift(mut self, days: i64) -> Context {
        self.date_shift = Some(days);
        self
    }

    /// What was replaced so far.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// The replacement already given to a value, or a new one from `make`.
    fn replacement(
        &mut self,
        cat: Category,
        value: &str,
        make: impl FnOnce(&mut Self, usize) -> String,
    ) -> String {
        let key = (cat, normalize(cat, value));
        if let Some(&i) = self.by_value.get(&key) {
            return self.mapping.entries[i].0.clone();
        }
        self.counters[cat.index()] += 1;
        let n = self.counters[cat.index()];
        let r = make(self, n);
        self.by_value.insert(key, self.mapping.entries.len());
        self.mapping.entries.push((r.clone(), cat, value.to_string()));
        r
    }
}

/// The form under which two mentions count as the same value: case and spacing folded, a
/// leading title dropped from names.
fn normalize(cat: Category, value: &str) -> String {
    let mut words: Vec<String> = value.split_whitespace().map(|w| w.to_lowercase()).collect();
    if cat == Category::Name && words.len() > 1 {
        let t = words[0].trim_end_matches('.');
        if matches!(t, "dr" | "mr" | "mrs" | "ms" | "miss" | "mx" | "prof" | "doctor") {
            words.remove(0);
        }
    }
    words.join(" ")
}

/// Applies one [`Mode`] to texts and their findings.
#[derive(Clone)]
pub struct Transformer {
    mode: Mode,
    key: Option<Vec<u8>>,
    mask: char,
}

impl fmt::Debug for Transformer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transformer")
            .field("mode", &self.mode)
            .field("key", &self.key.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Transformer {
    /// A transformer for `mode`. The `hash` mode needs [`Transformer::with_key`].
    pub fn new(mode: Mode) -> Transformer {
        Transformer { mode, key: None, mask: '*' }
    }

    /// Sets the secret key (HMAC key of the `hash` mode; seed of surrogates and date shifts, so
    /// that one key gives the same surrogates and the same date offset everywhere).
    pub fn with_key(mut self, key: &[u8]) -> Transformer {
        self.key = Some(key.to_vec());
        self
    }

    /// Sets the mask character of the `mask` mode (`*` by default).
    pub fn with_mask_char(mut self, c: char) -> Transformer {
        self.mask = c;
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Replaces every finding in `text` and records re-identifiable replacements (placeholder,
    /// surrogate, hash) in `ctx`. Findings must be sorted, non-overlapping and on char
    /// boundaries, as [`crate::Scanner::scan`] returns them.
    pub fn apply(
        &self,
        text: &str,
        findings: &[Finding],
        ctx: &mut Context,
    ) -> Result<String, Error> {
        if self.mode == Mode::Hash && self.key.is_none() {
            return Err(Error::MissingKey { mode: "hash" });
        }
        let mut prev = 0;
        for f in findings {
            if f.start < prev
                || f.end <= f.start
                || f.end > text.len()
                || !text.is_char_boundary(f.start)
                || !text.is_char_boundary(f.end)
            {
                return Err(Error::Config(format!(
                    "findings must be sorted, non-overlapping and on char boundaries (got {}..{} after {prev}, text of {} bytes)",
                    f.start,
                    f.end,
                    text.len()
                )));
            }
            prev = f.end;
        }
        let mut out = String::with_capacity(text.len() + findings.len() * 8);
        let mut last = 0;
        for f in findings {
            out.push_str(&text[last..f.start]);
            let value = &text[f.start..f.end];
            match self.mode {
                Mode::Redact => {
                    out.push('[');
                    out.push_str(f.category.as_str());
                    out.push(']');
                }
                Mode::Mask => {
                    out.extend(
                        value.chars().map(|c| if c.is_alphanumeric() { self.mask } else { c }),
                    )
                }
                Mode::Placeholder => {
                    let r = ctx.replacement(f.category, value, |_, n| {
                        format!("[{}_{n}]", f.category.as_str())
                    });
                    out.push_str(&r);
                }
                Mode::Hash => {
                    let key = self.key.as_deref().unwrap_or_default();
                    let norm = normalize(f.category, value);
                    let r = ctx.replacement(f.category, value, |_, _| {
                        let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
                            .expect("HMAC takes any key length");
                        mac.update(f.category.as_str().as_bytes());
                        mac.update(&[0]);
                        mac.update(norm.as_bytes());
                        let tag = mac.finalize().into_bytes();
                        format!("[{}:{}]", f.category.as_str(), hex::encode(&tag[..8]))
                    });
                    out.push_str(&r);
                }
                Mode::Surrogate => {
                    let key = self.key.clone();
                    let subtype = f.subtype;
                    let r = ctx.replacement(f.category, value, |c, n| {
                        let shift = c.date_shift.unwrap_or_else(|| {
                            let days = -30
                                - (prf_stream(key.as_deref(), &c.seed, b"date-shift")() % 336)
                                    as i64;
                            c.date_shift = Some(days);
                            days
                        });
                        let mut label = Vec::with_capacity(value.len() + 24);
                        label.extend_from_slice(f.category.as_str().as_bytes());
                        label.push(0);
                        label.extend_from_slice(normalize(f.category, value).as_bytes());
                        let mut prf = prf_stream(key.as_deref(), &c.seed, &label);
                        surrogate::surrogate(f.category, subtype, value, shift, &mut prf, n)
                    });
                    out.push_str(&r);
                }
            }
            last = f.end;
        }
        out.push_str(&text[last..]);
        Ok(out)
    }
}

/// A deterministic pseudo-random stream: HMAC-SHA256(key or seed, label || counter).
fn prf_stream<'a>(
    key: Option<&'a [u8]>,
    seed: &'a [u8; 32],
    label: &[u8],
) -> impl FnMut() -> u64 + 'a {
    let label = label.to_vec();
    let mut counter = 0u64;
    let mut buf = [0u8; 32];
    let mut used = 32;
    move || {
        if used + 8 > 32 {
            let k: &[u8] = key.unwrap_or(seed);
            let mut mac =
                <HmacSha256 as Mac>::new_from_slice(k).expect("HMAC takes any key length");
            mac.update(&label);
            mac.update(&counter.to_le_bytes());
            buf.copy_from_slice(&mac.finalize().into_bytes());
            counter += 1;
            used = 0;
        }
        let v = u64::from_le_bytes(buf[used..used + 8].try_into().unwrap_or([0; 8]));
        used += 8;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str, s: &str, cat: Category) -> Finding {
        let start = text.find(s).unwrap();
        Finding::new(start, start + s.len(), cat, 1.0, "test")
    }

    const TEXT: &str = "Dr. Alan Smith saw Alan Smith on 03/14/2021; call 614-555-0142.";

    fn findings() -> Vec<Finding> {
        let mut v = vec![
            f(TEXT, "Dr. Alan Smith", Category::Name),
            f(TEXT, "03/14/2021", Category::Date),
            f(TEXT, "614-555-0142", Category::Phone),
        ];
        let second = TEXT.rfind("Alan Smith").unwrap();
        v.push(Finding::new(second, second + 10, Category::Name, 1.0, "test"));
        v.sort_by_key(|f| f.start);
        v
    }

    #[test]
    fn redact_and_mask() {
        let mut ctx = Context::new();
        let r = Transformer::new(Mode::Redact).apply(TEXT, &findings(), &mut ctx).unwrap();
        assert_eq!(r, "[NAME] saw [NAME] on [DATE]; call [PHONE].");
        let m = Transformer::new(Mode::Mask).apply(TEXT, &findings(), &mut ctx).unwrap();
        assert_eq!(m, "**. **** ***** saw **** ***** on **/**/****; call ***-***-****.");
    }

    #[test]
    fn placeholders_are_consistent_and_restore() {
        let t = Transformer::new(Mode::Placeholder);
        let mut ctx = Context::new();
        let out = t.apply(TEXT, &findings(), &mut ctx).unwrap();
        assert_eq!(out, "[NAME_1] saw [NAME_1] on [DATE_1]; call [PHONE_1].");
        // A second message of the same conversation reuses the numbering.
        let t2 = "Alan Smith and Maria Lopez";
        let f2 = vec![f(t2, "Alan Smith", Category::Name), f(t2, "Maria Lopez", Category::Name)];
        assert_eq!(t.apply(t2, &f2, &mut ctx).unwrap(), "[NAME_1] and [NAME_2]");
        assert_eq!(
            ctx.mapping().restore("[NAME_2] met [NAME_1]"),
            "Maria Lopez met Dr. Alan Smith"
        );
    }

    #[test]
    fn hash_needs_a_key_and_is_stable() {
        assert!(matches!(
            Transformer::new(Mode::Hash).apply(TEXT, &findings(), &mut Context::new()),
            Err(Error::MissingKey { .. })
        ));
        let t = Transformer::new(Mode::Hash).with_key(b"0123456789abcdef0123456789abcdef");
        let a = t.apply(TEXT, &findings(), &mut Context::new()).unwrap();
        let b = t.apply(TEXT, &findings(), &mut Context::new()).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("[NAME:") && !a.contains("Smith"));
    }

    #[test]
    fn surrogates_keep_shape_and_intervals() {
        let text = "Seen 03/14/2021 and again 03/24/2021 by JOHN SMITH, SSN 219-45-6712.";
        let fs = vec![
            f(text, "03/14/2021", Category::Date),
            f(text, "03/24/2021", Category::Date),
            f(text, "JOHN SMITH", Category::Name),
            f(text, "219-45-6712", Category::Ssn),
        ];
        let t = Transformer::new(Mode::Surrogate).with_key(b"0123456789abcdef0123456789abcdef");
        let out = t.apply(text, &fs, &mut Context::new().with_date_shift(-40)).unwrap();
        assert!(out.contains("02/02/2021") && out.contains("02/12/2021"), "{out}");
        assert!(!out.contains("SMITH") && !out.contains("219-45-6712"), "{out}");
        let name = &out[out.find(" by ").unwrap() + 4..out.find(',').unwrap()];
        assert!(name.chars().all(|c| c.is_ascii_uppercase() || c == ' '), "{name}");
        let ssn = &out[out.find("SSN ").unwrap() + 4..out.len() - 1];
        assert!(ssn.starts_with('9') && ssn.len() == 11 && &ssn[3..4] == "-", "{ssn}");
        // Same key, same input: same output.
        assert_eq!(out, t.apply(text, &fs, &mut Context::new().with_date_shift(-40)).unwrap());
    }

    #[test]
    fn bad_findings_are_refused_without_text() {
        let bad = vec![Finding::new(5, 2, Category::Name, 1.0, "test")];
        let e = Transformer::new(Mode::Redact).apply(TEXT, &bad, &mut Context::new()).unwrap_err();
        assert!(!e.to_string().contains("Alan"));
    }

    #[test]
    fn debug_shows_no_values() {
        let mut ctx = Context::new();
        Transformer::new(Mode::Placeholder).apply(TEXT, &findings(), &mut ctx).unwrap();
        let d = format!(
            "{ctx:?} {:?} {:?}",
            ctx.mapping(),
            Transformer::new(Mode::Hash).with_key(b"secret-key-123456")
        );
        assert!(!d.contains("Smith") && !d.contains("614") && !d.contains("secret"), "{d}");
    }
}
