//! US ABA bank routing numbers: nine digits with 3-7-1 weights.

use super::digit_values;

/// Whether `s` is a nine-digit routing number whose weighted sum is a multiple of ten.
pub fn is_valid(s: &str) -> bool {
    if digit_values(s).count() != 9 {
        return false;
    }
    let sum: u32 = digit_values(s).zip([3, 7, 1, 3, 7, 1, 3, 7, 1]).map(|(d, w)| d * w).sum();
    sum.is_multiple_of(10) && sum > 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_and_invalid() {
        assert!(super::is_valid("011000015"));
        assert!(super::is_valid("021000021"));
        assert!(!super::is_valid("011000016"));
        assert!(!super::is_valid("000000000"));
    }
}
