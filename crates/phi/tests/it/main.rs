//! Integration tests of the `phi` crate: the golden corpus (data files), property tests and
//! cues across field layouts.

mod addresses;
mod casing;
mod dates;
mod golden;
mod ids;
mod layout;
mod lookalikes;
mod props;
mod repeat;

use std::sync::OnceLock;

use phi::{Category, Scanner};

/// One scanner with every recognizer on, shared by the tests.
pub(crate) fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| Scanner::new().unwrap())
}

/// The findings of `text` as (category, found text).
pub(crate) fn found(text: &str) -> Vec<(Category, &str)> {
    scanner().scan(text).iter().map(|f| (f.category, &text[f.start..f.end])).collect()
}
