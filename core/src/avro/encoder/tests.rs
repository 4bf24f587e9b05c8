use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::avro::arbitrary::{self, test_schemas};
use crate::avro::{avro_to_json, decode};

static SCHEMAS: LazyLock<Vec<(String, Schema)>> = LazyLock::new(test_schemas);

/// The reference: convert, then encode.
fn reference(json: &Json, schema: &Schema) -> Result<Vec<u8>, String> {
    let value = json_to_avro(json, schema).map_err(|e| EncodeJsonError::from(e).to_string())?;
    encode(&value, schema).map_err(|e| EncodeJsonError::from(e).to_string())
}

fn has_map(schema: &Schema) -> bool {
    match schema {
        Schema::Map(_) => true,
        Schema::Array(array) => has_map(&array.items),
        Schema::Union(union) => union.variants().iter().any(has_map),
        Schema::Record(record) => record.fields.iter().any(|f| has_map(&f.schema)),
        _ => false,
    }
}

/// The same body — byte for byte, or, where apache-avro writes a map in its `HashMap` order,
/// the same value read back.
fn same_body(a: &[u8], b: &[u8], schema: &Schema) -> bool {
    if has_map(schema) { decode(a, schema, None).ok() == decode(b, schema, None).ok() } else { a == b }
}

fn assert_encodes_like_reference(json: &Json, schema: &Schema) -> Result<(), TestCaseError> {
    let reference = reference(json, schema);
    let fast = encode_json(json, schema).map_err(|e| e.to_string());
    match (&fast, &reference) {
        (Ok(fast), Ok(reference)) => prop_assert!(same_body(fast, reference, schema), "{json}"),
        _ => prop_assert_eq!(&fast, &reference, "{}", json),
    }
    // The walk alone (no fallback): accepts exactly what the reference accepts, writing the same.
    if simple_names(schema) {
        let mut out = Vec::new();
        match (Walk::INPUT.write(json, schema, &mut out), &reference) {
            (Ok(()), Ok(reference)) => prop_assert!(same_body(&out, reference, schema), "{json}"),
            (Ok(()), Err(e)) => prop_assert!(false, "the walk accepts what the reference rejects ({e}): {json}"),
            (Err(Miss::Invalid), Ok(_)) => prop_assert!(false, "the walk rejects what the reference accepts: {json}"),
            (Err(_), _) => {}
        }
    }
    // Top-level fields as the reference's value has them.
    if let (Ok(Value::Record(fields)), Schema::Record(_)) = (json_to_avro(json, schema), schema) {
        let whole = avro_to_json(&Value::Record(fields.clone()), schema);
        for (name, _) in &fields {
            prop_assert_eq!(field_json(json, schema, name), whole.get(name).cloned(), "{}", name);
        }
        prop_assert_eq!(field_json(json, schema, "no such field"), None);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn events_encode_like_the_reference(
        (i, json) in (0..SCHEMAS.len()).prop_flat_map(|i| arbitrary::event_json(&SCHEMAS[i].1).prop_map(move |j| (i, j)))
    ) {
        assert_encodes_like_reference(&json, &SCHEMAS[i].1)?;
    }
}

use apache_avro::types::Value;

#[test]
fn valid_repository_events_take_the_walk() {
    let mut runner = proptest::test_runner::TestRunner::default();
    for (name, schema) in arbitrary::repository_schemas() {
        assert!(simple_names(&schema), "{name}");
        for _ in 0..200 {
            let value = arbitrary::value(&schema).new_tree(&mut runner).expect("value").current();
            let json = avro_to_json(&value, &schema);
            let mut out = Vec::new();
            assert_eq!(Walk::INPUT.write(&json, &schema, &mut out), Ok(()), "{name}: {json}");
            assert_eq!(Ok(out), reference(&json, &schema), "{name}");
        }
    }
}

#[test]
fn errors_are_the_converters() {
    let schema = &SCHEMAS.iter().find(|(n, _)| n.ends_with("purchase_completed.avsc")).expect("schema").1;
    let event = json!({
        "event_id": "0190c6a5-7e2b-7c4d-9f1a-2b3c4d5e6f70", "event_type": "purchase.completed",
        "aggregate_id": "order-42", "aggregate_version": 3, "occurred_at": "2026-11-26T04:28:21.123Z",
        "producer": "shop", "user_id": "u-1", "order_id": "order-42", "amount_cents": "12", "currency": "EUR",
        "items": 2
    });
    let err = encode_json(&event, schema).expect_err("wrong type");
    assert_eq!(err.to_string(), r#"$.amount_cents: expected long, found string "12""#);
    assert!(matches!(err, EncodeJsonError::Invalid(_)));
    let mut out = vec![1, 2, 3];
    assert!(encode_json_into(&event, schema, &mut out).is_err());
    assert_eq!(out, [1, 2, 3], "nothing appended on an error");
}

#[test]
fn names_defined_twice_are_not_simple() {
    use apache_avro::schema::{Name, RecordField, RecordSchema};
    let inner = |name: &str| {
        Schema::Record(RecordSchema::builder().name(Name::new(name).expect("name")).fields(Vec::new()).build())
    };
    let field = |name: &str, schema: Schema| RecordField::builder().name(name.to_owned()).schema(schema).build();
    let twice = Schema::Record(
        RecordSchema::builder()
            .name(Name::new("ns.Outer").expect("name"))
            .fields(vec![field("a", inner("Inner")), field("b", inner("ns.Inner"))])
            .build(),
    );
    assert!(!simple_names(&twice));
    assert_eq!(
        encode_json(&json!({"a": {}, "b": {}}), &twice).map_err(|e| e.to_string()),
        reference(&json!({"a": {}, "b": {}}), &twice)
    );
    assert!(reference(&json!({"a": {}, "b": {}}), &twice).is_err(), "ResolvedSchema rejects it");
    let once = Schema::Record(
        RecordSchema::builder()
            .name(Name::new("ns.Outer").expect("name"))
            .fields(vec![field("a", inner("Inner")), field("b", inner("other.Inner"))])
            .build(),
    );
    assert!(simple_names(&once));
    assert!(!simple_names(&arbitrary::with_references()));
}
