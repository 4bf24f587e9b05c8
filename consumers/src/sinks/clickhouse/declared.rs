//! The declared tables of a ClickHouse projection (pure): what each is on this server (its
//! `CREATE TABLE`, its columns) and its rows for a batch of events, in `RowBinary`.
//!
//! Input: the `tables` of the projection's `clickhouse` block, their columns already derived
//! from the schemas by topology validation ([`sluice_core::topology::columns`]), and the server's
//! [`Layout`]. Each table is one row per event of its `events`:
//!
//! - the envelope: `event_id UUID`, `event_type`, `aggregate_id`, `aggregate_version`,
//!   `occurred_at` (with `occurred_at_ms`, as in the raw table), `producer`, and where the record
//!   was read (`topic`, `partition`, `offset`); `ingested_at` is filled by the server;
//! - the declared columns, typed as [`super::typing`] says.
//!
//! **Duplicates.** A `ReplacingMergeTree` table's sorting key ends with `event_id`, so a
//! re-delivered event collapses into one row when parts merge, and `FINAL` hides it before that;
//! servers with `insert_deduplication_token` drop a re-sent batch at insert time as well. The
//! default key is the raw table's: `(event_type, toDate(occurred_at), aggregate_id, event_id)`.
//!
//! **Refusals.** An event whose value does not fit its column (a date past 2149 on 18.16, a
//! decimal with more digits than its precision) is refused for every table of the projection, so
//! the tables never disagree about which events they hold.

use std::collections::BTreeSet;

use serde_json::Value;
use sluice_core::event::Event;
use sluice_core::topology::columns::FieldPath;
use sluice_core::topology::{ClickHouseSink, DeclaredTable, TableEngine};
use uuid::Uuid;

use super::request_builder::{RawPlan, check_time};
use super::row_binary::{self, Enc};
use super::schema::{Column, ColumnKind, Layout, Names, Object, envelope_head, qualified, quote};
use super::state::StatePlan;
use super::typing::{Physical, physical};

/// One declared table as this sink writes it.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// The table's name in this version (`orders__v2` while being rebuilt).
    pub name: String,
    events: BTreeSet<String>,
    /// Per declared column: its path, and its physical columns.
    columns: Vec<(FieldPath, Vec<Physical>)>,
    layout: Layout,
    /// The `INSERT`'s column list.
    insert_columns: String,
}

/// A table the sink writes `RowBinary` rows into: a declared table, a state table's updates, or
/// the raw table.
#[derive(Debug, Clone)]
pub enum Target {
    /// A declared table.
    Table(TablePlan),
    /// A state table's `<s>_updates`.
    State(StatePlan),
    /// The raw table: every event folded.
    Raw(RawPlan),
}

impl Target {
    /// The table's name in this version.
    pub fn name(&self) -> &str {
        match self {
            Self::Table(t) => &t.name,
            Self::State(s) => &s.name,
            Self::Raw(r) => &r.name,
        }
    }

    /// Whether events of `event_type` write a row.
    pub fn takes(&self, event_type: &str) -> bool {
        match self {
            Self::Table(t) => t.takes(event_type),
            Self::State(s) => s.takes(event_type),
            Self::Raw(_) => true,
        }
    }

    /// `INSERT INTO … (columns) FORMAT RowBinary` into `database`.
    pub fn insert_sql(&self, database: &str) -> String {
        match self {
            Self::Table(t) => t.insert_sql(database),
            Self::State(s) => s.insert_sql(database),
            Self::Raw(r) => r.insert_sql(database),
        }
    }

    /// Appends the row of `event` to `out`; on a refusal `out` is left as it was.
    pub fn write_row(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        let mark = out.len();
        let written = match self {
            Self::Table(t) => t.row(event, out),
            Self::State(s) => s.write_row(event, out),
            Self::Raw(r) => r.row(event, out),
        };
        if written.is_err() {
            out.truncate(mark);
        }
        written
    }
}

/// Every table `sink` writes rows into — its declared tables, its state tables' updates, then the
/// raw table — named for the version `names` names, on a server of `layout`. The raw table
/// comes last: an event a declared column refuses is refused with that column's reason.
pub fn targets(sink: &ClickHouseSink, names: &Names, layout: Layout) -> Vec<Target> {
    let tables =
        sink.tables.iter().map(|(name, table)| Target::Table(TablePlan::new(&names.name(name), table, layout)));
    let states = sink.state.iter().map(|(name, state)| Target::State(StatePlan::new(name, state, names, layout)));
    let raw = Target::Raw(RawPlan::new(&names.events, layout));
    tables.chain(states).chain([raw]).collect()
}

impl TablePlan {
    fn new(name: &str, table: &DeclaredTable, layout: Layout) -> Self {
        let columns: Vec<(FieldPath, Vec<Physical>)> =
            table.resolved.iter().map(|c| (c.path.clone(), physical(&c.name, &c.ty, layout))).collect();
        let mut insert: Vec<String> = envelope_columns(layout)
            .into_iter()
            .filter(|c| c.kind == ColumnKind::Stored)
            .map(|c| quote(&c.name))
            .collect();
        insert.extend(columns.iter().flat_map(|(_, ps)| ps.iter().map(|p| quote(&p.name))));
        Self {
            name: name.to_owned(),
            events: table.events.iter().cloned().collect(),
            columns,
            layout,
            insert_columns: insert.join(", "),
        }
    }

    /// Whether events of `event_type` go to this table.
    pub fn takes(&self, event_type: &str) -> bool {
        self.events.contains(event_type)
    }

    /// `INSERT INTO … (columns) FORMAT RowBinary` into `database`.
    pub fn insert_sql(&self, database: &str) -> String {
        format!("INSERT INTO {} ({}) FORMAT RowBinary", qualified(database, &self.name), self.insert_columns)
    }

    fn row(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        write_head(event, self.layout, out)?;
        let p = &event.position;
        row_binary::string(p.topic.as_bytes(), out);
        out.extend_from_slice(&p.partition.to_le_bytes());
        out.extend_from_slice(&p.offset.to_le_bytes());
        for (path, physicals) in &self.columns {
            let value = path.get(&event.payload);
            for column in physicals {
                row_binary::write(&column.enc, &value, out)
                    .map_err(|m| format!("table {}, column {} ({path}): {m}", self.name, column.name))?;
            }
        }
        Ok(())
    }
}

/// Writes the stored columns of [`envelope_head`] for `event`: its identity and time. Refuses
/// what the raw table refuses too (an `event_id` that is no UUID, a time outside the columns).
pub(super) fn write_head(event: &Event, layout: Layout, out: &mut Vec<u8>) -> Result<(), String> {
    let e = &event.envelope;
    check_time(e.occurred_at)?;
    let id = Uuid::parse_str(&e.event_id).map_err(|err| format!("event_id {:?} is not a UUID: {err}", e.event_id))?;
    let (high, low) = id.as_u64_pair();
    out.extend_from_slice(&high.to_le_bytes());
    out.extend_from_slice(&low.to_le_bytes());
    row_binary::string(e.event_type.as_bytes(), out);
    row_binary::string(e.aggregate_id.as_bytes(), out);
    out.extend_from_slice(&e.aggregate_version.to_le_bytes());
    if layout.datetime64 {
        out.extend_from_slice(&e.occurred_at.to_le_bytes());
    } else {
        row_binary::write(&Enc::Seconds { per_second: 1000 }, &Value::from(e.occurred_at), out)
            .map_err(|m| format!("occurred_at: {m}"))?;
        out.extend_from_slice(&e.occurred_at.to_le_bytes());
    }
    row_binary::string(e.producer.as_bytes(), out);
    Ok(())
}

/// The encoded rows of one declared table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredRows {
    /// `RowBinary` rows, back to back.
    pub bytes: Vec<u8>,
    /// How many.
    pub count: usize,
}

/// One batch's rows for every table of a projection (in the order of its targets), written event
/// by event.
#[derive(Debug)]
pub struct BatchRows {
    /// Each table's rows.
    pub tables: Vec<DeclaredRows>,
    /// Where each table's rows ended before the event being written: a refusal cuts every table
    /// back to it, and a table that grew took the event's row.
    marks: Vec<usize>,
}

impl BatchRows {
    /// No rows yet; each table's buffer sized to hold `capacity(i)` bytes.
    pub fn with_capacity(tables: usize, capacity: impl Fn(usize) -> usize) -> Self {
        let tables = (0..tables).map(|i| DeclaredRows { bytes: Vec::with_capacity(capacity(i)), count: 0 }).collect();
        Self { tables, marks: Vec::new() }
    }

    /// Appends the rows of `event` to every table of `targets` that takes it; when one refuses
    /// the event, no table keeps a row of it and the reason is returned.
    pub fn push(&mut self, targets: &[Target], event: &Event) -> Result<(), String> {
        self.marks.clear();
        self.marks.extend(self.tables.iter().map(|r| r.bytes.len()));
        let event_type = &event.envelope.event_type;
        let outcome = targets
            .iter()
            .zip(self.tables.iter_mut())
            .filter(|(table, _)| table.takes(event_type))
            .try_for_each(|(table, out)| table.write_row(event, &mut out.bytes));
        let rows = self.tables.iter_mut().zip(&self.marks);
        match outcome {
            Ok(()) => rows.filter(|(out, mark)| out.bytes.len() > **mark).for_each(|(out, _)| out.count += 1),
            Err(_) => rows.for_each(|(out, mark)| out.bytes.truncate(*mark)),
        }
        outcome
    }
}

/// The envelope columns every declared table starts with (`ingested_at` comes last).
fn envelope_columns(l: Layout) -> Vec<Column> {
    let mut columns = envelope_head(l);
    columns.extend([
        Column::stored("topic", l.tag_type()),
        Column::stored("partition", "Int32"),
        Column::stored("offset", "Int64"),
    ]);
    columns
}

/// The table `name` of `table`'s declaration in `database`, for a server of `l`; and a note when
/// part of the declaration cannot be had there.
pub fn object(database: &str, name: &str, table: &DeclaredTable, l: Layout) -> (Object, Option<String>) {
    let mut columns = envelope_columns(l);
    for c in &table.resolved {
        columns.extend(physical(&c.name, &c.ty, l).into_iter().map(|p| Column::stored(p.name, p.sql)));
    }
    columns.push(Column::computed("ingested_at", l.time_type(), ColumnKind::Default, l.now()));
    let mut key: Vec<String> = match &table.order_by {
        Some(order_by) => order_by.iter().map(|c| quote(c)).collect(),
        None => ["event_type", "toDate(occurred_at)", "aggregate_id"].map(str::to_owned).to_vec(),
    };
    if table.engine == TableEngine::ReplacingMergeTree && !key.iter().any(|k| k == "event_id" || k == "`event_id`") {
        key.push("event_id".to_owned());
    }
    let mut engine = format!("\nPARTITION BY {}\nORDER BY ({})", table.partition_by, key.join(", "));
    let mut note = None;
    if let Some(ttl) = table.ttl {
        if l.types.ttl {
            let seconds = std::time::Duration::from(ttl).as_secs();
            engine.push_str(&format!("\nTTL toDateTime(occurred_at) + INTERVAL {seconds} SECOND"));
        } else {
            note = Some(format!(
                "table {name}: `ttl = \"{ttl}\"` is not applied: this server has no table TTL (ClickHouse 19.6+); \
                 delete old partitions yourself"
            ));
        }
    }
    engine.push_str(&l.settings());
    let object = Object { evolves: true, ..Object::table(database, name, columns, table.engine.as_str(), &engine) };
    (object, note)
}

#[cfg(test)]
pub(crate) mod tests;
