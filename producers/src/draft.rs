//! Building an event: the envelope filled in for the caller, the payload from any `Serialize`.
//!
//! A service describes what happened with an [`EventDraft`] (type, aggregate, version, payload)
//! and the publisher turns it into the complete JSON event the schema expects, adding what the
//! service should not have to invent: a fresh `event_id`, `occurred_at = now`, its own `producer`
//! name. [`fill_envelope_defaults`] does the same for events that arrive as JSON (`sluice
//! publish`). Pure code, apart from reading the clock and the random source for new ids.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value as Json};
use sluice_core::topology::is_envelope_field;
use uuid::Uuid;

use crate::PublishError;

/// An event about to be published: the envelope fields a service chooses, and its payload.
///
/// `event_id` (a new UUID v4), `occurred_at` (now) and `producer` (the publisher's
/// [`PublisherOptions::producer_name`](crate::PublisherOptions)) are filled in when the draft
/// leaves them out. The payload is checked against the event type's schema only when published,
/// so the builder never fails; [`Publisher::publish`](crate::Publisher::publish) reports every
/// problem.
#[derive(Debug, Clone)]
pub struct EventDraft {
    event_type: String,
    aggregate_id: String,
    aggregate_version: i64,
    event_id: Option<Uuid>,
    occurred_at_ms: Option<i64>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    payload: Result<Map<String, Json>, String>,
}

impl EventDraft {
    /// A draft of an `event_type` event about entity `aggregate_id`, at the entity's
    /// `aggregate_version` (the per-entity sequence of the source of truth: projections apply an
    /// event only when its version is newer than what they hold).
    pub fn new(event_type: impl Into<String>, aggregate_id: impl Into<String>, aggregate_version: i64) -> Self {
        Self {
            event_type: event_type.into(),
            aggregate_id: aggregate_id.into(),
            aggregate_version,
            event_id: None,
            occurred_at_ms: None,
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            tracestate: None,
            payload: Ok(Map::new()),
        }
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// Sets the payload fields from `payload`, which must serialize to a JSON object whose fields
    /// are the schema's payload fields (with the JSON spelling of [`sluice_core::avro`]: RFC 3339
    /// strings or epoch integers for timestamps, decimal strings, hex bytes). Replaces earlier
    /// payload fields.
    #[must_use]
    pub fn payload(mut self, payload: &impl Serialize) -> Self {
        self.payload = match serde_json::to_value(payload) {
            Ok(Json::Object(fields)) => Ok(fields),
            Ok(other) => Err(format!("the payload must serialize to a JSON object, not {}", json_type(&other))),
            Err(e) => Err(format!("the payload does not serialize to JSON: {e}")),
        };
        self
    }

    /// Sets one payload field.
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, value: impl Into<Json>) -> Self {
        if let Ok(fields) = &mut self.payload {
            fields.insert(name.into(), value.into());
        }
        self
    }

    /// Sets the event id (the idempotency key) instead of a fresh UUID v4; use it when a retry
    /// must publish the same event again.
    #[must_use]
    pub fn event_id(mut self, id: Uuid) -> Self {
        self.event_id = Some(id);
        self
    }

    /// Sets when the event happened at the source, instead of now.
    #[must_use]
    pub fn occurred_at(mut self, at: SystemTime) -> Self {
        self.occurred_at_ms = Some(millis_since_epoch(at));
        self
    }

    /// Sets when the event happened, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn occurred_at_millis(mut self, millis: i64) -> Self {
        self.occurred_at_ms = Some(millis);
        self
    }

    /// Sets the id shared by every event of one business flow.
    #[must_use]
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the `event_id` of the event or request that caused this one.
    #[must_use]
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the W3C trace context (`traceparent`, and `tracestate` when there is one).
    #[must_use]
    pub fn trace_context(mut self, traceparent: impl Into<String>, tracestate: Option<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self.tracestate = tracestate;
        self
    }

    /// The complete JSON event: envelope first, then the payload. `producer` is the publishing
    /// service's name.
    pub fn into_json(self, producer: &str) -> Result<Json, PublishError> {
        let payload = self.payload.map_err(PublishError::Payload)?;
        if let Some(name) = payload.keys().find(|k| is_envelope_field(k)) {
            return Err(PublishError::Payload(format!(
                "`{name}` is an envelope field: set it on the EventDraft, not in the payload"
            )));
        }
        let optional = |v: Option<String>| v.map_or(Json::Null, Json::String);
        let mut event = Map::new();
        event.insert("event_id".into(), Json::String(self.event_id.unwrap_or_else(Uuid::new_v4).to_string()));
        event.insert("event_type".into(), Json::String(self.event_type));
        event.insert("aggregate_id".into(), Json::String(self.aggregate_id));
        event.insert("aggregate_version".into(), Json::from(self.aggregate_version));
        event.insert("occurred_at".into(), Json::from(self.occurred_at_ms.unwrap_or_else(now_millis)));
        event.insert("producer".into(), Json::String(producer.to_owned()));
        event.insert("correlation_id".into(), optional(self.correlation_id));
        event.insert("causation_id".into(), optional(self.causation_id));
        event.insert("traceparent".into(), optional(self.traceparent));
        event.insert("tracestate".into(), optional(self.tracestate));
        event.extend(payload);
        Ok(Json::Object(event))
    }
}

/// Fills the envelope fields a JSON event may leave to the publisher, when absent or null:
/// `event_id` (a new UUID v4), `occurred_at` (now, in epoch milliseconds) and `producer`.
/// Everything else must be in the event.
pub fn fill_envelope_defaults(event: &mut Map<String, Json>, producer: &str) {
    let mut fill = |name: &str, value: &dyn Fn() -> Json| {
        let slot = event.entry(name).or_insert(Json::Null);
        if slot.is_null() {
            *slot = value();
        }
    };
    fill("event_id", &|| Json::String(Uuid::new_v4().to_string()));
    fill("occurred_at", &|| Json::from(now_millis()));
    fill("producer", &|| Json::String(producer.to_owned()));
}

/// Milliseconds since the Unix epoch (negative before it).
fn millis_since_epoch(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn now_millis() -> i64 {
    millis_since_epoch(SystemTime::now())
}

fn json_type(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    struct Purchase {
        user_id: String,
        order_id: String,
        amount_cents: i64,
    }

    #[test]
    fn a_draft_becomes_a_complete_event() {
        let id = Uuid::from_u128(7);
        let event = EventDraft::new("engagement.purchase_completed", "u-1", 3)
            .payload(&Purchase { user_id: "u-1".into(), order_id: "o-9".into(), amount_cents: 1250 })
            .field("currency", "EUR")
            .event_id(id)
            .occurred_at(UNIX_EPOCH + Duration::from_millis(1_500))
            .correlation_id("flow-1")
            .into_json("checkout")
            .expect("valid draft");
        assert_eq!(
            event,
            json!({
                "event_id": id.to_string(), "event_type": "engagement.purchase_completed",
                "aggregate_id": "u-1", "aggregate_version": 3, "occurred_at": 1500, "producer": "checkout",
                "correlation_id": "flow-1", "causation_id": null, "traceparent": null, "tracestate": null,
                "user_id": "u-1", "order_id": "o-9", "amount_cents": 1250, "currency": "EUR"
            })
        );
        let keys: Vec<&String> = event.as_object().expect("object").keys().collect();
        assert_eq!(keys[0], "event_id", "the envelope comes first");
    }

    #[test]
    fn fills_event_id_and_occurred_at_when_left_out() {
        let event = EventDraft::new("user.deleted", "u-1", 1).into_json("svc").expect("valid");
        let id = event["event_id"].as_str().expect("a string");
        assert_eq!(Uuid::parse_str(id).map(|u| u.get_version_num()), Ok(4));
        assert!(event["occurred_at"].as_i64().is_some_and(|ms| ms > 1_700_000_000_000));
    }

    #[test]
    fn refuses_payloads_that_are_not_payloads() {
        let err = EventDraft::new("x", "a", 1).payload(&[1, 2]).into_json("svc").expect_err("array");
        assert_eq!(err.to_string(), "invalid payload: the payload must serialize to a JSON object, not an array");
        let err = EventDraft::new("x", "a", 1).field("event_id", "mine").into_json("svc").expect_err("envelope");
        assert!(err.to_string().contains("`event_id` is an envelope field"), "{err}");
    }

    #[test]
    fn json_events_get_only_the_missing_defaults() {
        let mut event = json!({"event_id": "kept", "occurred_at": null}).as_object().cloned().expect("object");
        fill_envelope_defaults(&mut event, "sluice-cli");
        assert_eq!(event["event_id"], "kept");
        assert!(event["occurred_at"].is_i64());
        assert_eq!(event["producer"], "sluice-cli");
        assert!(event.get("aggregate_id").is_none(), "nothing else is invented");
    }

    #[test]
    fn epoch_millis_both_sides() {
        assert_eq!(millis_since_epoch(UNIX_EPOCH - Duration::from_millis(5)), -5);
        assert_eq!(millis_since_epoch(UNIX_EPOCH + Duration::from_millis(5)), 5);
    }
}
