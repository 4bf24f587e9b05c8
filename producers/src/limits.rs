//! How large a Kafka record may be, checked before the record is handed to the producer.
//!
//! Two limits apply to one event, and the smaller one decides:
//! - the producer's `message.max.bytes` (librdkafka, default 1 000 000): librdkafka refuses a
//!   record whose key + value + per-record framing passes it, at `send` time;
//! - the topic's `max.message.bytes` (broker default 1 048 588): the broker refuses a record
//!   batch larger than it, so a batch of this one record must fit.
//!
//! The producer's limit is read from its effective configuration; the topics' from the cluster
//! (`DescribeConfigs`) when [`Publisher::read_topic_limits`] is called: the gateway's readiness
//! probe does it on every probe (a changed topic config is picked up within one interval),
//! `sluice publish` once at start. Until then, or when a topic's is unknown, only the producer's
//! applies, and a record the broker still refuses comes back as
//! [`PublishError::RecordTooLarge`] all the same.
//!
//! The sizes are the uncompressed ones: the check is about what the client sent, and does not
//! depend on how well the payload compresses.
//!
//! [`Publisher::read_topic_limits`]: crate::Publisher::read_topic_limits
//! [`PublishError::RecordTooLarge`]: crate::PublishError::RecordTooLarge

use std::collections::HashMap;
use std::sync::RwLock;

/// librdkafka's worst-case framing of one v2 record (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`):
/// length, offset delta, key length, value length and header count as 5-byte varints, the
/// timestamp delta as a 10-byte one, and the attributes byte. librdkafka compares key + value +
/// this with `message.max.bytes`.
pub const RECORD_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;

/// The header of a v2 record batch (`RD_KAFKAP_MSGSET_V2_SIZE`), which the broker counts in
/// `max.message.bytes`.
pub const BATCH_OVERHEAD: usize = 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;

/// librdkafka's default `message.max.bytes`, for a configuration that cannot be read back.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The size a record of `key_len` and `value_len` bytes is checked at (the record's framing
/// included, so it compares with either limit).
pub fn record_size(key_len: usize, value_len: usize) -> usize {
    key_len.saturating_add(value_len).saturating_add(RECORD_OVERHEAD)
}

/// The largest record (as [`record_size`] counts it) one topic takes.
#[derive(Debug)]
pub struct RecordLimits {
    producer: usize,
    /// Per topic, `max.message.bytes` less the batch header; topics not read yet are absent.
    topics: RwLock<HashMap<String, usize>>,
}

impl RecordLimits {
    /// Limits from the producer's `message.max.bytes` alone.
    pub fn new(producer_message_max_bytes: usize) -> Self {
        Self { producer: producer_message_max_bytes, topics: RwLock::new(HashMap::new()) }
    }

    /// Records the topic's `max.message.bytes`.
    pub fn set_topic(&self, topic: &str, max_message_bytes: usize) {
        if let Ok(mut topics) = self.topics.write() {
            topics.insert(topic.to_owned(), max_message_bytes.saturating_sub(BATCH_OVERHEAD));
        }
    }

    /// True once the topic's own limit is known.
    pub fn knows(&self, topic: &str) -> bool {
        self.topics.read().is_ok_and(|t| t.contains_key(topic))
    }

    /// The largest record `topic` takes: the smaller of the two limits.
    pub fn limit(&self, topic: &str) -> usize {
        let topic_limit = self.topics.read().ok().and_then(|t| t.get(topic).copied());
        topic_limit.map_or(self.producer, |t| t.min(self.producer))
    }

    /// `Err(limit)` when a record of `size` bytes ([`record_size`]) is too large for `topic`.
    pub fn check(&self, topic: &str, size: usize) -> Result<(), usize> {
        let limit = self.limit(topic);
        if size > limit { Err(limit) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_limit_decides() {
        assert_eq!(RECORD_OVERHEAD, 36);
        assert_eq!(BATCH_OVERHEAD, 61);
        let limits = RecordLimits::new(1_000_000);
        assert_eq!(limits.limit("t"), 1_000_000, "only the producer's until the topic is read");
        assert!(!limits.knows("t"));
        limits.set_topic("t", 10_061);
        assert!(limits.knows("t"));
        assert_eq!(limits.limit("t"), 10_000);
        assert_eq!(limits.limit("other"), 1_000_000);
        limits.set_topic("big", 5_000_000);
        assert_eq!(limits.limit("big"), 1_000_000, "the producer's is smaller");

        assert_eq!(limits.check("t", record_size(10, 10_000 - 10 - RECORD_OVERHEAD)), Ok(()));
        assert_eq!(limits.check("t", record_size(10, 10_000 - 10 - RECORD_OVERHEAD + 1)), Err(10_000));
        assert_eq!(record_size(usize::MAX, 1), usize::MAX, "never wraps");
    }
}
