//! A domain that is not the repository's: the shop's orders of `tests/domains/orders`, with its
//! ClickHouse tables declared in its topology and typed from its schemas (decimals, an array of
//! line-item records, enums, a map, timestamps to the microsecond, uuids, nullable fields).
//! A current-state table and two rollups are declared too. Published twice (the second time
//! newest first), projected by a worker killed between a write and its commit and a second one,
//! on both ClickHouse generations: the analyst queries equal a model the test computes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::{connections, unique};

mod common;
use common::*;

/// The orders topology with topics and projections of their own, and a ClickHouse database of
/// its own at `url`.
fn fresh_orders(sfx: &str, url: &str) -> PathBuf {
    let domain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/domains/orders");
    fresh_orders_with(sfx, url, &domain.join("schemas").canonicalize().expect("schemas"))
}

/// [`fresh_orders`] with the schemas in `schemas`.
fn fresh_orders_with(sfx: &str, url: &str, schemas: &Path) -> PathBuf {
    let domain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/domains/orders");
    let text = std::fs::read_to_string(domain.join("topology.toml")).expect("orders topology");
    let text = text
        .replace("schema = \"schemas/", &format!("schema = \"{}/", schemas.display()))
        .replace("[topics.orders]", &format!("[topics.orders_{sfx}]"))
        .replace("\"orders\"", &format!("\"orders_{sfx}\""))
        .replace("[projections.order_analytics", &format!("[projections.order_analytics_{sfx}"))
        .replace("[projections.order_state", &format!("[projections.order_state_{sfx}"));
    let dir = std::env::temp_dir().join(format!("sluice-test-{sfx}"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("clickhouse.env"),
        format!("SLUICE_CLICKHOUSE_URL={url}\nSLUICE_CLICKHOUSE_DATABASE=db_{sfx}\n"),
    )
    .expect("clickhouse.env");
    let path = dir.join("topology.toml");
    std::fs::write(&path, text).expect("topology");
    path
}

/// What the analyst queries must show.
#[derive(Debug, Default, PartialEq, Eq)]
struct Model {
    placed: u64,
    total_cents: i64,
    quantity: i64,
    web: u64,
    max_placed_at_us: i64,
    paid: u64,
    paid_cents: i64,
    refunds: u64,
    shipped: u64,
    parcels: i64,
    /// Cancellation events (before or after payment).
    cancelled: u64,
    refund_cents: i64,
    /// The EUR and USD orders (the `daily_sales` rollup's), their sum and largest total.
    sales: u64,
    sales_cents: i64,
    biggest_sale_cents: i64,
}

/// A small deterministic generator (no randomness between runs of the model and the test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

fn orders(sfx: &str, n: u64) -> (Vec<Value>, Model) {
    let mut rng = Lcg(7);
    let mut events = Vec::new();
    let mut model = Model::default();
    // Recent: the shipments table keeps a year (`ttl`), and the server drops older rows.
    let base_ms = now_ms() - 86_400_000;
    for i in 0..n {
        let id = format!("o-{sfx}-{i}");
        let at = base_ms + i as i64 * 1000;
        let items: Vec<(i64, i64)> =
            (0..=rng.next(3)).map(|_| (1 + rng.next(4) as i64, 100 + rng.next(5000) as i64)).collect();
        let total: i64 = items.iter().map(|(q, p)| q * p).sum();
        let placed_at_us = at * 1000 + rng.next(1000) as i64;
        let web = rng.next(2) == 0;
        let envelope = |event_type: &str, version: i64| {
            json!({"event_id": uuid::Uuid::new_v4().to_string(), "event_type": event_type, "aggregate_id": id,
                   "aggregate_version": version, "occurred_at": at + version, "producer": "orders-tests"})
        };
        let currency = ["EUR", "USD", "GBP"][rng.next(3) as usize];
        let mut placed = envelope("order.placed", 1);
        let payload = json!({
            "total": cents(total), "currency": currency,
            "customer": {"id": uuid::Uuid::new_v4().to_string(), "tier": "GOLD", "email": if web { Value::Null } else { json!("c@example.com") }},
            "items": items.iter().enumerate().map(|(k, (q, p))| json!({"sku": format!("SKU-{k}"), "quantity": q, "unit_price": cents(*p)})).collect::<Vec<_>>(),
            "attributes": if web { json!({"channel": "web", "ab": "b"}) } else { json!({"channel": "store"}) },
            "placed_at": placed_at_us,
            "delivery_date": if i % 3 == 0 { Value::Null } else { json!(20_500 + i as i64) },
            "coupon": if i % 4 == 0 { json!(uuid::Uuid::new_v4().to_string()) } else { Value::Null },
            "gift": i % 5 == 0,
            "weight_kg": if i % 2 == 0 { json!(1.25) } else { Value::Null }
        });
        merge(&mut placed, payload);
        events.push(placed);
        model.placed += 1;
        model.total_cents += total;
        model.quantity += items.iter().map(|(q, _)| q).sum::<i64>();
        model.web += u64::from(web);
        model.max_placed_at_us = model.max_placed_at_us.max(placed_at_us);
        if currency != "GBP" {
            model.sales += 1;
            model.sales_cents += total;
            model.biggest_sale_cents = model.biggest_sale_cents.max(total);
        }
        match rng.next(4) {
            0 => {
                let mut cancelled = envelope("order.cancelled", 2);
                merge(&mut cancelled, json!({"reason": "changed mind", "refund": Value::Null}));
                events.push(cancelled);
                model.cancelled += 1;
            }
            _ => {
                let mut paid = envelope("order.paid", 2);
                merge(&mut paid, json!({"amount": cents(total), "method": "CARD", "paid_at": at + 2}));
                events.push(paid);
                model.paid += 1;
                model.paid_cents += total;
                if rng.next(3) == 0 {
                    let mut cancelled = envelope("order.cancelled", 3);
                    merge(&mut cancelled, json!({"reason": "damaged", "refund": cents(total)}));
                    events.push(cancelled);
                    model.refunds += 1;
                    model.cancelled += 1;
                    model.refund_cents += total;
                } else {
                    let parcels = 1 + rng.next(3) as i64;
                    let mut shipped = envelope("order.shipped", 3);
                    merge(&mut shipped, json!({"carrier": "DHL", "tracking": format!("T{i}"), "parcels": parcels}));
                    events.push(shipped);
                    model.shipped += 1;
                    model.parcels += parcels;
                }
            }
        }
    }
    (events, model)
}

fn merge(event: &mut Value, payload: Value) {
    if let (Value::Object(e), Value::Object(p)) = (event, payload) {
        e.extend(p);
    }
}

async fn orders_end_to_end(url: &str, modern: bool) {
    let sfx = unique("orders");
    let topology = fresh_orders(&sfx, url);
    let projection = format!("order_analytics_{sfx}");
    run_ok(sluice(&topology).args(["topology", "check"]));
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));
    let out = run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    let report = String::from_utf8_lossy(&out.stdout);
    for table in ["orders_placed", "order_money", "order_shipments", "orders_current_updates", "daily_sales_by_event"] {
        assert!(report.contains(&format!("created table `db_{sfx}`.`{table}`")), "{report}");
    }
    for view in ["orders_current", "daily_sales", "hourly_money"] {
        assert!(report.contains(&format!("created view `db_{sfx}`.`{view}`")), "{report}");
    }

    let out = run_ok(sluice(&topology).args(["clickhouse", "describe"]));
    let described = String::from_utf8_lossy(&out.stdout);
    let unit_price = described.lines().find(|l| l.trim_start().starts_with("items_unit_price")).unwrap_or_default();
    assert!(
        unit_price.contains("Array(Decimal(10, 2))") && unit_price.contains("items[].unit_price"),
        "describe names each column's type and source field:\n{described}"
    );

    let (events, model) = orders(&sfx, 120);
    let w = publish_twice_through_a_crash(&topology, &projection, &events, &[format!("orders_{sfx}")]).await;

    let mut conn = connections().clickhouse;
    conn.url = url.to_owned();
    conn.database = format!("db_{sfx}");
    let client = crate::common::analytics::client(&conn).await;
    let (web, micros) = if modern {
        ("countIf(attributes['channel'] = 'web')", "max(toUnixTimestamp64Micro(placed_at))")
    } else {
        ("countIf(attributes_values[indexOf(attributes_keys, 'channel')] = 'web')", "max(placed_at_us)")
    };
    let (placed, total_cents, quantity, web, max_placed_at_us): (u64, i64, i64, u64, i64) = client
        .query(&format!(
            "SELECT count(), toInt64(sum(total) * 100), toInt64(sum(arraySum(items_quantity))), {web}, {micros} \
             FROM orders_placed FINAL"
        ))
        .fetch_one()
        .await
        .expect("orders_placed");
    let (paid, paid_cents, refunds): (u64, i64, u64) = client
        .query(
            "SELECT countIf(paid IS NOT NULL), toInt64(sumIf(assumeNotNull(paid), paid IS NOT NULL) * 100), countIf(refunded IS NOT NULL) \
             FROM order_money FINAL",
        )
        .fetch_one()
        .await
        .expect("order_money");
    // A MergeTree keeps re-deliveries: every event is there, its duplicates too.
    let (shipped, parcels): (u64, i64) = client
        .query(
            "SELECT count(), toInt64(sum(parcels)) \
             FROM (SELECT event_id, any(parcels) AS parcels FROM order_shipments GROUP BY event_id)",
        )
        .fetch_one()
        .await
        .expect("order_shipments");
    let rows: u64 = client.query("SELECT count() FROM order_shipments").fetch_one().await.expect("rows");
    assert!(rows >= shipped, "{rows} rows, {shipped} events");
    // The state table: one row per order, each column the newest value set.
    let (orders_now, last_shipped, cancelled_now, state_total_cents, state_paid_cents, state_refund_cents): (
        u64,
        u64,
        u64,
        i64,
        i64,
        i64,
    ) = client
        .query(
            "SELECT count(), countIf(last_event = 'order.shipped'), countIf(last_event = 'order.cancelled'), \
             toInt64(sum(total) * 100), toInt64(sum(paid) * 100), toInt64(sum(refund) * 100) \
             FROM orders_current WHERE is_deleted = 0",
        )
        .fetch_one()
        .await
        .expect("orders_current");
    assert_eq!(
        (orders_now, last_shipped, cancelled_now, state_total_cents, state_paid_cents, state_refund_cents),
        (
            model.placed,
            model.shipped,
            model.placed - model.shipped,
            model.total_cents,
            model.paid_cents,
            model.refund_cents
        ),
        "orders_current: the newest value of each column per order, whatever the order of delivery"
    );
    // The rollups: every event counted once, duplicates and the crash's re-deliveries included.
    let (sales, sales_cents, customers, biggest_cents): (u64, i64, u64, i64) = client
        .query(
            "SELECT toUInt64(sum(orders)), toInt64(sum(revenue) * 100), toUInt64(sum(customers)), \
             toInt64(max(biggest) * 100) FROM daily_sales",
        )
        .fetch_one()
        .await
        .expect("daily_sales");
    assert_eq!(
        (sales, sales_cents, customers, biggest_cents),
        (model.sales, model.sales_cents, model.sales, model.biggest_sale_cents),
        "daily_sales: EUR and USD orders only (`where`), each customer once"
    );
    let (payments, cancellations, amount_paid, amount_refunded): (u64, u64, i64, i64) = client
        .query(
            "SELECT toUInt64(sum(payments)), toUInt64(sum(cancellations)), toInt64(sum(amount_paid) * 100), \
             toInt64(sum(amount_refunded) * 100) FROM hourly_money",
        )
        .fetch_one()
        .await
        .expect("hourly_money");
    assert_eq!(
        (payments, cancellations, amount_paid, amount_refunded),
        (model.paid, model.cancelled, model.paid_cents, model.refund_cents),
        "hourly_money"
    );
    let got = Model {
        placed,
        total_cents,
        quantity,
        web,
        max_placed_at_us,
        paid,
        paid_cents,
        refunds,
        shipped,
        parcels,
        cancelled: cancellations,
        refund_cents: amount_refunded,
        sales,
        sales_cents,
        biggest_sale_cents: biggest_cents,
    };
    assert_eq!(got, model, "the declared tables equal the model (ClickHouse at {url})");
    let types: BTreeMap<String, String> = client
        .query("SELECT name, type FROM system.columns WHERE database = ? AND table = 'orders_placed'")
        .bind(&conn.database)
        .fetch_all::<(String, String)>()
        .await
        .expect("columns")
        .into_iter()
        .collect();
    assert_eq!(types.get("total").map(String::as_str), Some("Decimal(12, 2)"), "{types:?}");
    assert_eq!(types.get("items_unit_price").map(String::as_str), Some("Array(Decimal(10, 2))"), "{types:?}");
    assert_eq!(types.get("customer_id").map(String::as_str), Some("UUID"), "{types:?}");
    // The example queries of docs/analytics.md ("Declared tables"), as they are written there.
    let revenue: Vec<(String, i64)> = client
        .query("SELECT currency, toInt64(revenue * 100) FROM (SELECT currency, sum(total) AS revenue FROM orders_placed FINAL GROUP BY currency)")
        .fetch_all()
        .await
        .expect("revenue per currency");
    assert_eq!(revenue.iter().map(|(_, c)| c).sum::<i64>(), model.total_cents, "{revenue:?}");
    let units: Vec<(String, i64)> = client
        .query(
            "SELECT sku, toInt64(sum(quantity)) FROM orders_placed FINAL \
             ARRAY JOIN items_sku AS sku, items_quantity AS quantity GROUP BY sku ORDER BY 2 DESC",
        )
        .fetch_all()
        .await
        .expect("units per SKU");
    assert_eq!(units.iter().map(|(_, q)| q).sum::<i64>(), model.quantity, "{units:?}");
    let (status, _) = w.terminate();
    assert!(status.success(), "clean shutdown: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_on_the_modern_engine() {
    orders_end_to_end(&connections().clickhouse.url, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_on_clickhouse_18() {
    let url = connections().clickhouse_compat.expect("SLUICE_CLICKHOUSE_COMPAT_URL: start the rig with dev/up").url;
    orders_end_to_end(&url, false).await;
}

/// Values as people read them: what a producer published (`"total": "26.35"`) is what the
/// Couchbase document holds, what `sluice couchbase get` prints and what the raw ClickHouse table's
/// `payload` column shows, not the unscaled 2635 of the Avro body; timestamps as RFC 3339 text to
/// their unit's digits, dates as `YYYY-MM-DD`. A second Couchbase projection maps its document's
/// fields from nested fields, array elements and flags set or cleared by event type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_reads_as_it_was_published() {
    let sfx = unique("asread");
    let topology = fresh_orders(&sfx, &connections().clickhouse.url);
    let dir = topology.parent().expect("dir").to_path_buf();
    let (state, analytics, cards) =
        (format!("order_state_{sfx}"), format!("order_analytics_{sfx}"), format!("order_cards_{sfx}"));
    let mut text = std::fs::read_to_string(&topology).expect("topology");
    text.push_str(&format!(
        r#"
[projections.{cards}]
sources = ["orders_{sfx}"]
sink = "couchbase"

[projections.{cards}.couchbase]
document_id = "card::{{aggregate_id}}"

[projections.{cards}.couchbase.fields]
total = "total"
first_price = "items[0].unit_price"
third_price = "items[2].unit_price"
skus = "items[].sku"
customer = ["customer.email", "customer.id"]
paid = {{ set_by = ["order.paid"], cleared_by = ["order.cancelled"] }}
shipped = {{ set_by = ["order.shipped"] }}
changed_at = "occurred_at"
"#
    ));
    std::fs::write(&topology, text).expect("topology");
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));
    run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    let id = format!("o-{sfx}");
    let placed = json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "event_type": "order.placed", "aggregate_id": id,
        "aggregate_version": 1, "occurred_at": now_ms(), "producer": "t",
        "total": "26.35", "currency": "EUR",
        "customer": {"id": "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001", "tier": "GOLD", "email": null},
        "items": [{"sku": "A", "quantity": 1, "unit_price": "26.3"}, {"sku": "B", "quantity": 2, "unit_price": "-0.5"}],
        "placed_at": 1_793_527_200_123_456_i64, "delivery_date": "2026-11-03"
    });
    let paid_at_ms = now_ms();
    let paid = json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "event_type": "order.paid", "aggregate_id": id,
        "aggregate_version": 2, "occurred_at": paid_at_ms, "producer": "t",
        "amount": "12", "method": "CARD", "paid_at": 1_793_527_260_000_i64
    });
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(write_jsonl(&dir, "asread.jsonl", &[&placed, &paid])));
    let state_worker = WorkerProcess::start(&topology, &state, None);
    let analytics_worker = WorkerProcess::start(&topology, &analytics, None);
    let cards_worker = WorkerProcess::start(&topology, &cards, None);
    let topics = [format!("orders_{sfx}")];
    await_caught_up(&format!("sluice.{state}"), &topics, 90).await;
    await_caught_up(&format!("sluice.{analytics}"), &topics, 90).await;
    await_caught_up(&format!("sluice.{cards}"), &topics, 90).await;

    let out = run_ok(sluice(&topology).args(["couchbase", "get", &format!("order::{id}")]));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("the document as JSON");
    assert_eq!(doc["total"], json!("26.35"), "{doc}");
    assert_eq!(doc["items"][0]["unit_price"], json!("26.30"), "at the schema's scale: {doc}");
    assert_eq!(doc["items"][1]["unit_price"], json!("-0.50"), "{doc}");
    assert_eq!(doc["amount"], json!("12.00"), "{doc}");
    assert_eq!(doc["placed_at"], json!("2026-11-01T10:00:00.123456Z"), "to the microsecond: {doc}");
    assert_eq!(doc["paid_at"], json!("2026-11-01T10:01:00.000Z"), "to the millisecond: {doc}");
    assert_eq!(doc["delivery_date"], json!("2026-11-03"), "{doc}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(r#""total": "26.35""#), "`sluice couchbase get` prints it so:\n{printed}");

    let out = run_ok(sluice(&topology).args(["couchbase", "get", &format!("card::{id}")]));
    let mut card: Value = serde_json::from_slice(&out.stdout).expect("the card as JSON");
    card.as_object_mut().expect("a document").remove("_sluice");
    let changed_at = sluice_core::calendar::format_date_time(paid_at_ms, sluice_core::calendar::Unit::Millis, true);
    assert_eq!(
        card,
        json!({
            "total": "26.35", "first_price": "26.30", "skus": ["A", "B"],
            "customer": "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001", "paid": true, "changed_at": changed_at
        }),
        "nested fields, the first element, every element, the first candidate with a value, a flag set by \
         order.paid (no third item, no shipment: unchanged)"
    );

    let mut conn = connections().clickhouse;
    conn.database = format!("db_{sfx}");
    let client = crate::common::analytics::client(&conn).await;
    let payloads: Vec<String> = client
        .query("SELECT payload FROM order_events WHERE aggregate_id = ? ORDER BY aggregate_version")
        .bind(&id)
        .fetch_all()
        .await
        .expect("the raw table");
    let payloads: Vec<Value> = payloads.iter().map(|p| serde_json::from_str(p).expect("payload JSON")).collect();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert_eq!((&payloads[0]["total"], &payloads[1]["amount"]), (&json!("26.35"), &json!("12.00")), "{payloads:?}");
    assert_eq!(payloads[0]["placed_at"], json!("2026-11-01T10:00:00.123456Z"), "{payloads:?}");
    let placed_at_us: i64 = client
        .query("SELECT toUnixTimestamp64Micro(placed_at) FROM orders_placed FINAL WHERE aggregate_id = ?")
        .bind(&id)
        .fetch_one()
        .await
        .expect("orders_placed");
    assert_eq!(placed_at_us, 1_793_527_200_123_456, "the DateTime64(6) column holds the same instant");
    let total_cents: i64 = client
        .query("SELECT toInt64(total * 100) FROM orders_placed FINAL WHERE aggregate_id = ?")
        .bind(&id)
        .fetch_one()
        .await
        .expect("orders_placed");
    assert_eq!(total_cents, 2635, "the Decimal(12, 2) column holds the same number");
    for worker in [state_worker, analytics_worker, cards_worker] {
        let (status, _) = worker.terminate();
        assert!(status.success(), "clean shutdown: {status}");
    }
}

/// Online evolution: v1 shipments flow; v2 of the schema adds an optional field; `migrate --plan`
/// shows the column it would add, `migrate` adds it while the worker runs; the worker notices the
/// new schema file by itself (no restart), writes v2 events with the field, and the v1 rows read
/// NULL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compatible_schema_change_adds_the_column_online() {
    let sfx = unique("evolve");
    // Schemas of their own (their own registry subjects), so v2 reaches no other test.
    let domain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/domains/orders/schemas");
    let schemas = std::env::temp_dir().join(format!("sluice-test-{sfx}-schemas"));
    std::fs::create_dir_all(&schemas).expect("schemas dir");
    for f in ["placed", "paid", "shipped", "cancelled"] {
        let text = std::fs::read_to_string(domain.join(format!("{f}.avsc"))).expect("schema");
        std::fs::write(
            schemas.join(format!("{f}.avsc")),
            text.replace("\"shop.orders\"", &format!("\"shop.orders_{sfx}\"")),
        )
        .expect("write schema");
    }
    let url = connections().clickhouse.url;
    let topology = fresh_orders_with(&sfx, &url, &schemas);
    let dir = topology.parent().expect("dir").to_path_buf();
    let projection = format!("order_analytics_{sfx}");
    let topic = format!("orders_{sfx}");
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));
    run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    let shipped = |i: i64, signed_by: Option<&str>| {
        let mut e = json!({"event_id": uuid::Uuid::new_v4().to_string(), "event_type": "order.shipped",
            "aggregate_id": format!("o-{i}"), "aggregate_version": 3, "occurred_at": now_ms(), "producer": "t",
            "carrier": "DHL", "tracking": null, "parcels": 1});
        if let Some(who) = signed_by {
            merge(&mut e, json!({"signed_by": who}));
        }
        e
    };
    let v1: Vec<Value> = (0..5).map(|i| shipped(i, None)).collect();
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(write_jsonl(
        &dir,
        "v1.jsonl",
        &v1.iter().collect::<Vec<_>>(),
    )));
    let worker = WorkerProcess::start(&topology, &projection, None);
    await_caught_up(&format!("sluice.{projection}"), std::slice::from_ref(&topic), 60).await;

    // v2: an optional field added (BACKWARD compatible), first in a copy of the schemas that the
    // operator registers and migrates with, while the worker still runs on v1.
    let v1_text = std::fs::read_to_string(schemas.join("shipped.avsc")).expect("v1");
    let v2_text = v1_text.replace(
        r#"{"name": "parcels", "type": "int", "default": 1}"#,
        r#"{"name": "parcels", "type": "int", "default": 1},
    {"name": "signed_by", "type": ["null", "string"], "default": null}"#,
    );
    assert_ne!(v1_text, v2_text, "the field was added");
    let schemas_v2 = dir.join("schemas_v2");
    std::fs::create_dir_all(&schemas_v2).expect("v2 dir");
    for f in ["placed", "paid", "cancelled"] {
        std::fs::copy(schemas.join(format!("{f}.avsc")), schemas_v2.join(format!("{f}.avsc"))).expect("copy");
    }
    std::fs::write(schemas_v2.join("shipped.avsc"), &v2_text).expect("v2");
    let text = std::fs::read_to_string(&topology).expect("topology");
    let topology_v2 = dir.join("topology_v2.toml");
    std::fs::write(&topology_v2, text.replace(&schemas.display().to_string(), &schemas_v2.display().to_string()))
        .expect("topology v2");
    run_ok(sluice(&topology_v2).args(["schemas", "register"]));
    let plan = run_ok(sluice(&topology_v2).args(["clickhouse", "migrate", "--plan"]));
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains(&format!("ALTER TABLE `db_{sfx}`.`order_shipments` ADD COLUMN `signed_by` Nullable(String)")),
        "{plan}"
    );
    let out = run_ok(sluice(&topology_v2).args(["clickhouse", "migrate"]));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("added column `db_"), "{out}");
    assert!(out.contains("1 columns added"), "{out}");
    let again = run_ok(sluice(&topology_v2).args(["clickhouse", "migrate", "--plan"]));
    assert!(String::from_utf8_lossy(&again.stdout).contains("-- nothing to do"), "a second migrate changes nothing");

    // Deployed: the worker's own schema file becomes v2. The running worker notices (it looks
    // every 2 s), commits and goes on with the new schema: same process, nothing restarted.
    std::fs::write(schemas.join("shipped.avsc"), &v2_text).expect("deploy v2");
    let log = topology.with_file_name(format!("{projection}.log"));
    let noticed = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("the topology changed") {
        assert!(noticed.elapsed() < Duration::from_secs(30), "the worker did not notice the new schema");
        std::thread::sleep(Duration::from_millis(100));
    }
    let v2: Vec<Value> = (5..8).map(|i| shipped(i, Some("Ann"))).collect();
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(write_jsonl(
        &dir,
        "v2.jsonl",
        &v2.iter().collect::<Vec<_>>(),
    )));
    await_caught_up(&format!("sluice.{projection}"), std::slice::from_ref(&topic), 60).await;

    let mut conn = connections().clickhouse;
    conn.database = format!("db_{sfx}");
    let client = crate::common::analytics::client(&conn).await;
    let rows: Vec<(String, Option<String>)> = client
        .query("SELECT aggregate_id, signed_by FROM order_shipments ORDER BY aggregate_id")
        .fetch_all()
        .await
        .expect("rows");
    let expected: Vec<(String, Option<String>)> =
        (0..8).map(|i| (format!("o-{i}"), (i >= 5).then(|| "Ann".to_owned()))).collect();
    assert_eq!(rows, expected, "v1 rows read NULL, v2 rows carry the field, nothing lost");
    let (status, _) = worker.terminate();
    assert!(status.success(), "clean shutdown: {status}");
}
