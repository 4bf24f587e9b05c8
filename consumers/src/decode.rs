//! From Kafka record bytes to an [`Event`]: Confluent framing, the writer's schema from the
//! registry (cached: ids are immutable), Avro decoding resolved to the reader schema of the
//! topology (so events written with an older compatible schema still decode), then the envelope.
//!
//! Per schema id the writer and reader schemas are compiled once into an [`EventDecoder`], which
//! reads each body straight into the event (see [`sluice_core::avro`]'s hot paths).
//!
//! Every event is then judged by the projection's [`Admission`] rules (declared type, written
//! with its type's schema, on its type's topic, keyed by its key field, folded by the
//! projection): an event that breaks one is refused with a [`Refused::code`] for the DLQ, a
//! declared type the projection does not fold is acknowledged with nothing written.
//!
//! Records of a change-data-capture topic (a `[cdc.*]` source of the topology: Debezium change
//! events or outbox events, Avro through the registry or JSON) are decoded generically — Avro
//! with the writer schema from the registry, JSON as it is — and mapped to sluice events by the
//! source's [`CdcMapper`]. A tombstone or a truncate maps to no event: it is acknowledged and
//! nothing is written ([`Decoded::Nothing`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use rdkafka::Message;
use rdkafka::message::Headers;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_id};
use sluice_core::admission::{Admission, Origin, Verdict};
use sluice_core::avro::{EventDecoder, ReadEventError};
use sluice_core::cdc::{CdcMapper, CdcOutcome, CdcRecord, RowSchema};
use sluice_core::event::{Event, Position};
use sluice_core::framing::unframe;
use sluice_core::topology::{CdcEncoding, Topology};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::retry::{backoff, sleep_or_cancel};
use crate::worker::metrics::names::{KEY_MISMATCHES, SKIPPED};
use metrics::Counter;

/// What a record decodes to.
// Nearly every record is an event: boxing it would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded {
    /// An event for the sink.
    Event(Event),
    /// Nothing to write, and nothing wrong: a CDC tombstone (the null record after a delete), a
    /// record that is not about one entity (a truncate), or an event of a type the projection
    /// does not fold. Acknowledged as it is.
    Nothing(String),
}

/// A record that can never be applied: it goes to the DLQ with this code and reason, and the
/// partition moves on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Refused {
    /// Stable, machine-readable: the DLQ record's `sluice.dlq.code` header (`bad_framing`,
    /// `unknown_schema`, `undecodable_body`, `not_an_event`, `cdc_unmappable`, `rejected_by_sink`, or an
    /// [admission](sluice_core::admission::Refusal::code) code).
    pub code: &'static str,
    /// For the operator: what is wrong, where.
    pub reason: String,
}

impl Refused {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }

    /// An event the sink refused (code `rejected_by_sink`), with the sink's reason.
    pub fn by_sink(reason: String) -> Self {
        Self { code: "rejected_by_sink", reason }
    }
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record itself is bad (framing, unknown schema id, undecodable body, no envelope, a
    /// broken admission rule): it goes to the DLQ and the partition moves on.
    #[error(transparent)]
    Permanent(Refused),
    /// The registry could not be asked (down, timeout): retry later, commit nothing past it.
    #[error("schema registry unavailable: {0}")]
    Transient(String),
}

fn permanent(code: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Permanent(Refused::new(code, reason))
}

/// A writer schema compiled for decoding, and the full name of its record.
#[derive(Debug)]
struct Writer {
    decoder: EventDecoder,
    record: Option<String>,
}

/// Decodes records; shared by a worker's partitions.
#[derive(Debug)]
pub struct Decoder {
    registry: SrSettings,
    /// Per schema id: the writer schema compiled with the reader schema to resolve to — none
    /// when it is the same schema (resolution then costs nothing, the common case).
    writers: RwLock<HashMap<u32, Arc<Writer>>>,
    /// Reader schemas by full record name (`sluice.users.UserRegistered`), from the topology.
    readers: HashMap<String, Arc<Schema>>,
    /// CDC sources by the topic they read.
    cdc: HashMap<String, CdcMapper>,
    /// Per schema id, a CDC writer schema and what it says about the row's columns.
    generic: RwLock<HashMap<u32, Arc<(Schema, RowSchema)>>>,
    /// The projection's rules; `None` applies every event that decodes (tools that are not a
    /// projection).
    rules: Option<Rules>,
}

/// A projection's admission rules and the counters of what they let through without writing
/// (handles made once: a counter looked up by its labels per event costs a map search and
/// allocations on the hot path).
#[derive(Debug)]
struct Rules {
    admission: Admission,
    skipped: Counter,
    key_mismatches: Counter,
}

fn record_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(r) => Some(r.name.fullname(None)),
        _ => None,
    }
}

impl Decoder {
    /// A decoder asking `registry` for writer schemas and resolving to `readers`.
    pub fn new(registry: SrSettings, readers: impl IntoIterator<Item = Schema>) -> Self {
        let readers = readers.into_iter().filter_map(|s| Some((record_name(&s)?, Arc::new(s)))).collect();
        Self {
            registry,
            writers: RwLock::default(),
            readers,
            cdc: HashMap::new(),
            generic: RwLock::default(),
            rules: None,
        }
    }

    /// Judges every event by `projection`'s [`Admission`] rules (see the module docs); `None`
    /// when the topology has no such projection.
    pub fn for_projection(mut self, topology: &Topology, projection: &str) -> Option<Self> {
        let admission = Admission::new(topology, projection)?;
        let p = projection.to_owned();
        self.rules = Some(Rules {
            admission,
            skipped: metrics::counter!(SKIPPED, "projection" => p.clone()),
            key_mismatches: metrics::counter!(KEY_MISMATCHES, "projection" => p),
        });
        Some(self)
    }

    /// Also decodes the records of `topology`'s CDC sources, each with its source's mapping.
    pub fn with_cdc(mut self, topology: &Topology) -> Self {
        self.cdc = topology
            .cdc_sources()
            .filter_map(|(name, source)| Some((source.topic.clone(), CdcMapper::new(topology, name)?)))
            .collect();
        self
    }

    /// The registry's schema `id`: its text and the parsed schema.
    async fn registered(&self, id: u32) -> Result<(String, Schema), DecodeError> {
        let registered = get_schema_by_id(id, &self.registry).await.map_err(|e| {
            if e.retriable {
                DecodeError::Transient(e.to_string())
            } else {
                permanent("unknown_schema", format!("unknown schema id {id}: {e}"))
            }
        })?;
        let schema = Schema::parse_str(&registered.schema)
            .map_err(|e| permanent("unknown_schema", format!("schema id {id} is not valid Avro: {e}")))?;
        Ok((registered.schema, schema))
    }

    /// A CDC writer schema and its row description, from the cache or the registry.
    async fn generic(&self, id: u32) -> Result<Arc<(Schema, RowSchema)>, DecodeError> {
        if let Some(s) = self.generic.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(s);
        }
        // The text, not the canonical form: that drops the decimal scales and Connect type names.
        let (text, schema) = self.registered(id).await?;
        let row = RowSchema::from_avro_schema(&text)
            .map_err(|e| permanent("unknown_schema", format!("schema id {id}: {e}")))?;
        let entry = Arc::new((schema, row));
        if let Ok(mut m) = self.generic.write() {
            m.insert(id, entry.clone());
        }
        Ok(entry)
    }

    /// An Avro key or value of a CDC topic: framed, decoded with its writer schema.
    async fn generic_avro(
        &self,
        bytes: &[u8],
        what: &str,
    ) -> Result<(Avro, Arc<(Schema, RowSchema)>, u32), DecodeError> {
        let framed = unframe(bytes).map_err(|e| permanent("bad_framing", format!("{what}: {e}")))?;
        let entry = self.generic(framed.schema_id).await?;
        let value = sluice_core::avro::decode(framed.body, &entry.0, None).map_err(|e| {
            permanent("undecodable_body", format!("{what}: undecodable body (schema id {}): {e}", framed.schema_id))
        })?;
        Ok((value, entry, framed.schema_id))
    }

    /// The decoder of schema `id`, from the cache or made from the registry's schema.
    async fn writer(&self, id: u32) -> Result<Arc<Writer>, DecodeError> {
        if let Some(s) = self.writers.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(s);
        }
        let (_, schema) = self.registered(id).await?;
        let record = record_name(&schema);
        let reader = record
            .as_ref()
            .and_then(|n| self.readers.get(n).cloned())
            .filter(|r| r.canonical_form() != schema.canonical_form());
        let writer = Arc::new(Writer { decoder: EventDecoder::new(Arc::new(schema), reader), record });
        if let Ok(mut m) = self.writers.write() {
            m.insert(id, writer.clone());
        }
        Ok(writer)
    }

    /// Decodes one record read at `position`: a sluice event, or a CDC record mapped to one,
    /// judged by the projection's rules.
    pub async fn decode(&self, m: &impl Message, position: Position) -> Result<Decoded, DecodeError> {
        // Most workers read no CDC topic: skip the per-record lookup then.
        if let Some(mapper) = (!self.cdc.is_empty()).then(|| self.cdc.get(m.topic())).flatten() {
            return match self.decode_cdc(mapper, m, position).await? {
                Decoded::Event(event) => self.admit(event, Origin::Cdc),
                nothing => Ok(nothing),
            };
        }
        let framed = unframe(m.payload().unwrap_or_default()).map_err(|e| permanent("bad_framing", e.to_string()))?;
        let writer = self.writer(framed.schema_id).await?;
        let event = writer.decoder.decode_event(framed.body, position, framed.schema_id).map_err(|e| match e {
            ReadEventError::Body(e) => {
                permanent("undecodable_body", format!("undecodable body (schema id {}): {e}", framed.schema_id))
            }
            ReadEventError::Event(e) => permanent("not_an_event", e.to_string()),
        })?;
        self.admit(event, Origin::Native { writer_record: writer.record.as_deref(), key: m.key() })
    }

    /// The projection's verdict on a decoded event.
    fn admit(&self, event: Event, origin: Origin<'_>) -> Result<Decoded, DecodeError> {
        let Some(rules) = &self.rules else { return Ok(Decoded::Event(event)) };
        match rules.admission.judge(&event, origin) {
            Verdict::Apply => Ok(Decoded::Event(event)),
            Verdict::ApplyDespite(refusal) => {
                rules.key_mismatches.increment(1);
                warn!(offset = event.position.offset, code = refusal.code(), %refusal,
                      "applied although the key is not the key field (the topic accepts that)");
                Ok(Decoded::Event(event))
            }
            Verdict::Skip => {
                rules.skipped.increment(1);
                debug!(offset = event.position.offset, event_type = %event.envelope.event_type,
                       "not folded by this projection: acknowledged, nothing written");
                Ok(Decoded::Nothing(format!("{} is not folded by this projection", event.envelope.event_type)))
            }
            Verdict::Refuse(refusal) => Err(permanent(refusal.code(), refusal.to_string())),
        }
    }

    /// [`Decoder::decode`], trying again with backoff while the registry is unavailable:
    /// `Ok(None)` when `shutdown` came first, `Err(reason)` for a record that cannot be decoded
    /// (for the DLQ).
    pub async fn decode_retrying(
        &self,
        m: &impl Message,
        position: Position,
        shutdown: &CancellationToken,
    ) -> Result<Option<Decoded>, Refused> {
        let mut attempt = 0;
        loop {
            match self.decode(m, position.clone()).await {
                Ok(decoded) => return Ok(Some(decoded)),
                Err(DecodeError::Permanent(refused)) => return Err(refused),
                Err(DecodeError::Transient(reason)) => {
                    warn!(%reason, attempt, "decode failed transiently; retrying");
                    if !sleep_or_cancel(backoff(attempt), shutdown).await {
                        return Ok(None);
                    }
                    attempt += 1;
                }
            }
        }
    }

    async fn decode_cdc(
        &self,
        mapper: &CdcMapper,
        m: &impl Message,
        position: Position,
    ) -> Result<Decoded, DecodeError> {
        let (record, schema_id) = match mapper.source().encoding {
            CdcEncoding::Json => {
                let value = m.payload().map(|v| json(v, "value")).transpose()?;
                (CdcRecord::from_json(m.key().map(json_or_text), value), 0)
            }
            CdcEncoding::Avro => {
                // The key is Avro too for table streams; the outbox router's key is plain text.
                let key = match m.key() {
                    Some(k) if k.first() == Some(&0) && k.len() > 5 => {
                        let (key, entry, _) = self.generic_avro(k, "key").await?;
                        Some((key, Some(entry)))
                    }
                    Some(k) => Some((Avro::String(String::from_utf8_lossy(k).into_owned()), None)),
                    None => None,
                };
                match m.payload() {
                    Some(v) => {
                        let (value, entry, id) = self.generic_avro(v, "value").await?;
                        (CdcRecord::from_avro(key.as_ref().map(|(k, _)| k), Some(&value), &entry.1), id)
                    }
                    None => {
                        let key = key.map(|(key, entry)| match entry {
                            Some(entry) => sluice_core::avro::avro_to_json(&key, &entry.0),
                            None => sluice_core::avro::avro_to_json(&key, &Schema::String),
                        });
                        (CdcRecord::from_json(key, None), 0)
                    }
                }
            }
        };
        let headers: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
            .unwrap_or_default();
        let outcome = mapper
            .map(&record, &headers, position, m.timestamp().to_millis(), schema_id)
            .map_err(|e| permanent("cdc_unmappable", format!("CDC source {}: {e}", mapper.name())))?;
        Ok(match outcome {
            CdcOutcome::Event { event, .. } => Decoded::Event(event),
            CdcOutcome::Tombstone { aggregate_id } => {
                debug!(source = mapper.name(), aggregate_id, "tombstone: nothing to write");
                Decoded::Nothing(format!("tombstone of {aggregate_id}"))
            }
            CdcOutcome::Skip { reason } => {
                tracing::info!(source = mapper.name(), %reason, "CDC record skipped");
                Decoded::Nothing(reason.to_string())
            }
        })
    }
}

/// A JSON key or value of a CDC topic, parsed strictly: a repeated key is refused (which of two
/// values a reader takes is a guess).
fn json(bytes: &[u8], what: &str) -> Result<serde_json::Value, DecodeError> {
    sluice_core::json::from_slice_strict(bytes)
        .map_err(|e| permanent("undecodable_body", format!("the {what} is not JSON: {e}")))
}

/// A key: JSON when it parses (a JsonConverter key), else the text itself (a StringConverter key,
/// as the outbox router's aggregate id).
fn json_or_text(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdc_json_record_with_a_repeated_key_is_refused() {
        let err = json(br#"{"op": "c", "after": {"id": 1, "id": 2}}"#, "value").expect_err("refused");
        let DecodeError::Permanent(refused) = err else { panic!("permanent") };
        assert_eq!(refused.code, "undecodable_body");
        assert!(refused.reason.contains("$.after"), "{}", refused.reason);
        assert!(json(br#"{"op": "c", "after": {"id": 1}}"#, "value").is_ok());
    }
}
