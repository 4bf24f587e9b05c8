//! A CDC record as the mapper reads it: key and value as JSON, plus what the record's own schema
//! says about its columns (decimal scales, the unit of a timestamp).
//!
//! Workers decode the Kafka record and build a [`CdcRecord`] here: from JsonConverter JSON
//! ([`CdcRecord::from_json`], which unwraps `{"schema": …, "payload": …}` when `schemas.enable`
//! is on), or from an Avro value and its writer schema ([`CdcRecord::from_avro`] with a
//! [`RowSchema`] made once per schema id by [`RowSchema::from_avro_schema`]). Where the schema
//! is known, precise decimals are turned into decimal text right here, so the mapper sees one
//! form whatever the encoding. Pure code.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use serde_json::{Map, Value as Json};

use super::CdcError;
use crate::avro::connect_json;
use crate::decimal::{Decimal, base64_decode};

/// What the record's schema says about a column, when it says something the value alone does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Semantic {
    /// `org.apache.kafka.connect.data.Decimal` at this scale.
    Decimal(i64),
    /// `io.debezium.data.VariableScaleDecimal`: `{scale, value}` (a `numeric` without scale).
    VariableScaleDecimal,
    /// An integer count of milliseconds since the epoch.
    EpochMillis,
    /// … of microseconds.
    EpochMicros,
    /// … of nanoseconds.
    EpochNanos,
}

/// The columns of a Debezium table (its `before`/`after` record) whose schema says how to read
/// them. Empty for a record without a schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowSchema {
    columns: BTreeMap<String, Semantic>,
}

impl RowSchema {
    /// Reads the writer schema (Avro JSON, as the registry returns it) of a Debezium envelope:
    /// the `before`/`after` record's columns, with their `connect.name`, `logicalType` and `scale`.
    /// A schema that is no envelope (an outbox value) gives an empty `RowSchema`.
    pub fn from_avro_schema(text: &str) -> Result<Self, CdcError> {
        let schema: Json = serde_json::from_str(text)
            .map_err(|e| CdcError::Malformed(format!("the writer schema is not JSON: {e}")))?;
        let mut out = Self::default();
        let Some(fields) = schema.get("fields").and_then(Json::as_array) else { return Ok(out) };
        for image in fields.iter().filter(|f| matches!(f["name"].as_str(), Some("before" | "after"))) {
            if let Some(row) = named_record(&image["type"]) {
                for column in row.get("fields").and_then(Json::as_array).into_iter().flatten() {
                    if let (Some(name), Some(semantic)) = (column["name"].as_str(), avro_semantic(&column["type"])) {
                        out.columns.insert(name.to_owned(), semantic);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Reads a Kafka Connect JSON schema (the `schema` of a `schemas.enable` record).
    fn from_connect_schema(schema: &Json) -> Self {
        let mut out = Self::default();
        let images = schema.get("fields").and_then(Json::as_array).into_iter().flatten();
        for image in images.filter(|f| matches!(f["field"].as_str(), Some("before" | "after"))) {
            for column in image.get("fields").and_then(Json::as_array).into_iter().flatten() {
                let Some(name) = column["field"].as_str() else { continue };
                let scale = column["parameters"]["scale"].as_str().and_then(|s| s.parse().ok());
                if let Some(semantic) = connect_semantic(column["name"].as_str(), None, scale) {
                    out.columns.insert(name.to_owned(), semantic);
                }
            }
        }
        out
    }

    pub(crate) fn get(&self, column: &str) -> Option<Semantic> {
        self.columns.get(column).copied()
    }
}

/// The record schema inside an Avro field type (`["null", {record}]` or the record itself).
fn named_record(ty: &Json) -> Option<&Json> {
    match ty {
        Json::Array(branches) => branches.iter().find_map(named_record),
        Json::Object(o) if o.get("type").and_then(Json::as_str) == Some("record") => Some(ty),
        _ => None,
    }
}

/// The semantic of an Avro column type (a union with null is looked through).
fn avro_semantic(ty: &Json) -> Option<Semantic> {
    match ty {
        Json::Array(branches) => branches.iter().find_map(avro_semantic),
        Json::Object(o) => {
            let scale = o
                .get("scale")
                .and_then(Json::as_i64)
                .or_else(|| o.get("connect.parameters").and_then(|p| p["scale"].as_str()).and_then(|s| s.parse().ok()));
            connect_semantic(
                o.get("connect.name").and_then(Json::as_str),
                o.get("logicalType").and_then(Json::as_str),
                scale,
            )
        }
        _ => None,
    }
}

/// Kafka Connect and Debezium semantic type names (and Avro logical types) → [`Semantic`].
fn connect_semantic(name: Option<&str>, logical: Option<&str>, scale: Option<i64>) -> Option<Semantic> {
    match (name, logical) {
        (Some("org.apache.kafka.connect.data.Decimal"), _) | (_, Some("decimal")) => {
            Some(Semantic::Decimal(scale.unwrap_or(0)))
        }
        (Some("io.debezium.data.VariableScaleDecimal"), _) => Some(Semantic::VariableScaleDecimal),
        (Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp"), _)
        | (_, Some("timestamp-millis")) => Some(Semantic::EpochMillis),
        (Some("io.debezium.time.MicroTimestamp"), _) | (_, Some("timestamp-micros")) => Some(Semantic::EpochMicros),
        (Some("io.debezium.time.NanoTimestamp"), _) | (_, Some("timestamp-nanos")) => Some(Semantic::EpochNanos),
        _ => None,
    }
}

/// One Kafka record of a CDC topic, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CdcRecord {
    pub(crate) key: Option<Json>,
    pub(crate) value: Option<Json>,
    /// What the record's schema says about its columns; `None` for JSON without schemas.
    pub(crate) schema: Option<RowSchema>,
}

impl CdcRecord {
    /// A JsonConverter record: `key` and `value` parsed as JSON, `None` for a null key or value
    /// (a tombstone). With `schemas.enable` each is `{"schema": …, "payload": …}`: unwrapped here,
    /// and the value's schema read for decimal scales and timestamp units.
    pub fn from_json(key: Option<Json>, value: Option<Json>) -> Self {
        let key = key.map(|k| unwrap_schema(k).1);
        let Some(value) = value else { return Self { key, value: None, schema: None } };
        let (schema, mut value) = unwrap_schema(value);
        let schema = schema.map(|s| RowSchema::from_connect_schema(&s));
        if let Some(schema) = &schema {
            for image in ["before", "after"] {
                if let Some(Json::Object(row)) = value.get_mut(image) {
                    normalise_json_row(row, schema);
                }
            }
        }
        Self { key, value: Some(value), schema }
    }

    /// An Avro record (Confluent framing, decoded with its writer schema): `row` must be
    /// [`RowSchema::from_avro_schema`] of that same writer schema (cache it by schema id). A
    /// decimal it gives no scale for is refused by the mapper, never read at a guessed scale.
    pub fn from_avro(key: Option<&Value>, value: Option<&Value>, row: &RowSchema) -> Self {
        let key = key.map(connect_json);
        let value = value.map(|v| match v {
            Value::Record(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(name, v)| {
                        let json = match (name.as_str(), unwrap_union(v)) {
                            ("before" | "after", Value::Record(columns)) => avro_row(columns, row),
                            _ => connect_json(v),
                        };
                        (name.clone(), json)
                    })
                    .collect(),
            ),
            other => connect_json(other),
        });
        Self { key, value, schema: Some(row.clone()) }
    }
}

/// `{"schema": {…}, "payload": …}` → (schema, payload); anything else is a schemaless record.
fn unwrap_schema(json: Json) -> (Option<Json>, Json) {
    match json {
        Json::Object(mut o)
            if o.len() == 2 && o.get("schema").is_some_and(Json::is_object) && o.contains_key("payload") =>
        {
            let payload = o.remove("payload").unwrap_or(Json::Null);
            (o.remove("schema"), payload)
        }
        other => (None, other),
    }
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

/// Precise decimals of a JSON row (base64) → decimal text, as the schema says.
fn normalise_json_row(row: &mut Map<String, Json>, schema: &RowSchema) {
    for (column, value) in row.iter_mut() {
        let decimal = match (schema.get(column), &*value) {
            (Some(Semantic::Decimal(scale)), Json::String(b64)) => {
                base64_decode(b64).and_then(|b| Decimal::from_be_bytes(&b, scale))
            }
            (Some(Semantic::VariableScaleDecimal), Json::Object(_)) => variable_scale_json(value),
            _ => continue,
        };
        // A value that does not decode stays as it is: the mapper reports it with its column.
        if let Ok(d) = decimal {
            *value = Json::String(d.to_string());
        }
    }
}

/// `{"scale": 2, "value": "<base64>"}`: Debezium's `VariableScaleDecimal` in JSON.
pub(crate) fn variable_scale_json(value: &Json) -> Result<Decimal, String> {
    let scale = value["scale"].as_i64().ok_or("a variable-scale decimal without an integer `scale`")?;
    let bytes = value["value"].as_str().ok_or("a variable-scale decimal without a base64 `value`")?;
    Decimal::from_be_bytes(&base64_decode(bytes)?, scale)
}

/// An Avro row → JSON, decimals as decimal text at the scale the schema gives.
fn avro_row(columns: &[(String, Value)], row: &RowSchema) -> Json {
    let convert = |column: &str, value: &Value| -> Json {
        let decimal = match (row.get(column), unwrap_union(value)) {
            (Some(Semantic::Decimal(scale)), Value::Decimal(d)) => {
                Vec::<u8>::try_from(d).map_err(|e| e.to_string()).and_then(|b| Decimal::from_be_bytes(&b, scale))
            }
            (Some(Semantic::Decimal(scale)), Value::Bytes(b)) => Decimal::from_be_bytes(b, scale),
            (Some(Semantic::VariableScaleDecimal), Value::Record(fields)) => {
                let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| unwrap_union(v));
                match (get("scale"), get("value")) {
                    (Some(Value::Int(s)), Some(Value::Bytes(b))) => Decimal::from_be_bytes(b, i64::from(*s)),
                    _ => Err("a variable-scale decimal without `scale` and `value`".to_owned()),
                }
            }
            // A decimal whose scale the schema did not give (a `RowSchema` of another schema):
            // left in a shape the mapper refuses, rather than read at the wrong scale.
            (_, Value::Decimal(_)) => return serde_json::json!({ "unscaled": connect_json(value), "scale": null }),
            _ => return connect_json(value),
        };
        decimal.map_or_else(|_| connect_json(value), |d| Json::String(d.to_string()))
    };
    Json::Object(columns.iter().map(|(name, value)| (name.clone(), convert(name, value))).collect())
}
