//! The model of `[topics.<name>]`: a Kafka topic's partitions, replication, retention, and how
//! its records are keyed and their schemas named.
//!
//! Values come from [`crate::topology::parse`]; `sluice topics apply`
//! (`sluice_producers::admin::topics`) makes the cluster match them, and the producers and
//! workers read the key and subject strategy from them.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::super::duration::{HumanDuration, Retention};
use super::DEFAULT_KEY;

/// The `min_insync_replicas` of a topic that sets none: two copies when there are two or more,
/// else one (`min(2, replication_factor)`).
///
/// With the producers' `acks=all`, a write is acknowledged once every in-sync replica has it and
/// refused (`NOT_ENOUGH_REPLICAS`) while fewer than `min.insync.replicas` are in sync. Two means
/// an acknowledged event is on two brokers, so losing one broker loses no acknowledged event;
/// with the production replication factor of 3 one broker may also be down (a rolling restart)
/// without stopping producers. Kafka's own default of 1 acknowledges writes held by the leader
/// alone, which its failure loses. With a replication factor of 2 the default means every
/// broker restart stops publishing to the topic until the replica is back: declare 3 replicas,
/// or `min_insync_replicas = 1` to prefer availability. With 1 replica (the single-broker dev
/// rig) it can only be 1.
pub fn default_min_insync_replicas(replication_factor: u16) -> u16 {
    replication_factor.clamp(1, 2)
}

spelled_enum! {
    /// Kafka's `cleanup.policy`.
    #[derive(Default)]
    CleanupPolicy {
        /// Delete segments older than the retention.
        #[default]
        Delete = "delete",
        /// Keep the latest record per key.
        Compact = "compact",
        /// Both: compact, and delete by age.
        CompactDelete = "compact,delete",
    }
}

spelled_enum! {
    /// How the registry subject of an event type's schema is named.
    #[derive(Default)]
    SubjectStrategy {
        /// `TopicNameStrategy`: `<topic>-value`; one schema lineage per topic, so one event type.
        #[default]
        Topic = "topic",
        /// `RecordNameStrategy`: the record's full name; several event types share a topic.
        Record = "record",
    }
}

impl SubjectStrategy {
    /// The subject of the value schema `record_name` (an Avro full name) on `topic`.
    pub fn subject(self, topic: &str, record_name: &str) -> String {
        match self {
            Self::Topic => format!("{topic}-value"),
            Self::Record => record_name.to_owned(),
        }
    }
}

spelled_enum! {
    /// What a projection does with a record whose Kafka key is not its topic's key field (see
    /// [`crate::admission`]).
    #[derive(Default)]
    KeyMismatchPolicy {
        /// To the dead-letter topic, reason `key_mismatch`: the record may sit in another
        /// partition than its entity's other events, so their order is not guaranteed.
        #[default]
        Refuse = "dlq",
        /// Applied anyway, counted (`sluice_worker_key_mismatches_total`) and logged: for topics
        /// written by producers that key otherwise, where the sinks' version checks are trusted
        /// to order an entity's events.
        Accept = "accept",
    }
}

/// `[topics.<name>]`: a Kafka topic and how its records are keyed and their schemas registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicConfig {
    /// Number of partitions (≥ 1); events of one key stay in one partition, in order.
    pub partitions: u32,
    /// Copies of each partition (≥ 1; 1 on the single-broker dev rig, 3 in production).
    pub replication_factor: u16,
    /// Kafka `min.insync.replicas`: copies a write needs before it is acknowledged to the
    /// producers (which all use `acks=all`); 1 ≤ it ≤ `replication_factor`, default
    /// [`default_min_insync_replicas`] (2, or 1 with a single replica).
    pub min_insync_replicas: u16,
    /// Kafka `cleanup.policy` (default `delete`).
    pub cleanup_policy: CleanupPolicy,
    /// Kafka `retention.ms` as a duration or `forever`; the broker default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// The envelope field used as the Kafka key (default `aggregate_id`).
    pub key: String,
    /// How the value schemas on this topic are named in the registry (default `topic`).
    pub subject_strategy: SubjectStrategy,
    /// What projections do with a record whose key is not its `key` field (default `dlq`).
    pub key_mismatch: KeyMismatchPolicy,
}

impl TopicConfig {
    /// The configuration of a dead-letter topic nobody declared: one partition (order does not
    /// matter there), replicated like the topics it takes failures from (their largest
    /// replication factor and `min_insync_replicas`), kept four weeks.
    pub fn implied_dlq(replication_factor: u16, min_insync_replicas: u16) -> Self {
        Self {
            partitions: 1,
            replication_factor,
            min_insync_replicas,
            cleanup_policy: CleanupPolicy::Delete,
            retention: Some(Retention::For(HumanDuration::from_millis(28 * 24 * 3_600_000))),
            key: DEFAULT_KEY.to_owned(),
            subject_strategy: SubjectStrategy::Topic,
            key_mismatch: KeyMismatchPolicy::Refuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_per_strategy() {
        assert_eq!(SubjectStrategy::Topic.subject("sessions", "sluice.sessions.SessionStarted"), "sessions-value");
        assert_eq!(
            SubjectStrategy::Record.subject("users", "sluice.users.UserRegistered"),
            "sluice.users.UserRegistered"
        );
    }

    #[test]
    fn min_insync_replicas_defaults_to_two_copies_where_there_are_two() {
        assert_eq!(default_min_insync_replicas(1), 1);
        assert_eq!(default_min_insync_replicas(2), 2);
        assert_eq!(default_min_insync_replicas(3), 2);
        assert_eq!(default_min_insync_replicas(5), 2);
        // Never below one, even for a value the parser refuses.
        assert_eq!(default_min_insync_replicas(0), 1);
    }
}
