//! The ClickHouse sink: analytics tables (every event, rollups, current state) over HTTP.
//!
//! - [`capabilities`]: what a server version supports (pure).
//! - [`service`]: the client and the version probe (network).

pub mod capabilities;
pub mod service;

pub use capabilities::{Capabilities, Version};
pub use service::ClickHouse;

/// Errors of the ClickHouse sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server did not answer a query.
    #[error("ClickHouse at {url} did not answer: {source}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// The client's error.
        source: clickhouse::error::Error,
    },
    /// `SELECT version()` returned something that is not a version.
    #[error("ClickHouse reported an unparseable version {0:?}")]
    BadVersion(String),
}
