//! Plans of `topics apply` against cluster states made up here (no Kafka).

use std::path::Path;

use super::*;

const TOPOLOGY: &str = r#"
[topics.orders]
partitions = 6
replication_factor = 1
retention = "7d"

[topics.forever]
partitions = 2
replication_factor = 1
cleanup_policy = "compact"
retention = "forever"

[events."user.registered"]
topic = "orders"
schema = "schemas/users/registered.avsc"
"#;

fn topology() -> Topology {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Topology::from_parts(TOPOLOGY, &repo.join("topology.toml"), |p| std::fs::read_to_string(p))
        .unwrap_or_else(|report| panic!("{report}"))
}

fn existing(partitions: usize, rf: usize, configs: &[(&str, &str, bool)]) -> ExistingTopic {
    ExistingTopic {
        partitions,
        replication_factor: rf,
        configs: configs.iter().map(|(k, v, o)| ((*k).to_owned(), (Some((*v).to_owned()), *o))).collect(),
    }
}

#[test]
fn creates_what_is_missing_and_leaves_matching_topics_alone() {
    let t = topology();
    let mut cluster = BTreeMap::new();
    cluster.insert(
        "orders".to_owned(),
        existing(
            6,
            1,
            &[
                ("cleanup.policy", "delete", false),
                ("min.insync.replicas", "1", false),
                ("retention.ms", "604800000", true),
            ],
        ),
    );
    let plans = plan(&t, &cluster);
    let by_name: BTreeMap<&str, &TopicPlan> = plans.iter().map(|p| (p.topic.as_str(), p)).collect();
    assert!(by_name["orders"].is_up_to_date(), "{:?}", by_name["orders"]);
    assert_eq!(by_name["forever"].changes, vec![Change::Create]);
    assert_eq!(
        declared_configs(&by_name["forever"].config),
        vec![
            ("cleanup.policy", "compact".to_owned()),
            ("min.insync.replicas", "1".to_owned()),
            ("retention.ms", "-1".to_owned())
        ]
    );
}

#[test]
fn grows_partitions_alters_configs_and_reports_what_it_cannot_fix() {
    let t = topology();
    let mut cluster = BTreeMap::new();
    cluster.insert(
        "orders".to_owned(),
        existing(
            3,
            1,
            &[("cleanup.policy", "delete", false), ("min.insync.replicas", "1", false), ("retention.ms", "1000", true)],
        ),
    );
    cluster.insert(
        "forever".to_owned(),
        existing(
            4,
            3,
            &[("cleanup.policy", "compact", true), ("min.insync.replicas", "1", false), ("retention.ms", "-1", true)],
        ),
    );
    let plans = plan(&t, &cluster);
    let by_name: BTreeMap<&str, &TopicPlan> = plans.iter().map(|p| (p.topic.as_str(), p)).collect();
    assert_eq!(
        by_name["orders"].changes,
        vec![
            Change::AddPartitions { from: 3, to: 6 },
            Change::SetConfig { key: "retention.ms".into(), from: Some("1000".into()), to: "604800000".into() },
        ]
    );
    assert!(by_name["orders"].drift.is_empty());
    assert!(by_name["forever"].changes.is_empty());
    assert_eq!(
        by_name["forever"].drift,
        vec![Drift::TooManyPartitions { actual: 4, declared: 2 }, Drift::ReplicationFactor { actual: 3, declared: 1 }]
    );
    assert!(by_name["forever"].drift[0].to_string().contains("Kafka cannot remove partitions"));
    assert_eq!(by_name["orders"].changes[1].to_string(), "retention.ms 1000 → 604800000");
}

#[test]
fn a_differing_min_insync_replicas_is_altered_in_place() {
    let t = topology();
    let mut cluster = BTreeMap::new();
    let orders = [("cleanup.policy", "delete", false), ("retention.ms", "604800000", true)];
    // Raised on the broker by hand, and a broker default of 2 under a topology asking 1.
    let raised: Vec<_> = orders.iter().copied().chain([("min.insync.replicas", "2", true)]).collect();
    cluster.insert("orders".to_owned(), existing(6, 1, &raised));
    let forever = [("cleanup.policy", "compact", true), ("retention.ms", "-1", true)];
    let inherited: Vec<_> = forever.iter().copied().chain([("min.insync.replicas", "2", false)]).collect();
    cluster.insert("forever".to_owned(), existing(2, 1, &inherited));
    let plans = plan(&t, &cluster);
    for p in &plans {
        let change = Change::SetConfig { key: "min.insync.replicas".into(), from: Some("2".into()), to: "1".into() };
        assert_eq!(p.changes, vec![change], "{}", p.topic);
        assert!(p.drift.is_empty(), "fixable, so not left as drift: {:?}", p.drift);
        assert_eq!(p.changes[0].to_string(), "min.insync.replicas 2 → 1");
    }
}

#[test]
fn implied_dead_letter_topics_are_planned() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let t = Topology::load(&repo.join("topology.toml")).unwrap_or_else(|e| panic!("{e}"));
    let plans = plan(&t, &BTreeMap::new());
    let dlq = plans.iter().find(|p| p.topic == "user_state.dlq").expect("implied DLQ topic");
    assert_eq!(dlq.changes, vec![Change::Create]);
    assert_eq!(dlq.config.partitions, 1);
    let min_insync = declared_configs(&dlq.config).into_iter().find(|(k, _)| *k == "min.insync.replicas");
    assert_eq!(min_insync, Some(("min.insync.replicas", "1".to_owned())), "set on the DLQ too");
}
