//! Turns the word lists in `data/` into the engine's lookup tables (see
//! `src/recognize/dict_build.rs`), so that the engine loads nothing at start-up.

#![allow(missing_docs, dead_code)]

use std::path::PathBuf;

include!("src/recognize/dict_shared.rs");
include!("src/recognize/dict_build.rs");

fn main() {
    println!("cargo:rerun-if-changed=data");
    println!("cargo:rerun-if-changed=src/recognize/dict_shared.rs");
    println!("cargo:rerun-if-changed=src/recognize/dict_build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let b = build_tables();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    };
    write("words.tbl", &Table::encode(&b.words));
    write("phrases.tbl", &Table::encode(&b.phrases));
    let mut zip = vec![0u8; 100_000 / 8 + 1];
    for (i, w) in b.zip5.iter().enumerate() {
        for bit in 0..64 {
            if w & (1 << bit) != 0 {
                let z = i * 64 + bit;
                zip[z / 8] |= 1 << (z % 8);
            }
        }
    }
    write("zip5.bits", &zip);
    let states: Vec<u8> = b.state_abbr.iter().map(|&x| u8::from(x)).collect();
    write("state_abbr.bits", &states);
    write(
        "dict_meta.rs",
        format!(
            "/// Longest phrase in tokens.\nconst MAX_PHRASE_TOKENS: usize = {};\n",
            b.max_phrase_tokens
        )
        .as_bytes(),
    );
}
