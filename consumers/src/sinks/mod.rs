//! Sinks: where projections write. One folder per sink, each the same shape.

pub mod clickhouse;
pub mod couchbase;
