//! Whether a projection includes a write: a [`ConsistencyToken`] against the projection's
//! committed offsets. Workers commit only after the sink acknowledged, so a committed offset past
//! the token's is a promise that every write it names is readable in the sink.
//!
//! A projection is checked on the token's positions in the topics it reads (a batch token may
//! span topics several projections share out). A token that cannot be about this projection is
//! refused at once, never waited on: one naming no topic the projection reads (another
//! topology's, another projection's), a partition the topic does not have, or an offset beyond
//! the partition's end (a token from another cluster, or made up).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use sluice_core::connections::KafkaConnection;
use sluice_core::consistency::ConsistencyToken;
use sluice_core::topology::ProjectionConfig;
use sluice_producers::kafka::client_config as kafka_config;
use thiserror::Error;

/// How long one Kafka request of a check may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a token cannot be checked against a projection.
#[derive(Debug, Error)]
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
}

/// One partition the projection has not caught up on yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the token's write there.
    pub offset: i64,
    /// The projection's committed offset (the next to read); `None`: nothing committed yet.
    pub committed: Option<i64>,
}

/// Where a projection stands against a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// The partitions not yet included; empty when the projection includes every write.
    pub behind: Vec<Behind>,
}

impl Inclusion {
    /// Whether every write of the token is included.
    pub fn included(&self) -> bool {
        self.behind.is_empty()
    }

    /// Where it is behind, e.g. `users/1 at 5310 (committed 5290), users/2 at 17 (committed nothing)`.
    pub fn describe_behind(&self) -> String {
        let parts: Vec<String> = self.behind.iter().map(ToString::to_string).collect();
        parts.join(", ")
    }
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.committed {
            Some(c) => write!(f, "{}/{} at {} (committed {c})", self.topic, self.partition, self.offset),
            None => write!(f, "{}/{} at {} (committed nothing)", self.topic, self.partition, self.offset),
        }
    }
}

/// Checks `token` against `projection` once. Blocking (librdkafka): call from `spawn_blocking`.
pub fn check(
    kafka: &KafkaConnection,
    name: &str,
    projection: &ProjectionConfig,
    token: &ConsistencyToken,
) -> Result<Inclusion, InclusionError> {
    wait(kafka, name, projection, token, Duration::ZERO, Duration::ZERO)
}

/// Waits until `projection` includes `token` or `within` passes, checking every `every`; the
/// last [`Inclusion`] either way (a caller answers "not yet" with what it has). Blocking.
pub fn wait(
    kafka: &KafkaConnection,
    name: &str,
    projection: &ProjectionConfig,
    token: &ConsistencyToken,
    within: Duration,
    every: Duration,
) -> Result<Inclusion, InclusionError> {
    let checker = Checker::new(kafka, name, projection)?;
    // Validated once: a token valid now stays valid; only the committed offsets move.
    let positions = checker.validated(token)?;
    let deadline = Instant::now() + within;
    loop {
        let inclusion = checker.committed(&positions)?;
        if inclusion.included() || Instant::now() >= deadline {
            return Ok(inclusion);
        }
        std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// A client of the projection's group that never joins it: it only reads committed offsets.
struct Checker<'p> {
    consumer: BaseConsumer,
    name: &'p str,
    projection: &'p ProjectionConfig,
}

impl<'p> Checker<'p> {
    fn new(kafka: &KafkaConnection, name: &'p str, projection: &'p ProjectionConfig) -> Result<Self, InclusionError> {
        let consumer = kafka_config(kafka)
            .set("group.id", &projection.group)
            .set("client.id", "sluice-consistency")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|source| InclusionError::Kafka { what: "creating a client", source })?;
        Ok(Self { consumer, name, projection })
    }

    /// The token's positions in the topics the projection reads.
    fn relevant<'t>(&self, token: &'t ConsistencyToken) -> Vec<(&'t str, i32, i64)> {
        token.positions().filter(|(topic, _, _)| self.projection.sources.iter().any(|s| s == topic)).collect()
    }

    /// The token's positions this projection answers for, once checked (see [`Self::validate`]).
    fn validated<'t>(&self, token: &'t ConsistencyToken) -> Result<Vec<(&'t str, i32, i64)>, InclusionError> {
        let positions = self.relevant(token);
        self.validate(token, &positions)?;
        Ok(positions)
    }

    /// Where the projection's committed offsets stand against `positions`.
    fn committed(&self, positions: &[(&str, i32, i64)]) -> Result<Inclusion, InclusionError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, _) in positions {
            tpl.add_partition(topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|source| InclusionError::Kafka { what: "reading committed offsets", source })?;
        let mut by_partition = BTreeMap::new();
        for e in committed.elements() {
            if let Offset::Offset(o) = e.offset() {
                by_partition.insert((e.topic().to_owned(), e.partition()), o);
            }
        }
        let behind = positions
            .iter()
            .filter_map(|&(topic, partition, offset)| {
                let committed = by_partition.get(&(topic.to_owned(), partition)).copied();
                committed.is_none_or(|c| c <= offset).then(|| Behind {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    committed,
                })
            })
            .collect();
        Ok(Inclusion { behind })
    }

    /// Refuses a token that cannot be about this projection (see the module doc).
    fn validate(&self, token: &ConsistencyToken, positions: &[(&str, i32, i64)]) -> Result<(), InclusionError> {
        if positions.is_empty() {
            return Err(InclusionError::ForeignTopic {
                topics: token.topics().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
                projection: self.name.to_owned(),
                reads: self.projection.sources.join(", "),
            });
        }
        let mut partitions: BTreeMap<&str, usize> = BTreeMap::new();
        for &(topic, partition, offset) in positions {
            if !partitions.contains_key(topic) {
                let md = self
                    .consumer
                    .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                    .map_err(|source| InclusionError::Kafka { what: "reading the topic's metadata", source })?;
                partitions.insert(topic, md.topics().first().map_or(0, |t| t.partitions().len()));
            }
            let n = partitions[topic];
            if usize::try_from(partition).map_or(true, |p| p >= n) {
                return Err(InclusionError::UnknownPartition { topic: topic.to_owned(), partition, partitions: n });
            }
            let (_, end) = self
                .consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(|source| InclusionError::Kafka { what: "reading the partition's end", source })?;
            if offset >= end {
                return Err(InclusionError::BeyondEnd { topic: topic.to_owned(), partition, offset, end });
            }
        }
        Ok(())
    }
}
