//! Avro bodies read straight into JSON and events: the consuming hot path.
//!
//! A worker splits a record with [`crate::framing::unframe`] and looks the schema id up in the
//! registry once; [`EventDecoder::new`] then compiles that writer schema (and the reader schema
//! of the topology, when they differ) into a decode plan, once per schema id. Each body is read
//! by the plan directly into the `serde_json` values [`avro_to_json`] makes, and the envelope
//! fields directly into the [`Envelope`] — no apache-avro `Value` in between, no schema names
//! resolved per record, no map built only to take the envelope out of it again. The payload keeps
//! the reader schema's field order.
//!
//! apache-avro stays the reference. A schema the plan does not cover (big-decimal, recursive
//! types, a reader schema that changes more than which fields there are and in what order) is
//! always read by [`decode`]; so is every body the plan cannot read, so errors are exactly those
//! of [`decode`], which is strict (a body cut short is an error wherever it ends, where
//! apache-avro alone would read a missing union index as `null`). Property tests hold the two
//! paths equal.

use std::cmp::Ordering;
use std::mem::size_of;
use std::ops::Range;
use std::sync::Arc;

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, NamesRef, NamespaceRef, RecordField,
    RecordSchema, ResolvedSchema, UuidSchema,
};
use apache_avro::types::Value;
use apache_avro::util::{DEFAULT_MAX_ALLOCATION_BYTES, max_allocation_bytes};
use apache_avro::{Duration, Schema, Uuid};
use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

use super::names::has_ref;
use super::scalars::hex;
use super::to_json::time_json;
use super::{DecodeError, avro_to_json, decode};
use crate::calendar::{Unit, format_date, format_date_time};
use crate::event::{ENVELOPE_FIELDS, Envelope, Event, EventError, Position, millis_of};

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

/// The position of a field in [`ENVELOPE_FIELDS`].
fn envelope_slot(name: &str) -> Option<usize> {
    ENVELOPE_FIELDS.iter().position(|field| *field == name)
}

/// The envelope fields of a record as read, by their position in [`ENVELOPE_FIELDS`].
#[derive(Debug, Default)]
struct Slots([Option<Json>; ENVELOPE_FIELDS.len()]);

impl Slots {
    /// The same checks, in the same order, with the same errors as [`Event::from_record`].
    fn take_envelope(&mut self) -> Result<Envelope, EventError> {
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

/// How to read one value: the writer schema with logical types folded into what they read as,
/// named references inlined.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    /// `date`: days as `YYYY-MM-DD`.
    Date,
    /// `time-millis` (an int) or `time-micros` (a long), as `HH:MM:SS.f…`.
    Time(Unit),
    /// A timestamp of `unit`s, with a `Z` when `zoned` (not `local-timestamp-*`).
    Timestamp {
        unit: Unit,
        zoned: bool,
    },
    Float,
    Double,
    Bytes,
    String,
    /// A `uuid` string.
    Uuid,
    /// A `uuid` as 16 bytes.
    UuidBytes,
    /// A `uuid` as a `fixed` of 16.
    UuidFixed,
    Fixed(usize),
    Enum(Box<[String]>),
    /// A `decimal`: bytes, or a `fixed` of the given size; its scale.
    Decimal {
        fixed: Option<usize>,
        scale: usize,
    },
    Duration,
    Union(Box<[Node]>),
    /// The common `["null", T]` (`null_index` 0) or `[T, "null"]` (1).
    Nullable {
        null_index: i64,
        inner: Box<Node>,
    },
    Array(Box<Node>),
    Map(Box<Node>),
    Record(Box<[(String, Node)]>),
}

/// A compiled schema.
#[derive(Debug)]
enum Plan {
    /// A record, whose fields become the envelope and the payload.
    Record(RecordPlan),
    /// Anything else: no envelope.
    Other(Node),
}

#[derive(Debug)]
struct RecordPlan {
    /// The writer's fields, in the order they are written.
    fields: Box<[WriterField]>,
    /// When resolving: the reader's fields, in the order of the event.
    reader: Option<Box<[ReaderField]>>,
    /// The reader keeps the writer's fields in the writer's order (fields added or dropped, not
    /// moved): values go out as they are read, defaults in between, nothing is buffered.
    in_order: bool,
    /// Then: the reader's last fields, all defaults, after the last writer field it has.
    trailing: Range<usize>,
    /// Entries of the record's JSON object and of the event's payload.
    json_len: usize,
    payload_len: usize,
}

#[derive(Debug)]
struct WriterField {
    node: Node,
    /// Where the value goes without resolution.
    out: Out,
    /// Where it goes when resolving: the reader field's index, `None` when the reader dropped it.
    reader_index: Option<usize>,
    /// When resolving in order: the reader fields (all defaults) that come before this one.
    defaults_before: Range<usize>,
}

impl WriterField {
    /// Reads the field's value; an envelope timestamp as its count when `counts_envelope`.
    fn read(&self, input: &mut Input<'_>, counts_envelope: bool) -> Read<Json> {
        match &self.node {
            Node::Timestamp { .. } if counts_envelope && self.out.envelope.is_some() => Ok(Json::from(input.long()?)),
            node => input.read(node),
        }
    }
}

#[derive(Debug)]
struct ReaderField {
    out: Out,
    /// The JSON of the field's default, for a field the writer does not have.
    default: Option<Json>,
}

/// A field of the decoded record.
#[derive(Debug)]
struct Out {
    name: String,
    /// Its position in [`ENVELOPE_FIELDS`], for an envelope field.
    envelope: Option<usize>,
}

/// The body does not read with the plan: apache-avro has the last word, with its precise error.
#[derive(Debug)]
struct Bail;

type Read<T> = Result<T, Bail>;

/// Where the fields of a record go.
trait Sink {
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

struct EventSink {
    envelope: Slots,
    payload: Map<String, Json>,
}

impl EventSink {
    fn new(plan: &Plan) -> Self {
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

impl Plan {
    /// `None` when the plan would not read exactly like apache-avro.
    fn compile(writer: &Schema, reader: Option<&Schema>) -> Option<Self> {
        let names = ResolvedSchema::new(writer).ok()?;
        let mut compiler = Compiler { names: names.get_names(), stack: Vec::new() };
        let Schema::Record(record) = writer else {
            return match reader {
                None => compiler.node(writer, None).map(Plan::Other),
                Some(_) => None,
            };
        };
        let nodes = compiler.record_fields(record, None)?;
        let fields: Box<[WriterField]> = nodes
            .into_iter()
            .map(|(name, node)| WriterField {
                node,
                out: Out { envelope: envelope_slot(&name), name },
                reader_index: None,
                defaults_before: 0..0,
            })
            .collect();
        let plan = RecordPlan {
            in_order: false,
            trailing: 0..0,
            json_len: fields.len(),
            payload_len: payload_len(fields.iter().map(|f| &f.out)),
            fields,
            reader: None,
        };
        match reader {
            None => Some(Plan::Record(plan)),
            Some(reader) => resolution(plan, record, reader).map(Plan::Record),
        }
    }

    fn json(&self, body: &[u8]) -> Read<Json> {
        let mut input = Input::new(body);
        let json = match self {
            Plan::Record(plan) => {
                let mut map = Map::with_capacity(plan.json_len);
                plan.read(&mut input, &mut map)?;
                Json::Object(map)
            }
            Plan::Other(node) => input.read(node)?,
        };
        input.finish()?;
        Ok(json)
    }

    /// Reads the envelope and the payload into `sink`; the event error of a body that decoded
    /// but is not a record.
    fn event(&self, body: &[u8], sink: &mut EventSink) -> Read<Result<(), EventError>> {
        let mut input = Input::new(body);
        let split = match self {
            Plan::Record(plan) => {
                plan.read(&mut input, sink)?;
                Ok(())
            }
            Plan::Other(node) => {
                input.read(node)?;
                Err(EventError::NotARecord)
            }
        };
        input.finish()?;
        Ok(split)
    }
}

fn payload_len<'a>(outs: impl Iterator<Item = &'a Out>) -> usize {
    outs.filter(|out| out.envelope.is_none()).count()
}

impl RecordPlan {
    fn read(&self, input: &mut Input<'_>, sink: &mut impl Sink) -> Read<()> {
        let Some(reader) = &self.reader else {
            for field in &self.fields {
                let value = field.read(input, sink.counts_envelope())?;
                sink.put(&field.out, value);
            }
            return Ok(());
        };
        let default = |field: &ReaderField| field.default.clone().ok_or(Bail);
        if self.in_order {
            for field in &self.fields {
                for before in reader.get(field.defaults_before.clone()).ok_or(Bail)? {
                    sink.put(&before.out, default(before)?);
                }
                let value = field.read(input, sink.counts_envelope())?;
                if let Some(to) = field.reader_index.and_then(|i| reader.get(i)) {
                    sink.put(&to.out, value);
                }
            }
            for after in reader.get(self.trailing.clone()).ok_or(Bail)? {
                sink.put(&after.out, default(after)?);
            }
            return Ok(());
        }
        let mut values: Vec<Option<Json>> = vec![None; reader.len()];
        for field in &self.fields {
            let value = field.read(input, sink.counts_envelope())?;
            if let Some(slot) = field.reader_index.and_then(|i| values.get_mut(i)) {
                *slot = Some(value);
            }
        }
        for (field, value) in reader.iter().zip(values) {
            // The plan gives every reader field either a writer field or a default.
            let value = match value {
                Some(value) => value,
                None => default(field)?,
            };
            sink.put(&field.out, value);
        }
        Ok(())
    }
}

/// The resolving plan of `plan` (the writer's) to `reader`, when resolution is only about
/// fields: each reader field is a writer field of the same name with the very same type, or has
/// a default; writer fields the reader lacks are dropped. Type changes (promotions, union
/// branches, renamed enum symbols) are left to apache-avro.
fn resolution(mut plan: RecordPlan, writer: &RecordSchema, reader: &Schema) -> Option<RecordPlan> {
    // apache-avro's errors for a reader schema whose names do not resolve.
    ResolvedSchema::new(reader).ok()?;
    let Schema::Record(reader) = reader else { return None };
    let mut missing = Vec::new();
    let mut fields = Vec::with_capacity(reader.fields.len());
    for (index, field) in reader.fields.iter().enumerate() {
        let out = Out { name: field.name.clone(), envelope: envelope_slot(&field.name) };
        // Resolution looks writer fields up by name only, the last of a name winning.
        match writer.fields.iter().rposition(|w| w.name == field.name) {
            Some(w) => {
                if !same_plain_type(&writer.fields[w].schema, &field.schema) {
                    return None;
                }
                plan.fields[w].reader_index = Some(index);
                fields.push(ReaderField { out, default: None });
            }
            None => {
                missing.push(field.clone());
                fields.push(ReaderField { out, default: None });
            }
        }
    }
    // A writer field of a name the reader has twice would feed only one of them.
    if reader.fields.iter().enumerate().any(|(i, f)| reader.fields[..i].iter().any(|g| g.name == f.name)) {
        return None;
    }
    if !missing.is_empty() {
        for (name, json) in defaults(reader, missing)? {
            let field = fields.iter_mut().find(|f| f.out.name == name)?;
            field.default = Some(json);
        }
    }
    // In order when the writer fields the reader keeps come in the reader's order.
    let mut next = 0;
    plan.in_order = true;
    for field in plan.fields.iter_mut() {
        let Some(index) = field.reader_index else { continue };
        if index < next {
            plan.in_order = false;
            break;
        }
        field.defaults_before = next..index;
        next = index + 1;
    }
    plan.trailing = next..fields.len();
    plan.json_len = fields.len();
    plan.payload_len = payload_len(fields.iter().map(|f| &f.out));
    plan.reader = Some(fields.into_boxed_slice());
    Some(plan)
}

/// The JSON apache-avro's resolution gives the reader fields the writer lacks: their defaults,
/// resolved exactly as it resolves them, once.
fn defaults(reader: &RecordSchema, missing: Vec<RecordField>) -> Option<Vec<(String, Json)>> {
    if missing.iter().any(|f| has_ref(&f.schema)) {
        return None;
    }
    let only_missing = Schema::Record(RecordSchema::builder().name(reader.name.clone()).fields(missing).build());
    let values = Value::Record(Vec::new()).resolve(&only_missing).ok()?;
    match avro_to_json(&values, &only_missing) {
        Json::Object(json) => Some(json.into_iter().collect()),
        _ => None,
    }
}

/// Whether resolving a value of `writer` to `reader` is the identity: the same type, spelt the
/// same, with nothing apache-avro resolves by searching (unions of several non-null branches)
/// or by name (references) inside.
fn same_plain_type(writer: &Schema, reader: &Schema) -> bool {
    fn plain(schema: &Schema) -> bool {
        match schema {
            Schema::Null
            | Schema::Boolean
            | Schema::Int
            | Schema::Long
            | Schema::Float
            | Schema::Double
            | Schema::Bytes
            | Schema::String
            | Schema::Enum(_)
            | Schema::Uuid(UuidSchema::String)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            // Equal decimals only (see below): the plan reads the value at the writer's scale, the reader's.
            | Schema::Decimal(_) => true,
            Schema::Array(array) => plain(&array.items),
            Schema::Map(map) => plain(&map.types),
            Schema::Record(record) => record.fields.iter().all(|f| plain(&f.schema)),
            Schema::Union(union) => {
                union.variants().iter().filter(|s| !matches!(s, Schema::Null)).count() <= 1
                    && union.variants().iter().all(plain)
            }
            _ => false,
        }
    }
    plain(writer)
        && plain(reader)
        && serde_json::to_value(writer).ok().is_some_and(|w| serde_json::to_value(reader).ok() == Some(w))
}

/// Records nested deeper than this are left to apache-avro.
const MAX_DEPTH: usize = 32;

/// Turns schemas into [`Node`]s, inlining references; a recursive type does not compile.
struct Compiler<'a, 's> {
    names: &'a NamesRef<'s>,
    /// The records being compiled, innermost last.
    stack: Vec<Name>,
}

impl Compiler<'_, '_> {
    fn node(&mut self, schema: &Schema, ns: NamespaceRef<'_>) -> Option<Node> {
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::Time(Unit::Millis),
            Schema::TimeMicros => Node::Time(Unit::Micros),
            Schema::TimestampMillis => Node::Timestamp { unit: Unit::Millis, zoned: true },
            Schema::TimestampMicros => Node::Timestamp { unit: Unit::Micros, zoned: true },
            Schema::TimestampNanos => Node::Timestamp { unit: Unit::Nanos, zoned: true },
            Schema::LocalTimestampMillis => Node::Timestamp { unit: Unit::Millis, zoned: false },
            Schema::LocalTimestampMicros => Node::Timestamp { unit: Unit::Micros, zoned: false },
            Schema::LocalTimestampNanos => Node::Timestamp { unit: Unit::Nanos, zoned: false },
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Uuid(UuidSchema::String) => Node::Uuid,
            Schema::Uuid(UuidSchema::Bytes) => Node::UuidBytes,
            Schema::Uuid(UuidSchema::Fixed(FixedSchema { size: 16, .. })) => Node::UuidFixed,
            Schema::Fixed(fixed) => Node::Fixed(fixed.size),
            Schema::Enum(EnumSchema { symbols, .. }) => Node::Enum(symbols.clone().into_boxed_slice()),
            Schema::Decimal(DecimalSchema { inner, scale, .. }) => Node::Decimal {
                fixed: match inner {
                    InnerDecimalSchema::Bytes => None,
                    InnerDecimalSchema::Fixed(fixed) => Some(fixed.size),
                },
                scale: *scale,
            },
            Schema::Duration(FixedSchema { size: 12, .. }) => Node::Duration,
            Schema::Union(union) => match union.variants() {
                [Schema::Null, inner] => Node::Nullable { null_index: 0, inner: Box::new(self.node(inner, ns)?) },
                [inner, Schema::Null] => Node::Nullable { null_index: 1, inner: Box::new(self.node(inner, ns)?) },
                variants => Node::Union(variants.iter().map(|s| self.node(s, ns)).collect::<Option<_>>()?),
            },
            Schema::Array(array) => Node::Array(Box::new(self.node(&array.items, ns)?)),
            Schema::Map(map) => Node::Map(Box::new(self.node(&map.types, ns)?)),
            Schema::Record(record) => Node::Record(self.record_fields(record, ns)?.into_boxed_slice()),
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                // A named type that contains itself has no finite plan.
                if self.stack.contains(&full) || self.stack.len() >= MAX_DEPTH {
                    return None;
                }
                let named = *self.names.get(&full)?;
                self.node(named, full.namespace())?
            }
            // Always errors in apache-avro (a uuid fixed not of 16 bytes, a duration not of 12),
            // or is rare enough to leave to it (big-decimal).
            Schema::Uuid(UuidSchema::Fixed(_)) | Schema::Duration(_) | Schema::BigDecimal => return None,
        };
        Some(node)
    }

    fn record_fields(&mut self, record: &RecordSchema, ns: NamespaceRef<'_>) -> Option<Vec<(String, Node)>> {
        let full = record.name.fully_qualified_name(ns).into_owned();
        if self.stack.contains(&full) || self.stack.len() >= MAX_DEPTH {
            return None;
        }
        let inner = full.namespace().map(str::to_owned);
        self.stack.push(full);
        let fields = record
            .fields
            .iter()
            .map(|field| Some((field.name.clone(), self.node(&field.schema, inner.as_deref())?)))
            .collect();
        self.stack.pop();
        fields
    }
}

/// A body being read. Every length is checked against the bytes left before anything is
/// allocated, and against apache-avro's allocation limit, so a corrupt length costs nothing.
struct Input<'a> {
    rest: &'a [u8],
    /// apache-avro's limit (`apache_avro::util::max_allocation_bytes`): what it rejects, the
    /// plan rejects too.
    max_allocation: usize,
}

impl<'a> Input<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self { rest: body, max_allocation: max_allocation_bytes(DEFAULT_MAX_ALLOCATION_BYTES) }
    }

    fn finish(&self) -> Read<()> {
        if self.rest.is_empty() { Ok(()) } else { Err(Bail) }
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n).ok_or(Bail)?;
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk::<N>().ok_or(Bail)?;
        self.rest = rest;
        Ok(*head)
    }

    /// A zigzag varint of at most 10 bytes, bits past 64 dropped, like apache-avro.
    fn long(&mut self) -> Read<i64> {
        let mut z = 0_u64;
        for (i, &byte) in self.rest.iter().take(10).enumerate() {
            z |= u64::from(byte & 0x7f) << (i * 7);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                // Zigzag: the sign is the lowest bit.
                let magnitude = (z >> 1) as i64;
                return Ok(if z & 1 == 0 { magnitude } else { !magnitude });
            }
        }
        Err(Bail)
    }

    fn int(&mut self) -> Read<i32> {
        i32::try_from(self.long()?).map_err(|_| Bail)
    }

    fn len(&mut self) -> Read<usize> {
        let len = usize::try_from(self.long()?).map_err(|_| Bail)?;
        if len > self.max_allocation {
            return Err(Bail);
        }
        Ok(len)
    }

    fn bytes(&mut self) -> Read<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    fn str(&mut self) -> Read<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Bail)
    }

    /// The item count of the next block of an array or map (0: the end), `so_far` items read,
    /// each costing apache-avro `item_size` bytes.
    fn block_len(&mut self, so_far: usize, item_size: usize) -> Read<usize> {
        let raw = self.long()?;
        let len = match raw.cmp(&0) {
            Ordering::Equal => return Ok(0),
            // A negative count is followed by the block's size in bytes.
            Ordering::Less => {
                self.long()?;
                raw.checked_neg().ok_or(Bail)?
            }
            Ordering::Greater => raw,
        };
        let len = usize::try_from(len).map_err(|_| Bail)?;
        let total = so_far.checked_add(len).ok_or(Bail)?;
        if len > self.max_allocation || total.checked_mul(item_size).is_none_or(|bytes| bytes > self.max_allocation) {
            return Err(Bail);
        }
        Ok(len)
    }

    /// Reads one value as the JSON [`avro_to_json`] makes of it. The common types are read
    /// here, the rest in functions of their own (which keeps this one small and quick).
    fn read(&mut self, node: &Node) -> Read<Json> {
        let json = match node {
            Node::Null => Json::Null,
            Node::Boolean => match self.array::<1>()? {
                [0] => Json::Bool(false),
                [1] => Json::Bool(true),
                _ => return Err(Bail),
            },
            Node::Int => Json::from(self.int()?),
            Node::Long => Json::from(self.long()?),
            Node::Double => Number::from_f64(f64::from_le_bytes(self.array()?)).map_or(Json::Null, Json::Number),
            Node::String => Json::String(self.str()?.to_owned()),
            Node::Uuid => {
                let text = self.str()?;
                if is_canonical_uuid(text) { Json::String(text.to_owned()) } else { uuid_text(text)? }
            }
            Node::Enum(symbols) => {
                let index = usize::try_from(self.int()?).map_err(|_| Bail)?;
                Json::String(symbols.get(index).ok_or(Bail)?.clone())
            }
            Node::Nullable { null_index, inner } => match self.long()? {
                i if i == *null_index => Json::Null,
                i if i == 1 - *null_index => self.read(inner)?,
                _ => return Err(Bail),
            },
            Node::Union(branches) => {
                let index = usize::try_from(self.long()?).map_err(|_| Bail)?;
                self.read(branches.get(index).ok_or(Bail)?)?
            }
            Node::Record(fields) => self.record(fields)?,
            _ => self.read_other(node)?,
        };
        Ok(json)
    }

    #[inline(never)]
    fn record(&mut self, fields: &[(String, Node)]) -> Read<Json> {
        let mut object = Map::with_capacity(fields.len());
        for (name, node) in fields {
            let value = self.read(node)?;
            object.insert(name.clone(), value);
        }
        Ok(Json::Object(object))
    }

    #[inline(never)]
    fn read_other(&mut self, node: &Node) -> Read<Json> {
        let json = match node {
            Node::Float => {
                let f = f32::from_le_bytes(self.array()?);
                // As avro_to_json: through the shortest decimal form.
                f.to_string().parse::<f64>().ok().and_then(Number::from_f64).map_or(Json::Null, Json::Number)
            }
            Node::Bytes => Json::String(hex(self.bytes()?)),
            Node::Date => Json::String(format_date(i64::from(self.int()?))),
            Node::Time(unit) => {
                let count = match unit {
                    Unit::Millis => i64::from(self.int()?),
                    Unit::Micros | Unit::Nanos => self.long()?,
                };
                time_json(count, *unit)
            }
            Node::Timestamp { unit, zoned } => Json::String(format_date_time(self.long()?, *unit, *zoned)),
            Node::UuidBytes => {
                Json::String(Uuid::from_slice(self.bytes()?).map_err(|_| Bail)?.hyphenated().to_string())
            }
            Node::UuidFixed => Json::String(Uuid::from_bytes(self.array()?).hyphenated().to_string()),
            Node::Fixed(size) => Json::String(hex(self.take(*size)?)),
            Node::Decimal { fixed, scale } => {
                let bytes = match fixed {
                    Some(size) => self.take(*size)?,
                    None => self.bytes()?,
                };
                if bytes.is_empty() {
                    // No number at all: the reference says so (DecodeError::EmptyDecimal).
                    return Err(Bail);
                }
                Json::String(crate::decimal::text_from_be_bytes(bytes, *scale))
            }
            Node::Duration => {
                let d = Duration::from(self.array::<12>()?);
                let mut object = Map::with_capacity(3);
                object.insert("months".to_owned(), Json::from(u32::from(d.months())));
                object.insert("days".to_owned(), Json::from(u32::from(d.days())));
                object.insert("millis".to_owned(), Json::from(u32::from(d.millis())));
                Json::Object(object)
            }
            Node::Array(item) => {
                let mut items = Vec::new();
                loop {
                    let len = self.block_len(items.len(), size_of::<Value>())?;
                    if len == 0 {
                        break;
                    }
                    // Most items take a byte at least: never reserve beyond what the body holds.
                    items.reserve(len.min(self.rest.len()));
                    for _ in 0..len {
                        items.push(self.read(item)?);
                    }
                }
                Json::Array(items)
            }
            Node::Map(value) => {
                let mut entries = Vec::new();
                loop {
                    let len = self.block_len(entries.len(), size_of::<(String, Value)>())?;
                    if len == 0 {
                        break;
                    }
                    entries.reserve(len.min(self.rest.len()));
                    for _ in 0..len {
                        let key = self.str()?.to_owned();
                        entries.push((key, self.read(value)?));
                    }
                }
                // As avro_to_json: sorted keys; a repeated key keeps its last value, as in
                // apache-avro's HashMap.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let mut object = Map::with_capacity(entries.len());
                for (key, value) in entries {
                    object.insert(key, value);
                }
                Json::Object(object)
            }
            Node::Null
            | Node::Boolean
            | Node::Int
            | Node::Long
            | Node::Double
            | Node::String
            | Node::Uuid
            | Node::Enum(_)
            | Node::Nullable { .. }
            | Node::Union(_)
            | Node::Record(_) => self.read(node)?,
        };
        Ok(json)
    }
}

/// A UUID in another spelling (upper case, braces, no hyphens), as avro_to_json spells it.
#[inline(never)]
fn uuid_text(text: &str) -> Read<Json> {
    Ok(Json::String(Uuid::parse_str(text).map_err(|_| Bail)?.hyphenated().to_string()))
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex: already what avro_to_json makes of
/// the UUID, no need to parse and format it again.
fn is_canonical_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

#[cfg(test)]
mod tests;
