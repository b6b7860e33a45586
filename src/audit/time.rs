//! Times given to the audit API and CLI: Unix milliseconds or RFC 3339.

use crate::keys::time::parse_rfc3339;

/// Parses `1767225600000` (Unix ms) or `2026-01-01T00:00:00Z` / `...00.250+02:00` (RFC 3339,
/// milliseconds kept) into Unix milliseconds.
pub fn parse_time_ms(text: &str) -> Option<u64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    let secs = parse_rfc3339(t)?;
    // parse_rfc3339 keeps whole seconds; the audit log is in ms, so add the fraction back.
    let frac_ms = match t.as_bytes().get(19) {
        Some(b'.') => {
            let digits: String = t[20..]
                .chars()
                .take_while(char::is_ascii_digit)
                .take(3)
                .collect();
            let scale = 10u64.pow(3 - u32::try_from(digits.len()).unwrap_or(3));
            digits.parse::<u64>().map_or(0, |d| d * scale)
        }
        _ => 0,
    };
    secs.checked_mul(1_000)?.checked_add(frac_ms)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_and_rfc3339() {
        assert_eq!(parse_time_ms("1767225600000"), Some(1_767_225_600_000));
        assert_eq!(
            parse_time_ms("2026-01-01T00:00:00Z"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_time_ms("2026-01-01T02:00:00.25+02:00"),
            Some(1_767_225_600_250)
        );
        assert_eq!(
            parse_time_ms("2026-01-01T00:00:00.1234Z"),
            Some(1_767_225_600_123)
        );
        for bad in ["", "yesterday", "-5", "2026-13-01T00:00:00Z", "12ab"] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
    }
}
