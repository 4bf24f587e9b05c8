//! The publisher against the real Kafka and registry: typed and JSON events are read back and
//! decoded (framing → writer schema by id from the registry → Avro) to exactly what was
//! published; invalid events are refused with a typed error and write nothing; one aggregate's
//! events share a partition, in order.
//!
//! Each test gets its own topics, and with `subject_strategy = "topic"` its own subjects, so runs
//! never collide.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_id};
use serde::Serialize;
use serde_json::{Value, json};
use sluice_consumers::lag::{DEFAULT_INTERVAL, LagGate, LagMonitor};
use sluice_core::avro::{avro_to_json, decode};
use sluice_core::calendar::Unit;
use sluice_core::framing::unframe;
use sluice_core::lag::IntakePolicy;
use sluice_core::topology::Topology;
use sluice_producers::admin::topics::TopicAdmin;
use sluice_producers::{Delivery, EventDraft, PublishError, Publisher, PublisherOptions, Registry, Uuid};
use sluice_tests::{connections, high_watermarks, unique, within};

const PURCHASE: &str = "engagement.purchase_completed";
const REGISTERED: &str = "user.registered";

/// A topology of two fresh topics (purchases keyed by `aggregate_id`, users too), created on
/// the cluster.
async fn setup(prefix: &str) -> (Arc<Topology>, String, String) {
    setup_with(prefix, |_| String::new()).await
}

/// [`setup`], with `extra(users_topic)` appended to the topology text.
async fn setup_with(prefix: &str, extra: impl FnOnce(&str) -> String) -> (Arc<Topology>, String, String) {
    let purchases = unique(&format!("{prefix}_purchases"));
    let users = unique(&format!("{prefix}_users"));
    let text = format!(
        r#"
[topics.{purchases}]
partitions = 4
replication_factor = 1
retention = "1d"

[topics.{users}]
partitions = 3
replication_factor = 1
retention = "1d"

[events."{PURCHASE}"]
topic = "{purchases}"
schema = "schemas/engagement/purchase_completed.avsc"

[events."{REGISTERED}"]
topic = "{users}"
schema = "schemas/users/registered.avsc"
{}"#,
        extra(&users)
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let topology = Topology::from_parts(&text, &repo.join("topology.toml"), |p| std::fs::read_to_string(p))
        .unwrap_or_else(|report| panic!("{report}"));
    let admin = TopicAdmin::new(&connections().kafka, Duration::from_secs(30)).expect("admin client");
    let plans = within("plan topics", 60, admin.plan(&topology)).await.expect("plan");
    let outcomes = within("create topics", 60, admin.apply(plans)).await.expect("apply");
    assert!(outcomes.iter().all(|o| o.failures.is_empty()), "{outcomes:?}");
    (Arc::new(topology), purchases, users)
}

fn publisher(topology: &Arc<Topology>) -> Publisher {
    Publisher::new(Arc::clone(topology), &connections(), PublisherOptions::new("publisher-test")).expect("publisher")
}

#[derive(Serialize)]
struct PurchaseCompleted {
    user_id: String,
    session_id: Option<String>,
    order_id: String,
    amount_cents: i64,
    currency: String,
    items: i32,
}

fn purchase_draft(user: &str, n: i64) -> EventDraft {
    EventDraft::new(PURCHASE, user, n)
        .payload(&PurchaseCompleted {
            user_id: user.to_owned(),
            session_id: Some(format!("s-{n}")),
            order_id: format!("o-{n}"),
            amount_cents: 100 * n,
            currency: "EUR".into(),
            items: 1,
        })
        .event_id(Uuid::new_v4())
        .occurred_at_millis(1_795_000_000_000 + n)
}

/// A record read back: its key, where it was, and its value decoded to JSON.
#[derive(Debug)]
struct ReadBack {
    key: String,
    partition: i32,
    offset: i64,
    schema_id: u32,
    event: Value,
}

/// Reads `n` records of `topic` from the beginning and decodes each with its writer schema,
/// fetched from the registry by the id in its frame.
async fn read_back(topic: &str, n: usize) -> Vec<ReadBack> {
    let conns = connections();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &conns.kafka.brokers)
        .set("group.id", unique("publisher_test_reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        assignment.add_partition_offset(topic, p.id(), Offset::Beginning).expect("assign partition");
    }
    consumer.assign(&assignment).expect("assign");
    let registry = SrSettings::new(conns.registry.url);
    let mut schemas: BTreeMap<u32, Schema> = BTreeMap::new();
    let mut out = Vec::new();
    while out.len() < n {
        let msg = within("consume", 60, consumer.recv()).await.expect("kafka message");
        let framed = unframe(msg.payload().expect("a value")).expect("Confluent framing");
        let schema = match schemas.entry(framed.schema_id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => {
                let registered =
                    within("schema by id", 30, get_schema_by_id(framed.schema_id, &registry)).await.expect("schema");
                slot.insert(Schema::parse_str(&registered.schema).expect("valid schema"))
            }
        };
        let value = decode(framed.body, schema, None).expect("decodes");
        out.push(ReadBack {
            key: String::from_utf8(msg.key().expect("a key").to_vec()).expect("utf-8 key"),
            partition: msg.partition(),
            offset: msg.offset(),
            schema_id: framed.schema_id,
            event: avro_to_json(&value, schema),
        });
    }
    out
}

#[tokio::test]
async fn typed_and_json_events_read_back_as_published() {
    let (topology, purchases, users) = setup("pub_roundtrip").await;
    let publisher = publisher(&topology);

    // Typed: the drafts' JSON is what must come back (ids and times fixed in the draft).
    let drafts: Vec<EventDraft> = (1..=3).map(|n| purchase_draft(&format!("user-{n}"), n)).collect();
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    let mut deliveries: Vec<Delivery> = Vec::new();
    for draft in drafts {
        let json = draft.clone().into_json("publisher-test").expect("draft json");
        let delivery = within("publish", 60, publisher.publish(draft)).await.expect("published");
        assert_eq!(delivery.topic, purchases);
        expected.insert(delivery.event_id.clone(), rendered(json));
        deliveries.push(delivery);
    }

    // JSON: optional fields left out come back null; the time comes back as RFC 3339 UTC text at
    // the schema's precision (milliseconds), whatever offset it was written with.
    let id = Uuid::new_v4();
    let json_event = json!({
        "event_id": id.to_string().to_uppercase(), "event_type": REGISTERED, "aggregate_id": "user-9",
        "aggregate_version": 1, "occurred_at": "2026-11-26T04:28:21.123Z", "producer": "signup",
        "email": "nine@example.com", "display_name": "Nine", "country": "FR"
    });
    let delivery =
        within("publish json", 60, publisher.publish_json(REGISTERED, &json_event)).await.expect("published");
    assert_eq!((delivery.topic.as_str(), delivery.event_id.as_str()), (users.as_str(), id.to_string().as_str()));

    let back = read_back(&purchases, 3).await;
    let purchase_id = publisher.schema_id(PURCHASE).await.expect("schema id");
    for record in &back {
        let id = record.event["event_id"].as_str().expect("event_id");
        assert_eq!(&record.event, &expected[id], "decoded event equals the published one");
        assert_eq!(record.key, record.event["aggregate_id"], "keyed by aggregate_id");
        assert_eq!(record.schema_id, purchase_id, "framed with the publisher's cached schema id");
        let delivery = deliveries.iter().find(|d| d.event_id == id).expect("a delivery for it");
        assert_eq!((record.partition, record.offset), (delivery.partition, delivery.offset));
    }

    let back = read_back(&users, 1).await;
    assert_eq!(
        back[0].event,
        json!({
            "event_id": id.to_string(), "event_type": REGISTERED, "aggregate_id": "user-9",
            "aggregate_version": 1, "occurred_at": "2026-11-26T04:28:21.123Z", "producer": "signup",
            "correlation_id": null, "causation_id": null, "traceparent": null, "tracestate": null,
            "email": "nine@example.com", "display_name": "Nine", "country": "FR", "referrer": null
        })
    );

    // The id is the registry's for the subject (same schema, same id).
    let registry = Registry::new(&connections().registry, Duration::from_secs(10)).expect("registry");
    let info = topology.event(PURCHASE).expect("event type");
    let registered = registry.lookup(&info.subject, &info.schema_text).await.expect("lookup").expect("registered");
    assert_eq!(registered.id, purchase_id);
}

#[tokio::test]
async fn invalid_events_are_refused_and_nothing_is_written() {
    let (topology, purchases, _) = setup("pub_invalid").await;
    let publisher = publisher(&topology);
    // One good event first, so the schema id is resolved and the topic is known to the producer.
    within("publish", 60, publisher.publish(purchase_draft("user-1", 1))).await.expect("published");
    let before = high_watermarks(&purchases);
    assert_eq!(before, 1);

    let good = purchase_draft("user-2", 2).into_json("publisher-test").expect("json");
    let with = |field: &str, value: Value| {
        let mut event = good.clone();
        event[field] = value;
        event
    };

    let err = publisher.publish_json(PURCHASE, &with("amount_cents", json!("12"))).await.expect_err("wrong type");
    assert!(matches!(err, PublishError::Invalid(_)), "{err:?}");
    assert_eq!(err.to_string(), r#"$.amount_cents: expected long, found string "12""#);
    assert!(!err.is_retriable());

    let mut missing = good.clone();
    missing.as_object_mut().expect("object").remove("order_id");
    let err = publisher.publish_json(PURCHASE, &missing).await.expect_err("missing field");
    let PublishError::Invalid(convert) = &err else { panic!("expected Invalid, got {err:?}") };
    assert_eq!(convert.to_string(), r#"$: missing required field "order_id""#);

    let err = publisher.publish_json("engagement.refunded", &good).await.expect_err("unknown type");
    assert!(
        matches!(&err, PublishError::UnknownEventType { event_type, known } if event_type == "engagement.refunded" && known.len() == 2),
        "{err:?}"
    );
    assert!(!err.is_retriable());

    let err = publisher.publish_json(REGISTERED, &good).await.expect_err("a purchase is not a registration");
    assert!(matches!(err, PublishError::Invalid(_) | PublishError::EventTypeMismatch { .. }), "{err:?}");

    let err = publisher.publish(purchase_draft("user-3", 3).field("aggregate_id", "x")).await.expect_err("payload");
    assert!(matches!(err, PublishError::Payload(_)), "{err:?}");

    assert_eq!(high_watermarks(&purchases), before, "no refused event reached the topic");
}

#[tokio::test]
async fn one_aggregates_events_share_a_partition_in_order() {
    let (topology, purchases, _) = setup("pub_keys").await;
    let publisher = Arc::new(publisher(&topology));
    // Enqueue everything first (many in flight), then await: order per key must still hold.
    let mut pending = Vec::new();
    for n in 1..=60 {
        let user = format!("user-{}", n % 4);
        let event = purchase_draft(&user, n).into_json("publisher-test").expect("json");
        let queued = within("enqueue", 60, publisher.enqueue_json(PURCHASE, &event)).await.expect("queued");
        pending.push((user, n, queued));
    }
    let mut by_user: BTreeMap<String, Vec<(i64, i32, i64)>> = BTreeMap::new();
    for (user, n, queued) in pending {
        let d = within("delivery", 60, queued).await.expect("delivered");
        by_user.entry(user).or_default().push((n, d.partition, d.offset));
    }
    let mut partitions_used = std::collections::BTreeSet::new();
    for (user, deliveries) in &by_user {
        let partition = deliveries[0].1;
        assert!(deliveries.iter().all(|d| d.1 == partition), "{user}'s events are all on partition {partition}");
        assert!(deliveries.windows(2).all(|w| w[0].2 < w[1].2), "{user}'s events are in publish order");
        partitions_used.insert(partition);
    }
    assert!(partitions_used.len() > 1, "4 keys over 4 partitions do not all land on one: {partitions_used:?}");
    let back = read_back(&purchases, 60).await;
    assert!(back.iter().all(|r| r.key == r.event["aggregate_id"]));
}

#[tokio::test]
async fn a_topic_that_was_never_applied_is_a_typed_error() {
    let name = unique("pub_missing");
    let text = format!(
        "[topics.{name}]\npartitions = 1\nreplication_factor = 1\n\n[events.\"{PURCHASE}\"]\ntopic = \"{name}\"\n\
         schema = \"schemas/engagement/purchase_completed.avsc\"\n"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let topology = Topology::from_parts(&text, &repo.join("topology.toml"), |p| std::fs::read_to_string(p))
        .unwrap_or_else(|report| panic!("{report}"));
    // librdkafka waits this long for a topic to show up in metadata before failing its messages.
    let opts = PublisherOptions::new("publisher-test").kafka_config("topic.metadata.propagation.max.ms", "2000");
    let publisher = Publisher::new(Arc::new(topology), &connections(), opts).expect("publisher");
    let err = within("publish", 60, publisher.publish(purchase_draft("user-1", 1))).await.expect_err("no topic");
    assert!(matches!(&err, PublishError::UnknownTopic(t) if *t == name), "{err:?}");
    assert!(!err.is_retriable());
}

/// With the lag gate the gateway uses, the library refuses — typed, with the delay to wait — the
/// events of a type whose projection is past its hard lag threshold, writes nothing for them, and
/// lets other types through.
/// `event` as the generic Avro → JSON rendering shows it: `occurred_at` (a timestamp-millis) as
/// RFC 3339 text.
fn rendered(mut event: Value) -> Value {
    if let Some(ms) = event["occurred_at"].as_i64() {
        event["occurred_at"] = json!(sluice_core::calendar::format_date_time(ms, Unit::Millis, true));
    }
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_hard_lag_threshold_the_library_returns_backpressure() {
    let projection = unique("bp_users");
    // A projection nobody runs: every event of `users` adds to its lag.
    let (topology, purchases, users) = setup_with("bp", |users| {
        format!(
            r#"
[projections.{projection}]
sources = ["{users}"]
sink = "couchbase"

[projections.{projection}.couchbase]
document_id = "user::{{aggregate_id}}"

[projections.{projection}.backpressure]
soft_lag = 4
hard_lag = 5
"#
        )
    })
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let snapshots = LagMonitor::spawn(Arc::clone(&topology), &connections().kafka, DEFAULT_INTERVAL, stop.clone())
        .expect("lag monitor");
    let gate = Arc::new(LagGate::new(snapshots, Arc::clone(&topology), IntakePolicy::default()));
    let publisher = publisher(&topology).with_gate(gate.clone());

    let registration = |n: i64| {
        EventDraft::new(REGISTERED, format!("u-{n}"), 1)
            .payload(&json!({"email": format!("u{n}@example.com"), "display_name": "U", "country": "NL",
                             "referrer": null}))
    };
    for n in 0..6 {
        publisher.publish(registration(n)).await.expect("below the threshold: published");
    }
    // The monitor sees the lag within about a second.
    within("lag past the hard threshold", 30, async {
        while gate.snapshot().projections.get(&projection).is_none_or(|p| p.lag_messages < 5) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let before = high_watermarks(&users);
    match publisher.publish(registration(99)).await {
        Err(PublishError::Backpressure { event_type, retry_after }) => {
            assert_eq!(event_type, REGISTERED);
            assert!(retry_after >= Duration::from_secs(1), "{retry_after:?}");
        }
        other => panic!("expected backpressure, got {other:?}"),
    }
    assert_eq!(high_watermarks(&users), before, "nothing written for a refused event");
    let e = publisher.publish(registration(100)).await.expect_err("still refused");
    assert!(e.is_retriable() && e.retry_after().is_some(), "{e}");
    publisher.publish(purchase_draft("u-1", 1)).await.expect("purchases feed no lagging projection");
    assert!(high_watermarks(&purchases) >= 1);
    stop.cancel();
}
