//! What `sluice topology init` reads of an existing cluster: the registry's subjects with their
//! latest schema, the Kafka topics with their settings, and the schema ids in each topic's latest
//! records.
//!
//! It all goes into an [`Inventory`] for [`sluice_core::topology::init::generate`], which decides
//! everything; nothing is changed anywhere. Registry calls run a few at a time. Records are read
//! only when some subject is named after its record (the only case they can tell anything), by
//! one consumer that never joins its group nor commits, from the last `n` offsets of every
//! partition up to the partition's end, within a deadline.

use crate::kafka::client_config as kafka_config;
use sluice_core::connections::KafkaConnection;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_core::framing::unframe;
use sluice_core::topology::init::{
    Filter, Inventory, KafkaTopic, RegistrySubject, TopicSample, is_event_schema, is_record_named_event, needs_records,
};

use super::topics::{TopicAdmin, TopicsError};
use crate::{Registry, RegistryError};

/// Registry calls in flight at once: enough to read hundreds of subjects in seconds, few enough
/// not to load a shared registry.
const REGISTRY_CONCURRENCY: usize = 8;
/// The consumer group named for the record reader (librdkafka wants one to assign partitions);
/// it never joins it and never commits.
const READER_GROUP: &str = "sluice.topology-init";

/// What to read.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// Which subjects and topics.
    pub filter: Filter,
    /// How many of the latest records of each partition to read (0: none).
    pub records_per_partition: u64,
    /// How long reading records may take in all; what was read by then counts.
    pub records_deadline: Duration,
    /// Each Kafka admin request's timeout.
    pub kafka_timeout: Duration,
}

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The registry did not answer or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Kafka did not answer or refused.
    #[error(transparent)]
    Topics(#[from] TopicsError),
    /// Reading the records failed.
    #[error("reading the topics' latest records: {0}")]
    Records(String),
}

/// Reads the registry at `registry` and the cluster at `brokers`.
pub async fn discover(
    registry: &Registry,
    kafka: &KafkaConnection,
    options: &DiscoverOptions,
) -> Result<Inventory, DiscoverError> {
    let filter = &options.filter;
    let names: Vec<String> = registry.subjects().await?.into_iter().filter(|s| filter.keeps_subject(s)).collect();
    let subjects: Vec<RegistrySubject> = stream::iter(names)
        .map(|name| subject(registry, name))
        .buffer_unordered(REGISTRY_CONCURRENCY)
        .try_filter_map(|s| async move { Ok(s) })
        .try_collect()
        .await?;
    let compatibility = registry.global_compatibility().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the registry's global compatibility level could not be read");
        None
    });

    let admin = TopicAdmin::new(kafka, options.kafka_timeout)?;
    let listed = admin.list().await?;
    let kept: Vec<&str> = listed.keys().map(String::as_str).filter(|t| filter.keeps_topic(t)).collect();
    let described = admin.describe(&kept).await?;
    let sample = options.records_per_partition > 0 && needs_records(&subjects, filter);
    let mut samples = if sample {
        let wanted: Vec<(String, usize)> =
            kept.iter().map(|t| ((*t).to_owned(), listed.get(*t).map_or(0, |(p, _)| *p))).collect();
        let (brokers, n, deadline) = (kafka.clone(), options.records_per_partition, options.records_deadline);
        let timeout = options.kafka_timeout;
        tokio::task::spawn_blocking(move || read_records(&brokers, &wanted, n, deadline, timeout))
            .await
            .map_err(|e| DiscoverError::Records(format!("the reading task failed: {e}")))??
    } else {
        BTreeMap::new()
    };

    let topics = listed
        .iter()
        .map(|(name, (partitions, replication))| {
            let configs = described.get(name).map(|d| &d.configs);
            let config = |key: &str| configs.and_then(|c| c.get(key));
            KafkaTopic {
                name: name.clone(),
                partitions: u32::try_from(*partitions).unwrap_or(u32::MAX),
                replication_factor: u16::try_from(*replication).unwrap_or(u16::MAX),
                min_insync_replicas: config("min.insync.replicas")
                    .and_then(|(v, _)| v.as_deref())
                    .and_then(|v| v.parse().ok()),
                cleanup_policy: config("cleanup.policy").and_then(|(v, _)| v.clone()),
                retention_ms: config("retention.ms")
                    .filter(|(_, own)| *own)
                    .and_then(|(v, _)| v.as_deref())
                    .and_then(|v| v.parse().ok()),
                sample: samples.remove(name),
            }
        })
        .collect();
    Ok(Inventory {
        registry_url: registry.url().to_owned(),
        kafka_brokers: kafka.brokers.clone(),
        compatibility,
        subjects,
        topics,
        sampled_per_partition: sample.then_some(options.records_per_partition),
    })
}

/// One subject at its latest version; for an event schema with its own compatibility level, and
/// the ids of its earlier versions when it is named after its record. `None` when it vanished
/// meanwhile.
async fn subject(registry: &Registry, name: String) -> Result<Option<RegistrySubject>, RegistryError> {
    let Some(latest) = registry.latest(&name).await? else { return Ok(None) };
    let mut subject = RegistrySubject {
        subject: name,
        version: latest.version,
        id: latest.id,
        schema: latest.schema,
        earlier_ids: Vec::new(),
        compatibility: None,
    };
    if is_event_schema(&subject) {
        subject.compatibility = registry.compatibility(&subject.subject).await?;
    }
    if subject.version > 1 && is_record_named_event(&subject) {
        for version in registry.versions(&subject.subject).await? {
            if version != subject.version
                && let Some(v) = registry.version(&subject.subject, Some(version)).await?
                && v.id != subject.id
            {
                subject.earlier_ids.push(v.id);
            }
        }
    }
    Ok(Some(subject))
}

/// The schema ids in the last `n` records of every partition of `topics` (name, partitions),
/// read until each partition's end or `deadline`. Blocking: librdkafka's consumer.
fn read_records(
    kafka: &KafkaConnection,
    topics: &[(String, usize)],
    n: u64,
    deadline: Duration,
    timeout: Duration,
) -> Result<BTreeMap<String, TopicSample>, DiscoverError> {
    let failed = |what: &'static str| move |e: KafkaError| DiscoverError::Records(format!("{what}: {e}"));
    let consumer: BaseConsumer = kafka_config(kafka)
        .set("group.id", READER_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(failed("creating the consumer"))?;
    let mut samples: BTreeMap<String, TopicSample> =
        topics.iter().map(|(t, _)| (t.clone(), TopicSample::default())).collect();
    // The end of each partition to read, by (topic, partition): the offset of its last record.
    let mut open: HashMap<(String, i32), i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..i32::try_from(*partitions).unwrap_or(i32::MAX) {
            let (low, high) = consumer.fetch_watermarks(topic, p, timeout).map_err(failed("reading watermarks"))?;
            if high <= low {
                continue;
            }
            let start = low.max(high.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX)));
            tpl.add_partition_offset(topic, p, Offset::Offset(start)).map_err(failed("assigning"))?;
            open.insert((topic.clone(), p), high - 1);
        }
    }
    if open.is_empty() {
        return Ok(samples);
    }
    consumer.assign(&tpl).map_err(failed("assigning"))?;
    let until = Instant::now() + deadline;
    while !open.is_empty() && Instant::now() < until {
        match consumer.poll(Duration::from_millis(200)) {
            // Idle: a partition whose position passed its last offset is done. That is how a
            // partition ends whose last offset is a transaction marker, at which no record is read.
            None => {
                let positions = consumer.position().map_err(failed("reading positions"))?;
                for e in positions.elements() {
                    let key = (e.topic().to_owned(), e.partition());
                    if let (Offset::Offset(at), Some(last)) = (e.offset(), open.get(&key))
                        && at > *last
                    {
                        open.remove(&key);
                    }
                }
            }
            Some(Ok(m)) => {
                let key = (m.topic().to_owned(), m.partition());
                let Some(last) = open.get(&key).copied() else { continue };
                if let Some(sample) = samples.get_mut(m.topic()) {
                    sample.records += 1;
                    match m.payload().map(unframe) {
                        Some(Ok(framed)) => *sample.schema_ids.entry(framed.schema_id).or_default() += 1,
                        _ => sample.unframed += 1,
                    }
                }
                if m.offset() >= last {
                    open.remove(&key);
                }
            }
            // Transient (a broker connection lost and re-made): the deadline bounds the wait.
            Some(Err(e)) => tracing::warn!(error = %e, "reading the latest records"),
        }
    }
    for (topic, _) in open.keys() {
        if let Some(sample) = samples.get_mut(topic) {
            sample.partial = true;
        }
    }
    Ok(samples)
}
