//! The dead-letter topic: where a record goes when it can never be projected, with the reason.
//!
//! The original key and value are kept byte for byte; headers say why and where it came from, so
//! an operator can fix the cause and re-publish. A DLQ write is acknowledged like a sink write:
//! the source offset is committed only after the DLQ has the record.
//!
//! A record too large for the DLQ (the source topic may allow larger records than the DLQ topic,
//! or than a producer's `message.max.bytes`) would otherwise be retried forever and stall its
//! partition. It is sent once more as a truncated copy: the first [`TRUNCATED_VALUE_BYTES`] of the
//! value and [`TRUNCATED_KEY_BYTES`] of the key, the original sizes in the `sluice.dlq.truncated`
//! header, the source coordinates as always — the original stays readable there while the source
//! topic retains it.

use sluice_core::connections::KafkaConnection;
use sluice_producers::kafka::client_config as kafka_config;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::decode::Refused;

/// Bytes of the value a truncated dead letter keeps: the Confluent header and the start of the
/// body, enough to tell what the record was.
pub const TRUNCATED_VALUE_BYTES: usize = 16 * 1024;
/// Bytes of the key a truncated dead letter keeps.
pub const TRUNCATED_KEY_BYTES: usize = 1024;

/// The DLQ producer's `message.max.bytes`: above the broker's default record limit (1 MiB), so a
/// record that the DLQ topic can hold is kept whole; past the topic's own limit the broker refuses
/// it and the truncated copy goes instead.
pub const DLQ_MESSAGE_MAX_BYTES: &str = "16777216";

/// Header names on every DLQ record.
pub mod headers {
    /// Why the record was refused.
    pub const REASON: &str = "sluice.dlq.reason";
    /// Which stage refused it: `decode` or the sink's kind.
    pub const STAGE: &str = "sluice.dlq.stage";
    /// Machine-readable reason (`undecodable_body`, `type_schema_mismatch`, `rejected`, …).
    pub const CODE: &str = "sluice.dlq.code";
    /// Present when key and value were cut to fit the DLQ: their original sizes.
    pub const TRUNCATED: &str = "sluice.dlq.truncated";
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
    /// Why, machine-readable.
    pub code: &'static str,
    /// Why.
    pub reason: String,
}

impl DeadLetter {
    /// The dead letter of record `m`, refused at `stage`.
    pub fn from_message(m: &impl Message, stage: &'static str, refused: Refused) -> Self {
        Self {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            stage,
            code: refused.code,
            reason: refused.reason,
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
    /// A DLQ writing to `topic` for `projection` through its own idempotent producer.
    pub fn connect(kafka: &KafkaConnection, topic: String, projection: String) -> Result<Self, KafkaError> {
        let producer = kafka_config(kafka)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", DLQ_MESSAGE_MAX_BYTES)
            .create()?;
        Ok(Self { producer, topic, projection })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one dead letter and waits for Kafka's acknowledgement; a letter too large for the
    /// DLQ goes as a truncated copy (see the module docs).
    pub async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
        match self.send_as(letter, None).await {
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                let sizes = format!(
                    "value {} bytes, key {} bytes",
                    letter.value.as_ref().map_or(0, Vec::len),
                    letter.key.as_ref().map_or(0, Vec::len)
                );
                tracing::warn!(offset = letter.offset, topic = %letter.topic, %sizes, dlq = %self.topic,
                               "record too large for the DLQ: sending a truncated copy");
                self.send_as(letter, Some(&sizes)).await
            }
            sent => sent,
        }
        .map_err(|e| format!("DLQ {} write failed: {e}", self.topic))
    }

    /// Sends `letter`, cut to the truncated sizes when `truncated` gives the original ones.
    async fn send_as(&self, letter: &DeadLetter, truncated: Option<&str>) -> Result<(), KafkaError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let timestamp = letter.timestamp.map(|t| t.to_string());
        let mut hs = OwnedHeaders::new()
            .insert(Header { key: headers::REASON, value: Some(letter.reason.as_str()) })
            .insert(Header { key: headers::CODE, value: Some(letter.code) })
            .insert(Header { key: headers::STAGE, value: Some(letter.stage) })
            .insert(Header { key: headers::PROJECTION, value: Some(self.projection.as_str()) })
            .insert(Header { key: headers::TOPIC, value: Some(letter.topic.as_str()) })
            .insert(Header { key: headers::PARTITION, value: Some(partition.as_str()) })
            .insert(Header { key: headers::OFFSET, value: Some(offset.as_str()) });
        if let Some(ts) = &timestamp {
            hs = hs.insert(Header { key: headers::TIMESTAMP, value: Some(ts.as_str()) });
        }
        if let Some(sizes) = truncated {
            hs = hs.insert(Header { key: headers::TRUNCATED, value: Some(sizes) });
        }
        let cut = |bytes: &Vec<u8>, keep: usize| -> usize {
            if truncated.is_some() { keep.min(bytes.len()) } else { bytes.len() }
        };
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(hs);
        if let Some(k) = &letter.key {
            record = record.key(&k[..cut(k, TRUNCATED_KEY_BYTES)]);
        }
        if let Some(v) = &letter.value {
            record = record.payload(&v[..cut(v, TRUNCATED_VALUE_BYTES)]);
        }
        self.producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
    }
}
