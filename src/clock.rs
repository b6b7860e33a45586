//! Time as the APIs and the CLI write it: durations (`30s` .. `1mo`), RFC 3339 instants, UTC
//! days (`YYYY-MM-DD`) and the system clock in Unix milliseconds.
//!
//! One place for every module (keys, spend, audit, dashboard) so that a date means the same
//! everywhere; the calendar itself is the `time` crate's. Owns no state and touches no store.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

/// Seconds per unit suffix of a duration. `mo` is 30 days, as LiteLLM counts it; it comes
/// before `m` so that `1mo` is not read as minutes.
const UNITS: &[(&str, u64)] = &[
    ("mo", 30 * 86_400),
    ("s", 1),
    ("m", 60),
    ("h", 3_600),
    ("d", 86_400),
    ("w", 7 * 86_400),
];

/// Unix time in milliseconds from the system clock.
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses `30s`, `15m`, `1h`, `1d`, `2w`, `1mo` into seconds (a positive whole number of units).
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (unit, secs) = UNITS.iter().find(|(u, _)| text.ends_with(u))?;
    let digits = &text[..text.len() - unit.len()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    if n == 0 {
        return None;
    }
    n.checked_mul(*secs)
}

/// Writes seconds in the largest of days, hours and minutes that divides them exactly
/// (`86400` -> `1d`, `5400` -> `90m`), else in seconds.
pub fn format_duration(secs: u64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs > 0 && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// The UTC instant of Unix seconds (the far future past year 9999 clamps to its last second).
fn utc(secs: u64) -> OffsetDateTime {
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z, the last RFC 3339 can write
    let secs = i64::try_from(secs).map_or(MAX, |s| s.min(MAX));
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(secs: u64) -> String {
    let f = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    utc(secs).format(&f).unwrap_or_default()
}

/// Parses an RFC 3339 time (`2025-01-31T12:00:00Z`, `2025-01-31T14:00:00.5+02:00`) into Unix
/// milliseconds (finer fractions dropped, times before 1970 clamp to 0).
fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    let ms = t.to_offset(UtcOffset::UTC).unix_timestamp_nanos() / 1_000_000;
    Some(u64::try_from(ms).unwrap_or(0))
}

/// Parses an RFC 3339 time into Unix seconds (fractions dropped, before 1970 clamps to 0).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    parse_rfc3339_ms(text).map(|ms| ms / 1_000)
}

/// Parses `1767225600000` (Unix ms) or an RFC 3339 time (milliseconds kept) into Unix ms.
pub fn parse_time_ms(text: &str) -> Option<u64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    parse_rfc3339_ms(t)
}

/// The UTC day of Unix seconds, as `YYYY-MM-DD`.
pub fn day(secs: u64) -> String {
    let f = format_description!("[year]-[month]-[day]");
    utc(secs).date().format(&f).unwrap_or_default()
}

/// Checks a `YYYY-MM-DD` date that exists; returns it unchanged when valid.
pub fn parse_day(text: &str) -> Option<&str> {
    let f = format_description!("[year]-[month]-[day]");
    // A day key is exactly ten characters (no signed or five-digit years).
    (text.len() == 10 && Date::parse(text, &f).is_ok()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("1h"), Some(3_600));
        assert_eq!(parse_duration("30d"), Some(2_592_000));
        assert_eq!(parse_duration("1mo"), Some(2_592_000));
        assert_eq!(parse_duration("2w"), Some(1_209_600));
        for bad in [
            "",
            "d",
            "mo",
            "0d",
            "1.5h",
            "-1d",
            "10",
            "1y",
            "1 d",
            "1dd",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(2_592_000), "30d");
        assert_eq!(format_duration(86_400), "1d");
        assert_eq!(format_duration(604_800), "7d");
        assert_eq!(format_duration(5_400), "90m");
        assert_eq!(format_duration(61), "61s");
        assert_eq!(format_duration(0), "0s");
    }

    #[test]
    fn rfc3339_round_trips_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56Z"), Some(1_709_210_096));
        assert_eq!(
            parse_rfc3339("2024-02-29T14:34:56.789+02:00"),
            Some(1_709_210_096)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T07:34:56-05:00"),
            Some(1_709_210_096)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(0));
        for secs in [
            0,
            951_868_800,
            1_709_210_096,
            4_102_444_800,
            253_402_300_799,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(secs)), Some(secs));
        }
        assert_eq!(format_rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(format_rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+0200",
            "2024-01-01",
            "30d",
            "2024-01-01T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn unix_ms_and_rfc3339_ms() {
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

    #[test]
    fn days() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(951_868_800), "2000-03-01");
        assert_eq!(day(1_709_210_096), "2024-02-29");
        assert_eq!(parse_day("2024-02-29"), Some("2024-02-29"));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "20240101",
            "2024-01-00",
            "abcd-ef-gh",
            "+2024-01-01",
            "",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
