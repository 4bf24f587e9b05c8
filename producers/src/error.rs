//! What can go wrong publishing an event, and whether trying again can help.
//!
//! Errors come from the three places an event passes through: the topology and the converter
//! (the event itself is wrong: fix it, retrying never helps), the schema registry (resolving the
//! schema id), and Kafka (the delivery report). They go back to the service that called
//! [`Publisher::publish`](crate::Publisher::publish), which decides with
//! [`PublishError::is_retriable`].

use std::time::Duration;

use sluice_core::avro::{ConvertError, EncodeError};
use thiserror::Error;

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// The registry could not be reached or answered with a server error: try again later.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
    /// The registry refused a new version because it breaks the subject's compatibility level;
    /// the message is the registry's (Apicurio names the fields: `list of diff types: [currency
    /// at /fields/14]`).
    #[error("the registry refuses the schema for subject {subject}: {message}")]
    Incompatible {
        /// The subject.
        subject: String,
        /// The registry's reason.
        message: String,
    },
    /// The subject, or the schema under it, is not registered (and registering was not allowed).
    #[error("schema not registered under subject {subject}: run `sluice schemas register`")]
    NotRegistered {
        /// The subject.
        subject: String,
    },
    /// Any other refusal (invalid schema, bad request): a bug or a misconfiguration.
    #[error("the schema registry refused the request: {0}")]
    Rejected(String),
    /// The registry (or the TLS handshake with it) refused sluice itself: wrong credentials, an
    /// untrusted certificate, a name the certificate does not carry. Retrying will not help.
    #[error(
        "the schema registry refused sluice: {0} (check SLUICE_SCHEMA_REGISTRY_USERNAME/_PASSWORD or _TOKEN, \
         and SLUICE_SCHEMA_REGISTRY_TLS_CA_FILE)"
    )]
    Refused(String),
}

impl RegistryError {
    /// True when the same call may succeed later.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Why an event was not published. Nothing was written to Kafka unless the error says so
/// ([`PublishError::Timeout`] and [`PublishError::Canceled`] leave it unknown).
#[derive(Debug, Error)]
pub enum PublishError {
    /// The topology has no such event type.
    #[error("unknown event type {event_type:?}: the topology declares {}", known_list(.known))]
    UnknownEventType {
        /// The type asked for.
        event_type: String,
        /// Every event type of the topology.
        known: Vec<String>,
    },
    /// The event's `event_type` field names another type than the one it is published as.
    #[error("$.event_type: the event says {found:?} but is published as {expected:?}")]
    EventTypeMismatch {
        /// The type it is published as.
        expected: String,
        /// The `event_type` field of the event.
        found: String,
    },
    /// The event does not fit its schema; the error names the place
    /// (`$.amount_cents: expected long, found string "12"`).
    #[error(transparent)]
    Invalid(#[from] ConvertError),
    /// An [`EventDraft`](crate::EventDraft) payload is not a JSON object of payload fields.
    #[error("invalid payload: {0}")]
    Payload(String),
    /// The event's `aggregate_id` is longer than
    /// [`MAX_AGGREGATE_ID_BYTES`](sluice_core::event::MAX_AGGREGATE_ID_BYTES) bytes: it could
    /// not become a document key in a projection.
    #[error("$.aggregate_id: {bytes} bytes long; at most {max} bytes (it becomes a document key)")]
    AggregateIdTooLong {
        /// Its length in UTF-8 bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The event's Kafka record is larger than the topic (or the producer) takes; nothing was
    /// written. The event must become smaller: a retry never helps.
    #[error("the event is {bytes} bytes as a Kafka record; topic {topic} takes at most {limit} bytes")]
    RecordTooLarge {
        /// The topic.
        topic: String,
        /// Key + value + record framing (see [`crate::limits`]); 0 when Kafka refused the record
        /// and the size was not known there.
        bytes: usize,
        /// The smaller of the producer's `message.max.bytes` and the topic's
        /// `max.message.bytes` (less the batch header).
        limit: usize,
    },
    /// A converted event could not be written as Avro (a bug: the converter accepted it).
    #[error("cannot encode the event: {0}")]
    Encode(#[from] EncodeError),
    /// The schema id of the event type could not be resolved.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The topic does not exist on the cluster: run `sluice topics apply`.
    #[error("topic {0} does not exist: run `sluice topics apply`")]
    UnknownTopic(String),
    /// Kafka could not be reached, or lost the leader while delivering: try again later.
    #[error("Kafka unavailable: {0}")]
    BrokerUnavailable(String),
    /// The local producer queue stayed full for the whole wait: the cluster is slower than the
    /// publishing rate.
    #[error("the producer queue stayed full for {0:?}")]
    QueueFull(Duration),
    /// No delivery report within the delivery timeout. The event may or may not have been written:
    /// retrying may duplicate it (projections deduplicate by `event_id`).
    #[error("no delivery acknowledgement within {0:?}")]
    Timeout(Duration),
    /// The publisher was dropped before the delivery report came; as unknown as a timeout.
    #[error("the publisher was closed before the delivery report came")]
    Canceled,
    /// Kafka refused the record for another reason.
    #[error("Kafka refused the event: {message}")]
    Kafka {
        /// librdkafka's description.
        message: String,
        /// Whether librdkafka considers the cause transient.
        retriable: bool,
    },
    /// The producer could not be created (a wrong librdkafka setting).
    #[error("cannot create the Kafka producer: {0}")]
    Config(String),
    /// The intake gate refused the event: a projection its type feeds is past its hard lag
    /// threshold (topology `[projections.*.backpressure]`). Nothing was written; publish it again
    /// after `retry_after`.
    #[error(
        "backpressure: events of type {event_type:?} are refused for now (a projection they feed is too far behind); retry in {retry_after:?}"
    )]
    Backpressure {
        /// The refused type.
        event_type: String,
        /// When to try again.
        retry_after: Duration,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
}

impl PublishError {
    /// How long to wait before publishing again, when the refusal says so (backpressure).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Backpressure { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// True when publishing the same event again later may succeed: the cluster or the registry
    /// was unavailable, or the delivery is unknown. False when the event, the topology or the
    /// configuration must change first.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_retriable(),
            Self::BrokerUnavailable(_)
            | Self::QueueFull(_)
            | Self::Timeout(_)
            | Self::Canceled
            | Self::Backpressure { .. } => true,
            Self::Kafka { retriable, .. } => *retriable,
            Self::UnknownEventType { .. }
            | Self::EventTypeMismatch { .. }
            | Self::Invalid(_)
            | Self::Payload(_)
            | Self::Encode(_)
            | Self::AggregateIdTooLong { .. }
            | Self::RecordTooLarge { .. }
            | Self::UnknownTopic(_)
            | Self::Config(_) => false,
        }
    }

    /// True when the event itself is the problem (its type, its fields, its size): the same
    /// event always fails the same way, and the next one may well succeed. False when the
    /// publisher, the registry or the cluster is (the next event would fail the same way).
    pub fn is_invalid_event(&self) -> bool {
        matches!(
            self,
            Self::UnknownEventType { .. }
                | Self::EventTypeMismatch { .. }
                | Self::Invalid(_)
                | Self::Payload(_)
                | Self::Encode(_)
                | Self::AggregateIdTooLong { .. }
                | Self::RecordTooLarge { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::avro::ConvertErrorKind;

    #[test]
    fn retriable_only_when_waiting_can_help() {
        let invalid = PublishError::Invalid(ConvertError {
            path: "$.amount_cents".into(),
            kind: ConvertErrorKind::WrongType {
                expected: "long".into(),
                found: "string",
                value: Some("\"12\"".into()),
            },
        });
        assert_eq!(invalid.to_string(), r#"$.amount_cents: expected long, found string "12""#);
        assert!(!invalid.is_retriable());
        assert!(PublishError::Timeout(Duration::from_secs(1)).is_retriable());
        assert!(PublishError::Registry(RegistryError::Unavailable("down".into())).is_retriable());
        assert!(!PublishError::Registry(RegistryError::NotRegistered { subject: "s".into() }).is_retriable());
        let unknown = PublishError::UnknownEventType { event_type: "x".into(), known: vec!["a.b".into()] };
        assert_eq!(unknown.to_string(), r#"unknown event type "x": the topology declares a.b"#);
        assert!(!unknown.is_retriable());
    }
}
