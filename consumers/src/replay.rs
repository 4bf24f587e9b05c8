//! Replay, the I/O half: reads what a replay plan needs from Kafka and applies it by committing
//! the projection group's new offsets.
//!
//! Data path: Kafka (topic metadata, low/high watermarks in two batched ListOffsets requests, the
//! group's committed offsets, and for a timestamp the first offset at or after it per partition
//! through `offsets_for_times`) → [`sluice_core::replay::plan`] → printed by `sluice replay` →
//! with `--yes`, [`apply`]: an `OffsetCommit` for the group from a client that uses the group id
//! without joining it. Kafka accepts such a commit only while the group has no members, so
//! [`apply`] first lists the group's members and refuses with [`ReplayError::GroupActive`]; a
//! commit that still races a worker's join is refused by the broker and reported the same way.
//!
//! librdkafka's calls block, so everything runs on the blocking pool.

use sluice_core::connections::KafkaConnection;
use sluice_producers::kafka::client_config as kafka_config;
use std::collections::HashMap;
use std::time::Duration;

use crate::retry::{TRANSIENT_DEADLINE, is_transient_kafka, retry_blocking};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use sluice_core::lag::PartitionOffsets;
use sluice_core::replay::{Position, ReplayPlan, TimeOffsets, plan};
use sluice_core::topology::ProjectionConfig;

/// How long one Kafka request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a replay could not be planned or applied.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A Kafka request failed.
    #[error("{what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        source: KafkaError,
    },
    /// A source topic is missing or unreadable.
    #[error("{0}")]
    Topic(String),
    /// The positions do not fit the projection (see [`sluice_core::replay::ReplayError`]).
    #[error(transparent)]
    Plan(#[from] sluice_core::replay::ReplayError),
    /// The group has live members: Kafka would refuse (or a worker would overwrite) the commit.
    #[error(
        "consumer group {group} has {} live member(s) ({}): stop them first — SIGTERM the \
         `sluice work --projection {projection}` processes (they drain and commit), then run the replay again",
        members.len(), members.join(", ")
    )]
    GroupActive {
        /// The group.
        group: String,
        /// The projection.
        projection: String,
        /// Its members, as `client-id@host`.
        members: Vec<String>,
    },
    /// The broker refused the commit because a worker joined meanwhile.
    #[error(
        "Kafka refused the new offsets of consumer group {group} ({code}): the group is not empty — \
         SIGTERM the `sluice work --projection {projection}` processes, wait until they exited, then run \
         the replay again"
    )]
    CommitRefused {
        /// The group.
        group: String,
        /// The projection.
        projection: String,
        /// Kafka's error code.
        code: RDKafkaErrorCode,
    },
    /// A blocking task panicked: a bug.
    #[error("the replay task did not finish: {0}")]
    Task(String),
}

fn kafka_failed(what: impl Into<String>) -> impl FnOnce(KafkaError) -> ReplayError {
    let what = what.into();
    move |source| ReplayError::Kafka { what, source }
}

/// A client of `group` that never subscribes: Kafka answers committed offsets, and takes commits,
/// only from a client naming the group.
fn group_client(kafka: &KafkaConnection, group: &str) -> Result<BaseConsumer, ReplayError> {
    kafka_config(kafka)
        .set("client.id", "sluice-replay")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(kafka_failed(format!("creating a client of group {group}")))
}

/// The partitions of `topic`, or why it cannot be read.
fn partitions(c: &BaseConsumer, topic: &str) -> Result<Vec<i32>, ReplayError> {
    let md =
        c.fetch_metadata(Some(topic), REQUEST_TIMEOUT).map_err(kafka_failed(format!("reading metadata of {topic}")))?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        Some(t) => Err(ReplayError::Topic(t.error().map_or_else(
            || format!("topic {topic} has no partitions"),
            |e| format!("topic {topic}: {} (run `sluice topics apply`?)", RDKafkaErrorCode::from(e)),
        ))),
        None => Err(ReplayError::Topic(format!("topic {topic} does not exist (run `sluice topics apply`)"))),
    }
}

/// One batched ListOffsets request: `at(topic, partition)` for every partition of `all`.
fn list_offsets(
    c: &BaseConsumer,
    all: &[(String, i32)],
    at: impl Fn() -> Offset,
    what: &str,
) -> Result<HashMap<(String, i32), Offset>, ReplayError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in all {
        tpl.add_partition_offset(t, *p, at()).map_err(kafka_failed(what))?;
    }
    let got = c.offsets_for_times(tpl, REQUEST_TIMEOUT).map_err(kafka_failed(what))?;
    got.elements()
        .iter()
        .map(|e| match e.error() {
            Ok(()) => Ok(((e.topic().to_owned(), e.partition()), e.offset())),
            Err(err) => Err(kafka_failed(format!("{what} of {}:{}", e.topic(), e.partition()))(err)),
        })
        .collect()
}

/// Watermarks and the group's committed offset of every source partition.
/// Retried through transient errors (a leader moving after a broker restart).
fn read_offsets(c: &BaseConsumer, group: &str, sources: &[String]) -> Result<Vec<PartitionOffsets>, ReplayError> {
    let transient = |e: &ReplayError| matches!(e, ReplayError::Kafka { source, .. } if is_transient_kafka(source));
    retry_blocking(TRANSIENT_DEADLINE, transient, || read_offsets_once(c, group, sources))
}

fn read_offsets_once(c: &BaseConsumer, group: &str, sources: &[String]) -> Result<Vec<PartitionOffsets>, ReplayError> {
    let mut all = Vec::new();
    for topic in sources {
        all.extend(partitions(c, topic)?.into_iter().map(|p| (topic.clone(), p)));
    }
    let low = list_offsets(c, &all, || Offset::Beginning, "listing low watermarks")?;
    let high = list_offsets(c, &all, || Offset::End, "listing high watermarks")?;
    let mut tpl = TopicPartitionList::new();
    for (t, p) in &all {
        tpl.add_partition(t, *p);
    }
    let committed = c
        .committed_offsets(tpl, REQUEST_TIMEOUT)
        .map_err(kafka_failed(format!("reading the committed offsets of group {group}")))?;
    let mut out = Vec::new();
    for (topic, partition) in all {
        let key = (topic.clone(), partition);
        let (Some(Offset::Offset(low)), Some(Offset::Offset(high))) = (low.get(&key), high.get(&key)) else {
            return Err(ReplayError::Topic(format!("no watermarks returned for {topic}:{partition}")));
        };
        let committed = committed.find_partition(&topic, partition).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            // Invalid: the group never committed here.
            _ => None,
        });
        out.push(PartitionOffsets { topic, partition, low: *low, high: *high, committed, oldest_timestamp_ms: None });
    }
    Ok(out)
}

/// For a timestamp position, the first offset at or after it on every partition (`None` where
/// no record is that recent); empty for other positions.
fn time_offsets(c: &BaseConsumer, position: &Position, parts: &[PartitionOffsets]) -> Result<TimeOffsets, ReplayError> {
    let Some(ms) = position.timestamp_ms() else { return Ok(TimeOffsets::new()) };
    let all: Vec<(String, i32)> = parts.iter().map(|p| (p.topic.clone(), p.partition)).collect();
    let found = list_offsets(c, &all, || Offset::Offset(ms), "looking up offsets by timestamp")?;
    Ok(found.into_iter().map(|(k, o)| (k, if let Offset::Offset(o) = o { Some(o) } else { None })).collect())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReplayError> + Send + 'static,
) -> Result<T, ReplayError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ReplayError::Task(e.to_string()))?
}

/// The plan of replaying `projection` (its topology entry `config`) from `from`, counted up to
/// `to` (the high watermarks when `None`), from the offsets in Kafka now. Changes nothing.
pub async fn read_plan(
    kafka: &KafkaConnection,
    projection: &str,
    config: &ProjectionConfig,
    from: &Position,
    to: Option<&Position>,
) -> Result<ReplayPlan, ReplayError> {
    let (kafka, projection, group, sources) =
        (kafka.clone(), projection.to_owned(), config.group.clone(), config.sources.clone());
    let (from, to) = (from.clone(), to.cloned());
    blocking(move || {
        let c = group_client(&kafka, &group)?;
        let parts = read_offsets(&c, &group, &sources)?;
        let from_times = time_offsets(&c, &from, &parts)?;
        let to_times = match &to {
            Some(position) => time_offsets(&c, position, &parts)?,
            None => TimeOffsets::new(),
        };
        Ok(plan(&projection, &group, &sources, &parts, (&from, &from_times), to.as_ref().map(|p| (p, &to_times)))?)
    })
    .await
}

/// Watermarks of every partition of `sources` and `group`'s committed offsets on them (a rebuild
/// reads its own group's progress with this).
pub async fn source_offsets(
    kafka: &KafkaConnection,
    group: &str,
    sources: &[String],
) -> Result<Vec<PartitionOffsets>, ReplayError> {
    let (kafka, group, sources) = (kafka.clone(), group.to_owned(), sources.to_vec());
    blocking(move || {
        let c = group_client(&kafka, &group)?;
        read_offsets(&c, &group, &sources)
    })
    .await
}

/// The live members of consumer group `group`, as `client-id@host`; empty when none (or when the
/// group does not exist yet).
pub async fn group_members(kafka: &KafkaConnection, group: &str) -> Result<Vec<String>, ReplayError> {
    let (kafka, group) = (kafka.clone(), group.to_owned());
    blocking(move || {
        let c = group_client(&kafka, &group)?;
        let list = c
            .fetch_group_list(Some(&group), REQUEST_TIMEOUT)
            .map_err(kafka_failed(format!("describing consumer group {group}")))?;
        Ok(list
            .groups()
            .iter()
            .filter(|g| g.name() == group)
            .flat_map(|g| {
                g.members().iter().map(|m| format!("{}@{}", m.client_id(), m.client_host().trim_start_matches('/')))
            })
            .collect())
    })
    .await
}

/// Applies `plan`: refuses while its group has live members, then commits the new offset of every
/// partition whose offset changes. Returns how many partitions were committed.
pub async fn apply(kafka: &KafkaConnection, plan: &ReplayPlan) -> Result<usize, ReplayError> {
    let members = group_members(kafka, &plan.group).await?;
    if !members.is_empty() {
        return Err(ReplayError::GroupActive {
            group: plan.group.clone(),
            projection: plan.projection.clone(),
            members,
        });
    }
    let mut tpl = TopicPartitionList::new();
    for p in plan.changes() {
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.new))
            .map_err(kafka_failed(format!("preparing the offset of {}:{}", p.topic, p.partition)))?;
    }
    let count = tpl.count();
    if count == 0 {
        return Ok(0);
    }
    let (kafka, group, projection) = (kafka.clone(), plan.group.clone(), plan.projection.clone());
    blocking(move || {
        let c = group_client(&kafka, &group)?;
        match c.commit(&tpl, CommitMode::Sync) {
            Ok(()) => Ok(count),
            // A member joined between the check and the commit: the broker protects the group.
            Err(KafkaError::ConsumerCommit(
                code @ (RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::NonEmptyGroup),
            )) => Err(ReplayError::CommitRefused { group, projection, code }),
            Err(e) => Err(kafka_failed(format!("committing the new offsets of group {group}"))(e)),
        }
    })
    .await
}
