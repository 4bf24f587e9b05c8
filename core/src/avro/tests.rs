//! Tests of the reference conversions: every schema under `schemas/` converts, encodes, decodes
//! and comes back; errors name the place and the problem; the JSON mapping both ways.

use apache_avro::types::Value;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Schema, Uuid};
use serde_json::{Map, Value as Json};

use super::scalars::{decimal_text, parse_decimal};
use super::*;
use crate::calendar::Unit;
use proptest::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn load(relative: &str) -> Schema {
    let text = std::fs::read_to_string(schema_dir().join(relative)).expect("schema file");
    Schema::parse_str(&text).expect("valid schema")
}

/// Every `.avsc` under `schemas/`, with its path.
fn all_schemas() -> Vec<(PathBuf, Schema)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("schemas dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "avsc") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&schema_dir(), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let schema = Schema::parse_str(&std::fs::read_to_string(&p).expect("read")).expect("parse");
            (p, schema)
        })
        .collect()
}

fn convert_err(json: Json, schema: &Schema) -> String {
    json_to_avro(&json, schema).expect_err("conversion should fail").to_string()
}

fn roundtrip(json: &Json, schema: &Schema) -> Json {
    let value = json_to_avro(json, schema).expect("converts");
    let body = encode(&value, schema).expect("encodes");
    let decoded = decode(&body, schema, None).expect("decodes");
    assert_eq!(decoded, value, "decode(encode(v)) == v");
    avro_to_json(&decoded, schema)
}

/// A valid event for `schema` and the JSON expected back, built from the schema so a new
/// `.avsc` is covered without touching this test. `full` fills optional fields too.
fn sample(schema: &Schema, full: bool, seed: &mut i64) -> Option<(Json, Json)> {
    *seed += 1;
    let pair = match schema {
        Schema::String => {
            let s = json!(format!("text-{seed}"));
            (s.clone(), s)
        }
        Schema::Long => (json!(*seed * 1_000_003), json!(*seed * 1_000_003)),
        Schema::Int => (json!(*seed), json!(*seed)),
        Schema::Uuid(_) => {
            let id = format!("0190c6a5-7e2b-7c4d-9f1a-{:012x}", seed);
            (json!(id.to_uppercase()), json!(id))
        }
        Schema::TimestampMillis => (json!("2026-11-26T06:28:21.123+02:00"), json!("2026-11-26T04:28:21.123Z")),
        Schema::Enum(e) => {
            let symbol = json!(e.symbols.last().expect("symbols"));
            (symbol.clone(), symbol)
        }
        Schema::Union(u) => {
            let branch = u.variants().iter().find(|s| !matches!(s, Schema::Null)).expect("branch");
            if full { sample(branch, full, seed)? } else { (Json::Null, Json::Null) }
        }
        Schema::Record(r) => {
            let (mut input, mut expected) = (Map::new(), Map::new());
            for field in &r.fields {
                let (i, e) = sample(&field.schema, full, seed)?;
                if full || field.default.is_none() {
                    input.insert(field.name.clone(), i);
                }
                expected.insert(field.name.clone(), e);
            }
            (Json::Object(input), Json::Object(expected))
        }
        _ => return None,
    };
    Some(pair)
}

#[test]
fn every_schema_converts_encodes_decodes_and_comes_back() {
    let schemas = all_schemas();
    assert!(schemas.len() >= 10, "found {} schemas", schemas.len());
    let mut seed = 0;
    for (path, schema) in &schemas {
        for full in [true, false] {
            let (input, expected) = sample(schema, full, &mut seed)
                .unwrap_or_else(|| panic!("{}: add the new type to sample()", path.display()));
            let back = roundtrip(&input, schema);
            assert_eq!(back, expected, "{} (full: {full})", path.display());
            // Schema field order is kept.
            let keys: Vec<_> = back.as_object().expect("object").keys().cloned().collect();
            let Schema::Record(r) = schema else { panic!("records only") };
            assert_eq!(keys, r.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>());
        }
    }
}

fn purchase() -> Json {
    json!({
        "event_id": "0190c6a5-7e2b-7c4d-9f1a-2b3c4d5e6f70",
        "event_type": "purchase.completed",
        "aggregate_id": "order-42",
        "aggregate_version": 3,
        "occurred_at": "2026-11-26T04:28:21.123Z",
        "producer": "shop",
        "user_id": "u-1",
        "session_id": "s-9",
        "order_id": "order-42",
        "amount_cents": 12_999,
        "currency": "EUR",
        "items": 2
    })
}

#[test]
fn purchase_roundtrip_normalizes_timestamps_and_fills_defaults() {
    let schema = load("engagement/purchase_completed.avsc");
    let back = roundtrip(&purchase(), &schema);
    assert_eq!(back["occurred_at"], json!("2026-11-26T04:28:21.123Z"));
    assert_eq!(back["correlation_id"], Json::Null);
    assert_eq!(back["session_id"], json!("s-9"));
    assert_eq!(back["amount_cents"], json!(12_999));

    let value = json_to_avro(&purchase(), &schema).expect("converts");
    let Value::Record(fields) = &value else { panic!("record") };
    assert_eq!(fields[0].1, Value::Uuid(Uuid::parse_str("0190c6a5-7e2b-7c4d-9f1a-2b3c4d5e6f70").expect("uuid")));
    assert_eq!(fields[4].1, Value::TimestampMillis(1_795_667_301_123));
    assert_eq!(fields[6].1, Value::Union(0, Box::new(Value::Null)));
    assert_eq!(fields[11].1, Value::Union(1, Box::new(Value::String("s-9".into()))));
}

#[test]
fn errors_name_the_place_and_the_problem() {
    let purchase_schema = load("engagement/purchase_completed.avsc");
    let with = |field: &str, value: Json| {
        let mut event = purchase();
        event[field] = value;
        convert_err(event, &purchase_schema)
    };
    assert_eq!(with("amount_cents", json!("12")), r#"$.amount_cents: expected long, found string "12""#);
    assert_eq!(with("amount_cents", json!(12.5)), "$.amount_cents: expected long, found number 12.5");
    assert_eq!(
        with("items", json!(2_147_483_648_i64)),
        "$.items: 2147483648 is out of range for int (-2147483648 to 2147483647)"
    );
    assert_eq!(
        with("amount_cents", json!(18_446_744_073_709_551_615_u64)),
        "$.amount_cents: 18446744073709551615 is out of range for long (-9223372036854775808 to 9223372036854775807)"
    );
    assert_eq!(with("session_id", json!(7)), "$.session_id: expected string or null, found number 7");
    assert_eq!(
        with("event_id", json!("not-a-uuid")),
        r#"$.event_id: invalid uuid "not-a-uuid": invalid character: found `n` at 0"#
    );
    assert_eq!(
        with("occurred_at", json!("2026-02-30T00:00:00Z")),
        r#"$.occurred_at: invalid timestamp "2026-02-30T00:00:00Z": day 30 does not exist in 2026-02"#
    );
    assert_eq!(
        with("occurred_at", json!(true)),
        "$.occurred_at: expected timestamp-millis (integer or RFC 3339 string), found boolean true"
    );
    assert_eq!(with("items", json!([1])), "$.items: expected int, found array");

    let mut missing = purchase();
    missing.as_object_mut().expect("object").remove("amount_cents");
    assert_eq!(convert_err(missing, &purchase_schema), r#"$: missing required field "amount_cents""#);

    let mut typo = purchase();
    let amount = typo.as_object_mut().expect("object").remove("amount_cents").expect("field");
    typo["amont_cents"] = amount;
    assert_eq!(convert_err(typo, &purchase_schema), r#"$: unknown field "amont_cents", did you mean "amount_cents"?"#);
    let mut camel = purchase();
    camel["orderId"] = json!("x");
    assert_eq!(convert_err(camel, &purchase_schema), r#"$: unknown field "orderId", did you mean "order_id"?"#);
    let mut stray = purchase();
    stray["zzz"] = json!(1);
    assert_eq!(convert_err(stray, &purchase_schema), r#"$: unknown field "zzz""#);
    assert_eq!(convert_err(json!([]), &purchase_schema), "$: expected record PurchaseCompleted, found array");

    let deleted = load("users/deleted.avsc");
    let mut event = sample(&deleted, false, &mut 0).expect("sample").0;
    event["reason"] = json!("BORED");
    assert_eq!(
        convert_err(event, &deleted),
        r#"$.reason: unknown enum symbol "BORED", expected one of USER_REQUEST, GDPR_ERASURE, FRAUD, OTHER"#
    );
}

/// A nested schema: arrays of records, a nullable record, a map, a reused named type (a
/// `Ref`), and a union with several branches.
fn order_schema() -> Schema {
    Schema::parse_str(
        r#"{
          "type": "record", "name": "Order", "namespace": "test",
          "fields": [
            {"name": "lines", "type": {"type": "array", "items": {
              "type": "record", "name": "Line",
              "fields": [
                {"name": "sku", "type": "string"},
                {"name": "amount_cents", "type": "long"},
                {"name": "qty", "type": "int", "default": 1}
              ]}}},
            {"name": "gift", "type": ["null", "Line"], "default": null},
            {"name": "tags", "type": {"type": "map", "values": "string"}, "default": {}},
            {"name": "note", "type": ["long", "string", "Line"], "default": 0},
            {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}, "default": "\u00ff\u0000ab"},
            {"name": "blob", "type": "bytes", "default": ""},
            {"name": "ratio", "type": "float", "default": 0.5},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}, "default": "\u0000"},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}, "default": 0},
            {"name": "flag", "type": "boolean", "default": false}
          ]
        }"#,
    )
    .expect("valid schema")
}

#[test]
fn nested_values_maps_refs_and_defaults() {
    let schema = order_schema();
    let input = json!({
        "lines": [{"sku": "a", "amount_cents": 100}, {"sku": "b", "amount_cents": 250, "qty": 3}],
        "gift": {"sku": "g", "amount_cents": 0},
        "tags": {"z": "1", "a b": "2"},
        "note": "hello",
        "digest": "DEADbeef",
        "blob": "00ff",
        "ratio": 0.1,
        "price": "12.3",
        "day": "2024-02-29",
        "flag": null
    });
    let back = roundtrip(&input, &schema);
    assert_eq!(
        back,
        json!({
            "lines": [{"sku": "a", "amount_cents": 100, "qty": 1}, {"sku": "b", "amount_cents": 250, "qty": 3}],
            "gift": {"sku": "g", "amount_cents": 0, "qty": 1},
            "tags": {"a b": "2", "z": "1"},
            "note": "hello",
            "digest": "deadbeef",
            "blob": "00ff",
            "ratio": 0.1,
            "price": "12.30",
            "day": "2024-02-29",
            "flag": false
        })
    );
    // Defaults: bytes in the Avro spec's code-point spelling, a union's first branch.
    let back = roundtrip(&json!({"lines": []}), &schema);
    assert_eq!(back["digest"], json!("ff006162"));
    assert_eq!(back["note"], json!(0));
    assert_eq!(back["gift"], Json::Null);
    assert_eq!(back["tags"], json!({}));
    // The union picks the first branch that accepts the value.
    let value = json_to_avro(&json!({"lines": [], "note": {"sku": "n", "amount_cents": 1}}), &schema).expect("ok");
    let Value::Record(fields) = value else { panic!("record") };
    assert!(matches!(&fields[3].1, Value::Union(2, inner) if matches!(**inner, Value::Record(_))));
}

#[test]
fn nested_errors_have_full_paths() {
    let schema = order_schema();
    let err = |json: Json| convert_err(json, &schema);
    assert_eq!(
        err(json!({"lines": [{"sku": "a", "amount_cents": 1}, {"sku": "b", "amount_cents": "2"}]})),
        r#"$.lines[1].amount_cents: expected long, found string "2""#
    );
    // Inside the nullable record: the record's own error, not "no branch".
    assert_eq!(
        err(json!({"lines": [], "gift": {"sku": 5, "amount_cents": 1}})),
        "$.gift.sku: expected string, found number 5"
    );
    assert_eq!(err(json!({"lines": [], "gift": {"sku": "x"}})), r#"$.gift: missing required field "amount_cents""#);
    assert_eq!(err(json!({"lines": [], "gift": "x"})), r#"$.gift: expected record Line or null, found string "x""#);
    assert_eq!(err(json!({"lines": [], "tags": {"a b": 1}})), r#"$.tags["a b"]: expected string, found number 1"#);
    assert_eq!(
        err(json!({"lines": [], "note": true})),
        "$.note: no branch of the union accepts boolean true; tried long, string, record Line"
    );
    // Only the record branch could take an object: its error is the useful one.
    assert_eq!(err(json!({"lines": [], "note": {"sku": "x"}})), r#"$.note: missing required field "amount_cents""#);
    assert_eq!(
        err(json!({"lines": [], "digest": "abc"})),
        r#"$.digest: invalid bytes "abc": a hex string needs an even number of digits, found 3"#
    );
    assert_eq!(
        err(json!({"lines": [], "digest": "abcd"})),
        r#"$.digest: invalid bytes "abcd": expected 4 bytes (8 hex digits), found 2"#
    );
    assert_eq!(err(json!({"lines": [], "blob": "zz"})), r#"$.blob: invalid bytes "zz": "zz" is not a hex byte"#);
    assert_eq!(
        err(json!({"lines": [], "price": "1.234"})),
        r#"$.price: invalid decimal "1.234": more than 2 digits after the decimal point"#
    );
    assert_eq!(
        err(json!({"lines": [], "price": 12345.6})),
        "$.price: invalid decimal 12345.6: 7 digits exceed the precision of 6"
    );
    assert_eq!(err(json!({"lines": [], "ratio": 1e39})), "$.ratio: 1e+39 is out of range for float (±3.4e38)");
    assert_eq!(
        err(json!({"lines": [], "day": "2023-02-29"})),
        r#"$.day: invalid date "2023-02-29": day 29 does not exist in 2023-02"#
    );
    assert_eq!(err(json!({"lines": [], "flag": "yes"})), r#"$.flag: expected boolean, found string "yes""#);
}

#[test]
fn null_for_a_field_with_a_default_that_does_not_allow_null_takes_the_default() {
    let schema = order_schema();
    let back = roundtrip(&json!({"lines": [], "note": null, "ratio": null}), &schema);
    assert_eq!((back["note"].clone(), back["ratio"].clone()), (json!(0), json!(0.5)));
    // Without a default, null is just the wrong type.
    assert_eq!(convert_err(json!({"lines": null}), &schema), "$.lines: expected array of record Line, found null");
}

#[test]
fn integral_floats_are_integers() {
    let schema = load("engagement/purchase_completed.avsc");
    let mut event = purchase();
    event["amount_cents"] = json!(2.0);
    event["occurred_at"] = json!(1e12);
    let back = roundtrip(&event, &schema);
    assert_eq!(
        (back["amount_cents"].clone(), back["occurred_at"].clone()),
        (json!(2), json!("2001-09-09T01:46:40.000Z"))
    );
}

/// The schema of the value of [`avro_to_json_mapping`].
fn mapping_schema() -> Schema {
    Schema::parse_str(
        r#"{"type": "record", "name": "M", "fields": [
            {"name": "z", "type": ["null", "long"]},
            {"name": "a", "type": {"type": "enum", "name": "Tier", "symbols": ["FREE", "PRO", "GOLD"]}},
            {"name": "nan", "type": "double"},
            {"name": "inf", "type": "float"},
            {"name": "f", "type": "float"},
            {"name": "bytes", "type": "bytes"},
            {"name": "fixed", "type": {"type": "fixed", "name": "F2", "size": 2}},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "uuid", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "neg", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}},
            {"name": "dur", "type": {"type": "fixed", "name": "D", "size": 12, "logicalType": "duration"}},
            {"name": "map", "type": {"type": "map", "values": ["null", "int"]}}
        ]}"#,
    )
    .expect("schema")
}

#[test]
fn avro_to_json_mapping() {
    let value = Value::Record(vec![
        ("z".into(), Value::Union(1, Box::new(Value::Long(5)))),
        ("a".into(), Value::Enum(2, "GOLD".into())),
        ("nan".into(), Value::Double(f64::NAN)),
        ("inf".into(), Value::Float(f32::INFINITY)),
        ("f".into(), Value::Float(0.1)),
        ("bytes".into(), Value::Bytes(vec![0x00, 0xab, 0xff])),
        ("fixed".into(), Value::Fixed(2, vec![0x0f, 0xf0])),
        ("ts".into(), Value::TimestampMillis(-1)),
        ("uuid".into(), Value::Uuid(Uuid::from_u128(0xABCD))),
        ("neg".into(), Value::Decimal(Decimal::from(vec![0xff, 0x38]))),
        ("dur".into(), Value::Duration(Duration::new(Months::new(1), Days::new(2), Millis::new(3)))),
        ("map".into(), Value::Map([("b".to_owned(), Value::Null), ("a".to_owned(), Value::Int(1))].into())),
    ]);
    let json = avro_to_json(&value, &mapping_schema());
    assert_eq!(
        json,
        json!({
            "z": 5, "a": "GOLD", "nan": null, "inf": null, "f": 0.1, "bytes": "00abff", "fixed": "0ff0",
            "ts": "1969-12-31T23:59:59.999Z", "uuid": "00000000-0000-0000-0000-00000000abcd", "neg": "-2.00",
            "dur": {"months": 1, "days": 2, "millis": 3}, "map": {"a": 1, "b": null}
        })
    );
    // Without the schema a decimal has no scale: its unscaled value.
    assert_eq!(connect_json(&value)["neg"], json!("-200"));
    let keys: Vec<_> = json.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys[..3], ["z", "a", "nan"], "record order is kept");
}

#[test]
fn duration_and_timestamps_in_other_units() {
    let schema = Schema::parse_str(
        r#"{"type": "record", "name": "T", "fields": [
            {"name": "d", "type": {"type": "fixed", "name": "D", "size": 12, "logicalType": "duration"}},
            {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "ns", "type": {"type": "long", "logicalType": "timestamp-nanos"}}
        ]}"#,
    )
    .expect("schema");
    let back = roundtrip(
        &json!({"d": {"months": 1, "days": 2, "millis": 3}, "us": "1970-01-01T00:00:00.0000015Z", "ns": "1969-12-31T23:59:59.999999999Z"}),
        &schema,
    );
    assert_eq!(
        back,
        json!({"d": {"months": 1, "days": 2, "millis": 3}, "us": "1970-01-01T00:00:00.000001Z", "ns": "1969-12-31T23:59:59.999999999Z"})
    );
    assert_eq!(roundtrip(&back, &schema), back, "what is read, is written back the same");
    assert_eq!(
        convert_err(json!({"d": {"months": 1, "day": 2, "millis": 3}, "us": 0, "ns": 0}), &schema),
        r#"$.d: unknown field "day", did you mean "days"?"#
    );
    assert_eq!(
        convert_err(json!({"d": {"months": -1, "days": 2, "millis": 3}, "us": 0, "ns": 0}), &schema),
        "$.d.months: -1 is out of range for a duration part (0 to 4294967295)"
    );
    assert_eq!(
        convert_err(
            json!({"d": {"months": 1, "days": 2, "millis": 3}, "us": 0, "ns": "2300-01-01T00:00:00Z"}),
            &schema
        ),
        r#"$.ns: "2300-01-01T00:00:00Z" is out of range for timestamp-nanos (integer or RFC 3339 string)"#
    );
}

#[test]
fn rfc3339_parsing() {
    let ms = |s: &str| parse_rfc3339(s).map(|n| n.div_euclid(1_000_000));
    assert_eq!(ms("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(ms("2026-11-26T04:28:21.123Z"), Ok(1_795_667_301_123));
    assert_eq!(ms("2026-11-26t06:28:21.123+02:00"), Ok(1_795_667_301_123));
    assert_eq!(ms("2026-11-25 23:28:21.123-05:00"), Ok(1_795_667_301_123));
    assert_eq!(ms("2026-11-26T04:28:21.1239999999Z"), Ok(1_795_667_301_123), "finer digits truncate");
    assert_eq!(ms("1969-12-31T23:59:59.9995Z"), Ok(-1), "truncation goes toward the past");
    assert_eq!(ms("2024-02-29T00:00:00Z"), Ok(19_782 * 86_400_000));
    let bad = |s: &str| parse_rfc3339(s).expect_err(s);
    use crate::calendar::RFC3339_EXAMPLE;
    assert_eq!(bad("2026-11-26"), RFC3339_EXAMPLE);
    assert_eq!(bad("2026-11-26T04:28:21"), "expected a time zone: Z or an offset like +02:00");
    assert_eq!(bad("2026-11-26T04:28:21.Z"), RFC3339_EXAMPLE);
    assert_eq!(bad("2026-11-26T24:00:00Z"), "time 24:00 does not exist");
    assert_eq!(bad("2026-12-31T23:59:60Z"), "second 60 does not exist (leap seconds are not supported)");
    assert_eq!(bad("2026-13-01T00:00:00Z"), "month 13 does not exist");
    assert_eq!(bad("2026-11-26T04:28:21+2:00"), "expected a time zone: Z or an offset like +02:00");
    assert_eq!(bad("2026-11-26T04:28:21+24:00"), "offset +24:00 does not exist");
    assert_eq!(bad("2026-11-26T04:28:21Zjunk"), "expected a time zone: Z or an offset like +02:00");
    assert_eq!(bad("１９７０-01-01T00:00:00Z"), RFC3339_EXAMPLE);
    assert_eq!(parse_date("2026-1-1"), Err("expected a date like 2026-11-26".to_owned()));
}

#[test]
fn schema_evolution_old_events_read_with_the_current_schema() {
    let current = load("users/registered.avsc");
    let mut old_json: Json =
        serde_json::from_str(&std::fs::read_to_string(schema_dir().join("users/registered.avsc")).expect("read"))
            .expect("json");
    old_json["fields"].as_array_mut().expect("fields").retain(|f| f["name"] != "referrer");
    let old = Schema::parse_str(&old_json.to_string()).expect("old schema");

    let (mut event, _) = sample(&current, true, &mut 0).expect("sample");
    event.as_object_mut().expect("object").remove("referrer");
    let body = encode(&json_to_avro(&event, &old).expect("converts"), &old).expect("encodes");
    let back = avro_to_json(&decode(&body, &old, Some(&current)).expect("decodes"), &current);
    assert_eq!(back["referrer"], Json::Null);
    assert_eq!(back["email"], event["email"]);

    // And the other way: a newer writer's extra field is dropped by an older reader.
    let (event, _) = sample(&current, true, &mut 0).expect("sample");
    let body = encode(&json_to_avro(&event, &current).expect("converts"), &current).expect("encodes");
    let back = avro_to_json(&decode(&body, &current, Some(&old)).expect("decodes"), &old);
    assert!(back.get("referrer").is_none());
}

#[test]
fn decode_rejects_trailing_and_missing_bytes() {
    let schema = load("engagement/purchase_completed.avsc");
    let mut body = encode(&json_to_avro(&purchase(), &schema).expect("converts"), &schema).expect("encodes");
    body.extend_from_slice(&[0, 0]);
    let err = decode(&body, &schema, None).expect_err("trailing");
    assert!(matches!(err, DecodeError::TrailingBytes(2)));
    assert_eq!(err.to_string(), "2 trailing bytes after the Avro body");
    body.truncate(body.len() - 4);
    let err = decode(&body, &schema, None).expect_err("truncated");
    assert!(matches!(err, DecodeError::Truncated(_)), "{err}");
    assert!(err.to_string().starts_with("the body ends inside a value"), "{err}");
    assert!(matches!(decode(&[], &schema, None), Err(DecodeError::Truncated(0))));
}

#[test]
fn encode_resolves_loose_values_and_explains_mismatches() {
    let schema = load("sessions/heartbeat.avsc");
    let (event, _) = sample(&schema, true, &mut 0).expect("sample");
    let exact = json_to_avro(&event, &schema).expect("converts");
    // What a hand-built value looks like: strings for the uuid, bare values in unions.
    let Value::Record(fields) = exact.clone() else { panic!("record") };
    let loose = Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| match v {
                Value::Uuid(u) => (k, Value::String(u.to_string())),
                Value::Union(_, inner) => (k, *inner),
                Value::Long(n) => (k, Value::Int(i32::try_from(n).unwrap_or_default())),
                other => (k, other),
            })
            .collect(),
    );
    assert_eq!(encode(&loose, &schema).expect("encodes"), encode(&exact, &schema).expect("encodes"));
    let err = encode(&Value::Record(vec![("event_id".into(), Value::Boolean(true))]), &schema).expect_err("mismatch");
    assert!(matches!(err, EncodeError::Mismatch(_)), "{err}");
}

#[test]
fn suggestions() {
    let fields = ["amount_cents", "currency", "items", "user_id"];
    let s = |name: &str| crate::suggest::closest(name, fields);
    assert_eq!(s("amountCents"), Some("amount_cents"));
    assert_eq!(s("curency"), Some("currency"));
    assert_eq!(s("item"), Some("items"));
    assert_eq!(s("userid"), Some("user_id"));
    assert_eq!(s("price"), None);
}

#[test]
fn decimal_bytes() {
    for n in [0_i128, 1, -1, 127, 128, -128, -129, 255, 256, i128::MAX, i128::MIN] {
        let bytes = crate::decimal::Decimal::integer(n).to_be_bytes();
        assert_eq!(decimal_text(&Decimal::from(bytes.clone()), 0), n.to_string(), "{n} as {bytes:02x?}");
        let at_2 = crate::decimal::Decimal { unscaled: n, scale: 2 }.to_string();
        assert_eq!(decimal_text(&Decimal::from(bytes.clone()), 2), at_2, "{n} as {bytes:02x?}");
    }
    assert_eq!(crate::decimal::Decimal::integer(128).to_be_bytes(), vec![0x00, 0x80]);
    assert_eq!(crate::decimal::Decimal::integer(-128).to_be_bytes(), vec![0x80]);
    let unscaled = |text: &str, precision, scale| {
        parse_decimal(text, precision, scale).map(|b| crate::decimal::Decimal::from_be_bytes(&b, 0).map(|d| d.unscaled))
    };
    assert_eq!(unscaled("-0.5", 3, 2), Ok(Ok(-50)));
    assert_eq!(unscaled(".5", 3, 2), Ok(Ok(50)));
    assert_eq!(unscaled("1.230", 3, 2), Ok(Ok(123)), "zeros past the scale are no digits");
    assert_eq!(unscaled("1e3", 9, 0), Err("expected a plain decimal number like \"12.34\"".to_owned()));
    assert_eq!(unscaled("1.234", 9, 2), Err("more than 2 digits after the decimal point".to_owned()));
    assert_eq!(unscaled("12345", 4, 0), Err("5 digits exceed the precision of 4".to_owned()));
    // Past 128 bits: read exactly.
    let wide = parse_decimal(&"9".repeat(40), 76, 0).expect("40 digits");
    assert_eq!(crate::decimal::text_from_be_bytes(&wide, 0), "9".repeat(40));
    let wide = parse_decimal("-2.5", 76, 38).expect("2.5E38 is past 128 bits");
    assert_eq!(crate::decimal::text_from_be_bytes(&wide, 38), format!("-2.5{}", "0".repeat(37)));
    assert_eq!(unscaled("-", 9, 2), Err("expected a plain decimal number like \"12.34\"".to_owned()));
}

fn format_rfc3339(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::calendar::civil_from_days(days);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{:02}:{:02}.{:03}Z", rest / 60_000, rest % 60_000 / 1000, rest % 1000)
}

fn purchase_event() -> impl Strategy<Value = (Json, bool)> {
    let optional = || proptest::option::of(any::<String>());
    (
        (any::<u128>(), any::<String>(), any::<String>(), any::<i64>(), any::<i64>(), any::<String>()),
        (optional(), optional(), optional(), optional()),
        (any::<String>(), optional(), any::<String>(), any::<i64>(), any::<String>(), any::<i32>()),
        any::<bool>(),
    )
        .prop_map(|(envelope, trace, body, omit_nulls)| {
            let (id, event_type, aggregate_id, version, occurred_at, producer) = envelope;
            let (correlation_id, causation_id, traceparent, tracestate) = trace;
            let (user_id, session_id, order_id, amount_cents, currency, items) = body;
            let event = json!({
                "event_id": Uuid::from_u128(id).to_string(),
                "event_type": event_type, "aggregate_id": aggregate_id, "aggregate_version": version,
                "occurred_at": occurred_at, "producer": producer,
                "correlation_id": correlation_id, "causation_id": causation_id,
                "traceparent": traceparent, "tracestate": tracestate,
                "user_id": user_id, "session_id": session_id, "order_id": order_id,
                "amount_cents": amount_cents, "currency": currency, "items": items
            });
            (event, omit_nulls)
        })
}

proptest! {
    #[test]
    fn purchase_json_roundtrip_is_the_identity((event, omit_nulls) in purchase_event()) {
        let schema = load("engagement/purchase_completed.avsc");
        let mut input = event.clone();
        if omit_nulls {
            input.as_object_mut().expect("object").retain(|_, v| !v.is_null());
        }
        // Read back: the timestamp as RFC 3339 text in UTC, everything else as it was sent.
        let mut expected = event;
        let ms = expected["occurred_at"].as_i64().expect("milliseconds");
        expected["occurred_at"] = json!(crate::calendar::format_date_time(ms, Unit::Millis, true));
        let back = roundtrip(&input, &schema);
        prop_assert_eq!(&back, &expected);
        prop_assert_eq!(roundtrip(&back, &schema), expected, "and what is read is written back the same");
    }

    #[test]
    fn rfc3339_matches_milliseconds(ms in -62_135_596_800_000_i64..253_402_300_800_000) {
        let text = format_rfc3339(ms);
        prop_assert_eq!(parse_rfc3339(&text).map(|n| n / 1_000_000), Ok(i128::from(ms)), "{}", text);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let schema = load("engagement/purchase_completed.avsc");
        let _ = decode(&bytes, &schema, None);
    }
}
