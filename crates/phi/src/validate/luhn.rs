//! The Luhn (mod 10) check digit, used by payment cards and NPIs.

use super::digit_values;

/// Whether the digits of `s` (separators ignored) pass the Luhn check. At least two digits.
pub fn is_valid(s: &str) -> bool {
    digit_values(s).count() >= 2 && sum(digit_values(s).rev()).is_multiple_of(10)
}

/// Luhn sum over digits given right-to-left, the rightmost (check digit) first.
pub(crate) fn sum(rev_digits: impl Iterator<Item = u32>) -> u32 {
    rev_digits
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_and_invalid() {
        assert!(super::is_valid("79927398713"));
        assert!(super::is_valid("4111 1111 1111 1111"));
        assert!(!super::is_valid("79927398710"));
        assert!(!super::is_valid("4111-1111-1111-1112"));
        assert!(!super::is_valid("0"));
    }
}
