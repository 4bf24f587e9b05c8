use super::*;

const ENVELOPE: &str = r#"{"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "event_type", "type": "string"}, {"name": "aggregate_id", "type": "string"},
    {"name": "aggregate_version", "type": "long"},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "producer", "type": "string"},
    {"name": "correlation_id", "type": ["null", "string"], "default": null},
    {"name": "causation_id", "type": ["null", "string"], "default": null},
    {"name": "traceparent", "type": ["null", "string"], "default": null},
    {"name": "tracestate", "type": ["null", "string"], "default": null}"#;

fn schema(name: &str, payload: &str) -> Schema {
    Schema::parse_str(&format!(
        r#"{{"type": "record", "name": "{name}", "namespace": "shop", "fields": [{ENVELOPE}, {payload}]}}"#
    ))
    .expect("schema")
}

fn placed() -> Schema {
    schema(
        "OrderPlaced",
        r#"{"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
           {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
           {"name": "customer", "type": ["null", {"type": "record", "name": "Customer", "fields": [
               {"name": "id", "type": "string"}, {"name": "since", "type": {"type": "int", "logicalType": "date"}}]}],
            "default": null},
           {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
               {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"},
               {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
               {"name": "note", "type": ["null", "string"], "default": null}]}}},
           {"name": "attributes", "type": {"type": "map", "values": "string"}},
           {"name": "tags", "type": {"type": "array", "items": "string"}},
           {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
           {"name": "coupon", "type": ["null", {"type": "string", "logicalType": "uuid"}], "default": null},
           {"name": "extra", "type": ["string", "long"]}"#,
    )
}

fn ty(columns: &[TableColumn], name: &str) -> ColumnType {
    columns.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("column {name} in {columns:?}")).ty.clone()
}

fn boxed(t: ColumnType) -> Box<ColumnType> {
    Box::new(t)
}

#[test]
fn every_avro_type_has_a_column_type() {
    let columns = payload_columns(&placed());
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "total",
            "status",
            "customer_id",
            "customer_since",
            "items_sku",
            "items_qty",
            "items_price",
            "items_note",
            "attributes",
            "tags",
            "placed_at",
            "coupon",
            "extra"
        ]
    );
    assert_eq!(ty(&columns, "total"), ColumnType::Decimal { precision: 12, scale: 2 });
    assert_eq!(ty(&columns, "status"), ColumnType::Enum(vec!["NEW".into(), "PAID".into()]));
    // A nullable record: every leaf nullable.
    assert_eq!(ty(&columns, "customer_id"), ColumnType::Nullable(boxed(ColumnType::String)));
    assert_eq!(ty(&columns, "customer_since"), ColumnType::Nullable(boxed(ColumnType::Date)));
    // An array of records: one array per leaf, element nullability kept.
    assert_eq!(ty(&columns, "items_qty"), ColumnType::Array(boxed(ColumnType::Int)));
    assert_eq!(ty(&columns, "items_price"), ColumnType::Array(boxed(ColumnType::Decimal { precision: 9, scale: 2 })));
    assert_eq!(ty(&columns, "items_note"), ColumnType::Array(boxed(ColumnType::Nullable(boxed(ColumnType::String)))));
    assert_eq!(ty(&columns, "attributes"), ColumnType::Map(boxed(ColumnType::String)));
    assert_eq!(ty(&columns, "tags"), ColumnType::Array(boxed(ColumnType::String)));
    assert_eq!(ty(&columns, "placed_at"), ColumnType::TimestampMicros);
    assert_eq!(ty(&columns, "coupon"), ColumnType::Nullable(boxed(ColumnType::Uuid)));
    assert_eq!(ty(&columns, "extra"), ColumnType::Json, "a union of two types is kept as JSON text");
    let sku = columns.iter().find(|c| c.name == "items_sku").expect("items_sku");
    assert_eq!(sku.path.to_string(), "items[].sku");
    assert_eq!(FieldPath::parse("items[].sku"), Some(sku.path.clone()));
}

#[test]
fn paths_name_nested_fields() {
    let schema = placed();
    let at = |text: &str| path_column(&schema, "c", &FieldPath::parse(text).expect("path")).map(|c| c.ty);
    assert_eq!(at("customer.id"), Some(ColumnType::Nullable(boxed(ColumnType::String))));
    assert_eq!(at("items[].qty"), Some(ColumnType::Array(boxed(ColumnType::Int))));
    assert_eq!(at("total"), Some(ColumnType::Decimal { precision: 12, scale: 2 }));
    assert_eq!(at("customer"), Some(ColumnType::Nullable(boxed(ColumnType::Json))), "a record named whole");
    assert_eq!(at("items[].nope"), None);
    assert_eq!(at("total.x"), None);
    assert_eq!(at("tags[][]"), None);
    assert_eq!(at("aggregate_id"), None, "envelope fields are envelope columns already");
    for bad in
        ["", "a..b", "a[", "a[]x", "[]", "a.[]", "a]", "a[x]", "a[-1]", "a[1", "a[0]b", "a[99999999999999999999999]"]
    {
        assert_eq!(FieldPath::parse(bad), None, "{bad:?}");
    }
    // One element of an array: nullable, since the array may be shorter.
    assert_eq!(at("items[0].sku"), Some(ColumnType::Nullable(boxed(ColumnType::String))));
    assert_eq!(at("tags[2]"), Some(ColumnType::Nullable(boxed(ColumnType::String))));
    assert_eq!(at("items[0].note"), Some(ColumnType::Nullable(boxed(ColumnType::String))));
    assert_eq!(at("items[].sku[0]"), None, "a string has no elements");
    let path = FieldPath::parse("items[1].sku").expect("path");
    assert_eq!(path.0, [Step::Field("items".into()), Step::Index(1), Step::Field("sku".into())]);
    assert_eq!(path.to_string(), "items[1].sku");
    assert_eq!(FieldPath::parse("grid[0][]").map(|p| p.to_string()), Some("grid[0][]".to_owned()));
}

#[test]
fn paths_read_payloads() {
    let payload = serde_json::json!({"items": [{"sku": "a"}, {"sku": "b"}], "customer": {"id": "c-1"}, "tags": []});
    let Value::Object(payload) = payload else { unreachable!() };
    let get = |text: &str| FieldPath::parse(text).expect("path").get(&payload).into_owned();
    assert_eq!(get("items[1].sku"), "b");
    assert_eq!(get("items[].sku"), serde_json::json!(["a", "b"]));
    assert_eq!(get("items[2].sku"), Value::Null, "past the end");
    assert_eq!(get("tags[0]"), Value::Null);
    assert_eq!(get("customer.id"), "c-1");
    assert_eq!(get("customer[0]"), Value::Null, "not an array");
}

#[test]
fn several_event_types_merge_their_columns() {
    let paid = schema(
        "OrderPaid",
        r#"{"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
           {"name": "paid_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}"#,
    );
    let merged =
        merge(&[("order.placed", payload_columns(&placed())), ("order.paid", payload_columns(&paid))]).expect("merges");
    assert_eq!(ty(&merged, "total"), ColumnType::Decimal { precision: 12, scale: 2 }, "in both: as it is");
    assert_eq!(ty(&merged, "paid_at"), ColumnType::Nullable(boxed(ColumnType::TimestampMillis)), "in one only");
    assert_eq!(ty(&merged, "tags"), ColumnType::Array(boxed(ColumnType::String)), "arrays are empty instead");
    assert_eq!(merged.last().map(|c| c.name.as_str()), Some("paid_at"), "first-seen order");

    let other_total = schema("OrderVoided", r#"{"name": "total", "type": "string"}"#);
    let err = merge(&[("order.placed", payload_columns(&placed())), ("order.voided", payload_columns(&other_total))])
        .expect_err("conflict");
    assert_eq!(err.to_string(), "column `total` is decimal(12, 2) in order.placed but string in order.voided");
}

#[test]
fn flattened_names_that_collide_are_refused() {
    let clash = schema(
        "Clash",
        r#"{"name": "customer", "type": {"type": "record", "name": "C", "fields": [{"name": "id", "type": "string"}]}},
           {"name": "customer_id", "type": "string"}"#,
    );
    let err = merge(&[("x", payload_columns(&clash))]).expect_err("clash");
    assert_eq!(err.to_string(), "fields customer.id and customer_id both become column `customer_id`");
    let shadow = schema("Shadow", r#"{"name": "topic", "type": "string"}"#);
    assert_eq!(merge(&[("x", payload_columns(&shadow))]), Err(ColumnError::Envelope { column: "topic".into() }));
}

#[test]
fn recursive_types_stop_as_json() {
    let recursive = schema(
        "Tree",
        r#"{"name": "root", "type": {"type": "record", "name": "Node", "fields": [
              {"name": "value", "type": "long"}, {"name": "next", "type": ["null", "Node"], "default": null}]}}"#,
    );
    let columns = payload_columns(&recursive);
    assert!(columns.len() <= MAX_DEPTH + 1, "{columns:?}");
    assert_eq!(ty(&columns, "root_value"), ColumnType::Long);
    assert!(columns.iter().any(|c| c.ty.non_null() == &ColumnType::Json), "the recursion ends in JSON text");
}
