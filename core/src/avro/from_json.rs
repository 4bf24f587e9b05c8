//! JSON → Avro values: a user's JSON event (from `sluice publish` or the HTTP gateway) checked
//! against its schema and built into the Avro value [`super::encode`] writes, strictly, with an
//! error naming the exact place (see the [`super`] module docs for the mapping). The reference the
//! fast encoder ([`super::encode_json_into`]) is held equal to.

use std::str::FromStr;

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, NamesRef, NamespaceRef, RecordField, RecordSchema,
    ResolvedSchema, UnionSchema,
};
use apache_avro::types::Value;
use apache_avro::{BigDecimal, Days, Decimal, Duration, Millis, Months, Schema, Uuid};
use serde_json::{Number, Value as Json};

use super::error::{ConvertError, ConvertErrorKind};
use super::fail::{Fail, Segment};
use super::scalars::{parse_decimal, parse_hex};
use crate::calendar::{Unit, Zone, parse_date, parse_date_time, parse_time_of_day};
use crate::suggest::closest;

/// Converts a user's JSON event into an Avro value of `schema` (see the module docs for the
/// mapping and the strictness rules).
pub fn json_to_avro(json: &Json, schema: &Schema) -> Result<Value, ConvertError> {
    if super::encoder::simple_names(schema) {
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

/// Where the JSON being converted comes from: it decides how `bytes` are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A user's event: bytes are hex.
    Input,
    /// A schema default: bytes are a string of code points 0-255, as the Avro spec says.
    Default,
}

/// The schema-guided walk of [`json_to_avro`].
#[derive(Debug)]
pub(super) struct Converter<'a, 's> {
    /// Every named type of the schema, by full name, for `Schema::Ref`.
    pub(super) names: &'a NamesRef<'s>,
    pub(super) source: Source,
}

impl<'s> Converter<'_, 's> {
    pub(super) fn convert(&self, json: &Json, schema: &'s Schema, ns: NamespaceRef<'s>) -> Result<Value, Fail> {
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
                let suggestion =
                    alias_of.or_else(|| closest(key, record.fields.iter().map(|f| f.name.as_str())).map(str::to_owned));
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

    pub(super) fn default(&self, field: &'s RecordField, ns: NamespaceRef<'s>) -> Result<Value, Fail> {
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

    pub(super) fn accepts_null(&self, schema: &Schema, ns: NamespaceRef<'_>) -> bool {
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
                suggestion: closest(key, PARTS).map(str::to_owned),
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

/// The integer types [`Converter::integer`] produces, with their bounds for error messages.
pub(super) trait Bounded {
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
pub(super) fn as_integer(n: &Number) -> Option<i128> {
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
pub(super) fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The JSON type of a value as messages name it: `null`, `boolean`, `number`, `string`, `array`,
/// `object`.
pub fn json_type(json: &Json) -> &'static str {
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
pub(super) fn excerpt(json: &Json) -> String {
    const MAX: usize = 64;
    let text = json.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The excerpt of a boolean, number or string: `null` says it all, and arrays and objects are
/// not worth quoting in a one-line error.
pub(super) fn scalar_excerpt(json: &Json) -> Option<String> {
    matches!(json, Json::Bool(_) | Json::Number(_) | Json::String(_)).then(|| excerpt(json))
}
