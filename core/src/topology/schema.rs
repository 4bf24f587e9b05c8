//! What the topology needs to know about an event schema: that it is an Avro record, that it
//! starts with the envelope, and which payload fields it has.
//!
//! The text comes from the `.avsc` file an `[events."<type>"]` entry names (read by the caller);
//! the facts go to the cross-checks of projections (document id placeholders, field mappings) and
//! the record's full name to the registry subject. Pure code.

use std::collections::BTreeMap;

use apache_avro::Schema;
use apache_avro::schema::UuidSchema;

/// The shape an envelope field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvelopeType {
    /// `string`, with or without `logicalType: uuid` (the same bytes on the wire).
    Uuid,
    /// `string`.
    String,
    /// `long`.
    Long,
    /// `long` with `logicalType: timestamp-millis`.
    TimestampMillis,
    /// `["null", "string"]` with `default: null`.
    OptionalString,
}

impl EnvelopeType {
    fn accepts(self, schema: &Schema) -> bool {
        match self {
            Self::Uuid => matches!(schema, Schema::String | Schema::Uuid(UuidSchema::String)),
            Self::String => matches!(schema, Schema::String),
            Self::Long => matches!(schema, Schema::Long),
            Self::TimestampMillis => matches!(schema, Schema::TimestampMillis),
            Self::OptionalString => {
                matches!(schema, Schema::Union(u) if matches!(u.variants(), [Schema::Null, Schema::String]))
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Uuid => r#"{"type": "string", "logicalType": "uuid"}"#,
            Self::String => r#""string""#,
            Self::Long => r#""long""#,
            Self::TimestampMillis => r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            Self::OptionalString => r#"["null", "string"] with "default": null"#,
        }
    }
}

/// The envelope: the first fields of every event record, in this order.
const ENVELOPE: &[(&str, EnvelopeType)] = &[
    ("event_id", EnvelopeType::Uuid),
    ("event_type", EnvelopeType::String),
    ("aggregate_id", EnvelopeType::String),
    ("aggregate_version", EnvelopeType::Long),
    ("occurred_at", EnvelopeType::TimestampMillis),
    ("producer", EnvelopeType::String),
    ("correlation_id", EnvelopeType::OptionalString),
    ("causation_id", EnvelopeType::OptionalString),
    ("traceparent", EnvelopeType::OptionalString),
    ("tracestate", EnvelopeType::OptionalString),
];

/// Envelope fields that may be a topic's Kafka key: those never null.
pub const KEY_FIELDS: &[&str] = &["aggregate_id", "event_id", "event_type", "producer"];

/// True for an envelope field name.
pub fn is_envelope_field(name: &str) -> bool {
    ENVELOPE.iter().any(|(field, _)| *field == name)
}

/// What the cross-checks need to know about one field of an event record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldFacts {
    /// The value can be null (a union with `null`).
    pub(crate) nullable: bool,
    /// The value prints as a short text (string, uuid, int, long, enum), so it can go in a key.
    pub(crate) scalar: bool,
}

/// A parsed, checked event schema.
#[derive(Debug, Clone)]
pub(crate) struct EventSchema {
    /// The parsed schema.
    pub(crate) schema: Schema,
    /// The record's full name (`sluice.users.UserRegistered`).
    pub(crate) record_name: String,
    /// Every field, envelope included.
    pub(crate) fields: BTreeMap<String, FieldFacts>,
}

fn is_scalar(schema: &Schema) -> bool {
    matches!(schema, Schema::String | Schema::Uuid(UuidSchema::String) | Schema::Int | Schema::Long | Schema::Enum(_))
}

fn facts(schema: &Schema) -> FieldFacts {
    match schema {
        Schema::Union(u) => {
            let others: Vec<&Schema> = u.variants().iter().filter(|v| !matches!(v, Schema::Null)).collect();
            FieldFacts {
                nullable: others.len() < u.variants().len(),
                scalar: matches!(others.as_slice(), [one] if is_scalar(one)),
            }
        }
        Schema::Null => FieldFacts { nullable: true, scalar: false },
        other => FieldFacts { nullable: false, scalar: is_scalar(other) },
    }
}

/// Why a schema file cannot be an event schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SchemaError {
    /// Not valid Avro (the parser's message).
    Invalid(String),
    /// Valid Avro, but not a record.
    NotARecord,
    /// A record whose envelope is wrong: every problem found.
    Envelope(Vec<String>),
}

impl SchemaError {
    /// One line per problem.
    pub(crate) fn messages(&self) -> Vec<String> {
        match self {
            Self::Invalid(e) => vec![format!("not a valid Avro schema: {e}")],
            Self::NotARecord => vec!["the schema is not a record".into()],
            Self::Envelope(problems) => problems.clone(),
        }
    }
}

/// Parses an event schema and checks its envelope.
pub(crate) fn inspect(text: &str) -> Result<EventSchema, SchemaError> {
    let schema = Schema::parse_str(text).map_err(|e| SchemaError::Invalid(e.to_string()))?;
    let Schema::Record(record) = &schema else {
        return Err(SchemaError::NotARecord);
    };
    let mut problems = Vec::new();
    for (position, (name, expected)) in ENVELOPE.iter().enumerate() {
        match record.fields.iter().position(|f| f.name == *name) {
            None => problems.push(format!("envelope field `{name}` is missing")),
            Some(found) => {
                let field = &record.fields[found];
                if !expected.accepts(&field.schema) {
                    problems
                        .push(format!("envelope field `{name}` has the wrong type: expected {}", expected.describe()));
                } else if *expected == EnvelopeType::OptionalString && field.default != Some(serde_json::Value::Null) {
                    problems.push(format!("envelope field `{name}` needs `\"default\": null`"));
                }
                if found != position {
                    problems.push(format!(
                        "envelope field `{name}` is field {} of the record, expected {}: the envelope comes first, in \
                         order",
                        found + 1,
                        position + 1
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(SchemaError::Envelope(problems));
    }
    let fields = record.fields.iter().map(|f| (f.name.clone(), facts(&f.schema))).collect();
    Ok(EventSchema { record_name: record.name.fullname(None), schema, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTERED: &str = include_str!("../../../schemas/users/registered.avsc");

    #[test]
    fn same_envelope_as_the_decoder() {
        let names: Vec<&str> = ENVELOPE.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, crate::event::ENVELOPE_FIELDS);
        assert!(KEY_FIELDS.iter().all(|k| is_envelope_field(k)));
    }

    #[test]
    fn reads_a_domain_schema() {
        let s = inspect(REGISTERED).expect("valid");
        assert_eq!(s.record_name, "sluice.users.UserRegistered");
        assert_eq!(s.fields["email"], FieldFacts { nullable: false, scalar: true });
        assert_eq!(s.fields["referrer"], FieldFacts { nullable: true, scalar: true });
        assert_eq!(s.fields["correlation_id"], FieldFacts { nullable: true, scalar: true });
        assert_eq!(s.fields.len(), 14);
    }

    #[test]
    fn names_every_envelope_problem() {
        let broken = REGISTERED.replacen(r#""name": "producer","#, r#""name": "producer_name","#, 1).replacen(
            r#""type": "long","#,
            r#""type": "int","#,
            1,
        );
        let problems = inspect(&broken).expect_err("broken envelope");
        assert_eq!(
            problems,
            SchemaError::Envelope(vec![
                "envelope field `aggregate_version` has the wrong type: expected \"long\"".to_owned(),
                "envelope field `producer` is missing".to_owned(),
            ])
        );
    }

    #[test]
    fn wants_the_envelope_first() {
        let moved = r#"{"type": "record", "name": "X", "fields": [
            {"name": "extra", "type": "string"},
            {"name": "event_id", "type": "string"},
            {"name": "event_type", "type": "string"},
            {"name": "aggregate_id", "type": "string"},
            {"name": "aggregate_version", "type": "long"},
            {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "producer", "type": "string"},
            {"name": "correlation_id", "type": ["null", "string"], "default": null},
            {"name": "causation_id", "type": ["null", "string"], "default": null},
            {"name": "traceparent", "type": ["null", "string"], "default": null},
            {"name": "tracestate", "type": ["null", "string"]}
        ]}"#;
        let problems = inspect(moved).expect_err("envelope not first").messages();
        assert_eq!(problems.len(), 11, "{problems:?}");
        assert!(problems[0].contains("`event_id` is field 2 of the record, expected 1"), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("`tracestate` needs `\"default\": null`")), "{problems:?}");
        assert_eq!(inspect(r#"{"type": "string"}"#).map(|_| ()), Err(SchemaError::NotARecord));
        assert!(inspect("{").expect_err("not json").messages()[0].starts_with("not a valid Avro schema: "));
    }
}
