//! Where a decoded record's fields go: a JSON object for a nested record or a payload, or, for
//! an event, the envelope fields to their [`Slots`] and the rest to the payload ([`EventSink`]).

use serde_json::{Map, Value as Json};

use super::plan::{Out, Plan};
use crate::event::{ENVELOPE_FIELDS, Envelope, EventError, millis_of};

/// The position of a field in [`ENVELOPE_FIELDS`].
pub(super) fn envelope_slot(name: &str) -> Option<usize> {
    ENVELOPE_FIELDS.iter().position(|field| *field == name)
}

/// The envelope fields of a record as read, by their position in [`ENVELOPE_FIELDS`].
#[derive(Debug, Default)]
pub(super) struct Slots(pub(super) [Option<Json>; ENVELOPE_FIELDS.len()]);

impl Slots {
    /// The same checks, in the same order, with the same errors as [`Event::from_record`](crate::event::Event::from_record).
    pub(super) fn take_envelope(&mut self) -> Result<Envelope, EventError> {
        let [
            event_id,
            event_type,
            aggregate_id,
            aggregate_version,
            occurred_at,
            producer,
            correlation_id,
            causation_id,
            traceparent,
            tracestate,
        ] = &mut self.0;
        fn string(value: Option<Json>, slot: usize) -> Result<String, EventError> {
            match value {
                Some(Json::String(s)) => Ok(s),
                _ => Err(EventError::BadEnvelope { field: ENVELOPE_FIELDS[slot], expected: "a string" }),
            }
        }
        fn optional(value: Option<Json>, slot: usize) -> Result<Option<String>, EventError> {
            match value {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s)),
                Some(_) => Err(EventError::BadEnvelope { field: ENVELOPE_FIELDS[slot], expected: "a string or null" }),
            }
        }
        fn integer(value: Option<Json>, slot: usize) -> Result<i64, EventError> {
            value
                .and_then(|v| v.as_i64())
                .ok_or(EventError::BadEnvelope { field: ENVELOPE_FIELDS[slot], expected: "an integer" })
        }
        Ok(Envelope {
            event_id: string(event_id.take(), 0)?,
            event_type: string(event_type.take(), 1)?,
            aggregate_id: string(aggregate_id.take(), 2)?,
            aggregate_version: integer(aggregate_version.take(), 3)?,
            occurred_at: millis_of(occurred_at.take(), ENVELOPE_FIELDS[4])?,
            producer: string(producer.take(), 5)?,
            correlation_id: optional(correlation_id.take(), 6)?,
            causation_id: optional(causation_id.take(), 7)?,
            traceparent: optional(traceparent.take(), 8)?,
            tracestate: optional(tracestate.take(), 9)?,
        })
    }
}

/// Where the fields of a record go.
pub(super) trait Sink {
    fn put(&mut self, out: &Out, value: Json);

    /// Whether envelope timestamps are wanted as their integer counts rather than as text: an
    /// event keeps `occurred_at` in milliseconds, so the text is neither made nor parsed back.
    fn counts_envelope(&self) -> bool {
        false
    }
}

impl Sink for Map<String, Json> {
    fn put(&mut self, out: &Out, value: Json) {
        self.insert(out.name.clone(), value);
    }
}

pub(super) struct EventSink {
    pub(super) envelope: Slots,
    pub(super) payload: Map<String, Json>,
}

impl EventSink {
    pub(super) fn new(plan: &Plan) -> Self {
        let payload_len = match plan {
            Plan::Record(record) => record.payload_len,
            Plan::Other(_) => 0,
        };
        Self { envelope: Slots::default(), payload: Map::with_capacity(payload_len) }
    }
}

impl Sink for EventSink {
    fn counts_envelope(&self) -> bool {
        true
    }

    fn put(&mut self, out: &Out, value: Json) {
        match out.envelope {
            Some(slot) => self.envelope.0[slot] = Some(value),
            None => {
                self.payload.insert(out.name.clone(), value);
            }
        }
    }
}
