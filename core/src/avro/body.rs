//! The Avro binary body: a value written as the bytes [`crate::framing::frame`] wraps, and a body
//! split off by [`crate::framing::unframe`] read back with its writer schema, then resolved to the
//! projection's reader schema.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use super::error::{DecodeError, EncodeError};
use super::resolution::{has_empty_decimal, widen_decimals};
use super::strict_body::StrictBody;

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
