//! Avro values → JSON: a value decoded by [`super::decode`] (or read by an
//! [`super::EventDecoder`]) becomes the JSON stored in Couchbase documents and ClickHouse payload
//! columns, following the mapping in the [`super`] module docs; for CDC rows read from Avro,
//! the JSON Kafka Connect's converter would have written.

use apache_avro::Schema;
use apache_avro::schema::{NamesRef, NamespaceRef, ResolvedSchema};
use apache_avro::types::Value;
use serde_json::{Map, Number, Value as Json};

use super::names::has_ref;
use super::scalars::{decimal_text, hex};
use crate::calendar::{Unit, format_date, format_date_time, format_time_of_day};

/// Turns a decoded Avro value of `schema` into JSON (see the module docs for the mapping).
///
/// The schema is the one the value was decoded with, or resolved to (the reader schema): it gives
/// each decimal its scale, which apache-avro's `Value::Decimal` does not keep. A value that does
/// not follow the schema still converts, a decimal where the schema has none at scale 0.
pub fn avro_to_json(value: &Value, schema: &Schema) -> Json {
    let none = NamesRef::new();
    if !has_ref(schema) {
        return Render::new(&none).json(value, Some(schema), None);
    }
    match ResolvedSchema::new(schema) {
        Ok(resolved) => Render::new(resolved.get_names()).json(value, Some(schema), None),
        // Never for a schema a value was decoded with; its references then stay unknown.
        Err(_) => Render::new(&none).json(value, Some(schema), None),
    }
}

/// A value as Kafka Connect's JsonConverter writes one, for CDC rows read from Avro (which then
/// look like the JSON ones): without a schema, every decimal at scale 0 (its unscaled value: the
/// row's `RowSchema` knows the scales), dates, times and timestamps as their integer counts.
pub(crate) fn connect_json(value: &Value) -> Json {
    Render { names: &NamesRef::new(), counts: true }.json(value, None, None)
}

/// The schema-guided walk of [`avro_to_json`].
#[derive(Debug)]
pub(super) struct Render<'a, 's> {
    /// Every named type of the schema, by full name, for `Schema::Ref`.
    names: &'a NamesRef<'s>,
    /// Dates, times and timestamps as integer counts, not text ([`connect_json`]).
    counts: bool,
}

impl<'a, 's> Render<'a, 's> {
    /// The walk of [`avro_to_json`] with `names`.
    pub(super) fn new(names: &'a NamesRef<'s>) -> Self {
        Self { names, counts: false }
    }

    /// The JSON of `value`, of `schema` when known (`None` below a place where value and schema
    /// part), in namespace `ns`.
    pub(super) fn json(&self, value: &Value, schema: Option<&'s Schema>, ns: NamespaceRef<'_>) -> Json {
        if let Some(Schema::Ref { name }) = schema {
            let full = name.fully_qualified_name(ns);
            let named = self.names.get(full.as_ref()).copied();
            return self.json(value, named, full.namespace());
        }
        match value {
            Value::Union(i, inner) => {
                let branch = match schema {
                    Some(Schema::Union(union)) => usize::try_from(*i).ok().and_then(|i| union.variants().get(i)),
                    _ => None,
                };
                self.json(inner, branch, ns)
            }
            Value::Array(items) => {
                let item = match schema {
                    Some(Schema::Array(array)) => Some(&*array.items),
                    _ => None,
                };
                Json::Array(items.iter().map(|v| self.json(v, item, ns)).collect())
            }
            Value::Map(entries) => {
                let values = match schema {
                    Some(Schema::Map(map)) => Some(&*map.types),
                    _ => None,
                };
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                Json::Object(sorted.into_iter().map(|(k, v)| (k.clone(), self.json(v, values, ns))).collect())
            }
            Value::Record(fields) => {
                let Some(Schema::Record(record)) = schema else {
                    return Json::Object(fields.iter().map(|(k, v)| (k.clone(), self.json(v, None, ns))).collect());
                };
                let full = record.name.fully_qualified_name(ns);
                let inner = full.namespace();
                let field_schema = |i: usize, name: &str| {
                    // A decoded record has the schema's fields in its order: look up only if not.
                    let field = match record.fields.get(i) {
                        Some(field) if field.name == name => Some(field),
                        _ => record.fields.iter().find(|f| f.name == name),
                    };
                    field.map(|f| &f.schema)
                };
                Json::Object(
                    fields
                        .iter()
                        .enumerate()
                        .map(|(i, (k, v))| (k.clone(), self.json(v, field_schema(i, k), inner)))
                        .collect(),
                )
            }
            Value::Decimal(decimal) => {
                let scale = match schema {
                    Some(Schema::Decimal(d)) => d.scale,
                    _ => 0,
                };
                Json::String(decimal_text(decimal, scale))
            }
            scalar if self.counts => counts_json(scalar).unwrap_or_else(|| scalar_json(scalar)),
            scalar => scalar_json(scalar),
        }
    }
}

/// Dates, times and timestamps as their integer counts ([`connect_json`]); `None` for any other
/// value.
pub(super) fn counts_json(value: &Value) -> Option<Json> {
    match value {
        Value::Date(n) | Value::TimeMillis(n) => Some(Json::from(*n)),
        Value::TimeMicros(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n) => Some(Json::from(*n)),
        Value::Union(_, inner) => counts_json(inner),
        _ => None,
    }
}

/// A time of day as text; a count outside one day (which no valid writer writes) as it is.
pub(super) fn time_json(count: i64, unit: Unit) -> Json {
    format_time_of_day(count, unit).map_or_else(|| Json::from(count), Json::String)
}

/// The JSON of a value that holds no other and needs no schema.
pub(super) fn scalar_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(n) => Json::from(*n),
        Value::Long(n) => Json::from(*n),
        Value::Date(days) => Json::String(format_date(i64::from(*days))),
        Value::TimeMillis(n) => time_json(i64::from(*n), Unit::Millis),
        Value::TimeMicros(n) => time_json(*n, Unit::Micros),
        Value::TimestampMillis(n) => Json::String(format_date_time(*n, Unit::Millis, true)),
        Value::TimestampMicros(n) => Json::String(format_date_time(*n, Unit::Micros, true)),
        Value::TimestampNanos(n) => Json::String(format_date_time(*n, Unit::Nanos, true)),
        Value::LocalTimestampMillis(n) => Json::String(format_date_time(*n, Unit::Millis, false)),
        Value::LocalTimestampMicros(n) => Json::String(format_date_time(*n, Unit::Micros, false)),
        Value::LocalTimestampNanos(n) => Json::String(format_date_time(*n, Unit::Nanos, false)),
        // Through the shortest decimal form, so 0.1f32 is 0.1 and not 0.10000000149011612.
        Value::Float(f) => {
            f.to_string().parse::<f64>().ok().and_then(Number::from_f64).map_or(Json::Null, Json::Number)
        }
        Value::Double(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => Json::String(hex(bytes)),
        Value::String(s) | Value::Enum(_, s) => Json::String(s.clone()),
        Value::Uuid(uuid) => Json::String(uuid.hyphenated().to_string()),
        Value::Decimal(decimal) => Json::String(decimal_text(decimal, 0)),
        Value::BigDecimal(decimal) => Json::String(decimal.to_string()),
        Value::Duration(d) => {
            let mut object = Map::new();
            object.insert("months".to_owned(), Json::from(u32::from(d.months())));
            object.insert("days".to_owned(), Json::from(u32::from(d.days())));
            object.insert("millis".to_owned(), Json::from(u32::from(d.millis())));
            Json::Object(object)
        }
        Value::Union(_, inner) => scalar_json(inner),
        Value::Array(_) | Value::Map(_) | Value::Record(_) => Render::new(&NamesRef::new()).json(value, None, None),
    }
}
