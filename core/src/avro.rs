//! Avro values: built from a user's JSON, written as the Avro body, read back, turned into JSON.
//!
//! Events enter as plain JSON (`sluice publish`, the HTTP gateway). [`json_to_avro`] turns that
//! JSON into an Avro [`Value`] guided by the event's schema and rejects everything the schema
//! does not describe, with an error naming the exact place (`$.items[0].amount_cents: expected
//! long, found string "12"`). [`encode`] writes the value as the body that
//! [`crate::framing::frame`] wraps. On the consuming side [`decode`] reads a body split off by
//! [`crate::framing::unframe`] with the schema it was written with (looked up by id in the
//! registry) and resolves it to the projection's reader schema, so events written with an older
//! compatible schema read like current ones; [`avro_to_json`] then turns the value into the JSON
//! stored in Couchbase documents and ClickHouse payload columns. Pure code: no I/O.
//!
//! # The JSON mapping
//!
//! | Avro | JSON accepted by [`json_to_avro`] | JSON made by [`avro_to_json`] |
//! |---|---|---|
//! | `null`, `boolean`, `string` | the same | the same |
//! | `int`, `long` | an integer in range (`2.0` is 2, `2.5` is rejected, `"2"` too) | integer |
//! | `float`, `double` | a number | a number; NaN and ±infinity become `null` |
//! | `bytes`, `fixed` | a hex string (either case; `fixed` must have its exact size) | lowercase hex |
//! | `enum` | one of its symbols | the symbol |
//! | `array`, `map`, `record` | an array, an object, an object | the same; record field order kept, map keys sorted |
//! | union | the bare value (no `{"string": ..}` wrapper); `null` picks the null branch, anything else the first branch that accepts it | the bare value |
//! | `uuid` | a UUID string (hyphenated, simple, braced or `urn:uuid:`) | lowercase hyphenated |
//! | `date` | integer days since 1970-01-01, or `"YYYY-MM-DD"` | `"YYYY-MM-DD"` |
//! | `time-millis`, `time-micros` | an integer since midnight, or `"HH:MM:SS"` with any fraction | `"10:00:00.123"`, `"10:00:00.123456"` (a count outside one day, which no valid writer writes, stays an integer) |
//! | `timestamp-millis`/`-micros`/`-nanos` | an integer since the epoch, or an RFC 3339 string (`"2026-11-26T04:28:21.123Z"`, any offset) | RFC 3339 in UTC with exactly the unit's digits: `"2026-11-01T10:00:00.123Z"`, `.123456Z`, `.123456789Z` |
//! | `local-timestamp-*` | an integer, or the date-time without a zone (`"2026-11-26T04:28:21.123"`) | the date-time without a zone, the unit's digits: `"2026-11-01T10:00:00.123"` |
//! | `decimal` | a decimal string (`"12.34"`) or number, at most the schema's scale and precision (digits past the scale only if zeros), any width | its exact text at the schema's scale, a string: `"12.34"`, `"-0.50"`, `"12.00"`, no point at scale 0 (past scale 16383, never in practice: `"1234E-20000"`) |
//! | `big-decimal` | a decimal string or number | its decimal string |
//! | `duration` | `{"months": .., "days": .., "millis": ..}` | the same |
//!
//! Digits finer than a time's or a timestamp's unit are truncated toward the past. Years past
//! 9999 or before 0 are written with a sign and six digits (`"+10000-01-01T00:00:00.000Z"`, see
//! [`crate::calendar`]). What [`avro_to_json`] writes, [`json_to_avro`] reads back to the same
//! value. The envelope's `occurred_at` is a timestamp too, written as text here; the
//! [`crate::event::Event`] made of a record keeps it as integer milliseconds.
//!
//! Records are strict: every JSON field must be a field of the schema (an unknown one is an error
//! with a "did you mean" when a field name is close), and a field the JSON leaves out takes the
//! schema default, or is an error when it has none. An explicit `null` is the null value when the
//! field's type allows null, and the default otherwise.
//!
//! Error paths are JSONPath-like: `$` is the event, `.name` a field or map key, `[3]` an array
//! item, `["a key"]` a field or key that is not an identifier.
//!
//! # The hot paths
//!
//! The functions above are the reference, built on apache-avro values. Per event, producers
//! and workers use faster equivalents that give the same results and the same errors (they
//! fall back to the reference for anything they do not cover, and property tests hold them
//! equal): [`encode_json_into`] checks a JSON event and writes its Avro body in one walk, and
//! an [`EventDecoder`], compiled once per schema id, reads bodies straight into JSON and
//! [`crate::event::Event`]s.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::str::FromStr;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, NamesRef, NamespaceRef, RecordField, RecordSchema,
    ResolvedSchema, UnionSchema,
};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{BigDecimal, Days, Decimal, Duration, Millis, Months, Schema, Uuid};
use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

use crate::calendar::{
    Unit, Zone, format_date, format_date_time, format_time_of_day, parse_date_time, parse_time_of_day,
};
pub(crate) use crate::calendar::{parse_date, parse_rfc3339};

#[cfg(test)]
mod arbitrary;
mod decoder;
mod encoder;

pub use decoder::{EventDecoder, ReadEventError};
pub use encoder::{EncodeJsonError, encode_json, encode_json_into, field_json};

/// Why a JSON event does not fit its schema. Its text is meant for the user who sent the event:
/// `$.amount_cents: expected long, found string "12"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {kind}")]
pub struct ConvertError {
    /// Where in the JSON: `$` is the event, `$.items[0].amount_cents` a nested field (see the
    /// module docs). For a missing or unknown field, the record that should (not) hold it.
    pub path: String,
    /// What is wrong there.
    pub kind: ConvertErrorKind,
}

/// What is wrong at a [`ConvertError::path`]. Offending values are quoted as JSON and shortened to
/// 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConvertErrorKind {
    /// A field without a default is absent.
    #[error("missing required field {}", quote(.name))]
    MissingField {
        /// The schema's field name.
        name: String,
    },
    /// The JSON has a field the record does not define.
    #[error("unknown field {}{}", quote(.name), did_you_mean(.suggestion.as_deref()))]
    UnknownField {
        /// The JSON's field name.
        name: String,
        /// The schema field it most likely meant (close spelling, other case or `_`, an alias).
        suggestion: Option<String>,
    },
    /// The JSON value has the wrong type for the schema.
    #[error("expected {expected}, found {found}{}", value_suffix(.value.as_deref()))]
    WrongType {
        /// The schema type, e.g. `long`, `null or string`, `record Item`.
        expected: String,
        /// The JSON type: `null`, `boolean`, `number`, `string`, `array` or `object`.
        found: &'static str,
        /// The JSON value, for scalars.
        value: Option<String>,
    },
    /// A number (or timestamp) that does not fit the schema type.
    #[error("{value} is out of range for {expected}")]
    OutOfRange {
        /// The schema type with its range, e.g. `int (-2147483648 to 2147483647)`.
        expected: String,
        /// The JSON value.
        value: String,
    },
    /// A string that is not a symbol of the enum.
    #[error("unknown enum symbol {symbol}, expected one of {}", .allowed.join(", "))]
    InvalidEnumSymbol {
        /// The JSON string, quoted.
        symbol: String,
        /// The enum's symbols, in schema order.
        allowed: Vec<String>,
    },
    /// A string that is not a UUID.
    #[error("invalid uuid {value}: {reason}")]
    InvalidUuid {
        /// The JSON string, quoted.
        value: String,
        /// What the UUID parser objected to.
        reason: String,
    },
    /// A string that is not an RFC 3339 date-time.
    #[error("invalid timestamp {value}: {reason}")]
    InvalidTimestamp {
        /// The JSON string, quoted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string that is not a time of day (`HH:MM:SS.fff`).
    #[error("invalid time {value}: {reason}")]
    InvalidTime {
        /// The JSON string, quoted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string that is not a `YYYY-MM-DD` date.
    #[error("invalid date {value}: {reason}")]
    InvalidDate {
        /// The JSON string, quoted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string that is not the hex form of the bytes the schema wants.
    #[error("invalid bytes {value}: {reason}")]
    InvalidBytes {
        /// The JSON string, quoted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A number or string that is not a decimal the schema can hold.
    #[error("invalid decimal {value}: {reason}")]
    InvalidDecimal {
        /// The JSON value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No branch of a union (other than a single non-null one, whose own error is reported
    /// instead) accepts the value.
    #[error("no branch of the union accepts {found}{}; tried {}", value_suffix(.value.as_deref()), .tried.join(", "))]
    NoUnionBranch {
        /// The branches, in schema order.
        tried: Vec<String>,
        /// The JSON type.
        found: &'static str,
        /// The JSON value, for scalars.
        value: Option<String>,
    },
    /// The schema's default for a field the JSON left out does not fit the field (a schema bug).
    #[error("the schema default of field {} does not fit its type: {reason}", quote(.name))]
    InvalidDefault {
        /// The field.
        name: String,
        /// Why the default does not convert.
        reason: String,
    },
    /// The schema names a type it does not define.
    #[error("the schema refers to an undefined type {name}")]
    UnresolvedRef {
        /// The full name.
        name: String,
    },
    /// The schema itself is unusable (e.g. a type defined twice).
    #[error("invalid schema: {reason}")]
    InvalidSchema {
        /// The Avro library's reason.
        reason: String,
    },
}

/// Why a value could not be written as an Avro body.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The schema's named types do not resolve.
    #[error("invalid schema: {0}")]
    Schema(apache_avro::Error),
    /// The value does not fit the schema, even after Avro resolution (int to long, string to
    /// uuid, a bare value to its union branch).
    #[error("value does not match the schema: {0}")]
    Mismatch(apache_avro::Error),
}

/// Why an Avro body could not be read. Permanent for that record: it goes to the dead-letter
/// topic with this text as the reason.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The writer or reader schema's named types do not resolve.
    #[error("invalid schema: {0}")]
    Schema(apache_avro::Error),
    /// The body is not a datum of the writer schema (truncated, corrupt, or another schema).
    #[error("cannot read the Avro body with the writer schema: {0}")]
    Body(apache_avro::Error),
    /// The body ends inside a value: it was cut short, or written with another schema.
    #[error("the body ends inside a value ({0} bytes): truncated, or written with another schema")]
    Truncated(usize),
    /// A decimal of no bytes: not a number (a writer's bug or a foreign body).
    #[error("a decimal with no bytes is not a number")]
    EmptyDecimal,
    /// The writer schema's datum ends before the body does: the body was written with another
    /// schema, or bytes were appended.
    #[error("{0} trailing bytes after the Avro body")]
    TrailingBytes(usize),
    /// The value read does not resolve to the reader schema (the schemas are not compatible).
    #[error("cannot resolve the event to the reader schema: {0}")]
    Resolve(apache_avro::Error),
}

/// Converts a user's JSON event into an Avro value of `schema` (see the module docs for the
/// mapping and the strictness rules).
pub fn json_to_avro(json: &Json, schema: &Schema) -> Result<Value, ConvertError> {
    if encoder::simple_names(schema) {
        // Resolving the names would succeed and never be consulted: skip it.
        return Converter { names: &NamesRef::new(), source: Source::Input }
            .convert(json, schema, None)
            .map_err(Fail::into_error);
    }
    let resolved = ResolvedSchema::new(schema).map_err(|e| ConvertError {
        path: "$".to_owned(),
        kind: ConvertErrorKind::InvalidSchema { reason: e.to_string() },
    })?;
    Converter { names: resolved.get_names(), source: Source::Input }
        .convert(json, schema, None)
        .map_err(Fail::into_error)
}

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
struct Render<'a, 's> {
    /// Every named type of the schema, by full name, for `Schema::Ref`.
    names: &'a NamesRef<'s>,
    /// Dates, times and timestamps as integer counts, not text ([`connect_json`]).
    counts: bool,
}

impl<'a, 's> Render<'a, 's> {
    /// The walk of [`avro_to_json`] with `names`.
    fn new(names: &'a NamesRef<'s>) -> Self {
        Self { names, counts: false }
    }

    /// The JSON of `value`, of `schema` when known (`None` below a place where value and schema
    /// part), in namespace `ns`.
    fn json(&self, value: &Value, schema: Option<&'s Schema>, ns: NamespaceRef<'_>) -> Json {
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
fn counts_json(value: &Value) -> Option<Json> {
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
fn time_json(count: i64, unit: Unit) -> Json {
    format_time_of_day(count, unit).map_or_else(|| Json::from(count), Json::String)
}

/// The JSON of a value that holds no other and needs no schema.
fn scalar_json(value: &Value) -> Json {
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

/// Writes `value` as an Avro binary body of `schema` (no header: [`crate::framing::frame`] adds
/// it). A value that fits only after Avro resolution (an `Int` for a long, a `String` for a uuid,
/// a bare value for a union) is resolved first.
pub fn encode(value: &Value, schema: &Schema) -> Result<Vec<u8>, EncodeError> {
    let writer = GenericDatumWriter::builder(schema).build().map_err(EncodeError::Schema)?;
    let mut body = Vec::new();
    if writer.write_value_ref(&mut body, value).is_ok() {
        return Ok(body);
    }
    // Validation failed (writing to a Vec cannot): resolution either makes the value fit or says
    // precisely why it cannot, which validation does not.
    let resolved = ResolvedSchema::new(schema).map_err(EncodeError::Schema)?;
    let value = value.clone().resolve_with_names(schema, resolved.get_names()).map_err(EncodeError::Mismatch)?;
    body.clear();
    writer.write_value_ref(&mut body, &value).map_err(EncodeError::Mismatch)?;
    Ok(body)
}

/// Reads an Avro binary body written with `writer`, the whole body and nothing more, then, when
/// `reader` is given, resolves it to `reader` (fields added since take their defaults, removed
/// ones are dropped). Pass `None` when the reader schema is the writer schema.
///
/// Strict: every byte is read, and a body that ends inside a value is an error
/// ([`DecodeError::Truncated`]), wherever it ends.
pub fn decode(body: &[u8], writer: &Schema, reader: Option<&Schema>) -> Result<Value, DecodeError> {
    let datum = GenericDatumReader::builder(writer).build().map_err(DecodeError::Schema)?;
    let mut input = StrictBody { rest: body, ran_out: false };
    let read = datum.read_value(&mut input);
    if input.ran_out {
        return Err(DecodeError::Truncated(body.len()));
    }
    let value = read.map_err(DecodeError::Body)?;
    if !input.rest.is_empty() {
        return Err(DecodeError::TrailingBytes(input.rest.len()));
    }
    if has_empty_decimal(&value) {
        return Err(DecodeError::EmptyDecimal);
    }
    match reader {
        None => Ok(value),
        Some(reader) => {
            let names = ResolvedSchema::new(reader).map_err(DecodeError::Schema)?;
            let mut value = value;
            widen_decimals(&mut value);
            value.resolve_with_names(reader, names.get_names()).map_err(DecodeError::Resolve)
        }
    }
}

/// Whether `value` holds a decimal of no bytes: no two's complement number at all (Java's
/// `BigInteger` refuses one); apache-avro reads it, and it would pass for 0.
fn has_empty_decimal(value: &Value) -> bool {
    match value {
        // apache-avro cannot give the bytes of a decimal read from none (0 needs one byte).
        Value::Decimal(d) => Vec::<u8>::try_from(d).is_err(),
        Value::Union(_, inner) => has_empty_decimal(inner),
        Value::Array(items) => items.iter().any(has_empty_decimal),
        Value::Map(entries) => entries.values().any(has_empty_decimal),
        Value::Record(fields) => fields.iter().any(|(_, v)| has_empty_decimal(v)),
        _ => false,
    }
}

/// Bytes every decimal value is widened to before resolution: enough for the largest precision a
/// 256-bit decimal holds (76 digits).
const RESOLVED_DECIMAL_BYTES: usize = 32;

/// Sign-extends every decimal in `value` to [`RESOLVED_DECIMAL_BYTES`], the same number.
///
/// apache-avro 0.22 refuses to resolve a decimal whose two's-complement bytes are too *few* to
/// reach the schema's precision ("Precision 6 too small to hold decimal values with 2 bytes"):
/// 26.35 at decimal(6, 2) is 2 bytes, so every small amount written with v1 of a schema would fail
/// to resolve to a compatible v2. Widening the bytes keeps the value and passes that check.
fn widen_decimals(value: &mut Value) {
    match value {
        Value::Decimal(decimal) => {
            if let Ok(bytes) = Vec::<u8>::try_from(&*decimal)
                && bytes.len() < RESOLVED_DECIMAL_BYTES
            {
                let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
                let mut wide = vec![fill; RESOLVED_DECIMAL_BYTES - bytes.len()];
                wide.extend_from_slice(&bytes);
                *decimal = Decimal::from(wide);
            }
        }
        Value::Union(_, inner) => widen_decimals(inner),
        Value::Array(items) => items.iter_mut().for_each(widen_decimals),
        Value::Map(entries) => entries.values_mut().for_each(widen_decimals),
        Value::Record(fields) => fields.iter_mut().for_each(|(_, v)| widen_decimals(v)),
        _ => {}
    }
}

/// The body as apache-avro reads it, with the end of the body made an error.
///
/// apache-avro takes an end of input where a union's branch index should be for the null branch,
/// so a body cut short before its last nullable fields would decode, those fields null (a
/// truncated record would erase data in the sinks). Reading past the end here fails with an error
/// of another kind than `UnexpectedEof`, which apache-avro passes on like any read error, and
/// `ran_out` tells [`decode`] why.
struct StrictBody<'a> {
    rest: &'a [u8],
    ran_out: bool,
}

impl Read for StrictBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rest.is_empty() && !buf.is_empty() {
            self.ran_out = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the body ends inside a value"));
        }
        let n = buf.len().min(self.rest.len());
        let (head, rest) = self.rest.split_at(n);
        buf[..n].copy_from_slice(head);
        self.rest = rest;
        Ok(n)
    }
}

/// Where the JSON being converted comes from: it decides how `bytes` are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A user's event: bytes are hex.
    Input,
    /// A schema default: bytes are a string of code points 0-255, as the Avro spec says.
    Default,
}

/// A conversion failure on its way up: the path is collected in reverse while unwinding, so the
/// happy path never builds one.
#[derive(Debug)]
struct Fail {
    rev_path: Vec<Segment>,
    kind: ConvertErrorKind,
}

#[derive(Debug)]
enum Segment {
    /// A record field or a map key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl Fail {
    fn here(kind: ConvertErrorKind) -> Self {
        Self { rev_path: Vec::new(), kind }
    }

    fn at(mut self, segment: Segment) -> Self {
        self.rev_path.push(segment);
        self
    }

    /// A type mismatch at the value itself (not inside it).
    fn is_shallow_type_mismatch(&self) -> bool {
        self.rev_path.is_empty() && matches!(self.kind, ConvertErrorKind::WrongType { .. })
    }

    fn into_error(self) -> ConvertError {
        let mut path = String::from("$");
        for segment in self.rev_path.iter().rev() {
            match segment {
                Segment::Key(key) if is_identifier(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Segment::Key(key) => {
                    let _ = write!(path, "[{}]", quote(key));
                }
                Segment::Index(i) => {
                    let _ = write!(path, "[{i}]");
                }
            }
        }
        ConvertError { path, kind: self.kind }
    }
}

/// The schema-guided walk of [`json_to_avro`].
#[derive(Debug)]
struct Converter<'a, 's> {
    /// Every named type of the schema, by full name, for `Schema::Ref`.
    names: &'a NamesRef<'s>,
    source: Source,
}

impl<'s> Converter<'_, 's> {
    fn convert(&self, json: &Json, schema: &'s Schema, ns: NamespaceRef<'s>) -> Result<Value, Fail> {
        let value = match schema {
            Schema::Null => match json {
                Json::Null => Value::Null,
                _ => return Err(self.wrong_type(schema, json)),
            },
            Schema::Boolean => match json {
                Json::Bool(b) => Value::Boolean(*b),
                _ => return Err(self.wrong_type(schema, json)),
            },
            Schema::Int => Value::Int(self.integer(json, schema)?),
            Schema::Long => Value::Long(self.integer(json, schema)?),
            Schema::Float => {
                let x = self.number(json, schema)?;
                // Narrowing is the point; overflow is checked just below.
                let f = x as f32;
                if f.is_infinite() {
                    return Err(Fail::here(ConvertErrorKind::OutOfRange {
                        expected: "float (±3.4e38)".to_owned(),
                        value: excerpt(json),
                    }));
                }
                Value::Float(f)
            }
            Schema::Double => Value::Double(self.number(json, schema)?),
            Schema::String => match json {
                Json::String(s) => Value::String(s.clone()),
                _ => return Err(self.wrong_type(schema, json)),
            },
            Schema::Bytes => Value::Bytes(self.bytes(json, schema, None)?),
            Schema::Fixed(fixed) => Value::Fixed(fixed.size, self.bytes(json, schema, Some(fixed.size))?),
            Schema::Array(array) => match json {
                Json::Array(items) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.convert(item, &array.items, ns).map_err(|f| f.at(Segment::Index(i))))
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(self.wrong_type(schema, json)),
            },
            Schema::Map(map) => match json {
                Json::Object(entries) => Value::Map(
                    entries
                        .iter()
                        .map(|(k, v)| {
                            let value = self.convert(v, &map.types, ns).map_err(|f| f.at(Segment::Key(k.clone())))?;
                            Ok((k.clone(), value))
                        })
                        .collect::<Result<_, Fail>>()?,
                ),
                _ => return Err(self.wrong_type(schema, json)),
            },
            Schema::Union(union) => self.union(json, union, ns)?,
            Schema::Record(record) => self.record(json, schema, record)?,
            Schema::Enum(EnumSchema { symbols, .. }) => match json {
                Json::String(s) => match symbols.iter().position(|symbol| symbol == s) {
                    Some(i) => Value::Enum(index(i), s.clone()),
                    None => {
                        return Err(Fail::here(ConvertErrorKind::InvalidEnumSymbol {
                            symbol: excerpt(json),
                            allowed: symbols.clone(),
                        }));
                    }
                },
                _ => return Err(self.wrong_type(schema, json)),
            },
            Schema::Decimal(decimal) => Value::Decimal(self.decimal(json, schema, decimal)?),
            Schema::BigDecimal => {
                let text = self.decimal_text(json, schema)?;
                match BigDecimal::from_str(&text) {
                    Ok(d) => Value::BigDecimal(d),
                    Err(e) => {
                        return Err(Fail::here(ConvertErrorKind::InvalidDecimal {
                            value: excerpt(json),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Schema::Uuid(_) => match json {
                Json::String(s) => match Uuid::parse_str(s) {
                    Ok(uuid) => Value::Uuid(uuid),
                    Err(e) => {
                        return Err(Fail::here(ConvertErrorKind::InvalidUuid {
                            value: excerpt(json),
                            reason: e.to_string(),
                        }));
                    }
                },
                _ => return Err(self.wrong_type(schema, json)),
            },
            Schema::Date => match json {
                Json::String(s) => match parse_date(s) {
                    Ok(days) => Value::Date(self.fit_i32(days, json, schema)?),
                    Err(reason) => {
                        return Err(Fail::here(ConvertErrorKind::InvalidDate { value: excerpt(json), reason }));
                    }
                },
                _ => Value::Date(self.integer(json, schema)?),
            },
            Schema::TimeMillis => Value::TimeMillis(match json {
                Json::String(s) => self.fit_i32(self.time_of_day(s, json, Unit::Millis)?, json, schema)?,
                _ => self.integer(json, schema)?,
            }),
            Schema::TimeMicros => Value::TimeMicros(match json {
                Json::String(s) => self.time_of_day(s, json, Unit::Micros)?,
                _ => self.integer(json, schema)?,
            }),
            Schema::TimestampMillis => {
                Value::TimestampMillis(self.timestamp(json, schema, Unit::Millis, Zone::Required)?)
            }
            Schema::TimestampMicros => {
                Value::TimestampMicros(self.timestamp(json, schema, Unit::Micros, Zone::Required)?)
            }
            Schema::TimestampNanos => {
                Value::TimestampNanos(self.timestamp(json, schema, Unit::Nanos, Zone::Required)?)
            }
            Schema::LocalTimestampMillis => {
                Value::LocalTimestampMillis(self.timestamp(json, schema, Unit::Millis, Zone::Forbidden)?)
            }
            Schema::LocalTimestampMicros => {
                Value::LocalTimestampMicros(self.timestamp(json, schema, Unit::Micros, Zone::Forbidden)?)
            }
            Schema::LocalTimestampNanos => {
                Value::LocalTimestampNanos(self.timestamp(json, schema, Unit::Nanos, Zone::Forbidden)?)
            }
            Schema::Duration(_) => self.duration(json, schema)?,
            Schema::Ref { name } => match self.names.get(name.fully_qualified_name(ns).as_ref()) {
                Some(named) => self.convert(json, named, ns)?,
                None => return Err(Fail::here(ConvertErrorKind::UnresolvedRef { name: name.fullname(ns) })),
            },
        };
        Ok(value)
    }

    fn record(&self, json: &Json, schema: &'s Schema, record: &'s RecordSchema) -> Result<Value, Fail> {
        let Json::Object(object) = json else {
            return Err(self.wrong_type(schema, json));
        };
        let ns = record.name.namespace();
        // Unknown fields first: a misspelt field is also a missing one, and the misspelling is
        // the more useful thing to point at.
        for key in object.keys() {
            if !record.fields.iter().any(|f| f.name == *key) {
                let alias_of = record.lookup.get(key).and_then(|&i| record.fields.get(i)).map(|f| f.name.clone());
                let suggestion = alias_of.or_else(|| suggest(key, record.fields.iter().map(|f| f.name.as_str())));
                return Err(Fail::here(ConvertErrorKind::UnknownField { name: key.clone(), suggestion }));
            }
        }
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let value = match object.get(&field.name) {
                Some(Json::Null) if field.default.is_some() && !self.accepts_null(&field.schema, ns) => {
                    self.default(field, ns)?
                }
                Some(value) => {
                    self.convert(value, &field.schema, ns).map_err(|f| f.at(Segment::Key(field.name.clone())))?
                }
                None if field.default.is_some() => self.default(field, ns)?,
                None => return Err(Fail::here(ConvertErrorKind::MissingField { name: field.name.clone() })),
            };
            fields.push((field.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }

    fn default(&self, field: &'s RecordField, ns: NamespaceRef<'s>) -> Result<Value, Fail> {
        let default = field.default.as_ref().unwrap_or(&Json::Null);
        Converter { names: self.names, source: Source::Default }.convert(default, &field.schema, ns).map_err(|f| {
            Fail::here(ConvertErrorKind::InvalidDefault {
                name: field.name.clone(),
                reason: f.into_error().to_string(),
            })
        })
    }

    fn union(&self, json: &Json, union: &'s UnionSchema, ns: NamespaceRef<'s>) -> Result<Value, Fail> {
        let variants = union.variants();
        let null_branch = variants.iter().position(|s| matches!(s, Schema::Null));
        if let (Json::Null, Some(i)) = (json, null_branch) {
            return Ok(Value::Union(index(i), Box::new(Value::Null)));
        }
        let candidates: Vec<(usize, &'s Schema)> =
            variants.iter().enumerate().filter(|(_, s)| !matches!(s, Schema::Null)).collect();
        // The common `["null", T]`: T's own error is the precise one (a nested path, a range).
        if let [(i, only)] = candidates[..] {
            return match self.convert(json, only, ns) {
                Ok(value) => Ok(Value::Union(index(i), Box::new(value))),
                Err(mut fail) => {
                    if let (true, ConvertErrorKind::WrongType { expected, .. }) =
                        (fail.rev_path.is_empty(), &mut fail.kind)
                        && null_branch.is_some()
                    {
                        expected.push_str(" or null");
                    }
                    Err(fail)
                }
            };
        }
        // Otherwise the first branch that accepts the value wins. When every branch but one
        // rejected the value's type outright, that one's deeper error is what the user needs.
        let mut deep_failures = Vec::new();
        for (i, branch) in candidates {
            match self.convert(json, branch, ns) {
                Ok(value) => return Ok(Value::Union(index(i), Box::new(value))),
                Err(fail) if fail.is_shallow_type_mismatch() => {}
                Err(fail) => deep_failures.push(fail),
            }
        }
        if deep_failures.len() == 1
            && let Some(fail) = deep_failures.pop()
        {
            return Err(fail);
        }
        Err(Fail::here(ConvertErrorKind::NoUnionBranch {
            tried: variants.iter().map(|s| self.describe(s, ns)).collect(),
            found: json_type(json),
            value: scalar_excerpt(json),
        }))
    }

    fn accepts_null(&self, schema: &Schema, ns: NamespaceRef<'_>) -> bool {
        match schema {
            Schema::Null => true,
            Schema::Union(union) => union.variants().iter().any(|s| matches!(s, Schema::Null)),
            Schema::Ref { name } => {
                self.names.get(name.fully_qualified_name(ns).as_ref()).is_some_and(|s| self.accepts_null(s, ns))
            }
            _ => false,
        }
    }

    /// An integer that fits `T` (the schema's Avro type).
    fn integer<T: TryFrom<i128> + Into<i128> + Bounded>(&self, json: &Json, schema: &Schema) -> Result<T, Fail> {
        let Json::Number(n) = json else {
            return Err(self.wrong_type(schema, json));
        };
        let Some(i) = as_integer(n) else {
            return Err(self.wrong_type(schema, json));
        };
        T::try_from(i).map_err(|_| {
            Fail::here(ConvertErrorKind::OutOfRange {
                expected: format!(
                    "{} ({} to {})",
                    self.describe(schema, None),
                    Into::<i128>::into(T::MIN),
                    Into::<i128>::into(T::MAX)
                ),
                value: excerpt(json),
            })
        })
    }

    fn fit_i32(&self, n: i64, json: &Json, schema: &Schema) -> Result<i32, Fail> {
        i32::try_from(n).map_err(|_| {
            Fail::here(ConvertErrorKind::OutOfRange { expected: self.describe(schema, None), value: excerpt(json) })
        })
    }

    fn number(&self, json: &Json, schema: &Schema) -> Result<f64, Fail> {
        match json {
            Json::Number(n) => n.as_f64().ok_or_else(|| self.wrong_type(schema, json)),
            _ => Err(self.wrong_type(schema, json)),
        }
    }

    /// Hex bytes from a user, code points from a schema default; `size` for a fixed.
    fn bytes(&self, json: &Json, schema: &Schema, size: Option<usize>) -> Result<Vec<u8>, Fail> {
        let Json::String(s) = json else {
            return Err(self.wrong_type(schema, json));
        };
        let invalid = |reason: String| Fail::here(ConvertErrorKind::InvalidBytes { value: excerpt(json), reason });
        let bytes = match self.source {
            Source::Input => parse_hex(s).map_err(invalid)?,
            Source::Default => s
                .chars()
                .map(|c| u8::try_from(u32::from(c)))
                .collect::<Result<_, _>>()
                .map_err(|_| invalid("a bytes default must only hold code points 0 to 255".to_owned()))?,
        };
        match size {
            Some(size) if bytes.len() != size => {
                Err(invalid(format!("expected {size} bytes ({} hex digits), found {}", size * 2, bytes.len())))
            }
            _ => Ok(bytes),
        }
    }

    /// `unit`s since the epoch: an integer, or date-time text with a time zone as `zone` says.
    fn timestamp(&self, json: &Json, schema: &Schema, unit: Unit, zone: Zone) -> Result<i64, Fail> {
        let Json::String(s) = json else {
            return self.integer(json, schema);
        };
        let nanos = parse_date_time(s, zone)
            .map_err(|reason| Fail::here(ConvertErrorKind::InvalidTimestamp { value: excerpt(json), reason }))?;
        unit.count(nanos).ok_or_else(|| {
            Fail::here(ConvertErrorKind::OutOfRange { expected: self.describe(schema, None), value: excerpt(json) })
        })
    }

    /// `unit`s since midnight of `HH:MM:SS.f…` text (`json` is the string `s`).
    fn time_of_day(&self, s: &str, json: &Json, unit: Unit) -> Result<i64, Fail> {
        let nanos = parse_time_of_day(s)
            .map_err(|reason| Fail::here(ConvertErrorKind::InvalidTime { value: excerpt(json), reason }))?;
        // Less than a day of nanoseconds: the count fits.
        Ok(unit.count(i128::from(nanos)).unwrap_or_default())
    }

    fn decimal_text(&self, json: &Json, schema: &Schema) -> Result<String, Fail> {
        match json {
            Json::String(s) => Ok(s.clone()),
            Json::Number(n) => Ok(n.to_string()),
            _ => Err(self.wrong_type(schema, json)),
        }
    }

    fn decimal(&self, json: &Json, schema: &Schema, decimal: &DecimalSchema) -> Result<Decimal, Fail> {
        let invalid = |reason: String| Fail::here(ConvertErrorKind::InvalidDecimal { value: excerpt(json), reason });
        let bytes = match (self.source, json) {
            // A schema default spells the two's complement bytes, like any bytes default.
            (Source::Default, Json::String(_)) => self.bytes(json, schema, None)?,
            _ => {
                let text = self.decimal_text(json, schema)?;
                parse_decimal(&text, decimal.precision, decimal.scale).map_err(invalid)?
            }
        };
        if let InnerDecimalSchema::Fixed(FixedSchema { size, .. }) = &decimal.inner
            && bytes.len() > *size
        {
            return Err(invalid(format!("does not fit in {size} bytes")));
        }
        Ok(Decimal::from(bytes))
    }

    fn duration(&self, json: &Json, schema: &Schema) -> Result<Value, Fail> {
        const PARTS: [&str; 3] = ["months", "days", "millis"];
        let Json::Object(object) = json else {
            return Err(self.wrong_type(schema, json));
        };
        if let Some(key) = object.keys().find(|k| !PARTS.contains(&k.as_str())) {
            return Err(Fail::here(ConvertErrorKind::UnknownField {
                name: key.clone(),
                suggestion: suggest(key, PARTS.into_iter()),
            }));
        }
        let mut parts = [0u32; 3];
        for (part, name) in parts.iter_mut().zip(PARTS) {
            let value =
                object.get(name).ok_or_else(|| Fail::here(ConvertErrorKind::MissingField { name: name.to_owned() }))?;
            *part = self
                .integer(value, &Schema::Long)
                .and_then(|n: i64| {
                    u32::try_from(n).map_err(|_| {
                        Fail::here(ConvertErrorKind::OutOfRange {
                            expected: format!("a duration part (0 to {})", u32::MAX),
                            value: excerpt(value),
                        })
                    })
                })
                .map_err(|f| f.at(Segment::Key(name.to_owned())))?;
        }
        let [months, days, millis] = parts;
        Ok(Value::Duration(Duration::new(Months::new(months), Days::new(days), Millis::new(millis))))
    }

    fn wrong_type(&self, schema: &Schema, json: &Json) -> Fail {
        Fail::here(ConvertErrorKind::WrongType {
            expected: self.describe(schema, None),
            found: json_type(json),
            value: scalar_excerpt(json),
        })
    }

    /// The schema type as a user reads it in an error.
    fn describe(&self, schema: &Schema, ns: NamespaceRef<'_>) -> String {
        match schema {
            Schema::Null => "null".to_owned(),
            Schema::Boolean => "boolean".to_owned(),
            Schema::Int => "int".to_owned(),
            Schema::Long => "long".to_owned(),
            Schema::Float => "float".to_owned(),
            Schema::Double => "double".to_owned(),
            Schema::Bytes => "bytes (a hex string)".to_owned(),
            Schema::String => "string".to_owned(),
            Schema::Array(array) => format!("array of {}", self.describe(&array.items, ns)),
            Schema::Map(map) => format!("map (object) of {}", self.describe(&map.types, ns)),
            Schema::Union(union) => {
                union.variants().iter().map(|s| self.describe(s, ns)).collect::<Vec<_>>().join(" or ")
            }
            Schema::Record(record) => format!("record {}", record.name.name()),
            Schema::Enum(e) => format!("enum {}", e.name.name()),
            Schema::Fixed(fixed) => format!("fixed {} ({} bytes as hex)", fixed.name.name(), fixed.size),
            Schema::Decimal(d) => format!("decimal({}, {})", d.precision, d.scale),
            Schema::BigDecimal => "big-decimal".to_owned(),
            Schema::Uuid(_) => "uuid string".to_owned(),
            Schema::Date => "date (days or YYYY-MM-DD)".to_owned(),
            Schema::TimeMillis => "time-millis (integer or HH:MM:SS.fff)".to_owned(),
            Schema::TimeMicros => "time-micros (integer or HH:MM:SS.ffffff)".to_owned(),
            Schema::TimestampMillis => "timestamp-millis (integer or RFC 3339 string)".to_owned(),
            Schema::TimestampMicros => "timestamp-micros (integer or RFC 3339 string)".to_owned(),
            Schema::TimestampNanos => "timestamp-nanos (integer or RFC 3339 string)".to_owned(),
            Schema::LocalTimestampMillis => "local-timestamp-millis (integer or date-time without zone)".to_owned(),
            Schema::LocalTimestampMicros => "local-timestamp-micros (integer or date-time without zone)".to_owned(),
            Schema::LocalTimestampNanos => "local-timestamp-nanos (integer or date-time without zone)".to_owned(),
            Schema::Duration(_) => "duration (object of months, days, millis)".to_owned(),
            Schema::Ref { name } => match self.names.get(name.fully_qualified_name(ns).as_ref()) {
                Some(named) => self.describe(named, ns),
                None => name.name().to_owned(),
            },
        }
    }
}

/// Whether `schema` refers to a named type defined elsewhere (then converting, encoding or
/// decoding it needs the schema's names).
fn has_ref(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } => true,
        Schema::Array(array) => has_ref(&array.items),
        Schema::Map(map) => has_ref(&map.types),
        Schema::Union(union) => union.variants().iter().any(has_ref),
        Schema::Record(record) => record.fields.iter().any(|f| has_ref(&f.schema)),
        _ => false,
    }
}

/// The integer types [`Converter::integer`] produces, with their bounds for error messages.
trait Bounded {
    const MIN: Self;
    const MAX: Self;
}

impl Bounded for i32 {
    const MIN: Self = i32::MIN;
    const MAX: Self = i32::MAX;
}

impl Bounded for i64 {
    const MIN: Self = i64::MIN;
    const MAX: Self = i64::MAX;
}

/// The integer a JSON number denotes: `2.0` and `1e3` are integers written as floats, `2.5` is
/// not one. Floats beyond the i128 range saturate, which the range check then rejects.
fn as_integer(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0).then_some(f as i128)
}

/// A union index: unions are far smaller than `u32::MAX` branches.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn json_type(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// The JSON text of a value, shortened to 64 characters.
fn excerpt(json: &Json) -> String {
    const MAX: usize = 64;
    let text = json.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The excerpt of a boolean, number or string: `null` says it all, and arrays and objects are
/// not worth quoting in a one-line error.
fn scalar_excerpt(json: &Json) -> Option<String> {
    matches!(json, Json::Bool(_) | Json::Number(_) | Json::String(_)).then(|| excerpt(json))
}

fn quote(s: &str) -> String {
    Json::String(s.to_owned()).to_string()
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map(|s| format!(", did you mean {}?", quote(s))).unwrap_or_default()
}

fn value_suffix(value: Option<&str>) -> String {
    value.map(|v| format!(" {v}")).unwrap_or_default()
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The candidate `name` most likely meant: the same once case and `_`/`-` are ignored
/// (`amountCents`), or within an edit distance of a third of its length (`amont_cents`).
fn suggest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<String> {
    fn squash(s: &str) -> String {
        s.chars().filter(|c| !matches!(c, '_' | '-')).flat_map(char::to_lowercase).collect()
    }
    let squashed = squash(name);
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .filter_map(|candidate| {
            let distance = if squash(candidate) == squashed { 0 } else { crate::suggest::levenshtein(name, candidate) };
            (distance <= limit).then_some((distance, candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("a hex string needs an even number of digits, found {}", s.len()));
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let digit = |b: u8| char::from(b).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                // Both digits are < 16, so the byte cannot overflow.
                (Some(hi), Some(lo)) => Ok(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX)),
                _ => Err(format!("{} is not a hex byte", quote(&String::from_utf8_lossy(pair)))),
            }
        })
        .collect()
}

/// The exact text of a decimal at `scale` ([`crate::decimal::text_from_be_bytes`]).
fn decimal_text(decimal: &Decimal, scale: usize) -> String {
    match Vec::<u8>::try_from(decimal) {
        Ok(bytes) => crate::decimal::text_from_be_bytes(&bytes, scale),
        // apache-avro cannot give bytes it read as none: 0.
        Err(_) => {
            crate::decimal::text_from_be_bytes(&num_bigint::BigInt::from(decimal.clone()).to_signed_bytes_be(), scale)
        }
    }
}

/// The Avro bytes (the unscaled value's big-endian two's complement) of a plain decimal number
/// (`-12.34`, `5`, `.5`; no exponent) at `scale`, with at most `precision` digits: what
/// [`avro_to_json`] writes reads back to the same bytes, at any width.
fn parse_decimal(text: &str, precision: usize, scale: usize) -> Result<Vec<u8>, String> {
    crate::decimal::unscaled_be_bytes(text, scale, precision).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    fn schema_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
    }

    fn load(relative: &str) -> Schema {
        let text = std::fs::read_to_string(schema_dir().join(relative)).expect("schema file");
        Schema::parse_str(&text).expect("valid schema")
    }

    /// Every `.avsc` under `schemas/`, with its path.
    fn all_schemas() -> Vec<(PathBuf, Schema)> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("schemas dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "avsc") {
                    out.push(path);
                }
            }
        }
        let mut paths = Vec::new();
        walk(&schema_dir(), &mut paths);
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let schema = Schema::parse_str(&std::fs::read_to_string(&p).expect("read")).expect("parse");
                (p, schema)
            })
            .collect()
    }

    fn convert_err(json: Json, schema: &Schema) -> String {
        json_to_avro(&json, schema).expect_err("conversion should fail").to_string()
    }

    fn roundtrip(json: &Json, schema: &Schema) -> Json {
        let value = json_to_avro(json, schema).expect("converts");
        let body = encode(&value, schema).expect("encodes");
        let decoded = decode(&body, schema, None).expect("decodes");
        assert_eq!(decoded, value, "decode(encode(v)) == v");
        avro_to_json(&decoded, schema)
    }

    /// A valid event for `schema` and the JSON expected back, built from the schema so a new
    /// `.avsc` is covered without touching this test. `full` fills optional fields too.
    fn sample(schema: &Schema, full: bool, seed: &mut i64) -> Option<(Json, Json)> {
        *seed += 1;
        let pair = match schema {
            Schema::String => {
                let s = json!(format!("text-{seed}"));
                (s.clone(), s)
            }
            Schema::Long => (json!(*seed * 1_000_003), json!(*seed * 1_000_003)),
            Schema::Int => (json!(*seed), json!(*seed)),
            Schema::Uuid(_) => {
                let id = format!("0190c6a5-7e2b-7c4d-9f1a-{:012x}", seed);
                (json!(id.to_uppercase()), json!(id))
            }
            Schema::TimestampMillis => (json!("2026-11-26T06:28:21.123+02:00"), json!("2026-11-26T04:28:21.123Z")),
            Schema::Enum(e) => {
                let symbol = json!(e.symbols.last().expect("symbols"));
                (symbol.clone(), symbol)
            }
            Schema::Union(u) => {
                let branch = u.variants().iter().find(|s| !matches!(s, Schema::Null)).expect("branch");
                if full { sample(branch, full, seed)? } else { (Json::Null, Json::Null) }
            }
            Schema::Record(r) => {
                let (mut input, mut expected) = (Map::new(), Map::new());
                for field in &r.fields {
                    let (i, e) = sample(&field.schema, full, seed)?;
                    if full || field.default.is_none() {
                        input.insert(field.name.clone(), i);
                    }
                    expected.insert(field.name.clone(), e);
                }
                (Json::Object(input), Json::Object(expected))
            }
            _ => return None,
        };
        Some(pair)
    }

    #[test]
    fn every_schema_converts_encodes_decodes_and_comes_back() {
        let schemas = all_schemas();
        assert!(schemas.len() >= 10, "found {} schemas", schemas.len());
        let mut seed = 0;
        for (path, schema) in &schemas {
            for full in [true, false] {
                let (input, expected) = sample(schema, full, &mut seed)
                    .unwrap_or_else(|| panic!("{}: add the new type to sample()", path.display()));
                let back = roundtrip(&input, schema);
                assert_eq!(back, expected, "{} (full: {full})", path.display());
                // Schema field order is kept.
                let keys: Vec<_> = back.as_object().expect("object").keys().cloned().collect();
                let Schema::Record(r) = schema else { panic!("records only") };
                assert_eq!(keys, r.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>());
            }
        }
    }

    fn purchase() -> Json {
        json!({
            "event_id": "0190c6a5-7e2b-7c4d-9f1a-2b3c4d5e6f70",
            "event_type": "purchase.completed",
            "aggregate_id": "order-42",
            "aggregate_version": 3,
            "occurred_at": "2026-11-26T04:28:21.123Z",
            "producer": "shop",
            "user_id": "u-1",
            "session_id": "s-9",
            "order_id": "order-42",
            "amount_cents": 12_999,
            "currency": "EUR",
            "items": 2
        })
    }

    #[test]
    fn purchase_roundtrip_normalizes_timestamps_and_fills_defaults() {
        let schema = load("engagement/purchase_completed.avsc");
        let back = roundtrip(&purchase(), &schema);
        assert_eq!(back["occurred_at"], json!("2026-11-26T04:28:21.123Z"));
        assert_eq!(back["correlation_id"], Json::Null);
        assert_eq!(back["session_id"], json!("s-9"));
        assert_eq!(back["amount_cents"], json!(12_999));

        let value = json_to_avro(&purchase(), &schema).expect("converts");
        let Value::Record(fields) = &value else { panic!("record") };
        assert_eq!(fields[0].1, Value::Uuid(Uuid::parse_str("0190c6a5-7e2b-7c4d-9f1a-2b3c4d5e6f70").expect("uuid")));
        assert_eq!(fields[4].1, Value::TimestampMillis(1_795_667_301_123));
        assert_eq!(fields[6].1, Value::Union(0, Box::new(Value::Null)));
        assert_eq!(fields[11].1, Value::Union(1, Box::new(Value::String("s-9".into()))));
    }

    #[test]
    fn errors_name_the_place_and_the_problem() {
        let purchase_schema = load("engagement/purchase_completed.avsc");
        let with = |field: &str, value: Json| {
            let mut event = purchase();
            event[field] = value;
            convert_err(event, &purchase_schema)
        };
        assert_eq!(with("amount_cents", json!("12")), r#"$.amount_cents: expected long, found string "12""#);
        assert_eq!(with("amount_cents", json!(12.5)), "$.amount_cents: expected long, found number 12.5");
        assert_eq!(
            with("items", json!(2_147_483_648_i64)),
            "$.items: 2147483648 is out of range for int (-2147483648 to 2147483647)"
        );
        assert_eq!(
            with("amount_cents", json!(18_446_744_073_709_551_615_u64)),
            "$.amount_cents: 18446744073709551615 is out of range for long (-9223372036854775808 to 9223372036854775807)"
        );
        assert_eq!(with("session_id", json!(7)), "$.session_id: expected string or null, found number 7");
        assert_eq!(
            with("event_id", json!("not-a-uuid")),
            r#"$.event_id: invalid uuid "not-a-uuid": invalid character: found `n` at 0"#
        );
        assert_eq!(
            with("occurred_at", json!("2026-02-30T00:00:00Z")),
            r#"$.occurred_at: invalid timestamp "2026-02-30T00:00:00Z": day 30 does not exist in 2026-02"#
        );
        assert_eq!(
            with("occurred_at", json!(true)),
            "$.occurred_at: expected timestamp-millis (integer or RFC 3339 string), found boolean true"
        );
        assert_eq!(with("items", json!([1])), "$.items: expected int, found array");

        let mut missing = purchase();
        missing.as_object_mut().expect("object").remove("amount_cents");
        assert_eq!(convert_err(missing, &purchase_schema), r#"$: missing required field "amount_cents""#);

        let mut typo = purchase();
        let amount = typo.as_object_mut().expect("object").remove("amount_cents").expect("field");
        typo["amont_cents"] = amount;
        assert_eq!(
            convert_err(typo, &purchase_schema),
            r#"$: unknown field "amont_cents", did you mean "amount_cents"?"#
        );
        let mut camel = purchase();
        camel["orderId"] = json!("x");
        assert_eq!(convert_err(camel, &purchase_schema), r#"$: unknown field "orderId", did you mean "order_id"?"#);
        let mut stray = purchase();
        stray["zzz"] = json!(1);
        assert_eq!(convert_err(stray, &purchase_schema), r#"$: unknown field "zzz""#);
        assert_eq!(convert_err(json!([]), &purchase_schema), "$: expected record PurchaseCompleted, found array");

        let deleted = load("users/deleted.avsc");
        let mut event = sample(&deleted, false, &mut 0).expect("sample").0;
        event["reason"] = json!("BORED");
        assert_eq!(
            convert_err(event, &deleted),
            r#"$.reason: unknown enum symbol "BORED", expected one of USER_REQUEST, GDPR_ERASURE, FRAUD, OTHER"#
        );
    }

    /// A nested schema: arrays of records, a nullable record, a map, a reused named type (a
    /// `Ref`), and a union with several branches.
    fn order_schema() -> Schema {
        Schema::parse_str(
            r#"{
              "type": "record", "name": "Order", "namespace": "test",
              "fields": [
                {"name": "lines", "type": {"type": "array", "items": {
                  "type": "record", "name": "Line",
                  "fields": [
                    {"name": "sku", "type": "string"},
                    {"name": "amount_cents", "type": "long"},
                    {"name": "qty", "type": "int", "default": 1}
                  ]}}},
                {"name": "gift", "type": ["null", "Line"], "default": null},
                {"name": "tags", "type": {"type": "map", "values": "string"}, "default": {}},
                {"name": "note", "type": ["long", "string", "Line"], "default": 0},
                {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}, "default": "\u00ff\u0000ab"},
                {"name": "blob", "type": "bytes", "default": ""},
                {"name": "ratio", "type": "float", "default": 0.5},
                {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}, "default": "\u0000"},
                {"name": "day", "type": {"type": "int", "logicalType": "date"}, "default": 0},
                {"name": "flag", "type": "boolean", "default": false}
              ]
            }"#,
        )
        .expect("valid schema")
    }

    #[test]
    fn nested_values_maps_refs_and_defaults() {
        let schema = order_schema();
        let input = json!({
            "lines": [{"sku": "a", "amount_cents": 100}, {"sku": "b", "amount_cents": 250, "qty": 3}],
            "gift": {"sku": "g", "amount_cents": 0},
            "tags": {"z": "1", "a b": "2"},
            "note": "hello",
            "digest": "DEADbeef",
            "blob": "00ff",
            "ratio": 0.1,
            "price": "12.3",
            "day": "2024-02-29",
            "flag": null
        });
        let back = roundtrip(&input, &schema);
        assert_eq!(
            back,
            json!({
                "lines": [{"sku": "a", "amount_cents": 100, "qty": 1}, {"sku": "b", "amount_cents": 250, "qty": 3}],
                "gift": {"sku": "g", "amount_cents": 0, "qty": 1},
                "tags": {"a b": "2", "z": "1"},
                "note": "hello",
                "digest": "deadbeef",
                "blob": "00ff",
                "ratio": 0.1,
                "price": "12.30",
                "day": "2024-02-29",
                "flag": false
            })
        );
        // Defaults: bytes in the Avro spec's code-point spelling, a union's first branch.
        let back = roundtrip(&json!({"lines": []}), &schema);
        assert_eq!(back["digest"], json!("ff006162"));
        assert_eq!(back["note"], json!(0));
        assert_eq!(back["gift"], Json::Null);
        assert_eq!(back["tags"], json!({}));
        // The union picks the first branch that accepts the value.
        let value = json_to_avro(&json!({"lines": [], "note": {"sku": "n", "amount_cents": 1}}), &schema).expect("ok");
        let Value::Record(fields) = value else { panic!("record") };
        assert!(matches!(&fields[3].1, Value::Union(2, inner) if matches!(**inner, Value::Record(_))));
    }

    #[test]
    fn nested_errors_have_full_paths() {
        let schema = order_schema();
        let err = |json: Json| convert_err(json, &schema);
        assert_eq!(
            err(json!({"lines": [{"sku": "a", "amount_cents": 1}, {"sku": "b", "amount_cents": "2"}]})),
            r#"$.lines[1].amount_cents: expected long, found string "2""#
        );
        // Inside the nullable record: the record's own error, not "no branch".
        assert_eq!(
            err(json!({"lines": [], "gift": {"sku": 5, "amount_cents": 1}})),
            "$.gift.sku: expected string, found number 5"
        );
        assert_eq!(err(json!({"lines": [], "gift": {"sku": "x"}})), r#"$.gift: missing required field "amount_cents""#);
        assert_eq!(err(json!({"lines": [], "gift": "x"})), r#"$.gift: expected record Line or null, found string "x""#);
        assert_eq!(err(json!({"lines": [], "tags": {"a b": 1}})), r#"$.tags["a b"]: expected string, found number 1"#);
        assert_eq!(
            err(json!({"lines": [], "note": true})),
            "$.note: no branch of the union accepts boolean true; tried long, string, record Line"
        );
        // Only the record branch could take an object: its error is the useful one.
        assert_eq!(err(json!({"lines": [], "note": {"sku": "x"}})), r#"$.note: missing required field "amount_cents""#);
        assert_eq!(
            err(json!({"lines": [], "digest": "abc"})),
            r#"$.digest: invalid bytes "abc": a hex string needs an even number of digits, found 3"#
        );
        assert_eq!(
            err(json!({"lines": [], "digest": "abcd"})),
            r#"$.digest: invalid bytes "abcd": expected 4 bytes (8 hex digits), found 2"#
        );
        assert_eq!(err(json!({"lines": [], "blob": "zz"})), r#"$.blob: invalid bytes "zz": "zz" is not a hex byte"#);
        assert_eq!(
            err(json!({"lines": [], "price": "1.234"})),
            r#"$.price: invalid decimal "1.234": more than 2 digits after the decimal point"#
        );
        assert_eq!(
            err(json!({"lines": [], "price": 12345.6})),
            "$.price: invalid decimal 12345.6: 7 digits exceed the precision of 6"
        );
        assert_eq!(err(json!({"lines": [], "ratio": 1e39})), "$.ratio: 1e+39 is out of range for float (±3.4e38)");
        assert_eq!(
            err(json!({"lines": [], "day": "2023-02-29"})),
            r#"$.day: invalid date "2023-02-29": day 29 does not exist in 2023-02"#
        );
        assert_eq!(err(json!({"lines": [], "flag": "yes"})), r#"$.flag: expected boolean, found string "yes""#);
    }

    #[test]
    fn null_for_a_field_with_a_default_that_does_not_allow_null_takes_the_default() {
        let schema = order_schema();
        let back = roundtrip(&json!({"lines": [], "note": null, "ratio": null}), &schema);
        assert_eq!((back["note"].clone(), back["ratio"].clone()), (json!(0), json!(0.5)));
        // Without a default, null is just the wrong type.
        assert_eq!(convert_err(json!({"lines": null}), &schema), "$.lines: expected array of record Line, found null");
    }

    #[test]
    fn integral_floats_are_integers() {
        let schema = load("engagement/purchase_completed.avsc");
        let mut event = purchase();
        event["amount_cents"] = json!(2.0);
        event["occurred_at"] = json!(1e12);
        let back = roundtrip(&event, &schema);
        assert_eq!(
            (back["amount_cents"].clone(), back["occurred_at"].clone()),
            (json!(2), json!("2001-09-09T01:46:40.000Z"))
        );
    }

    /// The schema of the value of [`avro_to_json_mapping`].
    fn mapping_schema() -> Schema {
        Schema::parse_str(
            r#"{"type": "record", "name": "M", "fields": [
                {"name": "z", "type": ["null", "long"]},
                {"name": "a", "type": {"type": "enum", "name": "Tier", "symbols": ["FREE", "PRO", "GOLD"]}},
                {"name": "nan", "type": "double"},
                {"name": "inf", "type": "float"},
                {"name": "f", "type": "float"},
                {"name": "bytes", "type": "bytes"},
                {"name": "fixed", "type": {"type": "fixed", "name": "F2", "size": 2}},
                {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "uuid", "type": {"type": "string", "logicalType": "uuid"}},
                {"name": "neg", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}},
                {"name": "dur", "type": {"type": "fixed", "name": "D", "size": 12, "logicalType": "duration"}},
                {"name": "map", "type": {"type": "map", "values": ["null", "int"]}}
            ]}"#,
        )
        .expect("schema")
    }

    #[test]
    fn avro_to_json_mapping() {
        let value = Value::Record(vec![
            ("z".into(), Value::Union(1, Box::new(Value::Long(5)))),
            ("a".into(), Value::Enum(2, "GOLD".into())),
            ("nan".into(), Value::Double(f64::NAN)),
            ("inf".into(), Value::Float(f32::INFINITY)),
            ("f".into(), Value::Float(0.1)),
            ("bytes".into(), Value::Bytes(vec![0x00, 0xab, 0xff])),
            ("fixed".into(), Value::Fixed(2, vec![0x0f, 0xf0])),
            ("ts".into(), Value::TimestampMillis(-1)),
            ("uuid".into(), Value::Uuid(Uuid::from_u128(0xABCD))),
            ("neg".into(), Value::Decimal(Decimal::from(vec![0xff, 0x38]))),
            ("dur".into(), Value::Duration(Duration::new(Months::new(1), Days::new(2), Millis::new(3)))),
            ("map".into(), Value::Map([("b".to_owned(), Value::Null), ("a".to_owned(), Value::Int(1))].into())),
        ]);
        let json = avro_to_json(&value, &mapping_schema());
        assert_eq!(
            json,
            json!({
                "z": 5, "a": "GOLD", "nan": null, "inf": null, "f": 0.1, "bytes": "00abff", "fixed": "0ff0",
                "ts": "1969-12-31T23:59:59.999Z", "uuid": "00000000-0000-0000-0000-00000000abcd", "neg": "-2.00",
                "dur": {"months": 1, "days": 2, "millis": 3}, "map": {"a": 1, "b": null}
            })
        );
        // Without the schema a decimal has no scale: its unscaled value.
        assert_eq!(connect_json(&value)["neg"], json!("-200"));
        let keys: Vec<_> = json.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys[..3], ["z", "a", "nan"], "record order is kept");
    }

    #[test]
    fn duration_and_timestamps_in_other_units() {
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "T", "fields": [
                {"name": "d", "type": {"type": "fixed", "name": "D", "size": 12, "logicalType": "duration"}},
                {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "ns", "type": {"type": "long", "logicalType": "timestamp-nanos"}}
            ]}"#,
        )
        .expect("schema");
        let back = roundtrip(
            &json!({"d": {"months": 1, "days": 2, "millis": 3}, "us": "1970-01-01T00:00:00.0000015Z", "ns": "1969-12-31T23:59:59.999999999Z"}),
            &schema,
        );
        assert_eq!(
            back,
            json!({"d": {"months": 1, "days": 2, "millis": 3}, "us": "1970-01-01T00:00:00.000001Z", "ns": "1969-12-31T23:59:59.999999999Z"})
        );
        assert_eq!(roundtrip(&back, &schema), back, "what is read, is written back the same");
        assert_eq!(
            convert_err(json!({"d": {"months": 1, "day": 2, "millis": 3}, "us": 0, "ns": 0}), &schema),
            r#"$.d: unknown field "day", did you mean "days"?"#
        );
        assert_eq!(
            convert_err(json!({"d": {"months": -1, "days": 2, "millis": 3}, "us": 0, "ns": 0}), &schema),
            "$.d.months: -1 is out of range for a duration part (0 to 4294967295)"
        );
        assert_eq!(
            convert_err(
                json!({"d": {"months": 1, "days": 2, "millis": 3}, "us": 0, "ns": "2300-01-01T00:00:00Z"}),
                &schema
            ),
            r#"$.ns: "2300-01-01T00:00:00Z" is out of range for timestamp-nanos (integer or RFC 3339 string)"#
        );
    }

    #[test]
    fn rfc3339_parsing() {
        let ms = |s: &str| parse_rfc3339(s).map(|n| n.div_euclid(1_000_000));
        assert_eq!(ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(ms("2026-11-26T04:28:21.123Z"), Ok(1_795_667_301_123));
        assert_eq!(ms("2026-11-26t06:28:21.123+02:00"), Ok(1_795_667_301_123));
        assert_eq!(ms("2026-11-25 23:28:21.123-05:00"), Ok(1_795_667_301_123));
        assert_eq!(ms("2026-11-26T04:28:21.1239999999Z"), Ok(1_795_667_301_123), "finer digits truncate");
        assert_eq!(ms("1969-12-31T23:59:59.9995Z"), Ok(-1), "truncation goes toward the past");
        assert_eq!(ms("2024-02-29T00:00:00Z"), Ok(19_782 * 86_400_000));
        let bad = |s: &str| parse_rfc3339(s).expect_err(s);
        use crate::calendar::RFC3339_EXAMPLE;
        assert_eq!(bad("2026-11-26"), RFC3339_EXAMPLE);
        assert_eq!(bad("2026-11-26T04:28:21"), "expected a time zone: Z or an offset like +02:00");
        assert_eq!(bad("2026-11-26T04:28:21.Z"), RFC3339_EXAMPLE);
        assert_eq!(bad("2026-11-26T24:00:00Z"), "time 24:00 does not exist");
        assert_eq!(bad("2026-12-31T23:59:60Z"), "second 60 does not exist (leap seconds are not supported)");
        assert_eq!(bad("2026-13-01T00:00:00Z"), "month 13 does not exist");
        assert_eq!(bad("2026-11-26T04:28:21+2:00"), "expected a time zone: Z or an offset like +02:00");
        assert_eq!(bad("2026-11-26T04:28:21+24:00"), "offset +24:00 does not exist");
        assert_eq!(bad("2026-11-26T04:28:21Zjunk"), "expected a time zone: Z or an offset like +02:00");
        assert_eq!(bad("１９７０-01-01T00:00:00Z"), RFC3339_EXAMPLE);
        assert_eq!(parse_date("2026-1-1"), Err("expected a date like 2026-11-26".to_owned()));
    }

    #[test]
    fn schema_evolution_old_events_read_with_the_current_schema() {
        let current = load("users/registered.avsc");
        let mut old_json: Json =
            serde_json::from_str(&std::fs::read_to_string(schema_dir().join("users/registered.avsc")).expect("read"))
                .expect("json");
        old_json["fields"].as_array_mut().expect("fields").retain(|f| f["name"] != "referrer");
        let old = Schema::parse_str(&old_json.to_string()).expect("old schema");

        let (mut event, _) = sample(&current, true, &mut 0).expect("sample");
        event.as_object_mut().expect("object").remove("referrer");
        let body = encode(&json_to_avro(&event, &old).expect("converts"), &old).expect("encodes");
        let back = avro_to_json(&decode(&body, &old, Some(&current)).expect("decodes"), &current);
        assert_eq!(back["referrer"], Json::Null);
        assert_eq!(back["email"], event["email"]);

        // And the other way: a newer writer's extra field is dropped by an older reader.
        let (event, _) = sample(&current, true, &mut 0).expect("sample");
        let body = encode(&json_to_avro(&event, &current).expect("converts"), &current).expect("encodes");
        let back = avro_to_json(&decode(&body, &current, Some(&old)).expect("decodes"), &old);
        assert!(back.get("referrer").is_none());
    }

    #[test]
    fn decode_rejects_trailing_and_missing_bytes() {
        let schema = load("engagement/purchase_completed.avsc");
        let mut body = encode(&json_to_avro(&purchase(), &schema).expect("converts"), &schema).expect("encodes");
        body.extend_from_slice(&[0, 0]);
        let err = decode(&body, &schema, None).expect_err("trailing");
        assert!(matches!(err, DecodeError::TrailingBytes(2)));
        assert_eq!(err.to_string(), "2 trailing bytes after the Avro body");
        body.truncate(body.len() - 4);
        let err = decode(&body, &schema, None).expect_err("truncated");
        assert!(matches!(err, DecodeError::Truncated(_)), "{err}");
        assert!(err.to_string().starts_with("the body ends inside a value"), "{err}");
        assert!(matches!(decode(&[], &schema, None), Err(DecodeError::Truncated(0))));
    }

    #[test]
    fn encode_resolves_loose_values_and_explains_mismatches() {
        let schema = load("sessions/heartbeat.avsc");
        let (event, _) = sample(&schema, true, &mut 0).expect("sample");
        let exact = json_to_avro(&event, &schema).expect("converts");
        // What a hand-built value looks like: strings for the uuid, bare values in unions.
        let Value::Record(fields) = exact.clone() else { panic!("record") };
        let loose = Value::Record(
            fields
                .into_iter()
                .map(|(k, v)| match v {
                    Value::Uuid(u) => (k, Value::String(u.to_string())),
                    Value::Union(_, inner) => (k, *inner),
                    Value::Long(n) => (k, Value::Int(i32::try_from(n).unwrap_or_default())),
                    other => (k, other),
                })
                .collect(),
        );
        assert_eq!(encode(&loose, &schema).expect("encodes"), encode(&exact, &schema).expect("encodes"));
        let err =
            encode(&Value::Record(vec![("event_id".into(), Value::Boolean(true))]), &schema).expect_err("mismatch");
        assert!(matches!(err, EncodeError::Mismatch(_)), "{err}");
    }

    #[test]
    fn suggestions() {
        let fields = ["amount_cents", "currency", "items", "user_id"];
        let s = |name: &str| suggest(name, fields.into_iter());
        assert_eq!(s("amountCents").as_deref(), Some("amount_cents"));
        assert_eq!(s("curency").as_deref(), Some("currency"));
        assert_eq!(s("item").as_deref(), Some("items"));
        assert_eq!(s("userid").as_deref(), Some("user_id"));
        assert_eq!(s("price"), None);
    }

    #[test]
    fn decimal_bytes() {
        for n in [0_i128, 1, -1, 127, 128, -128, -129, 255, 256, i128::MAX, i128::MIN] {
            let bytes = crate::decimal::Decimal::integer(n).to_be_bytes();
            assert_eq!(decimal_text(&Decimal::from(bytes.clone()), 0), n.to_string(), "{n} as {bytes:02x?}");
            let at_2 = crate::decimal::Decimal { unscaled: n, scale: 2 }.to_string();
            assert_eq!(decimal_text(&Decimal::from(bytes.clone()), 2), at_2, "{n} as {bytes:02x?}");
        }
        assert_eq!(crate::decimal::Decimal::integer(128).to_be_bytes(), vec![0x00, 0x80]);
        assert_eq!(crate::decimal::Decimal::integer(-128).to_be_bytes(), vec![0x80]);
        let unscaled = |text: &str, precision, scale| {
            parse_decimal(text, precision, scale)
                .map(|b| crate::decimal::Decimal::from_be_bytes(&b, 0).map(|d| d.unscaled))
        };
        assert_eq!(unscaled("-0.5", 3, 2), Ok(Ok(-50)));
        assert_eq!(unscaled(".5", 3, 2), Ok(Ok(50)));
        assert_eq!(unscaled("1.230", 3, 2), Ok(Ok(123)), "zeros past the scale are no digits");
        assert_eq!(unscaled("1e3", 9, 0), Err("expected a plain decimal number like \"12.34\"".to_owned()));
        assert_eq!(unscaled("1.234", 9, 2), Err("more than 2 digits after the decimal point".to_owned()));
        assert_eq!(unscaled("12345", 4, 0), Err("5 digits exceed the precision of 4".to_owned()));
        // Past 128 bits: read exactly.
        let wide = parse_decimal(&"9".repeat(40), 76, 0).expect("40 digits");
        assert_eq!(crate::decimal::text_from_be_bytes(&wide, 0), "9".repeat(40));
        let wide = parse_decimal("-2.5", 76, 38).expect("2.5E38 is past 128 bits");
        assert_eq!(crate::decimal::text_from_be_bytes(&wide, 38), format!("-2.5{}", "0".repeat(37)));
        assert_eq!(unscaled("-", 9, 2), Err("expected a plain decimal number like \"12.34\"".to_owned()));
    }

    fn format_rfc3339(ms: i64) -> String {
        let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
        let (y, m, d) = crate::calendar::civil_from_days(days);
        let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{:02}:{:02}.{:03}Z", rest / 60_000, rest % 60_000 / 1000, rest % 1000)
    }

    fn purchase_event() -> impl Strategy<Value = (Json, bool)> {
        let optional = || proptest::option::of(any::<String>());
        (
            (any::<u128>(), any::<String>(), any::<String>(), any::<i64>(), any::<i64>(), any::<String>()),
            (optional(), optional(), optional(), optional()),
            (any::<String>(), optional(), any::<String>(), any::<i64>(), any::<String>(), any::<i32>()),
            any::<bool>(),
        )
            .prop_map(|(envelope, trace, body, omit_nulls)| {
                let (id, event_type, aggregate_id, version, occurred_at, producer) = envelope;
                let (correlation_id, causation_id, traceparent, tracestate) = trace;
                let (user_id, session_id, order_id, amount_cents, currency, items) = body;
                let event = json!({
                    "event_id": Uuid::from_u128(id).to_string(),
                    "event_type": event_type, "aggregate_id": aggregate_id, "aggregate_version": version,
                    "occurred_at": occurred_at, "producer": producer,
                    "correlation_id": correlation_id, "causation_id": causation_id,
                    "traceparent": traceparent, "tracestate": tracestate,
                    "user_id": user_id, "session_id": session_id, "order_id": order_id,
                    "amount_cents": amount_cents, "currency": currency, "items": items
                });
                (event, omit_nulls)
            })
    }

    proptest! {
        #[test]
        fn purchase_json_roundtrip_is_the_identity((event, omit_nulls) in purchase_event()) {
            let schema = load("engagement/purchase_completed.avsc");
            let mut input = event.clone();
            if omit_nulls {
                input.as_object_mut().expect("object").retain(|_, v| !v.is_null());
            }
            // Read back: the timestamp as RFC 3339 text in UTC, everything else as it was sent.
            let mut expected = event;
            let ms = expected["occurred_at"].as_i64().expect("milliseconds");
            expected["occurred_at"] = json!(crate::calendar::format_date_time(ms, Unit::Millis, true));
            let back = roundtrip(&input, &schema);
            prop_assert_eq!(&back, &expected);
            prop_assert_eq!(roundtrip(&back, &schema), expected, "and what is read is written back the same");
        }

        #[test]
        fn rfc3339_matches_milliseconds(ms in -62_135_596_800_000_i64..253_402_300_800_000) {
            let text = format_rfc3339(ms);
            prop_assert_eq!(parse_rfc3339(&text).map(|n| n / 1_000_000), Ok(i128::from(ms)), "{}", text);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let schema = load("engagement/purchase_completed.avsc");
            let _ = decode(&bytes, &schema, None);
        }
    }
}
