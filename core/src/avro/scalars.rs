//! The text forms of Avro bytes and decimals in JSON: lowercase hex for `bytes` and `fixed`, and
//! a decimal's exact text at its schema's scale (both ways, through [`crate::decimal`]).

use apache_avro::Decimal;

use super::error::quote;

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

pub(super) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
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
pub(super) fn decimal_text(decimal: &Decimal, scale: usize) -> String {
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
/// [`avro_to_json`](super::avro_to_json) writes reads back to the same bytes, at any width.
pub(super) fn parse_decimal(text: &str, precision: usize, scale: usize) -> Result<Vec<u8>, String> {
    crate::decimal::unscaled_be_bytes(text, scale, precision).map_err(|e| e.to_string())
}
