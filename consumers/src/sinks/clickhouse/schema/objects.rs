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
    pub(in crate::sinks::clickhouse) fn table(
        database: &str,
        name: &str,
        columns: Vec<Column>,
        engine: &'static str,
        clause: &str,
    ) -> Self {
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
    pub(in crate::sinks::clickhouse) fn materialized_view(
        database: &str,
        name: &str,
        target: &str,
        query: &str,
    ) -> Self {
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
    pub(in crate::sinks::clickhouse) fn view(database: &str, name: &str, query: &str, columns: Vec<Column>) -> Self {
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
