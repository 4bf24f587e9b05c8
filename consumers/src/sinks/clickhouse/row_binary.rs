//! Values of decoded events written in ClickHouse's `RowBinary` format (pure): how the declared
//! tables' rows are sent, column by column, with no row struct per table.
//!
//! Input: a JSON value as [`sluice_core::avro::avro_to_json`] makes it (decimals as their
//! unscaled integer text, bytes as hex, timestamps as integer counts) and the [`Enc`] of the
//! column. Output: the column's bytes, appended to the row; or why the value does not fit (the
//! event is then refused, to the DLQ, rather than stored wrong).
//!
//! The format, per type: fixed-width numbers little-endian; strings and arrays prefixed by their
//! length as an unsigned LEB128 varint; `Nullable` by one byte (1 = null); `UUID` as its two
//! 64-bit halves, each little-endian; `Decimal(P, S)` as its unscaled value in 4, 8, 16 or 32
//! bytes; `Date` as `UInt16` days, `Date32` as `Int32` days; `DateTime` as `UInt32` seconds;
//! `DateTime64(p)` as `Int64` ticks; `Map` as a length and key, value pairs.

use serde_json::Value;
use sluice_core::decimal::Decimal;
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
    /// `Date` (`UInt16` days since 1970-01-01).
    Date,
    /// `Date32` (`Int32` days, 1900-01-01 to 2299-12-31).
    Date32,
    /// `DateTime64(p)`: the count as it is (its unit is the column's precision).
    Ticks,
    /// `DateTime`: a count of `per_second` units, floored to seconds.
    Seconds {
        /// Units per second (1 000 for milliseconds).
        per_second: i64,
    },
    /// `Decimal(P, S)` in `width` bytes (4, 8, 16 or 32) from the unscaled text.
    Decimal {
        /// Bytes on the wire.
        width: usize,
        /// At most this many digits.
        precision: usize,
    },
    /// `String`: the exact decimal text (`"-12.34"`) of the unscaled value at `scale`, for a
    /// precision the server's decimals cannot hold.
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
        Enc::I64 | Enc::Ticks => out.extend_from_slice(&value.as_i64().ok_or_else(mismatch)?.to_le_bytes()),
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
            let days = value.as_i64().ok_or_else(mismatch)?;
            let days = u16::try_from(days)
                .map_err(|_| format!("day {days} is outside a Date column (1970-01-01 to 2149-06-06)"))?;
            out.extend_from_slice(&days.to_le_bytes());
        }
        Enc::Date32 => {
            let days = value.as_i64().ok_or_else(mismatch)?;
            if !(DATE32_MIN..=DATE32_MAX).contains(&days) {
                return Err(format!("day {days} is outside a Date32 column (1900-01-01 to 2299-12-31)"));
            }
            out.extend_from_slice(&(days as i32).to_le_bytes());
        }
        Enc::Seconds { per_second } => {
            let count = value.as_i64().ok_or_else(mismatch)?;
            let seconds = u32::try_from(count.div_euclid(*per_second))
                .map_err(|_| format!("{count} is outside a DateTime column (1970-01-01 to 2106-02-07)"))?;
            out.extend_from_slice(&seconds.to_le_bytes());
        }
        Enc::Decimal { width, precision } => match value.as_str().ok_or_else(mismatch)?.strip_prefix("0x") {
            // Past 128 bits avro_to_json gives the bytes.
            Some(hex) => wide_decimal(&unhex(hex)?, *width, *precision, out)?,
            None => {
                let decimal = Decimal::integer(unscaled(value)?);
                if decimal.digits() > *precision {
                    return Err(format!("a decimal of {} digits does not fit precision {precision}", decimal.digits()));
                }
                let le = decimal.unscaled.to_le_bytes();
                let fill = if decimal.unscaled < 0 { 0xff } else { 0x00 };
                // Within the precision's digits the value fits the width: the cut bytes are sign.
                out.extend_from_slice(&le[..(*width).min(16)]);
                out.extend(std::iter::repeat_n(fill, width.saturating_sub(16)));
            }
        },
        Enc::DecimalText { scale } => {
            let scale = u32::try_from(*scale).map_err(|_| format!("scale {scale} is too large"))?;
            let decimal = Decimal { unscaled: unscaled(value)?, scale };
            string(decimal.to_string().as_bytes(), out);
        }
        Enc::Nullable(_) | Enc::Array(_) | Enc::Map(_) | Enc::MapKeys | Enc::MapValues(_) | Enc::Json => {
            return Err(mismatch());
        }
    }
    Ok(())
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

/// The unscaled value of a decimal up to 128 bits, from its text.
fn unscaled(value: &Value) -> Result<i128, Misfit> {
    match value.as_str() {
        Some(text) if text.starts_with("0x") => Err("a decimal past 128 bits does not fit this column".to_owned()),
        Some(text) => text.parse().map_err(|_| format!("{text:?} is not an unscaled decimal")),
        None => Err(format!("{} is not an unscaled decimal", short(value))),
    }
}

/// Writes a decimal past 128 bits, big-endian two's complement `bytes`, as a little-endian
/// integer of `width` bytes (a `Decimal256`).
fn wide_decimal(bytes: &[u8], width: usize, precision: usize, out: &mut Vec<u8>) -> Result<(), Misfit> {
    let digits = digits(bytes);
    if digits > precision {
        return Err(format!("a decimal of {digits} digits does not fit precision {precision}"));
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0x00 };
    let (extra, kept) = bytes.split_at(bytes.len().saturating_sub(width));
    // Cut bytes must be sign extension only (always so once the digits fit the width's precision).
    if extra.iter().any(|b| *b != fill)
        || kept.first().is_some_and(|b| (b & 0x80 != 0) != negative) && !extra.is_empty()
    {
        return Err(format!("the decimal does not fit {width} bytes"));
    }
    out.extend(kept.iter().rev());
    out.extend(std::iter::repeat_n(fill, width - kept.len()));
    Ok(())
}

/// Decimal digits of the magnitude of a two's complement value past 128 bits (up to 256).
fn digits(bytes: &[u8]) -> usize {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // Magnitude as little-endian u32 limbs.
    let mut limbs: Vec<u32> = Vec::new();
    let mut be: Vec<u8> = bytes.to_vec();
    if negative {
        // Two's complement negation: invert, add one.
        for b in &mut be {
            *b = !*b;
        }
        for b in be.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    for chunk in be.rchunks(4) {
        let mut word = [0u8; 4];
        word[4 - chunk.len()..].copy_from_slice(chunk);
        limbs.push(u32::from_be_bytes(word));
    }
    let mut count = 0;
    while limbs.iter().any(|l| *l != 0) {
        // Divide by 10 in place.
        let mut rem: u64 = 0;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / 10) as u32;
            rem = cur % 10;
        }
        count += 1;
    }
    count.max(1)
}

#[cfg(test)]
mod tests;
