//! Checksums and structural checks that turn a regex candidate into a finding.
//!
//! Every function here is pure and takes the candidate text exactly as it appears in the prompt
//! (separators included), so the scanner can keep its regexes loose and cheap and decide here.

use std::net::Ipv6Addr;
use std::str::FromStr;

/// Whether `digits` (ASCII digits only) passes the Luhn check.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        if !d.is_ascii_digit() {
            return false;
        }
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// The digits of `s` if its only other characters are one kind of separator (space or dash),
/// so `4111 1111-1111 1111` is refused while `4111-1111-1111-1111` is accepted.
fn digits_with_one_separator(s: &str) -> Option<Vec<u8>> {
    let mut sep = None;
    let mut digits = Vec::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_digit() {
            digits.push(b);
        } else {
            match sep {
                None => sep = Some(b),
                Some(prev) if prev == b => {}
                Some(_) => return None,
            }
        }
    }
    Some(digits)
}

/// Whether a card candidate is a payment card number: 13 to 19 digits, consistent grouping, an
/// issuer prefix of a card network (so a Luhn-valid order number starting with 1, 7, 8, 9 or 0,
/// or an ISBN-13 starting with 978, is not a card) and a valid Luhn check digit.
pub fn card(candidate: &str) -> bool {
    let Some(digits) = digits_with_one_separator(candidate) else {
        return false;
    };
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let prefix = |n: usize| -> u32 {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let network = match digits.first() {
        Some(b'4') => true,                               // Visa
        Some(b'5') => (50..=59).contains(&prefix(2)),     // Mastercard, Maestro
        Some(b'2') => (2221..=2720).contains(&prefix(4)), // Mastercard 2-series
        // Amex 34/37, Diners 30/36/38/39, JCB 35
        Some(b'3') => matches!(prefix(2), 30 | 34..=39),
        Some(b'6') => true, // Discover, UnionPay, Maestro
        _ => false,
    };
    network && luhn(&digits)
}

/// IBAN lengths by country (ISO 13616 registry). A country missing here is not an IBAN.
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// The registered IBAN length for a two-letter country code.
pub fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS
        .binary_search_by(|(c, _)| (*c).cmp(country))
        .ok()
        .and_then(|i| IBAN_LENGTHS.get(i))
        .map(|(_, len)| *len)
}

/// Whether `compact` (an IBAN without spaces, upper case) passes the ISO 7064 mod-97 check.
pub fn iban_mod97(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem = 0u32;
    // The country and check digits move to the end; letters count as 10..35.
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Where an IBAN candidate really ends: the registered length for its country, counted without
/// spaces, must end at the candidate's end or at a space, so a following word is not swallowed.
/// Returns the byte length of the IBAN within `candidate`.
pub fn iban(candidate: &str) -> Option<usize> {
    let country = candidate.get(..2)?;
    let want = iban_length(country)?;
    let check = candidate.get(2..4)?;
    if !(check.bytes().all(|b| b.is_ascii_digit()) && ("02"..="98").contains(&check)) {
        return None;
    }
    let mut compact = Vec::with_capacity(want);
    let mut end = None;
    for (i, b) in candidate.bytes().enumerate() {
        if b == b' ' {
            continue;
        }
        compact.push(b);
        if compact.len() == want {
            end = Some(i + 1);
            break;
        }
    }
    let end = end?;
    // A longer run of characters glued to the IBAN means this is something else.
    if candidate.as_bytes().get(end).is_some_and(|b| *b != b' ') {
        return None;
    }
    iban_mod97(&compact).then_some(end)
}

/// Whether `ddd-dd-dddd` is a possible US SSN: area not 000, 666 or 900-999, group not 00,
/// serial not 0000.
pub fn ssn(candidate: &str) -> bool {
    let parts: Vec<&str> = candidate.split('-').collect();
    let [area, group, serial] = parts.as_slice() else {
        return false;
    };
    if area.len() != 3 || group.len() != 2 || serial.len() != 4 {
        return false;
    }
    let (Ok(a), Ok(g), Ok(s)) = (
        area.parse::<u16>(),
        group.parse::<u16>(),
        serial.parse::<u16>(),
    ) else {
        return false;
    };
    a != 0 && a != 666 && a < 900 && g != 0 && s != 0
}

/// Whether a dotted quad is an IPv4 address: four octets up to 255, no leading zeros (as
/// `std::net::Ipv4Addr` parses them).
pub fn ipv4(candidate: &str) -> bool {
    let mut n = 0;
    for octet in candidate.split('.') {
        n += 1;
        if octet.is_empty() || octet.len() > 3 || (octet.len() > 1 && octet.starts_with('0')) {
            return false;
        }
        match octet.parse::<u16>() {
            Ok(v) if v <= 255 => {}
            _ => return false,
        }
    }
    n == 4
}

/// Whether a candidate is an IPv6 address worth flagging: it parses, it is not the unspecified
/// address, and it has a decimal digit and at least four hex digits, so `::1`, `a::b` and
/// `Face::add` in code are not flagged while `2001:db8::1` and `fe80::1` are.
pub fn ipv6(candidate: &str) -> bool {
    let hex = candidate.bytes().filter(u8::is_ascii_hexdigit).count();
    if hex < 4 || !candidate.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    match Ipv6Addr::from_str(candidate) {
        Ok(addr) => !addr.is_unspecified(),
        Err(_) => false,
    }
}

/// Number of ASCII digits in `s`.
pub fn digit_count(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

/// Decodes unpadded (or padded) base64url; `None` on any other character.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Whether a `header.payload.signature` candidate is a JWT: the header decodes to a JSON object
/// with a string `alg`.
pub fn jwt(candidate: &str) -> bool {
    let Some(header) = candidate.split('.').next() else {
        return false;
    };
    let Some(bytes) = base64url_decode(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("alg").map(serde_json::Value::is_string))
        .unwrap_or(false)
}

/// Whether the body of a token (after its well-known prefix) looks random rather than like a
/// word: upper and lower case letters and a digit. Keeps `sk-learn-compatible-2024` out.
pub fn mixed_token(body: &str) -> bool {
    let b = body.as_bytes();
    b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn luhn_known_values() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"79927398710"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b""));
        assert!(!luhn(b"41x1"));
    }

    #[test]
    fn cards() {
        for ok in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "4222222222222",
        ] {
            assert!(card(ok), "{ok}");
        }
        for bad in [
            "4111111111111112",     // Luhn
            "4111 1111-1111 1111",  // mixed separators
            "1234567812345670",     // Luhn-valid, no network
            "9780306406157",        // ISBN-13
            "411111111111",         // too short
            "41111111111111111111", // too long
            "0000000000000000",
        ] {
            assert!(!card(bad), "{bad}");
        }
    }

    #[test]
    fn ibans() {
        assert_eq!(iban("GB82WEST12345698765432"), Some(22));
        assert_eq!(iban("GB82 WEST 1234 5698 7654 32"), Some(27));
        assert_eq!(iban("DE89370400440532013000"), Some(22));
        assert_eq!(iban("DE89 3704 0044 0532 0130 00"), Some(27));
        assert_eq!(iban("FR1420041010050500013M02606"), Some(27));
        assert_eq!(iban("NO9386011117947"), Some(15));
        // A following group is not part of the IBAN.
        assert_eq!(iban("GB82 WEST 1234 5698 7654 32 ABCD"), Some(27));
        assert_eq!(iban("GB82WEST12345698765433"), None); // checksum
        assert_eq!(iban("GB00WEST12345698765432"), None); // check digits out of range
        assert_eq!(iban("DE8937040044053201300"), None); // too short
        assert_eq!(iban("DE893704004405320130001"), None); // glued extra char
        assert_eq!(iban("ZZ82WEST12345698765432"), None); // unknown country
        assert!(IBAN_LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn ssns() {
        assert!(ssn("123-45-6789"));
        assert!(ssn("078-05-1120"));
        assert!(ssn("899-99-9999"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "12-345-6789",
        ] {
            assert!(!ssn(bad), "{bad}");
        }
    }

    #[test]
    fn ips() {
        assert!(ipv4("192.168.1.20"));
        assert!(ipv4("8.8.8.8"));
        assert!(ipv4("255.255.255.255"));
        assert!(!ipv4("999.1.1.1"));
        assert!(!ipv4("256.1.1.1"));
        assert!(!ipv4("01.2.3.4"));
        assert!(!ipv4("1.2.3"));
        assert!(ipv6("2001:db8::8a2e:370:7334"));
        assert!(ipv6("2001:0db8:85a3:0000:0000:8a2e:0370:7334"));
        assert!(ipv6("fe80::1"));
        assert!(ipv6("::ffff:192.0.2.1"));
        assert!(!ipv6("::"));
        assert!(!ipv6("::1"));
        assert!(!ipv6("a::b"));
        assert!(!ipv6("dead::beef"));
        assert!(!ipv6("12:30:45"));
        assert!(!ipv6("00:1a:2b:3c:4d:5e"));
    }

    #[test]
    fn jwts() {
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert!(jwt(t));
        assert!(!jwt("eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxIn0.abc")); // no alg
        assert!(!jwt("eyJub3QganNvbg.eyJ.x"));
        assert_eq!(base64url_decode("aGk").unwrap(), b"hi");
        assert_eq!(base64url_decode("aGk=").unwrap(), b"hi");
        assert!(base64url_decode("a+b").is_none());
    }
}
