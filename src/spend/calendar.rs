//! UTC days, RFC 3339 times and budget durations, in a few lines of calendar arithmetic
//! (Howard Hinnant's civil-date algorithms) instead of a date-time dependency.

/// Seconds per unit of a budget duration (`mo` is 30 days, as LiteLLM counts it).
const UNITS: &[(&str, u64)] = &[
    ("mo", 30 * 86_400),
    ("s", 1),
    ("m", 60),
    ("h", 3_600),
    ("d", 86_400),
    ("w", 7 * 86_400),
];

/// Parses `30s`, `15m`, `1h`, `1d`, `30d`, `2w`, `1mo` into seconds (a positive whole number).
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

/// Writes seconds in the largest unit that divides them (`86400` -> `1d`).
pub fn format_duration(secs: u64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs > 0 && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The UTC day of Unix seconds, as `YYYY-MM-DD`.
pub fn day(secs: u64) -> String {
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Checks a `YYYY-MM-DD` date; returns it unchanged when valid.
pub fn parse_day(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    // The day must exist: it survives a round trip through the day count.
    let back = civil_from_days(days_from_civil(i64::from(y), m, d));
    (back == (i64::from(y), i64::from(m), i64::from(d))).then_some(text)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let rem = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day(secs),
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Some(3_600));
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("30d"), Some(2_592_000));
        assert_eq!(parse_duration("1mo"), Some(2_592_000));
        assert_eq!(parse_duration("2w"), Some(1_209_600));
        assert_eq!(parse_duration("90s"), Some(90));
        for bad in ["", "d", "0d", "1.5h", "-1d", "10", "1y", "1 d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(86_400), "1d");
        assert_eq!(format_duration(5_400), "90m");
        assert_eq!(format_duration(61), "61s");
    }

    #[test]
    fn days_and_times() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(951_868_800), "2000-03-01");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(parse_day("2024-02-29"), Some("2024-02-29"));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "20240101",
            "2024-01-00",
            "abcd-ef-gh",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
