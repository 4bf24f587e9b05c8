//! The decode plan: a writer schema compiled into [`Node`]s, and how a [`Plan`] reads a body
//! with an [`Input`] into JSON and a [`Sink`].

use std::ops::Range;

use apache_avro::Schema;
use apache_avro::schema::ResolvedSchema;
use serde_json::{Map, Value as Json};

use super::compiler::Compiler;
use super::input::Input;
use super::resolution::resolution;
use super::sink::{EventSink, Sink, envelope_slot};
use crate::calendar::Unit;
use crate::event::EventError;

/// How to read one value: the writer schema with logical types folded into what they read as,
/// named references inlined.
#[derive(Debug)]
pub(super) enum Node {
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
pub(super) enum Plan {
    /// A record, whose fields become the envelope and the payload.
    Record(RecordPlan),
    /// Anything else: no envelope.
    Other(Node),
}

#[derive(Debug)]
pub(super) struct RecordPlan {
    /// The writer's fields, in the order they are written.
    pub(super) fields: Box<[WriterField]>,
    /// When resolving: the reader's fields, in the order of the event.
    pub(super) reader: Option<Box<[ReaderField]>>,
    /// The reader keeps the writer's fields in the writer's order (fields added or dropped, not
    /// moved): values go out as they are read, defaults in between, nothing is buffered.
    pub(super) in_order: bool,
    /// Then: the reader's last fields, all defaults, after the last writer field it has.
    pub(super) trailing: Range<usize>,
    /// Entries of the record's JSON object and of the event's payload.
    pub(super) json_len: usize,
    pub(super) payload_len: usize,
}

#[derive(Debug)]
pub(super) struct WriterField {
    pub(super) node: Node,
    /// Where the value goes without resolution.
    pub(super) out: Out,
    /// Where it goes when resolving: the reader field's index, `None` when the reader dropped it.
    pub(super) reader_index: Option<usize>,
    /// When resolving in order: the reader fields (all defaults) that come before this one.
    pub(super) defaults_before: Range<usize>,
}

impl WriterField {
    /// Reads the field's value; an envelope timestamp as its count when `counts_envelope`.
    pub(super) fn read(&self, input: &mut Input<'_>, counts_envelope: bool) -> Read<Json> {
        match &self.node {
            Node::Timestamp { .. } if counts_envelope && self.out.envelope.is_some() => Ok(Json::from(input.long()?)),
            node => input.read(node),
        }
    }
}

#[derive(Debug)]
pub(super) struct ReaderField {
    pub(super) out: Out,
    /// The JSON of the field's default, for a field the writer does not have.
    pub(super) default: Option<Json>,
}

/// A field of the decoded record.
#[derive(Debug)]
pub(super) struct Out {
    pub(super) name: String,
    /// Its position in [`ENVELOPE_FIELDS`](crate::event::ENVELOPE_FIELDS), for an envelope field.
    pub(super) envelope: Option<usize>,
}

/// The body does not read with the plan: apache-avro has the last word, with its precise error.
#[derive(Debug)]
pub(super) struct Bail;

pub(super) type Read<T> = Result<T, Bail>;

impl Plan {
    /// `None` when the plan would not read exactly like apache-avro.
    pub(super) fn compile(writer: &Schema, reader: Option<&Schema>) -> Option<Self> {
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

    pub(super) fn json(&self, body: &[u8]) -> Read<Json> {
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
    pub(super) fn event(&self, body: &[u8], sink: &mut EventSink) -> Read<Result<(), EventError>> {
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

pub(super) fn payload_len<'a>(outs: impl Iterator<Item = &'a Out>) -> usize {
    outs.filter(|out| out.envelope.is_none()).count()
}

impl RecordPlan {
    pub(super) fn read(&self, input: &mut Input<'_>, sink: &mut impl Sink) -> Read<()> {
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
