//! Proleptic Gregorian calendar arithmetic (Howard Hinnant's algorithms), and the one codec of
//! dates and times as text: Avro conversion (timestamps, dates and times in JSON events, both
//! ways), CDC column conversion, replay positions and the ClickHouse sink all read and write time
//! through it, so one input means the same instant everywhere (leap seconds are refused
//! everywhere: Avro timestamps cannot hold one). Hand-written rather than chrono's parser for its
//! errors, which name what is wrong for the user who sent the event ("day 29 does not exist in
//! 2025-02").
//!
//! The text forms, written with exactly the digits of their unit and read with any number of
//! fraction digits (those finer than the unit truncated toward the past):
//!
//! | value | text |
//! |---|---|
//! | an instant (`timestamp-millis`/`-micros`/`-nanos`) | RFC 3339 in UTC: `2026-11-01T10:00:00.123Z`, `.123456Z`, `.123456789Z`; read with any offset (`+02:00`), `t` or a space for `T` |
//! | a local date-time (`local-timestamp-*`) | the same without a zone: `2026-11-01T10:00:00.123` |
//! | a date | `2026-11-01` |
//! | a time of day (`time-millis`, `time-micros`) | `10:00:00.123`, `10:00:00.123456` |
//!
//! Years past 9999 or before 0 (which RFC 3339 cannot write, and a 64-bit count can reach) take a
//! sign and at least six digits, as ISO 8601's expanded years and JavaScript do:
//! `+10000-01-01T00:00:00.000Z`, `-000001-12-31`.

use std::fmt::Write as _;

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

/// The unit of a count of time: what one of a timestamp's or a time's integer stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds (`timestamp-millis`, `time-millis`).
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl Unit {
    /// Units in a second.
    pub const fn per_second(self) -> i64 {
        match self {
            Self::Millis => 1_000,
            Self::Micros => 1_000_000,
            Self::Nanos => 1_000_000_000,
        }
    }

    /// Nanoseconds in one unit.
    pub const fn nanos(self) -> i128 {
        match self {
            Self::Millis => 1_000_000,
            Self::Micros => 1_000,
            Self::Nanos => 1,
        }
    }

    /// Fraction digits a count of this unit is written with.
    pub const fn digits(self) -> usize {
        match self {
            Self::Millis => 3,
            Self::Micros => 6,
            Self::Nanos => 9,
        }
    }

    /// The count of whole units in `nanos` (truncated toward the past), when it fits an i64.
    pub fn count(self, nanos: i128) -> Option<i64> {
        i64::try_from(nanos.div_euclid(self.nanos())).ok()
    }
}

pub(crate) const RFC3339_EXAMPLE: &str = "expected an RFC 3339 date-time like 2026-11-26T04:28:21.123Z";
const LOCAL_EXAMPLE: &str = "expected a date-time without a time zone like 2026-11-26T04:28:21.123";
const DATE_EXAMPLE: &str = "expected a date like 2026-11-26";
const TIME_EXAMPLE: &str = "expected a time of day like 04:28:21.123";

/// Nanoseconds in a day.
const DAY_NANOS: i64 = 86_400_000_000_000;

/// Two ASCII digits at `at`.
fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    match (b.get(at), b.get(at + 1)) {
        (Some(hi), Some(lo)) if hi.is_ascii_digit() && lo.is_ascii_digit() => {
            Some(u32::from(hi - b'0') * 10 + u32::from(lo - b'0'))
        }
        _ => None,
    }
}

/// The year at the start of `b` and its length: four digits, or a sign and four to nine (an
/// expanded year: a 64-bit count of milliseconds reaches ±292 million years).
fn year_prefix(b: &[u8]) -> Option<(i64, usize)> {
    let (sign, start) = match b.first() {
        Some(b'+') => (1, 1),
        Some(b'-') => (-1, 1),
        _ => (1, 0),
    };
    let digits = b[start..].iter().take_while(|d| d.is_ascii_digit()).count();
    let allowed = if start == 0 { 4..=4 } else { 4..=9 };
    if !allowed.contains(&digits) {
        return None;
    }
    let year = b[start..start + digits].iter().fold(0_i64, |y, d| y * 10 + i64::from(d - b'0'));
    Some((sign * year, start + digits))
}

/// Days since 1970-01-01 of the date at the start of `b` (`YYYY-MM-DD`, or an expanded year),
/// and its length; `format` is the error for text of another shape.
fn date_prefix(b: &[u8], format: &str) -> Result<(i64, usize), String> {
    let Some((year, at)) = year_prefix(b) else { return Err(format.to_owned()) };
    if b.get(at) != Some(&b'-') || b.get(at + 3) != Some(&b'-') {
        return Err(format.to_owned());
    }
    let (Some(month), Some(day)) = (two_digits(b, at + 1), two_digits(b, at + 4)) else {
        return Err(format.to_owned());
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
        return Err(format!("day {day} does not exist in {}-{month:02}", year_text(year)));
    }
    Ok((days_from_civil(year, month, day), at + 6))
}

/// Nanoseconds since midnight of the `HH:MM:SS` (and any fraction) at the start of `b`, and its
/// length.
fn time_prefix(b: &[u8], format: &str) -> Result<(i64, usize), String> {
    if b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return Err(format.to_owned());
    }
    let (Some(hour), Some(minute), Some(second)) = (two_digits(b, 0), two_digits(b, 3), two_digits(b, 6)) else {
        return Err(format.to_owned());
    };
    if hour > 23 || minute > 59 {
        return Err(format!("time {hour:02}:{minute:02} does not exist"));
    }
    if second > 59 {
        return Err(format!("second {second} does not exist (leap seconds are not supported)"));
    }
    let mut at = 8;
    let mut nanos: i64 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let digits = b[at..].iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format.to_owned());
        }
        // Digits past nanoseconds are dropped, like every finer digit for coarser units.
        let significant = digits.min(9);
        for d in &b[at..at + significant] {
            nanos = nanos * 10 + i64::from(d - b'0');
        }
        nanos *= 10_i64.pow(u32::try_from(9 - significant).unwrap_or(0));
        at += digits;
    }
    Ok((i64::from(hour * 3600 + minute * 60 + second) * 1_000_000_000 + nanos, at))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (or one of an expanded year, `+10000-01-01`).
pub fn parse_date(s: &str) -> Result<i64, String> {
    match date_prefix(s.as_bytes(), DATE_EXAMPLE)? {
        (days, len) if len == s.len() => Ok(days),
        _ => Err(DATE_EXAMPLE.to_owned()),
    }
}

/// Nanoseconds since midnight of a time of day: `04:28:21`, `04:28:21.123`, `04:28:21.123456789`.
pub fn parse_time_of_day(s: &str) -> Result<i64, String> {
    match time_prefix(s.as_bytes(), TIME_EXAMPLE)? {
        (nanos, len) if len == s.len() => Ok(nanos),
        _ => Err(TIME_EXAMPLE.to_owned()),
    }
}

/// Whether a date-time must have a time zone, must not, or may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// An instant: `Z` or an offset (RFC 3339).
    Required,
    /// A local date-time: none.
    Forbidden,
    /// Either; one without a zone is read as UTC (how a store without local date-times keeps
    /// them).
    Optional,
}

/// Nanoseconds since the epoch of a date-time, its time zone as `zone` says:
/// `2026-11-26T04:28:21.123Z`, `2026-11-26t06:28:21+02:00`, `2026-11-26 04:28:21Z` (with one),
/// `2026-11-26T04:28:21.123` (without: the nanoseconds of that wall time in UTC). Leap seconds
/// are rejected.
pub fn parse_date_time(s: &str, zone: Zone) -> Result<i128, String> {
    let b = s.as_bytes();
    let format = if zone == Zone::Forbidden { LOCAL_EXAMPLE } else { RFC3339_EXAMPLE };
    let (days, at) = date_prefix(b, format)?;
    if !matches!(b.get(at), Some(b'T' | b't' | b' ')) {
        return Err(format.to_owned());
    }
    let (time, len) = time_prefix(&b[at + 1..], format)?;
    let at = at + 1 + len;
    let no_zone = || "expected a time zone: Z or an offset like +02:00".to_owned();
    let offset_seconds = match (b.get(at), zone) {
        (None, Zone::Forbidden | Zone::Optional) => 0,
        (None, Zone::Required) => return Err(no_zone()),
        (Some(_), Zone::Forbidden) => {
            return Err("a local date-time has no time zone: expected one like 2026-11-26T04:28:21.123".to_owned());
        }
        (Some(b'Z' | b'z'), _) if at + 1 == b.len() => 0,
        (Some(sign @ (b'+' | b'-')), _) if at + 6 == b.len() && b[at + 3] == b':' => {
            let (Some(h), Some(m)) = (two_digits(b, at + 1), two_digits(b, at + 4)) else {
                return Err(format.to_owned());
            };
            if h > 23 || m > 59 {
                return Err(format!("offset {}{h:02}:{m:02} does not exist", char::from(*sign)));
            }
            let seconds = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return Err(no_zone()),
    };
    Ok((i128::from(days) * 86_400 - i128::from(offset_seconds)) * 1_000_000_000 + i128::from(time))
}

/// Nanoseconds since the epoch of an RFC 3339 date-time (a time zone required).
pub fn parse_rfc3339(s: &str) -> Result<i128, String> {
    parse_date_time(s, Zone::Required)
}

/// Appends a year as dates are written: four digits from 0 to 9999, otherwise a sign and at
/// least six.
fn write_year(out: &mut String, year: i64) {
    if (0..=9999).contains(&year) {
        push_digits(out, year.unsigned_abs(), 4);
    } else {
        let _ = write!(out, "{}{:06}", if year < 0 { '-' } else { '+' }, year.unsigned_abs());
    }
}

/// A year as [`write_year`] writes it.
fn year_text(year: i64) -> String {
    let mut out = String::with_capacity(7);
    write_year(&mut out, year);
    out
}

/// Appends the last `width` decimal digits of `value`, zero-padded. Digit by digit rather than
/// through `fmt`: a Couchbase projection writes one timestamp per event, and `format!`'s padding
/// machinery was most of that cost (perf).
fn push_digits(out: &mut String, value: u64, width: u32) {
    let mut scale = 10_u64.pow(width.saturating_sub(1));
    for _ in 0..width {
        // A digit: 0 to 9.
        out.push(char::from(b'0' + (value / scale % 10) as u8));
        scale /= 10;
    }
}

/// Appends `YYYY-MM-DD` of the date `days` after 1970-01-01.
fn write_date(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    write_year(out, y);
    out.push('-');
    push_digits(out, u64::from(m), 2);
    out.push('-');
    push_digits(out, u64::from(d), 2);
}

/// The date `days` after 1970-01-01: `2026-11-01`.
pub fn format_date(days: i64) -> String {
    let mut out = String::with_capacity(10);
    write_date(&mut out, days);
    out
}

/// `HH:MM:SS.f…` of `nanos` since midnight (0 to a day), with `digits` fraction digits.
fn write_time(out: &mut String, nanos: i64, digits: usize) {
    let digits = u32::try_from(digits).unwrap_or(9).min(9);
    // Within a day: 0 ≤ nanos < 86,400 × 10⁹.
    let nanos = nanos.unsigned_abs();
    let seconds = nanos / 1_000_000_000;
    push_digits(out, seconds / 3600, 2);
    out.push(':');
    push_digits(out, seconds % 3600 / 60, 2);
    out.push(':');
    push_digits(out, seconds % 60, 2);
    if digits > 0 {
        out.push('.');
        push_digits(out, nanos % 1_000_000_000 / 10_u64.pow(9 - digits), digits);
    }
}

/// The date-time `count` units after the epoch, with exactly the unit's fraction digits: in UTC
/// with a `Z` when `zoned` (`2026-11-01T10:00:00.123Z`), as a wall time without one otherwise
/// (`2026-11-01T10:00:00.123`, a local date-time).
pub fn format_date_time(count: i64, unit: Unit, zoned: bool) -> String {
    // The day and the time of day come from the count itself, in i64, whatever its size.
    let per_day = 86_400 * unit.per_second();
    let days = count.div_euclid(per_day);
    let of_day = count.rem_euclid(per_day) * (1_000_000_000 / unit.per_second());
    let mut out = String::with_capacity(32);
    write_date(&mut out, days);
    out.push('T');
    write_time(&mut out, of_day, unit.digits());
    if zoned {
        out.push('Z');
    }
    out
}

/// The time of day `count` units after midnight, with exactly the unit's fraction digits
/// (`10:00:00.123`); `None` for a count outside one day.
pub fn format_time_of_day(count: i64, unit: Unit) -> Option<String> {
    let nanos = i64::try_from(i128::from(count) * unit.nanos()).ok().filter(|n| (0..DAY_NANOS).contains(n))?;
    let mut out = String::with_capacity(16);
    write_time(&mut out, nanos, unit.digits());
    Some(out)
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

    #[test]
    fn text_forms() {
        assert_eq!(format_date_time(1_793_527_200_123, Unit::Millis, true), "2026-11-01T10:00:00.123Z");
        assert_eq!(format_date_time(1_793_527_200_123_456, Unit::Micros, true), "2026-11-01T10:00:00.123456Z");
        assert_eq!(format_date_time(-1, Unit::Nanos, true), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_date_time(0, Unit::Millis, false), "1970-01-01T00:00:00.000");
        assert_eq!(format_date_time(253_402_300_800_000, Unit::Millis, true), "+010000-01-01T00:00:00.000Z");
        assert_eq!(format_date_time(i64::MIN, Unit::Millis, true), "-292275055-05-16T16:47:04.192Z");
        assert_eq!(format_date(19_782), "2024-02-29");
        assert_eq!(format_date(-719_529), "-000001-12-31", "the year before year 0");
        assert_eq!(format_time_of_day(36_000_123, Unit::Millis), Some("10:00:00.123".to_owned()));
        assert_eq!(format_time_of_day(86_399_999_999, Unit::Micros), Some("23:59:59.999999".to_owned()));
        assert_eq!(format_time_of_day(86_400_000, Unit::Millis), None, "a day is no time of day");
        assert_eq!(format_time_of_day(-1, Unit::Millis), None);

        assert_eq!(parse_date_time("2026-11-01T10:00:00.123", Zone::Forbidden), Ok(1_793_527_200_123_000_000));
        assert_eq!(parse_date_time("2026-11-01T10:00:00.123", Zone::Optional), Ok(1_793_527_200_123_000_000));
        assert_eq!(parse_date_time("2026-11-01T11:00:00.123+01:00", Zone::Optional), Ok(1_793_527_200_123_000_000));
        assert_eq!(
            parse_date_time("2026-11-01T10:00:00Z", Zone::Forbidden),
            Err("a local date-time has no time zone: expected one like 2026-11-26T04:28:21.123".to_owned())
        );
        assert_eq!(parse_date_time("2026-11-01", Zone::Forbidden), Err(LOCAL_EXAMPLE.to_owned()));
        assert_eq!(parse_rfc3339("+010000-01-01T00:00:00Z"), Ok(253_402_300_800_000_000_000));
        assert_eq!(parse_rfc3339("-292275055-05-16T16:47:04.192Z"), Ok(i128::from(i64::MIN) * 1_000_000));
        assert_eq!(parse_rfc3339("10000-01-01T00:00:00Z"), Err(RFC3339_EXAMPLE.to_owned()), "a sign first");
        assert_eq!(parse_rfc3339("+1234567890-01-01T00:00:00Z"), Err(RFC3339_EXAMPLE.to_owned()), "ten digits");
        assert_eq!(parse_date("-000001-12-31"), Ok(-719_529));
        assert_eq!(parse_date("2024-02-29x"), Err(DATE_EXAMPLE.to_owned()));
        assert_eq!(parse_date("+2025-02-29"), Err("day 29 does not exist in 2025-02".to_owned()));
        assert_eq!(parse_time_of_day("10:00:00.123"), Ok(36_000_123_000_000));
        assert_eq!(parse_time_of_day("23:59:59"), Ok(86_399_000_000_000));
        assert_eq!(parse_time_of_day("00:00:00.0000000019"), Ok(1), "digits past nanoseconds are dropped");
        assert_eq!(parse_time_of_day("24:00:00"), Err("time 24:00 does not exist".to_owned()));
        assert_eq!(parse_time_of_day("10:00"), Err(TIME_EXAMPLE.to_owned()));
        assert_eq!(parse_time_of_day("10:00:00Z"), Err(TIME_EXAMPLE.to_owned()));
        assert_eq!(Unit::Micros.count(-1), Some(-1), "toward the past");
        assert_eq!(Unit::Nanos.count(i128::from(i64::MAX) + 1), None);
    }

    fn unit() -> impl Strategy<Value = Unit> {
        prop_oneof![Just(Unit::Millis), Just(Unit::Micros), Just(Unit::Nanos)]
    }

    proptest! {
        /// Every count of every unit is written as text that reads back to it, with exactly
        /// the unit's digits, zoned or local.
        #[test]
        fn date_times_roundtrip(count in any::<i64>(), unit in unit(), zoned in any::<bool>()) {
            let text = format_date_time(count, unit, zoned);
            let zone = if zoned { Zone::Required } else { Zone::Forbidden };
            prop_assert_eq!(parse_date_time(&text, zone).map(|n| unit.count(n)), Ok(Some(count)), "{}", &text);
            let fraction = text.rsplit_once('.').map(|(_, f)| f.trim_end_matches('Z').len());
            prop_assert_eq!(fraction, Some(unit.digits()), "{}", text);
        }

        #[test]
        fn dates_and_times_roundtrip(days in any::<i32>(), count in any::<i64>(), unit in unit()) {
            let days = i64::from(days);
            prop_assert_eq!(parse_date(&format_date(days)), Ok(days));
            let count = count.rem_euclid(86_400 * unit.per_second());
            let text = format_time_of_day(count, unit).expect("within a day");
            prop_assert_eq!(parse_time_of_day(&text).map(|n| unit.count(i128::from(n))), Ok(Some(count)), "{}", text);
        }

        #[test]
        fn roundtrip(days in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
