use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::topology::{SinkConfig, SubjectStrategy, Topology};

/// The envelope, as every event schema starts.
const ENVELOPE: &str = r#"
    {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "event_type", "type": "string"EVENT_TYPE_DEFAULT},
    {"name": "aggregate_id", "type": "string"},
    {"name": "aggregate_version", "type": "long"},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "producer", "type": "string"},
    {"name": "correlation_id", "type": ["null", "string"], "default": null},
    {"name": "causation_id", "type": ["null", "string"], "default": null},
    {"name": "traceparent", "type": ["null", "string"], "default": null},
    {"name": "tracestate", "type": ["null", "string"], "default": null}"#;

/// An event schema of record `full_name` with `payload` fields (JSON field objects, comma-separated).
fn event_schema(full_name: &str, default_type: Option<&str>, payload: &str) -> String {
    let (namespace, name) = match full_name.rsplit_once('.') {
        Some((ns, name)) => (format!(r#""namespace": "{ns}", "#), name),
        None => (String::new(), full_name),
    };
    let default = default_type.map(|d| format!(r#", "default": "{d}""#)).unwrap_or_default();
    let envelope = ENVELOPE.replace("EVENT_TYPE_DEFAULT", &default);
    let payload = if payload.is_empty() { String::new() } else { format!(",\n    {payload}") };
    format!(r#"{{"type": "record", {namespace}"name": "{name}", "fields": [{envelope}{payload}]}}"#)
}

fn subject(name: &str, id: u32, schema: &str) -> RegistrySubject {
    RegistrySubject {
        subject: name.to_owned(),
        version: 1,
        id,
        schema: schema.to_owned(),
        earlier_ids: Vec::new(),
        compatibility: None,
    }
}

fn topic(name: &str, partitions: u32, ids: &[(u32, u64)]) -> KafkaTopic {
    let records = ids.iter().map(|(_, n)| n).sum();
    KafkaTopic {
        name: name.to_owned(),
        partitions,
        replication_factor: 1,
        min_insync_replicas: Some(1),
        cleanup_policy: Some("delete".to_owned()),
        retention_ms: None,
        sample: Some(TopicSample { records, unframed: 0, schema_ids: ids.iter().copied().collect(), partial: false }),
    }
}

fn inventory(subjects: Vec<RegistrySubject>, topics: Vec<KafkaTopic>) -> Inventory {
    Inventory {
        registry_url: "http://127.0.0.1:18081/apis/ccompat/v7".to_owned(),
        kafka_brokers: "127.0.0.1:19092".to_owned(),
        compatibility: Some("BACKWARD".to_owned()),
        subjects,
        topics,
        sampled_per_partition: Some(200),
    }
}

/// Generates, checks the result as `topology check` does, and returns both.
fn generated(inventory: &Inventory, filter: &Filter) -> (Generated, Topology) {
    let out = generate(inventory, filter);
    match out.check(Path::new("/init")) {
        Ok(t) => (out, t),
        Err(report) => panic!("the generated topology is invalid:\n{report}\n{}", out.topology),
    }
}

/// What the comments say, however wrapped: the text without `#` markers and line breaks.
fn flat(text: &str) -> String {
    text.lines().map(|l| l.trim_start_matches('#').trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A fresh directory under the system's temporary one.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-init-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The usual shop: two record-named subjects on `users`, one topic-named on `pings`, a subject
/// that is no event, a key subject, and an event schema found nowhere.
fn shop() -> Inventory {
    let registered = event_schema(
        "sluice.users.UserRegistered",
        Some("user.registered"),
        r#"{"name": "email", "type": "string"}, {"name": "plan", "type": {"type": "enum", "name": "Plan", "symbols": ["FREE", "PRO"]}}, {"name": "seats", "type": "int"}"#,
    );
    let deleted = event_schema(
        "sluice.users.UserDeleted",
        None,
        r#"{"name": "reason", "type": ["null", "string"], "default": null}"#,
    );
    let ping = event_schema("sluice.pings.Ping", None, r#"{"name": "latency_ms", "type": "long"}"#);
    let orphan = event_schema("sluice.users.UserFrozen", None, "");
    let legacy = r#"{"type": "record", "name": "Legacy", "fields": [{"name": "id", "type": "string"}]}"#;
    inventory(
        vec![
            subject("sluice.users.UserRegistered", 1, &registered),
            subject("sluice.users.UserDeleted", 2, &deleted),
            subject("pings-value", 3, &ping),
            subject("pings-key", 4, r#""string""#),
            subject("legacy-value", 5, legacy),
            subject("sluice.users.UserFrozen", 6, &orphan),
        ],
        vec![
            topic("users", 6, &[(1, 150), (2, 40)]),
            topic("pings", 3, &[(3, 12)]),
            topic("legacy", 1, &[(5, 3)]),
            topic("_schemas", 1, &[]),
            topic("users_state.dlq", 1, &[]),
        ],
    )
}

#[test]
fn binds_each_subject_to_its_topic() {
    let (out, topology) = generated(&shop(), &Filter::default());
    let bound: Vec<(&str, &str, &str, Naming)> =
        out.events.iter().map(|e| (e.event_type.as_str(), e.topic.as_str(), e.subject.as_str(), e.naming)).collect();
    assert_eq!(
        bound,
        [
            ("pings.ping", "pings", "pings-value", Naming::Derived),
            ("user.registered", "users", "sluice.users.UserRegistered", Naming::SchemaDefault),
            ("users.user_deleted", "users", "sluice.users.UserDeleted", Naming::Derived),
        ]
    );
    // The topology as loaded agrees: topics, strategies, subjects, schemas.
    assert_eq!(topology.topic("users").map(|t| (t.partitions, t.subject_strategy)), Some((6, SubjectStrategy::Record)));
    assert_eq!(topology.topic("pings").map(|t| (t.partitions, t.subject_strategy)), Some((3, SubjectStrategy::Topic)));
    assert_eq!(topology.subject("user.registered"), Some("sluice.users.UserRegistered"));
    assert_eq!(topology.subject("pings.ping"), Some("pings-value"));
    assert!(topology.topic("legacy").is_none() && topology.topic("_schemas").is_none());
    let analytics = topology.projection("analytics").expect("analytics projection");
    assert_eq!(analytics.sources, ["pings", "users"]);
    let SinkConfig::ClickHouse { clickhouse } = &analytics.sink else { panic!("clickhouse sink") };
    let tables: Vec<&str> = clickhouse.tables.keys().map(String::as_str).collect();
    assert_eq!(tables, ["pings_ping", "user_registered", "users_user_deleted"]);
    let columns: Vec<&str> = clickhouse.tables["user_registered"].resolved.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["email", "plan", "seats"]);

    // Nothing read is dropped silently.
    let text = &out.topology;
    let said = flat(text);
    for expected in [
        "not a sluice event: legacy-value: a record without sluice's envelope fields",
        "not a sluice event: pings-key: the schema of topic pings's record keys",
        "sluice.users.UserFrozen: found on no topic: none of the latest 200 records of each partition of the 3 topics",
        "legacy: its subject legacy-value is not a sluice event schema",
        "Topics not considered: 2 internal (see --include-internal).",
        "producers must put exactly \"users.user_deleted\" in `event_type`",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(text.contains("# [events.\"users.user_frozen\"]\n# topic = \"<topic>\""), "{text}");
    let skipped: Vec<&str> = out.skipped.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(skipped, ["legacy-value", "pings-key", "sluice.users.UserFrozen"]);
    assert_eq!(out.unused_topics.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["legacy"]);

    // Schemas: pretty-printed, one per event type, the unbound one aside.
    let paths: Vec<&str> = out.schemas.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "schemas/pings/pings.ping.avsc",
            "schemas/unbound/users.user_frozen.avsc",
            "schemas/users/user.registered.avsc",
            "schemas/users/users.user_deleted.avsc",
        ]
    );
    let registered = topology.event("user.registered").expect("event");
    assert!(registered.schema_text.starts_with("{\n  \"type\": \"record\",\n"), "{}", registered.schema_text);
    assert_eq!(registered.record_name, "sluice.users.UserRegistered");
}

#[test]
fn written_to_disk_it_loads_like_topology_check_loads_it() {
    for (name, inv) in [("shop", shop()), ("renamed", renamed_columns()), ("empty", inventory(vec![], vec![]))] {
        let dir = temp_dir(name);
        let out = generate(&inv, &Filter::default());
        for s in &out.schemas {
            let path = dir.join(&s.path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("schema dir");
            std::fs::write(path, &s.text).expect("schema");
        }
        let path = dir.join("topology.toml");
        std::fs::write(&path, &out.topology).expect("topology");
        if let Err(e) = Topology::load(&path) {
            panic!("{name}: {e}\n{}", out.topology);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_output_is_deterministic() {
    let mut reversed = shop();
    reversed.subjects.reverse();
    reversed.topics.reverse();
    assert_eq!(generate(&shop(), &Filter::default()), generate(&reversed, &Filter::default()));
}

#[test]
fn filters_restrict_subjects_and_topics() {
    let filter = Filter {
        subject_prefixes: vec!["sluice.users.".into()],
        topic_prefixes: vec!["us".into()],
        ..Filter::default()
    };
    let (out, _) = generated(&shop(), &filter);
    let types: Vec<&str> = out.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["user.registered", "users.user_deleted"]);
    assert!(
        flat(&out.topology)
            .contains("Topics not considered: 1 internal (see --include-internal), 3 not matching --topics."),
        "{}",
        out.topology
    );
    assert!(!out.topology.contains("legacy-value"));

    // Internal topics, when asked for, are considered like any other.
    let all = Filter { include_internal: true, ..Filter::default() };
    let (out, _) = generated(&shop(), &all);
    assert!(out.unused_topics.iter().any(|(t, _)| t == "_schemas"));
    assert!(!out.topology.contains("Topics not considered"));
}

#[test]
fn internal_topics() {
    for internal in [
        "__consumer_offsets",
        "_schemas",
        "_connect-offsets",
        "user_state.dlq",
        "connect-configs",
        "connect-offsets",
        "connect-status",
        "docker-connect-status",
        "app-store-changelog",
        "app-agg-repartition",
    ] {
        assert!(is_internal_topic(internal), "{internal}");
    }
    for domain in ["users", "orders.dlq.archive", "reconnect-offsets", "connect-configs-v2", "legacy.public.users"] {
        assert!(!is_internal_topic(domain), "{domain}");
    }
}

#[test]
fn an_invalid_default_is_replaced_by_a_derived_name() {
    let schema = event_schema("acme.billing.InvoicePaid", Some("InvoicePaid"), "");
    let inv = inventory(vec![subject("invoices-value", 1, &schema)], vec![topic("invoices", 1, &[])]);
    let (out, _) = generated(&inv, &Filter::default());
    assert_eq!(out.events[0].event_type, "billing.invoice_paid");
    assert_eq!(out.events[0].naming, Naming::Derived);
    assert!(flat(&out.topology).contains("\"InvoicePaid\", is not a valid event type"), "{}", out.topology);
}

#[test]
fn two_subjects_of_one_event_type_keep_the_first() {
    // The same event type on two topics, each named by topic: one is kept, the other listed.
    let a = event_schema("acme.Placed", Some("order.placed"), "");
    let b = event_schema("acme.v2.Placed", Some("order.placed"), "");
    let inv = inventory(
        vec![subject("orders-value", 1, &a), subject("orders_v2-value", 2, &b)],
        vec![topic("orders", 1, &[]), topic("orders_v2", 1, &[])],
    );
    let (out, _) = generated(&inv, &Filter::default());
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].subject, "orders-value");
    let said = flat(&out.topology);
    assert!(
        said.contains("orders_v2-value: event type order.placed (the default of its `event_type` field) is already"),
        "{said}"
    );
    assert!(said.contains("orders_v2: its subject orders_v2-value stands for an event type written"), "{said}");

    // Derived names that collide take the whole namespace.
    let a = event_schema("a.shop.Placed", None, "");
    let b = event_schema("b.shop.Placed", None, "");
    let inv = inventory(
        vec![subject("a.shop.Placed", 1, &a), subject("b.shop.Placed", 2, &b)],
        vec![topic("orders", 3, &[(1, 5), (2, 5)])],
    );
    let (out, _) = generated(&inv, &Filter::default());
    let types: Vec<&str> = out.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["b.shop.placed", "shop.placed"]);
}

#[test]
fn one_schema_id_under_two_subjects_binds_by_topic_name() {
    // Apicurio gives one schema one id under every subject: the records on `users` are explained
    // by `users-value`, so the record-named copy is not evidence of record naming.
    let schema = event_schema("sluice.users.UserRegistered", Some("user.registered"), "");
    let inv = inventory(
        vec![subject("users-value", 7, &schema), subject("sluice.users.UserRegistered", 7, &schema)],
        vec![topic("users", 3, &[(7, 20)])],
    );
    let (out, topology) = generated(&inv, &Filter::default());
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].subject, "users-value");
    assert_eq!(topology.topic("users").map(|t| t.subject_strategy), Some(SubjectStrategy::Topic));
    assert!(flat(&out.topology).contains("is found on users only as the topic's own `<topic>-value` subject"));
}

#[test]
fn a_topic_named_subject_on_a_record_named_topic() {
    let placed = event_schema("shop.OrderPlaced", Some("order.placed"), "");
    let paid = event_schema("shop.OrderPaid", Some("order.paid"), "");
    let old_paid = event_schema("shop.OrderPaid", None, "");
    let inv = inventory(
        vec![subject("orders-value", 1, &placed), subject("shop.OrderPaid", 2, &paid)],
        vec![topic("orders", 3, &[(1, 5), (2, 5)])],
    );
    let (out, topology) = generated(&inv, &Filter::default());
    assert_eq!(out.events.len(), 2);
    assert_eq!(topology.topic("orders").map(|t| t.subject_strategy), Some(SubjectStrategy::Record));
    assert_eq!(topology.subject("order.placed"), Some("shop.OrderPlaced"));
    assert!(flat(&out.topology).contains("registered as orders-value; the subjects of orders are named by record"));

    // …unless another subject of that topic has its record: then it is that one's old subject.
    let inv = inventory(
        vec![subject("orders-value", 1, &old_paid), subject("shop.OrderPaid", 2, &paid)],
        vec![topic("orders", 3, &[(1, 5), (2, 5)])],
    );
    let (out, _) = generated(&inv, &Filter::default());
    assert_eq!(out.events.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), ["shop.OrderPaid"]);
    assert!(flat(&out.topology).contains("orders-value: the same record (shop.OrderPaid) as subject shop.OrderPaid"));
}

#[test]
fn earlier_versions_and_several_topics() {
    let schema = event_schema("shop.OrderPlaced", Some("order.placed"), "");
    let mut placed = subject("shop.OrderPlaced", 9, &schema);
    placed.version = 3;
    placed.earlier_ids = vec![4, 5];
    let inv = inventory(
        vec![placed],
        vec![topic("orders", 3, &[(4, 10), (5, 10)]), topic("orders_eu", 3, &[(9, 3)]), topic("other", 1, &[(99, 1)])],
    );
    let (out, _) = generated(&inv, &Filter::default());
    assert_eq!(out.events[0].topic, "orders");
    let said = flat(&out.topology);
    assert!(said.contains("its records were also found on orders_eu"), "{said}");
    assert!(said.contains("from subject shop.OrderPlaced, version 3, schema id 9"), "{said}");
    assert!(
        said.contains("other: no subject other-value; its latest records carry schema ids of no subject read (99;")
    );
    assert!(
        said.contains(
            "orders_eu: no subject orders_eu-value; its latest records carry the schemas of shop.OrderPlaced"
        )
    );
}

#[test]
fn subjects_named_neither_way_and_missing_topics() {
    let schema = event_schema("shop.OrderPlaced", None, "");
    let inv = inventory(
        vec![subject("orders-shop.OrderPlaced", 1, &schema), subject("gone-value", 2, &schema)],
        vec![topic("orders", 1, &[(1, 1)])],
    );
    let (out, _) = generated(&inv, &Filter::default());
    assert!(out.events.is_empty());
    let said = flat(&out.topology);
    assert!(said.contains("named neither `<topic>-value` nor after its record (shop.OrderPlaced)"), "{said}");
    assert!(said.contains("gone-value: there is no topic gone on the cluster"), "{said}");
    assert!(said.contains("no projection is written"), "{said}");
}

fn renamed_columns() -> Inventory {
    let schema = event_schema(
        "acme.Moved",
        Some("parcel.moved"),
        r#"{"name": "topic", "type": "string"}, {"name": "offset", "type": "long"},
           {"name": "a_b", "type": "int"}, {"name": "a", "type": {"type": "record", "name": "A", "fields": [{"name": "b", "type": "int"}]}}"#,
    );
    inventory(vec![subject("parcels-value", 1, &schema)], vec![topic("parcels", 1, &[])])
}

#[test]
fn payload_fields_named_like_envelope_columns_are_renamed() {
    let (out, topology) = generated(&renamed_columns(), &Filter::default());
    let analytics = topology.projection("analytics").expect("analytics");
    let SinkConfig::ClickHouse { clickhouse } = &analytics.sink else { panic!("clickhouse sink") };
    let columns: Vec<(&str, String)> =
        clickhouse.tables["parcel_moved"].resolved.iter().map(|c| (c.name.as_str(), c.path.to_string())).collect();
    assert_eq!(
        columns,
        [
            ("a_b", "a_b".into()),
            ("a_b_field", "a.b".into()),
            ("offset_field", "offset".into()),
            ("topic_field", "topic".into())
        ]
    );
    assert!(flat(&out.topology).contains("`topic` as `topic_field`"), "{}", out.topology);
}

#[test]
fn topics_as_the_cluster_has_them() {
    let schema = event_schema("acme.Moved", Some("parcel.moved"), "");
    let mut t = topic("legacy.public.parcels", 12, &[]);
    (t.replication_factor, t.min_insync_replicas) = (3, Some(1));
    t.cleanup_policy = Some("delete,compact".into());
    t.retention_ms = Some(604_800_000);
    let inv = inventory(vec![subject("legacy.public.parcels-value", 1, &schema)], vec![t]);
    let (out, topology) = generated(&inv, &Filter::default());
    assert!(out.topology.contains("[topics.\"legacy.public.parcels\"]\npartitions = 12\nreplication_factor = 3\nmin_insync_replicas = 1\ncleanup_policy = \"compact,delete\"\nretention = \"7d\"\n"), "{}", out.topology);
    assert_eq!(topology.topic("legacy.public.parcels").map(|t| t.replication_factor), Some(3));

    let mut inv = inv;
    inv.topics[0].retention_ms = Some(-1);
    inv.topics[0].cleanup_policy = Some("compact".into());
    inv.topics[0].min_insync_replicas = Some(2); // the default for 3 replicas: left out
    let (out, _) = generated(&inv, &Filter::default());
    assert!(out.topology.contains("replication_factor = 3\ncleanup_policy"), "{}", out.topology);
    assert!(out.topology.contains("cleanup_policy = \"compact\"\nretention = \"forever\"\n"), "{}", out.topology);
}

#[test]
fn connections_and_registry() {
    let mut inv = shop();
    inv.registry_url = "https://user:secret@registry.example.com/apis/ccompat/v7".into();
    inv.kafka_brokers = "SASL_SSL://broker".into();
    inv.compatibility = Some("FULL_TRANSITIVE".into());
    let (out, topology) = generated(&inv, &Filter::default());
    assert!(!out.topology.contains("secret"), "{}", out.topology);
    assert!(out.topology.contains("schema_registry_url: not written"));
    assert!(out.topology.contains("kafka_brokers: not written"));
    assert_eq!(topology.compatibility().as_str(), "FULL_TRANSITIVE");

    let (out, topology) = generated(&shop(), &Filter::default());
    assert!(out.topology.contains("[connections]\nkafka_brokers = \"127.0.0.1:19092\"\nschema_registry_url = \"http://127.0.0.1:18081/apis/ccompat/v7\"\n# couchbase_connstr"));
    assert_eq!(topology.connections().kafka_brokers.as_deref(), Some("127.0.0.1:19092"));
    let mut unknown = shop();
    unknown.compatibility = None;
    assert!(flat(&generated(&unknown, &Filter::default()).0.topology).contains("BACKWARD is sluice's default"));
}

#[test]
fn the_level_most_event_subjects_have() {
    let mut inv = shop();
    inv.compatibility = Some("NONE".into());
    for s in &mut inv.subjects {
        if s.subject.starts_with("sluice.users.") {
            s.compatibility = Some("FULL".into());
        }
    }
    let (out, topology) = generated(&inv, &Filter::default());
    assert_eq!(topology.compatibility().as_str(), "FULL");
    let said = flat(&out.topology);
    assert!(said.contains("which `sluice schemas register` would change to FULL: pings-value (NONE)."), "{said}");
}

#[test]
fn starting_points_are_comments_with_the_first_topics_names() {
    let (out, _) = generated(&shop(), &Filter::default());
    let text = &out.topology;
    let start = text.find("# Starting points").expect("starting points");
    let end = text[start..].find("\n\n").map_or(text.len(), |n| start + n);
    let block = &text[start..end];
    assert!(block.lines().all(|l| l.starts_with('#')), "{block}");
    // The first topic is `pings`; its entity `pings`.
    for expected in [
        "# [projections.pings_state]\n# sources = [\"pings\"]\n# sink = \"couchbase\"",
        "# document_id = \"pings::{aggregate_id}\"",
        "# [projections.analytics.clickhouse.state.pings_current]",
        "# key_column = \"pings_id\"               # the column holding the aggregate_id (default \"aggregate_id\")",
        "# events = [\"pings.ping\"]               # event types that set columns",
        "# creates = [\"pings.ping\"]              # make the entity live (is_deleted = 0)",
        "# [projections.analytics.clickhouse.state.pings_current.columns]",
        "# latency_ms = \"latency_ms\"",
        "# [projections.analytics.clickhouse.rollups.pings_daily]",
        "# from = \"pings_ping\"",
        "# bucket = \"day\"                        # minute | hour | day | month",
        "# time = \"occurred_at\"                  # or a timestamp/date column of the table",
        "# [projections.analytics.clickhouse.rollups.pings_daily.measures]",
        "# events = \"count()\"",
        "# ping = \"countIf(pings.ping)\"",
        "# latency_ms_sum = \"sum(latency_ms)\"    # also min, max, avg, uniq, uniqExact",
    ] {
        assert!(block.contains(expected), "missing {expected:?} in\n{block}");
    }
}

#[test]
fn outside_text_never_leaves_its_comment() {
    let ping = event_schema("x.Ping", Some("x.ping"), "");
    let inv = inventory(
        vec![
            subject("evil\n[topics.injected]\npartitions = 1\nreplication_factor = 1\n-value", 1, "not json\n[x]"),
            subject("pings-value", 2, &ping),
        ],
        vec![topic("pings", 1, &[])],
    );
    let (out, topology) = generated(&inv, &Filter::default());
    assert!(topology.topic("injected").is_none(), "{}", out.topology);
}

/// Names of random payload fields: some clash with envelope columns, two flatten alike.
fn field_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["email", "topic", "offset", "amount", "a_b", "a", "ingested_at", "count", "kind"])
}

/// Types of random payload fields.
fn field_type() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        r#""string""#,
        r#""long""#,
        r#"["null", "double"]"#,
        r#"{"type": "array", "items": "string"}"#,
        r#"{"type": "map", "values": "long"}"#,
        r#"{"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}"#,
        r#"{"type": "record", "name": "Nested", "fields": [{"name": "b", "type": "int"}]}"#,
    ])
}

prop_compose! {
    fn random_subject(id: u32)(
        namespace in prop::sample::select(vec!["", "acme", "acme.shop", "Acme.Billing", "x1.y_2"]),
        name in prop::sample::select(vec!["OrderPlaced", "Ping", "HTTPCall", "order_paid", "Placed"]),
        default in prop::option::of(prop::sample::select(vec!["order.placed", "ping", "Order.Placed", "a.b.c"])),
        fields in prop::collection::btree_map(field_name(), field_type(), 0..4),
        naming in 0..4u8,
        topic in prop::sample::select(vec!["orders", "pings", "legacy.public.t", "_internal"]),
        event in prop::bool::weighted(0.85),
        earlier in prop::collection::vec(0u32..8, 0..2),
        level in prop::option::of(prop::sample::select(vec!["BACKWARD", "FULL", "NONE", "weird"])),
    ) -> RegistrySubject {
        let full = if namespace.is_empty() { name.to_owned() } else { format!("{namespace}.{name}") };
        // A nested record type is named once per schema: later uses would redefine it.
        let payload: Vec<String> = fields
            .iter()
            .map(|(n, t)| format!(r#"{{"name": "{n}", "type": {}}}"#, t.replace("\"Nested\"", &format!("\"Nested_{n}\""))))
            .collect();
        let schema = if event {
            event_schema(&full, default, &payload.join(", "))
        } else {
            r#"{"type": "record", "name": "Row", "fields": [{"name": "id", "type": "string"}]}"#.to_owned()
        };
        let subject = match naming {
            0 => format!("{topic}-value"),
            1 => full,
            2 => format!("{topic}-key"),
            _ => format!("{topic}-{full}"),
        };
        let compatibility = level.map(str::to_owned);
        RegistrySubject { subject, version: 1 + earlier.len() as u32, id, schema, earlier_ids: earlier, compatibility }
    }
}

fn random_inventory() -> impl Strategy<Value = Inventory> {
    let subjects = (0u32..6).prop_flat_map(|n| (0..n).map(random_subject).collect::<Vec<_>>());
    let seen = prop::collection::vec((0u32..6, 0usize..4, 1u64..50), 0..8);
    (subjects, seen).prop_map(|(subjects, seen)| {
        let names = ["orders", "pings", "legacy.public.t", "_internal"];
        let mut topics: Vec<KafkaTopic> = names.iter().map(|n| topic(n, 3, &[])).collect();
        for (id, t, n) in seen {
            if let Some(sample) = topics[t].sample.as_mut() {
                *sample.schema_ids.entry(id).or_default() += n;
                sample.records += n;
                sample.unframed += n % 2;
                sample.partial |= n % 7 == 0;
            }
        }
        inventory(subjects, topics)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the registry and the cluster hold, the output passes `topology check`.
    #[test]
    fn any_inventory_gives_a_valid_topology(inv in random_inventory(), internal in any::<bool>()) {
        let filter = Filter { include_internal: internal, ..Filter::default() };
        let out = generate(&inv, &filter);
        if let Err(report) = out.check(Path::new("/init")) {
            prop_assert!(false, "invalid:\n{report}\n{}", out.topology);
        }
        // Every subject considered is an event type or is listed with its reason.
        prop_assert_eq!(out.events.len() + out.skipped.len(), {
            let mut names: Vec<&str> = inv.subjects.iter().map(|s| s.subject.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            names.len()
        });
    }
}
