//! Payment card numbers: length, issuer prefix and Luhn.

use super::{digit_values, luhn};

/// Whether `s` is a plausible payment card number: 13 to 19 digits, a known issuer prefix
/// (Visa, Mastercard, Amex, Discover, JCB, Diners) and a valid Luhn check digit.
pub fn is_valid(s: &str) -> bool {
    let n = digit_values(s).count();
    if !(13..=19).contains(&n) {
        return false;
    }
    let mut prefix = 0u32;
    for d in digit_values(s).take(6) {
        prefix = prefix * 10 + d;
    }
    let p = |k: u32| prefix / 10u32.pow(6 - k);
    let known = p(1) == 4
        || (51..=55).contains(&p(2))
        || (2221..=2720).contains(&p(4))
        || p(2) == 34
        || p(2) == 37
        || p(4) == 6011
        || p(2) == 65
        || (644..=649).contains(&p(3))
        || (3528..=3589).contains(&p(4))
        || p(2) == 36
        || p(2) == 38
        || (300..=305).contains(&p(3));
    known && luhn::is_valid(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_and_invalid() {
        assert!(super::is_valid("4111 1111 1111 1111"));
        assert!(super::is_valid("5555-5555-5555-4444"));
        assert!(super::is_valid("378282246310005"));
        assert!(!super::is_valid("1234567812345670")); // Luhn-valid, no issuer
        assert!(!super::is_valid("4111111111111112"));
        assert!(!super::is_valid("4111"));
    }
}
