//! The dead-letter topic: where a record goes when it can never be projected, with the reason.
//!
//! The original key and value are kept byte for byte; headers say why and where it came from, so
//! an operator can fix the cause and re-publish. A DLQ write is acknowledged like a sink write:
//! the source offset is committed only after the DLQ has the record.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Header names on every DLQ record.
pub mod headers {
    /// Why the record was refused.
    pub const REASON: &str = "sluice.dlq.reason";
    /// Which stage refused it: `decode` or the sink's kind.
    pub const STAGE: &str = "sluice.dlq.stage";
    /// The projection that refused it.
    pub const PROJECTION: &str = "sluice.dlq.projection";
    /// Original topic.
    pub const TOPIC: &str = "sluice.source.topic";
    /// Original partition.
    pub const PARTITION: &str = "sluice.source.partition";
    /// Original offset.
    pub const OFFSET: &str = "sluice.source.offset";
    /// Original record timestamp (ms since epoch), if it had one.
    pub const TIMESTAMP: &str = "sluice.source.timestamp";
}

/// A record on its way to the DLQ.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Original key.
    pub key: Option<Vec<u8>>,
    /// Original value.
    pub value: Option<Vec<u8>>,
    /// Original topic.
    pub topic: String,
    /// Original partition.
    pub partition: i32,
    /// Original offset.
    pub offset: i64,
    /// Original timestamp.
    pub timestamp: Option<i64>,
    /// `decode` or the sink's kind.
    pub stage: &'static str,
    /// Why.
    pub reason: String,
}

impl DeadLetter {
    /// The dead letter of record `m`, refused at `stage` for `reason`.
    pub fn from_message(m: &impl Message, stage: &'static str, reason: String) -> Self {
        Self {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            stage,
            reason,
        }
    }
}

/// Writes dead letters to one topic.
#[derive(Clone)]
pub struct DeadLetterQueue {
    producer: FutureProducer,
    topic: String,
    projection: String,
}

impl std::fmt::Debug for DeadLetterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterQueue").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl DeadLetterQueue {
    /// A DLQ writing to `topic` for `projection`.
    pub fn new(producer: FutureProducer, topic: String, projection: String) -> Self {
        Self { producer, topic, projection }
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one dead letter and waits for Kafka's acknowledgement.
    pub async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let timestamp = letter.timestamp.map(|t| t.to_string());
        let mut hs = OwnedHeaders::new()
            .insert(Header { key: headers::REASON, value: Some(letter.reason.as_str()) })
            .insert(Header { key: headers::STAGE, value: Some(letter.stage) })
            .insert(Header { key: headers::PROJECTION, value: Some(self.projection.as_str()) })
            .insert(Header { key: headers::TOPIC, value: Some(letter.topic.as_str()) })
            .insert(Header { key: headers::PARTITION, value: Some(partition.as_str()) })
            .insert(Header { key: headers::OFFSET, value: Some(offset.as_str()) });
        if let Some(ts) = &timestamp {
            hs = hs.insert(Header { key: headers::TIMESTAMP, value: Some(ts.as_str()) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(hs);
        if let Some(k) = &letter.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &letter.value {
            record = record.payload(v.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("DLQ {} write failed: {e}", self.topic))
    }
}
