//! From a JSON event to the Kafka record that carries it: key and Confluent-framed Avro value.
//!
//! The event comes from a service (through an [`EventDraft`](crate::EventDraft) or as JSON) with
//! its event type already resolved in the topology and its schema id in the registry; the record
//! goes to the producer in [`crate::publisher`]. Pure code: no I/O, so every rule is unit-tested.

use apache_avro::Schema;
use serde_json::Value as Json;
use sluice_core::avro::{self, EncodeJsonError};
use sluice_core::event::MAX_AGGREGATE_ID_BYTES;
use sluice_core::framing;
use sluice_core::topology::EventInfo;

use crate::PublishError;

/// A record ready for the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The Kafka key: the topic's key field of the event.
    pub(crate) key: String,
    /// Magic byte, schema id, Avro body.
    pub(crate) value: Vec<u8>,
    /// The event's `event_id`.
    pub(crate) event_id: String,
}

/// Validates `json` against the event type's schema and builds its record. `key_field` is the
/// topic's key (an envelope field that is never null).
///
/// An `aggregate_id` longer than [`MAX_AGGREGATE_ID_BYTES`] is refused first (before the event
/// is encoded: a hostile one may be megabytes long).
pub(crate) fn build(info: &EventInfo, key_field: &str, schema_id: u32, json: &Json) -> Result<Record, PublishError> {
    if let Some(Json::String(id)) = json.get("aggregate_id")
        && id.len() > MAX_AGGREGATE_ID_BYTES
    {
        return Err(PublishError::AggregateIdTooLong { bytes: id.len(), max: MAX_AGGREGATE_ID_BYTES });
    }
    // The body is written right behind the Confluent header: one buffer, no copy.
    let mut value = Vec::with_capacity(framing::HEADER_LEN + 256);
    framing::frame_into(schema_id, &[], &mut value);
    // An event that converts but does not encode is reported after the checks below, as when
    // conversion and encoding were two steps.
    let encode_error = match avro::encode_json_into(json, &info.schema, &mut value) {
        Ok(()) => None,
        Err(EncodeJsonError::Invalid(e)) => return Err(e.into()),
        Err(EncodeJsonError::Encode(e)) => Some(e),
    };
    if !matches!(info.schema, Schema::Record(_)) {
        // The topology only admits record schemas.
        return Err(PublishError::Payload("the event type's schema is not a record".into()));
    }
    // The event converted, so each of its fields does.
    let text = |name: &str| avro::field_json(json, &info.schema, name).map(scalar_text);
    let found_type = text("event_type").unwrap_or_default();
    if found_type != info.event_type {
        return Err(PublishError::EventTypeMismatch { expected: info.event_type.clone(), found: found_type });
    }
    if let Some(e) = encode_error {
        return Err(e.into());
    }
    let key = text(key_field).unwrap_or_default();
    let event_id = text("event_id").unwrap_or_default();
    Ok(Record { key, value, event_id })
}

/// The text of a scalar field value (as [`avro::avro_to_json`] has it): strings as themselves,
/// anything else as JSON.
fn scalar_text(json: Json) -> String {
    match json {
        Json::String(s) => s,
        json => json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;
    use sluice_core::avro::avro_to_json;
    use sluice_core::topology::Topology;

    use super::*;

    fn topology() -> Topology {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Topology::load(&repo.join("topology.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn purchase() -> Json {
        json!({
            "event_id": "6F9619FF-8B86-D011-B42D-00C04FC964FF", "event_type": "engagement.purchase_completed",
            "aggregate_id": "user-7", "aggregate_version": 2, "occurred_at": "2026-11-26T04:28:21.123Z",
            "producer": "test", "user_id": "user-7", "order_id": "o-1", "amount_cents": 1250,
            "currency": "EUR", "items": 2
        })
    }

    #[test]
    fn frames_the_body_and_keys_by_the_topic_key() {
        let t = topology();
        let info = t.event("engagement.purchase_completed").expect("event type");
        let record = build(info, "aggregate_id", 42, &purchase()).expect("valid event");
        assert_eq!(record.key, "user-7");
        assert_eq!(record.event_id, "6f9619ff-8b86-d011-b42d-00c04fc964ff", "the UUID in its canonical form");
        let framed = framing::unframe(&record.value).expect("framed");
        assert_eq!(framed.schema_id, 42);
        let back = avro_to_json(&avro::decode(framed.body, &info.schema, None).expect("decodes"), &info.schema);
        assert_eq!(back["amount_cents"], 1250);
        assert_eq!(back["occurred_at"], "2026-11-26T04:28:21.123Z");

        let by_id = build(info, "event_id", 42, &purchase()).expect("valid event");
        assert_eq!(by_id.key, record.event_id);
    }

    #[test]
    fn refuses_an_aggregate_id_too_long_for_a_document_key() {
        let t = topology();
        let info = t.event("engagement.purchase_completed").expect("event type");
        let mut event = purchase();
        event["aggregate_id"] = json!("é".repeat(MAX_AGGREGATE_ID_BYTES / 2));
        assert!(build(info, "aggregate_id", 1, &event).is_ok(), "at the limit, counted in bytes");
        event["aggregate_id"] = json!(format!("{}x", "é".repeat(MAX_AGGREGATE_ID_BYTES / 2)));
        let err = build(info, "aggregate_id", 1, &event).expect_err("one byte over");
        assert!(matches!(err, PublishError::AggregateIdTooLong { bytes, max } if bytes == max + 1), "{err:?}");
        assert!(err.is_invalid_event() && !err.is_retriable());
    }

    #[test]
    fn rejects_with_the_converters_path() {
        let t = topology();
        let info = t.event("engagement.purchase_completed").expect("event type");
        let mut event = purchase();
        event["amount_cents"] = json!("12");
        let err = build(info, "aggregate_id", 1, &event).expect_err("wrong type");
        assert_eq!(err.to_string(), r#"$.amount_cents: expected long, found string "12""#);
        assert!(matches!(err, PublishError::Invalid(_)));

        let mut event = purchase();
        event.as_object_mut().expect("object").remove("order_id");
        let err = build(info, "aggregate_id", 1, &event).expect_err("missing field");
        assert_eq!(err.to_string(), r#"$: missing required field "order_id""#);
    }

    /// What `build` did before `encode_json_into`: convert, read the fields off the value, encode.
    fn reference_build(info: &EventInfo, key_field: &str, schema_id: u32, json: &Json) -> Result<Record, String> {
        let value = avro::json_to_avro(json, &info.schema).map_err(|e| e.to_string())?;
        let Json::Object(fields) = avro_to_json(&value, &info.schema) else { return Err("not a record".into()) };
        let field = |name: &str| fields.get(name).cloned().map(scalar_text).unwrap_or_default();
        if field("event_type") != info.event_type {
            return Err(PublishError::EventTypeMismatch {
                expected: info.event_type.clone(),
                found: field("event_type"),
            }
            .to_string());
        }
        let body = avro::encode(&value, &info.schema).map_err(|e| e.to_string())?;
        Ok(Record { key: field(key_field), value: framing::frame(schema_id, &body), event_id: field("event_id") })
    }

    #[test]
    fn builds_what_converting_and_encoding_built() {
        let t = topology();
        let info = t.event("engagement.purchase_completed").expect("event type");
        let variants: Vec<(&str, Json)> = vec![
            ("items", json!(2.0)),
            ("occurred_at", json!(1_795_667_301_123_i64)),
            ("occurred_at", json!("2026-11-26T06:28:21.123+02:00")),
            ("event_id", json!("{6f9619ff-8b86-d011-b42d-00c04fc964ff}")),
            ("session_id", Json::Null),
            ("amount_cents", json!("12")),
            ("event_type", json!("engagement.clicked")),
            ("nope", json!(1)),
        ];
        for (field, value) in variants {
            let mut event = purchase();
            event[field] = value;
            for key_field in ["aggregate_id", "event_id", "occurred_at", "aggregate_version"] {
                let built = build(info, key_field, 9, &event).map_err(|e| e.to_string());
                assert_eq!(
                    built,
                    reference_build(info, key_field, 9, &event),
                    "{field} = {}, key {key_field}",
                    event[field]
                );
            }
        }
    }

    #[test]
    fn the_event_type_field_must_match() {
        let t = topology();
        let info = t.event("engagement.purchase_completed").expect("event type");
        let mut event = purchase();
        event["event_type"] = json!("engagement.clicked");
        let err = build(info, "aggregate_id", 1, &event).expect_err("mismatch");
        assert!(matches!(err, PublishError::EventTypeMismatch { .. }), "{err}");
    }
}
