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

use super::columns::TableColumn;
use super::duration::HumanDuration;

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
mod couchbase;
mod topics;
pub use analytics::{
    Aggregate, DEFAULT_KEY_COLUMN, DEFAULT_ROLLUP_TIME, FilterValue, Measure, MeasureError, Rollup,
    STATE_RESERVED_COLUMNS, StateChange, StateColumn, StateTable, TimeBucket,
};
pub use cdc::{
    CdcEncoding, CdcFormat, CdcSourceConfig, ColumnKind, ColumnMapping, DEBEZIUM_UNAVAILABLE_VALUE, DebeziumConfig,
    DecimalHandling, FieldRef, OutboxConfig, TimeUnit,
};
pub use couchbase::{
    CouchbaseDurability, CouchbaseSink, DocumentField, DocumentId, FieldSource, IdPart, OnErase, TemplateError,
};
pub use topics::{CleanupPolicy, KeyMismatchPolicy, SubjectStrategy, TopicConfig, default_min_insync_replicas};

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
    /// Where a projection writes.
    SinkKind {
        /// Latest state per entity, one document each.
        Couchbase = "couchbase",
        /// Every event as a row, plus rollups and current-state tables.
        ClickHouse = "clickhouse",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_enums_roundtrip() {
        for name in Compatibility::NAMES {
            assert_eq!(name.parse::<Compatibility>().map(Compatibility::as_str), Ok(*name));
        }
        assert_eq!("compact,delete".parse(), Ok(CleanupPolicy::CompactDelete));
        assert_eq!("backward".parse::<Compatibility>(), Err(()));
        assert_eq!(Compatibility::default(), Compatibility::Backward);
    }
}
