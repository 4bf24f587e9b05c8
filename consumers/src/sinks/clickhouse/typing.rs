//! The server types of a declared table's columns (pure): each [`ColumnType`] of the topology
//! becomes one or more physical columns — a name, the type as the server spells it, and the
//! [`Enc`] its values are written with — in the best types the server has.
//!
//! | column type | current servers | 18.16 (and others without the type) |
//! |---|---|---|
//! | boolean | `Bool` | `UInt8` |
//! | int, long, float, double | `Int32`, `Int64`, `Float32`, `Float64` | the same |
//! | string, bytes; fixed(n) | `String`; `FixedString(n)` | the same |
//! | enum | `LowCardinality(String)` | `String` |
//! | uuid | `UUID` | `UUID` |
//! | date | `Date32` (1900–2299) | `Date` (1970–2149) |
//! | time-millis, time-micros | `Int32`, `Int64` (since midnight) | the same |
//! | timestamp-millis/-micros/-nanos | `DateTime64(3/6/9, 'UTC')` | `DateTime('UTC')` (seconds) plus `<name>_ms`/`_us`/`_ns` `Int64`, the exact count |
//! | decimal(P, S) | `Decimal(P, S)`, P up to 76 | `Decimal(P, S)` up to 38 digits; past that its exact text (`String`) |
//! | map | `Map(String, T)` | `<name>_keys Array(String)` and `<name>_values Array(T)` |
//! | array | `Array(T)` | `Array(T)` (timestamps inside as `Int64` counts) |
//! | JSON text | `String` | `String` |
//!
//! Nullable columns are `Nullable(T)` (`LowCardinality(Nullable(String))` for enums); arrays and
//! maps are never nullable in ClickHouse, so a missing one is empty.

use sluice_core::calendar::Unit;
use sluice_core::topology::columns::ColumnType;

use super::row_binary::Enc;
use super::schema::Layout;

/// One column as the server stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Physical {
    /// Its name.
    pub name: String,
    /// Its type, as `system.columns` spells it.
    pub sql: String,
    /// How its values are written.
    pub enc: Enc,
}

/// The physical columns of the column `name` of type `ty` on a server of `layout`.
pub fn physical(name: &str, ty: &ColumnType, layout: Layout) -> Vec<Physical> {
    let one = |(sql, enc): (String, Enc)| vec![Physical { name: name.to_owned(), sql, enc }];
    let (nullable, inner) = match ty {
        ColumnType::Nullable(inner) => (true, inner.as_ref()),
        other => (false, other),
    };
    match inner {
        ColumnType::TimestampMillis | ColumnType::TimestampMicros | ColumnType::TimestampNanos
            if !layout.datetime64 =>
        {
            let (suffix, unit) = match inner {
                ColumnType::TimestampMillis => ("ms", Unit::Millis),
                ColumnType::TimestampMicros => ("us", Unit::Micros),
                _ => ("ns", Unit::Nanos),
            };
            let wrap = |sql: &str, enc: Enc| {
                if nullable {
                    (format!("Nullable({sql})"), Enc::Nullable(Box::new(enc)))
                } else {
                    (sql.to_owned(), enc)
                }
            };
            let (seconds_sql, seconds_enc) = wrap("DateTime('UTC')", Enc::Seconds { per_second: unit.per_second() });
            let (count_sql, count_enc) = wrap("Int64", Enc::Ticks(unit));
            vec![
                Physical { name: name.to_owned(), sql: seconds_sql, enc: seconds_enc },
                Physical { name: format!("{name}_{suffix}"), sql: count_sql, enc: count_enc },
            ]
        }
        ColumnType::Map(values) if !layout.types.map => {
            let (sql, enc) = nested(values, layout);
            vec![
                Physical { name: format!("{name}_keys"), sql: "Array(String)".to_owned(), enc: Enc::MapKeys },
                Physical {
                    name: format!("{name}_values"),
                    sql: format!("Array({sql})"),
                    enc: Enc::MapValues(Box::new(enc)),
                },
            ]
        }
        _ if nullable => one(nullable_of(inner, layout)),
        _ => one(top(inner, layout)),
    }
}

/// A non-nullable column at the top of a row.
fn top(ty: &ColumnType, layout: Layout) -> (String, Enc) {
    match ty {
        ColumnType::Enum(_) if layout.low_cardinality => ("LowCardinality(String)".to_owned(), Enc::Str),
        other => nested(other, layout),
    }
}

/// `Nullable(T)` of a scalar.
fn nullable_of(ty: &ColumnType, layout: Layout) -> (String, Enc) {
    match ty {
        ColumnType::Enum(_) if layout.low_cardinality => {
            ("LowCardinality(Nullable(String))".to_owned(), Enc::Nullable(Box::new(Enc::Str)))
        }
        // Never nullable in ClickHouse: a missing one is empty.
        ColumnType::Array(_) | ColumnType::Map(_) => top(ty, layout),
        other => {
            let (sql, enc) = nested(other, layout);
            (format!("Nullable({sql})"), Enc::Nullable(Box::new(enc)))
        }
    }
}

/// A type anywhere: at the top, or inside an array or map.
fn nested(ty: &ColumnType, layout: Layout) -> (String, Enc) {
    let types = layout.types;
    let s = |sql: &str, enc: Enc| (sql.to_owned(), enc);
    match ty {
        ColumnType::Bool if types.bool => s("Bool", Enc::Bool),
        ColumnType::Bool => s("UInt8", Enc::Bool),
        ColumnType::Int => s("Int32", Enc::I32),
        ColumnType::TimeMillis => s("Int32", Enc::Time(Unit::Millis)),
        ColumnType::Long => s("Int64", Enc::I64),
        ColumnType::TimeMicros => s("Int64", Enc::Time(Unit::Micros)),
        ColumnType::Float => s("Float32", Enc::F32),
        ColumnType::Double => s("Float64", Enc::F64),
        ColumnType::String | ColumnType::Enum(_) => s("String", Enc::Str),
        ColumnType::Bytes => s("String", Enc::Bytes),
        ColumnType::Fixed(n) => (format!("FixedString({n})"), Enc::Fixed(*n)),
        ColumnType::Uuid => s("UUID", Enc::Uuid),
        ColumnType::Date if types.date32 => s("Date32", Enc::Date32),
        ColumnType::Date => s("Date", Enc::Date),
        ColumnType::TimestampMillis if layout.datetime64 => s("DateTime64(3, 'UTC')", Enc::Ticks(Unit::Millis)),
        ColumnType::TimestampMicros if layout.datetime64 => s("DateTime64(6, 'UTC')", Enc::Ticks(Unit::Micros)),
        ColumnType::TimestampNanos if layout.datetime64 => s("DateTime64(9, 'UTC')", Enc::Ticks(Unit::Nanos)),
        // Inside an array on an old server: the exact count.
        ColumnType::TimestampMillis => s("Int64", Enc::Ticks(Unit::Millis)),
        ColumnType::TimestampMicros => s("Int64", Enc::Ticks(Unit::Micros)),
        ColumnType::TimestampNanos => s("Int64", Enc::Ticks(Unit::Nanos)),
        ColumnType::Decimal { precision, scale } => match decimal_width(*precision, types.decimal256) {
            Some(width) => {
                (format!("Decimal({precision}, {scale})"), Enc::Decimal { width, precision: *precision, scale: *scale })
            }
            None => s("String", Enc::DecimalText { scale: *scale }),
        },
        ColumnType::Json => s("String", Enc::Json),
        ColumnType::Nullable(inner) => match inner.as_ref() {
            ColumnType::Array(_) | ColumnType::Map(_) => nested(inner, layout),
            other => {
                let (sql, enc) = nested(other, layout);
                (format!("Nullable({sql})"), Enc::Nullable(Box::new(enc)))
            }
        },
        ColumnType::Array(items) => {
            let (sql, enc) = nested(items, layout);
            (format!("Array({sql})"), Enc::Array(Box::new(enc)))
        }
        ColumnType::Map(values) if types.map => {
            let (sql, enc) = nested(values, layout);
            (format!("Map(String, {sql})"), Enc::Map(Box::new(enc)))
        }
        // A map inside an array on an old server: its JSON text.
        ColumnType::Map(_) => s("String", Enc::Json),
    }
}

/// Bytes of a `Decimal(P, _)`; `None` past what the server holds.
fn decimal_width(precision: usize, decimal256: bool) -> Option<usize> {
    match precision {
        0..=9 => Some(4),
        10..=18 => Some(8),
        19..=38 => Some(16),
        39..=76 if decimal256 => Some(32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::clickhouse::schema::Types;

    const MODERN: Layout =
        Layout { datetime64: true, low_cardinality: true, insert_deduplication: true, types: Types::ALL };
    const OLD: Layout =
        Layout { datetime64: false, low_cardinality: false, insert_deduplication: false, types: Types::NONE };

    fn sql(ty: ColumnType, layout: Layout) -> Vec<(String, String)> {
        physical("c", &ty, layout).into_iter().map(|p| (p.name, p.sql)).collect()
    }

    /// A column type, and its physical columns on a current server and on 18.16.
    type Case = (ColumnType, Vec<(String, String)>, Vec<(String, String)>);

    fn one(name: &str, sql: &str) -> Vec<(String, String)> {
        vec![(name.to_owned(), sql.to_owned())]
    }

    #[test]
    fn the_best_type_each_server_has() {
        let n = |t: ColumnType| ColumnType::Nullable(Box::new(t));
        let a = |t: ColumnType| ColumnType::Array(Box::new(t));
        let cases: Vec<Case> = vec![
            (ColumnType::Bool, one("c", "Bool"), one("c", "UInt8")),
            (ColumnType::Enum(vec!["A".into()]), one("c", "LowCardinality(String)"), one("c", "String")),
            (
                n(ColumnType::Enum(vec!["A".into()])),
                one("c", "LowCardinality(Nullable(String))"),
                one("c", "Nullable(String)"),
            ),
            (ColumnType::Date, one("c", "Date32"), one("c", "Date")),
            (ColumnType::Decimal { precision: 12, scale: 2 }, one("c", "Decimal(12, 2)"), one("c", "Decimal(12, 2)")),
            (ColumnType::Decimal { precision: 50, scale: 4 }, one("c", "Decimal(50, 4)"), one("c", "String")),
            (
                ColumnType::TimestampMicros,
                one("c", "DateTime64(6, 'UTC')"),
                vec![("c".into(), "DateTime('UTC')".into()), ("c_us".into(), "Int64".into())],
            ),
            (
                n(ColumnType::TimestampMillis),
                one("c", "Nullable(DateTime64(3, 'UTC'))"),
                vec![("c".into(), "Nullable(DateTime('UTC'))".into()), ("c_ms".into(), "Nullable(Int64)".into())],
            ),
            (
                ColumnType::Map(Box::new(ColumnType::String)),
                one("c", "Map(String, String)"),
                vec![("c_keys".into(), "Array(String)".into()), ("c_values".into(), "Array(String)".into())],
            ),
            (a(n(ColumnType::String)), one("c", "Array(Nullable(String))"), one("c", "Array(Nullable(String))")),
            (a(ColumnType::TimestampMillis), one("c", "Array(DateTime64(3, 'UTC'))"), one("c", "Array(Int64)")),
            (ColumnType::Uuid, one("c", "UUID"), one("c", "UUID")),
            (ColumnType::Fixed(4), one("c", "FixedString(4)"), one("c", "FixedString(4)")),
            (ColumnType::Json, one("c", "String"), one("c", "String")),
        ];
        for (ty, modern, old) in cases {
            assert_eq!(sql(ty.clone(), MODERN), modern, "{ty} on a current server");
            assert_eq!(sql(ty.clone(), OLD), old, "{ty} on 18.16");
        }
    }
}
