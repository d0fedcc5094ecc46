// The word lists, turned into the engine's tables by the build script (`build.rs` includes
// this file after `dict_shared.rs`). Sources and licences: `crates/phi/data/README.md`.

use std::collections::HashMap;

const SURNAMES: &str = include_str!("../../data/surnames.txt");
const GIVEN: &str = include_str!("../../data/given_names.txt");
const CITIES: &str = include_str!("../../data/us_cities.txt");
const COUNTIES: &str = include_str!("../../data/us_counties.txt");
const STATES: &str = include_str!("../../data/us_states.txt");
const ZIP5: &str = include_str!("../../data/zip5.txt");
const ENGLISH: &str = include_str!("../../data/english_words.txt");
const PROPER: &str = include_str!("../../data/english_proper.txt");
const PLACES: &str = include_str!("../../data/places.hand.txt");
const MEDICAL: &str = include_str!("../../data/medical_terms.txt");
const DRUGS: &str = include_str!("../../data/drugs.txt");
const TITLES: &str = include_str!("../../data/titles.hand.txt");
const CUES: &str = include_str!("../../data/name_cues.hand.txt");
const KEYS: &str = include_str!("../../data/name_keys.hand.txt");
const FACILITY_WORDS: &str = include_str!("../../data/facility_words.hand.txt");
const FACILITY_STRONG: &str = include_str!("../../data/facility_strong.hand.txt");
const FACILITIES: &str = include_str!("../../data/facilities.hand.txt");
const EPONYM_HEADS: &str = include_str!("../../data/eponym_heads.hand.txt");
const ABBREVS: &str = include_str!("../../data/clinical_abbrev.hand.txt");

/// Function words: never part of a name, and never a name on their own.
const STOPWORDS: &str = "a an the and or but nor of in on at to for with by from as is was were be been being \
are am it its this that these those he she his her him hers they them their we us our you your i me my \
not no yes if then than so such very too also into onto upon over under after before since until while \
during about above below between among per via who whom whose which what when where why how all any both \
each few more most other some only own same can will just should now do does did done has have had having \
may might must shall would could there here up down out off again further once \
i'm i'll i've i'd you're you'll you've you'd we're we'll we've we'd they're they'll they've they'd \
he'll she'll he'd she'd";

/// Given names that are first of all ordinary words: never a name without more evidence.
const AMBIGUOUS_GIVEN: &str = "will may june april august grant mark bill hope faith joy rose iris ivy ruby pearl dawn \
summer autumn art guy chase hunter sky amber crystal destiny lance rich sunny patience major king prince bud sly \
don dean page gene ray rod sue pat earl carol chance cliff dale glen miles norm penny rusty sandy skip son tom \
van victor wade wes will ben ed al del eve holly lee lou max mel ned sal stan ted val vic win herb jack";

const MONTHS: &str =
    "january february march april may june july august september october november december \
jan feb mar apr jun jul aug sep sept oct nov dec";
const WEEKDAYS: &str = "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun";
const STREET_SUFFIXES: &str = "street st avenue ave road rd boulevard blvd lane ln drive court ct place pl terrace \
ter circle cir parkway pkwy highway hwy way trail trl pike square sq plaza alley crescent cres row expressway \
freeway turnpike";
const LOC_CUES: &str =
    "in from at near to of lives resides resident residing moved located live living visiting \
traveled travelled area outside downtown";
const NAME_SUFFIXES: &str = "jr sr ii iii iv md do phd rn np pa dds dmd";

/// Lower-case, dots removed, runs of spaces folded: the form phrases are looked up in.
pub(crate) fn normalize_phrase(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for w in p.split([' ', '.']).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
    out
}

fn lines(s: &'static str) -> impl Iterator<Item = &'static str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// What the build script writes: the word table, the phrase table, the ZIP bit set, the state
/// abbreviations and the longest phrase.
pub(crate) struct Built {
    pub words: Vec<(Vec<u8>, u32)>,
    pub phrases: Vec<(Vec<u8>, u32)>,
    pub zip5: Vec<u64>,
    pub state_abbr: Vec<bool>,
    pub max_phrase_tokens: usize,
}

/// Builds every table from the lists.
pub(crate) fn build_tables() -> Built {
    let mut words: HashMap<&'static str, u32> = HashMap::new();
    words.reserve(260_000);
    let mut phrases: HashMap<Box<str>, Phrase> = HashMap::new();
    let mut max_phrase_tokens = 1;
    let mut add = |w: &'static str, f: u32| {
        *words.entry(w).or_insert(0) |= f;
    };
    for w in ENGLISH.lines() {
        add(w, flag::ENGLISH);
    }
    for w in PROPER.lines() {
        add(w, flag::PROPER);
    }
    for w in MEDICAL.lines() {
        add(w, flag::MEDICAL);
    }
    for (rank, w) in SURNAMES.lines().enumerate() {
        add(w, flag::SURNAME | if rank < 2000 { flag::SURNAME_COMMON } else { 0 });
    }
    for (rank, w) in GIVEN.lines().enumerate() {
        let top = if rank < 400 && !AMBIGUOUS_GIVEN.split_ascii_whitespace().any(|a| a == w) {
            flag::GIVEN_TOP
        } else {
            0
        };
        add(w, flag::GIVEN | top | if rank < 1500 { flag::GIVEN_COMMON } else { 0 });
    }
    for w in lines(TITLES) {
        add(w, flag::TITLE);
    }
    for w in lines(FACILITY_WORDS) {
        add(w, flag::FACILITY_WORD);
    }
    for w in lines(EPONYM_HEADS) {
        add(w, flag::EPONYM_HEAD);
    }
    for w in lines(ABBREVS) {
        add(w, flag::ABBREV);
    }
    for w in STOPWORDS.split_ascii_whitespace() {
        add(w, flag::STOP);
    }
    for w in MONTHS.split_ascii_whitespace() {
        add(w, flag::MONTH);
    }
    for w in WEEKDAYS.split_ascii_whitespace() {
        add(w, flag::WEEKDAY);
    }
    for w in STREET_SUFFIXES.split_ascii_whitespace() {
        add(w, flag::STREET_SUFFIX);
    }
    for w in LOC_CUES.split_ascii_whitespace() {
        add(w, flag::LOC_CUE);
    }
    for w in NAME_SUFFIXES.split_ascii_whitespace() {
        add(w, flag::NAME_SUFFIX);
    }
    // Drugs: single words get a flag; multi-word names only matter through their words.
    for w in DRUGS.lines() {
        if !w.contains(' ') {
            add(w, flag::DRUG);
        }
    }
    let mut state_abbr = vec![false; 26 * 26];
    for l in STATES.lines() {
        if let Some((name, abbr)) = l.split_once('\t') {
            if !name.contains(' ') {
                add(name, flag::STATE_NAME);
            }
            let b = abbr.as_bytes();
            if b.len() == 2 && b.iter().all(u8::is_ascii_uppercase) {
                state_abbr[(b[0] - b'A') as usize * 26 + (b[1] - b'A') as usize] = true;
            }
        }
    }

    let mut phrase = |p: &'static str, f: &dyn Fn(&mut Phrase)| {
        let n = p.split(' ').count();
        max_phrase_tokens = max_phrase_tokens.max(n);
        let key = normalize_phrase(p);
        let first = key.split(' ').next().unwrap_or("").to_string();
        let rest = key.split_once(' ').map_or(String::new(), |(_, r)| r.to_string());
        f(phrases.entry(key.into_boxed_str()).or_default());
        let first: &'static str = match words.get_key_value(first.as_str()) {
            Some((k, _)) => k,
            None => Box::leak(first.into_boxed_str()),
        };
        *words.entry(first).or_insert(0) |= flag::PHRASE_START;
        for w in rest.split(' ').filter(|w| !w.is_empty()) {
            match words.get_mut(w) {
                Some(f) => *f |= flag::PHRASE_CONT,
                None => {
                    words.insert(Box::leak(w.to_string().into_boxed_str()), flag::PHRASE_CONT);
                }
            }
        }
    };
    for l in CITIES.lines() {
        let (name, pop) = l.split_once('\t').unwrap_or((l, "0"));
        let pop: u32 = pop.parse().unwrap_or(0).max(1);
        phrase(name, &|ph| ph.city_pop = ph.city_pop.max(pop));
    }
    for l in lines(PLACES) {
        let (name, pop) = l.split_once('\t').unwrap_or((l, "0"));
        let pop: u32 = pop.trim().parse().unwrap_or(0).max(1);
        phrase(name, &|ph| ph.city_pop = ph.city_pop.max(pop));
    }
    for l in COUNTIES.lines() {
        phrase(l, &|ph| ph.county = true);
    }
    for l in lines(FACILITIES) {
        phrase(l, &|ph| ph.facility = true);
    }
    for l in lines(FACILITY_STRONG) {
        phrase(l, &|ph| ph.facility_head = true);
    }
    for l in lines(CUES) {
        phrase(l, &|ph| ph.name_cue = Some(true));
    }
    for weak in ["like", "similar to", "case of", "for", "with her", "with his", "mrs"] {
        phrase(weak, &|ph| ph.name_cue = Some(false));
    }
    // Field names (one word each): in the phrase table, flagged NAME_KEY, not PHRASE_START.
    for l in lines(KEYS) {
        let key = normalize_phrase(l);
        assert!(!key.contains(' '), "name_keys.hand.txt holds one word a line: {l:?}");
        let ph = phrases.entry(key.into_boxed_str()).or_default();
        ph.name_cue = Some(true);
        ph.name_key = true;
        *words.entry(l).or_insert(0) |= flag::NAME_KEY;
    }

    let mut zip5 = vec![0u64; 100_000 / 64 + 1];
    for z in ZIP5.lines() {
        if let Ok(n) = z.parse::<usize>() {
            zip5[n / 64] |= 1 << (n % 64);
        }
    }
    // Sorted, so that the same lists always give the same bytes.
    let mut words: Vec<(Vec<u8>, u32)> =
        words.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect();
    words.sort();
    let mut phrases: Vec<(Vec<u8>, u32)> =
        phrases.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v.pack())).collect();
    phrases.sort();
    Built { words, phrases, zip5, state_abbr, max_phrase_tokens }
}

