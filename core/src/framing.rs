//! The Confluent wire format: how every sluice event is laid out on Kafka.
//!
//! A record value is `0x00` (the magic byte), the schema id as a 4-byte big-endian integer (an id
//! the Schema Registry hands out), then the Avro binary body written with that schema. Producers
//! frame what they publish with [`frame`]; workers split what they consume with [`unframe`] and
//! look the id up in the registry. Pure code: no I/O, no allocation when reading.

use thiserror::Error;

/// The only magic byte the Confluent wire format defines.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte + schema id.
pub const HEADER_LEN: usize = 5;

/// Why a record is not in the Confluent wire format. Each is permanent for that record: it goes to
/// the dead-letter topic with this text as the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    /// The record has no value at all (a tombstone where an event was expected).
    #[error("empty record: expected a Confluent-framed Avro value, got 0 bytes")]
    Empty,
    /// Fewer bytes than the 5-byte header.
    #[error("truncated header: expected at least {HEADER_LEN} bytes (magic byte + schema id), got {0}")]
    TruncatedHeader(usize),
    /// The first byte is not the Confluent magic byte, e.g. plain JSON (`{` = 0x7b) on the topic.
    #[error("wrong magic byte 0x{0:02x}: expected 0x00 (Confluent wire format)")]
    WrongMagic(u8),
}

/// A record split into its schema id and its Avro body, borrowed from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The registry's id of the schema the body was written with.
    pub schema_id: u32,
    /// The Avro binary body.
    pub body: &'a [u8],
}

/// Frames an Avro body written with schema `schema_id`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    frame_into(schema_id, body, &mut out);
    out
}

/// Appends the framed record to `out` (lets a producer reuse one buffer).
pub fn frame_into(schema_id: u32, body: &[u8], out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
}

/// Splits a record into schema id and body.
pub fn unframe(record: &[u8]) -> Result<Framed<'_>, FramingError> {
    match record {
        [] => Err(FramingError::Empty),
        [magic, ..] if *magic != MAGIC_BYTE => Err(FramingError::WrongMagic(*magic)),
        [_, a, b, c, d, body @ ..] => Ok(Framed { schema_id: u32::from_be_bytes([*a, *b, *c, *d]), body }),
        short => Err(FramingError::TruncatedHeader(short.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_layout() {
        assert_eq!(frame(3, &[6]), vec![0, 0, 0, 0, 3, 6]);
        assert_eq!(frame(0x0102_0304, &[]), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn rejects_bad_records_with_a_reason() {
        assert_eq!(unframe(&[]), Err(FramingError::Empty));
        assert_eq!(unframe(b"{\"a\":1}"), Err(FramingError::WrongMagic(b'{')));
        assert_eq!(unframe(&[0, 0, 1]), Err(FramingError::TruncatedHeader(3)));
        assert_eq!(
            FramingError::WrongMagic(0x7b).to_string(),
            "wrong magic byte 0x7b: expected 0x00 (Confluent wire format)"
        );
    }

    #[test]
    fn header_only_is_an_empty_body() {
        assert_eq!(unframe(&[0, 0, 0, 0, 9]), Ok(Framed { schema_id: 9, body: &[] }));
    }

    proptest! {
        #[test]
        fn roundtrip(id in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let framed = frame(id, &body);
            prop_assert_eq!(framed.len(), HEADER_LEN + body.len());
            prop_assert_eq!(unframe(&framed), Ok(Framed { schema_id: id, body: &body }));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let r = unframe(&bytes);
            match bytes.first() {
                None => prop_assert_eq!(r, Err(FramingError::Empty)),
                Some(&m) if m != MAGIC_BYTE => prop_assert_eq!(r, Err(FramingError::WrongMagic(m))),
                Some(_) if bytes.len() < HEADER_LEN => prop_assert_eq!(r, Err(FramingError::TruncatedHeader(bytes.len()))),
                Some(_) => prop_assert!(r.is_ok()),
            }
        }
    }
}
