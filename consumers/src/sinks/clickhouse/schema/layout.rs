//! The column types chosen for a server ([`Types`]) and the one table design it gets
//! ([`Layout`]), from its [`Capabilities`]: the same columns on old and new servers.

use super::super::capabilities::Capabilities;

/// How many recent insert blocks a non-replicated table remembers for deduplication
/// (`non_replicated_deduplication_window`): far more batches than a worker ever re-sends.
pub const DEDUPLICATION_WINDOW: u32 = 1000;

/// The column types chosen for a server, from its [`Capabilities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `occurred_at` is `DateTime64(3, 'UTC')` (exact) rather than `DateTime('UTC')` plus a
    /// stored `occurred_at_ms`.
    pub datetime64: bool,
    /// Repetitive strings (event type, producer, topic) are `LowCardinality(String)`.
    pub low_cardinality: bool,
    /// Tables get `non_replicated_deduplication_window`, and inserts carry
    /// `insert_deduplication_token`.
    pub insert_deduplication: bool,
    /// The types declared tables use where the server has them (see `typing`).
    pub types: Types,
}

/// The column types of declared tables the server has (each from a [`Capabilities`] flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Types {
    /// `Map(String, T)`; without it a map is two arrays, `<name>_keys` and `<name>_values`.
    pub map: bool,
    /// `Bool`; without it `UInt8`.
    pub bool: bool,
    /// `Date32`; without it `Date` (1970 to 2149).
    pub date32: bool,
    /// `Decimal(P, S)` past 38 digits; without it such a decimal is its exact text.
    pub decimal256: bool,
    /// Table `TTL`; without it a declared `ttl` is not applied (and `migrate` says so).
    pub ttl: bool,
}

impl Types {
    /// Every type (a current server).
    pub const ALL: Self = Self { map: true, bool: true, date32: true, decimal256: true, ttl: true };
    /// None of them (18.16).
    pub const NONE: Self = Self { map: false, bool: false, date32: false, decimal256: false, ttl: false };
}

impl Layout {
    /// The layout for a server with these capabilities.
    pub const fn of(capabilities: &Capabilities) -> Self {
        Self {
            datetime64: capabilities.datetime64,
            low_cardinality: capabilities.low_cardinality,
            insert_deduplication: capabilities.insert_deduplication_token,
            types: Types {
                map: capabilities.map_type_ga,
                bool: capabilities.bool_type,
                date32: capabilities.date32,
                decimal256: capabilities.decimal256,
                ttl: capabilities.ttl,
            },
        }
    }

    /// The type of event times.
    pub const fn time_type(self) -> &'static str {
        if self.datetime64 { "DateTime64(3, 'UTC')" } else { "DateTime('UTC')" }
    }

    pub(in crate::sinks::clickhouse) const fn now(self) -> &'static str {
        if self.datetime64 { "now64(3)" } else { "now()" }
    }

    pub(in crate::sinks::clickhouse) const fn tag_type(self) -> &'static str {
        if self.low_cardinality { "LowCardinality(String)" } else { "String" }
    }

    pub(in crate::sinks::clickhouse) fn settings(self) -> String {
        if self.insert_deduplication {
            format!("\nSETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}")
        } else {
            String::new()
        }
    }
}
