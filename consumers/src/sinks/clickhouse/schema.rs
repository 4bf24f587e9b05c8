//! The analyst-facing tables of a ClickHouse projection, as data: what [`plan`] says must exist
//! (pure, so it is unit-tested) and how what a server reports differs from it ([`check`]).
//!
//! Input: the projection's `[projections.<name>.clickhouse]` block and the server's
//! [`Capabilities`](super::capabilities::Capabilities). Output: an ordered [`Plan`] of `CREATE … IF NOT EXISTS` statements (tables
//! first, then the materialized views and views reading them) with the columns each object must
//! have. [`super::migrate`](mod@super::migrate) runs the plan and feeds what `system.tables` / `system.columns` say
//! back into [`check`], which names every drifted table and column.
//!
//! # The objects
//!
//! - **The raw table** (`table`, e.g. `events`): one row per event, written by the sink, the
//!   payload as JSON text. `ReplacingMergeTree`, so a re-delivered event — same `event_id`, hence
//!   same sorting key — collapses into one row when parts merge (`FINAL` collapses it at read
//!   time before that).
//! - **Declared tables** (`tables`): typed columns from the schemas, see [`super::declared`].
//! - **State tables** (`state`): the latest value of each column per entity, see [`super::state`].
//! - **Rollups** (`rollups`): aggregates of a declared table per time bucket and dimensions, each
//!   event counted once, see [`super::rollup`].
//!
//! Nothing here knows any domain: every table but the raw one is declared in `topology.toml`.
//!
//! # Old servers
//!
//! One design on every server, so analysts' queries run on both: `occurred_at` is the event time
//! in the best type the server has — `DateTime64(3, 'UTC')`, or `DateTime('UTC')` (seconds) before
//! 20.1 — and `occurred_at_ms` is always the exact time as `Int64` milliseconds (an `ALIAS` of
//! `occurred_at` where that is exact, a stored column where it is not). `LowCardinality(String)`
//! only where it is not experimental (19.9+), plain `String` before. Servers with
//! `insert_deduplication_token` also get `non_replicated_deduplication_window`, so a re-sent batch
//! is dropped at insert time; on older ones it collapses at merge time (or `FINAL`) instead.
//!
//! # Clusters
//!
//! With a cluster named, the same objects are placed on its shards and replicas — replicated
//! local tables, `Distributed` tables under the names analysts use, DDL `ON CLUSTER` — by
//! [`cluster::on_cluster`].

pub mod cluster;
mod ddl;
mod drift;
mod layout;
mod objects;

#[cfg(test)]
mod tests;

pub use cluster::{local_name, on_cluster};
pub(super) use ddl::{envelope_head, events_columns, literal};
pub use ddl::{plan, plan_named, qualified, quote};
pub use drift::{DescribedColumn, Drift, DriftProblem, additions, check};
pub use layout::{DEDUPLICATION_WINDOW, Layout, Types};
pub use objects::{Column, ColumnKind, Names, Object, ObjectKind, Plan, PlanError};
