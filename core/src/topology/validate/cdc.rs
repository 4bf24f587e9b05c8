//! The cross-checks of `[cdc.<name>]` sources: their topic and event types are declared and fit
//! together, and every column mapping names a field of the event schema that its conversion can
//! produce.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::Schema;
use apache_avro::schema::RecordField;

use super::super::diagnostics::{Issue, did_you_mean};
use super::super::model::{CdcFormat, CdcSourceConfig, DebeziumConfig, SubjectStrategy};
use super::super::parse::display_path;
use super::super::schema::is_envelope_field;
use super::{Checker, Schemas};
use crate::cdc::{Target, check_target};

/// The fields of a record schema by name (empty for anything else).
fn record_fields(schema: &Schema) -> BTreeMap<&str, &RecordField> {
    match schema {
        Schema::Record(r) => r.fields.iter().map(|f| (f.name.as_str(), f)).collect(),
        _ => BTreeMap::new(),
    }
}

impl Checker<'_> {
    pub(super) fn cdc(&mut self, schemas: &Schemas) {
        let config = self.config;
        let topics: Vec<&str> = config.topics.keys().map(String::as_str).collect();
        let mut readers: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, source) in &config.cdc {
            if let Some(span) = self.spans.get(&["cdc", name, "topic"]) {
                match config.topics.get(&source.topic) {
                    None => {
                        let hint = did_you_mean(&source.topic, &topics, true).unwrap_or_else(|| {
                            format!(
                                "declare it, so projections can consume it: [topics.{}]",
                                display_path(&[&source.topic])
                            )
                        });
                        self.push(
                            Issue::error(
                                span.clone(),
                                format!("topic \"{}\" of CDC source \"{name}\" is not declared", source.topic),
                            )
                            .hint(hint),
                        );
                    }
                    Some(topic) if topic.subject_strategy != SubjectStrategy::Record => {
                        self.push(
                            Issue::error(
                                span.clone(),
                                format!(
                                    "CDC topic \"{}\" must name its subjects by record (subject_strategy = \"record\")",
                                    source.topic
                                ),
                            )
                            .hint("under \"topic\", sluice would register its event schemas as \"<topic>-value\", the connector's own subject"),
                        );
                    }
                    Some(_) => {}
                }
                if let Some(first) = readers.insert(&source.topic, name) {
                    self.push(Issue::error(
                        span,
                        format!("CDC sources \"{first}\" and \"{name}\" both read topic \"{}\"", source.topic),
                    ));
                }
            }
            self.cdc_event_types(name, source);
            if let CdcFormat::Debezium(d) = &source.format {
                self.cdc_columns(name, d, schemas);
            }
        }
        // A CDC topic carries the connector's records: a sluice event type published there by a
        // producer would not be one its worker can read.
        for (event_type, event) in &config.events {
            let Some((name, source)) = config.cdc.iter().find(|(_, s)| s.topic == event.topic) else { continue };
            if self.cdc_event_types_read(name, source)
                && !source.event_types().contains(&event_type.as_str())
                && let Some(span) = self.spans.get(&["events", event_type, "topic"])
            {
                self.push(
                    Issue::error(
                        span,
                        format!(
                            "event type \"{event_type}\" is published on CDC topic \"{}\", but CDC source \"{name}\" never emits it",
                            event.topic
                        ),
                    )
                    .hint("a CDC topic carries the connector's records; publish the event type on a topic of its own"),
                );
            }
        }
    }

    /// Whether every event type of a source was read without error (else what it emits is not
    /// known, and the checks that need it stay quiet).
    fn cdc_event_types_read(&self, name: &str, source: &CdcSourceConfig) -> bool {
        if !source.event_types().iter().all(|t| self.config.events.contains_key(*t)) {
            return false;
        }
        match &source.format {
            CdcFormat::Debezium(_) => {
                ["upsert_event", "delete_event"].iter().all(|k| self.spans.get(&["cdc", name, k]).is_some())
            }
            CdcFormat::Outbox(o) => {
                self.spans.get(&["cdc", name, "events"]).is_some()
                    && o.events.keys().all(|k| self.spans.get(&["cdc", name, "events", k]).is_some())
            }
        }
    }

    /// The event types a source emits are declared, on the source's topic.
    fn cdc_event_types(&mut self, name: &str, source: &CdcSourceConfig) {
        let config = self.config;
        let all: Vec<&str> = config.events.keys().map(String::as_str).collect();
        let places: Vec<(Vec<&str>, &str)> = match &source.format {
            CdcFormat::Debezium(d) => vec![
                (vec!["cdc", name, "upsert_event"], d.upsert_event.as_str()),
                (vec!["cdc", name, "delete_event"], d.delete_event.as_str()),
            ],
            CdcFormat::Outbox(o) => {
                o.events.iter().map(|(k, t)| (vec!["cdc", name, "events", k.as_str()], t.as_str())).collect()
            }
        };
        // An undeclared topic was reported: every event type would be "elsewhere" too.
        let topic_known = config.topics.contains_key(&source.topic);
        for (path, event_type) in places {
            let Some(span) = self.spans.get(&path) else { continue };
            match config.events.get(event_type) {
                None => self.push(
                    Issue::error(span, format!("unknown event type \"{event_type}\""))
                        .maybe_hint(did_you_mean(event_type, &all, true))
                        .hint_if_none(format!(
                            "declare it: [events.\"{event_type}\"] with topic = \"{}\" and its schema",
                            source.topic
                        )),
                ),
                Some(e) if e.topic != source.topic && topic_known => self.push(
                    Issue::error(
                        span,
                        format!(
                            "event type \"{event_type}\" is published on \"{}\", not on the CDC topic \"{}\"",
                            e.topic, source.topic
                        ),
                    )
                    .hint(format!("set `topic = \"{}\"` in [events.\"{event_type}\"]", source.topic)),
                ),
                Some(_) => {}
            }
        }
    }

    /// Every mapped field is a payload field of the upsert event that its conversion can produce;
    /// every field of the upsert event without a default is mapped; every field of the delete
    /// event without a default comes from a key column (the only ones a delete surely carries).
    fn cdc_columns(&mut self, name: &str, d: &DebeziumConfig, schemas: &Schemas) {
        let (Some((_, _, upsert)), Some(_)) = (schemas.get(&d.upsert_event), self.spans.get(&["cdc", name, "columns"]))
        else {
            return;
        };
        let fields = record_fields(&upsert.schema);
        let candidates: Vec<&str> = fields.keys().copied().filter(|f| !is_envelope_field(f)).collect();
        // A misspelt field leaves the intended one unmapped: say it once.
        let mut misspelt = false;
        for (field, mapping) in &d.columns {
            let Some(span) = self.spans.get(&["cdc", name, "columns", field]) else { continue };
            if is_envelope_field(field) {
                self.push(
                    Issue::error(span, format!("`{field}` is an envelope field: the mapper sets it, no column does"))
                        .hint(
                            "the key columns make aggregate_id, source.lsn aggregate_version, source.ts_ms occurred_at",
                        ),
                );
                continue;
            }
            let Some(record_field) = fields.get(field.as_str()) else {
                misspelt = true;
                self.push(
                    Issue::error(
                        span,
                        format!(
                            "event type \"{}\" has no field `{field}` (mapped from column `{}`)",
                            d.upsert_event, mapping.column
                        ),
                    )
                    .maybe_hint(did_you_mean(field, &candidates, false)),
                );
                continue;
            };
            if let Err(why) = check_target(mapping, &Target::of(record_field)) {
                let at = self.spans.get(&["cdc", name, "columns", field, "type"]).unwrap_or(span);
                self.push(Issue::error(at, format!("column `{}` → field `{field}`: {why}", mapping.column)));
            }
        }
        let unmapped: Vec<&str> = candidates
            .iter()
            .copied()
            .filter(|f| !d.columns.contains_key(*f) && fields.get(f).is_some_and(|r| r.default.is_none()))
            .collect();
        if !unmapped.is_empty()
            && !misspelt
            && let Some(span) = self.spans.get(&["cdc", name, "columns"])
        {
            self.push(
                Issue::error(
                    span,
                    format!(
                        "field{} {} of event type \"{}\" {} no column and no default",
                        plural(&unmapped),
                        unmapped.join(", "),
                        d.upsert_event,
                        if unmapped.len() == 1 { "has" } else { "have" }
                    ),
                )
                .hint("map each to a column, or give it a default in the schema"),
            );
        }
        let Some((_, _, delete)) = schemas.get(&d.delete_event) else { return };
        let Some(span) = self.spans.get(&["cdc", name, "delete_event"]) else { return };
        if d.key.is_empty() || self.spans.get(&["cdc", name, "key"]).is_none() {
            return;
        }
        let key: BTreeSet<&str> = d.key.iter().map(String::as_str).collect();
        let mut from_key = Vec::new();
        for (field, record_field) in record_fields(&delete.schema) {
            if is_envelope_field(field) || record_field.default.is_some() {
                continue;
            }
            match d.columns.get(field) {
                Some(m) if key.contains(m.column.as_str()) => {
                    // Checked already when the upsert event's field has the same type.
                    let target = Target::of(record_field);
                    let checked = fields.get(field).is_some_and(|f| Target::of(f) == target);
                    if !checked && let Err(why) = check_target(m, &target) {
                        self.push(Issue::error(
                            span.clone(),
                            format!("column `{}` → field `{field}` of \"{}\": {why}", m.column, d.delete_event),
                        ));
                    }
                }
                _ => from_key.push(field),
            }
        }
        if !from_key.is_empty() {
            self.push(
                Issue::error(
                    span,
                    format!(
                        "field{} {} of delete event \"{}\" {} no default and no key column",
                        plural(&from_key),
                        from_key.join(", "),
                        d.delete_event,
                        if from_key.len() == 1 { "has" } else { "have" }
                    ),
                )
                .hint("a delete's before image holds only the key columns (REPLICA IDENTITY DEFAULT): map the field from a key column, or make it nullable with default null"),
            );
        }
    }
}

fn plural<T>(items: &[T]) -> &'static str {
    if items.len() == 1 { "" } else { "s" }
}
