//! The ClickHouse sink: analytics tables (every event, rollups, current state) over HTTP.
//!
//! Data path: a worker's decoded events, one partition's batch at a time → [`sink::ClickHouseProjection`] →
//! [`request_builder`] (the raw table's rows) and [`declared`] (the declared and state tables'
//! `RowBinary` rows), pure → one `INSERT` per table over the [`service`] client → materialized
//! views on the server fill the rollups and the states. Before the first batch, [`migrate()`]
//! creates the tables [`schema`] describes and checks existing ones.
//!
//! - [`capabilities`]: what a server version supports (pure).
//! - [`schema`]: the tables and views for analysts, per server layout, and drift detection (pure).
//! - [`request_builder`]: events → the raw table's rows per layout (pure).
//! - [`declared`], [`state`], [`rollup`]: the tables declared in `topology.toml` (pure).
//! - [`typing`], [`row_binary`]: their columns' server types and encodings (pure).
//! - [`sizing`]: how large a batch's row buffers start, from the last batch (pure).
//! - [`service`]: the client, the version probe and error classification (network); several
//!   servers of a cluster behind one client (`servers`).
//! - [`migrate`](mod@migrate): runs the schema plan (network).
//! - [`sink`]: the [`Sink`](crate::sink::Sink) implementation.
//! - [`swap`]: the statements of a blue/green swap and of dropping a version (pure).
//!
//! What analysts find in these tables, and how to query them: `docs/analytics.md`.

pub mod capabilities;
pub mod declared;
pub mod migrate;
pub mod request_builder;
pub mod rollup;
pub mod row_binary;
pub mod schema;
mod servers;
pub mod service;
pub mod sink;
pub mod sizing;
pub mod state;
pub mod swap;
pub mod typing;

pub use capabilities::{Capabilities, Version};
pub use migrate::{MigrationAction, MigrationLine, migrate, migrate_named};
pub use schema::{Drift, Layout};
pub use service::ClickHouse;
pub use sink::ClickHouseProjection;

/// Errors of the ClickHouse sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query at connect time failed: no answer, or a refusal (credentials, certificate).
    #[error("ClickHouse at {url}: {source}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// The client's error.
        source: clickhouse::error::Error,
    },
    /// The cluster named by `SLUICE_CLICKHOUSE_CLUSTER` is not one of the server's.
    #[error(
        "ClickHouse at {url} has no cluster `{cluster}` in its <remote_servers> (SLUICE_CLICKHOUSE_CLUSTER): \
         name one of `SELECT DISTINCT cluster FROM system.clusters`, or unset it for a single server"
    )]
    UnknownCluster {
        /// The server's URL.
        url: String,
        /// The cluster asked for.
        cluster: String,
    },
    /// `SLUICE_CLICKHOUSE_URL` lists servers in a form the client cannot use.
    #[error("SLUICE_CLICKHOUSE_URL: {0}")]
    BadUrl(String),
    /// The TLS files (`SLUICE_CLICKHOUSE_TLS_*`) cannot be used.
    #[error("{0}")]
    Tls(String),
    /// `SELECT version()` returned something that is not a version.
    #[error("ClickHouse reported an unparseable version {0:?}")]
    BadVersion(String),
    /// A statement of the migration failed.
    #[error("ClickHouse: {what} failed: {source}")]
    Query {
        /// What was being done.
        what: String,
        /// The client's error.
        source: clickhouse::error::Error,
    },
    /// The configuration asks for something this sink cannot build.
    #[error(transparent)]
    Plan(#[from] schema::PlanError),
    /// Existing tables differ from what the sink writes and analysts read.
    #[error(
        "the ClickHouse tables in `{database}` differ from what sluice expects (fix or drop them; \
         sluice never alters a table):\n  {}",
        .drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    Drift {
        /// The database.
        database: String,
        /// Every difference.
        drift: Vec<Drift>,
    },
    /// The projection writes to another sink.
    #[error("the projection's sink is {0}, not clickhouse")]
    NotClickHouse(String),
}
