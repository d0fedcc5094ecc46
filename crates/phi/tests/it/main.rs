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
mod prose_names;
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

/// Asserts that `text` has a finding of `cat` over exactly `value`.
#[track_caller]
pub(crate) fn assert_found(text: &str, cat: Category, value: &str) {
    let f = found(text);
    assert!(f.contains(&(cat, value)), "{text:?}: expected {cat:?} {value:?}, got {f:?}");
}

/// Asserts that `text` has no finding of any of `cats`.
#[track_caller]
pub(crate) fn assert_none_of(text: &str, cats: &[Category]) {
    let f = found(text);
    assert!(f.iter().all(|(c, _)| !cats.contains(c)), "{text:?}: expected no {cats:?}, got {f:?}");
}

/// Asserts that `text` has no finding at all.
#[track_caller]
pub(crate) fn assert_clean(text: &str) {
    let f = found(text);
    assert!(f.is_empty(), "{text:?}: expected nothing, got {f:?}");
}
