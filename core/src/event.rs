//! A decoded event: its envelope (the fields every event type shares) and its payload.
//!
//! Workers decode a Kafka record (Confluent framing → Avro body → JSON object, see
//! [`crate::avro`]) and split it here into the typed [`Envelope`] the projections key and order
//! by, and the payload (every other field) they map into documents and rows.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::calendar::Unit;
use crate::topology::columns::{FieldPath, Step};
use crate::topology::is_envelope_field;

pub use crate::fold::Position;

/// Names of the envelope fields, in schema order. Every event schema starts with them.
pub const ENVELOPE_FIELDS: [&str; 10] = [
    "event_id",
    "event_type",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "producer",
    "correlation_id",
    "causation_id",
    "traceparent",
    "tracestate",
];

/// The longest `aggregate_id` an event may have, in UTF-8 bytes; publishers refuse a longer one.
///
/// The aggregate id becomes a Couchbase document key through the projection's template (the
/// default is `user::{aggregate_id}`), and Couchbase keys are at most 250 bytes; the Couchbase
/// sink holds keys to 246 (the collection-id prefix) and keeps 8 of those for a tombstone's
/// `::erased` suffix, which leaves 238 for the whole key. 200 for the id leaves 38 for the
/// template's literal parts. An event past it would be published and then fail in every
/// projection (to the dead-letter topic); refused at the producer, the client learns it at once.
/// It is also the Kafka key of the default key field, where a long key only wastes space.
pub const MAX_AGGREGATE_ID_BYTES: usize = 200;

/// The fields every event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id of the event (a UUID): the idempotency key.
    pub event_id: String,
    /// Dotted type, e.g. `user.registered`.
    pub event_type: String,
    /// The entity the event is about; the Kafka key, so one entity's events stay in order.
    pub aggregate_id: String,
    /// Per-aggregate sequence set by the source of truth.
    pub aggregate_version: i64,
    /// When it happened, milliseconds since the Unix epoch.
    pub occurred_at: i64,
    /// The publishing service.
    pub producer: String,
    /// Shared by every event of one business flow.
    pub correlation_id: Option<String>,
    /// `event_id` of what caused this event.
    pub causation_id: Option<String>,
    /// W3C trace context.
    pub traceparent: Option<String>,
    /// W3C trace context.
    pub tracestate: Option<String>,
}

impl Envelope {
    /// The text of a string envelope field (one of [`crate::topology::KEY_FIELDS`], the fields a
    /// topic may be keyed by), as producers write it into the Kafka key; `None` for any other
    /// field.
    pub fn key_text(&self, field: &str) -> Option<&str> {
        match field {
            "event_id" => Some(&self.event_id),
            "event_type" => Some(&self.event_type),
            "aggregate_id" => Some(&self.aggregate_id),
            "producer" => Some(&self.producer),
            _ => None,
        }
    }
}

/// An event read from Kafka.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The shared fields.
    pub envelope: Envelope,
    /// Every other field of the record, as JSON.
    pub payload: Map<String, Value>,
    /// Where it was read.
    pub position: Position,
    /// The registry id of the schema it was written with.
    pub schema_id: u32,
}

/// Why a decoded record is not a sluice event. Permanent: the record goes to the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The record is not an object (its schema is not a record).
    #[error("the record is not an Avro record, so it has no envelope")]
    NotARecord,
    /// An envelope field is missing or has the wrong type.
    #[error("envelope field `{field}` is missing or not {expected}")]
    BadEnvelope {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
}

fn take_string(m: &mut Map<String, Value>, field: &'static str) -> Result<String, EventError> {
    match m.shift_remove(field) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(EventError::BadEnvelope { field, expected: "a string" }),
    }
}

fn take_opt_string(m: &mut Map<String, Value>, field: &'static str) -> Result<Option<String>, EventError> {
    match m.shift_remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EventError::BadEnvelope { field, expected: "a string or null" }),
    }
}

fn take_i64(m: &mut Map<String, Value>, field: &'static str) -> Result<i64, EventError> {
    m.shift_remove(field).and_then(|v| v.as_i64()).ok_or(EventError::BadEnvelope { field, expected: "an integer" })
}

/// `occurred_at` in milliseconds since the epoch: the integer count, or the RFC 3339 text
/// [`crate::avro::avro_to_json`] writes of a `timestamp-millis`.
pub(crate) fn millis_of(value: Option<Value>, field: &'static str) -> Result<i64, EventError> {
    let millis = match &value {
        Some(Value::String(s)) => crate::calendar::parse_rfc3339(s).ok().and_then(|n| Unit::Millis.count(n)),
        Some(v) => v.as_i64(),
        None => None,
    };
    millis.ok_or(EventError::BadEnvelope { field, expected: "an integer or RFC 3339 timestamp" })
}

impl Event {
    /// Splits a decoded record (a JSON object) into envelope and payload.
    pub fn from_record(record: Value, position: Position, schema_id: u32) -> Result<Self, EventError> {
        let Value::Object(mut m) = record else { return Err(EventError::NotARecord) };
        let envelope = Envelope {
            event_id: take_string(&mut m, "event_id")?,
            event_type: take_string(&mut m, "event_type")?,
            aggregate_id: take_string(&mut m, "aggregate_id")?,
            aggregate_version: take_i64(&mut m, "aggregate_version")?,
            occurred_at: millis_of(m.shift_remove("occurred_at"), "occurred_at")?,
            producer: take_string(&mut m, "producer")?,
            correlation_id: take_opt_string(&mut m, "correlation_id")?,
            causation_id: take_opt_string(&mut m, "causation_id")?,
            traceparent: take_opt_string(&mut m, "traceparent")?,
            tracestate: take_opt_string(&mut m, "tracestate")?,
        };
        Ok(Self { envelope, payload: m, position, schema_id })
    }

    /// The value at `path`: an envelope field when the path is one envelope field's name, else
    /// where the path leads in the payload (`null` where it leads nowhere).
    pub fn value_at(&self, path: &FieldPath) -> Cow<'_, Value> {
        match path.0.as_slice() {
            [Step::Field(name)] if is_envelope_field(name) => Cow::Owned(self.field(name).unwrap_or(Value::Null)),
            _ => path.get(&self.payload),
        }
    }

    /// A field by name: envelope fields first, then the payload (for id templates and mappings).
    pub fn field(&self, name: &str) -> Option<Value> {
        let e = &self.envelope;
        let s = |v: &String| Some(Value::String(v.clone()));
        let o = |v: &Option<String>| Some(v.clone().map_or(Value::Null, Value::String));
        match name {
            "event_id" => s(&e.event_id),
            "event_type" => s(&e.event_type),
            "aggregate_id" => s(&e.aggregate_id),
            "aggregate_version" => Some(e.aggregate_version.into()),
            "occurred_at" => Some(e.occurred_at.into()),
            "producer" => s(&e.producer),
            "correlation_id" => o(&e.correlation_id),
            "causation_id" => o(&e.causation_id),
            "traceparent" => o(&e.traceparent),
            "tracestate" => o(&e.tracestate),
            other => self.payload.get(other).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pos() -> Position {
        Position { topic: "users".into(), partition: 2, offset: 40 }
    }

    #[test]
    fn splits_envelope_and_payload() {
        let record = json!({
            "event_id": "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001", "event_type": "user.registered",
            "aggregate_id": "u-1", "aggregate_version": 1, "occurred_at": 1_700_000_000_000i64,
            "producer": "accounts", "correlation_id": null, "causation_id": "c-1",
            "traceparent": null, "tracestate": null,
            "email": "a@example.com", "country": "NL"
        });
        let e = Event::from_record(record, pos(), 7).expect("valid event");
        assert_eq!(e.envelope.aggregate_id, "u-1");
        assert_eq!(e.envelope.causation_id.as_deref(), Some("c-1"));
        assert_eq!(e.payload, json!({"email": "a@example.com", "country": "NL"}).as_object().cloned().expect("obj"));
        assert_eq!(e.field("aggregate_version"), Some(json!(1)));
        assert_eq!(e.field("country"), Some(json!("NL")));
        assert_eq!(e.field("correlation_id"), Some(Value::Null));
        assert_eq!(e.field("nope"), None);
    }

    #[test]
    fn names_the_broken_envelope_field() {
        let err = Event::from_record(json!({"event_id": "x"}), pos(), 1).expect_err("incomplete");
        assert_eq!(err.to_string(), "envelope field `event_type` is missing or not a string");
        let err = Event::from_record(json!([1]), pos(), 1).expect_err("not a record");
        assert_eq!(err, EventError::NotARecord);
    }
}
