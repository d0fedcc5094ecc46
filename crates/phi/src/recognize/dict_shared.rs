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
    /// A field name that is a name cue only as a label or a key (`name_keys.hand.txt`). Not a
    /// [`PHRASE_START`]: place rules read that flag as a sign of a proper noun.
    pub const NAME_KEY: u32 = 1 << 16;
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
    /// A field name that is a name cue only as a label or a key, before a `:` or `=`
    /// ("Family: Hargreaves", `"given": "Emeka"`); an ordinary word elsewhere ("given Lasix").
    pub name_key: bool,
}

/// Populations are kept up to 16.7 million (24 bits), more than any US city.
const POP_MAX: u32 = (1 << 24) - 1;

impl Phrase {
    /// Packs a phrase into a table value.
    #[allow(dead_code)] // used by the build script
    pub(crate) fn pack(&self) -> u32 {
        self.city_pop.min(POP_MAX)
            | u32::from(self.facility) << 24
            | u32::from(self.facility_head) << 25
            | u32::from(self.name_cue.is_some()) << 26
            | u32::from(self.name_cue == Some(true)) << 27
            | u32::from(self.county) << 28
            | u32::from(self.name_key) << 29
    }

    /// Unpacks a table value.
    #[allow(dead_code)] // used by the engine
    pub(crate) fn unpack(v: u32) -> Phrase {
        Phrase {
            city_pop: v & POP_MAX,
            facility: v >> 24 & 1 == 1,
            facility_head: v >> 25 & 1 == 1,
            name_cue: (v >> 26 & 1 == 1).then_some(v >> 27 & 1 == 1),
            county: v >> 28 & 1 == 1,
            name_key: v >> 29 & 1 == 1,
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

/// A read-only open-addressing hash table from byte strings to `u32`, laid out in one byte
/// slice so that it can be read straight from `include_bytes!`: a `u32` slot count (a power
/// of two, little-endian), then 32-byte slots, then the bytes of keys too long to sit in
/// their slot. A slot holds the hash's high half as a tag (`u32`), the value (`u32`), the
/// offset of a long key (`u32`), the key length (`u8`, 0 for an empty slot) and up to
/// [`INLINE`] key bytes: a lookup usually touches one cache line.
pub(crate) struct Table<'a> {
    bytes: &'a [u8],
    mask: usize,
    keys_at: usize,
}

const SLOT: usize = 32;
/// Key bytes kept in the slot itself.
const INLINE: usize = SLOT - 13;

#[allow(dead_code)] // each half is used by one side
impl<'a> Table<'a> {
    /// Lays out `entries` (keys unique, 1 to 255 bytes; others are skipped).
    pub(crate) fn encode(entries: &[(Vec<u8>, u32)]) -> Vec<u8> {
        let n = entries.len();
        let slots = (n + n / 2).next_power_of_two().max(16);
        let mut table = vec![0u8; slots * SLOT];
        let mut long: Vec<u8> = Vec::new();
        for (k, v) in entries {
            if k.is_empty() || k.len() > 255 {
                continue;
            }
            let h = table_hash(k);
            let mut i = h as usize & (slots - 1);
            while table[i * SLOT + 12] != 0 {
                i = (i + 1) & (slots - 1);
            }
            let s = &mut table[i * SLOT..(i + 1) * SLOT];
            s[0..4].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
            s[4..8].copy_from_slice(&v.to_le_bytes());
            s[12] = k.len() as u8;
            if k.len() <= INLINE {
                s[13..13 + k.len()].copy_from_slice(k);
            } else {
                s[8..12].copy_from_slice(&(long.len() as u32).to_le_bytes());
                long.extend_from_slice(k);
            }
        }
        let mut out = Vec::with_capacity(4 + table.len() + long.len());
        out.extend_from_slice(&(slots as u32).to_le_bytes());
        out.extend_from_slice(&table);
        out.extend_from_slice(&long);
        out
    }

    /// Reads a table laid out by [`Table::encode`]. Returns `None` if it is malformed.
    pub(crate) fn new(bytes: &'a [u8]) -> Option<Table<'a>> {
        let slots = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
        if !slots.is_power_of_two() || bytes.len() < 4 + slots * SLOT {
            return None;
        }
        Some(Table { bytes, mask: slots - 1, keys_at: 4 + slots * SLOT })
    }

    /// The value of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<u32> {
        self.get_hashed(table_hash(key), key)
    }

    /// [`Table::get`] with the key's [`table_hash`] already computed.
    #[inline]
    pub(crate) fn get_hashed(&self, h: u64, key: &[u8]) -> Option<u32> {
        if key.is_empty() || key.len() > 255 {
            return None;
        }
        let tag = ((h >> 32) as u32).to_le_bytes();
        let mut i = h as usize & self.mask;
        loop {
            let s = self.bytes.get(4 + i * SLOT..4 + (i + 1) * SLOT)?;
            let len = s[12] as usize;
            if len == 0 {
                return None;
            }
            if len == key.len() && s[0..4] == tag {
                let same = if len <= INLINE {
                    &s[13..13 + len] == key
                } else {
                    let off = u32::from_le_bytes([s[8], s[9], s[10], s[11]]) as usize;
                    self.bytes.get(self.keys_at + off..self.keys_at + off + len) == Some(key)
                };
                if same {
                    return Some(u32::from_le_bytes([s[4], s[5], s[6], s[7]]));
                }
            }
            i = (i + 1) & self.mask;
        }
    }
}
