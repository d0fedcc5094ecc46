//! Check-digit and validity rules for identifiers, one small module per rule (like DataDog's
//! sensitive-data-scanner). Every function takes the candidate as matched in text, separators
//! (`-`, space, `.`, `/`) included, and allocates nothing.

pub mod aba;
pub mod card;
pub mod dea;
pub mod iban;
pub mod ip;
pub mod luhn;
pub mod mbi;
pub mod npi;
pub mod ssn;
pub mod vin;

/// The ASCII digits of `s`, as numbers, skipping everything else.
pub(crate) fn digit_values(s: &str) -> impl DoubleEndedIterator<Item = u32> + '_ {
    s.bytes().filter(u8::is_ascii_digit).map(|c| u32::from(c - b'0'))
}
