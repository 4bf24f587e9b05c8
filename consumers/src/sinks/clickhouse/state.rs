//! The current-state tables of a ClickHouse projection (pure): what each is on the server and the
//! rows the sink writes for it.
//!
//! Input: a `[projections.<name>.clickhouse.state.<s>]` declaration, its columns already typed by
//! topology validation ([`sluice_core::topology::StateColumn`]), and the server's [`Layout`].
//! Output: four objects and the `RowBinary` rows of the first.
//!
//! - `<s>_updates` (`ReplacingMergeTree`): one row per event of the state's `events`: the envelope,
//!   then per column the value the event sets (`NULL` where it sets nothing: no candidate field
//!   carries a value), `is_deleted` (1 for a `deletes` type, 0 for a `creates` type, else `NULL`)
//!   and `erases` (1 for a delete). Its key ends with `event_id`, so a re-delivery collapses.
//! - `<s>_state` (`AggregatingMergeTree`, one row per entity once parts merge): per column the
//!   `argMaxIf` state of (value, `aggregate_version`, "the event set it or erased it").
//! - `<s>_mv`: the materialized view folding each insert into `<s>_updates` into `<s>_state`.
//! - `<s>`: the view analysts read, finalizing the states: per column, the value of the newest
//!   version that set it; after a delete, the type's default (`''`, 0) until a newer event sets it.
//!
//! This is the rule the Couchbase fold applies ([`sluice_core::fold`]): per field, the newest
//! version wins; an erase wins over every older value; events may arrive in any order and any
//! number of times (`argMax` of a duplicate is the same row). The one definition of which event
//! sets which column, and how, is [`sluice_core::state`], shared by both sinks.

use sluice_core::event::Event;
use sluice_core::state::{ColumnChange, row_changes};
use sluice_core::topology::{StateChange, StateColumn, StateTable};

use super::declared::write_head;
use super::row_binary::{self, Enc};
use super::schema::{Column, ColumnKind, Layout, Names, Object, envelope_head, qualified, quote};
use super::typing::physical;

/// One physical column of a state table: its name, the type it holds, and how the updates
/// table's `Nullable` version of it is written.
#[derive(Debug, Clone)]
struct StatePhysical {
    name: String,
    sql: String,
    enc: Enc,
}

/// A state table as this sink writes it: rows into `<s>_updates`.
#[derive(Debug, Clone)]
pub struct StatePlan {
    /// The updates table's name in this version.
    pub name: String,
    state: StateTable,
    /// Per declared column, its physical columns.
    columns: Vec<Vec<StatePhysical>>,
    layout: Layout,
    insert_columns: String,
}

/// Enums are plain `String` here: an `AggregateFunction` over `LowCardinality` is another type.
fn plain(layout: Layout) -> Layout {
    Layout { low_cardinality: false, ..layout }
}

fn physicals(state: &StateTable, layout: Layout) -> Vec<Vec<StatePhysical>> {
    let l = plain(layout);
    state
        .resolved
        .iter()
        .map(|c| {
            let inner = physical(&c.name, &c.ty, l);
            let nullable = physical(&c.name, &c.ty.clone().nullable(), l);
            inner
                .into_iter()
                .zip(nullable)
                .map(|(i, n)| StatePhysical { name: i.name, sql: i.sql, enc: n.enc })
                .collect()
        })
        .collect()
}

/// The columns analysts read in the state table's view, after its key: per declared column its
/// physical columns' names and types, with the declaration they come from.
pub fn view_columns(state: &StateTable, layout: Layout) -> Vec<(String, String, &StateColumn)> {
    state
        .resolved
        .iter()
        .zip(physicals(state, layout))
        .flat_map(|(c, ps)| ps.into_iter().map(move |p| (p.name, p.sql, c)))
        .collect()
}

/// The updates table's columns after the envelope: the delete markers.
fn markers() -> [Column; 2] {
    [Column::stored("erases", "UInt8"), Column::stored("is_deleted", "Nullable(UInt8)")]
}

impl StatePlan {
    /// The plan of state table `base` in the version `names` names.
    pub fn new(base: &str, state: &StateTable, names: &Names, layout: Layout) -> Self {
        let columns = physicals(state, layout);
        let mut insert: Vec<String> = envelope_head(layout)
            .into_iter()
            .filter(|c| c.kind == ColumnKind::Stored)
            .map(|c| quote(&c.name))
            .collect();
        insert.extend(markers().iter().map(|c| quote(&c.name)));
        insert.extend(columns.iter().flatten().map(|p| quote(&p.name)));
        Self {
            name: names.name(&format!("{base}_updates")),
            state: state.clone(),
            columns,
            layout,
            insert_columns: insert.join(", "),
        }
    }

    /// Whether events of `event_type` write a row.
    pub fn takes(&self, event_type: &str) -> bool {
        self.state.change(event_type).is_some()
    }

    /// `INSERT INTO … (columns) FORMAT RowBinary` into `database`.
    pub fn insert_sql(&self, database: &str) -> String {
        format!("INSERT INTO {} ({}) FORMAT RowBinary", qualified(database, &self.name), self.insert_columns)
    }

    /// Appends the update row of `event` to `out` (which the caller restores on an error).
    pub fn write_row(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        let change = self.state.change(&event.envelope.event_type).unwrap_or(StateChange::Update);
        write_head(event, self.layout, out)?;
        out.push(u8::from(change == StateChange::Delete));
        match change {
            StateChange::Update => out.push(1), // NULL: is_deleted unchanged.
            StateChange::Create => out.extend_from_slice(&[0, 0]),
            StateChange::Delete => out.extend_from_slice(&[0, 1]),
        }
        for (column, change) in self.columns.iter().zip(row_changes(&self.state, event)) {
            let value = match change {
                ColumnChange::Set(v) => v,
                // NULL: nothing set (a delete's erasure is the `erases` flag).
                ColumnChange::Keep | ColumnChange::Erase => std::borrow::Cow::Owned(serde_json::Value::Null),
            };
            for p in column {
                row_binary::write(&p.enc, &value, out)
                    .map_err(|m| format!("state table {}, column {}: {m}", self.name, p.name))?;
            }
        }
        Ok(())
    }
}

/// The four objects of state table `base` in `database`, named for the version `names` names.
pub fn objects(database: &str, base: &str, state: &StateTable, names: &Names, l: Layout) -> [Object; 4] {
    let updates = names.name(&format!("{base}_updates"));
    let folded = names.name(&format!("{base}_state"));
    let mv = names.name(&format!("{base}_mv"));
    let view = names.name(base);
    let physical: Vec<StatePhysical> = physicals(state, l).into_iter().flatten().collect();
    let key = quote(&state.key_column);

    let mut update_columns = envelope_head(l);
    update_columns.extend(markers());
    update_columns.extend(physical.iter().map(|p| Column::stored(&p.name, format!("Nullable({})", p.sql))));
    // Key: an entity's history in version order; the event id collapses re-deliveries.
    let engine = format!("\nORDER BY (aggregate_id, aggregate_version, event_id){}", l.settings());
    let updates_table = Object::table(database, &updates, update_columns, "ReplacingMergeTree", &engine);

    let arg_max_if = |ty: &str| format!("AggregateFunction(argMaxIf, {ty}, Int64, UInt8)");
    let mut folded_columns =
        vec![Column::stored(&state.key_column, "String"), Column::stored("version", "AggregateFunction(max, Int64)")];
    folded_columns.extend(physical.iter().map(|p| Column::stored(&p.name, arg_max_if(&p.sql))));
    folded_columns.push(Column::stored("is_deleted", arg_max_if("UInt8")));
    folded_columns.push(Column::stored("updated_at", format!("AggregateFunction(argMax, {}, Int64)", l.time_type())));
    // Key: one row per entity once parts merge; a lookup by key reads one granule.
    let clause = format!("\nORDER BY {key}");
    let folded_table = Object::table(database, &folded, folded_columns, "AggregatingMergeTree", &clause);

    // The version's state column is `version`, not `aggregate_version`: an alias equal to a column
    // name would replace that column inside the other aggregates. For the same reason the
    // erasure is read from `erases`, which no output column is named.
    let states: Vec<String> = physical
        .iter()
        .map(|p| {
            let c = quote(&p.name);
            format!("argMaxIfState(assumeNotNull({c}), aggregate_version, isNotNull({c}) OR erases = 1) AS {c}")
        })
        .collect();
    let key_select = if state.key_column == "aggregate_id" { key.clone() } else { format!("aggregate_id AS {key}") };
    let mut select = vec![key_select, "maxState(aggregate_version) AS version".to_owned()];
    select.extend(states);
    select.push(
        "argMaxIfState(assumeNotNull(is_deleted), aggregate_version, isNotNull(is_deleted)) AS is_deleted".into(),
    );
    select.push("argMaxState(occurred_at, aggregate_version) AS updated_at".into());
    let select = format!("SELECT {}", select.join(", "));
    let materialized = Object::materialized_view(database, &mv, &folded, &select, &updates, "\nGROUP BY aggregate_id");

    let mut merged = vec![key.clone(), "maxMerge(version) AS aggregate_version".to_owned()];
    merged.extend(physical.iter().map(|p| {
        let c = quote(&p.name);
        format!("argMaxIfMerge({c}) AS {c}")
    }));
    merged.push("argMaxIfMerge(is_deleted) AS is_deleted".into());
    merged.push("argMaxMerge(updated_at) AS updated_at".into());
    let mut view_columns =
        vec![Column::stored(&state.key_column, "String"), Column::stored("aggregate_version", "Int64")];
    view_columns.extend(physical.iter().map(|p| Column::stored(&p.name, &p.sql)));
    view_columns.push(Column::stored("is_deleted", "UInt8"));
    view_columns.push(Column::stored("updated_at", l.time_type()));
    let query = format!("SELECT {}\nFROM {}\nGROUP BY {key}", merged.join(", "), qualified(database, &folded));
    let view_object = Object::view(database, &view, &query, view_columns);
    [updates_table, folded_table, materialized, view_object]
}
