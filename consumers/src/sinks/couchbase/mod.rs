//! The Couchbase sink: the latest state of each entity as one JSON document.
//!
//! Data path: the worker hands [`sink::CouchbaseProjection`] a batch of decoded events; each is
//! turned into a document key and a fold change ([`request_builder`], pure), folded into the
//! document's stored state with [`sluice_core::fold`] and written back with CAS ([`sink`]).
//!
//! - [`request_builder`]: event → document id and fold change (pure).
//! - [`sink`]: the [`Sink`](crate::sink::Sink): read, fold, write with CAS, erase with tombstones.
//! - `group`: one document's events folded into its stored state (pure).
//! - `first`: whether a document not remembered is inserted blind or read first (pure).
//! - `operations`: the key-value operations sent, counted by kind (a metric).
//! - [`durability`]: the projection's `durability` on every write, and its errors (pure).
//! - [`setup`](mod@setup): `sluice couchbase setup`, creating the projections' scopes and collections.
//! - [`service`]: connecting with deadlines (network).
//! - [`pointer`](mod@pointer): the document naming a projection's live collection (blue/green rebuilds).
//! - [`live`]: the worker's sink, following that pointer.
//! - [`reads`]: documents read back through the pointer, after a consistency token (the gateway's
//!   reads, `sluice couchbase get --after`).

pub mod durability;
mod first;
mod group;
mod known;
pub mod live;
mod operations;
pub mod pointer;
pub mod reads;
pub mod request_builder;
pub mod service;
pub mod setup;
pub mod sink;

use std::time::Duration;

pub use live::LiveProjection;
pub use request_builder::{DocumentChange, RequestError};
pub use service::Couchbase;
pub use setup::{Presence, SetupLine, drop_collection, setup};
pub use sink::CouchbaseProjection;

/// Errors of the Couchbase sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster could not be reached.
    #[error("Couchbase at {connstr} is unreachable: {source}")]
    Unreachable {
        /// The connection string used.
        connstr: String,
        /// Why: the failed step.
        source: Box<Error>,
    },
    /// An operation failed.
    #[error("Couchbase {what} failed: {source}")]
    Couchbase {
        /// The operation.
        what: &'static str,
        /// The SDK's error; `source.kind()` tells CAS mismatches and missing documents apart.
        source: couchbase::error::Error,
    },
    /// The projection given to the Couchbase sink writes to another sink.
    #[error("projection `{projection}` does not write to Couchbase")]
    NotCouchbase {
        /// The projection.
        projection: String,
    },
    /// A projection's collection does not exist (yet).
    #[error(
        "Couchbase collection `{scope}.{collection}` does not exist in bucket `{bucket}`: \
         create it with `sluice couchbase setup`"
    )]
    MissingCollection {
        /// The bucket.
        bucket: String,
        /// The scope.
        scope: String,
        /// The collection.
        collection: String,
    },
    /// TLS to the cluster cannot work: the files (`SLUICE_COUCHBASE_TLS_*`) are unusable, or the
    /// cluster's certificate is refused (untrusted issuer, another name).
    #[error("Couchbase at {connstr}: {reason}")]
    Tls {
        /// The connection string used.
        connstr: String,
        /// Why.
        reason: String,
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
