//! The topology model: what `topology.toml` declares, with every default filled in.
//!
//! Values come from the parser in [`super::parse`] (which reads the TOML tree with positions so it
//! can report every problem at once) and are completed by [`super::validate`]; they go to the
//! producers (topic, key, subject of each event type), the workers (what each projection folds and
//! where it writes) and the CLI (topic and subject administration). `Serialize` prints the
//! effective topology, which is itself a valid topology file.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::columns::{FieldPath, TableColumn};
use super::duration::{HumanDuration, Retention};

/// Default `batch_size` of a projection.
pub const DEFAULT_BATCH_SIZE: u32 = 1000;
/// Default `linger` of a projection.
pub const DEFAULT_LINGER: HumanDuration = HumanDuration::from_millis(200);
/// Default `max_in_flight` of a projection: one write at a time (the next batch is collected
/// meanwhile). More pays off where a write waits on the network rather than on the server's CPU;
/// on a busy local server concurrent inserts only slow each other down (measured: ClickHouse 18.16
/// inserts took twice as long with two in flight).
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1;
/// Largest `max_in_flight` accepted (each write in flight holds up to a batch in memory).
pub const MAX_IN_FLIGHT_LIMIT: u32 = 16;
/// Default Kafka key of a topic: the envelope field that orders events of one entity.
pub const DEFAULT_KEY: &str = "aggregate_id";
/// Default Couchbase scope and collection.
pub const COUCHBASE_DEFAULT_COLLECTION: &str = "_default";

/// A whole topology file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TopologyConfig {
    /// `[connections]`: endpoint defaults, each overridden by its `SLUICE_*` variable.
    pub connections: ConnectionDefaults,
    /// `[registry]`: schema registry policy.
    pub registry: RegistryConfig,
    /// `[topics.<name>]`, by topic name; includes the implied dead-letter topics after validation.
    pub topics: BTreeMap<String, TopicConfig>,
    /// `[events."<type>"]`, by dotted event type (`user.registered`).
    pub events: BTreeMap<String, EventConfig>,
    /// `[projections.<name>]`, by projection name.
    pub projections: BTreeMap<String, ProjectionConfig>,
    /// `[cdc.<name>]`: change-data-capture sources, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cdc: BTreeMap<String, CdcSourceConfig>,
}

/// `[connections]`: where the services are when no `SLUICE_*` variable says otherwise. Never
/// credentials: those come only from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ConnectionDefaults {
    /// Kafka bootstrap servers (`SLUICE_KAFKA_BROKERS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_brokers: Option<String>,
    /// Confluent-API schema registry base URL (`SLUICE_SCHEMA_REGISTRY_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_registry_url: Option<String>,
    /// Couchbase connection string (`SLUICE_COUCHBASE_CONNSTR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub couchbase_connstr: Option<String>,
    /// Couchbase bucket of projections that name none (`SLUICE_COUCHBASE_BUCKET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub couchbase_bucket: Option<String>,
    /// ClickHouse HTTP URL (`SLUICE_CLICKHOUSE_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_url: Option<String>,
    /// ClickHouse database of projections that name none (`SLUICE_CLICKHOUSE_DATABASE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_database: Option<String>,
    /// ClickHouse cluster the tables are placed on (`SLUICE_CLICKHOUSE_CLUSTER`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_cluster: Option<String>,
}

impl ConnectionDefaults {
    /// Each `[connections]` key with the variable that overrides it.
    pub const VARIABLES: &'static [(&'static str, &'static str)] = &[
        ("kafka_brokers", "SLUICE_KAFKA_BROKERS"),
        ("schema_registry_url", "SLUICE_SCHEMA_REGISTRY_URL"),
        ("couchbase_connstr", "SLUICE_COUCHBASE_CONNSTR"),
        ("couchbase_bucket", "SLUICE_COUCHBASE_BUCKET"),
        ("clickhouse_url", "SLUICE_CLICKHOUSE_URL"),
        ("clickhouse_database", "SLUICE_CLICKHOUSE_DATABASE"),
        ("clickhouse_cluster", "SLUICE_CLICKHOUSE_CLUSTER"),
    ];

    /// The values set here as `(SLUICE_* variable, value)` pairs, for
    /// [`Env::with_defaults`](crate::connections::Env::with_defaults): the lowest layer, under the
    /// env file and the process environment.
    pub fn env_defaults(&self) -> Vec<(String, String)> {
        let values = [
            &self.kafka_brokers,
            &self.schema_registry_url,
            &self.couchbase_connstr,
            &self.couchbase_bucket,
            &self.clickhouse_url,
            &self.clickhouse_database,
            &self.clickhouse_cluster,
        ];
        Self::VARIABLES
            .iter()
            .zip(values)
            .filter_map(|((_, var), value)| value.as_ref().map(|v| ((*var).to_owned(), v.clone())))
            .collect()
    }
}

/// `[registry]`: how the schema registry treats new versions of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RegistryConfig {
    /// Compatibility level set on every subject (default `BACKWARD`: new readers read old data).
    pub compatibility: Compatibility,
}

/// Declares an enum whose TOML spelling is a fixed string per variant, with `FromStr`,
/// `Display`, `Serialize` and the list of spellings for hints.
macro_rules! spelled_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling in `topology.toml` (and, where they share it, the service's).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ();

            fn from_str(text: &str) -> Result<Self, ()> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

// Declared after the macro it uses.
mod analytics;
mod cdc;
pub use analytics::{
    Aggregate, DEFAULT_KEY_COLUMN, DEFAULT_ROLLUP_TIME, FilterValue, Measure, MeasureError, Rollup,
    STATE_RESERVED_COLUMNS, StateChange, StateColumn, StateTable, TimeBucket,
};
pub use cdc::{
    CdcEncoding, CdcFormat, CdcSourceConfig, ColumnKind, ColumnMapping, DEBEZIUM_UNAVAILABLE_VALUE, DebeziumConfig,
    DecimalHandling, FieldRef, OutboxConfig, TimeUnit,
};

spelled_enum! {
    /// A schema registry compatibility level.
    #[derive(Default)]
    Compatibility {
        /// New schema reads data written with the previous one.
        #[default]
        Backward = "BACKWARD",
        /// New schema reads data written with every previous one.
        BackwardTransitive = "BACKWARD_TRANSITIVE",
        /// Previous schema reads data written with the new one.
        Forward = "FORWARD",
        /// Every previous schema reads data written with the new one.
        ForwardTransitive = "FORWARD_TRANSITIVE",
        /// Backward and forward with the previous schema.
        Full = "FULL",
        /// Backward and forward with every previous schema.
        FullTransitive = "FULL_TRANSITIVE",
        /// No check.
        None = "NONE",
    }
}

spelled_enum! {
    /// Kafka's `cleanup.policy`.
    #[derive(Default)]
    CleanupPolicy {
        /// Delete segments older than the retention.
        #[default]
        Delete = "delete",
        /// Keep the latest record per key.
        Compact = "compact",
        /// Both: compact, and delete by age.
        CompactDelete = "compact,delete",
    }
}

spelled_enum! {
    /// How the registry subject of an event type's schema is named.
    #[derive(Default)]
    SubjectStrategy {
        /// `TopicNameStrategy`: `<topic>-value`; one schema lineage per topic, so one event type.
        #[default]
        Topic = "topic",
        /// `RecordNameStrategy`: the record's full name; several event types share a topic.
        Record = "record",
    }
}

impl SubjectStrategy {
    /// The subject of the value schema `record_name` (an Avro full name) on `topic`.
    pub fn subject(self, topic: &str, record_name: &str) -> String {
        match self {
            Self::Topic => format!("{topic}-value"),
            Self::Record => record_name.to_owned(),
        }
    }
}

spelled_enum! {
    /// What a projection does with a record whose Kafka key is not its topic's key field (see
    /// [`crate::admission`]).
    #[derive(Default)]
    KeyMismatchPolicy {
        /// To the dead-letter topic, reason `key_mismatch`: the record may sit in another
        /// partition than its entity's other events, so their order is not guaranteed.
        #[default]
        Refuse = "dlq",
        /// Applied anyway, counted (`sluice_worker_key_mismatches_total`) and logged: for topics
        /// written by producers that key otherwise, where the sinks' version checks are trusted
        /// to order an entity's events.
        Accept = "accept",
    }
}

spelled_enum! {
    /// Where a projection writes.
    SinkKind {
        /// Latest state per entity, one document each.
        Couchbase = "couchbase",
        /// Every event as a row, plus rollups and current-state tables.
        ClickHouse = "clickhouse",
    }
}

/// `[topics.<name>]`: a Kafka topic and how its records are keyed and their schemas registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicConfig {
    /// Number of partitions (≥ 1); events of one key stay in one partition, in order.
    pub partitions: u32,
    /// Copies of each partition (≥ 1; 1 on the single-broker dev rig, 3 in production).
    pub replication_factor: u16,
    /// Kafka `cleanup.policy` (default `delete`).
    pub cleanup_policy: CleanupPolicy,
    /// Kafka `retention.ms` as a duration or `forever`; the broker default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// The envelope field used as the Kafka key (default `aggregate_id`).
    pub key: String,
    /// How the value schemas on this topic are named in the registry (default `topic`).
    pub subject_strategy: SubjectStrategy,
    /// What projections do with a record whose key is not its `key` field (default `dlq`).
    pub key_mismatch: KeyMismatchPolicy,
}

impl TopicConfig {
    /// The configuration of a dead-letter topic nobody declared: one partition (order does not
    /// matter there), replicated like the topics it takes failures from, kept four weeks.
    pub fn implied_dlq(replication_factor: u16) -> Self {
        Self {
            partitions: 1,
            replication_factor,
            cleanup_policy: CleanupPolicy::Delete,
            retention: Some(Retention::For(HumanDuration::from_millis(28 * 24 * 3_600_000))),
            key: DEFAULT_KEY.to_owned(),
            subject_strategy: SubjectStrategy::Topic,
            key_mismatch: KeyMismatchPolicy::Refuse,
        }
    }
}

/// `[events."<type>"]`: an event type, the topic it is published on and its Avro schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventConfig {
    /// Topic name; must be declared under `[topics]`.
    pub topic: String,
    /// Path of the `.avsc` file, relative to the topology file's directory.
    pub schema: String,
}

/// `[projections.<name>]`: a consumer group folding events into one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionConfig {
    /// Kafka consumer group (default `sluice.<name>`); unique per projection.
    pub group: String,
    /// Topics consumed.
    pub sources: Vec<String>,
    /// Event types folded. In the file: a filter, every event type of the sources when absent.
    /// After validation: always the resolved list.
    pub events: Vec<String>,
    /// Largest number of events written in one sink request (default 1000).
    pub batch_size: u32,
    /// Longest wait for a batch to fill before writing it anyway (default `200ms`).
    pub linger: HumanDuration,
    /// Most sink writes in flight at once (default 1). Sinks are idempotent and version-ordered,
    /// so writes may land out of order; offsets are still committed in order.
    pub max_in_flight: u32,
    /// Topic receiving events the projection cannot apply (default `<name>.dlq`).
    pub dlq_topic: String,
    /// When the projection's lag slows down or refuses intake.
    #[serde(skip_serializing_if = "BackpressureConfig::is_empty")]
    pub backpressure: BackpressureConfig,
    /// The sink and its settings (`sink = "…"` plus the matching block).
    #[serde(flatten)]
    pub sink: SinkConfig,
}

/// The sink of a projection: `sink = "couchbase"` with `[projections.<name>.couchbase]`, or
/// `sink = "clickhouse"` with `[projections.<name>.clickhouse]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "sink")]
pub enum SinkConfig {
    /// Latest state per entity in Couchbase.
    #[serde(rename = "couchbase")]
    Couchbase {
        /// The `[projections.<name>.couchbase]` block.
        couchbase: CouchbaseSink,
    },
    /// Rows, rollups and current-state tables in ClickHouse.
    #[serde(rename = "clickhouse")]
    ClickHouse {
        /// The `[projections.<name>.clickhouse]` block.
        clickhouse: ClickHouseSink,
    },
}

impl SinkConfig {
    /// Which sink.
    pub fn kind(&self) -> SinkKind {
        match self {
            Self::Couchbase { .. } => SinkKind::Couchbase,
            Self::ClickHouse { .. } => SinkKind::ClickHouse,
        }
    }
}

/// `[projections.<name>.backpressure]`: lag thresholds of a projection. Past a soft threshold
/// the intake slows producers down; past a hard one it refuses every event but the critical ones.
/// An absent threshold never triggers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BackpressureConfig {
    /// Messages behind (summed over partitions) at which intake slows down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_lag: Option<u64>,
    /// Messages behind at which intake refuses non-critical events; above `soft_lag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard_lag: Option<u64>,
    /// Age of the oldest unprocessed event at which intake slows down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_lag_age: Option<HumanDuration>,
    /// Age of the oldest unprocessed event at which intake refuses non-critical events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard_lag_age: Option<HumanDuration>,
    /// Event types never refused at intake, whatever the lag (e.g. `user.deleted`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub critical_events: Vec<String>,
}

impl BackpressureConfig {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `[projections.<name>.couchbase]`: one document per entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CouchbaseSink {
    /// Bucket; the connection's bucket when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Scope (default `_default`).
    pub scope: String,
    /// Collection (default `_default`).
    pub collection: String,
    /// Document key template, e.g. `user::{aggregate_id}`.
    pub document_id: DocumentId,
    /// Expiry, renewed by every write; documents never expire when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
    /// Event types that delete the document.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub erase_on: Vec<String>,
    /// Document field → where its value comes from. When absent, every non-envelope field of an
    /// event is merged into the document under its own name, a null meaning "unchanged".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, DocumentField>>,
}

/// Where a Couchbase document field takes its value (a `fields` entry of
/// `[projections.<name>.couchbase]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentField {
    /// `"customer.id"`, or a list of candidates `["email", "new_email"]`: the first the event
    /// carries with a non-null value ([`crate::state::first_set`], the rule of a ClickHouse state
    /// table's columns); when none does, the document field is left unchanged. A candidate is an
    /// envelope field (`occurred_at`) or a path into the payload: a field (`total`), a nested one
    /// (`customer.id`), an array element (`items[0].sku`), every element (`items[].sku`).
    First(Vec<FieldPath>),
    /// `{ set_by = ["order.shipped"], cleared_by = ["order.returned"] }`: `true` when an event of
    /// a `set_by` type is applied, `false` for a `cleared_by` one, unchanged by any other.
    Flag {
        /// Event types that set the flag.
        set_by: Vec<String>,
        /// Event types that clear it.
        cleared_by: Vec<String>,
    },
}

impl Serialize for DocumentField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self {
            Self::First(paths) => match paths.as_slice() {
                [one] => s.serialize_str(&one.to_string()),
                many => s.collect_seq(many.iter().map(ToString::to_string)),
            },
            Self::Flag { set_by, cleared_by } => {
                let mut map = s.serialize_map(None)?;
                if !set_by.is_empty() {
                    map.serialize_entry("set_by", set_by)?;
                }
                if !cleared_by.is_empty() {
                    map.serialize_entry("cleared_by", cleared_by)?;
                }
                map.end()
            }
        }
    }
}

/// Where a document field takes its value: the first of these event fields that the event
/// carries with a non-null value; when none does, the document field is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSource(pub Vec<String>);

impl Serialize for FieldSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

/// `[projections.<name>.clickhouse]`: rows in ClickHouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClickHouseSink {
    /// Database; the connection's database when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The raw events table: one row per event.
    pub table: String,
    /// Typed tables of chosen event types, by table name
    /// (`[projections.<name>.clickhouse.tables.<table>]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, DeclaredTable>,
    /// Current-state tables, by table name (`[projections.<name>.clickhouse.state.<table>]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, StateTable>,
    /// Rollups of declared tables, by name (`[projections.<name>.clickhouse.rollups.<rollup>]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rollups: BTreeMap<String, Rollup>,
}

spelled_enum! {
    /// The engine of a declared table.
    #[derive(Default)]
    TableEngine {
        /// A re-delivered event collapses into one row when parts merge (`FINAL` at read time
        /// before that): the sorting key always ends with `event_id`.
        #[default]
        ReplacingMergeTree = "ReplacingMergeTree",
        /// Every row kept, re-deliveries included: for facts where a rare duplicate is cheaper
        /// than merges.
        MergeTree = "MergeTree",
    }
}

/// The default `PARTITION BY` of a declared table: a month of event time per partition.
pub const DEFAULT_PARTITION_BY: &str = "toYYYYMM(occurred_at)";

/// `[projections.<name>.clickhouse.tables.<table>]`: one row per event of `events`, with typed
/// columns from their payload fields (see [`super::columns`]) next to the envelope columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclaredTable {
    /// The event types written to the table (of the projection's event types).
    pub events: Vec<String>,
    /// Column = field path (`"total"`, `"customer.id"`, `"items[].sku"`); when absent, every
    /// payload field of the events, flattened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<BTreeMap<String, String>>,
    /// The table engine (default `ReplacingMergeTree`).
    pub engine: TableEngine,
    /// The sorting key's columns; default `event_type, toDate(occurred_at), aggregate_id`. A
    /// `ReplacingMergeTree` key always ends with `event_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_by: Option<Vec<String>>,
    /// The `PARTITION BY` expression (default [`DEFAULT_PARTITION_BY`]).
    pub partition_by: String,
    /// Rows older than this (by `occurred_at`) are dropped by the server; kept forever when
    /// absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
    /// The columns, derived from the event types' schemas by validation.
    #[serde(skip)]
    pub resolved: Vec<TableColumn>,
}

impl ClickHouseSink {
    /// A sink writing `table` only, every other key at its default.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            database: None,
            table: table.into(),
            tables: BTreeMap::new(),
            state: BTreeMap::new(),
            rollups: BTreeMap::new(),
        }
    }
}

/// One piece of a document id template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPart {
    /// Text copied as is.
    Literal(String),
    /// `{field}`: the value of an event field.
    Field(String),
}

/// A document key template: text with `{field}` placeholders; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentId {
    text: String,
    parts: Vec<IdPart>,
    placeholders: Vec<(usize, String)>,
}

/// Why a document id template does not parse: a message and the byte offset in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset of the problem in the template.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl DocumentId {
    /// Parses a template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut placeholders = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "unmatched `}` (write `}}` for a literal brace)".into(),
                    });
                }
                '{' => {
                    let start = i + 1;
                    let end = text[start..].find('}').map(|n| start + n).ok_or_else(|| TemplateError {
                        offset: i,
                        message: "unclosed `{` (write `{{` for a literal brace)".into(),
                    })?;
                    let name = &text[start..end];
                    let valid = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !name.starts_with(|c: char| c.is_ascii_digit());
                    if !valid {
                        return Err(TemplateError {
                            offset: i,
                            message: format!("`{{{name}}}` is not a field placeholder: write `{{field_name}}`"),
                        });
                    }
                    while chars.peek().is_some_and(|(j, _)| *j <= end) {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(IdPart::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(IdPart::Field(name.to_owned()));
                    placeholders.push((i, name.to_owned()));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(IdPart::Literal(literal));
        }
        if placeholders.is_empty() {
            return Err(TemplateError {
                offset: 0,
                message: "no `{field}` placeholder: every event would write the same document".into(),
            });
        }
        Ok(Self { text: text.to_owned(), parts, placeholders })
    }

    /// Stands in for a template that is missing or wrong (an issue was filed, so it never
    /// leaves validation).
    pub(crate) fn missing() -> Self {
        Self { text: String::new(), parts: Vec::new(), placeholders: Vec::new() }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[IdPart] {
        &self.parts
    }

    /// The placeholders with the byte offset of their `{` in the template.
    pub fn fields(&self) -> impl Iterator<Item = (usize, &str)> {
        self.placeholders.iter().map(|(at, name)| (*at, name.as_str()))
    }

    /// The key of one event: `value` gives the text of a field, `None` when the event lacks it
    /// (then there is no key, and the event cannot be applied).
    pub fn render(&self, mut value: impl FnMut(&str) -> Option<String>) -> Result<String, &str> {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                IdPart::Literal(text) => key.push_str(text),
                IdPart::Field(name) => key.push_str(&value(name).ok_or(name.as_str())?),
            }
        }
        Ok(key)
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for DocumentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_per_strategy() {
        assert_eq!(SubjectStrategy::Topic.subject("sessions", "sluice.sessions.SessionStarted"), "sessions-value");
        assert_eq!(
            SubjectStrategy::Record.subject("users", "sluice.users.UserRegistered"),
            "sluice.users.UserRegistered"
        );
    }

    #[test]
    fn spelled_enums_roundtrip() {
        for name in Compatibility::NAMES {
            assert_eq!(name.parse::<Compatibility>().map(Compatibility::as_str), Ok(*name));
        }
        assert_eq!("compact,delete".parse(), Ok(CleanupPolicy::CompactDelete));
        assert_eq!("backward".parse::<Compatibility>(), Err(()));
        assert_eq!(Compatibility::default(), Compatibility::Backward);
    }

    #[test]
    fn document_id_templates() {
        let id = DocumentId::parse("user::{aggregate_id}").expect("valid");
        assert_eq!(id.parts(), [IdPart::Literal("user::".into()), IdPart::Field("aggregate_id".into())]);
        assert_eq!(id.fields().collect::<Vec<_>>(), vec![(6, "aggregate_id")]);
        assert_eq!(id.render(|f| (f == "aggregate_id").then(|| "42".to_owned())), Ok("user::42".into()));
        assert_eq!(id.render(|_| None), Err("aggregate_id"));

        let braces = DocumentId::parse("{{x}}:{a}-{b}").expect("valid");
        assert_eq!(braces.fields().collect::<Vec<_>>(), vec![(6, "a"), (10, "b")]);
        assert_eq!(braces.render(|f| Some(f.to_uppercase())), Ok("{x}:A-B".into()));

        let err = |t: &str| DocumentId::parse(t).map(|_| ()).map_err(|e| e.offset);
        assert_eq!(err("user::"), Err(0));
        assert_eq!(err("user::{aggregate_id"), Err(6));
        assert_eq!(err("a}"), Err(1));
        assert_eq!(err("a{}"), Err(1));
        assert_eq!(err("a{b c}"), Err(1));
    }
}
