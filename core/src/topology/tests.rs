//! Whole-file tests: the repository's own topology, and broken files with the errors each gives,
//! at their line and column. Schema paths resolve against the repository, so the real `.avsc`
//! files of the default domain are used.

use std::path::{Path, PathBuf};

use super::*;

mod replication;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Validates `text` as if it were `topology.toml` at the root of the repository.
fn check(text: &str) -> Result<Topology, Report> {
    Topology::from_parts(text, Path::new("topology.toml"), |p| std::fs::read_to_string(repo().join(p)))
}

/// The diagnostics of a file that must fail, as `(line, column, message, hint)`.
fn errors(text: &str) -> Vec<(usize, usize, String, Option<String>)> {
    match check(text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(report) => {
            report.diagnostics().iter().map(|d| (d.line, d.column, d.message.clone(), d.hint.clone())).collect()
        }
    }
}

/// The only diagnostic of a file that must fail with exactly one.
fn error(text: &str) -> (usize, usize, String, Option<String>) {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

fn valid(text: &str) -> Topology {
    check(text).unwrap_or_else(|report| panic!("expected a valid topology:\n{report}"))
}

/// A small valid topology the broken files below are variations of.
const BASE: &str = r#"[topics.users]
partitions = 3
replication_factor = 1
subject_strategy = "record"

[topics.sessions]
partitions = 3
replication_factor = 1

[events."user.registered"]
topic = "users"
schema = "schemas/users/registered.avsc"

[events."user.deleted"]
topic = "users"
schema = "schemas/users/deleted.avsc"

[events."session.started"]
topic = "sessions"
schema = "schemas/sessions/started.avsc"

[projections.user_state]
sources = ["users"]
sink = "couchbase"

[projections.user_state.couchbase]
document_id = "user::{aggregate_id}"
erase_on = ["user.deleted"]
"#;

/// `BASE` with one line replaced (the first line equal to `old`).
fn base_with(old: &str, new: &str) -> String {
    assert!(BASE.lines().any(|l| l == old), "no line {old:?} in BASE");
    BASE.replacen(old, new, 1)
}

#[test]
fn the_repository_topology_is_valid() {
    let path = repo().join("topology.toml");
    let topology = match Topology::load(&path) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    assert!(topology.warnings().is_empty(), "{}", topology.warnings());
    assert_eq!(topology.events().count(), 16);
    assert_eq!(topology.compatibility(), Compatibility::Backward);

    let registered = topology.event("user.registered").expect("declared");
    assert_eq!(registered.topic, "users");
    assert_eq!(registered.subject, "sluice.users.UserRegistered");
    assert!(registered.schema_text.contains("\"UserRegistered\""));
    assert_eq!(registered.payload_fields().collect::<Vec<_>>(), ["country", "display_name", "email", "referrer"]);
    assert_eq!(topology.events_on("users").count(), 4);
    assert_eq!(topology.subject("session.ended"), Some("sluice.sessions.SessionEnded"));

    let users = topology.projection("user_state").expect("declared");
    assert_eq!(users.group, "sluice.user_state");
    assert_eq!(
        users.events,
        [
            "legacy.user.changed",
            "legacy.user.deleted",
            "legacy.user.email_verified",
            "legacy.user.signed_up",
            "user.deleted",
            "user.email_changed",
            "user.profile_updated",
            "user.registered"
        ]
    );
    let SinkConfig::Couchbase { couchbase } = &users.sink else { panic!("user_state writes to Couchbase") };
    assert_eq!(couchbase.erase_on, ["user.deleted", "legacy.user.deleted"]);

    let sessions = topology.projection("session_state").expect("declared");
    let SinkConfig::Couchbase { couchbase } = &sessions.sink else { panic!("session_state writes to Couchbase") };
    assert_eq!(couchbase.ttl, Some(HumanDuration::from_millis(30 * 60_000)));
    // Ended sessions stay readable until they expire; a session row deleted in the legacy
    // database goes at once.
    assert_eq!(couchbase.erase_on, ["legacy.session.deleted"]);

    let analytics = topology.projection("analytics").expect("declared");
    assert_eq!(analytics.events.len(), 16, "every event type, the legacy CDC ones included");
    assert_eq!((analytics.batch_size, analytics.linger), (20_000, HumanDuration::from_millis(500)));
    // Couchbase writes overlap (latency-bound KV); ClickHouse inserts go one at a time.
    assert_eq!((users.max_in_flight, sessions.max_in_flight, analytics.max_in_flight), (2, 2, 1));
    assert_eq!(analytics.sink.kind(), SinkKind::ClickHouse);
    let SinkConfig::ClickHouse { clickhouse } = &analytics.sink else { panic!("analytics writes to ClickHouse") };
    // The legacy users land in the same state table: the CDC upsert is the whole row, so it makes
    // the user live like a registration; the CDC delete erases like the GDPR one.
    let changes: Vec<Option<StateChange>> = [
        "user.registered",
        "user.profile_updated",
        "user.deleted",
        "legacy.user.changed",
        "legacy.user.deleted",
        "legacy.user.signed_up",
        "session.started",
    ]
    .iter()
    .map(|t| clickhouse.state["users_current"].change(t))
    .collect();
    use StateChange::{Create, Delete, Update};
    assert_eq!(changes, [Some(Create), Some(Update), Some(Delete), Some(Create), Some(Delete), Some(Create), None]);

    // Dead-letter topics are implied, replicated like their sources.
    assert_eq!(
        topology.dlq_topics().into_iter().collect::<Vec<_>>(),
        ["analytics.dlq", "session_state.dlq", "user_state.dlq"]
    );
    assert_eq!(topology.topic("user_state.dlq").map(|t| t.partitions), Some(1));

    // The legacy database's change data capture, mapped to the legacy.* event types.
    assert_eq!(topology.cdc_sources().count(), 3);
    let (name, users_cdc) = topology.cdc_source_on("legacy.public.users").expect("CDC source of the users table");
    assert_eq!((name, users_cdc.encoding), ("legacy_users", CdcEncoding::Avro));
    let CdcFormat::Debezium(d) = &users_cdc.format else { panic!("the users table is a Debezium source") };
    assert_eq!((d.key.as_slice(), d.decimal_handling), (&["id".to_owned()][..], DecimalHandling::Precise));
    assert_eq!(
        d.columns["balance_cents"],
        ColumnMapping { column: "balance".into(), kind: Some(ColumnKind::Decimal), scale: Some(2), unit: None }
    );
    let CdcFormat::Outbox(o) = &topology.cdc_source("legacy_user_outbox").expect("declared").format else {
        panic!("the outbox is an outbox source")
    };
    assert_eq!((o.event_id.to_string(), o.occurred_at.to_string()), ("header:id".to_owned(), "timestamp".to_owned()));
    assert_eq!(topology.subject("legacy.user.changed"), Some("sluice.legacy.UserChanged"));

    let defaults = topology.connections().env_defaults();
    assert!(defaults.contains(&("SLUICE_KAFKA_BROKERS".to_owned(), "127.0.0.1:19092".to_owned())));
    assert_eq!(defaults.len(), 6);
}

#[test]
fn the_effective_topology_is_a_valid_topology_file() {
    let topology = Topology::load(&repo().join("topology.toml")).unwrap_or_else(|e| panic!("{e}"));
    let printed = toml::to_string(topology.config()).unwrap_or_else(|e| panic!("{e}"));
    let again = valid(&printed);
    assert_eq!(again.config(), topology.config(), "{printed}");
    assert!(again.warnings().is_empty(), "{}", again.warnings());
}

#[test]
fn the_base_is_valid_with_defaults_filled_in() {
    let t = valid(BASE);
    assert!(t.warnings().is_empty(), "{}", t.warnings());
    let users = t.topic("users").expect("declared");
    assert_eq!(
        (users.key.as_str(), users.cleanup_policy, users.retention),
        ("aggregate_id", CleanupPolicy::Delete, None)
    );
    let p = t.projection("user_state").expect("declared");
    assert_eq!((p.batch_size, p.linger, p.dlq_topic.as_str()), (DEFAULT_BATCH_SIZE, DEFAULT_LINGER, "user_state.dlq"));
    assert_eq!(p.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
    assert_eq!(p.events, ["user.deleted", "user.registered"]);
}

#[test]
fn subjects_follow_the_topic_strategy() {
    let t = valid(BASE);
    // `users` carries two event types and names subjects by record; `sessions` one, by topic.
    assert_eq!(t.subject("user.registered"), Some("sluice.users.UserRegistered"));
    assert_eq!(t.subject("user.deleted"), Some("sluice.users.UserDeleted"));
    assert_eq!(t.subject("session.started"), Some("sessions-value"));
    assert_eq!(t.event("session.started").map(|e| e.record_name.as_str()), Some("sluice.sessions.SessionStarted"));
}

#[test]
fn unknown_key_with_a_suggestion() {
    let text = base_with("partitions = 3", "partitons = 3");
    assert_eq!(
        error(&text),
        (2, 1, "unknown key `partitons` in [topics.users]".into(), Some("did you mean `partitions`?".into()))
    );
    let (line, column, message, hint) = error(&format!("[conections]\nkafka_brokers = \"k:1\"\n{BASE}"));
    assert_eq!((line, column, message.as_str()), (1, 2, "unknown section `conections` in the top level"));
    assert_eq!(hint.as_deref(), Some("did you mean `connections`?"));
    let (_, _, _, hint) = error(&base_with("sink = \"couchbase\"", "sink = \"couchbase\"\nwhatever = 1"));
    assert!(hint.is_some_and(|h| h.starts_with("expected one of: `group`, `sources`")));
}

#[test]
fn wrong_types() {
    let text = base_with("partitions = 3", "partitions = \"3\"");
    assert_eq!(
        error(&text),
        (
            2,
            14,
            "`topics.users.partitions` must be an integer, not a string".into(),
            Some("write `partitions = 3`, without quotes".into())
        )
    );
    let (line, column, message, _) = error(&base_with("sources = [\"users\"]", "sources = \"users\""));
    assert_eq!((line, column), (23, 11));
    assert_eq!(message, "`projections.user_state.sources` must be a list, not a string");
    let (line, column, message, _) = error(&base_with("partitions = 3", "partitions = 0"));
    assert_eq!((line, column), (2, 14));
    assert_eq!(message, "`topics.users.partitions` = 0 is out of range: it must be between 1 and 1000000");
    let (line, column, message, _) =
        error(&base_with("sources = [\"users\"]", "sources = [\"users\"]\nmax_in_flight = 0"));
    assert_eq!((line, column), (24, 17));
    assert_eq!(message, "`projections.user_state.max_in_flight` = 0 is out of range: it must be between 1 and 16");
    let t = valid(&base_with("sources = [\"users\"]", "sources = [\"users\"]\nmax_in_flight = 4"));
    assert_eq!(t.projection("user_state").expect("declared").max_in_flight, 4);
}

#[test]
fn undeclared_topic() {
    let text = base_with("topic = \"sessions\"", "topic = \"session\"");
    assert_eq!(
        error(&text),
        (
            19,
            9,
            "topic \"session\" of event type \"session.started\" is not declared".into(),
            Some("did you mean \"sessions\"?".into())
        )
    );
}

#[test]
fn bad_document_id_placeholders() {
    // `user_id` is no field of the user events; `correlation_id` is, but may be null.
    let text =
        base_with("document_id = \"user::{aggregate_id}\"", "document_id = \"user::{user_id}:{correlation_id}\"");
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(
        (all[0].0, all[0].1, all[0].2.as_str()),
        (27, 22, "placeholder {user_id} of `document_id` is not a field of user.deleted, user.registered")
    );
    assert_eq!(
        (all[1].0, all[1].1, all[1].2.as_str()),
        (27, 32, "placeholder {correlation_id} of `document_id` can be null (in user.deleted, user.registered)")
    );
    let (line, column, message, _) =
        error(&base_with("document_id = \"user::{aggregate_id}\"", "document_id = \"user::{aggregate_id\""));
    assert_eq!((line, column), (27, 22));
    assert_eq!(message, "`document_id`: unclosed `{` (write `{{` for a literal brace)");
}

#[test]
fn soft_threshold_at_or_above_hard() {
    let text = format!(
        "{BASE}\n[projections.user_state.backpressure]\nsoft_lag = 10\nhard_lag = 10\nsoft_lag_age = \"1m\"\nhard_lag_age = \"30s\"\n"
    );
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!((all[0].0, all[0].1, all[0].2.as_str()), (32, 12, "`hard_lag` (10) must be above `soft_lag` (10)"));
    assert_eq!(
        (all[1].0, all[1].1, all[1].2.as_str()),
        (34, 16, "`hard_lag_age` (30s) must be above `soft_lag_age` (1m)")
    );
}

#[test]
fn missing_schema_file() {
    let text = base_with("schema = \"schemas/users/deleted.avsc\"", "schema = \"schemas/users/gone.avsc\"");
    let (line, column, message, hint) = error(&text);
    assert_eq!((line, column), (16, 10));
    assert!(message.starts_with("cannot read schema file schemas/users/gone.avsc: "), "{message}");
    assert_eq!(hint.as_deref(), Some("schema paths are relative to the directory of the topology file"));
}

#[test]
fn schema_without_the_envelope() {
    let text = BASE.replace("schemas/users/deleted.avsc", "deleted.avsc");
    let report = Topology::from_parts(&text, Path::new("topology.toml"), |p| {
        if p == Path::new("deleted.avsc") {
            let real = std::fs::read_to_string(repo().join("schemas/users/deleted.avsc"))?;
            Ok(real.replacen("\"aggregate_version\"", "\"version\"", 1))
        } else {
            std::fs::read_to_string(repo().join(p))
        }
    })
    .map(|_| ())
    .expect_err("broken envelope");
    let messages: Vec<_> = report.diagnostics().iter().map(|d| (d.line, d.column, d.message.as_str())).collect();
    assert_eq!(messages, [(16, 10, "schema deleted.avsc: envelope field `aggregate_version` is missing")]);
}

#[test]
fn credentials_are_refused() {
    let text = format!("[connections]\nkafka_brokers = \"k:9092\"\ncouchbase_password = \"hunter2\"\n{BASE}");
    assert_eq!(
        error(&text),
        (
            3,
            1,
            "`couchbase_password` is a credential: credentials never go in the topology file, which is committed and shared".into(),
            Some("set SLUICE_COUCHBASE_PASSWORD in the environment or the env file instead".into())
        )
    );
    let (line, column, _, hint) =
        error(&base_with("erase_on = [\"user.deleted\"]", "erase_on = [\"user.deleted\"]\nusername = \"admin\""));
    assert_eq!((line, column), (29, 1));
    assert_eq!(hint.as_deref(), Some("set SLUICE_COUCHBASE_USERNAME in the environment or the env file instead"));
    let (_, _, message, _) = error(&format!("[connections]\nclickhouse_url = \"http://u:p@ch:8123\"\n{BASE}"));
    assert_eq!(message, "`connections.clickhouse_url` has credentials in it: they never go in the topology file");
}

#[test]
fn a_clickhouse_cluster_is_a_connection_default() {
    let t = valid(&format!("[connections]\nclickhouse_cluster = \"c1\"\n{BASE}"));
    assert!(t.connections().env_defaults().contains(&("SLUICE_CLICKHOUSE_CLUSTER".to_owned(), "c1".to_owned())));
    let (line, column, message, _) = error(&format!("[connections]\nclickhouse_cluster = \"my cluster\"\n{BASE}"));
    assert_eq!((line, column), (2, 22));
    assert!(message.contains("clickhouse_cluster"), "{message}");
}

#[test]
fn several_topic_events_need_the_record_strategy() {
    let text = base_with("subject_strategy = \"record\"", "");
    let (line, column, message, hint) = error(&text);
    assert_eq!((line, column), (1, 1));
    assert_eq!(
        message,
        "topic \"users\" carries 2 event types (user.deleted, user.registered), so its subject_strategy must be \"record\""
    );
    assert!(hint.is_some_and(|h| h.starts_with("set `subject_strategy = \"record\"`")));
    let (line, column, _, _) = error(&base_with("subject_strategy = \"record\"", "subject_strategy = \"topic\""));
    assert_eq!((line, column), (4, 20));
}

#[test]
fn sink_blocks_match_the_sink() {
    let text = base_with("sink = \"couchbase\"", "sink = \"clickhouse\"");
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!((all[0].0, all[0].1), (24, 8));
    assert_eq!(all[0].2, "`sink = \"clickhouse\"` needs a [projections.user_state.clickhouse] block");
    assert_eq!((all[1].0, all[1].1), (26, 1));
    assert_eq!(all[1].2, "[projections.user_state.couchbase] given, but the projection's sink is \"clickhouse\"");
    let (_, _, message, hint) = error(&base_with("sink = \"couchbase\"", "sink = \"couchbse\""));
    assert_eq!(message, "`projections.user_state.sink` = \"couchbse\" is not one of the allowed values");
    assert_eq!(hint.as_deref(), Some("did you mean \"couchbase\"?"));
}

#[test]
fn projection_references() {
    // An events filter entry from another topic, and an unknown source.
    let text = base_with(
        "sources = [\"users\"]",
        "sources = [\"users\", \"user\"]\nevents = [\"user.registered\", \"session.started\"]",
    );
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!((all[0].0, all[0].1, all[0].2.as_str()), (23, 21, "source topic \"user\" is not declared"));
    assert_eq!(all[0].3.as_deref(), Some("did you mean \"users\"?"));
    assert_eq!(
        (all[1].0, all[1].1, all[1].2.as_str()),
        (
            24,
            30,
            "event type \"session.started\" is published on \"sessions\", which is not a source of projection \"user_state\""
        )
    );
    assert_eq!(all[1].3.as_deref(), Some("add \"sessions\" to `sources`"));

    let (line, column, message, hint) =
        error(&base_with("erase_on = [\"user.deleted\"]", "erase_on = [\"user.delete\"]"));
    assert_eq!((line, column), (28, 13));
    assert_eq!(
        message,
        "\"user.delete\" in `projections.user_state.couchbase.erase_on` is not an event type of projection \"user_state\""
    );
    assert_eq!(hint.as_deref(), Some("did you mean \"user.deleted\"?"));
}

#[test]
fn field_mappings_name_real_event_fields() {
    let text =
        format!("{BASE}fields = {{ email = \"emial\", reason = \"reason\", name = [\"display_name\", \"nick\"] }}\n");
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!((all[0].0, all[0].1), (29, 20));
    assert_eq!(all[0].2, "no event of projection \"user_state\" has a field `emial` (for document field `email`)");
    assert_eq!(all[0].3.as_deref(), Some("did you mean `email`?"));
    assert_eq!((all[1].0, all[1].1), (29, 72));
    assert_eq!(all[1].2, "no event of projection \"user_state\" has a field `nick` (for document field `name`)");
}

#[test]
fn durations_are_checked() {
    let text = format!("{BASE}ttl = \"5min\"\n");
    let (line, column, message, _) = error(&text);
    assert_eq!((line, column), (29, 7));
    assert_eq!(
        message,
        "`projections.user_state.couchbase.ttl`: unknown unit `min` in `5min`: use ms, s, m, h, d or w"
    );
}

#[test]
fn syntax_errors_are_located() {
    let (line, column, message, _) = error("[topics.users]\npartitions = 3\nreplication_factor = \n");
    assert_eq!((line, column), (3, 22));
    assert!(message.starts_with("invalid TOML: "), "{message}");
}

#[test]
fn every_error_is_reported_at_once() {
    let text = BASE
        .replacen("partitions = 3", "partitions = \"3\"", 1)
        .replacen("topic = \"sessions\"", "topic = \"session\"", 1)
        .replacen("sink = \"couchbase\"", "sink = \"couchbase\"\nbatch_sise = 10", 1)
        .replacen("document_id = \"user::{aggregate_id}\"", "document_id = \"user::{user_id}\"\npassword = \"x\"", 1);
    let report = check(&text).map(|_| ()).expect_err("four errors");
    let at: Vec<(usize, usize)> = report.diagnostics().iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(at, [(2, 14), (19, 9), (25, 1), (28, 22), (29, 1)], "{report}");
    assert_eq!(report.error_count(), 5);
    let printed = report.to_string();
    assert!(
        printed.starts_with(
            "topology.toml:2:14: error: `topics.users.partitions` must be an integer, not a string\n  \
         hint: write `partitions = 3`, without quotes\n\
         topology.toml:19:9: error: topic \"session\" of event type \"session.started\" is not declared\n  \
         hint: did you mean \"sessions\"?\n\
         topology.toml:25:1: error: unknown key `batch_sise` in [projections.user_state]\n  \
         hint: did you mean `batch_size`?\n"
        ),
        "{printed}"
    );
    assert!(printed.ends_with("topology.toml: 5 errors\n"), "{printed}");
}

#[test]
fn warnings_do_not_fail() {
    let text = format!(
        "{BASE}\n[topics.unused]\npartitions = 1\nreplication_factor = 1\ncleanup_policy = \"compact\"\nretention = \"1d\"\n"
    );
    let t = valid(&text);
    let w: Vec<(usize, usize, Severity)> =
        t.warnings().diagnostics().iter().map(|d| (d.line, d.column, d.severity)).collect();
    assert_eq!(w, [(30, 1, Severity::Warning), (34, 13, Severity::Warning)], "{}", t.warnings());
    assert!(t.warnings().to_string().ends_with("topology.toml: 2 warnings\n"));
}

#[test]
fn durations_need_their_unit() {
    let (line, column, message, hint) = error(&format!("{BASE}ttl = 30\n"));
    assert_eq!((line, column), (29, 7));
    assert_eq!(message, "`projections.user_state.couchbase.ttl` must be a duration like \"30s\", not a number");
    assert_eq!(hint.as_deref(), Some("durations carry their unit: `ttl = \"30s\"`, \"30m\", …"));
    let (_, _, message, _) = error(&format!("{BASE}ttl = \"0s\"\n"));
    assert_eq!(message, "`projections.user_state.couchbase.ttl` must be longer than zero");
}

#[test]
fn missing_keys_say_what_to_add() {
    let (line, column, message, hint) = error(&base_with("schema = \"schemas/users/deleted.avsc\"", ""));
    assert_eq!((line, column), (14, 1));
    assert_eq!(message, "missing key `schema` in [events.\"user.deleted\"]");
    assert_eq!(hint.as_deref(), Some("add `schema = \"schemas/<file>.avsc\"`"));
}

#[test]
fn groups_and_dead_letter_topics_are_checked() {
    let text = format!(
        "{BASE}\n[projections.other]\nsources = [\"sessions\"]\nsink = \"clickhouse\"\ngroup = \"sluice.user_state\"\n\
         dlq_topic = \"sessions\"\n\n[projections.other.clickhouse]\ntable = \"events\"\ndatabase = \"no-such\"\n"
    );
    let all = errors(&text);
    let at: Vec<_> = all.iter().map(|(l, c, m, _)| (*l, *c, m.as_str())).collect();
    assert_eq!(
        at,
        [
            (33, 9, "projections \"other\" and \"user_state\" share the consumer group \"sluice.user_state\""),
            (34, 13, "dead-letter topic \"sessions\" of projection \"other\" also carries events (session.started)"),
            (
                38,
                12,
                "`projections.other.clickhouse.database` = \"no-such\" is not valid: it must be a ClickHouse identifier (letters, digits, `_`)"
            ),
        ],
        "{all:#?}"
    );
    assert_eq!(all[2].3, None);
}

#[test]
fn record_names_are_subjects_and_must_differ() {
    let text = base_with("schema = \"schemas/users/deleted.avsc\"", "schema = \"schemas/users/registered.avsc\"");
    let (line, column, message, _) = error(&text);
    assert_eq!((line, column), (12, 10));
    assert_eq!(
        message,
        "event types \"user.deleted\" and \"user.registered\" both use record sluice.users.UserRegistered: with \
         subject_strategy = \"record\" they would share one subject"
    );
}

#[test]
fn critical_events_belong_to_the_projection() {
    let text = format!("{BASE}\n[projections.user_state.backpressure]\ncritical_events = [\"session.started\"]\n");
    let (line, column, message, hint) = error(&text);
    assert_eq!((line, column), (31, 20));
    assert_eq!(
        message,
        "\"session.started\" in `projections.user_state.backpressure.critical_events` is not an event type of \
         projection \"user_state\""
    );
    assert_eq!(
        hint.as_deref(),
        Some("the event types of projection \"user_state\" are: user.deleted, user.registered")
    );
}

/// A valid topology with one Debezium source and one outbox source, on the legacy schemas.
const CDC_BASE: &str = r#"[topics."legacy.public.users"]
partitions = 1
replication_factor = 1
subject_strategy = "record"

[topics."outbox.event.user"]
partitions = 1
replication_factor = 1
subject_strategy = "record"

[events."legacy.user.changed"]
topic = "legacy.public.users"
schema = "schemas/legacy/user_changed.avsc"

[events."legacy.user.deleted"]
topic = "legacy.public.users"
schema = "schemas/legacy/user_deleted.avsc"

[events."legacy.user.signed_up"]
topic = "outbox.event.user"
schema = "schemas/legacy/user_signed_up.avsc"

[cdc.users]
topic = "legacy.public.users"
format = "debezium"
encoding = "json"
key = ["id"]
upsert_event = "legacy.user.changed"
delete_event = "legacy.user.deleted"

[cdc.users.columns]
user_id = "id"
email = "email"
display_name = "display_name"
balance_cents = { column = "balance", type = "decimal", scale = 2 }
created_at = { column = "created_at", type = "timestamp" }
updated_at = { column = "updated_at", type = "timestamp", unit = "ms" }

[cdc.outbox]
topic = "outbox.event.user"
format = "outbox"
encoding = "avro"
event_type = "header:eventType"
version = "field:version"

[cdc.outbox.events]
UserSignedUp = "legacy.user.signed_up"
"#;

fn cdc_with(old: &str, new: &str) -> String {
    assert!(CDC_BASE.contains(old), "no {old:?} in CDC_BASE");
    CDC_BASE.replacen(old, new, 1)
}

#[test]
fn cdc_sources_are_read_with_their_defaults() {
    let t = valid(CDC_BASE);
    assert!(t.warnings().is_empty(), "{}", t.warnings());
    let CdcFormat::Debezium(d) = &t.cdc_source("users").expect("declared").format else { panic!("debezium") };
    assert_eq!(
        (d.decimal_handling, d.unavailable_value.as_str()),
        (DecimalHandling::Precise, DEBEZIUM_UNAVAILABLE_VALUE)
    );
    assert_eq!(d.columns["email"], ColumnMapping::plain("email"));
    assert_eq!(d.columns["updated_at"].unit, Some(TimeUnit::Millis));
    let CdcFormat::Outbox(o) = &t.cdc_source("outbox").expect("declared").format else { panic!("outbox") };
    assert_eq!((o.event_id.clone(), o.occurred_at.clone()), (FieldRef::Header("id".into()), FieldRef::Timestamp));
    assert_eq!(o.version, FieldRef::Field("version".into()));
    assert_eq!(t.cdc_source_on("outbox.event.user").map(|(n, _)| n), Some("outbox"));
}

#[test]
fn cdc_keys_are_checked_where_they_are() {
    let (line, column, message, hint) = error(&cdc_with("upsert_event =", "upsert_evnt ="));
    assert_eq!((line, column, message.as_str()), (28, 1, "unknown key `upsert_evnt` in [cdc.users]"));
    assert_eq!(hint.as_deref(), Some("did you mean `upsert_event`?"));
    let (line, column, message, hint) =
        error(&cdc_with("version = \"field:version\"", "version = \"field:version\"\ncolumns = 1"));
    assert_eq!((line, column, message.as_str()), (45, 11, "`columns` is a key of format = \"debezium\""));
    assert_eq!(hint.as_deref(), Some("remove it, or set `format = \"debezium\"`"));
    let (line, column, message, hint) = error(&cdc_with("format = \"outbox\"", "format = \"outbx\""));
    assert_eq!(
        (line, column, message.as_str()),
        (41, 10, "`cdc.outbox.format` = \"outbx\" is not one of the allowed values")
    );
    assert_eq!(hint.as_deref(), Some("did you mean \"outbox\"?"));
    let (line, column, message, _) = error(&cdc_with("version = \"field:version\"", "version = \"column:version\""));
    assert_eq!((line, column), (44, 11));
    assert!(
        message.starts_with("`cdc.outbox.version`: \"column:version\" is not a place in an outbox record"),
        "{message}"
    );
    let (line, column, message, hint) = error(&cdc_with("key = [\"id\"]", "key = []"));
    assert_eq!(
        (line, column, message.as_str()),
        (27, 7, "`cdc.users.key` is empty: the key columns make the aggregate id")
    );
    assert!(hint.is_some_and(|h| h.contains("primary key")));
}

#[test]
fn cdc_column_mappings_are_checked() {
    let (line, column, message, hint) = error(&cdc_with("type = \"decimal\", scale = 2 }", "type = \"decimal\" }"));
    assert_eq!((line, column, message.as_str()), (35, 46, "a decimal column needs its `scale`"));
    assert_eq!(hint.as_deref(), Some("add the column's scale, e.g. `scale = 2` for numeric(12,2)"));
    let (line, column, message, _) = error(&cdc_with("type = \"timestamp\" }", "type = \"timestamp\", scale = 3 }"));
    assert_eq!((line, column, message.as_str()), (36, 67, "`scale` applies to `type = \"decimal\"` only"));
    // A field the event does not have, with a suggestion.
    let (line, column, message, hint) = error(&cdc_with("email = \"email\"", "emial = \"email\""));
    assert_eq!(line, 33, "{message}");
    assert_eq!(column, 9);
    assert_eq!(message, "event type \"legacy.user.changed\" has no field `emial` (mapped from column `email`)");
    assert_eq!(hint.as_deref(), Some("did you mean `email`?"));
    // A conversion that cannot make the field's type.
    let (line, column, message, _) =
        error(&cdc_with("user_id = \"id\"", "user_id = { column = \"id\", type = \"json\" }"));
    assert_eq!((line, column), (32, 35));
    assert_eq!(
        message,
        "column `id` → field `user_id`: a `json` column cannot become a long field; it fits string (the JSON text)"
    );
    // Envelope fields are the mapper's.
    let (_, _, message, _) = error(&cdc_with("user_id = \"id\"", "user_id = \"id\"\naggregate_id = \"id\""));
    assert_eq!(message, "`aggregate_id` is an envelope field: the mapper sets it, no column does");
}

#[test]
fn cdc_required_fields_and_deletes() {
    // created_at has no default: it must be mapped.
    let (line, column, message, _) =
        error(&cdc_with("created_at = { column = \"created_at\", type = \"timestamp\" }\n", ""));
    assert_eq!((line, column), (31, 1));
    assert_eq!(message, "field created_at of event type \"legacy.user.changed\" has no column and no default");
    // The delete event's user_id must come from a key column.
    let (line, column, message, hint) = error(&cdc_with("key = [\"id\"]", "key = [\"email\"]"));
    assert_eq!((line, column), (29, 16));
    assert_eq!(message, "field user_id of delete event \"legacy.user.deleted\" has no default and no key column");
    assert!(hint.is_some_and(|h| h.contains("REPLICA IDENTITY DEFAULT")));
}

#[test]
fn cdc_topics_and_event_types_fit_together() {
    let (line, column, message, hint) =
        error(&cdc_with("topic = \"legacy.public.users\"\nformat", "topic = \"legacy.public.user\"\nformat"));
    assert_eq!((line, column), (24, 9));
    assert_eq!(message, "topic \"legacy.public.user\" of CDC source \"users\" is not declared");
    assert_eq!(hint.as_deref(), Some("did you mean \"legacy.public.users\"?"));
    let (line, column, message, hint) =
        error(&cdc_with("upsert_event = \"legacy.user.changed\"", "upsert_event = \"legacy.user.changd\""));
    assert_eq!((line, column, message.as_str()), (28, 16, "unknown event type \"legacy.user.changd\""));
    assert_eq!(hint.as_deref(), Some("did you mean \"legacy.user.changed\"?"));
    // The outbox maps to an event published elsewhere, and no longer emits the one on its topic.
    let text = cdc_with("UserSignedUp = \"legacy.user.signed_up\"", "UserSignedUp = \"legacy.user.changed\"");
    let all = errors(&text);
    let at: Vec<_> = all.iter().map(|(l, c, m, _)| (*l, *c, m.as_str())).collect();
    assert_eq!(
        at,
        [
            (
                20,
                9,
                "event type \"legacy.user.signed_up\" is published on CDC topic \"outbox.event.user\", but CDC source \"outbox\" never emits it"
            ),
            (
                47,
                16,
                "event type \"legacy.user.changed\" is published on \"legacy.public.users\", not on the CDC topic \"outbox.event.user\""
            ),
        ],
        "{all:#?}"
    );
    assert_eq!(
        all[0].3.as_deref(),
        Some("a CDC topic carries the connector's records; publish the event type on a topic of its own")
    );
    assert_eq!(all[1].3.as_deref(), Some("set `topic = \"outbox.event.user\"` in [events.\"legacy.user.changed\"]"));
    // The connector owns "<topic>-value".
    let (line, column, message, _) = error(&cdc_with(
        "[topics.\"outbox.event.user\"]\npartitions = 1\nreplication_factor = 1\nsubject_strategy = \"record\"",
        "[topics.\"outbox.event.user\"]\npartitions = 1\nreplication_factor = 1",
    ));
    assert_eq!((line, column), (39, 9));
    assert_eq!(
        message,
        "CDC topic \"outbox.event.user\" must name its subjects by record (subject_strategy = \"record\")"
    );
}

/// `BASE` with a ClickHouse projection of the users topic; `state` is its last lines.
fn with_state(state: &str) -> String {
    format!(
        "{BASE}\n[projections.analytics]\nsources = [\"users\"]\nsink = \"clickhouse\"\n\n\
         [projections.analytics.clickhouse]\ntable = \"events\"\n{state}"
    )
}

#[test]
fn the_keys_of_the_built_in_state_table_say_what_replaced_them() {
    let all = errors(&with_state(
        "state_table = \"users_current\"\nstate_events = [\"user.registered\"]\nrollups = [\"daily\"]\n",
    ));
    let found: Vec<(usize, &str, Option<&str>)> =
        all.iter().map(|(l, _, m, h)| (*l, m.as_str(), h.as_deref())).collect();
    assert_eq!(
        found,
        [
            (
                36,
                "`state_table` is no longer read: state tables are declared",
                Some("declare the state table as `[projections.<name>.clickhouse.state.<table>]`")
            ),
            (
                37,
                "`state_events` is no longer read: state tables are declared",
                Some("list them as `events` of `[projections.<name>.clickhouse.state.<table>]`")
            ),
            (
                38,
                "`rollups` is no longer a list of built-in rollups",
                Some("declare each as `[projections.<name>.clickhouse.rollups.<rollup>]` over a declared table")
            ),
        ]
    );
}

#[test]
fn a_declared_state_table_resolves_its_columns() {
    let t = valid(&with_state(
        "[projections.analytics.clickhouse.state.users_current]\nkey_column = \"user_id\"\n\
         events = [\"user.registered\", \"user.deleted\"]\ncreates = [\"user.registered\"]\ndeletes = [\"user.deleted\"]\n\
         columns = { email = \"email\", seen = \"occurred_at\" }\n",
    ));
    let Some(SinkConfig::ClickHouse { clickhouse }) = t.projection("analytics").map(|p| &p.sink) else {
        panic!("a ClickHouse projection")
    };
    let state = &clickhouse.state["users_current"];
    let columns: Vec<(&str, String)> = state.resolved.iter().map(|c| (c.name.as_str(), c.ty.to_string())).collect();
    assert_eq!(columns, [("email", "string".to_owned()), ("seen", "timestamp-millis".to_owned())]);
    assert_eq!(state.change("user.deleted"), Some(StateChange::Delete));
    assert_eq!(state.change("session.started"), None);

    // A declared type the projection does not read (yet) is accepted, with a warning; an
    // undeclared one is an error.
    let t = valid(&with_state(
        "[projections.analytics.clickhouse.state.users_current]\n\
         events = [\"user.registered\", \"session.started\"]\ncolumns = { email = \"email\" }\n",
    ));
    let warnings: Vec<String> = t.warnings().diagnostics().iter().map(|d| d.message.clone()).collect();
    assert_eq!(
        warnings,
        ["\"session.started\" is not consumed by projection \"analytics\": it is on none of its sources"]
    );
    let (_, _, message, hint) = error(&with_state(
        "[projections.analytics.clickhouse.state.users_current]\n\
         events = [\"user.registered\", \"user.delted\"]\ncolumns = { email = \"email\" }\n",
    ));
    assert_eq!(
        message,
        "unknown event type \"user.delted\" in `projections.analytics.clickhouse.state.users_current.events`"
    );
    assert_eq!(hint.as_deref(), Some("did you mean \"user.deleted\"?"));
}

/// The orders domain of the tests, projected to Couchbase: nested records and arrays to map.
const ORDERS: &str = r#"[topics.orders]
partitions = 3
replication_factor = 1
subject_strategy = "record"

[events."order.placed"]
topic = "orders"
schema = "tests/domains/orders/schemas/placed.avsc"

[events."order.shipped"]
topic = "orders"
schema = "tests/domains/orders/schemas/shipped.avsc"

[events."order.cancelled"]
topic = "orders"
schema = "tests/domains/orders/schemas/cancelled.avsc"

[projections.order_state]
sources = ["orders"]
sink = "couchbase"

[projections.order_state.couchbase]
document_id = "order::{aggregate_id}"

[projections.order_state.couchbase.fields]
"#;

/// The 1-based line and column of the first `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} in the text"));
    let line = text[..at].matches('\n').count() + 1;
    let column = text[..at].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[test]
fn document_fields_take_nested_paths_array_elements_and_flags() {
    let text = format!(
        "{ORDERS}customer_id = \"customer.id\"\nfirst_sku = \"items[0].sku\"\nskus = \"items[].sku\"\n\
         carrier = [\"carrier\", \"customer.tier\"]\nupdated_at = \"occurred_at\"\n\
         is_shipped = {{ set_by = [\"order.shipped\"], cleared_by = [\"order.cancelled\"] }}\n\
         was_placed = {{ set_by = [\"order.placed\"] }}\n"
    );
    let topology = valid(&text);
    let Some(SinkConfig::Couchbase { couchbase }) = topology.projection("order_state").map(|p| &p.sink) else {
        panic!("a Couchbase projection")
    };
    let fields = couchbase.fields.as_ref().expect("fields");
    let path = |text: &str| columns::FieldPath::parse(text).expect("path");
    assert_eq!(fields["first_sku"], DocumentField::First(vec![path("items[0].sku")]));
    assert_eq!(fields["carrier"], DocumentField::First(vec![path("carrier"), path("customer.tier")]));
    assert_eq!(
        fields["is_shipped"],
        DocumentField::Flag { set_by: vec!["order.shipped".into()], cleared_by: vec!["order.cancelled".into()] }
    );
    // Printed as written, and valid again.
    let printed = toml::to_string(topology.config()).unwrap_or_else(|e| panic!("{e}"));
    assert!(printed.contains("first_sku = \"items[0].sku\""), "{printed}");
    assert!(printed.contains("carrier = [\"carrier\", \"customer.tier\"]"), "{printed}");
    assert_eq!(valid(&printed).config(), topology.config(), "{printed}");
}

#[test]
fn bad_document_field_paths_and_flags_are_located() {
    let check_one = |line: &str, needle: &str, message: &str, hint: Option<&str>| {
        let text = format!("{ORDERS}{line}\n");
        let all = errors(&text);
        assert_eq!(all.len(), 1, "{line}: {all:#?}");
        let (l, c, m, h) = &all[0];
        assert_eq!((*l, *c), position_of(&text, needle), "{line}: {m}");
        assert_eq!(m, message, "{line}");
        assert_eq!(h.as_deref(), hint, "{line}");
    };
    check_one(
        "customer_id = \"customer.idd\"",
        "\"customer.idd\"",
        "no event of projection \"order_state\" has a field `customer.idd` (for document field `customer_id`)",
        Some("did you mean `customer.id`?"),
    );
    check_one(
        "sku = [\"items[x].sku\"]",
        "\"items[x].sku\"",
        "\"items[x].sku\" in `projections.order_state.couchbase.fields.sku` is not a field path",
        Some(
            "write a field (\"total\"), a nested one (\"customer.id\"), an array element (\"items[0].sku\") or every \
             element (\"items[].sku\")",
        ),
    );
    check_one(
        "sku = \"total[0]\"",
        "\"total[0]\"",
        "no event of projection \"order_state\" has a field `total[0]` (for document field `sku`)",
        None,
    );
    check_one(
        "shipped = { set_by = [\"order.shiped\"] }",
        "\"order.shiped\"",
        "\"order.shiped\" in `projections.order_state.couchbase.fields.shipped.set_by` is not an event type of \
         projection \"order_state\"",
        Some("did you mean \"order.shipped\"?"),
    );
    check_one(
        "shipped = { set_by = [\"order.shipped\"], cleared_by = [\"order.placed\", \"order.shipped\"] }",
        "\"order.shipped\"] }",
        "\"order.shipped\" both sets and clears flag `shipped`",
        Some("list it in one of `set_by` and `cleared_by`"),
    );
    check_one(
        "shipped = 5",
        "5",
        "`projections.order_state.couchbase.fields.shipped` must name an event field, a list of them, or be a flag \
         `{ set_by = […], cleared_by = […] }`",
        Some("e.g. `shipped = \"shipped\"`"),
    );
    check_one(
        "shipped = { sets = [\"order.shipped\"] }",
        "sets",
        "unknown key `sets` in [projections.order_state.couchbase.fields.shipped]",
        // Two edits from `set_by` once `_` is ignored: close by the one "did you mean" rule.
        Some("did you mean `set_by`?"),
    );
    check_one(
        "shipped = {}",
        "{}",
        "flag `projections.order_state.couchbase.fields.shipped` needs `set_by` or `cleared_by`",
        Some("e.g. `shipped = { set_by = [\"order.shipped\"], cleared_by = [\"order.returned\"] }`"),
    );
}
