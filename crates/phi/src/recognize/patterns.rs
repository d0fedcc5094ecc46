//! Format recognizers: compiled patterns with validators and context rules, for identifiers
//! that have a shape (dates, phones, emails, URLs, IPs, SSNs, ages over 89, numbers after cues,
//! bare record numbers, card numbers, VINs, street addresses).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use regex::Regex;
use regex_automata::hybrid::dfa::{Cache, OverlappingState, DFA};
use regex_automata::{Anchored, Input, MatchKind};

use super::dict::Table;

use super::util::{byte_before, cue_before, digits, quote_len, word_after};
use crate::validate;
use crate::{Category, Error, Finding};

const MONTH: &str = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";
const MONTH_FULL: &str = r"(?:January|February|March|April|May|June|July|August|September|October|November|December|JANUARY|FEBRUARY|MARCH|APRIL|MAY|JUNE|JULY|AUGUST|SEPTEMBER|OCTOBER|NOVEMBER|DECEMBER)";

/// Patterns whose every match starts at a word that begins with or holds a digit (or at a
/// `(`, `+` or `#` just before one), or at a word of [`word_kinds`]. They are
/// not searched over the whole text one by one: one anchored multi-pattern DFA runs at each
/// such candidate position instead (see [`LedDfa`]).
const LED: &[&str] = &[
    "date.text",
    "date.month",
    "age",
    "age.subject",
    "id.cue",
    "ipv4",
    "phone",
    "phone7",
    "phone.groups",
    "ssn",
    "date.numeric",
    "date.iso",
    "date.md",
    "date.my",
    "date.day_first",
    "id.digits",
    "id.alnum",
    "street",
    "zip",
];

pub(crate) struct Patterns {
    email: Pat,
    url: Pat,
    domain: Pat,
    domain_path: Pat,
    ipv4: Pat,
    ipv6: Pat,
    phone: Pat,
    phone7: Pat,
    phone_groups: Pat,
    ssn: Pat,
    date_numeric: Pat,
    date_iso: Pat,
    date_md: Pat,
    date_my: Pat,
    date_month_first: Pat,
    date_day_first: Pat,
    date_month_cue: Pat,
    holiday: Pat,
    age: Pat,
    age_subject: Pat,
    age_decade: Pat,
    cue_id: Pat,
    digit_groups: Pat,
    alnum_id: Pat,
    street: Pat,
    street_named: Pat,
    zip: Pat,
    po_box: Pat,
    /// The candidate-led patterns, all at once.
    led: LedDfa,
    /// `cue_id` matching a whole cue, to tell which group a found cue belongs to.
    cue_id_whole: Regex,
}

/// One pattern; `led` is its index among the candidate-led patterns, if it is one. Those
/// are compiled on their own only if the candidate-led pass ever gives up (or in tests), so
/// start-up does not pay for them.
pub(crate) struct Pat {
    name: &'static str,
    source: String,
    re: std::sync::OnceLock<Result<Regex, Error>>,
    led: Option<usize>,
}

/// A match: its byte range in the text.
pub(crate) struct Span<'t> {
    text: &'t str,
    start: usize,
    end: usize,
}

impl<'t> Span<'t> {
    fn start(&self) -> usize {
        self.start
    }
    fn end(&self) -> usize {
        self.end
    }
    fn as_str(&self) -> &'t str {
        &self.text[self.start..self.end]
    }
}

/// The matches of one pattern, in order and not overlapping (as `Regex::find_iter` gives them).
pub(crate) enum Spans<'r, 't> {
    Search(&'t str, regex::Matches<'r, 't>),
    Found(&'t str, std::slice::Iter<'r, (usize, usize)>),
}

impl<'t> Iterator for Spans<'_, 't> {
    type Item = Span<'t>;
    fn next(&mut self) -> Option<Span<'t>> {
        match self {
            Spans::Search(text, m) => {
                m.next().map(|m| Span { text, start: m.start(), end: m.end() })
            }
            Spans::Found(text, it) => it.next().map(|&(start, end)| Span { text, start, end }),
        }
    }
}

impl Pat {
    fn new(name: &'static str, source: String, led: Option<usize>) -> Result<Pat, Error> {
        let re = std::sync::OnceLock::new();
        if led.is_none() {
            // Searched on every text: compile now, and fail now if it does not compile.
            re.get_or_init(|| build(name, &source)).as_ref().map_err(Clone::clone)?;
        }
        Ok(Pat { name, source, re, led })
    }

    /// The compiled pattern (compiled on first use for a candidate-led one).
    fn regex(&self) -> Result<&Regex, &Error> {
        self.re.get_or_init(|| build(self.name, &self.source)).as_ref()
    }

    /// Matches of this pattern: found by the candidate-led pass when it is one of those,
    /// else searched for now.
    fn find_iter<'r, 't>(&'r self, text: &'t str, led: &'r Led) -> Spans<'r, 't> {
        match (self.led, led.found.as_ref()) {
            (Some(k), Some(found)) => Spans::Found(text, found[k].iter()),
            _ => match self.regex() {
                Ok(re) => Spans::Search(text, re.find_iter(text)),
                // Checked when the candidate-led DFA was built from the same source.
                Err(_) => Spans::Found(text, [].iter()),
            },
        }
    }
}

fn build(name: &'static str, pattern: &str) -> Result<Regex, Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .map_err(|e| Error::Pattern { name, message: e.to_string() })
}

/// ASCII word boundaries keep the lazy DFA usable on any input.
fn ascii(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)").replace(r"\d", "[0-9]")
}

impl Patterns {
    pub(crate) fn new() -> Result<Patterns, Error> {
        let mut led_patterns: Vec<String> = vec![String::new(); LED.len()];
        let mut re = |name: &'static str, pattern: &str| -> Result<Pat, Error> {
            let p = ascii(pattern);
            let led = LED.iter().position(|n| *n == name);
            if let Some(k) = led {
                led_patterns[k] = p.clone();
            }
            Pat::new(name, p, led)
        };
        let mut p = Patterns {
            email: re(
                "email",
                r"\b[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b",
            )?,
            url: re("url", r#"(?i)\b(?:https?://|ftp://|www\.)[^\s<>"'`]+"#)?,
            // A host with a path, whatever its top-level domain ("bit.ly/3xYzAbC",
            // "portal.example.de/patient/44812"): the path says it is an address.
            domain_path: re(
                "domain.path",
                r#"(?i)\b[a-z0-9][a-z0-9\-]{1,62}(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*\.[a-z]{2,6}/[^\s<>"'`]*[a-z0-9]"#,
            )?,
            domain: re(
                "domain",
                r#"(?i)\b[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*\.(?:com|org|net|edu|gov|mil|int|io|us|uk|ca|info|biz|health|care|clinic|hospital|md|co|me|app|ai)\b(?:/[^\s<>"'`]*)?"#,
            )?,
            ipv4: re("ipv4", r"\b(?:\d{1,3}\.){3}\d{1,3}\b")?,
            ipv6: re(
                "ipv6",
                r"(?i)(?:\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){2,7}|::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4}\b)",
            )?,
            phone: re(
                "phone",
                r"(?i)(?:\+?\b1[ \t.\-]?)?(?:\(\d{3}\)[ \t]?|\b\d{3}[ \t.\-/])\d{3}[ \t.\-]\d{4}(?:[ \t]*(?:x|ext\.?|extension)[ \t]*\d{1,6})?\b|\b\d{3}\.\d{3}\.\d{4}\b|\+\d{1,3}[ \t.\-]?(?:\(0\)[ \t]?)?\(?\d{1,4}\)?(?:[ \t.\-]?\d{2,4}){2,4}\b",
            )?,
            phone7: re("phone7", r"\b\d{3}[\-.]\d{4}\b|\b\d{10}\b|\b\d{4,6}\b")?,
            // Numbers in groups as written outside North America ("0490 75 40 81",
            // "(08) 8747 6301", "21 284 698 2548"): taken only after a phone cue.
            phone_groups: re(
                "phone.groups",
                r"(?:\+\d{1,3}[ \t.\-]?)?(?:\(\d{1,5}\)[ \t.\-]?|\b\d{1,6}[ \t.\-])(?:\d{1,6}[ \t.\-]){0,4}\d{2,6}(?:[ \t]*(?i:x|ext\.?)[ \t]*\d{1,6})?\b",
            )?,
            ssn: re("ssn", r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b|\b\d{9}\b")?,
            // A dot only with dots: "7.28/58" and "4.5-11" are no dates; "3/14-2021" is one.
            date_numeric: re(
                "date.numeric",
                r"\b\d{1,2}(?:[/\-]\d{1,2}[/\-]|\.\d{1,2}\.)(?:\d{4}|\d{2})\b",
            )?,
            // With a time after `T` ("2021-03-04T10:22:31Z", also in lower case), the time in
            // the span.
            date_iso: re("date.iso", &{
                let (m, d) = (r"(?:0?[1-9]|1[0-2])", r"(?:0?[1-9]|[12]\d|3[01])");
                format!(
                    r"\b(?:19|20)\d{{2}}(?:-{m}-{d}|/{m}/{d}|\.{m}\.{d})(?:[Tt]\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?(?:[Zz]|[+\-]\d{{2}}:?\d{{2}})?)?\b|\b(?:19|20)\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"
                )
            })?,
            date_md: re("date.md", r"\b(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])\b")?,
            date_my: re("date.my", r"\b(?:0?[1-9]|1[0-2])[/\-](?:19|20)\d{2}\b")?,
            date_month_first: re(
                "date.text",
                &format!(
                    r"(?i)\b{MONTH}\.?(?:[ \t]+|-)(?:\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?[ \t]*(?:\d{{4}}|'\d{{2}})\b)?|(?:of[ \t]+)?\d{{4}}\b|'\d{{2}}\b)|(?i)\b{MONTH}\.?,[ \t]*\d{{4}}\b"
                ),
            )?,
            // "14 March 2021", "14-Mar-21"; written together as the military and the VA do,
            // "04MAR21", "4MAR2021".
            date_day_first: re(
                "date.day_first",
                &format!(
                    r"(?i)\b\d{{1,2}}(?:st|nd|rd|th)?(?:[ \t]+of)?(?:[ \t]+|-){MONTH}\b\.?(?:(?:,?[ \t]*|-)(?:\d{{4}}|\d{{2}})\b)?|(?i)\b(?:0?[1-9]|[12]\d|3[01])(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(?:\d{{4}}|\d{{2}})\b"
                ),
            )?,
            date_month_cue: re(
                "date.month",
                &format!(
                    r"\b(?:(?i:last|next|this|early|mid|late|in|on|since|until|during|by|of|from|through|till)[ \t]+){MONTH_FULL}\b|\b(?i:last|next|this|past|previous)[ \t]+(?i:monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b"
                ),
            )?,
            holiday: re(
                "date.holiday",
                r"\b(?:Christmas(?: Day| Eve)?|Thanksgiving(?: Day)?|New Year's(?: Day| Eve)?|Easter(?: Sunday)?|Independence Day|Fourth of July|Halloween|Memorial Day|Labor Day|Veterans Day|Valentine's Day|Mother's Day|Father's Day)\b",
            )?,
            // Ages over 89 (the number `N`, or `W` in words): "92 yo", "90+ y/o", "92y male",
            // "96 M", "93F", "93 yrs", "Age: 92", "turned 90", "ninety-three year old". Which of
            // these is an age is told in `run_ages` by the words around.
            age: re("age", &{
                let n = r"(?:9\d|1[0-2]\d)";
                let w = r"ninety(?:[ \t\-](?:one|two|three|four|five|six|seven|eight|nine))?";
                format!(
                    r#"(?i)\b(?:{n}\+?(?:[ \t]*|-)(?:years?|yrs?|y)(?:[ \t]*|-)(?:old|o\.?\b|/o\b)|{n}\+?[ \t]*(?:yo[mf]?|y[mf]\b|y/o|y\.o\.?|yr\.? old|years of age|year-old)|{n}\+?[ \t]*(?:years?|yrs?|y)\.?[ \t]*(?:male|female|man|woman|gentleman|lady|(?-i:M|F))\b|{n}(?:[ \t]|-)?(?:m|f)\b|{n}[ \t]*(?:years?|yrs?)\b|(?:aged?|age(?:\\?["'])?[ \t]*[:=])[ \t]*(?:\r?\n[ \t]*)?(?:\\?["'])?(?:{n}|{w})\b|(?:turned|turns|turning)[ \t]+(?:{n}|{w})(?:(?:[ \t]*|-)(?:years?|yrs?)(?:(?:[ \t]*|-)old)?)?\b|{w}(?:[ \t]*|-)(?:years?|yrs?)(?:[ \t]*|-)old\b|{w}[ \t]*(?:yo[mf]?|y/o|y\.o\.?)\b|{n}(?:st|nd|rd|th) birthday|nonagenarian|centenarian(?:[ \t]*\((?:1[0-2]\d)\))?|(?:born(?:[ \t]+in)?|yob|year[ \t]+of[ \t]+birth|birth[ \t]*year|dob)[ \t]*[:=#\-]?[ \t]*(?:18|19|20)\d{{2}}\b)"#
                )
            })?,
            // A bare number after a person: "She is 94.", "my patient is 92 and ...". Apart
            // from `age`, so that a match here that is no age ("She is 92 years old" is one by
            // `age` from the number) hides none of `age`'s.
            age_subject: re(
                "age.subject",
                r"(?i)\b(?:she|he|patient|pt|mom|mother|dad|father|grand(?:ma|mother|pa|father)|husband|wife)(?:'s|[ \t]+is)[ \t]+(?:9\d|1[0-2]\d)\b",
            )?,
            age_decade: re(
                "age.decade",
                r"(?i)\b(?:in[ \t]+(?:his|her|their|the)[ \t]+(?:late[ \t]+|early[ \t]+|mid[ \t]+|mid-)?)(?:90s|90's|nineties|100s)\b",
            )?,
            cue_id: re(
                "id.cue",
                r"(?i)\b(?P<ssn>ssn|ss#|soc\.? sec\.?|social security(?: number| no\.?| #)?)|\b(?P<mrn>mrn|mr#|mr no\.?|ur(?: number| no\.?| #)|medical record(?: number| no\.?| #| num)?|med\.? rec\.?(?: no\.?| #)?|record(?: number| no\.?| #)|chart(?: number| no\.?| #)|hospital (?:number|no\.?|#|id)|unit (?:number|no\.?)|patient (?:id|number|no\.?|#)|pt\.? (?:id|#|no\.?)|case (?:number|no\.?|#|id)|encounter(?: id| number| no\.?| #)|visit (?:id|number|no\.?|#)|fin|csn|accession(?: number| no\.?| #)?|specimen (?:id|number|no\.?|#)|lab (?:id|number)|admission (?:number|no\.?|#|id))|\b(?P<hp>member(?: id| number| no\.?| #)|subscriber(?: id| number| no\.?| #)?|policy(?: id| number| no\.?| #)?|insurance(?: plan)?(?: id| number| no\.?| #)|plan(?: id| number| no\.?| #)|group(?: id| number| no\.?| #)|medicaid(?: id| number| no\.?| #)?|medicare(?: id| number| no\.?| #)?|mbi|hicn|beneficiary(?: id| number| no\.?)|health plan(?: id| number| no\.?)?|payer id|coverage id)|\b(?P<acct>account(?: number| no\.?| #| id)?|acct\.?(?: number| no\.?| #)?|billing(?: id| number| no\.?| #)|invoice(?: number| no\.?| #)|claim(?: id| number| no\.?| #)|card(?: number| no\.?| #)|credit card|iban|routing(?: number| no\.?| #)?|bank account)|\b(?P<lic>licen[sc]e(?: number| no\.?| #| id)?|lic\.?(?: no\.?| #)?|dl(?: #| number| no\.?)|driver'?s licen[sc]e(?: number| no\.?| #)?|dea(?: number| no\.?| #)?|npi(?: number| no\.?| #)?|certificate(?: number| no\.?| #)|cert\.?(?: no\.?| #)|registration(?: number| no\.?| #))|\b(?P<veh>vin|vehicle id(?:entification number)?|licen[sc]e plate|plate(?: number| no\.?| #)?|tag(?: number| #))|\b(?P<dev>serial(?: number| no\.?| #)?|s/n|sn|device(?: id| number| serial| #)|udi|model(?: number| no\.?| #)|lot(?: number| no\.?| #)|implant id|pacemaker (?:id|serial)|imei|mac address)|\b(?P<bio>fingerprint(?: id)?|biometric(?: id)?|retina(?:l)? scan(?: id)?|voiceprint(?: id)?|face id)|\b(?P<id>i\.d\.|(?:identification|ref(?:erence)?|tracking|employee|badge|passport|confirmation|order|ticket|rx|prescription)(?: no\.|[ \t]?#)|(?:id|identifier|identification(?: number| no)?|ref(?:erence)?(?: number| no)|tracking(?: number| no)|employee(?: id| number| no)|badge(?: id| number| no)?|student id|passport(?: number| no)?|user ?id|username|login|confirmation(?: number| no)|order(?: id| number| no)|ticket(?: number| no)|rx (?:number|no)|prescription(?: number| no| id))\b)",
            )?,
            digit_groups: re(
                "id.digits",
                r"#?\b\d{2,}(?:[\-/.]\d{2,}){1,4}\b|#?\b\d{7,}\b|\b\d{4}(?: \d{4}){2,3}\b|\b\d{4} \d{6} \d{5}\b",
            )?,
            alnum_id: re(
                "id.alnum",
                r"#?\b(?:[A-Za-z]{1,6}[\-#]?\d[A-Za-z0-9]*(?:-[A-Za-z0-9]+)*|\d+[\-]?[A-Za-z]{1,6}[A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)\b",
            )?,
            street: re(
                "street",
                r"(?i)\b\d{1,6}[A-Za-z]?[ \t]+(?:(?:[NSEW]|North|South|East|West|N\.E\.|N\.W\.|S\.E\.|S\.W\.|NE|NW|SE|SW)\.?[ \t]+)?(?:[A-Za-z0-9][A-Za-z'\-]*\.?[ \t]+){1,4}?(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|terrace|ter|circle|cir|parkway|pkwy|highway|hwy|way|trail|trl|pike|square|sq|plaza|alley|crescent|expressway|freeway|turnpike|route|rte)\b\.?(?:,?[ \t]*(?:apt|apartment|suite|ste|unit|bldg|building|floor|fl|room|rm|#)\.?[ \t]*#?[ \t]*[A-Za-z0-9\-]+\b)?",
            )?,
            street_named: re(
                "street.named",
                r"\b(?:[A-Z][a-z]+[ \t]+){1,3}(?:Street|Avenue|Road|Boulevard|Lane|Drive|Terrace|Parkway|Highway|Circle|Court|Place|Trail|Pike)\b",
            )?,
            zip: re("zip", r"\b\d{5}(?:-\d{4})?\b")?,
            po_box: re("po_box", r"(?i)\bp\.?[ \t]?o\.?[ \t]*box[ \t]+\d+\b")?,
            led: LedDfa::empty(),
            cue_id_whole: Regex::new("$^")
                .map_err(|e| Error::Pattern { name: "id.cue", message: e.to_string() })?,
        };
        p.led = LedDfa::new(&led_patterns)?;
        p.cue_id_whole = build("id.cue", &format!("^(?:{})$", p.cue_id.source))?;
        Ok(p)
    }

    pub(crate) fn run(&self, text: &str, dict: &super::dict::Dict, out: &mut Vec<Finding>) {
        let hits = &self.led.find(text);
        let bytes = text.as_bytes();
        let has_at = memchr_any(bytes, b'@');
        let has_digit = hits.seen.digit;

        if has_at {
            for m in self.email.find_iter(text, hits) {
                out.push(Finding::new(m.start(), m.end(), Category::Email, 0.99, "email"));
            }
            find_handles(text, |s, e| {
                out.push(Finding::new(s, e, Category::Id, 0.8, "id.handle").with_subtype("handle"));
            });
        }
        if has_dot_word(bytes) {
            for m in self.url.find_iter(text, hits) {
                let end = m.start() + trim_url_tail(m.as_str());
                out.push(Finding::new(m.start(), end, Category::Url, 0.97, "url"));
            }
            if host_before_slash(bytes) {
                for m in self.domain_path.find_iter(text, hits) {
                    // A path with a digit, or a host of three labels or more: "5 mg.tab/day"
                    // is a dose.
                    let (host, path) = m.as_str().split_once('/').unwrap_or(("", ""));
                    if matches!(byte_before(text, m.start()), Some(b'@' | b'.' | b'/'))
                        || !(path.bytes().any(|c| c.is_ascii_digit())
                            || host.bytes().filter(|c| *c == b'.').count() >= 2)
                    {
                        continue;
                    }
                    let end = m.start() + trim_url_tail(m.as_str());
                    out.push(
                        Finding::new(m.start(), end, Category::Url, 0.85, "url.domain")
                            .with_subtype("domain"),
                    );
                }
            }
            // A bare domain needs a known top-level domain after a dot: most notes have none.
            for m in
                self.domain.find_iter(text, hits).take(if has_tld(bytes) { usize::MAX } else { 0 })
            {
                // Not the host part of an email.
                if byte_before(text, m.start()) == Some(b'@')
                    || byte_before(text, m.start()) == Some(b'.')
                {
                    continue;
                }
                let end = m.start() + trim_url_tail(m.as_str());
                out.push(
                    Finding::new(m.start(), end, Category::Url, 0.85, "url.domain")
                        .with_subtype("domain"),
                );
            }
        }
        if maybe_ipv6(bytes) {
            for m in self.ipv6.find_iter(text, hits) {
                let s = m.as_str().trim_end_matches(':');
                if s.matches(':').count() >= 2
                    && validate::ip::is_valid_v6(s)
                    && s.bytes().any(|c| c.is_ascii_alphabetic() || c == b':')
                    && !looks_like_time(s)
                {
                    out.push(
                        Finding::new(m.start(), m.start() + s.len(), Category::Ip, 0.95, "ip.v6")
                            .with_subtype("ipv6"),
                    );
                }
            }
        }
        if hits.gate(kind::MAC) {
            find_macs(bytes, |s, e| {
                // Digits only ("10:20:30:40:50:60", a ratio): only after a cue.
                if !bytes[s..e].iter().any(u8::is_ascii_alphabetic)
                    && !cue_before(
                        text,
                        s,
                        24,
                        &[
                            "mac",
                            "bluetooth",
                            "ethernet",
                            "wifi",
                            "wi-fi",
                            "hardware",
                            "address",
                            "device",
                        ],
                    )
                {
                    return;
                }
                out.push(
                    Finding::new(s, e, Category::Device, 0.9, "device.mac").with_subtype("mac"),
                );
            });
        }
        if !has_digit {
            // "A nonagenarian", "Age: ninety-one": ages need no digit.
            self.run_ages(text, hits, out);
            self.run_textual(text, hits, out);
            return;
        }
        find_coordinates(text, |s, e| {
            out.push(
                Finding::new(s, e, Category::Location, 0.9, "location.coordinates")
                    .with_subtype("coordinates"),
            );
        });
        for m in self.ipv4.find_iter(text, hits) {
            if validate::ip::is_valid_v4(m.as_str())
                && !cue_before(text, m.start(), 12, &["version", "v", "ver"])
            {
                out.push(
                    Finding::new(m.start(), m.end(), Category::Ip, 0.95, "ip.v4")
                        .with_subtype("ipv4"),
                );
            }
        }
        for m in self.phone.find_iter(text, hits) {
            let (s, e) = (m.start(), m.end());
            if digits(m.as_str()) < 10 {
                continue;
            }
            // A 3-2-4 group is an SSN, handled below; a date-like x/y/z is a date.
            let cat = phone_category(text, s);
            out.push(Finding::new(s, e, cat, 0.9, "phone").with_subtype(if cat == Category::Fax {
                "fax"
            } else {
                "phone"
            }));
        }
        for m in self.phone7.find_iter(text, hits) {
            let (s, e) = (m.start(), m.end());
            let cue = cue_before(text, s, 24, PHONE_CUES);
            let strong = cue_before(
                text,
                s,
                14,
                &["pager", "pgr", "beeper", "ext", "extension", "fax", "phone", "tel"],
            );
            let n = e - s;
            if (n == 8 && cue)
                || (n == 10 && cue && !is_year_or_unit(text, e))
                || ((4..=6).contains(&n) && strong && !is_year_or_unit(text, e))
            {
                let cat = phone_category(text, s);
                let sub = if cue_before(text, s, 14, &["pager", "pgr", "beeper"]) {
                    "pager"
                } else if cat == Category::Fax {
                    "fax"
                } else {
                    "phone"
                };
                out.push(Finding::new(s, e, cat, 0.8, "phone.cue").with_subtype(sub));
            }
        }
        for m in self.phone_groups.find_iter(text, hits) {
            let (s, e) = (m.start(), m.end());
            let number = m.as_str();
            // The number without its extension ("3560x4587").
            let main =
                &number[..number.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(number.len())];
            // The cheap tests first: most groups of digits are dates, SSNs or numbers in a row.
            // (The pattern allows at most seven groups.)
            let mut buf = [""; 8];
            let mut n = 0;
            for g in main.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()) {
                if n < buf.len() {
                    buf[n] = g;
                }
                n += 1;
            }
            let groups = &buf[..n.min(buf.len())];
            if !(7..=15).contains(&digits(main))
                || reads_as_date(groups)
                // 3-2-4 is a social security number's shape (`ssn` below).
                || groups.iter().map(|g| g.len()).eq([3, 2, 4])
                // "3.5 4.2 140": decimals in a row, no number written with dots and spaces.
                || (main.contains('.') && main.contains(' '))
                || !groups_read_as_phone(groups, || phone_label_before(text, s, main, e))
                || !cue_before(text, s, 24, PHONE_CUES)
                || !first_value_after_words(text, s)
                || is_year_or_unit(text, e)
            {
                continue;
            }
            // After a word that also says other things ("home", "call", "cell", "office"), only
            // a number written as one: a trunk 0, a country code or an area code in brackets,
            // or two groups ("450 0840"). "Home glucose 110 128 145", "Cell counts 1200 1500".
            let written =
                main.starts_with(['0', '+', '(']) || main.split([' ', '-', '.']).count() == 2;
            if !written && !cue_before(text, s, 24, PHONE_WORDS) {
                continue;
            }
            let cat = phone_category(text, s);
            out.push(
                Finding::new(s, e, cat, 0.8, "phone.groups")
                    .with_subtype(if cat == Category::Fax { "fax" } else { "phone" }),
            );
        }
        for m in self.ssn.find_iter(text, hits) {
            let s = m.as_str();
            let cue = cue_before(
                text,
                m.start(),
                28,
                &["ssn", "ss#", "social security", "social", "soc sec", "ss"],
            );
            if s.len() == 9 {
                if cue {
                    out.push(Finding::new(m.start(), m.end(), Category::Ssn, 0.95, "ssn.cue"));
                }
                continue;
            }
            if cue {
                out.push(Finding::new(m.start(), m.end(), Category::Ssn, 0.97, "ssn.cue"));
            } else if validate::ssn::is_valid(s) {
                out.push(Finding::new(m.start(), m.end(), Category::Ssn, 0.85, "ssn"));
            } else {
                out.push(Finding::new(m.start(), m.end(), Category::Id, 0.6, "id.digits"));
            }
        }
        self.run_dates(text, hits, out);
        self.run_ages(text, hits, out);
        self.run_ids(text, dict, hits, out);
        for m in self.street.find_iter(text, hits) {
            let s = m.as_str();
            // "5 mg PO daily" is no address: the words before the suffix must look like a name
            // (capitalised, or typed in lower case after "lives at", "address", ...).
            let capitalised = street_plausible(s);
            let lower = !capitalised
                && lower_street_plausible(s)
                && cue_before(text, m.start(), 24, LOWER_STREET_CUES);
            if lower {
                // Its city, state and ZIP typed after it on the line ("1180 oak ave apt 3b
                // peoria il 61602"): up to a real ZIP within 48 bytes, words only between.
                if let Some(end) = zip_after_street(text, m.end(), dict) {
                    out.push(
                        Finding::new(m.start(), end, Category::Location, 0.85, "address.city_line")
                            .with_subtype("city_line"),
                    );
                }
            }
            if lower || capitalised {
                out.push(
                    Finding::new(m.start(), m.end(), Category::Location, 0.85, "address.street")
                        .with_subtype("street"),
                );
            }
        }
        for m in self.po_box.find_iter(text, hits).take(if hits.gate(kind::BOX) {
            usize::MAX
        } else {
            0
        }) {
            out.push(
                Finding::new(m.start(), m.end(), Category::Location, 0.9, "address.po_box")
                    .with_subtype("street"),
            );
        }
        for m in self.zip.find_iter(text, hits) {
            let s = m.as_str();
            let z: u32 = s[..5].parse().unwrap_or(0);
            let cue = cue_before(text, m.start(), 10, &["zip", "zipcode", "postal", "zip code"])
                || zip_key_before(text, m.start());
            let after_state = state_before(text, m.start(), dict);
            // An address's last line ("SOUTH NEWDEGATE, WA 16469"): a ZIP by its place, listed
            // or not, and the city before it a place too.
            let city = if after_state { city_before_state(text, m.start()) } else { None };
            let city = city.filter(|&(cs, ce)| city_plausible(&text[cs..ce], dict, z));
            if let Some((cs, ce)) = city {
                out.push(
                    Finding::new(cs, ce, Category::Location, 0.8, "address.city_line")
                        .with_subtype("city"),
                );
            }
            if cue || city.is_some() || ((after_state || s.len() == 10) && dict.is_zip5(z)) {
                out.push(
                    Finding::new(
                        m.start(),
                        m.end(),
                        Category::Location,
                        if cue { 0.95 } else { 0.85 },
                        "address.zip",
                    )
                    .with_subtype("zip"),
                );
            }
        }
        self.run_textual(text, hits, out);
    }

    /// Recognizers that need no digit.
    fn run_textual(&self, text: &str, hits: &Led, out: &mut Vec<Finding>) {
        for m in self.date_month_cue.find_iter(text, hits) {
            // Skip the cue word unless it is part of the date ("last December").
            let s = m.as_str();
            let sp = s.find(char::is_whitespace).unwrap_or(0);
            let cue = s[..sp].to_ascii_lowercase();
            let start =
                if matches!(cue.as_str(), "last" | "next" | "this" | "early" | "mid" | "late") {
                    m.start()
                } else {
                    m.start() + sp + 1
                };
            out.push(
                Finding::new(start, m.end(), Category::Date, 0.7, "date.month")
                    .with_subtype("month"),
            );
        }
        for m in self.holiday.find_iter(text, hits).take(if hits.gate(kind::HOLIDAY) {
            usize::MAX
        } else {
            0
        }) {
            out.push(
                Finding::new(m.start(), m.end(), Category::Date, 0.7, "date.holiday")
                    .with_subtype("holiday"),
            );
        }
        for m in self.age_decade.find_iter(text, hits).take(if hits.gate(kind::DECADE) {
            usize::MAX
        } else {
            0
        }) {
            // "in her 90s": only the decade is PHI; "in her" keeps the sentence readable.
            let start = m.start() + m.as_str().rfind([' ', '\t', '-']).map_or(0, |p| p + 1);
            out.push(
                Finding::new(start, m.end(), Category::Age, 0.85, "age.decade")
                    .with_subtype("over_89"),
            );
        }
        if hits.gate(kind::STREET) {
            for m in self.street_named.find_iter(text, hits) {
                out.push(
                    Finding::new(
                        m.start(),
                        m.end(),
                        Category::Location,
                        0.75,
                        "address.street_name",
                    )
                    .with_subtype("street"),
                );
            }
        }
    }

    fn run_dates(&self, text: &str, hits: &Led, out: &mut Vec<Finding>) {
        for m in self.date_numeric.find_iter(text, hits) {
            let s = m.as_str();
            let sep = s.as_bytes()[s.find(|c: char| !c.is_ascii_digit()).unwrap_or(0)];
            let parts: Vec<u32> = s.split(['/', '-', '.']).filter_map(|p| p.parse().ok()).collect();
            if parts.len() != 3 {
                continue;
            }
            let (a, b) = (parts[0], parts[1]);
            let valid = ((1..=12).contains(&a) && (1..=31).contains(&b))
                || ((1..=31).contains(&a) && (1..=12).contains(&b));
            let year_ok = s
                .rsplit(['/', '-', '.'])
                .next()
                .is_some_and(|y| y.len() == 2 || y.starts_with("19") || y.starts_with("20"));
            // Never a decimal number as a part ("1.5.12.3" is a version, "7.4.12" no date).
            if !valid
                || !year_ok
                || (sep == b'.' && s.rsplit('.').next().is_some_and(|y| y.len() == 2))
                || is_decimal_context(text, m.start(), m.end())
            {
                continue;
            }
            out.push(Finding::new(m.start(), m.end(), Category::Date, 0.95, "date.numeric"));
        }
        for m in self.date_iso.find_iter(text, hits) {
            out.push(Finding::new(m.start(), m.end(), Category::Date, 0.95, "date.iso"));
        }
        for m in self.date_md.find_iter(text, hits) {
            let (s, e) = (m.start(), m.end());
            let bytes = text.as_bytes();
            // The first half of a range whose second half is a full date ("1/3-1/7/2024").
            if range_to_date(text, e)
                && !matches!(byte_before(text, s), Some(b'/' | b'.' | b'-' | b':'))
            {
                out.push(
                    Finding::new(s, e, Category::Date, 0.8, "date.md").with_subtype("month_day"),
                );
                continue;
            }
            // Part of something longer (a full date, a ratio chain, a dose "5/325").
            if matches!(bytes.get(e), Some(b'/' | b'.' | b'-'))
                // a placeholder stands where digits were
                && bytes.get(e + 1).is_some_and(|&c| c.is_ascii_digit() || c == b'[')
                || matches!(byte_before(text, s), Some(b'/' | b'.' | b'-' | b':'))
            {
                continue;
            }
            let (a, b) = m.as_str().split_once('/').unwrap_or(("0", "0"));
            // "03/05" is written as a date, never as a fraction.
            let zero = a.starts_with('0') || b.starts_with('0');
            let (a, b): (u32, u32) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
            // The nearest word before that says a date follows ("seen", "on", "Tuesday").
            let date_cue = date_cue_before(text, s);
            // Fractions (1/2, 3/4) and scores (4/5 strength, 2/6 murmur), unless written as a
            // date or right after a date word ("Echo from 5/6").
            let after_date_word = date_cue.is_some_and(|c| c.1) && !fraction_range_after(text, e);
            if a < b && matches!(b, 2 | 3 | 4 | 5 | 6 | 8 | 10) && !zero && !after_date_word {
                continue;
            }
            // A cue before the number ("Pain 8/10", "Strength: RUE 5/5") keeps it, unless a
            // date word stands between ("Pain started on 9/14").
            if cue_before(
                text,
                s,
                date_cue.map_or(24, |c| s - c.0),
                &[
                    "bp",
                    "blood pressure",
                    "ratio",
                    "score",
                    "strength",
                    "power",
                    "grade",
                    "motor",
                    "murmur",
                    "scale",
                    "pain",
                    "gcs",
                    "apgar",
                    "sbp",
                    "dbp",
                    "mmhg",
                    "sets",
                    "reps",
                    "x",
                    "vs",
                    "vitals",
                    "pressure",
                    "p/o",
                    "nihss",
                    "mrs",
                    "phq",
                    "gad",
                    "aox",
                    "a&o",
                    "visual acuity",
                    "va",
                    "fio2",
                    "o2",
                    "pulses",
                    "reflexes",
                    "rom",
                ],
            ) {
                continue;
            }
            if word_after(
                text,
                e,
                &[
                    "mmhg", "tab", "tabs", "tablet", "tablets", "of", "strength", "dose", "cup",
                    "inch", "in", "cm", "mm", "ratio", "score", "mg", "ml", "units", "sets",
                    "reps", "times", "x", "vision", "pulses", "reflexes", "murmur", "systolic",
                    "lb", "lbs", "kg", "at", "ns", "doses", "puffs", "drops",
                ],
            ) {
                continue;
            }
            // Counts of things ("positive on 2/4 bottles", "3/12 lymph nodes"), even after a
            // date word; a rating out of 10 in a pain or scale clause ("rated on 3/10").
            let (num, den) = m.as_str().split_once('/').unwrap_or(("", ""));
            if word_after(
                text,
                e,
                &[
                    "cores",
                    "nodes",
                    "lymph",
                    "ln",
                    "lns",
                    "bottles",
                    "bottle",
                    "cultures",
                    "samples",
                    "specimens",
                    "biopsies",
                    "cards",
                    "sets",
                    "views",
                    "criteria",
                    "points",
                    "pain",
                    "scale",
                    "fingers",
                    "toes",
                    "teeth",
                    "ribs",
                    "vessels",
                    "sites",
                    "lesions",
                    "polyps",
                    "slides",
                    "fields",
                    "quadrants",
                    "lobes",
                ],
            ) || (den.trim_start_matches('0') == "10"
                && num.parse::<u32>().is_ok_and(|n| n <= 10)
                && cue_before(
                    text,
                    s,
                    clause_window(text, s, 48),
                    &["pain", "rated", "rates", "rating", "scale", "score", "scored", "severity"],
                ))
            {
                continue;
            }
            // Results ("Trop 2/2 negative"), unless a date word comes right before ("CT on 2/3
            // negative for bleed").
            if !date_cue.is_some_and(|c| c.1)
                && word_after(text, e, &["positive", "negative", "pos", "neg"])
            {
                continue;
            }
            out.push(Finding::new(s, e, Category::Date, 0.75, "date.md").with_subtype("month_day"));
        }
        for m in self.date_my.find_iter(text, hits) {
            if matches!(byte_before(text, m.start()), Some(b'/' | b'-' | b'.')) {
                continue;
            }
            out.push(
                Finding::new(m.start(), m.end(), Category::Date, 0.8, "date.my")
                    .with_subtype("month_year"),
            );
        }
        for m in self.date_month_first.find_iter(text, hits) {
            let s = m.as_str();
            // "may 5 mg", "mar 2 times": a lower-case "may"/"mar" before a dose is a verb.
            if s.starts_with(|c: char| c.is_ascii_lowercase())
                && word_after(
                    text,
                    m.end(),
                    &["mg", "ml", "mcg", "g", "times", "tabs", "units", "x"],
                )
            {
                continue;
            }
            out.push(Finding::new(m.start(), m.end(), Category::Date, 0.95, "date.text"));
        }
        for m in self.date_day_first.find_iter(text, hits) {
            let s = m.as_str();
            // "2 mar" in a lower-case dosing context is unlikely; still require a capital or a year.
            if !s.bytes().any(|c| c.is_ascii_uppercase()) && digits(s) <= 2 {
                continue;
            }
            out.push(Finding::new(m.start(), m.end(), Category::Date, 0.9, "date.text"));
        }
    }

    /// The category of an identifier cue (a whole match of `id.cue`), and the recognizer's
    /// name; `None` if `cue` is none.
    fn cue_category(&self, cue: &str) -> Option<(Category, &'static str)> {
        // Which group matched, read from the cue alone: far cheaper than captures over the
        // whole text.
        let c = self.cue_id_whole.captures(cue)?;
        Some(if c.name("ssn").is_some() {
            (Category::Ssn, "ssn.cue")
        } else if c.name("mrn").is_some() {
            (Category::Mrn, "mrn.cue")
        } else if c.name("hp").is_some() {
            (Category::HealthPlan, "health_plan.cue")
        } else if c.name("acct").is_some() {
            (Category::Account, "account.cue")
        } else if c.name("lic").is_some() {
            (Category::License, "license.cue")
        } else if c.name("veh").is_some() {
            (Category::Vehicle, "vehicle.cue")
        } else if c.name("dev").is_some() {
            (Category::Device, "device.cue")
        } else if c.name("bio").is_some() {
            (Category::Biometric, "biometric.cue")
        } else {
            (Category::Id, "id.cue")
        })
    }

    /// Keys in snake_case or camelCase as cues (`"patient_id": "45821"`, `patient_mrn=45821`,
    /// `"memberId": "55120"`), which the cue pattern cannot see, since `_` and a capital
    /// inside a word are no word boundary: the key's last one to three words are read as a
    /// cue, a trailing "number" or "value" aside ("mrn_number"), and the value must follow a
    /// `:` or `=`.
    fn run_keys(&self, text: &str, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        for (p, &c) in b.iter().enumerate() {
            if c != b':' && c != b'=' {
                continue;
            }
            // The key: letters, digits and `_` before the separator and the key's quote.
            let mut e = p;
            while e > 0 && matches!(b[e - 1], b' ' | b'\t') {
                e -= 1;
            }
            while e > 0 && matches!(b[e - 1], b'"' | b'\'' | b'\\') {
                e -= 1;
            }
            let mut s = e;
            while s > 0 && e - s <= 48 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_') {
                s -= 1;
            }
            if e - s < 3 || e - s > 48 || (s > 0 && b[s - 1].is_ascii_alphanumeric()) {
                continue;
            }
            let key = &text[s..e];
            let camel = key
                .as_bytes()
                .windows(2)
                .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
            if !key.contains('_') && !camel {
                continue;
            }
            // Its words, in lower case: `patient_MRN`, `patientMrn` → "patient mrn".
            let mut words: Vec<String> = Vec::new();
            for part in key.split('_').filter(|w| !w.is_empty()) {
                let mut from = 0;
                let pb = part.as_bytes();
                for k in 1..pb.len() {
                    if pb[k - 1].is_ascii_lowercase() && pb[k].is_ascii_uppercase() {
                        words.push(part[from..k].to_ascii_lowercase());
                        from = k;
                    }
                }
                words.push(part[from..].to_ascii_lowercase());
            }
            let mut last = words.len();
            if last > 1 && matches!(words[last - 1].as_str(), "value" | "val" | "str") {
                last -= 1;
            }
            // A code system's key ("loinc_id", "rxnorm_code") holds a code.
            if words.iter().any(|w| PUBLIC_CODE_CUES.contains(&w.as_str())) {
                continue;
            }
            let found = (1..=3.min(last)).rev().find_map(|n| {
                // A bare "id" says nothing of whose: "request_id", "span_id", "model_id" are
                // a system's; "patient_id", "member_id" name a person's.
                if n == 1
                    && last > 1
                    && matches!(words[last - 1].as_str(), "id" | "ids" | "identifier")
                {
                    return None;
                }
                self.cue_category(&words[last - n..last].join(" ")).or_else(|| {
                    // "mrn_number": the cue before a word that only says "a number".
                    (n > 1 && matches!(words[last - 1].as_str(), "number" | "num" | "no" | "nbr"))
                        .then(|| self.cue_category(&words[last - n..last - 1].join(" ")))
                        .flatten()
                })
            });
            let Some((cat, rec)) = found else { continue };
            if let Some((vs, ve)) = value_after_cue(text, e, true, cat == Category::License)
                .filter(|&(vs, ve)| !is_public_code(&text[vs..ve]))
            {
                out.push(Finding::new(vs, ve, cat, 0.9, rec));
            }
        }
    }

    fn run_ages(&self, text: &str, hits: &Led, out: &mut Vec<Finding>) {
        let push = |out: &mut Vec<Finding>, start: usize, end: usize| {
            out.push(Finding::new(start, end, Category::Age, 0.9, "age").with_subtype("over_89"));
        };
        for m in self.age.find_iter(text, hits) {
            if let Some(start) = age_start(text, m.start(), m.end()) {
                push(out, start, m.end());
            }
        }
        for m in self.age_subject.find_iter(text, hits) {
            if bare_age_after_subject(text, m.start(), m.end()) {
                push(out, subject_number(text, m.start(), m.end()), m.end());
            }
        }
    }

    fn run_ids(&self, text: &str, dict: &super::dict::Dict, hits: &Led, out: &mut Vec<Finding>) {
        for m in self.cue_id.find_iter(text, hits) {
            let cue = m.as_str();
            let Some((cat, rec)) = self.cue_category(cue) else { continue };
            // A bare "id" after a system's or a code system's word is theirs, not a person's
            // ("request id", "span_id", "model_id", "loinc_id").
            if cat == Category::Id
                && word_right_before(text, m.start()).is_some_and(|w| {
                    SYSTEM_ID_WORDS
                        .iter()
                        .chain(PUBLIC_CODE_CUES)
                        .any(|s| s.eq_ignore_ascii_case(w))
                })
            {
                continue;
            }
            // Lower-case short cues ("fin", "sn", "id", "tag") are ordinary words: need a
            // separator, unless the cue ends with one ("Confirmation #", "Ref no.").
            if let Some((vs, ve)) = value_after_cue(
                text,
                m.end(),
                (cue.len() <= 3 || cat == Category::Id) && !cue.ends_with(['#', '.']),
                cat == Category::License,
            ) {
                // "Rx #100 tabs", "Lic: 500 mg": a quantity, not an identifier; "study id:
                // NCT04280705": a public registry's number.
                if word_after(text, ve, QUANTITY_WORDS)
                    || (cat == Category::Id && is_public_code(&text[vs..ve]))
                {
                    continue;
                }
                out.push(Finding::new(vs, ve, cat, 0.93, rec));
            }
        }
        if hits.seen.key {
            self.run_keys(text, out);
        }
        for m in self.digit_groups.find_iter(text, hits) {
            let s = m.as_str();
            let n = digits(s);
            if n < 7
                || is_year_or_unit(text, m.end())
                || is_decimal_context(text, m.start(), m.end())
                || is_time_range(s)
                || cue_before(text, m.start(), 16, PUBLIC_CODE_CUES)
            {
                continue;
            }
            let card = validate::card::is_valid(s);
            // "1000 2000 3000" is a list of values unless it is a valid card number.
            if s.contains(' ') && !card {
                continue;
            }
            let (cat, rec) = if card {
                (Category::Account, "account.card")
            } else {
                (Category::Id, "id.digits")
            };
            out.push(Finding::new(m.start(), m.end(), cat, if card { 0.9 } else { 0.6 }, rec));
        }
        for m in self.alnum_id.find_iter(text, hits) {
            let s = m.as_str().trim_start_matches('#');
            let n = digits(s);
            let letters = s.bytes().filter(u8::is_ascii_alphabetic).count();
            if validate::vin::is_valid(s) {
                out.push(
                    Finding::new(m.start(), m.end(), Category::Vehicle, 0.9, "vehicle.vin")
                        .with_subtype("vin"),
                );
                continue;
            }
            if s.len() == 9 && validate::dea::is_valid(s) {
                out.push(
                    Finding::new(m.start(), m.end(), Category::License, 0.85, "license.dea")
                        .with_subtype("dea"),
                );
                continue;
            }
            if s.len() >= 11 && validate::mbi::is_valid(s) {
                out.push(
                    Finding::new(m.start(), m.end(), Category::HealthPlan, 0.8, "health_plan.mbi")
                        .with_subtype("mbi"),
                );
                continue;
            }
            if s.len() >= 15 && validate::iban::is_valid(s) {
                out.push(
                    Finding::new(m.start(), m.end(), Category::Account, 0.85, "account.iban")
                        .with_subtype("iban"),
                );
                continue;
            }
            // A code with at least five digits and a few letters: a record number, not "HbA1c"
            // or "COVID-19". Known non-PHI prefixes (trials, variants) are kept.
            if n >= 5
                && letters <= 6
                && !is_public_code(s)
                && !is_year_or_unit(text, m.end())
                && !is_clinical_shorthand(s)
                && !cue_before(text, m.start(), 16, PUBLIC_CODE_CUES)
            {
                out.push(Finding::new(m.start(), m.end(), Category::Id, 0.6, "id.alnum"));
            } else if n >= 3 && letters >= 1 && s.contains('-') && dict_upper_prefix(s, dict) {
                out.push(Finding::new(m.start(), m.end(), Category::Id, 0.5, "id.alnum"));
            }
        }
    }
}

/// Things and body parts that turn by degrees: "turned 90" after one is no birthday.
const TURNING_THINGS: &[&str] = &[
    "bed",
    "table",
    "stretcher",
    "chair",
    "head",
    "neck",
    "body",
    "trunk",
    "torso",
    "knee",
    "hip",
    "arm",
    "leg",
    "foot",
    "hand",
    "wrist",
    "wheel",
    "dial",
    "knob",
    "valve",
    "it",
    "image",
    "probe",
    "transducer",
    "camera",
    "scope",
    "gantry",
    "beam",
    "needle",
    "catheter",
];

/// Where the number of an `age.subject` match ("she is 94") from `s` to `e` starts.
fn subject_number(text: &str, s: usize, e: usize) -> usize {
    e - text.as_bytes()[s..e].iter().rev().take_while(|c| c.is_ascii_digit()).count()
}

/// Words of a vital sign or a lab before "she is 94": then the number is its reading ("Sats?
/// She is 94.", "Temp: he is 99", "HR: pt is 92").
const READING_WORDS: &[&str] = &[
    "temp",
    "t",
    "tmax",
    "sat",
    "sats",
    "spo2",
    "o2",
    "ox",
    "pox",
    "hr",
    "pulse",
    "rate",
    "rr",
    "bp",
    "sbp",
    "dbp",
    "map",
    "systolic",
    "diastolic",
    "glucose",
    "sugar",
    "sugars",
    "bg",
    "fsbs",
    "fingerstick",
    "weight",
    "wt",
    "height",
    "ht",
    "percentile",
    "score",
    "sodium",
    "na",
    "potassium",
    "k",
    "level",
    "levels",
    "reading",
    "readings",
    "fever",
    "febrile",
];

/// Whether the number of "she is 94" (the match from `s` to `e`) stands alone as an age: the
/// sentence or clause ends after it ("She is 94.", "he is 91, lives alone"), or a word goes on
/// about the person ("is 92 and on warfarin", "is 93 with CHF"). Not a reading or a measure:
/// "she is 94% on room air", "is 94 on 2L", "is 96/60", nor after a vital's or a lab's word on
/// its line ("SpO2: she is 94").
fn bare_age_after_subject(text: &str, s: usize, e: usize) -> bool {
    let b = text.as_bytes();
    let mut lo = s.saturating_sub(48);
    while !text.is_char_boundary(lo) {
        lo += 1;
    }
    let line = &b[lo..s];
    let line = &line[line.iter().rposition(|c| *c == b'\n').map_or(0, |i| i + 1)..];
    if line
        .split(|c| !c.is_ascii_alphanumeric())
        .any(|w| READING_WORDS.iter().any(|r| r.as_bytes().eq_ignore_ascii_case(w)))
    {
        return false;
    }
    let rest = text[e..].trim_start_matches([' ', '\t']);
    match rest.as_bytes().first() {
        None => true,
        Some(b'.' | b',' | b';' | b'!' | b'?' | b')' | b'\n' | b'\r') => {
            // "94.5" is a reading.
            !(rest.starts_with('.') && rest.as_bytes().get(1).is_some_and(u8::is_ascii_digit))
        }
        // (The pattern ends at a word's boundary: a word here comes after a space.)
        Some(c) if c.is_ascii_alphabetic() => {
            let w = rest.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default();
            ["and", "but", "with", "now", "today", "yesterday", "this", "next", "last", "so"]
                .iter()
                .any(|x| x.eq_ignore_ascii_case(w))
        }
        _ => false,
    }
}

/// Where the age of an `age` match at `s..e` starts, or `None` if the match is no age.
/// After a cue ("Age:\n92", `"age": 92`, "turned 90") only the number is the age: the label
/// and a JSON key stay as they are, and "aged 90 days", "turned 90 degrees" are no ages. A
/// number with a bare M or F ("96 M", "93F") is no temperature ("T 98F", "Tmax 102F") nor a
/// distance ("Ambulated 120m"), and a lower-case "m" only where an age stands ("a 91m"); a
/// number with bare years ("93 yrs,", "now 90 years") only where an age stands, and the
/// phrase ends there: "for 90 years" and "the past 100 years of" are durations.
fn age_start(text: &str, s: usize, e: usize) -> Option<usize> {
    let m = &text[s..e];
    let b = m.as_bytes();
    if b[0].is_ascii_alphabetic() {
        let cue = m.bytes().take_while(u8::is_ascii_alphabetic).count();
        let lw = m[..cue].to_ascii_lowercase();
        if matches!(lw.as_str(), "born" | "yob" | "year" | "birth" | "dob") {
            // A birth year is PHI when it shows an age over 89 ("Born in 1928"): the year
            // only, from 89 years ago and before (one born then may be 90 already).
            let year: i32 = m[m.len() - 4..].parse().ok()?;
            let now = time::OffsetDateTime::now_utc().year();
            return (year <= now - 89).then_some(e - 4);
        }
        if !matches!(lw.as_str(), "age" | "aged" | "turned" | "turns" | "turning") {
            return Some(s);
        }
        // A thing that turns: "the bed turned 90 for the procedure", "head turned 90".
        if lw.starts_with("turn")
            && word_right_before(text, s)
                .is_some_and(|w| TURNING_THINGS.iter().any(|t| t.eq_ignore_ascii_case(w)))
        {
            return None;
        }
        // A unit or a turn after the number ("aged 90 days", "turned 90° to the left",
        // "turned 90-degrees", "turned 90 seconds after").
        let after = text[e..].trim_start_matches([' ', '\t', '-']);
        if after.starts_with(['°', 'º', '%'])
            || word_after(
                text,
                e + (text.len() - e - after.len()),
                &[
                    "days",
                    "day",
                    "d",
                    "weeks",
                    "week",
                    "wk",
                    "wks",
                    "months",
                    "month",
                    "mo",
                    "mos",
                    "hours",
                    "hour",
                    "hr",
                    "h",
                    "minutes",
                    "min",
                    "seconds",
                    "second",
                    "sec",
                    "secs",
                    "s",
                    "degrees",
                    "degree",
                    "deg",
                    "percent",
                    "mg",
                    "kg",
                    "lbs",
                    "lb",
                    "to",
                    "left",
                    "right",
                    "clockwise",
                    "counterclockwise",
                    "toward",
                    "towards",
                    "times",
                ],
            )
        {
            return None;
        }
        // The number, after the cue and any signs ("age\": \"92").
        return m[cue..].find(|c: char| c.is_ascii_alphanumeric()).map(|p| s + cue + p);
    }
    // Part of a decimal ("37.95 F").
    if s >= 2 && text.as_bytes()[s - 1] == b'.' && text.as_bytes()[s - 2].is_ascii_digit() {
        return None;
    }
    let last = *b.last()?;
    let num = m.trim_end_matches(|c: char| !c.is_ascii_digit() && c != '+');
    let rest = m[num.len()..].trim_start_matches([' ', '\t', '-']);
    if rest.len() == 1 && matches!(last.to_ascii_lowercase(), b'm' | b'f') {
        // A number and a bare M or F. Its cues are read in its own clause.
        let window = clause_window(text, s, 24);
        let temperature = last.eq_ignore_ascii_case(&b'f')
            && cue_before(
                text,
                s,
                window.min(20),
                &[
                    "t",
                    "temp",
                    "temps",
                    "temperature",
                    "tmax",
                    "tmin",
                    "tcurrent",
                    "tc",
                    "tm",
                    "febrile",
                    "afebrile",
                    "fever",
                    "fevers",
                    "spiked",
                    "max",
                    "oral",
                    "rectal",
                    "axillary",
                    "tympanic",
                    "vitals",
                    "vs",
                    "tmp",
                    "bt",
                    "core",
                    "hypothermic",
                    "rewarmed",
                    "warmed",
                    "cooled",
                    "degrees",
                ],
            );
        // Room, bed, weight and rates ("Rm 96 F", "wt 96 M", "HR 96 M").
        let other = cue_before(
            text,
            s,
            window.min(12),
            &[
                "room", "rm", "bed", "wt", "weight", "hr", "pulse", "rate", "rr", "bp", "sat",
                "spo2", "o2", "unit", "floor", "ward", "bay",
            ],
        );
        // A number, a space and a bare M or F ("96 M presents", "94 F, SOB"): only where an
        // age stands (a line's start, "a", "pt", ...; not after a label, "Vitals: 99 F"), and
        // no temperature written after it ("97 F oral").
        let spaced = m[num.len()..].starts_with([' ', '\t', '-']);
        let spaced_ok = !spaced
            || (age_stands_strictly_before(text, s)
                && !word_after(
                    text,
                    e,
                    &["oral", "orally", "rectal", "axillary", "tympanic", "temporal"],
                ));
        // "Temp. 99 F", "T. 99 F": a cue cut off by its abbreviation's dot.
        let temperature = temperature
            || (last.eq_ignore_ascii_case(&b'f')
                && abbreviated_cue_before(text, s, &["t", "temp", "tmp"]));
        let distance = last.eq_ignore_ascii_case(&b'm')
            && cue_before(
                text,
                s,
                window,
                &[
                    "walked",
                    "walk",
                    "walks",
                    "walking",
                    "ambulated",
                    "ambulate",
                    "ambulates",
                    "ambulating",
                    "ambulation",
                    "ran",
                    "run",
                    "distance",
                    "swam",
                    "gait",
                    "6mwt",
                    "6mwd",
                    "meters",
                    "metres",
                ],
            );
        // A unit's letter ("100 M/min", "96 m^2").
        let unit = matches!(text.as_bytes().get(e), Some(b'/' | b'^'));
        if temperature
            || distance
            || unit
            || other
            || !spaced_ok
            || (last == b'm' && !age_stands_before(text, s))
        {
            return None;
        }
    } else if rest.bytes().all(|c| c.is_ascii_alphabetic())
        && matches!(rest.to_ascii_lowercase().as_str(), "year" | "years" | "yr" | "yrs")
    {
        // A number and bare years: an age where it stands, the phrase ending there.
        let b = text.as_bytes();
        let next = b[e..].iter().find(|&&c| c != b' ' && c != b'\t');
        if !next.is_none_or(|c| matches!(c, b',' | b';' | b'.' | b')' | b'\n' | b'\r'))
            || !age_stands_before(text, s)
        {
            return None;
        }
    }
    Some(s)
}

/// The bytes before `pos`, at most `max`, back to the end of the clause before (`;`, `?`,
/// `!`, or `.` before a blank).
fn clause_window(text: &str, pos: usize, max: usize) -> usize {
    let b = text.as_bytes();
    let lo = pos.saturating_sub(max);
    (lo..pos)
        .rev()
        .find(|&i| {
            matches!(b[i], b';' | b'?' | b'!')
                || (b[i] == b'.' && b.get(i + 1).is_some_and(|c| c.is_ascii_whitespace()))
        })
        .map_or(pos - lo, |i| pos - i - 1)
}

/// Whether an age stands at `pos` by what comes before it on its line: nothing, a sign ("Pt:
/// 93 yrs", "Smith, 93 yrs"), or a word that introduces an age ("a 91m", "now 90 years").
fn age_stands_before(text: &str, pos: usize) -> bool {
    let b = text.as_bytes();
    let mut i = pos;
    while i > 0 && matches!(b[i - 1], b' ' | b'\t') {
        i -= 1;
    }
    if i == 0 || !b[i - 1].is_ascii_alphanumeric() {
        return true;
    }
    let end = i;
    while i > 0 && b[i - 1].is_ascii_alphanumeric() {
        i -= 1;
    }
    let w = &b[i..end];
    ["a", "an", "pt", "patient", "is", "was", "now", "age", "aged", "s", "being", "of"]
        .iter()
        .any(|c| c.as_bytes().eq_ignore_ascii_case(w))
}

/// Whether an age stands at `pos` for a number with a bare sex letter after a space: at the
/// start of the text or a line (spaces aside), after a sentence's end, or after a word that
/// introduces one ("a", "pt", "is", ...), never after a label's `:` ("Vitals: 99 F").
fn age_stands_strictly_before(text: &str, pos: usize) -> bool {
    let b = text.as_bytes();
    let mut i = pos;
    while i > 0 && matches!(b[i - 1], b' ' | b'\t') {
        i -= 1;
    }
    if i == 0 || matches!(b[i - 1], b'\n' | b'\r' | b'(' | b'"' | b';') {
        return true;
    }
    if matches!(b[i - 1], b'.' | b'!' | b'?') {
        // A sentence's end, not an abbreviation's dot ("Temp. 99 F").
        return i >= 3
            && b[i - 2].is_ascii_alphabetic()
            && b[i - 3].is_ascii_alphabetic()
            && !abbreviated_cue_before(text, pos, &["temp", "tmp"]);
    }
    if b[i - 1] == b':' {
        // A label that introduces a patient ("CC: 94 F", "HPI: 96 M", "Pt: 93 F").
        let end = i - 1;
        let mut s = end;
        while s > 0 && (b[s - 1].is_ascii_alphabetic() || b[s - 1] == b'/') {
            s -= 1;
        }
        return ["cc", "hpi", "id", "pt", "patient", "age", "age/sex", "demographics", "one-liner"]
            .iter()
            .any(|w| w.as_bytes().eq_ignore_ascii_case(&b[s..end]));
    }
    if !b[i - 1].is_ascii_alphanumeric() {
        return false;
    }
    // After a name ("Jane Doe 96 F"): a capitalised word of letters (cues of rooms, rates
    // and vitals are ruled out before).
    let end = i;
    let mut s = end;
    while s > 0 && b[s - 1].is_ascii_alphabetic() {
        s -= 1;
    }
    let w = &b[s..end];
    let capitalised = w.len() >= 2
        && w[0].is_ascii_uppercase()
        && w[1..].iter().all(u8::is_ascii_lowercase)
        && (s == 0 || !b[s - 1].is_ascii_alphanumeric());
    capitalised || age_stands_before(text, pos)
}

/// Whether the word right before `pos` (spaces aside) is one of `words` written with an
/// abbreviation's dot ("Temp. 99 F").
fn abbreviated_cue_before(text: &str, pos: usize, words: &[&str]) -> bool {
    let b = text.as_bytes();
    let mut i = pos;
    while i > 0 && b[i - 1] == b' ' {
        i -= 1;
    }
    if i == 0 || b[i - 1] != b'.' {
        return false;
    }
    let end = i - 1;
    let mut s = end;
    while s > 0 && b[s - 1].is_ascii_alphabetic() {
        s -= 1;
    }
    (s == 0 || !b[s - 1].is_ascii_alphanumeric())
        && words.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(&b[s..end]))
}

/// Whether a range to another number follows `pos` ("from 1/2 to 3/4", "1/2-1 tab"): then
/// a fraction is one even after a date word.
fn fraction_range_after(text: &str, pos: usize) -> bool {
    let b = text.as_bytes();
    let mut i = pos;
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if b[i..].starts_with(b"-") {
        i += 1;
    } else if b.len() >= i + 3 && b[i..i + 2].eq_ignore_ascii_case(b"to") && b[i + 2] == b' ' {
        i += 3;
    } else {
        return false;
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    b.get(i).is_some_and(u8::is_ascii_digit)
}

/// Whether a dash and a full m/d/y date follow `pos` ("-1/7/2024", " - 1/7/24").
fn range_to_date(text: &str, pos: usize) -> bool {
    let b = text.as_bytes();
    let blanks = |mut i: usize| {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        i
    };
    let i = blanks(pos);
    if b.get(i) != Some(&b'-') {
        return false;
    }
    let i = blanks(i + 1);
    let run = |i: usize| b[i.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    let (m, j) = (run(i), i + run(i));
    if !(1..=2).contains(&m) || b.get(j) != Some(&b'/') {
        return false;
    }
    let d = run(j + 1);
    if !(1..=2).contains(&d) || b.get(j + 1 + d) != Some(&b'/') {
        return false;
    }
    let k = j + 2 + d;
    let y = run(k);
    (y == 2 || y == 4) && !b.get(k + y).is_some_and(u8::is_ascii_alphanumeric)
}

/// Words after which a number is a date ("seen 3/4", "Echo from 5/6", "Tuesday 03/05").
const DATE_CUES: &[&str] = &[
    "on",
    "seen",
    "from",
    "since",
    "dated",
    "dos",
    "date",
    "admitted",
    "discharged",
    "until",
    "till",
    "thru",
    "started",
    "began",
    "onset",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thur",
    "thurs",
    "fri",
];

/// The nearest word of [`DATE_CUES`] in the 24 bytes before `pos`, on its line and with only
/// words, blanks, `:` and `,` between: where it ends, and whether it is the word right before.
fn date_cue_before(text: &str, pos: usize) -> Option<(usize, bool)> {
    let b = text.as_bytes();
    let lo = pos.saturating_sub(24);
    let mut i = pos;
    let mut first = true;
    while i > lo {
        while i > lo && matches!(b[i - 1], b' ' | b'\t' | b':' | b',') {
            i -= 1;
        }
        let end = i;
        while i > lo && b[i - 1].is_ascii_alphanumeric() {
            i -= 1;
        }
        // Another sign, a line break, or a word cut by the window.
        if i == end || (i == lo && lo > 0 && b[lo - 1].is_ascii_alphanumeric()) {
            return None;
        }
        if DATE_CUES.iter().any(|c| c.as_bytes().eq_ignore_ascii_case(&b[i..end])) {
            return Some((end, first));
        }
        first = false;
    }
    None
}

/// The value after an identifier cue: `MRN: #SF-998877`, `member ID 789456123`, `acct no. 55-1`,
/// `MRN # 45821`, `MRN No.: 45821`, `MRN - 45821`, `"mrn": "SF-998877"`, `mrn=45821`.
/// Returns its byte range. The value must hold a digit.
/// With `credential`, a short word in capitals between the cue and the number is skipped: a
/// credential or a state (`license RN 845512`, `DL CA D1234567`).
fn value_after_cue(
    text: &str,
    cue_end: usize,
    need_sep: bool,
    credential: bool,
) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut i = cue_end;
    let mut saw_sep = false;
    // Separators and filler words: spaces, ':', '=', a '#' or a dash standing alone, a JSON
    // key's closing quote before its ':' (`"mrn": "SF-998877"`, `"mrn number": "5"`), "is",
    // "number", "no.".
    loop {
        let key_quote = quote_len(&b[i..]);
        if key_quote > 0 {
            let after = i + key_quote;
            let colon = after + b[after..].iter().take_while(|&&c| c == b' ' || c == b'\t').count();
            if matches!(b.get(colon), Some(b':' | b'=')) {
                i = colon;
            }
        }
        while i < b.len()
            && (matches!(b[i], b' ' | b'\t' | b':' | b'=' | b'(' | b'\n')
                || (matches!(b[i], b'#' | b'-')
                    && !b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)))
        {
            saw_sep |= b[i] != b' ';
            i += 1;
            if i - cue_end > 12 {
                return None;
            }
        }
        let rest = &b[i..];
        let mut matched = false;
        for w in ["is", "was", "number", "no.", "no", "num", "of"] {
            // A filler word ends at a separator or a key's closing quote: "No.: 5", "no# 5".
            if rest.len() > w.len()
                && rest[..w.len()].eq_ignore_ascii_case(w.as_bytes())
                && matches!(rest[w.len()], b' ' | b'\t' | b':' | b'#' | b'=' | b'"' | b'\'' | b'\\')
            {
                i += w.len();
                matched = true;
                saw_sep = true;
                break;
            }
        }
        if !matched {
            break;
        }
    }
    // The value's opening quote.
    if saw_sep {
        i += quote_len(&b[i..]);
    }
    if credential {
        let w = b[i..].iter().take_while(|c| c.is_ascii_uppercase()).count();
        let next = i + w + 1;
        if (2..=4).contains(&w)
            && b.get(i + w) == Some(&b' ')
            && b[next.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .any(u8::is_ascii_digit)
        {
            i = next;
            saw_sep = true;
        }
    }
    if i < b.len() && b[i] == b'#' {
        saw_sep = true;
    }
    if need_sep && !saw_sep && !b.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let start = i;
    let mut end = i;
    let mut nd = 0;
    let mut j = i;
    while j < b.len() {
        let c = b[j];
        if c.is_ascii_alphanumeric() {
            nd += c.is_ascii_digit() as usize;
            j += 1;
            end = j;
        } else if matches!(c, b'-' | b'/' | b'.' | b'#' | b'_')
            && j + 1 < b.len()
            && b[j + 1].is_ascii_alphanumeric()
        {
            j += 1;
        } else if c == b' '
            && nd >= 2
            && j + 1 < b.len()
            && b[j + 1].is_ascii_digit()
            && end - start < 16
        {
            // "1234 5678": digit groups split by single spaces
            j += 1;
        } else {
            break;
        }
        if j - start > 40 {
            break;
        }
    }
    if nd == 0 || end <= start {
        return None;
    }
    // A bare small number after a weak cue ("id 3") is not an identifier.
    let v = &text[start..end];
    if nd < 3 && v.len() < 4 {
        return None;
    }
    Some((start, end))
}

fn phone_category(text: &str, start: usize) -> Category {
    if cue_before(text, start, 20, &["fax", "faxed", "facsimile", "fx", "f"]) {
        Category::Fax
    } else {
        Category::Phone
    }
}

/// Whether a unit or a clinical word follows a number ("1500000 copies", "2000 mL").
/// Words before a telephone number.
const PHONE_CUES: &[&str] = &[
    "phone",
    "tel",
    "telephone",
    "cell",
    "mobile",
    "call",
    "pager",
    "pgr",
    "beeper",
    "ext",
    "extension",
    "fax",
    "contact",
    "reach",
    "ph",
    "number",
    "home",
    "work",
    "desk",
    "office",
    "dial",
    "landline",
    "whatsapp",
];

/// Words that say a number is a telephone's and nothing else.
const PHONE_WORDS: &[&str] =
    &["phone", "tel", "telephone", "mobile", "fax", "pager", "ph", "landline", "whatsapp", "dial"];

/// Whether the number `main` (from `s`; its match ends at `e`) is a telephone's by its label:
/// eight digits or more right after a word that means a telephone, as a field's label ("Phone:
/// 72 128 827", "Mobile 723 813 266", "Tel. no. 72 128 827"), and no readings' word after it
/// ("Phone: 98 112 140 sugars", "Phone visit 110 70 88" has no label).
fn phone_label_before(text: &str, s: usize, main: &str, e: usize) -> bool {
    let b = text.as_bytes();
    let mut i = s;
    let back_spaces = |i: &mut usize| {
        while *i > 0 && matches!(b[*i - 1], b' ' | b'\t') {
            *i -= 1;
        }
    };
    let word_before = |i: usize| {
        let mut k = i;
        while k > 0 && b[k - 1].is_ascii_alphabetic() {
            k -= 1;
        }
        (k, &text[k..i])
    };
    back_spaces(&mut i);
    if i > 0 && matches!(b[i - 1], b':' | b'#' | b'.') {
        i -= 1;
        back_spaces(&mut i);
    }
    let (k, w) = word_before(i);
    if ["number", "no", "nr"].iter().any(|n| n.eq_ignore_ascii_case(w)) {
        i = k;
        back_spaces(&mut i);
        if i > 0 && b[i - 1] == b'.' {
            i -= 1;
        }
    }
    let (_, w) = word_before(i);
    digits(main) >= 8
        && PHONE_WORDS.iter().any(|p| p.eq_ignore_ascii_case(w))
        && !word_after(
            text,
            e,
            &["readings", "reading", "sugars", "sugar", "fasting", "cuff", "glucose", "bp", "mmhg"],
        )
}

/// Whether groups of digits can be a telephone number written in groups: not a run of short
/// readings ("110 128 145 132 98", "132 84 128 80": three or more groups of three digits or
/// fewer, none starting with 0) unless a telephone's label comes right before (`said`, asked
/// only then: "Phone: 72 128 827", as many countries write their numbers), and not clock times
/// ("0700 1900").
fn groups_read_as_phone(groups: &[&str], said: impl FnOnce() -> bool) -> bool {
    let readings =
        groups.len() >= 3 && groups.iter().all(|g| g.len() <= 3 && !g.starts_with('0')) && !said();
    let hhmm = |g: &&str| {
        g.len() == 4
            && g[..2].parse::<u32>().is_ok_and(|h| h <= 23)
            && g[2..].parse::<u32>().is_ok_and(|m| m <= 59)
    };
    let times = groups.len() >= 2 && groups.iter().all(hhmm);
    !readings && !times
}

/// Three groups that read as a date: `2012-10-01`, `01.10.2012`.
fn reads_as_date(groups: &[&str]) -> bool {
    let year = |g: &str| g.len() == 4 && (g.starts_with("19") || g.starts_with("20"));
    groups.len() == 3
        && ((year(groups[0]) && groups[1].len() <= 2 && groups[2].len() <= 2)
            || (year(groups[2]) && groups[0].len() <= 2 && groups[1].len() <= 2))
}

fn is_year_or_unit(text: &str, end: usize) -> bool {
    word_after(
        text,
        end,
        &[
            "copies", "cells", "iu", "u", "units", "ml", "mg", "mcg", "g", "kg", "mm", "cm", "ng",
            "pg", "cfu", "/ml", "per", "k", "m", "mmol", "meq", "x", "times", "patients", "people",
            "cases", "steps", "calories", "kcal", "usd", "dollars",
        ],
    )
}

/// A shift or time range in 24-hour clock ("0700-1900", "2300-0700"): no identifier.
fn is_time_range(s: &str) -> bool {
    let hhmm = |t: &str| {
        t.len() == 4
            && t.bytes().all(|c| c.is_ascii_digit())
            && t[..2].parse::<u32>().is_ok_and(|h| h <= 24)
            && t[2..].parse::<u32>().is_ok_and(|m| m <= 59)
    };
    s.split_once('-').is_some_and(|(a, b)| hhmm(a) && hhmm(b))
}

/// Inside a decimal number or a longer dotted chain.
fn is_decimal_context(text: &str, s: usize, e: usize) -> bool {
    let b = text.as_bytes();
    (s >= 2 && b[s - 1] == b'.' && b[s - 2].is_ascii_digit())
        || (e + 1 < b.len() && b[e] == b'.' && b[e + 1].is_ascii_digit())
}

/// Words of a dose or a quantity after a number.
const QUANTITY_WORDS: &[&str] = &[
    "mg", "mcg", "ml", "g", "kg", "tab", "tabs", "tablet", "tablets", "cap", "caps", "capsule",
    "capsules", "pills", "refills", "units", "doses", "puffs",
];

/// Words before a bare "id" that make it a system's identifier, not a person's.
const SYSTEM_ID_WORDS: &[&str] = &[
    "request",
    "span",
    "trace",
    "build",
    "job",
    "ticket",
    "question",
    "model",
    "rule",
    "session",
    "message",
    "msg",
    "thread",
    "run",
    "task",
    "event",
    "correlation",
    "transaction",
    "commit",
    "version",
    "deployment",
    "container",
    "pod",
    "node",
    "instance",
    "file",
    "object",
    "item",
    "product",
    "sku",
    "protocol",
    "response",
    "conversation",
    "chat",
    "completion",
    "tool",
    "call",
    "function",
    "batch",
    "tenant",
    "org",
    "organization",
    "process",
    "worker",
    "queue",
    "cluster",
    "project",
    "workflow",
    "pipeline",
    "step",
    "form",
    "field",
    "column",
    "table",
    "template",
    "api",
    "app",
];

/// The word right before `pos`, joined to it by one space, `_` or `-` on the same line.
fn word_right_before(text: &str, pos: usize) -> Option<&str> {
    let b = text.as_bytes();
    if pos < 2 || !matches!(b[pos - 1], b' ' | b'_' | b'-') {
        return None;
    }
    let end = pos - 1;
    let mut s = end;
    while s > 0 && b[s - 1].is_ascii_alphabetic() {
        s -= 1;
    }
    (s < end && (s == 0 || !b[s - 1].is_ascii_alphanumeric())).then(|| &text[s..end])
}

/// Names of public code systems: a number after one is a code, not a person's identifier
/// ("SNOMED CT 44054006", "NDC 0169-4132-12", "PMID: 31415926").
const PUBLIC_CODE_CUES: &[&str] = &[
    "snomed", "sctid", "ndc", "pmid", "pmcid", "loinc", "cpt", "hcpcs", "icd", "rxnorm", "rxcui",
    "umls", "cui", "doi", "isbn", "nct", "pcs", "unii", "meddra", "ensembl", "mesh", "atc",
];

/// Clinical shorthand that has the shape of a code: obstetric history ("G2P1001", "G3P2012":
/// gravida, para and its four counts) and a product of two numbers ("AC 450x16" ventilator
/// settings, "2x3 cm").
fn is_clinical_shorthand(s: &str) -> bool {
    let b = s.as_bytes();
    let digits_from = |i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if b.len() >= 4 && b[0].eq_ignore_ascii_case(&b'g') {
        let g = digits_from(1);
        if (1..=2).contains(&g) && b.get(1 + g).is_some_and(|c| c.eq_ignore_ascii_case(&b'p')) {
            let p = digits_from(2 + g);
            return (1..=4).contains(&p) && 2 + g + p == b.len();
        }
    }
    let a = digits_from(0);
    a > 0
        && b.get(a).is_some_and(|c| c.eq_ignore_ascii_case(&b'x'))
        && a + 1 < b.len()
        && digits_from(a + 1) == b.len() - a - 1
}

fn is_public_code(s: &str) -> bool {
    let u = s.to_ascii_uppercase();
    [
        "NCT", "RS", "PMID", "PMC", "DOI", "ISBN", "ICD", "CPT", "LOINC", "NDC", "GSE", "NM_",
        "NP_", "ATCC", "ORCID", "ENSG", "ENST", "ENSP",
    ]
    .iter()
    .any(|p| u.starts_with(p))
}

fn dict_upper_prefix(s: &str, _dict: &super::dict::Dict) -> bool {
    // "SJH-1234": an upper-case letter prefix of 2-5 letters, a dash, and digits.
    let (p, rest) = match s.split_once('-') {
        Some(x) => x,
        None => return false,
    };
    (2..=5).contains(&p.len())
        && p.bytes().all(|c| c.is_ascii_uppercase())
        && rest.bytes().all(|c| c.is_ascii_digit())
        && rest.len() >= 4
}

fn state_before(text: &str, pos: usize, dict: &super::dict::Dict) -> bool {
    let before = text[..pos].trim_end_matches([' ', ',', '\t']);
    let word_start = before
        .rfind(|c: char| !c.is_ascii_alphabetic())
        .map_or(0, |i| i + before[i..].chars().next().map_or(1, char::len_utf8));
    let w = &before[word_start..];
    dict.is_state_abbr(w)
        || (w.len() > 3 && dict.flags(&w.to_ascii_lowercase()) & super::dict::flag::STATE_NAME != 0)
}

/// Whether a key or a label naming a ZIP code ends just before `pos`, across a key's quotes
/// and its `:` or `=`: `"postal code": "02139"`, `"postalCode":"02139"`, `zip_code=02139`.
fn zip_key_before(text: &str, pos: usize) -> bool {
    let b = &text.as_bytes()[..pos];
    let sep = b
        .iter()
        .rev()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'"' | b'\'' | b'\\' | b':' | b'='))
        .count();
    if sep == 0 || sep > 8 {
        return false;
    }
    let key = &b[..b.len() - sep];
    [
        "zip",
        "zipcode",
        "zip code",
        "zip_code",
        "postal code",
        "postal_code",
        "postalcode",
        "postcode",
        "post code",
    ]
    .iter()
    .any(|k| {
        key.len() >= k.len()
            && key[key.len() - k.len()..].eq_ignore_ascii_case(k.as_bytes())
            && !key[..key.len() - k.len()].last().is_some_and(u8::is_ascii_alphanumeric)
    })
}

/// Before a ZIP at `pos` that follows a state ([`state_before`]): the city of an address's last
/// line, "City, ST" (up to three capitalised words on the line, then a comma), with its state.
fn city_before_state(text: &str, pos: usize) -> Option<(usize, usize)> {
    let before = text[..pos].trim_end_matches([' ', '\t']);
    let state = before.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let end = state.trim_end_matches([' ', '\t']).strip_suffix(',')?.len();
    let in_word = |c: char| c.is_alphabetic() || matches!(c, '.' | '\'' | '-');
    // The city's start so far, and the end of the word before it.
    let (mut start, mut at) = (end, end);
    for _ in 0..3 {
        let word_start = text[..at].trim_end_matches(in_word).len();
        if word_start == at || !text[word_start..].starts_with(char::is_uppercase) {
            break;
        }
        start = word_start;
        // The word before, after one space or tab; a line's start, a comma or a sign ends it.
        match text[..start].strip_suffix([' ', '\t']) {
            Some(r) if r.ends_with(char::is_alphabetic) => at = r.len(),
            _ => break,
        }
    }
    // With its state, as a listed city's finding has it ("Dayton, OH"): the line reads as one.
    (text[start..end].chars().filter(|c| c.is_alphabetic()).count() >= 2)
        .then_some((start, before.len()))
}

/// Whether `line` ("City, ST", from [`city_before_state`]) before the 5-digit number `zip` is
/// an address's last line, not a billing or order line ("Total Knee, OR 27447", "Physician
/// Assistant, PA 99213", "Head Without Contrast, CT 70450"): the city's words are not all words
/// of the English or medical lists, and after a state abbreviation that is also a common
/// abbreviation (OR, PA, MD, CT, ID, MS, CA, IN, ME, ...) the number must be a real ZIP.
fn city_plausible(line: &str, dict: &super::dict::Dict, zip: u32) -> bool {
    use super::dict::flag;
    let Some((city, state)) = line.rsplit_once(',') else { return false };
    let ambiguous =
        ["OR", "PA", "MD", "CT", "ID", "MS", "CA", "IN", "ME", "DE", "OK", "HI", "MA", "LA"];
    if ambiguous.contains(&state.trim()) && !dict.is_zip5(zip) {
        return false;
    }
    let vocabulary = flag::ENGLISH | flag::MEDICAL | flag::ABBREV | flag::DRUG | flag::STOP;
    // (A listed city that is also a word, "Mobile, AL", is the gazetteer's to find.)
    !city
        .split_whitespace()
        .all(|w| dict.flags(&w.trim_matches('.').to_lowercase()) & vocabulary != 0)
}

fn street_plausible(s: &str) -> bool {
    let mut words = s.split_whitespace();
    let _num = words.next();
    let mut has_name = false;
    // "73 Dr. Smith. Dr." is a number and a doctor: a title opening the name, and a suffix
    // that is also a title ("Dr", "St"), make no street ("12 Dr. Martin Luther King Jr. Blvd"
    // ends with another suffix, and stays one).
    let titled = s.split_whitespace().nth(1).is_some_and(|w| {
        matches!(w.trim_end_matches('.').to_ascii_lowercase().as_str(), "dr" | "mr" | "mrs" | "ms")
    });
    for w in words {
        let w0 = w.trim_end_matches(['.', ',']);
        let lw = w0.to_ascii_lowercase();
        if titled && matches!(lw.as_str(), "dr" | "st") && has_name {
            return false;
        }
        if super::STREET_SUFFIXES.contains(&lw.as_str()) && has_name {
            // The street's name is what came before its suffix; the rest is a unit number.
            return true;
        }
        // "2026 by Dr. Patel", "5 mg PO daily": a function word or a unit is no street name.
        if NOT_STREET_NAMES.contains(&lw.as_str()) {
            return false;
        }
        if w0.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            has_name = true;
        }
    }
    false
}

/// Words before a street typed in lower case that say it is an address ("lives at 1180 oak
/// ave").
const LOWER_STREET_CUES: &[&str] = &[
    "lives at",
    "live at",
    "living at",
    "lives on",
    "resides at",
    "address",
    "addr",
    "home at",
    "moved to",
    "located at",
    "staying at",
    "house at",
    "apartment at",
    "home address",
];

/// The end of a real ZIP typed within 48 bytes after a street on its line, with only words,
/// spaces, commas, `#` and `-` between (a city and a state, a unit).
fn zip_after_street(text: &str, from: usize, dict: &super::dict::Dict) -> Option<usize> {
    let b = text.as_bytes();
    let rest = &b[from..b.len().min(from + 48)];
    let line = rest.iter().position(|c| *c == b'\n').unwrap_or(rest.len());
    let rest = &rest[..line];
    let k = (0..rest.len().saturating_sub(4)).find(|&k| {
        rest[k..k + 5].iter().all(u8::is_ascii_digit)
            && (k == 0 || !rest[k - 1].is_ascii_alphanumeric())
            && !rest.get(k + 5).is_some_and(u8::is_ascii_alphanumeric)
    })?;
    let zip: u32 = std::str::from_utf8(&rest[k..k + 5]).ok()?.parse().ok()?;
    (dict.is_zip5(zip)
        && rest[..k]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b',' | b'#' | b'-')))
    .then_some(from + k + 5)
}

/// Words that are no part of a street's name: units and function words ("5 mg PO daily",
/// "2026 by Dr. Patel", "seen at 3 units").
const NOT_STREET_NAMES: &[&str] = &[
    "mg", "ml", "mcg", "tabs", "tab", "po", "iv", "units", "times", "days", "weeks", "years",
    "hours", "minutes", "x", "of", "and", "the", "with", "to", "in", "at", "by", "per", "for",
    "from", "on", "or", "as", "via", "seen", "signed",
];

/// A street typed in lower case ("1180 oak ave", "42 elm st"): a number, words that are no
/// function word or unit ([`NOT_STREET_NAMES`]), and a suffix.
fn lower_street_plausible(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    let Some(k) = words.iter().skip(1).position(|w| {
        super::STREET_SUFFIXES
            .contains(&w.trim_end_matches(['.', ',']).to_ascii_lowercase().as_str())
    }) else {
        return false;
    };
    let name = &words[1..=k];
    !name.is_empty()
        && name.iter().all(|w| {
            let lw = w.trim_end_matches(['.', ',']).to_ascii_lowercase();
            !NOT_STREET_NAMES.contains(&lw.as_str())
        })
}

fn trim_url_tail(s: &str) -> usize {
    s.trim_end_matches(['.', ',', ';', ':', ')', ']', '}', '!', '?', '"', '\'']).len()
}

fn memchr_any(b: &[u8], c: u8) -> bool {
    b.contains(&c)
}

fn has_dot_word(b: &[u8]) -> bool {
    b.windows(2).any(|w| w[0] == b'.' && w[1].is_ascii_alphabetic())
}

/// MAC addresses (a device's hardware address): six groups of two hex digits, all joined by
/// `:` or all by `-` (`00:1A:2B:3C:4D:5E`, `00-1A-2B-3C-4D-5E`), not part of a longer chain
/// of such groups (an IPv6 address, an EUI-64). Times ("10:22:31") have three groups.
fn find_macs(b: &[u8], mut f: impl FnMut(usize, usize)) {
    const LEN: usize = 17;
    // From each `:` or `-` that may be an address's first separator.
    let mut next = 0;
    for p in memchr::memchr2_iter(b':', b'-', b) {
        if p < 2 || p - 2 < next || p - 2 + LEN > b.len() {
            continue;
        }
        let i = p - 2;
        let sep = b[p];
        let joined = |c: Option<&u8>| c.is_some_and(|&c| c.is_ascii_alphanumeric() || c == sep);
        if matches!(sep, b':' | b'-')
            && (0..6)
                .all(|g| b[i + 3 * g].is_ascii_hexdigit() && b[i + 3 * g + 1].is_ascii_hexdigit())
            && (1..6).all(|g| b[i + 3 * g - 1] == sep)
            && !joined(i.checked_sub(1).map(|p| &b[p]))
            && !(b.get(i + LEN).is_some_and(u8::is_ascii_alphanumeric)
                || (b.get(i + LEN) == Some(&sep)
                    && b.get(i + LEN + 1).is_some_and(u8::is_ascii_alphanumeric)))
        {
            f(i, i + LEN);
            next = i + LEN;
        }
    }
}

/// Words that name a social network or an account handle.
const HANDLE_CUES: &[&str] = &[
    "twitter",
    "tweet",
    "tweeted",
    "instagram",
    "ig",
    "insta",
    "tiktok",
    "handle",
    "username",
    "snapchat",
    "facebook",
    "fb",
    "threads",
    "mastodon",
    "bluesky",
    "reddit",
    "youtube",
    "linkedin",
    "telegram",
    "discord",
    "account",
    "dm",
    "dms",
    "posted",
    "follow",
    "x",
];

/// Account handles (`@grandmaBetty1931`, `@jdoe_1955`): `@` after a space or the start, then a
/// letter and two to 29 more letters, digits or `_`; five or more with a digit in it, or any
/// after a cue ([`HANDLE_CUES`]) on its line. Not an e-mail's `@` (a word before it), nor
/// "@ 5pm", "@home" without a cue, nor a dosing interval ("@q6h").
fn find_handles(text: &str, mut f: impl FnMut(usize, usize)) {
    let b = text.as_bytes();
    for at in memchr::memchr_iter(b'@', b) {
        if at > 0 && !matches!(b[at - 1], b' ' | b'\t' | b'\n' | b'(' | b'"' | b'\'' | b':') {
            continue;
        }
        let len =
            b[at + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
        let h = &b[at + 1..at + 1 + len];
        if !(3..=30).contains(&len)
            || !h[0].is_ascii_alphabetic()
            || matches!(b.get(at + 1 + len), Some(b'@' | b'.'))
                && b.get(at + 2 + len).is_some_and(u8::is_ascii_alphanumeric)
        {
            continue;
        }
        // "@q6h", "@q12hr": a dosing interval.
        let interval = h[0].eq_ignore_ascii_case(&b'q') && h[1].is_ascii_digit();
        if !interval
            && ((len >= 5 && h.iter().any(u8::is_ascii_digit))
                || cue_before(text, at, 40, HANDLE_CUES))
        {
            f(at, at + 1 + len);
        }
    }
}

/// Whether the number at `pos` is the first value after the words before it: no digit between
/// the last word of the 24 bytes before it and it, and no placeholder in them ("Phone: [PHONE];
/// BP 120/80 219-09" is no phone after "Phone", once the phone before it is replaced).
fn first_value_after_words(text: &str, pos: usize) -> bool {
    let b = text.as_bytes();
    let w = &b[pos.saturating_sub(24)..pos];
    let after = w.iter().rposition(u8::is_ascii_alphabetic).map_or(0, |p| p + 1);
    !w.contains(&b']') && !w[after..].iter().any(u8::is_ascii_digit)
}

/// Words before a pair of numbers that make it a position ("GPS 42.3601,-71.0589").
const COORDINATE_CUES: &[&str] = &[
    "gps",
    "lat",
    "latitude",
    "lon",
    "long",
    "lng",
    "longitude",
    "coordinates",
    "coords",
    "geolocation",
    "location",
    "position",
    "pin",
];

/// Geographic coordinates (a place smaller than a state): a latitude and a longitude in
/// decimal degrees, each with three decimals or more, joined by a comma or, with hemisphere
/// letters, by spaces ("42.3601, -71.0589", "40.7128 N, 74.0060 W", "42.3601°N 71.0589°W"),
/// within range, with hemisphere letters on both or after a cue ([`COORDINATE_CUES`]).
fn find_coordinates(text: &str, mut f: impl FnMut(usize, usize)) {
    let b = text.as_bytes();
    // One number: its end and its value, and the hemisphere letter after it (and its end).
    let number = |i: usize| -> Option<(usize, f64, Option<u8>)> {
        let mut j = i;
        if matches!(b.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        let int = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=3).contains(&int) || b.get(j + int) != Some(&b'.') {
            return None;
        }
        let frac = b[j + int + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac < 3 {
            return None;
        }
        let end = j + int + 1 + frac;
        let value: f64 = text[i..end].parse().ok()?;
        let mut k = end;
        if b[k..].starts_with("°".as_bytes()) {
            k += "°".len();
        }
        let h = k + b[k..].iter().take_while(|c| **c == b' ').count();
        match b.get(h) {
            Some(c @ (b'N' | b'S' | b'E' | b'W' | b'n' | b's' | b'e' | b'w'))
                if !b.get(h + 1).is_some_and(u8::is_ascii_alphanumeric) =>
            {
                Some((h + 1, value, Some(c.to_ascii_uppercase())))
            }
            _ => Some((end, value, None)),
        }
    };
    // From each dot with a digit before it and three after: the number it is in.
    let mut i = 0;
    for dot in memchr::memchr_iter(b'.', b) {
        if dot < i
            || dot == 0
            || !b[dot - 1].is_ascii_digit()
            || !b.get(dot + 1..dot + 4).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        {
            continue;
        }
        let mut start = dot - 1;
        while start > 0 && b[start - 1].is_ascii_digit() {
            start -= 1;
        }
        if start > 0 && matches!(b[start - 1], b'-' | b'+') {
            start -= 1;
        }
        let apart = start == 0
            || !(b[start - 1].is_ascii_alphanumeric() || matches!(b[start - 1], b'.' | b'-'));
        let Some((e1, lat, h1)) = apart.then(|| number(start)).flatten() else {
            continue;
        };
        i = e1;
        let mut k = e1 + b[e1..].iter().take_while(|c| **c == b' ').count();
        let comma = b.get(k) == Some(&b',');
        if comma {
            k += 1;
            k += b[k..].iter().take_while(|c| **c == b' ').count();
        }
        let second = (comma || (h1.is_some() && k > e1)).then(|| number(k)).flatten();
        let Some((e2, lon, h2)) = second else { continue };
        let hemispheres = matches!(h1, Some(b'N' | b'S')) && matches!(h2, Some(b'E' | b'W'));
        let plain = h1.is_none() && h2.is_none();
        if lat.abs() <= 90.0
            && lon.abs() <= 180.0
            && !b.get(e2).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
            && (hemispheres || (plain && cue_before(text, start, 32, COORDINATE_CUES)))
        {
            f(start, e2);
            i = e2;
        }
    }
}

fn looks_like_time(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_digit() || c == b':')
}

/// The candidate-led patterns compiled into one lazy DFA that reports every pattern's matches
/// (`MatchKind::All`) from an anchored start. A note of 1 KB holds about 35 places where such
/// a match can start; searching from those alone replaces a dozen scans of the whole text.
pub(crate) struct LedDfa {
    dfa: Option<DFA>,
    /// The [`word_kinds`] table.
    kinds: Vec<u8>,
    /// Which lengths the words of [`word_kinds`] have, by their first two letters.
    kind_lengths: KindLengths,
    /// Tells this DFA's per-thread cache apart from another scanner's.
    id: usize,
}

/// What the candidate-led pass found: per pattern, the matches in order. `None` when the pass
/// could not run (the DFA gave up): every pattern is then searched on its own.
pub(crate) struct Led {
    found: Option<Vec<Vec<(usize, usize)>>>,
    seen: Seen,
}

impl Led {
    /// Whether the candidate pass saw a word that the gate `k` (a [`kind`]) needs.
    fn gate(&self, k: u8) -> bool {
        self.seen.gates & k != 0
    }
}

static NEXT_DFA_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Per-thread DFA caches, keyed by [`LedDfa::id`] (usually one).
    static CACHES: RefCell<Vec<(usize, Cache)>> = const { RefCell::new(Vec::new()) };
}

impl LedDfa {
    fn empty() -> LedDfa {
        LedDfa {
            dfa: None,
            kinds: Table::encode(&[]),
            kind_lengths: KindLengths::new(&[]),
            id: usize::MAX,
        }
    }

    fn new(patterns: &[String]) -> Result<LedDfa, Error> {
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(16 << 20)
                    .skip_cache_capacity_check(true),
            )
            .thompson(regex_automata::nfa::thompson::Config::new().nfa_size_limit(Some(64 << 20)))
            .build_many(patterns)
            .map_err(|e| Error::Pattern { name: "candidate-led", message: e.to_string() })?;
        let words = word_kinds();
        Ok(LedDfa {
            dfa: Some(dfa),
            kinds: Table::encode(&words),
            kind_lengths: KindLengths::new(&words),
            id: NEXT_DFA_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Every candidate-led pattern's matches, with `Regex::find_iter`'s semantics: leftmost
    /// starts, no overlap within a pattern. Where a pattern could end at several places from
    /// one start, the longest wins (the patterns are greedy and end at a word boundary).
    fn find(&self, text: &str) -> Led {
        let all_open = Seen { gates: u8::MAX, digit: true, key: true };
        let Some(dfa) = &self.dfa else { return Led { found: None, seen: all_open } };
        let Some(kinds) = Table::new(&self.kinds) else {
            return Led { found: None, seen: all_open };
        };
        let n = LED.len();
        let mut found: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        let mut next_free = vec![0usize; n];
        let mut best = vec![0usize; n];
        let (ok, seen) = CACHES.with(|caches| {
            let mut caches = caches.borrow_mut();
            let slot = match caches.iter().position(|(id, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    caches.push((self.id, dfa.create_cache()));
                    caches.len() - 1
                }
            };
            let cache = &mut caches[slot].1;
            let mut ok = true;
            let seen = for_each_candidate(text.as_bytes(), &kinds, &self.kind_lengths, |pos| {
                if !ok {
                    return;
                }
                best.iter_mut().for_each(|b| *b = 0);
                let input = Input::new(text).range(pos..).anchored(Anchored::Yes);
                let mut state = OverlappingState::start();
                loop {
                    if dfa.try_search_overlapping_fwd(cache, &input, &mut state).is_err() {
                        ok = false;
                        return;
                    }
                    let Some(m) = state.get_match() else { break };
                    let k = m.pattern().as_usize();
                    if pos >= next_free[k] && m.offset() > best[k] {
                        best[k] = m.offset();
                    }
                }
                for k in 0..n {
                    if best[k] > pos {
                        found[k].push((pos, best[k]));
                        next_free[k] = best[k];
                    }
                }
            });
            (ok, seen)
        });
        Led { found: ok.then_some(found), seen }
    }
}

/// What a word is to the candidate pass (see [`word_kinds`]).
mod kind {
    /// A candidate-led match can start at this word (months, age words, identifier cues).
    pub const START: u8 = 1;
    /// A month or a weekday: a cue word just before it ("since March") is a start too.
    pub const MONTH_LIKE: u8 = 2;
    /// A cue word of `date.month` ("last", "in", "since").
    pub const MONTH_CUE: u8 = 4;
    /// Gates: the word the patterns searched on their own need ("box", "Street", ...).
    pub const DECADE: u8 = 8;
    pub const BOX: u8 = 16;
    pub const STREET: u8 = 32;
    pub const HOLIDAY: u8 = 64;
    /// Not a word's kind: two letters or digits before a `:` or `-`, as a MAC address starts.
    pub const MAC: u8 = 128;
}

/// The words the candidate pass knows, in lower case, with their [`kind`]s.
fn word_kinds() -> Vec<(Vec<u8>, u32)> {
    use kind::*;
    let groups: &[(u8, &str)] = &[
        (
            START | MONTH_LIKE,
            "jan january feb february mar march apr april may jun june jul july aug august sep \
             sept september oct october nov november dec december",
        ),
        (MONTH_LIKE, "monday tuesday wednesday thursday friday saturday sunday"),
        (
            MONTH_CUE,
            "last next this early mid late in on since until during by of from through till \
             past previous",
        ),
        (
            START,
            "age aged nonagenarian centenarian ninety turned turns turning born yob year birth \
             dob she he mom mother dad father grandma grandmother grandpa grandfather husband \
             wife",
        ),
        // The first word of every identifier cue of `id.cue`.
        (
            START,
            "ssn ss soc social mrn mr medical med record chart hospital unit patient pt case \
             encounter visit fin csn accession specimen lab admission member subscriber policy \
             insurance plan group medicaid medicare mbi hicn beneficiary health payer coverage \
             account acct billing invoice claim card credit iban routing bank license licence \
             lic dl driver drivers dea npi certificate cert registration vin vehicle plate tag \
             serial s sn device udi model lot implant pacemaker imei mac fingerprint biometric \
             retina retinal voiceprint face id i identifier identification ref reference \
             tracking employee badge student passport user userid username login confirmation \
             order ticket rx prescription ur",
        ),
        (DECADE, "nineties"),
        (BOX, "box"),
        (
            STREET,
            "street avenue road boulevard lane drive terrace parkway highway circle court place \
             trail pike",
        ),
        (
            HOLIDAY,
            "christmas thanksgiving new easter independence fourth halloween memorial labor \
             veterans valentine mother father",
        ),
    ];
    let mut all: Vec<(Vec<u8>, u32)> = Vec::new();
    for (k, words) in groups {
        for w in words.split_ascii_whitespace() {
            match all.iter_mut().find(|(x, _)| x == w.as_bytes()) {
                Some((_, v)) => *v |= u32::from(*k),
                None => all.push((w.as_bytes().to_vec(), u32::from(*k))),
            }
        }
    }
    all
}

/// The longest word [`word_kinds`] holds.
const KIND_MAX_LEN: usize = 14;

/// For each pair of first two letters (the second may be the word's end), the lengths that
/// words of [`word_kinds`] have: most words ("the", "with", "and") are turned away before any
/// lookup.
pub(crate) struct KindLengths(Vec<u16>);

impl KindLengths {
    fn index(w: &[u8]) -> Option<usize> {
        let a = w.first()?.to_ascii_lowercase().checked_sub(b'a').filter(|c| *c < 26)?;
        let b = match w.get(1) {
            None => 26,
            Some(c) => c.to_ascii_lowercase().checked_sub(b'a').filter(|c| *c < 26)?,
        };
        Some(a as usize * 27 + b as usize)
    }

    fn new(words: &[(Vec<u8>, u32)]) -> KindLengths {
        let mut v = vec![0u16; 27 * 27];
        for (w, _) in words {
            if let Some(i) = Self::index(w) {
                v[i] |= 1 << w.len().min(15);
            }
        }
        KindLengths(v)
    }

    /// Whether `w` (letters) may be one of the words.
    #[inline]
    fn may_hold(&self, w: &[u8]) -> bool {
        w.len() <= KIND_MAX_LEN && Self::index(w).is_some_and(|i| self.0[i] & (1 << w.len()) != 0)
    }
}

/// What the candidate pass saw besides the candidates: which gates opened, and whether the
/// text holds a digit at all.
#[derive(Clone, Copy, Default)]
pub(crate) struct Seen {
    gates: u8,
    digit: bool,
    /// A word joined to another by `_` (`patient_id`), or one in camelCase (`postalCode`)
    /// before a `"`, `'`, `:` or `=`: a key of JSON, a query string or a log line may be here.
    key: bool,
}

/// Calls `f` with every position, in order, where a candidate-led match can start: a word
/// that begins with a digit, a word of letters that holds a digit or is a short prefix joined
/// to digits by `-` or `#` ("SF-998877", "AB#12"), a `(`, `+` or `#` just before a word, a
/// word of kind [`kind::START`], and a month cue just before a month or weekday.
fn for_each_candidate(
    b: &[u8],
    kinds: &Table<'_>,
    lengths: &KindLengths,
    mut f: impl FnMut(usize),
) -> Seen {
    let mut seen = Seen::default();
    // The previous word: its start, end and kind.
    let mut prev: (usize, usize, u8) = (0, 0, 0);
    let mut i = 0;
    let mut lower = [0u8; KIND_MAX_LEN];
    while i < b.len() {
        let c = b[i];
        if !c.is_ascii_alphanumeric() {
            if matches!(c, b'(' | b'+' | b'#')
                && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
            {
                f(i);
            }
            i += 1;
            continue;
        }
        // A word starts here (the previous byte is not alphanumeric).
        let start = i;
        let mut has_digit = false;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            has_digit |= b[i].is_ascii_digit();
            i += 1;
        }
        let w = &b[start..i];
        match b.get(i) {
            Some(b':' | b'-') if w.len() == 2 => seen.gates |= kind::MAC,
            Some(b'_') => seen.key = true,
            Some(b'"' | b'\'' | b':' | b'=' | b'\\') if !seen.key && w.len() >= 4 => {
                seen.key = w[0].is_ascii_lowercase() && w[1..].iter().any(u8::is_ascii_uppercase);
            }
            _ => {}
        }
        let mut k = 0u8;
        if has_digit {
            seen.digit = true;
            if w.starts_with(b"90") || w.starts_with(b"100") {
                seen.gates |= kind::DECADE;
            }
        } else if lengths.may_hold(w) {
            for (d, s) in lower.iter_mut().zip(w) {
                *d = s.to_ascii_lowercase();
            }
            k = kinds.get(&lower[..w.len()]).unwrap_or(0) as u8;
            // `street_named` ends with a capitalised street word ("Maple Avenue"), never "place".
            let title = w[0].is_ascii_uppercase() && w[1..].iter().all(u8::is_ascii_lowercase);
            let street = if title { kind::STREET } else { 0 };
            seen.gates |= k & (kind::DECADE | kind::BOX | street | kind::HOLIDAY);
            // "since March": the cue starts the match, if only blanks lie between.
            if k & kind::MONTH_LIKE != 0
                && prev.2 & kind::MONTH_CUE != 0
                && prev.2 & kind::START == 0
                && prev.1 < start
                && b[prev.1..start].iter().all(|&c| c == b' ' || c == b'\t')
            {
                f(prev.0);
            }
        }
        if has_digit
            || k & kind::START != 0
            || (w.len() <= 6
                && matches!(b.get(i), Some(b'-' | b'#'))
                && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            f(start);
        }
        prev = (start, i, k);
    }
    seen
}

/// Two colons at most five hex digits apart ("fe80::1", "2001:db8:"): an IPv6 address may be
/// here. Times ("10:30") and labels ("MRN: 5") are not.
fn maybe_ipv6(b: &[u8]) -> bool {
    let mut last: Option<usize> = None;
    for (i, &c) in b.iter().enumerate() {
        if c == b':' {
            if let Some(j) = last {
                if i - j <= 5 && b[j + 1..i].iter().all(u8::is_ascii_hexdigit) {
                    return true;
                }
            }
            last = Some(i);
        }
    }
    false
}

/// Whether a `/` follows a dot and two to six letters that follow a letter or digit (a host
/// and its path, "bit.ly/3x"): the gate of the `domain.path` pattern.
fn host_before_slash(b: &[u8]) -> bool {
    memchr::memchr_iter(b'/', b).any(|i| {
        let letters = b[..i].iter().rev().take_while(|c| c.is_ascii_alphabetic()).count();
        (2..=6).contains(&letters)
            && i > letters + 1
            && b[i - letters - 1] == b'.'
            && b[i - letters - 2].is_ascii_alphanumeric()
            && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
    })
}

/// A dot followed by a top-level domain that the domain pattern knows, ending the word.
pub(crate) fn has_tld(b: &[u8]) -> bool {
    const TLDS: &[&[u8]] = &[
        b"com",
        b"org",
        b"net",
        b"edu",
        b"gov",
        b"mil",
        b"int",
        b"io",
        b"us",
        b"uk",
        b"ca",
        b"info",
        b"biz",
        b"health",
        b"care",
        b"clinic",
        b"hospital",
        b"md",
        b"co",
        b"me",
        b"app",
        b"ai",
    ];
    let mut i = 0;
    while let Some(d) = b[i..].iter().position(|&c| c == b'.') {
        let s = i + d + 1;
        let mut e = s;
        while e < b.len() && b[e].is_ascii_alphabetic() {
            e += 1;
        }
        if e > s
            && !b.get(e).is_some_and(u8::is_ascii_digit)
            && TLDS.iter().any(|t| t.eq_ignore_ascii_case(&b[s..e]))
        {
            return true;
        }
        i = s;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare domain's path ends at a quote, as a URL's does: in compact JSON the next field
    /// is not part of it.
    #[test]
    fn a_domains_path_stops_at_a_quote() {
        let p = Patterns::new().unwrap();
        let text = r#"{"site":"example.com/x","data":"aaaaaaaa"}"#;
        let m = p.domain.regex().unwrap().find(text).expect("the domain");
        assert_eq!(&text[m.start()..m.end()], "example.com/x");
    }

    /// Texts with every kind of digit-led and cue-led match, plus the golden cases and a
    /// slice of the synthetic corpus.
    fn texts() -> Vec<String> {
        let mut v: Vec<String> = [
            "Call 555-123-4567 or (555) 987-6543 ext 12, fax +1 555.222.3333; pager 4471.",
            "SSN 123-45-6789, 078 05 1120, member ID #AB12345678, MRN: SF-998877, acct# 12-3456-7.",
            "Seen 03/14/2021, 3/14, 2021-03-14, 20210314, 14 March 2021, March 14th, 2021, 12/2020.",
            "ABG 7.28/58/62/26; 4.5-11.0; 1.5-12; 2021-03-04T10:22:31Z, 2021-03-04T10:22 2021/3/4T1",
            "IP 192.168.10.1, v1.2.3.4; card 4111 1111 1111 1111; 1234567; 12-34-56-78.",
            "Lives at 42 Elm Street Apt 5, Springfield, MA 01105-1234; ZIP 02139. 90 Whitchurch Road street.",
            "A 92 yo woman, aged 97, 93F, 101st birthday, nonagenarian; since March; last Tuesday. Born in 1928, YOB: 1931, DOB 1990, year of birth 1925. ninety one yo, Centenarian (103).",
            "Pt turned 90 years old; turns ninety-one. 90+ y/o, 96 M, 94 F, 98yF, 92y male, 93 yrs, 93yrs, 92 yom, 91m.",
            "On 04MAR21, 4MAR2021, Mar '21, 1/3-1/7/2024, 12MAR, 31dec99, 2021-03-04t10:22z, 98yf.",
            "A ninety-three year old; Age: ninety-one; aged 90 days; T 98F, 120m; A nonagenarian.",
            "Age:\n92\tAge :\t 93 {\"age\":94,\"AGE\": \"95\", 'age'='96'} age\r\n  97 {\\\"age\\\":98}",
            "{\"mrn\": \"SF-998877\", \"member_id\":\"W123456789\"} Phone:\n555-1234 ZIP:\n02139",
            "MEDICAL RECORD NUMBER 4471902, med rec no. 55, s/n X9-44, i.d. 7, user id jsmith42.",
            "BP 120/80, 1/2 tab, 5/325 mg, GCS 15, LDL 96, HbA1c 8.2%, COVID-19, NCT01234567.",
            "#12345 _123 é12 a1b2c3 VIN 1HGCM82633A004352 DEA AB1234563 #A1-B2",
            "MRN # 45821, MRN #: 4, MRN No.: 45821 - Employee badge #4471; Passport # 561234.",
            "Ref no. 44812, Employee # 44812, Confirmation # ABX4412, Rx #44812, Rx number 5.",
            "UR number: 448120, Lic: 48213, Nursing license RN 845512, identification no. 7.",
            "MAC 00:1A:2B:3C:4D:5E, 00-1A-2B-3C-4D-5E {\"patient_id\": \"45821\"} mrn=4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for l in include_str!("../../tests/golden/cases.jsonl").lines() {
            if let Some(t) = l.split("\"text\": \"").nth(1).and_then(|r| r.split("\", \"").next()) {
                v.push(t.replace("\\n", "\n"));
            }
        }
        for l in include_str!("../../benches/data/clinical_notes.jsonl").lines().take(150) {
            if let Some(t) = l.split("\"text\": \"").nth(1).and_then(|r| r.split("\"}").next()) {
                v.push(t.replace("\\n", "\n"));
            }
        }
        v
    }

    /// The candidate-led pass finds exactly what each pattern's own search finds: same
    /// starts, and the same ends but where a lazy street pattern could stop earlier.
    #[test]
    fn led_pass_equals_separate_searches() {
        let p = Patterns::new().unwrap();
        let all = [
            &p.ipv4,
            &p.phone,
            &p.phone7,
            &p.phone_groups,
            &p.ssn,
            &p.date_numeric,
            &p.date_iso,
            &p.date_md,
            &p.date_my,
            &p.date_day_first,
            &p.digit_groups,
            &p.alnum_id,
            &p.street,
            &p.zip,
            &p.date_month_first,
            &p.date_month_cue,
            &p.age,
            &p.age_subject,
            &p.cue_id,
        ];
        let mut checked = 0;
        for text in texts() {
            let led = p.led.find(&text);
            assert!(led.found.is_some(), "the DFA gave up");
            for pat in all {
                let k = pat.led.expect("every pattern here is led");
                let want: Vec<(usize, usize)> =
                    pat.regex().unwrap().find_iter(&text).map(|m| (m.start(), m.end())).collect();
                let got = &led.found.as_ref().unwrap()[k];
                let name = LED[k];
                assert_eq!(
                    got.iter().map(|m| m.0).collect::<Vec<_>>(),
                    want.iter().map(|m| m.0).collect::<Vec<_>>(),
                    "{name}: starts differ in {text:?}"
                );
                for (g, w) in got.iter().zip(&want) {
                    if name == "street" {
                        assert!(g.1 >= w.1, "{name}: ends before the regex in {text:?}");
                    } else {
                        assert_eq!(g.1, w.1, "{name}: ends differ in {text:?}");
                    }
                }
                checked += want.len();
            }
        }
        assert!(checked > 500, "only {checked} matches compared");
    }

    /// Every cue the cue pattern finds, also one that ends in `#` or `.`, tells its group.
    #[test]
    fn every_cue_found_has_a_category() {
        let p = Patterns::new().unwrap();
        let mut n = 0;
        for text in texts() {
            for m in p.cue_id.regex().unwrap().find_iter(&text) {
                assert!(p.cue_category(m.as_str()).is_some(), "{:?} in {text:?}", m.as_str());
                n += 1;
            }
        }
        assert!(n > 40, "only {n} cues");
        for (cue, cat) in [
            ("Employee #", Category::Id),
            ("badge #", Category::Id),
            ("Ref no.", Category::Id),
            ("i.d.", Category::Id),
            ("UR number", Category::Mrn),
            ("patient id", Category::Mrn),
            ("Lic", Category::License),
        ] {
            assert_eq!(p.cue_category(cue).map(|c| c.0), Some(cat), "{cue}");
        }
    }

    #[test]
    fn mac_addresses() {
        let macs = |t: &str| {
            let mut v = Vec::new();
            find_macs(t.as_bytes(), |s, e| v.push(t[s..e].to_string()));
            v
        };
        assert_eq!(macs("MAC 00:1A:2B:3C:4D:5E."), ["00:1A:2B:3C:4D:5E"]);
        assert_eq!(
            macs("00-1a-2b-3c-4d-5e and ac:de:48:00:11:22"),
            ["00-1a-2b-3c-4d-5e", "ac:de:48:00:11:22"]
        );
        for t in [
            "10:22:31",
            "00:1A-2B:3C-4D:5E",
            "00:1A:2B:3C:4D:5E:6F",
            "::00:1A:2B:3C:4D:5E",
            "x00:1A:2B:3C:4D:5E",
            "00:1A:2B:3C:4D:5EF",
            "00:1G:2B:3C:4D:5E",
        ] {
            assert!(macs(t).is_empty(), "{t}");
        }
    }

    #[test]
    fn time_ranges_are_no_identifiers() {
        assert!(is_time_range("0700-1900") && is_time_range("2300-0700"));
        assert!(
            !is_time_range("4471-9023")
                && !is_time_range("0700-19000")
                && !is_time_range("07001900")
        );
    }

    #[test]
    fn cheap_gates_admit_what_their_patterns_match() {
        assert!(maybe_ipv6(b"at fe80::1 now") && maybe_ipv6(b"2001:db8:85a3:0:0:8a2e:370:7334"));
        assert!(!maybe_ipv6(b"MRN: 5 at 10:30 and 11:45"));
        assert!(has_tld(b"see www.example.com.") && has_tld(b"mail jo@x.ORG"));
        assert!(!has_tld(b"b.i.d. p.o. Dr. Smith, M.D. e.g. 3.5"));
        let p = Patterns::new().unwrap();
        for (text, gate) in [
            ("P.O. Box 12", kind::BOX),
            ("on Maple Avenue", kind::STREET),
            ("in her late nineties", kind::DECADE),
            ("in his 90s", kind::DECADE),
            ("at Thanksgiving", kind::HOLIDAY),
            ("MAC 00:1A:2B:3C:4D:5E", kind::MAC),
            ("ac-de-48-00-11-22", kind::MAC),
        ] {
            assert!(p.led.find(text).gate(gate), "{text}");
        }
        assert!(!p.led.find("seen in clinic today").gate(kind::STREET | kind::BOX | kind::MAC));
        // Keys in snake_case or camelCase open the key scan; plain words do not.
        for t in [r#"{"patient_id": 1}"#, "patient_mrn=1", r#"{"postalCode":"1"}"#, "memberId: 1"] {
            assert!(p.led.find(t).seen.key, "{t}");
        }
        assert!(!p.led.find(r#"{"mrn": "1"} MRN: 5, iPhone user"#).seen.key);
    }
}
