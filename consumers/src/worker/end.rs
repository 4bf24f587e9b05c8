//! `--exit-at-end`: stop a projection once everything that was on its topics when it started is
//! projected — for demos, backfills and batch-style catch-up runs.
//!
//! At start the high watermark of every source partition is captured; then, once a second, the
//! group's committed offsets are compared with it. When every partition's commit reached its
//! captured end, the token is cancelled and the worker drains and exits as on SIGTERM. Because the
//! check reads the group's commits, it works with several workers sharing the projection.

use sluice_core::connections::KafkaConnection;
use sluice_producers::kafka::client_config as kafka_config;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The end offsets (high watermarks) of every partition of `topics`, now.
fn capture_ends(consumer: &BaseConsumer, topics: &[String]) -> Result<TopicPartitionList, String> {
    let mut ends = TopicPartitionList::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(|e| e.to_string())?;
        for t in md.topics() {
            if let Some(err) = t.error() {
                return Err(format!("topic {topic}: {err:?}"));
            }
            for p in t.partitions() {
                let (_, high) = consumer.fetch_watermarks(topic, p.id(), TIMEOUT).map_err(|e| e.to_string())?;
                ends.add_partition_offset(topic, p.id(), Offset::Offset(high)).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(ends)
}

/// How many partitions still have records below their captured end, given the group's commits.
fn remaining(consumer: &BaseConsumer, ends: &TopicPartitionList) -> Result<usize, String> {
    let mut query = TopicPartitionList::new();
    for e in ends.elements() {
        query.add_partition(e.topic(), e.partition());
    }
    let committed = consumer.committed_offsets(query, TIMEOUT).map_err(|e| e.to_string())?;
    let behind = ends
        .elements()
        .iter()
        .filter(|end| {
            let Offset::Offset(end_offset) = end.offset() else { return false };
            let done = committed
                .find_partition(end.topic(), end.partition())
                .and_then(|c| if let Offset::Offset(o) = c.offset() { Some(o) } else { None });
            // An empty partition (end 0) is done without a commit; others need one at the end.
            end_offset > 0 && done.is_none_or(|o| o < end_offset)
        })
        .count();
    Ok(behind)
}

/// Cancels `token` once the group `group` committed up to the ends of `topics` as of now.
pub fn cancel_at_end(kafka: &KafkaConnection, group: &str, topics: &[String], token: CancellationToken) {
    let config = kafka_config(kafka).set("group.id", group).clone();
    let topics = topics.to_vec();
    std::thread::spawn(move || {
        let consumer: BaseConsumer = match config.create() {
            Ok(c) => c,
            Err(e) => {
                return warn!(error = %e, "--exit-at-end: cannot create a client; the worker will not stop by itself");
            }
        };
        let ends = match capture_ends(&consumer, &topics) {
            Ok(ends) => ends,
            Err(e) => {
                return warn!(error = %e, "--exit-at-end: cannot read end offsets; the worker will not stop by itself");
            }
        };
        info!(partitions = ends.count(), "--exit-at-end: will stop once these end offsets are committed");
        while !token.is_cancelled() {
            match remaining(&consumer, &ends) {
                Ok(0) => {
                    info!("--exit-at-end: every partition is projected up to its end; stopping");
                    token.cancel();
                }
                Ok(n) => tracing::debug!(partitions_behind = n, "--exit-at-end: not there yet"),
                Err(e) => warn!(error = %e, "--exit-at-end: cannot read committed offsets; retrying"),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}
