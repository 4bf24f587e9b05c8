//! The objects a plan creates, as data: each table, materialized view or view ([`Object`]) with
//! its columns ([`Column`]), their names ([`Names`]), and the ordered [`Plan`] of them.

use std::fmt;

use sluice_core::topology::ClickHouseSink;

use super::ddl::{create_table, qualified, quote};

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
    pub(in crate::sinks::clickhouse) fn stored(name: impl Into<String>, ty: impl Into<String>) -> Self {
        Self { name: name.into(), ty: ty.into(), kind: ColumnKind::Stored, expression: "" }
    }

    pub(in crate::sinks::clickhouse) fn computed(
        name: impl Into<String>,
        ty: impl Into<String>,
        kind: ColumnKind,
        expression: &'static str,
    ) -> Self {
        Self { name: name.into(), ty: ty.into(), kind, expression }
    }

    pub(super) fn ddl(&self) -> String {
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
    /// The database itself (only in [`MigrationLine`](super::super::MigrationLine)s).
    Database,
    /// A table with a storage engine.
    Table,
    /// A materialized view (insert trigger) writing into a table.
    MaterializedView,
    /// A plain view (a stored query).
    View,
    /// A `Distributed` table over the local tables of a cluster's shards (only on a cluster,
    /// see [`super::cluster`]).
    Distributed,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Database => "database",
            Self::Table => "table",
            Self::MaterializedView => "materialized view",
            Self::View => "view",
            Self::Distributed => "distributed table",
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
    pub engine: String,
    /// The columns it must have (a view's: those of its query; none checked for a materialized
    /// view, whose target table is checked instead). Others may exist.
    pub columns: Vec<Column>,
    /// `CREATE … IF NOT EXISTS …`.
    pub create: String,
    /// Columns it lacks are added online (`ALTER TABLE … ADD COLUMN`): a declared table whose
    /// event types gained a field. Other objects' drift is reported, never changed.
    pub evolves: bool,
    /// What it is made of, for making it again on a cluster ([`super::cluster`]).
    pub(in crate::sinks::clickhouse) spec: Spec,
}

/// What an object is made of, apart from its name and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sinks::clickhouse) enum Spec {
    /// A table: what follows its engine's name (`PARTITION BY …`, `ORDER BY …`, `SETTINGS …`).
    Table { clause: String },
    /// A `Distributed` table over `local` on every shard.
    Distributed { local: String },
    /// A materialized view: `select`, `FROM source`, then `rest`, written into `target`.
    MaterializedView { target: String, select: String, source: String, rest: String },
    /// A view of `query`.
    View { query: String },
}

impl Object {
    /// A table: `engine` as `system.tables` reports it, `clause` what follows the engine's name
    /// in its DDL (`\nORDER BY …`).
    pub(in crate::sinks::clickhouse) fn table(
        database: &str,
        name: &str,
        columns: Vec<Column>,
        engine: &str,
        clause: &str,
    ) -> Self {
        Self {
            evolves: false,
            name: name.to_owned(),
            kind: ObjectKind::Table,
            engine: engine.to_owned(),
            create: create_table(database, name, "", &columns, &format!("ENGINE = {engine}{clause}")),
            columns,
            spec: Spec::Table { clause: clause.to_owned() },
        }
    }

    /// A materialized view writing into `target` what `select` (the query up to its `FROM`)
    /// selects from `source`, followed by `rest` (`WHERE …`, `GROUP BY …`). Its columns are its
    /// query's output types, which differ by server; what analysts read is its target, checked
    /// instead.
    pub(in crate::sinks::clickhouse) fn materialized_view(
        database: &str,
        name: &str,
        target: &str,
        select: &str,
        source: &str,
        rest: &str,
    ) -> Self {
        Self {
            evolves: false,
            name: name.to_owned(),
            kind: ObjectKind::MaterializedView,
            engine: "MaterializedView".to_owned(),
            create: create_materialized_view(database, name, "", target, select, source, rest),
            columns: Vec::new(),
            spec: Spec::MaterializedView {
                target: target.to_owned(),
                select: select.to_owned(),
                source: source.to_owned(),
                rest: rest.to_owned(),
            },
        }
    }

    /// A view of `query`, with the `columns` checked against the server.
    pub(in crate::sinks::clickhouse) fn view(database: &str, name: &str, query: &str, columns: Vec<Column>) -> Self {
        Self {
            evolves: false,
            name: name.to_owned(),
            kind: ObjectKind::View,
            engine: "View".to_owned(),
            create: create_view(database, name, "", query),
            columns,
            spec: Spec::View { query: query.to_owned() },
        }
    }
}

/// `CREATE MATERIALIZED VIEW` (`on_cluster`: empty, or ` ON CLUSTER …`).
pub(in crate::sinks::clickhouse) fn create_materialized_view(
    database: &str,
    name: &str,
    on_cluster: &str,
    target: &str,
    select: &str,
    source: &str,
    rest: &str,
) -> String {
    format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {}{on_cluster} TO {} AS\n{select}\nFROM {}{rest}",
        qualified(database, name),
        qualified(database, target),
        qualified(database, source)
    )
}

/// `CREATE VIEW` (`on_cluster`: empty, or ` ON CLUSTER …`).
pub(in crate::sinks::clickhouse) fn create_view(database: &str, name: &str, on_cluster: &str, query: &str) -> String {
    format!("CREATE VIEW IF NOT EXISTS {}{on_cluster} AS\n{query}", qualified(database, name))
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
    /// The cluster every statement runs on (`ON CLUSTER`), or `None` on a single server.
    pub cluster: Option<String>,
}

impl Plan {
    /// ` ON CLUSTER \`name\`` on a cluster, else empty: what every DDL statement of the plan
    /// carries after the object it names.
    pub fn on_cluster(&self) -> String {
        self.cluster.as_deref().map(|c| format!(" ON CLUSTER {}", quote(c))).unwrap_or_default()
    }
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
