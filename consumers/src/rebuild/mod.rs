//! Replay with a bound and blue/green rebuilds, the I/O half.
//!
//! Data path: `sluice replay --to` and `sluice rebuild` (the CLI) plan with
//! [`sluice_core::rebuild`] / [`sluice_core::replay`], then use:
//!
//! - [`runner`]: a bounded re-projection — given offset ranges of the source partitions, read them
//!   (assigned, not subscribed), write them through the projection's sink, dead-letter what cannot
//!   be applied, and, for a rebuild, commit to the rebuild's own consumer group so an interrupted
//!   run resumes.
//! - [`target`]: the sink's storage of each version (generation): create it, swap it in for
//!   readers and the live worker, drop it.
//! - [`state`]: the stored [`RebuildState`](sluice_core::rebuild::RebuildState) of every
//!   projection (a compacted Kafka topic), so any process can resume, abort or finish a rebuild.

pub mod runner;
pub mod state;
pub mod target;

use rdkafka::error::KafkaError;

/// Why a replay or rebuild step failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// A Kafka request failed.
    #[error("{what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        source: KafkaError,
    },
    /// The sink reported a configuration error: going on would skip records.
    #[error("sink {sink}: {message}")]
    Sink {
        /// Sink kind.
        sink: &'static str,
        /// Its message.
        message: String,
    },
    /// A record could be neither projected nor dead-lettered.
    #[error("the dead-letter topic cannot be written: {0}")]
    Dlq(String),
    /// The stored state could not be read or written.
    #[error("rebuild state: {0}")]
    State(String),
    /// A ClickHouse statement failed.
    #[error(transparent)]
    ClickHouse(#[from] crate::sinks::clickhouse::Error),
    /// A Couchbase operation failed.
    #[error(transparent)]
    Couchbase(#[from] crate::sinks::couchbase::Error),
    /// The state machine refused (see [`sluice_core::rebuild::RebuildError`]).
    #[error(transparent)]
    Plan(#[from] sluice_core::rebuild::RebuildError),
    /// Stopped by a signal before the run finished (progress up to the last batch is committed).
    #[error("stopped before the end; run the same command again to go on")]
    Cancelled,
    /// A blocking task panicked: a bug.
    #[error("a background task did not finish: {0}")]
    Task(String),
}
