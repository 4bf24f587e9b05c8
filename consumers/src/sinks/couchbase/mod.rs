//! The Couchbase sink: the latest state of each entity as one JSON document.
//!
//! - [`service`]: connecting with deadlines (network).

pub mod service;

use std::time::Duration;

pub use service::Couchbase;

/// Errors of the Couchbase sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster could not be reached.
    #[error("Couchbase at {connstr} is unreachable: {reason}")]
    Unreachable {
        /// The connection string used.
        connstr: String,
        /// Why.
        reason: String,
    },
    /// An operation failed.
    #[error("Couchbase {what} failed: {source}")]
    Couchbase {
        /// The operation.
        what: &'static str,
        /// The SDK's error; `source.kind()` tells CAS mismatches and missing documents apart.
        source: couchbase::error::Error,
    },
    /// An operation did not finish in time.
    #[error("Couchbase {what} did not finish within {after:?}")]
    Timeout {
        /// The operation.
        what: &'static str,
        /// The deadline.
        after: Duration,
    },
}
