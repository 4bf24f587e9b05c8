//! Realistic Debezium records (JsonConverter with and without schemas, Avro values as the Connect
//! Avro converters write them) through the mappers of the repository's topology and of small
//! topologies made for one conversion; and the properties the projections rely on.

use std::path::Path;

use apache_avro::types::Value;
use apache_avro::{Decimal as AvroDecimal, Schema};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;
use crate::decimal::Decimal as Exact;
use crate::decimal::base64_encode;
use crate::fold::tests::deliver;
use crate::fold::{self, Change, FoldEvent};

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn repo_topology() -> Topology {
    Topology::load(&repo().join("topology.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn mapper(name: &str) -> CdcMapper {
    CdcMapper::new(&repo_topology(), name).expect("declared source")
}

fn pos(offset: i64) -> Position {
    Position { topic: "legacy.public.users".into(), partition: 0, offset }
}

/// Maps a JsonConverter record.
fn map_json(m: &CdcMapper, key: Option<Json>, value: Option<Json>) -> Result<CdcOutcome, CdcError> {
    m.map(&CdcRecord::from_json(key, value), &[], pos(7), Some(1_709_288_199_000), 0)
}

fn event(outcome: Result<CdcOutcome, CdcError>) -> (Event, ChangeKind) {
    match outcome {
        Ok(CdcOutcome::Event { event, kind }) => (event, kind),
        other => panic!("expected an event, got {other:?}"),
    }
}

fn obj(v: Json) -> Map<String, Json> {
    v.as_object().cloned().expect("an object")
}

const LSN: i64 = 23_876_368;
/// 2024-03-01T10:15:30.123Z
const TS: i64 = 1_709_288_130_123;
/// [`TS`] as an event's `timestamp-millis` field reads (RFC 3339 in UTC).
const TS_TEXT: &str = "2024-03-01T10:15:30.123Z";

fn source(lsn: i64, snapshot: &str) -> Json {
    json!({
        "version": "3.0.0.Final", "connector": "postgresql", "name": "legacy", "ts_ms": TS,
        "snapshot": snapshot, "db": "legacy", "sequence": format!("[null,\"{lsn}\"]"), "schema": "public",
        "table": "users", "txId": 751, "lsn": lsn, "xmin": null
    })
}

/// A users row as Debezium writes it without schemas: balance in precise mode (base64 of the
/// unscaled value), created_at a ZonedTimestamp, updated_at a MicroTimestamp.
fn user_row(id: i64, email: &str, balance_unscaled: i128) -> Json {
    json!({
        "id": id, "email": email, "display_name": "Ada", "country": "NL",
        "balance": base64_encode(&Exact::integer(balance_unscaled).to_be_bytes()),
        "preferences": "{\"theme\": \"dark\"}",
        "created_at": "2024-03-01T10:15:30.123456Z",
        "updated_at": 1_709_295_330_500_001_i64
    })
}

fn change(op: &str, before: Json, after: Json, lsn: i64) -> Json {
    let snapshot = if op == "r" { "true" } else { "false" };
    json!({"before": before, "after": after, "source": source(lsn, snapshot), "op": op, "ts_ms": TS + 333, "transaction": null})
}

#[test]
fn an_insert_becomes_the_upsert_event() {
    let m = mapper("legacy_users");
    let (e, kind) = event(map_json(
        &m,
        Some(json!({"id": 42})),
        Some(change("c", Json::Null, user_row(42, "ada@example.com", 12_345), LSN)),
    ));
    assert_eq!(kind, ChangeKind::Create);
    assert_eq!(e.envelope.event_type, "legacy.user.changed");
    assert_eq!(e.envelope.aggregate_id, "42");
    assert_eq!(e.envelope.aggregate_version, LSN);
    assert_eq!(e.envelope.occurred_at, TS);
    assert_eq!(e.envelope.producer, "debezium:legacy");
    assert_eq!(e.envelope.correlation_id, None);
    assert_eq!(uuid_version(&e.envelope.event_id), 8);
    assert_eq!(
        e.payload,
        obj(json!({
            "user_id": 42, "email": "ada@example.com", "display_name": "Ada", "country": "NL",
            "balance_cents": 12_345, "preferences": "{\"theme\": \"dark\"}",
            "created_at": TS_TEXT, "updated_at": "2024-03-01T12:15:30.500Z"
        }))
    );
    assert_eq!((e.position.offset, e.schema_id), (7, 0));
}

fn uuid_version(id: &str) -> usize {
    apache_avro::Uuid::parse_str(id).expect("a UUID").get_version_num()
}

#[test]
fn ops_updates_deletes_tombstones_truncates() {
    let m = mapper("legacy_users");
    let row = user_row(42, "new@example.com", -5);
    let (u, kind) = event(map_json(&m, None, Some(change("u", Json::Null, row.clone(), LSN + 10))));
    assert_eq!((kind, u.envelope.aggregate_version), (ChangeKind::Update, LSN + 10));
    assert_eq!((u.payload["email"].clone(), u.payload["balance_cents"].clone()), (json!("new@example.com"), json!(-5)));

    // REPLICA IDENTITY DEFAULT: the before image has the key only.
    let (d, kind) = event(map_json(
        &m,
        Some(json!({"id": 42})),
        Some(change("d", json!({"id": 42, "email": null}), Json::Null, LSN + 20)),
    ));
    assert_eq!(kind, ChangeKind::Delete);
    assert_eq!(d.envelope.event_type, "legacy.user.deleted");
    assert_eq!((d.envelope.aggregate_id.as_str(), d.envelope.aggregate_version), ("42", LSN + 20));
    assert_eq!(d.payload, obj(json!({"user_id": 42})));
    // A delete without before image still has the record key.
    let (d2, _) = event(map_json(&m, Some(json!({"id": 42})), Some(change("d", Json::Null, Json::Null, LSN + 20))));
    assert_eq!(d2.envelope, d.envelope);

    assert_eq!(map_json(&m, Some(json!({"id": 42})), None), Ok(CdcOutcome::Tombstone { aggregate_id: "42".into() }));
    let truncate = json!({"before": null, "after": null, "source": source(LSN + 30, "false"), "op": "t", "ts_ms": TS});
    let Ok(CdcOutcome::Skip { reason }) = map_json(&m, None, Some(truncate)) else { panic!("a truncate is skipped") };
    assert_eq!(reason, SkipReason::Truncate { table: "public.users".into() });
    assert!(reason.to_string().starts_with("table public.users was truncated"));
}

#[test]
fn json_with_schemas_reads_scales_and_units_from_the_schema() {
    let m = mapper("legacy_users");
    let column = |field: &str, ty: &str, name: Option<&str>, params: Option<Json>| {
        let mut c = json!({"type": ty, "optional": true, "field": field});
        if let Some(name) = name {
            c["name"] = json!(name);
            c["version"] = json!(1);
        }
        if let Some(p) = params {
            c["parameters"] = p;
        }
        c
    };
    let row_schema = json!({"type": "struct", "optional": true, "name": "legacy.public.users.Value", "fields": [
        column("id", "int64", None, None),
        column("email", "string", None, None),
        column("display_name", "string", None, None),
        column("country", "string", None, None),
        // numeric(12,3) in the table now: the schema's scale is what the bytes mean.
        column("balance", "bytes", Some("org.apache.kafka.connect.data.Decimal"), Some(json!({"scale": "3", "connect.decimal.precision": "12"}))),
        column("preferences", "string", Some("io.debezium.data.Json"), None),
        column("created_at", "string", Some("io.debezium.time.ZonedTimestamp"), None),
        // timestamp(3): milliseconds, whatever the mapping's default unit.
        column("updated_at", "int64", Some("io.debezium.time.Timestamp"), None),
    ]});
    let mut before = row_schema.clone();
    before["field"] = json!("before");
    let mut after = row_schema;
    after["field"] = json!("after");
    let schema = json!({"type": "struct", "name": "legacy.public.users.Envelope", "optional": false, "fields": [
        before, after,
        {"type": "struct", "field": "source", "optional": false, "fields": []},
        {"type": "string", "field": "op", "optional": false},
        {"type": "int64", "field": "ts_ms", "optional": true}
    ]});
    let mut row = user_row(42, "ada@example.com", 0);
    row["balance"] = json!(base64_encode(&Exact::integer(123_450).to_be_bytes())); // 123.450
    row["updated_at"] = json!(TS);
    row["created_at"] = json!("2024-03-01T11:15:30.123+01:00");
    let value = json!({"schema": schema, "payload": change("r", Json::Null, row, LSN)});
    let key =
        json!({"schema": {"type": "struct", "fields": [{"type": "int64", "field": "id"}]}, "payload": {"id": 42}});
    let (e, kind) = event(map_json(&m, Some(key), Some(value)));
    assert_eq!(kind, ChangeKind::Read);
    assert_eq!(e.payload["balance_cents"], 12_345, "123.450 at scale 2");
    assert_eq!((e.payload["created_at"].clone(), e.payload["updated_at"].clone()), (json!(TS_TEXT), json!(TS_TEXT)));
}

/// The users table's envelope schema as the Connect Avro converters write it.
const AVRO_ENVELOPE: &str = r#"{"type": "record", "name": "Envelope", "namespace": "legacy.public.users", "fields": [
  {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
    {"name": "id", "type": "long"},
    {"name": "email", "type": "string"},
    {"name": "display_name", "type": "string"},
    {"name": "country", "type": ["null", "string"], "default": null},
    {"name": "balance", "type": ["null", {"type": "bytes", "scale": 2, "precision": 12, "connect.version": 1,
      "connect.parameters": {"scale": "2", "connect.decimal.precision": "12"},
      "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"}], "default": null},
    {"name": "preferences", "type": ["null", {"type": "string", "connect.version": 1, "connect.name": "io.debezium.data.Json"}], "default": null},
    {"name": "created_at", "type": ["null", {"type": "string", "connect.version": 1, "connect.name": "io.debezium.time.ZonedTimestamp"}], "default": null},
    {"name": "updated_at", "type": ["null", {"type": "long", "connect.version": 1, "connect.name": "io.debezium.time.MicroTimestamp"}], "default": null}
  ], "connect.name": "legacy.public.users.Value"}], "default": null},
  {"name": "after", "type": ["null", "Value"], "default": null},
  {"name": "source", "type": {"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql", "fields": [
    {"name": "name", "type": "string"},
    {"name": "ts_ms", "type": "long"},
    {"name": "schema", "type": "string"},
    {"name": "table", "type": "string"},
    {"name": "lsn", "type": ["null", "long"], "default": null}
  ]}},
  {"name": "op", "type": "string"},
  {"name": "ts_ms", "type": ["null", "long"], "default": null}
]}"#;

fn avro_row(id: i64, balance_unscaled: i128) -> Value {
    let some = |v: Value| Value::Union(1, Box::new(v));
    Value::Record(vec![
        ("id".into(), Value::Long(id)),
        ("email".into(), Value::String("ada@example.com".into())),
        ("display_name".into(), Value::String("Ada".into())),
        ("country".into(), Value::Union(0, Box::new(Value::Null))),
        ("balance".into(), some(Value::Decimal(AvroDecimal::from(Exact::integer(balance_unscaled).to_be_bytes())))),
        ("preferences".into(), some(Value::String("{\"theme\": \"dark\"}".into()))),
        ("created_at".into(), some(Value::String("2024-03-01T10:15:30.123456Z".into()))),
        ("updated_at".into(), some(Value::Long(TS * 1000 + 999))),
    ])
}

#[test]
fn avro_records_as_the_connect_converters_write_them() {
    let writer = Schema::parse_str(AVRO_ENVELOPE).expect("the converter's schema parses");
    let value = Value::Record(vec![
        ("before".into(), Value::Union(0, Box::new(Value::Null))),
        ("after".into(), Value::Union(1, Box::new(avro_row(42, -12_345_678_901_234)))),
        (
            "source".into(),
            Value::Record(vec![
                ("name".into(), Value::String("legacy".into())),
                ("ts_ms".into(), Value::Long(TS)),
                ("schema".into(), Value::String("public".into())),
                ("table".into(), Value::String("users".into())),
                ("lsn".into(), Value::Union(1, Box::new(Value::Long(LSN)))),
            ]),
        ),
        ("op".into(), Value::String("u".into())),
        ("ts_ms".into(), Value::Union(1, Box::new(Value::Long(TS)))),
    ]);
    // Through the wire, as a worker reads it.
    let body = crate::avro::encode(&value, &writer).expect("encodes");
    let read = crate::avro::decode(&body, &writer, None).expect("decodes");
    let row = RowSchema::from_avro_schema(AVRO_ENVELOPE).expect("schema");
    let record = CdcRecord::from_avro(Some(&Value::Record(vec![("id".into(), Value::Long(42))])), Some(&read), &row);
    let (e, kind) = event(mapper("legacy_users").map(&record, &[], pos(1), None, 17));
    assert_eq!((kind, e.schema_id, e.envelope.aggregate_version), (ChangeKind::Update, 17, LSN));
    assert_eq!(e.payload["balance_cents"], -12_345_678_901_234_i64);
    assert_eq!(e.payload["country"], Json::Null);
    assert_eq!(e.payload["updated_at"], TS_TEXT, "microseconds, truncated to milliseconds");
    assert_eq!(e.payload["created_at"], TS_TEXT);
}

#[test]
fn unavailable_toasted_values_are_left_out() {
    let m = mapper("legacy_users");
    let mut row = user_row(42, "ada@example.com", 1);
    row["preferences"] = json!("__debezium_unavailable_value");
    let (e, _) = event(map_json(&m, None, Some(change("u", Json::Null, row, LSN))));
    assert!(!e.payload.contains_key("preferences"), "{:?}", e.payload);
    assert_eq!(e.payload["email"], "ada@example.com");
}

#[test]
fn malformed_records_name_what_is_wrong() {
    let m = mapper("legacy_users");
    let err = |value: Json| map_json(&m, Some(json!({"id": 42})), Some(value)).expect_err("malformed").to_string();
    assert_eq!(err(change("c", Json::Null, Json::Null, LSN)), "op \"c\" without an `after` row");
    let mut row = user_row(42, "a@x", 1);
    row.as_object_mut().expect("row").remove("id");
    assert_eq!(err(change("c", Json::Null, row, LSN)), "key column `id` is missing from the record's `after`");
    let mut row = user_row(42, "a@x", 1);
    row.as_object_mut().expect("row").remove("email");
    assert_eq!(
        err(change("c", Json::Null, row, LSN)),
        "column `email` (for event field `email`) is not in the record's `after`"
    );
    let mut row = user_row(42, "a@x", 1);
    row["balance"] = json!("12.5");
    assert_eq!(
        err(change("c", Json::Null, row, LSN)),
        "column `balance` (for event field `balance_cents`): \"12.5\" is not base64 (decimal_handling = \"precise\")"
    );
    let mut row = user_row(42, "a@x", 1);
    row["created_at"] = json!("2024-03-01 10:15:30");
    assert!(err(change("c", Json::Null, row, LSN)).starts_with("column `created_at` (for event field `created_at`): "));
    let mut row = user_row(42, "a@x", 1);
    row["email"] = json!(12);
    assert_eq!(
        err(change("c", Json::Null, row, LSN)),
        "legacy.user.changed: $.email: expected string, found number 12 (column `email`)"
    );
    let mut no_lsn = change("c", Json::Null, user_row(42, "a@x", 1), LSN);
    no_lsn["source"].as_object_mut().expect("source").remove("lsn");
    assert_eq!(err(no_lsn), "`source.lsn` is missing: a change needs its LSN as version");
    assert_eq!(
        err(json!({"op": "x", "source": source(LSN, "false")})),
        "unknown `op` \"x\": expected c, u, d, r, t or m"
    );
    assert_eq!(err(json!([1])), "the value is not a Debezium change event (an object)");
    assert_eq!(err(json!({"after": {}})), "the change event has no `op`");
    let mut row = user_row(42, "a@x", 1);
    row["id"] = json!(1.5);
    assert_eq!(
        err(change("c", Json::Null, row, LSN)),
        "key column `id` is a number: a key is made of strings and integers"
    );
}

#[test]
fn snapshot_ids_depend_on_the_row_and_change_ids_on_the_change() {
    let m = mapper("legacy_users");
    let id = |op: &str, lsn: i64, email: &str| {
        event(map_json(&m, None, Some(change(op, Json::Null, user_row(42, email, 1), lsn)))).0.envelope.event_id
    };
    // A re-snapshot of an unchanged row is the same event, at whatever LSN.
    assert_eq!(id("r", LSN, "a@x"), id("r", LSN + 1000, "a@x"));
    assert_ne!(id("r", LSN, "a@x"), id("r", LSN, "b@x"));
    // A change is identified by its LSN and op, not its content.
    assert_eq!(id("u", LSN, "a@x"), id("u", LSN, "b@x"));
    assert_ne!(id("u", LSN, "a@x"), id("u", LSN + 1, "a@x"));
    assert_ne!(id("u", LSN, "a@x"), id("c", LSN, "a@x"));
    assert_ne!(id("u", LSN, "a@x"), id("r", LSN, "a@x"));
}

// ---------------------------------------------------------------------------------------------
// Conversions, through a topology made for them.

fn record_schema(name: &str, fields: &str) -> String {
    // The envelope as the repository's schemas declare it, then `fields`.
    let registered = std::fs::read_to_string(repo().join("schemas/users/registered.avsc")).expect("schema");
    let registered: Json = serde_json::from_str(&registered).expect("JSON");
    let envelope = registered["fields"].as_array().expect("fields")[..10].iter().map(Json::to_string);
    let fields = envelope.collect::<Vec<_>>().join(", ") + fields;
    format!(r#"{{"type": "record", "name": "{name}", "namespace": "t", "fields": [{fields}]}}"#)
}

/// A topology with one Debezium source on table `t`, `columns` mapping fields of `t.changed`
/// (its payload fields are `fields`, Avro JSON); `extra` is added to the source.
fn conversion_topology(fields: &str, columns: &str, extra: &str) -> Result<Topology, crate::topology::Report> {
    let text = format!(
        r#"[topics.t]
partitions = 1
replication_factor = 1
subject_strategy = "record"

[events."t.changed"]
topic = "t"
schema = "changed.avsc"

[events."t.deleted"]
topic = "t"
schema = "deleted.avsc"

[cdc.t]
topic = "t"
format = "debezium"
encoding = "json"
key = ["id"]
upsert_event = "t.changed"
delete_event = "t.deleted"
{extra}
[cdc.t.columns]
{columns}
"#
    );
    let changed = record_schema("Changed", fields);
    let deleted = record_schema("Deleted", "");
    Topology::from_parts(&text, Path::new("topology.toml"), |p| {
        Ok(if p.ends_with("changed.avsc") { changed.clone() } else { deleted.clone() })
    })
}

/// Maps one column `value` (schemaless JSON) into field `f` of Avro type `ty` with mapping
/// `mapping`; `Ok(field value)` or the error text.
fn convert_one(ty: &str, mapping: &str, value: Json) -> Result<Json, String> {
    convert_with(ty, mapping, "", value)
}

fn convert_with(ty: &str, mapping: &str, extra: &str, value: Json) -> Result<Json, String> {
    let t = conversion_topology(&format!(r#", {{"name": "f", "type": {ty}}}"#), &format!("f = {mapping}"), extra)
        .unwrap_or_else(|r| panic!("{r}"));
    let m = CdcMapper::new(&t, "t").expect("source");
    let value = json!({"op": "c", "after": {"id": 1, "c": value}, "source": {"lsn": 5, "ts_ms": 6, "name": "db"}});
    match m.map(&CdcRecord::from_json(None, Some(value)), &[], pos(0), None, 0) {
        Ok(CdcOutcome::Event { event, .. }) => Ok(event.payload["f"].clone()),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

const DECIMAL_2: &str = r#"{ column = "c", type = "decimal", scale = 2 }"#;

#[test]
fn decimals_convert_exactly_or_not_at_all() {
    let b64 = |n: i128| json!(base64_encode(&Exact::integer(n).to_be_bytes()));
    assert_eq!(convert_one(r#""long""#, DECIMAL_2, b64(-12_345)), Ok(json!(-12_345)));
    assert_eq!(convert_one(r#""string""#, DECIMAL_2, b64(-5)), Ok(json!("-0.05")));
    assert_eq!(convert_one(r#""double""#, DECIMAL_2, b64(12_345)), Ok(json!(123.45)));
    // A decimal field at a larger scale: the same number, read back at the field's scale.
    let decimal_20_4 = r#"{"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4}"#;
    assert_eq!(convert_one(decimal_20_4, DECIMAL_2, b64(-12_345)), Ok(json!("-123.4500")));
    // Beyond a long: the string keeps every digit, the long refuses.
    let huge = 10_i128.pow(30) + 7;
    assert_eq!(convert_one(r#""string""#, DECIMAL_2, b64(huge)), Ok(json!("10000000000000000000000000000.07")));
    assert_eq!(
        convert_one(r#""long""#, DECIMAL_2, b64(huge)),
        Err("column `c` (for event field `f`): 10000000000000000000000000000.07 in units of 10^-2 does not fit a long"
            .into())
    );
    // Precision of the target decimal is checked like a producer's event.
    assert!(convert_one(decimal_20_4, DECIMAL_2, b64(huge)).expect_err("too many digits").contains("precision"));
    // decimal.handling.mode = string / double.
    let string_mode = "decimal_handling = \"string\"\n";
    assert_eq!(convert_with(r#""long""#, DECIMAL_2, string_mode, json!("123.4")), Ok(json!(12_340)));
    assert_eq!(
        convert_with(r#""long""#, DECIMAL_2, string_mode, json!("123.456")),
        Err("column `c` (for event field `f`): 123.456 has more than 2 digits after the point".into())
    );
    assert_eq!(convert_with(r#""long""#, DECIMAL_2, "decimal_handling = \"double\"\n", json!(99.99)), Ok(json!(9_999)));
    // numeric without scale: VariableScaleDecimal.
    assert_eq!(
        convert_one(r#""long""#, DECIMAL_2, json!({"scale": 1, "value": base64_encode(&[0x7b])})),
        Ok(json!(1_230))
    );
    // Null stays null where the field allows it.
    assert_eq!(convert_one(r#"["null", "long"]"#, DECIMAL_2, Json::Null), Ok(Json::Null));
}

#[test]
fn timestamps_dates_json_and_scalars() {
    let ts = r#"{ column = "c", type = "timestamp" }"#;
    let millis = r#"{"type": "long", "logicalType": "timestamp-millis"}"#;
    let micros = r#"{"type": "long", "logicalType": "timestamp-micros"}"#;
    // ZonedTimestamp at any offset → UTC.
    assert_eq!(convert_one(millis, ts, json!("2024-03-01T12:15:30.123456+02:00")), Ok(json!(TS_TEXT)));
    assert_eq!(convert_one(micros, ts, json!("2024-03-01T10:15:30.123456Z")), Ok(json!("2024-03-01T10:15:30.123456Z")));
    let past = convert_one(millis, ts, json!("1969-12-31T23:59:59.9995Z"));
    assert_eq!(past, Ok(json!("1969-12-31T23:59:59.999Z")), "toward the past");
    // Integers: MicroTimestamp by default, or the unit given.
    assert_eq!(convert_one(r#""long""#, ts, json!(TS * 1000 + 999)), Ok(json!(TS)));
    let in_ms = r#"{ column = "c", type = "timestamp", unit = "ms" }"#;
    assert_eq!(convert_one(millis, in_ms, json!(TS)), Ok(json!(TS_TEXT)));
    assert_eq!(
        convert_one(millis, r#"{ column = "c", type = "timestamp", unit = "ns" }"#, json!(TS * 1_000_000)),
        Ok(json!(TS_TEXT))
    );

    let date = r#"{ column = "c", type = "date" }"#;
    let avro_date = r#"{"type": "int", "logicalType": "date"}"#;
    assert_eq!(convert_one(avro_date, date, json!(19_783)), Ok(json!("2024-03-01")));
    assert_eq!(convert_one(r#""string""#, date, json!(19_783)), Ok(json!("2024-03-01")));
    assert_eq!(convert_one(r#""string""#, date, json!(-1)), Ok(json!("1969-12-31")));
    assert_eq!(convert_one(avro_date, date, json!("2024-02-29")), Ok(json!("2024-02-29")));

    let jsonb = r#"{ column = "c", type = "json" }"#;
    assert_eq!(convert_one(r#""string""#, jsonb, json!("{\"a\": [1, 2]}")), Ok(json!("{\"a\": [1, 2]}")));
    assert_eq!(
        convert_one(r#""string""#, jsonb, json!({"a": 1})),
        Ok(json!("{\"a\":1}")),
        "expanded JSON back to text"
    );

    assert_eq!(
        convert_one(r#""string""#, r#"{ column = "c", type = "string" }"#, json!(9_007_199_254_740_993_i64)),
        Ok(json!("9007199254740993"))
    );
    assert_eq!(convert_one(r#""long""#, r#"{ column = "c", type = "long" }"#, json!("42")), Ok(json!(42)));
    assert_eq!(convert_one(r#""double""#, r#"{ column = "c", type = "double" }"#, json!("1.5")), Ok(json!(1.5)));
    assert_eq!(convert_one(r#""boolean""#, r#""c""#, json!(true)), Ok(json!(true)));
    let uuid = r#"{"type": "string", "logicalType": "uuid"}"#;
    assert_eq!(
        convert_one(uuid, r#""c""#, json!("6F9619FF-8B86-D011-B42D-00C04FC964FF")),
        Ok(json!("6f9619ff-8b86-d011-b42d-00c04fc964ff"))
    );
    assert!(convert_one(r#""int""#, r#""c""#, json!(1_i64 << 40)).is_err(), "out of an int's range");
}

#[test]
fn composite_keys_are_joined_and_escaped() {
    let key = vec!["a".to_owned(), "b".to_owned()];
    let row = obj(json!({"a": "x:y", "b": 7}));
    assert_eq!(super::aggregate_id(&key, &row, "after"), Ok("x\\:y:7".into()));
    assert_eq!(super::aggregate_id(&key[..1], &row, "after"), Ok("x:y".into()), "one column stays as it is");
}

// ---------------------------------------------------------------------------------------------
// The outbox.

fn outbox_headers(event_type: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("id".to_owned(), b"6f9619ff-8b86-d011-b42d-00c04fc964ff".to_vec()),
        ("eventType".to_owned(), event_type.as_bytes().to_vec()),
    ]
}

fn map_outbox(payload: Option<Json>, headers: &[(String, Vec<u8>)]) -> Result<CdcOutcome, CdcError> {
    mapper("legacy_user_outbox").map(&CdcRecord::from_json(Some(json!("42")), payload), headers, pos(3), Some(TS), 0)
}

#[test]
fn outbox_events_take_their_envelope_from_headers_key_and_payload() {
    let text = json!(
        "{\"version\": 3, \"email\": \"ada@example.com\", \"display_name\": \"Ada\", \"country\": null, \"correlation_id\": \"flow-1\"}"
    );
    let (e, kind) = event(map_outbox(Some(text), &outbox_headers("UserSignedUp")));
    assert_eq!(kind, ChangeKind::Outbox);
    assert_eq!(e.envelope.event_id, "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    assert_eq!(e.envelope.event_type, "legacy.user.signed_up");
    assert_eq!((e.envelope.aggregate_id.as_str(), e.envelope.aggregate_version, e.envelope.occurred_at), ("42", 3, TS));
    assert_eq!(e.envelope.producer, "outbox:legacy_user_outbox");
    assert_eq!(e.envelope.correlation_id.as_deref(), Some("flow-1"));
    assert_eq!(e.payload, obj(json!({"email": "ada@example.com", "display_name": "Ada", "country": null})));

    // Expanded payload (table.expand.json.payload), JSON-quoted headers, with schemas.enable.
    let headers = vec![
        ("id".to_owned(), b"\"6f9619ff-8b86-d011-b42d-00c04fc964ff\"".to_vec()),
        ("eventType".to_owned(), b"\"UserEmailVerified\"".to_vec()),
    ];
    let value = json!({"schema": {"type": "struct", "fields": []}, "payload": {"version": "4", "email": "a@x", "verified_at": "2024-03-01T10:15:30.123Z"}});
    let (e, _) = event(map_outbox(Some(value), &headers));
    assert_eq!((e.envelope.event_type.as_str(), e.envelope.aggregate_version), ("legacy.user.email_verified", 4));
    assert_eq!(e.payload["verified_at"], TS_TEXT);

    // Avro: the payload column as a string.
    let record = CdcRecord::from_avro(
        Some(&Value::String("42".into())),
        Some(&Value::String("{\"version\": 5, \"email\": \"a@x\", \"display_name\": \"A\"}".into())),
        &RowSchema::default(),
    );
    let out = mapper("legacy_user_outbox").map(&record, &outbox_headers("UserSignedUp"), pos(1), Some(TS), 9);
    let (e, _) = event(out);
    assert_eq!((e.envelope.aggregate_version, e.schema_id, e.payload["country"].clone()), (5, 9, Json::Null));

    assert_eq!(map_outbox(None, &[]), Ok(CdcOutcome::Tombstone { aggregate_id: "42".into() }));
}

#[test]
fn outbox_errors() {
    let err = |payload: Json, event_type: &str| {
        map_outbox(Some(payload), &outbox_headers(event_type)).expect_err("refused").to_string()
    };
    assert_eq!(
        err(json!({"version": 1, "email": "a@x", "display_name": "A"}), "UserBanned"),
        "outbox event type \"UserBanned\" is not mapped in [cdc.legacy_user_outbox.events]"
    );
    assert_eq!(err(json!({"email": "a@x"}), "UserSignedUp"), "the outbox record has no version (field:version)");
    assert_eq!(err(json!({"version": "v1"}), "UserSignedUp"), "the outbox version \"v1\" is not an integer");
    assert_eq!(
        err(json!({"version": 1, "email": "a@x", "display_name": "A", "aggregate_id": "7"}), "UserSignedUp"),
        "the outbox payload has a field `aggregate_id`: the envelope comes from the source's settings, not the payload"
    );
    assert_eq!(
        err(json!({"version": 1, "email": "a@x", "display_nam": "A"}), "UserSignedUp"),
        "legacy.user.signed_up: $: unknown field \"display_nam\", did you mean \"display_name\"?"
    );
    assert_eq!(
        err(json!("not json"), "UserSignedUp"),
        "the outbox payload is not JSON: expected ident at line 1 column 2"
    );
    let no_id = map_outbox(Some(json!({"version": 1})), &outbox_headers("UserSignedUp")[1..]).expect_err("no id");
    assert_eq!(no_id.to_string(), "the outbox record has no event id (header:id)");
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// One state of the row over time: `None` is deleted.
fn row_state() -> impl Strategy<Value = Option<(String, i128)>> {
    prop_oneof![4 => ("[a-c]{1,3}@x", -10_000i128..10_000).prop_map(Some), 1 => Just(None)]
}

fn to_fold(outcome: CdcOutcome) -> Option<FoldEvent> {
    match outcome {
        CdcOutcome::Event { event, kind } => Some(FoldEvent {
            version: event.envelope.aggregate_version,
            change: if kind == ChangeKind::Delete { Change::Erase } else { Change::Set(event.payload) },
            position: event.position,
        }),
        _ => None,
    }
}

proptest! {
    /// A row goes through any sequence of states (inserts, updates, deletes) at increasing LSNs;
    /// its change events, a re-snapshot of its final state, tombstones and duplicates are
    /// delivered in any order: folding them by aggregate_version gives the final row.
    #[test]
    fn any_delivery_order_folds_to_the_final_row(
        states in proptest::collection::vec(row_state(), 1..12),
        gaps in proptest::collection::vec(1i64..1000, 12),
        dup_picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        seed in any::<u64>(),
    ) {
        let m = mapper("legacy_users");
        let mut records = Vec::new();
        let mut previous: Option<(String, i128)> = None;
        let mut lsn = LSN;
        for (state, gap) in states.iter().zip(&gaps) {
            lsn += gap;
            match (&previous, state) {
                (None, None) => continue,
                (None, Some((email, cents))) => records.push(change("c", Json::Null, user_row(42, email, *cents), lsn)),
                (Some(_), Some((email, cents))) => records.push(change("u", Json::Null, user_row(42, email, *cents), lsn)),
                (Some(_), None) => records.push(change("d", json!({"id": 42}), Json::Null, lsn)),
            }
            previous = state.clone();
        }
        let mut outcomes: Vec<CdcOutcome> = records
            .iter()
            .map(|r| map_json(&m, Some(json!({"id": 42})), Some(r.clone())).expect("maps"))
            .collect();
        outcomes.push(map_json(&m, Some(json!({"id": 42})), None).expect("a tombstone"));
        // The re-snapshot: taken after the last change, of the final row (if it exists).
        let expected = previous.as_ref().map(|(email, cents)| {
            let snapshot = map_json(&m, None, Some(change("r", Json::Null, user_row(42, email, *cents), lsn + 1))).expect("maps");
            outcomes.push(snapshot.clone());
            let CdcOutcome::Event { event, .. } = snapshot else { unreachable!("a read is an event") };
            event.payload
        });
        let events: Vec<FoldEvent> =
            deliver(&outcomes, &dup_picks, seed).into_iter().filter_map(|o| to_fold(o.clone())).collect();
        let state = fold::fold(&events);
        match expected {
            Some(row) => prop_assert_eq!(state.map(|s| s.fields), Some(row)),
            None => prop_assert!(state.is_none_or(|s| s.is_tombstone()), "a deleted row stays deleted"),
        }
    }

    /// Event ids: the same input gives the same id; another LSN, another id.
    #[test]
    fn event_ids_are_deterministic(lsn in 0i64..i64::MAX - 1, id in any::<i64>(), email in "[a-z]{1,8}", op in prop::sample::select(vec!["c", "u", "d"])) {
        let m = mapper("legacy_users");
        let record = |lsn: i64| {
            let row = user_row(id, &email, 1);
            if op == "d" { change(op, row, Json::Null, lsn) } else { change(op, Json::Null, row, lsn) }
        };
        let id_of = |lsn: i64| event(map_json(&m, None, Some(record(lsn)))).0.envelope.event_id;
        let first = id_of(lsn);
        prop_assert_eq!(&first, &id_of(lsn));
        prop_assert_ne!(first, id_of(lsn + 1));
    }
}

#[test]
fn an_avro_decimal_without_its_scale_is_refused() {
    let row = Value::Record(vec![
        ("id".into(), Value::Long(1)),
        ("balance".into(), Value::Decimal(AvroDecimal::from(vec![0x30, 0x39]))),
    ]);
    let record = Value::Record(vec![
        ("after".into(), Value::Union(1, Box::new(row))),
        ("source".into(), Value::Record(vec![("lsn".into(), Value::Long(LSN)), ("ts_ms".into(), Value::Long(TS))])),
        ("op".into(), Value::String("c".into())),
    ]);
    let t = conversion_topology(
        r#", {"name": "f", "type": "long"}"#,
        r#"f = { column = "balance", type = "decimal", scale = 2 }"#,
        "",
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let m = CdcMapper::new(&t, "t").expect("source");
    let err = m.map(&CdcRecord::from_avro(None, Some(&record), &RowSchema::default()), &[], pos(0), None, 1);
    assert_eq!(
        err.map(|_| ()).map_err(|e| e.to_string()),
        Err("column `balance` (for event field `f`): an Avro decimal whose scale the writer schema given to the mapper does not say".into())
    );
}
