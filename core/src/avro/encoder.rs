//! JSON events written straight as Avro bodies: the producing hot path.
//!
//! A publisher gets an event as JSON (`sluice publish`, an `EventDraft`) with its schema from
//! the topology; [`encode_json_into`] checks it against the schema and writes the Avro body in
//! one walk, behind the Confluent header that [`crate::framing::frame_into`] wrote, ready for
//! the producer. It is `encode(&json_to_avro(json, schema)?, schema)` without the intermediate
//! apache-avro `Value`, without resolving the schema's names on every call and without a second
//! validation pass.
//!
//! [`json_to_avro`] stays the reference: the walk only ever accepts what it accepts, and writes
//! what [`encode`] writes for it. Everything else — an invalid event, whose precise
//! [`ConvertError`] only the reference computes; logical types the walk leaves alone (decimals,
//! durations); schemas with named references — goes through [`json_to_avro`] and [`encode`], so
//! results and errors are exactly theirs. Property tests hold the two paths equal.

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, NamesRef, NamespaceRef, RecordField,
    RecordSchema, ResolvedSchema, UnionSchema, UuidSchema,
};
use apache_avro::{Schema, Uuid};
use serde_json::Value as Json;
use thiserror::Error;

use super::from_json::{Converter, Source, as_integer};
use super::names::has_ref;
use super::scalars::parse_hex;
use super::to_json::Render;
use super::{ConvertError, EncodeError, encode, json_to_avro, parse_date};
use crate::calendar::{Unit, Zone, parse_date_time, parse_time_of_day};

/// Why a JSON event could not be written as an Avro body.
#[derive(Debug, Error)]
pub enum EncodeJsonError {
    /// The event does not fit the schema: [`json_to_avro`]'s error.
    #[error(transparent)]
    Invalid(#[from] ConvertError),
    /// The converted value could not be written: [`encode`]'s error.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// `encode(&json_to_avro(json, schema)?, schema)`, faster: the Avro body of a JSON event, or
/// the reason it does not fit `schema`.
pub fn encode_json(json: &Json, schema: &Schema) -> Result<Vec<u8>, EncodeJsonError> {
    let mut body = Vec::new();
    encode_json_into(json, schema, &mut body)?;
    Ok(body)
}

/// [`encode_json`], appending the body to `out` (after a Confluent header, say). On an error
/// `out` is left as it was.
pub fn encode_json_into(json: &Json, schema: &Schema, out: &mut Vec<u8>) -> Result<(), EncodeJsonError> {
    let start = out.len();
    if simple_names(schema) && Walk::INPUT.write(json, schema, out).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    let value = json_to_avro(json, schema)?;
    out.extend_from_slice(&encode(&value, schema)?);
    Ok(())
}

/// The JSON [`super::avro_to_json`] makes of the top-level field `name` of `json_to_avro(json,
/// schema)`, for an event that converts — `None` when the schema has no such field or the field
/// does not convert. Cheaper than converting the whole event to read a few fields (the Kafka
/// key, the event id).
pub fn field_json(json: &Json, schema: &Schema, name: &str) -> Option<Json> {
    let (Schema::Record(record), Json::Object(object)) = (schema, json) else { return None };
    let field = record.fields.iter().find(|f| f.name == name)?;
    let resolved;
    let none = NamesRef::new();
    // Names matter only to a field that refers to a named type.
    let names = if !has_ref(&field.schema) {
        &none
    } else {
        resolved = ResolvedSchema::new(schema).ok()?;
        resolved.get_names()
    };
    let converter = Converter { names, source: Source::Input };
    let ns = record.name.namespace();
    // The rules of `Converter::record` for one field.
    let value = match object.get(name) {
        Some(Json::Null) if field.default.is_some() && !converter.accepts_null(&field.schema, ns) => {
            converter.default(field, ns).ok()?
        }
        Some(value) => converter.convert(value, &field.schema, ns).ok()?,
        None if field.default.is_some() => converter.default(field, ns).ok()?,
        None => return None,
    };
    Some(Render::new(names).json(&value, Some(&field.schema), ns))
}

/// Whether `schema` has no named references and defines every name once. Then apache-avro's
/// name resolution (`ResolvedSchema`) succeeds and is never consulted, so conversion and
/// encoding can skip it.
pub(super) fn simple_names(schema: &Schema) -> bool {
    Defined::default().walk(schema, None)
}

/// The named types met so far, as (namespace, name); a handful at most in practice.
#[derive(Default)]
struct Defined<'s> {
    names: [(Option<&'s str>, &'s str); 8],
    len: usize,
}

impl<'s> Defined<'s> {
    /// `false` on a reference, a name defined twice, or more names than fit (then the caller
    /// takes the general path).
    fn walk(&mut self, schema: &'s Schema, ns: NamespaceRef<'s>) -> bool {
        match schema {
            Schema::Ref { .. } => false,
            Schema::Array(array) => self.walk(&array.items, ns),
            Schema::Map(map) => self.walk(&map.types, ns),
            Schema::Union(union) => union.variants().iter().all(|s| is_leaf(s) || self.walk(s, ns)),
            Schema::Record(RecordSchema { name, fields, .. }) => {
                let Some(inner) = self.define(name, ns) else { return false };
                fields.iter().all(|f| is_leaf(&f.schema) || self.walk(&f.schema, inner))
            }
            Schema::Enum(EnumSchema { name, .. })
            | Schema::Fixed(FixedSchema { name, .. })
            | Schema::Uuid(UuidSchema::Fixed(FixedSchema { name, .. }))
            | Schema::Decimal(DecimalSchema { inner: InnerDecimalSchema::Fixed(FixedSchema { name, .. }), .. })
            | Schema::Duration(FixedSchema { name, .. }) => self.define(name, ns).is_some(),
            _ => true,
        }
    }

    /// Records the full name of `name` in namespace `ns` (as `Name::fully_qualified_name`);
    /// returns its namespace, `None` when it was already defined.
    fn define(&mut self, name: &'s Name, ns: NamespaceRef<'s>) -> Option<NamespaceRef<'s>> {
        let full = match (name.namespace(), ns) {
            (None, Some(ns)) if !ns.is_empty() => (Some(ns), name.name()),
            (own, _) => (own, name.name()),
        };
        if self.names[..self.len].contains(&full) || self.len == self.names.len() {
            return None;
        }
        self.names[self.len] = full;
        self.len += 1;
        Some(full.0)
    }
}

/// A schema that neither names a type nor holds one (checked before walking into it: most
/// fields are these).
fn is_leaf(schema: &Schema) -> bool {
    !matches!(
        schema,
        Schema::Ref { .. }
            | Schema::Array(_)
            | Schema::Map(_)
            | Schema::Union(_)
            | Schema::Record(_)
            | Schema::Enum(_)
            | Schema::Fixed(_)
            | Schema::Uuid(UuidSchema::Fixed(_))
            | Schema::Decimal(DecimalSchema { inner: InnerDecimalSchema::Fixed(_), .. })
            | Schema::Duration(_)
    )
}

/// The walk could not write the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// [`json_to_avro`] rejects it too.
    Invalid,
    /// Not the walk's business (a decimal, a duration): only the reference can tell.
    Unsupported,
}

type Write = Result<(), Miss>;

/// The schema-guided walk: [`Converter`](super::from_json::Converter)'s rules, writing bytes instead of values.
#[derive(Debug, Clone, Copy)]
struct Walk {
    source: Source,
}

impl Walk {
    const INPUT: Self = Self { source: Source::Input };

    fn write(self, json: &Json, schema: &Schema, out: &mut Vec<u8>) -> Write {
        match schema {
            Schema::Null => match json {
                Json::Null => Ok(()),
                _ => Err(Miss::Invalid),
            },
            Schema::Boolean => match json {
                Json::Bool(b) => {
                    out.push(u8::from(*b));
                    Ok(())
                }
                _ => Err(Miss::Invalid),
            },
            Schema::Int => long(integer::<i32>(json)?.into(), out),
            Schema::Long => long(integer(json)?, out),
            Schema::TimeMillis => {
                let millis = time(json, Unit::Millis)?;
                long(i32::try_from(millis).map_err(|_| Miss::Invalid)?.into(), out)
            }
            Schema::TimeMicros => long(time(json, Unit::Micros)?, out),
            Schema::LocalTimestampMillis => long(timestamp(json, Unit::Millis, Zone::Forbidden)?, out),
            Schema::LocalTimestampMicros => long(timestamp(json, Unit::Micros, Zone::Forbidden)?, out),
            Schema::LocalTimestampNanos => long(timestamp(json, Unit::Nanos, Zone::Forbidden)?, out),
            Schema::Float => {
                // Narrowing is the point; overflow is checked just below.
                let f = number(json)? as f32;
                if f.is_infinite() {
                    return Err(Miss::Invalid);
                }
                out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            Schema::Double => {
                out.extend_from_slice(&number(json)?.to_le_bytes());
                Ok(())
            }
            Schema::String => match json {
                Json::String(s) => bytes(s.as_bytes(), out),
                _ => Err(Miss::Invalid),
            },
            Schema::Bytes => bytes(&self.bytes(json, None)?, out),
            Schema::Fixed(fixed) => {
                out.extend_from_slice(&self.bytes(json, Some(fixed.size))?);
                Ok(())
            }
            Schema::Array(array) => {
                let Json::Array(items) = json else { return Err(Miss::Invalid) };
                if !items.is_empty() {
                    long(len(items.len())?, out)?;
                    for item in items {
                        self.write(item, &array.items, out)?;
                    }
                }
                out.push(0);
                Ok(())
            }
            Schema::Map(map) => {
                let Json::Object(entries) = json else { return Err(Miss::Invalid) };
                if !entries.is_empty() {
                    long(len(entries.len())?, out)?;
                    for (key, value) in entries {
                        bytes(key.as_bytes(), out)?;
                        self.write(value, &map.types, out)?;
                    }
                }
                out.push(0);
                Ok(())
            }
            Schema::Union(union) => self.union(json, union, out),
            Schema::Record(record) => self.record(json, record, out),
            Schema::Enum(EnumSchema { symbols, .. }) => match json {
                Json::String(s) => match symbols.iter().position(|symbol| symbol == s) {
                    Some(i) => long(len(i)?, out),
                    None => Err(Miss::Invalid),
                },
                _ => Err(Miss::Invalid),
            },
            Schema::Uuid(inner) => {
                let Json::String(s) = json else { return Err(Miss::Invalid) };
                let uuid = Uuid::parse_str(s).map_err(|_| Miss::Invalid)?;
                match inner {
                    UuidSchema::String => bytes(uuid.hyphenated().encode_lower(&mut [0; 36]).as_bytes(), out),
                    UuidSchema::Bytes => bytes(uuid.as_bytes(), out),
                    UuidSchema::Fixed(FixedSchema { size: 16, .. }) => {
                        out.extend_from_slice(uuid.as_bytes());
                        Ok(())
                    }
                    // encode() refuses it: its error is the reference's to give.
                    UuidSchema::Fixed(_) => Err(Miss::Unsupported),
                }
            }
            Schema::Date => match json {
                Json::String(s) => {
                    let days = parse_date(s).map_err(|_| Miss::Invalid)?;
                    long(i32::try_from(days).map_err(|_| Miss::Invalid)?.into(), out)
                }
                _ => long(integer::<i32>(json)?.into(), out),
            },
            Schema::TimestampMillis => long(timestamp(json, Unit::Millis, Zone::Required)?, out),
            Schema::TimestampMicros => long(timestamp(json, Unit::Micros, Zone::Required)?, out),
            Schema::TimestampNanos => long(timestamp(json, Unit::Nanos, Zone::Required)?, out),
            Schema::Decimal(_) | Schema::BigDecimal | Schema::Duration(_) | Schema::Ref { .. } => {
                Err(Miss::Unsupported)
            }
        }
    }

    /// As `Converter::record`: every JSON field must be a schema field; a field left out (or
    /// null where the type has no null) takes the default.
    fn record(self, json: &Json, record: &RecordSchema, out: &mut Vec<u8>) -> Write {
        let Json::Object(object) = json else { return Err(Miss::Invalid) };
        // Events mostly list their fields in schema order: follow the JSON alongside the
        // schema and look a field up only when the two part.
        let mut entries = object.iter();
        let mut next = entries.next();
        let mut in_order = 0;
        for field in &record.fields {
            let value = match next {
                Some((key, value)) if *key == field.name => {
                    in_order += 1;
                    next = entries.next();
                    Some(value)
                }
                _ => object.get(&field.name),
            };
            match value {
                Some(Json::Null) if field.default.is_some() && !accepts_null(&field.schema) => {
                    self.default(field, out)?
                }
                Some(value) => self.write(value, &field.schema, out)?,
                None if field.default.is_some() => self.default(field, out)?,
                None => return Err(Miss::Invalid),
            }
        }
        // Each key taken in order is a field; otherwise check every key.
        if in_order != object.len() && object.keys().any(|key| !record.fields.iter().any(|f| f.name == *key)) {
            return Err(Miss::Invalid);
        }
        Ok(())
    }

    fn default(self, field: &RecordField, out: &mut Vec<u8>) -> Write {
        let default = field.default.as_ref().unwrap_or(&Json::Null);
        Walk { source: Source::Default }.write(default, &field.schema, out)
    }

    /// As `Converter::union`: `null` picks the null branch, anything else the first other
    /// branch that accepts it.
    fn union(self, json: &Json, union: &UnionSchema, out: &mut Vec<u8>) -> Write {
        let variants = union.variants();
        if json.is_null()
            && let Some(i) = variants.iter().position(|s| matches!(s, Schema::Null))
        {
            return long(len(i)?, out);
        }
        for (i, branch) in variants.iter().enumerate().filter(|(_, s)| !matches!(s, Schema::Null)) {
            let mark = out.len();
            long(len(i)?, out)?;
            match self.write(json, branch, out) {
                Ok(()) => return Ok(()),
                Err(Miss::Invalid) => out.truncate(mark),
                Err(Miss::Unsupported) => return Err(Miss::Unsupported),
            }
        }
        Err(Miss::Invalid)
    }

    /// Hex from a user, code points from a schema default; `size` for a fixed.
    fn bytes(self, json: &Json, size: Option<usize>) -> Result<Vec<u8>, Miss> {
        let Json::String(s) = json else { return Err(Miss::Invalid) };
        let bytes = match self.source {
            Source::Input => parse_hex(s).map_err(|_| Miss::Invalid)?,
            Source::Default => {
                s.chars().map(|c| u8::try_from(u32::from(c))).collect::<Result<_, _>>().map_err(|_| Miss::Invalid)?
            }
        };
        match size {
            Some(size) if bytes.len() != size => Err(Miss::Invalid),
            _ => Ok(bytes),
        }
    }
}

/// As `Converter::accepts_null`, for schemas without references.
fn accepts_null(schema: &Schema) -> bool {
    match schema {
        Schema::Null => true,
        Schema::Union(union) => union.variants().iter().any(|s| matches!(s, Schema::Null)),
        _ => false,
    }
}

/// An integer that fits `T`, as `Converter::integer`.
fn integer<T: TryFrom<i128>>(json: &Json) -> Result<T, Miss> {
    let Json::Number(n) = json else { return Err(Miss::Invalid) };
    as_integer(n).and_then(|i| T::try_from(i).ok()).ok_or(Miss::Invalid)
}

fn number(json: &Json) -> Result<f64, Miss> {
    match json {
        Json::Number(n) => n.as_f64().ok_or(Miss::Invalid),
        _ => Err(Miss::Invalid),
    }
}

/// As `Converter::timestamp`: an integer, or date-time text (its zone as `zone` says) in `unit`s.
fn timestamp(json: &Json, unit: Unit, zone: Zone) -> Result<i64, Miss> {
    let Json::String(s) = json else { return integer(json) };
    let nanos = parse_date_time(s, zone).map_err(|_| Miss::Invalid)?;
    unit.count(nanos).ok_or(Miss::Invalid)
}

/// As the converter's times: an integer, or `HH:MM:SS.f…` in `unit`s.
fn time(json: &Json, unit: Unit) -> Result<i64, Miss> {
    let Json::String(s) = json else { return integer(json) };
    let nanos = parse_time_of_day(s).map_err(|_| Miss::Invalid)?;
    unit.count(i128::from(nanos)).ok_or(Miss::Invalid)
}

/// A count or an index as an Avro long.
fn len(n: usize) -> Result<i64, Miss> {
    i64::try_from(n).map_err(|_| Miss::Unsupported)
}

/// A zigzag varint.
fn long(n: i64, out: &mut Vec<u8>) -> Write {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7f {
        out.push((z & 0x7f) as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    Ok(())
}

/// Length-prefixed bytes (`bytes`, `string`).
fn bytes(b: &[u8], out: &mut Vec<u8>) -> Write {
    long(len(b.len())?, out)?;
    out.extend_from_slice(b);
    Ok(())
}

#[cfg(test)]
mod tests;
