//! The typed ClickHouse table written for each event type: its name, and its columns when the
//! default ones (every payload field, flattened) would not pass validation.
//!
//! Columns are derived with the same code validation uses ([`payload_columns`], [`merge`]), so a
//! table written here is one `topology check` accepts. A payload field named like an envelope
//! column (`topic`, `offset`, …) or two fields flattening to one name get an explicit `columns`
//! mapping with a free name; a table whose columns cannot be derived even then is written
//! commented out, with the reason. Pure code.

use std::collections::BTreeSet;

use super::super::columns::{FieldPath, TableColumn, is_envelope_column, merge, path_column, payload_columns};
use super::bind::PlannedEvent;

/// The columns of a typed table.
#[derive(Debug)]
pub(super) enum Columns {
    /// Every payload field, flattened: no `columns` key.
    Default(Vec<TableColumn>),
    /// An explicit mapping (column, field path), because the default names clash; with the
    /// columns renamed (default name → new name).
    Renamed { mapping: Vec<(String, String)>, renamed: Vec<(String, String)>, columns: Vec<TableColumn> },
    /// No table: why.
    Impossible(String),
}

/// The typed table of one event type.
#[derive(Debug)]
pub(super) struct PlannedTable {
    /// The table name (the event type with `_` for `.`, numbered when taken).
    pub(super) name: String,
    /// Its event type.
    pub(super) event_type: String,
    /// Its columns.
    pub(super) columns: Columns,
}

impl PlannedTable {
    /// The table's payload columns, when it is written.
    pub(super) fn resolved(&self) -> &[TableColumn] {
        match &self.columns {
            Columns::Default(columns) | Columns::Renamed { columns, .. } => columns,
            Columns::Impossible(_) => &[],
        }
    }
}

/// One table per event of `events`, with names unique among themselves and `reserved`.
pub(super) fn tables(events: &[PlannedEvent<'_>], reserved: &[&str]) -> Vec<PlannedTable> {
    let mut used: BTreeSet<String> = reserved.iter().map(|s| (*s).to_owned()).collect();
    events
        .iter()
        .map(|e| {
            let name = free(&e.event_type.replace('.', "_"), &used);
            used.insert(name.clone());
            PlannedTable { name, event_type: e.event_type.clone(), columns: columns(e) }
        })
        .collect()
}

/// `base`, or `base_2`, `base_3`, … : the first not in `used`.
fn free(base: &str, used: &BTreeSet<String>) -> String {
    std::iter::once(base.to_owned())
        .chain((2u32..).map(|n| format!("{base}_{n}")))
        .find(|n| !used.contains(n))
        .unwrap_or_else(|| base.to_owned())
}

fn columns(e: &PlannedEvent<'_>) -> Columns {
    let schema = &e.candidate.schema.schema;
    let event_type = e.event_type.as_str();
    let payload = payload_columns(schema);
    let first_error = match merge(&[(event_type, payload.clone())]) {
        Ok(columns) => return Columns::Default(columns),
        Err(error) => error,
    };
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut mapping = Vec::new();
    let mut renamed = Vec::new();
    let mut derived = Vec::new();
    for column in &payload {
        let name = if is_envelope_column(&column.name) || used.contains(&column.name) {
            let mut new = free(&format!("{}_field", column.name), &used);
            while is_envelope_column(&new) {
                new.push('_');
            }
            renamed.push((column.name.clone(), new.clone()));
            new
        } else {
            column.name.clone()
        };
        used.insert(name.clone());
        let path = column.path.to_string();
        let Some(resolved) = FieldPath::parse(&path).and_then(|p| path_column(schema, &name, &p)) else {
            return Columns::Impossible(first_error.to_string());
        };
        derived.push(resolved);
        mapping.push((name, path));
    }
    match merge(&[(event_type, derived)]) {
        Ok(columns) => Columns::Renamed { mapping, renamed, columns },
        Err(_) => Columns::Impossible(first_error.to_string()),
    }
}
