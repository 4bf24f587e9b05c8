//! `sluice topics apply` and `sluice schemas register|check`, as the library calls the CLI
//! prints, against the real Kafka and registry: applying twice changes nothing the second time,
//! drift is fixed or reported, registering twice gives the same ids, and an incompatible schema
//! change is caught with the field named.
//!
//! Every test declares its own topics, dead-letter topic and (with `subject_strategy =
//! "topic"`) subjects, so runs never collide.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use sluice_core::topology::Topology;
use sluice_producers::admin::schemas::{self, Direction, RegisterError, RegistrationStatus, Verdict};
use sluice_producers::admin::topics::{Change, Drift, TopicAdmin};
use sluice_producers::{Registry, RegistryError};
use sluice_tests::{connections, unique, within};

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Validates `text` as a topology at the repository root; `edit` may change a schema's text.
fn topology_with(text: &str, edit: impl Fn(&Path, String) -> String) -> Topology {
    Topology::from_parts(text, &repo().join("topology.toml"), |p| std::fs::read_to_string(p).map(|s| edit(p, s)))
        .unwrap_or_else(|report| panic!("{report}"))
}

fn admin() -> TopicAdmin {
    TopicAdmin::new(&connections().kafka, Duration::from_secs(30)).expect("admin client")
}

fn registry() -> Registry {
    Registry::new(&connections().registry, Duration::from_secs(15)).expect("registry client")
}

/// Creates a topic behind the topology's back, with its own settings.
async fn create_raw(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let raw: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", connections().kafka.brokers).create().expect("admin client");
    let topic =
        configs.iter().fold(NewTopic::new(name, partitions, TopicReplication::Fixed(1)), |t, (k, v)| t.set(k, v));
    let results = within("create topic", 30, raw.create_topics([&topic], &AdminOptions::new())).await.expect("create");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn topics_apply_creates_everything_then_is_a_no_op() {
    let (events, sessions, projection) = (unique("admin_events"), unique("admin_sessions"), unique("admin_proj"));
    let text = format!(
        r#"
[topics.{events}]
partitions = 3
replication_factor = 1
retention = "forever"

[topics.{sessions}]
partitions = 2
replication_factor = 1
cleanup_policy = "compact,delete"
retention = "7d"

[events."user.registered"]
topic = "{events}"
schema = "schemas/users/registered.avsc"

[projections.{projection}]
sources = ["{events}"]
sink = "couchbase"

[projections.{projection}.couchbase]
document_id = "user::{{aggregate_id}}"
"#
    );
    let topology = topology_with(&text, |_, s| s);
    let dlq = format!("{projection}.dlq");
    let admin = admin();

    let plans = within("plan", 60, admin.plan(&topology)).await.expect("plan");
    let names: Vec<&str> = plans.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(names.len(), 3, "the implied dead-letter topic is planned too: {names:?}");
    assert!(plans.iter().all(|p| p.changes == vec![Change::Create]), "{plans:?}");

    let outcomes = within("apply", 60, admin.apply(plans)).await.expect("apply");
    assert!(outcomes.iter().all(|o| o.failures.is_empty()), "{outcomes:?}");

    let again = within("plan again", 60, admin.plan(&topology)).await.expect("plan");
    assert!(again.iter().all(|p| p.is_up_to_date()), "a second apply has nothing to do: {again:?}");

    let cluster = within("describe", 60, admin.describe(&[&events, &sessions, &dlq])).await.expect("describe");
    let config = |topic: &str, key: &str| cluster[topic].configs[key].0.clone();
    assert_eq!((cluster[&events].partitions, config(&events, "retention.ms").as_deref()), (3, Some("-1")));
    assert_eq!(config(&sessions, "cleanup.policy").as_deref(), Some("compact,delete"));
    assert_eq!(config(&sessions, "retention.ms").as_deref(), Some("604800000"));
    assert_eq!(cluster[&dlq].partitions, 1);
    assert_eq!(config(&dlq, "retention.ms").as_deref(), Some("2419200000"), "dead letters are kept 4 weeks");
}

#[tokio::test]
async fn topics_apply_fixes_what_it_can_and_reports_the_rest() {
    let (grow, shrink) = (unique("admin_grow"), unique("admin_shrink"));
    // Made by hand: too few partitions, a short retention and an unrelated override; and one
    // with more partitions than declared.
    create_raw(&grow, 2, &[("retention.ms", "1000"), ("segment.ms", "3600000")]).await;
    create_raw(&shrink, 5, &[]).await;
    let text = format!(
        "[topics.{grow}]\npartitions = 4\nreplication_factor = 1\nretention = \"7d\"\n\n\
         [topics.{shrink}]\npartitions = 3\nreplication_factor = 1\n\n\
         [events.\"user.registered\"]\ntopic = \"{grow}\"\nschema = \"schemas/users/registered.avsc\"\n"
    );
    let topology = topology_with(&text, |_, s| s);
    let admin = admin();

    let plans = within("plan", 60, admin.plan(&topology)).await.expect("plan");
    let by_name: BTreeMap<&str, _> = plans.iter().map(|p| (p.topic.as_str(), p)).collect();
    assert_eq!(
        by_name[grow.as_str()].changes,
        vec![
            Change::AddPartitions { from: 2, to: 4 },
            Change::SetConfig { key: "retention.ms".into(), from: Some("1000".into()), to: "604800000".into() },
        ]
    );
    assert!(by_name[shrink.as_str()].changes.is_empty());
    assert_eq!(by_name[shrink.as_str()].drift, vec![Drift::TooManyPartitions { actual: 5, declared: 3 }]);

    let outcomes = within("apply", 60, admin.apply(plans)).await.expect("apply");
    assert!(outcomes.iter().all(|o| o.failures.is_empty()), "{outcomes:?}");

    let cluster = within("describe", 60, admin.describe(&[&grow, &shrink])).await.expect("describe");
    let grown = &cluster[&grow];
    assert_eq!(grown.partitions, 4);
    assert_eq!(grown.configs["retention.ms"].0.as_deref(), Some("604800000"));
    assert_eq!(
        grown.configs["segment.ms"],
        (Some("3600000".to_owned()), true),
        "the non-incremental alter kept the topic's other override"
    );
    assert_eq!(cluster[&shrink].partitions, 5, "never shrunk");

    let again = within("plan again", 60, admin.plan(&topology)).await.expect("plan");
    let by_name: BTreeMap<&str, _> = again.iter().map(|p| (p.topic.as_str(), p)).collect();
    assert!(by_name[grow.as_str()].is_up_to_date(), "{again:?}");
    assert_eq!(by_name[shrink.as_str()].drift.len(), 1, "still reported, still untouched");
}

/// Sets topic configs behind the topology's back (non-incremental: `configs` are all the topic's
/// overrides afterwards).
async fn alter_raw(name: &str, configs: &[(&str, &str)]) {
    let raw: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", connections().kafka.brokers).create().expect("admin client");
    let alter = configs.iter().fold(AlterConfig::new(ResourceSpecifier::Topic(name)), |a, (k, v)| a.set(k, v));
    let results = within("alter configs", 30, raw.alter_configs([&alter], &AdminOptions::new())).await.expect("alter");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn min_insync_replicas_is_set_on_create_and_restored_when_changed_on_the_broker() {
    let (topic, projection) = (unique("admin_isr"), unique("admin_isr_proj"));
    // The single dev broker takes one replica only, so the default is 1; the broker accepts a
    // larger `min.insync.replicas` (it only refuses writes then), which is the drift made below.
    let text = format!(
        "[topics.{topic}]\npartitions = 1\nreplication_factor = 1\n\n\
         [events.\"user.registered\"]\ntopic = \"{topic}\"\nschema = \"schemas/users/registered.avsc\"\n\n\
         [projections.{projection}]\nsources = [\"{topic}\"]\nsink = \"couchbase\"\n\n\
         [projections.{projection}.couchbase]\ndocument_id = \"user::{{aggregate_id}}\"\n"
    );
    let topology = topology_with(&text, |_, s| s);
    let dlq = format!("{projection}.dlq");
    let admin = admin();

    let plans = within("plan", 60, admin.plan(&topology)).await.expect("plan");
    let outcomes = within("apply", 60, admin.apply(plans)).await.expect("apply");
    assert!(outcomes.iter().all(|o| o.failures.is_empty()), "{outcomes:?}");
    let cluster = within("describe", 60, admin.describe(&[&topic, &dlq])).await.expect("describe");
    for name in [&topic, &dlq] {
        assert_eq!(
            cluster[name].configs["min.insync.replicas"],
            (Some("1".to_owned()), true),
            "{name}: set on the topic itself at creation"
        );
    }

    // Someone raises it on the broker (keeping the topic's other override).
    alter_raw(&topic, &[("cleanup.policy", "delete"), ("min.insync.replicas", "2")]).await;
    let cluster = within("describe", 60, admin.describe(&[&topic])).await.expect("describe");
    assert_eq!(cluster[&topic].configs["min.insync.replicas"].0.as_deref(), Some("2"));

    let plans = within("plan", 60, admin.plan(&topology)).await.expect("plan");
    let by_name: BTreeMap<&str, _> = plans.iter().map(|p| (p.topic.as_str(), p)).collect();
    let drifted = by_name[topic.as_str()];
    assert_eq!(
        drifted.changes,
        vec![Change::SetConfig { key: "min.insync.replicas".into(), from: Some("2".into()), to: "1".into() }],
        "reported as a change apply makes"
    );
    assert!(drifted.drift.is_empty(), "{:?}", drifted.drift);
    assert!(by_name[dlq.as_str()].is_up_to_date(), "{plans:?}");

    let outcomes = within("apply", 60, admin.apply(plans)).await.expect("apply");
    assert!(outcomes.iter().all(|o| o.failures.is_empty()), "{outcomes:?}");
    let cluster = within("describe", 60, admin.describe(&[&topic])).await.expect("describe");
    assert_eq!(cluster[&topic].configs["min.insync.replicas"], (Some("1".to_owned()), true), "altered in place");
    assert_eq!(cluster[&topic].configs["cleanup.policy"].0.as_deref(), Some("delete"));
    let again = within("plan again", 60, admin.plan(&topology)).await.expect("plan");
    assert!(again.iter().all(|p| p.is_up_to_date()), "{again:?}");
}

/// A topology of two fresh topic-named subjects.
fn schema_topology(purchases: &str, users: &str, edit: impl Fn(&Path, String) -> String) -> Topology {
    let text = format!(
        r#"
[registry]
compatibility = "BACKWARD"

[topics.{purchases}]
partitions = 1
replication_factor = 1

[topics.{users}]
partitions = 1
replication_factor = 1

[events."engagement.purchase_completed"]
topic = "{purchases}"
schema = "schemas/engagement/purchase_completed.avsc"

[events."user.registered"]
topic = "{users}"
schema = "schemas/users/registered.avsc"
"#
    );
    topology_with(&text, edit)
}

/// Adds a field to the purchase schema's record (and leaves the other schemas alone).
fn add_purchase_field(field: &'static str) -> impl Fn(&Path, String) -> String {
    move |path, text| {
        if !path.ends_with("purchase_completed.avsc") {
            return text;
        }
        let mut schema: serde_json::Value = serde_json::from_str(&text).expect("schema JSON");
        schema["fields"].as_array_mut().expect("fields").push(serde_json::from_str(field).expect("field JSON"));
        schema.to_string()
    }
}

#[tokio::test]
async fn schemas_register_twice_gives_the_same_ids() {
    let (purchases, users) = (unique("admin_sr_purchases"), unique("admin_sr_users"));
    let topology = schema_topology(&purchases, &users, |_, s| s);
    let registry = registry();

    let before = within("check", 60, schemas::check(&registry, &topology)).await;
    assert!(before.iter().all(|o| matches!(o.result, Ok(ref c) if c.verdict == Verdict::NewSubject)), "{before:?}");

    let first = within("register", 60, schemas::register(&registry, &topology)).await;
    let second = within("register again", 60, schemas::register(&registry, &topology)).await;
    let ids = |outcomes: &[schemas::Outcome<schemas::Registration, RegisterError>], status| {
        outcomes
            .iter()
            .map(|o| {
                let r = o.result.as_ref().unwrap_or_else(|e| panic!("{}: {e}", o.subject));
                assert_eq!(r.status, status, "{}", o.subject);
                assert_eq!(r.version, 1);
                (o.subject.clone(), r.id)
            })
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(ids(&first, RegistrationStatus::New), ids(&second, RegistrationStatus::Unchanged));
    assert_eq!(first.len(), 2);

    for subject in [format!("{purchases}-value"), format!("{users}-value")] {
        let level = registry.compatibility(&subject).await.expect("config");
        assert_eq!(level.as_deref(), Some("BACKWARD"), "{subject} got the topology's level");
    }
    let after = within("check", 60, schemas::check(&registry, &topology)).await;
    for o in &after {
        let check = o.result.as_ref().expect("checked");
        assert!(matches!(check.verdict, Verdict::Identical { version: 1, .. }), "{o:?}");
        assert_eq!(check.registry_level, None, "the registry's level is the topology's");
    }
}

#[tokio::test]
async fn schemas_check_names_the_field_that_breaks_compatibility() {
    let (purchases, users) = (unique("admin_cc_purchases"), unique("admin_cc_users"));
    let registry = registry();
    let v1 = schema_topology(&purchases, &users, |_, s| s);
    let registered = within("register", 60, schemas::register(&registry, &v1)).await;
    assert!(registered.iter().all(|o| o.result.is_ok()), "{registered:?}");
    let subject = format!("{purchases}-value");

    // A new required field: old events have no value for it.
    let breaking = schema_topology(&purchases, &users, add_purchase_field(r#"{"name": "coupon", "type": "string"}"#));
    let checks = within("check", 60, schemas::check(&registry, &breaking)).await;
    let purchase = checks.iter().find(|o| o.subject == subject).expect("the purchase subject");
    let Ok(schemas::SubjectCheck { verdict: Verdict::Incompatible(why), .. }) = &purchase.result else {
        panic!("expected incompatible: {purchase:?}")
    };
    assert_eq!((why.version, why.direction), (1, Direction::NewCannotReadOld));
    assert_eq!(
        why.to_string(),
        "the new schema cannot read events written with version 1: field \"coupon\" is new and has no default"
    );
    let users_check = checks.iter().find(|o| o.subject != subject).expect("the users subject");
    assert!(matches!(users_check.result, Ok(ref c) if matches!(c.verdict, Verdict::Identical { .. })));

    // Registering it is refused by the registry; the error carries both reasons.
    let refused = within("register", 60, schemas::register(&registry, &breaking)).await;
    let purchase = refused.iter().find(|o| o.subject == subject).expect("the purchase subject");
    let Err(RegisterError::Incompatible { reason, registry: message }) = &purchase.result else {
        panic!("expected a refusal: {purchase:?}")
    };
    assert!(reason.contains("field \"coupon\" is new and has no default"), "{reason}");
    assert!(message.contains("coupon"), "Apicurio names the diff too: {message}");
    assert_eq!(registry.versions(&subject).await.expect("versions"), vec![1], "nothing was registered");

    // With a default it is compatible, and registers as version 2.
    let compatible = schema_topology(
        &purchases,
        &users,
        add_purchase_field(r#"{"name": "coupon", "type": "string", "default": ""}"#),
    );
    let checks = within("check", 60, schemas::check(&registry, &compatible)).await;
    let purchase = checks.iter().find(|o| o.subject == subject).expect("the purchase subject");
    assert!(matches!(purchase.result, Ok(ref c) if c.verdict == Verdict::Compatible { latest: 1 }), "{purchase:?}");
    let registered = within("register", 60, schemas::register(&registry, &compatible)).await;
    let purchase = registered.iter().find(|o| o.subject == subject).expect("the purchase subject");
    assert!(
        matches!(purchase.result, Ok(ref r) if r.version == 2 && r.status == RegistrationStatus::New),
        "{purchase:?}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_a_retriable_error() {
    let registry = Registry::new(
        &sluice_core::connections::RegistryConnection::plain("http://127.0.0.1:9/apis/ccompat/v7"),
        Duration::from_secs(2),
    )
    .expect("client");
    let err = registry.latest("anything").await.expect_err("nothing listens on port 9");
    assert!(matches!(err, RegistryError::Unavailable(_)), "{err:?}");
    assert!(err.is_retriable());
}
