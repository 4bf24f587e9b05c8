//! Resolution in the plan: when the reader schema differs from the writer's only in which fields
//! there are and in what order, the plan reads with the writer's and writes the reader's fields
//! (defaults for the missing ones); anything else is left to apache-avro.

use apache_avro::Schema;
use apache_avro::schema::{RecordField, RecordSchema, ResolvedSchema, UuidSchema};
use apache_avro::types::Value;
use serde_json::Value as Json;

use super::plan::{Out, ReaderField, RecordPlan, payload_len};
use super::sink::envelope_slot;
use crate::avro::avro_to_json;
use crate::avro::names::has_ref;

/// The resolving plan of `plan` (the writer's) to `reader`, when resolution is only about
/// fields: each reader field is a writer field of the same name with the very same type, or has
/// a default; writer fields the reader lacks are dropped. Type changes (promotions, union
/// branches, renamed enum symbols) are left to apache-avro.
pub(super) fn resolution(mut plan: RecordPlan, writer: &RecordSchema, reader: &Schema) -> Option<RecordPlan> {
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
pub(super) fn defaults(reader: &RecordSchema, missing: Vec<RecordField>) -> Option<Vec<(String, Json)>> {
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
pub(super) fn same_plain_type(writer: &Schema, reader: &Schema) -> bool {
    pub(super) fn plain(schema: &Schema) -> bool {
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
