//! The word lists (see `crates/phi/data/README.md` for their sources and licences). The build
//! script (`build.rs`) turns them into two hash tables and two bit sets, compiled into the
//! binary: the engine starts with them in place, and a token costs one lookup.

include!("dict_shared.rs");

/// The tables `build.rs` wrote (formats in `dict_shared.rs`).
static WORDS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/words.tbl"));
static PHRASES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/phrases.tbl"));
/// Valid 5-digit ZIP codes, one bit each over 0..100000.
static ZIP5: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zip5.bits"));
/// State abbreviations (upper-case, two letters): one byte (0 or 1) each over 26*26.
static STATE_ABBR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/state_abbr.bits"));
include!(concat!(env!("OUT_DIR"), "/dict_meta.rs"));

/// Words of up to this many bytes are cached.
const CACHED_KEY: usize = 19;
const CACHE_SLOTS: usize = 4096;

/// A direct-mapped cache of word flags (see [`Dict::flags_cached`]), kept per thread.
pub(crate) struct WordCache {
    slots: Vec<CacheSlot>,
}

#[derive(Clone, Copy, Default)]
struct CacheSlot {
    len: u8,
    key: [u8; CACHED_KEY],
    flags: u32,
}

impl Default for WordCache {
    fn default() -> Self {
        WordCache { slots: vec![CacheSlot::default(); CACHE_SLOTS] }
    }
}

pub(crate) struct Dict {
    words: Table<'static>,
    phrases: Table<'static>,
    /// Longest phrase in tokens.
    pub max_phrase_tokens: usize,
}

impl Dict {
    /// The compiled-in tables. Costs nothing: the tables are read where they lie.
    pub(crate) fn load() -> Dict {
        // The tables were written by this crate's build script; a malformed one is a build bug.
        #[allow(clippy::expect_used)]
        let table = |b: &'static [u8]| Table::new(b).expect("build.rs writes well-formed tables");
        Dict { words: table(WORDS), phrases: table(PHRASES), max_phrase_tokens: MAX_PHRASE_TOKENS }
    }

    /// Flags of a lower-case word (0 if unknown).
    #[inline]
    pub(crate) fn flags(&self, lower: &str) -> u32 {
        match self.words.get(lower.as_bytes()) {
            Some(f) => f,
            // "zoë", "núñez", "josé": the lists are in ASCII.
            None if !lower.is_ascii() => {
                let f = fold_accents(lower).and_then(|f| self.words.get(f.as_bytes())).unwrap_or(0);
                // No month, weekday or stop word is spelled with diacritics ("Ján" is no
                // "Jan"), and English borrows only a few of them ("café", "naïve"): a word
                // with any other ("Bašić", "Kónya") is no English word, whatever its letters.
                let f = f & !(flag::MONTH | flag::WEEKDAY | flag::STOP);
                if lower.chars().all(|c| c.is_ascii() || ENGLISH_ACCENTS.contains(c)) {
                    f
                } else {
                    f & !(flag::ENGLISH | flag::ABBREV)
                }
            }
            None => 0,
        }
    }

    /// [`Dict::flags`] through a small per-thread cache of recent words: clinical text repeats
    /// its vocabulary, and the cache stays in L2 where the word table does not.
    #[inline]
    pub(crate) fn flags_cached(&self, lower: &str, cache: &mut WordCache) -> u32 {
        let key = lower.as_bytes();
        if key.len() > CACHED_KEY || !lower.is_ascii() {
            return self.flags(lower);
        }
        let h = table_hash(key);
        let slot = &mut cache.slots[(h as usize) & (CACHE_SLOTS - 1)];
        if slot.len as usize == key.len() && slot.len != 0 && &slot.key[..key.len()] == key {
            return slot.flags;
        }
        let flags = self.words.get_hashed(h, key).unwrap_or(0);
        slot.len = key.len() as u8;
        slot.key[..key.len()].copy_from_slice(key);
        slot.flags = flags;
        flags
    }

    /// A phrase (lower-case, single spaces) if known.
    #[inline]
    pub(crate) fn phrase(&self, lower: &str) -> Option<Phrase> {
        self.phrases.get(lower.as_bytes()).map(Phrase::unpack)
    }

    /// Whether a 5-digit ZIP code exists.
    pub(crate) fn is_zip5(&self, z: u32) -> bool {
        let z = z as usize;
        z < 100_000 && ZIP5.get(z / 8).is_some_and(|b| b & (1 << (z % 8)) != 0)
    }

    /// Whether `s` is a two-letter upper-case state abbreviation.
    pub(crate) fn is_state_abbr(&self, s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 2
            && b.iter().all(u8::is_ascii_uppercase)
            && STATE_ABBR.get((b[0] - b'A') as usize * 26 + (b[1] - b'A') as usize) == Some(&1)
    }
}

/// The diacritics of words English has borrowed ("café", "façade", "naïve", "señor", "über").
const ENGLISH_ACCENTS: &str = "éèêëçïñàâôûü";

/// The ASCII form of a lower-case Latin word with diacritics ("núñez" → "nunez"), if every
/// letter has one.
pub(crate) fn fold_accents(lower: &str) -> Option<String> {
    let mut out = String::with_capacity(lower.len());
    for c in lower.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        let f = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
            'ç' | 'ć' | 'č' => 'c',
            'ď' | 'đ' => 'd',
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
            'ğ' => 'g',
            'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => 'i',
            'ł' | 'ľ' => 'l',
            'ñ' | 'ń' | 'ň' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
            'ř' => 'r',
            'ś' | 'š' | 'ş' | 'ș' => 's',
            'ť' | 'ţ' | 'ț' => 't',
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
            'ý' | 'ÿ' => 'y',
            'ź' | 'ż' | 'ž' => 'z',
            '\'' => '\'',
            _ => return None,
        };
        out.push(f);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trip() {
        let mut entries: Vec<(Vec<u8>, u32)> =
            (0..5000u32).map(|i| (format!("w{i}x").into_bytes(), i * 7 + 1)).collect();
        entries.push(("a much longer key than fits in a slot".into(), 9));
        let bytes = Table::encode(&entries);
        let t = Table::new(&bytes).unwrap();
        for (k, v) in &entries {
            assert_eq!(t.get(k), Some(*v));
        }
        assert_eq!(t.get(b"w5000x"), None);
        assert_eq!(t.get(b""), None);
        assert!(Table::new(&bytes[..bytes.len() / 2]).is_none());
    }

    #[test]
    fn compiled_tables_hold_the_lists() {
        let d = Dict::load();
        assert!(d.flags("john") & flag::GIVEN != 0);
        assert!(d.flags("smith") & flag::SURNAME != 0);
        assert!(d.flags("metformin") & flag::DRUG != 0);
        assert!(d.flags("núñez") & flag::SURNAME != 0);
        assert_eq!(d.flags("qzxv"), 0);
        assert!(d.phrase("new york").is_some_and(|p| p.city_pop > 1_000_000));
        assert!(d.is_zip5(2139) && !d.is_zip5(99_999));
        assert!(d.is_state_abbr("MA") && !d.is_state_abbr("QQ"));
        assert!(d.max_phrase_tokens >= 3);
        let p = Phrase { city_pop: 7, facility: true, name_cue: Some(false), ..Phrase::default() };
        assert_eq!(Phrase::unpack(p.pack()), p);
        let k = Phrase { name_cue: Some(true), name_key: true, ..Phrase::default() };
        assert_eq!(Phrase::unpack(k.pack()), k);
        assert!(d.phrase("family").is_some_and(|p| p.name_key && p.name_cue == Some(true)));
        assert!(d.phrase("lastname").is_some_and(|p| !p.name_key && p.name_cue == Some(true)));
    }
}
