//! The analyst-facing tables of a ClickHouse projection, as data: what [`plan`] says must exist
//! (pure, so it is unit-tested) and how what a server reports differs from it ([`check`]).
//!
//! Input: the projection's `[projections.<name>.clickhouse]` block and the server's
//! [`Capabilities`]. Output: an ordered [`Plan`] of `CREATE … IF NOT EXISTS` statements (tables
//! first, then the materialized views and views reading them) with the columns each object must
//! have. [`super::migrate`] runs the plan and feeds what `system.tables` / `system.columns` say
//! back into [`check`], which names every drifted table and column.
//!
//! # The objects
//!
//! - **The raw table** (`table`, e.g. `events`): one row per event, written by the sink, the
//!   payload as JSON text. `ReplacingMergeTree`, so a re-delivered event — same `event_id`, hence
//!   same sorting key — collapses into one row when parts merge (`FINAL` collapses it at read
//!   time before that).
//! - **Declared tables** (`tables`): typed columns from the schemas, see [`super::declared`].
//! - **State tables** (`state`): the latest value of each column per entity, see [`super::state`].
//! - **Rollups** (`rollups`): aggregates of a declared table per time bucket and dimensions, each
//!   event counted once, see [`super::rollup`].
//!
//! Nothing here knows any domain: every table but the raw one is declared in `topology.toml`.
//!
//! # Old servers
//!
//! One design on every server, so analysts' queries run on both: `occurred_at` is the event time
//! in the best type the server has — `DateTime64(3, 'UTC')`, or `DateTime('UTC')` (seconds) before
//! 20.1 — and `occurred_at_ms` is always the exact time as `Int64` milliseconds (an `ALIAS` of
//! `occurred_at` where that is exact, a stored column where it is not). `LowCardinality(String)`
//! only where it is not experimental (19.9+), plain `String` before. Servers with
//! `insert_deduplication_token` also get `non_replicated_deduplication_window`, so a re-sent batch
//! is dropped at insert time; on older ones it collapses at merge time (or `FINAL`) instead.

use std::collections::BTreeMap;
use std::fmt;

use sluice_core::topology::ClickHouseSink;

use super::capabilities::Capabilities;

/// How many recent insert blocks a non-replicated table remembers for deduplication
/// (`non_replicated_deduplication_window`): far more batches than a worker ever re-sends.
pub const DEDUPLICATION_WINDOW: u32 = 1000;

/// The column types chosen for a server, from its [`Capabilities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `occurred_at` is `DateTime64(3, 'UTC')` (exact) rather than `DateTime('UTC')` plus a
    /// stored `occurred_at_ms`.
    pub datetime64: bool,
    /// Repetitive strings (event type, producer, topic) are `LowCardinality(String)`.
    pub low_cardinality: bool,
    /// Tables get `non_replicated_deduplication_window`, and inserts carry
    /// `insert_deduplication_token`.
    pub insert_deduplication: bool,
    /// The types declared tables use where the server has them (see `typing`).
    pub types: Types,
}

/// The column types of declared tables the server has (each from a [`Capabilities`] flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Types {
    /// `Map(String, T)`; without it a map is two arrays, `<name>_keys` and `<name>_values`.
    pub map: bool,
    /// `Bool`; without it `UInt8`.
    pub bool: bool,
    /// `Date32`; without it `Date` (1970 to 2149).
    pub date32: bool,
    /// `Decimal(P, S)` past 38 digits; without it such a decimal is its exact text.
    pub decimal256: bool,
    /// Table `TTL`; without it a declared `ttl` is not applied (and `migrate` says so).
    pub ttl: bool,
}

impl Types {
    /// Every type (a current server).
    pub const ALL: Self = Self { map: true, bool: true, date32: true, decimal256: true, ttl: true };
    /// None of them (18.16).
    pub const NONE: Self = Self { map: false, bool: false, date32: false, decimal256: false, ttl: false };
}

impl Layout {
    /// The layout for a server with these capabilities.
    pub const fn of(capabilities: &Capabilities) -> Self {
        Self {
            datetime64: capabilities.datetime64,
            low_cardinality: capabilities.low_cardinality,
            insert_deduplication: capabilities.insert_deduplication_token,
            types: Types {
                map: capabilities.map_type_ga,
                bool: capabilities.bool_type,
                date32: capabilities.date32,
                decimal256: capabilities.decimal256,
                ttl: capabilities.ttl,
            },
        }
    }

    /// The type of event times.
    pub const fn time_type(self) -> &'static str {
        if self.datetime64 { "DateTime64(3, 'UTC')" } else { "DateTime('UTC')" }
    }

    pub(super) const fn now(self) -> &'static str {
        if self.datetime64 { "now64(3)" } else { "now()" }
    }

    pub(super) const fn tag_type(self) -> &'static str {
        if self.low_cardinality { "LowCardinality(String)" } else { "String" }
    }

    pub(super) fn settings(self) -> String {
        if self.insert_deduplication {
            format!("\nSETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}")
        } else {
            String::new()
        }
    }
}

/// How a column gets its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Written by inserts.
    Stored,
    /// Filled by the server when an insert leaves it out (`DEFAULT expr`).
    Default,
    /// Computed at read time, never stored (`ALIAS expr`).
    Alias,
}

impl ColumnKind {
    /// The kind from `system.columns.default_kind` (`''`, `DEFAULT`, `ALIAS`, `MATERIALIZED`, …).
    pub fn from_server(text: &str) -> Option<Self> {
        match text {
            "" => Some(Self::Stored),
            "DEFAULT" => Some(Self::Default),
            "ALIAS" => Some(Self::Alias),
            _ => None,
        }
    }
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stored => "stored",
            Self::Default => "DEFAULT",
            Self::Alias => "ALIAS",
        })
    }
}

/// A column an object must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type, spelled as the server reports it.
    pub ty: String,
    /// Stored, `DEFAULT` or `ALIAS`.
    pub kind: ColumnKind,
    /// The `DEFAULT`/`ALIAS` expression (empty for stored columns).
    expression: &'static str,
}

impl Column {
    pub(super) fn stored(name: impl Into<String>, ty: impl Into<String>) -> Self {
        Self { name: name.into(), ty: ty.into(), kind: ColumnKind::Stored, expression: "" }
    }

    pub(super) fn computed(
        name: impl Into<String>,
        ty: impl Into<String>,
        kind: ColumnKind,
        expression: &'static str,
    ) -> Self {
        Self { name: name.into(), ty: ty.into(), kind, expression }
    }

    fn ddl(&self) -> String {
        let name = quote(&self.name);
        match self.kind {
            ColumnKind::Stored => format!("{name} {}", self.ty),
            ColumnKind::Default => format!("{name} {} DEFAULT {}", self.ty, self.expression),
            ColumnKind::Alias => format!("{name} {} ALIAS {}", self.ty, self.expression),
        }
    }
}

/// What kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// The database itself (only in [`super::MigrationLine`]s).
    Database,
    /// A table with a storage engine.
    Table,
    /// A materialized view (insert trigger) writing into a table.
    MaterializedView,
    /// A plain view (a stored query).
    View,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Database => "database",
            Self::Table => "table",
            Self::MaterializedView => "materialized view",
            Self::View => "view",
        })
    }
}

/// One table or view the projection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Name inside the database.
    pub name: String,
    /// Table, materialized view or view.
    pub kind: ObjectKind,
    /// The engine `system.tables` must report (`ReplacingMergeTree`, `View`, …).
    pub engine: &'static str,
    /// The columns it must have (a view's: those of its query; none checked for a materialized
    /// view, whose target table is checked instead). Others may exist.
    pub columns: Vec<Column>,
    /// `CREATE … IF NOT EXISTS …`.
    pub create: String,
    /// Columns it lacks are added online (`ALTER TABLE … ADD COLUMN`): a declared table whose
    /// event types gained a field. Other objects' drift is reported, never changed.
    pub evolves: bool,
}

impl Object {
    /// A table: `engine` as `system.tables` reports it, `clause` the DDL after the columns.
    pub(super) fn table(database: &str, name: &str, columns: Vec<Column>, engine: &'static str, clause: &str) -> Self {
        Self {
            evolves: false,
            name: name.to_owned(),
            kind: ObjectKind::Table,
            engine,
            create: create_table(database, name, &columns, clause),
            columns,
        }
    }

    /// A materialized view writing what `query` selects into `target`. Its columns are its
    /// query's output types, which differ by server; what analysts read is its target, checked
    /// instead.
    pub(super) fn materialized_view(database: &str, name: &str, target: &str, query: &str) -> Self {
        Self {
            evolves: false,
            name: name.to_owned(),
            kind: ObjectKind::MaterializedView,
            engine: "MaterializedView",
            create: format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {} TO {} AS\n{query}",
                qualified(database, name),
                qualified(database, target)
            ),
            columns: Vec::new(),
        }
    }

    /// A view of `query`, with the `columns` checked against the server.
    pub(super) fn view(database: &str, name: &str, query: &str, columns: Vec<Column>) -> Self {
        Self {
            evolves: false,
            name: name.to_owned(),
            kind: ObjectKind::View,
            engine: "View",
            create: format!("CREATE VIEW IF NOT EXISTS {} AS\n{query}", qualified(database, name)),
            columns,
        }
    }
}

/// The names of the objects a projection writes and analysts read.
///
/// The live version of a projection uses the topology's names; a version being rebuilt, or an
/// old one kept after a swap, carries its generation's suffix (`__v2`) on every object
/// (`events__v2`, `orders__v2`, `orders_current_updates__v2`, …), see `sluice rebuild`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The raw events table.
    pub events: String,
    /// Appended to every object name: empty for the live version.
    pub suffix: String,
}

impl Names {
    /// The names for a projection's config.
    pub fn of(sink: &ClickHouseSink) -> Self {
        Self::versioned(sink, "")
    }

    /// The names of a version of the projection whose objects carry `suffix`.
    pub fn versioned(sink: &ClickHouseSink, suffix: &str) -> Self {
        Self { events: format!("{}{suffix}", sink.table), suffix: suffix.to_owned() }
    }

    /// `base` as this version names it.
    pub fn name(&self, base: &str) -> String {
        format!("{base}{}", self.suffix)
    }
}

/// Everything a projection needs in its database, in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The database.
    pub database: String,
    /// Tables first, then what reads them.
    pub objects: Vec<Object>,
    /// What of the declaration this server cannot have (for `migrate` to say).
    pub notes: Vec<String>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A rollup reads a table that is not declared (validation refuses it earlier).
    #[error("rollup `{rollup}` reads `{table}`, which is not a declared table of the projection")]
    UnknownTable {
        /// The rollup.
        rollup: String,
        /// The table it names.
        table: String,
    },
}

/// `name` as a ClickHouse identifier: back-quoted, with `\` and `` ` `` escaped.
pub fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        if matches!(c, '`' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// `database.name`, both quoted.
pub fn qualified(database: &str, name: &str) -> String {
    format!("{}.{}", quote(database), quote(name))
}

/// `text` as a ClickHouse string literal.
pub(super) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub(super) fn create_table(database: &str, name: &str, columns: &[Column], engine_clause: &str) -> String {
    let body: Vec<String> = columns.iter().map(|c| format!("    {}", c.ddl())).collect();
    format!("CREATE TABLE IF NOT EXISTS {} (\n{}\n) {engine_clause}", qualified(database, name), body.join(",\n"))
}

/// The columns every table of events starts with: the event's identity and time
/// (`occurred_at_ms` exact on every server: an alias of a `DateTime64`, else stored), then
/// `producer`.
pub(super) fn envelope_head(l: Layout) -> Vec<Column> {
    let mut columns = vec![
        Column::stored("event_id", "UUID"),
        Column::stored("event_type", l.tag_type()),
        Column::stored("aggregate_id", "String"),
        Column::stored("aggregate_version", "Int64"),
        Column::stored("occurred_at", l.time_type()),
    ];
    columns.push(if l.datetime64 {
        Column::computed("occurred_at_ms", "Int64", ColumnKind::Alias, "toUnixTimestamp64Milli(occurred_at)")
    } else {
        Column::stored("occurred_at_ms", "Int64")
    });
    columns.push(Column::stored("producer", l.tag_type()));
    columns
}

/// The raw events table: one row per event.
fn events_table(database: &str, name: &str, l: Layout) -> Object {
    let mut columns = envelope_head(l);
    columns.extend([
        Column::stored("correlation_id", "Nullable(String)"),
        Column::stored("causation_id", "Nullable(String)"),
        Column::stored("payload", "String"),
        Column::stored("topic", l.tag_type()),
        Column::stored("partition", "Int32"),
        Column::stored("offset", "Int64"),
        Column::computed("ingested_at", l.time_type(), ColumnKind::Default, l.now()),
    ]);
    // Sorting key, for analysts: nearly every question is about one kind of event over a time
    // range, so `event_type` (few values: a long contiguous, well-compressed run per type) comes
    // first and the day second — a type-and-dates filter reads only its granules, and the month
    // partitions prune whole parts. `aggregate_id` keeps one entity's events of a day together
    // (a session's timeline, a user's changes). `event_id` last makes the key unique per event,
    // so exactly a re-delivery collapses. Only envelope fields: the key of a re-delivered event
    // never depends on how this version of sluice derives a column.
    let mut engine = "ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(occurred_at)\n\
                      ORDER BY (event_type, toDate(occurred_at), aggregate_id, event_id)"
        .to_owned();
    engine.push_str(&l.settings());
    Object::table(database, name, columns, "ReplacingMergeTree", &engine)
}

/// What a projection with this config needs in `database` on a server with this layout.
pub fn plan(database: &str, sink: &ClickHouseSink, layout: Layout) -> Result<Plan, PlanError> {
    plan_named(database, sink, layout, &Names::of(sink))
}

/// [`plan`] for the version of the projection named by `names` (see [`Names::versioned`]).
pub fn plan_named(database: &str, sink: &ClickHouseSink, layout: Layout, names: &Names) -> Result<Plan, PlanError> {
    let mut objects = vec![events_table(database, &names.events, layout)];
    let mut notes = Vec::new();
    for (base, table) in &sink.tables {
        let (object, note) = super::declared::object(database, &names.name(base), table, layout);
        objects.push(object);
        notes.extend(note);
    }
    for (name, rollup) in &sink.rollups {
        let source = names.name(&rollup.from);
        let Some(table) = objects.iter().find(|o| o.name == source) else {
            return Err(PlanError::UnknownTable { rollup: name.clone(), table: rollup.from.clone() });
        };
        let made = super::rollup::objects(database, name, rollup, table, names, layout);
        objects.extend(made);
    }
    for (base, state) in &sink.state {
        objects.extend(super::state::objects(database, base, state, names, layout));
    }
    Ok(Plan { database: database.to_owned(), objects, notes })
}

/// A column as the server describes it (`system.columns`, the same as `DESCRIBE TABLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedColumn {
    /// The table or view.
    pub table: String,
    /// The column.
    pub name: String,
    /// Its type.
    pub ty: String,
    /// `default_kind`: `''`, `DEFAULT`, `MATERIALIZED`, `ALIAS`, `EPHEMERAL`.
    pub default_kind: String,
}

/// One difference between the plan and the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// `database.object`.
    pub object: String,
    /// What differs.
    pub problem: DriftProblem,
}

/// What differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftProblem {
    /// The object has another engine (e.g. a table where a view belongs).
    Engine {
        /// The engine the plan wants.
        expected: String,
        /// The server's.
        found: String,
    },
    /// A column is missing.
    MissingColumn {
        /// The column.
        column: String,
        /// Its planned type.
        expected: String,
    },
    /// A column has another type.
    ColumnType {
        /// The column.
        column: String,
        /// The planned type.
        expected: String,
        /// The server's.
        found: String,
    },
    /// A column is computed differently (stored vs `DEFAULT` vs `ALIAS`).
    ColumnKind {
        /// The column.
        column: String,
        /// The planned kind.
        expected: String,
        /// The server's.
        found: String,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.object;
        match &self.problem {
            DriftProblem::Engine { expected, found } => write!(f, "{o} has engine {found}, expected {expected}"),
            DriftProblem::MissingColumn { column, expected } => {
                write!(f, "{o} has no column `{column}` (expected {expected})")
            }
            DriftProblem::ColumnType { column, expected, found } => {
                write!(f, "{o}: column `{column}` is {found}, expected {expected}")
            }
            DriftProblem::ColumnKind { column, expected, found } => {
                write!(f, "{o}: column `{column}` is {found}, expected {expected}")
            }
        }
    }
}

/// Types compare without spaces and quote escapes: servers differ in `DateTime64(3, 'UTC')` vs
/// `DateTime64(3,'UTC')`.
fn normalized(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace() && *c != '\\').collect()
}

/// Compares what the server has (`engines`: object name → engine, from `system.tables`;
/// `described`: its columns) with the plan. Objects the server lacks are not reported (migrate
/// creates them); extra columns are allowed (an operator may add some for analysts).
/// The `ALTER TABLE … ADD COLUMN` statements that give the existing objects which evolve (see
/// [`Object::evolves`]) the stored columns they lack, as `(object, column, statement)`.
pub fn additions(plan: &Plan, described: &[DescribedColumn]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for object in plan.objects.iter().filter(|o| o.evolves) {
        let have: Vec<&str> = described.iter().filter(|c| c.table == object.name).map(|c| c.name.as_str()).collect();
        if have.is_empty() {
            continue; // Not there yet: its CREATE has every column.
        }
        for column in object.columns.iter().filter(|c| c.kind == ColumnKind::Stored && !have.contains(&c.name.as_str()))
        {
            let sql = format!("ALTER TABLE {} ADD COLUMN {}", qualified(&plan.database, &object.name), column.ddl());
            out.push((qualified(&plan.database, &object.name), column.name.clone(), sql));
        }
    }
    out
}

pub fn check(plan: &Plan, engines: &BTreeMap<String, String>, described: &[DescribedColumn]) -> Vec<Drift> {
    let mut drift = Vec::new();
    for object in &plan.objects {
        let Some(engine) = engines.get(&object.name) else { continue };
        let name = qualified(&plan.database, &object.name);
        if engine != object.engine {
            drift.push(Drift {
                object: name,
                problem: DriftProblem::Engine { expected: object.engine.to_owned(), found: engine.clone() },
            });
            continue;
        }
        let have: BTreeMap<&str, &DescribedColumn> =
            described.iter().filter(|c| c.table == object.name).map(|c| (c.name.as_str(), c)).collect();
        for column in &object.columns {
            let problem = match have.get(column.name.as_str()) {
                None => {
                    Some(DriftProblem::MissingColumn { column: column.name.to_owned(), expected: column.ty.clone() })
                }
                Some(found) if normalized(&found.ty) != normalized(&column.ty) => Some(DriftProblem::ColumnType {
                    column: column.name.to_owned(),
                    expected: column.ty.clone(),
                    found: found.ty.clone(),
                }),
                // A view's columns are its query's: their kind is not the server's business.
                Some(found)
                    if object.kind == ObjectKind::Table
                        && ColumnKind::from_server(&found.default_kind) != Some(column.kind) =>
                {
                    Some(DriftProblem::ColumnKind {
                        column: column.name.to_owned(),
                        expected: column.kind.to_string(),
                        found: if found.default_kind.is_empty() {
                            "stored".to_owned()
                        } else {
                            found.default_kind.clone()
                        },
                    })
                }
                Some(_) => None,
            };
            drift.extend(problem.map(|problem| Drift { object: name.clone(), problem }));
        }
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::clickhouse::capabilities::Version;
    use proptest::prelude::*;

    /// The analytics projection of the repository's topology: a raw table, a declared table, a
    /// rollup of it and a state table.
    fn sink() -> ClickHouseSink {
        crate::sinks::clickhouse::declared::tests::repository_sink()
    }

    fn layout(major: u32) -> Layout {
        Layout::of(&Capabilities::of(Version { major, minor: 9, patch: 1 }))
    }

    /// What a server that ran the plan would report.
    fn described(plan: &Plan) -> (BTreeMap<String, String>, Vec<DescribedColumn>) {
        let engines = plan.objects.iter().map(|o| (o.name.clone(), o.engine.to_owned())).collect();
        let columns = plan
            .objects
            .iter()
            .flat_map(|o| {
                o.columns.iter().map(move |c| DescribedColumn {
                    table: o.name.clone(),
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                    default_kind: match c.kind {
                        ColumnKind::Stored => String::new(),
                        ColumnKind::Default => "DEFAULT".into(),
                        ColumnKind::Alias => "ALIAS".into(),
                    },
                })
            })
            .collect();
        (engines, columns)
    }

    #[test]
    fn plans_every_object_in_dependency_order() {
        let plan = plan("analytics", &sink(), layout(26)).expect("plan");
        let names: Vec<&str> = plan.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "events",
                "engagement",
                "daily_engagement_by_event",
                "daily_engagement_mv",
                "daily_engagement",
                "users_current_updates",
                "users_current_state",
                "users_current_mv",
                "users_current"
            ]
        );
        assert!(plan.objects.iter().all(|o| o.create.contains("IF NOT EXISTS")));
        let minimal = ClickHouseSink::new("events");
        assert_eq!(super::plan("db", &minimal, layout(26)).expect("plan").objects.len(), 1);
        let mut unknown = sink();
        if let Some(r) = unknown.rollups.get_mut("daily_engagement") {
            r.from = "nowhere".into();
        }
        assert_eq!(
            super::plan("db", &unknown, layout(26)),
            Err(PlanError::UnknownTable { rollup: "daily_engagement".into(), table: "nowhere".into() })
        );
    }

    #[test]
    fn a_version_suffixes_every_object_and_its_references() {
        let names = Names::versioned(&sink(), "__v2");
        let plan = plan_named("a", &sink(), layout(26), &names).expect("plan");
        let got: Vec<&str> = plan.objects.iter().map(|o| o.name.as_str()).collect();
        assert!(got.iter().all(|n| n.ends_with("__v2")), "{got:?}");
        let mv = &plan.objects[3].create;
        assert!(
            mv.contains("TO `a`.`daily_engagement_by_event__v2`") && mv.contains("FROM `a`.`engagement__v2`"),
            "{mv}"
        );
        let state_mv = &plan.objects[7].create;
        assert!(state_mv.contains("FROM `a`.`users_current_updates__v2`"), "{state_mv}");
        // The live version's plan is the plain one.
        assert_eq!(plan_named("a", &sink(), layout(26), &Names::of(&sink())), super::plan("a", &sink(), layout(26)));
    }

    #[test]
    fn a_rollup_counts_each_event_once_on_every_server() {
        for major in [18, 26] {
            let plan = plan("a", &sink(), layout(major)).expect("plan");
            let by_event = &plan.objects[2];
            assert!(by_event.create.contains("ORDER BY (`day`, event_id)"), "{}", by_event.create);
            let mv = &plan.objects[3].create;
            assert!(mv.starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS `a`.`daily_engagement_mv` TO `a`.`daily_engagement_by_event`"), "{mv}");
            assert!(
                mv.contains("SELECT toDate(`occurred_at`) AS `day`, event_id, `user_id`, `event_type`, `amount_cents`"),
                "{mv}"
            );
            let view = &plan.objects[4].create;
            assert!(view.contains("FROM `a`.`daily_engagement_by_event` FINAL"), "{view}");
            assert!(view.contains("countIf(event_type IN ('engagement.clicked')) AS `clicks`"), "{view}");
            // `amount_cents` is NULL in page views and clicks: their revenue is 0, not NULL.
            assert!(view.contains("sum(assumeNotNull(`amount_cents`)) AS `revenue_cents`"), "{view}");
        }
    }

    #[test]
    fn a_state_table_folds_the_newest_value_of_each_column() {
        let plan = plan("a", &sink(), layout(26)).expect("plan");
        let updates = &plan.objects[5];
        let columns: Vec<(&str, &str)> = updates.columns.iter().map(|c| (c.name.as_str(), c.ty.as_str())).collect();
        assert!(
            columns.ends_with(&[
                ("erases", "UInt8"),
                ("is_deleted", "Nullable(UInt8)"),
                ("country", "Nullable(String)"),
                ("display_name", "Nullable(String)"),
                ("email", "Nullable(String)"),
            ]),
            "{columns:?}"
        );
        let mv = &plan.objects[7].create;
        assert!(mv.contains("aggregate_id AS `user_id`"), "{mv}");
        assert!(
            mv.contains(
                "argMaxIfState(assumeNotNull(`email`), aggregate_version, isNotNull(`email`) OR erases = 1) AS `email`"
            ),
            "{mv}"
        );
        let view = &plan.objects[8];
        let columns: Vec<(&str, &str)> = view.columns.iter().map(|c| (c.name.as_str(), c.ty.as_str())).collect();
        assert_eq!(
            columns,
            [
                ("user_id", "String"),
                ("aggregate_version", "Int64"),
                ("country", "String"),
                ("display_name", "String"),
                ("email", "String"),
                ("is_deleted", "UInt8"),
                ("updated_at", "DateTime64(3, 'UTC')")
            ]
        );
    }

    #[test]
    fn modern_and_old_layouts() {
        let modern = plan("a", &sink(), layout(26)).expect("plan");
        let events = &modern.objects[0].create;
        assert!(events.contains("`occurred_at` DateTime64(3, 'UTC')"), "{events}");
        assert!(events.contains("`occurred_at_ms` Int64 ALIAS toUnixTimestamp64Milli(occurred_at)"), "{events}");
        assert!(events.contains("`event_type` LowCardinality(String)"), "{events}");
        assert!(events.contains("SETTINGS non_replicated_deduplication_window = 1000"), "{events}");
        assert!(events.contains("ORDER BY (event_type, toDate(occurred_at), aggregate_id, event_id)"), "{events}");

        let old = plan("a", &sink(), layout(18)).expect("plan");
        let events = &old.objects[0].create;
        assert!(events.contains("`occurred_at` DateTime('UTC')"), "{events}");
        assert!(events.contains("`occurred_at_ms` Int64,"), "{events}");
        assert!(events.contains("`event_type` String"), "{events}");
        assert!(!old.objects.iter().any(|o| o.create.contains("SETTINGS")), "18.16 has no deduplication window");
        assert!(!old.objects.iter().any(|o| o.create.contains("DateTime64")), "no DateTime64 on 18.16");
    }

    #[test]
    fn a_faithful_server_has_no_drift() {
        for major in [18, 26] {
            let plan = plan("a", &sink(), layout(major)).expect("plan");
            let (engines, columns) = described(&plan);
            assert_eq!(check(&plan, &engines, &columns), []);
            // Nothing exists yet: nothing to compare.
            assert_eq!(check(&plan, &BTreeMap::new(), &[]), []);
        }
    }

    #[test]
    fn names_the_drifted_table_and_column() {
        let plan = plan("a", &sink(), layout(26)).expect("plan");
        let (mut engines, mut columns) = described(&plan);
        let at = |columns: &[DescribedColumn], t: &str, c: &str| {
            columns.iter().position(|d| d.table == t && d.name == c).expect("column")
        };
        let i = at(&columns, "events", "aggregate_version");
        columns[i].ty = "Int32".into();
        let i = at(&columns, "users_current_updates", "country");
        columns.remove(i);
        let i = at(&columns, "events", "occurred_at_ms");
        columns[i].default_kind = String::new();
        engines.insert("daily_engagement".into(), "MergeTree".into());
        let messages: Vec<String> = check(&plan, &engines, &columns).iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "`a`.`events`: column `aggregate_version` is Int32, expected Int64",
                "`a`.`events`: column `occurred_at_ms` is stored, expected ALIAS",
                "`a`.`daily_engagement` has engine MergeTree, expected View",
                "`a`.`users_current_updates` has no column `country` (expected Nullable(String))",
            ]
        );
    }

    #[test]
    fn types_compare_modulo_spacing_and_escapes() {
        assert_eq!(normalized("DateTime64(3,\\'UTC\\')"), normalized("DateTime64(3, 'UTC')"));
        assert_ne!(normalized("DateTime('UTC')"), normalized("DateTime64(3, 'UTC')"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("events"), "`events`");
        assert_eq!(quote("we`ird\\"), "`we\\`ird\\\\`");
        assert_eq!(qualified("db", "t"), "`db`.`t`");
        assert_eq!(literal("it's"), "'it\\'s'");
    }

    proptest! {
        /// Any one changed column type is reported, once, naming that table and column.
        #[test]
        fn any_changed_type_is_reported(pick in any::<prop::sample::Index>(), modern in any::<bool>()) {
            let plan = plan("db", &sink(), layout(if modern { 26 } else { 18 })).expect("plan");
            let (engines, mut columns) = described(&plan);
            let i = pick.index(columns.len());
            columns[i].ty = format!("Array({})", columns[i].ty);
            let drift = check(&plan, &engines, &columns);
            prop_assert_eq!(drift.len(), 1);
            prop_assert_eq!(&drift[0].object, &qualified("db", &columns[i].table));
            let is_column_type =
                matches!(&drift[0].problem, DriftProblem::ColumnType { column, .. } if *column == columns[i].name);
            prop_assert!(is_column_type);
        }
    }
}
