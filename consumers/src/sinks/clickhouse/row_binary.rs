//! Values of decoded events written in ClickHouse's `RowBinary` format (pure): how the declared
//! tables' rows are sent, column by column, with no row struct per table.
//!
//! Input: a JSON value as [`sluice_core::avro::avro_to_json`] makes it (decimals as their exact
//! text at their scale, bytes as hex, dates, times and timestamps as text; their integer counts
//! are read too, as the envelope's `occurred_at` and hand-made events have them) and the [`Enc`]
//! of the column. Output: the column's bytes, appended to the row; or why the value does not fit (the
//! event is then refused, to the DLQ, rather than stored wrong).
//!
//! The format, per type: fixed-width numbers little-endian; strings and arrays prefixed by their
//! length as an unsigned LEB128 varint; `Nullable` by one byte (1 = null); `UUID` as its two
//! 64-bit halves, each little-endian; `Decimal(P, S)` as its unscaled value in 4, 8, 16 or 32
//! bytes; `Date` as `UInt16` days, `Date32` as `Int32` days; `DateTime` as `UInt32` seconds;
//! `DateTime64(p)` as `Int64` ticks; `Map` as a length and key, value pairs.

use serde_json::Value;
use sluice_core::calendar::{Unit, Zone, parse_date, parse_date_time, parse_time_of_day};
use sluice_core::decimal::{text_from_be_bytes, unscaled_be_bytes};
use uuid::Uuid;

/// How one column's value is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enc {
    /// `Bool` / `UInt8`.
    Bool,
    /// `Int32`.
    I32,
    /// `Int64`.
    I64,
    /// `Float32`: a JSON null (a NaN or infinity as read) is NaN.
    F32,
    /// `Float64`, likewise.
    F64,
    /// `String` from a JSON string (also `LowCardinality(String)`).
    Str,
    /// `String` of the raw bytes of a hex string.
    Bytes,
    /// `FixedString(n)` of the raw bytes of a hex string.
    Fixed(usize),
    /// `UUID` from its text.
    Uuid,
    /// `Date` (`UInt16` days since 1970-01-01) from `"YYYY-MM-DD"` or a day count.
    Date,
    /// `Date32` (`Int32` days, 1900-01-01 to 2299-12-31), likewise.
    Date32,
    /// `Int32` milliseconds (`Unit::Millis`) or `Int64` microseconds since midnight, from
    /// `"HH:MM:SS.fff"` or the count.
    Time(Unit),
    /// `DateTime64(p)`, or the `Int64` count of a timestamp: `unit`s since the epoch, from date-time
    /// text (a local one, without a zone, as UTC) with no digit finer than the unit, or the count
    /// as it is.
    Ticks(Unit),
    /// `DateTime`: seconds since the epoch, floored, from date-time text or a count of
    /// `per_second` units.
    Seconds {
        /// Units per second of a count (1 000 for milliseconds).
        per_second: i64,
    },
    /// `Decimal(P, S)` in `width` bytes (4, 8, 16 or 32) from the decimal text (`"26.35"`),
    /// brought exactly to the column's scale (`"26.3"` is 2630 at scale 2; `"26.351"` does not
    /// fit).
    Decimal {
        /// Bytes on the wire.
        width: usize,
        /// At most this many digits.
        precision: usize,
        /// Digits after the point.
        scale: usize,
    },
    /// `String`: the exact decimal text (`"-12.34"`) at `scale`, for a precision the server's
    /// decimals cannot hold.
    DecimalText {
        /// Digits after the point.
        scale: usize,
    },
    /// `String`: the value's JSON text.
    Json,
    /// `Nullable(T)`.
    Nullable(Box<Enc>),
    /// `Array(T)`: a JSON null is an empty array.
    Array(Box<Enc>),
    /// `Map(String, T)`: a JSON null is an empty map.
    Map(Box<Enc>),
    /// `Array(String)` of a map's keys (servers without `Map`).
    MapKeys,
    /// `Array(T)` of a map's values, in the order of [`Enc::MapKeys`].
    MapValues(Box<Enc>),
}

/// Why a value cannot be written to its column.
pub type Misfit = String;

/// Appends `value` encoded as `enc` to `out`.
pub fn write(enc: &Enc, value: &Value, out: &mut Vec<u8>) -> Result<(), Misfit> {
    match (enc, value) {
        (Enc::Nullable(_), Value::Null) => out.push(1),
        (Enc::Nullable(inner), v) => {
            out.push(0);
            write(inner, v, out)?;
        }
        (Enc::Array(_) | Enc::Map(_) | Enc::MapKeys | Enc::MapValues(_), Value::Null) => varint(0, out),
        (Enc::Array(inner), Value::Array(items)) => {
            varint(items.len() as u64, out);
            for item in items {
                write(inner, item, out)?;
            }
        }
        (Enc::Map(inner), Value::Object(entries)) => {
            varint(entries.len() as u64, out);
            for (k, v) in entries {
                string(k.as_bytes(), out);
                write(inner, v, out)?;
            }
        }
        (Enc::MapKeys, Value::Object(entries)) => {
            varint(entries.len() as u64, out);
            for k in entries.keys() {
                string(k.as_bytes(), out);
            }
        }
        (Enc::MapValues(inner), Value::Object(entries)) => {
            varint(entries.len() as u64, out);
            for v in entries.values() {
                write(inner, v, out)?;
            }
        }
        (Enc::F32, Value::Null) => out.extend_from_slice(&f32::NAN.to_le_bytes()),
        (Enc::F64, Value::Null) => out.extend_from_slice(&f64::NAN.to_le_bytes()),
        (Enc::Json, v) => string(v.to_string().as_bytes(), out),
        (_, Value::Null) => return Err("null in a column that is not nullable".to_owned()),
        (enc, v) => scalar(enc, v, out)?,
    }
    Ok(())
}

fn scalar(enc: &Enc, value: &Value, out: &mut Vec<u8>) -> Result<(), Misfit> {
    let mismatch = || format!("{} does not fit {enc:?}", short(value));
    match enc {
        Enc::Bool => out.push(u8::from(value.as_bool().ok_or_else(mismatch)?)),
        Enc::I32 => {
            let n = value.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(mismatch)?;
            out.extend_from_slice(&n.to_le_bytes());
        }
        Enc::I64 => out.extend_from_slice(&value.as_i64().ok_or_else(mismatch)?.to_le_bytes()),
        Enc::Ticks(unit) => {
            let count = match value {
                Value::String(text) => {
                    let nanos = parse_date_time(text, Zone::Optional).map_err(|e| format!("{}: {e}", short(value)))?;
                    exact_count(nanos, *unit).ok_or_else(|| finer(value, *unit))?
                }
                _ => value.as_i64().ok_or_else(mismatch)?,
            };
            out.extend_from_slice(&count.to_le_bytes());
        }
        Enc::Time(unit) => {
            let count = match value {
                Value::String(text) => {
                    let nanos = parse_time_of_day(text).map_err(|e| format!("{}: {e}", short(value)))?;
                    exact_count(i128::from(nanos), *unit).ok_or_else(|| finer(value, *unit))?
                }
                _ => value.as_i64().ok_or_else(mismatch)?,
            };
            match unit {
                Unit::Millis => out.extend_from_slice(&i32::try_from(count).map_err(|_| mismatch())?.to_le_bytes()),
                Unit::Micros | Unit::Nanos => out.extend_from_slice(&count.to_le_bytes()),
            }
        }
        Enc::F32 => out.extend_from_slice(&(value.as_f64().ok_or_else(mismatch)? as f32).to_le_bytes()),
        Enc::F64 => out.extend_from_slice(&value.as_f64().ok_or_else(mismatch)?.to_le_bytes()),
        Enc::Str => string(value.as_str().ok_or_else(mismatch)?.as_bytes(), out),
        Enc::Bytes => string(&unhex(value.as_str().ok_or_else(mismatch)?)?, out),
        Enc::Fixed(n) => {
            let bytes = unhex(value.as_str().ok_or_else(mismatch)?)?;
            if bytes.len() != *n {
                return Err(format!("{} bytes do not fit FixedString({n})", bytes.len()));
            }
            out.extend_from_slice(&bytes);
        }
        Enc::Uuid => {
            let uuid = Uuid::parse_str(value.as_str().ok_or_else(mismatch)?).map_err(|e| format!("not a UUID: {e}"))?;
            let (high, low) = uuid.as_u64_pair();
            out.extend_from_slice(&high.to_le_bytes());
            out.extend_from_slice(&low.to_le_bytes());
        }
        Enc::Date => {
            let days = days(value).ok_or_else(mismatch)??;
            let days = u16::try_from(days)
                .map_err(|_| format!("day {days} is outside a Date column (1970-01-01 to 2149-06-06)"))?;
            out.extend_from_slice(&days.to_le_bytes());
        }
        Enc::Date32 => {
            let days = days(value).ok_or_else(mismatch)??;
            if !(DATE32_MIN..=DATE32_MAX).contains(&days) {
                return Err(format!("day {days} is outside a Date32 column (1900-01-01 to 2299-12-31)"));
            }
            out.extend_from_slice(&(days as i32).to_le_bytes());
        }
        Enc::Seconds { per_second } => {
            let seconds = match value {
                Value::String(text) => parse_date_time(text, Zone::Optional)
                    .map_err(|e| format!("{}: {e}", short(value)))?
                    .div_euclid(1_000_000_000),
                _ => i128::from(value.as_i64().ok_or_else(mismatch)?.div_euclid(*per_second)),
            };
            let seconds = u32::try_from(seconds)
                .map_err(|_| format!("{} is outside a DateTime column (1970-01-01 to 2106-02-07)", short(value)))?;
            out.extend_from_slice(&seconds.to_le_bytes());
        }
        Enc::Decimal { width, precision, scale } => {
            let bytes = unscaled_be_bytes(value.as_str().ok_or_else(mismatch)?, *scale, *precision)
                .map_err(|e| format!("{} does not fit Decimal({precision}, {scale}): {e}", short(value)))?;
            little_endian(&bytes, *width, out)?;
        }
        Enc::DecimalText { scale } => {
            let bytes = unscaled_be_bytes(value.as_str().ok_or_else(mismatch)?, *scale, usize::MAX)
                .map_err(|e| format!("{} does not fit a decimal of scale {scale}: {e}", short(value)))?;
            string(text_from_be_bytes(&bytes, *scale).as_bytes(), out);
        }
        Enc::Nullable(_) | Enc::Array(_) | Enc::Map(_) | Enc::MapKeys | Enc::MapValues(_) | Enc::Json => {
            return Err(mismatch());
        }
    }
    Ok(())
}

/// The days since 1970-01-01 of a date: `"YYYY-MM-DD"` or the count; `None` for another type.
fn days(value: &Value) -> Option<Result<i64, Misfit>> {
    match value {
        Value::String(text) => Some(parse_date(text).map_err(|e| format!("{}: {e}", short(value)))),
        _ => value.as_i64().map(Ok),
    }
}

/// `nanos` in whole `unit`s, when no digit finer than the unit is lost.
fn exact_count(nanos: i128, unit: Unit) -> Option<i64> {
    (nanos.rem_euclid(unit.nanos()) == 0).then(|| unit.count(nanos)).flatten()
}

fn finer(value: &Value, unit: Unit) -> Misfit {
    let unit = match unit {
        Unit::Millis => "milliseconds",
        Unit::Micros => "microseconds",
        Unit::Nanos => "nanoseconds",
    };
    format!("{} has digits finer than the column's {unit}", short(value))
}

/// Days of 1900-01-01 and 2299-12-31, the range of `Date32`.
const DATE32_MIN: i64 = -25_567;
const DATE32_MAX: i64 = 120_529;

/// An unsigned LEB128 varint.
pub fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A length-prefixed string.
pub fn string(bytes: &[u8], out: &mut Vec<u8>) {
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A value quoted for an error, shortened.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 { format!("{}…", text.chars().take(40).collect::<String>()) } else { text }
}

fn unhex(text: &str) -> Result<Vec<u8>, Misfit> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("{text:?} is not hex"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|_| format!("{text:?} is not hex"))?;
            u8::from_str_radix(s, 16).map_err(|_| format!("{text:?} is not hex"))
        })
        .collect()
}

/// Writes the big-endian two's complement `bytes` (shortest form) as a little-endian integer of
/// `width` bytes, sign-extended.
fn little_endian(bytes: &[u8], width: usize, out: &mut Vec<u8>) -> Result<(), Misfit> {
    if bytes.len() > width {
        // Never within the precision of a width (76 digits take 32 bytes).
        return Err(format!("the decimal does not fit {width} bytes"));
    }
    let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0x00 };
    out.extend(bytes.iter().rev());
    out.extend(std::iter::repeat_n(fill, width - bytes.len()));
    Ok(())
}

#[cfg(test)]
mod tests;
