//! Avro bodies read straight into JSON and events: the consuming hot path.
//!
//! A worker splits a record with [`crate::framing::unframe`] and looks the schema id up in the
//! registry once; [`EventDecoder::new`] then compiles that writer schema (and the reader schema
//! of the topology, when they differ) into a decode plan, once per schema id. Each body is read
//! by the plan directly into the `serde_json` values [`avro_to_json`] makes, and the envelope
//! fields directly into the [`Envelope`](crate::event::Envelope) — no apache-avro `Value` in between, no schema names
//! resolved per record, no map built only to take the envelope out of it again. The payload keeps
//! the reader schema's field order.
//!
//! apache-avro stays the reference. A schema the plan does not cover (big-decimal, recursive
//! types, a reader schema that changes more than which fields there are and in what order) is
//! always read by [`decode`]; so is every body the plan cannot read, so errors are exactly those
//! of [`decode`], which is strict (a body cut short is an error wherever it ends, where
//! apache-avro alone would read a missing union index as `null`). Property tests hold the two
//! paths equal.

use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::types::Value;
use serde_json::{Map, Value as Json};
use thiserror::Error;

use self::plan::Plan;
use self::sink::{EventSink, Slots, envelope_slot};
use super::{DecodeError, avro_to_json, decode};
use crate::event::{Event, EventError, Position};

mod compiler;
mod input;
mod plan;
mod resolution;
mod sink;

/// Why a record is not an event: its body does not decode, or it has no proper envelope.
#[derive(Debug, Error)]
pub enum ReadEventError {
    /// The body is not a datum of the writer schema, or does not resolve to the reader schema.
    #[error(transparent)]
    Body(#[from] DecodeError),
    /// The record decoded but is not a sluice event (see [`Event::from_record`]).
    #[error(transparent)]
    Event(#[from] EventError),
}

/// Reads the Avro bodies written with one schema, resolved to one reader schema; built once
/// per schema id and shared by every partition of a worker.
#[derive(Debug)]
pub struct EventDecoder {
    writer: Arc<Schema>,
    reader: Option<Arc<Schema>>,
    /// `None`: every body goes through apache-avro.
    plan: Option<Plan>,
}

impl EventDecoder {
    /// A decoder of bodies written with `writer`, resolved to `reader` (`None`: the same
    /// schema). Never fails: a schema that does not compile is read by apache-avro, whose errors
    /// then come with each body.
    pub fn new(writer: Arc<Schema>, reader: Option<Arc<Schema>>) -> Self {
        let plan = Plan::compile(&writer, reader.as_deref());
        Self { writer, reader, plan }
    }

    /// The schema the bodies are written with.
    pub fn writer(&self) -> &Schema {
        &self.writer
    }

    /// The schema they resolve to, when it is not the writer schema.
    pub fn reader(&self) -> Option<&Schema> {
        self.reader.as_deref()
    }

    /// Whether bodies are read by the compiled plan (`false`: by apache-avro, for a schema or a
    /// resolution the plan does not cover).
    pub fn is_compiled(&self) -> bool {
        self.plan.is_some()
    }

    /// The JSON of a body: `avro_to_json(&decode(body, writer, reader)?, reader or writer)`,
    /// faster.
    pub fn decode_json(&self, body: &[u8]) -> Result<Json, DecodeError> {
        if let Some(plan) = &self.plan
            && let Ok(json) = plan.json(body)
        {
            return Ok(json);
        }
        Ok(avro_to_json(&self.decode_value(body)?, self.value_schema()))
    }

    /// The event of a body read at `position`: what [`Event::from_record`] makes of
    /// [`Self::decode_json`], with the payload in schema order.
    pub fn decode_event(&self, body: &[u8], position: Position, schema_id: u32) -> Result<Event, ReadEventError> {
        if let Some(plan) = &self.plan {
            let mut sink = EventSink::new(plan);
            if let Ok(split) = plan.event(body, &mut sink) {
                split?;
                let envelope = sink.envelope.take_envelope()?;
                return Ok(Event { envelope, payload: sink.payload, position, schema_id });
            }
        }
        let json = avro_to_json(&self.decode_value(body)?, self.value_schema());
        let Json::Object(record) = json else { return Err(EventError::NotARecord.into()) };
        let mut envelope = Slots::default();
        let mut payload = Map::with_capacity(record.len());
        for (name, value) in record {
            match envelope_slot(&name) {
                Some(slot) => envelope.0[slot] = Some(value),
                None => {
                    payload.insert(name, value);
                }
            }
        }
        Ok(Event { envelope: envelope.take_envelope()?, payload, position, schema_id })
    }

    /// The reference path.
    fn decode_value(&self, body: &[u8]) -> Result<Value, DecodeError> {
        decode(body, &self.writer, self.reader.as_deref())
    }

    /// The schema of the values [`Self::decode_value`] reads: the reader's, else the writer's.
    fn value_schema(&self) -> &Schema {
        self.reader.as_deref().unwrap_or(&self.writer)
    }
}

#[cfg(test)]
mod tests;
