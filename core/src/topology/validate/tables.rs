//! The cross-checks of declared ClickHouse tables (`[projections.<name>.clickhouse.tables.<t>]`):
//! their event types are the projection's, their columns come from fields the events have, with
//! one type each, and names clash with nothing. Their columns are derived here (see
//! [`crate::topology::columns`]) and kept in the model.

use std::collections::BTreeMap;

use super::super::columns::{
    ColumnError, FieldPath, TableColumn, is_envelope_column, merge, path_column, payload_columns,
};
use super::super::diagnostics::{Issue, did_you_mean};
use super::super::model::{ClickHouseSink, DeclaredTable};
use super::super::parse::display_path;
use super::{Checker, Schemas};

impl Checker<'_> {
    /// Checks every declared table of projection `name` (whose event types are `known`) and
    /// returns their derived columns, by table.
    pub(super) fn declared_tables(
        &mut self,
        name: &str,
        sink: &ClickHouseSink,
        known: &[&str],
        schemas: &Schemas,
    ) -> BTreeMap<String, Vec<TableColumn>> {
        let mut out = BTreeMap::new();
        for (table, declared) in &sink.tables {
            let events_path = ["projections", name, "clickhouse", "tables", table, "events"];
            let before = self.issues.len();
            self.members(known, &events_path, &declared.events, name);
            if self.issues.len() > before || self.spans.get(&events_path).is_none() {
                continue;
            }
            if let Some(columns) = self.table_columns(name, table, declared, schemas) {
                self.order_by(name, table, declared, &columns);
                out.insert(table.clone(), columns);
            }
        }
        out
    }

    /// The columns of one table, or `None` when they cannot be derived (reported).
    fn table_columns(
        &mut self,
        name: &str,
        table: &str,
        declared: &DeclaredTable,
        schemas: &Schemas,
    ) -> Option<Vec<TableColumn>> {
        let events: Vec<(&str, &apache_avro::Schema)> = declared
            .events
            .iter()
            .map(|t| schemas.get(t).map(|(_, _, s)| (t.as_str(), &s.schema)))
            .collect::<Option<_>>()?;
        let base = ["projections", name, "clickhouse", "tables", table];
        let per_type: Vec<(&str, Vec<TableColumn>)> = match &declared.columns {
            None => events.iter().map(|(t, schema)| (*t, payload_columns(schema))).collect(),
            Some(mapping) => {
                let mut ok = true;
                let mut per_type: Vec<(&str, Vec<TableColumn>)> =
                    events.iter().map(|(t, _)| (*t, Vec::new())).collect();
                for (column, text) in mapping {
                    let column_path = [&base[..], &["columns", column]].concat();
                    let span = self.spans.get(&column_path).unwrap_or(0..0);
                    if is_envelope_column(column) {
                        self.push(Issue::error(
                            span,
                            format!("column `{column}` would shadow the envelope column of that name"),
                        ));
                        ok = false;
                        continue;
                    }
                    let Some(path) = FieldPath::parse(text) else {
                        self.push(
                            Issue::error(span, format!("{text:?} is not a field path"))
                                .hint("write a field, a nested one with `.`, through an array with `[]`: \"customer.id\", \"items[].sku\""),
                        );
                        ok = false;
                        continue;
                    };
                    let mut found = false;
                    for ((_, schema), (_, columns)) in events.iter().zip(per_type.iter_mut()) {
                        if let Some(c) = path_column(schema, column, &path) {
                            columns.push(c);
                            found = true;
                        }
                    }
                    if !found {
                        let fields: Vec<String> =
                            events.iter().flat_map(|(_, s)| payload_columns(s)).map(|c| c.path.to_string()).collect();
                        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                        self.push(
                            Issue::error(
                                span,
                                ColumnError::NoSuchField { column: column.clone(), path: text.clone() }.to_string(),
                            )
                            .maybe_hint(did_you_mean(text, &fields, true)),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                per_type
            }
        };
        match merge(&per_type) {
            Ok(columns) => Some(columns),
            Err(e) => {
                let span = self.spans.get(&[&base[..], &["events"]].concat()).unwrap_or(0..0);
                let hint = match e {
                    ColumnError::Clash { .. } | ColumnError::Envelope { .. } => {
                        Some("name the columns in `columns` to choose other names".to_owned())
                    }
                    ColumnError::Conflict { .. } => {
                        Some("give the event types their own tables, or map the field to two columns".to_owned())
                    }
                    ColumnError::NoSuchField { .. } => None,
                };
                self.push(Issue::error(span, format!("table `{table}`: {e}")).maybe_hint(hint));
                None
            }
        }
    }

    /// Each `order_by` entry is a column of the table.
    fn order_by(&mut self, name: &str, table: &str, declared: &DeclaredTable, columns: &[TableColumn]) {
        let Some(order_by) = &declared.order_by else { return };
        let mut names: Vec<&str> = super::super::columns::ENVELOPE_COLUMNS.to_vec();
        names.extend(columns.iter().map(|c| c.name.as_str()));
        for (i, column) in order_by.iter().enumerate() {
            let index = i.to_string();
            let path = ["projections", name, "clickhouse", "tables", table, "order_by", &index];
            if let Some(span) = self.spans.get(&path)
                && !names.contains(&column.as_str())
            {
                self.push(
                    Issue::error(
                        span,
                        format!("`{}` names no column of table `{table}`: {column:?}", display_path(&path[..6])),
                    )
                    .maybe_hint(did_you_mean(column, &names, true)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
