//! The plan written out: the `topology.toml` text, its schema files, and the summary the CLI
//! prints.
//!
//! Text that comes from outside (subjects, reasons, URLs) only ever goes into TOML strings,
//! escaped by the `toml` crate, or into comments with every control character replaced, so no
//! registry content can add a line to the file. Pure code.

use std::collections::BTreeMap;

use super::super::model::{SubjectStrategy, default_min_insync_replicas};
use super::super::parse::{valid_kafka_brokers, valid_projection_name};
use super::super::{CleanupPolicy, Compatibility, HumanDuration, Retention};
use super::bind::{Plan, PlannedEvent};
use super::skeleton::skeletons;
use super::tables::{Columns, PlannedTable, tables};
use super::{BoundEvent, Generated, Inventory, KafkaTopic, SchemaFile, Skipped};

/// Comments are wrapped to this width.
const WIDTH: usize = 100;
/// The name of the ClickHouse projection written, unless a topic takes its dead-letter topic.
const PROJECTION: &str = "analytics";
/// The raw events table of that projection.
const RAW_TABLE: &str = "events";

/// `text` as a TOML basic string, escaped.
pub(super) fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `name` as a TOML key: bare when it can be, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { name.to_owned() } else { toml_str(name) }
}

/// Text made safe for a comment: no control characters (a newline would end the comment).
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The file being written.
#[derive(Debug, Default)]
struct Text(String);

impl Text {
    fn raw(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }

    /// A comment, wrapped at [`WIDTH`]; the text's leading spaces indent every line, and
    /// continuation lines `indent` more.
    fn comment_indented(&mut self, text: &str, indent: usize) {
        let text = clean(text);
        let words = text.trim_start();
        let lead = " ".repeat(text.len() - words.len());
        let mut line = format!("# {lead}");
        let mut has_words = false;
        for word in words.split(' ').filter(|w| !w.is_empty()) {
            if has_words && line.len() + 1 + word.len() > WIDTH {
                self.raw(&line);
                line = format!("# {lead}{}", " ".repeat(indent));
                has_words = false;
            }
            if has_words {
                line.push(' ');
            }
            line.push_str(word);
            has_words = true;
        }
        self.raw(line.trim_end());
    }

    fn comment(&mut self, text: &str) {
        self.comment_indented(text, 0);
    }
}

/// Writes `plan`.
pub(super) fn render(inventory: &Inventory, plan: &Plan<'_>) -> Generated {
    let mut out = Text::default();
    header(&mut out, inventory, plan);
    connections(&mut out, inventory);
    registry(&mut out, inventory, plan);
    for t in &plan.topics {
        topic(&mut out, t.topic, t.strategy);
    }
    if !plan.events.is_empty() {
        out.comment(
            "Event types: each is the latest schema of one subject of the registry, copied (pretty-printed) to the \
             file it names. Every schema starts with sluice's envelope; the payload fields follow.",
        );
        out.blank();
    }
    for e in &plan.events {
        event(&mut out, e, false);
        out.blank();
    }

    let declared: Vec<&str> = plan.topics.iter().map(|t| t.topic.name.as_str()).collect();
    let projection = std::iter::once(PROJECTION.to_owned())
        .chain((2u32..).map(|n| format!("{PROJECTION}_{n}")))
        .find(|p| valid_projection_name(p) && !declared.contains(&format!("{p}.dlq").as_str()))
        .unwrap_or_else(|| PROJECTION.to_owned());
    let planned_tables = tables(&plan.events, &[RAW_TABLE]);
    if plan.events.is_empty() {
        out.comment("No subject of the registry is a sluice event bound to a topic, so no projection is written.");
        out.blank();
    } else {
        analytics(&mut out, &projection, &declared, &planned_tables);
        if let Some(first) = plan.topics.first() {
            let name = first.topic.name.as_str();
            let events: Vec<&PlannedEvent<'_>> =
                plan.events.iter().filter(|e| e.topic.as_deref() == Some(name)).collect();
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            let first_tables: Vec<&PlannedTable> =
                planned_tables.iter().filter(|t| types.contains(&t.event_type.as_str())).collect();
            for line in skeletons(name, &events, &first_tables, &projection) {
                out.raw(&clean(&line));
            }
            out.blank();
        }
    }
    not_written(&mut out, plan);

    let mut schemas: Vec<SchemaFile> = plan
        .events
        .iter()
        .chain(&plan.unbound)
        .map(|e| SchemaFile { path: e.schema_path.clone(), text: pretty(&e.candidate.subject.schema) })
        .collect();
    schemas.sort_by(|a, b| a.path.cmp(&b.path));
    let events = plan
        .events
        .iter()
        .map(|e| BoundEvent {
            event_type: e.event_type.clone(),
            topic: e.topic.clone().unwrap_or_default(),
            subject: e.candidate.subject.subject.clone(),
            naming: e.naming,
            schema_path: e.schema_path.clone(),
        })
        .collect();
    let mut skipped: Vec<Skipped> = plan.not_events.iter().chain(&plan.duplicates).cloned().collect();
    skipped.extend(plan.unbound.iter().map(|e| Skipped {
        subject: e.candidate.subject.subject.clone(),
        reason: e.reason.clone().unwrap_or_default(),
    }));
    skipped.sort_by(|a, b| a.subject.cmp(&b.subject));
    Generated { topology: out.0, schemas, events, skipped, unused_topics: plan.unused_topics.clone() }
}

/// A schema as pretty-printed JSON (kept as it is when it is not JSON).
fn pretty(schema: &str) -> String {
    let mut text = serde_json::from_str::<serde_json::Value>(schema)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| schema.to_owned());
    text.push('\n');
    text
}

fn header(out: &mut Text, inventory: &Inventory, plan: &Plan<'_>) {
    let topics_read = plan.topics.len() + plan.unused_topics.len();
    let sampled = match inventory.sampled_per_partition {
        Some(n) => format!(", the latest {n} records of each partition read"),
        None => String::new(),
    };
    out.comment("A starting topology, written by `sluice topology init` from what exists:");
    out.comment_indented(
        &format!(
            "  schema registry {}: {} subjects considered",
            registry_shown(&inventory.registry_url),
            plan.subjects_considered
        ),
        4,
    );
    out.comment_indented(&format!("  Kafka {}: {topics_read} topics considered{sampled}", inventory.kafka_brokers), 4);
    out.comment("");
    out.comment(
        "Each event type below is a registry subject whose schema carries sluice's envelope, bound to the topic \
         it is published on. The projection writes every event to ClickHouse, with a typed table per event type. \
         At the end, in comments: starting points for a Couchbase projection, a current-state table and a \
         rollup, then every subject and topic read that did not become part of the topology, with the reason.",
    );
    out.comment("");
    out.comment(
        "Next: `sluice topology check <this file>`, then `sluice schemas check` (the schemas against the \
         registry) and `sluice topics apply --dry-run` (the topics against the cluster) with `--topology <this \
         file>`.",
    );
    out.blank();
}

/// A URL fit to be written: `http(s)://` and no credentials in it.
fn url_ok(url: &str) -> bool {
    ["http://", "https://"]
        .iter()
        .find_map(|s| url.strip_prefix(s))
        .is_some_and(|rest| !rest.split(['/', '?']).next().unwrap_or_default().contains('@'))
}

fn registry_shown(url: &str) -> &str {
    if url_ok(url) { url } else { "(URL not shown: it has credentials in it)" }
}

fn connections(out: &mut Text, inventory: &Inventory) {
    out.comment(
        "Where the services are when nothing else says so: the endpoints this file was written from. Each is \
         overridden by its variable (SLUICE_KAFKA_BROKERS, SLUICE_SCHEMA_REGISTRY_URL, …) from the environment or \
         the env file. Couchbase and ClickHouse were not read: uncomment their lines, or set SLUICE_COUCHBASE_CONNSTR, \
         SLUICE_COUCHBASE_BUCKET, SLUICE_CLICKHOUSE_URL and SLUICE_CLICKHOUSE_DATABASE. Credentials never go here \
         (this file is meant to be committed): SLUICE_COUCHBASE_USERNAME, SLUICE_COUCHBASE_PASSWORD, \
         SLUICE_CLICKHOUSE_USER and SLUICE_CLICKHOUSE_PASSWORD come from the environment only.",
    );
    out.raw("[connections]");
    if valid_kafka_brokers(&inventory.kafka_brokers) {
        out.raw(&format!("kafka_brokers = {}", toml_str(&inventory.kafka_brokers)));
    } else {
        out.comment("kafka_brokers: not written, the servers used are not `host:port[,host:port…]`");
    }
    if url_ok(&inventory.registry_url) {
        out.raw(&format!("schema_registry_url = {}", toml_str(&inventory.registry_url)));
    } else {
        out.comment(
            "schema_registry_url: not written, the URL used is not http(s) or has credentials in it (set \
             SLUICE_SCHEMA_REGISTRY_URL)",
        );
    }
    out.raw("# couchbase_connstr = \"couchbase://127.0.0.1\"");
    out.raw("# couchbase_bucket = \"default\"");
    out.raw("# clickhouse_url = \"http://127.0.0.1:8123\"");
    out.raw("# clickhouse_database = \"default\"");
    out.raw("# clickhouse_cluster = \"sluice\"  # on a ClickHouse cluster: replicated, sharded tables");
    out.blank();
}

/// `[registry]`: the level most of the event types' subjects have (their own, else the global
/// one), since `sluice schemas register` sets it on all of them.
fn registry(out: &mut Text, inventory: &Inventory, plan: &Plan<'_>) {
    let global = inventory.compatibility.as_deref();
    let levels: Vec<(&str, Option<Compatibility>)> = plan
        .events
        .iter()
        .map(|e| {
            let s = e.candidate.subject;
            (s.subject.as_str(), s.compatibility.as_deref().or(global).and_then(|l| l.parse().ok()))
        })
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for level in levels.iter().filter_map(|(_, l)| *l) {
        *counts.entry(level.as_str()).or_default() += 1;
    }
    let chosen: Option<Compatibility> = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .and_then(|(level, _)| level.parse().ok())
        .or_else(|| global.and_then(|l| l.parse().ok()));
    match chosen {
        Some(_) if !levels.is_empty() => out.comment(
            "The compatibility level of the event types' subjects (their own, else the registry's global level). \
             `sluice schemas register` sets it on every subject of the topology, so a schema change that would \
             break a reader is refused.",
        ),
        Some(_) => out.comment(
            "The registry's global compatibility level. `sluice schemas register` sets it on every subject of \
             the topology, so a schema change that would break a reader is refused.",
        ),
        None => out.comment(
            "The registry did not say a compatibility level sluice knows: BACKWARD is sluice's default. `sluice \
             schemas register` sets the level written here on every subject of the topology.",
        ),
    }
    let level = chosen.unwrap_or_default();
    let others: Vec<String> = levels
        .iter()
        .filter(|(_, l)| *l != Some(level))
        .map(|(s, l)| format!("{s} ({})", l.map_or("unknown", Compatibility::as_str)))
        .collect();
    if !others.is_empty() {
        out.comment(&format!(
            "Subjects at another level now, which `sluice schemas register` would change to {level}: {}.",
            others.join(", ")
        ));
    }
    out.raw("[registry]");
    out.raw(&format!("compatibility = {}", toml_str(level.as_str())));
    out.blank();
}

/// Kafka's `cleanup.policy` value as the topology spells it (`delete,compact` → `compact,delete`).
fn cleanup_policy(value: &str) -> Option<CleanupPolicy> {
    let mut parts: Vec<&str> = value.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    parts.dedup();
    parts.join(",").parse().ok()
}

fn topic(out: &mut Text, t: &KafkaTopic, strategy: SubjectStrategy) {
    out.raw(&format!("[topics.{}]", key(&t.name)));
    out.raw(&format!("partitions = {}", t.partitions.max(1)));
    let replicas = t.replication_factor.max(1);
    out.raw(&format!("replication_factor = {replicas}"));
    // Written only where the topology's default would change the cluster.
    let default = default_min_insync_replicas(replicas);
    match t.min_insync_replicas {
        Some(m) if m != default && (1..=replicas).contains(&m) => out.raw(&format!("min_insync_replicas = {m}")),
        Some(m) if m > replicas => out.comment(&format!(
            "min.insync.replicas is {m} on the cluster, more than the {replicas} replicas, so no write is \
             acknowledged: `sluice topics apply` sets {default}"
        )),
        _ => {}
    }
    if let Some(policy) = t.cleanup_policy.as_deref().and_then(cleanup_policy) {
        out.raw(&format!("cleanup_policy = {}", toml_str(policy.as_str())));
    }
    let retention = match t.retention_ms {
        Some(-1) => Some(Retention::Forever),
        Some(ms) if ms > 0 => u64::try_from(ms).ok().map(|ms| Retention::For(HumanDuration::from_millis(ms))),
        _ => None,
    };
    match retention {
        Some(r) => out.raw(&format!("retention = {}", toml_str(&r.to_string()))),
        None => out.comment("retention: the broker's default"),
    }
    if strategy == SubjectStrategy::Record {
        out.comment("Its subjects are named after their records (RecordNameStrategy): several event types share it.");
    }
    out.raw(&format!("subject_strategy = {}", toml_str(strategy.as_str())));
    out.blank();
}

/// An `[events."<type>"]` block with its notes; commented out when `commented`.
fn event(out: &mut Text, e: &PlannedEvent<'_>, commented: bool) {
    for note in &e.notes {
        out.comment_indented(note, 2);
    }
    let topic = e.topic.as_deref().map_or_else(|| toml_str("<topic>"), toml_str);
    let lines = [
        format!("[events.{}]", key(&e.event_type)),
        format!("topic = {topic}"),
        format!("schema = {}", toml_str(&e.schema_path)),
    ];
    for line in lines {
        if commented { out.raw(&format!("# {line}")) } else { out.raw(&line) }
    }
}

fn analytics(out: &mut Text, projection: &str, sources: &[&str], tables: &[PlannedTable]) {
    out.comment(&format!(
        "Every event of the topics above as a row in ClickHouse: the raw table `{RAW_TABLE}`, and a typed table \
         per event type with a column per payload field, typed from its schema (see docs/analytics.md, \"Declared \
         tables\"). Run it with `sluice work --projection {projection}` (`sluice clickhouse migrate` creates the \
         tables first)."
    ));
    out.raw(&format!("[projections.{projection}]"));
    let sources: Vec<String> = sources.iter().map(|s| toml_str(s)).collect();
    out.raw(&format!("sources = [{}]", sources.join(", ")));
    out.raw("sink = \"clickhouse\"");
    out.blank();
    out.raw(&format!("[projections.{projection}.clickhouse]"));
    out.raw(&format!("table = {}", toml_str(RAW_TABLE)));
    out.blank();
    for t in tables {
        let section = format!("projections.{projection}.clickhouse.tables.{}", t.name);
        let events = format!("events = [{}]", toml_str(&t.event_type));
        match &t.columns {
            Columns::Default(_) => {
                out.raw(&format!("[{section}]"));
                out.raw(&events);
            }
            Columns::Renamed { mapping, renamed, .. } => {
                let names: Vec<String> = renamed.iter().map(|(from, to)| format!("`{from}` as `{to}`")).collect();
                out.comment(&format!(
                    "Some payload fields would take the name of an envelope column or of another field, so the \
                     columns are listed, renamed: {}.",
                    names.join(", ")
                ));
                out.raw(&format!("[{section}]"));
                out.raw(&events);
                out.blank();
                out.raw(&format!("[{section}.columns]"));
                for (column, path) in mapping {
                    out.raw(&format!("{column} = {}", toml_str(path)));
                }
            }
            Columns::Impossible(why) => {
                out.comment(&format!(
                    "No typed table for {}: {why}. Choose its columns with `columns = {{ name = \"field.path\" }}`:",
                    t.event_type
                ));
                out.raw(&format!("# [{section}]"));
                out.raw(&format!("# {events}"));
            }
        }
        out.blank();
    }
}

fn not_written(out: &mut Text, plan: &Plan<'_>) {
    let nothing = plan.unbound.is_empty()
        && plan.not_events.is_empty()
        && plan.duplicates.is_empty()
        && plan.unused_topics.is_empty()
        && plan.left_out_topics.is_empty();
    if nothing {
        return;
    }
    out.raw("# ---------------------------------------------------------------------------------------------");
    out.comment("Not written: what was read and did not become part of the topology, with the reason.");
    out.raw("#");
    if !plan.unbound.is_empty() {
        out.comment(
            "Event schemas bound to no topic. Their schemas are written under schemas/unbound/: give one its topic \
             and uncomment it to use it.",
        );
        out.raw("#");
        for e in &plan.unbound {
            out.comment_indented(
                &format!("{}: {}", e.candidate.subject.subject, e.reason.as_deref().unwrap_or_default()),
                2,
            );
            event(out, e, true);
            out.raw("#");
        }
    }
    if !plan.not_events.is_empty() {
        out.comment(
            "Subjects that are not sluice events (an event schema is an Avro record whose first fields are the \
             envelope: event_id, event_type, aggregate_id, aggregate_version, occurred_at, producer, \
             correlation_id, causation_id, traceparent, tracestate):",
        );
        for s in &plan.not_events {
            out.comment_indented(&format!("not a sluice event: {}: {}", s.subject, s.reason), 4);
        }
        out.raw("#");
    }
    if !plan.duplicates.is_empty() {
        out.comment("Subjects standing for an event type already written from another subject:");
        for s in &plan.duplicates {
            out.comment_indented(&format!("{}: {}", s.subject, s.reason), 4);
        }
        out.raw("#");
    }
    if !plan.unused_topics.is_empty() {
        out.comment("Topics that carry no sluice event type:");
        for (name, reason) in &plan.unused_topics {
            out.comment_indented(&format!("{name}: {reason}"), 4);
        }
        out.raw("#");
    }
    if !plan.left_out_topics.is_empty() {
        let counts: BTreeMap<&str, usize> = plan.left_out_topics.iter().map(|(k, v)| (*k, *v)).collect();
        let parts: Vec<String> = counts.iter().map(|(why, n)| format!("{n} {why}")).collect();
        out.comment(&format!("Topics not considered: {}.", parts.join(", ")));
    }
}
