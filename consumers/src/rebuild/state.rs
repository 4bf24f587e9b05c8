//! Where rebuild states are kept: the compacted Kafka topic [`STATE_TOPIC`], one record per
//! projection (key: the projection's name, value: its [`RebuildState`] as JSON).
//!
//! Why Kafka: every projection, whatever its sink, already depends on it, and the state must
//! outlive the very objects a rebuild swaps and drops (a ClickHouse table, a Couchbase
//! collection). Compaction keeps the latest record per projection, so reading the state is
//! reading a topic of a few records to its end. The topic is created on first use (one partition:
//! writes are rare and must be read in order; replicated like the cluster allows).

use sluice_core::connections::KafkaConnection;
use sluice_producers::kafka::client_config as kafka_config;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_core::rebuild::RebuildState;

use super::RebuildError;
use crate::retry::{TRANSIENT_DEADLINE, is_transient_kafka, retry_blocking};

/// The topic of rebuild states.
pub const STATE_TOPIC: &str = "sluice.rebuilds";

const TIMEOUT: Duration = Duration::from_secs(10);

fn kafka_failed(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> RebuildError {
    move |source| RebuildError::Kafka { what: what.to_owned(), source }
}

/// The stored state of `projection`'s last rebuild; `None` when it was never rebuilt.
pub async fn load(kafka: &KafkaConnection, projection: &str) -> Result<Option<RebuildState>, RebuildError> {
    let (kafka, projection) = (kafka.clone(), projection.to_owned());
    let transient = |e: &RebuildError| matches!(e, RebuildError::Kafka { source, .. } if is_transient_kafka(source));
    tokio::task::spawn_blocking(move || {
        retry_blocking(TRANSIENT_DEADLINE, transient, || load_blocking(&kafka, &projection))
    })
    .await
    .map_err(|e| RebuildError::Task(e.to_string()))?
}

fn load_blocking(kafka: &KafkaConnection, projection: &str) -> Result<Option<RebuildState>, RebuildError> {
    let consumer: BaseConsumer = kafka_config(kafka)
        .set("group.id", "sluice.rebuilds.reader")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(kafka_failed("creating the rebuild-state reader"))?;
    let md = consumer
        .fetch_metadata(Some(STATE_TOPIC), TIMEOUT)
        .map_err(kafka_failed("reading the state topic's metadata"))?;
    let exists =
        md.topics().iter().any(|t| t.name() == STATE_TOPIC && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Ok(None);
    }
    let (low, high) = consumer
        .fetch_watermarks(STATE_TOPIC, 0, TIMEOUT)
        .map_err(kafka_failed("reading the state topic's watermarks"))?;
    if high <= low {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(STATE_TOPIC, 0, Offset::Beginning).map_err(kafka_failed("assigning the state topic"))?;
    consumer.assign(&tpl).map_err(kafka_failed("assigning the state topic"))?;
    let mut latest: Option<RebuildState> = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let Some(polled) = consumer.poll(Duration::from_millis(500)) else {
            if std::time::Instant::now() > deadline {
                return Err(RebuildError::State(format!("reading {STATE_TOPIC} up to offset {high} timed out")));
            }
            continue;
        };
        let m = polled.map_err(kafka_failed("reading the state topic"))?;
        if m.key() == Some(projection.as_bytes()) {
            latest = match m.payload() {
                None => None,
                Some(bytes) => Some(serde_json::from_slice(bytes).map_err(|e| {
                    RebuildError::State(format!(
                        "the stored state of {projection} at offset {} is not valid: {e}",
                        m.offset()
                    ))
                })?),
            };
        }
        if m.offset() + 1 >= high {
            return Ok(latest);
        }
    }
}

/// Stores `state` as its projection's latest, creating the topic on first use.
pub async fn save(kafka: &KafkaConnection, state: &RebuildState) -> Result<(), RebuildError> {
    ensure_topic(kafka).await?;
    let producer: FutureProducer = kafka_config(kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(kafka_failed("creating the rebuild-state writer"))?;
    let value = serde_json::to_vec(state).map_err(|e| RebuildError::State(e.to_string()))?;
    let record = FutureRecord::to(STATE_TOPIC).key(state.projection.as_bytes()).payload(&value).partition(0);
    producer.send(record, TIMEOUT).await.map(drop).map_err(|(source, _)| RebuildError::Kafka {
        what: format!("writing the rebuild state to {STATE_TOPIC}"),
        source,
    })
}

async fn ensure_topic(kafka: &KafkaConnection) -> Result<(), RebuildError> {
    let admin: AdminClient<DefaultClientContext> =
        kafka_config(kafka).create().map_err(kafka_failed("creating an admin client"))?;
    let md = admin
        .inner()
        .fetch_metadata(Some(STATE_TOPIC), TIMEOUT)
        .map_err(kafka_failed("reading the state topic's metadata"))?;
    if md.topics().iter().any(|t| t.name() == STATE_TOPIC && t.error().is_none() && !t.partitions().is_empty()) {
        return Ok(());
    }
    let replication = md.brokers().len().clamp(1, 3) as i32;
    let topic = NewTopic::new(STATE_TOPIC, 1, TopicReplication::Fixed(replication)).set("cleanup.policy", "compact");
    let results = admin
        .create_topics([&topic], &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .map_err(kafka_failed("creating the state topic"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(RebuildError::State(format!("creating topic {name}: {code}"))),
        }
    }
    Ok(())
}

/// Deletes consumer group `group` (a finished or aborted rebuild's), best effort: an empty group
/// costs the broker nothing, so a failure is only reported.
pub async fn delete_group(kafka: &KafkaConnection, group: &str) -> Result<(), RebuildError> {
    let admin: AdminClient<DefaultClientContext> =
        kafka_config(kafka).create().map_err(kafka_failed("creating an admin client"))?;
    let results = admin
        .delete_groups(&[group], &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .map_err(kafka_failed("deleting the rebuild's consumer group"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((name, code)) => return Err(RebuildError::State(format!("deleting consumer group {name}: {code}"))),
        }
    }
    Ok(())
}
