//! IPv4 and IPv6 addresses, by the standard library's parsers.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A dotted-quad IPv4 address; an octet with a leading zero ("01") is refused.
pub fn is_valid_v4(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok() && s.split('.').all(|o| o == "0" || !o.starts_with('0'))
}

/// An IPv6 address in any standard notation.
pub fn is_valid_v6(s: &str) -> bool {
    s.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        assert!(is_valid_v4("10.20.30.40"));
        assert!(!is_valid_v4("256.1.1.1"));
        assert!(!is_valid_v4("01.2.3.4"));
        assert!(is_valid_v6("2001:db8:85a3::8a2e:370:7334"));
        assert!(is_valid_v6("::1"));
        assert!(!is_valid_v6("12:30:45"));
    }
}
