//! The orders domain (`tests/domains/orders`) on both server generations.

use std::path::Path;

use serde_json::json;
use sluice_core::event::{Envelope, Position};
use sluice_core::topology::{SinkConfig, Topology};

use super::*;
use crate::sinks::clickhouse::capabilities::{Capabilities, Version};
use crate::sinks::clickhouse::schema::plan;

/// The ClickHouse block of `projection` in the topology at `path` (from the repository root).
fn clickhouse_of(path: &str, projection: &str) -> ClickHouseSink {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    match &topology.projection(projection).expect("projection").sink {
        SinkConfig::ClickHouse { clickhouse } => clickhouse.clone(),
        SinkConfig::Couchbase { .. } => panic!("ClickHouse"),
    }
}

fn sink() -> ClickHouseSink {
    clickhouse_of("tests/domains/orders/topology.toml", "order_analytics")
}

/// The analytics projection of the repository's own topology.
pub(crate) fn repository_sink() -> ClickHouseSink {
    clickhouse_of("topology.toml", "analytics")
}

fn layout(major: u32) -> Layout {
    Layout::of(&Capabilities::of(Version { major, minor: 9, patch: 1 }))
}

fn placed() -> Event {
    let payload = json!({
        "total": "129.99", "currency": "EUR",
        "customer": {"id": "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001", "tier": "GOLD", "email": null},
        "items": [{"sku": "A-1", "quantity": 2, "unit_price": "49.99"}, {"sku": "B-2", "quantity": 1, "unit_price": "30.01"}],
        "attributes": {"channel": "web"}, "placed_at": "2025-11-24T16:00:00.123456Z", "delivery_date": "2026-02-16",
        "coupon": null, "gift": true, "weight_kg": 1.5
    });
    let serde_json::Value::Object(payload) = payload else { unreachable!() };
    Event {
        envelope: Envelope {
            event_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            event_type: "order.placed".into(),
            aggregate_id: "o-1".into(),
            aggregate_version: 1,
            occurred_at: 1_764_000_000_123,
            producer: "shop".into(),
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            tracestate: None,
        },
        payload,
        position: Position { topic: "orders".into(), partition: 2, offset: 41 },
        schema_id: 3,
    }
}

#[test]
fn the_tables_ddl_on_both_servers() {
    let sink = sink();
    let modern = plan("shop", &sink, layout(26)).expect("plan");
    let placed = modern.objects.iter().find(|o| o.name == "orders_placed").expect("orders_placed");
    assert!(placed.create.starts_with("CREATE TABLE IF NOT EXISTS `shop`.`orders_placed` ("), "{}", placed.create);
    for column in [
        "`total` Decimal(12, 2)",
        "`currency` LowCardinality(String)",
        "`customer_id` UUID",
        "`customer_email` Nullable(String)",
        "`items_sku` Array(String)",
        "`items_unit_price` Array(Decimal(10, 2))",
        "`attributes` Map(String, String)",
        "`placed_at` DateTime64(6, 'UTC')",
        "`delivery_date` Nullable(Date32)",
        "`gift` Bool",
    ] {
        assert!(placed.create.contains(column), "{column} in\n{}", placed.create);
    }
    assert!(placed.create.contains("ORDER BY (event_type, toDate(occurred_at), aggregate_id, event_id)"));
    let money = modern.objects.iter().find(|o| o.name == "order_money").expect("order_money");
    assert!(money.create.contains("ORDER BY (`aggregate_id`, `occurred_at`, event_id)"), "{}", money.create);
    let shipments = modern.objects.iter().find(|o| o.name == "order_shipments").expect("order_shipments");
    assert!(shipments.create.contains("ENGINE = MergeTree"), "{}", shipments.create);
    assert!(shipments.create.contains("TTL toDateTime(occurred_at) + INTERVAL 31536000 SECOND"));
    assert!(modern.notes.is_empty());

    let old = plan("shop", &sink, layout(18)).expect("plan");
    let placed = old.objects.iter().find(|o| o.name == "orders_placed").expect("orders_placed");
    for column in [
        "`currency` String",
        "`attributes_keys` Array(String)",
        "`attributes_values` Array(String)",
        "`placed_at` DateTime('UTC')",
        "`placed_at_us` Int64",
        "`delivery_date` Nullable(Date)",
        "`gift` UInt8",
    ] {
        assert!(placed.create.contains(column), "{column} in\n{}", placed.create);
    }
    assert_eq!(old.notes.len(), 1, "18.16 has no TTL: {:?}", old.notes);
    assert!(!old.objects.iter().any(|o| o.create.contains("TTL")));
}

#[test]
fn a_row_holds_the_envelope_then_the_columns() {
    let sink = sink();
    let names = Names::of(&sink);
    for major in [26, 18] {
        let tables = targets(&sink, &names, layout(major));
        let placed_table = tables.iter().find(|t| t.name() == "orders_placed").expect("table");
        assert!(placed_table.takes("order.placed") && !placed_table.takes("order.paid"));
        let mut row = Vec::new();
        placed_table.write_row(&placed(), &mut row).expect("row");
        // The UUID's halves, little-endian, lead the row.
        assert_eq!(row[..8], 0x0f8fad5bd9cb469f_u64.to_le_bytes());
        let sql = placed_table.insert_sql("shop");
        assert!(sql.starts_with("INSERT INTO `shop`.`orders_placed` (`event_id`, `event_type`"), "{sql}");
        assert!(sql.ends_with("`weight_kg`) FORMAT RowBinary"), "{sql}");
        assert_eq!(sql.contains("`occurred_at_ms`"), major == 18, "stored only where it is not an alias");
    }
}

#[test]
fn a_value_that_does_not_fit_refuses_the_event_and_writes_nothing() {
    let sink = sink();
    let tables = targets(&sink, &Names::of(&sink), layout(18));
    let table = tables.iter().find(|t| t.name() == "orders_placed").expect("table");
    let mut event = placed();
    // Day 70000 is in 2161: past a Date column (18.16 has no Date32).
    event.payload.insert("delivery_date".into(), json!("2161-08-27"));
    let mut row = vec![9];
    let err = table.write_row(&event, &mut row).expect_err("refused");
    assert!(err.starts_with("table orders_placed, column delivery_date (delivery_date): day 70000"), "{err}");
    event.payload.insert("delivery_date".into(), json!(70_000));
    assert!(table.write_row(&event, &mut Vec::new()).is_err(), "the day count alike");
    assert_eq!(row, [9], "nothing of the refused row stays");
    let mut too_precise = placed();
    too_precise.payload.insert("total".into(), json!("12345678901.23"));
    assert!(table.write_row(&too_precise, &mut Vec::new()).is_err(), "13 digits in decimal(12, 2)");
}

#[test]
fn a_declared_table_missing_a_column_gets_it_added_and_other_objects_never_change() {
    use crate::sinks::clickhouse::schema::{DescribedColumn, additions, check};
    let plan = plan("shop", &sink(), layout(26)).expect("plan");
    // What a server reports: every planned column, but `order_shipments` lacks `parcels` (a field
    // added since) and `order_events` (the raw table) lacks `payload`.
    let mut described: Vec<DescribedColumn> = plan
        .objects
        .iter()
        .flat_map(|o| {
            o.columns.iter().map(|c| DescribedColumn {
                table: o.name.clone(),
                name: c.name.clone(),
                ty: c.ty.clone(),
                default_kind: match c.kind {
                    ColumnKind::Stored => String::new(),
                    other => other.to_string(),
                },
            })
        })
        .collect();
    described.retain(|c| !(c.table == "order_shipments" && c.name == "parcels"));
    described.retain(|c| !(c.table == "order_events" && c.name == "payload"));
    let added = additions(&plan, &described);
    assert_eq!(
        added,
        [(
            "`shop`.`order_shipments`".to_owned(),
            "parcels".to_owned(),
            "ALTER TABLE `shop`.`order_shipments` ADD COLUMN `parcels` Int32".to_owned()
        )]
    );
    // The raw table's missing column stays drift, for an operator to decide.
    let engines = plan.objects.iter().map(|o| (o.name.clone(), o.engine.to_owned())).collect();
    let drift = check(&plan, &engines, &described);
    assert!(drift.iter().any(|d| d.to_string().contains("payload")), "{drift:?}");
    // A changed type is refused with table, column and both types.
    if let Some(c) = described.iter_mut().find(|c| c.table == "order_shipments" && c.name == "carrier") {
        c.ty = "Int64".into();
    }
    let drift = check(&plan, &engines, &described);
    let text: Vec<String> = drift.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t.contains("order_shipments")
            && t.contains("carrier")
            && t.contains("Int64")
            && t.contains("String")),
        "{text:?}"
    );
}
