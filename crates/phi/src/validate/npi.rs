//! US National Provider Identifiers: ten digits, Luhn over the prefix 80840.

use super::{digit_values, luhn};

/// Whether `s` is a valid NPI: 10 digits starting with 1 or 2 whose Luhn check, with the card
/// issuer prefix 80840 in front, holds.
pub fn is_valid(s: &str) -> bool {
    if digit_values(s).count() != 10 || !matches!(digit_values(s).next(), Some(1 | 2)) {
        return false;
    }
    let prefix = [8u32, 0, 8, 4, 0];
    luhn::sum(digit_values(s).rev().chain(prefix.into_iter().rev())).is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_and_invalid() {
        assert!(super::is_valid("1234567893"));
        assert!(!super::is_valid("1234567890"));
        assert!(!super::is_valid("3234567893"));
        assert!(!super::is_valid("123456789"));
    }
}
