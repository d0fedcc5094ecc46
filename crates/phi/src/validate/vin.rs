//! Vehicle identification numbers (ISO 3779, North American check digit).

/// Whether `s` is a 17-character VIN whose ninth character is the correct check digit.
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 17 {
        return false;
    }
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let mut sum = 0;
    let mut letters = 0;
    for (i, &c) in b.iter().enumerate() {
        let c = c.to_ascii_uppercase();
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'H' => u32::from(c - b'A') + 1,
            b'J'..=b'N' => u32::from(c - b'J') + 1,
            b'P' => 7,
            b'R'..=b'Z' => u32::from(c - b'R') + 9 - u32::from(c >= b'S'),
            _ => return false, // I, O, Q and anything else
        };
        letters += u32::from(c.is_ascii_alphabetic());
        sum += v * WEIGHTS[i];
    }
    let check = match sum % 11 {
        10 => b'X',
        r => b'0' + r as u8,
    };
    letters > 0 && b[8].to_ascii_uppercase() == check
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_and_invalid() {
        assert!(super::is_valid("1HGCM82633A004352"));
        assert!(super::is_valid("1M8GDM9AXKP042788"));
        assert!(!super::is_valid("1HGCM82634A004352"));
        assert!(!super::is_valid("1HGCM82633A00435"));
        assert!(!super::is_valid("1HGCM8263IA004352"));
    }
}
