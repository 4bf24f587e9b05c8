//! What the lag monitor measures: the offsets it read for one partition ([`PartitionOffsets`]),
//! the lag computed from them ([`PartitionLag`]), and a lag in messages and age ([`Lag`]) that the
//! backpressure states are decided on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::opt_seconds;

/// What the lag monitor read from Kafka for one source partition of one consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Low watermark: the oldest offset still retained.
    pub low: i64,
    /// High watermark: the offset the next record will get.
    pub high: i64,
    /// The group's committed offset (the next record to process); `None` before its first commit.
    pub committed: Option<i64>,
    /// Kafka timestamp (ms since the Unix epoch) of the record at [`Self::position`], when known.
    pub oldest_timestamp_ms: Option<i64>,
}

impl PartitionOffsets {
    /// The offset of the oldest record the group has not processed: the committed offset, or the
    /// low watermark when the group never committed (a new group starts from the earliest record)
    /// or committed below it (retention deleted what it had not read); never past the high mark.
    pub fn position(&self) -> i64 {
        self.committed.unwrap_or(self.low).max(self.low).min(self.high)
    }

    /// Records between [`Self::position`] and the high watermark.
    pub fn lag_messages(&self) -> u64 {
        u64::try_from(self.high.saturating_sub(self.position())).unwrap_or(0)
    }
}

/// The lag of one source partition of a projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Low watermark.
    pub low_watermark: i64,
    /// High watermark.
    pub high_watermark: i64,
    /// The group's committed offset; `null` before its first commit.
    pub committed: Option<i64>,
    /// Records not yet processed.
    pub lag_messages: u64,
    /// Age of the oldest unprocessed record (seconds in JSON): zero when caught up, `null` when
    /// its timestamp could not be read.
    #[serde(rename = "lag_seconds", with = "opt_seconds")]
    pub age: Option<Duration>,
}

impl PartitionLag {
    /// The lag of `offsets` at `now_ms` (ms since the Unix epoch). A record timestamp in the future
    /// (clock skew between producer and monitor) counts as zero age.
    pub fn compute(offsets: &PartitionOffsets, now_ms: i64) -> Self {
        let lag_messages = offsets.lag_messages();
        let age = if lag_messages == 0 {
            Some(Duration::ZERO)
        } else {
            offsets
                .oldest_timestamp_ms
                .map(|ts| Duration::from_millis(u64::try_from(now_ms.saturating_sub(ts)).unwrap_or(0)))
        };
        Self {
            topic: offsets.topic.clone(),
            partition: offsets.partition,
            low_watermark: offsets.low,
            high_watermark: offsets.high,
            committed: offsets.committed,
            lag_messages,
            age,
        }
    }
}

/// A projection's lag as its thresholds see it: messages summed over partitions, the oldest
/// unprocessed record's age (the maximum over partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Messages behind.
    pub messages: u64,
    /// Age of the oldest unprocessed record; `None` when unknown (then age thresholds are silent).
    pub age: Option<Duration>,
}

impl Lag {
    /// Sum of messages and maximum of the known ages of `partitions`; an empty list is no lag.
    pub fn aggregate<'a>(partitions: impl IntoIterator<Item = &'a PartitionLag>) -> Self {
        let mut lag = Self { messages: 0, age: Some(Duration::ZERO) };
        let mut unknown = false;
        for p in partitions {
            lag.messages = lag.messages.saturating_add(p.lag_messages);
            match p.age {
                Some(age) => lag.age = lag.age.max(Some(age)),
                None => unknown = true,
            }
        }
        // Every lagging partition unreadable: the age is unknown, not zero.
        if unknown && lag.age == Some(Duration::ZERO) {
            lag.age = None;
        }
        lag
    }

    pub(super) fn age_ms(&self) -> Option<u64> {
        self.age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX))
    }
}
