//! What a ClickHouse server can do, decided from its version string (pure, so it is unit-tested).
//!
//! sluice runs against current servers and old ones (the dev rig's compatibility target is 18.16).
//! Rather than failing on the first unsupported setting, the sink asks `SELECT version()` once at
//! start and chooses its strategy from these flags, logging what it chose.

use std::fmt;

/// A server version, `major.minor.patch[.build]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Year-based major (18, 24, 26, …).
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parses `18.16.1`, `26.9.1.1` or `24.8.4.13-lts`; `None` when the leading parts are not numbers.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split(['.', '-']);
        let mut next = || parts.next().and_then(|p| p.parse().ok());
        let (major, minor) = (next()?, next()?);
        Some(Self { major, minor, patch: next().unwrap_or(0) })
    }

    const fn at_least(self, major: u32, minor: u32) -> bool {
        self.major > major || (self.major == major && self.minor >= minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Features sluice adapts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The server's version.
    pub version: Version,
    /// `RowBinaryWithNamesAndTypes` output, which the `clickhouse` crate needs for its row-type
    /// validation (on by default in the crate; must be switched off for older servers).
    pub row_binary_with_names_and_types: bool,
    /// The `insert_deduplication_token` setting (22.2+): idempotent re-delivery of a batch.
    pub insert_deduplication_token: bool,
    /// The `Map(K, V)` type (21.1+).
    pub map_type: bool,
    /// `DateTime64` (20.1+); older servers store milliseconds in `UInt64`/`DateTime`.
    pub datetime64: bool,
    /// `LowCardinality` without the experimental flag (19.9+).
    pub low_cardinality: bool,
    /// The server flags an error that happens after rows were sent (the `X-ClickHouse-Exception-Tag`
    /// header of recent servers), which the crate detects; older servers just append the error text
    /// to a 200 body. The threshold is deliberately late: guessing too late only costs buffering.
    pub exception_in_stream_header: bool,
    /// `EXCHANGE TABLES a AND b` in `Atomic` databases (20.10+, when `Atomic` became the
    /// default engine): swaps two tables' names atomically (`sluice rebuild`).
    pub exchange_tables: bool,
    /// `Map(K, V)` is generally available (21.8; experimental behind a setting since 21.1).
    pub map_type_ga: bool,
    /// The `Bool` type (21.12).
    pub bool_type: bool,
    /// `Date32`, dates from 1900 to 2299 (21.9).
    pub date32: bool,
    /// Decimals past 38 digits (`Decimal256`, generally available in 22.1).
    pub decimal256: bool,
    /// Table `TTL` (19.6).
    pub ttl: bool,
}

impl Capabilities {
    /// The capabilities of a server of this version.
    pub const fn of(version: Version) -> Self {
        Self {
            version,
            // The crate validates with the format's type header; servers before 22 mis-report
            // some types in it, so validation is only trusted from 22 on.
            row_binary_with_names_and_types: version.at_least(22, 0),
            insert_deduplication_token: version.at_least(22, 2),
            map_type: version.at_least(21, 1),
            datetime64: version.at_least(20, 1),
            low_cardinality: version.at_least(19, 9),
            exception_in_stream_header: version.at_least(25, 11),
            exchange_tables: version.at_least(20, 10),
            map_type_ga: version.at_least(21, 8),
            bool_type: version.at_least(21, 12),
            date32: version.at_least(21, 9),
            decimal256: version.at_least(22, 1),
            ttl: version.at_least(19, 6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_version_strings() {
        assert_eq!(Version::parse("18.16.1"), Some(Version { major: 18, minor: 16, patch: 1 }));
        assert_eq!(Version::parse("26.9.1.1"), Some(Version { major: 26, minor: 9, patch: 1 }));
        assert_eq!(Version::parse("24.8.4.13-lts"), Some(Version { major: 24, minor: 8, patch: 4 }));
        assert_eq!(Version::parse("25.3"), Some(Version { major: 25, minor: 3, patch: 0 }));
        assert_eq!(Version::parse("x.1"), None);
        assert_eq!(Version::parse(""), None);
    }

    #[test]
    fn old_and_new_servers() {
        let old = Capabilities::of(Version { major: 18, minor: 16, patch: 1 });
        assert!(!old.row_binary_with_names_and_types && !old.insert_deduplication_token);
        assert!(!old.map_type && !old.datetime64 && !old.low_cardinality && !old.exception_in_stream_header);
        assert!(!old.exchange_tables);
        let new = Capabilities::of(Version { major: 26, minor: 9, patch: 1 });
        assert!(new.row_binary_with_names_and_types && new.insert_deduplication_token);
        assert!(new.map_type && new.datetime64 && new.low_cardinality && new.exchange_tables);
        let edge = Capabilities::of(Version { major: 22, minor: 1, patch: 0 });
        assert!(edge.row_binary_with_names_and_types && !edge.insert_deduplication_token);
    }
}
