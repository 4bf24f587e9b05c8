//! The declarative topology: which topics exist, which event types go on which topic with which
//! Avro schema, and which projections fold which events into which sink.
//!
//! It comes from `topology.toml` (and the `.avsc` files it names) and goes to every other part of
//! sluice: producers look up an event type's topic, key and registry subject; workers look up
//! their projection; the CLI creates topics and registers subjects from it, and
//! `sluice topology check` prints its [`Report`].
//!
//! Loading is parse → validate, both pure: [`Topology::from_parts`] takes the text and a function
//! reading schema files, so tests need no files; [`Topology::load`] is the same with the real file
//! system. Every problem is reported at once, each at `file:line:column` with a hint.

pub mod columns;
mod diagnostics;
mod duration;
pub mod init;
mod model;
mod parse;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use thiserror::Error;

pub use diagnostics::{Diagnostic, Report, Severity};
pub use duration::{DurationError, HumanDuration, Retention};
pub use model::{
    Aggregate, BackpressureConfig, COUCHBASE_DEFAULT_COLLECTION, CdcEncoding, CdcFormat, CdcSourceConfig,
    CleanupPolicy, ClickHouseSink, ColumnKind, ColumnMapping, Compatibility, ConnectionDefaults, CouchbaseDurability,
    CouchbaseSink, DEBEZIUM_UNAVAILABLE_VALUE, DEFAULT_BATCH_SIZE, DEFAULT_KEY, DEFAULT_KEY_COLUMN, DEFAULT_LINGER,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_PARTITION_BY, DEFAULT_ROLLUP_TIME, DebeziumConfig, DecimalHandling, DeclaredTable,
    DocumentField, DocumentId, EventConfig, FieldRef, FieldSource, FilterValue, IdPart, KeyMismatchPolicy,
    MAX_IN_FLIGHT_LIMIT, Measure, MeasureError, OnErase, OutboxConfig, ProjectionConfig, RegistryConfig, Rollup,
    STATE_RESERVED_COLUMNS, SinkConfig, SinkKind, StateChange, StateColumn, StateTable, SubjectStrategy, TableEngine,
    TemplateError, TimeBucket, TimeUnit, TopicConfig, TopologyConfig, default_min_insync_replicas,
};
pub use schema::{KEY_FIELDS, is_envelope_field};

/// The file name `sluice` looks for when no `--file` is given.
pub const DEFAULT_FILE: &str = "topology.toml";

/// Why a topology could not be loaded.
#[derive(Debug, Error)]
pub enum TopologyError {
    /// The topology file itself could not be read.
    #[error("cannot read topology file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file was read and has errors: the report lists them all.
    #[error("{0}")]
    Invalid(Report),
}

/// One event type, completely resolved: where it goes and what it looks like.
#[derive(Debug, Clone)]
pub struct EventInfo {
    /// The dotted event type (`user.registered`).
    pub event_type: String,
    /// The topic it is published on.
    pub topic: String,
    /// The schema file, as resolved against the topology file's directory.
    pub schema_path: PathBuf,
    /// The schema file's text, as registered with the registry.
    pub schema_text: String,
    /// The parsed schema.
    pub schema: Schema,
    /// The record's full name (`sluice.users.UserRegistered`).
    pub record_name: String,
    /// The registry subject under the topic's strategy (`sessions-value`, or the record name).
    pub subject: String,
    facts: BTreeMap<String, schema::FieldFacts>,
}

impl EventInfo {
    /// Every field name of the record, envelope included, in alphabetical order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.facts.keys().map(String::as_str)
    }

    /// The payload fields: every field but the envelope's.
    pub fn payload_fields(&self) -> impl Iterator<Item = &str> {
        self.fields().filter(|f| !is_envelope_field(f))
    }
}

/// A validated topology: every reference resolves, every schema carries the envelope.
#[derive(Debug, Clone)]
pub struct Topology {
    path: PathBuf,
    config: TopologyConfig,
    events: BTreeMap<String, EventInfo>,
    warnings: Report,
}

impl Topology {
    /// Reads and validates the topology file at `path` and the schema files it names.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| TopologyError::Read { path: path.to_owned(), source })?;
        Self::from_parts(&text, path, |schema| std::fs::read_to_string(schema)).map_err(TopologyError::Invalid)
    }

    /// Validates topology `text`, which comes from `path` (used for locations, and as the base of
    /// relative schema paths). `read_schema` is handed each schema path resolved against the
    /// directory of `path`. `Err` holds every problem found; warnings alone do not fail.
    pub fn from_parts(
        text: &str,
        path: &Path,
        mut read_schema: impl FnMut(&Path) -> io::Result<String>,
    ) -> Result<Self, Report> {
        // Cross-checks run even when the walk found problems: a value that was wrong has no
        // recorded position, so the checks that need it stay quiet instead of repeating it.
        let parsed = parse::parse(text);
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
        let (validated, issues) = validate::validate(text, base_dir, parsed, &mut read_schema);
        let report = Report::new(path, text, issues);
        if report.has_errors() {
            return Err(report);
        }
        Ok(Self { path: path.to_owned(), config: validated.config, events: validated.events, warnings: report })
    }

    /// The topology file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The effective model: defaults filled in, implied dead-letter topics added, each
    /// projection's `events` resolved.
    pub fn config(&self) -> &TopologyConfig {
        &self.config
    }

    /// Warnings found while validating (empty when there were none); print it after a check.
    pub fn warnings(&self) -> &Report {
        &self.warnings
    }

    /// The `[connections]` defaults.
    pub fn connections(&self) -> &ConnectionDefaults {
        &self.config.connections
    }

    /// The registry compatibility level of every subject.
    pub fn compatibility(&self) -> Compatibility {
        self.config.registry.compatibility
    }

    /// A topic, declared or implied (a projection's dead-letter topic).
    pub fn topic(&self, name: &str) -> Option<&TopicConfig> {
        self.config.topics.get(name)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = (&str, &TopicConfig)> {
        self.config.topics.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// An event type.
    pub fn event(&self, event_type: &str) -> Option<&EventInfo> {
        self.events.get(event_type)
    }

    /// Every event type, by name.
    pub fn events(&self) -> impl Iterator<Item = &EventInfo> {
        self.events.values()
    }

    /// The event types published on `topic`.
    pub fn events_on<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a EventInfo> + 'a {
        self.events.values().filter(move |e| e.topic == topic)
    }

    /// The registry subject of an event type's schema.
    pub fn subject(&self, event_type: &str) -> Option<&str> {
        self.event(event_type).map(|e| e.subject.as_str())
    }

    /// A projection.
    pub fn projection(&self, name: &str) -> Option<&ProjectionConfig> {
        self.config.projections.get(name)
    }

    /// Every projection, by name.
    pub fn projections(&self) -> impl Iterator<Item = (&str, &ProjectionConfig)> {
        self.config.projections.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// The projections that write to Couchbase, by name, with their Couchbase settings.
    pub fn couchbase_projections(&self) -> impl Iterator<Item = (&str, &CouchbaseSink)> {
        self.projections().filter_map(|(n, p)| match &p.sink {
            SinkConfig::Couchbase { couchbase } => Some((n, couchbase)),
            SinkConfig::ClickHouse { .. } => None,
        })
    }

    /// A change-data-capture source (`[cdc.<name>]`).
    pub fn cdc_source(&self, name: &str) -> Option<&CdcSourceConfig> {
        self.config.cdc.get(name)
    }

    /// Every change-data-capture source, by name.
    pub fn cdc_sources(&self) -> impl Iterator<Item = (&str, &CdcSourceConfig)> {
        self.config.cdc.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// The change-data-capture source reading `topic`, if any: a worker consuming it maps its
    /// records with [`crate::cdc::CdcMapper`] instead of decoding them as sluice events.
    pub fn cdc_source_on(&self, topic: &str) -> Option<(&str, &CdcSourceConfig)> {
        self.cdc_sources().find(|(_, s)| s.topic == topic)
    }

    /// The dead-letter topics of all projections.
    pub fn dlq_topics(&self) -> BTreeSet<&str> {
        self.config.projections.values().map(|p| p.dlq_topic.as_str()).collect()
    }
}
