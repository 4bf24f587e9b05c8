//! What goes wrong between JSON, Avro values and Avro bodies: the errors [`super::json_to_avro`],
//! [`super::encode`] and [`super::decode`] return, worded for the user who sent the event or for
//! the dead-letter topic that keeps the record.

use serde_json::Value as Json;
use thiserror::Error;

/// Why a JSON event does not fit its schema. Its text is meant for the user who sent the event:
/// `$.amount_cents: expected long, found string "12"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {kind}")]
pub struct ConvertError {
    /// Where in the JSON: `$` is the event, `$.items[0].amount_cents` a nested field (see the
    /// module docs). For a missing or unknown field, the record that should (not) hold it.
    pub path: String,
    /// What is wrong there.
    pub kind: ConvertErrorKind,
}

/// What is wrong at a [`ConvertError::path`]. Offending values are quoted as JSON and shortened to
/// 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConvertErrorKind {
    /// A field without a default is absent.
    #[error("missing required field {}", quote(.name))]
    MissingField {
        /// The schema's field name.
        name: String,
    },
    /// The JSON has a field the record does not define.
    #[error("unknown field {}{}", quote(.name), did_you_mean(.suggestion.as_deref()))]
    UnknownField {
        /// The JSON's field name.
        name: String,
        /// The schema field it most likely meant (close spelling, other case or `_`, an alias).
        suggestion: Option<String>,
    },
    /// The JSON value has the wrong type for the schema.
    #[error("expected {expected}, found {found}{}", value_suffix(.value.as_deref()))]
    WrongType {
        /// The schema type, e.g. `long`, `null or string`, `record Item`.
        expected: String,
        /// The JSON type: `null`, `boolean`, `number`, `string`, `array` or `object`.
        found: &'static str,
        /// The JSON value, for scalars.
        value: Option<String>,
    },
    /// A number (or timestamp) that does not fit the schema type.
    #[error("{value} is out of range for {expected}")]
    OutOfRange {
        /// The schema type with its range, e.g. `int (-2147483648 to 2147483647)`.
        expected: String,
        /// The JSON value.
        value: String,
    },
    /// A string that is not a symbol of the enum.
    #[error("unknown enum symbol {symbol}, expected one of {}", .allowed.join(", "))]
    InvalidEnumSymbol {
        /// The JSON string, quoted.
        symbol: String,
        /// The enum's symbols, in schema order.
        allowed: Vec<String>,
    },
    /// A string that is not a UUID.
    #[error("invalid uuid {value}: {reason}")]
    InvalidUuid {
        /// The JSON string, quoted.
        value: String,
        /// What the UUID parser objected to.
        reason: String,
    },
    /// A string that is not an RFC 3339 date-time.
    #[error("invalid timestamp {value}: {reason}")]
    InvalidTimestamp {
        /// The JSON string, quoted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string that is not a time of day (`HH:MM:SS.fff`).
    #[error("invalid time {value}: {reason}")]
    InvalidTime {
        /// The JSON string, quoted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string that is not a `YYYY-MM-DD` date.
    #[error("invalid date {value}: {reason}")]
    InvalidDate {
        /// The JSON string, quoted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string that is not the hex form of the bytes the schema wants.
    #[error("invalid bytes {value}: {reason}")]
    InvalidBytes {
        /// The JSON string, quoted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A number or string that is not a decimal the schema can hold.
    #[error("invalid decimal {value}: {reason}")]
    InvalidDecimal {
        /// The JSON value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No branch of a union (other than a single non-null one, whose own error is reported
    /// instead) accepts the value.
    #[error("no branch of the union accepts {found}{}; tried {}", value_suffix(.value.as_deref()), .tried.join(", "))]
    NoUnionBranch {
        /// The branches, in schema order.
        tried: Vec<String>,
        /// The JSON type.
        found: &'static str,
        /// The JSON value, for scalars.
        value: Option<String>,
    },
    /// The schema's default for a field the JSON left out does not fit the field (a schema bug).
    #[error("the schema default of field {} does not fit its type: {reason}", quote(.name))]
    InvalidDefault {
        /// The field.
        name: String,
        /// Why the default does not convert.
        reason: String,
    },
    /// The schema names a type it does not define.
    #[error("the schema refers to an undefined type {name}")]
    UnresolvedRef {
        /// The full name.
        name: String,
    },
    /// The schema itself is unusable (e.g. a type defined twice).
    #[error("invalid schema: {reason}")]
    InvalidSchema {
        /// The Avro library's reason.
        reason: String,
    },
}

/// Why a value could not be written as an Avro body.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The schema's named types do not resolve.
    #[error("invalid schema: {0}")]
    Schema(apache_avro::Error),
    /// The value does not fit the schema, even after Avro resolution (int to long, string to
    /// uuid, a bare value to its union branch).
    #[error("value does not match the schema: {0}")]
    Mismatch(apache_avro::Error),
}

/// Why an Avro body could not be read. Permanent for that record: it goes to the dead-letter
/// topic with this text as the reason.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The writer or reader schema's named types do not resolve.
    #[error("invalid schema: {0}")]
    Schema(apache_avro::Error),
    /// The body is not a datum of the writer schema (truncated, corrupt, or another schema).
    #[error("cannot read the Avro body with the writer schema: {0}")]
    Body(apache_avro::Error),
    /// The body ends inside a value: it was cut short, or written with another schema.
    #[error("the body ends inside a value ({0} bytes): truncated, or written with another schema")]
    Truncated(usize),
    /// A decimal of no bytes: not a number (a writer's bug or a foreign body).
    #[error("a decimal with no bytes is not a number")]
    EmptyDecimal,
    /// The writer schema's datum ends before the body does: the body was written with another
    /// schema, or bytes were appended.
    #[error("{0} trailing bytes after the Avro body")]
    TrailingBytes(usize),
    /// The value read does not resolve to the reader schema (the schemas are not compatible).
    #[error("cannot resolve the event to the reader schema: {0}")]
    Resolve(apache_avro::Error),
}

pub(super) fn quote(s: &str) -> String {
    Json::String(s.to_owned()).to_string()
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map(|s| format!(", did you mean {}?", quote(s))).unwrap_or_default()
}

fn value_suffix(value: Option<&str>) -> String {
    value.map(|v| format!(" {v}")).unwrap_or_default()
}
