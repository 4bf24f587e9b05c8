//! `sluice topology init` against the real registry and Kafka: a "legacy" setup is made the way a
//! user's would be (a topic whose subjects are named after their records, published through
//! sluice's own producer path; a topic-named subject; a subject that is no sluice event; an event
//! schema published nowhere), then `init` writes a topology from it, which must bind each event
//! type to its topic and schema, list what it left out, and pass `topology check`, `schemas
//! check` and `topics apply --dry-run` unchanged.
//!
//! Everything has fresh names under one prefix, and `init` is restricted to it with `--subjects`
//! and `--topics`: the registry and the cluster are shared with every other test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use apache_avro::Schema;
use serde_json::json;
use sluice_core::topology::{SubjectStrategy, Topology};
use sluice_producers::Registry;
use sluice_producers::admin::topics::TopicAdmin;
use sluice_tests::{connections, unique, within};

mod common;
use common::*;

/// An event schema of record `<namespace>.<name>`, with `payload` fields.
fn event_schema(namespace: &str, name: &str, event_type_default: Option<&str>, payload: serde_json::Value) -> String {
    let mut event_type = json!({"name": "event_type", "type": "string"});
    if let Some(default) = event_type_default {
        event_type["default"] = json!(default);
    }
    let optional = |n: &str| json!({"name": n, "type": ["null", "string"], "default": null});
    let mut fields = vec![
        json!({"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}}),
        event_type,
        json!({"name": "aggregate_id", "type": "string"}),
        json!({"name": "aggregate_version", "type": "long"}),
        json!({"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}),
        json!({"name": "producer", "type": "string"}),
        optional("correlation_id"),
        optional("causation_id"),
        optional("traceparent"),
        optional("tracestate"),
    ];
    fields.extend(payload.as_array().cloned().unwrap_or_default());
    serde_json::to_string(&json!({"type": "record", "name": name, "namespace": namespace, "fields": fields}))
        .expect("schema json")
}

/// The setup a user would have before sluice: its topology (only to publish through sluice's
/// producer path), written to `dir`.
struct Legacy {
    prefix: String,
    accounts: String,
    pings: String,
    seed: PathBuf,
    schemas: Vec<(&'static str, String)>,
}

fn legacy(dir: &Path) -> Legacy {
    let prefix = unique("ti");
    let accounts = format!("{prefix}_accounts");
    let pings = format!("{prefix}_pings");
    let ns = format!("{prefix}.accounts");
    let plan = json!({"type": "enum", "name": "Plan", "symbols": ["FREE", "PRO"]});
    let schemas = vec![
        (
            "opened",
            event_schema(
                &ns,
                "AccountOpened",
                Some("account.opened"),
                json!([{"name": "owner", "type": "string"}, {"name": "plan", "type": plan},
                       {"name": "credit_cents", "type": "long"}]),
            ),
        ),
        (
            "closed",
            event_schema(
                &ns,
                "AccountClosed",
                None,
                json!([{"name": "reason", "type": ["null", "string"], "default": null}]),
            ),
        ),
        ("frozen", event_schema(&ns, "AccountFrozen", None, json!([]))),
        (
            "ping",
            event_schema(&format!("{prefix}.pings"), "Ping", None, json!([{"name": "latency_ms", "type": "long"}])),
        ),
    ];
    std::fs::create_dir_all(dir.join("schemas")).expect("schemas dir");
    for (name, text) in &schemas {
        std::fs::write(dir.join(format!("schemas/{name}.avsc")), text).expect("schema");
    }
    let seed = dir.join("seed.toml");
    let text = format!(
        r#"
[topics.{accounts}]
partitions = 3
replication_factor = 1
retention = "1d"
subject_strategy = "record"

[topics.{pings}]
partitions = 1
replication_factor = 1
retention = "1d"

[events."account.opened"]
topic = "{accounts}"
schema = "schemas/opened.avsc"

[events."accounts.account_closed"]
topic = "{accounts}"
schema = "schemas/closed.avsc"

[events."accounts.account_frozen"]
topic = "{accounts}"
schema = "schemas/frozen.avsc"

[events."pings.ping"]
topic = "{pings}"
schema = "schemas/ping.avsc"
"#
    );
    std::fs::write(&seed, text).expect("seed topology");
    Legacy { prefix, accounts, pings, seed, schemas }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn init_writes_a_topology_of_what_exists() {
    let dir = std::env::temp_dir().join(unique("sluice-init-test"));
    let l = legacy(&dir);
    let c = connections();

    // The user's setup: topics, schemas (record-named on accounts, topic-named on pings), events
    // published through sluice's producer path, and two subjects nothing publishes.
    run_ok(sluice(&l.seed).args(["topics", "apply"]));
    run_ok(sluice(&l.seed).args(["schemas", "register"]));
    let registry = Registry::new(&c.registry, Duration::from_secs(15)).expect("registry client");
    let not_an_event = r#"{"type": "record", "name": "Row", "fields": [{"name": "id", "type": "string"}]}"#;
    let legacy_subject = format!("{}_legacy-value", l.prefix);
    within("register", 30, registry.register(&legacy_subject, not_an_event, "Row")).await.expect("register");
    let event = |t: &str, id: &str, v: i64, payload: serde_json::Value| {
        let mut e = json!({"event_type": t, "aggregate_id": id, "aggregate_version": v});
        if let (Some(e), Some(p)) = (e.as_object_mut(), payload.as_object()) {
            e.extend(p.clone());
        }
        e
    };
    let events = [
        event("account.opened", "a-1", 1, json!({"owner": "ann", "plan": "FREE", "credit_cents": 0})),
        event("account.opened", "a-2", 1, json!({"owner": "bob", "plan": "PRO", "credit_cents": 500})),
        event("account.opened", "a-3", 1, json!({"owner": "cyd", "plan": "PRO", "credit_cents": 90})),
        event("accounts.account_closed", "a-2", 2, json!({"reason": "moved"})),
        event("pings.ping", "p-1", 1, json!({"latency_ms": 12})),
    ];
    let lines: Vec<&serde_json::Value> = events.iter().collect();
    run_ok(sluice(&l.seed).args(["publish", "--file"]).arg(write_jsonl(&dir, "events.jsonl", &lines)));

    // init, restricted to this test's names.
    let out_dir = dir.join("init");
    let init = |extra: &[&str]| {
        let mut cmd = sluice(&l.seed);
        cmd.args(["topology", "init", "--out"]).arg(&out_dir);
        cmd.args(["--subjects", &l.prefix, "--topics", &l.prefix]).args(extra);
        cmd
    };
    let printed = stdout(&run_ok(&mut init(&[])));
    let file = out_dir.join("topology.toml");
    assert!(printed.contains(&format!("next: sluice topology check {}", file.display())), "{printed}");

    // Each event type on its topic, with its subject and the schema as registered.
    let topology = Topology::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let bound = |event_type: &str| {
        let e = topology.event(event_type).unwrap_or_else(|| panic!("no event type {event_type}:\n{printed}"));
        (e.topic.clone(), e.subject.clone(), e.schema.canonical_form())
    };
    let canonical = |name: &str| {
        let text = &l.schemas.iter().find(|(n, _)| *n == name).expect("schema").1;
        Schema::parse_str(text).expect("valid schema").canonical_form()
    };
    let ns = format!("{}.accounts", l.prefix);
    assert_eq!(
        bound("account.opened"),
        (l.accounts.clone(), format!("{ns}.AccountOpened"), canonical("opened")),
        "the schema's event_type default names it"
    );
    assert_eq!(
        bound("accounts.account_closed"),
        (l.accounts.clone(), format!("{ns}.AccountClosed"), canonical("closed")),
        "named after its record"
    );
    assert_eq!(bound("pings.ping"), (l.pings.clone(), format!("{}-value", l.pings), canonical("ping")));
    assert_eq!(topology.events().count(), 3);
    let topic = |name: &str| topology.topic(name).map(|t| (t.partitions, t.subject_strategy));
    assert_eq!(topic(&l.accounts), Some((3, SubjectStrategy::Record)));
    assert_eq!(topic(&l.pings), Some((1, SubjectStrategy::Topic)));
    let analytics = topology.projection("analytics").expect("analytics projection");
    assert_eq!(analytics.sources, [l.accounts.clone(), l.pings.clone()]);

    // What is not an event type is said, in the file and on stdout.
    let text = std::fs::read_to_string(&file).expect("topology text");
    assert!(text.contains(&format!("# not a sluice event: {legacy_subject}: ")), "{text}");
    assert!(text.contains("# [events.\"accounts.account_frozen\"]"), "{text}");
    assert!(text.contains(&format!("# {ns}.AccountFrozen: found on no topic")), "{text}");
    assert!(printed.contains(&legacy_subject) && printed.contains(&format!("{ns}.AccountFrozen")), "{printed}");

    // As it is, the topology passes the check, matches the registry and the cluster.
    let checked = stdout(&run_ok(sluice(&l.seed).args(["topology", "check"]).arg(&file)));
    assert!(checked.starts_with(&format!("{}: ok — ", file.display())), "{checked}");
    let checked = stdout(&run_ok(sluice(&l.seed).args(["topology", "check", "--file"]).arg(&file)));
    assert!(checked.starts_with(&format!("{}: ok — ", file.display())), "the older spelling: {checked}");
    let schemas = stdout(&run_ok(sluice(&file).args(["schemas", "check"])));
    assert_eq!(schemas.matches(" identical").count(), 3, "{schemas}");
    let topics = stdout(&run_ok(sluice(&file).args(["topics", "apply", "--dry-run"])));
    for name in [&l.accounts, &l.pings] {
        assert!(topics.lines().any(|line| line.starts_with(name.as_str()) && line.ends_with("up to date")), "{topics}");
    }

    // An existing topology.toml is kept unless --force.
    let again = init(&[]).output().expect("run init");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists: pass --force"), "{again:?}");
    run_ok(&mut init(&["--force"]));

    let admin = TopicAdmin::new(&c.kafka, Duration::from_secs(30)).expect("admin");
    let _ = within("delete topics", 60, admin.delete(&[&l.accounts, &l.pings])).await;
    let _ = std::fs::remove_dir_all(&dir);
}
