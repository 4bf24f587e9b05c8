//! Proleptic Gregorian calendar arithmetic (Howard Hinnant's algorithms), and the one parser of
//! RFC 3339 date-times and `YYYY-MM-DD` dates: Avro conversion (timestamps and dates in JSON
//! events), CDC column conversion and replay positions all read time through it, so one input
//! means the same instant everywhere (leap seconds are refused everywhere: Avro timestamps cannot
//! hold one). Hand-written rather than chrono's parser for its errors, which name what is wrong
//! for the user who sent the event ("day 29 does not exist in 2025-02").

/// Days since 1970-01-01 of a civil date (`month` 1–12, `day` 1–31).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date `(year, month, day)` of a day count from 1970-01-01 (inverse of
/// [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both are in range by construction (1..=31 and 1..=12).
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

pub(crate) const RFC3339_EXAMPLE: &str = "expected an RFC 3339 date-time like 2026-11-26T04:28:21.123Z";

/// Two ASCII digits at `at`.
fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    match (b.get(at), b.get(at + 1)) {
        (Some(hi), Some(lo)) if hi.is_ascii_digit() && lo.is_ascii_digit() => {
            Some(u32::from(hi - b'0') * 10 + u32::from(lo - b'0'))
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of the `YYYY-MM-DD` at the start of `b`.
fn date_prefix(b: &[u8]) -> Result<i64, String> {
    let format = || RFC3339_EXAMPLE.to_owned();
    let year = match (two_digits(b, 0), two_digits(b, 2)) {
        (Some(century), Some(rest)) => i64::from(century * 100 + rest),
        _ => return Err(format()),
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(format());
    }
    let (Some(month), Some(day)) = (two_digits(b, 5), two_digits(b, 8)) else {
        return Err(format());
    };
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} does not exist"));
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) {
        return Err(format!("day {day} does not exist in {year:04}-{month:02}"));
    }
    Ok(days_from_civil(year, month, day))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub(crate) fn parse_date(s: &str) -> Result<i64, String> {
    if s.len() != 10 {
        return Err("expected a date like 2026-11-26".to_owned());
    }
    date_prefix(s.as_bytes()).map_err(|reason| reason.replace(RFC3339_EXAMPLE, "expected a date like 2026-11-26"))
}

/// Nanoseconds since the epoch of an RFC 3339 date-time: `2026-11-26T04:28:21.123Z`,
/// `2026-11-26t06:28:21+02:00`, `2026-11-26 04:28:21Z`. Leap seconds are rejected.
pub(crate) fn parse_rfc3339(s: &str) -> Result<i128, String> {
    let b = s.as_bytes();
    let format = || RFC3339_EXAMPLE.to_owned();
    let days = date_prefix(b)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return Err(format());
    }
    let (Some(hour), Some(minute), Some(second)) = (two_digits(b, 11), two_digits(b, 14), two_digits(b, 17)) else {
        return Err(format());
    };
    if hour > 23 || minute > 59 {
        return Err(format!("time {hour:02}:{minute:02} does not exist"));
    }
    if second > 59 {
        return Err(format!("second {second} does not exist (leap seconds are not supported)"));
    }
    let mut at = 19;
    let mut nanos: i128 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let digits = b[at..].iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format());
        }
        // Digits past nanoseconds are dropped, like every finer digit for coarser units.
        let significant = digits.min(9);
        for d in &b[at..at + significant] {
            nanos = nanos * 10 + i128::from(d - b'0');
        }
        nanos *= 10_i128.pow(u32::try_from(9 - significant).unwrap_or(0));
        at += digits;
    }
    let offset_seconds = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == b.len() && b[at + 3] == b':' => {
            let (Some(h), Some(m)) = (two_digits(b, at + 1), two_digits(b, at + 4)) else {
                return Err(format());
            };
            if h > 23 || m > 59 {
                return Err(format!("offset {}{h:02}:{m:02} does not exist", char::from(*sign)));
            }
            let seconds = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return Err("expected a time zone: Z or an offset like +02:00".to_owned()),
    };
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    Ok(i128::from(seconds) * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    proptest! {
        #[test]
        fn roundtrip(days in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
