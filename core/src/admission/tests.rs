use std::path::Path;

use proptest::prelude::*;
use serde_json::Map;

use super::*;
use crate::event::{Envelope, Position};

/// A domain of its own (not the repository's sample): orders and payments on two topics, one
/// keyed by aggregate, one by producer; a projection folding two of the three order types.
const TOPOLOGY: &str = r#"
[topics.orders]
partitions = 3
replication_factor = 1
subject_strategy = "record"

[topics.payments]
partitions = 3
replication_factor = 1
key = "producer"
key_mismatch = "accept"

[events."order.placed"]
topic = "orders"
schema = "placed.avsc"

[events."order.cancelled"]
topic = "orders"
schema = "cancelled.avsc"

[events."order.viewed"]
topic = "orders"
schema = "viewed.avsc"

[events."payment.captured"]
topic = "payments"
schema = "captured.avsc"

[projections.order_state]
sources = ["orders", "payments"]
events = ["order.placed", "order.cancelled", "payment.captured"]
sink = "couchbase"

[projections.order_state.couchbase]
document_id = "order::{aggregate_id}"
"#;

fn schema(record: &str) -> String {
    let envelope = r#"{"name": "event_id", "type": "string"}, {"name": "event_type", "type": "string"},
        {"name": "aggregate_id", "type": "string"}, {"name": "aggregate_version", "type": "long"},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "producer", "type": "string"},
        {"name": "correlation_id", "type": ["null", "string"], "default": null},
        {"name": "causation_id", "type": ["null", "string"], "default": null},
        {"name": "traceparent", "type": ["null", "string"], "default": null},
        {"name": "tracestate", "type": ["null", "string"], "default": null}"#;
    format!(r#"{{"type": "record", "name": "{record}", "namespace": "shop", "fields": [{envelope}]}}"#)
}

fn topology() -> Topology {
    Topology::from_parts(TOPOLOGY, Path::new("topology.toml"), |p| {
        let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let mut record = name.to_owned();
        record[..1].make_ascii_uppercase();
        Ok(schema(&record))
    })
    .unwrap_or_else(|report| panic!("valid topology: {report}"))
}

fn admission() -> Admission {
    Admission::new(&topology(), "order_state").expect("projection")
}

fn event(event_type: &str, topic: &str) -> Event {
    Event {
        envelope: Envelope {
            event_id: "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001".into(),
            event_type: event_type.into(),
            aggregate_id: "o-1".into(),
            aggregate_version: 3,
            occurred_at: 1_700_000_000_000,
            producer: "checkout".into(),
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            tracestate: None,
        },
        payload: Map::new(),
        position: Position { topic: topic.into(), partition: 0, offset: 9 },
        schema_id: 12,
    }
}

fn native<'a>(record: &'a str, key: &'a [u8]) -> Origin<'a> {
    Origin::Native { writer_record: Some(record), key: Some(key) }
}

#[test]
fn an_event_that_keeps_every_rule_is_applied() {
    let a = admission();
    assert_eq!(a.judge(&event("order.placed", "orders"), native("shop.Placed", b"o-1")), Verdict::Apply);
}

#[test]
fn an_undeclared_type_is_refused_even_with_a_valid_body() {
    let verdict = admission().judge(&event("order.refunded", "orders"), native("shop.Placed", b"o-1"));
    let Verdict::Refuse(refusal) = verdict else { panic!("refused: {verdict:?}") };
    assert_eq!(refusal.code(), "undeclared_event_type");
    assert!(refusal.to_string().contains("\"order.refunded\""), "{refusal}");
}

#[test]
fn the_claimed_type_must_be_the_type_of_the_writer_schema() {
    // A body written with order.placed's schema that says it is an order.cancelled.
    let verdict = admission().judge(&event("order.cancelled", "orders"), native("shop.Placed", b"o-1"));
    let Verdict::Refuse(refusal) = verdict else { panic!("refused: {verdict:?}") };
    assert_eq!(refusal.code(), "type_schema_mismatch");
    assert_eq!(
        refusal.to_string(),
        "the body was written with schema shop.Placed (id 12) but says event_type \"order.cancelled\", \
         whose schema is shop.Cancelled"
    );
    let not_a_record = Origin::Native { writer_record: None, key: Some(b"o-1") };
    assert!(matches!(
        admission().judge(&event("order.placed", "orders"), not_a_record),
        Verdict::Refuse(Refusal::TypeSchemaMismatch { .. })
    ));
}

#[test]
fn a_type_read_on_another_topic_is_refused() {
    let verdict = admission().judge(&event("order.placed", "payments"), native("shop.Placed", b"o-1"));
    let Verdict::Refuse(refusal) = verdict else { panic!("refused: {verdict:?}") };
    assert_eq!(refusal.code(), "wrong_topic");
}

#[test]
fn a_declared_type_the_projection_does_not_fold_is_skipped() {
    let a = admission();
    assert_eq!(a.judge(&event("order.viewed", "orders"), native("shop.Viewed", b"o-1")), Verdict::Skip);
    // Skipped whatever its key: the projection takes nothing from it.
    assert_eq!(a.judge(&event("order.viewed", "orders"), native("shop.Viewed", b"other")), Verdict::Skip);
}

#[test]
fn a_key_other_than_the_key_field_is_refused_or_counted_by_the_topic_policy() {
    let a = admission();
    for key in [Some(&b"o-2"[..]), Some(b""), None] {
        let origin = Origin::Native { writer_record: Some("shop.Placed"), key };
        let verdict = a.judge(&event("order.placed", "orders"), origin);
        let Verdict::Refuse(refusal) = verdict else { panic!("refused: {verdict:?}") };
        assert_eq!(refusal.code(), "key_mismatch");
    }
    let Verdict::Refuse(refusal) = a.judge(&event("order.placed", "orders"), native("shop.Placed", b"o-2")) else {
        panic!("refused")
    };
    assert_eq!(refusal.to_string(), "the Kafka key is \"o-2\", but the topic is keyed by aggregate_id = \"o-1\"");
    // payments is keyed by producer and accepts other keys.
    assert_eq!(a.judge(&event("payment.captured", "payments"), native("shop.Captured", b"checkout")), Verdict::Apply);
    let accepted = a.judge(&event("payment.captured", "payments"), native("shop.Captured", b"o-1"));
    assert!(matches!(accepted, Verdict::ApplyDespite(Refusal::KeyMismatch { .. })), "{accepted:?}");
}

#[test]
fn a_long_key_is_quoted_shortened() {
    let long = vec![b'k'; 600_000];
    let Verdict::Refuse(refusal) = admission().judge(&event("order.placed", "orders"), native("shop.Placed", &long))
    else {
        panic!("refused")
    };
    assert!(refusal.to_string().len() < 200, "{refusal}");
}

#[test]
fn cdc_events_are_judged_by_type_topic_and_projection_only() {
    let a = admission();
    assert_eq!(a.judge(&event("order.placed", "orders"), Origin::Cdc), Verdict::Apply);
    assert!(matches!(a.judge(&event("order.placed", "payments"), Origin::Cdc), Verdict::Refuse(_)));
    assert!(matches!(a.judge(&event("nope", "orders"), Origin::Cdc), Verdict::Refuse(_)));
}

#[test]
fn an_unknown_projection_has_no_rules() {
    assert!(Admission::new(&topology(), "nope").is_none());
}

proptest! {
    /// Whatever a record claims, it is applied only when every rule holds.
    #[test]
    fn applied_only_when_every_rule_holds(
        event_type in prop::sample::select(vec!["order.placed", "order.cancelled", "order.viewed", "payment.captured", "x.y"]),
        topic in prop::sample::select(vec!["orders", "payments"]),
        record in prop::sample::select(vec!["shop.Placed", "shop.Cancelled", "shop.Viewed", "shop.Captured", "other.R"]),
        key in prop::sample::select(vec!["o-1", "o-2", "checkout"]),
    ) {
        let a = admission();
        let verdict = a.judge(&event(event_type, topic), native(record, key.as_bytes()));
        let expected_record = match event_type {
            "order.placed" => "shop.Placed",
            "order.cancelled" => "shop.Cancelled",
            "order.viewed" => "shop.Viewed",
            "payment.captured" => "shop.Captured",
            _ => "",
        };
        let expected_topic = if event_type.starts_with("payment.") { "payments" } else { "orders" };
        let key_ok = if topic == "payments" { key == "checkout" } else { key == "o-1" };
        let rules_hold = record == expected_record && topic == expected_topic;
        match verdict {
            Verdict::Apply => prop_assert!(rules_hold && key_ok && event_type != "order.viewed"),
            Verdict::ApplyDespite(_) => prop_assert!(rules_hold && !key_ok && topic == "payments"),
            Verdict::Skip => prop_assert!(rules_hold && event_type == "order.viewed"),
            Verdict::Refuse(_) => prop_assert!(!rules_hold || (!key_ok && topic == "orders")),
        }
    }
}
