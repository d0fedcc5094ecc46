// Shared by the build script (`build.rs`, through `include!`) and the engine: the flags of a
// word, what a phrase is, and the format of the hash tables the build script writes into
// `OUT_DIR` so that the engine starts with its word lists already in place (no parsing, no
// hashing, no allocation at start-up). Keep it free of `crate::` paths.

/// Bit flags of what a word (lower-case) is known to be.
pub(crate) mod flag {
    pub const GIVEN: u32 = 1 << 0;
    pub const SURNAME: u32 = 1 << 1;
    /// A common English word (it appears in lower case in the English word list).
    pub const ENGLISH: u32 = 1 << 2;
    /// A word the English word list has only capitalised (a proper noun).
    pub const PROPER: u32 = 1 << 3;
    pub const MEDICAL: u32 = 1 << 4;
    pub const DRUG: u32 = 1 << 5;
    /// The first word of a multi-word phrase (city, facility, cue).
    pub const PHRASE_START: u32 = 1 << 6;
    pub const TITLE: u32 = 1 << 7;
    pub const FACILITY_WORD: u32 = 1 << 8;
    pub const EPONYM_HEAD: u32 = 1 << 9;
    pub const ABBREV: u32 = 1 << 10;
    pub const MONTH: u32 = 1 << 11;
    pub const WEEKDAY: u32 = 1 << 12;
    pub const STREET_SUFFIX: u32 = 1 << 13;
    pub const STATE_NAME: u32 = 1 << 14;
    pub const STOP: u32 = 1 << 15;
    pub const LOC_CUE: u32 = 1 << 17;
    #[allow(dead_code)] // set from the lists; no rule reads it yet
    pub const NAME_SUFFIX: u32 = 1 << 18;
    /// Given names that are also very common surnames or words, weaker evidence alone.
    pub const GIVEN_COMMON: u32 = 1 << 19;
    pub const SURNAME_COMMON: u32 = 1 << 20;
    /// Among the 400 most frequent given names, and no word first: strong evidence even
    /// when it is also an English word ("John", "Bill").
    pub const GIVEN_TOP: u32 = 1 << 21;
    /// A word that appears after the first word of some phrase: a phrase lookup goes on
    /// only while the next word has it.
    pub const PHRASE_CONT: u32 = 1 << 22;
}

/// What a multi-word (or single-word) phrase is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Phrase {
    /// City population (0: not a city).
    pub city_pop: u32,
    /// A known facility or health system name.
    pub facility: bool,
    /// A strong facility head ("medical center", "hospital").
    pub facility_head: bool,
    /// A cue after which a name follows; `true` for strong cues.
    pub name_cue: Option<bool>,
    /// A county name.
    pub county: bool,
}

impl Phrase {
    /// Packs a phrase into a table value.
    #[allow(dead_code)] // used by the build script
    pub(crate) fn pack(&self) -> u64 {
        u64::from(self.city_pop)
            | u64::from(self.facility) << 32
            | u64::from(self.facility_head) << 33
            | u64::from(self.name_cue.is_some()) << 34
            | u64::from(self.name_cue == Some(true)) << 35
            | u64::from(self.county) << 36
    }

    /// Unpacks a table value.
    #[allow(dead_code)] // used by the engine
    pub(crate) fn unpack(v: u64) -> Phrase {
        Phrase {
            city_pop: v as u32,
            facility: v >> 32 & 1 == 1,
            facility_head: v >> 33 & 1 == 1,
            name_cue: (v >> 34 & 1 == 1).then_some(v >> 35 & 1 == 1),
            county: v >> 36 & 1 == 1,
        }
    }
}

/// The hash of a key in the tables: 8 bytes at a time, multiplied and rotated (FxHash's
/// mixing), then folded. It only needs to be fast and the same in the build script.
#[inline]
pub(crate) fn table_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ x).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    let r = chunks.remainder();
    last[..r.len()].copy_from_slice(r);
    h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    h ^ (h >> 29)
}

/// A read-only open-addressing hash table from byte strings to `u64`, laid out in one byte
/// slice (little-endian): `u32` slot count (a power of two), `u32` entry count, the slots
/// (`u32` entry number + 1, 0 for empty), the entries (`u32` key offset, `u32` key length,
/// `u64` value), then the keys' bytes. It can be read straight from `include_bytes!`.
pub(crate) struct Table<'a> {
    bytes: &'a [u8],
    mask: usize,
    entries_at: usize,
    keys_at: usize,
}

#[allow(dead_code)] // each half is used by one side
impl<'a> Table<'a> {
    /// Lays out `entries` (keys unique).
    pub(crate) fn encode(entries: &[(Vec<u8>, u64)]) -> Vec<u8> {
        let slots = (entries.len() * 2).next_power_of_two().max(16);
        let mut slot = vec![0u32; slots];
        let mut keys: Vec<u8> = Vec::new();
        let mut ents: Vec<u8> = Vec::with_capacity(entries.len() * 16);
        for (n, (k, v)) in entries.iter().enumerate() {
            let mut i = table_hash(k) as usize & (slots - 1);
            while slot[i] != 0 {
                i = (i + 1) & (slots - 1);
            }
            slot[i] = n as u32 + 1;
            ents.extend_from_slice(&(keys.len() as u32).to_le_bytes());
            ents.extend_from_slice(&(k.len() as u32).to_le_bytes());
            ents.extend_from_slice(&v.to_le_bytes());
            keys.extend_from_slice(k);
        }
        let mut out = Vec::with_capacity(8 + slots * 4 + ents.len() + keys.len());
        out.extend_from_slice(&(slots as u32).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for s in slot {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&ents);
        out.extend_from_slice(&keys);
        out
    }

    /// Reads a table laid out by [`Table::encode`]. Returns `None` if it is malformed.
    pub(crate) fn new(bytes: &'a [u8]) -> Option<Table<'a>> {
        let slots = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
        let n = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
        if !slots.is_power_of_two() {
            return None;
        }
        let entries_at = 8 + slots * 4;
        let keys_at = entries_at + n * 16;
        if bytes.len() < keys_at {
            return None;
        }
        Some(Table { bytes, mask: slots - 1, entries_at, keys_at })
    }

    #[inline]
    fn u32_at(&self, at: usize) -> usize {
        let b = &self.bytes[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    /// The value of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<u64> {
        let mut i = table_hash(key) as usize & self.mask;
        loop {
            let e = self.u32_at(8 + i * 4);
            if e == 0 {
                return None;
            }
            let at = self.entries_at + (e - 1) * 16;
            let (off, len) = (self.u32_at(at), self.u32_at(at + 4));
            if len == key.len() && self.bytes.get(self.keys_at + off..self.keys_at + off + len) == Some(key) {
                let v = &self.bytes[at + 8..at + 16];
                return Some(u64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]));
            }
            i = (i + 1) & self.mask;
        }
    }
}
