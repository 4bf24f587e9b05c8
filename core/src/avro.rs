//! Avro values: built from a user's JSON, written as the Avro body, read back, turned into JSON.
//!
//! Events enter as plain JSON (`sluice publish`, the HTTP gateway). [`json_to_avro`] turns that
//! JSON into an Avro [`Value`](apache_avro::types::Value) guided by the event's schema and rejects everything the schema
//! does not describe, with an error naming the exact place (`$.items[0].amount_cents: expected
//! long, found string "12"`). [`encode`] writes the value as the body that
//! [`crate::framing::frame`] wraps. On the consuming side [`decode`] reads a body split off by
//! [`crate::framing::unframe`] with the schema it was written with (looked up by id in the
//! registry) and resolves it to the projection's reader schema, so events written with an older
//! compatible schema read like current ones; [`avro_to_json`] then turns the value into the JSON
//! stored in Couchbase documents and ClickHouse payload columns. Pure code: no I/O.
//!
//! # The JSON mapping
//!
//! | Avro | JSON accepted by [`json_to_avro`] | JSON made by [`avro_to_json`] |
//! |---|---|---|
//! | `null`, `boolean`, `string` | the same | the same |
//! | `int`, `long` | an integer in range (`2.0` is 2, `2.5` is rejected, `"2"` too) | integer |
//! | `float`, `double` | a number | a number; NaN and ±infinity become `null` |
//! | `bytes`, `fixed` | a hex string (either case; `fixed` must have its exact size) | lowercase hex |
//! | `enum` | one of its symbols | the symbol |
//! | `array`, `map`, `record` | an array, an object, an object | the same; record field order kept, map keys sorted |
//! | union | the bare value (no `{"string": ..}` wrapper); `null` picks the null branch, anything else the first branch that accepts it | the bare value |
//! | `uuid` | a UUID string (hyphenated, simple, braced or `urn:uuid:`) | lowercase hyphenated |
//! | `date` | integer days since 1970-01-01, or `"YYYY-MM-DD"` | `"YYYY-MM-DD"` |
//! | `time-millis`, `time-micros` | an integer since midnight, or `"HH:MM:SS"` with any fraction | `"10:00:00.123"`, `"10:00:00.123456"` (a count outside one day, which no valid writer writes, stays an integer) |
//! | `timestamp-millis`/`-micros`/`-nanos` | an integer since the epoch, or an RFC 3339 string (`"2026-11-26T04:28:21.123Z"`, any offset) | RFC 3339 in UTC with exactly the unit's digits: `"2026-11-01T10:00:00.123Z"`, `.123456Z`, `.123456789Z` |
//! | `local-timestamp-*` | an integer, or the date-time without a zone (`"2026-11-26T04:28:21.123"`) | the date-time without a zone, the unit's digits: `"2026-11-01T10:00:00.123"` |
//! | `decimal` | a decimal string (`"12.34"`) or number, at most the schema's scale and precision (digits past the scale only if zeros), any width | its exact text at the schema's scale, a string: `"12.34"`, `"-0.50"`, `"12.00"`, no point at scale 0 (past scale 16383, never in practice: `"1234E-20000"`) |
//! | `big-decimal` | a decimal string or number | its decimal string |
//! | `duration` | `{"months": .., "days": .., "millis": ..}` | the same |
//!
//! Digits finer than a time's or a timestamp's unit are truncated toward the past. Years past
//! 9999 or before 0 are written with a sign and six digits (`"+10000-01-01T00:00:00.000Z"`, see
//! [`crate::calendar`]). What [`avro_to_json`] writes, [`json_to_avro`] reads back to the same
//! value. The envelope's `occurred_at` is a timestamp too, written as text here; the
//! [`crate::event::Event`] made of a record keeps it as integer milliseconds.
//!
//! Records are strict: every JSON field must be a field of the schema (an unknown one is an error
//! with a "did you mean" when a field name is close), and a field the JSON leaves out takes the
//! schema default, or is an error when it has none. An explicit `null` is the null value when the
//! field's type allows null, and the default otherwise.
//!
//! Error paths are JSONPath-like: `$` is the event, `.name` a field or map key, `[3]` an array
//! item, `["a key"]` a field or key that is not an identifier.
//!
//! # The hot paths
//!
//! The functions above are the reference, built on apache-avro values. Per event, producers
//! and workers use faster equivalents that give the same results and the same errors (they
//! fall back to the reference for anything they do not cover, and property tests hold them
//! equal): [`encode_json_into`] checks a JSON event and writes its Avro body in one walk, and
//! an [`EventDecoder`], compiled once per schema id, reads bodies straight into JSON and
//! [`crate::event::Event`]s.

mod body;
mod error;
mod fail;
mod from_json;
mod names;
mod resolution;
mod scalars;
mod strict_body;
mod to_json;

#[cfg(test)]
mod arbitrary;
mod decoder;
mod encoder;
#[cfg(test)]
mod tests;

pub use body::{decode, encode};
pub use decoder::{EventDecoder, ReadEventError};
pub use encoder::{EncodeJsonError, encode_json, encode_json_into, field_json};
pub use error::{ConvertError, ConvertErrorKind, DecodeError, EncodeError};
pub use from_json::{json_to_avro, json_type};
pub use to_json::avro_to_json;
pub(crate) use to_json::connect_json;

pub(crate) use crate::calendar::{parse_date, parse_rfc3339};
