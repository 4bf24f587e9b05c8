//! Reading `topology.toml` into the model, reporting every problem of structure at once.
//!
//! The text comes from the caller. It is parsed into `toml`'s spanned tree
//! ([`toml::de::DeTable::parse_recoverable`]), which keeps the byte range of every key and value;
//! this module walks that tree table by table. Unknown keys, wrong types, bad values and missing
//! keys all become [`Issue`]s with their position, and the walk goes on, so one run shows every
//! problem (a derived `Deserialize` stops at the first). Defaults are filled in here; checks that
//! need other sections or the schema files are in [`super::validate`]. Pure code.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use toml::de::DeTable;

use super::diagnostics::Issue;
use super::model::{Compatibility, EventConfig, RegistryConfig, TopologyConfig};

mod cdc;
mod clickhouse;
mod connections;
mod couchbase;
mod names;
mod projections;
mod topics;
mod walker;

#[cfg(test)]
mod tests;

use names::valid_topic_name;
pub(crate) use names::{display_path, valid_event_type, valid_kafka_brokers, valid_projection_name};
use walker::{Secrets, Table, Walker};

/// Byte ranges of the values read, by path (`["projections", "user_state", "sources", "0"]`).
/// Tables are recorded at their own path (the range of their `[header]` or `{ … }`). A path is
/// present only when its value was read without error, so a cross-check that finds no range
/// knows the problem was already reported.
#[derive(Debug, Default)]
pub(crate) struct Spans(HashMap<String, Range<usize>>, HashSet<String>);

impl Spans {
    fn key<S: AsRef<str>>(path: &[S]) -> String {
        path.iter().map(AsRef::as_ref).collect::<Vec<_>>().join("\u{1f}")
    }

    pub(crate) fn get(&self, path: &[&str]) -> Option<Range<usize>> {
        self.0.get(&Self::key(path)).cloned()
    }

    fn insert(&mut self, path: &[String], span: Range<usize>) {
        self.0.insert(Self::key(path), span);
    }

    /// Marks a value that is present but was wrong (and reported).
    fn mark_broken(&mut self, path: &[String]) {
        self.1.insert(Self::key(path));
    }

    /// Forgets the position of a value found wrong after it was read, and marks it broken.
    fn forget(&mut self, path: &[String]) {
        self.0.remove(&Self::key(path));
        self.mark_broken(path);
    }

    /// True for a value that is present but was wrong, so that a default stands in for it.
    pub(crate) fn is_broken(&self, path: &[&str]) -> bool {
        self.1.contains(&Self::key(path))
    }
}

/// The result of the walk: the model (with placeholders where a value was wrong, which never
/// matters because any issue makes the topology unusable), where each value came from, and the
/// problems found.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) config: TopologyConfig,
    pub(crate) spans: Spans,
    pub(crate) issues: Vec<Issue>,
}

/// Parses topology text. Syntax errors stop the walk: a tree recovered from broken TOML would
/// only add noise.
pub(crate) fn parse(src: &str) -> Parsed {
    let (root, errors) = DeTable::parse_recoverable(src);
    let mut w = Walker { src, spans: Spans::default(), issues: Vec::new() };
    if !errors.is_empty() {
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            w.issues.push(Issue::error(span, format!("invalid TOML: {}", e.message().trim_end())));
        }
        return Parsed { config: TopologyConfig::default(), spans: w.spans, issues: w.issues };
    }
    let mut top = Table::new(Vec::new(), root.get_ref(), 0..0, Secrets::Other);
    let config = w.document(&mut top);
    top.finish(&mut w);
    Parsed { config, spans: w.spans, issues: w.issues }
}

impl Walker<'_> {
    fn document(&mut self, top: &mut Table<'_, '_>) -> TopologyConfig {
        let mut config = TopologyConfig::default();
        if let Some(mut t) = self.table(top, "connections", Secrets::Connections) {
            config.connections = self.connections(&mut t);
            t.finish(self);
        }
        if let Some(mut t) = self.table(top, "registry", Secrets::Other) {
            let compatibility = self.choice(&mut t, "compatibility", Compatibility::NAMES);
            config.registry = RegistryConfig { compatibility: compatibility.unwrap_or_default() };
            t.finish(self);
        }
        // Every key of a map-of-tables section is a name, so there is no unknown key to look for.
        if let Some(section) = self.table(top, "topics", Secrets::Other) {
            let rule = "use letters, digits, `.`, `_` and `-` (Kafka's topic names)";
            for (name, mut t) in self.entities(&section, valid_topic_name, rule) {
                let topic = self.topic(&mut t);
                t.finish(self);
                config.topics.insert(name, topic);
            }
        }
        // Every key of a map-of-tables section is a name, so there is no unknown key to look for.
        if let Some(section) = self.table(top, "events", Secrets::Other) {
            let rule = "event types are dotted and lower case, e.g. \"invoice.paid\"";
            for (name, mut t) in self.entities(&section, valid_event_type, rule) {
                let topic = self.string(&mut t, "topic");
                let topic = t.require(self, "topic", topic, "\"<topic name>\"");
                let schema = self.string(&mut t, "schema");
                let schema = t.require(self, "schema", schema, "\"schemas/<file>.avsc\"");
                t.finish(self);
                config
                    .events
                    .insert(name, EventConfig { topic: topic.unwrap_or_default(), schema: schema.unwrap_or_default() });
            }
        }
        // Every key of a map-of-tables section is a name, so there is no unknown key to look for.
        if let Some(section) = self.table(top, "projections", Secrets::Other) {
            let rule = "use letters, digits, `_` and `-`";
            for (name, mut t) in self.entities(&section, valid_projection_name, rule) {
                let projection = self.projection(&name, &mut t);
                t.finish(self);
                config.projections.insert(name, projection);
            }
        }
        // Every key of a map-of-tables section is a name, so there is no unknown key to look for.
        if let Some(section) = self.table(top, "cdc", Secrets::Other) {
            let rule = "use letters, digits, `_` and `-`";
            for (name, mut t) in self.entities(&section, valid_projection_name, rule) {
                let source = self.cdc_source(&mut t);
                t.finish(self);
                config.cdc.insert(name, source);
            }
        }
        config
    }
}

/// The range of `text[offset..offset + len]` inside the TOML string literal at `span`, when the
/// literal is written without escapes (then its bytes are the text's); else the whole literal.
pub(crate) fn string_offset(src: &str, span: Range<usize>, text: &str, offset: usize, len: usize) -> Range<usize> {
    let inner = src.get(span.start + 1..span.end.saturating_sub(1));
    if inner == Some(text) && offset + len <= text.len() {
        let at = span.start + 1 + offset;
        at..at + len
    } else {
        span
    }
}
