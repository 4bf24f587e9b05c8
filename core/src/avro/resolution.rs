//! Fixes around apache-avro's schema resolution, applied by [`super::decode`] to a value read
//! from a body before it is resolved to the reader schema: a decimal of no bytes is refused, and
//! every decimal is widened so that resolution accepts it.

use apache_avro::Decimal;
use apache_avro::types::Value;

/// Whether `value` holds a decimal of no bytes: no two's complement number at all (Java's
/// `BigInteger` refuses one); apache-avro reads it, and it would pass for 0.
pub(super) fn has_empty_decimal(value: &Value) -> bool {
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
pub(super) const RESOLVED_DECIMAL_BYTES: usize = 32;

/// Sign-extends every decimal in `value` to [`RESOLVED_DECIMAL_BYTES`], the same number.
///
/// apache-avro 0.22 refuses to resolve a decimal whose two's-complement bytes are too *few* to
/// reach the schema's precision ("Precision 6 too small to hold decimal values with 2 bytes"):
/// 26.35 at decimal(6, 2) is 2 bytes, so every small amount written with v1 of a schema would fail
/// to resolve to a compatible v2. Widening the bytes keeps the value and passes that check.
pub(super) fn widen_decimals(value: &mut Value) {
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
