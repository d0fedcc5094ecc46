//! US Social Security numbers: the SSA's rules for numbers that are never issued.

use super::digit_values;

/// Whether the nine digits of `s` could be an issued SSN: area not 000, 666 or 900-999, group
/// not 00, serial not 0000, not all one digit, not one of the numbers used in advertising.
pub fn is_valid(s: &str) -> bool {
    let mut d = [0u32; 9];
    let mut n = 0;
    for v in digit_values(s) {
        if n == 9 {
            return false;
        }
        d[n] = v;
        n += 1;
    }
    if n != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    let all_same = d.iter().all(|&x| x == d[0]);
    let advertised =
        (area, group, serial) == (78, 5, 1120) || (area, group, serial) == (219, 9, 9999);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 && !all_same && !advertised
}

/// The same rules for nine bare digits (no separators).
pub fn is_plausible_unformatted(s: &str) -> bool {
    s.len() == 9 && s.bytes().all(|c| c.is_ascii_digit()) && is_valid(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        assert!(is_valid("219-45-6712"));
        assert!(is_valid("123-45-6789"));
        assert!(is_plausible_unformatted("457555462"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
            "111-11-1111",
            "078-05-1120",
            "12-345-678",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
