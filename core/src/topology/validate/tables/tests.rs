//! Declared tables checked against a domain of its own: the orders under `tests/domains/orders`.

use std::path::{Path, PathBuf};

use crate::topology::columns::ColumnType;
use crate::topology::{Report, SinkConfig, TableEngine, Topology};

fn domain() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/domains/orders")
}

fn text() -> String {
    std::fs::read_to_string(domain().join("topology.toml")).expect("orders topology")
}

fn check(text: &str) -> Result<Topology, Report> {
    Topology::from_parts(text, &domain().join("topology.toml"), |p| std::fs::read_to_string(p))
}

fn errors(text: &str) -> Vec<(String, Option<String>)> {
    match check(text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(report) => report.diagnostics().iter().map(|d| (d.message.clone(), d.hint.clone())).collect(),
    }
}

fn columns(t: &Topology, table: &str) -> Vec<(String, String, ColumnType)> {
    let Some(SinkConfig::ClickHouse { clickhouse }) = t.projection("order_analytics").map(|p| &p.sink) else {
        panic!("a ClickHouse projection")
    };
    clickhouse.tables[table].resolved.iter().map(|c| (c.name.clone(), c.path.to_string(), c.ty.clone())).collect()
}

#[test]
fn the_orders_domain_declares_typed_tables() {
    let t = check(&text()).unwrap_or_else(|r| panic!("valid:\n{r}"));
    let placed = columns(&t, "orders_placed");
    let names: Vec<&str> = placed.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "total",
            "currency",
            "customer_id",
            "customer_tier",
            "customer_email",
            "items_sku",
            "items_quantity",
            "items_unit_price",
            "attributes",
            "placed_at",
            "delivery_date",
            "coupon",
            "gift",
            "weight_kg"
        ]
    );
    assert_eq!(placed[0].2, ColumnType::Decimal { precision: 12, scale: 2 });
    assert_eq!(placed[7].2, ColumnType::Array(Box::new(ColumnType::Decimal { precision: 10, scale: 2 })));

    let money = columns(&t, "order_money");
    let nullable = |t: ColumnType| ColumnType::Nullable(Box::new(t));
    assert_eq!(
        money.iter().map(|(n, p, ty)| (n.as_str(), p.as_str(), ty.clone())).collect::<Vec<_>>(),
        [
            ("method", "method", nullable(ColumnType::Enum(vec!["CARD".into(), "TRANSFER".into(), "WALLET".into()]))),
            ("paid", "amount", nullable(ColumnType::Decimal { precision: 12, scale: 2 })),
            ("reason", "reason", nullable(ColumnType::String)),
            ("refunded", "refund", nullable(ColumnType::Decimal { precision: 12, scale: 2 })),
        ],
        "columns of one event type only are nullable in a table of two"
    );
    let Some(SinkConfig::ClickHouse { clickhouse }) = t.projection("order_analytics").map(|p| &p.sink) else {
        panic!("ClickHouse")
    };
    let shipments = &clickhouse.tables["order_shipments"];
    assert_eq!(shipments.engine, TableEngine::MergeTree);
    assert_eq!(shipments.ttl.map(|d| d.to_string()), Some("365d".to_owned()));
    assert_eq!(shipments.partition_by, "toYYYYMM(occurred_at)");
}

#[test]
fn a_column_from_a_field_no_event_has_is_refused_with_a_suggestion() {
    let text = text().replacen("paid = \"amount\"", "paid = \"amout\"", 1);
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "no event type of the table has a field amout (for column `paid`)");
    assert_eq!(errs[0].1.as_deref(), Some("did you mean \"amount\"?"));
}

#[test]
fn broken_declarations_are_each_reported() {
    let text = text()
        .replace("events = [\"order.shipped\"]", "events = [\"order.shiped\"]")
        .replacen("method = \"method\"", "method = \"method[\"\nevent_id = \"amount\"", 1)
        .replace("order_by = [\"aggregate_id\", \"occurred_at\"]", "order_by = [\"aggregate_id\", \"placed\"]");
    let messages: Vec<String> = errors(&text).into_iter().map(|(m, _)| m).collect();
    assert!(messages.iter().any(|m| m.contains("\"order.shiped\"")), "{messages:#?}");
    assert!(messages.iter().any(|m| m == "\"method[\" is not a field path"), "{messages:#?}");
    assert!(messages.iter().any(|m| m.contains("column `event_id` would shadow")), "{messages:#?}");
    let bad_key = text.replace("method = \"method[\"", "method = \"method\"").replace("event_id = \"amount\"\n", "");
    let messages: Vec<String> = errors(&bad_key).into_iter().map(|(m, _)| m).collect();
    assert!(messages.iter().any(|m| m.contains("names no column of table `order_money`: \"placed\"")), "{messages:#?}");
}

#[test]
fn a_table_of_several_event_types_takes_all_their_fields() {
    let text = text().replace(
        "[projections.order_analytics.clickhouse.tables.order_shipments]\nevents = [\"order.shipped\"]",
        "[projections.order_analytics.clickhouse.tables.order_shipments]\nevents = [\"order.shipped\", \"order.paid\"]",
    );
    let t = check(&text).unwrap_or_else(|r| panic!("valid:\n{r}"));
    let names: Vec<String> = columns(&t, "order_shipments").into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names, ["carrier", "tracking", "parcels", "amount", "method", "paid_at"]);
}

#[test]
fn a_declared_table_may_not_take_the_raw_tables_name() {
    let text = text().replace("tables.order_shipments]", "tables.order_events]");
    let errs = errors(&text);
    assert!(
        errs.iter().any(|(m, _)| m == "`order_events` is already a table of this projection (from `table`)"),
        "{errs:?}"
    );
}
