//! Medicare Beneficiary Identifiers (CMS format, 11 characters, dashes allowed as 4-3-4).

/// Whether `s` follows the MBI format: position 1 a digit 1-9; 2, 5, 8, 9 letters (not S, L, O,
/// I, B, Z); 3 and 6 letter or digit; 4, 7, 10, 11 digits.
pub fn is_valid(s: &str) -> bool {
    let mut chars = [0u8; 11];
    let mut n = 0;
    for c in s.bytes() {
        if c == b'-' {
            continue;
        }
        if n == 11 {
            return false;
        }
        chars[n] = c.to_ascii_uppercase();
        n += 1;
    }
    if n != 11 {
        return false;
    }
    let letter = |c: u8| c.is_ascii_uppercase() && !b"SLOIBZ".contains(&c);
    let digit = |c: u8| c.is_ascii_digit();
    (b'1'..=b'9').contains(&chars[0])
        && letter(chars[1])
        && (letter(chars[2]) || digit(chars[2]))
        && digit(chars[3])
        && letter(chars[4])
        && (letter(chars[5]) || digit(chars[5]))
        && digit(chars[6])
        && letter(chars[7])
        && letter(chars[8])
        && digit(chars[9])
        && digit(chars[10])
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_and_invalid() {
        assert!(super::is_valid("1EG4-TE5-MK73"));
        assert!(super::is_valid("1EG4TE5MK73"));
        assert!(!super::is_valid("0EG4-TE5-MK73"));
        assert!(!super::is_valid("1SG4-TE5-MK73"));
        assert!(!super::is_valid("1EG4-TE5-MK7"));
    }
}
