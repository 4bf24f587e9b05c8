//! Change data capture: Debezium records from a legacy PostgreSQL become sluice events.
//!
//! A worker consuming a topic declared as a `[cdc.<name>]` source decodes each Kafka record
//! (JsonConverter JSON, or Confluent-framed Avro with the registry's writer schema) into a
//! [`CdcRecord`] and hands it to the source's [`CdcMapper`]. Out comes a [`CdcOutcome`]: a sluice
//! [`Event`] to project like any other, a tombstone to acknowledge, or a record to skip; or a
//! [`CdcError`] naming the field or column at fault, for the dead-letter topic. Pure code.
//!
//! # Debezium change events (`format = "debezium"`)
//!
//! - `op` c (insert), u (update) and r (snapshot read) become the source's `upsert_event` with
//!   every mapped column of `after`; d becomes its `delete_event` with the mapped columns of
//!   `before` that the delete event's schema has (with REPLICA IDENTITY DEFAULT only the key is
//!   there; with FULL, the whole old row); t (truncate) and m (logical decoding message) are
//!   skipped with a reason: a truncate is not about one entity. A null value is the tombstone
//!   Debezium writes after a delete for log compaction: acknowledged, nothing to write.
//! - `aggregate_id`: the `key` columns of the row, joined with `:` (in a composite key, `\` and
//!   `:` inside a value are escaped with `\`).
//! - `aggregate_version`: `source.lsn`, the change's position in the write-ahead log. One row's
//!   changes are serialised by PostgreSQL's row locks, so their LSNs increase in commit order, and
//!   a redelivered or replayed change never overwrites a newer one. A snapshot read carries the
//!   LSN at which the snapshot was taken: every change it reflects is below it, every change
//!   committed after it is above it, so a re-snapshot rewrites the same values and loses to
//!   anything newer. One known gap: a transaction that was already writing when the snapshot
//!   started and commits after it has changes below the snapshot's LSN; they lose against the
//!   snapshot read of the same row until the row changes again (Debezium's `source.lsn` does not
//!   carry the commit LSN). A record without `source.lsn` is an error: there is no safe version
//!   to give it.
//! - `event_id`: derived, so a redelivery is the same event (see the `id` module): for c, u and
//!   d from (topic, table, aggregate id, LSN, op); for r from (topic, table, aggregate id, the
//!   mapped row), so re-snapshotting an unchanged row yields the ids of the first snapshot and
//!   changes nothing, not even the raw events table.
//! - `occurred_at`: `source.ts_ms` (the commit time; for a snapshot read, when it was read),
//!   else the envelope's `ts_ms`. `producer`: the source's `producer`, else
//!   `debezium:<source.name>`. No correlation or causation id.
//! - Columns are converted as the `convert` module describes, then the event is built with
//!   [`crate::avro::json_to_avro`] against the event type's schema and read back with
//!   [`crate::avro::avro_to_json`], exactly as a producer's event would be: a column that does
//!   not fit is an error naming the field and the column. A column holding Debezium's
//!   "unavailable value" placeholder (an unchanged TOASTed value) is left out of the event, so
//!   projections keep what they have.
//!
//! # Outbox events (`format = "outbox"`)
//!
//! The outbox event router's record: key = `aggregateid`, value = the `payload` column (JSON text,
//! or a JSON object with `table.expand.json.payload`), headers from
//! `table.fields.additional.placement`. The payload object holds the sluice event's payload
//! fields; the envelope comes from where the source says: `event_id` (default header `id`, the
//! outbox row's UUID), `event_type` (the outbox type, translated by `[cdc.<name>.events]`),
//! `aggregate_version` (set by the application: the outbox pattern has no other source of
//! order), `occurred_at` (default: the record timestamp), `aggregate_id` = the record key;
//! `correlation_id`, `causation_id`, `traceparent` and `tracestate` from payload fields or headers
//! of those names. The event is checked against its schema like a producer's.

mod convert;
mod id;
mod record;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use apache_avro::Schema;
use serde_json::{Map, Value as Json};

pub use record::{CdcRecord, RowSchema};

use convert::{Context, kind_of};
pub(crate) use convert::{Target, check_target};

use crate::avro::{avro_to_json, json_to_avro};
use crate::event::{Event, Position};
use crate::topology::{
    CdcFormat, CdcSourceConfig, ColumnMapping, DebeziumConfig, FieldRef, OutboxConfig, Topology, is_envelope_field,
};

/// What one CDC record means for the projections.
// Nearly every record is an event: boxing it would cost an allocation per record to save bytes
// on the rare tombstone.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum CdcOutcome {
    /// A sluice event to project like any other.
    Event {
        /// The event.
        event: Event,
        /// What happened at the source.
        kind: ChangeKind,
    },
    /// A null-value record (after a delete, for log compaction): acknowledge it, nothing to write.
    Tombstone {
        /// The entity it is about.
        aggregate_id: String,
    },
    /// A record that is not about one entity: acknowledge it, nothing to write, log the reason.
    Skip {
        /// Why.
        reason: SkipReason,
    },
}

/// The source operation behind an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `op = c`: a row was inserted.
    Create,
    /// `op = u`: a row was updated.
    Update,
    /// `op = r`: a row was read by a snapshot.
    Read,
    /// `op = d`: a row was deleted.
    Delete,
    /// An outbox event.
    Outbox,
}

/// Why a record was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// `op = t`: a whole table was truncated; projections are not told (erase its entities by
    /// other means, e.g. a replay into fresh projections).
    #[error("table {table} was truncated: a truncate is not about one entity, so nothing is projected")]
    Truncate {
        /// `schema.table`.
        table: String,
    },
    /// `op = m`: a logical decoding message (`pg_logical_emit_message`), not a row change.
    #[error("a logical decoding message is not a row change")]
    Message,
}

/// Why a CDC record cannot be mapped. Permanent: the record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdcError {
    /// The record is not what the format says it is.
    #[error("{0}")]
    Malformed(String),
    /// A mapped column is absent from the row image.
    #[error("column `{column}` (for event field `{field}`) is not in the record's `{image}`")]
    MissingColumn {
        /// The column.
        column: String,
        /// The event field it maps to.
        field: String,
        /// `after` or `before`.
        image: &'static str,
    },
    /// A column's value cannot become its event field.
    #[error("column `{column}` (for event field `{field}`): {reason}")]
    Column {
        /// The column.
        column: String,
        /// The event field it maps to.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The outbox event's type is not in `[cdc.<name>.events]`.
    #[error("outbox event type {outbox_type:?} is not mapped in [cdc.{source_name}.events]")]
    UnknownOutboxType {
        /// The source's name.
        source_name: String,
        /// The type found.
        outbox_type: String,
    },
    /// The event built does not fit its event type's schema.
    #[error("{event_type}: {reason}")]
    Event {
        /// The event type.
        event_type: String,
        /// What does not fit (the field, and its column when it has one).
        reason: String,
    },
}

fn malformed(message: impl Into<String>) -> CdcError {
    CdcError::Malformed(message.into())
}

/// One field of an event type, as the mapper needs it.
#[derive(Debug, Clone)]
struct FieldShape {
    target: Target,
    nullable: bool,
}

/// An event type's schema and fields.
#[derive(Debug, Clone)]
struct EventShape {
    schema: Schema,
    fields: BTreeMap<String, FieldShape>,
}

impl EventShape {
    fn of(schema: &Schema) -> Self {
        let fields = match schema {
            Schema::Record(r) => r
                .fields
                .iter()
                .map(|f| {
                    let nullable =
                        matches!(&f.schema, Schema::Union(u) if u.variants().iter().any(|v| matches!(v, Schema::Null)));
                    (f.name.clone(), FieldShape { target: Target::of(f), nullable })
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        Self { schema: schema.clone(), fields }
    }
}

/// Maps the records of one `[cdc.<name>]` source to sluice events. Built once per worker from the
/// validated topology, so every event type and field it uses exists.
#[derive(Debug, Clone)]
pub struct CdcMapper {
    name: String,
    source: CdcSourceConfig,
    events: BTreeMap<String, EventShape>,
}

impl CdcMapper {
    /// The mapper of source `name`; `None` when the topology has no such source.
    pub fn new(topology: &Topology, name: &str) -> Option<Self> {
        let source = topology.cdc_source(name)?.clone();
        let events = source
            .event_types()
            .into_iter()
            .filter_map(|t| topology.event(t).map(|info| (t.to_owned(), EventShape::of(&info.schema))))
            .collect();
        Some(Self { name: name.to_owned(), source, events })
    }

    /// The source's name in the topology.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source's configuration.
    pub fn source(&self) -> &CdcSourceConfig {
        &self.source
    }

    /// Maps one record. `headers` are the Kafka headers, `timestamp_ms` the record timestamp,
    /// `schema_id` the registry id of the value's writer schema (0 for JSON): it becomes the
    /// event's [`Event::schema_id`].
    pub fn map(
        &self,
        record: &CdcRecord,
        headers: &[(String, Vec<u8>)],
        position: Position,
        timestamp_ms: Option<i64>,
        schema_id: u32,
    ) -> Result<CdcOutcome, CdcError> {
        let at = At { position, schema_id };
        match &self.source.format {
            CdcFormat::Debezium(config) => self.debezium(config, record, at),
            CdcFormat::Outbox(config) => self.outbox(config, record, headers, timestamp_ms, at),
        }
    }

    fn debezium(&self, config: &DebeziumConfig, record: &CdcRecord, at: At) -> Result<CdcOutcome, CdcError> {
        let Some(value) = &record.value else {
            let key = record.key.as_ref().ok_or_else(|| malformed("a record without key and value"))?;
            let row =
                key.as_object().ok_or_else(|| malformed("the key of a tombstone is not an object of key columns"))?;
            return Ok(CdcOutcome::Tombstone { aggregate_id: aggregate_id(&config.key, row, "key")? });
        };
        let envelope =
            value.as_object().ok_or_else(|| malformed("the value is not a Debezium change event (an object)"))?;
        let op = envelope.get("op").and_then(Json::as_str).ok_or_else(|| malformed("the change event has no `op`"))?;
        let source = envelope.get("source").and_then(Json::as_object);
        let text = |name: &str| source.and_then(|s| s.get(name)).and_then(Json::as_str);
        let table = match (text("schema"), text("table")) {
            (Some(schema), Some(table)) => format!("{schema}.{table}"),
            _ => self.source.topic.clone(),
        };
        let (kind, image) = match op {
            "c" => (ChangeKind::Create, "after"),
            "u" => (ChangeKind::Update, "after"),
            "r" => (ChangeKind::Read, "after"),
            "d" => (ChangeKind::Delete, "before"),
            "t" => return Ok(CdcOutcome::Skip { reason: SkipReason::Truncate { table } }),
            "m" => return Ok(CdcOutcome::Skip { reason: SkipReason::Message }),
            other => return Err(malformed(format!("unknown `op` {other:?}: expected c, u, d, r, t or m"))),
        };
        let number = |name: &str| source.and_then(|s| s.get(name)).and_then(Json::as_i64);
        let lsn =
            number("lsn").ok_or_else(|| malformed("`source.lsn` is missing: a change needs its LSN as version"))?;
        let occurred_at = number("ts_ms")
            .or_else(|| envelope.get("ts_ms").and_then(Json::as_i64))
            .ok_or_else(|| malformed("neither `source.ts_ms` nor `ts_ms` is there: no time for the event"))?;
        // A delete without its before image (not what Debezium writes, but cheap to accept) still
        // has the key columns in the record key.
        let (row, image) = match envelope.get(image) {
            Some(Json::Object(row)) => (row, image),
            None | Some(Json::Null) if kind == ChangeKind::Delete => {
                match record.key.as_ref().and_then(Json::as_object) {
                    Some(key) => (key, "key"),
                    None => return Err(malformed("a delete with neither `before` nor a record key")),
                }
            }
            _ => return Err(malformed(format!("op {op:?} without an `{image}` row"))),
        };
        let aggregate_id = aggregate_id(&config.key, row, image)?;
        let event_type = if kind == ChangeKind::Delete { &config.delete_event } else { &config.upsert_event };
        let shape = self.shape(event_type)?;
        let cx = Context { has_schema: record.schema.is_some(), decimal_handling: config.decimal_handling };
        let mut payload = Map::new();
        let mut unavailable = Vec::new();
        for (field, mapping) in &config.columns {
            let Some(field_shape) = shape.fields.get(field) else { continue };
            let value = match row.get(&mapping.column) {
                // A delete carries what its before image has; an upsert needs every column.
                None | Some(Json::Null) if kind == ChangeKind::Delete => continue,
                None => {
                    return Err(CdcError::MissingColumn {
                        column: mapping.column.clone(),
                        field: field.clone(),
                        image,
                    });
                }
                Some(Json::String(s)) if *s == config.unavailable_value => {
                    unavailable.push(field.clone());
                    continue;
                }
                Some(v) => v,
            };
            let semantic = record.schema.as_ref().and_then(|s| s.get(&mapping.column));
            let converted = convert::convert(value, mapping, semantic, &field_shape.target, cx)
                .map_err(|reason| CdcError::Column { column: mapping.column.clone(), field: field.clone(), reason })?;
            payload.insert(field.clone(), converted);
        }
        let lsn_text = lsn.to_string();
        let event_id = match kind {
            ChangeKind::Read => id::derive(&[
                b"sluice.cdc.read",
                self.source.topic.as_bytes(),
                table.as_bytes(),
                aggregate_id.as_bytes(),
                Json::Object(payload.clone()).to_string().as_bytes(),
            ]),
            _ => id::derive(&[
                b"sluice.cdc.change",
                self.source.topic.as_bytes(),
                table.as_bytes(),
                aggregate_id.as_bytes(),
                lsn_text.as_bytes(),
                op.as_bytes(),
            ]),
        };
        let producer = self.source.producer.clone().unwrap_or_else(|| match text("name") {
            Some(name) => format!("debezium:{name}"),
            None => format!("debezium:{}", self.name),
        });
        let envelope = Envelope {
            event_id,
            event_type,
            aggregate_id,
            version: Json::from(lsn),
            occurred_at: Json::from(occurred_at),
            producer,
        };
        let event = self.build(envelope, payload, Map::new(), &unavailable, &config.columns, at)?;
        Ok(CdcOutcome::Event { event, kind })
    }

    fn outbox(
        &self,
        config: &OutboxConfig,
        record: &CdcRecord,
        headers: &[(String, Vec<u8>)],
        timestamp_ms: Option<i64>,
        at: At,
    ) -> Result<CdcOutcome, CdcError> {
        let aggregate_id = match &record.key {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(malformed(format!("the outbox record's key is {}, not the aggregate id", kind_of(other))));
            }
            None => return Err(malformed("the outbox record has no key (the aggregate id)")),
        };
        let mut payload = match &record.value {
            None => return Ok(CdcOutcome::Tombstone { aggregate_id }),
            Some(Json::String(text)) => match serde_json::from_str(text) {
                Ok(Json::Object(o)) => o,
                Ok(other) => {
                    return Err(malformed(format!("the outbox payload is {}, not an object", kind_of(&other))));
                }
                Err(e) => return Err(malformed(format!("the outbox payload is not JSON: {e}"))),
            },
            Some(Json::Object(o)) => o.clone(),
            Some(other) => return Err(malformed(format!("the outbox payload is {}, not an object", kind_of(other)))),
        };
        let mut take = |place: &FieldRef, what: &str| -> Result<Json, CdcError> {
            let found = match place {
                FieldRef::Header(name) => header(headers, name),
                FieldRef::Field(name) => payload.shift_remove(name),
                FieldRef::Key => Some(Json::String(aggregate_id.clone())),
                FieldRef::Timestamp => timestamp_ms.map(Json::from),
            };
            found
                .filter(|v| !v.is_null())
                .ok_or_else(|| malformed(format!("the outbox record has no {what} ({place})")))
        };
        let event_id = take(&config.event_id, "event id")?;
        let outbox_type = match take(&config.event_type, "event type")? {
            Json::String(s) => s,
            other => return Err(malformed(format!("the outbox event type is {}, not a string", kind_of(&other)))),
        };
        let version = match take(&config.version, "version")? {
            Json::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Json::from)
                .map_err(|_| malformed(format!("the outbox version {s:?} is not an integer")))?,
            other => other,
        };
        let occurred_at = take(&config.occurred_at, "time")?;
        let Some(event_type) = config.events.get(&outbox_type) else {
            return Err(CdcError::UnknownOutboxType { source_name: self.name.clone(), outbox_type });
        };
        let mut optional = Map::new();
        for name in ["correlation_id", "causation_id", "traceparent", "tracestate"] {
            if let Some(value) = payload.shift_remove(name).or_else(|| header(headers, name)) {
                optional.insert(name.to_owned(), value);
            }
        }
        if let Some(name) = payload.keys().find(|k| is_envelope_field(k)) {
            return Err(malformed(format!(
                "the outbox payload has a field `{name}`: the envelope comes from the source's settings, not the payload"
            )));
        }
        let event_id = match event_id {
            Json::String(s) => s,
            other => other.to_string(),
        };
        let producer = self.source.producer.clone().unwrap_or_else(|| format!("outbox:{}", self.name));
        let envelope = Envelope { event_id, event_type, aggregate_id, version, occurred_at, producer };
        let event = self.build(envelope, payload, optional, &[], &BTreeMap::new(), at)?;
        Ok(CdcOutcome::Event { event, kind: ChangeKind::Outbox })
    }

    fn shape(&self, event_type: &str) -> Result<&EventShape, CdcError> {
        self.events.get(event_type).ok_or_else(|| CdcError::Event {
            event_type: event_type.to_owned(),
            reason: "the topology has no schema for it".to_owned(),
        })
    }

    /// Builds the event as a producer would (JSON → Avro with the event's schema) and reads it
    /// back as a worker would (Avro → JSON → [`Event`]). `unavailable` fields get a stand-in
    /// that satisfies the schema and are then left out of the payload.
    fn build(
        &self,
        envelope: Envelope<'_>,
        payload: Map<String, Json>,
        optional: Map<String, Json>,
        unavailable: &[String],
        columns: &BTreeMap<String, ColumnMapping>,
        at: At,
    ) -> Result<Event, CdcError> {
        let event_type = envelope.event_type.to_owned();
        let shape = self.shape(&event_type)?;
        let mut record = Map::new();
        record.insert("event_id".into(), Json::String(envelope.event_id));
        record.insert("event_type".into(), Json::String(event_type.clone()));
        record.insert("aggregate_id".into(), Json::String(envelope.aggregate_id));
        record.insert("aggregate_version".into(), envelope.version);
        record.insert("occurred_at".into(), envelope.occurred_at);
        record.insert("producer".into(), Json::String(envelope.producer));
        record.extend(optional);
        record.extend(payload);
        for field in unavailable {
            if let Some(stand_in) = shape.fields.get(field).and_then(stand_in) {
                record.insert(field.clone(), stand_in);
            }
        }
        let fail = |reason: String| CdcError::Event { event_type: event_type.clone(), reason };
        let value = json_to_avro(&Json::Object(record), &shape.schema).map_err(|e| {
            let field = e.path.strip_prefix("$.").map(|p| p.split(['.', '[']).next().unwrap_or(p));
            match field.and_then(|f| columns.get(f)) {
                Some(m) => fail(format!("{e} (column `{}`)", m.column)),
                None => fail(e.to_string()),
            }
        })?;
        let mut event = Event::from_record(avro_to_json(&value, &shape.schema), at.position, at.schema_id)
            .map_err(|e| fail(e.to_string()))?;
        for field in unavailable {
            event.payload.shift_remove(field);
        }
        Ok(event)
    }
}

/// Where the record was read.
#[derive(Debug, Clone)]
struct At {
    position: Position,
    schema_id: u32,
}

/// The envelope of an event being built, in producer JSON.
struct Envelope<'a> {
    event_id: String,
    event_type: &'a str,
    aggregate_id: String,
    version: Json,
    occurred_at: Json,
    producer: String,
}

/// A value the schema accepts for a field whose column was unavailable (it leaves the payload
/// right after), or `None` when the field takes its default anyway.
fn stand_in(field: &FieldShape) -> Option<Json> {
    if field.nullable {
        return Some(Json::Null);
    }
    Some(match field.target {
        Target::String => Json::from(""),
        Target::Uuid => Json::from("00000000-0000-0000-0000-000000000000"),
        Target::Int | Target::Long | Target::TimestampMillis | Target::TimestampMicros | Target::Date => Json::from(0),
        Target::Float | Target::Double => Json::from(0.0),
        Target::Boolean => Json::Bool(false),
        Target::Decimal { .. } => Json::from("0"),
        Target::Enum | Target::Other(_) => return None,
    })
}

/// The last header called `name`: its bytes as a JSON string or number when they are one (a JSON
/// header converter), else as UTF-8 text (Kafka Connect's SimpleHeaderConverter).
fn header(headers: &[(String, Vec<u8>)], name: &str) -> Option<Json> {
    let (_, bytes) = headers.iter().rev().find(|(k, _)| k == name)?;
    let text = String::from_utf8_lossy(bytes);
    match serde_json::from_str::<Json>(&text) {
        Ok(v @ (Json::String(_) | Json::Number(_))) => Some(v),
        _ => Some(Json::String(text.into_owned())),
    }
}

/// The aggregate id of a row: its key columns' values, joined with `:`.
fn aggregate_id(key: &[String], row: &Map<String, Json>, image: &'static str) -> Result<String, CdcError> {
    let mut parts = Vec::with_capacity(key.len());
    for column in key {
        let text = match row.get(column) {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(Json::Bool(b)) => b.to_string(),
            Some(Json::Null) | None => {
                return Err(malformed(format!("key column `{column}` is missing from the record's `{image}`")));
            }
            Some(other) => {
                return Err(malformed(format!(
                    "key column `{column}` is {}: a key is made of strings and integers",
                    kind_of(other)
                )));
            }
        };
        parts.push(text);
    }
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    Ok(parts.iter().map(|p| p.replace('\\', "\\\\").replace(':', "\\:")).collect::<Vec<_>>().join(":"))
}
