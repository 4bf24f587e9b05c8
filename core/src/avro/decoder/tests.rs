use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::avro::arbitrary::{self, test_schemas};
use crate::event::ENVELOPE_FIELDS;

/// The schemas and their decoders, built once.
static SCHEMAS: LazyLock<Vec<(String, Arc<Schema>, EventDecoder)>> = LazyLock::new(|| {
    test_schemas()
        .into_iter()
        .map(|(name, schema)| {
            let schema = Arc::new(schema);
            let decoder = EventDecoder::new(schema.clone(), None);
            (name, schema, decoder)
        })
        .collect()
});

fn position() -> Position {
    Position { topic: "t".into(), partition: 1, offset: 2 }
}

/// The reference: apache-avro's value, as JSON.
fn reference_json(body: &[u8], writer: &Schema, reader: Option<&Schema>) -> Result<String, String> {
    decode(body, writer, reader)
        .map(|v| avro_to_json(&v, reader.unwrap_or(writer)).to_string())
        .map_err(|e| e.to_string())
}

/// The reference event: [`Event::from_record`] of the reference JSON.
fn reference_event(body: &[u8], writer: &Schema, reader: Option<&Schema>) -> Result<Event, String> {
    let value = decode(body, writer, reader).map_err(|e| ReadEventError::from(e).to_string())?;
    Event::from_record(avro_to_json(&value, reader.unwrap_or(writer)), position(), 7)
        .map_err(|e| ReadEventError::from(e).to_string())
}

/// Same JSON (compared as text: field order, number kinds and all), same event (payload in the
/// order of the JSON), same errors.
fn assert_decodes_like_reference(decoder: &EventDecoder, body: &[u8]) -> Result<(), TestCaseError> {
    let (writer, reader) = (decoder.writer(), decoder.reader());
    let expected = reference_json(body, writer, reader);
    prop_assert_eq!(decoder.decode_json(body).map(|j| j.to_string()).map_err(|e| e.to_string()), expected.clone());
    let event = decoder.decode_event(body, position(), 7).map_err(|e| e.to_string());
    let reference = reference_event(body, writer, reader);
    match (&event, &reference) {
        (Ok(event), Ok(reference)) => {
            prop_assert_eq!(&event.envelope, &reference.envelope);
            prop_assert_eq!(&event.payload, &reference.payload);
            prop_assert_eq!((&event.position, event.schema_id), (&reference.position, reference.schema_id));
            let Ok(Json::Object(record)) = serde_json::from_str::<Json>(&expected.unwrap_or_default()) else {
                return Err(TestCaseError::fail("the record is an object"));
            };
            let payload_order: Vec<_> = record.keys().filter(|k| envelope_slot(k).is_none()).collect();
            prop_assert_eq!(event.payload.keys().collect::<Vec<_>>(), payload_order, "payload in schema order");
        }
        _ => prop_assert_eq!(event.map(|_| ()), reference.map(|_| ())),
    }
    Ok(())
}

fn schema_index() -> impl Strategy<Value = usize> {
    0..SCHEMAS.len()
}

fn valid_body() -> impl Strategy<Value = (usize, Value, Vec<u8>)> {
    schema_index().prop_flat_map(|i| arbitrary::body(&SCHEMAS[i].1).prop_map(move |(v, b)| (i, v, b)))
}

#[test]
fn every_test_schema_compiles() {
    for (name, _, decoder) in SCHEMAS.iter() {
        assert!(decoder.is_compiled(), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn valid_bodies_decode_like_apache_avro((i, value, body) in valid_body()) {
        let decoder = &SCHEMAS[i].2;
        let json = decoder.decode_json(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(json.to_string(), avro_to_json(&value, &SCHEMAS[i].1).to_string());
        // And the plan read it, not the fallback.
        let plan = decoder.plan.as_ref().ok_or_else(|| TestCaseError::fail("compiled"))?;
        prop_assert!(plan.json(&body).is_ok() && plan.event(&body, &mut EventSink::new(plan)).is_ok());
        assert_decodes_like_reference(decoder, &body)?;
    }

    #[test]
    fn damaged_bodies_decode_like_apache_avro(
        (i, body) in valid_body().prop_flat_map(|(i, _, body)| arbitrary::damaged(body).prop_map(move |b| (i, b)))
    ) {
        assert_decodes_like_reference(&SCHEMAS[i].2, &body)?;
    }

    /// Strict decoding: a valid body cut anywhere short, or with bytes appended, never decodes,
    /// on either path (a truncated record must not reach a sink with fields read as null).
    #[test]
    fn cut_or_padded_bodies_never_decode(
        (i, _, body) in valid_body(),
        cut in any::<prop::sample::Index>(),
        pad in proptest::collection::vec(any::<u8>(), 1..4),
    ) {
        let decoder = &SCHEMAS[i].2;
        let short = &body[..cut.index(body.len().max(1)).min(body.len().saturating_sub(1))];
        if short.len() < body.len() {
            prop_assert!(decoder.decode_json(short).is_err(), "a body cut to {} of {} bytes decoded", short.len(), body.len());
            prop_assert!(decoder.decode_event(short, position(), 7).is_err());
            prop_assert!(reference_json(short, decoder.writer(), None).is_err());
        }
        let padded = [body.as_slice(), &pad].concat();
        prop_assert!(decoder.decode_json(&padded).is_err());
        prop_assert!(reference_json(&padded, decoder.writer(), None).is_err());
    }

    #[test]
    fn random_bytes_decode_like_apache_avro(i in schema_index(), body in proptest::collection::vec(any::<u8>(), 0..96)) {
        assert_decodes_like_reference(&SCHEMAS[i].2, &body)?;
    }
}

/// A reader schema made from `writer` by `change` to its JSON.
fn evolve(writer: &Schema, change: impl FnOnce(&mut Vec<Json>)) -> Schema {
    let mut json = serde_json::to_value(writer).expect("schema as JSON");
    let fields = json["fields"].as_array_mut().expect("fields");
    change(fields);
    Schema::parse(&json).expect("evolved schema")
}

/// How schemas evolve, and whether the plan resolves that itself.
fn evolutions(writer: &Schema) -> Vec<(&'static str, Schema, bool)> {
    let added = |at_end: bool, field: Json| {
        evolve(writer, move |fields| if at_end { fields.push(field) } else { fields.insert(6, field) })
    };
    vec![
        (
            "optional field added",
            added(true, json!({"name": "added", "type": ["null", "string"], "default": null})),
            true,
        ),
        (
            "field with a default added in the middle",
            added(false, json!({"name": "added", "type": "long", "default": 5})),
            true,
        ),
        (
            "enum field added",
            added(
                true,
                json!({"name": "added", "type": {"type": "enum", "name": "Added", "symbols": ["X", "Y"]}, "default": "Y"}),
            ),
            true,
        ),
        (
            "string with a default added",
            added(true, json!({"name": "added", "type": "string", "default": "none"})),
            true,
        ),
        ("last field dropped", evolve(writer, |fields| drop(fields.pop())), true),
        ("fields reordered", evolve(writer, |fields| fields.reverse()), true),
        (
            "a string became nullable",
            evolve(writer, |fields| {
                let field = fields.iter_mut().rev().find(|f| f["type"] == "string").expect("a string field");
                field["type"] = json!(["null", "string"]);
                field["default"] = Json::Null;
            }),
            false,
        ),
        ("field without a default added", added(true, json!({"name": "added", "type": "string"})), false),
    ]
}

static EVOLUTIONS: LazyLock<Vec<(String, Arc<Schema>, EventDecoder)>> = LazyLock::new(|| {
    arbitrary::repository_schemas()
        .into_iter()
        .flat_map(|(name, writer)| {
            let writer = Arc::new(writer);
            evolutions(&writer)
                .into_iter()
                .map(|(change, reader, compiled)| {
                    let decoder = EventDecoder::new(writer.clone(), Some(Arc::new(reader)));
                    assert_eq!(decoder.is_compiled(), compiled, "{name}: {change}");
                    if let Some(Plan::Record(plan)) = &decoder.plan {
                        // Only moved fields need the values buffered.
                        assert_eq!(plan.in_order, change != "fields reordered", "{name}: {change}");
                    }
                    (format!("{name}: {change}"), writer.clone(), decoder)
                })
                .collect::<Vec<_>>()
        })
        .collect()
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn evolved_schemas_resolve_like_apache_avro(
        (i, body) in (0..EVOLUTIONS.len()).prop_flat_map(|i| arbitrary::body(&EVOLUTIONS[i].1).prop_map(move |(_, b)| (i, b)))
    ) {
        let decoder = &EVOLUTIONS[i].2;
        assert_decodes_like_reference(decoder, &body)?;
        if let Some(plan) = &decoder.plan {
            prop_assert!(plan.json(&body).is_ok(), "the plan resolves {}", EVOLUTIONS[i].0);
        }
    }
}

proptest! {
    /// A compatible change (an optional field added) to a schema with decimals resolves every
    /// body, however few bytes its amounts take: records written with v1 read with v2.
    #[test]
    fn decimals_resolve_to_a_compatible_reader((_, body) in arbitrary::body(&DECIMALS)) {
        let reader = evolve(&DECIMALS, |fields| fields.push(json!({"name": "added", "type": ["null", "string"], "default": null})));
        let expected = decode(&body, &DECIMALS, None).map(|v| avro_to_json(&v, &DECIMALS)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let resolved = decode(&body, &DECIMALS, Some(&reader)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut json = avro_to_json(&resolved, &reader);
        prop_assert_eq!(json.as_object_mut().and_then(|o| o.remove("added")), Some(Json::Null));
        prop_assert_eq!(&json, &expected, "the same values, the added field at its default");
        let decoder = EventDecoder::new(Arc::new(DECIMALS.clone()), Some(Arc::new(reader)));
        assert_decodes_like_reference(&decoder, &body)?;
    }
}

static DECIMALS: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(arbitrary::DECIMALS_AND_DURATIONS).expect("schema"));

#[test]
fn a_small_amount_resolves_to_a_compatible_reader() {
    // 26.35 at decimal(9, 2) is 2 bytes: apache-avro alone refuses to resolve it.
    let body = crate::avro::encode_json(&json!({"id": "a", "price": "26.35"}), &DECIMALS).expect("encodes");
    let reader = evolve(&DECIMALS, |fields| fields.push(json!({"name": "added", "type": "long", "default": 7})));
    let json = avro_to_json(&decode(&body, &DECIMALS, Some(&reader)).expect("resolves"), &reader);
    assert_eq!(json["price"], json!("26.35"));
    assert_eq!(json["added"], json!(7));
    // The plan resolves a schema of equal decimals itself, to the same JSON.
    let amounts = evolve(&DECIMALS, |fields| fields.truncate(2));
    let body = crate::avro::encode_json(&json!({"id": "a", "price": "-0.05"}), &amounts).expect("encodes");
    let evolved = evolve(&amounts, |fields| fields.push(json!({"name": "added", "type": "long", "default": 7})));
    let decoder = EventDecoder::new(Arc::new(amounts.clone()), Some(Arc::new(evolved.clone())));
    assert!(decoder.is_compiled());
    let json = decoder.decode_json(&body).expect("resolves");
    assert_eq!(json, json!({"id": "a", "price": "-0.05", "added": 7}));
    assert_eq!(json.to_string(), reference_json(&body, &amounts, Some(&evolved)).expect("reference"));
}

#[test]
fn a_decimal_of_no_bytes_is_refused_by_both_paths() {
    // `price` (bytes, decimal(9, 2)) of length 0: no number at all.
    let body = [2, b'a', 0, 0, 0];
    let err = decode(&body, &DECIMALS, None).expect_err("refused");
    assert!(matches!(err, DecodeError::EmptyDecimal), "{err}");
    let decoder = EventDecoder::new(Arc::new(DECIMALS.clone()), None);
    assert_eq!(decoder.decode_json(&body).map_err(|e| e.to_string()), Err(err.to_string()));
    let reader = evolve(&DECIMALS, |fields| fields.push(json!({"name": "added", "type": "long", "default": 7})));
    let resolving = EventDecoder::new(Arc::new(DECIMALS.clone()), Some(Arc::new(reader)));
    assert_eq!(resolving.decode_json(&body).map_err(|e| e.to_string()), Err(err.to_string()));
}

#[test]
fn every_evolution_is_tried() {
    assert_eq!(EVOLUTIONS.len(), arbitrary::repository_schemas().len() * 8);
}

#[test]
fn envelope_slots_follow_the_envelope_fields() {
    // `Slots::into_envelope` takes the fields by position.
    assert_eq!(
        ENVELOPE_FIELDS,
        [
            "event_id",
            "event_type",
            "aggregate_id",
            "aggregate_version",
            "occurred_at",
            "producer",
            "correlation_id",
            "causation_id",
            "traceparent",
            "tracestate"
        ]
    );
}

#[test]
fn records_that_are_not_events_fail_like_from_record() {
    let cases = [
        (r#"{"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"}]}"#, vec![2]),
        (
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "event_id", "type": "string"}, {"name": "event_type", "type": "long"}]}"#,
            vec![2, b'a', 4],
        ),
        (r#"["null", "string"]"#, vec![2, 2, b'a']),
        (r#""string""#, vec![2, b'a']),
    ];
    for (schema, body) in cases {
        let decoder = EventDecoder::new(Arc::new(Schema::parse_str(schema).expect("schema")), None);
        assert!(decoder.is_compiled(), "{schema}");
        assert_decodes_like_reference(&decoder, &body).unwrap_or_else(|e| panic!("{schema}: {e}"));
        assert!(decoder.decode_event(&body, position(), 7).is_err(), "{schema}");
    }
}

#[test]
fn payload_keeps_the_schema_order() {
    let (_, schema, decoder) = &SCHEMAS[0];
    let Schema::Record(record) = &**schema else { panic!("record") };
    let event = sample_event(schema);
    let body = crate::avro::encode_json(&event, schema).expect("encodes");
    let decoded = decoder.decode_event(&body, position(), 7).expect("event");
    let payload_fields: Vec<_> = record.fields.iter().map(|f| &f.name).filter(|n| envelope_slot(n).is_none()).collect();
    assert_eq!(decoded.payload.keys().collect::<Vec<_>>(), payload_fields);
}

/// A valid event of a repository schema: strings, longs, a uuid, nulls.
fn sample_event(schema: &Schema) -> Json {
    let Schema::Record(record) = schema else { panic!("record") };
    let mut event = Map::new();
    for field in &record.fields {
        let value = match &field.schema {
            Schema::Uuid(_) => json!("7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001"),
            Schema::Long | Schema::TimestampMillis | Schema::Int => json!(7),
            Schema::Enum(e) => json!(e.symbols[0]),
            Schema::Union(_) => Json::Null,
            _ => json!(field.name),
        };
        event.insert(field.name.clone(), value);
    }
    Json::Object(event)
}

#[test]
fn a_schema_the_plan_does_not_cover_is_read_by_apache_avro() {
    let recursive = Schema::parse_str(
        r#"{"type": "record", "name": "Node", "fields": [
            {"name": "value", "type": "long"}, {"name": "next", "type": ["null", "Node"], "default": null}]}"#,
    )
    .expect("schema");
    let decoder = EventDecoder::new(Arc::new(recursive), None);
    assert!(!decoder.is_compiled());
    assert_eq!(
        decoder.decode_json(&[2, 2, 4, 0]).expect("decodes"),
        json!({"value": 1, "next": {"value": 2, "next": null}})
    );
    let big = Schema::parse_str(r#"{"type": "bytes", "logicalType": "big-decimal"}"#).expect("schema");
    assert!(!EventDecoder::new(Arc::new(big), None).is_compiled());
}

#[test]
fn lengths_beyond_the_body_allocate_nothing() {
    // A string claiming 2^62 bytes, an array claiming 2^62 longs: rejected before any allocation.
    let schema = Arc::new(Schema::parse_str(r#"{"type": "array", "items": "long"}"#).expect("schema"));
    let decoder = EventDecoder::new(schema, None);
    let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(decoder.decode_json(&huge).is_err());
    let strings = EventDecoder::new(Arc::new(Schema::String), None);
    assert!(strings.decode_json(&huge).is_err());
}

#[test]
fn a_body_cut_before_its_last_nullable_fields_is_refused() {
    // apache-avro alone reads an end of input at a union index as the null branch: the body
    // below, cut before its last union fields, would decode with those fields null.
    let (_, schema, decoder) = SCHEMAS.iter().find(|(n, _, _)| n.ends_with("heartbeat.avsc")).expect("schema");
    let mut body = crate::avro::encode_json(&sample_event(schema), schema).expect("encodes");
    body.pop();
    let err = decoder.decode_json(&body).expect_err("a truncated body is refused");
    assert!(matches!(err, DecodeError::Truncated(_)), "{err}");
    assert!(decoder.decode_event(&body, position(), 7).is_err());
    assert_eq!(reference_json(&body, schema, None), Err(err.to_string()), "both paths say the same");
}

/// `text` (an unscaled magnitude's digits) with the point `scale` digits from the right, as
/// people write it: the oracle of the round trip below, written apart from `crate::decimal`.
fn with_point(negative: bool, digits: &str, scale: usize) -> String {
    let sign = if negative && digits.bytes().any(|b| b != b'0') { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{}{digits}", "0".repeat((scale + 1).saturating_sub(digits.len())));
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// A decimal schema of `precision` and `scale`, as bytes or as the smallest fixed that holds it.
fn decimal_schema(precision: usize, scale: usize, fixed: bool) -> Schema {
    let ty = if fixed {
        // Bytes of a two's complement of `precision` digits: ⌈(log2(10^p) + 1) / 8⌉.
        let size = ((precision as f64 * 10_f64.log2() + 1.0) / 8.0).ceil() as usize;
        json!({"type": "fixed", "name": "D", "size": size, "logicalType": "decimal", "precision": precision, "scale": scale})
    } else {
        json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
    };
    let schema = json!({"type": "record", "name": "R", "fields": [
        {"name": "d", "type": ty},
        {"name": "maybe", "type": ["null", ty.clone()], "default": null}
    ]});
    // A named fixed is defined once: the second use refers to it.
    let mut schema = schema;
    if fixed {
        schema["fields"][1]["type"] = json!(["null", "D"]);
    }
    Schema::parse(&schema).expect("decimal schema")
}

proptest! {
    /// What the decoder writes, the encoder reads back to the same value: `decode(encode(json))
    /// == json` for every decimal of every precision (to 76 digits, past 128 bits) and scale, as
    /// bytes or fixed, on the plan and on apache-avro.
    #[test]
    fn decimal_text_roundtrips(
        (precision, scale, digits) in (1usize..=76).prop_flat_map(|p| (Just(p), 0..=p, proptest::string::string_regex(&format!("[1-9][0-9]{{0,{}}}|0", p - 1)).expect("regex"))),
        negative in any::<bool>(),
        fixed in any::<bool>(),
    ) {
        let text = with_point(negative, &digits, scale);
        let schema = decimal_schema(precision, scale, fixed);
        let event = json!({"d": text, "maybe": text});
        let body = crate::avro::encode_json(&event, &schema).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let decoder = EventDecoder::new(Arc::new(schema.clone()), None);
        prop_assert!(decoder.is_compiled());
        prop_assert_eq!(decoder.decode_json(&body).map_err(|e| TestCaseError::fail(e.to_string()))?, event.clone());
        let reference = decode(&body, &schema, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(avro_to_json(&reference, &schema), event);
    }
}

#[test]
fn decimals_read_as_people_write_them() {
    let schema = decimal_schema(9, 2, false);
    let read = |text: &str| {
        let body = crate::avro::encode_json(&json!({"d": text}), &schema).expect("encodes");
        EventDecoder::new(Arc::new(schema.clone()), None).decode_json(&body).expect("decodes")["d"].clone()
    };
    assert_eq!(read("26.35"), json!("26.35"));
    assert_eq!(read("-.5"), json!("-0.50"));
    assert_eq!(read("12"), json!("12.00"));
    assert_eq!(read("+7.1"), json!("7.10"));
    assert_eq!(read("-0"), json!("0.00"));
    assert_eq!(with_point(true, "5", 2), "-0.05", "the oracle");
}

/// Every temporal type, top-level and in a union.
static TEMPORAL: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse_str(
        r#"{"type": "record", "name": "T", "fields": [
            {"name": "date", "type": {"type": "int", "logicalType": "date"}},
            {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "tu", "type": {"type": "long", "logicalType": "time-micros"}},
            {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "ns", "type": ["null", {"type": "long", "logicalType": "timestamp-nanos"}]},
            {"name": "local_ms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
            {"name": "local_us", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
            {"name": "local_ns", "type": {"type": "long", "logicalType": "local-timestamp-nanos"}}
        ]}"#,
    )
    .expect("schema")
});

proptest! {
    /// Any count of any temporal type reads as text that writes back to the very same body:
    /// `decode(encode(json)) == json` for the text, on the plan and on apache-avro.
    #[test]
    fn temporal_text_roundtrips(
        date in any::<i32>(),
        (tm, tu) in (0..86_400_000_i32, 0..86_400_000_000_i64),
        stamps in proptest::collection::vec(any::<i64>(), 6),
    ) {
        let counts = json!({
            "date": date, "tm": tm, "tu": tu, "ms": stamps[0], "us": stamps[1], "ns": stamps[2],
            "local_ms": stamps[3], "local_us": stamps[4], "local_ns": stamps[5]
        });
        let body = crate::avro::encode_json(&counts, &TEMPORAL).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let decoder = EventDecoder::new(Arc::new(TEMPORAL.clone()), None);
        let text = decoder.decode_json(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Some(text.to_string()), reference_json(&body, &TEMPORAL, None).ok());
        for (field, value) in text.as_object().into_iter().flatten() {
            prop_assert!(value.is_string(), "{} reads as text: {}", field, value);
        }
        let again = crate::avro::encode_json(&text, &TEMPORAL).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&again, &body, "{}", text);
        let value = crate::avro::json_to_avro(&text, &TEMPORAL).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(crate::avro::encode(&value, &TEMPORAL).ok(), Some(body), "the reference reads the text alike");
    }
}

#[test]
fn temporal_values_read_as_people_write_them() {
    let event = json!({
        "date": "2026-11-01", "tm": "10:00:00.123", "tu": "10:00:00.123456", "ms": "2026-11-01T11:00:00.123+01:00",
        "us": "2026-11-01T10:00:00.123456Z", "ns": "2026-11-01T10:00:00.123456789Z",
        "local_ms": "2026-11-01T10:00:00.1", "local_us": "2026-11-01T10:00:00", "local_ns": "2026-11-01 10:00:00.000000001"
    });
    let body = crate::avro::encode_json(&event, &TEMPORAL).expect("encodes");
    let json = EventDecoder::new(Arc::new(TEMPORAL.clone()), None).decode_json(&body).expect("decodes");
    assert_eq!(
        json,
        json!({
            "date": "2026-11-01", "tm": "10:00:00.123", "tu": "10:00:00.123456", "ms": "2026-11-01T10:00:00.123Z",
            "us": "2026-11-01T10:00:00.123456Z", "ns": "2026-11-01T10:00:00.123456789Z",
            "local_ms": "2026-11-01T10:00:00.100", "local_us": "2026-11-01T10:00:00.000000",
            "local_ns": "2026-11-01T10:00:00.000000001"
        })
    );
    let mut zoned = event.clone();
    zoned["local_ms"] = json!("2026-11-01T10:00:00Z");
    let err = crate::avro::json_to_avro(&zoned, &TEMPORAL).expect_err("a local date-time has no zone");
    assert_eq!(
        err.to_string(),
        r#"$.local_ms: invalid timestamp "2026-11-01T10:00:00Z": a local date-time has no time zone: expected one like 2026-11-26T04:28:21.123"#
    );
    let mut late = event;
    late["tm"] = json!("24:00:00");
    let err = crate::avro::json_to_avro(&late, &TEMPORAL).expect_err("no such time");
    assert_eq!(err.to_string(), r#"$.tm: invalid time "24:00:00": time 24:00 does not exist"#);
}
