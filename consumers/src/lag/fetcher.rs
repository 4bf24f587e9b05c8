//! The Kafka side of a lag refresh, all blocking calls: topic metadata, the low and high
//! watermarks of every partition (two batched requests), each projection group's committed
//! offsets (one offsets-only client per group), and the timestamp of the record at each lagging
//! partition's committed offset (cached by partition and offset).

use sluice_core::connections::KafkaConnection;
use sluice_producers::kafka::client_config as kafka_config;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_core::lag::{Observation, PartitionOffsets};
use tracing::{debug, warn};

use super::{LIST_RETRY_DEADLINE, READER_GROUP, RECORD_WAIT, REQUEST_TIMEOUT, Watched};
use crate::retry::{is_transient_kafka, retry_blocking};

/// Which failed requests of a refresh are retried: any, logged; a refresh is cheap to retry, and
/// what still fails at [`LIST_RETRY_DEADLINE`] is reported for the projection.
fn retried(e: &KafkaError) -> bool {
    debug!(error = %e, "a lag request failed; retrying");
    true
}

/// `(partition, low, high)` of every partition of each topic, or why the topic could not be read.
type Marks = BTreeMap<String, Result<Vec<(i32, i64, i64)>, String>>;

/// The Kafka side of a refresh, all blocking calls.
pub(super) struct Fetcher {
    kafka: KafkaConnection,
    /// Metadata, watermarks and oldest records; it only ever assigns, never commits.
    reader: BaseConsumer,
    /// One offsets-only client per consumer group.
    groups: HashMap<String, BaseConsumer>,
    /// Kafka timestamp of the record at (topic, partition, offset).
    timestamps: HashMap<(String, i32, i64), i64>,
}

/// A client that only reads: no auto-commit, no offset store, small fetches (it wants one record).
fn client_config(kafka: &KafkaConnection, client_id: &str) -> ClientConfig {
    let mut c = kafka_config(kafka);
    c.set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false")
        .set("fetch.wait.max.ms", "50")
        .set("max.partition.fetch.bytes", "65536")
        .set("queued.max.messages.kbytes", "1024");
    c
}

impl Fetcher {
    pub(super) fn new(kafka: &KafkaConnection) -> Result<Self, KafkaError> {
        // librdkafka wants a group for assign(); this one never joins (no subscribe) nor commits.
        let reader = client_config(kafka, "sluice-lag-monitor").set("group.id", READER_GROUP).create()?;
        Ok(Self { kafka: kafka.clone(), reader, groups: HashMap::new(), timestamps: HashMap::new() })
    }

    /// One refresh of every projection in `watched`.
    pub(super) fn observe(&mut self, watched: &[Watched]) -> BTreeMap<String, Observation> {
        let topics: BTreeSet<&str> = watched.iter().flat_map(|w| w.sources.iter().map(String::as_str)).collect();
        let marks = self.watermarks(&topics);
        let mut observed = BTreeMap::new();
        let mut wanted: BTreeSet<(String, i32, i64)> = BTreeSet::new();
        for w in watched {
            let result = self.projection_offsets(w, &marks);
            if let Ok(offsets) = &result {
                wanted.extend(
                    offsets
                        .iter()
                        .filter(|o| o.lag_messages() > 0)
                        .map(|o| (o.topic.clone(), o.partition, o.position())),
                );
            }
            observed.insert(w.name.clone(), result);
        }
        self.fetch_timestamps(&wanted);
        for offsets in observed.values_mut().flat_map(|r| r.as_mut().ok()) {
            for o in offsets.iter_mut().filter(|o| o.lag_messages() > 0) {
                o.oldest_timestamp_ms = self.timestamps.get(&(o.topic.clone(), o.partition, o.position())).copied();
            }
        }
        // Only what this refresh needed stays cached, so the cache is as small as the lag.
        self.timestamps.retain(|k, _| wanted.contains(k));
        observed
    }

    /// `(low, high)` of every partition of `topics`, or why a topic could not be read.
    fn watermarks(&self, topics: &BTreeSet<&str>) -> Marks {
        let mut out = BTreeMap::new();
        let mut all = Vec::new();
        for topic in topics {
            let partitions = match self.reader.fetch_metadata(Some(topic), REQUEST_TIMEOUT) {
                Err(e) => Err(format!("reading metadata of topic {topic}: {e}")),
                Ok(md) => match md.topics().iter().find(|t| t.name() == *topic) {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        Ok(t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                    }
                    Some(t) => Err(t.error().map_or_else(
                        || format!("topic {topic} has no partitions"),
                        |e| {
                            format!(
                                "topic {topic}: {} (run `sluice topics apply`?)",
                                rdkafka::error::RDKafkaErrorCode::from(e)
                            )
                        },
                    )),
                    None => Err(format!("topic {topic} does not exist (run `sluice topics apply`)")),
                },
            };
            match partitions {
                Ok(ps) => all.extend(ps.into_iter().map(|p| ((*topic).to_owned(), p))),
                Err(e) => {
                    out.insert((*topic).to_owned(), Err(e));
                }
            }
        }
        if all.is_empty() {
            return out;
        }
        // Two batched ListOffsets requests (earliest, latest) for every partition at once, rather
        // than two round trips per partition.
        let list = |at: Offset| -> Result<HashMap<(String, i32), i64>, String> {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &all {
                tpl.add_partition_offset(t, *p, at).map_err(|e| e.to_string())?;
            }
            // Leadership moves (a topic just created, a broker restarting) fail the request, or
            // some of its partitions, for a moment: a few quick retries spare the refresh.
            let got = retry_blocking(LIST_RETRY_DEADLINE, retried, || {
                // A partition whose leader is moving answers with an error of its own.
                self.reader.offsets_for_times(tpl.clone(), REQUEST_TIMEOUT).and_then(|got| {
                    match got.elements().iter().find_map(|e| e.error().err().filter(is_transient_kafka)) {
                        Some(moving) => Err(moving),
                        None => Ok(got),
                    }
                })
            })
            .map_err(|e| format!("listing offsets: {e}"))?;
            got.elements()
                .iter()
                .map(|e| match (e.error(), e.offset()) {
                    (Ok(()), Offset::Offset(o)) => Ok(((e.topic().to_owned(), e.partition()), o)),
                    (Err(err), _) => Err(format!("offsets of {}/{}: {err}", e.topic(), e.partition())),
                    (Ok(()), other) => Err(format!("offsets of {}/{}: got {other:?}", e.topic(), e.partition())),
                })
                .collect()
        };
        match list(Offset::Beginning).and_then(|low| Ok((low, list(Offset::End)?))) {
            Ok((low, high)) => {
                for (topic, p) in all {
                    let key = (topic.clone(), p);
                    let entry = out.entry(topic).or_insert_with(|| Ok(Vec::new()));
                    match (low.get(&key), high.get(&key), entry.as_mut()) {
                        (Some(l), Some(h), Ok(v)) => v.push((p, *l, *h)),
                        (_, _, Ok(_)) => *entry = Err(format!("no offsets returned for {}/{}", key.0, key.1)),
                        (_, _, Err(_)) => {}
                    }
                }
            }
            Err(e) => {
                for (topic, _) in all {
                    out.insert(topic, Err(e.clone()));
                }
            }
        }
        out
    }

    /// The offsets of every source partition of one projection: watermarks plus its group's
    /// committed offsets.
    fn projection_offsets(&mut self, w: &Watched, marks: &Marks) -> Result<Vec<PartitionOffsets>, String> {
        let mut offsets = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for topic in &w.sources {
            let partitions = marks.get(topic).ok_or_else(|| format!("topic {topic} was not read"))?.as_ref()?;
            for &(partition, low, high) in partitions {
                tpl.add_partition(topic, partition);
                offsets.push(PartitionOffsets {
                    topic: topic.clone(),
                    partition,
                    low,
                    high,
                    committed: None,
                    oldest_timestamp_ms: None,
                });
            }
        }
        let group = match self.groups.entry(w.group.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut config = client_config(&self.kafka, "sluice-lag-monitor");
                config.set("group.id", &w.group);
                e.insert(config.create().map_err(|e| format!("creating a client of group {}: {e}", w.group))?)
            }
        };
        // It never subscribes, so nothing but client events is queued; drained so they do not pile up.
        while group.poll(Duration::ZERO).is_some() {}
        // A group the broker has not seen yet is assigned a coordinator on first use: the first
        // requests may answer "not coordinator" / "coordinator load in progress" for a moment.
        let committed =
            retry_blocking(LIST_RETRY_DEADLINE, retried, || group.committed_offsets(tpl.clone(), REQUEST_TIMEOUT))
                .map_err(|e| format!("reading committed offsets of group {}: {e}", w.group))?;
        let committed: HashMap<(String, i32), i64> = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                // Invalid: the group never committed on this partition.
                _ => None,
            })
            .collect();
        for o in &mut offsets {
            o.committed = committed.get(&(o.topic.clone(), o.partition)).copied();
        }
        Ok(offsets)
    }

    /// Reads the timestamps of the records at `wanted` that are not cached: assigns each partition
    /// at its offset and takes the first record polled. A partition wanted at several offsets
    /// (projections at different points) is read in rounds, one offset each.
    fn fetch_timestamps(&mut self, wanted: &BTreeSet<(String, i32, i64)>) {
        let mut missing: Vec<&(String, i32, i64)> =
            wanted.iter().filter(|k| !self.timestamps.contains_key(*k)).collect();
        while !missing.is_empty() {
            let mut round: HashMap<(String, i32), i64> = HashMap::new();
            missing.retain(|(t, p, o)| match round.entry((t.clone(), *p)) {
                Entry::Vacant(slot) => {
                    slot.insert(*o);
                    false
                }
                Entry::Occupied(_) => true,
            });
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &round {
                if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
                    debug!(topic = %t, partition = p, error = %e, "cannot ask for the oldest record");
                }
            }
            if let Err(e) = self.reader.assign(&tpl) {
                warn!(error = %e, "cannot assign partitions to read the oldest records; their age is unknown");
                return;
            }
            let deadline = Instant::now() + RECORD_WAIT;
            while !round.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    debug!(partitions = round.len(), "oldest records not read in time; their age is unknown for now");
                    break;
                }
                match self.reader.poll(left) {
                    None => {}
                    Some(Ok(m)) => {
                        let key = (m.topic().to_owned(), m.partition());
                        // The record at the offset, or the next one when that offset holds none
                        // (a transaction marker, a compacted record).
                        if let Some(&at) = round.get(&key).filter(|at| m.offset() >= **at) {
                            if let Some(ts) = m.timestamp().to_millis() {
                                self.timestamps.insert((key.0.clone(), key.1, at), ts);
                            }
                            round.remove(&key);
                        }
                    }
                    Some(Err(e)) => debug!(error = %e, "while reading the oldest records"),
                }
            }
            if let Err(e) = self.reader.unassign() {
                warn!(error = %e, "cannot unassign the lag reader");
            }
        }
    }
}
