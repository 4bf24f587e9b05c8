//! The checks that look across sections and into the schema files.
//!
//! Input: the model as parsed (with the position of every value) and a function reading a schema
//! file. Output: the effective model (implied dead-letter topics added, each projection's event
//! list resolved), what is known of each event type (schema, record name, subject), and every
//! problem found. A check whose input value was already reported as wrong finds no position for
//! it and stays quiet, so one mistake gives one message. Pure, apart from what `read_schema` does.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::EventInfo;
use super::columns::{FieldPath, Step, path_column, payload_columns};
use super::diagnostics::{Issue, did_you_mean};
use super::model::{
    CleanupPolicy, DocumentField, OnErase, ProjectionConfig, SinkConfig, StateColumn, SubjectStrategy, TopicConfig,
    TopologyConfig,
};
use super::parse::{Parsed, Spans, display_path, string_offset};
use super::schema::{EventSchema, SchemaError, inspect, is_envelope_field};

mod analytics;
mod cdc;
mod tables;

/// What validation derives for a projection: its event types, and the columns of its declared
/// tables and of its state tables, by table.
#[derive(Debug, Default)]
struct Resolved {
    events: Vec<String>,
    tables: BTreeMap<String, Vec<super::columns::TableColumn>>,
    state: BTreeMap<String, Vec<StateColumn>>,
}

/// The effective model and the event types it knows completely.
#[derive(Debug)]
pub(crate) struct Validated {
    pub(crate) config: TopologyConfig,
    pub(crate) events: BTreeMap<String, EventInfo>,
}

/// Runs every cross-check on `parsed` (the text `src` of the topology file in `base_dir`).
pub(crate) fn validate(
    src: &str,
    base_dir: &Path,
    parsed: Parsed,
    read_schema: &mut dyn FnMut(&Path) -> io::Result<String>,
) -> (Validated, Vec<Issue>) {
    let Parsed { mut config, spans, mut issues } = parsed;
    let mut check = Checker { src, spans: &spans, config: &config, issues: Vec::new() };
    let schemas = check.events(base_dir, read_schema);
    check.subjects(&schemas);
    check.topics();
    let resolved: BTreeMap<String, Resolved> =
        config.projections.iter().map(|(name, p)| (name.clone(), check.projection(name, p, &schemas))).collect();
    check.groups_and_dlqs();
    check.cdc(&schemas);
    issues.append(&mut check.issues);

    for (name, Resolved { events, tables, state }) in resolved {
        if let Some(p) = config.projections.get_mut(&name) {
            p.events = events;
            if let SinkConfig::ClickHouse { clickhouse } = &mut p.sink {
                for (table, columns) in tables {
                    if let Some(declared) = clickhouse.tables.get_mut(&table) {
                        declared.resolved = columns;
                    }
                }
                for (table, columns) in state {
                    if let Some(declared) = clickhouse.state.get_mut(&table) {
                        declared.resolved = columns;
                    }
                }
            }
        }
    }
    let implied: Vec<(String, u16, u16)> = config
        .projections
        .values()
        .filter(|p| !config.topics.contains_key(&p.dlq_topic))
        .map(|p| {
            let sources = || p.sources.iter().filter_map(|s| config.topics.get(s));
            let rf = sources().map(|t| t.replication_factor).max().unwrap_or(1);
            // Each source's is at most its replication factor, so at most `rf`.
            let min_insync = sources().map(|t| t.min_insync_replicas).max().unwrap_or(1);
            (p.dlq_topic.clone(), rf, min_insync)
        })
        .collect();
    for (dlq, rf, min_insync) in implied {
        let entry = config.topics.entry(dlq).or_insert_with(|| TopicConfig::implied_dlq(rf, min_insync));
        entry.replication_factor = entry.replication_factor.max(rf);
        entry.min_insync_replicas = entry.min_insync_replicas.max(min_insync);
    }

    let events = schemas
        .into_iter()
        .filter_map(|(event_type, (schema_path, text, schema))| {
            let event = config.events.get(&event_type)?;
            let topic = config.topics.get(&event.topic)?;
            Some((
                event_type.clone(),
                EventInfo {
                    subject: topic.subject_strategy.subject(&event.topic, &schema.record_name),
                    event_type,
                    topic: event.topic.clone(),
                    schema_path,
                    schema_text: text,
                    record_name: schema.record_name,
                    schema: schema.schema,
                    facts: schema.fields,
                },
            ))
        })
        .collect();
    (Validated { config, events }, issues)
}

/// A schema file that was read and passed [`inspect`]: its resolved path, text and facts.
type Schemas = BTreeMap<String, (PathBuf, String, EventSchema)>;

/// Event types published on `topic`.
fn events_on<'c>(config: &'c TopologyConfig, topic: &str) -> Vec<&'c str> {
    config.events.iter().filter(|(_, e)| e.topic == topic).map(|(t, _)| t.as_str()).collect()
}

struct Checker<'a> {
    src: &'a str,
    spans: &'a Spans,
    config: &'a TopologyConfig,
    issues: Vec<Issue>,
}

impl Checker<'_> {
    fn push(&mut self, issue: Issue) {
        self.issues.push(issue);
    }

    /// Each event's topic is declared; each schema file reads, parses and carries the envelope.
    fn events(&mut self, base_dir: &Path, read_schema: &mut dyn FnMut(&Path) -> io::Result<String>) -> Schemas {
        let mut schemas = Schemas::new();
        let topics: Vec<&str> = self.config.topics.keys().map(String::as_str).collect();
        for (event_type, event) in &self.config.events {
            if let Some(span) = self.spans.get(&["events", event_type, "topic"])
                && !self.config.topics.contains_key(&event.topic)
            {
                let hint = did_you_mean(&event.topic, &topics, true)
                    .unwrap_or_else(|| format!("declare it: [topics.{}]", display_path(&[&event.topic])));
                self.push(
                    Issue::error(
                        span,
                        format!("topic \"{}\" of event type \"{event_type}\" is not declared", event.topic),
                    )
                    .hint(hint),
                );
            }
            let Some(span) = self.spans.get(&["events", event_type, "schema"]) else { continue };
            let path = base_dir.join(&event.schema);
            let text = match read_schema(&path) {
                Ok(text) => text,
                Err(e) => {
                    self.push(
                        Issue::error(span, format!("cannot read schema file {}: {e}", path.display()))
                            .hint("schema paths are relative to the directory of the topology file"),
                    );
                    continue;
                }
            };
            match inspect(&text) {
                Ok(schema) => {
                    schemas.insert(event_type.clone(), (path, text, schema));
                }
                Err(e) => {
                    let hint = match e {
                        SchemaError::Invalid(_) => None,
                        SchemaError::NotARecord | SchemaError::Envelope(_) => Some(
                            "an event schema is a record that starts with the envelope: event_id, event_type, \
                             aggregate_id, aggregate_version, occurred_at, producer, correlation_id, causation_id, \
                             traceparent, tracestate"
                                .to_owned(),
                        ),
                    };
                    for message in e.messages() {
                        let issue = Issue::error(span.clone(), format!("schema {}: {message}", event.schema));
                        self.push(issue.maybe_hint(hint.clone()));
                    }
                }
            }
        }
        schemas
    }

    /// Under `RecordNameStrategy` the subject is the record name, shared by every topic: two
    /// event types with one record name would overwrite each other's schema lineage.
    fn subjects(&mut self, schemas: &Schemas) {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (event_type, (_, _, schema)) in schemas {
            let Some(topic) = self.config.events.get(event_type).and_then(|e| self.config.topics.get(&e.topic)) else {
                continue;
            };
            if topic.subject_strategy != SubjectStrategy::Record {
                continue;
            }
            match seen.get(schema.record_name.as_str()) {
                Some(first) => {
                    let span = self.spans.get(&["events", event_type, "schema"]).unwrap_or(0..0);
                    let message = format!(
                        "event types \"{first}\" and \"{event_type}\" both use record {}: with subject_strategy = \"record\" they would share one subject",
                        schema.record_name
                    );
                    self.push(
                        Issue::error(span, message).hint("give each event type its own record name or namespace"),
                    );
                }
                None => {
                    seen.insert(&schema.record_name, event_type);
                }
            }
        }
    }

    /// Subject strategy against the number of event types; retention of compacted topics; topics
    /// nothing uses.
    fn topics(&mut self) {
        let dlqs: BTreeSet<&str> = self.config.projections.values().map(|p| p.dlq_topic.as_str()).collect();
        // A mistyped event topic leaves the intended topic empty: say it once, not twice.
        let dangling = self.config.events.values().any(|e| !self.config.topics.contains_key(&e.topic));
        for (name, topic) in &self.config.topics {
            let events = events_on(self.config, name);
            if events.len() > 1 && topic.subject_strategy == SubjectStrategy::Topic {
                let span = self
                    .spans
                    .get(&["topics", name, "subject_strategy"])
                    .or_else(|| self.spans.get(&["topics", name]))
                    .unwrap_or(0..0);
                self.push(Issue::error(
                    span,
                    format!(
                        "topic \"{name}\" carries {} event types ({}), so its subject_strategy must be \"record\"",
                        events.len(),
                        events.join(", ")
                    ),
                ).hint(
                    "set `subject_strategy = \"record\"`: \"topic\" names one subject per topic, which holds one event type",
                ));
            }
            if topic.cleanup_policy == CleanupPolicy::Compact
                && let Some(span) = self.spans.get(&["topics", name, "retention"])
            {
                self.issues.push(
                    Issue::warning(span, "`retention` has no effect with cleanup_policy = \"compact\"")
                        .hint("use cleanup_policy = \"compact,delete\" to also delete by age"),
                );
            }
            if events.is_empty() && !dlqs.contains(name.as_str()) && !dangling {
                let span = self.spans.get(&["topics", name]).unwrap_or(0..0);
                self.push(Issue::warning(
                    span,
                    format!("topic \"{name}\" carries no event type and is no projection's dead-letter topic"),
                ));
            }
        }
    }

    /// Sources, the events filter, and the references to event types and fields of one
    /// projection. Returns its resolved event types and the columns of its declared tables.
    fn projection(&mut self, name: &str, p: &ProjectionConfig, schemas: &Schemas) -> Resolved {
        let topics: Vec<&str> = self.config.topics.keys().map(String::as_str).collect();
        // The event list is only trusted (to check references against) when every source and
        // filter entry resolved; otherwise those checks would repeat the same mistake.
        let mut complete = self.spans.get(&["projections", name, "sources"]).is_some();
        for (i, source) in p.sources.iter().enumerate() {
            let index = i.to_string();
            let Some(span) = self.spans.get(&["projections", name, "sources", &index]) else {
                complete = false;
                continue;
            };
            if !self.config.topics.contains_key(source) {
                complete = false;
                self.push(
                    Issue::error(span, format!("source topic \"{source}\" is not declared"))
                        .maybe_hint(did_you_mean(source, &topics, true)),
                );
            }
        }
        let events = if p.events.is_empty() {
            // An empty or broken filter was reported; "every event" is not what was meant.
            if self.spans.get(&["projections", name, "events"]).is_some()
                || self.spans.is_broken(&["projections", name, "events"])
            {
                complete = false;
            }
            let all: Vec<String> = self
                .config
                .events
                .iter()
                .filter(|(_, e)| p.sources.contains(&e.topic))
                .map(|(t, _)| t.clone())
                .collect();
            if all.is_empty()
                && complete
                && let Some(span) = self.spans.get(&["projections", name, "sources"])
            {
                self.push(Issue::error(
                    span,
                    format!("no event type is published on the sources of projection \"{name}\""),
                ));
            }
            all
        } else {
            let kept = self.filter(name, p);
            complete &= kept.len() == p.events.len() && self.spans.get(&["projections", name, "events"]).is_some();
            kept
        };
        if !complete {
            return Resolved { events, ..Resolved::default() };
        }

        let known: Vec<&str> = events.iter().map(String::as_str).collect();
        let bp = &p.backpressure;
        self.members(&known, &["projections", name, "backpressure", "critical_events"], &bp.critical_events, name);
        if let SinkConfig::Couchbase { couchbase } = &p.sink {
            self.members(&known, &["projections", name, "couchbase", "erase_on"], &couchbase.erase_on, name);
            if couchbase.erase_on.is_empty()
                && couchbase.on_erase != OnErase::default()
                && let Some(span) = self.spans.get(&["projections", name, "couchbase", "on_erase"])
            {
                self.push(
                    Issue::warning(span, "`on_erase` has no effect without `erase_on`: nothing erases a document")
                        .hint("list the event types that erase the entity in `erase_on`"),
                );
            }
            // Field checks need every event's schema; a broken one was reported already.
            let facts: Option<Vec<(&str, &EventSchema)>> =
                known.iter().map(|t| schemas.get(*t).map(|(_, _, s)| (*t, s))).collect();
            if let Some(facts) = facts.filter(|f| !f.is_empty()) {
                self.placeholders(
                    name,
                    couchbase.document_id.fields().collect(),
                    couchbase.document_id.as_str(),
                    &facts,
                );
                if let Some(fields) = &couchbase.fields {
                    self.mapping(name, fields, &facts, &known);
                }
            }
        }
        let SinkConfig::ClickHouse { clickhouse } = &p.sink else {
            return Resolved { events, ..Resolved::default() };
        };
        let tables = self.declared_tables(name, clickhouse, &known, schemas);
        let state = self.derived_tables(name, clickhouse, &known, schemas, &tables);
        Resolved { events, tables, state }
    }

    /// The `events` filter: each is a declared event type on one of the sources.
    fn filter(&mut self, name: &str, p: &ProjectionConfig) -> Vec<String> {
        let all: Vec<&str> = self.config.events.keys().map(String::as_str).collect();
        let mut kept = Vec::new();
        for (i, event_type) in p.events.iter().enumerate() {
            let index = i.to_string();
            let Some(span) = self.spans.get(&["projections", name, "events", &index]) else { continue };
            match self.config.events.get(event_type) {
                None => {
                    self.push(
                        Issue::error(span, format!("unknown event type \"{event_type}\""))
                            .maybe_hint(did_you_mean(event_type, &all, true)),
                    );
                }
                Some(e) if !p.sources.contains(&e.topic) => {
                    self.push(Issue::error(
                        span,
                        format!("event type \"{event_type}\" is published on \"{}\", which is not a source of projection \"{name}\"", e.topic),
                    ).hint(format!("add \"{}\" to `sources`", e.topic)));
                }
                Some(_) => kept.push(event_type.clone()),
            }
        }
        kept
    }

    /// Each of `list` (at `path`) is one of the projection's event types.
    fn members(&mut self, known: &[&str], path: &[&str], list: &[String], projection: &str) {
        for (i, event_type) in list.iter().enumerate() {
            let index = i.to_string();
            let mut item = path.to_vec();
            item.push(&index);
            if let Some(span) = self.spans.get(&item)
                && !known.contains(&event_type.as_str())
            {
                let hint = did_you_mean(event_type, known, true).or_else(|| {
                    Some(format!("the event types of projection \"{projection}\" are: {}", known.join(", ")))
                });
                self.push(
                    Issue::error(
                        span,
                        format!(
                            "\"{event_type}\" in `{}` is not an event type of projection \"{projection}\"",
                            display_path(path)
                        ),
                    )
                    .maybe_hint(hint),
                );
            }
        }
    }

    /// `document_id` placeholders: in every event, never null, short text.
    fn placeholders(&mut self, name: &str, fields: Vec<(usize, &str)>, template: &str, facts: &[(&str, &EventSchema)]) {
        let Some(span) = self.spans.get(&["projections", name, "couchbase", "document_id"]) else { return };
        for (offset, field) in fields {
            let at = string_offset(self.src, span.clone(), template, offset, field.len() + 2);
            let missing: Vec<&str> =
                facts.iter().filter(|(_, s)| !s.fields.contains_key(field)).map(|(t, _)| *t).collect();
            let nullable: Vec<&str> = facts
                .iter()
                .filter(|(_, s)| s.fields.get(field).is_some_and(|f| f.nullable))
                .map(|(t, _)| *t)
                .collect();
            let not_scalar: Vec<&str> =
                facts.iter().filter(|(_, s)| s.fields.get(field).is_some_and(|f| !f.scalar)).map(|(t, _)| *t).collect();
            if !missing.is_empty() {
                let common: BTreeSet<&str> = facts
                    .iter()
                    .map(|(_, s)| s.fields.keys().map(String::as_str).collect::<BTreeSet<_>>())
                    .reduce(|a, b| a.intersection(&b).copied().collect())
                    .unwrap_or_default();
                let candidates: Vec<&str> = common.iter().copied().collect();
                let hint = did_you_mean(field, &candidates, false).unwrap_or_else(|| {
                    "a placeholder is an envelope field (aggregate_id, event_id, …) or a field every event \
                     of the projection carries"
                        .to_owned()
                });
                self.push(
                    Issue::error(
                        at,
                        format!("placeholder {{{field}}} of `document_id` is not a field of {}", missing.join(", ")),
                    )
                    .hint(hint),
                );
            } else if !nullable.is_empty() {
                self.push(
                    Issue::error(
                        at,
                        format!("placeholder {{{field}}} of `document_id` can be null (in {})", nullable.join(", ")),
                    )
                    .hint("a document id needs a value from every event: use a field that is never null"),
                );
            } else if !not_scalar.is_empty() {
                self.push(Issue::error(
                    at,
                    format!(
                        "placeholder {{{field}}} of `document_id` is not a string or a number (in {})",
                        not_scalar.join(", ")
                    ),
                ));
            }
        }
    }

    /// `fields` mapping: every path leads to a field of at least one event of the projection (an
    /// envelope field is in all); a flag's event types are the projection's, each setting or
    /// clearing it, not both.
    fn mapping(
        &mut self,
        name: &str,
        fields: &BTreeMap<String, DocumentField>,
        facts: &[(&str, &EventSchema)],
        known: &[&str],
    ) {
        // What a misspelt path most likely meant: every field and every path to a leaf.
        let mut candidates: BTreeSet<String> = facts.iter().flat_map(|(_, s)| s.fields.keys().cloned()).collect();
        candidates.extend(facts.iter().flat_map(|(_, s)| payload_columns(&s.schema)).map(|c| c.path.to_string()));
        let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let leads_somewhere = |path: &FieldPath, doc_field: &str| match path.0.as_slice() {
            [Step::Field(field)] if is_envelope_field(field) => true,
            _ => facts.iter().any(|(_, s)| path_column(&s.schema, doc_field, path).is_some()),
        };
        for (doc_field, source) in fields {
            let base = ["projections", name, "couchbase", "fields", doc_field.as_str()];
            match source {
                DocumentField::First(paths) => {
                    for (i, path) in paths.iter().enumerate() {
                        let index = i.to_string();
                        let Some(span) = self.spans.get(&[&base[..], &[&index]].concat()) else { continue };
                        if !leads_somewhere(path, doc_field) {
                            let text = path.to_string();
                            self.push(
                                Issue::error(
                                    span,
                                    format!("no event of projection \"{name}\" has a field `{text}` (for document field `{doc_field}`)"),
                                )
                                .maybe_hint(did_you_mean(&text, &candidates, false)),
                            );
                        }
                    }
                }
                DocumentField::Flag { set_by, cleared_by } => {
                    self.members(known, &[&base[..], &["set_by"]].concat(), set_by, name);
                    self.members(known, &[&base[..], &["cleared_by"]].concat(), cleared_by, name);
                    for (i, event_type) in cleared_by.iter().enumerate() {
                        let index = i.to_string();
                        let Some(span) = self.spans.get(&[&base[..], &["cleared_by", &index]].concat()) else {
                            continue;
                        };
                        if set_by.contains(event_type) {
                            self.push(
                                Issue::error(span, format!("\"{event_type}\" both sets and clears flag `{doc_field}`"))
                                    .hint("list it in one of `set_by` and `cleared_by`"),
                            );
                        }
                    }
                }
            }
        }
    }

    /// Consumer groups are one per projection; a dead-letter topic carries no events and is
    /// nobody's source.
    fn groups_and_dlqs(&mut self) {
        let config = self.config;
        let spans = self.spans;
        let at = |name: &str, key: &str| spans.get(&["projections", name, key]);
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, p) in &config.projections {
            groups.entry(&p.group).or_default().push(name);
        }
        for (group, members) in groups.into_iter().filter(|(_, m)| m.len() > 1) {
            // Point at a `group` someone wrote, else at the last projection that took the default.
            let span = members
                .iter()
                .find_map(|name| at(name, "group"))
                .or_else(|| members.last().and_then(|name| spans.get(&["projections", name])))
                .unwrap_or(0..0);
            let names: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
            self.push(
                Issue::error(span, format!("projections {} share the consumer group \"{group}\"", names.join(" and ")))
                    .hint("each projection needs its own group, or they split the partitions between them"),
            );
        }
        for (name, p) in &config.projections {
            let span = |key: &str| at(name, key).or_else(|| spans.get(&["projections", name]));
            let carried = events_on(config, &p.dlq_topic);
            if !carried.is_empty() {
                let at = span("dlq_topic").unwrap_or(0..0);
                let message = format!(
                    "dead-letter topic \"{}\" of projection \"{name}\" also carries events ({})",
                    p.dlq_topic,
                    carried.join(", ")
                );
                self.push(Issue::error(at, message).hint("dead letters need a topic of their own"));
            }
            let sourced: Vec<&str> = config
                .projections
                .iter()
                .filter(|(_, other)| other.sources.contains(&p.dlq_topic))
                .map(|(n, _)| n.as_str())
                .collect();
            if !sourced.is_empty() && carried.is_empty() {
                let at = span("dlq_topic").unwrap_or(0..0);
                self.push(Issue::warning(
                    at,
                    format!(
                        "dead-letter topic \"{}\" of projection \"{name}\" is a source of {}",
                        p.dlq_topic,
                        sourced.join(", ")
                    ),
                ));
            }
        }
    }
}
