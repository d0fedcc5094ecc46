//! US DEA registration numbers: two letters and seven digits with a check digit.

/// Whether `s` is a valid DEA number: a registrant-type letter, a second letter (or 9), seven
/// digits, the last being `(d1+d3+d5 + 2*(d2+d4+d6)) mod 10`.
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 9 {
        return false;
    }
    let first = b[0].to_ascii_uppercase();
    if !b"ABCDEFGHJKLMPRSTUX".contains(&first) || !(b[1].is_ascii_alphabetic() || b[1] == b'9') {
        return false;
    }
    if !b[2..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let d: Vec<u32> = b[2..].iter().map(|c| u32::from(c - b'0')).collect();
    (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_and_invalid() {
        assert!(super::is_valid("AB1234563"));
        assert!(super::is_valid("BJ6125341"));
        assert!(!super::is_valid("AB1234564"));
        assert!(!super::is_valid("ZZ1234563"));
        assert!(!super::is_valid("AB123456"));
    }
}
