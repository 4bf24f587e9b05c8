//! The DDL of a plan: identifiers and literals quoted for ClickHouse, `CREATE … IF NOT EXISTS`
//! statements, the envelope columns every table starts with, the raw events table, and
//! [`plan`]/[`plan_named`], which put the objects of a projection in the order they are created.

use sluice_core::topology::ClickHouseSink;

use super::layout::Layout;
use super::objects::{Column, ColumnKind, Names, Object, Plan, PlanError};

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
pub(in crate::sinks::clickhouse) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `CREATE TABLE` (`on_cluster`: empty, or ` ON CLUSTER …`).
pub(in crate::sinks::clickhouse) fn create_table(
    database: &str,
    name: &str,
    on_cluster: &str,
    columns: &[Column],
    engine_clause: &str,
) -> String {
    let body: Vec<String> = columns.iter().map(|c| format!("    {}", c.ddl())).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {}{on_cluster} (\n{}\n) {engine_clause}",
        qualified(database, name),
        body.join(",\n")
    )
}

/// The columns every table of events starts with: the event's identity and time
/// (`occurred_at_ms` exact on every server: an alias of a `DateTime64`, else stored), then
/// `producer`.
pub(in crate::sinks::clickhouse) fn envelope_head(l: Layout) -> Vec<Column> {
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

/// The raw events table's columns: the envelope, the payload as JSON text, where the event was
/// read, and when it was stored.
pub(in crate::sinks::clickhouse) fn events_columns(l: Layout) -> Vec<Column> {
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
    columns
}

/// The raw events table: one row per event.
fn events_table(database: &str, name: &str, l: Layout) -> Object {
    let columns = events_columns(l);
    // Sorting key, for analysts: nearly every question is about one kind of event over a time
    // range, so `event_type` (few values: a long contiguous, well-compressed run per type) comes
    // first and the day second — a type-and-dates filter reads only its granules, and the month
    // partitions prune whole parts. `aggregate_id` keeps one entity's events of a day together
    // (a session's timeline, a user's changes). `event_id` last makes the key unique per event,
    // so exactly a re-delivery collapses. Only envelope fields: the key of a re-delivered event
    // never depends on how this version of sluice derives a column.
    let mut engine = "\nPARTITION BY toYYYYMM(occurred_at)\n\
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
        let (object, note) = super::super::declared::object(database, &names.name(base), table, layout);
        objects.push(object);
        notes.extend(note);
    }
    for (name, rollup) in &sink.rollups {
        let source = names.name(&rollup.from);
        let Some(table) = objects.iter().find(|o| o.name == source) else {
            return Err(PlanError::UnknownTable { rollup: name.clone(), table: rollup.from.clone() });
        };
        let made = super::super::rollup::objects(database, name, rollup, table, names, layout);
        objects.extend(made);
    }
    for (base, state) in &sink.state {
        objects.extend(super::super::state::objects(database, base, state, names, layout));
    }
    Ok(Plan { database: database.to_owned(), objects, notes, cluster: None })
}
