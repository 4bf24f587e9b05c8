//! The key-value operations a Couchbase projection sends, counted by kind
//! ([`names::COUCHBASE_OPERATIONS`]): divided by the events projected, what one event costs the
//! cluster and the worker (each operation is a request and a response through the SDK).

use metrics::{Counter, counter, describe_counter};

use crate::worker::metrics::names;

/// One counter per operation of a projection.
#[derive(Debug, Clone)]
pub(super) struct Operations {
    pub(super) get: Counter,
    pub(super) insert: Counter,
    pub(super) replace: Counter,
    pub(super) remove: Counter,
}

impl Operations {
    /// The counters of `projection`.
    pub(super) fn new(projection: &str) -> Self {
        describe_counter!(names::COUCHBASE_OPERATIONS, "Key-value operations a Couchbase projection sent, by kind.");
        let of = |operation: &'static str| counter!(names::COUCHBASE_OPERATIONS, "projection" => projection.to_owned(), "operation" => operation);
        Self { get: of("get"), insert: of("insert"), replace: of("replace"), remove: of("remove") }
    }
}
