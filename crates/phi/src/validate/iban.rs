//! International bank account numbers: the ISO 13616 mod-97 check.

/// Whether `s` (spaces allowed) is an IBAN whose mod-97 remainder is 1.
pub fn is_valid(s: &str) -> bool {
    let b: Vec<u8> = s.bytes().filter(|c| *c != b' ').collect();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_alphabetic)
        || !b[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        let c = c.to_ascii_uppercase();
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        }
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_and_invalid() {
        assert!(super::is_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(super::is_valid("DE89370400440532013000"));
        assert!(!super::is_valid("GB82 WEST 1234 5698 7654 33"));
        assert!(!super::is_valid("1234"));
    }
}
