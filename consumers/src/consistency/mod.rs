//! Whether a projection includes a write: a [`ConsistencyToken`] against the projection's
//! committed offsets. Workers commit only after the sink acknowledged, so a committed offset past
//! the token's is a promise that every write it names is readable in the sink.
//!
//! A projection is checked on the token's positions in the topics it reads (a batch token may
//! span topics several projections share out). A token that cannot be about this projection is
//! refused at once, never waited on: one naming no topic the projection reads (another
//! topology's, another projection's), a partition the topic does not have, or an offset beyond
//! the partition's end (a token from another cluster, or made up).
//!
//! The waiting is [`Progress`]'s ([`progress`]): one reader of each projection's committed
//! offsets per process, however many callers wait on it. This module is the pure part: which
//! positions a projection answers for, and where committed offsets stand against them.

pub mod progress;

use std::time::Duration;

use rdkafka::error::KafkaError;
use sluice_core::consistency::ConsistencyToken;
use sluice_core::inclusion::Position;
use sluice_core::topology::ProjectionConfig;
use thiserror::Error;

pub use progress::Progress;

/// Why a token cannot be checked against a projection.
#[derive(Debug, Clone, Error)]
pub enum InclusionError {
    /// The token names no topic the projection reads.
    #[error("the token names {topics}, none of which projection `{projection}` reads (it reads {reads})")]
    ForeignTopic {
        /// The token's topics, listed.
        topics: String,
        /// The projection.
        projection: String,
        /// The projection's sources, listed.
        reads: String,
    },
    /// The token names a partition the topic does not have.
    #[error("the token names partition {partition} of `{topic}`, which has {partitions} partition(s)")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition named.
        partition: i32,
        /// How many the topic has.
        partitions: usize,
    },
    /// The token names an offset the partition has not reached: not a write of this cluster.
    #[error(
        "the token names offset {offset} of `{topic}`/{partition}, past the partition's end ({end}): not a write of this cluster"
    )]
    BeyondEnd {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset named.
        offset: i64,
        /// The partition's end (the next offset to be written).
        end: i64,
    },
    /// Kafka could not be asked.
    #[error("Kafka: {what}: {source}")]
    Kafka {
        /// What was being asked.
        what: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Kafka gave no reading of the committed offsets in time.
    #[error("Kafka gave no reading of the group's committed offsets within {0:?}")]
    NoAnswer(Duration),
}

impl InclusionError {
    /// A stable, machine-readable code: `token_foreign`, `token_partition`, `token_beyond_end`
    /// for a token that cannot be about the projection; `None` when Kafka did not answer (worth
    /// another try, not the token's fault).
    pub fn token_code(&self) -> Option<&'static str> {
        match self {
            Self::ForeignTopic { .. } => Some("token_foreign"),
            Self::UnknownPartition { .. } => Some("token_partition"),
            Self::BeyondEnd { .. } => Some("token_beyond_end"),
            Self::Kafka { .. } | Self::NoAnswer(_) => None,
        }
    }
}

/// The token's positions in the topics `projection` (named `name`) reads; a token naming none of
/// them is foreign.
pub fn positions(
    name: &str,
    projection: &ProjectionConfig,
    token: &ConsistencyToken,
) -> Result<Vec<Position>, InclusionError> {
    let positions: Vec<Position> = token
        .positions()
        .filter(|(topic, _, _)| projection.sources.iter().any(|s| s == topic))
        .map(|(topic, partition, offset)| Position { topic: topic.to_owned(), partition, offset })
        .collect();
    if positions.is_empty() {
        return Err(InclusionError::ForeignTopic {
            topics: token.topics().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
            projection: name.to_owned(),
            reads: projection.sources.join(", "),
        });
    }
    Ok(positions)
}
