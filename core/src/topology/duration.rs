//! Human durations as written in `topology.toml`: `"500ms"`, `"30s"`, `"1h30m"`, `"7d"`, and for
//! topic retention also `"forever"`.
//!
//! Text comes from the topology file; the values go to Kafka topic configs (`retention.ms`),
//! Couchbase document expiry, batch lingering and lag thresholds. Millisecond precision, because
//! that is the finest unit any of those consumers takes. Pure code.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};
use thiserror::Error;

/// Units from largest to smallest, as written and as printed.
const UNITS: &[(&str, u64)] =
    &[("w", 7 * 24 * 3_600_000), ("d", 24 * 3_600_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Why a duration does not parse; the text is the whole message, the caller adds the location.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// A unit with no number before it, or a number with no unit after it.
    #[error("`{0}` is not a duration: write a number followed by a unit, e.g. \"500ms\", \"30s\", \"1h30m\", \"7d\"")]
    Syntax(String),
    /// A unit outside `ms`, `s`, `m`, `h`, `d`, `w`.
    #[error("unknown unit `{unit}` in `{text}`: use ms, s, m, h, d or w")]
    Unit {
        /// The duration as written.
        text: String,
        /// The unknown unit.
        unit: String,
    },
    /// More milliseconds than a `u64` holds.
    #[error("`{0}` is too long")]
    Overflow(String),
}

/// A duration written the way people write it (`"1h30m"`), kept to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// The standard-library duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Whole milliseconds (saturating: a parsed value always fits).
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// True for a zero duration.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    /// Parses `<number><unit>` groups, largest first or not (`"1h30m"` = `"30m1h"` = 90 minutes).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(DurationError::Empty);
        }
        let syntax = || DurationError::Syntax(text.to_owned());
        let overflow = || DurationError::Overflow(text.to_owned());
        let mut total: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(syntax());
            }
            let (number, tail) = rest.split_at(digits);
            let letters = tail.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(tail.len());
            if letters == 0 {
                return Err(syntax());
            }
            let (unit, tail) = tail.split_at(letters);
            let scale = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| DurationError::Unit { text: text.to_owned(), unit: unit.to_owned() })?;
            let number: u64 = number.parse().map_err(|_| overflow())?;
            total = number.checked_mul(scale).and_then(|ms| total.checked_add(ms)).ok_or_else(overflow)?;
            rest = tail;
        }
        Ok(Self::from_millis(total))
    }
}

impl fmt::Display for HumanDuration {
    /// The canonical spelling: largest units first (days at most: "30d" reads better than
    /// "4w2d"), zero parts left out, `"0s"` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.as_millis();
        if left == 0 {
            return f.write_str("0s");
        }
        for (name, scale) in UNITS.iter().skip_while(|(name, _)| *name == "w") {
            let n = left / scale;
            if n > 0 {
                write!(f, "{n}{name}")?;
                left %= scale;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How long a topic keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Never deleted by age (`retention.ms = -1`): the log is the history projections rebuild from.
    Forever,
    /// Deleted once older than this.
    For(HumanDuration),
}

impl Retention {
    /// The value of Kafka's `retention.ms` topic config.
    pub fn kafka_retention_ms(self) -> i64 {
        match self {
            Self::Forever => -1,
            Self::For(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

impl FromStr for Retention {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "forever" { Ok(Self::Forever) } else { text.parse().map(Self::For) }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forever => f.write_str("forever"),
            Self::For(d) => d.fmt(f),
        }
    }
}

impl Serialize for Retention {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(text: &str) -> Result<u64, DurationError> {
        text.parse::<HumanDuration>().map(HumanDuration::as_millis)
    }

    #[test]
    fn reads_the_usual_spellings() {
        assert_eq!(ms("200ms"), Ok(200));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("30m"), Ok(1_800_000));
        assert_eq!(ms("12h"), Ok(43_200_000));
        assert_eq!(ms("7d"), Ok(604_800_000));
        assert_eq!(ms("2w"), Ok(1_209_600_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("1m1ms"), Ok(60_001));
        assert_eq!(ms("0s"), Ok(0));
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(ms(""), Err(DurationError::Empty));
        assert_eq!(ms("30"), Err(DurationError::Syntax("30".into())));
        assert_eq!(ms("s"), Err(DurationError::Syntax("s".into())));
        assert_eq!(ms("1 h"), Err(DurationError::Syntax("1 h".into())));
        assert_eq!(ms("-1s"), Err(DurationError::Syntax("-1s".into())));
        assert_eq!(ms("5min"), Err(DurationError::Unit { text: "5min".into(), unit: "min".into() }));
        assert_eq!(ms("99999999999999999999d"), Err(DurationError::Overflow("99999999999999999999d".into())));
        assert_eq!(ms("999999999999w"), Err(DurationError::Overflow("999999999999w".into())));
    }

    #[test]
    fn prints_canonically() {
        assert_eq!(HumanDuration::from_millis(5_400_000).to_string(), "1h30m");
        assert_eq!(HumanDuration::from_millis(500).to_string(), "500ms");
        assert_eq!(HumanDuration::from_millis(0).to_string(), "0s");
        assert_eq!(HumanDuration::from_millis(691_200_000).to_string(), "8d");
        assert_eq!(HumanDuration::from_millis(90_061_001).to_string(), "1d1h1m1s1ms");
    }

    #[test]
    fn retention() {
        assert_eq!("forever".parse(), Ok(Retention::Forever));
        assert_eq!(Retention::Forever.kafka_retention_ms(), -1);
        assert_eq!("7d".parse::<Retention>().map(Retention::kafka_retention_ms), Ok(604_800_000));
        assert_eq!(Retention::Forever.to_string(), "forever");
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(millis in 0u64..=u64::MAX / 2) {
            let d = HumanDuration::from_millis(millis);
            prop_assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d));
        }

        #[test]
        fn groups_add_up(parts in proptest::collection::vec((0u64..100_000, 0usize..UNITS.len()), 1..6)) {
            let text: String = parts.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
            let expected: u64 = parts.iter().map(|(n, u)| n * UNITS[*u].1).sum();
            prop_assert_eq!(ms(&text), Ok(expected));
        }
    }
}
