//! The model of `[cdc.<name>]`: a change-data-capture source whose records are not sluice events
//! but become sluice events when a worker maps them (see [`crate::cdc`]).
//!
//! Two formats: Debezium change events of one table (`before`/`after`/`op`, one event type for
//! inserts, updates and snapshot reads and one for deletes), and Debezium outbox events (the outbox
//! event router's records: the application's own event in the `payload` column). Values come from
//! [`crate::topology::parse`] and are cross-checked against the event schemas by
//! [`crate::topology::validate`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Debezium's default `unavailable.value.placeholder`: an unchanged TOASTed column in an update.
pub const DEBEZIUM_UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

spelled_enum! {
    /// How the records of a CDC topic are serialized.
    CdcEncoding {
        /// Confluent framing and an Avro body, the writer schema in the registry (Apicurio's or
        /// Confluent's Kafka Connect Avro converter).
        Avro = "avro",
        /// Kafka's JsonConverter, with `schemas.enable` true (`{"schema": …, "payload": …}`) or false.
        Json = "json",
    }
}

spelled_enum! {
    /// Debezium's `decimal.handling.mode`. Only consulted for JSON without schemas, where a
    /// string could be either precise bytes (base64) or decimal text; a record that carries its
    /// schema says itself how each decimal is written.
    #[derive(Default)]
    DecimalHandling {
        /// `org.apache.kafka.connect.data.Decimal`: the unscaled value's big-endian two's
        /// complement bytes (base64 in JSON) at the column's scale.
        #[default]
        Precise = "precise",
        /// Decimal text, `"1234.50"`.
        String = "string",
        /// A double (lossy beyond 15 significant digits).
        Double = "double",
    }
}

spelled_enum! {
    /// How a column's value is read (`type = "…"` of a column mapping). The event field's Avro
    /// type says what it becomes.
    ColumnKind {
        /// `numeric`/`decimal`: precise bytes, decimal text or a double, at the mapping's `scale`.
        Decimal = "decimal",
        /// `timestamp`/`timestamptz`: an RFC 3339 text (`io.debezium.time.ZonedTimestamp`) or a
        /// count since the epoch (`Timestamp` ms, `MicroTimestamp` µs, `NanoTimestamp` ns).
        Timestamp = "timestamp",
        /// `date`: days since 1970-01-01 (`io.debezium.time.Date`), or `"YYYY-MM-DD"`.
        Date = "date",
        /// `json`/`jsonb` (`io.debezium.data.Json`): the JSON text, kept as text.
        Json = "json",
        /// Any scalar, as text.
        String = "string",
        /// An integer, or an integer written as text.
        Long = "long",
        /// A number, or a number written as text.
        Double = "double",
        /// A boolean.
        Boolean = "boolean",
    }
}

spelled_enum! {
    /// The unit of a timestamp column written as an integer, when the record carries no schema
    /// to say it (JSON with `schemas.enable = false`).
    #[derive(Default)]
    TimeUnit {
        /// Milliseconds (`io.debezium.time.Timestamp`: `timestamp(0..3)`, or `time.precision.mode = connect`).
        Millis = "ms",
        /// Microseconds (`io.debezium.time.MicroTimestamp`: PostgreSQL's default `timestamp(6)`).
        #[default]
        Micros = "us",
        /// Nanoseconds (`io.debezium.time.NanoTimestamp`).
        Nanos = "ns",
    }
}

/// `[cdc.<name>]`: one CDC topic and how its records become sluice events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CdcSourceConfig {
    /// The topic the connector writes; declared under `[topics]` so projections can consume it.
    pub topic: String,
    /// How records are serialized.
    pub encoding: CdcEncoding,
    /// The envelope's `producer`; default `debezium:<source.name>` (the connector's
    /// `topic.prefix`) for change events, `outbox:<name>` for outbox events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
    /// The format and its settings.
    #[serde(flatten)]
    pub format: CdcFormat,
}

impl CdcSourceConfig {
    /// Every sluice event type the source can emit.
    pub fn event_types(&self) -> Vec<&str> {
        match &self.format {
            CdcFormat::Debezium(d) => vec![d.upsert_event.as_str(), d.delete_event.as_str()],
            CdcFormat::Outbox(o) => o.events.values().map(String::as_str).collect(),
        }
    }
}

/// `format = "debezium"` or `format = "outbox"`, with the keys of that format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "format")]
pub enum CdcFormat {
    /// Change events of one table.
    #[serde(rename = "debezium")]
    Debezium(DebeziumConfig),
    /// The outbox event router's events.
    #[serde(rename = "outbox")]
    Outbox(OutboxConfig),
}

/// The keys of `format = "debezium"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebeziumConfig {
    /// The primary key column(s): their values, joined with `:`, are the `aggregate_id`.
    pub key: Vec<String>,
    /// The event type of an insert, update or snapshot read (`op` c, u, r).
    pub upsert_event: String,
    /// The event type of a delete (`op` d); projections list it in `erase_on`.
    pub delete_event: String,
    /// The connector's `decimal.handling.mode` (default `precise`).
    pub decimal_handling: DecimalHandling,
    /// The connector's `unavailable.value.placeholder`: a column holding it is left out of the
    /// event (an unchanged TOASTed value), so projections keep what they have.
    pub unavailable_value: String,
    /// Event field → column.
    pub columns: BTreeMap<String, ColumnMapping>,
}

/// Where an event field takes its value: a column, read as `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMapping {
    /// The column.
    pub column: String,
    /// How to read it; `None`: the value must already fit the field (string, integer, number,
    /// boolean, UUID text, enum symbol).
    pub kind: Option<ColumnKind>,
    /// For `decimal`: the column's scale (`numeric(12,2)` → 2); a `long` field receives the
    /// value in units of 10^-scale (cents for 2).
    pub scale: Option<u32>,
    /// For `timestamp`: the unit of an integer value in records without a schema (default `us`).
    pub unit: Option<TimeUnit>,
}

impl ColumnMapping {
    /// A mapping with no conversion.
    pub fn plain(column: impl Into<String>) -> Self {
        Self { column: column.into(), kind: None, scale: None, unit: None }
    }
}

impl Serialize for ColumnMapping {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.kind.is_none() {
            return s.serialize_str(&self.column);
        }
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("column", &self.column)?;
        if let Some(kind) = self.kind {
            map.serialize_entry("type", &kind)?;
        }
        if let Some(scale) = self.scale {
            map.serialize_entry("scale", &scale)?;
        }
        if let Some(unit) = self.unit {
            map.serialize_entry("unit", &unit)?;
        }
        map.end()
    }
}

/// The keys of `format = "outbox"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxConfig {
    /// Where the outbox event type is (`table.fields.additional.placement`, e.g.
    /// `type:header:eventType` → `"header:eventType"`).
    pub event_type: FieldRef,
    /// Where the event's `aggregate_version` is (the application sets it).
    pub version: FieldRef,
    /// Where the event id is (default `header:id`, the router's header with the outbox row id).
    pub event_id: FieldRef,
    /// Where `occurred_at` is (default `timestamp`: the record timestamp, the outbox row's commit
    /// time).
    pub occurred_at: FieldRef,
    /// Outbox event type → sluice event type.
    pub events: BTreeMap<String, String>,
}

/// A value of an outbox record: `header:<name>`, `field:<payload field>`, `key` or `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    /// A Kafka header (its bytes as UTF-8 text, or a JSON string or number).
    Header(String),
    /// A field of the payload object (taken out of the payload).
    Field(String),
    /// The record key.
    Key,
    /// The record timestamp.
    Timestamp,
}

impl FromStr for FieldRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let named = |name: &str, make: fn(String) -> Self| {
            if name.is_empty() {
                Err(format!("{text:?} names nothing after the `:`"))
            } else {
                Ok(make(name.to_owned()))
            }
        };
        match text.split_once(':') {
            Some(("header", name)) => named(name, Self::Header),
            Some(("field", name)) => named(name, Self::Field),
            None if text == "key" => Ok(Self::Key),
            None if text == "timestamp" => Ok(Self::Timestamp),
            _ => Err(format!(
                "{text:?} is not a place in an outbox record: write \"header:<name>\", \"field:<name>\", \"key\" or \"timestamp\""
            )),
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Field(name) => write!(f, "field:{name}"),
            Self::Key => f.write_str("key"),
            Self::Timestamp => f.write_str("timestamp"),
        }
    }
}

impl Serialize for FieldRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_refs_roundtrip() {
        for text in ["header:eventType", "field:version", "key", "timestamp"] {
            assert_eq!(text.parse::<FieldRef>().map(|r| r.to_string()), Ok(text.to_owned()));
        }
        assert!("header:".parse::<FieldRef>().is_err());
        assert!("column:x".parse::<FieldRef>().is_err());
    }
}
