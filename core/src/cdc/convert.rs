//! One column value → the JSON a sluice producer would send for the event field it maps to.
//!
//! The column's `type` in the topology says how to read the value (with the record's schema, when
//! it has one, for decimal scales and timestamp units); the field's Avro type says what to make
//! of it. The result is in the JSON form [`crate::avro::json_to_avro`] accepts (a decimal as
//! `"123.45"`, a timestamp as milliseconds), so the mapper then builds the event exactly like a
//! producer does and reads it back like a worker does. Pure code.

use apache_avro::Schema;
use apache_avro::schema::{RecordField, UuidSchema};
use serde_json::{Number, Value as Json};

use super::record::{Semantic, variable_scale_json};
use crate::avro::{parse_date, parse_rfc3339};
use crate::decimal::{Decimal, base64_decode};
use crate::topology::{ColumnKind, ColumnMapping, DecimalHandling, TimeUnit};

/// What an event field is, as far as a column conversion cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    String,
    Uuid,
    Enum,
    Int,
    Long,
    Float,
    Double,
    Boolean,
    Decimal {
        scale: u32,
    },
    TimestampMillis,
    TimestampMicros,
    Date,
    /// Anything else (records, arrays, bytes, …): no column maps to it.
    Other(&'static str),
}

impl Target {
    /// The target of a record field (a union with null is looked through).
    pub(crate) fn of(field: &RecordField) -> Self {
        Self::of_schema(&field.schema)
    }

    fn of_schema(schema: &Schema) -> Self {
        match schema {
            Schema::Union(u) => {
                match u.variants().iter().filter(|v| !matches!(v, Schema::Null)).collect::<Vec<_>>()[..] {
                    [one] => Self::of_schema(one),
                    _ => Self::Other("a union"),
                }
            }
            Schema::String => Self::String,
            Schema::Uuid(UuidSchema::String) => Self::Uuid,
            Schema::Enum(_) => Self::Enum,
            Schema::Int => Self::Int,
            Schema::Long => Self::Long,
            Schema::Float => Self::Float,
            Schema::Double => Self::Double,
            Schema::Boolean => Self::Boolean,
            Schema::Decimal(d) => Self::Decimal { scale: u32::try_from(d.scale).unwrap_or(u32::MAX) },
            Schema::TimestampMillis => Self::TimestampMillis,
            Schema::TimestampMicros => Self::TimestampMicros,
            Schema::Date => Self::Date,
            Schema::Record(_) => Self::Other("a record"),
            Schema::Array(_) => Self::Other("an array"),
            Schema::Map(_) => Self::Other("a map"),
            Schema::Bytes | Schema::Fixed(_) => Self::Other("bytes"),
            _ => Self::Other("this Avro type"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::String => "string".into(),
            Self::Uuid => "uuid".into(),
            Self::Enum => "enum".into(),
            Self::Int => "int".into(),
            Self::Long => "long".into(),
            Self::Float => "float".into(),
            Self::Double => "double".into(),
            Self::Boolean => "boolean".into(),
            Self::Decimal { scale } => format!("decimal with scale {scale}"),
            Self::TimestampMillis => "timestamp-millis".into(),
            Self::TimestampMicros => "timestamp-micros".into(),
            Self::Date => "date".into(),
            Self::Other(what) => (*what).into(),
        }
    }
}

/// Whether a column read as `mapping` can become a field of type `target`; `Err` says why not
/// and what would work (for `sluice topology check`).
pub(crate) fn check_target(mapping: &ColumnMapping, target: &Target) -> Result<(), String> {
    use Target as T;
    let ok = match (mapping.kind, target) {
        (_, T::Other(_)) => false,
        (None, t) => matches!(t, T::String | T::Uuid | T::Enum | T::Int | T::Long | T::Float | T::Double | T::Boolean),
        (Some(ColumnKind::String), t) => matches!(t, T::String | T::Uuid | T::Enum),
        (Some(ColumnKind::Long), t) => matches!(t, T::Int | T::Long),
        (Some(ColumnKind::Double), t) => matches!(t, T::Float | T::Double),
        (Some(ColumnKind::Boolean), t) => matches!(t, T::Boolean),
        (Some(ColumnKind::Json), t) => matches!(t, T::String),
        (Some(ColumnKind::Date), t) => matches!(t, T::Date | T::Int | T::Long | T::String),
        (Some(ColumnKind::Timestamp), t) => matches!(t, T::TimestampMillis | T::TimestampMicros | T::Long),
        (Some(ColumnKind::Decimal), T::Decimal { scale }) => {
            let column_scale = mapping.scale.unwrap_or(0);
            if *scale < column_scale {
                return Err(format!(
                    "the field is a decimal with scale {scale}, below the column's {column_scale}: digits would be lost"
                ));
            }
            true
        }
        (Some(ColumnKind::Decimal), t) => matches!(t, T::String | T::Int | T::Long | T::Float | T::Double),
    };
    if ok {
        return Ok(());
    }
    let kind = mapping.kind.map_or_else(|| "an unconverted column".to_owned(), |k| format!("a `{k}` column"));
    let fits = match mapping.kind {
        None => "string, uuid, enum, int, long, float, double or boolean (or give the column a `type`)",
        Some(ColumnKind::String) => "string, uuid or enum",
        Some(ColumnKind::Long) => "int or long",
        Some(ColumnKind::Double) => "float or double",
        Some(ColumnKind::Boolean) => "boolean",
        Some(ColumnKind::Json) => "string (the JSON text)",
        Some(ColumnKind::Date) => "date, int, long (days) or string (YYYY-MM-DD)",
        Some(ColumnKind::Timestamp) => "timestamp-millis, timestamp-micros or long (milliseconds)",
        Some(ColumnKind::Decimal) => {
            "string (exact text), long or int (units of the scale), double, float, or a decimal of at least the column's scale"
        }
    };
    Err(format!("{kind} cannot become a {} field; it fits {fits}", target.describe()))
}

/// How a record presents its columns: with a schema (Avro, or JSON with `schemas.enable`), whose
/// semantics say the column's scale or unit, or without one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    pub(crate) has_schema: bool,
    pub(crate) decimal_handling: DecimalHandling,
}

/// Converts `value` of a column mapped by `mapping` for a field of type `target`.
pub(crate) fn convert(
    value: &Json,
    mapping: &ColumnMapping,
    semantic: Option<Semantic>,
    target: &Target,
    cx: Context,
) -> Result<Json, String> {
    if value.is_null() {
        return Ok(Json::Null);
    }
    match mapping.kind {
        None | Some(ColumnKind::Boolean) => Ok(value.clone()),
        Some(ColumnKind::String) => match value {
            Json::String(_) => Ok(value.clone()),
            Json::Number(n) => Ok(Json::String(n.to_string())),
            Json::Bool(b) => Ok(Json::String(b.to_string())),
            _ => Err(format!("expected a scalar, found {}", kind_of(value))),
        },
        Some(ColumnKind::Long) => match value {
            Json::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            Json::String(s) => s.trim().parse::<i64>().map(Json::from).map_err(|_| format!("{s:?} is not an integer")),
            _ => Err(format!("expected an integer, found {}", kind_of(value))),
        },
        Some(ColumnKind::Double) => match value {
            Json::Number(_) => Ok(value.clone()),
            Json::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Json::Number)
                .ok_or_else(|| format!("{s:?} is not a finite number")),
            _ => Err(format!("expected a number, found {}", kind_of(value))),
        },
        Some(ColumnKind::Json) => match value {
            Json::String(_) => Ok(value.clone()),
            // A converter that expanded the JSON: back to its text.
            other => Ok(Json::String(other.to_string())),
        },
        Some(ColumnKind::Decimal) => {
            let scale = mapping.scale.unwrap_or(0);
            let d = read_decimal(value, semantic, scale, cx)?.rescale(scale)?;
            decimal_to(d, target)
        }
        Some(ColumnKind::Timestamp) => {
            let unit = match semantic {
                Some(Semantic::EpochMillis) => TimeUnit::Millis,
                Some(Semantic::EpochMicros) => TimeUnit::Micros,
                Some(Semantic::EpochNanos) => TimeUnit::Nanos,
                _ => mapping.unit.unwrap_or_default(),
            };
            let nanos = timestamp_nanos(value, unit)?;
            let in_units = |per: i128| i64::try_from(nanos.div_euclid(per)).map(Json::from);
            match target {
                Target::TimestampMicros => in_units(1_000),
                _ => in_units(1_000_000),
            }
            .map_err(|_| "the timestamp is out of range".to_owned())
        }
        Some(ColumnKind::Date) => {
            let days = match value {
                Json::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not a day count"))?,
                Json::String(s) => parse_date(s)?,
                other => return Err(format!("expected days since 1970-01-01 or a date, found {}", kind_of(other))),
            };
            match target {
                Target::String => {
                    let (y, m, d) = crate::calendar::civil_from_days(days);
                    Ok(Json::String(format!("{y:04}-{m:02}-{d:02}")))
                }
                _ => Ok(Json::from(days)),
            }
        }
    }
}

/// The decimal a column holds, in whichever form the connector wrote it.
fn read_decimal(value: &Json, semantic: Option<Semantic>, scale: u32, cx: Context) -> Result<Decimal, String> {
    match value {
        // A double (decimal.handling.mode = double): its shortest text is the decimal meant.
        Json::Number(n) => Decimal::parse(&n.to_string()),
        // With a schema, precise bytes were made decimal text already (see `record`).
        Json::String(s) if cx.has_schema => Decimal::parse(s),
        Json::String(s) => match cx.decimal_handling {
            DecimalHandling::Precise => {
                let bytes = base64_decode(s).map_err(|e| format!("{e} (decimal_handling = \"precise\")"))?;
                Decimal::from_be_bytes(&bytes, i64::from(scale))
            }
            DecimalHandling::String | DecimalHandling::Double => Decimal::parse(s),
        },
        Json::Object(o) if o.contains_key("unscaled") => {
            Err("an Avro decimal whose scale the writer schema given to the mapper does not say".to_owned())
        }
        Json::Object(_) if semantic.is_none() || semantic == Some(Semantic::VariableScaleDecimal) => {
            variable_scale_json(value)
        }
        other => Err(format!("expected a decimal, found {}", kind_of(other))),
    }
}

fn decimal_to(d: Decimal, target: &Target) -> Result<Json, String> {
    match target {
        Target::Int | Target::Long => i64::try_from(d.unscaled)
            .map(Json::from)
            .map_err(|_| format!("{d} in units of 10^-{} does not fit a long", d.scale)),
        Target::Float | Target::Double => {
            Number::from_f64(d.to_f64()).map(Json::Number).ok_or_else(|| format!("{d} is not a finite double"))
        }
        // A decimal field takes the text at its own (larger or equal) scale; json_to_avro checks
        // the precision.
        _ => Ok(Json::String(d.to_string())),
    }
}

/// Nanoseconds since the epoch of a timestamp column: RFC 3339 text (`ZonedTimestamp`, any
/// offset) or an integer count of `unit`s.
fn timestamp_nanos(value: &Json, unit: TimeUnit) -> Result<i128, String> {
    match value {
        Json::String(s) => parse_rfc3339(s),
        Json::Number(n) => {
            let count = n.as_i64().ok_or_else(|| format!("{n} is not an integer timestamp"))?;
            let per = match unit {
                TimeUnit::Millis => 1_000_000,
                TimeUnit::Micros => 1_000,
                TimeUnit::Nanos => 1,
            };
            Ok(i128::from(count) * per)
        }
        other => Err(format!("expected a timestamp, found {}", kind_of(other))),
    }
}

pub(crate) fn kind_of(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
