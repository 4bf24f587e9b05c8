//! State tables and rollups checked against a domain of its own: the orders under
//! `tests/domains/orders` (a state table, two rollups), each broken in one way.

use std::path::{Path, PathBuf};

use crate::topology::columns::ColumnType;
use crate::topology::{Report, SinkConfig, StateChange, Topology};

fn domain() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/domains/orders")
}

fn source() -> String {
    std::fs::read_to_string(domain().join("topology.toml")).expect("orders topology")
}

fn check(text: &str) -> Result<Topology, Report> {
    Topology::from_parts(text, &domain().join("topology.toml"), |p| std::fs::read_to_string(p))
}

/// The one error of `text`, as (line, message, hint).
fn error(text: &str) -> (usize, String, Option<String>) {
    match check(text) {
        Ok(_) => panic!("expected an error"),
        Err(report) => {
            let all: Vec<_> =
                report.diagnostics().iter().map(|d| (d.line, d.message.clone(), d.hint.clone())).collect();
            assert_eq!(all.len(), 1, "{all:#?}");
            all.into_iter().next().expect("one")
        }
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle") + 1
}

#[test]
fn the_state_table_is_typed_from_the_schemas() {
    let t = check(&source()).unwrap_or_else(|r| panic!("valid:\n{r}"));
    let Some(SinkConfig::ClickHouse { clickhouse }) = t.projection("order_analytics").map(|p| &p.sink) else {
        panic!("a ClickHouse projection")
    };
    let state = &clickhouse.state["orders_current"];
    let columns: Vec<(&str, String, ColumnType)> =
        state.resolved.iter().map(|c| (c.name.as_str(), c.sources[0].to_string(), c.ty.clone())).collect();
    let decimal = ColumnType::Decimal { precision: 12, scale: 2 };
    assert_eq!(columns[0], ("carrier", "carrier".into(), ColumnType::String));
    assert_eq!(columns[2], ("customer_id", "customer.id".into(), ColumnType::Uuid));
    assert_eq!(columns[3], ("last_event", "event_type".into(), ColumnType::String));
    // `refund` is nullable in its schema; a state column is not (it keeps its value until set).
    assert_eq!(columns.iter().find(|c| c.0 == "refund").map(|c| c.2.clone()), Some(decimal.clone()));
    assert_eq!(columns.iter().find(|c| c.0 == "total").map(|c| c.2.clone()), Some(decimal));
    assert_eq!(columns.iter().find(|c| c.0 == "placed_at").map(|c| c.2.clone()), Some(ColumnType::TimestampMicros));
    assert_eq!(state.change("order.placed"), Some(StateChange::Create));
    assert_eq!(state.change("order.cancelled"), Some(StateChange::Update));
    assert_eq!(clickhouse.rollups.len(), 2);
}

#[test]
fn a_sum_over_a_string_is_refused() {
    let text = source().replace("revenue = \"sum(total)\"", "revenue = \"sum(currency)\"");
    let (line, message, hint) = error(&text);
    assert_eq!(line, line_of(&text, "sum(currency)"));
    assert_eq!(message, "`sum(currency)`: column `currency` is enum(EUR, USD, GBP); sum needs numbers");
    assert_eq!(hint.as_deref(), Some("count it instead: `count()` or `countIf(<event type>)`"));
}

#[test]
fn a_measure_of_a_column_the_table_lacks_is_refused_with_a_suggestion() {
    let text = source().replace("biggest = \"max(total)\"", "biggest = \"max(totl)\"");
    let (_, message, hint) = error(&text);
    assert_eq!(message, "`max(totl)`: table `orders_placed` has no column `totl`");
    assert_eq!(hint.as_deref(), Some("did you mean \"total\"?"));
}

#[test]
fn a_state_column_from_a_field_no_event_has_is_refused() {
    let text = source().replace("carrier = \"carrier\"", "carrier = \"carier\"");
    let (line, message, hint) = error(&text);
    assert_eq!(line, line_of(&text, "carrier = \"carier\""));
    assert_eq!(message, "no event type of the state table has a field carier (for column `carrier`)");
    assert_eq!(hint.as_deref(), Some("did you mean \"carrier\"?"));
}

#[test]
fn a_state_column_of_an_array_is_refused() {
    let text = source().replace("carrier = \"carrier\"", "carrier = \"items[].sku\"");
    let (_, message, _) = error(&text);
    assert_eq!(
        message,
        "column `carrier`: items[].sku is array of string in order.placed; a state column holds one value"
    );
}

#[test]
fn candidates_of_different_types_are_refused() {
    let text = source().replace("carrier = \"carrier\"", "carrier = [\"carrier\", \"parcels\"]");
    let (_, message, _) = error(&text);
    assert_eq!(message, "column `carrier` is string in order.shipped but int in order.shipped (parcels)");
}

#[test]
fn a_name_clash_between_objects_is_refused() {
    let text = source()
        .replace("state.orders_current]", "state.orders]")
        .replace("state.orders_current.columns]", "state.orders.columns]");
    let text = text.replace("tables.order_shipments]", "tables.orders_updates]");
    let (_, message, _) = error(&text);
    assert_eq!(message, "`orders_updates` is already a table of this projection (from `tables.orders_updates`)");
}

#[test]
fn creates_and_deletes_are_state_events_and_not_both() {
    let text =
        source().replace("creates = [\"order.placed\"]", "creates = [\"order.placed\"]\ndeletes = [\"order.placed\"]");
    let (_, message, _) = error(&text);
    assert_eq!(message, "\"order.placed\" is in both `creates` and `deletes`");
    let text = source().replace("creates = [\"order.placed\"]", "creates = [\"order.refunded\"]");
    let (_, message, hint) = error(&text);
    assert_eq!(message, "\"order.refunded\" in `creates` is not one of the state table's `events`");
    assert_eq!(hint.as_deref(), Some("add \"order.refunded\" to `events`"));
}

#[test]
fn rollup_references_are_checked() {
    let text = source().replace("from = \"orders_placed\"", "from = \"orders_plced\"");
    let (_, message, hint) = error(&text);
    assert_eq!(message, "`from` = \"orders_plced\" is not a declared table of projection \"order_analytics\"");
    assert_eq!(hint.as_deref(), Some("did you mean \"orders_placed\"?"));

    let text = source().replace("payments = \"countIf(order.paid)\"", "payments = \"countIf(order.shipped)\"");
    let (_, message, _) = error(&text);
    assert_eq!(message, "`countIf(order.shipped)`: \"order.shipped\" is not an event type the rollup reads");

    let text = source().replace("bucket = \"hour\"", "bucket = \"hour\"\ntime = \"method\"");
    let (_, message, _) = error(&text);
    assert_eq!(
        message,
        "`time`: column `method` is nullable enum(CARD, TRANSFER, WALLET); a rollup buckets a timestamp or date that every event has"
    );

    let text = source().replace("orders = \"count()\"", "currency = \"count()\"");
    let (_, message, _) = error(&text);
    assert_eq!(message, "measure `currency` has the name of a column the rollup reads or groups by");

    let text = source().replace("revenue = \"sum(total)\"", "revenue = \"median(total)\"");
    let (_, message, _) = error(&text);
    assert!(
        message.starts_with(
            "`projections.order_analytics.clickhouse.rollups.daily_sales.measures.revenue`: unknown aggregate `median`"
        ),
        "{message}"
    );
}
